"""The HealthCheck checks judge recorded exchanges: each one passes on a good answer and fails on its defect."""

from __future__ import annotations

import json

import pytest

from drimcheck.checks import health
from drimcheck.net import Exchange, Poll, TransportOutcome
from drimcheck.verdicts import Verdict

PACS = health.PacsIdentity(name="PACS", db="db1.349.mesimagesmedicales.fr", aet="DRIMCHECK_PACS")


def answer(status: int, body, *, ctype: str = "application/json", elapsed: float = 0.01, label: str = "h") -> Exchange:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Exchange(label=label, method="GET", url="https://db1.349.mesimagesmedicales.fr/q/health",
                    connect_to="127.0.0.1:1", started_at="", request_headers=[], status=status,
                    response_headers=[("content-type", ctype)], response_body=raw, elapsed_s=elapsed)


def unreachable(error: str = "connection refused", outcome: TransportOutcome = TransportOutcome.REFUSED) -> Exchange:
    return Exchange(label="h", method="GET", url="https://x/q/health", connect_to="127.0.0.1:1", started_at="",
                    request_headers=[], error=error, outcome=outcome)


UP = {"status": "UP", "checks": [{"name": "DRIMbox", "status": "UP"}, {"name": "PACS", "status": "UP"}]}
DOWN = {"status": "DOWN", "checks": [{"name": "DRIMbox", "status": "UP"},
                                     {"name": "PACS", "status": "DOWN", "data": {"fqdn": PACS.db}}]}


def only(findings):
    assert len(findings) == 1
    return findings[0]


def test_reports_up_passes_on_200_up_and_fails_on_any_other_answer():
    assert only(health.reports_up([answer(200, UP)] * 3)).verdict is Verdict.PASS
    f = only(health.reports_up([answer(200, UP), answer(503, DOWN), answer(200, UP)]))
    assert f.verdict is Verdict.FAIL and "disponibilité 67 %" in f.message
    assert f.details["availability_percent"] == pytest.approx(66.7)


def test_reports_up_is_error_when_nothing_answered_and_fail_when_some_polls_did():
    assert only(health.reports_up([unreachable()] * 2)).verdict is Verdict.ERROR
    assert only(health.reports_up([answer(200, UP), unreachable()])).verdict is Verdict.FAIL


@pytest.mark.parametrize("exchange, problem", [
    (answer(200, UP, ctype="text/plain"), "Content-Type"),
    (answer(200, b"OK"), "objet JSON"),
    (answer(200, {"status": "FINE", "checks": []}), "status"),
    (answer(200, {"status": "UP"}), "checks"),
    (answer(200, {"status": "UP", "checks": [{"status": "UP"}]}), "checks[0]"),
    (answer(200, DOWN), "code HTTP 200 avec status DOWN"),
    (answer(503, UP), "code HTTP 503 avec status UP"),
    (answer(200, {"status": "UP", "checks": [{"name": "PACS", "status": "DOWN"}]}), "status UP alors"),
])
def test_follows_format_names_each_deviation(exchange, problem):
    f = only(health.follows_format([answer(200, UP), exchange]))
    assert f.verdict is Verdict.FAIL and problem in f.message


def test_follows_format_accepts_up_and_down_microprofile_answers():
    assert only(health.follows_format([answer(200, UP), answer(503, DOWN)])).verdict is Verdict.PASS


def test_answers_within_budget():
    assert only(health.answers_within([answer(200, UP, elapsed=0.3)], 2.0)).verdict is Verdict.PASS
    f = only(health.answers_within([answer(200, UP, elapsed=0.3), answer(200, UP, elapsed=2.4)], 2.0))
    assert f.verdict is Verdict.FAIL and f.details["slowest_s"] == 2.4
    timed_out = unreachable("no answer within 5 s (the connection was accepted)", TransportOutcome.TIMEOUT)
    assert only(health.answers_within([answer(200, UP), timed_out], 2.0)).verdict is Verdict.FAIL


def polls(*items):
    """(sent_at, exchange) pairs, answered 10 ms after sending."""
    return [Poll(sent_at=t, received_at=t + 0.01, exchange=ex) for t, ex in items]


def test_pacs_down_detected_within_deadline_and_named():
    timeline = polls((99.0, answer(200, UP)), (100.5, answer(200, UP)), (101.0, answer(503, DOWN)))
    f = only(health.reports_pacs_down(timeline, 100.0, PACS, 10.0))
    assert f.verdict is Verdict.PASS and f.details["detected_after_s"] == pytest.approx(1.01)


def test_pacs_down_too_late_never_or_unnamed_fails():
    late = polls((100.5, answer(200, UP)), (111.0, answer(503, DOWN)))
    assert only(health.reports_pacs_down(late, 100.0, PACS, 10.0)).verdict is Verdict.FAIL
    never = polls((100.5, answer(200, UP)), (101.0, answer(200, UP)))
    f = only(health.reports_pacs_down(never, 100.0, PACS, 10.0))
    assert f.verdict is Verdict.FAIL and "aucune réponse DOWN" in f.message
    unnamed = {"status": "DOWN", "checks": [{"name": "backend", "status": "DOWN"}]}
    f = only(health.reports_pacs_down(polls((101.0, answer(503, unnamed))), 100.0, PACS, 10.0))
    assert f.verdict is Verdict.FAIL and "sans nommer le PACS" in f.message


def test_pacs_named_by_fqdn_or_aet_as_well_as_name():
    other = health.PacsIdentity(name="Imagerie Nord", db=PACS.db, aet="NORD")
    by_fqdn = {"status": "DOWN", "checks": [{"name": "archive", "status": "DOWN", "data": {"host": PACS.db}}]}
    assert only(health.reports_pacs_down(polls((101.0, answer(503, by_fqdn))), 100.0, other, 10.0)).verdict is Verdict.PASS
    by_aet = {"status": "DOWN", "checks": [{"name": "dicom NORD", "status": "DOWN"}]}
    assert only(health.reports_pacs_down(polls((101.0, answer(503, by_aet))), 100.0, other, 10.0)).verdict is Verdict.PASS


def test_recovery_within_deadline():
    timeline = polls((200.2, answer(503, DOWN)), (200.7, answer(200, UP)))
    assert only(health.recovers(timeline, 200.0, 10.0)).verdict is Verdict.PASS
    stuck = polls((200.2, answer(503, DOWN)), (205.0, answer(503, DOWN)), (211.0, answer(200, UP)))
    assert only(health.recovers(stuck, 200.0, 10.0)).verdict is Verdict.FAIL
    assert only(health.recovers([], 200.0, 10.0)).verdict is Verdict.ERROR


IDENTIFIERS = {"INS": "279035121518989", "IPP": "IPP101", "nom": "PAT-TROIS^DOMINIQUE", "naissance": "19790321"}


@pytest.mark.parametrize("leak", ["279035121518989", "ipp101", "DOMINIQUE", "1979-03-21", "PAT-TROIS"])
def test_patient_data_leak_is_caught_in_any_form(leak):
    body = {**UP, "checks": [{"name": "DRIMbox", "status": "UP", "data": {"last": leak}}]}
    f = only(health.no_patient_data([answer(200, UP), answer(200, body)], IDENTIFIERS))
    assert f.verdict is Verdict.FAIL


def test_patient_data_leak_in_headers_is_caught_and_clean_answers_pass():
    leaky = answer(200, UP)
    leaky.response_headers.append(("x-last-patient", "279035121518989"))
    assert only(health.no_patient_data([leaky], IDENTIFIERS)).verdict is Verdict.FAIL
    assert only(health.no_patient_data([answer(200, UP)], IDENTIFIERS)).verdict is Verdict.PASS


def test_checks_refuse_to_judge_requirements_they_do_not_declare():
    from drimcheck.checks import check
    from drimcheck.verdicts import passed

    @check("HLT-01")
    def sloppy():
        return [passed("HLT-02", "wrong requirement")]

    with pytest.raises(AssertionError, match="not declared"):
        sloppy()
