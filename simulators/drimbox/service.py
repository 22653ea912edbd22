"""The reference DRIMbox: drimcheck's golden DUT, a real HTTPS service on its fixed FQDNs.

It runs as its own process (`python -m simulators.drimbox --config FILE`), configured by
drimcheck/reference.py with its listeners (one per FQDN and scheme, each with its certificate), its
PACS and an optional mutant id. A mutant changes one behaviour to break the requirements it declares
(mutants.toml); everything else stays golden.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simulators.drimbox import mutants

log = logging.getLogger("drimbox")


@dataclass(frozen=True)
class PacsLink:
    """A PACS this DRIMbox serves, with the fixed FQDN pair ANS assigned to it."""

    name: str
    db: str
    vi: str
    aet: str
    host: str
    dicom_port: int
    http_url: str
    username: str
    password: str


@dataclass(frozen=True)
class Listener:
    fqdn: str
    role: str  # "db" or "vi"
    scheme: str  # "https" or "http"
    host: str
    port: int
    cert: str | None = None
    key: str | None = None


@dataclass
class DrimboxConfig:
    """Everything the DRIMbox is installed with: listeners, PACS, functions, certificates, peers' addresses."""

    name: str
    registry: str
    listeners: list[Listener]
    pacs: list[PacsLink]
    calling_aet: str = "DRIMBOX"
    mutant: str | None = None
    ready_file: str | None = None
    functions: list[str] = field(default_factory=list)  # modules of simulators.drimbox: "source", "trust", "conso"
    certs: dict[str, dict[str, str]] = field(default_factory=dict)  # role -> {"cert", "key", "chain"} PEM paths
    trust: dict[str, str] = field(default_factory=dict)  # "igc_chain": PEM of IGC-Santé roots+intermediates, ...
    endpoints: dict[str, str] = field(default_factory=dict)  # own non-HTTP endpoints, e.g. "mllp": "127.0.0.1:2575"
    settings: dict[str, Any] = field(default_factory=dict)  # plain [dut] values of sut.toml, e.g. "iocm_aet": "DRIMBOX"
    peers: dict[str, Any] = field(default_factory=dict)  # what the harness simulators told us (URLs, AETs, ...)
    hosts: dict[str, str] = field(default_factory=dict)  # FQDN -> "ip:port" resolution (no DNS in the test bed)
    workdir: str = "."

    @classmethod
    def from_file(cls, path: Path) -> DrimboxConfig:
        data = json.loads(path.read_text(encoding="utf-8"))
        data["listeners"] = [Listener(**item) for item in data["listeners"]]
        data["pacs"] = [PacsLink(**item) for item in data["pacs"]]
        return cls(**data)


class PacsProbe:
    """Checks a PACS is reachable with a DICOM C-ECHO (the association a DRIMbox really depends on)."""

    def __init__(self, calling_aet: str, timeout_s: float = 1.0):
        self.calling_aet = calling_aet
        self.timeout_s = timeout_s

    def echo(self, pacs: PacsLink, port: int | None = None) -> tuple[bool, str]:
        from pynetdicom import AE
        from pynetdicom.sop_class import Verification

        ae = AE(ae_title=self.calling_aet)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.timeout_s
        ae.connection_timeout = self.timeout_s
        ae.add_requested_context(Verification)
        started = time.monotonic()
        assoc = ae.associate(pacs.host, port or pacs.dicom_port, ae_title=pacs.aet)
        if not assoc.is_established:
            # why, so that a DOWN in the evidence tells a refused connection from a PACS too slow to answer
            elapsed = time.monotonic() - started
            if assoc.is_rejected:
                why = "rejetée par le PACS"
            elif elapsed >= self.timeout_s * 0.9:
                why = f"sans réponse en {self.timeout_s:g} s"
            else:
                why = "connexion refusée ou interrompue"
            # no address in the text: HLT-05 looks for patient numbers (5-digit INSEE codes) in every answer
            return False, f"association DICOM {why} après {elapsed:.2f} s"
        try:
            status = assoc.send_c_echo()
            ok = bool(status) and status.Status == 0x0000
            return ok, "C-ECHO réussi" if ok else "C-ECHO en échec"
        finally:
            assoc.release()


class Drimbox:
    """Behaviour of the reference DRIMbox, independent of the HTTP framework."""

    def __init__(self, config: DrimboxConfig):
        import importlib

        self.config = config
        mutants.activate(config.mutant)  # the one switch every module of the reference asks (mutants.active)
        self.probe = PacsProbe(config.calling_aet)
        self._last_failure: dict[str, float] = {}
        self._recovered_at: dict[str, float] = {}  # mutant cov2-health-up-cached-after-recovery only
        # Each function module exposes `Function(box)` with routes(), health_checks(), start(), stop().
        self.functions = [importlib.import_module(f"simulators.drimbox.{name}").Function(self)
                          for name in config.functions]

    def function(self, name: str) -> Any:
        for f in self.functions:
            if f.__module__.rsplit(".", 1)[-1] == name:
                return f
        return None

    def start(self) -> None:
        for f in self.functions:
            f.start()

    def stop(self) -> None:
        for f in reversed(self.functions):
            try:
                f.stop()
            except Exception:  # stopping is best effort (logged)
                log.exception("stopping %s", f)

    # -- HealthCheck ---------------------------------------------------------------------------
    def health(self) -> tuple[int, dict[str, Any]]:
        """MicroProfile-Health-shaped status: the DRIMbox itself and one check per PACS, really probed."""
        if mutants.active("health-slow"):
            time.sleep(2.5)
        checks: list[dict[str, Any]] = [{"name": "DRIMbox", "status": "UP"}]
        for pacs in self.config.pacs[:1] if mutants.active("cov-health-first-pacs-only") else self.config.pacs:
            checks.append(self._pacs_check(pacs))
        if mutants.active("health-down-unnamed"):  # hides which PACS is down (functions' checks stay as they are)
            checks = [{"name": "backend", "status": "DOWN" if any(c["status"] == "DOWN" for c in checks) else "UP"}]
        for f in self.functions:
            checks.extend(f.health_checks())
        up = all(c["status"] == "UP" for c in checks)
        body: dict[str, Any] = {"status": "UP" if up else "DOWN", "checks": checks}
        if mutants.active("health-leaks-patient"):
            body["checks"][0]["data"] = {"derniere_etude": self._last_study_identity()}
        code = 200 if up or mutants.active("health-200-when-down") else 503
        return code, body

    def _pacs_check(self, pacs: PacsLink) -> dict[str, Any]:
        data: dict[str, Any] = {"fqdn": pacs.db, "aet": pacs.aet}
        if mutants.active("health-always-up"):
            return {"name": _check_name(pacs), "status": "UP", "data": data}
        port = pacs.dicom_port + 1 if mutants.active("health-always-down") else None
        if mutants.active("cov2-health-up-cached-after-recovery") and \
                time.monotonic() - self._recovered_at.get(pacs.db, -1e9) < 30.0:
            # mutant: after a reconnection the pooled association is trusted until its 30 s keep-alive
            return {"name": _check_name(pacs), "status": "UP", "data": data}
        ok, detail = self.probe.echo(pacs, port)
        now = time.monotonic()
        if not ok:
            self._last_failure[pacs.db] = now
        elif mutants.active("cov2-health-up-cached-after-recovery") and pacs.db in self._last_failure and \
                self._recovered_at.get(pacs.db, -1e9) < self._last_failure[pacs.db]:
            self._recovered_at[pacs.db] = now
        elif mutants.active("health-slow-recovery") and now - self._last_failure.get(pacs.db, -1e9) < 15.0:
            ok, detail = False, "reconnexion en attente"
        if not ok:
            data["error"] = detail
        return {"name": _check_name(pacs), "status": "UP" if ok else "DOWN", "data": data}

    def _last_study_identity(self) -> dict[str, str]:
        """Mutant only: what a careless status page would show (the last study's patient)."""
        import httpx

        pacs = self.config.pacs[0]
        try:
            r = httpx.get(f"{pacs.http_url}/dicom-web/studies", params={"limit": "1", "includefield": "00100010"},
                          auth=(pacs.username, pacs.password), timeout=1.0)
            item = (r.json() or [{}])[0]
        except (httpx.HTTPError, ValueError, IndexError):
            return {}
        name = (item.get("00100010", {}).get("Value") or [{}])[0]
        pid = (item.get("00100020", {}).get("Value") or [""])[0]
        return {"PatientID": pid, "PatientName": name.get("Alphabetic", "") if isinstance(name, dict) else str(name)}

    def serves_health_in_clear(self) -> bool:
        return mutants.active("health-plain-http")


def build_apps(box: Drimbox) -> dict[tuple[str, str], Any]:
    """One ASGI app per (role, scheme): the dbN API, the viN viewer, and their plain-HTTP sides."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse
    from starlette.routing import Route

    def health(request: Request) -> JSONResponse:
        code, body = box.health()
        return JSONResponse(body, status_code=code)

    def viewer_home(request: Request) -> HTMLResponse:
        return HTMLResponse(f"<!doctype html><title>Visionneuse {box.config.name}</title><p>Visionneuse DRIMbox</p>")

    def acme_challenge(request: Request) -> PlainTextResponse:
        # No stale challenge files: the reference purges them once a certificate is issued (seed §2.6).
        return PlainTextResponse("not found", status_code=404)

    def to_https(request: Request) -> RedirectResponse:
        host = (request.headers.get("host") or "").split(":")[0]
        return RedirectResponse(f"https://{host}{request.url.path}", status_code=301)

    clear_routes = [Route("/.well-known/acme-challenge/{token}", acme_challenge)]
    if box.serves_health_in_clear():
        clear_routes.append(Route("/q/health", health))
    if mutants.active("cov2-clr-health-path-variants"):
        # mutant: the reverse proxy redirects the exact path /q/health only; its neighbours reach the backend,
        # which (like Quarkus) answers /q/health/, /q/health/live... and any case of the path
        def health_variant(request: Request) -> Any:
            path = request.url.path
            if path.lower().rstrip("/") == "/q/health" and path != "/q/health" or path.lower().startswith("/q/health/"):
                return health(request)
            return to_https(request)

        clear_routes.append(Route("/{prefix:path}", health_variant, methods=["GET", "HEAD"]))
    clear_routes.append(Route("/{path:path}", to_https, methods=["GET", "POST", "HEAD"]))

    base = {
        ("db", "https"): [Route("/q/health", health)],
        ("vi", "https"): [Route("/", viewer_home)],
        ("db", "http"): [],
        ("vi", "http"): [],
    }
    for f in box.functions:
        for key, routes in f.routes().items():
            base[key] = list(routes) + base[key]
    base[("db", "http")] += clear_routes
    base[("vi", "http")] += clear_routes
    return {key: Starlette(routes=routes) for key, routes in base.items()}


def peer_certificate(request: Any) -> dict[str, Any] | None:
    """The verified client certificate of the TLS connection (mTLS), or None: {"subject": dict, "der": bytes}."""
    state = request.scope.get("state") or {}
    der = state.get("peercert_der")
    return {"subject": state.get("peercert"), "der": der} if der else None


def _peercert_protocol():
    """uvicorn's h11 protocol, extended to expose the client certificate to the app (uvicorn does not)."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class PeerCertH11(H11Protocol):
        def connection_made(self, transport):  # type: ignore[override]
            super().connection_made(transport)
            sslobj = transport.get_extra_info("ssl_object")
            if sslobj is not None:
                self.app_state = {**self.app_state, "peercert": sslobj.getpeercert(),
                                  "peercert_der": sslobj.getpeercert(binary_form=True)}

    return PeerCertH11


#: Cipher suites of the `tls-legacy-ciphers-only` mutant: AEAD suites that only TLS 1.2 can use, plus historical
#: suites that TLS 1.0/1.1 can use. The historical suites this libssl still has are the NULL-encryption ones: Debian
#: builds OpenSSL 3 with OPENSSL_NO_WEAK_SSL_CIPHERS, so 3DES, RC4, DES, IDEA and SEED suites do not exist here.
LEGACY_ONLY_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:NULL-SHA:NULL-MD5:@SECLEVEL=0"


def accept_legacy_tls_with_legacy_ciphers_only(ctx: ssl.SSLContext) -> None:
    """Mutant: TLS 1.0 and 1.1 accepted, but only with a historical cipher suite (TLS 1.2 and 1.3 unchanged)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.TLSv1
    ctx.set_ciphers(LEGACY_ONLY_CIPHERS)


def serve(config: DrimboxConfig) -> None:
    """Run every listener until SIGTERM/SIGINT; write the ready file once all of them accept connections."""
    import signal

    import uvicorn

    box = Drimbox(config)
    apps = build_apps(box)
    box.start()
    servers = []
    for lst in config.listeners:
        kwargs: dict[str, Any] = {}
        if lst.scheme == "https":
            kwargs.update(ssl_certfile=lst.cert, ssl_keyfile=lst.key, http=_peercert_protocol())
            if lst.role == "db" and config.trust.get("igc_chain"):
                # dbN: client certificates are optional at TLS level (the Météo has none) and, when
                # presented, must chain to IGC-Santé; the Source API then requires one (mTLS).
                kwargs.update(ssl_ca_certs=config.trust["igc_chain"], ssl_cert_reqs=ssl.CERT_OPTIONAL)
        uc = uvicorn.Config(apps[(lst.role, lst.scheme)], host=lst.host, port=lst.port, log_level="warning",
                            access_log=False, lifespan="off", timeout_graceful_shutdown=1, **kwargs)
        if lst.scheme == "https":
            uc.load()  # builds uc.ssl now, so that functions can adjust it (TLS versions, client trust)
            for f in box.functions:
                if hasattr(f, "configure_tls"):
                    f.configure_tls(lst, uc.ssl)
            if mutants.active("tls-legacy-ciphers-only"):
                accept_legacy_tls_with_legacy_ciphers_only(uc.ssl)
        servers.append(uvicorn.Server(uc))
    threads = [threading.Thread(target=s.run, name=f"listener-{i}", daemon=True) for i, s in enumerate(servers)]
    for t in threads:
        t.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    deadline = time.monotonic() + 15
    while not all(s.started for s in servers):
        if time.monotonic() > deadline or not all(t.is_alive() for t in threads):
            log.error("listeners did not start")
            os._exit(3)
        time.sleep(0.01)
    if config.ready_file:
        Path(config.ready_file).write_text(json.dumps({"pid": os.getpid()}), encoding="utf-8")
    log.info("reference DRIMbox ready (%d listeners, mutant=%s)", len(servers), config.mutant)
    stop.wait()
    for s in servers:
        s.should_exit = True
    box.stop()
    for t in threads:
        t.join(timeout=3)


def _check_name(pacs: PacsLink) -> str:
    return pacs.name if "pacs" in pacs.name.lower() else f"PACS {pacs.name}"
