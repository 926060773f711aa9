"""Shared test settings. Docker tests use the images built by examples/build-images.sh.

Real etcd members for the tests that need them: `etcd_cluster` and `etcd_store` (tests/etcd.py).
"""

pytest_plugins = ("tests.etcd",)
