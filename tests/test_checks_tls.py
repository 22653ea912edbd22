"""TLS checks judge the chain a server presented: built from the real throwaway PKI."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from drimcheck.checks import tls
from drimcheck.net import Exchange, TlsInfo
from drimcheck.verdicts import Verdict
from fixtures.pki import TestPKI

FQDN = "db1.349.mesimagesmedicales.fr"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return TestPKI(tmp_path_factory.mktemp("pki"))


def presented(issued) -> TlsInfo:
    chain = [issued.cert] + [c for c in issued.chain if c.issuer != c.subject]  # server sends leaf + intermediates
    return TlsInfo(sni=FQDN, version="TLSv1.3", chain_der=[c.public_bytes(Encoding.DER) for c in chain])


def only(findings):
    assert len(findings) == 1
    return findings[0]


def test_serv_ssl_from_igc_passes_every_certificate_check(pki):
    info = presented(pki.serv_ssl(FQDN))
    anchors = [pki.igc_root.cert]
    assert only(tls.chains_to_igc_sante(info, FQDN, anchors)).verdict is Verdict.PASS
    assert only(tls.san_names_fqdn(info, FQDN)).verdict is Verdict.PASS
    assert only(tls.currently_valid(info, FQDN)).verdict is Verdict.PASS


@pytest.mark.parametrize("make, reason", [
    (lambda p: p.market_ov(FQDN), "ne chaîne pas"),
    (lambda p: p.negative("wrong_ca", FQDN), "signature"),
    (lambda p: p.negative("wrong_eku", FQDN), "serverAuth"),
])
def test_certificates_not_from_igc_or_without_server_usage_fail_crt01(pki, make, reason):
    f = only(tls.chains_to_igc_sante(presented(make(pki)), FQDN, [pki.igc_root.cert]))
    assert f.verdict is Verdict.FAIL and reason in f.message


def test_rogue_ca_imitating_igc_names_is_caught_by_signature_not_name(pki):
    # The rogue CA copies the IGC names exactly: only the signature check can tell.
    f = only(tls.chains_to_igc_sante(presented(pki.negative("wrong_ca", FQDN)), FQDN, [pki.igc_root.cert]))
    assert f.verdict is Verdict.FAIL


def test_expired_certificate_is_judged_by_validity_only(pki):
    info = presented(pki.negative("expired", FQDN))
    assert only(tls.chains_to_igc_sante(info, FQDN, [pki.igc_root.cert])).verdict is Verdict.PASS
    f = only(tls.currently_valid(info, FQDN))
    assert f.verdict is Verdict.FAIL and "expiré" in f.message
    assert only(tls.currently_valid(presented(pki.negative("not_yet_valid", FQDN)), FQDN)).verdict is Verdict.FAIL


def test_certificate_expiring_within_30_days_is_a_warning(pki):
    cert = pki.serv_ssl(FQDN).cert
    soon = cert.not_valid_after_utc - timedelta(days=10)
    assert only(tls.currently_valid(presented(pki.serv_ssl(FQDN)), FQDN, now=soon)).verdict is Verdict.WARN


def test_san_mismatch_fails_crt02_only(pki):
    info = presented(pki.negative("san_mismatch", FQDN))
    f = only(tls.san_names_fqdn(info, FQDN))
    assert f.verdict is Verdict.FAIL and "absent du subjectAltName" in f.message
    assert only(tls.chains_to_igc_sante(info, FQDN, [pki.igc_root.cert])).verdict is Verdict.PASS


def test_no_certificate_at_all():
    empty = TlsInfo(sni=FQDN)
    assert only(tls.chains_to_igc_sante(empty, FQDN, [])).verdict is Verdict.FAIL
    assert only(tls.san_names_fqdn(empty, FQDN)).verdict is Verdict.SKIP
    assert only(tls.currently_valid(None, FQDN)).verdict is Verdict.SKIP


@pytest.mark.parametrize("pattern, host, ok", [
    ("db1.349.mesimagesmedicales.fr", "DB1.349.mesimagesmedicales.fr", True),
    ("*.349.mesimagesmedicales.fr", "db1.349.mesimagesmedicales.fr", True),
    ("*.mesimagesmedicales.fr", "db1.349.mesimagesmedicales.fr", False),
    ("db2.349.mesimagesmedicales.fr", "db1.349.mesimagesmedicales.fr", False),
])
def test_hostname_matching_follows_rfc6125(pattern, host, ok):
    assert tls.hostname_matches(pattern, host) is ok


def clear(status=None, location="", error=None):
    return Exchange(label="c", method="GET", url=f"http://{FQDN}/q/health", connect_to="127.0.0.1:80", started_at="",
                    request_headers=[], status=status, error=error,
                    response_headers=[("location", location)] if location else [], response_body=b"{}")


@pytest.mark.parametrize("exchange, verdict", [
    (clear(error="connection refused"), Verdict.PASS),
    (clear(301, f"https://{FQDN}/q/health"), Verdict.PASS),
    (clear(404), Verdict.PASS),
    (clear(200), Verdict.FAIL),
    (clear(301, "http://elsewhere.example/q/health"), Verdict.FAIL),
    (None, Verdict.SKIP),
])
def test_nothing_served_in_clear(exchange, verdict):
    assert only(tls.nothing_served_in_clear(exchange, FQDN)).verdict is verdict
