"""The independent whitelist verifier (drimcheck.whitelist) and `drimcheck check-whitelist`.

Verdicts on the real ANS samples, on every vector the campaign serves, cross-checked with the
xmlsec1 CLI; XXE and entity expansion inertness; exit codes of the command.
"""

from __future__ import annotations

import base64
import http.server
import json
import re
import shutil
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from drimcheck import whitelist as v
from fixtures import whitelist as wl
from fixtures.pki import TestPKI
from simulators.peer_conso import PeerIdentities
from simulators.whitelist import WhitelistVectors

ANS = Path(__file__).resolve().parent.parent / "fixtures" / "ans"
CURRENT = ANS / "LISTEBLANCHE_DRIM-M_SIGNEE_TEST-current.xml"
SAMPLE_2024 = ANS / "LISTEBLANCHE_DRIM-M_TEST_SIGNEE_2024-informatif.xml"
UNSIGNED = ANS / "LISTEBLANCHE_DRIM-M_NONSIGNEE_TEST.xml"
CRL_2024 = ANS / "ACI-EL-ORG-TEST_2024-07-10.crl.der"
XMLSEC1 = shutil.which("xmlsec1")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def codes(report: v.WhitelistReport) -> set[str]:
    return {p.code for p in report.problems}


# ------------------------------------------------------------------------------------------- real samples


def test_current_ans_list_is_valid_without_revocation_check():
    report = v.verify_whitelist(CURRENT.read_bytes(), check_revocation=False, at=at("2026-11-28T00:00:00Z"))
    assert report.valid, report.problems
    assert report.checks["integrite"] == "ok" and report.checks["revocation"] == "non vérifié"
    assert len(report.domains) == 17 and report.domains[0].db == "db3.test.mesimagesmedicales.fr"
    assert report.signer["subject"].startswith("CN=Liste Blanche DRIM-M,OU=318751275100020")
    assert report.chain[-1].startswith("CN=TEST AC RACINE IGC-SANTE ELEMENTAIRE")


def test_current_ans_list_without_crl_has_unknown_revocation_and_is_not_valid():
    report = v.verify_whitelist(CURRENT.read_bytes(), at=at("2026-11-28T00:00:00Z"))
    assert not report.valid and codes(report) == {"revocation-inconnue"} and report.domains == []


def test_2024_list_is_valid_before_its_signer_expires_and_not_after():
    data = SAMPLE_2024.read_bytes()
    before = v.verify_whitelist(data, check_revocation=False, at=at("2026-09-11T00:00:00Z"))
    assert before.valid, before.problems
    assert before.domains[0].extra == {"ResponsableContact": "antoine.tapis@op01.fr, 07 33 65 18 37"}
    after = v.verify_whitelist(data, check_revocation=False, at=at("2026-09-13T00:00:00Z"))
    assert not after.valid and codes(after) == {"certificat-expire"}


def test_2024_list_with_the_ans_crl_of_its_week_is_valid_and_the_crl_is_used():
    crl = v.load_crl(CRL_2024)
    report = v.verify_whitelist(SAMPLE_2024.read_bytes(), crls=[crl], at=at("2024-07-12T12:00:00Z"))
    assert report.valid, report.problems
    assert report.checks["revocation"] == "ok"
    stale = v.verify_whitelist(SAMPLE_2024.read_bytes(), crls=[crl], at=at("2025-01-01T00:00:00Z"))
    assert codes(stale) == {"revocation-inconnue"}  # nextUpdate 2024-07-16 passed: the CRL says nothing anymore


def test_unsigned_ans_list_is_not_valid():
    report = v.verify_whitelist(UNSIGNED.read_bytes(), check_revocation=False)
    assert not report.valid and codes(report) == {"non-signee"} and report.domain_count == 6


def test_default_trust_anchors_are_the_public_igc_sante_test_root_and_intermediate():
    anchors = v.default_trust_anchors()
    assert [a.subject.rfc4514_string().split(",")[0] for a in anchors] == [
        "CN=TEST AC RACINE IGC-SANTE ELEMENTAIRE", "CN=TEST AC IGC-SANTE ELEMENTAIRE ORGANISATIONS"]
    assert anchors[0].fingerprint(__import__("cryptography.hazmat.primitives.hashes", fromlist=["SHA256"]).SHA256()).hex() \
        == "01325aeb193871eec90fa89556804e4185cb362e0ca87a3d79939c71186da805"


# ------------------------------------------------------------------------------------------- campaign vectors


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> TestPKI:
    return TestPKI(tmp_path_factory.mktemp("verifier") / "pki")


@pytest.fixture(scope="module")
def vectors(pki) -> WhitelistVectors:
    vec = WhitelistVectors(pki, PeerIdentities(pki))
    vec.preissue()
    return vec


def verify(pki, data: bytes, **kw) -> v.WhitelistReport:
    return v.verify_whitelist(data, trust_anchors=[pki.igc_root.cert, pki.igc_org.cert], crls=[pki.crl()], **kw)


EXPECTED = {
    "nominale": set(),
    "retrait": set(),
    "format-2024": set(),
    "commentaire": set(),
    "non-signee": {"non-signee"},
    "contenu-altere": {"signature-invalide"},
    "espace-modifie": {"signature-invalide"},
    "proprietes-alterees": {"signature-invalide"},
    "proprietes-non-signees": {"proprietes-non-signees"},
    "enveloppe-injectee": {"contenu-hors-signature"},
    "enveloppe-deplacee": {"signature-deplacee", "contenu-hors-signature"},
    "identifiants-dupliques": {"identifiants-dupliques", "contenu-hors-signature", "signature-invalide"},
    "signataire-cn": {"signataire-inattendu"},
    "signataire-ou": {"signataire-inattendu"},
    "signataire-autre-ac": {"chaine-non-fiable"},
    "signataire-expire": {"certificat-expire"},
    "signataire-pas-encore-valide": {"pas-encore-valide", "signingtime"},
    "signataire-revoque": {"certificat-revoque"},
    "crl-injoignable": {"revocation-inconnue"},
    "crl-perimee": {"revocation-inconnue"},
    "doctype-xxe": {"doctype"},
    "expansion-entites": {"doctype"},
}


@pytest.mark.parametrize("vector", sorted(EXPECTED))
def test_every_campaign_vector_gets_the_expected_verdict(pki, vectors, vector):
    report = verify(pki, vectors.get(vector))
    assert codes(report) == EXPECTED[vector], [p.message for p in report.problems]
    assert report.valid is (not EXPECTED[vector])


def test_domains_returned_are_exactly_the_signed_ones(pki, vectors):
    report = verify(pki, vectors.get("nominale"))
    signed = vectors.nominal_domains()
    assert report.domains == signed  # the very records the list was built from
    wrapped = verify(pki, vectors.get("enveloppe-injectee"))
    assert wrapped.domains == [] and wrapped.domain_count == len(signed)


def test_a_comment_never_truncates_a_signed_value(pki, vectors):
    report = verify(pki, vectors.get("commentaire"))
    assert report.valid
    assert report.domains[-1].dn.endswith(",C=FRX")  # the full string value, not the text before the comment


def test_the_crl_must_be_signed_by_the_issuer(pki, vectors):
    forged = pki.rogue_ca  # same issuer DN as igc_org, another key
    from cryptography.hazmat.primitives import hashes

    crl = (x509.CertificateRevocationListBuilder().issuer_name(forged.cert.subject)
           .last_update(pki.now).next_update(pki.now.replace(year=pki.now.year + 1))
           .sign(forged.key, hashes.SHA256()))
    report = v.verify_whitelist(vectors.get("nominale"), trust_anchors=[pki.igc_root.cert], crls=[crl])
    assert codes(report) == {"revocation-inconnue"}


def test_untrusted_anchor_set_rejects_the_test_pki_list(vectors):
    report = v.verify_whitelist(vectors.get("nominale"), check_revocation=False)  # public IGC-Santé TEST anchors
    assert codes(report) == {"chaine-non-fiable"}


def test_not_xml_is_unusable_input():
    for data in (b"", b"   ", b"<ListeBlancheDRIM-M>", b"\x00\x01binary"):
        with pytest.raises(v.UnusableInput):
            v.verify_whitelist(data)


def test_issuer_serial_decoder_rejects_garbage():
    with pytest.raises(ValueError):
        v.decode_issuer_serial(b"\x30\x03\x02\x01")


# ------------------------------------------------------------------------------------------- XXE / expansion


class _Canary(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self):
        _Canary.hits.append(self.path)
        body = b'<!ENTITY leak "x">'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_parser_never_fetches_external_entities_nor_reads_files(pki, vectors, tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Canary)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET-CONTENT")
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/canary"
        data = wl.add_doctype(vectors.get("nominale"), wl.xxe_doctype(url))
        report = verify(pki, data)
        file_xxe = wl.add_doctype(vectors.get("nominale"), f'<!DOCTYPE ListeBlancheDRIM-M [<!ENTITY s SYSTEM "file://{secret}">]>')
        file_xxe = wl.replace_once(file_xxe, b"<Denomination>ANS</Denomination>", b"<Denomination>&s;</Denomination>")
        file_report = verify(pki, file_xxe)
    finally:
        server.shutdown()
    assert _Canary.hits == []
    assert codes(report) == {"doctype"}
    assert "doctype" in codes(file_report)
    assert all("SECRET-CONTENT" not in d.denomination for d in file_report.domains)
    assert "SECRET-CONTENT" not in json.dumps(file_report.to_dict(), default=str)


def test_billion_laughs_is_refused_quickly(pki, vectors):
    t0 = time.monotonic()
    report = verify(pki, vectors.get("expansion-entites"))
    assert time.monotonic() - t0 < 2.0
    assert "doctype" in codes(report)


# ------------------------------------------------------------------------------------------- xmlsec1 cross-check


def _xmlsec1_integrity(path: Path, leaf_pem: Path) -> bool:
    """xmlsec1 verifying XMLDSig integrity only, with the signer's key (no X.509 processing)."""
    proc = subprocess.run([XMLSEC1, "--verify", "--pubkey-cert-pem", str(leaf_pem), "--enabled-key-data", "key-name",
                           "--id-attr:Id", "http://uri.etsi.org/01903/v1.3.2#:SignedProperties", str(path)],
                          capture_output=True, text=True, timeout=30)
    return proc.returncode == 0


@pytest.mark.skipif(XMLSEC1 is None, reason="xmlsec1 CLI not installed (Debian package xmlsec1)")
@pytest.mark.parametrize("vector", ["nominale", "format-2024", "commentaire", "contenu-altere", "espace-modifie",
                                    "proprietes-alterees", "signataire-expire", "signataire-autre-ac"])
def test_integrity_verdict_agrees_with_xmlsec1(pki, vectors, tmp_path, vector):
    data = vectors.get(vector)
    path = tmp_path / "l.xml"
    path.write_bytes(data)
    leaf = x509.load_der_x509_certificate(base64.b64decode(re.search(rb"<ds:X509Certificate>(.*?)<", data).group(1)))
    leaf_pem = tmp_path / "leaf.pem"
    leaf_pem.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    ours = verify(pki, data).checks.get("integrite")
    assert ours in ("ok", "échec")
    assert (ours == "ok") is _xmlsec1_integrity(path, leaf_pem)


@pytest.mark.skipif(XMLSEC1 is None, reason="xmlsec1 CLI not installed")
def test_xmlsec1_and_our_verifier_agree_on_the_real_samples(tmp_path):
    anchors = ANS.parent.parent / "drimcheck" / "data"
    for path, when, ours_valid in ((CURRENT, "2026-11-28+00:00:00", True), (SAMPLE_2024, "2024-07-12+12:00:00", True),
                                   (SAMPLE_2024, "2026-09-13+00:00:00", False)):
        proc = subprocess.run([XMLSEC1, "--verify", "--trusted-pem", str(anchors / "igc-sante-test-racine.pem"),
                               "--untrusted-pem", str(anchors / "igc-sante-test-organisations.pem"),
                               "--verification-gmt-time", when,
                               "--id-attr:Id", "http://uri.etsi.org/01903/v1.3.2#:SignedProperties", str(path)],
                              capture_output=True, text=True, timeout=30)
        report = v.verify_whitelist(path.read_bytes(), check_revocation=False, at=at(when.replace("+", "T") + "Z"))
        assert (proc.returncode == 0) is ours_valid is report.valid, (path.name, when, proc.stderr[-300:])


# ------------------------------------------------------------------------------------------- the command


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "drimcheck", "check-whitelist", *args], capture_output=True,
                          text=True, timeout=60)


def test_cli_verdicts_and_exit_codes_on_the_real_samples():
    assert run_cli(str(CURRENT), "--no-revocation").returncode == 0
    assert run_cli(str(CURRENT)).returncode == 1
    assert run_cli(str(SAMPLE_2024), "--at", "2025-01-01T00:00:00Z", "--no-revocation").returncode == 0
    assert run_cli(str(SAMPLE_2024), "--at", "2024-07-12T12:00:00Z", "--crl", str(CRL_2024)).returncode == 0
    assert run_cli(str(SAMPLE_2024), "--at", "2026-09-13", "--no-revocation").returncode == 1
    proc = run_cli(str(UNSIGNED), "--json", "--no-revocation")
    assert proc.returncode == 1
    report = json.loads(proc.stdout)
    assert report["valid"] is False and report["problems"][0]["code"] == "non-signee" and report["domains"] == []


def test_cli_json_lists_the_signed_domains():
    report = json.loads(run_cli(str(CURRENT), "--no-revocation", "--json").stdout)
    assert report["valid"] and len(report["domains"]) == 17 and report["checks"]["integrite"] == "ok"


def test_cli_with_a_test_pki_anchor_and_crl(pki, vectors, tmp_path):
    path = tmp_path / "l.xml"
    path.write_bytes(vectors.get("signataire-revoque"))
    crl = tmp_path / "igc.crl.pem"
    crl.write_bytes(pki.crl().public_bytes(serialization.Encoding.PEM))
    proc = run_cli(str(path), "--trust-anchor", str(pki.igc_chain_pem), "--crl", str(crl), "--json")
    assert proc.returncode == 1 and {p["code"] for p in json.loads(proc.stdout)["problems"]} == {"certificat-revoque"}
    path.write_bytes(vectors.get("nominale"))
    assert run_cli(str(path), "--trust-anchor", str(pki.igc_chain_pem), "--crl", str(crl)).returncode == 0
    # with the root alone as anchor, the intermediate comes from KeyInfo and needs the root's CRL too
    proc = run_cli(str(path), "--trust-anchor", str(pki.igc_trust_pem), "--crl", str(crl), "--json")
    assert proc.returncode == 1 and "révocation" in json.loads(proc.stdout)["problems"][0]["message"]
    root_crl = tmp_path / "root.crl.pem"
    root_crl.write_bytes(pki.crl("igc_root").public_bytes(serialization.Encoding.PEM))
    assert run_cli(str(path), "--trust-anchor", str(pki.igc_trust_pem), "--crl", str(crl), "--crl", str(root_crl)
                   ).returncode == 0


@pytest.mark.parametrize("args", [
    ["/nonexistent/list.xml"],
    [str(CURRENT), "--at", "tomorrow"],
    [str(CURRENT), "--trust-anchor", "/nonexistent.pem"],
    [str(CURRENT), "--crl", str(CURRENT)],  # not a CRL
    [str(CURRENT), "--trust-anchor", str(CRL_2024)],  # not a certificate
    [str(ANS / "README.md")],  # not XML
    [],
])
def test_cli_unusable_input_or_arguments_exit_2_in_one_line(args):
    proc = run_cli(*args)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_wl9_vectors_fail_on_revocation_only(pki, vectors):
    """The WL-9 signers chain to the IGC root through the second intermediate: with a valid CRL of that
    intermediate the list is valid (so the vectors isolate revocation), with the expired one it is not."""
    for vector in ("crl-injoignable", "crl-perimee"):
        data = vectors.get(vector)
        good = v.verify_whitelist(data, trust_anchors=[pki.igc_root.cert, pki.igc_org.cert],
                                  crls=[pki.crl(), pki.crl("igc_root"), pki.crl("igc_org_standard")])
        assert good.valid, [p.message for p in good.problems]
        stale = v.verify_whitelist(data, trust_anchors=[pki.igc_root.cert, pki.igc_org.cert],
                                   crls=[pki.crl(), pki.crl("igc_root"), pki.crl("igc_org_standard", expired=True)])
        assert codes(stale) == {"revocation-inconnue"}
        assert v.verify_whitelist(data, trust_anchors=[pki.igc_root.cert, pki.igc_org.cert],
                                  check_revocation=False).valid


def test_transform_without_algorithm_is_a_finding_not_a_crash():
    """A ds:Transform without its Algorithm attribute (hostile list) is reported, never a TypeError (found by mypy)."""
    data = re.sub(rb'<ds:Transform Algorithm="[^"]*"', b"<ds:Transform", CURRENT.read_bytes(), count=1)
    assert data != CURRENT.read_bytes()
    report = v.verify_whitelist(data, check_revocation=False, at=at("2026-11-28T00:00:00Z"))
    assert not report.valid
    assert report.checks.get("profil") == "échec"
