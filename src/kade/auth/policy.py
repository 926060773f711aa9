"""Which permission each endpoint needs, and what each role grants. Pure: plain values in,
a decision out, so the whole table is unit-tested without a server.

Roles, from least to most:
- `read`: everything that only looks (apps, tasks, logs, events, KV reads, Consul's catalog);
  environment values of apps are hidden from it.
- `deploy`: `read`, plus changing apps, tasks, deployments and KV, and posting domain events
  — within the token's scope (`apps` globs such as `/shop/*`, `kv` key prefixes) when it
  has one.
- `node`: `read`, plus what a router or agent reports (routing acknowledgements) and the
  routing table with its certificates. Made by kade for its own processes.
- `admin`: everything, including tokens and shutting kade down.

An endpoint missing from the table needs `admin`: a new endpoint is closed until someone
decides who may use it.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Any, Literal

Role = Literal["read", "deploy", "node", "admin"]
Permission = Literal["public", "read", "deploy", "node", "admin"]
ROLES: tuple[Role, ...] = ("read", "deploy", "node", "admin")

PERMISSIONS: dict[Role, frozenset[Permission]] = {
    "read": frozenset({"public", "read"}),
    "deploy": frozenset({"public", "read", "deploy"}),
    "node": frozenset({"public", "read", "node"}),
    "admin": frozenset({"public", "read", "deploy", "node", "admin"}),
}

REDACTED = "<hidden: needs a deploy token>"

_READ_METHODS = frozenset({"GET", "HEAD"})
_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

# (methods, path pattern, permission): the first match wins.
_TABLE: list[tuple[frozenset[str], re.Pattern[str], Permission]] = [
    (_READ_METHODS, re.compile(r"/ping"), "public"),
    # Consul answers these without a token (clients use them to find the leader)
    (_READ_METHODS, re.compile(r"/v1/status/(leader|peers)|/v1/catalog/datacenters"), "public"),
    # the web interface: signing in and out, and its static files, are open (signing out
    # must work for a session that has already ended); every page needs `read`
    (_READ_METHODS | frozenset({"POST"}), re.compile(r"/ui/login"), "public"),
    (frozenset({"POST"}), re.compile(r"/ui/logout"), "public"),
    (_READ_METHODS, re.compile(r"/ui/static/.*"), "public"),
    (_READ_METHODS, re.compile(r"/ui(/.*)?"), "read"),
    # a one-time sign-in link (`kade ui`) gives a session of the token that asks for it
    (frozenset({"POST"}), re.compile(r"/v1/ui/login-links"), "read"),
    # tokens and shutting down: admin only, reads included (token list shows who has access)
    (_READ_METHODS | _WRITE_METHODS, re.compile(r"/v1/tokens(/.*)?"), "admin"),
    (_WRITE_METHODS, re.compile(r"/v1/admin/.*"), "admin"),
    # what routers and agents report, and the table with its certificates
    (frozenset({"PUT"}), re.compile(r"/v1/router/ack"), "node"),
    (_READ_METHODS, re.compile(r"/v1/router/table"), "node"),
    # the store as agents of a cluster follow it: only the prefixes of STORE_READ/STORE_WRITE
    (_READ_METHODS | _WRITE_METHODS, re.compile(r"/v1/store/.*"), "node"),
    # the cluster-wide alert rules: operators (reading them is `read`, below)
    (_WRITE_METHODS, re.compile(r"/v1/alert-rules(/.*)?"), "admin"),
    # eligibility and drains of nodes: operators (reading nodes is `read`, below)
    (_WRITE_METHODS, re.compile(r"/v1/nodes(/.*)?"), "admin"),
    # changes of apps, tasks, deployments and KV (kade's API and Marathon's /v2)
    (_WRITE_METHODS, re.compile(r"/v1/(apps|tasks|deployments)(/.*)?"), "deploy"),
    (_WRITE_METHODS, re.compile(r"/v2/(apps|groups|tasks|deployments|queue)(/.*)?"), "deploy"),
    (frozenset({"PUT", "DELETE"}), re.compile(r"/v1/kv/.*"), "deploy"),
    (frozenset({"PUT", "POST"}), re.compile(r"/v1/txn"), "deploy"),
    # domain events posted by apps without a broker
    (frozenset({"POST"}), re.compile(r"/v1/domain-events"), "deploy"),
    # Prometheus' query API and the exposition (Grafana and promtool post their queries)
    (_READ_METHODS | frozenset({"POST"}),
     re.compile(r"/api/v1/(query|query_range|series|labels)"), "read"),
    (_READ_METHODS, re.compile(r"/api/v1/(label/[^/]+/values|metadata|status/buildinfo)|"
                               r"/metrics"), "read"),
    # everything else that only reads: kade's own API, Consul's, the OpenAPI description
    (_READ_METHODS, re.compile(r"/v[12]/.*|/openapi\.json|/docs(/.*)?|/redoc"), "read"),
]


# What an agent reads and writes through the store API (`/v1/store/*`) when it runs on a
# node of a cluster: what it needs to run its tasks, render their templates, and serve DNS and
# routes, and the servers' public keys to check the requests they sign (kade.auth.assertions);
# never tokens. It writes only what an agent reports (`kade.model`'s writers table).
STORE_READ: tuple[str, ...] = (
    "apps/", "versions/", "tasks/", "status/", "nodes/", "alive/", "nodectl/", "queue/", "kv/",
    "routers/", "deployments/", "stable/", "serverkeys/",
)
STORE_WRITE: tuple[str, ...] = ("status/", "nodes/", "alive/")


def store_read_scope(prefix: str) -> tuple[str, ...] | None:
    """The readable prefixes a watch or range of `prefix` covers: `(prefix,)` when it lies
    within one, the readable ones under it when it is wider (the answer is filtered to
    them), None when it reaches nothing readable."""
    if any(prefix.startswith(p) for p in STORE_READ):
        return (prefix,)
    under = tuple(p for p in STORE_READ if p.startswith(prefix))
    return under or None


def store_writable(key: str) -> bool:
    return any(key.startswith(p) and len(key) > len(p) for p in STORE_WRITE)


def node_of_key(key: str) -> str | None:
    """The node a node-level key belongs to (`nodes/<n>`, `alive/<n>`); None for others."""
    for prefix in ("nodes/", "alive/"):
        if key.startswith(prefix):
            return key[len(prefix):]
    return None


def needed_permission(method: str, path: str) -> Permission:
    for methods, pattern, permission in _TABLE:
        if method in methods and pattern.fullmatch(path):
            return permission
    return "admin"


@dataclass(frozen=True)
class Principal:
    """Who sent a request: a token's id, role and scope."""

    token_id: str
    role: Role
    apps: tuple[str, ...] | None = None  # app id globs; None = every app
    kv: tuple[str, ...] | None = None  # KV key prefixes it may write; None = see can_write_kv
    node: str | None = None  # a node token bound to one node: it reports for that node only

    def has(self, permission: Permission) -> bool:
        return permission in PERMISSIONS[self.role]

    def describe(self) -> str:
        scope = f", apps {', '.join(self.apps)}" if self.apps is not None else ""
        return f"token {self.token_id} (role {self.role}{scope})"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    status: int = 200
    message: str = ""


def decide(principal: Principal | None, method: str, path: str) -> Decision:
    needed = needed_permission(method, path)
    if needed == "public":
        return Decision(True)
    if principal is None:
        return Decision(False, 401, "authentication required: send a token as "
                        "`Authorization: Bearer <token>` (`kade token create` makes one)")
    if not principal.has(needed):
        return Decision(False, 403, f"{principal.describe()} may not {method} {path}: "
                        f"that needs a {needed} token")
    return Decision(True)


def can_deploy_app(principal: Principal | None, app_id: str) -> bool:
    """May this principal change (and see the environment of) the app `app_id`?"""
    if principal is None or not principal.has("deploy"):
        return False
    if principal.apps is None:
        return True
    app_id = "/" + app_id.strip("/")
    return any(fnmatch.fnmatchcase(app_id, "/" + glob.strip("/")) for glob in principal.apps)


def can_write_kv(principal: Principal | None, key: str) -> bool:
    """KV writes: an unscoped deploy token writes every key; a token scoped to apps writes
    only under its `kv` prefixes (none given: no key)."""
    if principal is None or not principal.has("deploy"):
        return False
    if principal.kv is not None:
        return any(key.startswith(prefix) for prefix in principal.kv)
    return principal.apps is None


def redact_env(app: dict[str, Any], principal: Principal | None) -> dict[str, Any]:
    """An app in Marathon's shape with its `env` values hidden unless the principal may
    deploy it: environment variables are where secrets live."""
    env = app.get("env")
    if not isinstance(env, dict) or not env:
        return app
    if can_deploy_app(principal, str(app.get("id", ""))):
        return app
    return {**app, "env": {name: REDACTED for name in env}}
