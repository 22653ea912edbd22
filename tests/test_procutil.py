"""Port reservations live in a per-user runtime directory that another user's files cannot break."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from simulators import procutil

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """procutil with its own temporary directory and no XDG_RUNTIME_DIR; every claim given back after."""
    base = tmp_path / "tmp"
    base.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(base))
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    procutil._reset_for_tests()
    before = set(procutil._MINE)
    yield base
    for port in set(procutil._MINE) - before:
        procutil.release_port(port)
    procutil._reset_for_tests()


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def test_reservations_go_to_a_private_per_user_directory(fresh):
    port = procutil.free_port()
    ports = procutil._ports_dir()
    assert ports == fresh / f"drimcheck-{os.geteuid()}" / "ports"
    assert _mode(ports.parent) == 0o700 and _mode(ports) == 0o700
    assert os.lstat(ports.parent).st_uid == os.geteuid()
    claim = ports / str(port)
    assert claim.read_text() == str(os.getpid()) and _mode(claim) == 0o600
    assert _bindable(port)
    procutil.release_port(port)
    assert not claim.exists()


def test_xdg_runtime_dir_is_preferred_when_usable(fresh, monkeypatch, tmp_path):
    xdg = tmp_path / "xdg"
    xdg.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(xdg))
    procutil._reset_for_tests()
    procutil.free_port()
    assert procutil._ports_dir() == xdg / "drimcheck" / "ports"
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "absent"))
    procutil._reset_for_tests()
    assert procutil.runtime_dir() == fresh / f"drimcheck-{os.geteuid()}"


def test_a_too_open_directory_of_ours_is_tightened(fresh):
    mine = fresh / f"drimcheck-{os.geteuid()}"
    mine.mkdir(mode=0o777)
    os.chmod(mine, 0o1777)
    procutil.free_port()
    assert procutil.runtime_dir() == mine and _mode(mine) == 0o700


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_a_directory_owned_by_another_user_is_refused_and_free_port_still_works(fresh):
    """The old failure: root's 1755 drimcheck-ports made every other user's campaign ERROR (PermissionError)."""
    import pwd

    nobody = pwd.getpwnam("nobody")
    squatted = fresh / f"drimcheck-{os.geteuid()}"
    squatted.mkdir(mode=0o755)
    (squatted / "ports").mkdir(mode=0o755)
    os.chown(squatted, nobody.pw_uid, nobody.pw_gid)
    os.chown(squatted / "ports", nobody.pw_uid, nobody.pw_gid)
    port = procutil.free_port()
    assert 20000 <= port < procutil._ephemeral_low() and _bindable(port)
    chosen = procutil.runtime_dir()
    assert chosen != squatted and os.lstat(chosen).st_uid == os.geteuid() and _mode(chosen) == 0o700
    assert not any((squatted / "ports").iterdir()), "nothing written in the other user's directory"


def test_a_symlink_in_place_of_the_directory_is_refused(fresh, tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    (fresh / f"drimcheck-{os.geteuid()}").symlink_to(target)
    procutil.free_port()
    assert procutil.runtime_dir().parent == fresh and not procutil.runtime_dir().is_symlink()
    assert not any(target.iterdir())


def test_the_legacy_shared_directory_of_another_user_does_not_matter(fresh):
    """A 1755 <tmp>/drimcheck-ports left by root (old versions) is simply not used any more."""
    legacy = fresh / "drimcheck-ports"
    legacy.mkdir(mode=0o755)
    os.chmod(legacy, 0o1755)
    if os.geteuid() == 0:
        os.chown(legacy, 65534, 65534)
    assert procutil.free_port() and not any(legacy.iterdir())


CLAIM_AND_HOLD = """
import sys, time
from simulators import procutil
port = int(sys.argv[1])
print(procutil._reserve(port), flush=True)
sys.stdin.read()
"""


def test_a_claim_holds_against_another_process_and_dies_with_its_owner(fresh):
    port = procutil.free_port()  # a port no drimcheck process of ours holds right now
    procutil.release_port(port)
    env = {**os.environ, "TMPDIR": str(fresh), "PYTHONPATH": str(REPO)}
    env.pop("XDG_RUNTIME_DIR", None)
    holder = subprocess.Popen([sys.executable, "-c", CLAIM_AND_HOLD, str(port)], env=env, cwd=REPO,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "True"
        assert procutil._reserve(port) is False  # held by a live process
    finally:
        holder.kill()  # no chance to clean up: the kernel drops its lock
        holder.wait(10)
    assert procutil._reserve(port) is True
    procutil.release_port(port)


@pytest.mark.parametrize("ephemeral_low", [32768, 20500, 10000, 1024])
def test_ports_stay_below_any_ephemeral_range(fresh, monkeypatch, ephemeral_low):
    monkeypatch.setattr(procutil, "_ephemeral_low", lambda: ephemeral_low)
    port = procutil.free_port()
    assert _bindable(port)
    if ephemeral_low > 2048:
        assert 1024 <= port < ephemeral_low
