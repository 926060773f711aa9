"""Synchronous HTTP client of the API. Errors carry the API's own message.

The token comes from `--token`/`KADE_TOKEN`, a file named by `KADE_TOKEN_FILE`, or — for an
API on this machine only — the management token `kade up` wrote in its data dir, so the CLI
next to a `kade up` needs no set-up. A local token is never sent to another machine.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from kade.addresses import is_loopback

DEFAULT_ADDR = "127.0.0.1:7400"
MANAGEMENT_TOKEN_FILE = "management.token"


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


def http_client(addr: str | None = None, timeout: float = 30.0,
                token: str | None = None) -> httpx.Client:
    """An HTTP client of the API: its address, its token, the CA that signed its TLS
    certificate (`KADE_CACERT`). Every CLI command reaches the API through one."""
    base = api_url(addr)
    token = token or find_token(base)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    cacert = os.environ.get("KADE_CACERT")
    verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=cacert) if cacert else True
    return httpx.Client(base_url=base, timeout=timeout, headers=headers, verify=verify)


class Client:
    def __init__(self, addr: str | None = None, timeout: float = 30.0,
                 token: str | None = None) -> None:
        self.base = api_url(addr)
        self._http = http_client(addr, timeout, token)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.ConnectError as e:
            raise ClientError(unreachable(self.base, e)) from None
        except httpx.HTTPError as e:
            raise ClientError(f"request to {self.base}{path} failed: {e}") from None
        if response.status_code >= 400:
            try:
                message = response.json().get("message") or response.text
            except ValueError:
                message = response.text
            if response.status_code == 401:
                message += (" (the CLI reads a token from KADE_TOKEN, KADE_TOKEN_FILE, or the "
                            f"data dir's {MANAGEMENT_TOKEN_FILE} for a local kade)")
            raise ClientError(message, response.status_code)
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
            with self._http.stream("GET", path, params=params, timeout=None) as response:
                if response.status_code >= 400:
                    response.read()
                    try:
                        message = response.json().get("message")
                    except ValueError:
                        message = response.text
                    raise ClientError(message, response.status_code)
                yield from response.iter_bytes()
        except httpx.ConnectError as e:
            raise ClientError(unreachable(self.base, e)) from None

    def close(self) -> None:
        self._http.close()


def unreachable(base: str, e: httpx.ConnectError) -> str:
    if "CERTIFICATE" in str(e) or "SSL" in str(e):
        return (f"cannot reach kade at {base}: its TLS certificate is not trusted ({e}); "
                "set KADE_CACERT to the CA certificate that signed it")
    return f"cannot reach kade at {base}: is `kade up` running? (set --api-addr or KADE_ADDR)"
