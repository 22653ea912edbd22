"""Run results: scenarios with their findings, rolled up per requirement; the model every report renders."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from drimcheck import __version__
from drimcheck.catalogue import Catalogue
from drimcheck.evidence import redact_text, redact_value
from drimcheck.verdicts import ExitCode, Finding, Verdict, exit_code_for, worst

SCHEMA_VERSION = "1.2"  # 1.1: "campaign" (mode, sut.toml SHA-256, effective timeouts), run.raw_verdict;
# 1.2: "documents" (the public documents the requirements of the run cite, with sections and citing requirements)


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
    bound: dict[str, Any] | None = None  # normative deadline: timeout, normative_s, effective_s, loosened

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class CampaignInfo:
    """What was run: the reports say it, so a partial, mutant or loosened run is never read as a conformity verdict."""

    referencing: bool = False  # drimcheck run --referencement
    mutant: str | None = None
    requirements_selected: list[str] | None = None  # --req (None: every scenario)
    timeouts: list[dict[str, Any]] = field(default_factory=list)  # drimcheck.bounds.TimeoutRow.to_dict()
    loosened: list[str] = field(default_factory=list)  # French: every normative bound loosened by [timeouts]
    sut_file: str | None = None
    sut_sha256: str | None = None  # of the sut.toml bytes (of the embedded description for the reference)

    @property
    def mode(self) -> str:
        return "mutant" if self.mutant else "partial" if self.requirements_selected else "full"


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
    campaign: CampaignInfo = field(default_factory=CampaignInfo)
    interrupted_by: int | None = None  # signal number (SIGINT, SIGTERM) that stopped the campaign
    not_run: list[str] = field(default_factory=list)  # selected scenarios an interruption left unrun

    def __post_init__(self) -> None:
        self._mark_loosened_passes()
        self._redact()

    def _mark_loosened_passes(self) -> None:
        """A PASS judged under a loosened normative bound is not a PASS of the requirement: WARN, said why."""
        loosened = {t["name"]: t for t in self.campaign.timeouts if t.get("status") == "loosened"}
        if not loosened:
            return
        for s in self.scenarios:
            for f in s.findings:
                req = self.catalogue.get(f.requirement) if f.requirement in self.catalogue else None
                t = loosened.get(req.bound.timeout) if req is not None and req.bound is not None else None
                if t is not None and f.verdict is Verdict.PASS:
                    f.raw_verdict = f.raw_verdict or f.verdict
                    f.verdict = Verdict.WARN
                    f.message = (f"{f.message} (jugé avec {t['name']} = {t['value_s']:g} s au lieu de la borne "
                                 f"normative de {req.bound.value_s:g} s : hors référencement)")

    def _redact(self) -> None:
        """Every report (results.json, junit.xml, report.html) renders this object: no credential may reach it
        (e.g. ``user:pw@`` in the health URL of the SUT description, a token quoted in a finding)."""
        self.sut = redact_value(self.sut)
        self.infrastructure_error = redact_text(self.infrastructure_error) if self.infrastructure_error else None
        self.command = redact_value(list(self.command))
        self.scenarios = [_redacted(s) for s in self.scenarios]

    @property
    def raw_exit_code(self) -> ExitCode:
        """Exit code from the verdicts alone."""
        if self.infrastructure_error and not self.scenarios:
            return ExitCode.INFRASTRUCTURE
        return exit_code_for([f.verdict for s in self.scenarios for f in s.findings])

    @property
    def exit_code(self) -> int:
        """A loosened normative bound (« hors référencement ») never exits 0; SIGINT/SIGTERM: 130/143."""
        if self.interrupted_by:  # what a shell reports for a process stopped by that signal
            return 128 + int(self.interrupted_by)
        code = self.raw_exit_code
        if self.campaign.loosened and code is ExitCode.CONFORMANT:
            return ExitCode.NON_CONFORMANT
        return code

    @property
    def raw_verdict_fr(self) -> str:
        return {ExitCode.CONFORMANT: "CONFORME", ExitCode.NON_CONFORMANT: "NON CONFORME",
                ExitCode.INFRASTRUCTURE: "INDÉTERMINÉ (erreur d'exécution)"}.get(self.raw_exit_code, "INDÉTERMINÉ")

    def requirements_run(self) -> list[str]:
        return [r.id for r in self.requirement_results() if r.verdict not in ("NOT_RUN", "NOT_TESTED")]

    def requirements_not_run(self) -> list[str]:
        return [r.id for r in self.requirement_results() if r.verdict == "NOT_RUN"]

    @property
    def mode_fr(self) -> str:
        c = self.campaign
        parts = []
        if c.mutant:
            parts.append(f"mutant {c.mutant} de la DRIMbox de référence")
        if c.requirements_selected:
            parts.append(f"campagne partielle ({len(self.requirements_run())} exigences exécutées sur "
                         f"{len(self.automated_ids)} automatisées ; --req {' '.join(c.requirements_selected)})")
        if not parts:
            parts.append("campagne complète")
        if c.loosened:
            parts.append("HORS RÉFÉRENCEMENT (borne normative relâchée)")
        elif c.referencing:
            parts.append("campagne de référencement")
        return " · ".join(parts)

    @property
    def verdict_fr(self) -> str:
        """The verdict line: a plain CONFORME only for a complete campaign within the normative bounds."""
        if self.interrupted_by:
            return "INTERROMPU (campagne incomplète)"
        raw, c = self.raw_verdict_fr, self.campaign
        partial = (f"campagne partielle : {len(self.requirements_run())} exigences sur {len(self.catalogue.requirements)}"
                   if c.requirements_selected else None)
        if c.mutant or c.loosened:
            head = ", ".join([*([f"mutant {c.mutant}"] if c.mutant else []),
                              *([f"HORS RÉFÉRENCEMENT (bornes normatives relâchées : {' ; '.join(c.loosened)})"]
                                if c.loosened else [])])
            return (f"{head} — pas un verdict de conformité (résultat des contrôles : {raw}"
                    f"{' ; ' + partial if partial else ''})")
        if partial:
            return f"{raw} ({partial})"
        if c.referencing:
            return f"{raw} (campagne de référencement)"
        return raw

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
                scenarios=scenario_ids, messages=messages, bound=self._bound(req)))
        return out

    def _bound(self, req) -> dict[str, Any] | None:
        if req.bound is None:
            return None
        effective = next((t["value_s"] for t in self.campaign.timeouts if t["name"] == req.bound.timeout), None)
        return {"timeout": req.bound.timeout, "normative_s": req.bound.value_s, "effective_s": effective,
                "loosened": effective is not None and effective > req.bound.value_s}

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
                    "raw_verdict": self.raw_verdict_fr, "infrastructure_error": self.infrastructure_error,
                    "interrupted": {"signal": _signal_name(self.interrupted_by), "scenarios_not_run": self.not_run}
                    if self.interrupted_by else None},
            "campaign": self.campaign_dict(),
            "sut": self.sut,
            "summary": self.summary(),
            "scenarios": [s.to_dict() for s in self.scenarios],
            "requirements": [r.to_dict() for r in self.requirement_results()],
            "documents": self.documents(),
        }

    def documents(self) -> list[dict[str, Any]]:
        """The documents cited by the requirements of this run (every catalogued requirement but those a partial
        campaign left out, NOT_RUN): id, title, publisher, version, date, url, cited_by, sections."""
        return self.catalogue.documents_cited(r.id for r in self.requirement_results() if r.verdict != "NOT_RUN")

    def campaign_dict(self) -> dict[str, Any]:
        c = self.campaign
        return {
            "mode": c.mode, "mode_fr": self.mode_fr, "referencing": c.referencing,
            "out_of_referencing": bool(c.loosened), "loosened_bounds": list(c.loosened),
            "mutant": c.mutant, "requirements_selected": c.requirements_selected,
            "requirements_not_run": self.requirements_not_run(),
            "sut_file": c.sut_file, "sut_sha256": c.sut_sha256, "timeouts": c.timeouts,
            "harness_version": __version__, "catalogue_version": self.catalogue.version,
        }


def _signal_name(signum: int) -> str:
    import signal

    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)


def _redacted(scenario: ScenarioResult) -> ScenarioResult:
    findings = [replace(f, message=redact_text(f.message), details=redact_value(f.details)) for f in scenario.findings]
    return replace(scenario, findings=findings, error=redact_text(scenario.error) if scenario.error else None)
