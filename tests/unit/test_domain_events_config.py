"""Domain events: what `kade up` consumes (flags and config file), where the broker is, and
the times a search takes."""

from __future__ import annotations

from pathlib import Path

import pytest

from kade.api.domain_events import parse_time
from kade.cli.domain_events import ingest_config
from kade.domain_events.config import Binding, IngestConfig, parse_binding, redact
from kade.domain_events.ingest import service_of, with_address

URL = "amqp://kade:s3cret@rabbit.example.com:5672/prod"


def test_bindings_from_flags() -> None:
    assert parse_binding("orders:order.*,refund.#") == Binding("orders", ("order.*", "refund.#"))
    assert parse_binding("users") == Binding("users", ("#",))
    with pytest.raises(ValueError, match="routing key 'a b'"):
        parse_binding("orders:a b")
    with pytest.raises(ValueError, match="the exchange must be a name"):
        parse_binding(":order.*")


def test_config_file_and_flags(tmp_path: Path) -> None:
    file = tmp_path / "events.yaml"
    file.write_text("bindings:\n  - exchange: orders\n    routingKeys: [order.*]\n"
                    "queue: kade.shop\nprefetch: 100\n")
    cfg = ingest_config(URL, [], file)
    assert cfg == IngestConfig(url=URL, bindings=(Binding("orders", ("order.*",)),),
                               queue="kade.shop", prefetch=100)
    assert ingest_config(URL, ["users:#"], file).bindings == (Binding("users", ("#",)),)
    assert ingest_config(None, [], None) is None


@pytest.mark.parametrize(("text", "message"), [
    ("colour: red\n", "colour: is not a setting"),
    ("bindings: []\n", "bindings: must be a list of 1 to 100"),
    ("bindings:\n  - routingKeys: [a]\n", "bindings.0.exchange: is required"),
    ("prefetch: 0\n", "prefetch: must be a whole number from 1 to 65535"),
])
def test_bad_config_files_name_the_setting(tmp_path: Path, text: str, message: str) -> None:
    file = tmp_path / "events.yaml"
    file.write_text(text)
    with pytest.raises(ValueError, match=message):
        ingest_config(URL, [], file)


def test_flags_that_need_a_broker_and_bad_urls() -> None:
    with pytest.raises(ValueError, match="need --events-amqp"):
        ingest_config(None, ["orders:#"], None)
    with pytest.raises(ValueError, match="must be amqp://"):
        ingest_config("http://rabbit/", [], None)


def test_passwords_stay_out_of_logs() -> None:
    assert redact(URL) == "amqp://kade:***@rabbit.example.com:5672/prod"


def test_a_broker_kade_runs_is_found_by_its_service_name() -> None:
    url = "amqp://guest:guest@broker-shop.service.consul/"
    assert service_of(url, "consul") == "broker-shop"
    assert service_of(URL, "consul") is None
    assert with_address(url, "127.0.0.1:31001") == "amqp://guest:guest@127.0.0.1:31001/"


def test_search_times() -> None:
    now = 1_700_000_000.0
    assert parse_time("10m", now, "since") == now - 600
    assert parse_time("1d", now, "since") == now - 86400
    assert parse_time("1700000000", now, "since") == now
    assert parse_time("2023-11-14T22:13:20Z", now, "since") == now
    assert parse_time(None, now, "since") is None
    with pytest.raises(ValueError, match="since: 'yesterday' is neither"):
        parse_time("yesterday", now, "since")
