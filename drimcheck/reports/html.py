"""Self-contained French HTML report, rendered from results.json data (so it can be re-rendered offline)."""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import quote

from drimcheck.reports.charts import chart
from drimcheck.verdicts import Verdict

VERDICT_FR = {**{v.value: v.label_fr for v in Verdict}, "NOT_RUN": "Non exécuté", "NOT_TESTED": "Non testé"}
STRENGTH_FR = {"required": "exigée", "inferred": "inférée"}
ACTOR_FR = {"source": "Source", "conso": "Conso", "both": "Source et Conso"}

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem;color:#1b1b1b;max-width:80rem}
h1{font-size:1.6rem;margin-bottom:.2rem} h2{margin-top:2rem;border-bottom:2px solid #000091;padding-bottom:.2rem}
table{border-collapse:collapse;width:100%;margin:.5rem 0;font-size:.9rem} th,td{border:1px solid #ddd;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{background:#f0f0f7} .v{font-weight:600;white-space:nowrap;border-radius:3px;padding:.1rem .4rem}
.PASS{background:#d4f4dd;color:#18753c} .FAIL{background:#fddede;color:#ce0500} .WARN{background:#fff1c2;color:#8d5a00}
.ERROR{background:#ffd9f0;color:#8c0057} .SKIP,.NOT_RUN,.NOT_TESTED{background:#eee;color:#555}
.banner{font-size:1.3rem;padding:.8rem 1rem;margin:1rem 0;border-radius:4px} .small{color:#555;font-size:.85rem}
details{margin:.4rem 0;border:1px solid #ddd;border-radius:4px;padding:.4rem .7rem} summary{cursor:pointer}
code{background:#f5f5f5;padding:0 .2rem} ul{margin:.2rem 0}
.MODE{background:#e8edff;color:#000091} .alert{border:2px solid #ce0500;color:#ce0500;padding:.6rem 1rem;font-weight:600}
"""

MODE_FR = {"full": "campagne complète", "partial": "campagne partielle (--req)", "mutant": "mutant de la DRIMbox de référence"}
TIMEOUT_STATUS_FR = {
    "normative": "égale à la borne normative",
    "tightened": "resserrée (autorisé)",
    "loosened": "RELÂCHÉE : hors référencement",
    "configurable": "attente du banc (configurable)",
}


def _mode_alerts(data: dict[str, Any]) -> list[str]:
    """The partial / mutant / hors-référencement banners: right under the verdict, before anything else."""
    c = data.get("campaign") or {}
    out = []
    if c.get("out_of_referencing"):
        out.append("<p class=\"alert\">HORS RÉFÉRENCEMENT : une borne normative a été relâchée par [timeouts] "
                   "(" + escape(" ; ".join(c.get("loosened_bounds", []))) + "). Ces résultats servent au diagnostic "
                   "et ne valent pas verdict de conformité.</p>")
    if c.get("mode") == "mutant":
        out.append(f"<p class=\"alert\">Mutant {escape(c.get('mutant') or '')} de la DRIMbox de référence : "
                   "exécution d'auto-contrôle du banc, pas un verdict de conformité.</p>")
    if c.get("mode") == "partial" or c.get("requirements_selected"):
        out.append("<p class=\"alert partial\">Campagne partielle (--req " + escape(" ".join(c.get("requirements_selected") or []))
                   + f") : {len(c.get('requirements_not_run') or [])} exigences automatisées non exécutées. "
                   "Ce rapport ne vaut pas verdict de conformité de la DRIMbox.</p>")
    return out


def _campaign_section(data: dict[str, Any]) -> list[str]:
    """What was run: mode, command line, sut.toml digest, versions, effective timeouts beside their bounds."""
    from drimcheck.bounds import MEANING_FR

    c, run, harness = data.get("campaign"), data["run"], data["harness"]
    if not c:
        return []
    out = ["<h2>Campagne exécutée</h2>"]
    rows = [("Mode", c.get("mode_fr") or MODE_FR.get(c.get("mode"), c.get("mode"))),
            ("Campagne de référencement", "oui" if c.get("referencing") else "non"),
            ("Ligne de commande", " ".join(run.get("command", []))),
            ("Description de la DRIMbox (sut.toml)", c.get("sut_file")),
            ("SHA-256 du sut.toml", c.get("sut_sha256")),
            ("Versions", f"drimcheck {harness['version']} · catalogue {harness['catalogue_version']} "
                         f"(SHA-256 {harness.get('catalogue_sha256', '')})")]
    if c.get("requirements_selected"):
        rows.append(("Exigences demandées (--req)", ", ".join(c["requirements_selected"])))
    if c.get("requirements_not_run"):
        rows.append((f"Exigences non exécutées ({len(c['requirements_not_run'])})", ", ".join(c["requirements_not_run"])))
    out.append("<table>")
    for k, v in rows:
        out.append(f"<tr><th>{escape(k)}</th><td><code>{escape(str(v or '—'))}</code></td></tr>"
                   if k in ("Ligne de commande", "SHA-256 du sut.toml") else
                   f"<tr><th>{escape(k)}</th><td>{escape(str(v or '—'))}</td></tr>")
    out.append("</table>")
    if c.get("timeouts"):
        out.append("<h3>Délais effectifs ([timeouts])</h3><table><tr><th>Paramètre</th><th>Rôle</th><th>Valeur</th>"
                   "<th>Borne normative</th><th>Exigences</th><th>Statut</th></tr>")
        for tmo in c["timeouts"]:
            bound = tmo.get("normative_bound_s")
            cls = " class=\"FAIL\"" if tmo.get("status") == "loosened" else ""
            out.append(f"<tr><td><code>{escape(tmo['name'])}</code></td><td>{escape(MEANING_FR.get(tmo['name'], ''))}</td>"
                       f"<td>{tmo['value_s']:g} s</td><td>{'—' if bound is None else f'{bound:g} s'}</td>"
                       f"<td>{escape(', '.join(tmo.get('requirements', [])))}</td>"
                       f"<td{cls}>{escape(TIMEOUT_STATUS_FR.get(tmo.get('status'), str(tmo.get('status'))))}</td></tr>")
        out.append("</table>")
    return out



BAD = ("FAIL", "ERROR")
# Areas of the catalogue as the report names them ("Santé" reads as patient health in a health-sector document)
AREA_FR = {"Santé": "Supervision (health check)"}
STEP_FR = {"passed": "réussie", "failed": "échouée", "not_run": "non exécutée", "skipped": "non exécutée",
           "undefined": "non définie (défaut du banc)"}
STEP_CLASS = {"passed": "st-ok", "failed": "st-ko", "not_run": "st-nr", "skipped": "st-nr"}
DETAIL_CAP = 160  # characters of a message shown in the matrix (the full text is in the failures list)

SCRIPT = """
function dcOpen(id){var el=document.getElementById(id);if(!el)return null;
 for(var e=el;e;e=e.parentElement){if(e.tagName==='DETAILS')e.open=true;}return el;}
document.addEventListener('click',function(ev){var a=ev.target.closest&&ev.target.closest('a[href^="#"]');
 if(a){var el=dcOpen(decodeURIComponent(a.getAttribute('href').slice(1)));if(el&&el.classList.contains('ev')){el.scrollIntoView();}}});
window.addEventListener('hashchange',function(){dcOpen(decodeURIComponent(location.hash.slice(1)));});
document.addEventListener('DOMContentLoaded',function(){if(location.hash)dcOpen(decodeURIComponent(location.hash.slice(1)));});
"""

CSS += """
.fails{border:2px solid #ce0500;border-radius:4px;padding:.2rem 1rem .6rem;margin:1rem 0}
.fails h2{border:0;margin-top:.5rem;color:#ce0500} .fails.ok{border-color:#18753c} .fails.ok h2{color:#18753c}
.fail{margin:.6rem 0;padding:.4rem 0;border-top:1px solid #eee} .fail:first-of-type{border-top:0}
.ev-links a,.sc{margin-right:.4rem;white-space:nowrap} .ev{background:#fafafa} .ev:target{outline:3px solid #000091}
dl.xch{display:grid;grid-template-columns:8rem 1fr;gap:.3rem .8rem;margin:.3rem 0} dl.xch dt{font-weight:600}
dl.xch dd{margin:0;min-width:0} pre{white-space:pre-wrap;word-break:break-all;background:#fff;border:1px solid #e3e3e3;
padding:.4rem;margin:.2rem 0;max-height:24rem;overflow:auto;font-size:.8rem}
.trunc{color:#8d5a00;font-weight:600;font-size:.85rem} figure.chart{margin:.3rem 0} .legend{margin-top:0} figure.compact svg{width:240px;height:auto}
.st-ko{color:#ce0500;font-weight:600} .st-nr{color:#777} .kv th{width:16rem}
.alert.partial{border-color:#8d5a00;color:#8d5a00} table.matrix{table-layout:fixed}
table.matrix td.detail{overflow-wrap:anywhere}
.kv .sc{margin-right:0} details.src{border:0;padding:0;margin:0} details.src summary{white-space:nowrap;overflow:hidden;text-overflow:ellipsis} details.src[open] summary{display:none}
"""


def _v(verdict: str) -> str:
    return f'<span class="v {escape(verdict)}">{escape(VERDICT_FR.get(verdict, verdict))}</span>'


def _area(area: str) -> str:
    return AREA_FR.get(area, area)


def _keyword(keyword: str) -> str:
    """Gherkin keyword as French writes it: « Étant donné », not pytest-bdd's « Étant Donné »."""
    keyword = keyword.strip()
    return keyword[:1].upper() + keyword[1:].lower()


def _step(st: dict[str, Any]) -> str:
    outcome = st["outcome"]
    timing = "" if outcome == "not_run" else f", {st['duration_s']:.2f} s"
    return (f"<li class=\"{STEP_CLASS.get(outcome, 'st-ko')}\"><strong>{escape(_keyword(st['keyword']))}</strong> {escape(st['text'])} "
            f"<span class=\"small\">({escape(STEP_FR.get(outcome, outcome))}{timing})</span></li>")


def _source(source: str) -> str:
    """The source of a requirement: one line in the matrix, the whole text one click away."""
    if len(source) <= 90:
        return f"<div class=\"small\">Source : {escape(source)}</div>"
    return (f"<details class=\"src small\"><summary>Source : {escape(_short(source, 80))}</summary>"
            f"{escape(source)}</details>")


def _short(text: str, cap: int = DETAIL_CAP) -> str:
    return text if len(text) <= cap else text[:cap - 1].rstrip() + "…"


class _Evidence:
    """Evidence cited by findings, numbered in order of first citation, embedded up to a total size cap."""

    def __init__(self, run_dir: Path | None):
        self.run_dir = run_dir
        self.ids: dict[str, str] = {}

    def anchor(self, rel: str) -> str:
        if rel not in self.ids:
            self.ids[rel] = f"ev-{len(self.ids) + 1}"
        return self.ids[rel]

    def link(self, rel: str) -> str:
        name = rel.rsplit("/", 1)[-1]
        return (f"<a href=\"#{self.anchor(rel)}\" title=\"{escape(rel)}\">{escape(name)}</a>")

    def links(self, evidence: list[str], cap: int = 6) -> str:
        shown = " ".join(self.link(e) for e in evidence[:cap])
        more = f" <span class=\"small\">+{len(evidence) - cap}</span>" if len(evidence) > cap else ""
        return f"<span class=\"ev-links\">{shown}{more}</span>" if evidence else ""

    def section(self) -> list[str]:
        from drimcheck.reports.evidence_view import TOTAL_CAP, render_evidence

        if not self.ids:
            return []
        out = ["<h2 id=\"preuves\">Preuves</h2>",
               "<p class=\"small\">Chaque échange enregistré (requête, réponse, chaîne TLS, horodatage), secrets "
               "masqués, tronqué au-delà d'une taille fixe. Les fichiers complets sont dans le dossier "
               "<code>evidence/</code> à côté de ce rapport.</p>"]
        used = 0
        for rel, anchor in self.ids.items():
            body = render_evidence(self.run_dir, rel) if used < TOTAL_CAP else (
                "<p class=\"trunc\">… tronqué : taille maximale des preuves intégrées au rapport atteinte ; "
                "voir le fichier dans evidence/.</p>")
            used += len(body)
            out.append(f"<details class=\"ev\" id=\"{anchor}\"><summary><code>{escape(rel)}</code></summary>"
                       f"<p class=\"small\"><a href=\"{escape(quote(rel))}\">ouvrir le fichier</a> · "
                       f"<a href=\"#echecs\">retour aux échecs</a></p>{body}</details>")
        return out


def _expected(r: dict[str, Any]) -> str:
    text = escape(r["title"])
    b = r.get("bound")
    if b:
        text += f" <span class=\"small\">(borne normative {b['normative_s']:g} s)</span>"
    return text


def _failures_section(data: dict[str, Any], ev: _Evidence, scen_no: dict[str, int]) -> list[str]:
    """The first thing on the page: every requirement that failed, with what was expected, what was observed,
    and links to the evidence."""
    bad = [r for r in data["requirements"] if r["verdict"] in BAD]
    warn = [r for r in data["requirements"] if r["verdict"] == "WARN"]
    findings: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    for s in data["scenarios"]:
        for f in s["findings"]:
            findings.setdefault(f["requirement"], []).append((s, f))
    judged = [r for r in data["requirements"] if r["verdict"] not in ("NOT_RUN", "NOT_TESTED")]
    if not judged:
        out = ["<section class=\"fails\" id=\"echecs\"><h2>Aucune exigence jugée</h2><p>La campagne n'a rendu "
               "aucun verdict : voir l'erreur d'exécution ci-dessus.</p>"]
    elif not bad:
        out = ["<section class=\"fails ok\" id=\"echecs\"><h2>Aucun échec</h2><p>Aucune exigence exécutée n'est "
               "non conforme ni en erreur.</p>"]
    else:
        n_fail = sum(1 for r in bad if r["verdict"] == "FAIL")
        out = [f"<section class=\"fails\" id=\"echecs\"><h2>Échecs : {n_fail} exigence{'s' if n_fail > 1 else ''} "
               f"non conforme{'s' if n_fail > 1 else ''}, {len(bad) - n_fail} en erreur</h2>"]
        for r in bad:
            out.append(f"<div class=\"fail\" id=\"echec-{escape(r['id'])}\"><div>{_v(r['verdict'])} "
                       f"<a href=\"#req-{escape(r['id'])}\"><strong>{escape(r['id'])}</strong></a> — {escape(r['title'])}</div>")
            out.append(f"<table class=\"kv\"><tr><th>Attendu</th><td>{_expected(r)}</td></tr>")
            for s, f in findings.get(r["id"], []):
                if f["verdict"] not in BAD:
                    continue
                out.append(f"<tr><th>Observé <span class=\"small\">(scénario <a class=\"sc\" href=\"#{escape(s['id'])}\">"
                           f"S{scen_no[s['id']]}</a>)</span></th><td>{escape(f['message'])}"
                           f"{chart(f.get('details'), r['id'])}"
                           f"<div>Preuves : {ev.links(f['evidence']) or '<span class=small>aucune</span>'}</div></td></tr>")
            out.append("</table></div>")
    if warn:
        out.append(f"<p><strong>Avertissements ({len(warn)})</strong> : " + ", ".join(
            f"<a href=\"#req-{escape(r['id'])}\">{escape(r['id'])}</a>" for r in warn) + "</p>")
    out.append("</section>")
    return out


def _documents_section(data: dict[str, Any]) -> list[str]:
    """Documents cited by the catalogue (results.json "documents", when the catalogue provides it)."""
    docs = data.get("documents")
    if not isinstance(docs, list) or not docs:
        return []
    out = ["<h2 id=\"documents\">Documents cités</h2><table><tr><th>Réf.</th><th>Document</th><th>Version, date</th>"
           "<th>Sections citées</th><th>Exigences</th></tr>"]
    for d in docs:
        if not isinstance(d, dict):
            continue
        title = escape(str(d.get("title") or "—"))
        url = str(d.get("url") or "")
        if url.startswith(("https://", "http://")):
            title = f"<a href=\"{escape(url, quote=True)}\" rel=\"noreferrer\">{title}</a><div class=\"small\">{escape(url)}</div>"
        else:
            title += "<div class=\"small\">document non public</div>" if not url else f"<div class=\"small\">{escape(url)}</div>"
        version = " · ".join(escape(str(d[k])) for k in ("version", "date") if d.get(k))
        sections = d["sections"] if isinstance(d.get("sections"), list) else []
        cited = d["cited_by"] if isinstance(d.get("cited_by"), list) else []
        reqs = ", ".join("<a href=\"#req-" + escape(str(x)) + "\">" + escape(str(x)) + "</a>" for x in cited)
        out.append(f"<tr id=\"doc-{escape(str(d.get('id', '')))}\"><td>{escape(str(d.get('id', '')))}</td><td>{title}</td>"
                   f"<td>{version or '—'}</td><td>{escape(' ; '.join(str(x) for x in sections)) or '—'}</td>"
                   f"<td>{reqs or '—'}</td></tr>")
    out.append("</table>")
    return out


def render_html(data: dict[str, Any], run_dir: Path | None = None) -> str:
    """The report; `run_dir` (where evidence/ is) lets it embed readable views of the cited evidence."""
    run, sut, summary = data["run"], data["sut"], data["summary"]
    ev = _Evidence(run_dir)
    scen_no = {s["id"]: i + 1 for i, s in enumerate(data["scenarios"])}
    banner_class = {0: "PASS", 1: "FAIL", 3: "ERROR"}.get(run["exit_code"], "ERROR")
    if (data.get("campaign") or {}).get("mode") == "mutant":
        banner_class = "MODE"
    out: list[str] = [
        "<!doctype html><html lang=\"fr\"><head><meta charset=\"utf-8\">",
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
        f"<title>drimcheck — {escape(sut.get('name', ''))}</title><style>{CSS}</style><script>{SCRIPT}</script></head><body>",
        "<h1>Rapport de conformité DRIMbox — drimcheck</h1>",
        f"<p class=\"small\">{escape(sut.get('name', ''))} · drimcheck {escape(data['harness']['version'])} · catalogue "
        f"d'exigences {escape(data['harness']['catalogue_version'])} · exécution {escape(run['id'])} · "
        f"du {escape(run['started_at'])} au {escape(run['finished_at'])} ({run['duration_s']:.1f} s)"
        f"{' · mode strict' if run['strict'] else ''}</p>",
        f"<div class=\"banner {banner_class}\">Verdict : <strong>{escape(run['verdict'])}</strong></div>",
    ]
    out += _mode_alerts(data)
    if run.get("interrupted"):
        not_run = run["interrupted"].get("scenarios_not_run") or []
        out.append(f"<p class=\"alert\">Campagne interrompue ({escape(str(run['interrupted'].get('signal')))}) : "
                   f"{len(not_run)} scénario{'s' if len(not_run) > 1 else ''} non exécuté{'s' if len(not_run) > 1 else ''}. "
                   "Ce rapport ne vaut pas verdict de conformité.</p>")
    if run.get("infrastructure_error"):
        out.append(f"<p class=\"alert\">Erreur d'exécution : {escape(run['infrastructure_error'])}</p>")
    out += _failures_section(data, ev, scen_no)

    out.append("<h2>Synthèse</h2><table><tr><th>Scénarios</th><th>Exigences</th></tr><tr><td><ul>")
    out += [f"<li>{_v(k)} {n}</li>" for k, n in summary["scenarios"].items()]
    out.append("</ul></td><td><ul>")
    out += [f"<li>{_v(k)} {n}</li>" for k, n in summary["requirements"].items()]
    out.append(f"</ul><p class=\"small\">{summary['requirements_automated']} exigences automatisées sur "
               f"{summary['requirements_catalogued']} cataloguées.</p></td></tr></table>")
    out += _campaign_section(data)
    out.append("<h2>DRIMbox testée</h2><table class=\"kv\">")
    rows = [("Nom", sut.get("name")), ("Éditeur", sut.get("editor")), ("Version", sut.get("version")),
            ("Fonctions", ", ".join(sut.get("roles", []))), ("ID_Registre", sut.get("registry")),
            ("HealthCheck", sut.get("health_url")), ("Description", sut.get("description_file"))]
    if sut.get("embedded"):
        rows.append(("DRIMbox embarquée", sut["embedded"]))
    for k, v in rows:
        out.append(f"<tr><th>{escape(k)}</th><td>{escape(str(v or '—'))}</td></tr>")
    for p in sut.get("pacs", []):
        out.append(f"<tr><th>{escape(p['name'])}</th><td>PACS servi par la DRIMbox <code>{escape(p['db'])}</code> · "
                   f"visionneuse <code>{escape(p['vi'])}</code></td></tr>")
    out.append("</table>")

    charts: dict[str, str] = {}  # requirement -> chart of its worst timed finding
    for s in data["scenarios"]:
        for f in s["findings"]:
            c = chart(f.get("details"), f["requirement"], compact=True)
            if c and (f["requirement"] not in charts or f["verdict"] in BAD):
                charts[f["requirement"]] = c
    out.append("<h2>Matrice des exigences</h2><table class=\"matrix\"><colgroup><col style=\"width:5.5rem\">"
               "<col><col style=\"width:8.5rem\"><col style=\"width:30%\"></colgroup><tr><th>Exigence</th><th>Intitulé et source</th>"
               "<th>Verdict, force, acteur</th><th>Détail</th></tr>")
    area = None
    for r in data["requirements"]:
        if r["area"] != area:
            area = r["area"]
            out.append(f"<tr><th colspan=\"4\">{escape(_area(area))}</th></tr>")
        msgs = r["messages"]
        detail = escape(_short(msgs[0])) if msgs else escape(_short(r.get("not_tested_reason") or ""))
        if len(msgs) > 1:
            detail += f" <span class=\"small\">(+{len(msgs) - 1} constat{'s' if len(msgs) > 2 else ''})</span>"
        if r["verdict"] in BAD:
            detail += f" <a class=\"small\" href=\"#echec-{escape(r['id'])}\">détail</a>"
        if r.get("bound"):
            b = r["bound"]
            effective = "—" if b.get("effective_s") is None else f"{b['effective_s']:g} s"
            detail += (f"<div class=\"small{' FAIL' if b.get('loosened') else ''}\">Borne normative {b['normative_s']:g} s "
                       f"(<code>{escape(b['timeout'])}</code>) ; appliquée : {effective}"
                       f"{' — RELÂCHÉE, hors référencement' if b.get('loosened') else ''}</div>")
        detail += charts.get(r["id"], "")
        if r["scenarios"]:
            detail += "<div class=\"small\">Scénarios : " + "".join(
                f"<a class=\"sc\" href=\"#{escape(sid)}\">S{scen_no[sid]}</a>"
                for sid in sorted((x for x in r["scenarios"] if x in scen_no), key=scen_no.__getitem__)) + "</div>"
        out.append(f"<tr id=\"req-{escape(r['id'])}\"><td><strong>{escape(r['id'])}</strong></td><td>{escape(r['title'])}"
                   f"{_source(r['source'])}</td><td>{_v(r['verdict'])}<div class=\"small\">"
                   f"{escape(STRENGTH_FR.get(r['strength'], r['strength']))} · {escape(ACTOR_FR.get(r['actor'], r['actor']))}"
                   f"</div></td><td class=\"detail\">{detail}</td></tr>")
    out.append("</table>")

    out.append("<h2>Scénarios</h2>")
    for s in data["scenarios"]:
        out.append(f"<details id=\"{escape(s['id'])}\"{' open' if s['verdict'] in BAD else ''}>"
                   f"<summary>S{scen_no[s['id']]} {_v(s['verdict'])} <strong>{escape(s['name'])}</strong> "
                   f"<span class=\"small\">— {escape(s['feature'])} ({escape(s['feature_file'])}, {s['duration_s']:.2f} s) · "
                   f"{escape(', '.join(s['requirements']))}</span></summary>")
        if s.get("error"):
            out.append(f"<p><strong>Erreur :</strong> {escape(s['error'])}</p>")
        out.append("<ol>" + "".join(_step(st) for st in s["steps"]) + "</ol>")
        out.append("<table><tr><th>Exigence</th><th>Verdict</th><th>Constat</th><th>Preuves</th></tr>")
        for f in s["findings"]:
            out.append(f"<tr><td><a href=\"#req-{escape(f['requirement'])}\">{escape(f['requirement'])}</a></td>"
                       f"<td>{_v(f['verdict'])}</td><td>{escape(f['message'])}<div class=\"small\">{escape(f['check'])}"
                       f"</div>{chart(f.get('details'), f['requirement'])}</td><td>{ev.links(f['evidence'])}</td></tr>")
        out.append("</table></details>")
    out += ev.section()
    out += _documents_section(data)
    out.append("<p class=\"small\">Codes de sortie : 0 conforme, 1 non conforme, 2 erreur d'usage ou de configuration, "
               "3 DRIMbox injoignable ou erreur d'infrastructure.</p>")
    out.append("</body></html>")
    return "\n".join(out)
