"""Campaign runtime: the simulators, PKI and DUT of one run, and the services steps call on them.

Steps stay thin: everything they arrange or trigger (seed a study, stop a PACS, poll the
HealthCheck) is a method here or on a simulator; everything they judge is a check.
"""

from __future__ import annotations

import atexit
import errno
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509

from drimcheck.config import Address, Endpoint, Pacs, Sut
from drimcheck.errors import INTERRUPTED_FR, CampaignInterrupted, DutUnreachable, HarnessError, signal_name
from drimcheck.evidence import EvidenceStore
from drimcheck.hooks import CAMPAIGN_HOOKS, HOOK_TIMEOUT_S, INTERRUPT_CLEANUP_S, HookRunner
from drimcheck.net import DutClient
from drimcheck.pacsfleet import PacsFleet
from drimcheck.services import (
    Closeable,
    ConfiguresDut,
    InterruptState,
    ScenarioHost,
    ServesHosts,
    SimulatorHandle,
    SimulatorRuntime,
    StepServices,
    WatchesDutStart,
)
from simulators.procutil import free_port

if TYPE_CHECKING:
    from drimcheck.reference import ReferenceDrimbox
    from fixtures.pki import TestPKI
    from simulators.pacs import Orthanc, SyntheticStudy

__all__ = ["CAMPAIGN_HOOKS", "HOOK_TIMEOUT_S", "INTERRUPT_CLEANUP_S", "SIMULATORS", "CampaignRuntime", "Starter",
           "workdir_pattern"]

#: start_for_campaign(runtime) of a simulator module: its handle, or None when it does not apply to this SUT
Starter = Callable[[SimulatorRuntime], SimulatorHandle | None]

WORKDIR_PREFIX = "drimcheck-"  # + "<pid>-": the work directory (CA keys, Orthanc storage) of a campaign process

_WORKDIRS: set[Path] = set()  # work directories of this process still to remove, whatever the exit path


_REMOVERS: list[threading.Thread] = []  # removals started by stop(), overlapping the writing of the reports


@atexit.register
def _remove_workdirs() -> None:
    for thread in list(_REMOVERS):
        thread.join()
    for path in list(_WORKDIRS):
        shutil.rmtree(path, ignore_errors=True)
        _WORKDIRS.discard(path)


def workdir_pattern(pid: int) -> str:
    """Glob, in the system temporary directory, of the work directories created by process `pid`."""
    return f"{WORKDIR_PREFIX}{pid}-*"


class _NotInterrupted:
    """InterruptState until the runner gives its InterruptGuard."""

    signum: int | None = None
    first_at: float | None = None


#: Simulators started for every campaign, in this order, before the DUT: (name, "module:function").
#: function(runtime) is a Starter: it returns a drimcheck.services.SimulatorHandle (stop()), which may also be
#: ConfiguresDut (dut_settings(): what the embedded reference DRIMbox is configured with), ServesHosts
#: (hosts() -> {fqdn: "ip:port"}) and WatchesDutStart; or None when the simulator does not apply to this SUT.
#: A module or function that cannot be loaded is a HarnessError naming it (an incomplete installation), never a
#: simulator silently left out.
SIMULATORS = (
    ("igc", "simulators.igc:start_for_campaign"),  # IGC-Santé publication point (CRL, CA certs), plain HTTP
    ("whitelist", "simulators.whitelist:start_for_campaign"),  # ANS whitelist endpoint
    ("dmp", "simulators.dmp:start_for_campaign"),  # DMP (XDS.b)
    ("psc", "simulators.psc:start_for_campaign"),  # Pro Santé Connect
    ("proxy", "simulators.proxy:start_for_campaign"),  # Proxy e-santé
    ("peers", "simulators.peers:start_for_campaign"),  # peer DRIMboxes
)


class CampaignRuntime:
    """Owns every process and file of one campaign; started lazily by the first scenario, always stopped.

    The façade steps and simulators see (drimcheck.services.StepServices, SimulatorRuntime): the simulated PACS
    are a PacsFleet (drimcheck/pacsfleet.py), the `[hooks]` processes a HookRunner (drimcheck/hooks.py); this
    class keeps the life cycle, the addresses, the simulators and the DUT."""

    def __init__(self, sut: Sut, run_dir: Path, *, mutant: str | None = None, keep_workdir: bool = False) -> None:
        self.sut = sut
        self.run_dir = run_dir
        self.mutant = mutant
        self.keep_workdir = keep_workdir
        self.evidence = EvidenceStore(run_dir)
        self.workdir: Path | None = None
        self.pki: TestPKI | None = None
        self.fleet = PacsFleet()
        self.pacs: dict[str, Orthanc] = self.fleet.orthancs  # PACS name -> its simulator
        self.dut: ReferenceDrimbox | None = None  # the embedded reference (None for an external DUT)
        self.sims: dict[str, SimulatorHandle] = {}  # started simulators, by SIMULATORS name
        self._allocated: dict[tuple[str, str], Address] = {}
        self.client: DutClient | None = None
        self.dut_ready_at: float | None = None  # monotonic time the DUT was up (reference ready, or hooks done)
        self.whitelist_triggers: list[float] = []  # monotonic times drimcheck triggered a whitelist refresh
        self.shared: dict[str, Any] = {}  # state step modules share across the scenarios of this campaign
        self._started = False
        self._start_error: BaseException | None = None
        self._lock = threading.Lock()
        self.interrupt: InterruptState = _NotInterrupted()  # runner.InterruptGuard: signum, time of the first signal
        self.phase = "la préparation du banc"  # where an interruption hit, for the reports
        self.cleanup_errors: list[str] = []  # after_campaign failures and the like, found while stopping
        self._before_started = False  # before_campaign was launched (or would have been): after_campaign is owed
        self._after_done = False
        self.hooks = HookRunner(self.evidence, lambda: self.interrupt)

    # -- lifecycle ------------------------------------------------------------------------------
    def ensure_started(self) -> CampaignRuntime:
        with self._lock:
            if self._start_error is not None:
                raise self._start_error
            if not self._started:
                try:
                    self._start()
                    self._started = True
                except KeyboardInterrupt as exc:  # SIGINT/SIGTERM: not a bench defect; the runner stops everything
                    self._start_error = exc
                    raise
                except BaseException as exc:  # noqa: BLE001 - any start failure becomes a HarnessError, bench stopped
                    self._start_error = exc if isinstance(exc, HarnessError) else HarnessError(
                        f"préparation du banc impossible : {type(exc).__name__}: {exc}")
                    self.stop()
                    raise self._start_error from None
        return self

    def _start(self) -> None:
        from fixtures.pki import TestPKI

        self.workdir = Path(tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{os.getpid()}-"))  # 0700
        if not self.keep_workdir:
            _WORKDIRS.add(self.workdir)
        if self.sut.embedded:
            self.sut = self.sut.with_network(_allocate(self.sut.network))
        # Certificates point at the IGC publication point for CRLs, so its address comes first.
        igc = f"http://{self.simulator_address('igc')}" if self.has_simulator("igc") else "http://igc-sante.drimcheck.test"
        if self.sut.pki_kit is not None:  # stable test kit: its CAs and the DUT's certificates (drimcheck/kit.py)
            from drimcheck.kit import KitError, apply_to_sut, load_pki

            try:
                kit = self.sut.pki_kit
                self.sut = apply_to_sut(self.sut, kit)  # same kit (replaces the DUT's and the PACS' entries)
                self.pki = load_pki(kit, self.workdir / "pki", igc)
            except KitError as exc:
                raise HarnessError(str(exc)) from None
        else:
            self.pki = TestPKI(self.workdir / "pki", publication_url=igc)
        # stopped by stop() even if start() is interrupted half-way
        resolved = self.fleet.start(self.sut.pacs, self.workdir, bind_host=self.pacs_bind_host(),
                                    calling_aets=self.pacs_calling_aets())
        self.sut = self.sut.with_pacs(resolved)
        self.start_simulators()
        self.client = DutClient(self.sut, self.evidence)
        if self.sut.embedded:
            from drimcheck.reference import LaunchError, ReferenceDrimbox

            self.dut = ReferenceDrimbox(self, mutant=self.mutant)
            try:
                self.dut.start()
            except LaunchError as exc:
                raise HarnessError(f"DRIMbox de référence : {exc}") from None
        self._before_started = True  # after_campaign is owed from here on (also when before_campaign is not declared)
        self.run_hook("before_campaign")
        self.dut_ready_at = time.monotonic()
        self._preflight()
        for handle in self.sims.values():  # e.g. observe the DUT's startup downloads, then bring it to nominal
            if isinstance(handle, WatchesDutStart):
                handle.after_dut_ready(self)
        self.phase = "les scénarios"

    def start_simulators(self) -> None:
        """Start every simulator of SIMULATORS that applies to this SUT (campaign start-up, `drimcheck kit`);
        one that cannot start is a HarnessError of one line; so is one that cannot be loaded, before any starts."""
        starters = [(name, _load_starter(name, target)) for name, target in SIMULATORS]
        for name, starter in starters:
            if not self.has_simulator(name):
                continue
            try:
                handle = starter(self)
            except HarnessError:
                raise
            except OSError as exc:
                if exc.errno not in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES):
                    raise HarnessError(f"simulateur {name} : démarrage impossible : {type(exc).__name__}: {exc}") from None
                raise HarnessError(f"simulateur {name} : adresse de [simulators] indisponible ({exc.strerror or exc}) ; "
                                   "arrêtez la campagne en cours ou changez l'adresse") from None
            except Exception as exc:  # noqa: BLE001 - whatever a simulator raises is reported as a bench error
                raise HarnessError(f"simulateur {name} : démarrage impossible : {type(exc).__name__}: {exc}") from None
            if handle is not None:
                self.sims[name] = handle

    # -- addresses ------------------------------------------------------------------------------
    def pacs_bind_host(self) -> str:
        """Interface the simulated PACS listen on: loopback when the DUT is on this host (embedded reference, or
        every [network] address a loopback one), every interface otherwise (AE titles still restricted)."""
        hosts = {a.host for ep in self.sut.network.values() for a in (ep.https, ep.http) if a is not None}
        local = all(h == "localhost" or h.startswith("127.") or h == "::1" for h in hosts)
        return "127.0.0.1" if self.sut.embedded or local else "0.0.0.0"

    def pacs_calling_aets(self) -> tuple[str, ...]:
        """AE titles allowed to associate with the simulated PACS: the DUT's ([dut] calling_aet, else iocm_aet,
        else DRIMBOX) and drimcheck's own SCU."""
        from simulators.pacs.orthanc import REFERENCE_DUT_AET, SCU_AET

        dut_aet = self.sut.dut_value("calling_aet") or self.sut.dut_value("iocm_aet") or REFERENCE_DUT_AET
        return tuple(dict.fromkeys((str(dut_aet), REFERENCE_DUT_AET if self.sut.embedded else str(dut_aet), SCU_AET)))

    def has_simulator(self, name: str) -> bool:
        """Simulators run for the embedded reference, and for an external DUT when [simulators] declares them."""
        return bool(self.sut.embedded) or self.sut.simulator_address(name) is not None

    def simulator(self, name: str) -> Any:  # each simulator its own type: the step knows which it asked for
        """A started simulator handle, or a clear ERROR for the scenario that needs it."""
        if name not in self.sims:
            raise HarnessError(f"simulateur « {name} » non démarré : déclarez son adresse dans la section [simulators] "
                               f"de {self.sut.source_file}")
        return self.sims[name]

    def simulator_address(self, name: str) -> Address:
        """Where simulator `name` listens: declared in [simulators], or a free loopback port for the embedded DUT."""
        declared = self.sut.simulator_address(name)
        if declared is not None and declared.port:
            return declared
        if not self.sut.embedded:
            raise HarnessError(f"{self.sut.source_file} : la section [simulators] doit déclarer « {name} = \"hôte:port\" » "
                               "(l'adresse où la DRIMbox testée joint ce simulateur)")
        key = ("sim", name)
        if key not in self._allocated:
            host = declared.host if declared else "127.0.0.1"
            self._allocated[key] = Address(host, free_port(host))
        return self._allocated[key]

    def dut_addresses(self) -> dict[str, Address]:
        """The DUT's own non-HTTP endpoints ([dut] addresses); "auto" ones get free loopback ports."""
        out: dict[str, Address] = {}
        for name, value in self.sut.dut.items():
            if isinstance(value, Address):
                if not value.port:
                    key = ("dut", name)
                    if key not in self._allocated:
                        self._allocated[key] = Address(value.host, free_port(value.host))
                    value = self._allocated[key]
                out[name] = value
        return out

    def dut_address(self, name: str) -> Address:
        addr = self.dut_addresses().get(name)
        if addr is None:
            raise HarnessError(f"{self.sut.source_file} : la section [dut] doit déclarer « {name} = \"hôte:port\" »")
        return addr

    def dut_settings(self) -> dict[str, Any]:
        """What each simulator tells the embedded reference DRIMbox (URLs, AE titles, ...)."""
        return {name: h.dut_settings() for name, h in self.sims.items() if isinstance(h, ConfiguresDut)}

    def extra_hosts(self) -> dict[str, str]:
        """FQDN -> "ip:port" of simulated peers (the test bed has no DNS)."""
        out: dict[str, str] = {}
        for h in self.sims.values():
            if isinstance(h, ServesHosts):
                out.update(h.hosts())
        return out

    def _preflight(self) -> None:
        """The DUT must answer at all (any HTTP status): otherwise every scenario is ERROR at once.

        An answer whose status line arrived but whose body broke a harness cap (too large, unfinished) is an
        answer: the scenarios judge it (a FAIL of the requirement concerned), the DUT is not "unreachable"."""
        assert self.client is not None
        ex = self.client.get(self.sut.health_url, label="preflight")
        if ex.status is None:
            raise DutUnreachable(f"DUT injoignable : {self.sut.health_url} via {ex.connect_to} : {ex.error}")

    def _cleanup_left(self, default: float) -> float:
        """`default` seconds, or what is left of INTERRUPT_CLEANUP_S after a signal (at least 0.5 s)."""
        first = self.interrupt.first_at
        if first is None:
            return default
        return max(0.5, min(default, first + INTERRUPT_CLEANUP_S - time.monotonic()))

    def check_interrupted(self) -> None:
        """Raise CampaignInterrupted once a signal arrived: waits and finalizers stop at once."""
        if self.interrupt.signum is not None:
            raise CampaignInterrupted(self.interrupt.signum)

    def interruption_message(self) -> str:
        return f"{INTERRUPTED_FR} ({signal_name(self.interrupt.signum)}) pendant {self.phase}"

    def stop(self) -> None:
        """Idempotent: after_campaign (while the simulators still run), then the DUT and simulators (together),
        PACS, workdir."""
        for value in self.shared.values():  # e.g. a browser session with keep-alive connections to simulators
            if isinstance(value, Closeable):
                try:
                    value.close()
                except Exception:  # noqa: BLE001 - best effort
                    pass
        self.shared.clear()
        if self._before_started and not self._after_done:  # the vendor's DUT may need the simulators to stop
            self._after_done = True
            try:
                self.run_hook("after_campaign", timeout=self._cleanup_left(HOOK_TIMEOUT_S))
            except HarnessError as exc:
                self.cleanup_errors.append(str(exc))
        # The DUT and the simulators are stopped together (each waits 0.1-0.5 s for its event loop or process
        # to end; one after another they cost ~1.5 s of every campaign), then the PACS are killed.
        dut, self.dut = self.dut, None
        stoppers = [threading.Thread(target=_stop_quietly, args=(dut.stop, self._cleanup_left(5.0)), daemon=True)
                    ] if dut is not None else []
        stoppers += [threading.Thread(target=_stop_quietly, args=(handle.stop,), daemon=True)
                     for handle in reversed(list(self.sims.values()))]
        for thread in stoppers:
            thread.start()
        for thread in stoppers:
            thread.join(self._cleanup_left(12.0))
        self.sims.clear()
        self.fleet.stop_all()
        if self.workdir and not self.keep_workdir:
            self._seal_pki(self._cleanup_left(5.0))
            # Orthanc's storage makes it ~0.5-1 s of unlink(): done while the reports are written, finished
            # (joined) and done again at exit (_WORKDIRS, for a late writer), before the process ends.
            remover = threading.Thread(target=shutil.rmtree, args=(self.workdir,), kwargs={"ignore_errors": True},
                                       name="drimcheck-workdir-removal")
            _REMOVERS.append(remover)
            remover.start()

    def _seal_pki(self, wait_s: float) -> None:
        """Issue no certificate (write no key) any more: a simulator's warm-up thread may still be issuing."""
        lock = getattr(self.pki, "_lock", None)
        if lock is None:
            return
        got = lock.acquire(timeout=wait_s)  # an issuance holds it until its files are written

        def sealed(*_args: Any, **_kw: Any) -> Path:
            raise RuntimeError("campagne terminée : PKI de test fermée")

        try:
            setattr(self.pki, "_dir", sealed)  # noqa: B010 - every file the PKI writes goes through _dir()
        finally:
            if got:
                lock.release()

    def emergency_cleanup(self) -> None:
        """Last resort before a forced exit (runner watchdog): kill hooks and PACS, remove the workdir."""
        self.hooks.kill_all()
        self.fleet.stop_all()
        if self.workdir and not self.keep_workdir:
            self._seal_pki(0.5)
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- evidence -------------------------------------------------------------------------------
    def set_evidence_scope(self, scope: str) -> None:
        self.evidence.set_scope(scope)

    def write_harness_trace(self, scope: str, text: str) -> None:
        self.evidence.write_text("harness-traceback", text)

    # -- services for steps ---------------------------------------------------------------------
    def pacs_entry(self, index: int = 0) -> Pacs:
        return self.sut.pacs[index]

    def orthanc(self, pacs: Pacs) -> Orthanc:
        return self.fleet.orthanc(pacs)

    def seed_study(self, seed: str, *, pacs: Pacs | None = None, **kw: Any) -> SyntheticStudy:
        """Store a deterministic synthetic study in a PACS simulator (once per campaign) and return it."""
        return self.fleet.seed_study(pacs or self.pacs_entry(), seed, **kw)

    def seeded_studies(self) -> list[SyntheticStudy]:
        """Every synthetic study stored in the PACS simulators so far in this campaign."""
        return self.fleet.seeded_studies()

    def stop_pacs(self, pacs: Pacs) -> float:
        """Simulate a PACS outage (immediate kill); returns the monotonic time of the outage."""
        return self.fleet.stop_pacs(pacs)

    def start_pacs(self, pacs: Pacs) -> float:
        """Bring the PACS back (same ports, same data); returns the monotonic time it is ready again."""
        return self.fleet.start_pacs(pacs)

    def restore_nominal(self) -> None:
        """Scenario cleanup: every PACS running and the HealthCheck UP again (bounded), whatever happened."""
        if self.interrupt.signum is not None:
            return  # the campaign is stopping: nothing to restore for a next scenario
        for p in self.sut.pacs:
            if not self.orthanc(p).running:
                self.start_pacs(p)
        deadline = time.monotonic() + self.sut.timeouts.health_up_s
        assert self.client is not None  # made by start()
        while time.monotonic() < deadline and self.interrupt.signum is None:
            ex = self.client.get(self.sut.health_url, label="remise-en-etat")
            if ex.status == 200:
                return
            time.sleep(0.5)

    def refresh_whitelist(self) -> float:
        """Make the DUT download and apply the whitelist now; returns the monotonic time of the trigger.

        External DUT: the `refresh_whitelist` hook of sut.toml (stands for the daily job), then
        [timeouts] whitelist_settle_s for the DUT to apply what it downloaded. Embedded reference:
        its loopback admin endpoint, which answers once the list is downloaded and applied.
        """
        self.check_interrupted()
        started = time.monotonic()
        self.whitelist_triggers.append(started)
        if self.sut.hooks.get("refresh_whitelist"):
            self.run_hook("refresh_whitelist")
            if self.sut.timeouts.whitelist_settle_s:
                time.sleep(self.sut.timeouts.whitelist_settle_s)
        elif self.sut.embedded and self.dut is not None:
            try:
                self.dut.refresh_whitelist(timeout=self.sut.timeouts.whitelist_s)
            except Exception as exc:  # noqa: BLE001 - the DUT's own failure is judged from what it then does
                self.evidence.write_text("refresh-whitelist", f"déclencheur intégré : {type(exc).__name__}: {exc}")
        else:
            raise HarnessError(f"{self.sut.source_file} : [hooks] refresh_whitelist doit donner la commande qui fait "
                               "télécharger et appliquer la liste blanche à la DRIMbox (tâche quotidienne)")
        return started

    def market_trust_anchors(self) -> list[x509.Certificate]:
        """Roots a viN (market OV) certificate must chain to: from sut.toml, else the run's market CA (embedded
        reference, or the kit's with [pki] kit) or the public web PKI (certifi bundle) for an external DRIMbox."""
        paths = list(self.sut.market_trust_anchors)
        if not paths and (self.sut.embedded or self.sut.pki_kit is not None):  # the kit's market CA is stable
            return [self._started_pki().market_ca.cert]
        if not paths:
            import certifi

            paths = [Path(certifi.where())]
        out: list[x509.Certificate] = []
        for path in paths:
            out.extend(x509.load_pem_x509_certificates(path.read_bytes()))
        return out

    def trust_anchors(self) -> list[x509.Certificate]:
        """IGC-Santé-like roots the dbN certificates must chain to: from sut.toml, else the per-run test PKI."""
        if self.sut.trust_anchors:
            out: list[x509.Certificate] = []
            for path in self.sut.trust_anchors:
                out.extend(x509.load_pem_x509_certificates(path.read_bytes()))
            return out
        return [self._started_pki().igc_root.cert]

    def _started_pki(self) -> TestPKI:
        if self.pki is None:
            raise HarnessError("PKI de test non créée : la campagne n'est pas démarrée")
        return self.pki

    def read_kpi(self) -> str:
        """The DUT's KPI "ModelStat" lines: stdout of `[hooks] kpi`, or the embedded reference's file."""
        if self.sut.hooks.get("kpi"):
            return self.run_hook("kpi") or ""
        if self.sut.embedded and self.dut is not None:
            return self.dut.kpi_text()
        raise HarnessError(f"{self.sut.source_file} : [hooks] kpi doit donner la commande qui affiche le fichier "
                           "d'indicateurs ModelStat de la DRIMbox (une ligne par appel contextuel)")

    def run_hook(self, name: str, extra_env: dict[str, str] | None = None, *, timeout: float | None = None) -> str | None:
        """Run a `[hooks]` command (bounded); returns its stdout (None when the hook is not declared).

        The command runs in its own process group, killed as a whole on timeout or interruption (HookRunner). A
        non-zero exit or a timeout raises HookFailed naming the hook, with the tail of its output. Evidence of
        before_campaign/after_campaign goes to evidence/campaign/, that of the others to the current scenario.
        """
        command = self.sut.hooks.get(name)
        if not command:
            return None
        if name != "after_campaign":
            self.check_interrupted()
        limit = HOOK_TIMEOUT_S if timeout is None else timeout
        env = {**os.environ, "DRIMCHECK_RUN_DIR": str(self.run_dir), "DRIMCHECK_HOOK": name,
               "DRIMCHECK_PKI_DIR": str(self.workdir / "pki") if self.workdir else "", **(extra_env or {})}
        return self.hooks.run(name, command, env, limit=limit)


def _stop_quietly(stop: Callable[..., Any], *args: Any) -> None:
    try:
        stop(*args)
    except Exception:  # noqa: BLE001 - best effort; the DUT dies with us anyway (PDEATHSIG)
        pass


def _allocate(network: dict[str, Endpoint]) -> dict[str, Endpoint]:
    """Give every "auto" address of the embedded SUT a free loopback port."""
    out: dict[str, Endpoint] = {}
    for fqdn, ep in network.items():
        https = Address(ep.https.host, ep.https.port or free_port(ep.https.host)) if ep.https else None
        http = Address(ep.http.host, ep.http.port or free_port(ep.http.host)) if ep.http else None
        out[fqdn] = Endpoint(fqdn, https=https, http=http)
    return out


def _load_starter(name: str, target: str) -> Starter:
    """Import the "module:function" of simulator `name`; a module that is missing or misses a module it imports, or
    a function the module does not have, is a HarnessError naming them (exit 3)."""
    import importlib

    module_name, _, func = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or "?"
        if module_name == missing or module_name.startswith(missing + "."):
            raise HarnessError(f"simulateur {name} : module {module_name} introuvable "
                               "(installation de drimcheck incomplète)") from None
        raise HarnessError(f"simulateur {name} : le module {module_name} ne se charge pas : "
                           f"module {missing} introuvable") from None
    starter: Starter | None = getattr(module, func, None)
    if not callable(starter):
        raise HarnessError(f"simulateur {name} : le module {module_name} n'a pas de fonction {func}")
    return starter


if TYPE_CHECKING:  # mypy proves the runtime offers every seam it is handed through
    def _seams(runtime: CampaignRuntime) -> tuple[StepServices, SimulatorRuntime, ScenarioHost]:
        return runtime, runtime, runtime
