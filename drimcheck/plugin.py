"""pytest plugin that turns pytest-bdd scenario runs into drimcheck scenario results.

Steps hand findings to the `judge` fixture; this plugin groups them per scenario, records step
outcomes and errors, guarantees that every requirement a scenario is tagged with gets a verdict,
and feeds the progress display. It never decides conformance itself.
"""

from __future__ import annotations

import re
import time
import traceback
from collections.abc import Callable
from typing import Any

import pytest

from drimcheck.catalogue import Catalogue
from drimcheck.checks import record_judgement
from drimcheck.results import ScenarioResult, StepResult
from drimcheck.verdicts import Finding, Verdict, errored

RUNTIME_KEY = pytest.StashKey[Any]()


class HarnessError(RuntimeError):
    """Something the harness needs is broken (simulator, PACS, configuration): verdict ERROR, exit 3."""


class DutUnreachable(HarnessError):
    """The DUT cannot be reached at all: nothing can be judged."""


class HookFailed(HarnessError):
    """A `[hooks]` command of sut.toml failed or timed out: named in the reports, never "DUT injoignable"."""


class CampaignInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM: the campaign stops, writes the reports of what ran and cleans up (runner.InterruptGuard)."""

    def __init__(self, signum: int = 2):
        super().__init__(signum)
        self.signum = signum


INTERRUPTED_FR = "campagne interrompue"


def signal_name(signum: int | None) -> str:
    import signal

    try:
        return signal.Signals(signum).name if signum else "signal"
    except ValueError:
        return f"signal {signum}"


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


def _template_of(item: pytest.Item) -> Any:
    """The pytest-bdd scenario template behind a collected test function, or None."""
    from pytest_bdd.scenario import scenario_wrapper_template_registry

    function = getattr(item, "function", None)
    return scenario_wrapper_template_registry.get(function) if function is not None else None


class DrimcheckPlugin:
    """Collects scenario results for one campaign run."""

    def __init__(self, runtime: Any, catalogue: Catalogue, *, strict: bool,
                 requirement_filter: set[str] | None = None,
                 on_scenario_done: Callable[[ScenarioResult, int, int], None] | None = None):
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
                f = errored(f.requirement, f"harness defect: finding for unknown requirement ({f.message})", check=f.check)
            self.catalogue.apply_strength(f, strict=self.strict)
            self.current.findings.append(f)
        return items

    # -- collection ---------------------------------------------------------------------------
    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.collection_errors.append(f"{report.nodeid}: {str(report.longrepr).strip().splitlines()[-1]}")

    def pytest_collection_modifyitems(self, session: pytest.Session, config: pytest.Config,
                                      items: list[pytest.Item]) -> None:
        keep, drop = [], []
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
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None):
        scenario = _template_of(item)
        name = scenario.name if scenario else item.name
        feature = scenario.feature.name if scenario else ""
        feature_file = scenario.feature.rel_filename if scenario else str(item.path)
        sid = f"{slug(re.sub(r'[.]feature$', '', feature_file.split('/')[-1]), 30)}--{slug(name, 60)}"
        example = getattr(getattr(item, "callspec", None), "params", {}).get("_pytest_bdd_example")
        if example:  # one result per row of a scenario outline, named and filed after its values
            values = ", ".join(str(v) for v in example.values())
            name, sid = f"{name} [{values}]", f"{sid}--{slug(values, 40)}"
        self._ran.add(item.nodeid)
        self.current = ScenarioResult(id=sid, feature=feature, feature_file=feature_file, name=name,
                                      requirements=scenario_requirements(item),
                                      tags=sorted(scenario.tags) if scenario else [])
        if hasattr(self.runtime, "set_evidence_scope"):
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

    def _interrupted(self) -> int | None:
        guard = getattr(self.runtime, "interrupt", None)
        return getattr(guard, "signum", None)

    def not_run(self) -> list[str]:
        """Names of the selected scenarios that did not run (interrupted campaign)."""
        out = []
        for item in self._items:
            if item.nodeid in self._ran:
                continue
            scenario = _template_of(item)
            name = scenario.name if scenario else item.name
            example = getattr(getattr(item, "callspec", None), "params", {}).get("_pytest_bdd_example")
            if example:
                name = f"{name} [{', '.join(str(v) for v in example.values())}]"
            out.append(name)
        return out

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        report = yield
        if call.excinfo is not None and self.current is not None and not call.excinfo.errisinstance(pytest.skip.Exception):
            exc = call.excinfo.value
            if isinstance(exc, KeyboardInterrupt) or self._interrupted() is not None:
                self.current.interrupted = True
                return report  # the protocol wrapper labels the scenario: not a bench defect, no traceback
            message = one_line(exc)
            if not isinstance(exc, HarnessError) and hasattr(self.runtime, "write_harness_trace"):
                self.runtime.write_harness_trace(self.current.id, "".join(
                    traceback.format_exception(type(exc), exc, exc.__traceback__)))
            where = "préparation" if call.when == "setup" else "nettoyage" if call.when == "teardown" else "exécution"
            self.current.error = self.current.error or f"{where} : {message}"
        elif call.excinfo is not None and self.current is not None:
            self.current.findings.extend(
                Finding(r, Verdict.SKIP, str(call.excinfo.value) or "non applicable") for r in self.current.requirements)
        return report

    def pytest_bdd_before_step(self, request, feature, scenario, step, step_func) -> None:
        self._step_started = time.monotonic()
        self._step_findings = len(self.current.findings) if self.current is not None else 0

    def pytest_bdd_after_step(self, request, feature, scenario, step, step_func, step_func_args) -> None:
        judged = self.current.findings[self._step_findings:] if self.current is not None else []  # a FAIL judged here
        self._add_step(step, "failed" if any(f.verdict in (Verdict.FAIL, Verdict.ERROR) for f in judged) else "passed")

    def pytest_bdd_step_error(self, request, feature, scenario, step, step_func, step_func_args, exception) -> None:
        self._add_step(step, "failed")
        later = list(getattr(scenario, "steps", []))  # the steps an exception left unexecuted
        for rest in later[next((i + 1 for i, s in enumerate(later) if s is step), len(later)):]:
            if self.current is not None:
                self.current.steps.append(StepResult(rest.keyword.strip(), rest.name, "not_run"))

    def pytest_bdd_step_func_lookup_error(self, request, feature, scenario, step, exception) -> None:
        self._add_step(step, "undefined")

    def _add_step(self, step: Any, outcome: str) -> None:
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
