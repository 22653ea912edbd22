"""DMP simulator, consultation side: ITI-18 stored queries, ITI-43 retrieve, KOS preload, recording, mTLS.

The requests are built by the reference DRIMbox's Conso client (simulators/drimbox/conso_dmp.py) and, for
the filters it never sends, by hand; the answers are read back by that client (both directions tested).
"""

from __future__ import annotations

from contextlib import contextmanager
from types import SimpleNamespace

import pytest
from lxml import etree

from drimcheck import xds
from fixtures.kos import build_kos, kos_uid_for
from fixtures.pki import TestPKI
from simulators.dmp import DmpSimulator
from simulators.dmp.consultation import MODALITY_SCHEME, preload_peer_study
from simulators.dmp.registry import REPOSITORY_UNIQUE_ID
from simulators.drimbox import conso_dmp
from simulators.pacs import make_patient, make_study

PRACTITIONER = conso_dmp.Practitioner("899700990349", "CLAIRE", "RADIOLOGUE0990349", "10", "SM44", "300000009990349",
                                      "SA07", "DRIMCHECK CENTRE IMAGERIE TEST")


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> TestPKI:
    return TestPKI(tmp_path_factory.mktemp("pki") / "pki")


def _creds(issued) -> dict[str, str]:
    return {"cert": str(issued.cert_path), "key": str(issued.key_path), "chain": str(issued.chain_path)}


def client_config(pki: TestPKI, sim: DmpSimulator | None = None) -> SimpleNamespace:
    urls = sim.urls() if sim is not None and sim.port else {"registry_url": "https://dmp.drimcheck.test/r",
                                                            "repository_url": "https://dmp.drimcheck.test/p"}
    return SimpleNamespace(peers={"dmp": {**urls, "server_ca": str(pki.igc_chain_pem)}},
                           certs={"org_auth_cli": _creds(pki.org_auth_cli()), "org_sign": _creds(pki.org_sign())},
                           trust={"igc_chain": str(pki.igc_chain_pem)},
                           hosts={"dmp.drimcheck.test": f"127.0.0.1:{sim.port}"} if sim is not None and sim.port else {})


def patient_id(patient) -> str:
    return f"{patient.ins}^^^&{patient.ins_oid}&ISO^NH"


@pytest.fixture()
def loaded():
    """A DMP holding, for one patient: a CT KOS (2024-03-10), an MR KOS (2025-06-01), a deprecated KOS; and a KOS
    of another patient."""
    sim = DmpSimulator()
    patient = make_patient("consultation")
    other = make_patient("consultation-autre")
    docs = {}
    for name, modality, created, who in (("ct", "CT", "20240310120000", patient), ("mr", "MR", "20250601083000", patient),
                                         ("old", "CT", "20230101000000", patient), ("other", "CT", "20240310120000", other)):
        study = make_study(f"consultation-{name}", n_series=1, n_instances=2, modality=modality, patient=who)
        kos = build_kos(study, "https://db7.350.mesimagesmedicales.fr/dicom-web-rs")
        entry = sim.consultation.preload_kos(kos.data, patient_id=patient_id(who), creation_time=created,
                                             event_codes=[(modality, MODALITY_SCHEME, modality)],
                                             accession=(study.accession_number, study.accession_issuer_oid),
                                             status=xds.STATUS_DEPRECATED if name == "old" else xds.STATUS_APPROVED)
        docs[name] = (entry, kos, study)
    return sim, patient, docs


def stored_query(query_id: str, slots: list[tuple[str, str]], return_type: str = "LeafClass") -> tuple[str, bytes]:
    from xml.sax.saxutils import escape

    body = "".join(f'<rim:Slot name="{n}"><rim:ValueList><rim:Value>{escape(v)}</rim:Value></rim:ValueList></rim:Slot>'
                   for n, v in slots)
    env = (f'<soap:Envelope xmlns:soap="{xds.NS["soap"]}" xmlns:wsa="{xds.NS["wsa"]}"><soap:Header>'
           f'<wsa:Action>{xds.ACTION_QUERY}</wsa:Action><wsa:MessageID>urn:uuid:1</wsa:MessageID></soap:Header>'
           f'<soap:Body><query:AdhocQueryRequest xmlns:query="{xds.NS["query"]}" xmlns:rim="{xds.NS["rim"]}">'
           f'<query:ResponseOption returnComposedObjects="true" returnType="{return_type}"/>'
           f'<rim:AdhocQuery id="{query_id}">{body}</rim:AdhocQuery></query:AdhocQueryRequest></soap:Body>'
           "</soap:Envelope>")
    return "application/soap+xml", env.encode()


def ask(sim: DmpSimulator, query_id: str, slots: list[tuple[str, str]], return_type: str = "LeafClass"):
    ctype, body = stored_query(query_id, slots, return_type)
    sim.handle("/si-dmp-server/v2/services/registry", ctype, body, b"cert")
    return sim.exchanges[-1]


def found(ex) -> set[str]:
    return {r["unique_id"] for r in ex.consultation["results"]}


APPROVED = f"('{xds.STATUS_APPROVED}')"


def test_query_values_parsing() -> None:
    assert xds.query_values("('a','b')") == ["a", "b"]
    assert xds.query_values("'x^^1.2'") == ["x^^1.2"]
    assert xds.query_values("('it''s', 'b')") == ["it's", "b"]
    assert xds.query_values("20240101") == ["20240101"]
    with pytest.raises(xds.XdsParseError):
        xds.query_values("('a)")


def test_find_documents_filters(loaded) -> None:
    sim, patient, docs = loaded
    uid = {k: v[0].unique_id for k, v in docs.items()}
    pid = f"'{patient_id(patient)}'"
    base = [("$XDSDocumentEntryPatientId", pid), ("$XDSDocumentEntryStatus", APPROVED)]
    assert found(ask(sim, xds.FIND_DOCUMENTS, base)) == {uid["ct"], uid["mr"]}  # another patient, deprecated: out
    both = f"('{xds.STATUS_APPROVED}','{xds.STATUS_DEPRECATED}')"
    assert found(ask(sim, xds.FIND_DOCUMENTS, base[:1] + [("$XDSDocumentEntryStatus", both)])) == \
        {uid["ct"], uid["mr"], uid["old"]}
    mr = ask(sim, xds.FIND_DOCUMENTS, base + [("$XDSDocumentEntryEventCodeList", f"('MR^^{MODALITY_SCHEME}')")])
    assert found(mr) == {uid["mr"]}
    either = ask(sim, xds.FIND_DOCUMENTS, base + [("$XDSDocumentEntryEventCodeList", "('MR^^x','CT')")])
    assert found(either) == {uid["ct"]}  # coding scheme must match when given; OR within a slot
    anded = ask(sim, xds.FIND_DOCUMENTS, base + [("$XDSDocumentEntryEventCodeList", "('CT')"),
                                                 ("$XDSDocumentEntryEventCodeList", "('MR')")])
    assert found(anded) == set()  # slots are ANDed
    since = ask(sim, xds.FIND_DOCUMENTS, base + [("$XDSDocumentEntryCreationTimeFrom", "20250601083000")])
    assert found(since) == {uid["mr"]}  # From is inclusive
    until = ask(sim, xds.FIND_DOCUMENTS, base + [("$XDSDocumentEntryCreationTimeTo", "20250601083000")])
    assert found(until) == {uid["ct"]}  # To is exclusive
    day = ask(sim, xds.FIND_DOCUMENTS, base + [("$XDSDocumentEntryCreationTimeFrom", "20240310"),
                                               ("$XDSDocumentEntryCreationTimeTo", "20240311")])
    assert found(day) == {uid["ct"]}  # precisions compare
    kos = ask(sim, xds.FIND_DOCUMENTS, base + [("$XDSDocumentEntryTypeCode", "('IMG-KOS^^1.2.250.1.213.1.1.4.12')")])
    assert found(kos) == {uid["ct"], uid["mr"]}
    assert ask(sim, xds.FIND_DOCUMENTS, base).consultation["total"] == 2


def test_leafclass_answer_reads_back(loaded) -> None:
    sim, patient, docs = loaded
    ex = ask(sim, xds.FIND_DOCUMENTS, [("$XDSDocumentEntryPatientId", f"'{patient_id(patient)}'"),
                                       ("$XDSDocumentEntryStatus", APPROVED)])
    root = etree.fromstring(ex.answer.body)
    resp = root.find(f".//{{{xds.NS['query']}}}AdhocQueryResponse")
    assert resp.get("status") == xds.RESPONSE_SUCCESS and resp.get("totalResultCount") == "2"
    refs = conso_dmp.parse_query_response(ex.answer.body)
    assert {r.unique_id for r in refs} == {docs["ct"][0].unique_id, docs["mr"][0].unique_id}
    assert all(r.is_kos and r.repository_unique_id == REPOSITORY_UNIQUE_ID and r.status == xds.STATUS_APPROVED
               for r in refs)
    # the answer's ebRIM is the same as a submission's: drimcheck.xds reads it too
    objects = xds.parse_registry_objects(resp.find(f"{{{xds.NS['rim']}}}RegistryObjectList"))
    assert {o.patient_id for o in objects} == {patient_id(patient)}
    assert all(o.code(xds.FORMAT_CODE).node == xds.KOS_FORMAT for o in objects)


def test_object_refs_reference_id_and_get_documents(loaded) -> None:
    sim, patient, docs = loaded
    entry, _, study = docs["mr"]
    pid = f"'{patient_id(patient)}'"
    refs = ask(sim, xds.FIND_DOCUMENTS, [("$XDSDocumentEntryPatientId", pid), ("$XDSDocumentEntryStatus", APPROVED)],
               "ObjectRef")
    ids = [el.get("id") for el in etree.fromstring(refs.answer.body).iter(f"{{{xds.NS['rim']}}}ObjectRef")]
    assert set(ids) == {docs["ct"][0].entry_uuid, entry.entry_uuid}
    # the PoC's query: placeholder assigning authority 1.2.3.4.5.6, the accession number matches
    by_ref = ask(sim, xds.FIND_DOCUMENTS_BY_REFERENCE_ID, [
        ("$XDSDocumentEntryPatientId", pid), ("$XDSDocumentEntryStatus", APPROVED),
        ("$XDSDocumentEntryReferenceIdList", f"('{study.accession_number}^^^&1.2.3.4.5.6&ISO^urn:ihe:iti:xds:2013:accession')")])
    assert found(by_ref) == {entry.unique_id}
    assert found(ask(sim, xds.GET_DOCUMENTS, [("$XDSDocumentEntryUniqueId", f"('{entry.unique_id}')")])) == {entry.unique_id}
    assert found(ask(sim, xds.GET_DOCUMENTS, [("$XDSDocumentEntryEntryUUID", f"('{entry.entry_uuid}')")])) == {entry.unique_id}


@pytest.mark.parametrize("query_id,slots,code", [
    ("urn:uuid:00000000-0000-0000-0000-000000000000", [], "XDSUnknownStoredQuery"),
    (xds.FIND_DOCUMENTS, [("$XDSDocumentEntryStatus", APPROVED)], "XDSStoredQueryParamNumber"),
    (xds.FIND_DOCUMENTS, [("$XDSDocumentEntryPatientId", "'x^^^&1.2&ISO^NH'")], "XDSStoredQueryParamNumber"),
    (xds.FIND_DOCUMENTS_BY_REFERENCE_ID, [("$XDSDocumentEntryPatientId", "'x'"), ("$XDSDocumentEntryStatus", APPROVED)],
     "XDSStoredQueryParamNumber"),
    (xds.GET_DOCUMENTS, [], "XDSStoredQueryParamNumber"),
])
def test_query_errors(loaded, query_id, slots, code) -> None:
    sim, _, _ = loaded
    ex = ask(sim, query_id, slots)
    assert ex.status == "Failure" and ex.errors[0][0] == code
    resp = etree.fromstring(ex.answer.body).find(f".//{{{xds.NS['query']}}}AdhocQueryResponse")
    assert resp.get("status") == xds.RESPONSE_FAILURE and resp.get("totalResultCount") is None
    with pytest.raises(conso_dmp.ConsultationError):
        conso_dmp.parse_query_response(ex.answer.body)


def _retrieve(sim: DmpSimulator, pki: TestPKI, requests: list[tuple[str, str]]):
    client = conso_dmp.DmpConsultation(client_config(pki))
    env, body = conso_dmp.xds._envelope(conso_dmp.ACTION_RETRIEVE, "https://dmp/p",
                                        client.vihf(PRACTITIONER, "x^^^&1.2&ISO^NH"))
    req = conso_dmp.xds._el(body, conso_dmp.xds.XDSB, "RetrieveDocumentSetRequest")
    for repo, doc in requests:
        dr = conso_dmp.xds._el(req, conso_dmp.xds.XDSB, "DocumentRequest")
        conso_dmp.xds._el(dr, conso_dmp.xds.XDSB, "RepositoryUniqueId", text=repo)
        conso_dmp.xds._el(dr, conso_dmp.xds.XDSB, "DocumentUniqueId", text=doc)
    sim.handle("/si-dmp-server/v2/services/repository", "application/soap+xml",
               etree.tostring(env, xml_declaration=True, encoding="UTF-8"), b"cert")
    return sim.exchanges[-1]


def test_retrieve_document_set(loaded, pki) -> None:
    sim, _, docs = loaded
    entry, kos, _ = docs["ct"]
    ex = _retrieve(sim, pki, [(REPOSITORY_UNIQUE_ID, entry.unique_id)])
    assert ex.kind == "ITI-43" and ex.status == "Success" and ex.request.vihf is not None
    assert ex.answer.content_type.startswith("multipart/related") and "application/xop+xml" in ex.answer.content_type
    assert conso_dmp.parse_retrieve_response(ex.answer.content_type, ex.answer.body) == {entry.unique_id: kos.data}
    partial = _retrieve(sim, pki, [(REPOSITORY_UNIQUE_ID, entry.unique_id), (REPOSITORY_UNIQUE_ID, "1.2.3.999")])
    assert partial.status == "PartialSuccess" and partial.errors[0][0] == "XDSDocumentUniqueIdError"
    unknown = _retrieve(sim, pki, [("9.9.9", entry.unique_id)])
    assert unknown.status == "Failure" and unknown.errors[0][0] == "XDSUnknownRepositoryId"
    with pytest.raises(conso_dmp.ConsultationError):
        conso_dmp.parse_retrieve_response(unknown.answer.content_type, unknown.answer.body)
    assert ex.study_uids == set()  # consultation exchanges never look like publications to the Source checks


def test_preload_peer_study_points_the_kos_at_the_peer() -> None:
    class Peer:
        fqdn = "db7.350.mesimagesmedicales.fr"
        wado_base = "https://db7.350.mesimagesmedicales.fr/dicom-web-rs"

        def __init__(self):
            self.kos = {}

        def register_study(self, study, *, kos_sop_uid, store):
            self.kos[kos_sop_uid] = study.study_uid

    sim, peer = DmpSimulator(), Peer()
    study = make_study("preload", n_series=2, n_instances=2)
    pre = preload_peer_study(sim, peer, study, store=False)
    assert pre.kos_uid == kos_uid_for(study.study_uid, peer.fqdn) and peer.kos == {pre.kos_uid: study.study_uid}
    assert pre.entry.unique_id == pre.kos_uid and pre.entry.study_uids == {study.study_uid}
    assert all(u.startswith(peer.wado_base + "/studies/") for u in pre.retrieve_urls.values())
    assert sim.registry.retrieve(REPOSITORY_UNIQUE_ID, pre.kos_uid).document == pre.data


@contextmanager
def serving(sim: DmpSimulator, pki: TestPKI):
    """The simulator on a real HTTPS socket (SERV_SSL of the run PKI, client certificates of IGC-Santé)."""
    from simulators.procutil import free_port

    server = pki.serv_ssl("dmp.drimcheck.test")
    sim.start("127.0.0.1", free_port(), cert_chain=str(server.chain_path), key=str(server.key_path),
              client_ca=str(pki.igc_chain_pem))
    try:
        yield sim
    finally:
        sim.stop()


def test_consultation_over_mtls_with_the_reference_client(loaded, pki) -> None:
    """Real sockets and TLS: the reference Conso client (ORG AUTH_CLI, VIHF signed by ORG SIGN) against the DMP."""
    sim, patient, docs = loaded
    with serving(sim, pki):
        client = conso_dmp.DmpConsultation(client_config(pki, sim))
        refs = client.find_documents(PRACTITIONER, patient_id(patient), modalities=["CT"])
        assert [r.unique_id for r in refs] == [docs["ct"][0].unique_id]
        blobs = client.retrieve(PRACTITIONER, patient_id(patient), refs)
        assert blobs == {docs["ct"][0].unique_id: docs["ct"][1].data}
        query, retrieve = sim.exchanges[-2:]
        assert (query.kind, retrieve.kind) == ("ITI-18", "ITI-43")
        v = query.request.vihf
        assert v.first("Authentification_Mode") == "INDIRECTE_RENFORCEE" and v.name_id == PRACTITIONER.name_id
        assert xds.verify_xmldsig(v.signature).ok
        assert query.request.query.values("$XDSDocumentEntryPatientId") == [patient_id(patient)]
        assert query.client_certificate().subject == pki.org_auth_cli().cert.subject


# ------------------------------------------------------------------------------------------ TD0.2 (/patients)


def _send(sim: DmpSimulator, envelope, service: str):
    sim.handle(f"/si-dmp-server/v2/services/{service}", "application/soap+xml",
               etree.tostring(envelope, xml_declaration=True, encoding="UTF-8"), b"cert")
    return sim.exchanges[-1]


def test_td02_request_is_read_and_answered_per_record_state(pki) -> None:
    sim, client = DmpSimulator(), conso_dmp.DmpConsultation(client_config(pki))
    states = {s: make_patient(f"td02-{s}") for s in ("ouvert", "inexistant", "ferme", "interdit")}
    for state, p in states.items():
        if state != "ouvert":
            sim.set_record(p.ins, state)
    expected = {"ouvert": ("OK", "OUVERT", "VALIDE"), "inexistant": ("NF", None, None),
                "ferme": ("OK", "FERME", "VALIDE"), "interdit": ("OK", "OUVERT", "INTERDIT")}
    for state, p in states.items():
        ex = _send(sim, client.existence_request(PRACTITIONER, patient_id(p)), "patients")
        assert ex.kind == "TD0.2" and ex.status == "Success", ex.describe()
        q = ex.request.patient_query
        assert (q.reason_code, q.reason_system, q.root, q.extension) == ("TEST_EXST", "1.2.250.1.213.1.1.4.11",
                                                                          p.ins_oid, p.ins)
        assert q.patient_id == patient_id(p) and ex.consultation["record"] == state
        assert ex.request.vihf is not None and ex.request.vihf.first(xds.RESOURCE_ID) == patient_id(p)
        answer = conso_dmp.parse_existence_response(ex.answer.body)
        code, dossier, autorisation = expected[state]
        assert answer.get("queryResponseCode") == code
        assert answer.get("DOSSIER") == dossier and answer.get("AUTORISATION") == autorisation
    # the PoC's reading of the answer: the first code after the word AUTORISATION
    body = sim.exchanges[-1].answer.body.decode()
    assert body.split("AUTORISATION")[1].split('code="')[1].split('"')[0] == "INTERDIT"
    with pytest.raises(ValueError):
        sim.set_record("123", "archivé")


def test_td02_wrong_reason_or_service_is_an_error(pki) -> None:
    sim, client = DmpSimulator(), conso_dmp.DmpConsultation(client_config(pki))
    p = make_patient("td02-erreur")
    env = client.existence_request(PRACTITIONER, patient_id(p))
    on_registry = _send(sim, env, "registry")
    assert on_registry.status == "Failure" and "/patients" in on_registry.errors[0][1]
    reason = env.find(f".//{{{xds.HL7V3}}}reasonCode")
    reason.set("code", "TEST_AUTRE")
    wrong = _send(sim, env, "patients")
    assert wrong.status == "Failure" and "TEST_AUTRE" in wrong.errors[0][1]
    assert conso_dmp.parse_existence_response(wrong.answer.body)["queryResponseCode"] == "AE"
    env.find(f".//{{{xds.HL7V3}}}patientIdentifier/{{{xds.HL7V3}}}value").attrib.pop("extension")
    unreadable = _send(sim, env, "patients")
    assert unreadable.request is None and "patientIdentifier" in unreadable.parse_error


def test_registry_follows_the_record_state_over_mtls(loaded, pki) -> None:
    """Real sockets: the reference client's TD0.2 verdicts, and ITI-18 / ITI-43 refused for a record not open."""
    sim, patient, docs = loaded
    with serving(sim, pki):
        client = conso_dmp.DmpConsultation(client_config(pki, sim))
        assert client.patients_url.endswith("/si-dmp-server/v2/services/patients")
        assert client.check_access(PRACTITIONER, patient_id(patient))["AUTORISATION"] == "VALIDE"
        refs = client.find_documents(PRACTITIONER, patient_id(patient), modalities=["CT"])
        for state, message in (("inexistant", "pas de DMP"), ("ferme", "fermé"), ("interdit", "INTERDIT")):
            sim.set_record(patient.ins, state)
            with pytest.raises(conso_dmp.AccessDenied, match=message):
                client.check_access(PRACTITIONER, patient_id(patient))
            with pytest.raises(conso_dmp.ConsultationError, match="ITI-18 en échec"):
                client.find_documents(PRACTITIONER, patient_id(patient))
            with pytest.raises(conso_dmp.ConsultationError, match="ITI-43 en échec"):
                client.retrieve(PRACTITIONER, patient_id(patient), refs)
        sim.set_record(patient.ins, "ouvert")
        assert client.retrieve(PRACTITIONER, patient_id(patient), refs) == {docs["ct"][0].unique_id: docs["ct"][1].data}
