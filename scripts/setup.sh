#!/usr/bin/env bash
# Brings a fresh Debian 12 machine (as root) to the point where kade runs and its tests pass:
# Debian packages, a running Docker Engine, the virtual env with the locked dependencies,
# and the locally built example images. Safe to run again: each step checks first, cheaply
# (a package list, the lock file and pyproject.toml compared with what was installed, image
# labels), so a second run takes well under a second and `make up` starts kade at once.
set -euo pipefail
cd "$(dirname "$0")/.."

APT="apt-get -o DPkg::Lock::Timeout=300 -y -q"
need_pkgs=()
command -v dockerd >/dev/null || need_pkgs+=(docker.io)
dpkg -s busybox-static >/dev/null 2>&1 || need_pkgs+=(busybox-static)  # static: it runs FROM scratch
command -v wrk >/dev/null || need_pkgs+=(wrk)
command -v etcd >/dev/null || need_pkgs+=(etcd-server)  # the store of a cluster, and its tests
# RabbitMQ: the example broker of domain events, run by kade as a command app (its own node
# name, ports and data dir), and the real broker of the tests
[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || need_pkgs+=(rabbitmq-server)
# Prometheus: its query engine answers the same queries as kade's on the same samples (tests)
command -v promtool >/dev/null || need_pkgs+=(prometheus)
# Alertmanager: receives kade's alerts in the tests, as an operator's existing one would
command -v prometheus-alertmanager >/dev/null || need_pkgs+=(prometheus-alertmanager)
# Chromium, its driver and a font: the web interface's tests drive a real browser (tests/ui)
command -v chromium >/dev/null || need_pkgs+=(chromium)
dpkg -s chromium-driver >/dev/null 2>&1 || need_pkgs+=(chromium-driver)
dpkg -s fonts-dejavu-core >/dev/null 2>&1 || need_pkgs+=(fonts-dejavu-core)
if [ ${#need_pkgs[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=300 update -q
    $APT install "${need_pkgs[@]}"
fi

# A Docker Engine: use the one that answers, else start Debian's dockerd.
if ! docker info >/dev/null 2>&1; then
    mkdir -p /var/log
    nohup dockerd >/var/log/kade-dockerd.log 2>&1 &
    for _ in $(seq 1 60); do
        docker info >/dev/null 2>&1 && break
        sleep 0.5
    done
    docker info >/dev/null 2>&1 || { echo "dockerd did not start, see /var/log/kade-dockerd.log" >&2; exit 1; }
fi

# The virtual env, from the lock file.
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
quiet() {  # pip, without the notes about package index locations this machine lacks
    "$@" 2>&1 | { grep -v "^WARNING: Location '" || true; }
}
if ! cmp -s requirements.lock .venv/.installed-lock 2>/dev/null; then
    quiet .venv/bin/pip install -q --upgrade pip
    quiet .venv/bin/pip install -q -r requirements.lock
    cp requirements.lock .venv/.installed-lock
fi
if ! cmp -s pyproject.toml .venv/.installed-pyproject 2>/dev/null || [ ! -x .venv/bin/kade ] \
        || [ "$(cat .venv/.installed-from 2>/dev/null)" != "$PWD" ]; then
    quiet .venv/bin/pip install -q --no-deps -e .
    cp pyproject.toml .venv/.installed-pyproject
    echo "$PWD" > .venv/.installed-from
fi

# Example and test images, FROM scratch with busybox.
bash examples/build-images.sh
