"""A real Orthanc process that plays the PACS of the DRIMbox under test (docs/stack.md §2, §3).

Lifecycle guarantees: Orthanc never outlives the harness.
* ``PR_SET_PDEATHSIG=SIGKILL`` is set in the child (``preexec_fn``, via ctypes). Linux fires it when the
  *thread* that forked the child exits, not the process. Every Orthanc is therefore forked from one
  long-lived daemon thread (``_Spawner``), so starting Orthanc from a short-lived worker thread is safe.
* An ``atexit`` hook kills every Orthanc still running; ``__del__`` and the context manager stop it too.
* Orthanc runs in its own session, so a Ctrl-C in the terminal reaches the harness only (which then stops it).

``TCP_NODELAY``: Debian's DCMTK disables Nagle only when the env variable ``TCP_NODELAY=1`` is set, and
without it every DICOM message stalls ~45 ms. The Orthanc process always gets it; ``start()`` also sets it
in ``os.environ`` (setdefault) so DCMTK tools the harness spawns later (storescu, movescu...) inherit it.
pynetdicom ignores the variable: use ``NODELAY_HANDLER`` (set on our C-STORE association) in your own
associations and servers.

Graceful stop: Orthanc's HTTP (civetweb) and DICOM (DCMTK) accept loops only notice SIGTERM after their
poll timeouts (~3.5 s in total). ``stop()`` connects to both ports after SIGTERM to wake them: ~0.5 s.

Exposure (only the test bed may reach the PACS):
* Interface: Orthanc listens on ``OrthancConfig.bind_host`` (default 127.0.0.1, what the embedded reference
  needs; "0.0.0.0" for a DUT on another host). Orthanc 1.10 (Debian 12) has no bind option for either
  server (``HttpBindAddresses`` exists from 1.12.10 and is set too), so a tiny ``bind()`` wrapper
  (LD_PRELOAD, compiled once per process with the system C compiler) rewrites the wildcard address of
  Orthanc's listening sockets to ``bind_host``. Without a C compiler Orthanc listens on every interface
  (``Orthanc.bind_enforced`` is False) and the restrictions below still apply: non-loopback HTTP
  clients are refused (``RemoteAccessAllowed`` false) and DICOM associations must come from 127.0.0.1
  (``DicomCheckModalityHost``), both when bind_host is a loopback address.
* DICOM: only declared AE titles may associate (no ``DicomAlwaysAllow*``): the callers of
  ``OrthancConfig.calling_aets`` (the DUT's calling AE, drimcheck's SCU) and the modalities declared with
  ``add_modality()``; the called AE title must be Orthanc's (``DicomCheckCalledAet``).


C-MOVE/C-GET: Orthanc only sends to a destination AET it knows: declare the DUT's storage SCP with
``add_modality()`` (also needed for a C-GET caller). Storage and log (``orthanc.log``) live in ``scratch``
under workdir and are never deleted by this class.
"""

from __future__ import annotations

import atexit
import ctypes
import hashlib
import json
import os
import queue
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import httpx

from simulators.pacs.orthanc_config import (
    _WILDCARDS,
    DEFAULT_BINARY,
    DEFAULT_CALLING_AETS,
    DEFAULT_DICOMWEB_PLUGIN,
    LOOPBACK,
    REFERENCE_DUT_AET,
    SCU_AET,
    OrthancConfig,
    OrthancError,
    OrthancSettings,
    _one_line,
)
from simulators.pacs.orthanc_data import NODELAY_HANDLER, OrthancStorage, OrthancStudies, encode_dataset
from simulators.pacs.orthanc_rest import default_ssl_context

#: The public names of this module, as before it was split (settings, errors and helpers now live in its parts).
__all__ = [
    "DEFAULT_BINARY", "DEFAULT_DICOMWEB_PLUGIN", "SCU_AET", "REFERENCE_DUT_AET", "DEFAULT_CALLING_AETS", "LOOPBACK",
    "NODELAY_HANDLER", "Orthanc", "OrthancConfig", "OrthancError", "bind_shim", "encode_dataset", "listening_sockets",
]

# --------------------------------------------------------------------------- process plumbing

_PORT_IN_USE = "privileged or already in use"
_START_ATTEMPTS = 5
_PR_SET_PDEATHSIG = 1
_SIGKILL = int(signal.SIGKILL)
try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved here: no dlopen/import in the forked child
except (OSError, AttributeError):  # not Linux/glibc: atexit and __del__ still apply
    _prctl = None


def _preexec(parent_pid: int):
    """Child-side hook: die with SIGKILL when the forking thread dies; bail out if the parent is already gone."""

    def hook() -> None:
        if _prctl is not None:
            _prctl(_PR_SET_PDEATHSIG, _SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died between fork() and prctl()
            os._exit(1)

    return hook


class _Spawner:
    """One long-lived daemon thread forks every Orthanc, because PDEATHSIG fires when the forking *thread* exits."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def popen(self, args: list[str], **kwargs: Any) -> subprocess.Popen:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="drimcheck-orthanc-spawner", daemon=True)
                self._thread.start()
        done, box = threading.Event(), {}
        self._jobs.put((args, kwargs, box, done))
        if not done.wait(30):
            raise OrthancError("timed out (30 s) waiting for the spawner thread to fork Orthanc")
        if "error" in box:
            raise box["error"]
        return box["proc"]

    def _run(self) -> None:
        while True:
            args, kwargs, box, done = self._jobs.get()
            try:
                box["proc"] = subprocess.Popen(args, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - handed over to the calling thread
                box["error"] = exc
            finally:
                done.set()


_SPAWNER = _Spawner()
_LIVE: weakref.WeakSet[Orthanc] = weakref.WeakSet()


# LD_PRELOAD wrapper of bind(): a listening socket bound to the IPv4 wildcard (Orthanc's HTTP and DICOM
# servers) is bound to $DRIMCHECK_BIND_ADDRESS instead. Port-0 binds (outgoing sockets) are left alone.
_BIND_SHIM_C = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

typedef int (*bind_fn)(int, const struct sockaddr *, socklen_t);

int bind(int fd, const struct sockaddr *addr, socklen_t len) {
    static bind_fn real_bind;
    if (!real_bind) real_bind = (bind_fn)dlsym(RTLD_NEXT, "bind");
    const char *host = getenv("DRIMCHECK_BIND_ADDRESS");
    if (host && addr && addr->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        struct sockaddr_in a;
        memcpy(&a, addr, sizeof a);
        if (a.sin_addr.s_addr == htonl(INADDR_ANY) && a.sin_port != 0 && inet_pton(AF_INET, host, &a.sin_addr) == 1)
            return real_bind(fd, (const struct sockaddr *)&a, sizeof a);
    }
    return real_bind(fd, addr, len);
}
"""


_SHIM_LOCK = threading.Lock()
_SHIM: dict[str, Any] = {}  # "path": compiled library or None, "dir": its private directory, "why": failure


def bind_shim() -> str | None:
    """Path of the compiled bind() wrapper (compiled once per process), or None when no C compiler works."""
    with _SHIM_LOCK:
        if "path" in _SHIM:
            return _SHIM["path"]
        _SHIM["path"] = None
        compiler = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
        if compiler is None:
            _SHIM["why"] = "no C compiler (cc/gcc)"
            return None
        # Compiled once per user and source version into the per-user runtime directory (0700, ours), so the
        # campaigns of a selftest do not each pay the compiler; built aside, then renamed into place.
        from simulators.procutil import runtime_dir

        digest = hashlib.sha256(_BIND_SHIM_C.encode()).hexdigest()[:16]
        cached = runtime_dir() / f"orthanc-bind-{digest}.so"
        if cached.is_file() and cached.stat().st_uid == os.geteuid():
            _SHIM["path"] = str(cached)
            return _SHIM["path"]
        directory = tempfile.mkdtemp(prefix="drimcheck-orthanc-bind-")  # 0700
        _SHIM["dir"] = directory
        source, library = Path(directory) / "bind.c", Path(directory) / "bind.so"
        source.write_text(_BIND_SHIM_C)
        try:
            proc = subprocess.run([compiler, "-shared", "-fPIC", "-O2", "-o", str(library), str(source), "-ldl"],
                                  capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            _SHIM["why"] = f"{compiler}: {exc}"
            return None
        if proc.returncode != 0 or not library.is_file():
            _SHIM["why"] = f"{compiler} failed: {_one_line(proc.stderr)}"
            return None
        try:
            os.replace(library, cached)
            _SHIM["path"] = str(cached)
        except OSError:
            _SHIM["path"] = str(library)
        return _SHIM["path"]


@atexit.register
def _remove_shim() -> None:
    if _SHIM.get("dir"):
        shutil.rmtree(_SHIM["dir"], ignore_errors=True)


def listening_sockets(pid: int) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket in LISTEN state owned by process ``pid`` (Linux /proc)."""
    inodes = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        return []
    found = []
    for table, width in (("tcp", 8), ("tcp6", 32)):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) < 10 or cols[3] != "0A" or cols[9] not in inodes:  # 0A = LISTEN
                continue
            hex_ip, hex_port = cols[1].split(":")
            raw = bytes.fromhex(hex_ip)
            if width == 8:
                ip = socket.inet_ntop(socket.AF_INET, raw[::-1])
            else:  # four little-endian 32-bit words
                ip = socket.inet_ntop(socket.AF_INET6, b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4)))
            found.append((ip, int(hex_port, 16)))
    return sorted(found)


@atexit.register
def _kill_all_at_exit() -> None:
    """Kill (not terminate: exit must stay fast, storage is scratch) every Orthanc this process started."""
    for orthanc in list(_LIVE):
        orthanc._kill_quietly()


def _free_port() -> int:
    """A port free on every interface (whatever bind_host is), claimed for this process (procutil.free_port).

    Not a kernel-chosen port: those come from the ephemeral range, where every outgoing socket of the machine
    (pynetdicom binds ("", 0) before connecting) and every other campaign's Orthanc draw theirs, so the port
    could be taken while this Orthanc is down for a simulated outage and must come back on it.
    """
    from simulators.procutil import free_port

    return free_port("0.0.0.0")


def _poke(host: str, port: int) -> None:
    """Open and close a TCP connection, to wake an accept loop that is polling for its stop flag."""
    try:
        with socket.create_connection((host, port), timeout=0.2):
            pass
    except OSError:
        pass


# --------------------------------------------------------------------------- the managed Orthanc


class Orthanc(OrthancSettings, OrthancStorage, OrthancStudies):
    """A managed Orthanc (own JSON config, scratch storage under workdir, basic auth, DICOMweb plugin).

    This module holds its process lifecycle; its parts: :mod:`~simulators.pacs.orthanc_config` (settings and
    the Orthanc JSON configuration), :mod:`~simulators.pacs.orthanc_rest` (REST client) and
    :mod:`~simulators.pacs.orthanc_data` (storing instances; finding and deleting studies).
    """

    def __init__(self, config: OrthancConfig | None, workdir: Path | str) -> None:
        self.config = config or OrthancConfig()
        self.workdir = Path(workdir)
        self.password = self.config.password or secrets.token_urlsafe(18)
        self.http_port = self.config.http_port
        self.dicom_port = self.config.dicom_port
        bind = self.config.bind_host.strip()
        self.host = LOOPBACK if bind in _WILDCARDS or bind == "localhost" else bind  # where we (and a DUT on this host) reach it
        self.bind_enforced: bool | None = None  # after start: whether Orthanc listens on bind_host only
        self.scratch: Path | None = None  # created at the first start, kept across restarts
        self.start_seconds: float | None = None  # duration of the last successful start()
        self._modalities: dict[str, tuple[str, str, int]] = dict(self.config.modalities)
        self._ports_fixed = False  # True once a start succeeded: restarts reuse the same ports
        self._managed = True
        self._external_url: str | None = None
        self._proc: subprocess.Popen | None = None
        self._owner_pid = os.getpid()
        self._http: httpx.Client | None = None
        _LIVE.add(self)

    @classmethod
    def external(cls, base_url: str, *, username: str, password: str, aet: str = "ORTHANC",
                 dicom_host: str | None = None, dicom_port: int = 4242) -> Orthanc:
        """A handle on an Orthanc we do not manage (e.g. the docker-compose service): start() only waits for it."""
        self = cls(OrthancConfig(aet=aet, username=username, password=password, dicom_port=dicom_port), ".")
        self._managed = False
        self._external_url = base_url.rstrip("/")
        self.host = dicom_host or (httpx.URL(base_url).host or "127.0.0.1")
        self.http_port = httpx.URL(base_url).port or (443 if httpx.URL(base_url).scheme == "https" else 80)
        return self

    @property
    def aet(self) -> str:
        return self.config.aet

    @property
    def auth(self) -> tuple[str, str]:
        return (self.config.username, self.password)

    @property
    def base_url(self) -> str:
        return self._external_url or f"http://{self.host}:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        return self.base_url + "/dicom-web"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def log_path(self) -> Path | None:
        return self.scratch / "orthanc.log" if self.scratch else None

    @property
    def running(self) -> bool:
        if not self._managed:
            try:
                return self._get_client().get("/system", timeout=2.0).status_code == 200
            except httpx.HTTPError:
                return False
        return self._proc is not None and self._proc.poll() is None

    def __repr__(self) -> str:
        state = "running" if self._proc is not None and self._proc.poll() is None else "stopped"
        return f"<Orthanc {self.aet} http={self.http_port} dicom={self.dicom_port} {state}>"

    def start(self, timeout: float = 15.0) -> None:
        """Spawn Orthanc and wait (bounded) until GET /system answers 200 with our credentials."""
        if not self._managed:
            self._wait_external(timeout)
            return
        if self.running:
            return
        os.environ.setdefault("TCP_NODELAY", "1")  # for DCMTK tools the harness may spawn later
        binary = shutil.which(self.config.binary)
        if binary is None:
            raise OrthancError(f"Orthanc binary not found or not executable: {self.config.binary}")
        if not Path(self.config.dicomweb_plugin).is_file():
            raise OrthancError(f"Orthanc DICOMweb plugin not found: {self.config.dicomweb_plugin} "
                               "(Debian package orthanc-dicomweb)")
        if self.scratch is None:
            self.workdir.mkdir(parents=True, exist_ok=True)
            slug = re.sub(r"[^A-Za-z0-9_-]", "_", self.aet)
            self.scratch = Path(tempfile.mkdtemp(prefix=f"orthanc-{slug}-", dir=self.workdir))
            (self.scratch / "db").mkdir()
        if self.config.bind_host.strip() not in _WILDCARDS:
            bind_shim()  # compiled once per process, outside the start timeout
        t0 = time.monotonic()
        deadline = t0 + timeout
        last: OrthancError | None = None
        port_error: OrthancError | None = None
        attempts = 0
        while True:  # bounded by the deadline, and by _START_ATTEMPTS when picking new ports
            attempts += 1
            if not self._ports_fixed:
                self._pick_ports()
            outcome, error = self._spawn_and_wait(binary, deadline)
            if outcome == "ready":
                self._ports_fixed = True
                self.start_seconds = time.monotonic() - t0
                return
            last = error
            if outcome != "port":
                break
            port_error = error  # reported even if a later attempt only times out
            if time.monotonic() >= deadline:
                break
            busy = re.search(r"\(port = (\d+)\)", error.message if error else "")
            if self._ports_fixed:  # restart: wait (bounded) for whoever holds our port to release it
                time.sleep(0.2)
            elif attempts >= _START_ATTEMPTS or (
                    busy and int(busy.group(1)) in (self.config.http_port, self.config.dicom_port)):
                break  # a port fixed by the configuration is taken: picking again cannot help
        raise port_error or last or OrthancError("Orthanc did not start")

    def stop(self, *, graceful: bool = True, timeout: float = 5.0) -> None:
        """Stop Orthanc: SIGTERM (then SIGKILL after timeout) or, with graceful=False, SIGKILL at once."""
        self._close_http()
        proc = self._proc
        if proc is None or not self._managed:
            return
        if proc.poll() is None:
            if graceful:
                proc.send_signal(signal.SIGTERM)
                end = time.monotonic() + timeout
                while proc.poll() is None and time.monotonic() < end:
                    _poke(self.host, self.http_port)  # wake civetweb's and DCMTK's accept loops (else ~3.5 s)
                    _poke(self.host, self.dicom_port)
                    try:
                        proc.wait(0.05)
                    except subprocess.TimeoutExpired:
                        pass
            if proc.poll() is None:
                proc.kill()
            try:
                proc.wait(5.0)
            except subprocess.TimeoutExpired:
                raise OrthancError(f"Orthanc (pid {proc.pid}) did not exit 5 s after SIGKILL") from None
        self._proc = None

    def restart(self, timeout: float = 15.0) -> None:
        """Stop if running (gracefully), then start again on the same ports and the same storage."""
        if not self._managed:
            raise OrthancError("cannot restart an external Orthanc")
        if self.running:
            self.stop()
        self.start(timeout)

    def __enter__(self) -> Orthanc:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __del__(self) -> None:
        self._kill_quietly()

    def _kill_quietly(self) -> None:
        proc = getattr(self, "_proc", None)
        if proc is None or getattr(self, "_owner_pid", None) != os.getpid():  # never from a forked copy
            return
        try:
            if proc.poll() is None:
                proc.kill()
                proc.wait(2.0)
        except Exception:  # noqa: BLE001 - interpreter shutdown or already reaped: nothing more we can do
            pass
        self._proc = None

    def _pick_ports(self) -> None:
        self.http_port = self.config.http_port or _free_port()
        self.dicom_port = self.config.dicom_port or _free_port()
        while self.dicom_port == self.http_port:
            self.dicom_port = _free_port()

    def _spawn_and_wait(self, binary: str, deadline: float) -> tuple[str, OrthancError | None]:
        """One start attempt: 'ready', or ('port'|'failed', error) with the process already reaped."""
        assert self.scratch is not None and self.log_path is not None
        config_path = self.scratch / "orthanc.json"
        fd = os.open(config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # holds the REST password
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(self._orthanc_json(), indent=2))
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        env = dict(os.environ, TCP_NODELAY="1")
        env.pop("DRIMCHECK_BIND_ADDRESS", None)
        shim = bind_shim() if self.config.bind_host.strip() not in _WILDCARDS else None
        if shim is not None:
            env["DRIMCHECK_BIND_ADDRESS"] = self.host
            env["LD_PRELOAD"] = " ".join(filter(None, [shim, os.environ.get("LD_PRELOAD", "")]))
        with open(self.log_path, "ab") as log:
            log.write(f"=== drimcheck: starting Orthanc (http {self.http_port}, dicom {self.dicom_port}) ===\n"
                      .encode())
            log.flush()
            try:
                self._proc = _SPAWNER.popen(
                    [binary, str(config_path)], stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                    cwd=self.scratch, start_new_session=True, preexec_fn=_preexec(os.getpid()))
            except OSError as exc:
                return "failed", OrthancError(f"cannot execute Orthanc ({binary}): {exc.strerror or exc}")
        self._owner_pid = os.getpid()
        proc = self._proc
        # short timeout: a foreign listener holding our port must not stall this loop
        probe = httpx.Client(base_url=self.base_url, auth=self.auth, timeout=httpx.Timeout(0.5),
                             verify=default_ssl_context())
        try:
            while True:
                new_log = self._read_log(log_offset)
                rc = proc.poll()
                if _PORT_IN_USE in new_log:
                    self._reap(proc)
                    line = self._error_line(new_log) or "port already in use"
                    return "port", OrthancError(
                        f"Orthanc could not bind its ports (http {self.http_port}, dicom {self.dicom_port}): {line}",
                        self._tail(new_log))
                if rc is not None:
                    self._proc = None
                    line = self._error_line(new_log) or "no error line in its log"
                    return "failed", OrthancError(f"Orthanc exited with code {rc} during start-up: {line}",
                                                  self._tail(new_log))
                try:
                    status = probe.get("/system").status_code
                except httpx.HTTPError:
                    status = None
                if status == 200:
                    self.bind_enforced = self._listens_on_bind_host_only(proc.pid)
                    return "ready", None
                if status == 401:
                    self._reap(proc)
                    return "failed", OrthancError("Orthanc rejected our own credentials at start-up (HTTP 401)")
                if time.monotonic() >= deadline:
                    self._reap(proc)
                    return "failed", OrthancError(
                        f"Orthanc not ready after the start timeout (GET {self.base_url}/system, last status "
                        f"{status})", self._tail(self._read_log(log_offset)))
                time.sleep(0.02)
        finally:
            probe.close()

    def _listens_on_bind_host_only(self, pid: int) -> bool:
        """Whether every listening socket of Orthanc is on bind_host (False for a wildcard bind_host)."""
        if self.config.bind_host.strip() in _WILDCARDS:
            return False
        sockets = listening_sockets(pid)
        return bool(sockets) and all(ip in (self.host, f"::ffff:{self.host}") for ip, _ in sockets)

    def listening(self) -> list[tuple[str, int]]:
        """(address, port) of Orthanc's listening TCP sockets ([] when not running or not managed)."""
        return listening_sockets(self._proc.pid) if self._proc is not None else []

    def _reap(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            proc.kill()
        try:
            proc.wait(5.0)
        except subprocess.TimeoutExpired:
            pass
        self._proc = None

    def _read_log(self, offset: int) -> str:
        try:
            with open(self.log_path, "rb") as f:  # type: ignore[arg-type]
                f.seek(offset)
                return f.read(1_000_000).decode("utf-8", "replace")
        except OSError:
            return ""

    @staticmethod
    def _error_line(log: str) -> str:
        """The most telling error line of an Orthanc log excerpt, without its timestamp prefix."""
        errors = [line for line in log.splitlines() if line.startswith("E")]
        for line in errors:
            if "OrthancException" in line or _PORT_IN_USE in line:
                return _one_line(line.split("] ", 1)[-1])
        return _one_line(errors[-1].split("] ", 1)[-1]) if errors else ""

    @staticmethod
    def _tail(log: str, n: int = 12) -> str:
        return "\n".join(log.rstrip().splitlines()[-n:])
