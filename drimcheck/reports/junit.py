"""JUnit XML for CI dashboards (GitLab, Jenkins): one testcase per scenario, requirement IDs in its name and
in failure messages, evidence attached; always well-formed XML whatever the DUT sent."""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from drimcheck.results import RunResult
from drimcheck.verdicts import Verdict


def _campaign_properties(result: RunResult) -> list[tuple[str, str]]:
    """What was run (mode, command, sut.toml digest, versions, effective timeouts beside their bounds)."""
    from drimcheck import __version__

    c = result.campaign
    props = [("mode", c.mode), ("mode_fr", result.mode_fr), ("referencing", str(c.referencing).lower()),
             ("out_of_referencing", str(bool(c.loosened)).lower()), ("command", " ".join(result.command)),
             ("sut_file", c.sut_file or ""), ("sut_sha256", c.sut_sha256 or ""), ("harness_version", __version__),
             ("catalogue_sha256", result.catalogue.sha256), ("raw_verdict", result.raw_verdict_fr)]
    if c.mutant:
        props.append(("mutant", c.mutant))
    if c.requirements_selected:
        props.append(("requirements_selected", " ".join(c.requirements_selected)))
        props.append(("requirements_not_run", " ".join(result.requirements_not_run())))
    props += [("loosened_bound", reason) for reason in c.loosened]
    for t in c.timeouts:
        bound = t.get("normative_bound_s")
        props.append((f"timeout.{t['name']}", f"{t['value_s']:g}" + ("" if bound is None else
                                                                     f" (borne normative {bound:g}, {t['status']})")))
    return props


MESSAGE_CAP = 500  # characters of a failure message attribute (the full findings are in the element text)
ATTACHMENTS_CAP = 20  # evidence files attached per testcase
_EVIDENCE_PATH = re.compile(r"evidence/[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)*")


def _neutral(text: str) -> str:
    """DUT-supplied text in system-out must not forge an attachment marker (``[[ATTACHMENT|/etc/passwd]]``)."""
    return text.replace("[[", "[ [")


def _classname(result: RunResult, scenario) -> str:
    """drimcheck.<area>: CI dashboards group testcases by the area of the scenario's first requirement."""
    from drimcheck.reports.html import AREA_FR

    area = next((result.catalogue.get(r).area for r in scenario.requirements if r in result.catalogue), None)
    area = AREA_FR.get(area, area) if area else scenario.feature_file.rsplit("/", 1)[-1].removesuffix(".feature")
    return "drimcheck." + area.replace(".", " ")


def attachment_base(run_dir: Path | None) -> str:
    """Prefix of the attachment paths. GitLab (artifacts of $CI_PROJECT_DIR) and Jenkins (JUnit Attachments:
    workspace.child(path)) resolve them against the project directory, not against junit.xml: inside such a
    CI (or with DRIMCHECK_JUNIT_BASE set), when the run directory lies under that directory, paths start from
    it; otherwise they are relative to junit.xml (i.e. to the run directory)."""
    if run_dir is None:
        return ""
    for var in ("DRIMCHECK_JUNIT_BASE", "CI_PROJECT_DIR", "WORKSPACE"):
        base = os.environ.get(var)
        if base:
            try:
                rel = Path(run_dir).resolve().relative_to(Path(base).resolve())
            except (ValueError, OSError):
                continue
            return "" if str(rel) == "." else rel.as_posix() + "/"
    return ""


def _attachments(findings) -> list[str]:
    """Evidence paths (relative to the run directory, where junit.xml is), failing findings' first."""
    ordered = [e for f in findings if f.verdict in (Verdict.FAIL, Verdict.ERROR) for e in f.evidence]
    ordered += [e for f in findings for e in f.evidence]
    out: list[str] = []
    for e in ordered:
        if e not in out and _EVIDENCE_PATH.fullmatch(e) and ".." not in e.split("/"):
            out.append(e)
    return out[:ATTACHMENTS_CAP]


def render_junit(result: RunResult, run_dir: Path | None = None) -> bytes:
    """One testcase per scenario, named « REQ-ID[, REQ-ID] — scenario title », classname drimcheck.<area>;
    failure/error messages start with the requirement IDs; evidence files attached as [[ATTACHMENT|path]]
    lines in system-out (GitLab, Jenkins JUnit Attachments), paths relative to junit.xml, or to the CI
    project directory when the run directory is under it (attachment_base)."""
    prefix = attachment_base(run_dir)
    cases = result.scenarios
    suite = ET.Element("testsuite", {
        "name": "drimcheck", "tests": str(len(cases)),
        "failures": str(sum(1 for s in cases if s.verdict is Verdict.FAIL)),
        "errors": str(sum(1 for s in cases if s.verdict is Verdict.ERROR)),
        "skipped": str(sum(1 for s in cases if s.verdict is Verdict.SKIP)),
        "time": f"{result.duration_s:.3f}", "timestamp": result.started_at,
    })
    props = ET.SubElement(suite, "properties")
    for k, v in (("sut", result.sut.get("name", "")), ("strict", str(result.strict).lower()),
                 ("catalogue_version", result.catalogue.version), ("verdict", result.verdict_fr),
                 *_campaign_properties(result)):
        ET.SubElement(props, "property", {"name": k, "value": v})
    for s in cases:
        ids = ", ".join(s.requirements) or "sans exigence"
        feature = s.feature_file if s.feature_file.startswith("features/") else f"features/{s.feature_file}"
        case = ET.SubElement(suite, "testcase", {"classname": _classname(result, s), "name": f"{ids} — {s.name}",
                                                  "file": feature, "time": f"{s.duration_s:.3f}"})
        cprops = ET.SubElement(case, "properties")
        for req in s.requirements:
            ET.SubElement(cprops, "property", {"name": "requirement", "value": req})
        ET.SubElement(cprops, "property", {"name": "verdict", "value": s.verdict.value})
        lines = [f"[{f.verdict.value}] {f.requirement} — {f.message}" for f in s.findings]
        bad = [f for f in s.findings if f.verdict in (Verdict.FAIL, Verdict.ERROR)]
        message = " ; ".join(f"{f.requirement} : {f.message}" for f in bad)
        if len(message) > MESSAGE_CAP:
            message = message[:MESSAGE_CAP - 1] + "…"
        if s.verdict is Verdict.FAIL:
            el = ET.SubElement(case, "failure", {"message": message or f"{ids} : non conforme", "type": "non conforme"})
            el.text = "\n".join(lines)
        elif s.verdict is Verdict.ERROR:
            el = ET.SubElement(case, "error", {"message": message or f"{ids} : erreur d'exécution",
                                               "type": "erreur d'exécution"})
            el.text = "\n".join(lines + ([s.error] if s.error else []))
        elif s.verdict is Verdict.SKIP:
            ET.SubElement(case, "skipped", {"message": f"{ids} : " + (s.findings[0].message[:MESSAGE_CAP] if s.findings else "")})
        out = [_neutral(line) for line in lines]
        attachments = _attachments(s.findings)
        if attachments:
            out += ["", "Preuves :"] + [f"[[ATTACHMENT|{prefix}{e}]]" for e in attachments]
        ET.SubElement(case, "system-out").text = "\n".join(out)
    _make_safe(suite)
    ET.indent(suite)
    return ET.tostring(suite, encoding="utf-8", xml_declaration=True)


def _make_safe(root: ET.Element) -> None:
    """Every attribute value and text of the tree made legal XML (SUT names, DUT messages may hold anything)."""
    from drimcheck.reports import safe_text

    for el in root.iter():
        el.attrib.update({k: safe_text(v) for k, v in el.attrib.items()})
        if el.text:
            el.text = safe_text(el.text)
