# The two commands of the README: `make up` and `make test`. Each does all set-up itself.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup up cluster test lint bench-setup clean-tasks

setup:
	@bash scripts/setup.sh

# The env's bin first on PATH: the example publisher (a command app) runs with it. Domain
# events come from the example broker, found in kade's catalog (docs/domain-events.md).
up: setup
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/kade up --seed-kv examples/config.yaml \
	    --deploy examples/apps --events-amqp amqp://guest:guest@broker-shop.service.consul/

# A cluster on this machine: 3 etcd members, 3 servers, 3 agents in zones 1a/1b/1c, the example
# apps. In the foreground; Ctrl-C stops it all (docs/cluster.md).
cluster: setup
	$(PY) scripts/cluster.py

test: setup
	$(PY) -m pytest -q -p no:cacheprovider tests

lint: setup
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy src

# What the router benchmarks run against besides kade: nginx upstreams, HAProxy (Traefik
# comes from the venv). `bench/router_varied.py`, `bench/router.py`.
bench-setup: setup
	apt-get -o DPkg::Lock::Timeout=300 install -y -q nginx-light haproxy
