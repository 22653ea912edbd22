"""The requirement catalogue: one versioned data file, loaded and validated here."""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Iterable

from drimcheck.verdicts import Finding, Verdict

STRENGTHS = ("required", "inferred")
ACTORS = ("source", "conso", "both")


class CatalogueError(ValueError):
    """The catalogue file is malformed (a harness defect, not a DUT problem)."""


@dataclass(frozen=True)
class Bound:
    """A deadline stated by the requirement itself: `[timeouts] <timeout>` must not exceed value_s."""

    timeout: str  # a field of drimcheck.config.Timeouts
    value_s: float


@dataclass(frozen=True)
class Requirement:
    id: str
    title: str
    source: str
    strength: str
    actor: str
    area: str
    not_tested: str | None = None
    bound: Bound | None = None

    @property
    def inferred(self) -> bool:
        return self.strength == "inferred"


@dataclass(frozen=True)
class Catalogue:
    version: str
    sha256: str
    requirements: tuple[Requirement, ...]

    def __contains__(self, req_id: str) -> bool:
        return any(r.id == req_id for r in self.requirements)

    def get(self, req_id: str) -> Requirement:
        for r in self.requirements:
            if r.id == req_id:
                return r
        raise KeyError(req_id)

    def ids(self) -> list[str]:
        return [r.id for r in self.requirements]

    def apply_strength(self, finding: Finding, *, strict: bool) -> Finding:
        """Inferred requirements yield WARN instead of FAIL unless strict: keep the raw verdict."""
        finding.raw_verdict = finding.raw_verdict or finding.verdict
        if finding.raw_verdict is Verdict.FAIL and not strict and self.get(finding.requirement).inferred:
            finding.verdict = Verdict.WARN
            finding.message = f"{finding.message} (exigence inférée : avertissement ; FAIL avec --strict)"
        return finding


def parse(text: str) -> Catalogue:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogueError(f"requirements catalogue is not valid TOML: {exc}") from None
    version = data.get("catalogue_version")
    if not isinstance(version, str) or not version:
        raise CatalogueError("requirements catalogue has no catalogue_version")
    reqs: list[Requirement] = []
    seen: set[str] = set()
    for i, entry in enumerate(data.get("requirement", [])):
        missing = [k for k in ("id", "title", "source", "strength", "actor", "area") if not entry.get(k)]
        if missing:
            raise CatalogueError(f"requirement #{i + 1} lacks {', '.join(missing)}")
        unknown = set(entry) - {"id", "title", "source", "strength", "actor", "area", "not_tested", "bound"}
        if unknown:
            raise CatalogueError(f"requirement {entry['id']}: unknown field(s) {', '.join(sorted(unknown))}")
        if entry["id"] in seen:
            raise CatalogueError(f"requirement {entry['id']} is declared twice")
        if entry["strength"] not in STRENGTHS:
            raise CatalogueError(f"requirement {entry['id']}: strength must be one of {STRENGTHS}")
        if entry["actor"] not in ACTORS:
            raise CatalogueError(f"requirement {entry['id']}: actor must be one of {ACTORS}")
        seen.add(entry["id"])
        reqs.append(Requirement(**{**entry, "bound": _bound(entry)}))
    if not reqs:
        raise CatalogueError("requirements catalogue is empty")
    return Catalogue(version, hashlib.sha256(text.encode()).hexdigest(), tuple(reqs))


def _bound(entry: dict) -> Bound | None:
    from dataclasses import fields

    from drimcheck.config import Timeouts

    raw = entry.get("bound")
    if raw is None:
        return None
    names = {f.name for f in fields(Timeouts)}
    if (not isinstance(raw, dict) or set(raw) != {"timeout", "value_s"} or raw["timeout"] not in names
            or not isinstance(raw["value_s"], (int, float)) or isinstance(raw["value_s"], bool) or not raw["value_s"] > 0):
        raise CatalogueError(f"requirement {entry['id']}: bound must be {{ timeout = <one of {', '.join(sorted(names))}>, "
                             f"value_s = <positive number> }}")
    return Bound(raw["timeout"], float(raw["value_s"]))


@lru_cache(maxsize=1)
def load() -> Catalogue:
    """The catalogue shipped with this drimcheck version."""
    text = resources.files("drimcheck").joinpath("data/requirements.toml").read_text(encoding="utf-8")
    return parse(text)


def unknown_ids(ids: Iterable[str], catalogue: Catalogue | None = None) -> list[str]:
    cat = catalogue or load()
    return sorted({i for i in ids if i not in cat})
