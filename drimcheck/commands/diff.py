"""`drimcheck diff RUN_A RUN_B [--json]`: what changed, requirement by requirement, between two campaigns.

For vendor CI: RUN_A is the reference run (e.g. the last release), RUN_B the new one. A requirement
*regressed* when it was satisfied in A (PASS, WARN or SKIP) and is FAIL or ERROR in B; it is *fixed* the
other way round; any other change of verdict (e.g. NOT_RUN -> FAIL, PASS -> WARN, a requirement only one
catalogue has) is listed as *changed*.

Exit codes: 0 no regression, 1 at least one regression, 2 unreadable or malformed input (one French line).
RUN_A / RUN_B: a run directory (holding results.json) or a results.json file; read with a size cap.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

MAX_RESULTS_BYTES = 64 * 1024 * 1024
MAX_REQUIREMENTS = 10_000
SATISFIED = ("PASS", "WARN", "SKIP")
BAD = ("FAIL", "ERROR")
VERDICTS = ("PASS", "FAIL", "WARN", "SKIP", "ERROR", "NOT_RUN", "NOT_TESTED")
VERDICT_FR = {"PASS": "conforme", "FAIL": "non conforme", "WARN": "avertissement", "SKIP": "non applicable",
              "ERROR": "erreur d'exécution", "NOT_RUN": "non exécutée", "NOT_TESTED": "non testée",
              None: "absente du catalogue"}


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "diff", help="comparer deux campagnes : exigences en régression, corrigées ou changées",
        description="Compare les verdicts par exigence de deux campagnes (results.json) : régressions "
                    "(satisfaite dans RUN_A, non conforme ou en erreur dans RUN_B), corrections, autres "
                    "changements. Code retour : 0 aucune régression, 1 au moins une régression, 2 entrée "
                    "illisible ou mal formée.")
    p.add_argument("run_a", type=Path, metavar="RUN_A", help="campagne de référence (dossier ou results.json)")
    p.add_argument("run_b", type=Path, metavar="RUN_B", help="nouvelle campagne (dossier ou results.json)")
    p.add_argument("--json", action="store_true", help="sortie JSON (avec un champ verdict)")
    p.set_defaults(handler=run)


class _Malformed(Exception):
    pass


def load_run(path: Path) -> dict[str, Any]:
    """The parts of a results.json that diff needs; UsageError (one French line) for anything unusable."""
    from drimcheck.cli import UsageError, read_input
    from drimcheck.config import printable

    file = path / "results.json" if path.is_dir() else path
    raw = read_input(file, MAX_RESULTS_BYTES, "résultats")
    shown = printable(str(file), 200)
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise UsageError(f"résultats {shown} : n'est pas encodé en UTF-8") from None
    except (ValueError, RecursionError):
        raise UsageError(f"résultats {shown} : JSON invalide") from None
    try:
        return _validated(data)
    except _Malformed as exc:
        raise UsageError(f"résultats {shown} : pas un results.json de drimcheck ({exc})") from None


def _validated(data: Any) -> dict[str, Any]:
    from drimcheck.config import printable

    if not isinstance(data, dict):
        raise _Malformed("document JSON qui n'est pas un objet")
    reqs = data.get("requirements")
    if not isinstance(reqs, list):
        raise _Malformed("champ « requirements » absent ou qui n'est pas une liste")
    if len(reqs) > MAX_REQUIREMENTS:
        raise _Malformed(f"plus de {MAX_REQUIREMENTS} exigences")
    out: dict[str, dict[str, str]] = {}
    for i, r in enumerate(reqs):
        if not isinstance(r, dict) or not isinstance(r.get("id"), str) or not r["id"]:
            raise _Malformed(f"exigence n° {i + 1} sans identifiant")
        if r.get("verdict") not in VERDICTS:
            raise _Malformed(f"exigence {printable(r['id'], 40)} : verdict inconnu")
        title = r.get("title") if isinstance(r.get("title"), str) else ""
        out[printable(r["id"], 40)] = {"verdict": r["verdict"], "title": printable(title, 300)}
    run = data.get("run") if isinstance(data.get("run"), dict) else {}
    harness = data.get("harness") if isinstance(data.get("harness"), dict) else {}
    text = lambda v: printable(v, 300) if isinstance(v, str) else None  # noqa: E731
    return {"requirements": out, "id": text(run.get("id")), "verdict": text(run.get("verdict")),
            "catalogue_version": text(harness.get("catalogue_version"))}


def compare(a: dict[str, Any], b: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Requirements that regressed, got fixed, or changed otherwise between runs a and b (catalogue order of b)."""
    ra, rb = a["requirements"], b["requirements"]
    out: dict[str, list[dict[str, Any]]] = {"regressed": [], "fixed": [], "changed": []}
    for rid in [*rb, *(r for r in ra if r not in rb)]:
        before, after = ra.get(rid, {}).get("verdict"), rb.get(rid, {}).get("verdict")
        if before == after:
            continue
        row = {"id": rid, "title": (rb.get(rid) or ra.get(rid))["title"], "before": before, "after": after}
        if before in SATISFIED and after in BAD:
            out["regressed"].append(row)
        elif before in BAD and after in SATISFIED:
            out["fixed"].append(row)
        else:
            out["changed"].append(row)
    return out


def run(args: argparse.Namespace) -> int:
    a, b = load_run(args.run_a), load_run(args.run_b)
    diff = compare(a, b)
    verdict = "RÉGRESSION" if diff["regressed"] else "SANS RÉGRESSION"
    if args.json:
        side = lambda r, p: {"path": str(p), "id": r["id"], "verdict": r["verdict"],  # noqa: E731
                             "catalogue_version": r["catalogue_version"]}
        print(json.dumps({"verdict": verdict, "run_a": side(a, args.run_a), "run_b": side(b, args.run_b), **diff},
                         ensure_ascii=False, indent=2))
    else:
        print(render_text(a, b, diff, verdict))
    return 1 if diff["regressed"] else 0


def render_text(a: dict[str, Any], b: dict[str, Any], diff: dict[str, list[dict[str, Any]]], verdict: str) -> str:
    out = [f"A : {a['id'] or '—'} — {a['verdict'] or '—'} (catalogue {a['catalogue_version'] or '—'})",
           f"B : {b['id'] or '—'} — {b['verdict'] or '—'} (catalogue {b['catalogue_version'] or '—'})"]
    if a["catalogue_version"] != b["catalogue_version"]:
        out.append("Attention : les deux campagnes n'ont pas la même version du catalogue d'exigences.")
    for key, label in (("regressed", "Régressions"), ("fixed", "Corrigées"), ("changed", "Autres changements")):
        rows = diff[key]
        out.append(f"{label} ({len(rows)})" + (" :" if rows else ""))
        grouped: dict[tuple, list[str]] = {}  # run in one campaign, not in the other: one line per kind
        for r in rows:
            if "NOT_RUN" in (r["before"], r["after"]) or None in (r["before"], r["after"]):
                grouped.setdefault((r["before"], r["after"]), []).append(r["id"])
            else:
                out.append(f"  {r['id']:<8} {VERDICT_FR[r['before']]} → {VERDICT_FR[r['after']]} — {r['title'][:120]}")
        for (before, after), ids in grouped.items():
            shown = ", ".join(ids[:12]) + (f" et {len(ids) - 12} autres" if len(ids) > 12 else "")
            out.append(f"  {VERDICT_FR[before]} → {VERDICT_FR[after]} ({len(ids)}) : {shown}")
    n = len(diff["regressed"])
    out.append(f"Verdict : {verdict}" + (f" ({n} exigence{'s' if n > 1 else ''})" if n else ""))
    return "\n".join(out)
