"""Verdicts and findings: the vocabulary every check, report and exit code shares."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


class Verdict(str, enum.Enum):
    """Outcome of one check on one requirement (DESIGN.md "Verdicts and exits")."""

    PASS = "PASS"
    WARN = "WARN"  # inferred requirement or SHOULD not met, or a finding worth a look
    SKIP = "SKIP"  # not applicable, with a reason
    FAIL = "FAIL"  # the DUT breaks a requirement
    ERROR = "ERROR"  # the harness could not judge: DUT unreachable, infrastructure failure

    @property
    def label_fr(self) -> str:
        return _LABELS_FR[self]


_LABELS_FR = {
    Verdict.PASS: "Conforme",
    Verdict.WARN: "Avertissement",
    Verdict.SKIP: "Non applicable",
    Verdict.FAIL: "Non conforme",
    Verdict.ERROR: "Erreur d'exécution",
}

# Severity order used to roll verdicts up: the worst one wins.
_SEVERITY = {Verdict.SKIP: 0, Verdict.PASS: 1, Verdict.WARN: 2, Verdict.FAIL: 3, Verdict.ERROR: 4}


def worst(verdicts: list[Verdict] | tuple[Verdict, ...]) -> Verdict | None:
    """The most severe verdict of a list, or None for an empty list."""
    return max(verdicts, key=_SEVERITY.__getitem__) if verdicts else None


@dataclass
class Finding:
    """One judgement of a check on one requirement, with the evidence it rests on."""

    requirement: str
    verdict: Verdict
    message: str
    check: str = ""
    evidence: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    # Verdict before the strength policy (inferred requirement: FAIL -> WARN unless --strict).
    raw_verdict: Verdict | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "requirement": self.requirement,
            "verdict": self.verdict.value,
            "raw_verdict": (self.raw_verdict or self.verdict).value,
            "message": self.message,
            "check": self.check,
            "evidence": list(self.evidence),
            "details": self.details,
        }


def evidence_of(*items: Any) -> list[str]:
    """The evidence references of recorded exchanges, for a finding's ``evidence``.

    Each item is None (skipped), a list, tuple or other iterable of items (flattened), or an object whose
    ``evidence`` is one reference (``str``; empty or None: none) or a list of them.
    """
    out: list[str] = []
    for item in items:
        if item is None:
            continue
        refs = getattr(item, "evidence", None)
        if refs is None and isinstance(item, Iterable) and not isinstance(item, (str, bytes)):
            out += evidence_of(*item)
        elif isinstance(refs, str):
            if refs:
                out.append(refs)
        elif refs:
            out += [str(r) for r in refs]
    return out


def passed(requirement: str, message: str, **kw: Any) -> Finding:
    return Finding(requirement, Verdict.PASS, message, **kw)


def failed(requirement: str, message: str, **kw: Any) -> Finding:
    return Finding(requirement, Verdict.FAIL, message, **kw)


def warned(requirement: str, message: str, **kw: Any) -> Finding:
    return Finding(requirement, Verdict.WARN, message, **kw)


def errored(requirement: str, message: str, **kw: Any) -> Finding:
    return Finding(requirement, Verdict.ERROR, message, **kw)


def skipped(requirement: str, message: str, **kw: Any) -> Finding:
    return Finding(requirement, Verdict.SKIP, message, **kw)


class ExitCode(enum.IntEnum):
    """Process exit codes of `drimcheck run` and the offline checkers (README, DESIGN.md)."""

    CONFORMANT = 0
    NON_CONFORMANT = 1
    USAGE = 2
    INFRASTRUCTURE = 3


def exit_code_for(verdicts: list[Verdict]) -> ExitCode:
    """A definite FAIL wins over ERROR: a non-conformance was observed even if some checks could not run."""
    if Verdict.FAIL in verdicts:
        return ExitCode.NON_CONFORMANT
    if Verdict.ERROR in verdicts:
        return ExitCode.INFRASTRUCTURE
    return ExitCode.CONFORMANT
