"""Shared fixtures. Docker tests use the images built by examples/build-images.sh."""

from __future__ import annotations

import shutil
import subprocess

import pytest


def docker_available() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0
