"""One real campaign against the embedded reference: conformant, and its four report artefacts are right."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import pytest

from tests.golden import golden_full_run

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out, proc = golden_full_run(tmp_path_factory)  # shared with the other tests that only read it
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Verdict : CONFORME" in proc.stdout and "report.html" in proc.stdout
    return out


def test_results_json_follows_the_documented_schema(run_dir):
    schema = json.loads((REPO / "docs" / "results.schema.json").read_text())
    data = json.loads((run_dir / "results.json").read_text())
    jsonschema.validate(data, schema)
    assert data["run"]["exit_code"] == 0 and data["sut"]["embedded"] == "reference"
    assert data["run"]["interrupted"] is None and not any(s["interrupted"] for s in data["scenarios"])
    automated = [r for r in data["requirements"] if r["automated"]]
    assert automated and all(r["verdict"] == "PASS" for r in automated)
    assert all(r["verdict"] == "NOT_TESTED" and r["not_tested_reason"] for r in data["requirements"] if not r["automated"])


def test_every_finding_cites_existing_evidence(run_dir):
    data = json.loads((run_dir / "results.json").read_text())
    cited = [e for s in data["scenarios"] for f in s["findings"] for e in f["evidence"]]
    assert cited and all((run_dir / e).is_file() for e in cited)


def test_junit_has_one_testcase_per_scenario_with_requirement_properties(run_dir):
    data = json.loads((run_dir / "results.json").read_text())
    suite = ET.parse(run_dir / "junit.xml").getroot()
    cases = suite.findall("testcase")
    assert len(cases) == len(data["scenarios"]) and suite.get("failures") == "0"
    reqs = {p.get("value") for c in cases for p in c.iter("property") if p.get("name") == "requirement"}
    assert {"HLT-01", "HLT-02", "CRT-01", "CLR-01"} <= reqs
    for case, scenario in zip(cases, data["scenarios"]):  # IDs where GitLab and Jenkins show them
        assert case.get("name") == f"{', '.join(scenario['requirements'])} — {scenario['name']}"
        assert case.get("classname").startswith("drimcheck.")
    attached = [line[len("[[ATTACHMENT|"):-2] for c in cases for line in (c.findtext("system-out") or "").splitlines()
                if line.startswith("[[ATTACHMENT|")]
    assert attached and all((run_dir / a).is_file() for a in attached)  # relative to junit.xml


def test_html_report_is_french_and_self_contained(run_dir):
    html = (run_dir / "report.html").read_text()
    assert 'lang="fr"' in html and "Matrice des exigences" in html and "CONFORME" in html
    assert "<script src" not in html and "<link" not in html
    assert html.index("Aucun échec") < html.index("Matrice des exigences")
    assert "passed" not in html and "Étant Donné" not in html and "<th>PACS PACS-" not in html and ">Santé<" not in html
    assert '<details class="ev" id="ev-1">' in html and "GET https://" in html  # evidence embedded, readable
    assert len(html) < 8 * 1024 * 1024


def test_no_private_key_or_secret_lands_in_the_run_directory(run_dir):
    for path in run_dir.rglob("*"):
        if path.is_file():
            text = path.read_bytes()
            assert b"PRIVATE KEY-----\nMII" not in text, path
