"""The whitelist builder and XAdES signer reproduce ANS's files element by element, and xmlsec1 verifies them."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from lxml import etree

from fixtures import whitelist as wl
from fixtures.pki import TestPKI

ANS = Path(__file__).resolve().parent.parent / "fixtures" / "ans"
CURRENT = ANS / "LISTEBLANCHE_DRIM-M_SIGNEE_TEST-current.xml"
SAMPLE_2024 = ANS / "LISTEBLANCHE_DRIM-M_TEST_SIGNEE_2024-informatif.xml"
GENERATED = datetime(2026, 6, 19, 18, 6, 52, tzinfo=UTC)
XMLSEC1 = shutil.which("xmlsec1")


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> TestPKI:
    return TestPKI(tmp_path_factory.mktemp("wl") / "pki")


def ans_domains(path: Path) -> list[wl.Domain]:
    root = etree.parse(str(path)).getroot()
    ns = etree.QName(root).namespace
    out = []
    for d in root.iter(f"{{{ns}}}Domaine"):
        f = {etree.QName(c).localname: (c.text or "") for c in d}
        out.append(wl.Domain(f["Identifiant"], f["db"], f["vi"], f["Denomination"], f["DNCertificatOperateur"],
                             f["SupportContact"], f["DateMAJ"],
                             {"ResponsableContact": f["ResponsableContact"]} if "ResponsableContact" in f else {}))
    return out


def skeleton(el: etree._Element) -> list:
    """Tag, attribute names and the values that are constants of the profile, recursively (ids normalised)."""
    attrs = {}
    for k, v in sorted(el.attrib.items()):
        v = re.sub(r"[0-9a-f]{32}", "<id>", v)
        attrs[k] = v
    text = (el.text or "").strip()
    constant_text = text if el.tag.endswith(("}XPath", "}MimeType")) else ("<b64>" if text else "")
    children = [skeleton(c) for c in el if isinstance(c.tag, str)]
    return [el.tag, attrs, constant_text, children]


def signature_of(data: bytes) -> etree._Element:
    return etree.fromstring(data).find(f"{{{wl.DS}}}Signature")


def test_unsigned_layout_is_the_ans_layout():
    data = wl.build_whitelist(ans_domains(CURRENT)[:2], generated_at=GENERATED)
    assert data.startswith(b'<?xml version="1.0" encoding="UTF-8" standalone="no"?><ListeBlancheDRIM-M '
                           b'xmlns="https://github.com/ansforge/DRIM-M_DATA" versionFormat="1.0.0">\n'
                           b"    <DateDeGeneration>2026-06-19T18:06:52Z</DateDeGeneration>\n    <ListeDomaines>\n")
    assert data.endswith(b"        </Domaine>\n    </ListeDomaines>\n</ListeBlancheDRIM-M>")
    assert ans_domains_from_bytes(data) == ans_domains(CURRENT)[:2]


def ans_domains_from_bytes(data: bytes) -> list[wl.Domain]:
    tmp = etree.fromstring(data)
    ns = etree.QName(tmp).namespace
    return [wl.Domain(*(d.find(f"{{{ns}}}{t}").text or "" for t in
                        ("Identifiant", "db", "vi", "Denomination", "DNCertificatOperateur", "SupportContact", "DateMAJ")))
            for d in tmp.iter(f"{{{ns}}}Domaine")]


def test_signature_matches_the_real_2026_sample_element_by_element(pki):
    ours = signature_of(wl.signed_whitelist(ans_domains(CURRENT), pki.whitelist_signer(), generated_at=GENERATED))
    real = signature_of(CURRENT.read_bytes())
    assert skeleton(ours) == skeleton(real)
    # namespace declarations sit where ANS puts them
    for xp in ("//*[local-name()='XPath']", "//*[local-name()='QualifyingProperties']"):
        assert ours.xpath(xp)[0].nsmap == real.xpath(xp)[0].nsmap
    assert len(ours.findall(f".//{{{wl.DS}}}X509Certificate")) == 3  # leaf, intermediate, root


def test_signature_matches_the_real_2024_sample_element_by_element(pki):
    domains = ans_domains(SAMPLE_2024)
    ours = signature_of(wl.signed_whitelist(domains, pki.whitelist_signer(), generated_at=GENERATED,
                                            namespace=wl.NS_2024, key_info="leaf-with-subject",
                                            mime_type="application/octet-stream"))
    real = signature_of(SAMPLE_2024.read_bytes())
    assert skeleton(ours) == skeleton(real)
    subject = ours.find(f".//{{{wl.DS}}}X509SubjectName").text
    assert subject == "CN=Liste Blanche DRIM-M,OU=318751275100020,O=AGENCE DU NUMERIQUE EN SANTE,ST=Paris (75),C=FR"


def test_issuer_serial_v2_encoding_is_byte_identical_to_ans():
    root = etree.parse(str(CURRENT)).getroot()
    leaf = x509.load_der_x509_certificate(base64.b64decode(root.find(f".//{{{wl.DS}}}X509Certificate").text))
    expected = base64.b64decode(root.find(f".//{{{wl.XADES}}}IssuerSerialV2").text)
    assert wl.issuer_serial_v2(leaf) == expected


def test_own_digests_reproduce_the_real_sample_digests():
    """Our canonicalisation (used to sign) gives the DigestValues eSignSanté/DSS computed."""
    import hashlib

    root = etree.fromstring(CURRENT.read_bytes())
    sig = root.find(f"{{{wl.DS}}}Signature")
    refs = sig.findall(f"{{{wl.DS}}}SignedInfo/{{{wl.DS}}}Reference")
    props = sig.find(f".//{{{wl.XADES}}}SignedProperties")
    assert base64.b64encode(hashlib.sha256(wl.c14n(props)).digest()).decode() == refs[1].find(f"{{{wl.DS}}}DigestValue").text
    unsigned = wl.strip_signature(CURRENT.read_bytes())
    doc_digest = hashlib.sha256(wl.c14n(etree.fromstring(unsigned).getroottree())).digest()
    assert base64.b64encode(doc_digest).decode() == refs[0].find(f"{{{wl.DS}}}DigestValue").text


def xmlsec1_verify(path: Path, pki: TestPKI) -> subprocess.CompletedProcess:
    return subprocess.run([XMLSEC1, "--verify", "--trusted-pem", str(pki.igc_trust_pem), "--untrusted-pem",
                           str(pki.igc_org.cert_path), "--id-attr:Id", "http://uri.etsi.org/01903/v1.3.2#:SignedProperties",
                           str(path)], capture_output=True, text=True, timeout=30)


@pytest.mark.skipif(XMLSEC1 is None, reason="xmlsec1 CLI not installed (Debian package xmlsec1)")
@pytest.mark.parametrize("key_info", ["chain", "leaf-with-subject"])
def test_xmlsec1_verifies_both_references_of_our_signature(pki, tmp_path, key_info):
    path = tmp_path / "l.xml"
    path.write_bytes(wl.signed_whitelist(ans_domains(CURRENT), pki.whitelist_signer(), generated_at=GENERATED,
                                         key_info=key_info))
    proc = xmlsec1_verify(path, pki)
    assert proc.returncode == 0, proc.stderr
    assert "SignedInfo References (ok/all): 2/2" in proc.stderr


@pytest.mark.skipif(XMLSEC1 is None, reason="xmlsec1 CLI not installed")
@pytest.mark.parametrize("transform,xmlsec_accepts", [
    (lambda d: wl.replace_once(d, "<db>db3.test", "<db>db4.test"), False),  # content altered
    (lambda d: wl.replace_once(d, "    <ListeDomaines>", "  <ListeDomaines>"), False),  # whitespace altered
    (lambda d: wl.alter_signing_time(d, datetime(2027, 1, 1, tzinfo=UTC)), False),  # SignedProperties
    (lambda d: wl.insert_comment(d, "3.test.mesimagesmedicales.fr</db>"), True),  # comments are outside the signed node-set
    (lambda d: wl.inject_domain_in_object(d, ans_domains(CURRENT)[0]), True),  # hidden in ds:Object: still valid
])
def test_attack_transforms_have_the_xmldsig_effect_they_claim(pki, tmp_path, transform, xmlsec_accepts):
    signed = wl.signed_whitelist(ans_domains(CURRENT)[:3], pki.whitelist_signer(), generated_at=GENERATED)
    path = tmp_path / "attack.xml"
    path.write_bytes(transform(signed))
    assert (xmlsec1_verify(path, pki).returncode == 0) is xmlsec_accepts


def test_unsigned_properties_variant_has_a_single_reference(pki):
    data = wl.signed_whitelist(ans_domains(CURRENT)[:1], pki.whitelist_signer(), generated_at=GENERATED,
                               sign_properties=False)
    sig = signature_of(data)
    assert len(sig.findall(f"{{{wl.DS}}}SignedInfo/{{{wl.DS}}}Reference")) == 1
    assert sig.find(f".//{{{wl.XADES}}}SignedProperties") is not None


def test_replace_once_refuses_a_vacuous_or_ambiguous_edit():
    with pytest.raises(ValueError):
        wl.replace_once(b"abc", "x", "y")
    with pytest.raises(ValueError):
        wl.replace_once(b"aa", "a", "b")


def test_strip_signature_gives_back_the_unsigned_document(pki):
    unsigned = wl.build_whitelist(ans_domains(CURRENT)[:2], generated_at=GENERATED)
    signed = wl.sign_whitelist(unsigned, pki.whitelist_signer())
    assert wl.c14n(etree.fromstring(wl.strip_signature(signed)).getroottree()) == \
        wl.c14n(etree.fromstring(unsigned).getroottree())
