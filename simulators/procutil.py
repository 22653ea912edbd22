"""Child-process hygiene and port allocation shared by every simulator the harness spawns."""

from __future__ import annotations

import atexit
import ctypes
import errno
import fcntl
import os
import random
import signal
import socket
import stat
import tempfile
import threading
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


# --------------------------------------------------------------------------- per-user runtime directory

_lock = threading.Lock()
_RUNTIME: Path | None = None
_PORTS: Path | None = None


def _private_dir(path: Path) -> bool:
    """True when `path` is (or now is) a real directory owned by us with no access for group and others.

    Created 0700 when absent (its parent must exist). A directory of ours that is too open is tightened;
    a directory owned by someone else, a symlink or a file is refused: the caller falls back elsewhere.
    """
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError:
        return False
    try:
        st = os.lstat(path)
    except OSError:
        return False
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        return False
    if stat.S_IMODE(st.st_mode) & 0o077:
        try:
            os.chmod(path, 0o700, follow_symlinks=False)
        except (OSError, NotImplementedError):
            return False
    return os.access(path, os.W_OK | os.X_OK)


def runtime_dir() -> Path:
    """drimcheck's per-user runtime directory (mode 0700, owned by the current user).

    $XDG_RUNTIME_DIR/drimcheck when that variable names a usable directory, else
    <system temporary directory>/drimcheck-<uid>. A candidate owned by another user (or a symlink, or
    too open and not ours) is never used: the next candidate, or as a last resort a fresh private
    temporary directory, is used instead, so another user's files never make a campaign fail.
    """
    global _RUNTIME
    with _lock:
        if _RUNTIME is not None and _private_dir(_RUNTIME):
            return _RUNTIME
        candidates = []
        xdg = os.environ.get("XDG_RUNTIME_DIR", "")
        if xdg and os.path.isabs(xdg) and os.path.isdir(xdg):
            candidates.append(Path(xdg) / "drimcheck")
        candidates.append(Path(tempfile.gettempdir()) / f"drimcheck-{os.geteuid()}")
        for path in candidates:
            if _private_dir(path):
                _RUNTIME = path
                return path
        _RUNTIME = Path(tempfile.mkdtemp(prefix=f"drimcheck-{os.geteuid()}-"))  # mkdtemp: 0700, ours
        return _RUNTIME


def _ports_dir() -> Path:
    """<runtime_dir>/ports, where this user's drimcheck processes claim the ports they listen on."""
    global _PORTS
    if _PORTS is not None and _private_dir(_PORTS):
        return _PORTS
    ports = runtime_dir() / "ports"
    if not _private_dir(ports):  # a squatted subdirectory in our own directory: use a private one
        ports = Path(tempfile.mkdtemp(prefix="ports-", dir=runtime_dir()))
    _PORTS = ports
    return ports


def _reset_for_tests() -> None:
    """Forget the runtime directory chosen so far (tests change XDG_RUNTIME_DIR / the temporary directory)."""
    global _RUNTIME, _PORTS
    with _lock:
        _RUNTIME = _PORTS = None


# --------------------------------------------------------------------------- port reservations

_MINE: dict[int, int] = {}  # port -> fd of its claim file, locked (flock) for the life of this process


def _reserve(port: int) -> bool:
    """Claim a port for this process among this user's drimcheck processes.

    The claim is an flock on <ports dir>/<port>, held as long as this process lives: the kernel drops it
    when the process dies, however it dies, so a dead owner's claim never blocks anyone and there is no
    stale-claim takeover to race on.
    """
    if port in _MINE:
        return False
    for _ in range(3):
        path = _ports_dir() / str(port)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except FileNotFoundError:  # the directory vanished (temporary-files cleaner): choose it again
            _reset_for_tests()
            continue
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return False  # held by a live drimcheck process of this user
            return False
        try:  # the holder unlinks the file before unlocking: make sure we locked the file still in place
            same = os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
        except OSError:
            same = False
        if not same:
            os.close(fd)
            continue
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        _MINE[port] = fd
        return True
    return False


def release_port(port: int) -> None:
    """Give back a port claimed by free_port (optional: every claim is released when the process exits)."""
    fd = _MINE.pop(port, None)
    if fd is None:
        return
    try:
        path = _ports_dir() / str(port)
        if os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino:
            path.unlink()  # while still locked, so nobody holds a lock on an unlinked file
    except OSError:
        pass
    os.close(fd)


@atexit.register
def _release_all() -> None:
    for port in list(_MINE):
        release_port(port)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on host and claimed by no other drimcheck process of this user.

    Ports come from below the kernel's ephemeral range, so no outgoing connection (nor a kernel-chosen
    port of any other program) can take one between this call and the moment the listener binds it, nor
    while the listener is down for a while (a simulated PACS outage) and must come back on the same port.
    The claim lasts until this process exits (or release_port), and keeps this user's concurrent campaigns
    (selftest, parallel runs) from picking the same port.

    Claims live in the per-user runtime directory, so they do not coordinate different Unix users: two
    users' campaigns may pick the same port at the same moment. The bind test below still rejects a port
    someone already listens on; only the short window between this call and the listener's bind is then
    unprotected, and the loser's simulator fails to start with a clear error rather than a wrong verdict.
    Falls back to a kernel-chosen port if none is found.
    """
    high = min(32767, _ephemeral_low() - 1)
    low = 20000 if high - 20000 >= 1000 else max(1024, high - 4000)  # a wide ephemeral range (e.g. from 10000)
    rng = random.SystemRandom()
    for _ in range(200 if high - low >= 100 else 0):
        port = rng.randint(low, high)
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


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768
