"""App ids contain slashes, so app routes take the rest of the path and split off a trailing
action (`/scale`, `/restart`, `/versions[/<v>]`, …), as Marathon does: one split for kade's
API, Marathon's `/v2`, and the front door's scope check."""

from __future__ import annotations

from kade.spec import normalize_id

ACTIONS = ("scale", "restart", "rollback", "versions", "diff", "tasks", "plan")


def split_app_path(path: str) -> tuple[str, str, str]:
    """`shop/web/versions/2026-…` → ("/shop/web", "versions", "2026-…")."""
    parts = [p for p in path.split("/") if p]
    for i in range(len(parts) - 1, 0, -1):
        if parts[i] in ACTIONS:
            return normalize_id("/".join(parts[:i])), parts[i], "/".join(parts[i + 1:])
    return normalize_id("/".join(parts)), "", ""
