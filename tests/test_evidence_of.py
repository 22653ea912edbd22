"""verdicts.evidence_of: the one helper the checks use to cite the evidence of what they judged."""

from __future__ import annotations

from dataclasses import dataclass, field

from drimcheck.net import Exchange
from drimcheck.verdicts import evidence_of


@dataclass
class _Recorded:  # shape of xds.DmpExchange, ris/iocm records: a list of evidence files
    evidence: list[str] = field(default_factory=list)


def _exchange(path: str | None) -> Exchange:
    return Exchange(label="x", method="GET", url="https://db1.test.mesimagesmedicales.fr/", connect_to="127.0.0.1:443",
                    started_at="2026-12-03T07:00:00Z", request_headers=[], evidence=path)


def test_one_reference_per_exchange_none_and_empty_skipped() -> None:
    assert evidence_of(_exchange("evidence/a/001.json"), None, _exchange(None), _exchange("")) == [
        "evidence/a/001.json"]


def test_lists_of_references_and_nested_lists_are_flattened_in_order() -> None:
    items = [_Recorded(["e/1.json", "e/2.json"]), None, [_exchange("e/3.json")]]
    assert evidence_of(items, _Recorded(["e/4.json"]), ()) == ["e/1.json", "e/2.json", "e/3.json", "e/4.json"]


def test_a_generator_of_exchanges_is_read_once() -> None:
    assert evidence_of(e for e in [_exchange("e/5.json"), _exchange("e/6.json")]) == ["e/5.json", "e/6.json"]
