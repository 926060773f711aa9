"""Templates of an app: configuration rendered from the KV tree into each task.

The fields follow Nomad's `template` block (destination, change_mode, change_signal, env,
wait), which itself wraps consul-template; the template text is inline so that an app
version carries everything it needs (`kade deploy` reads a `file:` into `source`).
Whether the text parses is checked by `kade.templates.check_template`, not here: this module
only knows the shape.
"""

from __future__ import annotations

import re
import signal
from typing import Literal

from pydantic import Field, field_validator, model_validator

from kade.spec.base import SpecModel

Syntax = Literal["consul-template", "jinja"]
ChangeMode = Literal["restart", "signal", "noop"]

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")
_UNITS = {"ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_seconds(value: object) -> float:
    """Seconds as a number, or a Go-style duration string (`250ms`, `5s`, `2m`)."""
    if isinstance(value, bool):
        raise ValueError("must be a number of seconds or a duration such as 5s")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        m = _DURATION.match(value.strip())
        if not m:
            raise ValueError(f"{value!r} is not a duration (use e.g. 5s, 250ms, 2m)")
        seconds = float(m.group(1)) * _UNITS[m.group(2) or "s"]
    else:
        raise ValueError("must be a number of seconds or a duration such as 5s")
    if seconds < 0:
        raise ValueError("must be >= 0")
    return seconds


_SPECIAL_BITS = ((0o4000, "setuid"), (0o2000, "setgid"), (0o1000, "sticky"))


def check_file_mode(mode: int, text: str) -> str:
    """A rendered file's mode must not give more than reading to others: a world-writable
    file lets any local user change a task's configuration, and setuid/setgid make a file
    that kade (root) wrote a way to run as its owner."""
    special = [name for bit, name in _SPECIAL_BITS if mode & bit]
    if special:
        raise ValueError(f"{text!r} sets the {'/'.join(special)} bit: a rendered file may "
                         "not (use e.g. 0600 or 0644)")
    if mode & 0o002:
        raise ValueError(f"{text!r} lets every user write the file (use e.g. 0600 or 0644)")
    return text


class TemplateWait(SpecModel):
    """consul-template's quiescence: render once changes stop for `min` seconds, but never
    later than `max` seconds after the first change (so a flapping key cannot starve it)."""

    min: float = 0.0
    max: float = 0.0  # 0 = four times `min`, as consul-template

    @field_validator("min", "max", mode="before")
    @classmethod
    def _seconds(cls, value: object) -> float:
        return parse_seconds(value)

    @model_validator(mode="after")
    def _order(self) -> TemplateWait:
        if self.max and self.max < self.min:
            raise ValueError(f"max ({self.max:g}s) must be >= min ({self.min:g}s)")
        return self

    @property
    def effective_max(self) -> float:
        return self.max or self.min * 4


class TemplateSpec(SpecModel):
    destination: str = Field(min_length=1)  # an absolute path inside the container
    source: str = ""  # the template text (a file given to `kade deploy` is read into it)
    syntax: Syntax = "consul-template"
    mode: str = "0600"  # file permissions, octal; the file is owned by the task's user
    change_mode: ChangeMode = "restart"
    change_signal: str = "SIGHUP"
    env: bool = False  # the rendered KEY=value lines also become task environment variables
    wait: TemplateWait | None = None

    @field_validator("destination")
    @classmethod
    def _destination(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"{value!r} must be an absolute path inside the container")
        if any(part == ".." for part in value.split("/")):
            raise ValueError(f"{value!r} must not contain '..'")
        if value.endswith("/"):
            raise ValueError(f"{value!r} names a directory, not a file")
        if "\x00" in value:
            raise ValueError("must not contain NUL")
        return value

    @field_validator("mode")
    @classmethod
    def _mode(cls, value: str) -> str:
        if not re.fullmatch(r"0?[0-7]{3,4}", value):
            raise ValueError(f"{value!r} is not an octal file mode such as 0600")
        return check_file_mode(int(value, 8), value)

    @field_validator("change_signal")
    @classmethod
    def _signal(cls, value: str) -> str:
        name = value.upper()
        if not name.startswith("SIG"):
            name = "SIG" + name
        if name not in signal.Signals.__members__:
            raise ValueError(f"{value!r} is not a signal name such as SIGHUP")
        return name

    @property
    def file_mode(self) -> int:
        return int(self.mode, 8)
