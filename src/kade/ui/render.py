"""Rendering pages and their live regions.

A page is one template; a region that changes while the page is open is a block of it, marked
`data-live="<block>"` in the page with the event types (of `/v1/events`) that change it. The
browser asks the page again with `?fragment=<block>` and gets that block alone.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response

import kade
from kade.api.security import principal_of
from kade.auth.policy import PERMISSIONS

ENV = Environment(loader=PackageLoader("kade.ui", "templates"),
                  autoescape=select_autoescape(default=True), undefined=StrictUndefined,
                  trim_blocks=True, lstrip_blocks=True)
# pages are never cached: what they show is the state at the moment they were asked
NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "same-origin", "X-Frame-Options": "DENY",
            "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                                       "style-src 'self'; script-src 'self'; "
                                       "frame-ancestors 'none'; form-action 'self'"}


def ago(then: float | None, now: float | None = None) -> str:
    """`3m ago`, `2h ago`: how long since `then` (epoch seconds)."""
    if then is None:
        return "–"
    seconds = max((now if now is not None else time.time()) - then, 0)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return f"{int(seconds)}s ago"


def stamp(then: float | None) -> str:
    """An ISO time in UTC to the second, for `<time datetime>` and titles."""
    if then is None:
        return ""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(then))


def size(n: float | None) -> str:
    if n is None or not math.isfinite(n):
        return "–"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


ENV.filters.update(ago=ago, stamp=stamp, size=size)
ENV.globals.update(version=kade.__version__)
# the shared macros (templates/_macros.html) are globals: a block rendered alone sees them
_MACROS = ENV.get_template("_macros.html").make_module()
ENV.globals.update({k: v for k, v in vars(_MACROS).items() if not k.startswith("_")})


def permissions(request: Request) -> frozenset[str]:
    who = principal_of(request)
    return PERMISSIONS[who.role] if who is not None else frozenset({"public"})


def page(request: Request, name: str, context: Mapping[str, Any], *,
         title: str, nav: str, status: int = 200) -> Response:
    """The page, or one block of it when asked with `?fragment=<block>`."""
    template = ENV.get_template(name)
    who = principal_of(request)
    values = {**context, "title": title, "nav": nav, "request": request,
              "can": permissions(request), "who": who.describe() if who else "",
              "path": request.url.path}
    block = request.query_params.get("fragment")
    if block is not None:
        render = template.blocks.get(block) if block.startswith("live_") else None
        if render is None:
            # plain text: the name comes from the address and is never read as markup
            return PlainTextResponse(f"no live region {block[:80]!r} on this page",
                                     status_code=400, headers=NO_STORE)
        body = "".join(render(template.new_context(values)))
        return HTMLResponse(body, headers=NO_STORE)
    return HTMLResponse(template.render(values), status_code=status, headers=NO_STORE)
