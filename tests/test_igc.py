"""Tests of the IGC-Santé publication point simulator (CRLs and CA certificates over plain HTTP)."""

from __future__ import annotations

import http.client
import socket
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from cryptography import x509

from fixtures.pki import TestPKI
from simulators.igc import IGCPublicationServer

FQDN = "db1.349.mesimagesmedicales.fr"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    return TestPKI(tmp_path_factory.mktemp("igc") / "pki")


@pytest.fixture
def server(pki: TestPKI):
    with IGCPublicationServer(pki) as srv:
        yield srv


def get(url: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    """Plain HTTP request with http.client (never goes through an environment proxy)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    try:
        conn.request(method, parts.path or "/", headers={"User-Agent": "drimcheck-test"})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def crl_url(cert: x509.Certificate) -> str:
    (dp,) = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    return dp.full_name[0].value


def ca_issuers_url(cert: x509.Certificate) -> str:
    (aia,) = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    return aia.access_location.value


def test_serves_crl_and_issuer_at_the_urls_written_in_a_leaf(pki: TestPKI, server: IGCPublicationServer) -> None:
    leaf = pki.serv_ssl(FQDN)

    status, headers, body = get(server.url_for(crl_url(leaf.cert)))
    assert status == 200 and headers["Content-Type"] == "application/pkix-crl"
    crl = x509.load_der_x509_crl(body)
    assert crl.issuer == leaf.cert.issuer
    assert crl.is_signature_valid(pki.igc_org.cert.public_key())

    status, headers, body = get(server.url_for(ca_issuers_url(leaf.cert)))
    assert status == 200 and headers["Content-Type"] == "application/pkix-cert"
    issuer = x509.load_der_x509_certificate(body)
    assert issuer == pki.igc_org.cert
    leaf.cert.verify_directly_issued_by(issuer)


def test_serves_root_crl_and_root_cert_at_the_urls_written_in_the_intermediate(
    pki: TestPKI, server: IGCPublicationServer
) -> None:
    org = pki.igc_org.cert
    status, _, body = get(server.url_for(crl_url(org)))
    assert status == 200
    assert x509.load_der_x509_crl(body).is_signature_valid(pki.igc_root.cert.public_key())
    status, _, body = get(server.url_for(ca_issuers_url(org)))
    assert status == 200 and x509.load_der_x509_certificate(body) == pki.igc_root.cert


def test_unknown_paths_are_404_and_every_request_is_recorded(pki: TestPKI, server: IGCPublicationServer) -> None:
    before = datetime.now(UTC)
    crl_path = urlsplit(crl_url(pki.serv_ssl(FQDN).cert)).path
    assert get(server.url + "/CRL/unknown.crl")[0] == 404
    assert get(server.url + "/")[0] == 404
    assert get(server.url + crl_path, method="HEAD")[0] == 200
    assert get(server.url + crl_path, method="POST")[0] == 405
    assert get(server.url + crl_path)[0] == 200

    log = server.requests
    assert [(r["method"], r["path"], r["status"]) for r in log] == [
        ("GET", "/CRL/unknown.crl", 404),
        ("GET", "/", 404),
        ("HEAD", crl_path, 200),
        ("POST", crl_path, 405),
        ("GET", crl_path, 200),
    ]
    for entry in log:
        assert entry["client"] == "127.0.0.1"
        assert before <= entry["time"] <= datetime.now(UTC)
        assert entry["user_agent"] == "drimcheck-test"
    server.clear_requests()
    assert server.requests == []


def test_revocation_after_start_shows_up_in_the_next_crl_download(pki: TestPKI, server: IGCPublicationServer) -> None:
    victim = pki.serv_ssl("db7.349.mesimagesmedicales.fr")
    url = server.url_for(crl_url(victim.cert))

    before = x509.load_der_x509_crl(get(url)[2])
    assert before.get_revoked_certificate_by_serial_number(victim.serial) is None

    pki.revoke(victim)
    after = x509.load_der_x509_crl(get(url)[2])
    entry = after.get_revoked_certificate_by_serial_number(victim.serial)
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == x509.ReasonFlags.key_compromise


def test_publication_url_path_prefix_is_honoured(tmp_path: Path) -> None:
    pki = TestPKI(tmp_path / "pki", publication_url="http://igc.drimcheck.test:8080/igc-sante/")
    url = crl_url(pki.serv_ssl(FQDN).cert)
    assert url == "http://igc.drimcheck.test:8080/igc-sante/CRL/ACI-EL-ORG-TEST-DRIMCHECK.crl"
    with IGCPublicationServer(pki) as server:
        assert get(server.url_for(url))[0] == 200
        assert get(server.url + "/CRL/ACI-EL-ORG-TEST-DRIMCHECK.crl")[0] == 404


def test_a_silent_client_neither_blocks_other_requests_nor_stop(pki: TestPKI) -> None:
    server = IGCPublicationServer(pki)
    server.start()
    host, port = urlsplit(server.url).hostname, urlsplit(server.url).port
    idle = socket.create_connection((host, port), timeout=5)  # connects, never sends a request
    try:
        assert get(server.url + "/AC/ACI-EL-ORG-TEST-DRIMCHECK.cer")[0] == 200
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 2
    finally:
        idle.close()
    with pytest.raises(OSError):
        get(f"http://{host}:{port}/")
    server.stop()  # idempotent


def test_url_is_only_available_while_running(pki: TestPKI) -> None:
    server = IGCPublicationServer(pki)
    with pytest.raises(RuntimeError):
        server.url
    with server:
        assert server.url.startswith("http://127.0.0.1:")
        with pytest.raises(RuntimeError):
            server.start()


def test_the_second_intermediate_never_publishes_a_valid_crl(pki: TestPKI, server: IGCPublicationServer) -> None:
    """WL-9: certificates of igc_org_standard point at a CRL that answers 503, or at one past its nextUpdate."""
    from fixtures.pki import org_name

    subject = org_name("Liste Blanche DRIM-M", "318751275100020", "AGENCE DU NUMERIQUE EN SANTE")
    unavailable = pki.issue("wl9-unavailable", subject=subject, profile="org_sign", issuer="igc_org_standard",
                            crl_fault="unavailable")
    expired = pki.issue("wl9-expired", subject=subject, profile="org_sign", issuer="igc_org_standard",
                        crl_fault="expired")
    assert get(server.url_for(crl_url(unavailable.cert)))[0] == 503
    status, _, body = get(server.url_for(crl_url(expired.cert)))
    crl = x509.load_der_x509_crl(body)
    assert status == 200 and crl.is_signature_valid(pki._ca("igc_org_standard").cert.public_key())
    assert crl.next_update_utc < datetime.now(UTC)
    status, _, body = get(server.url_for(ca_issuers_url(expired.cert)))
    assert status == 200 and x509.load_der_x509_certificate(body).subject == expired.cert.issuer
    assert crl_url(unavailable.cert) != crl_url(expired.cert) != crl_url(pki.serv_ssl(FQDN).cert)
    published = {p: b for p, b in pki.publication().items() if "ACI-ST-ORG" in p and p.endswith(".crl")}
    assert list(published) == [urlsplit(crl_url(expired.cert)).path]  # the 503 one is not published at all
    assert all(x509.load_der_x509_crl(b).next_update_utc < datetime.now(UTC) for b in published.values())
    with pytest.raises(ValueError):
        pki.issue("wl9-none", subject=subject, profile="org_sign", issuer="igc_org_standard")
    with pytest.raises(ValueError):
        pki.issue("wl9-org", subject=subject, profile="org_sign", crl_fault="expired")
