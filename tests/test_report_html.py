"""report.html from hand-made results: failures first, evidence views embedded (redacted, capped, only from
evidence/), timing charts, true step statuses in French, the documents cited."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from drimcheck import catalogue, config
from drimcheck.reports import safe_tree
from drimcheck.reports.evidence_view import TEXT_CAP
from drimcheck.reports.html import render_html
from drimcheck.results import RunResult, ScenarioResult, StepResult
from drimcheck.verdicts import Finding, Verdict

EV_DOWN = "evidence/healthcheck--arret/021-meteo-020.json"
EV_KOS = "evidence/source--cr/003-kos.txt"
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"


def _exchange() -> dict:
    return {"label": "meteo-020", "started_at": "2026-12-02T18:35:12.018493+00:00", "elapsed_s": 0.125, "error": None,
            "request": {"method": "GET", "url": "https://db1.349.mesimagesmedicales.fr/q/health", "connect_to": "127.0.0.1:1",
                        "headers": [["Host", "db1.349.mesimagesmedicales.fr"], ["Authorization", f"Bearer {JWT}"]],
                        "body": {"size": 0}},
            "response": {"status": 200, "headers": [["content-type", "application/json"]],
                         "body": {"size": 40, "text": '{"status": "UP", "checks": []}'}},
            "tls": {"sni": "db1.349.mesimagesmedicales.fr", "version": "TLSv1.3", "cipher": "TLS_AES_256_GCM_SHA384",
                    "chain": [{"subject": "CN=db1.349.mesimagesmedicales.fr", "issuer": "CN=DRIMCHECK TEST AC",
                               "serial": "0x1", "not_after": "2027-12-02T18:35:03+00:00"}]}}


def make_run(tmp_path: Path, *, documents: list | None = None) -> tuple[dict, Path]:
    run_dir = tmp_path / "run"
    (run_dir / "evidence" / "healthcheck--arret").mkdir(parents=True)
    (run_dir / "evidence" / "source--cr").mkdir(parents=True)
    (run_dir / EV_DOWN).write_text(json.dumps(_exchange()))
    (run_dir / EV_KOS).write_text("K" * (TEXT_CAP + 5000))
    (tmp_path / "secret.txt").write_text("SECRET-OUTSIDE-EVIDENCE")
    os.symlink(tmp_path / "secret.txt", run_dir / "evidence" / "source--cr" / "004-lien.txt")
    timeline = [{"t_s": round(0.5 * i, 2), "http": 200, "status": "UP", "error": None} for i in range(1, 22)]
    down = Finding("HLT-02", Verdict.FAIL, "aucune réponse DOWN dans les 10 s suivant l'arrêt du PACS (réponses vues : 200/UP)",
                   check="health.reports_pacs_down", evidence=[EV_DOWN], details={"deadline_s": 10.0, "timeline": timeline})
    up = Finding("HLT-03", Verdict.PASS, "UP 0.31 s après le redémarrage du PACS", check="health.recovers",
                 details={"deadline_s": 10.0, "timeline": [{"t_s": 0.31, "http": 200, "status": "UP", "error": None}],
                          "recovered_after_s": 0.31})
    slow = Finding("HLT-06", Verdict.PASS, "réponse la plus lente en 0.046 s (budget 2 s)", check="health.answers_within",
                   details={"slowest_s": 0.046, "budget_s": 2.0, "answers": 6})
    kos = Finding("SRC-01", Verdict.ERROR, "DMP injoignable", check="source.x",
                  evidence=[EV_KOS, "evidence/source--cr/004-lien.txt", "evidence/../../secret.txt"])
    steps = [StepResult("Étant Donné", "le PACS simulé détient une étude de test", "passed", 0.2),
             StepResult("Alors", "le HealthCheck passe DOWN en nommant ce PACS dans le délai imparti", "failed", 10.1),
             StepResult("Et", "toutes les réponses observées suivent le format MicroProfile Health", "not_run")]
    scenarios = [
        ScenarioResult(id="healthcheck--arret-puis-redemarrage-du-pacs-avec-un-identifiant-de-scenario-tres-long-x",
                       feature="HealthCheck", feature_file="features/sante/healthcheck.feature",
                       name="Arrêt puis redémarrage du PACS", requirements=["HLT-02", "HLT-03", "HLT-06"],
                       findings=[down, up, slow], steps=steps),
        ScenarioResult(id="source--cr", feature="Source", feature_file="features/source/publication.feature",
                       name="Publication du CR", requirements=["SRC-01"], findings=[kos]),
    ]
    sut = config.load(None)
    result = RunResult(run_id="r1", started_at="2026-01-01T00:00:00Z", finished_at="2026-01-01T00:00:30Z",
                       duration_s=30.0, strict=False, sut=sut.describe(), catalogue=catalogue.load(),
                       scenarios=scenarios, automated_ids={"HLT-02", "HLT-03", "HLT-06", "SRC-01"})
    data = safe_tree(result.to_dict())
    if documents is not None:
        data["documents"] = documents
    return data, run_dir


def test_failures_come_first_with_expected_observed_and_evidence_links(tmp_path):
    data, run_dir = make_run(tmp_path)
    html = render_html(data, run_dir)
    first = html.index('id="echecs"')
    assert first < html.index("<h2>Synthèse") < html.index("Matrice des exigences") < html.index("<h2>Scénarios")
    failures = html[first:html.index("</section>", first)]
    assert "Échecs : 1 exigence non conforme, 1 en erreur" in failures
    assert "<strong>HLT-02</strong></a> — Le HealthCheck passe DOWN" in failures
    assert "<th>Attendu</th>" in failures and "(borne normative 10 s)" in failures
    assert "Observé" in failures and "aucune réponse DOWN dans les 10 s" in failures
    assert re.search(r'<a href="#ev-1" title="evidence/healthcheck--arret/021-meteo-020.json">021-meteo-020.json</a>', failures)
    assert "<svg" in failures and "échéance 10 s" in failures  # the timeline against the deadline


def test_evidence_views_are_embedded_readable_redacted_and_capped(tmp_path):
    data, run_dir = make_run(tmp_path)
    html = render_html(data, run_dir)
    view = re.search(r'<details class="ev" id="ev-1">(.*?)</details>', html, re.S).group(1)
    assert "GET https://db1.349.mesimagesmedicales.fr/q/health" in view and "HTTP 200" in view
    assert "TLSv1.3" in view and "CN=DRIMCHECK TEST AC" in view and "durée 0.125 s" in view
    assert JWT not in html and "[REDACTED" in view  # a token that reached an evidence file is still masked
    kos = re.search(r'<details class="ev" id="ev-2">(.*?)</details>', html, re.S).group(1)
    assert "tronqué" in kos and "K" * TEXT_CAP in kos and "K" * (TEXT_CAP + 1) not in kos
    assert "SECRET-OUTSIDE-EVIDENCE" not in html  # neither through a symlink nor through ../
    assert html.count("Fichier de preuve absent ou hors du dossier evidence/") == 2


def test_without_a_run_directory_nothing_is_read(tmp_path):
    data, _ = make_run(tmp_path)
    html = render_html(data)
    assert '<a href="#ev-1"' in html and "GET https://" not in html


def test_steps_keywords_areas_and_pacs_in_clean_french(tmp_path):
    data, run_dir = make_run(tmp_path)
    html = render_html(data, run_dir)
    assert "<strong>Étant donné</strong>" in html and "Étant Donné" not in html
    assert "(réussie, 0.20 s)" in html and "(échouée, 10.10 s)" in html and "(non exécutée)" in html
    assert "passed" not in html and "failed" not in html  # pytest's words, not the report's
    assert "Supervision (health check)" in html and ">Santé<" not in html
    assert "PACS PACS-1" not in html and "<th>PACS-1</th>" in html
    assert ">S1</a>" in html and ">healthcheck--arret-puis" not in html  # short scenario links, no slugs shown
    assert html.count("<svg") >= 4  # HLT-02 (failures, matrix, scenario), HLT-03, HLT-06


def test_banner_of_a_partial_mutant_out_of_referencing_run_is_kept(tmp_path):
    data, run_dir = make_run(tmp_path)
    data["campaign"].update(mode="mutant", mutant="health-always-up", requirements_selected=["HLT-02"],
                            out_of_referencing=True, loosened_bounds=["health_down_s = 30 s > 10 s"])
    html = render_html(data, run_dir)
    top = html[:html.index('id="echecs"')]
    assert "HORS RÉFÉRENCEMENT" in top and "Mutant health-always-up" in top and "Campagne partielle (--req HLT-02)" in top


def test_documents_cited_close_the_report_when_present(tmp_path):
    docs = [{"id": "ANS-GI-DRIMM", "title": "Guide d'intégration à l'espace de confiance DRIM-M", "version": "1.1",
             "date": "2024-06", "url": "https://industriels.esante.gouv.fr/drim-m", "cited_by": ["HLT-02", "CRT-01"],
             "sections": ["§2.4", "§2.5"]},
            {"id": "X", "title": "Document <interne>", "version": "", "date": "", "url": "javascript:alert(1)",
             "cited_by": [], "sections": []}]
    data, run_dir = make_run(tmp_path, documents=docs)
    html = render_html(data, run_dir)
    section = html[html.index('<h2 id="documents">Documents cités</h2>'):]
    assert html.index("Documents cités") > html.index('id="preuves"')  # at the end of the report
    assert '<a href="https://industriels.esante.gouv.fr/drim-m" rel="noreferrer">Guide d&#x27;intégration' in section
    assert "1.1 · 2024-06" in section and "§2.4 ; §2.5" in section
    assert '<a href="#req-HLT-02">HLT-02</a>, <a href="#req-CRT-01">CRT-01</a>' in section
    assert 'href="javascript:' not in html and "Document &lt;interne&gt;" in section
    without = make_run(tmp_path / "b")[0]
    without.pop("documents", None)  # results.json before schema 1.2
    assert "Documents cités" not in render_html(without)


def test_conformant_run_says_no_failure(tmp_path):
    data, run_dir = make_run(tmp_path)
    for s in data["scenarios"]:
        s["findings"] = [dict(f, verdict="PASS") for f in s["findings"]]
    for r in data["requirements"]:
        r["verdict"] = "PASS" if r["verdict"] in ("FAIL", "ERROR") else r["verdict"]
    html = render_html(data, run_dir)
    assert "Aucun échec" in html and "Échecs :" not in html


def test_total_embedded_evidence_is_capped(tmp_path, monkeypatch):
    from drimcheck.reports import evidence_view

    monkeypatch.setattr(evidence_view, "TOTAL_CAP", 10)
    data, run_dir = make_run(tmp_path)
    html = render_html(data, run_dir)
    assert "GET https://" in html  # the first view is always embedded
    assert "taille maximale des preuves intégrées au rapport atteinte" in html


def test_step_statuses_are_true():
    """Before: every step was recorded "passed", the one whose check judged FAIL included, and the steps an
    exception skipped were missing. Now: failed where a FAIL/ERROR was judged or raised, not_run after it."""
    from types import SimpleNamespace

    from drimcheck.plugin import DrimcheckPlugin

    plugin = DrimcheckPlugin(None, catalogue.load(), strict=True)
    plugin.current = ScenarioResult(id="s", feature="f", feature_file="f.feature", name="n", requirements=["HLT-02"])
    steps = [SimpleNamespace(keyword=k, name=n) for k, n in
             (("Étant Donné", "un PACS"), ("Alors", "DOWN dans le délai"), ("Alors", "UP à nouveau"), ("Et", "format"))]
    scenario = SimpleNamespace(steps=steps)
    hook = dict(request=None, feature=None, scenario=scenario, step_func=None)
    plugin.pytest_bdd_before_step(step=steps[0], **hook)
    plugin.pytest_bdd_after_step(step=steps[0], step_func_args={}, **hook)
    plugin.pytest_bdd_before_step(step=steps[1], **hook)
    plugin.judge(Finding("HLT-02", Verdict.FAIL, "aucune réponse DOWN"))
    plugin.pytest_bdd_after_step(step=steps[1], step_func_args={}, **hook)
    plugin.pytest_bdd_before_step(step=steps[2], **hook)
    plugin.pytest_bdd_step_error(step=steps[2], step_func_args={}, exception=RuntimeError("x"), **hook)
    assert [(s.keyword, s.outcome) for s in plugin.current.steps] == [
        ("Étant Donné", "passed"), ("Alors", "failed"), ("Alors", "failed"), ("Et", "not_run")]


def test_a_run_that_judged_nothing_does_not_claim_no_failure(tmp_path):
    data, run_dir = make_run(tmp_path)
    data["scenarios"] = []
    for r in data["requirements"]:
        r["verdict"] = "NOT_RUN" if r["automated"] else "NOT_TESTED"
    data["run"].update(exit_code=130, infrastructure_error="DRIMbox injoignable",
                       interrupted={"signal": "SIGINT", "scenarios_not_run": ["a", "b"]})
    html = render_html(data, run_dir)
    assert "Aucune exigence jugée" in html and "Aucun échec" not in html
    assert "Campagne interrompue (SIGINT) : 2 scénarios non exécutés" in html
    assert html.index("Erreur d'exécution : DRIMbox injoignable") < html.index('id="echecs"')
