"""The lookup functions of a render: they read its input snapshot and record what they read,
so that a later change re-renders only the templates that read it."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kade.templates.godata import Scratch
from kade.templates.values import FunctionError, arg_str

ALL_SERVICES = "*"  # in Reads.services: the render listed every service (`services`)


@dataclass(frozen=True, slots=True)
class ServiceEndpoint:
    """One healthy endpoint of a service, as `service "name"` returns it."""

    name: str
    id: str
    address: str
    port: int
    node: str = ""
    node_address: str = ""
    tags: tuple[str, ...] = ()
    meta: tuple[tuple[str, str], ...] = ()

    def as_template(self) -> dict[str, Any]:
        """consul-template's field names, so `.Address` and `.Port` work unchanged."""
        return {
            "Name": self.name,
            "ID": self.id,
            "Address": self.address,
            "Port": self.port,
            "Node": self.node,
            "NodeAddress": self.node_address or self.address,
            "Tags": list(self.tags),
            "ServiceMeta": dict(self.meta),
            "Status": "passing",
        }


@dataclass(frozen=True, slots=True)
class Reads:
    """What a render read: exact keys, key prefixes (`""` = all, else ending in `/`), services
    (`ALL_SERVICES` when it listed them all)."""

    keys: frozenset[str] = frozenset()
    prefixes: frozenset[str] = frozenset()
    services: frozenset[str] = frozenset()

    def touches(self, keys: Iterable[str] = (), services: Iterable[str] = ()) -> bool:
        """Whether a change of any of `keys` (user KV keys) or `services` affects the render."""
        for k in keys:
            if k in self.keys or any(k.startswith(p) for p in self.prefixes):
                return True
        if ALL_SERVICES in self.services:
            return any(True for _ in services)
        return any(s in self.services for s in services)

    def __or__(self, other: Reads) -> Reads:
        return Reads(self.keys | other.keys, self.prefixes | other.prefixes,
                     self.services | other.services)


def normalize_key(path: str) -> str:
    return path.lstrip("/")


def normalize_prefix(prefix: str) -> str:
    """`a/b` and `a/b/` both mean the directory `a/b/` (consul-template matches bare prefixes,
    which would also list `a/bc`; a directory is what every example means)."""
    p = prefix.lstrip("/")
    return p if p == "" or p.endswith("/") else p + "/"


def _text(value: bytes) -> str:
    return value.decode("utf-8", errors="replace")


_SERVICE = re.compile(
    r"^(?:(?P<tag>[\w=:.\-]+)\.)?(?P<name>[\w\-]+)(?:@(?P<dc>[\w.\-]+))?$"
)


@dataclass
class Lookups:
    """The lookup functions of one render, bound to its input snapshot."""

    kv: Mapping[str, bytes]
    services: Mapping[str, Sequence[ServiceEndpoint]]
    env_vars: Mapping[str, str]
    keys_read: set[str] = field(default_factory=set)
    prefixes_read: set[str] = field(default_factory=set)
    services_read: set[str] = field(default_factory=set)
    missing: list[str] = field(default_factory=list)
    missing_line: int | None = None  # where the first missing key was read
    locate: Callable[[], int | None] | None = None  # the template line being rendered
    _sorted: list[str] | None = None
    _dots: list[Any] = field(default_factory=list)  # the data of the defines running

    def reads(self) -> Reads:
        return Reads(frozenset(self.keys_read), frozenset(self.prefixes_read),
                     frozenset(self.services_read))

    def key(self, path: str) -> str:
        """The value of `path`; a missing key stops the task from starting (recorded here and
        raised once the render ends, so that every missing key is named at once)."""
        k = normalize_key(arg_str("key", path))
        self.keys_read.add(k)
        value = self.kv.get(k)
        if value is None:
            if not self.missing and self.locate is not None:
                self.missing_line = self.locate()
            if k not in self.missing:
                self.missing.append(k)
            return ""
        return _text(value)

    def key_or_default(self, path: str, default: Any) -> Any:
        k = normalize_key(arg_str("keyOrDefault", path))
        self.keys_read.add(k)
        value = self.kv.get(k)
        return default if not value else _text(value)  # empty: the default, as upstream

    def key_exists(self, path: str) -> bool:
        k = normalize_key(arg_str("keyExists", path))
        self.keys_read.add(k)
        return k in self.kv

    def _under(self, prefix: str) -> tuple[str, list[str]]:
        p = normalize_prefix(arg_str("tree", prefix))
        self.prefixes_read.add(p)
        if self._sorted is None:
            self._sorted = sorted(self.kv)
        return p, [k for k in self._sorted if k.startswith(p) and not k.endswith("/")]

    def tree(self, prefix: str) -> list[dict[str, Any]]:
        """Every key under `prefix`, recursively, with `.Key` relative to it."""
        p, keys = self._under(prefix)
        return [_pair(k, p, self.kv[k]) for k in keys]

    def ls(self, prefix: str) -> list[dict[str, Any]]:
        """The keys directly under `prefix` (not those in sub-directories)."""
        p, keys = self._under(prefix)
        return [_pair(k, p, self.kv[k]) for k in keys if "/" not in k[len(p):]]

    def service(self, query: str, *_options: Any) -> list[dict[str, Any]]:
        """Healthy endpoints of `name` or `tag.name` (`@dc` is accepted: there is one)."""
        m = _SERVICE.match(arg_str("service", query))
        if not m:
            raise FunctionError(f"service: {query!r} is not a service name ([tag.]name[@dc])")
        name, tag = m.group("name"), m.group("tag")
        self.services_read.add(name)
        found = [s for s in self.services.get(name, ()) if tag is None or tag in s.tags]
        found.sort(key=lambda s: (s.node, s.id))
        return [s.as_template() for s in found]

    def services_list(self, *_dc: Any) -> list[dict[str, Any]]:
        """Every service of the catalog by name, with the tags of its healthy endpoints
        (consul-template's `services`: `.Name`, `.Tags`); `@dc` is accepted, there is one."""
        self.services_read.add(ALL_SERVICES)
        return [{"Name": name,
                 "Tags": sorted({t for e in self.services[name] for t in e.tags})}
                for name in sorted(self.services)]

    def env(self, name: str) -> str:
        """A variable of the task's environment ("" when unset); never the host's."""
        return self.env_vars.get(arg_str("env", name), "")

    def must_env(self, name: str) -> str:
        """The variable; unset or empty is an error (as consul-template)."""
        value = self.env_vars.get(arg_str("mustEnv", name))
        if not value:
            raise FunctionError(f"mustEnv: the environment variable {name} is not set or "
                                "empty")
        return value

    def env_or_default(self, name: str, default: Any) -> Any:
        """The variable, or `default` when it is unset (set to "" is "", as consul-template)."""
        value = self.env_vars.get(arg_str("envOrDefault", name))
        return default if value is None else value

    def functions(self) -> dict[str, Any]:
        return {
            "key": self.key, "keyOrDefault": self.key_or_default, "keyExists": self.key_exists,
            "ls": self.ls, "safeLs": self.ls, "tree": self.tree, "safeTree": self.tree,
            "service": self.service, "services": self.services_list, "env": self.env,
            "envOrDefault": self.env_or_default, "mustEnv": self.must_env,
            "scratch": Scratch(),
            "_tpl": self.run_define, "_tdot": lambda: self._dots[-1],
        }

    def run_define(self, block: Callable[[], Any], data: Any) -> str:
        """Run a define (a block of the compiled template) with `data` as its dot."""
        self._dots.append(data)
        try:
            return str(block())
        finally:
            self._dots.pop()


def _pair(key: str, prefix: str, value: bytes) -> dict[str, Any]:
    return {"Key": key[len(prefix):], "Path": key, "Value": _text(value)}
