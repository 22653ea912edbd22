"""Binds every feature file to the step library (collected by `drimcheck run`)."""

from pathlib import Path

from pytest_bdd import scenarios

FEATURES = Path(__file__).resolve().parent.parent / "features"

scenarios(str(FEATURES))
