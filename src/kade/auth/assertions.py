"""Server assertions: how a node knows that a request to its listener comes from a server.

A node's listener (`kade agent --listen`) answers log queries of the node's tasks. Only the
cluster's servers may ask, and only what they were asked by a user they let in (the server's
own front door judged the user's token). So each `kade server` makes an Ed25519 key pair at
start, publishes the public key at `serverkeys/<server name>` (agents read it through the
store API; the private key never leaves the server's memory), and signs each request it sends
to a node: who signs (issuer), for which node (audience), the method and the path with its
query, and an expiry about 30 s ahead. The node refuses anything unsigned, badly signed,
expired, for another node or another request.

    X-Kade-Assertion: <base64url(claims JSON)>.<base64url(Ed25519 signature of the first part)>

Pure: plain values in, claims or a refusal (401: who is asking is not shown; 403: a server,
but not for this request) out.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

HEADER = "X-Kade-Assertion"
TTL = 30.0  # seconds a signed request stays good
MAX_AHEAD = 120.0  # an expiry further than this ahead is refused (clock skew allowed for)
MAX_TOKEN = 4096  # bytes of the header


@dataclass(frozen=True)
class Claims:
    issuer: str  # the server's name: its key is serverkeys/<issuer>
    audience: str  # the node's name
    method: str
    path: str  # with its query string, exactly as sent
    expires: float  # seconds since the epoch


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class ServerKey:
    """A server's key pair, made when it starts."""

    def __init__(self, server: str, private: Ed25519PrivateKey | None = None) -> None:
        self.server = server
        self._private = private or Ed25519PrivateKey.generate()

    @property
    def public(self) -> str:
        """The raw public key, base64: what `serverkeys/<server>` holds."""
        raw = self._private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return base64.b64encode(raw).decode()

    def sign(self, audience: str, method: str, path: str, now: float,
             ttl: float = TTL) -> str:
        claims = {"iss": self.server, "aud": audience, "method": method.upper(),
                  "path": path, "exp": round(now + ttl, 3)}
        payload = _b64(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
        return f"{payload}.{_b64(self._private.sign(payload.encode()))}"


def public_key(text: str) -> Ed25519PublicKey:
    """A published public key (raw, base64); ValueError if it is not one."""
    try:
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(text, validate=True))
    except (ValueError, binascii.Error) as e:
        raise ValueError(f"public_key: not an Ed25519 public key ({e})") from None


def issuer_of(token: str) -> str | None:
    """Who claims to have signed `token` (unverified: to find the key to verify it with)."""
    try:
        claims = json.loads(_unb64(token.partition(".")[0]))
    except (ValueError, binascii.Error):
        return None
    issuer = claims.get("iss") if isinstance(claims, dict) else None
    return issuer if isinstance(issuer, str) else None


def verify(token: str | None, keys: Mapping[str, Ed25519PublicKey], *, audience: str,
           method: str, path: str, now: float) -> Claims:
    """The claims of a request's assertion, checked against the servers' public keys, this
    node's name and the request itself; `Refused` (401 or 403) saying why not."""
    if not token:
        raise Refused(401, f"a node answers only servers: {HEADER} is missing (ask a kade "
                           "server, which signs its requests to nodes)")
    if len(token) > MAX_TOKEN or token.count(".") != 1:
        raise Refused(401, f"{HEADER}: not an assertion (payload.signature)")
    payload, _, signature = token.partition(".")
    try:
        data = json.loads(_unb64(payload))
        raw_signature = _unb64(signature)
    except (ValueError, binascii.Error):
        raise Refused(401, f"{HEADER}: not an assertion (undecodable)") from None
    claims = _claims(data)
    key = keys.get(claims.issuer)
    if key is None:
        raise Refused(401, f"{HEADER}: signed by {claims.issuer!r}, which is not a server "
                           "of this cluster (no serverkeys/ record)")
    try:
        key.verify(raw_signature, payload.encode())
    except InvalidSignature:
        raise Refused(401, f"{HEADER}: the signature is not server {claims.issuer}'s") from None
    if claims.expires <= now:
        raise Refused(401, f"{HEADER}: expired {now - claims.expires:.0f}s ago (signed "
                           "requests are good for about 30 s: are the clocks in sync?)")
    if claims.expires > now + MAX_AHEAD:
        raise Refused(401, f"{HEADER}: expires too far ahead (more than {MAX_AHEAD:.0f}s: "
                           "are the clocks in sync?)")
    if claims.audience != audience:
        raise Refused(403, f"{HEADER}: signed for node {claims.audience}, this is node "
                           f"{audience}")
    if claims.method != method.upper() or claims.path != path:
        raise Refused(403, f"{HEADER}: signed for another request ({claims.method} "
                           f"{claims.path[:200]})")
    return claims


def _claims(data: object) -> Claims:
    if not isinstance(data, dict):
        raise Refused(401, f"{HEADER}: the claims are not an object")
    fields = {"iss": str, "aud": str, "method": str, "path": str}
    for name, kind in fields.items():
        if not isinstance(data.get(name), kind):
            raise Refused(401, f"{HEADER}: {name} is missing or not a string")
    exp = data.get("exp")
    if isinstance(exp, bool) or not isinstance(exp, int | float) or not math.isfinite(exp):
        raise Refused(401, f"{HEADER}: exp must be a number")
    return Claims(data["iss"], data["aud"], data["method"], data["path"], float(exp))
