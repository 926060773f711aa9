"""Certificates for the router's HTTPS entrypoint: names, SNI choice, refusals; the routes
that ask for HTTPS; what the control plane sends a router that asks for certificates."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kade import model
from kade.api.routing import TLS_PREFIX, tls_material
from kade.router.routes import build_table
from kade.router.tls import (
    CertError,
    CertStore,
    load_dir,
    load_files,
    load_pem,
    remote_certificates,
)
from kade.spec import parse_app
from kade.store import SqliteStore
from kade.templates.kvdata import encode_kv_value


def self_signed(*names: str, cn: str | None = None) -> tuple[str, str]:
    """A certificate (PEM) for `names` and its key (PEM); its own issuer, named after the
    first name (clients find a trusted issuer by name)."""
    cn = cn or f"kade test {names[0] if names else ''}"
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(days=1))
               .not_valid_after(now + datetime.timedelta(days=30)))
    if names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
    cert = builder.sign(key, hashes.SHA256())
    return (cert.public_bytes(serialization.Encoding.PEM).decode(),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()).decode())


def write_pair(directory: Path, name: str, *names: str) -> tuple[Path, Path]:
    cert, key = self_signed(*names)
    (directory / f"{name}.crt").write_text(cert)
    (directory / f"{name}.key").write_text(key)
    return directory / f"{name}.crt", directory / f"{name}.key"


def test_sni_picks_exact_then_wildcard_then_default(tmp_path: Path) -> None:
    www = load_files(*write_pair(tmp_path, "www", "www.localhost", "WWW.example"))
    apps = load_files(*write_pair(tmp_path, "apps", "*.apps.localhost"))
    store = CertStore([www, apps])
    assert www.names == {"www.localhost", "www.example"}
    assert store.select("www.localhost") is www.context
    assert store.select("WWW.Example.") is www.context
    assert store.select("shop.apps.localhost") is apps.context
    assert store.select("a.shop.apps.localhost") is www.context  # one label only: the default
    assert store.select(None) is www.context  # no SNI: the first file's
    kv_cert, kv_key = self_signed("api.localhost")
    certs, default, problems = remote_certificates(
        [{"name": "default", "cert": kv_cert, "key": kv_key}])
    assert problems == []
    store.replace_remote(certs, default)
    assert store.select("api.localhost") is certs[0].context
    assert store.select("nothing.localhost") is certs[0].context  # kv `default` wins
    assert store.select("www.localhost") is www.context


def test_a_certificate_without_names_is_known_by_its_common_name(tmp_path: Path) -> None:
    cert, key = self_signed(cn="legacy.localhost")
    assert load_pem(cert, key, "kv:legacy").names == {"legacy.localhost"}


def test_unusable_certificates_are_named(tmp_path: Path) -> None:
    cert, _ = self_signed("a.localhost")
    _, other_key = self_signed("b.localhost")
    with pytest.raises(CertError, match="kv:a: the certificate and key cannot be used"):
        load_pem(cert, other_key, "kv:a")
    with pytest.raises(CertError, match="kv:b: not a PEM certificate"):
        load_pem("nonsense", other_key, "kv:b")
    lonely = tmp_path / "lonely.crt"
    lonely.write_text(cert)
    with pytest.raises(CertError, match=r"lonely.crt: no key beside it \(lonely.key\)"):
        load_dir(tmp_path)
    certs, default, problems = remote_certificates(
        [{"name": "a", "cert": cert, "key": other_key}, {"name": "half", "cert": cert}])
    assert certs == [] and default is None
    assert problems[0].startswith("kv:a: the certificate and key cannot be used")
    assert problems[1] == "kv:half: needs both cert and key"


def test_no_certificate_no_default() -> None:
    assert CertStore().select("www.localhost") is None


def test_routes_that_ask_for_https() -> None:
    base = {"container": {"docker": {"image": "kade/site:1"}}}
    a = parse_app({**base, "id": "/a", "routes": [{"rule": "Host(`a.localhost`)", "tls": True}],
                   "labels": {"traefik.http.routers.al.rule": "Host(`al.localhost`)",
                              "traefik.http.routers.al.tls": "true",
                              "traefik.http.routers.ws.rule": "Host(`ws.localhost`)",
                              "traefik.http.routers.ws.entrypoints": "websecure",
                              "traefik.http.routers.both.rule": "Host(`b.localhost`)",
                              "traefik.http.routers.both.entrypoints": "web,websecure"}}).app
    table, errors = build_table({"/a": a}, {}, 1)
    assert errors == []
    tls = {r["name"]: r.get("tls", False) for r in table["routers"]}
    assert tls == {"a": True, "al": True, "ws": True, "both": False}


async def test_the_control_plane_sends_complete_pairs(store: SqliteStore) -> None:
    cert, key = self_signed("www.localhost")
    empty = await tls_material(store)
    assert empty["certificates"] == []
    await store.put(TLS_PREFIX + "www/cert", encode_kv_value(cert.encode()))
    await store.put(TLS_PREFIX + "www/key", encode_kv_value(key.encode()))
    await store.put(TLS_PREFIX + "half/cert", encode_kv_value(cert.encode()))
    await store.put(TLS_PREFIX + "www/notes", encode_kv_value(b"ignored"))
    await store.put(model.KV + "kade/other", encode_kv_value(b"not tls"))
    got = await tls_material(store)
    assert got["certificates"] == [{"name": "www", "cert": cert, "key": key}]
    assert got["index"] > empty["index"]


@pytest.mark.timeout(30)
async def test_a_router_asking_for_certificates_is_woken_by_a_new_one(
        store: SqliteStore) -> None:
    import asyncio
    from typing import Any, cast

    import httpx
    from fastapi import FastAPI

    from kade.api.routing import Routing, routing_router

    routing = Routing(store, cast(Any, None))  # the catalog is not needed to serve the table
    app = FastAPI()
    app.include_router(routing_router(routing))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://api") as c:
        plain = (await c.get("/v1/router/table")).json()
        assert "tls" not in plain  # a router without HTTPS never receives keys
        first = (await c.get("/v1/router/table", params={"tlsIndex": "0"})).json()
        assert first["tls"]["certificates"] == []
        cert, key = self_signed("www.localhost")

        async def add_certificate() -> None:
            await asyncio.sleep(0.2)
            await store.put(TLS_PREFIX + "www/key", encode_kv_value(key.encode()))
            await store.put(TLS_PREFIX + "www/cert", encode_kv_value(cert.encode()))

        writer = asyncio.create_task(add_certificate())
        # the table itself does not change: only the certificates end the wait (of 300 s)
        got = (await c.get("/v1/router/table", params={
            "index": "1", "wait": "300s", "tlsIndex": str(first["tls"]["index"])})).json()
        await writer
        if not got["tls"]["certificates"]:  # woken by the key alone: ask again
            got = (await c.get("/v1/router/table", params={
                "index": "1", "wait": "300s", "tlsIndex": str(got["tls"]["index"])})).json()
        assert got["tls"]["certificates"] == [{"name": "www", "cert": cert, "key": key}]
