"""DMP simulator (registry, ITI-41/57, failures, recording, mTLS) and the XDS parsing/checks it feeds."""

from __future__ import annotations

import hashlib
import ssl

import httpx
import pytest

from drimcheck import xds
from drimcheck.checks import xds as xds_checks
from drimcheck.checks.kos import ExpectedIdentity
from drimcheck.evidence import EvidenceStore
from drimcheck.verdicts import Verdict
from fixtures.pki import POLICY_OIDS, TestPKI
from simulators.dmp import DmpSimulator
from simulators.drimbox import source_xds as sx
from tests.test_kos import ANSDATA, reference_kos

ANS_XDS = ANSDATA / "xds" / "publication.xml"
ANS_CTYPE = ('multipart/related;boundary="MIMEBoundary_Bound"; type="application/xop+xml"; start="<0.1>"; '
             'start-info="application/soap+xml"; action="urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b"')


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> TestPKI:
    return TestPKI(tmp_path_factory.mktemp("pki") / "pki")


@pytest.fixture(scope="module")
def signer(pki) -> sx.Credentials:
    s = pki.org_sign()
    return sx.Credentials(str(s.cert_path), str(s.key_path), str(s.chain_path))


@pytest.fixture(scope="module")
def trust(pki) -> xds_checks.TrustMaterial:
    return xds_checks.TrustMaterial([pki.igc_root.cert], [pki.igc_org.cert], (POLICY_OIDS["org_auth_cli"],),
                                    (POLICY_OIDS["org_sign"],))


@pytest.fixture(scope="module")
def kos_and_study():
    return reference_kos("dmp-tests")


def publication(study) -> sx.Publication:
    p = study.patient
    return sx.Publication(
        ins=p.ins, ins_oid=p.ins_oid, family=p.family, given=p.given, birth_date=p.birth_date, sex=p.sex,
        birthplace=p.birthplace_insee, study_uid=study.study_uid, accession=study.accession_number,
        accession_oid=study.accession_issuer_oid, order=study.order_placer_number, order_oid=study.order_placer_oid,
        author_id="801234560801", author_family="BIDEAULT", author_given="Jacques", author_role="10",
        author_specialty="SM44", structure_id="101235555", structure_name="Centre", facility_type="SA08",
        practice="AMBULATOIRE", modalities=["CT"], service_start="20240101100000", service_stop="20240101110000")


def expected(study) -> ExpectedIdentity:
    p = study.patient
    return ExpectedIdentity(study.study_uid, p.ins, p.ins_oid, p.ipp, study.accession_number, study.accession_issuer_oid,
                            study.order_placer_number, study.order_placer_oid)


def build(kos_and_study, signer, **kw) -> sx.BuiltRequest:
    data, study = kos_and_study
    from drimcheck.kos import read_kos

    uid = read_kos(data).sop_uid
    return sx.provide_and_register(publication(study), data, kw.pop("kos_uid", uid), "20240101120000", to="https://dmp/r",
                                   signer=signer, **kw)


CERT = b"client-certificate-der"  # the simulator only records it; TLS verified it


def submit(sim: DmpSimulator, request: sx.BuiltRequest, cert: bytes | None = CERT) -> xds.DmpExchange:
    sim.handle("/si-dmp-server/v2/services/repository", request.content_type, request.body, cert)
    return sim.exchanges[-1]


# --------------------------------------------------------------------------- parsing

def test_parse_the_ans_publication_sample() -> None:
    req = xds.parse_request(ANS_CTYPE, ANS_XDS.read_bytes())
    assert req.kind == "ITI-41" and [e.id for e in req.kos_entries()] == ["DocumentKOS"]
    kos = req.documents["DocumentKOS"]
    assert hashlib.sha1(kos).hexdigest() == req.kos_entries()[0].slot("hash") == "58408c116b51497c0f2084c90da3c85c7098455a"
    assert [a.association_type for a in req.associations(xds.SIGNS)] == [xds.SIGNS]
    assert req.vihf.first("Authentification_Mode") == "INDIRECTE" and req.vihf.signature is not None
    assert "délimiteurs MIME indentés" in " ".join(req.problems)  # the sample is re-indented
    assert xds.parse_cx(req.submission_set.patient_id) == ("162018885045327", "1.2.250.1.213.1.4.10", "NH")


def test_unreadable_requests_are_reported() -> None:
    for ctype, body, words in (("text/plain", b"x", "Content-Type"),
                               ("multipart/related; boundary=b", b"--b\r\n\r\nnot xml\r\n--b--\r\n", "XML invalide"),
                               ("application/soap+xml", b"<a/>", "enveloppe SOAP 1.2")):
        with pytest.raises(xds.XdsParseError) as err:
            xds.parse_request(ctype, body)
        assert words in str(err.value)


# --------------------------------------------------------------------------- simulator behaviour

def test_register_replace_and_delete(kos_and_study, signer, tmp_path) -> None:
    sim = DmpSimulator(EvidenceStore(tmp_path))
    first = submit(sim, build(kos_and_study, signer))
    assert first.success and first.study_uids == {kos_and_study[1].study_uid}
    entry = next(iter(first.assigned.values()))
    assert sim.registry.get(entry).status == xds.STATUS_APPROVED
    assert {p.rsplit(".", 1)[-1] for p in first.evidence} >= {"mime", "json", "dcm", "xml"}
    second = submit(sim, build(kos_and_study, signer, kos_uid="1.2.3.4.5", replaces=entry))
    assert second.success and second.replaced == [entry]
    assert sim.registry.get(entry).status == xds.STATUS_DEPRECATED
    new_entry = second.assigned[second.request.kos_entries()[0].id]
    pub = publication(kos_and_study[1])
    delete = sx.update_status(pub, new_entry, to="https://dmp/registry", signer=signer)
    sim.handle("/si-dmp-server/v2/services/registry", delete.content_type, delete.body, CERT)
    third = sim.exchanges[-1]
    assert third.kind == "ITI-57" and third.success and third.status_updates == [(new_entry, xds.STATUS_DELETED)]
    assert third.study_uids == {kos_and_study[1].study_uid}
    assert [e.status for e in sim.registry.kos_of_study(kos_and_study[1].study_uid)] == [
        xds.STATUS_DEPRECATED, xds.STATUS_DELETED]
    # what the consumer transactions will use
    assert sim.registry.find_documents(pub.patient_id, statuses=(xds.STATUS_DELETED,))


def test_refusals(kos_and_study, signer) -> None:
    sim = DmpSimulator()
    ok = submit(sim, build(kos_and_study, signer))
    dup = submit(sim, build(kos_and_study, signer))
    assert ok.success and not dup.success and dup.errors[0][0] == "XDSDuplicateUniqueIdInRegistry"
    unknown = submit(sim, build(kos_and_study, signer, kos_uid="9.9", replaces="urn:uuid:00000000-0000-0000-0000-000000000000"))
    assert unknown.status == "Failure" and unknown.errors[0][0] == "XDSUnknownDocument"
    sim.handle("/x", "application/soap+xml", b"<broken", CERT)
    assert sim.exchanges[-1].status == "Failure" and "XML invalide" in sim.exchanges[-1].parse_error
    response = sim.handle("/x", "application/soap+xml", b"<a/>", None)
    assert response.status_code == 403 and sim.exchanges[-1].status == "Fault"


def test_scenario_failure_is_not_registered(kos_and_study, signer) -> None:
    sim = DmpSimulator()
    sim.fail_next(1)
    failed = submit(sim, build(kos_and_study, signer))
    assert failed.forced and failed.status == "Failure" and not sim.registry.snapshot()
    retry = submit(sim, build(kos_and_study, signer))
    assert retry.success and len(sim.registry.snapshot()) == 2  # KOS + signature document


def test_wait_for_is_bounded() -> None:
    sim = DmpSimulator()
    import time

    t0 = time.monotonic()
    assert sim.wait_for(lambda e: True, since=t0, deadline_s=0.2) is None
    assert 0.2 <= time.monotonic() - t0 < 0.2 + 5  # bounded (not hanging); the slack absorbs a loaded host


def test_mtls_records_the_client_certificate(pki, tmp_path) -> None:
    from simulators.procutil import free_port

    server = pki.serv_ssl("dmp.drimcheck.test")
    sim = DmpSimulator()
    port = free_port()
    sim.start("127.0.0.1", port, cert_chain=str(server.chain_path), key=str(server.key_path),
              client_ca=str(pki.igc_chain_pem))
    try:
        url = f"https://127.0.0.1:{port}/si-dmp-server/v2/services/repository"
        headers = {"Host": "dmp.drimcheck.test", "Content-Type": "application/soap+xml"}
        ext = {"sni_hostname": "dmp.drimcheck.test"}
        cli = pki.org_auth_cli().client_context([pki.igc_trust_pem])
        with httpx.Client(verify=cli) as c:
            r = c.post(url, content=b"<a/>", headers=headers, extensions=ext)
        assert r.status_code == 200 and b"Failure" in r.content  # unreadable body: Failure, recorded
        assert sim.exchanges[-1].client_certificate().subject == pki.org_auth_cli().cert.subject
        anon = ssl.create_default_context(cafile=str(pki.igc_trust_pem))
        with httpx.Client(verify=anon) as c:
            r = c.post(url, content=b"<a/>", headers=headers, extensions=ext)
        assert r.status_code == 403 and sim.exchanges[-1].client_cert_der is None
        rogue = pki.negative("wrong_ca", "db1.349.mesimagesmedicales.fr").client_context([pki.igc_trust_pem])
        with pytest.raises(httpx.HTTPError), httpx.Client(verify=rogue) as c:
            c.post(url, content=b"<a/>", headers=headers, extensions=ext)
    finally:
        sim.stop()


# --------------------------------------------------------------------------- XDS checks

def _exchange(kos_and_study, signer, cert, **kw) -> xds.DmpExchange:
    sim = DmpSimulator()
    return submit(sim, build(kos_and_study, signer, **kw), cert.public_bytes(_DER))


from cryptography.hazmat.primitives.serialization import Encoding  # noqa: E402

_DER = Encoding.DER


def test_xds_checks_pass_on_the_reference_submission(pki, kos_and_study, signer, trust) -> None:
    ex = _exchange(kos_and_study, signer, pki.org_auth_cli().cert)
    findings = [*xds_checks.kos_metadata(ex, expected(kos_and_study[1])), *xds_checks.client_certificate([ex], trust),
                *xds_checks.vihf([ex], trust), *xds_checks.signature_document(ex, trust)]
    assert [f.verdict for f in findings] == [Verdict.PASS] * 4, [f.message for f in findings]


@pytest.mark.parametrize("kw, words", [
    ({"overrides": {"type_code": ("18748-4", "2.16.840.1.113883.6.1", "CR")}}, "typeCode 18748-4"),
    ({"overrides": {"hash": "0" * 40}}, "hash"),
    ({"overrides": {"size": 1}}, "size 1"),
    ({"overrides": {"unique_id": "1.2.3"}}, "uniqueId 1.2.3"),
])
def test_xds01_failures(pki, kos_and_study, signer, kw, words) -> None:
    ex = _exchange(kos_and_study, signer, pki.org_auth_cli().cert, **kw)
    f = xds_checks.kos_metadata(ex, expected(kos_and_study[1]))[0]
    assert f.verdict is Verdict.FAIL and words in f.message


def test_xds02_wrong_certificates(pki, kos_and_study, signer, trust) -> None:
    serv = _exchange(kos_and_study, signer, pki.serv_ssl("db1.349.mesimagesmedicales.fr").cert)
    f = xds_checks.client_certificate([serv], trust)[0]
    assert f.verdict is Verdict.FAIL and "SERV_SSL" in f.message
    sign = _exchange(kos_and_study, signer, pki.org_sign().cert)
    assert "nonRepudiation" in xds_checks.client_certificate([sign], trust)[0].message
    none = DmpSimulator()
    none.handle("/r", "application/soap+xml", b"<a/>", None)
    assert "sans certificat" in xds_checks.client_certificate(none.exchanges, trust)[0].message


def test_xds03_vihf_failures(pki, kos_and_study, signer, trust) -> None:
    unsigned = _exchange(kos_and_study, signer, pki.org_auth_cli().cert, signed_vihf=False)
    assert "non signée" in xds_checks.vihf([unsigned], trust)[0].message
    other = _exchange(kos_and_study, signer, pki.org_auth_cli().cert, overrides={"resource_id": "X^^^&1.2&ISO^NH"})
    assert "resource-id" in xds_checks.vihf([other], trust)[0].message
    auth = pki.org_auth_cli()
    wrong_signer = sx.Credentials(str(auth.cert_path), str(auth.key_path), str(auth.chain_path))
    signed_by_auth = _exchange(kos_and_study, wrong_signer, auth.cert)
    assert "ORG SIGN" in xds_checks.vihf([signed_by_auth], trust)[0].message
    body = build(kos_and_study, signer)
    tampered = DmpSimulator()
    tampered.handle("/r", body.content_type, body.body.replace(b"INDIRECTE", b"DIRECTE"), auth.cert.public_bytes(_DER))
    assert "invalide" in xds_checks.vihf(tampered.exchanges, trust)[0].message


def test_xds04_signature_document_failures(pki, kos_and_study, signer, trust) -> None:
    cert = pki.org_auth_cli().cert
    missing = _exchange(kos_and_study, signer, cert, with_signature=False)
    assert "aucun document de signature" in xds_checks.signature_document(missing, trust)[0].message
    digest = _exchange(kos_and_study, signer, cert, overrides={"tamper_manifest": True})
    assert "empreinte du Manifest" in xds_checks.signature_document(digest, trust)[0].message
    body = build(kos_and_study, signer)
    sim = DmpSimulator()
    sim.handle("/r", body.content_type, body.body.replace(b"SigningTime>2", b"SigningTime>1"), cert.public_bytes(_DER))
    f = xds_checks.signature_document(sim.exchanges[-1], trust)[0]
    assert f.verdict is Verdict.FAIL and "xmlsec1" in f.message
