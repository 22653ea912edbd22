"""pytest plugin that turns pytest-bdd scenario runs into drimcheck scenario results.

Steps hand findings to the `judge` fixture; this plugin groups them per scenario, records step
outcomes and errors, guarantees that every requirement a scenario is tagged with gets a verdict,
and feeds the progress display. It never decides conformance itself.

Only pytest-bdd's public hooks are used: a scenario's identity (feature, name, tags) is taken in
pytest_bdd_before_scenario; before that (and for the scenarios an interruption left unrun) the
scenario is named from its collected test item.
"""

from __future__ import annotations

import re
import time
import traceback
from collections.abc import Callable, Generator
from typing import Any

import pytest
from pytest_bdd.parser import Feature, Scenario, Step

from drimcheck.catalogue import Catalogue
from drimcheck.checks import record_judgement
from drimcheck.errors import (
    INTERRUPTED_FR,
    CampaignInterrupted,
    DutUnreachable,
    HarnessError,
    HookFailed,
    signal_name,
)
from drimcheck.results import ScenarioResult, StepResult
from drimcheck.services import ScenarioHost
from drimcheck.verdicts import Finding, Verdict, errored

# the harness errors were defined here before drimcheck.errors: importers of drimcheck.plugin keep working
__all__ = ["INTERRUPTED_FR", "RUNTIME_KEY", "CampaignInterrupted", "DrimcheckPlugin", "DutUnreachable",
           "HarnessError", "HookFailed", "signal_name"]


def scenario_requirements(item: pytest.Item) -> list[str]:
    ids: list[str] = []
    for mark in item.iter_markers("req"):
        for arg in mark.args:
            if arg not in ids:
                ids.append(arg)
    return sorted(ids)


def slug(text: str, limit: int = 70) -> str:
    import unicodedata

    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")[:limit].rstrip("-")


def one_line(exc: BaseException) -> str:
    if isinstance(exc, HarnessError):
        return str(exc)
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip()


def _example(item: pytest.Item) -> dict[str, Any] | None:
    """The row of a scenario outline a test item runs (pytest-bdd's parametrization), or None."""
    callspec = getattr(item, "callspec", None)
    example: dict[str, Any] | None = callspec.params.get("_pytest_bdd_example") if callspec is not None else None
    return example


def _item_scenario_name(item: pytest.Item) -> str:
    """The scenario a collected item binds, before it runs: pytest-bdd documents each scenario test function
    as "<feature file>: <scenario name>"; the test name otherwise."""
    doc = getattr(getattr(item, "function", None), "__doc__", None) or ""
    _, sep, name = doc.partition(".feature: ")
    return name if sep and name else item.name


def _identity(name: str, feature_file: str, example: dict[str, Any] | None) -> tuple[str, str]:
    """(display name, scenario id) of a scenario, one per row of an outline (named and filed after its values)."""
    sid = f"{slug(re.sub(r'[.]feature$', '', feature_file.split('/')[-1]), 30)}--{slug(name, 60)}"
    if example:
        values = ", ".join(str(v) for v in example.values())
        return f"{name} [{values}]", f"{sid}--{slug(values, 40)}"
    return name, sid


class DrimcheckPlugin:
    """Collects scenario results for one campaign run."""

    def __init__(self, runtime: ScenarioHost | None, catalogue: Catalogue, *, strict: bool,
                 requirement_filter: set[str] | None = None,
                 on_scenario_done: Callable[[ScenarioResult, int, int], None] | None = None) -> None:
        self.runtime = runtime
        self.catalogue = catalogue
        self.strict = strict
        self.requirement_filter = requirement_filter
        self.on_scenario_done = on_scenario_done
        self.results: list[ScenarioResult] = []
        self.collected_requirements: set[str] = set()
        self.collection_errors: list[str] = []
        self.current: ScenarioResult | None = None
        self._total = 0
        self._items: list[pytest.Item] = []
        self._ran: set[str] = set()  # nodeids of the scenarios that started
        self._step_started = 0.0
        self._step_findings = 0
        self._scenario_started = 0.0

    # -- wiring -------------------------------------------------------------------------------
    def pytest_configure(self, config: pytest.Config) -> None:
        config.stash[RUNTIME_KEY] = self

    def judge(self, findings: Finding | list[Finding]) -> list[Finding]:
        """Record findings for the running scenario, with the strength policy applied."""
        items = [findings] if isinstance(findings, Finding) else list(findings)
        if self.current is None:
            raise HarnessError("a check was judged outside of a scenario")
        record_judgement(getattr(self.runtime, "evidence", None), self.current.id, items)  # for `drimcheck rejudge`
        for f in items:
            if f.requirement not in self.catalogue:
                f = errored(f.requirement, f"harness defect: finding for unknown requirement ({f.message})",
                            check=f.check)
            self.catalogue.apply_strength(f, strict=self.strict)
            self.current.findings.append(f)
        return items

    # -- collection ---------------------------------------------------------------------------
    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.collection_errors.append(f"{report.nodeid}: {str(report.longrepr).strip().splitlines()[-1]}")

    def pytest_collection_modifyitems(self, session: pytest.Session, config: pytest.Config,
                                      items: list[pytest.Item]) -> None:
        keep: list[pytest.Item] = []
        drop: list[pytest.Item] = []
        for item in items:
            reqs = scenario_requirements(item)
            self.collected_requirements.update(reqs)
            if self.requirement_filter is None or self.requirement_filter & set(reqs):
                keep.append(item)
            else:
                drop.append(item)
        if drop:
            config.hook.pytest_deselected(items=drop)
            items[:] = keep
        self._total = len(items)
        self._items = list(items)

    # -- execution ----------------------------------------------------------------------------
    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, object, object]:
        # provisional identity, from the collected item: pytest_bdd_before_scenario gives the scenario's own
        name, sid = _identity(_item_scenario_name(item), str(item.path), _example(item))
        self._ran.add(item.nodeid)
        self.current = ScenarioResult(id=sid, feature="", feature_file=str(item.path), name=name,
                                      requirements=scenario_requirements(item), tags=[])
        if self.runtime is not None:
            self.runtime.set_evidence_scope(sid)
        self._scenario_started = time.monotonic()
        try:
            return (yield)
        finally:
            signum = self._interrupted()
            if signum is not None or self.current.interrupted:  # stopped by a signal: no trustworthy verdict
                self.current.interrupted = True
                before = f" (auparavant : {self.current.error})" if self.current.error else ""
                self.current.error = f"{INTERRUPTED_FR} ({signal_name(signum)}) : scénario arrêté avant son terme{before}"
                item.session.shouldstop = INTERRUPTED_FR  # even if a finalizer swallowed the KeyboardInterrupt
            self._finish(self.current)
            self.current = None

    def pytest_bdd_before_scenario(self, request: pytest.FixtureRequest, feature: Feature, scenario: Scenario) -> None:
        """The scenario's identity (pytest-bdd public hook, before its first step): name, feature, tags, and
        the evidence directory named after them."""
        if self.current is None:
            return
        name, sid = _identity(scenario.name, feature.rel_filename, _example(request.node))
        self.current.id, self.current.name = sid, name
        self.current.feature, self.current.feature_file = feature.name, feature.rel_filename
        self.current.tags = sorted(scenario.tags)
        if self.runtime is not None:
            self.runtime.set_evidence_scope(sid)

    def _interrupted(self) -> int | None:
        return self.runtime.interrupt.signum if self.runtime is not None else None

    def not_run(self) -> list[str]:
        """Names of the selected scenarios that did not run (interrupted campaign)."""
        return [_identity(_item_scenario_name(item), str(item.path), _example(item))[0]
                for item in self._items if item.nodeid not in self._ran]

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item,
                                  call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        if call.excinfo is not None and self.current is not None and not call.excinfo.errisinstance(pytest.skip.Exception):
            exc = call.excinfo.value
            if isinstance(exc, KeyboardInterrupt) or self._interrupted() is not None:
                self.current.interrupted = True
                return report  # the protocol wrapper labels the scenario: not a bench defect, no traceback
            message = one_line(exc)
            if not isinstance(exc, HarnessError) and self.runtime is not None:
                self.runtime.write_harness_trace(self.current.id, "".join(
                    traceback.format_exception(type(exc), exc, exc.__traceback__)))
            where = "préparation" if call.when == "setup" else "nettoyage" if call.when == "teardown" else "exécution"
            self.current.error = self.current.error or f"{where} : {message}"
        elif call.excinfo is not None and self.current is not None:
            self.current.findings.extend(
                Finding(r, Verdict.SKIP, str(call.excinfo.value) or "non applicable") for r in self.current.requirements)
        return report

    def pytest_bdd_before_step(self, request: pytest.FixtureRequest, feature: Feature, scenario: Scenario,
                               step: Step, step_func: Callable[..., object]) -> None:
        self._step_started = time.monotonic()
        self._step_findings = len(self.current.findings) if self.current is not None else 0

    def pytest_bdd_after_step(self, request: pytest.FixtureRequest, feature: Feature, scenario: Scenario, step: Step,
                              step_func: Callable[..., object], step_func_args: dict[str, object]) -> None:
        judged = self.current.findings[self._step_findings:] if self.current is not None else []  # a FAIL judged here
        self._add_step(step, "failed" if any(f.verdict in (Verdict.FAIL, Verdict.ERROR) for f in judged) else "passed")

    def pytest_bdd_step_error(self, request: pytest.FixtureRequest, feature: Feature, scenario: Scenario, step: Step,
                              step_func: Callable[..., object], step_func_args: dict[str, object],
                              exception: Exception) -> None:
        self._add_step(step, "failed")
        later = list(getattr(scenario, "steps", []))  # the steps an exception left unexecuted
        for rest in later[next((i + 1 for i, s in enumerate(later) if s is step), len(later)):]:
            if self.current is not None:
                self.current.steps.append(StepResult(rest.keyword.strip(), rest.name, "not_run"))

    def pytest_bdd_step_func_lookup_error(self, request: pytest.FixtureRequest, feature: Feature, scenario: Scenario,
                                          step: Step, exception: Exception) -> None:
        self._add_step(step, "undefined")

    def _add_step(self, step: Step, outcome: str) -> None:
        if self.current is not None:
            self.current.steps.append(StepResult(step.keyword.strip(), step.name, outcome,
                                                 time.monotonic() - self._step_started))

    def _finish(self, result: ScenarioResult) -> None:
        result.duration_s = time.monotonic() - self._scenario_started
        for req in result.requirements:
            if result.error:
                if not any(f.requirement == req and f.verdict is Verdict.ERROR for f in result.findings):
                    message = result.error if result.interrupted else f"scénario en erreur — {result.error}"
                    result.findings.append(errored(req, message, check="drimcheck.plugin",
                                                   details={"interrupted": True} if result.interrupted else {}))
            elif not any(f.requirement == req for f in result.findings):
                result.findings.append(errored(
                    req, "défaut du banc : aucun contrôle n'a rendu de verdict pour cette exigence", check="drimcheck.plugin"))
        stray = sorted({f.requirement for f in result.findings} - set(result.requirements))
        if stray:
            result.findings.append(errored(
                stray[0], "défaut du banc : verdict rendu pour une exigence non étiquetée sur le scénario "
                f"({', '.join(stray)})", check="drimcheck.plugin"))
        self.results.append(result)
        if self.on_scenario_done:
            self.on_scenario_done(result, len(self.results), self._total)


#: where steps/_plugin.py finds the campaign's plugin (config.stash)
RUNTIME_KEY = pytest.StashKey[DrimcheckPlugin]()
