"""Annotations expanded with the alert's labels and value, as Prometheus expands them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kade.alerts.annotations import render_annotations
from kade.templates.isolate import TemplateLimits, TemplateWorkers


@pytest.fixture(scope="module")
def workers() -> Iterator[TemplateWorkers]:
    w = TemplateWorkers(TemplateLimits(timeout=2.0))
    yield w
    w.close()


def test_labels_and_value(workers: TemplateWorkers) -> None:
    got = render_annotations(workers, {
        "summary": "{{ $labels.app }} fails {{ printf \"%.1f\" $value }}%",
        "plain": "no template", "dot": "{{ .Labels.task }}"},
        {"app": "/shop/web", "task": "web.1"}, 12.345)
    assert got == {"summary": "/shop/web fails 12.3%", "plain": "no template",
                   "dot": "web.1"}


def test_a_broken_annotation_says_why_in_its_place(workers: TemplateWorkers) -> None:
    got = render_annotations(workers, {"summary": "{{ $labels.app "}, {"app": "x"}, 1.0)
    assert got["summary"].startswith("<error expanding template: ")


def test_an_endless_annotation_is_stopped(workers: TemplateWorkers) -> None:
    got = render_annotations(workers, {
        "summary": "{{ range loop 100000000 }}{{ range loop 100000000 }}{{ end }}{{ end }}"},
        {}, None)
    assert got["summary"].startswith("<error expanding template: ")
