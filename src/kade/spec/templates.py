"""Templates of an app: configuration rendered from the KV tree into each task."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from kade.spec.base import SpecModel


class TemplateSpec(SpecModel):
    destination: str = Field(min_length=1)  # a path inside the container
    source: str = ""  # the template text (a file given to `kade deploy` is read into it)
    mode: str = "0644"
    change_mode: Literal["restart", "signal", "noop"] = "restart"
    change_signal: str = "SIGHUP"
