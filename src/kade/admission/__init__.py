"""Admission: every app definition passes here before anything is written.

The API (`POST/PUT /v1/apps`), `kade up --deploy` and any later entry point call `admit_body`,
`admit_file` or `admit` with the server's `ContainerPolicy`; each raises `SpecError` naming
every problem by its field.
"""

from kade.admission.admit import (
    Admitted,
    BodyTooLarge,
    admit,
    admit_apps,
    admit_body,
    admit_file,
    admit_scale,
    parse_body,
)
from kade.admission.limits import LIMITS, Limits, check_bounds, check_strings
from kade.admission.policy import ContainerPolicy, capability, check_policy, command_user

__all__ = [
    "LIMITS", "Admitted", "BodyTooLarge", "ContainerPolicy", "Limits", "admit", "admit_apps",
    "admit_body",
    "admit_file", "admit_scale", "capability", "check_bounds", "check_policy", "check_strings",
    "command_user", "parse_body",
]
