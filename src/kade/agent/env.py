"""The environment a task sees: the app's env plus what Marathon gives every task."""

from __future__ import annotations

import re

from kade.model import Task
from kade.spec import AppSpec

_LABEL_NAME = re.compile(r"[^A-Za-z0-9_]")


def task_env(app: AppSpec, task: Task) -> dict[str, str]:
    """$PORT0.., $PORT, $PORTS, $HOST as Marathon sets them, plus kade's and Marathon's ids.

    Ports are host ports: what a client outside the task connects to. In bridge mode the app
    listens on its containerPort; `PORT_<containerPort>` maps it to the host port.
    """
    env = dict(app.env)
    ports = task.host_ports
    for i, port in enumerate(ports):
        env[f"PORT{i}"] = str(port)
    if ports:
        env["PORT"] = str(ports[0])
        env["PORTS"] = ",".join(str(p) for p in ports)
    for spec, port in zip(app.ports(), ports, strict=False):
        if spec.container_port:
            env[f"PORT_{spec.container_port}"] = str(port)
        if spec.name:
            env[f"PORT_{_LABEL_NAME.sub('_', spec.name).upper()}"] = str(port)
    env["HOST"] = task.host
    env.update({
        "KADE_APP_ID": app.id,
        "KADE_TASK_ID": task.id,
        "KADE_APP_VERSION": task.version,
        "KADE_NODE": task.node,
        "MARATHON_APP_ID": app.id,
        "MARATHON_APP_VERSION": task.version,
        "MARATHON_APP_RESOURCE_CPUS": str(app.cpus),
        "MARATHON_APP_RESOURCE_MEM": str(app.mem),
        "MESOS_TASK_ID": task.id,
    })
    if app.image:
        env["MARATHON_APP_DOCKER_IMAGE"] = app.image
    names = []
    for key, value in app.labels.items():
        name = _LABEL_NAME.sub("_", key).upper()
        env[f"MARATHON_APP_LABEL_{name}"] = value
        names.append(name)
    env["MARATHON_APP_LABELS"] = " ".join(names)
    return env
