"""Child-process hygiene shared by every simulator the harness spawns."""

from __future__ import annotations

import ctypes
import signal
import socket

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


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free right now on host (the caller must tolerate the small race until it binds)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]
