"""The one error of app definitions: every problem named by its field."""

from __future__ import annotations


class SpecError(ValueError):
    """An app definition was rejected. `problems` lists each as `field: message`."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class DocumentError(SpecError):
    """The text is not a document kade reads (syntax, values JSON cannot hold)."""


class DocumentRefused(DocumentError):
    """The document may be valid, but is refused for its shape (too deep, YAML aliases):
    an HTTP API answers 400, before reading it as an app."""
