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
import copy
import ctypes
import hashlib
import io
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
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

DEFAULT_BINARY = "/usr/sbin/Orthanc"
DEFAULT_DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
SCU_AET = "DRIMCHECK_SCU"  # calling AE title of our own C-STORE client
REFERENCE_DUT_AET = "DRIMBOX"  # calling AE title of the embedded reference DRIMbox (C-ECHO, C-FIND)
DEFAULT_CALLING_AETS = (REFERENCE_DUT_AET, SCU_AET)
LOOPBACK = "127.0.0.1"
_WILDCARDS = {"", "0.0.0.0", "::", "*"}

_PORT_IN_USE = "privileged or already in use"
_UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_START_ATTEMPTS = 5
_STOW_BATCH = 50


@dataclass
class OrthancConfig:
    """Settings of one managed Orthanc; ports 0 are picked free at the first start and kept across restarts."""

    aet: str = "DRIMCHECK_PACS"
    http_port: int = 0  # 0 = pick a free port
    dicom_port: int = 0
    username: str = "drimcheck"
    password: str | None = None  # None = random per instance
    name: str = "DRIMCHECK-PACS"
    # name -> (aet, host, port); AllowEcho/Find/Get/Move/Store all true
    modalities: dict[str, tuple[str, str, int]] = field(default_factory=dict)
    # Interface Orthanc listens on: loopback for a DUT on this host (the embedded reference), "0.0.0.0" for
    # a DUT on another host, or one address of this host.
    bind_host: str = LOOPBACK
    # AE titles allowed to open associations besides the declared modalities: the DUT's and the harness's.
    calling_aets: tuple[str, ...] = DEFAULT_CALLING_AETS
    binary: str = DEFAULT_BINARY
    dicomweb_plugin: str = DEFAULT_DICOMWEB_PLUGIN
    extra: dict[str, Any] = field(default_factory=dict)  # merged last into Orthanc's JSON (tuning, fault injection)


class OrthancError(RuntimeError):
    """A failure of the PACS simulator: one clear line, plus the tail of Orthanc's log when it helps."""

    def __init__(self, message: str, log_tail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.log_tail = log_tail

    def __str__(self) -> str:
        if not self.log_tail:
            return self.message
        return f"{self.message}\n--- tail of Orthanc's log ---\n{self.log_tail}"


# --------------------------------------------------------------------------- process plumbing

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


def _on_conn_open(event: Any) -> None:
    try:
        event.assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (AttributeError, OSError):
        pass


def _nodelay_handler() -> tuple[Any, Any]:
    from pynetdicom import evt

    return (evt.EVT_CONN_OPEN, _on_conn_open)


# pynetdicom event handler that disables Nagle on an association's socket (requestor or acceptor side):
# pass it in evt_handlers= of AE.associate() / AE.start_server().
NODELAY_HANDLER = _nodelay_handler()


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def encode_dataset(ds: pydicom.Dataset) -> bytes:
    """A dataset as a DICOM Part 10 file (what STOW-RS expects); Explicit VR LE file meta added if missing."""
    if "TransferSyntaxUID" not in getattr(ds, "file_meta", {}):
        ds = copy.copy(ds)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = meta
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def _batched(items: Iterable[Any], n: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


def _tag_value(item: dict, tag: str) -> str | None:
    values = item.get(tag, {}).get("Value") or [None]
    return values[0]


# --------------------------------------------------------------------------- the managed Orthanc


class Orthanc:
    """A managed Orthanc (own JSON config, scratch storage under workdir, basic auth, DICOMweb plugin)."""

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

    # ----------------------------------------------------------------- identity

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

    def client(self) -> httpx.Client:
        """A new httpx client on base_url with basic auth and bounded timeouts (the caller closes it)."""
        return httpx.Client(base_url=self.base_url, auth=self.auth, timeout=httpx.Timeout(30.0, connect=5.0))

    def __repr__(self) -> str:
        state = "running" if self._proc is not None and self._proc.poll() is None else "stopped"
        return f"<Orthanc {self.aet} http={self.http_port} dicom={self.dicom_port} {state}>"

    # ----------------------------------------------------------------- lifecycle

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

    @property
    def loopback_only(self) -> bool:
        """True when only this host may reach Orthanc (bind_host is a loopback address)."""
        bind = self.config.bind_host.strip()
        return bind not in _WILDCARDS and (bind.startswith("127.") or bind in ("::1", "localhost"))

    def _modalities_json(self) -> dict[str, dict[str, Any]]:
        """Declared modalities, plus one calling-only entry per allowed AE title not declared already."""
        out = {name: self._modality_json(*m) for name, m in self._modalities.items()}
        declared = {m[0] for m in self._modalities.values()}
        caller_host = LOOPBACK if self.loopback_only else self.host
        for aet in dict.fromkeys(self.config.calling_aets):
            if aet and aet not in declared:
                # Port 104 is never used: a calling-only AE is no C-MOVE destination.
                out[f"caller-{re.sub(r'[^A-Za-z0-9_-]', '_', aet)}"] = self._modality_json(aet, caller_host, 104)
        return out

    def _orthanc_json(self) -> dict[str, Any]:
        assert self.scratch is not None
        db = str(self.scratch / "db")
        loopback = self.loopback_only
        conf: dict[str, Any] = {
            "Name": self.config.name,
            "StorageDirectory": db,
            "IndexDirectory": db,
            "StorageCompression": False,
            "Plugins": [self.config.dicomweb_plugin],
            "HttpServerEnabled": True,
            "HttpPort": self.http_port,
            "HttpDescribeErrors": True,
            "HttpCompressionEnabled": False,  # DICOM does not compress: keep throughput figures honest
            "HttpTimeout": 10,  # Orthanc as HTTP client
            "WebDavEnabled": False,
            "SslEnabled": False,  # never: Orthanc's TLS segfaults in Debian's build (docs/stack.md §2)
            "RemoteAccessAllowed": not loopback,  # HTTP clients from another host: only for a DUT there
            "AuthenticationEnabled": True,
            "RegisteredUsers": {self.config.username: self.password},
            "DicomServerEnabled": True,
            "DicomAet": self.aet,
            "DicomPort": self.dicom_port,
            # Only the test bed's AE titles: declared modalities and calling_aets, calling our AE title.
            "DicomCheckCalledAet": True,
            "DicomCheckModalityHost": loopback,
            "DicomAlwaysAllowEcho": False,
            "DicomAlwaysAllowStore": False,
            "DicomAlwaysAllowFind": False,
            "DicomAlwaysAllowFindWorklist": False,
            "DicomAlwaysAllowGet": False,
            "DicomAlwaysAllowMove": False,
            "UnknownSopClassAccepted": True,
            "DicomScuTimeout": 5,
            "DicomModalitiesInDatabase": False,
            "DicomModalities": self._modalities_json(),
            "OrthancPeers": {},
            "StableAge": 1,
            "SaveJobs": False,
            "DicomWeb": {
                "Enable": True, "Root": "/dicom-web/", "EnableWado": True, "WadoRoot": "/wado",
                "Host": f"{self.host}:{self.http_port}", "Ssl": False,
            },
        }
        if self.config.bind_host.strip() not in _WILDCARDS:
            conf["HttpBindAddresses"] = [self.host]  # Orthanc >= 1.12.10; older ones ignore it (bind shim)
        conf.update(self.config.extra)
        return conf

    @staticmethod
    def _modality_json(aet: str, host: str, port: int) -> dict[str, Any]:
        return {"AET": aet, "Host": host, "Port": int(port), "AllowEcho": True, "AllowFind": True,
                "AllowGet": True, "AllowMove": True, "AllowStore": True}

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
        probe = httpx.Client(base_url=self.base_url, auth=self.auth, timeout=httpx.Timeout(0.5))
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

    def _wait_external(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._request("GET", "/system", timeout=2.0)
                return
            except OrthancError as exc:
                if "HTTP 401" in exc.message or time.monotonic() >= deadline:
                    raise
            time.sleep(0.2)

    # ----------------------------------------------------------------- REST plumbing

    def _get_client(self) -> httpx.Client:
        if self._http is None:
            self._http = self.client()
        return self._http

    def _close_http(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def _request(self, method: str, path: str, *, ok: tuple[int, ...] = (200,), **kwargs: Any) -> httpx.Response:
        """One REST call; any transport error or unexpected status becomes a one-line OrthancError."""
        try:
            response = self._get_client().request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise OrthancError(f"Orthanc {method} {path}: timed out ({type(exc).__name__})") from None
        except httpx.HTTPError as exc:
            raise OrthancError(f"Orthanc {method} {path} at {self.base_url}: "
                               f"{type(exc).__name__}: {_one_line(str(exc)) or 'no detail'}") from None
        if response.status_code == 401:
            raise OrthancError(f"Orthanc {method} {path}: HTTP 401, credentials of user "
                               f"'{self.config.username}' rejected")
        if response.status_code not in ok:
            raise OrthancError(f"Orthanc {method} {path}: HTTP {response.status_code}: "
                               f"{_one_line(response.text, 200) or 'empty body'}")
        return response

    def system(self) -> dict[str, Any]:
        """GET /system (name, AET, ports, versions)."""
        return self._request("GET", "/system").json()

    # ----------------------------------------------------------------- data

    def clear(self) -> None:
        """Delete every patient (hence every study, series and instance): fast reset between scenarios."""
        patients = self._request("GET", "/patients").json()
        if patients:
            self._request("POST", "/tools/bulk-delete", json={"Resources": patients})

    def store(self, datasets: Iterable[pydicom.Dataset], *, via: str = "stow", batch_size: int = _STOW_BATCH) -> None:
        """Store instances via STOW-RS (batches of batch_size) or via C-STORE (pynetdicom, TCP_NODELAY)."""
        if via == "stow":
            self._store_stow(datasets, batch_size)
        elif via == "cstore":
            self._store_cstore(datasets)
        else:
            raise ValueError(f"via must be 'stow' or 'cstore', not {via!r}")

    def _store_stow(self, datasets: Iterable[pydicom.Dataset], batch_size: int) -> None:
        boundary = "drimcheck-" + secrets.token_hex(12)
        headers = {"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
                   "Accept": "application/dicom+json"}
        for batch in _batched(datasets, batch_size):
            body = bytearray()
            for ds in batch:
                body += f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
                body += encode_dataset(ds)
                body += b"\r\n"
            body += f"--{boundary}--\r\n".encode()
            response = self._request("POST", "/dicom-web/studies", ok=(200, 202, 409), content=bytes(body),
                                     headers=headers)
            try:
                result = response.json()
            except ValueError:
                result = {}
            failed = result.get("00081198", {}).get("Value", [])
            stored = result.get("00081199", {}).get("Value", [])
            if failed or len(stored) != len(batch) or response.status_code != 200:
                reason = _tag_value(failed[0], "00081197") if failed else None
                raise OrthancError(f"STOW-RS: Orthanc stored {len(stored)} of {len(batch)} instances "
                                   f"(HTTP {response.status_code}, {len(failed)} failed"
                                   + (f", first FailureReason {reason:#06x}" if isinstance(reason, int) else "") + ")")

    def _store_cstore(self, datasets: Iterable[pydicom.Dataset]) -> None:
        from pynetdicom import AE

        items = list(datasets)
        if not items:
            return
        syntaxes: dict[str, list[str]] = {}
        for ds in items:
            ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None) or ExplicitVRLittleEndian
            found = syntaxes.setdefault(str(ds.SOPClassUID), [])
            if ts not in found:
                found.append(ts)
        if len(syntaxes) > 128:
            raise OrthancError(f"C-STORE: {len(syntaxes)} SOP classes exceed the 128 presentation contexts")
        ae = AE(ae_title=SCU_AET)
        ae.acse_timeout, ae.dimse_timeout, ae.network_timeout = 5, 30, 30
        for sop_class, found in syntaxes.items():
            ae.add_requested_context(sop_class, list(dict.fromkeys(
                [*found, ExplicitVRLittleEndian, ImplicitVRLittleEndian])))
        where = f"{self.aet}@{self.host}:{self.dicom_port}"
        assoc = ae.associate(self.host, self.dicom_port, ae_title=self.aet, evt_handlers=[NODELAY_HANDLER])
        if not assoc.is_established:
            raise OrthancError(f"C-STORE: association with {where} was "
                               f"{'rejected' if assoc.is_rejected else 'aborted or failed'}")
        try:
            for ds in items:
                try:
                    status = assoc.send_c_store(ds)
                except (ValueError, AttributeError, RuntimeError) as exc:  # no context, bad dataset, ...
                    raise OrthancError(f"C-STORE of {ds.get('SOPInstanceUID', '?')} to {where}: "
                                       f"{_one_line(str(exc))}") from None
                code = getattr(status, "Status", None)
                if code is None or not (code == 0x0000 or 0xB000 <= code <= 0xBFFF):
                    detail = "no response (timeout or abort)" if code is None else f"status {code:#06x}"
                    raise OrthancError(f"C-STORE of {ds.SOPInstanceUID} to {where} failed: {detail}")
        finally:
            if assoc.is_established:
                assoc.release()

    def instances_of_study(self, study_uid: str) -> list[dict[str, str]]:
        """Every instance of a study per QIDO-RS, as UID dicts sorted by series then SOP UID; [] when absent."""
        self._check_uid(study_uid)
        params = [("includefield", tag) for tag in ("0020000D", "0020000E", "00080016", "00080018")]
        response = self._request("GET", f"/dicom-web/studies/{study_uid}/instances", ok=(200, 204, 404),
                                 params=params, headers={"Accept": "application/dicom+json"})
        if response.status_code != 200 or not response.content.strip():
            return []
        rows = [{"StudyInstanceUID": _tag_value(item, "0020000D") or study_uid,
                 "SeriesInstanceUID": _tag_value(item, "0020000E"),
                 "SOPInstanceUID": _tag_value(item, "00080018"),
                 "SOPClassUID": _tag_value(item, "00080016")} for item in response.json()]
        return sorted(rows, key=lambda r: (r["SeriesInstanceUID"] or "", r["SOPInstanceUID"] or ""))

    def delete_instance(self, sop_uid: str) -> None:
        """Delete one instance by SOPInstanceUID (simulates a missing image); OrthancError if unknown."""
        self._request("DELETE", f"/instances/{self._lookup(sop_uid, 'Instance')}")

    def delete_study(self, study_uid: str) -> None:
        """Delete one study by StudyInstanceUID; OrthancError if unknown."""
        self._request("DELETE", f"/studies/{self._lookup(study_uid, 'Study')}")

    def _lookup(self, uid: str, level: str) -> str:
        self._check_uid(uid)
        matches = self._request("POST", "/tools/lookup", content=uid).json()
        for match in matches:
            if match.get("Type") == level:
                return match["ID"]
        raise OrthancError(f"Orthanc has no {level.lower()} with UID {uid}")

    @staticmethod
    def _check_uid(uid: str) -> None:
        if not _UID_RE.match(uid or "") or len(uid) > 64:
            raise OrthancError(f"not a DICOM UID: {uid!r}")

    def add_modality(self, name: str, aet: str, host: str, port: int) -> None:
        """Declare a DICOM peer (C-MOVE destination, C-GET caller) now via REST; kept across restarts."""
        self._modalities[name] = (aet, host, int(port))
        if self.running:
            self._request("PUT", f"/modalities/{name}", json=self._modality_json(aet, host, port))
