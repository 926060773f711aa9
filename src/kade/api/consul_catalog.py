"""The Consul HTTP API's discovery subset, served from the catalog view.

Shapes are Consul's (1.17) field for field where clients read them: py-consul, consul-template,
Traefik's consulCatalog provider and Prometheus' consul_sd parse these answers as they are.
Blocking queries (`?index=&wait=`) wait on the view's per-service index, from memory; every
answer, errors included, carries the X-Consul-* headers.
"""

from __future__ import annotations

import json
import random
import socket
import uuid
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response

from kade.api.closing import until_closing
from kade.api.consul_common import parse_index, parse_wait, set_headers
from kade.catalog.model import Catalog, CatalogNode, Check, Instance
from kade.catalog.view import CatalogView

CONSUL_VERSION = "1.17.0"  # the Consul release whose API shapes these answers follow

Build = Callable[[Catalog, int], Any]


def catalog_router(view: CatalogView, *, node_name: str | None = None) -> APIRouter:
    """Routes under /v1 for catalog, health, status and agent/self.

    `node_name` is the node this server presents itself as (agent/self); the host's name
    by default."""
    r = APIRouter(tags=["consul"])
    self_node = node_name or socket.gethostname()

    async def respond(request: Request, service: str | None, build: Build,
                      *, blocking: bool = True) -> Response:
        if service is not None:  # Consul matches service names ignoring case
            service = view.catalog.find_service(service) or service
        index = view.service_index(service)
        try:
            _check_dc(request, view.datacenter)
            _node_meta(request)  # reject a bad filter before waiting
            if request.query_params.get("filter"):
                # Better a clear refusal than an unfiltered answer taken for a filtered one.
                raise HTTPException(400, "filter expressions are not supported by kade; "
                                         "use ?tag= and ?node-meta=")
            if "consistent" in request.query_params:
                # Read-your-writes: answer only from a catalog that includes every write
                # committed before this request (Consul's leader round-trip).
                await view.sync()
            wanted = parse_index(request.query_params.get("index"))
            if blocking and wanted > 0:
                wait = parse_wait(request.query_params.get("wait"))
                wait += random.uniform(0, wait / 16)  # Consul's jitter: waiters spread out
                await until_closing(request, view.wait(service, wanted, wait))
            # Read the snapshot and its index together: no await between them.
            catalog, index = view.catalog, view.service_index(service)
            body = build(catalog, index)
        except HTTPException as e:
            return _text(str(e.detail), e.status_code, index)
        indent = 4 if "pretty" in request.query_params else None
        response = Response(json.dumps(body, indent=indent), media_type="application/json")
        set_headers(response, index)
        return response

    # -- catalog ----------------------------------------------------------------------

    @r.get("/v1/catalog/services")
    async def services(request: Request) -> Response:
        def build(cat: Catalog, _: int) -> dict[str, list[str]]:
            meta = _node_meta(request)
            if not meta:
                return {name: cat.service_tags(name) for name in cat.services}
            out: dict[str, list[str]] = {}
            for name, insts in cat.services.items():
                kept = [i for i in insts if _meta_ok(cat, i.node, meta)]
                if kept:
                    out[name] = sorted({t for i in kept for t in i.tags})
            return out

        return await respond(request, None, build)

    @r.get("/v1/catalog/service/{name}")
    async def catalog_service(name: str, request: Request) -> Response:
        tags = request.query_params.getlist("tag")

        def build(cat: Catalog, index: int) -> list[dict[str, Any]]:
            meta = _node_meta(request)
            name_ = cat.find_service(name) or name
            return [
                _catalog_entry(cat, inst, index)
                for inst in cat.instances(name_, tags=tags)
                if _meta_ok(cat, inst.node, meta)
            ]

        return await respond(request, name, build)

    @r.get("/v1/catalog/nodes")
    async def nodes(request: Request) -> Response:
        def build(cat: Catalog, index: int) -> list[dict[str, Any]]:
            meta = _node_meta(request)
            return [_node_json(cat, n, index) for n in cat.nodes.values()
                    if _meta_ok(cat, n.name, meta)]

        return await respond(request, None, build)

    @r.get("/v1/catalog/node/{node}")
    async def catalog_node(node: str, request: Request) -> Response:
        def build(cat: Catalog, index: int) -> dict[str, Any] | None:
            found = cat.nodes.get(node)
            if found is None:
                return None  # Consul answers `null` for a node it does not know
            return {
                "Node": _node_json(cat, found, index),
                "Services": {i.id: _service_json(i, index) for i in cat.node_instances(node)},
            }

        return await respond(request, None, build)

    @r.get("/v1/catalog/datacenters")
    async def datacenters(request: Request) -> Response:
        return await respond(request, None, lambda cat, _: [cat.datacenter], blocking=False)

    # -- health -----------------------------------------------------------------------

    @r.get("/v1/health/service/{name}")
    async def health_service(name: str, request: Request) -> Response:
        tags = request.query_params.getlist("tag")
        passing = _flag(request, "passing")

        def build(cat: Catalog, index: int) -> list[dict[str, Any]]:
            meta = _node_meta(request)
            name_ = cat.find_service(name) or name
            return [
                {
                    "Node": _node_json(cat, cat.nodes[inst.node], index),
                    "Service": _service_json(inst, index),
                    "Checks": [_serf_check(inst.node, index)]
                    + [_check_json(inst, c, index) for c in inst.checks],
                }
                for inst in cat.instances(name_, tags=tags, passing=passing)
                if _meta_ok(cat, inst.node, meta)
            ]

        return await respond(request, name, build)

    @r.get("/v1/health/checks/{name}")
    async def health_checks(name: str, request: Request) -> Response:
        def build(cat: Catalog, index: int) -> list[dict[str, Any]]:
            insts = cat.instances(cat.find_service(name) or name)
            return [_check_json(i, c, index) for i in insts for c in i.checks]

        return await respond(request, name, build)

    @r.get("/v1/health/node/{node}")
    async def health_node(node: str, request: Request) -> Response:
        def build(cat: Catalog, index: int) -> list[dict[str, Any]]:
            if node not in cat.nodes:
                return []
            return [_serf_check(node, index)] + [
                _check_json(i, c, index) for i in cat.node_instances(node) for c in i.checks
            ]

        return await respond(request, None, build)

    @r.get("/v1/health/state/{state}")
    async def health_state(state: str, request: Request) -> Response:
        if state not in ("any", "passing", "warning", "critical"):
            return _text(f"Bad state: {state}", 400, view.index)

        def build(cat: Catalog, index: int) -> list[dict[str, Any]]:
            out = [_serf_check(n, index) for n in cat.nodes] if state in ("any", "passing") else []
            for insts in cat.services.values():
                out += [_check_json(i, c, index) for i in insts for c in i.checks
                        if state == "any" or c.status == state]
            return out

        return await respond(request, None, build)

    # -- status and agent -------------------------------------------------------------

    @r.get("/v1/status/leader")
    async def leader(request: Request) -> Response:
        return await respond(request, None, lambda *_: _server_addr(request), blocking=False)

    @r.get("/v1/status/peers")
    async def peers(request: Request) -> Response:
        return await respond(request, None, lambda *_: [_server_addr(request)], blocking=False)

    @r.get("/v1/agent/self")
    async def agent_self(request: Request) -> Response:
        def build(cat: Catalog, _: int) -> dict[str, Any]:
            node = cat.nodes.get(self_node)
            addr = node.address if node else "127.0.0.1"
            return {
                "Config": {
                    "Datacenter": cat.datacenter,
                    "PrimaryDatacenter": cat.datacenter,
                    "NodeName": self_node,
                    "NodeID": _node_id(self_node),
                    "Server": True,
                    "Revision": "kade",
                    "Version": CONSUL_VERSION,
                },
                "Member": {"Name": self_node, "Addr": addr, "Port": 8301, "Status": 1,
                           "Tags": {"dc": cat.datacenter, "role": "consul", "build":
                                    CONSUL_VERSION}},
                "Meta": dict(node.meta) if node else {},
            }

        return await respond(request, None, build, blocking=False)

    return r


# -- request helpers ------------------------------------------------------------------


def _check_dc(request: Request, datacenter: str) -> None:
    dc = request.query_params.get("dc")
    if dc and dc != datacenter:
        raise HTTPException(500, "No path to datacenter")  # Consul's answer, word for word


def _flag(request: Request, name: str) -> bool:
    """Consul's boolean query parameters: present means true, unless it says false."""
    if name not in request.query_params:
        return False
    return request.query_params[name].lower() not in ("0", "false")


def _node_meta(request: Request) -> list[tuple[str, str]]:
    out = []
    for item in request.query_params.getlist("node-meta"):
        key, sep, value = item.partition(":")
        if not sep:
            raise HTTPException(400, f"node-meta: {item!r} is not key:value")
        out.append((key, value))
    return out


def _meta_ok(cat: Catalog, node: str, wanted: list[tuple[str, str]]) -> bool:
    if not wanted:
        return True
    found = cat.nodes.get(node)
    meta = dict(found.meta) if found else {}
    return all(meta.get(k) == v for k, v in wanted)


def _server_addr(request: Request) -> str:
    server = request.scope.get("server")
    host = server[0] if server else "127.0.0.1"
    return f"{host}:8300"  # Consul's server RPC port: clients only check it is non-empty


def _text(message: str, status: int, index: int) -> Response:
    response = Response(message, status_code=status, media_type="text/plain")
    set_headers(response, index)
    return response


# -- Consul's shapes --------------------------------------------------------------------


def _node_id(name: str) -> str:
    """A stable UUID per node name (Consul node IDs are UUIDs)."""
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{name}.node.kade"))


def _tagged(address: str) -> dict[str, str]:
    family = "ipv6" if ":" in address else "ipv4"
    return {"lan": address, f"lan_{family}": address, "wan": address, f"wan_{family}": address}


def _node_json(cat: Catalog, node: CatalogNode, index: int) -> dict[str, Any]:
    return {
        "ID": _node_id(node.name),
        "Node": node.name,
        "Address": node.address,
        "Datacenter": cat.datacenter,
        "TaggedAddresses": _tagged(node.address),
        "Meta": {"consul-network-segment": "", **dict(node.meta)},
        "CreateIndex": index,
        "ModifyIndex": index,
    }


def _service_tagged(inst: Instance) -> dict[str, dict[str, Any]]:
    family = "ipv6" if ":" in inst.address else "ipv4"
    where = {"Address": inst.address, "Port": inst.port}
    return {f"lan_{family}": where, f"wan_{family}": where}


def _service_json(inst: Instance, index: int) -> dict[str, Any]:
    return {
        "Kind": "",
        "ID": inst.id,
        "Service": inst.service,
        "Tags": list(inst.tags),
        "Address": inst.address,
        "TaggedAddresses": _service_tagged(inst),
        "Meta": dict(inst.meta),
        "Port": inst.port,
        "Weights": {"Passing": 1, "Warning": 1},
        "EnableTagOverride": False,
        "Proxy": {"Mode": "", "MeshGateway": {}, "Expose": {}},
        "Connect": {},
        "PeerName": "",
        "CreateIndex": index,
        "ModifyIndex": index,
    }


def _catalog_entry(cat: Catalog, inst: Instance, index: int) -> dict[str, Any]:
    node = cat.nodes[inst.node]
    return {
        "ID": _node_id(node.name),
        "Node": node.name,
        "Address": node.address,
        "Datacenter": cat.datacenter,
        "TaggedAddresses": _tagged(node.address),
        "NodeMeta": {"consul-network-segment": "", **dict(node.meta)},
        "ServiceKind": "",
        "ServiceID": inst.id,
        "ServiceName": inst.service,
        "ServiceTags": list(inst.tags),
        "ServiceAddress": inst.address,
        "ServiceTaggedAddresses": _service_tagged(inst),
        "ServiceWeights": {"Passing": 1, "Warning": 1},
        "ServiceMeta": dict(inst.meta),
        "ServicePort": inst.port,
        "ServiceSocketPath": "",
        "ServiceEnableTagOverride": False,
        "ServiceProxy": {"Mode": "", "MeshGateway": {}, "Expose": {}},
        "ServiceConnect": {},
        "CreateIndex": index,
        "ModifyIndex": index,
    }


def _check_json(inst: Instance, check: Check, index: int) -> dict[str, Any]:
    return {
        "Node": inst.node,
        "CheckID": check.id,
        "Name": check.name,
        "Status": check.status,
        "Notes": "",
        "Output": check.output,
        "ServiceID": inst.id,
        "ServiceName": inst.service,
        "ServiceTags": list(inst.tags),
        "Type": check.type,
        "Interval": "",
        "Timeout": "",
        "ExposedPort": 0,
        "Definition": {},
        "CreateIndex": index,
        "ModifyIndex": index,
    }


def _serf_check(node: str, index: int) -> dict[str, Any]:
    """The node-level check every Consul health entry starts with."""
    return {
        "Node": node,
        "CheckID": "serfHealth",
        "Name": "Serf Health Status",
        "Status": "passing",
        "Notes": "",
        "Output": "Agent alive and reachable",
        "ServiceID": "",
        "ServiceName": "",
        "ServiceTags": [],
        "Type": "",
        "Interval": "",
        "Timeout": "",
        "ExposedPort": 0,
        "Definition": {},
        "CreateIndex": index,
        "ModifyIndex": index,
    }
