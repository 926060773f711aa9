"""API tokens: `kade.<id>.<secret>`. The store keeps only a hash of the secret under
`tokens/<id>`; the secret is shown once, when the token is made.

Secrets are 256 random bits, so a plain SHA-256 is enough to make a stolen store useless for
logging in (no password stretching needed), and the id lets a token be listed and revoked
without its secret.

The management token (role admin) is made on kade's first start and written to
`<data dir>/management.token`, mode 0600: whoever may read the data dir may run kade, as
with Docker's socket. The local CLI reads it from there by itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from pydantic import Field

from kade.auth.policy import Principal, Role
from kade.model import Record, Unreadable, decode
from kade.store.base import Store

TOKENS = "tokens/"
MANAGEMENT_TOKEN_FILE = "management.token"
_PREFIX = "kade"


class TokenRecord(Record):
    id: str
    role: Role
    apps: list[str] | None = None
    kv: list[str] | None = None
    node: str | None = None  # node tokens: the one node it may report for
    description: str = Field(default="", max_length=200)
    created_at: float
    expires_at: float | None = None
    secret_sha256: str

    def principal(self) -> Principal:
        return Principal(token_id=self.id, role=self.role,
                         apps=tuple(self.apps) if self.apps is not None else None,
                         kv=tuple(self.kv) if self.kv is not None else None,
                         node=self.node)

    def public(self) -> dict[str, object]:
        """What `kade token list` shows: everything but the hash."""
        return self.model_dump(exclude={"secret_sha256"})


def token_key(token_id: str) -> str:
    return TOKENS + token_id


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_token(text: str) -> tuple[str, str] | None:
    """`kade.<id>.<secret>` → (id, secret); None for anything else."""
    parts = text.strip().split(".")
    if len(parts) != 3 or parts[0] != _PREFIX or not parts[1] or len(parts[2]) < 32:
        return None
    if not parts[1].isalnum() or len(parts[1]) > 32:
        return None
    return parts[1], parts[2]


async def valid_token(store: Store, token_id: str, now: float) -> TokenRecord | None:
    """The record of token `token_id` while it is valid: None when it is unknown (never
    made, or revoked), unreadable, or expired."""
    entry = await store.get(token_key(token_id))
    if entry is None:
        return None
    record = decode(entry, TokenRecord)
    if isinstance(record, Unreadable):
        return None
    if record.expires_at is not None and now >= record.expires_at:
        return None
    return record


async def authenticate(store: Store, presented: str, now: float) -> Principal | None:
    parsed = parse_token(presented)
    if parsed is None:
        return None
    token_id, secret = parsed
    record = await valid_token(store, token_id, now)
    if record is None or not hmac.compare_digest(record.secret_sha256, _digest(secret)):
        return None
    return record.principal()


async def create_token(store: Store, *, role: Role, now: float, apps: list[str] | None = None,
                       kv: list[str] | None = None, description: str = "",
                       expires_at: float | None = None, node: str | None = None
                       ) -> tuple[str, TokenRecord]:
    """Make a token; returns its full text (shown once) and its record."""
    token_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    record = TokenRecord(id=token_id, role=role, apps=apps, kv=kv, node=node,
                         description=description,
                         created_at=now, expires_at=expires_at, secret_sha256=_digest(secret))
    await store.put(token_key(token_id), record.dump(), expect=0)
    return f"{_PREFIX}.{token_id}.{secret}", record


def read_token_file(path: Path) -> str | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return text or None


def write_secret_file(path: Path, text: str) -> None:
    """Write `text` to `path` with mode 0600 from the first byte, atomically."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, (text + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


async def ensure_token_file(store: Store, path: Path, *, role: Role, description: str,
                            now: float) -> str:
    """The token in `path` if it is still valid with `role`, else a new one written there."""
    existing = read_token_file(path)
    if existing is not None:
        principal = await authenticate(store, existing, now)
        if principal is not None and principal.role == role:
            os.chmod(path, 0o600)
            return existing
        parsed = parse_token(existing)
        if parsed is not None:  # a stale token of ours: do not leave it valid
            await store.delete(token_key(parsed[0]))
    text, _ = await create_token(store, role=role, now=now, description=description)
    write_secret_file(path, text)
    return text
