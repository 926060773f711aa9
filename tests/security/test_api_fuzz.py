"""Schemathesis over the OpenAPI description a real `kade up` serves: generated requests
to every operation, with an admin token (the widest access), never answer 5xx.

Bounded: 20 examples per operation, blocking queries told to wait 10 ms, and
`/v1/admin/shutdown` (it would end the server under test; its refusals are tested in
test_api_attacks) and the endless `/v1/events` stream left out."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.integration.harness import Kade

pytestmark = [pytest.mark.docker]


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kade]:
    k = Kade(Path(tmp_path_factory.mktemp("fuzz")) / "kade")
    try:
        yield k.start()
    finally:
        k.cleanup()


def operations(kade: Kade) -> list[schemathesis.APIOperation]:
    schema = schemathesis.openapi.from_url(f"http://{kade.addr}/openapi.json",
                                           headers=kade.auth)
    found = []
    # shutting down would end the server under test; the event streams never end by
    # themselves
    for result in schema.exclude(path=["/v1/admin/shutdown", "/v1/events",
                                       "/v1/domain-events/follow"]).get_all_operations():
        found.append(result.ok())
    return found


@pytest.mark.timeout(900)
def test_no_request_makes_a_server_error(fuzzed: Kade) -> None:
    failures: list[str] = []
    ops = operations(fuzzed)
    assert len(ops) > 20  # every router's endpoints are described

    for operation in ops:
        @given(case=operation.as_strategy())
        @settings(max_examples=20, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def call(case: schemathesis.Case) -> None:
            if case.query and "wait" in case.query:
                case.query["wait"] = "10ms"  # blocking queries answer at once: bounded runs
            response = case.call(headers=fuzzed.auth, timeout=30)
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} "
                                f"{response.status_code}: {response.text[:300]}")

        call()
    assert failures == []
    assert fuzzed.get("/ping") == "pong"
