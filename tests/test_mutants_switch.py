"""One way to reach a mutant (issue 13): `mutants.active("id")`, the only switch of the reference DRIMbox."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from simulators.drimbox import mutants

DRIMBOX = Path(mutants.__file__).parent
SOURCES = sorted(p for p in DRIMBOX.glob("*.py") if p.name != "mutants.py")


def test_the_reference_reaches_mutants_only_through_mutants_active():
    other_ways = re.compile(r"is_mutant|\bmutant\(|\bskip_nonce\b|\bmutant\s*:\s*(Any|Callable)")
    offenders = [f"{p.name}:{n}: {line.strip()}" for p in SOURCES
                 for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if other_ways.search(line)]
    assert offenders == []


def test_every_switch_is_declared_and_every_behaviour_mutant_has_a_switch():
    code = "\n".join(p.read_text(encoding="utf-8") for p in SOURCES)
    switched = set(re.findall(r"mutants\.active\(\"([^\"]+)\"\)", code))
    catalogue = mutants.load()
    assert switched and switched <= set(catalogue), sorted(switched - set(catalogue))
    literals = set(re.findall(r"\"([a-z0-9-]+)\"", code))
    silent = sorted(m.id for m in catalogue.values() if not m.deploy and m.id not in literals)
    assert silent == []  # a behaviour mutant no code switches on would be the golden DRIMbox under another name


def test_active_follows_the_activated_mutant_and_refuses_unknown_ids():
    assert not mutants.active("health-always-up")
    with mutants.running("health-always-up"):
        assert mutants.active("health-always-up") and not mutants.active("health-always-down")
    assert not mutants.active("health-always-up")
    with pytest.raises(KeyError):
        mutants.active("health-allways-up")  # a misspelt switch fails instead of leaving the DRIMbox golden
    with pytest.raises(KeyError):
        mutants.activate("no-such-mutant")
