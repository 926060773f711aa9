"""Signing in to the web interface: the permission table and `next` with plain values, and
the front door with session cookies in process (a real SQLite store, the real FastAPI app,
a fake clock, no network)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from http.cookiejar import CookieJar, DefaultCookiePolicy
from pathlib import Path

import httpx
import pytest

from kade.api.app import create_app
from kade.api.security import SecurityConfig
from kade.auth import create_token, needed_permission
from kade.auth import sessions as sessions_module
from kade.auth.sessions import (
    LINKS,
    SESSIONS,
    make_link,
    redeem_link,
    session_key,
    session_principal,
)
from kade.store import SqliteStore, Store
from kade.ui.login import login_router, safe_next
from kade.ui.pages import ui_router
from tests.etcd import store_on

NOW = 1_800_000_000.0
BASE = "http://127.0.0.1:7400"
SAME_ORIGIN = {"Origin": BASE}
APP = {"id": "/shop/web", "cmd": "sleep 1000"}


def test_the_interface_in_the_permission_table() -> None:
    assert needed_permission("GET", "/ui/login") == "public"
    assert needed_permission("POST", "/ui/login") == "public"
    assert needed_permission("POST", "/ui/logout") == "public"
    assert needed_permission("GET", "/ui/static/kade.css") == "public"
    assert needed_permission("GET", "/ui/") == "read"
    assert needed_permission("GET", "/ui") == "read"
    assert needed_permission("GET", "/ui/apps") == "read"
    assert needed_permission("POST", "/v1/ui/login-links") == "read"
    assert needed_permission("POST", "/ui/apps") == "admin"  # not in the table: closed


def test_next_stays_in_the_interface() -> None:
    assert safe_next("/ui/apps?fragment=x") == "/ui/apps?fragment=x"
    assert safe_next("/ui") == "/ui"
    for elsewhere in ("https://evil.example/ui/", "//evil.example/ui/", "/\\evil.example",
                      "/v1/tokens", "/ui/../v1/tokens", "/ui/login?next=/ui/", "javascript:x",
                      "/ui/\nLocation: x", "", None, "/ui/" + "a" * 5000):
        assert safe_next(elsewhere) == "/ui/", elsewhere


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def api(store: SqliteStore, clock: Clock) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(store, clock=clock, extra=[ui_router(store, clock),
                                                login_router(store, clock)],
                     security=SecurityConfig())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE, cookies=no_jar()) as c:
        yield c


def no_jar() -> CookieJar:
    """Cookies are sent by each test as it means to, never kept by the client."""
    return CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))


async def token(store: SqliteStore, role: str = "admin") -> str:
    text, _ = await create_token(store, role=role, now=NOW)  # type: ignore[arg-type]
    return text


def cookie_of(response: httpx.Response) -> str:
    found = re.match(r"kade_session=([^;]+)", response.headers["set-cookie"])
    assert found, response.headers.get("set-cookie")
    return found.group(1)


def session(secret: str) -> dict[str, str]:
    return {"Cookie": f"kade_session={secret}"}


async def sign_in(api: httpx.AsyncClient, text: str, next_: str = "/ui/") -> httpx.Response:
    return await api.post("/ui/login", data={"token": text, "next": next_}, headers=SAME_ORIGIN)


async def test_a_page_without_a_session_is_sent_to_sign_in(api: httpx.AsyncClient) -> None:
    r = await api.get("/ui/apps", params={"filter": "a b"})
    assert r.status_code == 303
    assert r.headers["location"] == "/ui/login?next=%2Fui%2Fapps%3Ffilter%3Da%2Bb"
    r = await api.get("/ui/login", params={"next": "/ui/apps"})
    assert r.status_code == 200 and 'name="token"' in r.text
    assert 'value="/ui/apps"' in r.text
    assert (await api.get("/ui/static/kade.css")).status_code == 200
    # the JSON API still answers 401 as it did
    r = await api.get("/v1/apps")
    assert r.status_code == 401 and "token" in r.json()["message"]


async def test_sign_in_sets_a_session_cookie_not_the_token(api: httpx.AsyncClient,
                                                           store: SqliteStore) -> None:
    text = await token(store)
    r = await api.post("/ui/login", data={"token": text})
    assert r.status_code == 403 and "Origin: required" in r.json()["message"]
    r = await sign_in(api, "kade.abc123." + "x" * 43)
    assert r.status_code == 200 and "token: not valid" in r.text and "set-cookie" not in r.headers
    r = await sign_in(api, "  ")
    assert r.status_code == 200 and "token: required" in r.text
    r = await sign_in(api, text, "/ui/apps")
    assert r.status_code == 303 and r.headers["location"] == "/ui/apps"
    cookie = r.headers["set-cookie"]
    for attribute in ("HttpOnly", "Path=/", "SameSite=strict", "Max-Age=43200"):
        assert attribute in cookie, cookie
    assert "Secure" not in cookie  # plain HTTP: a Secure cookie would never come back
    secret = cookie_of(r)
    assert secret not in text and text.split(".")[2] not in cookie
    entries, _ = await store.range(SESSIONS)
    assert len(entries) == 1 and secret.encode() not in entries[0].value
    assert text.split(".")[1].encode() in entries[0].value  # the token's id, to re-check it
    assert (await api.get("/ui/apps", headers=session(secret))).status_code == 200
    assert (await api.get("/v1/apps", headers=session(secret))).json() == {"apps": []}
    # signed in already: the sign-in page goes on to `next`
    r = await api.get("/ui/login", params={"next": "/ui/apps"}, headers=session(secret))
    assert r.status_code == 303 and r.headers["location"] == "/ui/apps"
    # never to another site
    r = await sign_in(api, text, "https://evil.example/")
    assert r.headers["location"] == "/ui/"


async def test_cookie_writes_need_this_servers_origin(api: httpx.AsyncClient,
                                                      store: SqliteStore) -> None:
    secret = cookie_of(await sign_in(api, await token(store)))
    r = await api.post("/v1/apps", json=APP, headers=session(secret))
    assert r.status_code == 403 and "CSRF" in r.json()["message"]
    r = await api.post("/v1/apps", json=APP,
                       headers={**session(secret), "Origin": "https://evil.example"})
    assert r.status_code == 403 and "cross-origin" in r.json()["message"]
    assert (await api.get("/v1/apps", headers=session(secret))).json() == {"apps": []}
    r = await api.post("/v1/apps", json=APP, headers={**session(secret), **SAME_ORIGIN})
    assert r.status_code == 201
    # a read token's session may look, not change
    reader = cookie_of(await sign_in(api, await token(store, "read")))
    r = await api.post("/v1/apps/shop/web/scale", json={"instances": 0},
                       headers={**session(reader), **SAME_ORIGIN})
    assert r.status_code == 403 and "needs a deploy token" in r.json()["message"]


async def test_sign_out_and_revocation_end_the_session(api: httpx.AsyncClient,
                                                       store: SqliteStore) -> None:
    admin = await token(store)
    secret = cookie_of(await sign_in(api, admin))
    r = await api.post("/ui/logout", headers=session(secret))
    assert r.status_code == 403 and "Origin: required" in r.json()["message"]
    r = await api.post("/ui/logout", headers={**session(secret), **SAME_ORIGIN})
    assert r.status_code == 303 and r.headers["location"] == "/ui/login"
    assert 'kade_session=""' in r.headers["set-cookie"] and "Max-Age=0" in r.headers["set-cookie"]
    assert (await store.range(SESSIONS))[0] == []
    r = await api.get("/ui/", headers=session(secret))
    assert r.status_code == 303 and r.headers["location"].startswith("/ui/login?next=")
    r = await api.get("/v1/apps", headers=session(secret))
    assert r.status_code == 401 and "session has ended" in r.json()["message"]
    # signing out again (an ended session, or none) still clears the cookie
    assert (await api.post("/ui/logout", headers=SAME_ORIGIN)).status_code == 303

    reader = await token(store, "read")
    secret = cookie_of(await sign_in(api, reader))
    assert (await api.get("/ui/", headers=session(secret))).status_code == 200
    r = await api.delete(f"/v1/tokens/{reader.split('.')[1]}",
                         headers={"Authorization": f"Bearer {admin}"})
    assert r.status_code == 200
    assert (await api.get("/ui/", headers=session(secret))).status_code == 303


async def test_a_session_lasts_twelve_hours(api: httpx.AsyncClient, store: SqliteStore,
                                            clock: Clock) -> None:
    secret = cookie_of(await sign_in(api, await token(store)))
    clock.now += 12 * 3600 - 1
    assert (await api.get("/ui/", headers=session(secret))).status_code == 200
    clock.now += 1
    assert (await api.get("/ui/", headers=session(secret))).status_code == 303


async def test_sessions_are_bounded(api: httpx.AsyncClient, store: SqliteStore, clock: Clock,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sessions_module, "MAX_SESSIONS", 2)
    text = await token(store)
    for _ in range(2):
        assert (await sign_in(api, text)).status_code == 303
    r = await sign_in(api, text)
    assert r.status_code == 200 and "sessions: 2 are open (the limit is 2)" in r.text
    reader = {"Authorization": f"Bearer {text}"}
    link = (await api.post("/v1/ui/login-links", headers=reader)).json()["url"]
    r = await api.get(link)
    assert r.status_code == 200 and "sessions: 2 are open" in r.text
    clock.now += 12 * 3600  # those two expire: the next sign-in makes room
    first = cookie_of(await sign_in(api, text))
    assert len((await store.range(SESSIONS))[0]) == 1
    # signing in again from the same browser ends the session it had
    second = cookie_of(await api.post("/ui/login", data={"token": text},
                                      headers={**SAME_ORIGIN, **session(first)}))
    assert second != first and len((await store.range(SESSIONS))[0]) == 1


async def test_a_token_has_a_bounded_share_of_the_sessions(
        api: httpx.AsyncClient, store: SqliteStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sessions_module, "MAX_SESSIONS_PER_TOKEN", 2)
    monkeypatch.setattr(sessions_module, "MAX_SESSIONS", 3)
    reader = await token(store, "read")
    first, second, third = [cookie_of(await sign_in(api, reader)) for _ in range(3)]
    # the third sign-in ended the token's oldest session
    assert (await api.get("/ui/", headers=session(first))).status_code == 303
    for live in (second, third):
        assert (await api.get("/ui/", headers=session(live))).status_code == 200
    assert len((await store.range(SESSIONS))[0]) == 2
    # the read token cannot lock others out: an admin still signs in
    admin = await token(store)
    assert (await sign_in(api, admin)).status_code == 303
    # the bound of all sessions stays: full, a new token is refused, and a token at its own
    # bound still signs in (its oldest session makes room)
    r = await sign_in(api, await token(store, "read"))
    assert r.status_code == 200 and "sessions: 3 are open (the limit is 3)" in r.text
    assert (await sign_in(api, reader)).status_code == 303
    assert (await api.get("/ui/", headers=session(second))).status_code == 303
    assert (await api.get("/ui/", headers=session(third))).status_code == 200


async def test_one_time_links_are_bounded_per_token(api: httpx.AsyncClient, store: SqliteStore,
                                                    clock: Clock) -> None:
    reader = {"Authorization": f"Bearer {await token(store, 'read')}"}
    limit = sessions_module.MAX_LINKS_PER_TOKEN
    for _ in range(limit):
        assert (await api.post("/v1/ui/login-links", headers=reader)).status_code == 201
    r = await api.post("/v1/ui/login-links", headers=reader)
    assert r.status_code == 429
    message = r.json()["message"]
    assert message.startswith(f"sign-in links: {limit} of this token are open (the limit per "
                              f"token is {limit})"), message
    assert "sign out" not in message
    assert len((await store.range(LINKS))[0]) == limit
    # another token still gets its links
    admin = {"Authorization": f"Bearer {await token(store)}"}
    assert (await api.post("/v1/ui/login-links", headers=admin)).status_code == 201
    clock.now += 60  # the reader's links expire
    assert (await api.post("/v1/ui/login-links", headers=reader)).status_code == 201


async def test_one_time_links_are_bounded_in_all(api: httpx.AsyncClient, store: SqliteStore,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sessions_module, "MAX_LINKS", 2)
    for _ in range(2):
        reader = {"Authorization": f"Bearer {await token(store, 'read')}"}
        assert (await api.post("/v1/ui/login-links", headers=reader)).status_code == 201
    reader = {"Authorization": f"Bearer {await token(store, 'read')}"}
    r = await api.post("/v1/ui/login-links", headers=reader)
    assert r.status_code == 429
    assert r.json()["message"] == ("sign-in links: 2 are open (the limit is 2): wait for some "
                                   "to expire (links are valid for 60 s)")


async def test_a_session_cannot_make_itself_a_link(api: httpx.AsyncClient,
                                                   store: SqliteStore) -> None:
    text = await token(store)
    secret = cookie_of(await sign_in(api, text))
    r = await api.post("/v1/ui/login-links", headers={**session(secret), **SAME_ORIGIN})
    assert r.status_code == 403
    assert r.json()["message"].startswith("sign-in links: made for a token only")
    assert (await store.range(LINKS))[0] == []
    # the token itself may, whether the browser's cookie comes along or not (a token wins)
    r = await api.post("/v1/ui/login-links",
                       headers={**session(secret), "Authorization": f"Bearer {text}"})
    assert r.status_code == 201


async def test_a_post_that_is_not_the_form_changes_nothing(api: httpx.AsyncClient,
                                                           store: SqliteStore) -> None:
    secret = cookie_of(await sign_in(api, await token(store)))
    before = (await store.range(SESSIONS))[0]
    fields = {"token": await token(store), **{f"extra{i}": "x" for i in range(10)}}
    r = await api.post("/ui/login", data=fields, headers={**SAME_ORIGIN, **session(secret)})
    assert r.status_code == 400 and 'name="token"' in r.text
    assert "form: more than 10 fields" in r.text and "set-cookie" not in r.headers
    assert (await store.range(SESSIONS))[0] == before
    assert (await api.get("/ui/", headers=session(secret))).status_code == 200


async def test_sessions_keep_only_their_tokens_id(api: httpx.AsyncClient,
                                                  store: SqliteStore) -> None:
    text, record = await create_token(store, role="deploy", apps=["/shop/*"], now=NOW)
    secret = cookie_of(await sign_in(api, text))
    entry = await store.get(session_key(secret))
    assert entry is not None
    assert set(json.loads(entry.value)) == {"token_id", "created_at", "expires_at"}
    # a session written with the token's role and scope still signs in, with the token's own
    written_before = {"token_id": record.id, "role": "admin", "apps": None, "kv": None,
                      "created_at": NOW, "expires_at": NOW + 3600}
    await store.put(session_key(secret), json.dumps(written_before).encode())
    assert await session_principal(store, secret, NOW) == record.principal()
    assert (await api.get("/ui/", headers=session(secret))).status_code == 200


async def test_a_one_time_link_signs_in_once(api: httpx.AsyncClient, store: SqliteStore,
                                             clock: Clock) -> None:
    reader = {"Authorization": f"Bearer {await token(store, 'read')}"}
    assert (await api.post("/v1/ui/login-links")).status_code == 401
    r = await api.post("/v1/ui/login-links", headers=reader)
    assert r.status_code == 201 and r.json()["expiresInSeconds"] == 60
    url = r.json()["url"]
    assert url.startswith(f"{BASE}/ui/login?code=")
    code = url.split("code=")[1]
    entries, _ = await store.range(LINKS)
    assert len(entries) == 1 and code.encode() not in entries[0].value
    # opened from a page elsewhere: refused, and the link still works afterwards
    r = await api.get(url, headers={"Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 200 and "another site" in r.text
    r = await api.get(url)
    assert r.status_code == 303 and r.headers["location"] == "/ui/"
    secret = cookie_of(r)
    assert (await api.get("/ui/", headers=session(secret))).status_code == 200
    r = await api.get(url)
    assert r.status_code == 200 and "used already" in r.text and "set-cookie" not in r.headers
    r = await api.get("/ui/login", params={"code": "not a code"})
    assert r.status_code == 200 and "used already or is not valid" in r.text
    late = (await api.post("/v1/ui/login-links", headers=reader)).json()["url"]
    clock.now += 60
    r = await api.get(late)
    assert r.status_code == 200 and "expired" in r.text and "set-cookie" not in r.headers
    assert (await store.range(LINKS))[0] == []  # a link tried once is gone, expired or not


async def test_the_cookie_is_secure_over_tls(store: SqliteStore, clock: Clock) -> None:
    app = create_app(store, clock=clock, extra=[login_router(store, clock)])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://127.0.0.1:7400",
                                 cookies=no_jar()) as c:
        r = await c.post("/ui/login", data={"token": await token(store)},
                         headers={"Origin": "https://127.0.0.1:7400"})
        assert r.status_code == 303 and "Secure" in r.headers["set-cookie"]


@pytest.fixture(params=["sqlite", "etcd"])
async def either_store(request: pytest.FixtureRequest, tmp_path: Path
                       ) -> AsyncIterator[Store]:
    """The embedded store of `kade up`, and etcd as the servers of a cluster share it."""
    if request.param == "sqlite":
        s = SqliteStore(tmp_path / "store")
        yield s
        await s.close()
    else:
        async with store_on(request.getfixturevalue("etcd_cluster")) as etcd:
            yield etcd


async def test_browsers_racing_for_one_link_get_one_session(either_store: Store) -> None:
    text, record = await create_token(either_store, role="read", now=NOW)
    code, _ = await make_link(either_store, record.principal(), NOW)
    results = await asyncio.gather(*(redeem_link(either_store, code, NOW) for _ in range(4)))
    secrets = [r.secret for r in results if r.secret is not None]
    assert len(secrets) == 1 and {r.problem for r in results} == {"", "unknown"}
    principal = await session_principal(either_store, secrets[0], NOW)
    assert principal is not None and principal.token_id == record.id
    await either_store.delete(f"tokens/{record.id}")  # revoked: the session ends with it
    assert await session_principal(either_store, secrets[0], NOW) is None
    assert text.split(".")[2] not in str(await either_store.range(SESSIONS))
