"""The typed seams of a campaign: `typing.Protocol`s only, no behaviour (layer `services` of .importlinter).

* A simulator handle (what `start_for_campaign(runtime)` of drimcheck.campaign.SIMULATORS returns) offers `stop()`;
  the optional capabilities are Protocols of their own, checked with isinstance (runtime_checkable) rather than
  hasattr: ConfiguresDut (`dut_settings()`), ServesHosts (`hosts()`), WatchesDutStart (`after_dut_ready(runtime)`).
* StepServices is what step modules may call on the `campaign` fixture (tests/test_static.py checks they use
  nothing else); SimulatorRuntime adds what a simulator's start-up reads. drimcheck.campaign.CampaignRuntime
  implements both (mypy checks it there).
* ScenarioHost is what the pytest plugin needs from the runtime around each scenario.

Simulators may import this module (it imports only the core and protocol layers); steps import it to annotate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from cryptography import x509

from drimcheck.config import Address, Pacs, Sut
from drimcheck.evidence import EvidenceStore
from drimcheck.net import DutClient

# -- simulator handles ------------------------------------------------------------------------------


class SimulatorHandle(Protocol):
    """A started simulator: stopped when the campaign stops (best effort, never raises to the campaign)."""

    def stop(self) -> None: ...


@runtime_checkable
class ConfiguresDut(Protocol):
    """A simulator that tells the embedded reference DRIMbox how to reach it (dut-settings.json `simulators`)."""

    def dut_settings(self) -> dict[str, Any]: ...


@runtime_checkable
class ServesHosts(Protocol):
    """A simulator reached by FQDN: {fqdn: "ip:port"} for the DUT's hosts map (the test bed has no DNS)."""

    def hosts(self) -> dict[str, str]: ...


@runtime_checkable
class WatchesDutStart(Protocol):
    """A simulator that acts once the DUT is up (after before_campaign), e.g. observes its start-up downloads."""

    def after_dut_ready(self, runtime: Any) -> None: ...


@runtime_checkable
class Closeable(Protocol):
    """Shared campaign state holding connections (CampaignRuntime.shared): closed when the campaign stops."""

    def close(self) -> None: ...


# -- what steps call --------------------------------------------------------------------------------


class PacsHandle(Protocol):
    """A simulated PACS (simulators.pacs.Orthanc), as steps and the runtime drive it."""

    @property
    def running(self) -> bool: ...

    def stop(self, *, graceful: bool = True, timeout: float = 5.0) -> None: ...

    def restart(self, timeout: float = 15.0) -> None: ...

    def instances_of_study(self, study_uid: str) -> list[dict[str, str]]: ...

    def delete_instance(self, sop_uid: str) -> None: ...


class StepServices(Protocol):
    """The runtime services a step (or a simulator function a step calls) may use. Narrow on purpose: a step
    arranges and triggers through these, and judges with checks over what `client` and `evidence` recorded."""

    @property
    def sut(self) -> Sut: ...
    @property
    def client(self) -> DutClient | None: ...
    @property
    def evidence(self) -> EvidenceStore: ...
    @property
    def shared(self) -> dict[str, Any]: ...
    @property
    def sims(self) -> Mapping[str, Any]: ...
    @property
    def pki(self) -> Any: ...

    def simulator(self, name: str) -> Any: ...
    def dut_address(self, name: str) -> Address: ...
    def pacs_entry(self, index: int = 0) -> Pacs: ...
    def orthanc(self, pacs: Pacs) -> PacsHandle: ...
    def seed_study(self, seed: str, *, pacs: Pacs | None = None, **kw: Any) -> Any: ...
    def seeded_studies(self) -> list[Any]: ...
    def stop_pacs(self, pacs: Pacs) -> float: ...
    def start_pacs(self, pacs: Pacs) -> float: ...
    def restore_nominal(self) -> None: ...
    def refresh_whitelist(self) -> float: ...
    def trust_anchors(self) -> list[x509.Certificate]: ...
    def market_trust_anchors(self) -> list[x509.Certificate]: ...
    def read_kpi(self) -> str: ...
    def run_hook(self, name: str, extra_env: dict[str, str] | None = None, *,
                 timeout: float | None = None) -> str | None: ...


class SimulatorRuntime(StepServices, Protocol):
    """StepServices, plus what a simulator's start_for_campaign reads (addresses, work directory, DUT start)."""

    @property
    def workdir(self) -> Path | None: ...
    @property
    def dut_ready_at(self) -> float | None: ...
    @property
    def whitelist_triggers(self) -> Sequence[float]: ...

    def simulator_address(self, name: str) -> Address: ...
    def dut_addresses(self) -> dict[str, Address]: ...
    def pacs_calling_aets(self) -> tuple[str, ...]: ...
    def has_simulator(self, name: str) -> bool: ...
    def extra_hosts(self) -> dict[str, str]: ...
    def dut_settings(self) -> dict[str, Any]: ...


# -- what the pytest plugin needs ---------------------------------------------------------------------


class InterruptState(Protocol):
    """runner.InterruptGuard as the runtime and the plugin read it: the first signal and when it came."""

    @property
    def signum(self) -> int | None: ...
    @property
    def first_at(self) -> float | None: ...


class ScenarioHost(Protocol):
    """The runtime around each scenario: where its evidence goes, the interruption, the started services."""

    @property
    def interrupt(self) -> InterruptState: ...

    def set_evidence_scope(self, scope: str) -> None: ...
    def write_harness_trace(self, scope: str, text: str) -> None: ...
    def ensure_started(self) -> StepServices: ...
