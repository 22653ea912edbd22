"""JUnit XML for CI dashboards: one testcase per scenario, requirement IDs as testcase properties."""

from __future__ import annotations

import xml.etree.ElementTree as ET

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


def render_junit(result: RunResult) -> bytes:
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
        case = ET.SubElement(suite, "testcase", {"classname": s.feature_file.replace("/", ".").removesuffix(".feature"),
                                                  "name": s.name, "time": f"{s.duration_s:.3f}"})
        cprops = ET.SubElement(case, "properties")
        for req in s.requirements:
            ET.SubElement(cprops, "property", {"name": "requirement", "value": req})
        ET.SubElement(cprops, "property", {"name": "verdict", "value": s.verdict.value})
        lines = [f"[{f.verdict.value}] {f.requirement} — {f.message}" for f in s.findings]
        bad = [f for f in s.findings if f.verdict in (Verdict.FAIL, Verdict.ERROR)]
        if s.verdict is Verdict.FAIL:
            el = ET.SubElement(case, "failure", {"message": bad[0].message[:500] if bad else "FAIL"})
            el.text = "\n".join(lines)
        elif s.verdict is Verdict.ERROR:
            el = ET.SubElement(case, "error", {"message": bad[0].message[:500] if bad else "ERROR"})
            el.text = "\n".join(lines)
        elif s.verdict is Verdict.SKIP:
            ET.SubElement(case, "skipped", {"message": s.findings[0].message[:500] if s.findings else ""})
        ET.SubElement(case, "system-out").text = "\n".join(lines)
    ET.indent(suite)
    return ET.tostring(suite, encoding="utf-8", xml_declaration=True)
