"""The mutant catalogue of the reference DRIMbox (data in mutants.toml)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

HERE = Path(__file__).parent


def catalogue_files() -> list[Path]:
    """mutants.toml plus one mutants-<area>.toml per function area."""
    return sorted(HERE.glob("mutants*.toml"))


@dataclass(frozen=True)
class Mutant:
    id: str
    title: str
    violates: tuple[str, ...]
    deploy: dict = field(default_factory=dict)
    # A realistic defect the campaign does not catch yet (written independently of the checks, issue 9):
    # the selftest runs it and reports it as a known gap, with this reason, instead of failing on it.
    known_gap: str | None = None


@lru_cache(maxsize=1)
def load() -> dict[str, Mutant]:
    out: dict[str, Mutant] = {}
    for path in catalogue_files():
        for m in tomllib.loads(path.read_text(encoding="utf-8")).get("mutant", []):
            if m["id"] in out:
                raise ValueError(f"mutant {m['id']} declared twice ({path.name})")
            out[m["id"]] = Mutant(m["id"], m["title"], tuple(m["violates"]), dict(m.get("deploy", {})),
                                  m.get("known_gap"))
    return out


def get(mutant_id: str | None) -> Mutant | None:
    if mutant_id is None:
        return None
    try:
        return load()[mutant_id]
    except KeyError:
        raise KeyError(f"unknown mutant {mutant_id!r} (known: {', '.join(sorted(load()))})") from None
