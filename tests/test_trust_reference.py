"""The reference DRIMbox trust function (golden behaviour and its mutants) against the real simulators, in-process.

The whole-process behaviour is covered by the campaign and `drimcheck selftest`; these tests pin
the function's decisions vector by vector and identity by identity, fast.
"""

from __future__ import annotations

import ssl
from types import SimpleNamespace

import httpx
import pytest

from fixtures.pki import TestPKI
from simulators.drimbox import mutants
from simulators.igc import IGCPublicationServer
from simulators.peer_conso import PeerIdentities
from simulators.procutil import free_port
from simulators.whitelist import NOMINAL, WhitelistEndpoint, WhitelistVectors

INVALID = ["non-signee", "contenu-altere", "espace-modifie", "proprietes-alterees", "proprietes-non-signees",
           "enveloppe-deplacee", "identifiants-dupliques", "signataire-cn", "signataire-ou", "signataire-autre-ac",
           "signataire-expire", "signataire-pas-encore-valide", "signataire-revoque", "doctype-xxe",
           "expansion-entites", "http-404", "http-500", "tronquee", "delai-depasse", "crl-injoignable", "crl-perimee"]


@pytest.fixture(scope="module")
def bed(tmp_path_factory):
    port = free_port()
    pki = TestPKI(tmp_path_factory.mktemp("ref") / "pki", publication_url=f"http://127.0.0.1:{port}")
    igc = IGCPublicationServer(pki, port=port)
    igc.start()
    peers = PeerIdentities(pki)
    peers.preissue()
    vectors = WhitelistVectors(pki, peers, canary_url=f"{igc.url}/xxe-canary/t")
    vectors.preissue()
    cert = pki.issue("wl-endpoint", subject=pki.market_ov("liste.test").cert.subject, profile="market_ov",
                     issuer="market_ca", san=["127.0.0.1"])
    endpoint = WhitelistEndpoint(vectors, cert, port=free_port(), stall_s=2.0)
    endpoint.start()
    yield SimpleNamespace(pki=pki, igc=igc, peers=peers, endpoint=endpoint)
    endpoint.stop()
    igc.stop()


@pytest.fixture(autouse=True)
def golden_after_each_test():
    yield
    mutants.activate(None)


def function(bed, mutant: str | None = None):
    """A fresh trust function; the process runs under `mutant` from now on (golden again after the test)."""
    from simulators.drimbox.trust import Function

    settings = {**bed.endpoint.dut_settings(), "timeout_s": 0.3}
    config = SimpleNamespace(peers={"whitelist": settings}, trust={"igc_chain": str(bed.pki.igc_chain_pem)},
                             endpoints={}, name="test", pacs=[])
    mutants.activate(mutant)
    return Function(SimpleNamespace(config=config))


def applied(bed, f, vector: str) -> dict:
    bed.endpoint.publish(vector)
    try:
        return f.refresh("test")
    finally:
        bed.endpoint.publish(NOMINAL)


def der(bed, key: str) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return bed.peers.get(key).issued.cert.public_bytes(serialization.Encoding.DER)


def test_nominal_list_is_applied_and_reported_in_health(bed):
    f = function(bed)
    assert f.health_checks()[0]["status"] == "DOWN"  # no list yet
    assert f.refresh("test")["resultat"] == "succès"
    health = f.health_checks()[0]
    assert health["name"] == "Liste blanche" and health["status"] == "UP"
    assert health["data"]["etat"] == "valide" and health["data"]["domaines"] == 4
    assert health["data"]["derniere_tentative"]["resultat"] == "succès"
    assert f.allows_host("DB901.test.mesimagesmedicales.fr") and not f.allows_host("db903.test.mesimagesmedicales.fr")


@pytest.mark.parametrize("vector", INVALID)
def test_invalid_lists_and_failed_downloads_leave_the_previous_list_in_force(bed, vector):
    f = function(bed)
    f.refresh("test")
    before = f.state
    attempt = applied(bed, f, vector)
    assert attempt["resultat"] == "échec", attempt
    assert f.state is before
    assert f.health_checks()[0]["status"] == "UP"
    assert f.health_checks()[0]["data"]["derniere_tentative"]["resultat"] == "échec"


@pytest.mark.parametrize("vector,added", [("enveloppe-injectee", False), ("commentaire", False), ("format-2024", True),
                                          ("retrait", False)])
def test_valid_lists_are_applied_with_their_signed_content_only(bed, vector, added):
    f = function(bed)
    assert applied(bed, f, vector)["resultat"] == "succès"
    unlisted = f.allows_client(der(bed, "unlisted"))[0]
    assert unlisted is False
    assert f.allows_client(der(bed, "added"))[0] is added
    assert f.allows_client(der(bed, "withdrawn"))[0] is (vector != "retrait")


@pytest.mark.parametrize("key,allowed,reason", [
    ("listed", True, "DN listé"), ("withdrawn", True, "DN listé"), ("unlisted", False, "absent"),
    ("usurper", False, "absent"), ("expired", False, "non validé"), ("not_yet_valid", False, "non validé"),
    ("wrong_ca", False, "non validé"), ("revoked", False, "révoqué")])
def test_allows_client(bed, key, allowed, reason):
    f = function(bed)
    f.refresh("test")
    ok, why = f.allows_client(der(bed, key))
    assert ok is allowed and reason in why


@pytest.mark.parametrize("mutant,vector", [
    ("wl-no-signature-check", "non-signee"), ("wl-sigprops-unchecked", "proprietes-alterees"),
    ("wl-sigprops-unchecked", "proprietes-non-signees"), ("wl-signer-dn-unchecked", "signataire-ou"),
    ("wl-chain-unchecked", "signataire-autre-ac"), ("wl-expiry-ignored", "signataire-expire"),
    ("wl-revocation-ignored", "signataire-revoque"), ("wl-wrapping", "enveloppe-deplacee"),
    ("wl-revocation-ignored", "crl-injoignable"), ("wl-crl-soft-fail", "crl-injoignable"),
    ("wl-crl-soft-fail", "crl-perimee")])
def test_each_verification_mutant_applies_the_list_it_should_refuse(bed, mutant, vector):
    f = function(bed, mutant)
    assert applied(bed, f, vector)["resultat"] == "succès"
    assert f.allows_client(der(bed, "unlisted"))[0] is True
    assert function(bed)._verify and applied(bed, function(bed), vector)["resultat"] == "échec"  # golden refuses


def test_wrapping_and_comment_mutants_read_unsigned_or_truncated_values(bed):
    f = function(bed, "wl-wrapping")
    applied(bed, f, "enveloppe-injectee")
    assert f.allows_client(der(bed, "unlisted"))[0] is True
    f = function(bed, "wl-comment-truncation")
    applied(bed, f, "commentaire")
    assert f.allows_client(der(bed, "unlisted"))[0] is True


def test_failure_mutants(bed):
    f = function(bed, "wl-empty-on-failure")
    f.refresh("test")
    applied(bed, f, "http-404")
    assert f.state is None and f.health_checks()[0]["status"] == "DOWN"
    f = function(bed, "wl-failure-hidden")
    f.refresh("test")
    applied(bed, f, "http-500")
    assert f.health_checks()[0]["data"]["derniere_tentative"]["resultat"] == "succès"


def test_xxe_mutant_fetches_the_canary_and_golden_does_not(bed):
    bed.igc.clear_requests()
    applied(bed, function(bed), "doctype-xxe")
    assert not [r for r in bed.igc.requests if r["path"].startswith("/xxe-canary/")]
    applied(bed, function(bed, "wl-xxe"), "doctype-xxe")
    assert [r for r in bed.igc.requests if r["path"].startswith("/xxe-canary/")]


def test_strict_namespace_mutant_refuses_the_2024_variant(bed):
    assert applied(bed, function(bed, "wl-strict-namespace"), "format-2024")["resultat"] == "échec"


@pytest.mark.parametrize("mutant,key", [("mtls-dn-unchecked", "unlisted"), ("mtls-cn-only", "usurper"),
                                        ("mtls-expiry-ignored", "expired"), ("mtls-revocation-ignored", "revoked"),
                                        ("mtls-any-ca", "wrong_ca")])
def test_peer_mutants_allow_what_golden_refuses(bed, mutant, key):
    f = function(bed, mutant)
    f.refresh("test")
    if mutant == "mtls-any-ca":  # deployment fault: the foreign root is in the client truststore
        from cryptography import x509

        f.client_anchors += x509.load_pem_x509_certificates(bed.pki.rogue_trust_pem.read_bytes())
    assert f.allows_client(der(bed, key))[0] is True


def test_stale_authorisations_mutant_keeps_a_withdrawn_peer(bed):
    for mutant, still_allowed in ((None, False), ("mtls-stale-authorizations", True)):
        f = function(bed, mutant)
        f.refresh("test")
        assert f.allows_client(der(bed, "withdrawn"))[0]
        applied(bed, f, "retrait")
        assert f.allows_client(der(bed, "withdrawn"))[0] is still_allowed, mutant


def test_tls_policy():
    from simulators.drimbox.trust import Function

    listener = SimpleNamespace(role="vi")
    config = SimpleNamespace(peers={}, trust={}, endpoints={}, name="t", pacs=[])
    golden = Function(SimpleNamespace(config=config))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    golden.configure_tls(listener, ctx)
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with mutants.running("tls-legacy-accepted"):
        golden.configure_tls(listener, ctx)
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1


def test_dn_comparison_is_by_attribute_and_insensitive_to_case_and_spacing():
    from cryptography import x509

    from simulators.drimbox.trust import dn_key

    a = x509.Name.from_rfc4514_string("CN=db1.test.mesimagesmedicales.fr,OU=1,O=Centre  Imagerie,ST=Côte-d'Or (21),C=FR")
    b = x509.Name.from_rfc4514_string("CN=DB1.test.mesimagesmedicales.fr,OU=1,O=centre imagerie,ST=Côte-d'Or (21),C=FR")
    c = x509.Name.from_rfc4514_string("CN=db1.test.mesimagesmedicales.fr,OU=2,O=Centre Imagerie,ST=Côte-d'Or (21),C=FR")
    assert dn_key(a) == dn_key(b) != dn_key(c)


def test_endpoint_records_downloads_and_serves_failures(bed):
    ctx = ssl.create_default_context(cafile=str(bed.pki.market_trust_pem))
    url = bed.endpoint.url
    with httpx.Client(verify=ctx, timeout=1.0) as client:
        bed.endpoint.publish("http-500")
        assert client.get(url).status_code == 500
        bed.endpoint.publish("tronquee")
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):  # body shorter than announced
            client.get(url)
        bed.endpoint.publish(NOMINAL)
        assert client.get(url).status_code == 200
        assert client.get(url.replace("SIGNEE.xml", "other.xml")).status_code == 404
    with httpx.Client(verify=ctx, timeout=0.3) as client:
        bed.endpoint.publish("delai-depasse")
        with pytest.raises(httpx.ReadTimeout):
            client.get(url)
    bed.endpoint.publish(NOMINAL)
    seen = [d.vector for d in bed.endpoint.downloads()]
    assert {"http-500", "tronquee", NOMINAL, "delai-depasse"} <= set(seen)
    with pytest.raises(KeyError):
        bed.endpoint.publish("no-such-vector")


@pytest.mark.parametrize("vector,why", [("crl-injoignable", "CRL injoignable"), ("crl-perimee", "CRL périmée")])
def test_revocation_unknown_is_the_reason_and_soft_fail_still_checks_revoked(bed, vector, why):
    f = function(bed)
    f.refresh("test")
    attempt = applied(bed, f, vector)
    assert attempt["resultat"] == "échec" and why in str(attempt), attempt
    crl_paths = [r["path"] for r in bed.igc.requests if "ACI-ST-ORG" in (r["path"] or "")]
    assert crl_paths, "the reference fetched the signer's CRL distribution point"
    soft = function(bed, "wl-crl-soft-fail")
    assert applied(bed, soft, "signataire-revoque")["resultat"] == "échec"  # a known revocation still counts
