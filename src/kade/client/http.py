"""Synchronous HTTP client of the API. Errors carry the API's own message."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import httpx

DEFAULT_ADDR = "127.0.0.1:7400"


def api_url(addr: str | None = None) -> str:
    addr = addr or os.environ.get("KADE_ADDR") or DEFAULT_ADDR
    return addr if addr.startswith(("http://", "https://")) else f"http://{addr}"


class ClientError(Exception):
    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class Client:
    def __init__(self, addr: str | None = None, timeout: float = 30.0) -> None:
        self.base = api_url(addr)
        self._http = httpx.Client(base_url=self.base, timeout=timeout)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.ConnectError:
            raise ClientError(
                f"cannot reach kade at {self.base}: is `kade up` running? "
                "(set --api-addr or KADE_ADDR)"
            ) from None
        except httpx.HTTPError as e:
            raise ClientError(f"request to {self.base}{path} failed: {e}") from None
        if response.status_code >= 400:
            try:
                message = response.json().get("message") or response.text
            except ValueError:
                message = response.text
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
        except httpx.ConnectError:
            raise ClientError(f"cannot reach kade at {self.base}") from None

    def close(self) -> None:
        self._http.close()
