"""Signing in to the web interface: the sign-in page, signing out, and one-time links.

A browser is signed in by a session cookie (kade.auth.sessions), never by the token itself:
the token pasted into the form is checked once and the browser gets a session of it, which
signing out or revoking the token ends. The local CLI's `kade ui` asks for a one-time link
instead (`POST /v1/ui/login-links`), so nobody has to copy the management token anywhere.

The front door (kade.api.security) accepts the cookie on every endpoint, refuses the forms
here without this server's `Origin`, and sends a page asked without a session here with
`next` set to it. A one-time link is made only for a token, never for a session: a session
(or a stolen cookie) must not renew itself past its 12 hours.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from kade.api.security import by_session, principal_of
from kade.auth import authenticate
from kade.auth.sessions import (
    COOKIE,
    LINK_SECONDS,
    SESSION_SECONDS,
    TooMany,
    end_session,
    make_link,
    redeem_link,
    start_session,
)
from kade.store.base import Store
from kade.ui.render import page

HOME = "/ui/"
MAX_FIELD = 4096  # a token is ~60 characters, a `next` a path of the interface
MAX_FIELDS = 10  # the form has two: `token` and `next`
_LINK_PROBLEMS = {
    "unknown": "This sign-in link was used already or is not valid: each link signs in once. "
               "Run `kade ui` for a new one, or sign in with a token.",
    "expired": f"This sign-in link has expired: links are valid for {LINK_SECONDS:.0f} s. "
               "Run `kade ui` for a new one, or sign in with a token.",
    "revoked": "The token that made this sign-in link is no longer valid (revoked or expired).",
}


def safe_next(value: str | None) -> str:
    """Where to go once signed in: a path of the web interface, never another site (an open
    redirect would lend kade's name to a phishing link)."""
    if not value or len(value) > MAX_FIELD or "\\" in value:
        return HOME
    if any(ord(c) < 0x20 or c == "\x7f" for c in value):
        return HOME
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or value.startswith("//"):
        return HOME
    if not (parts.path == "/ui" or parts.path.startswith("/ui/")):
        return HOME
    if ".." in parts.path.split("/") or parts.path.startswith(("/ui/login", "/ui/logout")):
        return HOME
    return value


def _field(fields: dict[str, list[str]], name: str) -> str:
    values = fields.get(name) or [""]
    return values[0][:MAX_FIELD]


def login_router(store: Store, clock: Callable[[], float] = time.time) -> APIRouter:
    r = APIRouter()

    def form(request: Request, target: str, error: str = "", status: int = 200) -> Response:
        """The sign-in page, with what went wrong if anything. A 200 but for a post that is
        not the page's form: browsers log a 4xx page as a console error, and the page itself
        says what the matter is."""
        return page(request, "login.html", {"next": target, "error": error},
                    title="Sign in", nav="login", status=status)

    async def signed_in(request: Request, secret: str, target: str) -> Response:
        """The new session's cookie; the session this browser had before, if any, ends."""
        previous = request.cookies.get(COOKIE)
        if previous and previous != secret:
            await end_session(store, previous)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(COOKIE, secret, max_age=int(SESSION_SECONDS), path="/",
                            httponly=True, samesite="strict",
                            secure=request.url.scheme == "https")
        return response

    @r.get("/ui/login", include_in_schema=False)
    async def login_page(request: Request, code: str | None = None,
                         next: str | None = None) -> Response:
        target = safe_next(next)
        if code is None:
            if principal_of(request) is not None:
                return RedirectResponse(target, status_code=303)
            return form(request, target)
        if request.headers.get("sec-fetch-site") in ("cross-site", "same-site"):
            # a page elsewhere must not sign this browser in to a session of its choosing
            return form(request, target, "This sign-in link was opened from another site: "
                        "open it directly (paste it into the address bar).")
        try:
            redeemed = await redeem_link(store, code[:MAX_FIELD], clock())
        except TooMany as e:
            return form(request, target, f"sessions: {e}")
        if redeemed.secret is None:
            return form(request, target, _LINK_PROBLEMS[redeemed.problem])
        return await signed_in(request, redeemed.secret, target)

    @r.post("/ui/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        body = (await request.body()).decode("utf-8", errors="replace")
        try:
            fields = parse_qs(body, max_num_fields=MAX_FIELDS)
        except ValueError:  # more fields than allowed
            return form(request, HOME, f"form: more than {MAX_FIELDS} fields (the sign-in "
                        "form sends `token` and `next`)", status=400)
        target = safe_next(_field(fields, "next"))
        token = _field(fields, "token").strip()
        if not token:
            return form(request, target, "token: required (`kade token create --role read` "
                        "makes one, or run `kade ui` for a one-time link)")
        principal = await authenticate(store, token, clock())
        if principal is None:
            return form(request, target, "token: not valid (unknown, revoked or expired)")
        try:
            secret = await start_session(store, principal, clock())
        except TooMany as e:
            return form(request, target, f"sessions: {e}")
        return await signed_in(request, secret, target)

    @r.post("/ui/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        secret = request.cookies.get(COOKIE)
        if secret:
            await end_session(store, secret)
        response = RedirectResponse("/ui/login", status_code=303)
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict",
                               secure=request.url.scheme == "https")
        return response

    @r.post("/v1/ui/login-links", status_code=201)
    async def login_link(request: Request) -> JSONResponse:
        """A one-time link that signs a browser in with a session of the calling token:
        valid for 60 s, usable once (`kade ui` prints it)."""
        who = principal_of(request)
        if who is None:
            raise HTTPException(401, "authentication required")
        if by_session(request):
            raise HTTPException(403, "sign-in links: made for a token only (send it in the "
                                "Authorization header), not for the session cookie: a "
                                "session may not renew itself")
        try:
            code, expires = await make_link(store, who, clock())
        except TooMany as e:
            raise HTTPException(429, f"sign-in links: {e}") from None
        host = request.headers.get("host") or request.url.netloc
        url = f"{request.url.scheme}://{host}/ui/login?code={code}"
        return JSONResponse({"url": url, "expiresAt": expires,
                             "expiresInSeconds": LINK_SECONDS}, status_code=201)

    return r
