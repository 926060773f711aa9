"""The KV page of the web interface: `/ui/kv/<prefix>/` browses the tree as folders,
`/ui/kv/<key>` shows one key and edits it, `/ui/kv-export/<prefix>` downloads a prefix.

Reading is done here from the store; every write goes from the browser to Consul's KV API
(`PUT /v1/kv/<key>?cas=<ModifyIndex>`, kade.api.consul_kv), so an edit made from a page read
before someone else's change is refused by the store's compare-and-swap, and the page shows
the value that won. The export is `kade kv export`'s: the tree under the prefix as nested
JSON or YAML, keys relative to the prefix, flags left out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import quote

import yaml
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from kade import model
from kade.api.logs import attachment
from kade.store.base import Entry, Store
from kade.templates.encode import export_tree
from kade.templates.kvdata import MAX_KEY_BYTES, decode_kv_value
from kade.ui.render import page

MAX_SHOWN = 500  # folders and keys a folder lists; the filter narrows, the export has all
MAX_EDIT_BYTES = 256 * 1024  # larger values are shown, not edited in the page


@dataclass(frozen=True)
class Child:
    name: str  # relative to the folder; a folder's ends with "/"
    path: str  # the full key (or prefix)
    folder: bool
    size: int = 0
    index: int = 0


def children(prefix: str, keys: list[tuple[str, int, int]]) -> list[Child]:
    """The folders and keys directly under `prefix` ("" or ending with "/"), from the
    (key, size, ModifyIndex) of every key under it: folders first, then keys, by name."""
    folders: dict[str, Child] = {}
    leaves: list[Child] = []
    for key, size, index in keys:
        rest = key[len(prefix):]
        if "/" in rest:
            name = rest[:rest.index("/") + 1]
            folders.setdefault(name, Child(name, prefix + name, True))
        elif rest:
            leaves.append(Child(rest, key, False, size, index))
    return sorted(folders.values(), key=lambda c: c.name) + sorted(leaves, key=lambda c: c.name)


def crumbs(path: str) -> list[tuple[str, str]]:
    """(label, href) for each folder above and at `path`: `a/b/c` → kv, a/, b/, c."""
    out = [("kv", "/ui/kv/")]
    parts = path.split("/")
    for i, part in enumerate(parts):
        if part:
            folder = i < len(parts) - 1
            out.append((part + ("/" if folder else ""),
                        "/ui/kv/" + quote("/".join(parts[:i + 1])) + ("/" if folder else "")))
    return out


def text_of(raw: bytes) -> str | None:
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return None


def _check(path: str) -> str:
    path = path.lstrip("/")
    if len(path.encode()) > MAX_KEY_BYTES or "\x00" in path:
        raise HTTPException(400, f"key: at most {MAX_KEY_BYTES} bytes, without NUL")
    return path


def kv_pages_router(store: Store) -> APIRouter:
    r = APIRouter(include_in_schema=False)

    async def under(prefix: str) -> list[Entry]:
        entries, _ = await store.range(model.KV + prefix)
        return entries

    @r.get("/ui/kv")
    @r.get("/ui/kv/{path:path}")
    async def kv(request: Request, path: str = "") -> Response:
        path = _check(path)
        asked = request.query_params.get("key", "").strip()
        if asked:  # the "new key" form: its page (a key not there yet is created on save)
            return RedirectResponse("/ui/kv/" + quote(_check(asked)), status_code=303)
        entry = await store.get(model.KV + path) if path and not path.endswith("/") else None
        if entry is not None:
            value, flags = decode_kv_value(entry.value)
            parent = path[:path.rfind("/") + 1]
            return page(request, "kv_key.html", {
                "key": path, "text": text_of(value) if len(value) <= MAX_EDIT_BYTES else None,
                "size": len(value), "flags": flags, "index": entry.mod_revision,
                "created": entry.create_revision, "crumbs": crumbs(path),
                "parent": "/ui/kv/" + quote(parent)}, title=f"KV {path}", nav="kv")
        folder = path if not path or path.endswith("/") else path + "/"
        entries = await under(folder)
        if path and not path.endswith("/") and not entries:  # no such key: create it
            return page(request, "kv_key.html", {
                "key": path, "text": "", "size": 0, "flags": 0, "index": 0, "created": 0,
                "crumbs": crumbs(path), "parent": "/ui/kv/" + quote(path[:path.rfind("/") + 1])},
                title=f"KV {path}", nav="kv")
        listed = children(folder, [(e.key[len(model.KV):], len(decode_kv_value(e.value)[0]),
                                    e.mod_revision)
                                   for e in entries])
        return page(request, "kv.html", {
            "folder": folder, "children": listed[:MAX_SHOWN], "more": len(listed) > MAX_SHOWN,
            "crumbs": crumbs(folder)}, title=f"KV {folder}" if folder else "KV", nav="kv")

    @r.get("/ui/kv-export")
    @r.get("/ui/kv-export/{prefix:path}")
    async def export(prefix: str = "", format: str = "json") -> Response:
        if format not in ("json", "yaml"):
            raise HTTPException(400, f"format: {format!r} is not json or yaml")
        prefix = _check(prefix)
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        pairs = [(e.key[len(model.KV):], decode_kv_value(e.value)[0])
                 for e in await under(prefix)]
        try:
            tree = export_tree(prefix, pairs)
        except ValueError as e:
            raise HTTPException(422, str(e)) from None
        if format == "json":
            body = json.dumps(tree, indent=2, ensure_ascii=False) + "\n"
        else:
            body = (yaml.safe_dump(tree, default_flow_style=False, sort_keys=True,
                                   allow_unicode=True) if tree else "{}\n")
        return Response(body, media_type="application/json" if format == "json"
                        else "application/yaml",
                        headers={"Content-Disposition": attachment(prefix or "kv",
                                                                   suffix=format),
                                 "Cache-Control": "no-store",
                                 "X-Content-Type-Options": "nosniff"})

    return r
