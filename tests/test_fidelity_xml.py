"""Fidelity: what the reference DRIMbox and the simulators sign or submit, judged by software nobody here wrote.

* ``xmlsec1 --verify`` (Debian xmlsec1, libxmlsec1 + OpenSSL) on the VIHF assertion the reference Source sends to
  the DMP simulator with its ITI-41 submission, and on the whitelist the whitelist simulator publishes (XAdES).
* lxml against published XML schemas: the W3C XMLDSig schema and ETSI's XAdES 1.3.2 schema (both shipped by the
  ``signxml`` package, a dependency of the project) for those signatures; the OASIS ebRS 3.0 schemas
  (``lcm.xsd``, ``rim.xsd``, ``rs.xsd``, ``query.xsd``) for the recorded ``lcm:SubmitObjectsRequest``.

The OASIS ebRS 3.0 schemas are published by OASIS (docs.oasis-open.org/regrep/v3.0/schema/) and shipped by no
PyPI, npm or Debian package found (see docs/psc-proxy-peers.md, "Fidelity suite"); the test bed reaches no other
site. Point ``DRIMCHECK_EBRS_XSD_DIR`` at a folder holding the four OASIS files to run that validation; without
them it is skipped, and the submission is still read with the ebRS namespaces and validated where a schema is
available (the signatures).
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from lxml import etree

from drimcheck import xds
from fixtures.pki import TestPKI
from simulators.dmp import DmpSimulator
from simulators.peer_conso import PeerIdentities
from simulators.whitelist import NOMINAL, WhitelistVectors
from tests.test_dmp import build, submit
from tests.test_kos import reference_kos

XMLSEC1 = shutil.which("xmlsec1")
SIGNXML_SCHEMAS = Path(__import__("signxml").__file__).parent / "schemas"
XADES_SCHEMA = SIGNXML_SCHEMAS.parent / "xades" / "schemas" / "XAdES01903v132-201601.xsd"
EBRS_FILES = ("lcm.xsd", "rim.xsd", "rs.xsd", "query.xsd")
NS = {"ds": "http://www.w3.org/2000/09/xmldsig#", "saml2": "urn:oasis:names:tc:SAML:2.0:assertion",
      "lcm": "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0", "rim": "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0",
      "xades": "http://uri.etsi.org/01903/v1.3.2#"}


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> TestPKI:
    return TestPKI(tmp_path_factory.mktemp("fidelity-xml") / "pki")


@pytest.fixture(scope="module")
def submission(pki) -> xds.DmpExchange:
    """The reference Source's ITI-41 (KOS + signature document, signed VIHF), as the DMP simulator recorded it."""
    from simulators.drimbox import source_xds as sx

    signer = pki.org_sign()
    creds = sx.Credentials(str(signer.cert_path), str(signer.key_path), str(signer.chain_path))
    exchange = submit(DmpSimulator(), build(reference_kos("fidelity-xml"), creds), pki.org_auth_cli().cert.public_bytes(
        __import__("cryptography.hazmat.primitives.serialization", fromlist=["Encoding"]).Encoding.DER))
    assert exchange.request is not None and exchange.success, (exchange.parse_error, exchange.errors)
    return exchange


@pytest.fixture(scope="module")
def whitelist(pki) -> bytes:
    vectors = WhitelistVectors(pki, PeerIdentities(pki))
    return vectors.get(NOMINAL)


def _schema(path: Path) -> etree.XMLSchema:
    parser = etree.XMLParser(no_network=True, resolve_entities=False, load_dtd=False)
    return etree.XMLSchema(etree.parse(str(path), parser))


def _standalone(el: etree._Element) -> etree._Element:
    return etree.fromstring(etree.tostring(copy.deepcopy(el)))


def _root_part(exchange: xds.DmpExchange) -> bytes:
    return xds.parse_mime(exchange.content_type, exchange.body).root


def _xmlsec1(pki: TestPKI, document: bytes, tmp_path: Path, *id_attrs: str) -> subprocess.CompletedProcess:
    path = tmp_path / "signed.xml"
    path.write_bytes(document)
    cmd = [XMLSEC1, "--verify", "--trusted-pem", str(pki.igc_root.cert_path), "--untrusted-pem",
           str(pki.igc_org.cert_path)]
    for attr in id_attrs:
        cmd += ["--id-attr:" + attr.split("|")[0], attr.split("|")[1]]
    return subprocess.run(cmd + [str(path)], capture_output=True, text=True, timeout=30)


# --------------------------------------------------------------------------- VIHF (reference Source -> DMP)


@pytest.mark.skipif(XMLSEC1 is None, reason="xmlsec1 absent (paquet Debian xmlsec1)")
def test_xmlsec1_verifies_the_vihf_the_reference_source_sends(pki, submission, tmp_path) -> None:
    envelope = _root_part(submission)
    proc = _xmlsec1(pki, envelope, tmp_path, "ID|urn:oasis:names:tc:SAML:2.0:assertion:Assertion")
    assert proc.returncode == 0, proc.stderr
    assert "SignedInfo References (ok/all): 1/1" in proc.stderr
    # the same envelope with the assertion's NameID changed by one character: xmlsec1 refuses it
    tree = etree.fromstring(envelope)
    name_id = tree.find(".//saml2:Assertion/saml2:Subject/saml2:NameID", NS)
    assert name_id is not None and name_id.text
    name_id.text = name_id.text[:-1] + ("0" if name_id.text[-1] != "0" else "1")
    tampered = etree.tostring(tree, xml_declaration=True, encoding="UTF-8")
    assert _xmlsec1(pki, tampered, tmp_path, "ID|urn:oasis:names:tc:SAML:2.0:assertion:Assertion").returncode != 0


def test_vihf_signature_is_valid_against_the_w3c_xmldsig_schema(submission) -> None:
    signature = submission.request.vihf.signature
    assert signature is not None
    schema = _schema(SIGNXML_SCHEMAS / "xmldsig-core-schema.xsd")
    doc = _standalone(signature)
    assert schema.validate(doc), schema.error_log


# --------------------------------------------------------------------------- whitelist (XAdES)


@pytest.mark.skipif(XMLSEC1 is None, reason="xmlsec1 absent (paquet Debian xmlsec1)")
def test_xmlsec1_verifies_the_whitelist_simulator_signature(pki, whitelist, tmp_path) -> None:
    proc = _xmlsec1(pki, whitelist, tmp_path, "Id|http://uri.etsi.org/01903/v1.3.2#:SignedProperties")
    assert proc.returncode == 0, proc.stderr
    assert "SignedInfo References (ok/all): 2/2" in proc.stderr  # the document and the XAdES SignedProperties
    tampered = whitelist.replace(b"db3.test.mesimagesmedicales.fr", b"db4.test.mesimagesmedicales.fr", 1)
    assert tampered != whitelist
    assert _xmlsec1(pki, tampered, tmp_path, "Id|http://uri.etsi.org/01903/v1.3.2#:SignedProperties").returncode != 0


def test_whitelist_signature_is_valid_against_the_xmldsig_and_xades_schemas(whitelist) -> None:
    root = etree.fromstring(whitelist)
    signature = root.find(".//ds:Signature", NS)
    assert signature is not None
    dsig = _schema(SIGNXML_SCHEMAS / "xmldsig-core-schema.xsd")
    assert dsig.validate(_standalone(signature)), dsig.error_log
    qualifying = signature.find(".//xades:QualifyingProperties", NS)
    assert qualifying is not None
    xades = _schema(XADES_SCHEMA)
    assert xades.validate(_standalone(qualifying)), xades.error_log


# --------------------------------------------------------------------------- ITI-41 SubmitObjectsRequest (ebRS 3.0)


def ebrs_dir() -> Path | None:
    folder = os.environ.get("DRIMCHECK_EBRS_XSD_DIR")
    if folder and all((Path(folder) / name).is_file() for name in EBRS_FILES):
        return Path(folder)
    return None


def test_submission_is_an_ebrs_submit_objects_request(submission) -> None:
    """Without the schemas: the recorded body is a SOAP envelope whose lcm:SubmitObjectsRequest holds a
    rim:RegistryObjectList of ebRIM 3.0 objects (what any XDS.b registry parses)."""
    envelope = etree.fromstring(_root_part(submission))
    request = envelope.find(".//lcm:SubmitObjectsRequest", NS)
    assert request is not None
    objects = request.find("rim:RegistryObjectList", NS)
    assert objects is not None
    kinds = {etree.QName(child).localname for child in objects}
    assert {"ExtrinsicObject", "RegistryPackage", "Association"} <= kinds
    assert all(etree.QName(child).namespace == NS["rim"] for child in objects)


@pytest.mark.skipif(ebrs_dir() is None, reason="schémas OASIS ebRS 3.0 absents : DRIMCHECK_EBRS_XSD_DIR=<dossier avec "
                                               "lcm.xsd rim.xsd rs.xsd query.xsd> (aucun paquet PyPI/npm/Debian ne les "
                                               "fournit)")
def test_submit_objects_request_is_valid_against_the_oasis_ebrs_schemas(submission, tmp_path) -> None:
    folder = ebrs_dir()
    assert folder is not None
    wrapper = tmp_path / "ebrs.xsd"
    imports = "".join(f'<xs:import namespace="urn:oasis:names:tc:ebxml-regrep:xsd:{n[:-4]}:3.0" '
                      f'schemaLocation="{(folder / n).as_uri()}"/>' for n in EBRS_FILES)
    wrapper.write_text(f'<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">{imports}</xs:schema>')
    schema = _schema(wrapper)
    envelope = etree.fromstring(_root_part(submission))
    request = _standalone(envelope.find(".//lcm:SubmitObjectsRequest", NS))
    assert schema.validate(request), schema.error_log
    spoiled = copy.deepcopy(request)  # the schemas are really applied: an attribute ebRIM does not define fails
    spoiled.find("rim:RegistryObjectList", NS)[0].set("drimcheck", "1")
    assert not schema.validate(spoiled)
