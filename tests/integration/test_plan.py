"""The plan before a deploy, against a real kade: `kade deploy --plan` says what the deploy
then does, and changes nothing itself."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.integration.harness import Kade

WEB = {"id": "/preview/web", "instances": 2, "cpus": 0.01, "mem": 16,
       "container": {"docker": {"image": "kade/site:1"}},
       "healthChecks": [{"protocol": "HTTP", "path": "/health", "intervalSeconds": 1,
                         "timeoutSeconds": 2}]}


def kade_cli(kade: Kade, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**kade.cli_env, "PYTHONPATH": os.environ.get("PYTHONPATH", "")}  # this tree's kade
    return subprocess.run([sys.executable, "-m", "kade", *args], env=env,
                          capture_output=True, text=True, timeout=180)


def test_the_plan_says_what_the_deploy_then_does(kade: Kade, tmp_path: Path) -> None:
    kade.deploy(WEB)
    before = {t["id"] for t in kade.wait_healthy("/preview/web", 2)}
    version = kade.app("/preview/web")["version"]
    spec = tmp_path / "web.yaml"
    spec.write_text(yaml.safe_dump({**WEB, "instances": 3,
                                    "container": {"docker": {"image": "kade/site:2"}}}))

    planned = kade_cli(kade, "deploy", "-f", str(spec), "--plan")
    assert planned.returncode == 0, planned.stderr
    lines = planned.stdout.splitlines()
    assert lines[:3] == ["~ /preview/web: tasks are replaced",
                         '    container.docker.image: "kade/site:1" => "kade/site:2"',
                         "    instances: 2 => 3"]
    assert "  instances: 1 start, 2 replaced" in lines
    assert kade.app("/preview/web")["version"] == version  # a plan writes nothing

    assert kade_cli(kade, "deploy", "-f", str(spec), "--timeout", "120").returncode == 0
    after = kade.wait_healthy("/preview/web", 3)
    assert not before & {t["id"] for t in after}  # both replaced, one more started


def test_a_plan_refused_names_the_field(kade: Kade, tmp_path: Path) -> None:
    spec = tmp_path / "web.json"
    spec.write_text('{"id": "/preview/bad", "cmd": "serve", "instances": -1}')
    refused = kade_cli(kade, "deploy", "-f", str(spec), "--plan")
    assert refused.returncode != 0
    assert "instances: must be >= 0" in refused.stderr
