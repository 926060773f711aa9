"""Runtimes kade runs tasks on: Docker containers, or plain processes for command apps."""

from kade.drivers.base import (
    LABEL_APP,
    LABEL_HASH,
    LABEL_NODE,
    LABEL_TASK,
    LABEL_VERSION,
    Driver,
    DriverError,
    ExecResult,
    LaunchSpec,
    Mount,
    Workload,
    WorkloadEvent,
    WorkloadState,
)
from kade.drivers.docker import DockerDriver
from kade.drivers.exec import ExecDriver
from kade.spec.model import SUPPORTED_PARAMETERS

__all__ = [
    "LABEL_APP", "LABEL_HASH", "LABEL_NODE", "LABEL_TASK", "LABEL_VERSION",
    "SUPPORTED_PARAMETERS", "DockerDriver", "Driver", "DriverError",
    "ExecDriver", "ExecResult", "LaunchSpec", "Mount", "Workload", "WorkloadEvent", "WorkloadState",
]
