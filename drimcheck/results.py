"""Run results: scenarios with their findings, rolled up per requirement; the model every report renders."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from drimcheck import __version__
from drimcheck.catalogue import Catalogue
from drimcheck.verdicts import ExitCode, Finding, Verdict, exit_code_for, worst

SCHEMA_VERSION = "1.0"


@dataclass
class StepResult:
    keyword: str
    text: str
    outcome: str  # passed, failed, skipped
    duration_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"keyword": self.keyword, "text": self.text, "outcome": self.outcome,
                "duration_s": round(self.duration_s, 3)}


@dataclass
class ScenarioResult:
    id: str
    feature: str
    feature_file: str
    name: str
    requirements: list[str]
    tags: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    steps: list[StepResult] = field(default_factory=list)
    error: str | None = None
    duration_s: float = 0.0
    interrupted: bool = False  # stopped by SIGINT/SIGTERM: verdict ERROR, not a bench defect

    @property
    def verdict(self) -> Verdict:
        return worst([f.verdict for f in self.findings]) or Verdict.ERROR

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "feature": self.feature, "feature_file": self.feature_file, "name": self.name,
            "tags": self.tags, "requirements": self.requirements, "verdict": self.verdict.value,
            "duration_s": round(self.duration_s, 3), "error": self.error, "interrupted": self.interrupted,
            "steps": [s.to_dict() for s in self.steps],
            "findings": [f.to_dict() for f in self.findings],
        }


@dataclass
class RequirementResult:
    id: str
    title: str
    area: str
    source: str
    strength: str
    actor: str
    automated: bool
    verdict: str  # a Verdict value, or "NOT_RUN" (automated, not selected) or "NOT_TESTED" (no check yet)
    not_tested_reason: str | None
    scenarios: list[str]
    messages: list[str]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class RunResult:
    run_id: str
    started_at: str
    finished_at: str
    duration_s: float
    strict: bool
    sut: dict[str, Any]
    catalogue: Catalogue
    scenarios: list[ScenarioResult]
    automated_ids: set[str]  # requirements some scenario of the campaign is tagged with
    infrastructure_error: str | None = None
    command: list[str] = field(default_factory=list)
    interrupted_by: int | None = None  # signal number (SIGINT, SIGTERM) that stopped the campaign
    not_run: list[str] = field(default_factory=list)  # selected scenarios an interruption left unrun

    @property
    def exit_code(self) -> int:
        if self.interrupted_by:  # what a shell reports for a process stopped by that signal: 130, 143
            return 128 + int(self.interrupted_by)
        if self.infrastructure_error and not self.scenarios:
            return ExitCode.INFRASTRUCTURE
        return exit_code_for([f.verdict for s in self.scenarios for f in s.findings])

    @property
    def verdict_fr(self) -> str:
        return {ExitCode.CONFORMANT: "CONFORME", ExitCode.NON_CONFORMANT: "NON CONFORME",
                ExitCode.INFRASTRUCTURE: "INDÉTERMINÉ (erreur d'exécution)"}.get(
                    self.exit_code, "INTERROMPU (campagne incomplète)" if self.interrupted_by else "INDÉTERMINÉ")

    def requirement_results(self) -> list[RequirementResult]:
        out = []
        for req in self.catalogue.requirements:
            findings = [(s, f) for s in self.scenarios for f in s.findings if f.requirement == req.id]
            scenario_ids = sorted({s.id for s in self.scenarios if req.id in s.requirements})
            automated = req.id in self.automated_ids
            if findings:
                verdict = worst([f.verdict for _, f in findings]).value
            elif automated:
                verdict = "NOT_RUN"
            else:
                verdict = "NOT_TESTED"
            messages = [f.message for _, f in findings if f.verdict is not Verdict.PASS]
            out.append(RequirementResult(
                id=req.id, title=req.title, area=req.area, source=req.source, strength=req.strength,
                actor=req.actor, automated=automated, verdict=verdict,
                not_tested_reason=None if automated else (req.not_tested or "aucun contrôle automatisé"),
                scenarios=scenario_ids, messages=messages))
        return out

    def summary(self) -> dict[str, Any]:
        reqs = self.requirement_results()
        count = lambda items, key: {v: sum(1 for i in items if key(i) == v) for v in sorted({key(i) for i in items})}
        return {
            "scenarios": count(self.scenarios, lambda s: s.verdict.value),
            "requirements": count(reqs, lambda r: r.verdict),
            "requirements_automated": sum(1 for r in reqs if r.automated),
            "requirements_catalogued": len(reqs),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "harness": {"name": "drimcheck", "version": __version__,
                        "catalogue_version": self.catalogue.version, "catalogue_sha256": self.catalogue.sha256},
            "run": {"id": self.run_id, "started_at": self.started_at, "finished_at": self.finished_at,
                    "duration_s": round(self.duration_s, 3), "strict": self.strict, "command": self.command,
                    "exit_code": int(self.exit_code), "verdict": self.verdict_fr,
                    "infrastructure_error": self.infrastructure_error,
                    "interrupted": {"signal": _signal_name(self.interrupted_by), "scenarios_not_run": self.not_run}
                    if self.interrupted_by else None},
            "sut": self.sut,
            "summary": self.summary(),
            "scenarios": [s.to_dict() for s in self.scenarios],
            "requirements": [r.to_dict() for r in self.requirement_results()],
        }


def _signal_name(signum: int) -> str:
    import signal

    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)
