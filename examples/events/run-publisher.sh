#!/bin/sh
# Runs publisher.py with the project's virtual env: its own interpreter when the task's user
# may run it, else the system's Python 3 (the same minor version on Debian 12) with the env's
# packages; a command app runs as `nobody` when kade runs as root.
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/../../.venv"
py="$venv/bin/python"
if ! "$py" -c '' 2>/dev/null; then
    py=/usr/bin/python3
    PYTHONPATH="$(echo "$venv"/lib/python3*/site-packages)"
    export PYTHONPATH
fi
exec "$py" "$here/publisher.py" "$@"
