"""Runs one campaign: pytest-bdd over the features, with the drimcheck plugin, against one SUT."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, Literal

import pytest

from drimcheck import bounds
from drimcheck import catalogue as catalogue_mod
from drimcheck.campaign import CampaignRuntime
from drimcheck.config import Sut
from drimcheck.errors import INTERRUPTED_FR, CampaignInterrupted, signal_name
from drimcheck.plugin import DrimcheckPlugin
from drimcheck.results import CampaignInfo, RunResult, ScenarioResult

REPO_ROOT = Path(__file__).resolve().parent.parent
SCENARIO_MODULE = REPO_ROOT / "steps" / "test_scenarios.py"
PREFILL_KEYS = 40  # RSA keys a campaign's start-up issues (42 measured: CAs, simulators, the DUT), made ahead


def default_run_dir() -> Path:
    return Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S")


#: From the first SIGINT/SIGTERM to the end of the process, whatever hangs (the README promises 10 s).
HARD_LIMIT_S = 9.0


def _say(text: str) -> None:
    try:
        os.write(2, (text + "\n").encode("utf-8", "replace"))  # unbuffered: safe inside a signal handler
    except OSError:
        pass


class InterruptGuard:
    """SIGINT and SIGTERM during a campaign: stop it, write the reports of what ran, clean up, exit.

    The first signal raises CampaignInterrupted in the main thread (pytest unwinds, finalizers see the
    campaign is stopping and return at once). Further signals never interrupt again: cleanup and report
    writing are shielded. A watchdog bounds the whole stop: HARD_LIMIT_S after the first signal it kills
    the hooks and PACS, removes the work directory, writes the reports if they are not written yet and,
    with hard_exit, ends the process with 128 + the signal number.
    """

    def __init__(self, *, hard_exit: bool = True):
        self.hard_exit = hard_exit
        self.signum: int | None = None
        self.first_at: float | None = None
        self.shielded = False
        self.reports_started = False
        self._done = threading.Event()
        self._previous: dict[int, Any] = {}  # what signal.signal() returned: a handler, SIG_DFL/SIG_IGN or None
        self._emergency: list[Callable[[], None]] = []

    def __enter__(self) -> InterruptGuard:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc_info: object) -> Literal[False]:
        if self.hard_exit and self.signum is not None:
            return False  # on its way out: further signals stay noted only, the watchdog bounds the exit
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._done.set()
        return False

    def on_emergency(self, callback: Callable[[], None]) -> None:
        self._emergency.append(callback)

    def shield(self) -> None:
        """From now on signals are noted, never raised: cleanup and reports run to their end."""
        self.shielded = True

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            _say(f"drimcheck : {signal_name(signum)} reçu — arrêt déjà en cours (au plus {HARD_LIMIT_S:g} s)")
            return
        self.signum, self.first_at = signum, time.monotonic()
        _say(f"drimcheck : {signal_name(signum)} reçu — arrêt de la campagne, écriture des rapports et nettoyage")
        threading.Thread(target=self._watchdog, name="drimcheck-interrupt-watchdog", daemon=True).start()
        if not self.shielded:
            raise CampaignInterrupted(signum)

    def _watchdog(self) -> None:
        assert self.first_at is not None and self.signum is not None
        if self._done.wait(max(0.0, self.first_at + HARD_LIMIT_S - time.monotonic())):
            return
        _say(f"drimcheck : arrêt forcé ({HARD_LIMIT_S:g} s après le signal)")
        for callback in self._emergency:
            try:
                callback()
            except BaseException:  # noqa: BLE001 - every callback gets its chance
                pass
        if self.hard_exit:
            os._exit(128 + self.signum)

    def write_reports(self, result: RunResult, run_dir: Path) -> dict[str, Path]:
        """Write results.json, junit.xml, report.html (shielded); the watchdog does not write them again."""
        from drimcheck.reports import write_all

        self.shield()
        self.reports_started = True
        return write_all(result, run_dir)


def run_campaign(sut: Sut, run_dir: Path, *, strict: bool = False, mutant: str | None = None,
                 requirements: set[str] | None = None, keep_workdir: bool = False,
                 on_scenario_done: Callable[[ScenarioResult, int, int], None] | None = None,
                 command: list[str] | None = None, campaign: CampaignInfo | None = None,
                 guard: InterruptGuard | None = None) -> RunResult:
    """Run the campaign and return its results; never raises for DUT or infrastructure problems, nor for
    SIGINT/SIGTERM (the result then says interrupted).

    `campaign` carries what the reports must say about the run (referencing mode, sut.toml digest); the
    mutant, the requirement filter and the effective timeouts (drimcheck.bounds) are filled in here.
    `guard`: the caller's InterruptGuard, entered around this call and its report writing (the CLI); by
    default one of its own, for this call only.
    """
    if guard is None:
        with InterruptGuard(hard_exit=False) as own:
            return run_campaign(sut, run_dir, strict=strict, mutant=mutant, requirements=requirements,
                                keep_workdir=keep_workdir, on_scenario_done=on_scenario_done, command=command,
                                campaign=campaign, guard=own)
    active_guard: InterruptGuard = guard  # not None from here on (the closures below see this name)
    catalogue = catalogue_mod.load()
    effective = bounds.effective(sut.timeouts, catalogue)
    sut = replace(sut, timeouts=effective.timeouts)
    campaign = replace(campaign or CampaignInfo(), mutant=mutant,
                       requirements_selected=sorted(requirements) if requirements else None,
                       timeouts=effective.to_list(), loosened=effective.reasons_fr())
    run_dir = run_dir.resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC)
    t0 = time.monotonic()
    runtime = CampaignRuntime(sut, run_dir, mutant=mutant, keep_workdir=keep_workdir)
    runtime.interrupt = guard
    plugin = DrimcheckPlugin(runtime, catalogue, strict=strict, requirement_filter=requirements,
                             on_scenario_done=on_scenario_done)
    # Only the plugins a campaign needs: no entry-point autoload, no assertion rewriting (steps do not
    # assert, checks return findings), no per-test gc/log/warning capture. Saves ~2 s of CPU a campaign.
    args = [str(SCENARIO_MODULE), "--rootdir", str(REPO_ROOT), "-q", "--assert=plain",
            "-p", "pytest_bdd.plugin", "-p", "steps._plugin", "-p", "no:cacheprovider", "-p", "no:unraisableexception",
            "-p", "no:threadexception", "-p", "no:logging", "-p", "no:faulthandler", "-p", "no:warnings",
            "-p", "no:doctest", "-p", "no:junitxml", "-p", "no:pastebin", "-p", "no:nose", "-p", "no:stepwise",
            "-o", "addopts=", "-o", "python_files=test_*.py"]
    infra_error = None
    captured = io.StringIO()

    def result() -> RunResult:
        error = infra_error
        if runtime._start_error is not None and not isinstance(runtime._start_error, KeyboardInterrupt):
            error = error or str(runtime._start_error)
        if active_guard.signum is not None:
            error = runtime.interruption_message()
        if runtime.cleanup_errors:
            error = "; ".join(([error] if error else []) + runtime.cleanup_errors)
        return RunResult(
            run_id=run_dir.name, started_at=started.isoformat(timespec="seconds"),
            finished_at=datetime.now(UTC).isoformat(timespec="seconds"), duration_s=time.monotonic() - t0,
            strict=strict, sut={**runtime.sut.describe(), **({"mutant": mutant} if mutant else {})},
            catalogue=catalogue, scenarios=list(plugin.results), automated_ids=plugin.collected_requirements,
            infrastructure_error=error, command=command or sys.argv, campaign=campaign,
            interrupted_by=active_guard.signum,
            not_run=plugin.not_run() if active_guard.signum is not None else [])

    def emergency() -> None:
        runtime.emergency_cleanup()
        if not active_guard.reports_started:
            from drimcheck.reports import write_all

            active_guard.reports_started = True
            write_all(result(), run_dir)

    active_guard.on_emergency(emergency)
    from fixtures.pki import KeyPrefill

    prefill = KeyPrefill(PREFILL_KEYS)  # the start-up's RSA keys, made on the idle core during collection
    autoload = os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD")
    os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    try:
        try:
            with contextlib.redirect_stdout(captured):
                code = pytest.main(args, plugins=[plugin])
            if plugin.collection_errors:
                infra_error = "features non chargées : " + "; ".join(plugin.collection_errors)[:500]
            elif code == pytest.ExitCode.INTERRUPTED:
                infra_error = INTERRUPTED_FR
            elif code == pytest.ExitCode.NO_TESTS_COLLECTED:
                infra_error = "aucun scénario sélectionné"
            elif code not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
                infra_error = f"pytest s'est arrêté (code {int(code)}) : {captured.getvalue().strip()[-300:]}"
        except KeyboardInterrupt:
            infra_error = INTERRUPTED_FR
    except KeyboardInterrupt:  # the signal landed in the handler above
        infra_error = INTERRUPTED_FR
    finally:
        active_guard.shield()
        if active_guard.signum is None:  # else the interruption is told as hitting the phase it hit
            runtime.phase = "le nettoyage"
        if autoload is None:
            os.environ.pop("PYTEST_DISABLE_PLUGIN_AUTOLOAD", None)
        else:
            os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = autoload
        if plugin.current is not None:  # interrupted between the scenario's end and its bookkeeping
            plugin.current.interrupted = True
            plugin.current.error = runtime.interruption_message()
            plugin._finish(plugin.current)
            plugin.current = None
        runtime.stop()
        prefill.stop()
    return result()
