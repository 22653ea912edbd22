"""Runs one campaign: pytest-bdd over the features, with the drimcheck plugin, against one SUT."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import sys
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import pytest

from drimcheck import bounds
from drimcheck import catalogue as catalogue_mod
from drimcheck.campaign import CampaignRuntime
from drimcheck.config import Sut
from drimcheck.plugin import DrimcheckPlugin
from drimcheck.results import CampaignInfo, RunResult, ScenarioResult

REPO_ROOT = Path(__file__).resolve().parent.parent
SCENARIO_MODULE = REPO_ROOT / "steps" / "test_scenarios.py"


def default_run_dir() -> Path:
    return Path("runs") / datetime.now().strftime("%Y%m%d-%H%M%S")


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM stops the campaign like Ctrl-C: pytest unwinds, the runtime stops, reports are written."""
    def handler(signum, frame):
        raise KeyboardInterrupt
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_campaign(sut: Sut, run_dir: Path, *, strict: bool = False, mutant: str | None = None,
                 requirements: set[str] | None = None, keep_workdir: bool = False,
                 on_scenario_done: Callable[[ScenarioResult, int, int], None] | None = None,
                 command: list[str] | None = None, campaign: CampaignInfo | None = None) -> RunResult:
    """Run the campaign and return its results; never raises for DUT or infrastructure problems.

    `campaign` carries what the reports must say about the run (referencing mode, sut.toml digest); the
    mutant, the requirement filter and the effective timeouts (drimcheck.bounds) are filled in here.
    """
    catalogue = catalogue_mod.load()
    effective = bounds.effective(sut.timeouts, catalogue)
    sut = replace(sut, timeouts=effective.timeouts)
    campaign = replace(campaign or CampaignInfo(), mutant=mutant,
                       requirements_selected=sorted(requirements) if requirements else None,
                       timeouts=effective.to_list(), loosened=effective.reasons_fr())
    run_dir = run_dir.resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    started = datetime.now(timezone.utc)
    t0 = time.monotonic()
    runtime = CampaignRuntime(sut, run_dir, mutant=mutant, keep_workdir=keep_workdir)
    plugin = DrimcheckPlugin(runtime, catalogue, strict=strict, requirement_filter=requirements,
                             on_scenario_done=on_scenario_done)
    # Only the plugins a campaign needs: no entry-point autoload, no assertion rewriting (steps do not
    # assert, checks return findings), no per-test gc/log/warning capture. Saves ~2 s of CPU a campaign.
    args = [str(SCENARIO_MODULE), "--rootdir", str(REPO_ROOT), "-q", "--assert=plain",
            "-p", "pytest_bdd.plugin", "-p", "no:cacheprovider", "-p", "no:unraisableexception",
            "-p", "no:threadexception", "-p", "no:logging", "-p", "no:faulthandler", "-p", "no:warnings",
            "-p", "no:doctest", "-p", "no:junitxml", "-p", "no:pastebin", "-p", "no:nose", "-p", "no:stepwise",
            "-o", "addopts=", "-o", "python_files=test_*.py"]
    infra_error = None
    captured = io.StringIO()
    autoload = os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD")
    os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    try:
        with _sigterm_as_interrupt(), contextlib.redirect_stdout(captured):
            code = pytest.main(args, plugins=[plugin])
        if plugin.collection_errors:
            infra_error = "features non chargées : " + "; ".join(plugin.collection_errors)[:500]
        elif code == pytest.ExitCode.INTERRUPTED:
            infra_error = "campagne interrompue"
        elif code == pytest.ExitCode.NO_TESTS_COLLECTED:
            infra_error = "aucun scénario sélectionné"
        elif code not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
            infra_error = f"pytest s'est arrêté (code {int(code)}) : {captured.getvalue().strip()[-300:]}"
    except KeyboardInterrupt:
        infra_error = "campagne interrompue"
    finally:
        if autoload is None:
            os.environ.pop("PYTEST_DISABLE_PLUGIN_AUTOLOAD", None)
        else:
            os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = autoload
        runtime.stop()
    if runtime._start_error is not None:
        infra_error = infra_error or str(runtime._start_error)
    return RunResult(
        run_id=run_dir.name, started_at=started.isoformat(timespec="seconds"),
        finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"), duration_s=time.monotonic() - t0,
        strict=strict, sut={**runtime.sut.describe(), **({"mutant": mutant} if mutant else {})},
        catalogue=catalogue, scenarios=plugin.results, automated_ids=plugin.collected_requirements,
        infrastructure_error=infra_error, command=command or sys.argv, campaign=campaign)
