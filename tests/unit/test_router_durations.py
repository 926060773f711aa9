"""Durations are parsed one way (kade.addresses): the router's timeouts, its blocking-query
wait, Consul's `wait`."""

from __future__ import annotations

import argparse

import pytest

from kade.addresses import parse_duration
from kade.router.__main__ import _seconds
from kade.router.follow import _seconds as wait_seconds


@pytest.mark.parametrize(("text", "seconds"), [
    ("10", 10.0), ("1.5", 1.5), ("250ms", 0.25), ("10s", 10.0), ("5m", 300.0),
    ("1h", 3600.0), ("500us", 0.0005), ("500µs", 0.0005), (" 30s ", 30.0)])
def test_durations_in_consul_units(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "10x", "-5s", "1m30s", "nan", "inf", "1e3"])
def test_what_is_not_a_duration_is_named(text: str) -> None:
    with pytest.raises(ValueError, match=r"^wait: .* is not a duration \(use e\.g\. 250ms"):
        parse_duration(text, "wait")


def test_a_duration_too_large_for_a_float_is_refused() -> None:
    with pytest.raises(ValueError, match="must be a finite duration"):
        parse_duration("9" * 400 + "s", "wait")


def test_router_timeouts_take_seconds_or_durations() -> None:
    assert (_seconds("30"), _seconds("2m"), _seconds("500ms")) == (30.0, 120.0, 0.5)
    with pytest.raises(argparse.ArgumentTypeError, match="must be above 0"):
        _seconds("0s")
    with pytest.raises(argparse.ArgumentTypeError, match="is not a duration"):
        _seconds("soon")


def test_the_followers_wait_falls_back_to_a_minute() -> None:
    assert (wait_seconds("5m"), wait_seconds("later")) == (300.0, 60.0)
