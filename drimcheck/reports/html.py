"""Self-contained French HTML report, rendered from results.json data (so it can be re-rendered offline)."""

from __future__ import annotations

from html import escape
from typing import Any

VERDICT_FR = {
    "PASS": "Conforme", "FAIL": "Non conforme", "WARN": "Avertissement", "SKIP": "Non applicable",
    "ERROR": "Erreur d'exécution", "NOT_RUN": "Non exécuté", "NOT_TESTED": "Non testé",
}
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


def _campaign_section(data: dict[str, Any]) -> list[str]:
    """What was run: mode, command line, sut.toml digest, versions, effective timeouts beside their bounds."""
    from drimcheck.bounds import MEANING_FR

    c, run, harness = data.get("campaign"), data["run"], data["harness"]
    if not c:
        return []
    out = ["<h2>Campagne exécutée</h2>"]
    if c.get("out_of_referencing"):
        out.append("<p class=\"alert\">HORS RÉFÉRENCEMENT : une borne normative a été relâchée par [timeouts] "
                   "(" + escape(" ; ".join(c.get("loosened_bounds", []))) + "). Ces résultats servent au diagnostic "
                   "et ne valent pas verdict de conformité.</p>")
    if c.get("mode") == "mutant":
        out.append(f"<p class=\"alert\">Mutant {escape(c.get('mutant') or '')} de la DRIMbox de référence : "
                   "exécution d'auto-contrôle du banc, pas un verdict de conformité.</p>")
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



def _v(verdict: str) -> str:
    return f'<span class="v {escape(verdict)}">{escape(VERDICT_FR.get(verdict, verdict))}</span>'


def render_html(data: dict[str, Any]) -> str:
    run, sut, summary = data["run"], data["sut"], data["summary"]
    banner_class = {0: "PASS", 1: "FAIL", 3: "ERROR"}.get(run["exit_code"], "ERROR")
    if (data.get("campaign") or {}).get("mode") == "mutant":
        banner_class = "MODE"
    out: list[str] = [
        "<!doctype html><html lang=\"fr\"><head><meta charset=\"utf-8\">",
        f"<title>drimcheck — {escape(sut.get('name', ''))}</title><style>{CSS}</style></head><body>",
        "<h1>Rapport de conformité DRIMbox — drimcheck</h1>",
        f"<p class=\"small\">drimcheck {escape(data['harness']['version'])} · catalogue d'exigences "
        f"{escape(data['harness']['catalogue_version'])} · exécution {escape(run['id'])} · "
        f"du {escape(run['started_at'])} au {escape(run['finished_at'])} ({run['duration_s']:.1f} s)"
        f"{' · mode strict' if run['strict'] else ''}</p>",
        f"<div class=\"banner {banner_class}\">Verdict : <strong>{escape(run['verdict'])}</strong></div>",
    ]
    if run.get("infrastructure_error"):
        out.append(f"<p><strong>Erreur d'exécution :</strong> {escape(run['infrastructure_error'])}</p>")
    out += _campaign_section(data)
    out.append("<h2>DRIMbox testée</h2><table>")
    rows = [("Nom", sut.get("name")), ("Éditeur", sut.get("editor")), ("Version", sut.get("version")),
            ("Fonctions", ", ".join(sut.get("roles", []))), ("ID_Registre", sut.get("registry")),
            ("HealthCheck", sut.get("health_url")), ("Description", sut.get("description_file"))]
    if sut.get("embedded"):
        rows.append(("DRIMbox embarquée", sut["embedded"]))
    for k, v in rows:
        out.append(f"<tr><th>{escape(k)}</th><td>{escape(str(v or '—'))}</td></tr>")
    for p in sut.get("pacs", []):
        out.append(f"<tr><th>PACS {escape(p['name'])}</th><td>DRIMbox <code>{escape(p['db'])}</code> · "
                   f"visionneuse <code>{escape(p['vi'])}</code></td></tr>")
    out.append("</table>")

    out.append("<h2>Synthèse</h2><table><tr><th>Scénarios</th><th>Exigences</th></tr><tr><td><ul>")
    out += [f"<li>{_v(k)} {n}</li>" for k, n in summary["scenarios"].items()]
    out.append("</ul></td><td><ul>")
    out += [f"<li>{_v(k)} {n}</li>" for k, n in summary["requirements"].items()]
    out.append(f"</ul><p class=\"small\">{summary['requirements_automated']} exigences automatisées sur "
               f"{summary['requirements_catalogued']} cataloguées.</p></td></tr></table>")

    out.append("<h2>Matrice des exigences</h2><table><tr><th>Exigence</th><th>Intitulé</th><th>Force</th>"
               "<th>Acteur</th><th>Verdict</th><th>Détail</th></tr>")
    area = None
    for r in data["requirements"]:
        if r["area"] != area:
            area = r["area"]
            out.append(f"<tr><th colspan=\"6\">{escape(area)}</th></tr>")
        detail = "<br>".join(escape(m) for m in r["messages"][:3]) or escape(r.get("not_tested_reason") or "")
        if r.get("bound"):
            b = r["bound"]
            effective = "—" if b.get("effective_s") is None else f"{b['effective_s']:g} s"
            detail += (f"<div class=\"small{' FAIL' if b.get('loosened') else ''}\">Borne normative {b['normative_s']:g} s "
                       f"(<code>{escape(b['timeout'])}</code>) ; appliquée : {effective}"
                       f"{' — RELÂCHÉE, hors référencement' if b.get('loosened') else ''}</div>")
        if r["scenarios"]:
            detail += "".join(f"<br><a class=\"small\" href=\"#{escape(s)}\">{escape(s)}</a>" for s in r["scenarios"])
        out.append(f"<tr id=\"req-{escape(r['id'])}\"><td><strong>{escape(r['id'])}</strong></td><td>{escape(r['title'])}"
                   f"<div class=\"small\">Source : {escape(r['source'])}</div></td>"
                   f"<td>{escape(STRENGTH_FR.get(r['strength'], r['strength']))}</td>"
                   f"<td>{escape(ACTOR_FR.get(r['actor'], r['actor']))}</td><td>{_v(r['verdict'])}</td><td>{detail}</td></tr>")
    out.append("</table>")

    out.append("<h2>Scénarios</h2>")
    for s in data["scenarios"]:
        out.append(f"<details id=\"{escape(s['id'])}\"{' open' if s['verdict'] in ('FAIL', 'ERROR') else ''}>"
                   f"<summary>{_v(s['verdict'])} <strong>{escape(s['name'])}</strong> "
                   f"<span class=\"small\">— {escape(s['feature'])} ({escape(s['feature_file'])}, {s['duration_s']:.2f} s) · "
                   f"{escape(', '.join(s['requirements']))}</span></summary>")
        if s.get("error"):
            out.append(f"<p><strong>Erreur :</strong> {escape(s['error'])}</p>")
        out.append("<ol>" + "".join(f"<li><strong>{escape(st['keyword'])}</strong> {escape(st['text'])} "
                                    f"<span class=\"small\">({escape(st['outcome'])}, {st['duration_s']:.2f} s)</span></li>"
                                    for st in s["steps"]) + "</ol>")
        out.append("<table><tr><th>Exigence</th><th>Verdict</th><th>Constat</th><th>Preuves</th></tr>")
        for f in s["findings"]:
            ev = "<br>".join(f"<code>{escape(e)}</code>" for e in f["evidence"][:6])
            more = f"<br><span class=\"small\">+{len(f['evidence']) - 6}</span>" if len(f["evidence"]) > 6 else ""
            out.append(f"<tr><td><a href=\"#req-{escape(f['requirement'])}\">{escape(f['requirement'])}</a></td>"
                       f"<td>{_v(f['verdict'])}</td><td>{escape(f['message'])}<div class=\"small\">{escape(f['check'])}"
                       f"</div></td><td>{ev}{more}</td></tr>")
        out.append("</table></details>")
    out.append("<p class=\"small\">Les preuves (échanges enregistrés, secrets masqués) sont dans le dossier "
               "<code>evidence/</code> à côté de ce rapport. Codes de sortie : 0 conforme, 1 non conforme, "
               "2 erreur d'usage ou de configuration, 3 DRIMbox injoignable ou erreur d'infrastructure.</p>")
    out.append("</body></html>")
    return "\n".join(out)
