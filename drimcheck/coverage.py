"""Coverage of the catalogue: which requirements scenarios are tagged with and checks can judge."""

from __future__ import annotations

import importlib
import pkgutil
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypedDict

from drimcheck import catalogue as catalogue_mod
from drimcheck import checks

FEATURES = Path(__file__).resolve().parent.parent / "features"
TAG = re.compile(r"@req:([A-Za-z0-9._/-]+)")


class CoverageRow(TypedDict):
    """One requirement of the catalogue and what automates it (`drimcheck coverage --json`, the selftest)."""

    id: str
    title: str
    area: str
    strength: str
    actor: str
    source: str
    automated: bool  # tagged on a scenario and judged by a registered check
    features: list[str]
    checks: list[str]
    not_tested: str | None


def feature_tags() -> dict[str, list[str]]:
    """Requirement ID -> feature files whose scenarios are tagged with it."""
    out: dict[str, list[str]] = {}
    for path in sorted(FEATURES.rglob("*.feature")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip().startswith("@"):
                for req in TAG.findall(line):
                    files = out.setdefault(req, [])
                    rel = str(path.relative_to(FEATURES))
                    if rel not in files:
                        files.append(rel)
    return out


def check_requirements() -> dict[str, list[str]]:
    """Requirement ID -> registered checks that judge it (imports every module of drimcheck.checks)."""
    for mod in pkgutil.iter_modules(checks.__path__):
        importlib.import_module(f"drimcheck.checks.{mod.name}")
    out: dict[str, list[str]] = {}
    for name, reqs in checks.REGISTRY.items():
        for r in reqs:
            out.setdefault(r, []).append(name)
    return out


def coverage_rows() -> list[CoverageRow]:
    cat = catalogue_mod.load()
    tags, judged = feature_tags(), check_requirements()
    rows: list[CoverageRow] = []
    for r in cat.requirements:
        rows.append({
            "id": r.id, "title": r.title, "area": r.area, "strength": r.strength, "actor": r.actor, "source": r.source,
            "automated": r.id in tags and r.id in judged, "features": tags.get(r.id, []), "checks": judged.get(r.id, []),
            "not_tested": r.not_tested,
        })
    return rows


# --------------------------------------------------------------------------- defect taxonomy (issue 9)

TAXONOMY = Path(__file__).resolve().parent / "data" / "coverage.toml"
AXIS_KINDS = ("scenarios", "hors_perimetre", "a_couvrir")


def load_taxonomy(path: Path = TAXONOMY) -> dict[str, Any]:
    """The defect taxonomy: {"axes": {key: {nom, description}}, "exigence": {ID: {axis: cell}}} (the TOML as
    read: tests/test_coverage_taxonomy.py checks its shape)."""
    with path.open("rb") as f:
        return tomllib.load(f)


def scenario_index() -> dict[str, set[str]]:
    """"<file under features/>: <scenario name>" -> requirement IDs its tags name (outlines included)."""
    out: dict[str, set[str]] = {}
    for path in sorted(FEATURES.rglob("*.feature")):
        rel = str(path.relative_to(FEATURES))
        tags: set[str] = set()
        for line in path.read_text(encoding="utf-8").splitlines():
            text = line.strip()
            if text.startswith("@"):
                tags |= set(TAG.findall(text))
            elif text.startswith(("Scénario:", "Plan du scénario:")):
                name = text.split(":", 1)[1].strip()
                out[f"{rel}: {name}"] = tags
                tags = set()
            elif text and not text.startswith("#"):
                tags = set() if text.startswith(("Fonctionnalité:", "Contexte:")) else tags
    return out


def cell_kind(cell: Mapping[str, Any]) -> str:
    """The one kind of AXIS_KINDS a cell of the taxonomy gives, "" when it gives none or several."""
    kinds = [k for k in AXIS_KINDS if k in cell]
    return kinds[0] if len(kinds) == 1 else ""


def render_taxonomy(*, markdown: bool = False) -> str:
    """The taxonomy in French, as text (CLI) or Markdown tables (docs/coverage.md)."""
    tax = load_taxonomy()
    axes = tax["axes"]
    titles = {r.id: r.title for r in catalogue_mod.load().requirements}
    counts = {k: 0 for k in AXIS_KINDS}
    lines: list[str] = []
    if markdown:
        lines += ["| Axe | Ce qu'il couvre |", "|---|---|"]
        lines += [f"| {a['nom']} | {a['description']} |" for a in axes.values()]
        lines.append("")
    for rid, cells in tax["exigence"].items():
        if markdown:
            lines += [f"### {rid} — {titles.get(rid, '?')}", "", "| Axe | Couverture |", "|---|---|"]
        else:
            lines.append(f"{rid}  {titles.get(rid, '?')}")
        for key, axis in axes.items():
            cell = cells.get(key, {})
            kind = cell_kind(cell)
            counts[kind] = counts.get(kind, 0) + 1
            if kind == "scenarios":
                refs = " ; ".join(f"« {s.split(': ', 1)[1]} » ({s.split(': ', 1)[0]})" for s in cell["scenarios"])
                text = f"{cell.get('note', '')} — {refs}" if markdown else f"couvert : {cell.get('note', '')} [{refs}]"
            elif kind == "hors_perimetre":
                text = f"hors périmètre : {cell['hors_perimetre']}"
            elif kind == "a_couvrir":
                text = f"**à couvrir** : {cell['a_couvrir']}" if markdown else f"À COUVRIR : {cell['a_couvrir']}"
            else:
                text = "non renseigné"
            lines.append(f"| {axis['nom']} | {text.replace('|', '/')} |" if markdown else f"    {axis['nom']:<26} {text}")
        lines.append("")
    total = sum(counts.values())
    lines.append(f"{len(tax['exigence'])} exigences, {total} axes : {counts['scenarios']} couverts par un scénario, "
                 f"{counts['hors_perimetre']} hors périmètre, {counts['a_couvrir']} à couvrir.")
    return "\n".join(lines) + "\n"
