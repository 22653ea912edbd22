"""Coverage of the catalogue: which requirements scenarios are tagged with and checks can judge."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

from drimcheck import catalogue as catalogue_mod
from drimcheck import checks

FEATURES = Path(__file__).resolve().parent.parent / "features"
TAG = re.compile(r"@req:([A-Za-z0-9._/-]+)")


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


def coverage_rows() -> list[dict]:
    cat = catalogue_mod.load()
    tags, judged = feature_tags(), check_requirements()
    rows = []
    for r in cat.requirements:
        rows.append({
            "id": r.id, "title": r.title, "area": r.area, "strength": r.strength, "actor": r.actor, "source": r.source,
            "automated": r.id in tags and r.id in judged, "features": tags.get(r.id, []), "checks": judged.get(r.id, []),
            "not_tested": r.not_tested,
        })
    return rows
