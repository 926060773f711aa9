"""Synchronous HTTP client of the API. Errors carry the API's own message.

Built on the standard library's `http.client`, not httpx: a `kade` command is over in a
tenth of a second, and importing httpx (which brings rich and click along for its own CLI)
took longer than the whole command should. `ssl` is imported only for an https address.

The token comes from `--token`/`KADE_TOKEN`, a file named by `KADE_TOKEN_FILE`, or — for an
API on this machine only — the management token `kade up` wrote in its data dir, so the CLI
next to a `kade up` needs no set-up. A local token is never sent to another machine.
"""

from __future__ import annotations

import http.client
import json as jsonlib
import os
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from kade.addresses import is_loopback

DEFAULT_ADDR = "127.0.0.1:7400"
MANAGEMENT_TOKEN_FILE = "management.token"
_CHUNK = 65536


def default_data_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/kade")
    return Path.home() / ".local/share/kade"


def find_token(url: str) -> str | None:
    if token := os.environ.get("KADE_TOKEN"):
        return token.strip()
    files = []
    if named := os.environ.get("KADE_TOKEN_FILE"):
        files.append(Path(named))
    elif is_loopback(urlsplit(url).hostname):
        data_dir = os.environ.get("KADE_DATA_DIR")
        files.append((Path(data_dir) if data_dir else default_data_dir()) / MANAGEMENT_TOKEN_FILE)
    for file in files:
        try:
            text = file.read_text().strip()
        except OSError:
            continue
        if text:
            return text
    return None


def api_url(addr: str | None = None) -> str:
    addr = addr or os.environ.get("KADE_ADDR") or DEFAULT_ADDR
    return addr if addr.startswith(("http://", "https://")) else f"http://{addr}"


class ClientError(Exception):
    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class HTTPError(Exception):
    """A request that got no answer (the connection failed or broke)."""


class ConnectError(HTTPError):
    """The API could not be reached at all."""


@dataclass
class Response:
    """An answer read whole: what the CLI looks at."""

    status_code: int
    headers: dict[str, str]  # names in lower case
    content: bytes = b""

    @property
    def text(self) -> str:
        return self.content.decode(errors="replace")

    def json(self) -> Any:
        """The body as JSON; ValueError if it is not."""
        return jsonlib.loads(self.content)


def _is_stream(body: object) -> bool:
    return body is not None and not isinstance(body, bytes | bytearray | memoryview)


def _query(params: Mapping[str, Any] | None) -> str:
    """Query parameters as httpx encodes them: True/False as true/false, None as empty."""
    if not params:
        return ""
    def text(v: Any) -> str:
        return "true" if v is True else "false" if v is False else "" if v is None else str(v)
    pairs = [(k, text(i)) for k, v in params.items()
             for i in (v if isinstance(v, list | tuple) else [v])]
    return "?" + urlencode(pairs)


@dataclass
class Http:
    """Keep-alive connections to one API, with its token and the CA of its certificate
    (`KADE_CACERT`). Every CLI command reaches the API through one. Safe to share between
    threads: each thread has its own connection, and each stream one of its own."""

    base: str
    timeout: float = 30.0
    headers: dict[str, str] = field(default_factory=dict)
    _local: threading.local = field(default_factory=threading.local, repr=False)
    _open: set[http.client.HTTPConnection] = field(default_factory=set, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _new(self, timeout: float | None) -> http.client.HTTPConnection:
        url = urlsplit(self.base)
        host, port = url.hostname or "127.0.0.1", url.port
        conn: http.client.HTTPConnection
        if url.scheme == "https":
            import ssl  # only for an API served over TLS

            cacert = os.environ.get("KADE_CACERT")
            context = ssl.create_default_context(cafile=cacert)
            conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
        else:
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
        return conn

    def _connection(self, timeout: float | None) -> http.client.HTTPConnection:
        """This thread's connection, with this request's timeout."""
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._new(timeout)
        with self._lock:
            self._open.add(conn)
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        return conn

    def _send(self, method: str, path: str, params: Mapping[str, Any] | None, json: Any,
              content: bytes | str | Iterable[bytes] | None, headers: Mapping[str, str] | None,
              timeout: float | None, conn: http.client.HTTPConnection | None = None
              ) -> http.client.HTTPResponse:
        sent = {**self.headers, **(headers or {})}
        body: bytes | Iterable[bytes] | None
        if json is not None:
            body = jsonlib.dumps(json).encode()
            sent.setdefault("Content-Type", "application/json")
        elif isinstance(content, str):
            body = content.encode()
        else:
            body = content
        if body is None and method in ("POST", "PUT", "PATCH"):
            body = b""  # a Content-Length of 0, as the API's body checks expect
        target = urlsplit(self.base).path.rstrip("/") + path + _query(params)
        conn = conn or self._connection(timeout)
        # An idle connection the server has closed meanwhile fails on first use: once more
        # on a fresh one, when the body can be sent again.
        tries = 2 if conn.sock is not None and not _is_stream(body) else 1
        for attempt in range(tries):
            if conn.sock is None:
                try:
                    conn.connect()
                except OSError as e:  # refused, no route, TLS refused...
                    conn.close()
                    raise ConnectError(f"{type(e).__name__}: {e}") from None
            try:
                conn.request(method, target, body=body, headers=sent)
                return conn.getresponse()
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                stale = isinstance(e, http.client.RemoteDisconnected | ConnectionResetError
                                   | BrokenPipeError)
                if not stale or attempt == tries - 1:
                    raise HTTPError(str(e) or type(e).__name__) from None
        raise AssertionError("every attempt returns or raises")

    def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                json: Any = None, content: bytes | str | Iterable[bytes] | None = None,
                headers: Mapping[str, str] | None = None, timeout: float | None = None
                ) -> Response:
        """Send a request and read its answer whole. HTTPError, ConnectError."""
        resp = self._send(method, path, params, json, content, headers,
                          self.timeout if timeout is None else timeout)
        try:
            data = resp.read()
        except (OSError, http.client.HTTPException) as e:
            self._connection(None).close()
            raise HTTPError(f"reading the answer: {e}") from None
        return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)

    @contextmanager
    def stream(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
               timeout: float | None = None) -> Iterator[StreamedResponse]:
        """An answer read as it comes (no timeout unless given)."""
        conn = self._new(timeout)  # a stream has a connection of its own
        try:
            yield StreamedResponse(self._send(method, path, params, None, None, None, timeout,
                                              conn))
        finally:
            conn.close()  # the rest of a stream is not read: the connection is spent

    def close(self) -> None:
        """Close every thread's connection (one used again reconnects)."""
        with self._lock:
            conns, self._open = self._open, set()
        for conn in conns:
            conn.close()


@dataclass
class StreamedResponse:
    _resp: http.client.HTTPResponse

    @property
    def status_code(self) -> int:
        return self._resp.status

    def read(self) -> Response:
        return Response(self.status_code,
                        {k.lower(): v for k, v in self._resp.getheaders()}, self._resp.read())

    def iter_bytes(self) -> Iterator[bytes]:
        while chunk := self._resp.read1(_CHUNK):
            yield chunk


def http_client(addr: str | None = None, timeout: float = 30.0,
                token: str | None = None) -> Http:
    """An HTTP client of the API: its address, its token, the CA that signed its TLS
    certificate (`KADE_CACERT`)."""
    base = api_url(addr)
    token = token or find_token(base)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return Http(base, timeout, headers)


class Client:
    def __init__(self, addr: str | None = None, timeout: float = 30.0,
                 token: str | None = None) -> None:
        self.base = api_url(addr)
        self._http = http_client(addr, timeout, token)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except ConnectError as e:
            raise ClientError(unreachable(self.base, e)) from None
        except HTTPError as e:
            raise ClientError(f"request to {self.base}{path} failed: {e}") from None
        if response.status_code >= 400:
            raise ClientError(_message(response), response.status_code)
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response.text

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Any:
        return self.request("POST", path, json=body, **kwargs)

    def put(self, path: str, body: Any = None, **kwargs: Any) -> Any:
        return self.request("PUT", path, json=body, **kwargs)

    def delete(self, path: str, **params: Any) -> Any:
        return self.request("DELETE", path, params=params)

    def stream(self, path: str, **params: Any) -> Iterator[bytes]:
        try:
            with self._http.stream("GET", path, params=params) as response:
                if response.status_code >= 400:
                    raise ClientError(_message(response.read(), token_hint=False),
                                      response.status_code)
                yield from response.iter_bytes()
        except ConnectError as e:
            raise ClientError(unreachable(self.base, e)) from None
        except (OSError, http.client.HTTPException) as e:
            raise ClientError(f"stream from {self.base}{path} broke: {e}") from None

    def close(self) -> None:
        self._http.close()


def _message(response: Response, *, token_hint: bool = True) -> str:
    try:
        data = response.json()
        message = ((data.get("message") or data.get("error")) if isinstance(data, dict)
                   else None) or response.text  # kade's API, Prometheus' query API
    except ValueError:
        message = response.text
    if response.status_code == 401 and token_hint:
        message += (" (the CLI reads a token from KADE_TOKEN, KADE_TOKEN_FILE, or the "
                    f"data dir's {MANAGEMENT_TOKEN_FILE} for a local kade)")
    return str(message)


def unreachable(base: str, e: Exception) -> str:
    if "CERTIFICATE" in str(e) or "SSL" in str(e):
        return (f"cannot reach kade at {base}: its TLS certificate is not trusted ({e}); "
                "set KADE_CACERT to the CA certificate that signed it")
    return f"cannot reach kade at {base}: is `kade up` running? (set --api-addr or KADE_ADDR)"
