"""Unit tests of the trust-space checks (pure functions over recorded evidence): each can pass and fail."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydicom.uid import generate_uid
from simsupport import dicom_bytes, multipart_dicom

from drimcheck.checks import trust, whitelist
from drimcheck.net import Exchange, TlsInfo, TlsVersionProbe
from drimcheck.verdicts import Verdict
from fixtures.pki import TestPKI


def exchange(status=None, body=b"", content_type="", error=None) -> Exchange:
    return Exchange(label="t", method="GET", url="https://db1.349.mesimagesmedicales.fr/x", connect_to="127.0.0.1:1",
                    started_at="", request_headers=[], status=status, response_body=body,
                    response_headers=[("content-type", content_type)] if content_type else [], error=error)


def multipart(*uids: str) -> Exchange:
    return exchange(200, *multipart_dicom(*uids))


def verdicts(findings) -> list[Verdict]:
    return [f.verdict for f in findings]


# ------------------------------------------------------------------------------------------- served / refused

def test_served_instances_reads_every_part_of_a_multipart_answer():
    uids = [generate_uid() for _ in range(3)]
    assert whitelist.served_instances(multipart(*uids)) == uids
    assert whitelist.served_instances(exchange(403, b'{"erreur": "non"}', "application/json")) == []
    assert whitelist.served_instances(exchange(error="connection reset")) == []
    single = exchange(200, dicom_bytes(uids[0]), "application/dicom")
    assert whitelist.served_instances(single) == [uids[0]]


def test_listed_peer_must_receive_the_whole_series():
    uids = [generate_uid() for _ in range(3)]
    assert verdicts(whitelist.listed_peer_served(multipart(*uids), "pair", uids)) == [Verdict.PASS]
    assert verdicts(whitelist.listed_peer_served(multipart(*uids[:2]), "pair", uids)) == [Verdict.FAIL]
    assert verdicts(whitelist.listed_peer_served(exchange(error="TLS error"), "pair", uids)) == [Verdict.FAIL]


def test_refusal_checks_fail_when_dicom_is_served():
    served, refused = multipart(generate_uid()), exchange(403, b"no", "text/plain")
    assert verdicts(whitelist.unlisted_peer_refused(served, "pair")) == [Verdict.FAIL]
    assert verdicts(whitelist.unlisted_peer_refused(refused, "pair")) == [Verdict.PASS]
    assert verdicts(whitelist.client_certificate_refused(served, "expiré")) == [Verdict.FAIL]
    assert verdicts(whitelist.client_certificate_refused(exchange(error="handshake"), "expiré")) == [Verdict.PASS]
    assert whitelist.list_not_applied("WL-03", served, "pair", "v")[0].requirement == "WL-03"
    assert verdicts(whitelist.list_not_applied("WL-02", served, "pair", "v")) == [Verdict.FAIL]


def test_list_checks_are_inconclusive_when_the_control_contradicts_the_nominal_list():
    served, refused = multipart(generate_uid()), exchange(403, b"no", "text/plain")
    # the unlisted peer was already served under the nominal list: whether the bad list was applied is unknowable
    assert verdicts(whitelist.list_not_applied("WL-02", served, "pair", "v", before=served)) == [Verdict.SKIP]
    assert verdicts(whitelist.list_not_applied("WL-02", served, "pair", "v", before=refused)) == [Verdict.FAIL]
    assert verdicts(whitelist.previous_list_kept(refused, "pair", "v", before=refused)) == [Verdict.SKIP]
    assert verdicts(whitelist.previous_list_kept(refused, "pair", "v", before=served)) == [Verdict.FAIL]
    assert verdicts(whitelist.previous_list_kept(served, "pair", "v", before=served)) == [Verdict.PASS]
    assert verdicts(whitelist.variant_applied(served, "pair", "v", before=served)) == [Verdict.SKIP]
    assert verdicts(whitelist.variant_applied(refused, "pair", "v", before=refused)) == [Verdict.FAIL]


def test_failure_visible_in_health():
    def health(entry):
        return exchange(200, __import__("json").dumps({"status": "UP", "checks": [{"name": "PACS", "status": "UP"}, entry]})
                        .encode(), "application/json")

    shown = health({"name": "Liste blanche", "status": "UP", "data": {"derniere_tentative": {"resultat": "échec"}}})
    down = health({"name": "whitelist", "status": "DOWN"})
    hidden = health({"name": "Liste blanche", "status": "UP", "data": {"etat": "valide", "age_s": 3}})
    absent = exchange(200, b'{"status": "UP", "checks": [{"name": "PACS", "status": "UP"}]}', "application/json")
    assert verdicts(whitelist.failure_visible_in_health(shown, "http-404")) == [Verdict.PASS]
    assert verdicts(whitelist.failure_visible_in_health(down, "http-404")) == [Verdict.PASS]
    assert verdicts(whitelist.failure_visible_in_health(hidden, "http-404")) == [Verdict.FAIL]
    assert verdicts(whitelist.failure_visible_in_health(absent, "http-404")) == [Verdict.FAIL]
    assert verdicts(whitelist.failure_visible_in_health(exchange(error="refused"), "http-404")) == [Verdict.FAIL]


def test_download_checks():
    ok = [{"status": 200, "complete": True, "at_utc": "t", "bytes_sent": 10}]
    assert verdicts(whitelist.downloaded_at_start(ok, 3)) == [Verdict.PASS]
    assert verdicts(whitelist.downloaded_at_start([], 3)) == [Verdict.FAIL]
    assert verdicts(whitelist.downloaded_at_start([{"status": 200, "complete": False}], 3)) == [Verdict.FAIL]
    assert verdicts(whitelist.downloaded_on_refresh(ok, 3)) == [Verdict.PASS]
    assert verdicts(whitelist.downloaded_on_refresh([], 3)) == [Verdict.FAIL]


def test_xxe_and_availability_checks():
    assert verdicts(whitelist.no_external_entity_fetched([], "doctype-xxe")) == [Verdict.PASS]
    assert verdicts(whitelist.no_external_entity_fetched([{"path": "/xxe-canary/x"}], "doctype-xxe")) == [Verdict.FAIL]
    slow = exchange(403, b"no", "text/plain")
    slow.elapsed_s = 9.0
    assert verdicts(whitelist.remains_available(exchange(403, b"no", "text/plain"), "v", 5)) == [Verdict.PASS]
    assert verdicts(whitelist.remains_available(slow, "v", 5)) == [Verdict.FAIL]
    assert verdicts(whitelist.remains_available(exchange(error="no answer"), "v", 5)) == [Verdict.FAIL]


def test_conso_contacted_only_listed_hosts():
    listed = ["db1.test.mesimagesmedicales.fr"]
    assert verdicts(whitelist.contacted_only_listed_hosts([{"host": "DB1.test.mesimagesmedicales.fr"}], listed, "x")) \
        == [Verdict.PASS]
    assert verdicts(whitelist.contacted_only_listed_hosts([{"host": "db9.test.mesimagesmedicales.fr"}], listed, "x")) \
        == [Verdict.FAIL]


# ------------------------------------------------------------------------------------------- TLS side

@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> TestPKI:
    return TestPKI(tmp_path_factory.mktemp("tc") / "pki")


def tls_of(issued) -> TlsInfo:
    from cryptography.hazmat.primitives import serialization

    chain = [issued.cert, *[c for c in issued.chain if c.issuer != c.subject]]
    return TlsInfo(sni="x", version="TLSv1.3", chain_der=[c.public_bytes(serialization.Encoding.DER) for c in chain])


def test_market_certificate(pki):
    vi = "vi1.349.mesimagesmedicales.fr"
    market, igc = [pki.market_ca.cert], [pki.igc_root.cert]
    assert verdicts(trust.market_certificate(tls_of(pki.market_ov(vi)), vi, market, igc)) == [Verdict.PASS]
    igc_cert = trust.market_certificate(tls_of(pki.serv_ssl(vi)), vi, market, igc)
    assert verdicts(igc_cert) == [Verdict.FAIL] and "IGC-Santé" in igc_cert[0].message
    other = trust.market_certificate(tls_of(pki.market_ov("vi2.349.mesimagesmedicales.fr")), vi, market, igc)
    assert verdicts(other) == [Verdict.FAIL] and "subjectAltName" in other[0].message
    assert verdicts(trust.market_certificate(None, vi, market, igc)) == [Verdict.FAIL]


def test_presented_chain_valid(pki):
    fqdn = "db1.349.mesimagesmedicales.fr"
    good = tls_of(pki.serv_ssl(fqdn))
    assert verdicts(trust.presented_chain_valid(good, fqdn)) == [Verdict.PASS]
    assert verdicts(trust.presented_chain_valid(tls_of(pki.negative("expired", fqdn)), fqdn)) == [Verdict.FAIL]
    assert verdicts(trust.presented_chain_valid(tls_of(pki.negative("not_yet_valid", fqdn)), fqdn)) == [Verdict.FAIL]
    late = pki.serv_ssl(fqdn).cert.not_valid_after_utc - timedelta(days=10)
    assert verdicts(trust.presented_chain_valid(good, fqdn, now=late)) == [Verdict.WARN]
    assert verdicts(trust.presented_chain_valid(None, fqdn)) == [Verdict.SKIP]


def _probe(outcome, negotiated=None):
    return TlsVersionProbe(fqdn="x", connect_to="1", offered="TLSv1", outcome=outcome, negotiated=negotiated)


def test_legacy_tls_refused():
    control = exchange(200, b"ok")
    control.tls = TlsInfo(sni="x", version="TLSv1.3")
    assert verdicts(trust.legacy_tls_refused([_probe("refused"), _probe("refused")], control, "x")) == [Verdict.PASS]
    assert verdicts(trust.legacy_tls_refused([_probe("accepted", "TLSv1")], control, "x")) == [Verdict.FAIL]
    assert verdicts(trust.legacy_tls_refused([_probe("client-unable")], control, "x")) == [Verdict.ERROR]
    assert verdicts(trust.legacy_tls_refused([_probe("refused")], exchange(error="refused"), "x")) == [Verdict.ERROR]


def test_no_stale_acme_challenge():
    listing = exchange(200, b'<a href="../">..</a><a href="Qx3v1t6bO0fYl2c8">Qx3v1t6bO0fYl2c8</a>', "text/html")
    assert trust.listed_challenge_files(listing) == ["Qx3v1t6bO0fYl2c8"]
    served = exchange(200, b"Qx3v1t6bO0fYl2c8.thumbprint", "text/plain")
    assert verdicts(trust.no_stale_acme_challenge(listing, [served], "vi")) == [Verdict.FAIL]
    assert verdicts(trust.no_stale_acme_challenge(listing, [], "vi")) == [Verdict.FAIL]
    redirect = exchange(301, b"", "")
    assert verdicts(trust.no_stale_acme_challenge(redirect, [], "vi")) == [Verdict.PASS]
    assert verdicts(trust.no_stale_acme_challenge(None, [], "vi")) == [Verdict.SKIP]


def test_checks_never_judge_outside_their_requirements():
    # the @check decorator raises if a check returns a finding for an undeclared requirement
    for f in (whitelist.list_not_applied("WL-02", None, "p", "v") + whitelist.list_not_applied("WL-03", None, "p", "v")):
        assert f.requirement in ("WL-02", "WL-03")
    with pytest.raises(AssertionError):
        whitelist.list_not_applied("WL-05", None, "p", "v")


def test_now_is_timezone_aware_in_chain_validity(pki):
    fqdn = "db1.349.mesimagesmedicales.fr"
    assert trust.presented_chain_valid(tls_of(pki.serv_ssl(fqdn)), fqdn, now=datetime.now(UTC))
