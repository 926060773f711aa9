"""The router's start-up checks: its token for the control plane, its admin address."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kade.router.main import check_admin_addr, read_token


def test_token_from_a_file_only_its_owner_reads(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("  s3cret-token\n")
    path.chmod(0o600)
    assert read_token(path, {"KADE_TOKEN": "from-env"}) == "s3cret-token"  # the file wins
    path.chmod(0o640)
    with pytest.raises(ValueError, match=r"mode 0640 lets others read it; it must be 0600"):
        read_token(path, {})


def test_token_file_problems_are_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"--token-file .*missing: cannot be read"):
        read_token(tmp_path / "missing", {})
    path = tmp_path / "token"
    path.write_text("two words")
    path.chmod(0o600)
    with pytest.raises(ValueError, match="must hold one token"):
        read_token(path, {})


def test_token_from_the_environment_or_none() -> None:
    assert read_token(None, {"KADE_TOKEN": " t0ken "}) == "t0ken"
    assert read_token(None, {"KADE_TOKEN": ""}) is None
    assert read_token(None, {}) is None


@pytest.mark.parametrize("addr", ["127.0.0.1:8081", "[::1]:8081", ":8081", "localhost:8081",
                                  "127.0.0.2:9"])
def test_loopback_admin_addresses_are_fine(addr: str) -> None:
    check_admin_addr(addr, False)


@pytest.mark.parametrize("addr", ["0.0.0.0:8081", "[::]:8081", "10.0.0.5:8081",
                                  "router.example:8081"])
def test_other_admin_addresses_need_admin_public(addr: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"--admin-addr {addr}: not a loopback")):
        check_admin_addr(addr, False)
    check_admin_addr(addr, True)
