"""Effective timeouts of a campaign: `[timeouts]` of sut.toml judged against the catalogue's normative bounds.

A requirement whose title states a deadline carries it in the catalogue (`bound = { timeout, value_s }`).
A `[timeouts]` value may tighten that deadline. A larger value loosens a normative bound: the campaign
still runs with it (useful to debug a slow DRIMbox) but it is « hors référencement » — every report
says so and the run never exits 0 (drimcheck.results.RunResult.exit_code). `drimcheck run
--referencement` refuses it outright. Timeouts without a bound (publication, quiet windows, request
bound…) are harness waits and stay freely configurable.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from drimcheck.catalogue import Catalogue
from drimcheck.config import Timeouts

#: what each [timeouts] key bounds, in French (reports)
MEANING_FR = {
    "request_s": "borne de chaque requête vers la DRIMbox",
    "health_down_s": "le HealthCheck passe DOWN après l'arrêt d'un PACS",
    "health_up_s": "le HealthCheck redevient UP après le redémarrage du PACS",
    "health_budget_s": "durée d'une réponse du HealthCheck",
    "publication_s": "attente d'une publication (ou mise à jour) au DMP",
    "quiet_s": "fenêtre d'observation où rien ne doit se produire",
    "whitelist_s": "téléchargement de la liste blanche au démarrage ou sur déclenchement",
    "whitelist_settle_s": "délai laissé pour appliquer une liste téléchargée",
    "export_s": "export d'une étude vers le PACS local",
}

STATUS_FR = {
    "normative": "borne normative",
    "tightened": "resserrée (autorisé)",
    "loosened": "RELÂCHÉE : hors référencement",
    "configurable": "attente du banc (configurable)",
}


@dataclass(frozen=True)
class TimeoutRow:
    name: str
    value_s: float  # what the campaign waits (effective)
    default_s: float  # drimcheck's default when [timeouts] does not set it
    bound_s: float | None  # the normative bound (smallest over the requirements carrying one), None if none
    requirements: tuple[str, ...] = ()  # requirements whose bound is on this timeout

    @property
    def status(self) -> str:
        if self.bound_s is None:
            return "configurable"
        if self.value_s > self.bound_s:
            return "loosened"
        return "tightened" if self.value_s < self.bound_s else "normative"

    def reason_fr(self) -> str:
        return (f"[timeouts] {self.name} = {self.value_s:g} s relâche la borne normative de {self.bound_s:g} s "
                f"({', '.join(self.requirements)})")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value_s": self.value_s, "default_s": self.default_s,
                "normative_bound_s": self.bound_s, "requirements": list(self.requirements), "status": self.status}


@dataclass(frozen=True)
class EffectiveTimeouts:
    timeouts: Timeouts
    rows: tuple[TimeoutRow, ...]

    @property
    def loosened(self) -> list[TimeoutRow]:
        return [r for r in self.rows if r.status == "loosened"]

    @property
    def out_of_referencing(self) -> bool:
        return bool(self.loosened)

    def reasons_fr(self) -> list[str]:
        return [r.reason_fr() for r in self.loosened]

    def to_list(self) -> list[dict[str, Any]]:
        return [r.to_dict() for r in self.rows]


def normative_bounds(catalogue: Catalogue) -> dict[str, tuple[float, tuple[str, ...]]]:
    """Timeout name -> (the smallest bound on it, the requirements carrying a bound on it)."""
    out: dict[str, tuple[float, tuple[str, ...]]] = {}
    for req in catalogue.requirements:
        if req.bound is None:
            continue
        value, reqs = out.get(req.bound.timeout, (req.bound.value_s, ()))
        out[req.bound.timeout] = (min(value, req.bound.value_s), (*reqs, req.id))
    return out


def effective(timeouts: Timeouts, catalogue: Catalogue) -> EffectiveTimeouts:
    """The timeouts a campaign uses, each with its normative bound (tightening kept, loosening flagged)."""
    bounds = normative_bounds(catalogue)
    defaults = Timeouts()
    rows = []
    for f in fields(Timeouts):
        bound, reqs = bounds.get(f.name, (None, ()))
        rows.append(TimeoutRow(f.name, float(getattr(timeouts, f.name)), float(getattr(defaults, f.name)), bound, reqs))
    # The values are used as configured: a loosened bound is kept (debugging) and makes the campaign
    # « hors référencement »; rebuilding the dataclass keeps a single place to change that policy.
    return EffectiveTimeouts(replace(timeouts, **{r.name: r.value_s for r in rows}), tuple(rows))
