"""The API's front door: every request passes here before any handler runs.

In order: the `Host` must be one of this server's names (DNS rebinding), a browser's
`Origin` must be this server or a configured one (no page elsewhere may drive the API),
the token — or the web interface's session cookie — must be valid and its role allow the
endpoint (kade.auth.policy's table), a scoped token must be within its scope, a write
authenticated by the cookie must carry this server's `Origin` (CSRF), a page of the web
interface asked without a session is sent to the sign-in page, bodies of JSON endpoints must
say they are JSON/YAML, and no body may exceed the cap. A refused request reaches no
handler, so it changes nothing.

Written as plain ASGI (not a BaseHTTPMiddleware) so streamed answers — events, logs,
blocking queries — pass through untouched.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kade import model
from kade.api.paths import split_app_path
from kade.auth import Principal, authenticate, can_deploy_app, can_write_kv
from kade.auth.policy import decide, needed_permission
from kade.auth.sessions import COOKIE, session_principal
from kade.store.base import Store

MAX_BODY = 1024 * 1024  # bytes: app definitions (1 MiB) are the largest bodies
_CONSUL_PATHS = ("/v1/kv/", "/v1/txn", "/v1/catalog/", "/v1/health/", "/v1/status/",
                 "/v1/agent/")
_WRITES = ("POST", "PUT", "PATCH", "DELETE")
_FORM_PATHS = ("/ui/login", "/ui/logout")  # the sign-in page's forms post urlencoded fields
_JSON_TYPES = ("application/json", "application/yaml", "application/x-yaml", "text/yaml",
               "text/x-yaml")


@dataclass(frozen=True)
class SecurityConfig:
    hosts: tuple[str, ...] = ()  # names the API is reached by, besides IPs and localhost
    cors_origins: tuple[str, ...] = ()  # origins (scheme://host[:port]) browsers may use
    max_body: int = MAX_BODY


@dataclass
class _Refusal:
    status: int
    message: str
    headers: dict[str, str] = field(default_factory=dict)


def host_allowed(host_header: str | None, config: SecurityConfig) -> bool:
    """IP literals cannot be rebound; `localhost` and configured names are ours."""
    if host_header is None:
        return True  # HTTP/1.0 without Host: not a browser
    host = urlsplit(f"//{host_header}").hostname
    if host is None:
        return False
    if host == "localhost" or host in config.hosts:
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def origin_allowed(origin: str, host_header: str | None, config: SecurityConfig) -> bool:
    if origin in config.cors_origins:
        return True
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and bool(host_header) and (
        parts.netloc == host_header)


def presented_token(headers: Headers, path: str, query: bytes) -> str | None:
    """The token as clients send it: `Authorization: Bearer`, `X-Kade-Token`; Marathon's
    clients `Authorization: token=` (DC/OS) or HTTP Basic with the token as the password;
    Consul's `X-Consul-Token` and `?token=` on its endpoints."""
    auth = headers.get("authorization", "")
    scheme, _, credentials = auth.partition(" ")
    if scheme.lower() == "bearer":
        return credentials.strip()
    if auth.startswith("token="):
        return auth.removeprefix("token=").strip()
    if scheme.lower() == "basic":
        try:
            return base64.b64decode(credentials.strip(), validate=True).decode().partition(
                ":")[2]
        except (ValueError, UnicodeDecodeError):
            return None
    if token := headers.get("x-kade-token"):
        return token
    if path.startswith(_CONSUL_PATHS):
        if token := headers.get("x-consul-token"):
            return token
        values = parse_qs(query.decode("latin-1")).get("token")
        if values:
            return values[0]
    return None


def session_cookie(headers: Headers) -> str | None:
    """The web interface's session secret (`kade_session`), if the request carries one."""
    cookies = headers.get("cookie")
    if not cookies:
        return None
    return cookie_parser(cookies).get(COOKIE) or None


def is_ui_page(method: str, path: str) -> bool:
    """A page a browser navigates to: asked without a session, it is sent to sign in."""
    return method in ("GET", "HEAD") and (path == "/ui" or path.startswith("/ui/"))


def login_redirect(path: str, query: bytes) -> _Refusal:
    here = path + ("?" + query.decode("latin-1") if query else "")
    return _Refusal(303, "sign in first", {"Location": "/ui/login?next=" + quote(here, safe="")})


def app_of_path(path: str) -> str | None:
    """`/v1/apps/shop/web/scale` → `/shop/web`."""
    rest = path[len("/v1/apps"):]
    return split_app_path(rest)[0] if rest.strip("/") else None


class SecurityMiddleware:
    def __init__(self, app: ASGIApp, store: Store, config: SecurityConfig,
                 clock: Callable[[], float] = time.time) -> None:
        self.app = app
        self.store = store
        self.config = config
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        principal, refusal = await self._check(scope)
        if refusal is not None:
            await _answer(send, refusal)
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, self._capped(receive), send)

    async def _check(self, scope: Scope) -> tuple[Principal | None, _Refusal | None]:
        headers = Headers(scope=scope)
        method: str = scope["method"]
        path: str = scope["path"]
        host = headers.get("host")
        if not host_allowed(host, self.config):
            return None, _Refusal(403, f"Host {host!r} is not a name of this server: "
                                       "add it with `kade up --api-host NAME`")
        origin = headers.get("origin")
        if origin is not None and not origin_allowed(origin, host, self.config):
            return None, _Refusal(403, f"cross-origin requests are refused (Origin {origin!r});"
                                       " allow an origin with `kade up --cors-origin URL`")
        if method in _WRITES and origin is None and path in _FORM_PATHS:
            return None, _csrf_refusal("a form of the sign-in page")
        principal = None
        query: bytes = scope.get("query_string", b"")
        token = presented_token(headers, path, query)
        secret = session_cookie(headers) if token is None else None
        if token is not None:
            principal = await authenticate(self.store, token, self.clock())
            if principal is None and needed_permission(method, path) != "public":
                return None, _Refusal(401, "the token is not valid (unknown, revoked or "
                                           "expired)", {"WWW-Authenticate": 'Bearer realm="kade"'})
        elif secret is not None:
            principal = await session_principal(self.store, secret, self.clock())
            if principal is not None and method in _WRITES and origin is None:
                return None, _csrf_refusal("a request signed in by the session cookie that "
                                           "changes something")
        decision = decide(principal, method, path)
        if decision.status == 401 and is_ui_page(method, path):
            return None, login_redirect(path, query)
        if decision.status == 401 and secret is not None:
            return None, _Refusal(401, "the session has ended (signed out, expired, or its "
                                       "token revoked): sign in again at /ui/login")
        if not decision.allowed:
            extra = {"WWW-Authenticate": 'Bearer realm="kade"'} if decision.status == 401 else {}
            return principal, _Refusal(decision.status, decision.message, extra)
        if principal is not None and needed_permission(method, path) == "deploy":
            why = await self._out_of_scope(principal, method, path)
            if why:
                return principal, _Refusal(403, why)
        if method in _WRITES:
            refusal = self._body_refusal(headers, path)
            if refusal is not None:
                return principal, refusal
        return principal, None

    async def _out_of_scope(self, principal: Principal, method: str, path: str) -> str | None:
        """Scoped tokens: the app or key a write touches must be in the token's scope."""
        who = principal.describe()
        if path.startswith("/v1/kv/"):
            key = path.removeprefix("/v1/kv/")
            return None if can_write_kv(principal, key) else f"{who} may not write KV key {key!r}"
        if path == "/v1/txn":
            if principal.apps is None and principal.kv is None:
                return None
            return f"{who} is scoped: use /v1/kv/<key>, not /v1/txn"
        if principal.apps is not None and path.startswith(("/v2/groups", "/v2/tasks/delete")):
            return f"{who} is scoped to apps: change them through /v2/apps/<id>"
        if principal.apps is None:
            return None
        app_id = await self._app_of(path)
        if app_id is None:
            return None  # a new app's id is in its body: the handler checks it
        if can_deploy_app(principal, app_id):
            return None
        return f"{who} may not change app {app_id}"

    async def _app_of(self, path: str) -> str | None:
        if path.startswith(("/v1/apps/", "/v2/apps/")):
            return app_of_path(path)
        for prefix, key_of in (("/v1/tasks/", model.task_key),
                               ("/v1/deployments/", model.deployment_key),
                               ("/v2/deployments/", model.deployment_key)):
            if path.startswith(prefix):
                entry = await self.store.get(key_of(path.removeprefix(prefix).split("/")[0]))
                if entry is None:
                    return None
                try:
                    return str(json.loads(entry.value)["app_id"])
                except (ValueError, KeyError, TypeError):
                    return None
        return None

    def _body_refusal(self, headers: Headers, path: str) -> _Refusal | None:
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                return _Refusal(400, "Content-Length must be a whole number")
            if int(length) > self.config.max_body:
                return _Refusal(413, f"body: {int(length)} bytes, larger than "
                                     f"{_size(self.config.max_body)}, the limit of this server")
        has_body = (length is not None and int(length) > 0) or (
            "chunked" in headers.get("transfer-encoding", "").lower())
        if not has_body or path.startswith("/v1/kv/"):
            return None  # Consul's KV takes raw values of any type
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype in _JSON_TYPES or (ctype.startswith("application/") and ctype.endswith("+json")):
            return None
        if path.startswith("/api/v1/") and ctype == "application/x-www-form-urlencoded":
            return None  # Prometheus' query API takes forms (Grafana posts them); reads only
        if path in _FORM_PATHS and ctype == "application/x-www-form-urlencoded":
            return None  # the sign-in page's forms: they carry this server's Origin (above)
        return _Refusal(415, f"Content-Type {ctype or '(none)'!r} is not accepted here: "
                             "send application/json or application/yaml")

    def _capped(self, receive: Receive) -> Receive:
        received = 0
        limit = self.config.max_body

        async def capped() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(413, f"body: larger than {_size(limit)}, the limit of "
                                             "this server")
            return message

        return capped


def _csrf_refusal(what: str) -> _Refusal:
    return _Refusal(403, f"Origin: required on {what} (the CSRF rule): browsers send it by "
                         "themselves; other clients use a token")


def _size(n: int) -> str:
    return f"{n / 1024 / 1024:g} MiB ({n} bytes)" if n >= 1024 * 1024 else f"{n} bytes"


async def _answer(send: Send, refusal: _Refusal) -> None:
    body = json.dumps({"message": refusal.message}).encode()
    headers: list[tuple[bytes, bytes]] = [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in refusal.headers.items()]
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def principal_of(request: Any) -> Principal | None:
    """The principal the front door found for this request (None: no token, public path)."""
    return getattr(request.state, "principal", None)


def by_session(request: Any) -> bool:
    """Whether the request is signed in by the session cookie: it carries no token (a token,
    when sent, wins over the cookie at the front door)."""
    scope = request.scope
    return presented_token(Headers(scope=scope), scope["path"],
                           scope.get("query_string", b"")) is None
