"""Schemathesis over the OpenAPI description a real `kade up` serves: generated requests
to every operation, with an admin token (the widest access), never answer 5xx.

Bounded: a few dozen examples per operation, and `/v1/admin/shutdown` left out (it would
end the server under test; its refusals are tested in test_api_attacks)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from tests.integration.harness import Kade

pytestmark = [pytest.mark.docker]


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kade]:
    k = Kade(Path(tmp_path_factory.mktemp("fuzz")) / "kade")
    try:
        yield k.start()
    finally:
        k.cleanup()


@pytest.fixture(scope="module")
def api_schema(fuzzed: Kade) -> schemathesis.BaseSchema:
    schema = schemathesis.openapi.from_url(f"http://{fuzzed.addr}/openapi.json",
                                           headers=fuzzed.auth)
    return schema.exclude(path="/v1/admin/shutdown")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@pytest.mark.timeout(300)
def test_no_request_makes_a_server_error(case: schemathesis.Case, fuzzed: Kade) -> None:
    response = case.call(headers=fuzzed.auth, timeout=30)
    assert response.status_code < 500, (case.method, case.formatted_path,
                                         response.status_code, response.text[:500])
