"""Server assertions: which signed requests a node accepts, and why it refuses the others."""

from __future__ import annotations

import pytest

from kade.auth.assertions import (
    Claims,
    Refused,
    ServerKey,
    issuer_of,
    public_key,
    verify,
)

NOW = 1_764_522_000.0
PATH = "/node/v1/logs?app=%2Fshop%2Fweb&tail=10"
s1 = ServerKey("s1")
KEYS = {"s1": public_key(s1.public)}


def check(token: str | None, *, node: str = "n1", method: str = "GET", path: str = PATH,
          now: float = NOW) -> Claims:
    return verify(token, KEYS, audience=node, method=method, path=path, now=now)


def refusal(token: str | None, **kw: object) -> tuple[int, str]:
    with pytest.raises(Refused) as e:
        check(token, **kw)  # type: ignore[arg-type]
    return e.value.status, str(e.value)


def test_a_signed_request_is_accepted_until_it_expires() -> None:
    token = s1.sign("n1", "GET", PATH, NOW)
    assert issuer_of(token) == "s1"
    assert check(token) == Claims("s1", "n1", "GET", PATH, NOW + 30)
    assert check(token, now=NOW + 29.9).issuer == "s1"
    status, message = refusal(token, now=NOW + 31)
    assert status == 401 and "expired 1s ago" in message


def test_refused_without_an_assertion_or_with_a_bad_one() -> None:
    assert refusal(None) == (401, "a node answers only servers: X-Kade-Assertion is missing "
                                  "(ask a kade server, which signs its requests to nodes)")
    assert refusal("garbage")[0] == 401
    assert refusal("a.b")[1] == "X-Kade-Assertion: not an assertion (undecodable)"
    token = s1.sign("n1", "GET", PATH, NOW)
    payload, _, signature = token.partition(".")
    other = ServerKey("s1").sign("n1", "GET", PATH, NOW)  # same name, another key
    assert refusal(other) == (401, "X-Kade-Assertion: the signature is not server s1's")
    tampered = s1.sign("n1", "GET", PATH + "&grep=x", NOW).partition(".")[0]
    assert refusal(f"{tampered}.{signature}", path=PATH + "&grep=x")[0] == 401
    assert payload != tampered
    stranger = ServerKey("s9").sign("n1", "GET", PATH, NOW)
    assert refusal(stranger)[1].startswith("X-Kade-Assertion: signed by 's9', which is not")
    assert "too far ahead" in refusal(s1.sign("n1", "GET", PATH, NOW, ttl=3600))[1]


def test_refused_for_another_node_or_another_request() -> None:
    token = s1.sign("n1", "GET", PATH, NOW)
    assert refusal(token, node="n2") == (403, "X-Kade-Assertion: signed for node n1, this "
                                              "is node n2")
    status, message = refusal(token, path=PATH.replace("tail=10", "tail=10000"))
    assert status == 403 and message.startswith("X-Kade-Assertion: signed for another request")
    assert refusal(token, method="POST")[0] == 403


def test_published_keys_are_checked() -> None:
    with pytest.raises(ValueError, match="public_key: not an Ed25519 public key"):
        public_key("bm90IGEga2V5")
