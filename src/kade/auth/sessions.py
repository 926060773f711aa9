"""Browser sessions of the web interface, and the one-time links that start them.

A browser holds a session cookie, never the token itself: the cookie's value is a random
secret, and the store keeps only its SHA-256 under `uisessions/<digest>` with the token it
stands for. Each request re-reads that token, so signing out (the record goes) or revoking
the token (`kade token revoke`) ends the session at once, and a copy of the store signs
nobody in.

A one-time link (`kade ui`) carries a code kept the same way under `uilinks/<digest>`:
valid for a minute, and deleted by the compare-and-swap that redeems it, so two browsers
racing for one link get one session between them.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Literal

from kade.auth.policy import Principal, Role
from kade.auth.tokens import TokenRecord, token_key
from kade.model import Record, Unreadable, decode
from kade.store.base import CasFailed, Store

SESSIONS = "uisessions/"
LINKS = "uilinks/"
COOKIE = "kade_session"
SESSION_SECONDS = 12 * 3600.0
LINK_SECONDS = 60.0
MAX_SESSIONS = 1000  # live sessions; past it, a sign-in is refused until some end
MAX_LINKS = 100  # one-time links not yet used nor expired
_SECRET = re.compile(r"[A-Za-z0-9_-]{43}")  # secrets.token_urlsafe(32)


class _Expiring(Record):
    token_id: str
    created_at: float
    expires_at: float


class SessionRecord(_Expiring):
    role: Role  # the token's role and scope when the session began (shown, never trusted:
    apps: list[str] | None = None  # every request reads the token again)
    kv: list[str] | None = None


class LinkRecord(_Expiring):
    """A one-time code's token, until the code is used or expires."""


class TooMany(Exception):
    """The bound on sessions or links is reached: nothing was written."""


@dataclass(frozen=True)
class Redeemed:
    """What a one-time code gave: a session's secret, or why not."""

    secret: str | None
    problem: Literal["", "unknown", "expired", "revoked"] = ""


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def session_key(secret: str) -> str:
    return SESSIONS + _digest(secret)


def link_key(code: str) -> str:
    return LINKS + _digest(code)


def well_formed(secret: str) -> bool:
    """Session secrets and link codes have one shape: anything else is not looked up."""
    return _SECRET.fullmatch(secret) is not None


async def _token(store: Store, token_id: str, now: float) -> TokenRecord | None:
    entry = await store.get(token_key(token_id))
    if entry is None:
        return None
    record = decode(entry, TokenRecord)
    if isinstance(record, Unreadable):
        return None
    if record.expires_at is not None and now >= record.expires_at:
        return None
    return record


async def session_principal(store: Store, secret: str, now: float) -> Principal | None:
    """The principal of a session cookie: its token's, while both are valid."""
    if not well_formed(secret):
        return None
    entry = await store.get(session_key(secret))
    if entry is None:
        return None
    session = decode(entry, SessionRecord)
    if isinstance(session, Unreadable) or now >= session.expires_at:
        return None
    token = await _token(store, session.token_id, now)
    return token.principal() if token is not None else None


async def _sweep(store: Store, prefix: str, limit: int, now: float) -> None:
    """Make room under `prefix`: records past their time, or of a token that is gone, go.
    Raises TooMany when the live ones still fill it."""
    entries, _ = await store.range(prefix)
    if len(entries) < limit:
        return
    kind: type[_Expiring] = SessionRecord if prefix == SESSIONS else LinkRecord
    live = 0
    for entry in entries:
        record = decode(entry, kind)
        if isinstance(record, Unreadable) or now >= record.expires_at or (
                await _token(store, record.token_id, now) is None):
            with contextlib.suppress(CasFailed):  # used or ended meanwhile
                await store.delete(entry.key, expect=entry.mod_revision)
        else:
            live += 1
    if live >= limit:
        raise TooMany(f"{live} are open (the limit is {limit}): sign out elsewhere, or wait "
                      "for some to expire")


async def start_session(store: Store, principal: Principal, now: float) -> str:
    """A new session of `principal`'s token; returns the secret for the cookie."""
    await _sweep(store, SESSIONS, MAX_SESSIONS, now)
    secret = secrets.token_urlsafe(32)
    record = SessionRecord(token_id=principal.token_id, role=principal.role,
                           apps=list(principal.apps) if principal.apps is not None else None,
                           kv=list(principal.kv) if principal.kv is not None else None,
                           created_at=now, expires_at=now + SESSION_SECONDS)
    await store.put(session_key(secret), record.dump(), expect=0)
    return secret


async def end_session(store: Store, secret: str) -> None:
    if well_formed(secret):
        await store.delete(session_key(secret))


async def make_link(store: Store, principal: Principal, now: float) -> tuple[str, float]:
    """A one-time code for a session of `principal`'s token; returns it and its expiry."""
    await _sweep(store, LINKS, MAX_LINKS, now)
    code = secrets.token_urlsafe(32)
    record = LinkRecord(token_id=principal.token_id, created_at=now,
                        expires_at=now + LINK_SECONDS)
    await store.put(link_key(code), record.dump(), expect=0)
    return code, record.expires_at


async def redeem_link(store: Store, code: str, now: float) -> Redeemed:
    """Use a one-time code: the first caller gets a session, every later one `unknown`."""
    if not well_formed(code):
        return Redeemed(None, "unknown")
    entry = await store.get(link_key(code))
    if entry is None:
        return Redeemed(None, "unknown")
    try:
        await store.delete(entry.key, expect=entry.mod_revision)
    except CasFailed:
        return Redeemed(None, "unknown")  # another request used it a moment ago
    link = decode(entry, LinkRecord)
    if isinstance(link, Unreadable):
        return Redeemed(None, "unknown")
    if now >= link.expires_at:
        return Redeemed(None, "expired")
    token = await _token(store, link.token_id, now)
    if token is None:
        return Redeemed(None, "revoked")
    return Redeemed(await start_session(store, token.principal(), now))
