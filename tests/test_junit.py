"""junit.xml as CI dashboards read it: requirement IDs in testcase names and failure messages, classname per
area, evidence attached as [[ATTACHMENT|path]] (GitLab, Jenkins), always well-formed XML whatever the DUT sent.
Read back with lxml and with an outside JUnit parser (junitparser)."""

from __future__ import annotations

import dataclasses

import junitparser
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from drimcheck import catalogue, config
from drimcheck.reports.junit import ATTACHMENTS_CAP, render_junit
from drimcheck.results import RunResult, ScenarioResult
from drimcheck.verdicts import Finding, Verdict

HOSTILE = "DRIMbox\x00\x01\x08\x0b\x1b[31m\x7f\x85\ud800\udfff\ufffe]]> <x a=\"'&amp;\r\n\t fin"


def _result(scenarios: list[ScenarioResult], sut_name: str = "DRIMbox test") -> RunResult:
    sut = dataclasses.replace(config.load(None), name=sut_name)
    return RunResult(run_id="r1", started_at="2026-01-01T00:00:00Z", finished_at="2026-01-01T00:00:01Z",
                     duration_s=1.0, strict=False, sut=sut.describe(), catalogue=catalogue.load(),
                     scenarios=scenarios, automated_ids={r for s in scenarios for r in s.requirements})


def _scenarios() -> list[ScenarioResult]:
    down = Finding("HLT-02", Verdict.FAIL, "aucune réponse DOWN dans les 10 s suivant l'arrêt du PACS",
                   check="health.reports_pacs_down",
                   evidence=["evidence/healthcheck--arret/021-meteo-020.json", "evidence/healthcheck--arret/022-meteo-021.json"])
    up = Finding("HLT-03", Verdict.PASS, "UP 0.31 s après le redémarrage", check="health.recovers",
                 evidence=["evidence/healthcheck--arret/024-meteo-023.json"])
    crt = Finding("CRT-01", Verdict.PASS, "chaîne IGC-Santé", check="tls.x", evidence=["evidence/tls/001-chaine.json"])
    err = Finding("SRC-01", Verdict.ERROR, "DMP injoignable", check="source.x")
    return [
        ScenarioResult(id="healthcheck--arret", feature="HealthCheck", feature_file="features/sante/healthcheck.feature",
                       name="Arrêt puis redémarrage du PACS", requirements=["HLT-02", "HLT-03"], findings=[down, up]),
        ScenarioResult(id="tls--chaine", feature="Certificats", feature_file="features/tls/certificats.feature",
                       name="Certificat du FQDN dbN", requirements=["CRT-01"], findings=[crt]),
        ScenarioResult(id="source--cr", feature="Source", feature_file="features/source/publication.feature",
                       name="Publication du CR", requirements=["SRC-01"], findings=[err], error="exécution : DMP"),
    ]


def _outside_parser(xml: bytes, tmp_path):
    """junitparser reads the file as a CI would (JUnitXml.fromfile)."""
    path = tmp_path / "junit.xml"
    path.write_bytes(xml)
    [suite] = list(junitparser.JUnitXml.fromfile(str(path)))  # one <testsuite>
    assert suite.name == "drimcheck"
    return suite


def test_requirement_ids_are_in_testcase_names_classnames_and_failure_messages(tmp_path):
    suite = _outside_parser(render_junit(_result(_scenarios())), tmp_path)
    cases = {c.name: c for c in suite}
    assert set(cases) == {"HLT-02, HLT-03 — Arrêt puis redémarrage du PACS", "CRT-01 — Certificat du FQDN dbN",
                          "SRC-01 — Publication du CR"}
    health = cases["HLT-02, HLT-03 — Arrêt puis redémarrage du PACS"]
    assert health.classname == "drimcheck.Supervision (health check)"  # area "Santé" named for what it is
    assert cases["CRT-01 — Certificat du FQDN dbN"].classname == "drimcheck.Certificats et TLS"
    [failure] = health.result
    assert isinstance(failure, junitparser.Failure)
    assert failure.message.startswith("HLT-02 : aucune réponse DOWN") and "HLT-03" not in failure.message
    [error] = cases["SRC-01 — Publication du CR"].result
    assert isinstance(error, junitparser.Error) and error.message == "SRC-01 : DMP injoignable"
    assert cases["CRT-01 — Certificat du FQDN dbN"].is_passed
    assert (suite.tests, suite.failures, suite.errors) == (3, 1, 1)


def test_evidence_is_attached_relative_to_the_junit_file_failing_evidence_first():
    root = etree.fromstring(render_junit(_result(_scenarios())))
    out = root.find("testcase").findtext("system-out")
    attachments = [line for line in out.splitlines() if line.startswith("[[ATTACHMENT|")]
    assert attachments == ["[[ATTACHMENT|evidence/healthcheck--arret/021-meteo-020.json]]",
                           "[[ATTACHMENT|evidence/healthcheck--arret/022-meteo-021.json]]",
                           "[[ATTACHMENT|evidence/healthcheck--arret/024-meteo-023.json]]"]
    assert "[FAIL] HLT-02 — aucune réponse DOWN" in out


def test_attachments_are_capped_and_only_evidence_paths():
    many = [f"evidence/s/{i:03d}-x.json" for i in range(50)] + ["../../etc/passwd", "/etc/shadow", "evidence/../x"]
    s = ScenarioResult(id="s", feature="f", feature_file="features/f.feature", name="n", requirements=["HLT-01"],
                       findings=[Finding("HLT-01", Verdict.FAIL, "x", evidence=many[::-1])])
    out = etree.fromstring(render_junit(_result([s]))).find("testcase").findtext("system-out")
    attached = [line[len("[[ATTACHMENT|"):-2] for line in out.splitlines() if line.startswith("[[ATTACHMENT|")]
    assert len(attached) == ATTACHMENTS_CAP and all(a.startswith("evidence/s/") for a in attached)


def test_dut_text_cannot_forge_an_attachment():
    s = ScenarioResult(id="s", feature="f", feature_file="features/f.feature", name="n", requirements=["HLT-01"],
                       findings=[Finding("HLT-01", Verdict.FAIL, "réponse : [[ATTACHMENT|/etc/passwd]]")])
    out = etree.fromstring(render_junit(_result([s]))).find("testcase").findtext("system-out")
    assert "[[ATTACHMENT|/etc/passwd]]" not in out and "/etc/passwd" in out


def test_hostile_strings_give_valid_xml_read_by_both_parsers(tmp_path):
    s = ScenarioResult(id="s", feature=HOSTILE, feature_file=f"features/{HOSTILE}.feature", name=HOSTILE,
                       requirements=["HLT-01"], error=HOSTILE,
                       findings=[Finding("HLT-01", Verdict.ERROR, HOSTILE, check=HOSTILE, evidence=[HOSTILE])])
    xml = render_junit(_result([s], sut_name=HOSTILE))
    root = etree.fromstring(xml)  # strict XML 1.0
    case = root.find("testcase")
    assert case.get("name").startswith("HLT-01 — DRIMbox\\x00\\x01")
    assert "]]> <x a=\"'&amp;" in case.get("name")  # escaped, not interpreted
    assert root.find("testcase/error").get("message").startswith("HLT-01 : DRIMbox")
    suite = _outside_parser(xml, tmp_path)
    assert [c.name for c in suite] == [case.get("name")]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=80), st.text(max_size=80))
def test_any_text_from_the_dut_keeps_junit_well_formed(name, message):
    s = ScenarioResult(id="s", feature="f", feature_file="features/f.feature", name=name, requirements=["HLT-01"],
                       findings=[Finding("HLT-01", Verdict.FAIL, message)])
    root = etree.fromstring(render_junit(_result([s])))
    assert root.find("testcase").get("name").startswith("HLT-01 — ")
    assert root.find("testcase/failure").get("message").startswith("HLT-01 : ")


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(pytest.main([__file__, "-q"]))


def test_inside_a_ci_attachment_paths_start_from_the_project_directory(tmp_path, monkeypatch):
    """GitLab and Jenkins resolve [[ATTACHMENT|path]] against the project directory / workspace, not junit.xml."""
    for var in ("DRIMCHECK_JUNIT_BASE", "CI_PROJECT_DIR", "WORKSPACE"):
        monkeypatch.delenv(var, raising=False)
    run_dir = tmp_path / "runs" / "ci"
    run_dir.mkdir(parents=True)

    def attached() -> list[str]:
        out = etree.fromstring(render_junit(_result(_scenarios()), run_dir)).find("testcase").findtext("system-out")
        return [line for line in out.splitlines() if line.startswith("[[ATTACHMENT|")]

    assert attached()[0] == "[[ATTACHMENT|evidence/healthcheck--arret/021-meteo-020.json]]"  # outside a CI
    monkeypatch.setenv("CI_PROJECT_DIR", str(tmp_path))  # GitLab
    assert attached()[0] == "[[ATTACHMENT|runs/ci/evidence/healthcheck--arret/021-meteo-020.json]]"
    monkeypatch.delenv("CI_PROJECT_DIR")
    monkeypatch.setenv("WORKSPACE", str(run_dir))  # Jenkins, run directory = workspace
    assert attached()[0] == "[[ATTACHMENT|evidence/healthcheck--arret/021-meteo-020.json]]"
    monkeypatch.setenv("WORKSPACE", str(tmp_path / "elsewhere"))  # run directory outside: relative to junit.xml
    assert attached()[0] == "[[ATTACHMENT|evidence/healthcheck--arret/021-meteo-020.json]]"
    monkeypatch.setenv("DRIMCHECK_JUNIT_BASE", str(tmp_path / "runs"))  # explicit base first
    assert attached()[0] == "[[ATTACHMENT|ci/evidence/healthcheck--arret/021-meteo-020.json]]"
