"""Child-process hygiene shared by every simulator the harness spawns."""

from __future__ import annotations

import atexit
import ctypes
import os
import random
import signal
import socket
import tempfile
from pathlib import Path

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """preexec_fn: the kernel kills the child (SIGKILL) when the spawning thread of the parent dies.

    Caveat: PDEATHSIG fires when the *thread* that forked exits, so spawn long-lived children from
    the main thread or from a thread that lives as long as the child should.
    """
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


_RESERVATIONS = Path(tempfile.gettempdir()) / "drimcheck-ports"
_MINE: set[Path] = set()


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _reserve(port: int) -> bool:
    """Claim a port for this process among drimcheck processes (lock file; a dead owner's claim is taken over)."""
    _RESERVATIONS.mkdir(mode=0o1777, exist_ok=True)
    path = _RESERVATIONS / str(port)
    for _ in range(2):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            try:
                owner = int(path.read_text() or "0")
                os.kill(owner, 0)
                return False  # held by a live process
            except (ValueError, ProcessLookupError, FileNotFoundError):
                path.unlink(missing_ok=True)  # stale claim
                continue
            except PermissionError:
                return False
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        _MINE.add(path)
        return True
    return False


@atexit.register
def _release_all() -> None:
    for path in list(_MINE):
        path.unlink(missing_ok=True)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on host and claimed by no other drimcheck process.

    Ports come from below the kernel's ephemeral range, so no outgoing connection can take one between
    this call and the moment the listener binds it; a claim file keeps concurrent campaigns (selftest)
    from picking the same port. Falls back to a kernel-chosen port if none is found.
    """
    high = min(32767, _ephemeral_low() - 1)
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randint(20000, high)
        if not _reserve(port):
            continue
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind((host, port))
            return port
        except OSError:
            continue  # in use by something else: keep the claim, try another port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]
