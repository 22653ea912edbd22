"""Checks: pure functions over recorded evidence, each returning findings tied to requirement IDs.

A check never talks to the network and never imports the reference DRIMbox: it judges what the
simulators and the harness client recorded, so a verdict can be re-judged offline.
"""

from __future__ import annotations

import functools
from typing import Callable

from drimcheck.verdicts import Finding

#: every registered check: qualified name -> requirement IDs it may judge
REGISTRY: dict[str, tuple[str, ...]] = {}


def check(*requirements: str) -> Callable[[Callable[..., list[Finding]]], Callable[..., list[Finding]]]:
    """Declare the requirements a check judges; its findings are stamped with its name and kept within them."""

    def decorate(func: Callable[..., list[Finding]]) -> Callable[..., list[Finding]]:
        name = f"{func.__module__.removeprefix('drimcheck.checks.')}.{func.__name__}"
        REGISTRY[name] = requirements

        @functools.wraps(func)
        def wrapper(*args, **kwargs) -> list[Finding]:
            findings = func(*args, **kwargs)
            for f in findings:
                if f.requirement not in requirements:
                    raise AssertionError(f"check {name} judged {f.requirement}, not declared in {requirements}")
                f.check = f.check or name
            return findings

        wrapper.requirements = requirements  # type: ignore[attr-defined]
        return wrapper

    return decorate
