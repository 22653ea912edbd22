"""Tests of the throwaway test PKI: real TLS handshakes, the openssl CLI as an independent oracle, shapes."""

from __future__ import annotations

import shutil
import socket
import ssl
import stat
import subprocess
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fixtures.pki import NEGATIVE_KINDS, Issued, TestPKI, trust_context

FQDN = "db1.349.mesimagesmedicales.fr"
PEER_FQDN = "db2.349.mesimagesmedicales.fr"
VI_FQDN = "vi1.349.mesimagesmedicales.fr"
FIXED_NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    """One PKI valid at the current time, shared by the handshake and openssl tests."""
    return TestPKI(tmp_path_factory.mktemp("pki-run") / "pki")


@pytest.fixture(scope="module")
def fixed(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    """A PKI with a fixed ``now``, for exact assertions on validity windows."""
    return TestPKI(tmp_path_factory.mktemp("pki-fixed") / "pki", now=FIXED_NOW)


# ---------------------------------------------------------------------------------------------- helpers


@dataclass
class Handshake:
    client_error: BaseException | None
    server_error: BaseException | None
    received: bytes  # what the client read after the handshake (b"ok" when the server accepted it)
    server_saw: dict | None  # client certificate as seen by the server (getpeercert())

    @property
    def ok(self) -> bool:
        return self.client_error is None and self.server_error is None and self.received == b"ok"


def handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, sni: str, timeout: float = 5.0) -> Handshake:
    """Run one real TLS connection on loopback (server in a thread) and report both sides."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(timeout)
    port = listener.getsockname()[1]
    server: dict = {}

    def serve() -> None:
        try:
            conn, _ = listener.accept()
        except OSError as exc:
            server["error"] = exc
            return
        conn.settimeout(timeout)
        try:
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                server["peer"] = tls.getpeercert()
                tls.sendall(b"ok")
                try:
                    tls.recv(1)  # wait for the client to close
                except OSError:
                    pass
        except (ssl.SSLError, OSError) as exc:
            server["error"] = exc
        finally:
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    client_error: BaseException | None = None
    received = b""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
            with client_ctx.wrap_socket(raw, server_hostname=sni) as tls:
                received = tls.recv(2)  # with TLS 1.3 a rejected client cert only shows up here
    except (ssl.SSLError, OSError) as exc:
        client_error = exc
    thread.join(timeout)
    listener.close()
    assert not thread.is_alive(), "server thread hung"
    return Handshake(client_error, server.get("error"), received, server.get("peer"))


def openssl_verify(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", "verify", *map(str, args)], capture_output=True, text=True, timeout=20)


def verify_igc(pki: TestPKI, leaf: Issued, *extra: str | Path) -> subprocess.CompletedProcess:
    """``openssl verify`` with the IGC root trusted and the intermediate supplied as untrusted."""
    return openssl_verify("-CAfile", pki.igc_trust_pem, "-untrusted", pki.igc_org.cert_path, *extra, leaf.cert_path)


def ext(cert: x509.Certificate, cls: type) -> x509.Extension:
    return cert.extensions.get_extension_for_class(cls)


# ---------------------------------------------------------------------------------------------- TLS


@pytest.mark.parametrize("strict", [False, True], ids=["default", "x509-strict"])
def test_serv_ssl_handshake_succeeds_with_sni(pki: TestPKI, strict: bool) -> None:
    server = pki.serv_ssl(FQDN)
    client = trust_context([pki.igc_trust_pem])
    if strict:  # Python 3.13's create_default_context() turns this on; our certificates must pass it
        client.verify_flags |= ssl.VERIFY_X509_STRICT
    result = handshake(server.server_context(), client, sni=FQDN)
    assert result.ok, result


def test_client_that_does_not_trust_igc_refuses_serv_ssl(pki: TestPKI) -> None:
    result = handshake(pki.serv_ssl(FQDN).server_context(), trust_context([pki.market_trust_pem]), sni=FQDN)
    assert isinstance(result.client_error, ssl.SSLCertVerificationError)


NEGATIVE_TLS_ERRORS = {
    "san_mismatch": "Hostname mismatch",
    "wrong_ca": "unable to get local issuer certificate",
    "expired": "certificate has expired",
    "not_yet_valid": "certificate is not yet valid",
    "wrong_eku": "unsuitable certificate purpose",
}


@pytest.mark.parametrize("kind", sorted(NEGATIVE_TLS_ERRORS))
def test_negative_server_certificate_is_refused(pki: TestPKI, kind: str) -> None:
    bad = pki.negative(kind, FQDN)
    result = handshake(bad.server_context(), trust_context([pki.igc_trust_pem]), sni=FQDN)
    assert isinstance(result.client_error, ssl.SSLCertVerificationError), result
    assert NEGATIVE_TLS_ERRORS[kind] in result.client_error.verify_message
    assert result.received == b""


def test_revoked_server_certificate_is_refused_by_a_crl_checking_client(pki: TestPKI) -> None:
    revoked = pki.negative("revoked", FQDN)
    client = trust_context([pki.igc_trust_pem, pki.crl_path("igc_org")])
    client.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF

    assert handshake(pki.serv_ssl(FQDN).server_context(), client, sni=FQDN).ok
    result = handshake(revoked.server_context(), client, sni=FQDN)
    assert isinstance(result.client_error, ssl.SSLCertVerificationError)
    assert "certificate revoked" in result.client_error.verify_message
    # without CRL checking the revoked certificate is otherwise perfectly good
    assert handshake(revoked.server_context(), trust_context([pki.igc_trust_pem]), sni=FQDN).ok


@pytest.mark.parametrize("max_version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3], ids=["tls1.2", "tls1.3"])
def test_mtls_between_drimboxes(pki: TestPKI, max_version: ssl.TLSVersion) -> None:
    source = pki.serv_ssl(FQDN).server_context(
        client_cas=[pki.igc_trust_pem], require_client_cert=True, maximum_version=max_version
    )
    # a Conso presenting its own SERV_SSL is accepted, and the Source sees its whitelist DN
    conso = pki.serv_ssl(PEER_FQDN)
    result = handshake(source, conso.client_context([pki.igc_trust_pem]), sni=FQDN)
    assert result.ok, result
    subject = dict(rdn[0] for rdn in result.server_saw["subject"])
    assert subject["commonName"] == PEER_FQDN

    # no client certificate: refused
    result = handshake(source, trust_context([pki.igc_trust_pem]), sni=FQDN)
    assert isinstance(result.server_error, ssl.SSLError)
    assert result.received != b"ok"

    # a client certificate with the right DN but from the rogue CA: refused
    rogue = pki.negative("wrong_ca", PEER_FQDN)
    assert rogue.cert.subject == conso.cert.subject
    result = handshake(source, rogue.client_context([pki.igc_trust_pem]), sni=FQDN)
    assert isinstance(result.server_error, ssl.SSLCertVerificationError)
    assert result.received != b"ok"


def test_org_auth_cli_is_accepted_as_client_but_not_as_server(pki: TestPKI) -> None:
    auth_cli = pki.org_auth_cli()
    server = pki.serv_ssl(FQDN).server_context(client_cas=[pki.igc_trust_pem], require_client_cert=True)
    assert handshake(server, auth_cli.client_context([pki.igc_trust_pem]), sni=FQDN).ok
    result = handshake(auth_cli.server_context(), trust_context([pki.igc_trust_pem], check_hostname=False), sni=FQDN)
    assert "unsuitable certificate purpose" in result.client_error.verify_message


def test_market_ov_is_trusted_through_the_market_ca_only(pki: TestPKI) -> None:
    viewer = pki.market_ov(VI_FQDN)
    assert handshake(viewer.server_context(), trust_context([pki.market_trust_pem]), sni=VI_FQDN).ok
    refused = handshake(viewer.server_context(), trust_context([pki.igc_trust_pem]), sni=VI_FQDN)
    assert isinstance(refused.client_error, ssl.SSLCertVerificationError)


def test_server_context_requires_trust_anchors_for_mandatory_client_certs(pki: TestPKI) -> None:
    with pytest.raises(ValueError):
        pki.serv_ssl(FQDN).server_context(require_client_cert=True)


# ---------------------------------------------------------------------------------------------- openssl oracle

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed")


@needs_openssl
@pytest.mark.parametrize(
    "make, extra",
    [
        (lambda p: p.serv_ssl(FQDN), ["-purpose", "sslserver", "-verify_hostname", FQDN]),
        (lambda p: p.serv_ssl(FQDN), ["-purpose", "sslclient"]),
        (lambda p: p.org_auth_cli(), ["-purpose", "sslclient"]),
        (lambda p: p.org_sign(), ["-purpose", "smimesign"]),
        (lambda p: p.whitelist_signer(), ["-purpose", "smimesign"]),
        (lambda p: p.igc_org, ["-purpose", "crlsign"]),
    ],
    ids=["serv_ssl-server", "serv_ssl-client", "org_auth_cli", "org_sign", "whitelist_signer", "igc_org"],
)
def test_openssl_accepts_good_igc_certificates(pki: TestPKI, make, extra: list[str]) -> None:
    result = verify_igc(pki, make(pki), *extra)
    assert result.returncode == 0, result.stderr + result.stdout
    assert result.stdout.strip().endswith(": OK")


@needs_openssl
def test_openssl_accepts_market_ov_with_market_trust(pki: TestPKI) -> None:
    viewer = pki.market_ov(VI_FQDN)
    good = openssl_verify("-CAfile", pki.market_trust_pem, "-purpose", "sslserver", "-verify_hostname", VI_FQDN,
                          viewer.cert_path)
    assert good.returncode == 0, good.stderr
    assert verify_igc(pki, viewer).returncode != 0


OPENSSL_ERRORS = {
    "expired": "certificate has expired",
    "not_yet_valid": "certificate is not yet valid",
    "wrong_ca": "unable to get local issuer certificate",
    "san_mismatch": "hostname mismatch",
    "wrong_eku": "unsuitable certificate purpose",
}


@needs_openssl
@pytest.mark.parametrize("kind", sorted(OPENSSL_ERRORS))
def test_openssl_refuses_negative_certificates(pki: TestPKI, kind: str) -> None:
    result = verify_igc(pki, pki.negative(kind, FQDN), "-purpose", "sslserver", "-verify_hostname", FQDN)
    assert result.returncode != 0
    assert OPENSSL_ERRORS[kind] in result.stderr + result.stdout


@needs_openssl
def test_openssl_crl_check_refuses_revoked_only(pki: TestPKI) -> None:
    revoked = pki.negative("revoked", FQDN)
    crl = pki.crl_path("igc_org")
    assert verify_igc(pki, pki.serv_ssl(FQDN), "-crl_check", "-CRLfile", crl).returncode == 0
    result = verify_igc(pki, revoked, "-crl_check", "-CRLfile", crl)
    assert result.returncode != 0
    assert "certificate revoked" in result.stderr + result.stdout
    # the whole chain (root CRL for the intermediate included) checks out for the good leaf
    full = verify_igc(pki, pki.serv_ssl(FQDN), "-crl_check_all", "-CRLfile", crl, "-CRLfile", pki.crl_path("igc_root"))
    assert full.returncode == 0, full.stderr


# ---------------------------------------------------------------------------------------------- shapes


def test_serv_ssl_shape(fixed: TestPKI) -> None:
    leaf = fixed.serv_ssl(FQDN, ou="300000001831981", organisation="MINISTERE DE TEST3198", state="Côte-d'Or (21)")
    cert = leaf.cert
    # ASN.1 order is C, ST, O, OU, CN; RFC 4514 renders it reversed: the whitelist DNCertificatOperateur string
    assert [a.oid for a in cert.subject] == [
        NameOID.COUNTRY_NAME,
        NameOID.STATE_OR_PROVINCE_NAME,
        NameOID.ORGANIZATION_NAME,
        NameOID.ORGANIZATIONAL_UNIT_NAME,
        NameOID.COMMON_NAME,
    ]
    assert leaf.subject_dn == f"CN={FQDN},OU=300000001831981,O=MINISTERE DE TEST3198,ST=Côte-d'Or (21),C=FR"
    assert ext(cert, x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName) == [FQDN]
    ku = ext(cert, x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and ku.value.key_encipherment
    assert not ku.value.content_commitment and not ku.value.key_cert_sign
    assert list(ext(cert, x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH,
        ExtendedKeyUsageOID.CLIENT_AUTH,
    ]
    assert ext(cert, x509.BasicConstraints).value.ca is False
    (policy,) = ext(cert, x509.CertificatePolicies).value
    assert policy.policy_identifier.dotted_string.startswith("1.2.250.1.213.1.7.")
    (dp,) = ext(cert, x509.CRLDistributionPoints).value
    assert [n.value for n in dp.full_name] == ["http://igc-sante.drimcheck.test/CRL/ACI-EL-ORG-TEST-DRIMCHECK.crl"]
    (aia,) = ext(cert, x509.AuthorityInformationAccess).value
    assert aia.access_method == x509.AuthorityInformationAccessOID.CA_ISSUERS
    assert aia.access_location.value == "http://igc-sante.drimcheck.test/AC/ACI-EL-ORG-TEST-DRIMCHECK.cer"
    assert (
        ext(cert, x509.AuthorityKeyIdentifier).value.key_identifier
        == ext(fixed.igc_org.cert, x509.SubjectKeyIdentifier).value.digest
    )
    assert cert.issuer == fixed.igc_org.cert.subject
    assert isinstance(leaf.key, rsa.RSAPrivateKey) and leaf.key.key_size == 2048
    assert 120 < cert.serial_number.bit_length() <= 127  # 16 DER octets, positive
    assert cert.not_valid_before_utc == FIXED_NOW - timedelta(days=1)
    assert cert.not_valid_after_utc == FIXED_NOW + timedelta(days=365)
    assert leaf.chain == (fixed.igc_org.cert, fixed.igc_root.cert)
    presented = x509.load_pem_x509_certificates(leaf.chain_path.read_bytes())
    assert presented == [cert, fixed.igc_org.cert]  # root excluded


def test_igc_ca_names_and_chain(fixed: TestPKI) -> None:
    root, org = fixed.igc_root, fixed.igc_org
    assert root.subject_dn == (
        "CN=DRIMCHECK TEST AC RACINE IGC-SANTE ELEMENTAIRE,OU=IGC-SANTE TEST,OU=0002 187512751,O=DRIMCHECK,C=FR"
    )
    assert org.subject_dn == (
        "CN=DRIMCHECK TEST AC IGC-SANTE ELEMENTAIRE ORGANISATIONS,OU=IGC-SANTE TEST,OU=0002 187512751,O=DRIMCHECK,C=FR"
    )
    assert root.cert.issuer == root.cert.subject and root.chain == ()
    org.cert.verify_directly_issued_by(root.cert)
    assert org.chain == (root.cert,)
    assert ext(org.cert, x509.BasicConstraints).value.ca is True
    assert ext(org.cert, x509.BasicConstraints).value.path_length == 0
    ku = ext(org.cert, x509.KeyUsage).value
    assert ku.key_cert_sign and ku.crl_sign
    assert x509.load_pem_x509_certificates(fixed.igc_chain_pem.read_bytes()) == [org.cert, root.cert]
    assert x509.load_pem_x509_certificates(fixed.igc_trust_pem.read_bytes()) == [root.cert]


def test_rogue_ca_imitates_igc_names_but_not_keys(fixed: TestPKI) -> None:
    rogue = fixed.rogue_ca
    assert rogue.cert.subject == fixed.igc_org.cert.subject
    assert rogue.chain[-1].subject == fixed.igc_root.cert.subject
    assert rogue.cert.public_key() != fixed.igc_org.cert.public_key()
    leaf = fixed.negative("wrong_ca", FQDN)
    assert leaf.cert.issuer == fixed.igc_org.cert.subject
    leaf.cert.verify_directly_issued_by(rogue.cert)
    with pytest.raises(Exception):
        leaf.cert.verify_directly_issued_by(fixed.igc_org.cert)


def test_whitelist_signer_and_org_certificates(fixed: TestPKI) -> None:
    signer = fixed.whitelist_signer()
    assert signer.subject_dn == (
        "CN=Liste Blanche DRIM-M,OU=318751275100020,O=AGENCE DU NUMERIQUE EN SANTE,ST=Paris (75),C=FR"
    )
    for issued in (signer, fixed.org_sign()):
        ku = ext(issued.cert, x509.KeyUsage)
        assert ku.critical and ku.value.digital_signature and ku.value.content_commitment
        assert not ku.value.key_encipherment
        assert list(ext(issued.cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.EMAIL_PROTECTION]
    auth = fixed.org_auth_cli(ou="499700367909006", organisation="CABINET M DOC0036790")
    assert auth.subject_dn == "CN=DRIMbox,OU=499700367909006,O=CABINET M DOC0036790,ST=Paris (75),C=FR"
    assert list(ext(auth.cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_market_ov_shape(fixed: TestPKI) -> None:
    viewer = fixed.market_ov(VI_FQDN)
    cert = viewer.cert
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    assert cert.subject.get_attributes_for_oid(NameOID.COUNTRY_NAME)[0].value == "FR"
    assert ext(cert, x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName) == [VI_FQDN]
    assert list(ext(cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert cert.issuer == fixed.market_ca.cert.subject
    assert viewer.chain == (fixed.market_ca.cert,)
    assert "DRIMCHECK" in fixed.market_ca.subject_dn and "TEST" in fixed.market_ca.subject_dn


def test_negative_family_shapes(fixed: TestPKI) -> None:
    good = fixed.serv_ssl(FQDN)
    neg = {kind: fixed.negative(kind, FQDN) for kind in NEGATIVE_KINDS}
    assert set(neg) == set(TestPKI.NEGATIVE_KINDS)
    for issued in neg.values():  # a DN whitelist match alone never rejects them
        assert issued.cert.subject == good.cert.subject
    assert neg["expired"].cert.not_valid_after_utc == FIXED_NOW - timedelta(days=1)
    assert neg["not_yet_valid"].cert.not_valid_before_utc == FIXED_NOW + timedelta(days=1)
    san = ext(neg["san_mismatch"].cert, x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert san == ["db2.349.mesimagesmedicales.fr"]
    ekus = list(ext(neg["wrong_eku"].cert, x509.ExtendedKeyUsage).value)
    assert ekus == [ExtendedKeyUsageOID.EMAIL_PROTECTION]
    assert neg["wrong_ca"].issuer == "rogue_ca"
    assert fixed.is_revoked(neg["revoked"]) and not fixed.is_revoked(good)
    serials = {r.serial_number for r in fixed.crl("igc_org")}
    assert neg["revoked"].serial in serials and good.serial not in serials
    with pytest.raises(ValueError):
        fixed.negative("weak_key", FQDN)


def test_crl_is_fresh_signed_and_lists_revocations(fixed: TestPKI) -> None:
    victim = fixed.org_sign("Victim")
    first = fixed.crl()
    assert victim.serial not in {r.serial_number for r in first}
    fixed.revoke(victim)
    crl = fixed.crl()
    assert crl.is_signature_valid(fixed.igc_org.cert.public_key())
    assert crl.issuer == fixed.igc_org.cert.subject
    assert crl.last_update_utc == FIXED_NOW and crl.next_update_utc == FIXED_NOW + timedelta(days=1)
    entry = crl.get_revoked_certificate_by_serial_number(victim.serial)
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == x509.ReasonFlags.key_compromise
    number = lambda c: c.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number  # noqa: E731
    assert number(crl) > number(first)
    with pytest.raises(ValueError):
        fixed.revoke(fixed.igc_root)


def test_publication_paths_match_certificate_urls(fixed: TestPKI) -> None:
    published = fixed.publication()
    urls = set()
    for issued in (fixed.serv_ssl(FQDN), fixed.igc_org):
        (dp,) = ext(issued.cert, x509.CRLDistributionPoints).value
        (aia,) = ext(issued.cert, x509.AuthorityInformationAccess).value
        urls |= {dp.full_name[0].value, aia.access_location.value}
    nominal = {path for path in published if "ACI-ST-ORG" not in path}  # WL-9 intermediate: see test_igc
    assert {fixed.publication_url + path for path in nominal} == urls
    assert set(published) - nominal == {"/AC/ACI-ST-ORG-TEST-DRIMCHECK.cer", "/CRL/ACI-ST-ORG-TEST-DRIMCHECK-perimee.crl"}
    for path, body in published.items():
        if path.endswith(".crl"):
            x509.load_der_x509_crl(body)
        else:
            assert x509.load_der_x509_certificate(body) in (fixed.igc_root.cert, fixed.igc_org.cert, fixed._ca("igc_org_standard").cert)


# ---------------------------------------------------------------------------------------------- files, laziness


def test_files_permissions_and_nothing_outside_the_directory(tmp_path: Path) -> None:
    directory = tmp_path / "pki"
    pki = TestPKI(directory)
    assert not directory.exists()  # lazy: nothing until a certificate is asked for
    leaf = pki.serv_ssl(FQDN)
    pki.igc_trust_pem, pki.crl_path()
    assert [p.name for p in tmp_path.iterdir()] == ["pki"]
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    keys = sorted(directory.rglob("*.key.pem"))
    assert {leaf.key_path, pki.igc_root.key_path, pki.igc_org.key_path} == set(keys)
    for key in keys:
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    for path in directory.rglob("*"):
        assert path.resolve().is_relative_to(directory.resolve())
        if path.is_dir():
            assert stat.S_IMODE(path.stat().st_mode) == 0o700
    assert not list(directory.rglob("*.tmp"))
    # an Issued loads straight into Python ssl
    ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(leaf.chain_path, leaf.key_path)


def test_lazy_and_cached(tmp_path: Path) -> None:
    pki = TestPKI(tmp_path / "pki")
    first = pki.serv_ssl(FQDN)
    assert set(pki.issued()) == {"igc_root", "igc_org", f"serv_ssl:{FQDN}"}  # no market or rogue CA yet
    assert pki.serv_ssl(FQDN) is first
    assert pki.igc_root is pki.igc_root
    other_ou = pki.serv_ssl(FQDN, ou="999999999999999")  # another DN gets its own logical name
    assert other_ou.name == f"serv_ssl:CN={FQDN},OU=999999999999999,O=DRIMCHECK CENTRE IMAGERIE TEST,ST=Paris (75),C=FR"
    with pytest.raises(ValueError):  # same logical name, different content
        pki.issue(first.name, subject=first.cert.subject, profile="org_sign")
    custom = pki.issue(
        "client-ip",
        subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "loopback")]),
        profile="serv_ssl",
        san=["127.0.0.1", "localhost"],
    )
    san = ext(custom.cert, x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    with pytest.raises(ValueError):
        pki.issue("x", subject=custom.cert.subject, profile="nope")
    with pytest.raises(ValueError):
        pki.issue("igc_root", subject=custom.cert.subject, profile="serv_ssl")


def test_reused_directory_never_keeps_trust_bundles_of_older_cas(tmp_path: Path) -> None:
    """Issue 15 item 5: a second PKI in the same folder rewrites every bundle from its own CAs."""
    first = TestPKI(tmp_path / "pki")
    old_market, old_chain = first.market_trust_pem.read_bytes(), first.igc_chain_pem.read_bytes()
    second = TestPKI(tmp_path / "pki")
    leaf = second.market_ov("vi1.349.mesimagesmedicales.fr")
    assert second.market_trust_pem.read_bytes() != old_market
    assert second.igc_chain_pem.read_bytes() != old_chain
    trusted = x509.load_pem_x509_certificate(second.market_trust_pem.read_bytes())
    leaf.cert.verify_directly_issued_by(trusted)
    handshake_ok = handshake(leaf.server_context(), trust_context([second.market_trust_pem]),
                             "vi1.349.mesimagesmedicales.fr")
    assert handshake_ok.ok, (handshake_ok.client_error, handshake_ok.server_error)


def test_loaded_cas_and_leaves_are_reused_and_new_leaves_do_not_outlive_them(tmp_path: Path) -> None:
    """What a test kit relies on: CAs and the DUT's leaf loaded from files, the rest issued from them."""
    maker = TestPKI(tmp_path / "maker", ca_lifetime=timedelta(days=30), leaf_lifetime=timedelta(days=30))
    dut = maker.serv_ssl(FQDN)
    run = TestPKI(tmp_path / "run")
    for name in ("igc_root", "igc_org"):
        ca = maker.issued()[name]
        run.load(name, ca.cert_path, ca.key_path)
    run.load(dut.name, dut.cert_path, dut.key_path, chain_path=dut.chain_path, profile="serv_ssl", issuer="igc_org")
    assert run.serv_ssl(FQDN).cert == dut.cert  # the installed certificate, not a new one
    assert run.igc_root.cert == maker.igc_root.cert
    sim = run.serv_ssl("dmp.drimcheck.test")  # per-run leaf from the loaded CA, clamped to the CA's life
    sim.cert.verify_directly_issued_by(maker.igc_org.cert)
    assert sim.cert.not_valid_after_utc == maker.igc_org.cert.not_valid_after_utc
    assert verify_igc(run, sim).returncode == 0
    with pytest.raises(ValueError):  # a CA file that is not the expected CA
        TestPKI(tmp_path / "other").load("igc_root", maker.igc_org.cert_path, maker.igc_org.key_path)
    with pytest.raises(ValueError):  # an intermediate before its root
        TestPKI(tmp_path / "other2").load("igc_org", maker.igc_org.cert_path, maker.igc_org.key_path)


def test_reused_directory_with_kit_cas_loaded_gets_bundles_of_the_loaded_cas(tmp_path: Path) -> None:
    """Issue 15 item 6, the `[pki] kit` path: a run folder first used by a throwaway PKI, then by a run that loads
    a kit's CAs, holds the kit's CAs in every bundle (never the throwaway's), and chains validate against them."""
    kit = TestPKI(tmp_path / "kit")
    throwaway = TestPKI(tmp_path / "run")
    stale = {"market": throwaway.market_trust_pem.read_bytes(), "igc": throwaway.igc_trust_pem.read_bytes()}
    run = TestPKI(tmp_path / "run")
    for name in ("igc_root", "igc_org", "market_ca"):
        ca = kit._ca(name)
        run.load(name, ca.cert_path, ca.key_path)
    assert run.market_trust_pem.read_bytes() == kit.market_ca.cert.public_bytes(Encoding.PEM) != stale["market"]
    assert run.igc_trust_pem.read_bytes() == kit.igc_root.cert.public_bytes(Encoding.PEM) != stale["igc"]
    fqdn = "vi1.349.mesimagesmedicales.fr"
    outcome = handshake(run.market_ov(fqdn).server_context(), trust_context([run.market_trust_pem]), fqdn)
    assert outcome.ok, (outcome.client_error, outcome.server_error)
