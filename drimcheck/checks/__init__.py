"""Checks: pure functions over recorded evidence, each returning findings tied to requirement IDs.

A check never talks to the network and never imports the reference DRIMbox: it judges what the
simulators and the harness client recorded, so a verdict can be re-judged offline (`drimcheck rejudge`).

How: the ``@check`` decorator remembers, on the findings a call returns, the call itself (check name and
arguments, bound to the signature). When a campaign judges those findings (``judge(check(...))``),
:func:`record_judgement` stores the call in the scenario's evidence — its arguments through the typed codec of
``drimcheck.codec`` (redacted like all evidence), the judged facts it relied on (``codec.judged_fact``: e.g. a
VIHF signature's validity, whose secret the evidence does not keep), and the findings it returned — as
``evidence/<scenario>/NNN-judgement.json``. ``drimcheck.rejudge`` reads them back and calls the same checks.

A check that reads the clock takes a ``now`` parameter (default None = the current time): the decorator fills
it in when the caller did not, so that the instant judged is part of the recorded call.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from drimcheck import codec
from drimcheck.evidence import redact_value
from drimcheck.verdicts import Finding

#: every registered check: qualified name -> requirement IDs it may judge
REGISTRY: dict[str, tuple[str, ...]] = {}
#: every registered check: qualified name -> the decorated function (what re-judging calls)
FUNCTIONS: dict[str, Callable[..., list[Finding]]] = {}

RECORD_LABEL = "judgement"  # evidence/<scenario>/NNN-judgement.json
_CALL_ATTR = "_drimcheck_call"  # on a Finding: (CheckCall, index in the call's findings)


class CheckCall:
    """One call of a check: its name, bound arguments, the judged facts it relied on, what it returned."""

    def __init__(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]):
        self.name = name
        self.args: tuple[Any, ...] | None = args
        self.kwargs: dict[str, Any] | None = kwargs
        self.facts = codec.FactLog()
        self.findings: list[dict[str, Any]] = []
        self.encoded: dict[str, Any] | None = None  # once recorded: the arguments are released

    def encode(self) -> dict[str, Any]:
        if self.encoded is None:
            try:
                if self.facts.error:
                    raise codec.CodecError(self.facts.error)
                enc = codec.Encoder()
                args = [enc.encode(a) for a in self.args or ()]
                kwargs = {k: enc.encode(v) for k, v in (self.kwargs or {}).items()}
                self.encoded = {"check": self.name, "args": args, "kwargs": kwargs, "docs": enc.docs,
                                "facts": self.facts.entries, "findings": redact_value(self.findings)}
            except Exception as exc:  # noqa: BLE001 - stored as not re-judgeable, with what it found
                why = str(exc) if isinstance(exc, codec.CodecError) else f"{type(exc).__name__}: {exc}"
                self.encoded = {"check": self.name, "unrecordable": why[:300],
                                "findings": redact_value(self.findings)}
            self.args = self.kwargs = None
        return self.encoded


_ACTIVE: contextvars.ContextVar[CheckCall | None] = contextvars.ContextVar("drimcheck_check_call", default=None)


def _materialised(value: object) -> object:
    """A one-shot iterator (generator, map...) as a list: the check and the record see the same items."""
    return list(value) if isinstance(value, Iterator) else value


def check(*requirements: str) -> Callable[[Callable[..., list[Finding]]], Callable[..., list[Finding]]]:
    """Declare the requirements a check judges; its findings are stamped with its name and kept within them."""

    def decorate(func: Callable[..., list[Finding]]) -> Callable[..., list[Finding]]:
        name = f"{func.__module__.removeprefix('drimcheck.checks.')}.{func.__name__}"
        REGISTRY[name] = requirements
        signature = inspect.signature(func)
        reads_clock = "now" in signature.parameters

        def stamped(findings: list[Finding]) -> list[Finding]:
            for f in findings:
                if f.requirement not in requirements:
                    raise AssertionError(f"check {name} judged {f.requirement}, not declared in {requirements}")
                f.check = f.check or name
            return findings

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> list[Finding]:
            if _ACTIVE.get() is not None:  # called by another check: that outer call is the one recorded
                return stamped(func(*args, **kwargs))
            bound = signature.bind(*args, **kwargs)
            for key, value in bound.arguments.items():
                bound.arguments[key] = _materialised(value)
            if reads_clock and bound.arguments.get("now") is None:
                bound.arguments["now"] = datetime.now(UTC)
            call = CheckCall(name, bound.args, bound.kwargs)
            token = _ACTIVE.set(call)
            try:
                with codec.facts(call.facts):
                    findings = stamped(func(*bound.args, **bound.kwargs))
            finally:
                _ACTIVE.reset(token)
            call.findings = [f.to_dict() for f in findings]
            for i, f in enumerate(findings):
                setattr(f, _CALL_ATTR, (call, i))
            return findings

        wrapper.requirements = requirements  # type: ignore[attr-defined]
        FUNCTIONS[name] = wrapper
        return wrapper

    return decorate


def load_all() -> dict[str, Callable[..., list[Finding]]]:
    """Import every check module (drimcheck/checks/*.py) and return the registry of check functions."""
    import importlib
    import pkgutil

    for mod in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{mod.name}")
    return FUNCTIONS


def judgement_record(scenario: str, findings: list[Finding]) -> dict[str, Any]:
    """What one ``judge(...)`` of a scenario rests on: the check calls behind its findings, and the findings in
    order (each one a finding of a call, by index, or a finding made outside any check)."""
    calls: list[CheckCall] = []
    judged: list[dict[str, Any]] = []
    for f in findings:
        origin = getattr(f, _CALL_ATTR, None)
        if origin is None:
            judged.append({"finding": redact_value(f.to_dict())})
            continue
        call, index = origin
        if call not in calls:
            calls.append(call)
        judged.append({"call": calls.index(call), "index": index})
    return {"format": codec.FORMAT, "scenario": scenario, "calls": [c.encode() for c in calls], "judged": judged}


def record_judgement(store: object, scenario: str, findings: list[Finding]) -> str | None:
    """Store the record of one judgement under evidence/<scenario>/ (never raises: evidence must not break a
    campaign; a call that cannot be stored is recorded as such, with what it found)."""
    write = getattr(store, "write_record", None)
    if write is None or not findings:
        return None
    try:
        record = judgement_record(scenario, findings)
        return str(write(RECORD_LABEL, json.dumps(record, ensure_ascii=False, separators=(",", ":")), scope=scenario))
    except Exception:  # noqa: BLE001 - the campaign goes on; rejudge reports the scenario as not re-judgeable
        return None
    finally:
        for f in findings:  # the results keep the findings for the whole campaign: not the calls' inputs
            f.__dict__.pop(_CALL_ATTR, None)


def replay(call: dict[str, Any]) -> list[Finding]:
    """Call the recorded check again on the decoded arguments, with its judged facts replayed (CodecError when the
    record cannot be read back)."""
    function = FUNCTIONS.get(call.get("check", ""))
    if function is None:
        raise codec.CodecError(f"contrôle inconnu : {str(call.get('check'))[:80]}")
    if "unrecordable" in call:
        raise codec.CodecError(f"appel non enregistré ({call['unrecordable']})")
    decoder = codec.Decoder(call.get("docs"))
    args, kwargs = call.get("args"), call.get("kwargs")
    if not isinstance(args, list) or not isinstance(kwargs, dict) or not isinstance(call.get("facts"), list):
        raise codec.CodecError("appel mal formé")
    log = codec.FactLog(replay=call["facts"])
    token = _ACTIVE.set(CheckCall(call["check"], (), {}))  # nothing is recorded while re-judging
    try:
        with codec.facts(log):
            return function(*[decoder.decode(a) for a in args], **{str(k): decoder.decode(v) for k, v in kwargs.items()})
    finally:
        _ACTIVE.reset(token)


__all__ = ["REGISTRY", "FUNCTIONS", "check", "load_all", "judgement_record", "record_judgement", "replay", "CheckCall"]
