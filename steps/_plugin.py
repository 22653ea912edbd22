"""Wires the drimcheck step library, fixtures and simulators into pytest (campaign runs and tests).

A pytest plugin module inside the `steps` package rather than a root conftest.py, so that an installed
wheel (no repository around it) loads it too: `drimcheck run` passes `-p steps._plugin`, and the
repository's conftest.py names it in `pytest_plugins` for the project's own tests.
"""

from __future__ import annotations

import pkgutil
from collections.abc import Callable

import pytest

import steps
from drimcheck.errors import HarnessError
from drimcheck.plugin import RUNTIME_KEY
from drimcheck.services import StepServices
from drimcheck.verdicts import Finding

# Every module of the step library (steps/*.py except the scenario binding test module and this one).
pytest_plugins = [f"steps.{m.name}" for m in pkgutil.iter_modules(steps.__path__)
                  if not m.name.startswith(("test_", "_"))]


def pytest_bdd_apply_tag(tag: str, function: Callable[..., object]) -> Callable[..., object]:
    """@req:ID tags become pytest.mark.req("ID"); other tags become pytest.mark.tag("...").

    The default hook does getattr(pytest.mark, tag), which cannot carry IDs such as HLT-01.
    """
    if tag.startswith("req:"):
        return pytest.mark.req(tag[4:])(function)
    return pytest.mark.tag(tag)(function)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "req(id): requirement verified by a scenario (@req:ID tag)")
    config.addinivalue_line("markers", "tag(name): other Gherkin tag")


@pytest.fixture(scope="session")
def campaign(request: pytest.FixtureRequest) -> StepServices:
    """The running campaign (simulators, PKI, DUT): the services of drimcheck.services.StepServices, nothing else
    (tests/test_static.py checks the step modules); only available under `drimcheck run`."""
    plugin = request.config.stash.get(RUNTIME_KEY, None)
    if plugin is None or plugin.runtime is None:
        raise HarnessError("scenarios run through `drimcheck run`, not bare pytest")
    return plugin.runtime.ensure_started()


@pytest.fixture
def judge(request: pytest.FixtureRequest) -> Callable[[Finding | list[Finding]], list[Finding]]:
    """Hand findings of a check to the run: judge(checks.x.y(evidence...))."""
    plugin = request.config.stash.get(RUNTIME_KEY, None)
    if plugin is None:
        raise HarnessError("scenarios run through `drimcheck run`, not bare pytest")
    return plugin.judge
