"""Checks extended by the coverage work on the Source / trust / health side (issue 9): each new judgement passes on
conformant evidence, fails on the defect it targets, and says "not judgeable" when the evidence cannot decide."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from pydicom.uid import generate_uid
from simsupport import multipart_dicom

from drimcheck.checks import health, trust, whitelist
from drimcheck.checks import source as source_checks
from drimcheck.net import Exchange, Poll
from drimcheck.verdicts import Verdict

URL = "https://db2.349.mesimagesmedicales.fr/api/source/studies/1.2/series/1.2.3"


def exchange(status=None, body=b"", content_type="", error=None, url=URL) -> Exchange:
    return Exchange(label="t", method="GET", url=url, connect_to="127.0.0.1:1", started_at="", request_headers=[],
                    status=status, response_body=body,
                    response_headers=[("content-type", content_type)] if content_type else [], error=error)


def served(*uids: str) -> Exchange:
    return exchange(200, *multipart_dicom(*uids))


def verdicts(findings) -> list[Verdict]:
    return [f.verdict for f in findings]


# ------------------------------------------------------------------------------------------- WADO-01, artefact used


def followed(listed: Exchange | None, *, expected=("1.2.3.4",), flaw=None) -> whitelist.FollowedUrl:
    return whitelist.FollowedUrl("PACS-2, série 1.2.3", URL, set(expected), listed=listed, flaw=flaw)


def test_followed_url_refused_410_or_404_while_the_pacs_holds_the_series_fails_wado01():
    for status in (410, 404, 400):
        f = source_checks.followed_urls_not_refused([followed(served("1.2.3.4")), followed(exchange(status, b"{}"))],
                                                    "KOS")
        assert verdicts(f) == [Verdict.FAIL] and f[0].requirement == "WADO-01" and f"HTTP {status}" in f[0].message


def test_followed_url_served_passes_and_other_refusals_are_not_wado01s_business():
    assert verdicts(source_checks.followed_urls_not_refused([followed(served("1.2.3.4"))], "KOS")) == [Verdict.PASS]
    # 401 (PSC-01), 403 (whitelist), 5xx, a URL not followed (FQDN-01), nothing held: nothing judged
    others = [followed(exchange(401)), followed(exchange(403)), followed(exchange(502)), followed(exchange(error="TLS")),
              followed(None, flaw="hôte interne"), followed(exchange(410), expected=())]
    assert verdicts(source_checks.followed_urls_not_refused(others, "KOS")) == [Verdict.SKIP]
    assert verdicts(source_checks.followed_urls_not_refused([], "KOS")) == [Verdict.SKIP]


# ------------------------------------------------------------------------------------------- MTLS-01, revoked after use

T0 = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
CRL = "/CRL/ACI-EL-ORG-TEST-DRIMCHECK.crl"


def revoked(first, again, downloads):
    return whitelist.revoked_after_use_refused(first, again, "pair", crl_path=CRL, revoked_at=T0,
                                               answered_at=T0 + timedelta(seconds=2), crl_downloads=downloads)


def test_certificate_served_after_the_dut_downloaded_the_crl_that_revokes_it_fails():
    after = [{"time": T0 + timedelta(seconds=1), "path": CRL, "status": 200}]
    f = revoked(served(generate_uid()), served(generate_uid()), after)
    assert verdicts(f) == [Verdict.FAIL] and f[0].requirement == "MTLS-01"


def test_certificate_refused_after_revocation_passes():
    after = [{"time": T0 + timedelta(seconds=1), "path": CRL, "status": 200}]
    assert verdicts(revoked(served(generate_uid()), exchange(403, b"{}"), after)) == [Verdict.PASS]
    assert verdicts(revoked(served(generate_uid()), exchange(error="handshake"), [])) == [Verdict.PASS]


def test_revocation_not_judgeable_without_a_fresh_crl_or_without_a_first_accepted_use():
    before = [{"time": T0 - timedelta(seconds=1), "path": CRL, "status": 200},  # a CRL that predates the revocation
              {"time": T0 + timedelta(seconds=1), "path": CRL, "status": 503},  # no CRL obtained
              {"time": T0 + timedelta(seconds=1), "path": "/CRL/other.crl", "status": 200},  # another CA's
              {"time": T0 + timedelta(seconds=9), "path": CRL, "status": 200}]  # after the answer
    assert verdicts(revoked(served(generate_uid()), served(generate_uid()), before)) == [Verdict.SKIP]
    assert verdicts(revoked(exchange(403, b"{}"), served(generate_uid()), before)) == [Verdict.SKIP]


# ------------------------------------------------------------------------------------------- HLT-02, sequences

P1 = health.PacsIdentity(name="PACS-1", db="db1.349.mesimagesmedicales.fr", aet="PACS1")
P2 = health.PacsIdentity(name="PACS-2", db="db2.349.mesimagesmedicales.fr", aet="PACS2")


def health_answer(*down: health.PacsIdentity) -> Exchange:
    checks = [{"name": p.name, "status": "DOWN" if p in down else "UP"} for p in (P1, P2)]
    body = {"status": "DOWN" if down else "UP", "checks": checks}
    return Exchange(label="h", method="GET", url="https://db1/q/health", connect_to="127.0.0.1:1", started_at="",
                    request_headers=[], status=503 if down else 200, response_headers=[("content-type", "application/json")],
                    response_body=json.dumps(body).encode())


def polls(*answers: tuple[float, Exchange]) -> list[Poll]:
    return [Poll(t, t + 0.05, ex) for t, ex in answers]


def test_two_pacs_down_at_once_must_both_be_named():
    both = polls((10.1, health_answer(P1)), (10.6, health_answer(P1, P2)))
    assert verdicts(health.reports_each_pacs_down(both, 10.0, [P1, P2], 10)) == [Verdict.PASS]
    first_only = polls((10.1, health_answer(P1)), (10.6, health_answer(P1)))
    f = health.reports_each_pacs_down(first_only, 10.0, [P1, P2], 10)
    assert verdicts(f) == [Verdict.FAIL] and "PACS-2" in f[0].message
    late = polls((10.1, health_answer(P1)), (25.0, health_answer(P1, P2)))
    assert verdicts(health.reports_each_pacs_down(late, 10.0, [P1, P2], 10)) == [Verdict.FAIL]


def test_second_outage_judged_only_after_an_up_answer():
    seq = polls((5.0, health_answer()), (10.1, health_answer(P1)))
    assert verdicts(health.reports_pacs_down_again(seq, 4.0, 10.0, P1, 10)) == [Verdict.PASS]
    missed = polls((5.0, health_answer()), (10.1, health_answer()), (12.0, health_answer()))
    assert verdicts(health.reports_pacs_down_again(missed, 4.0, 10.0, P1, 10)) == [Verdict.FAIL]
    stale = polls((5.0, health_answer(P1)), (10.1, health_answer(P1)))  # never UP in between: a stale DOWN
    assert verdicts(health.reports_pacs_down_again(stale, 4.0, 10.0, P1, 10)) == [Verdict.SKIP]


# ------------------------------------------------------------------------------------------- CLR-02 look-alike paths


def test_acme_directory_listed_under_a_lookalike_path_fails():
    listing = exchange(200, b'<html><a href="tok3n-ABC">tok3n-ABC</a></html>', "text/html",
                       url="http://vi1/.WELL-KNOWN/ACME-CHALLENGE/")
    redirect = exchange(301, b"", url="http://vi1/.well-known/acme-challenge/")
    f = trust.no_stale_acme_challenge(redirect, [], "vi1", [exchange(404), listing])
    assert verdicts(f) == [Verdict.FAIL] and ".WELL-KNOWN" in f[0].message
    assert verdicts(trust.no_stale_acme_challenge(redirect, [], "vi1", [exchange(404), exchange(301)])) == [Verdict.PASS]
