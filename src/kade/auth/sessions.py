"""Browser sessions of the web interface, and the one-time links that start them.

A browser holds a session cookie, never the token itself: the cookie's value is a random
secret, and the store keeps only its SHA-256 under `uisessions/<digest>` with the token it
stands for. Each request re-reads that token, so signing out (the record goes) or revoking
the token (`kade token revoke`) ends the session at once, and a copy of the store signs
nobody in.

A one-time link (`kade ui`) carries a code kept the same way under `uilinks/<digest>`:
valid for a minute, and deleted by the compare-and-swap that redeems it, so two browsers
racing for one link get one session between them.

Both are bounded per token and in all: a token's sessions by MAX_SESSIONS_PER_TOKEN (signing
in once more ends its oldest), its links by MAX_LINKS_PER_TOKEN (one more is refused), so
that one token, a read token say, cannot fill the bounds of all and lock everybody out.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Literal

from kade.auth.policy import Principal
from kade.auth.tokens import valid_token
from kade.model import Record, Unreadable, decode
from kade.store.base import CasFailed, Entry, Store

SESSIONS = "uisessions/"
LINKS = "uilinks/"
COOKIE = "kade_session"
SESSION_SECONDS = 12 * 3600.0
LINK_SECONDS = 60.0
MAX_SESSIONS = 1000  # live sessions; past it, a sign-in is refused until some end
MAX_SESSIONS_PER_TOKEN = 20  # a token's live sessions; past it, a sign-in ends the oldest
MAX_LINKS = 100  # one-time links not yet used nor expired
MAX_LINKS_PER_TOKEN = 5  # a token's links; past it, a new one is refused until some go
_SECRET = re.compile(r"[A-Za-z0-9_-]{43}")  # secrets.token_urlsafe(32)


class _Expiring(Record):
    token_id: str
    created_at: float
    expires_at: float


class SessionRecord(_Expiring):
    """A browser's session of a token: the token's role and scope are read again on every
    request. (Records written before carry the role and scope too: they are ignored.)"""


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
    token = await valid_token(store, session.token_id, now)
    return token.principal() if token is not None else None


def _of_token(entries: list[Entry], kind: type[_Expiring], token_id: str,
             now: float) -> list[Entry]:
    """The entries of `token_id` not yet expired, oldest first (in the order the store made
    them: the servers of a cluster may not agree on the time)."""
    mine = []
    for entry in entries:
        record = decode(entry, kind)
        if not isinstance(record, Unreadable) and record.token_id == token_id and (
                now < record.expires_at):
            mine.append(entry)
    return sorted(mine, key=lambda entry: entry.create_revision)


async def _sweep(store: Store, entries: list[Entry], kind: type[_Expiring], limit: int,
                 now: float, advice: str) -> None:
    """Make room among `entries`: records past their time, or of a token that is gone, go.
    Raises TooMany, with `advice`, when the live ones still fill it."""
    if len(entries) < limit:
        return
    live = 0
    for entry in entries:
        record = decode(entry, kind)
        if isinstance(record, Unreadable) or now >= record.expires_at or (
                await valid_token(store, record.token_id, now) is None):
            with contextlib.suppress(CasFailed):  # used or ended meanwhile
                await store.delete(entry.key, expect=entry.mod_revision)
        else:
            live += 1
    if live >= limit:
        raise TooMany(f"{live} are open (the limit is {limit}): {advice}")


async def start_session(store: Store, principal: Principal, now: float) -> str:
    """A new session of `principal`'s token; returns the secret for the cookie. A token at
    MAX_SESSIONS_PER_TOKEN loses its oldest session to it."""
    entries, _ = await store.range(SESSIONS)
    mine = _of_token(entries, SessionRecord, principal.token_id, now)
    oldest = mine[:max(0, len(mine) - MAX_SESSIONS_PER_TOKEN + 1)]
    ending = {entry.key for entry in oldest}
    await _sweep(store, [e for e in entries if e.key not in ending], SessionRecord,
                 MAX_SESSIONS, now, "sign out elsewhere, or wait for some to expire")
    for entry in oldest:
        with contextlib.suppress(CasFailed):  # signed out meanwhile
            await store.delete(entry.key, expect=entry.mod_revision)
    secret = secrets.token_urlsafe(32)
    record = SessionRecord(token_id=principal.token_id, created_at=now,
                           expires_at=now + SESSION_SECONDS)
    await store.put(session_key(secret), record.dump(), expect=0)
    return secret


async def end_session(store: Store, secret: str) -> None:
    if well_formed(secret):
        await store.delete(session_key(secret))


async def make_link(store: Store, principal: Principal, now: float) -> tuple[str, float]:
    """A one-time code for a session of `principal`'s token; returns it and its expiry."""
    entries, _ = await store.range(LINKS)
    mine = _of_token(entries, LinkRecord, principal.token_id, now)
    if len(mine) >= MAX_LINKS_PER_TOKEN:
        raise TooMany(f"{len(mine)} of this token are open (the limit per token is "
                      f"{MAX_LINKS_PER_TOKEN}): use one, or wait for them to expire (links "
                      f"are valid for {LINK_SECONDS:.0f} s)")
    await _sweep(store, entries, LinkRecord, MAX_LINKS, now,
                 f"wait for some to expire (links are valid for {LINK_SECONDS:.0f} s)")
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
    token = await valid_token(store, link.token_id, now)
    if token is None:
        return Redeemed(None, "revoked")
    return Redeemed(await start_session(store, token.principal(), now))
