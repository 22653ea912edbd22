"""DMP consultation of the reference DRIMbox Conso: TD0.2, ITI-18 FindDocuments, ITI-43 Retrieve, VIHF of the PSC user.

Shapes follow the ANS PoC (drimbox-spec §5.2): first the TD0.2 test of existence of the patient's record and
of the practitioner's access (HL7v3 PRPA_IN201307UV02, reasonCode TEST_EXST, on ``/patients``; the PoC's
VerifyAuthorizationRequest), and nothing more when there is no record, the record is closed or access is
not VALIDE; then FindDocuments (or FindDocumentsByReferenceId when the
contextual call gives an accession number) for ``INS^^^&OID&ISO^NH``, status Approved, optional event
codes (modality, JDV 1.2.250.1.213.1.1.5.618), LeafClass; then one ITI-43 for the KOS entries found
(typeCode IMG-KOS or formatCode KOS), whose answer is MTOM. Every request carries a VIHF built from the
PSC UserInfo of the logged-in practitioner (NameID = SubjectNameID, structure = the chosen activity,
Authentification_Mode INDIRECTE_RENFORCEE), signed with the ORG SIGN certificate, and goes over mTLS
with the ORG AUTH_CLI certificate (source_xds helpers). The reference's own code.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from simulators.drimbox import mutants, netutil
from simulators.drimbox import source_xds as xds

QUERY = "urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0"
ACTION_QUERY = "urn:ihe:iti:2007:RegistryStoredQuery"
ACTION_RETRIEVE = "urn:ihe:iti:2007:RetrieveDocumentSet"
ACTION_PATIENT = "urn:hl7-org:v3:PRPA_IN201307UV02"
HL7V3 = "urn:hl7-org:v3"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
INS_OID = "1.2.250.1.213.1.4.10"
FIND_DOCUMENTS = "urn:uuid:14d4debf-8f97-4251-9a74-a90016b0af0d"
FIND_BY_REFERENCE_ID = "urn:uuid:12941a89-e02e-4be5-967c-ce4bfc8fe492"
APPROVED = "urn:oasis:names:tc:ebxml-regrep:StatusType:Approved"
MODALITY_SCHEME = "1.2.250.1.213.1.1.5.618"
KOS_TYPE_CODE = "IMG-KOS"
KOS_FORMAT_CODE = "1.2.840.10008.5.1.4.1.1.88.59"


class ConsultationError(RuntimeError):
    """The DMP could not be consulted (one French line, shown to the user)."""


class AccessDenied(ConsultationError):
    """TD0.2 said no: no record, record closed, or access not granted to this practitioner."""


@dataclass(frozen=True)
class Practitioner:
    """What the VIHF needs from the PSC UserInfo (first exercice, activity chosen by the Situation)."""

    name_id: str
    given: str
    family: str
    profession: str
    specialty: str
    structure_id: str
    sector: str
    structure_name: str

    @classmethod
    def from_userinfo(cls, userinfo: dict[str, Any], situation: str | None = None,
                      default_structure: str | None = None) -> Practitioner:
        exercices = (userinfo.get("SubjectRefPro") or {}).get("exercices") or []
        if not exercices:
            raise ConsultationError("UserInfo PSC sans exercice professionnel : VIHF impossible")
        ex = exercices[0]
        activities = ex.get("activities") or []
        if not activities:
            raise ConsultationError("UserInfo PSC sans activité : structure du VIHF inconnue")

        def matches(a: dict[str, Any], wanted: str) -> bool:
            return wanted in (a.get("ancienIdentifiantDeLaStructure"), a.get("identifiantTechniqueDeLaStructure"),
                              a.get("raisonSocialeSite"))

        chosen = next((a for a in activities if situation and matches(a, situation)), None) \
            or next((a for a in activities if default_structure and matches(a, default_structure)), None) \
            or activities[0]
        return cls(str(userinfo.get("SubjectNameID") or userinfo.get("preferred_username") or ""),
                   str(ex.get("prenomDexercice") or userinfo.get("given_name") or ""),
                   str(ex.get("nomDexercice") or userinfo.get("family_name") or ""),
                   str(ex.get("codeProfession") or ""), str(ex.get("codeSavoirFaire") or ""),
                   str(chosen.get("ancienIdentifiantDeLaStructure") or chosen.get("identifiantTechniqueDeLaStructure")
                       or ""), str(chosen.get("codeSecteurDactivite") or ""), str(chosen.get("raisonSocialeSite") or ""))


@dataclass
class DocumentRef:
    """One document entry of an ITI-18 answer."""

    entry_uuid: str
    unique_id: str
    repository_unique_id: str
    mime_type: str
    status: str
    type_code: str
    format_code: str
    creation_time: str
    slots: dict[str, list[str]] = field(default_factory=dict)

    @property
    def is_kos(self) -> bool:
        return self.type_code == KOS_TYPE_CODE or self.format_code == KOS_FORMAT_CODE or \
            self.mime_type == "application/dicom"


class DmpConsultation:
    """ITI-18/ITI-43 client of one DRIMbox: endpoints, mTLS context, hosts map, VIHF signer."""

    def __init__(self, config: Any, *, timeout_s: float = 10.0):
        dmp = config.peers.get("dmp") or {}
        if not dmp.get("registry_url"):
            raise ConsultationError("aucun DMP configuré (peers.dmp)")
        self.registry_url, self.repository_url = dmp["registry_url"], dmp["repository_url"]
        self.patients_url = dmp.get("patients_url") or self.registry_url.rsplit("/", 1)[0] + "/patients"
        self.creds = xds.Credentials(**config.certs["org_auth_cli"])
        self.ctx = xds.client_context(self.creds, dmp.get("server_ca") or config.trust["igc_chain"])
        self.signer = xds.Credentials(**config.certs["org_sign"])
        self.hosts = config.hosts
        self.timeout_s = timeout_s

    def vihf(self, who: Practitioner, patient_id: str) -> etree._Element:
        cert, key = self.signer.load()
        mode = "INDIRECTE" if mutants.active("conso-vihf-wrong-mode") else "INDIRECTE_RENFORCEE"
        return xds.build_vihf(xds.VihfSubject(who.name_id, f"{who.given} {who.family}", who.structure_id,
                                              who.sector or "SA07", who.profession or "10", who.specialty or "SM44",
                                              patient_id, mode), key, cert)

    def _post(self, url: str, action: str, envelope: etree._Element) -> tuple[str, bytes]:
        body = etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")
        response = xds.post(url, f'application/soap+xml; charset=UTF-8; action="{action}"', body, self.ctx,
                            self.hosts, self.timeout_s)
        if response.status_code != 200:
            raise ConsultationError(f"DMP : HTTP {response.status_code} pour {action.rsplit(':', 1)[-1]}")
        return response.headers.get("content-type", ""), response.content

    # -- TD0.2 -------------------------------------------------------------------------------------
    def check_access(self, who: Practitioner, patient_id: str) -> dict[str, str]:
        """Test of existence of the record and of the access (TD0.2); AccessDenied unless open and VALIDE."""
        ctype, content = self._post(self.patients_url, ACTION_PATIENT, self.existence_request(who, patient_id))
        answer = parse_existence_response(xds.soap_part(ctype, content))
        if answer["queryResponseCode"] == "NF":
            raise AccessDenied("le patient n'a pas de DMP")
        if answer["queryResponseCode"] != "OK":
            raise ConsultationError(f"test d'existence du DMP en échec ({answer['queryResponseCode'] or '?'})")
        if answer.get("DOSSIER") not in (None, "OUVERT"):
            raise AccessDenied(f"DMP du patient {'fermé' if answer['DOSSIER'] == 'FERME' else answer['DOSSIER']}")
        if answer.get("AUTORISATION") != "VALIDE":
            raise AccessDenied(f"accès au DMP non autorisé ({answer.get('AUTORISATION') or 'autorisation absente'})")
        return answer

    def existence_request(self, who: Practitioner, patient_id: str) -> etree._Element:
        """The SOAP envelope of a TD0.2 (PRPA_IN201307UV02, reasonCode TEST_EXST) for the patient."""
        ins, _, rest = patient_id.partition("^")
        oid = rest.split("&")[1] if "&" in rest else INS_OID
        env, body = xds._envelope(ACTION_PATIENT, self.patients_url, self.vihf(who, patient_id))
        msg = xds._el(body, HL7V3, "PRPA_IN201307UV02", {"ITSVersion": "XML_1.0"}, nsmap={None: HL7V3, "xsi": XSI})
        xds._el(msg, HL7V3, "id", {"root": "1.3.6.1.4.1.48364.1.1", "extension": xds.urn_uuid()[9:]})
        xds._el(msg, HL7V3, "creationTime", {"value": time.strftime("%Y%m%d%H%M%S", time.gmtime())})
        xds._el(msg, HL7V3, "interactionId", {"root": "2.16.840.1.113883.1.6", "extension": "PRPA_IN201307UV02"})
        for tag, code in (("processingCode", "P"), ("processingModeCode", "T"), ("acceptAckCode", "AL")):
            xds._el(msg, HL7V3, tag, {"code": code})
        for tag, type_code, root, name in (("receiver", "RCV", "1.2.250.1.213.4.1.1.1", "DMP"),
                                           ("sender", "SND", "1.3.6.1.4.1.48364", "DRIMbox")):
            device = xds._el(xds._el(msg, HL7V3, tag, {"typeCode": type_code}), HL7V3, "device",
                             {"classCode": "DEV", "determinerCode": "INSTANCE"})
            xds._el(device, HL7V3, "id", {"root": root})
            xds._el(device, HL7V3, "softwareName", text=name)
        act = xds._el(msg, HL7V3, "controlActProcess", {"classCode": "CACT", "moodCode": "EVN"})
        xds._el(act, HL7V3, "reasonCode", {"code": "TEST_EXST", "codeSystem": "1.2.250.1.213.1.1.4.11",
                                           "displayName": "Test d'existence de dossier"})
        qbp = xds._el(act, HL7V3, "queryByParameter")
        xds._el(qbp, HL7V3, "queryId", {"root": "1.3.6.1.4.1.48364.2", "extension": xds.urn_uuid()[9:]})
        xds._el(qbp, HL7V3, "statusCode", {"code": "new"})
        pid = xds._el(xds._el(qbp, HL7V3, "parameterList"), HL7V3, "patientIdentifier")
        xds._el(pid, HL7V3, "value", {"root": oid, "extension": ins})
        xds._el(pid, HL7V3, "semanticsText", text="Patient.id")
        return env

    # -- ITI-18 ------------------------------------------------------------------------------------
    def find_documents(self, who: Practitioner, patient_id: str, *, modalities: list[str] | None = None,
                       accession: str | None = None) -> list[DocumentRef]:
        env = self.query_request(who, patient_id, modalities=modalities, accession=accession)
        ctype, content = self._post(self.registry_url, ACTION_QUERY, env)
        return parse_query_response(xds.soap_part(ctype, content))

    def query_request(self, who: Practitioner, patient_id: str, *, modalities: list[str] | None = None,
                      accession: str | None = None) -> etree._Element:
        """The SOAP envelope of an ITI-18 FindDocuments (or FindDocumentsByReferenceId) for the patient."""
        env, body = xds._envelope(ACTION_QUERY, self.registry_url, self.vihf(who, patient_id))
        request = xds._el(body, QUERY, "AdhocQueryRequest", nsmap={"query": QUERY, None: xds.RIM})
        xds._el(request, QUERY, "ResponseOption", {"returnComposedObjects": "true", "returnType": "LeafClass"})
        query = xds._el(request, xds.RIM, "AdhocQuery", {"id": FIND_BY_REFERENCE_ID if accession else FIND_DOCUMENTS})
        xds._slot(query, "$XDSDocumentEntryPatientId", f"'{patient_id}'")
        if modalities:
            xds._slot(query, "$XDSDocumentEntryEventCodeList",
                      "(" + ",".join(f"'{m}^^{MODALITY_SCHEME}'" for m in modalities) + ")")
        if accession:
            xds._slot(query, "$XDSDocumentEntryReferenceIdList",
                      f"('{accession}^^^&1.2.3.4.5.6&ISO^urn:ihe:iti:xds:2013:accession')")
        xds._slot(query, "$XDSDocumentEntryStatus", f"('{APPROVED}')")
        return env

    # -- ITI-43 ------------------------------------------------------------------------------------
    def retrieve(self, who: Practitioner, patient_id: str, docs: list[DocumentRef]) -> dict[str, bytes]:
        if not docs:
            return {}
        env, body = xds._envelope(ACTION_RETRIEVE, self.repository_url, self.vihf(who, patient_id))
        request = xds._el(body, xds.XDSB, "RetrieveDocumentSetRequest", nsmap={"xdsb": xds.XDSB})
        for d in docs:
            dr = xds._el(request, xds.XDSB, "DocumentRequest")
            xds._el(dr, xds.XDSB, "RepositoryUniqueId", text=d.repository_unique_id)
            xds._el(dr, xds.XDSB, "DocumentUniqueId", text=d.unique_id)
        ctype, content = self._post(self.repository_url, ACTION_RETRIEVE, env)
        return parse_retrieve_response(ctype, content)


def parse_existence_response(xml: bytes) -> dict[str, str]:
    """queryResponseCode and the DOSSIER / AUTORISATION observations of a PRPA_IN201306UV02."""
    try:
        root = etree.fromstring(xml, etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError as exc:
        raise ConsultationError(f"réponse TD0.2 illisible : {exc}") from None
    ns = {"v3": HL7V3}
    code = root.find(".//v3:queryAck/v3:queryResponseCode", ns)
    out = {"queryResponseCode": code.get("code", "") if code is not None else ""}
    for obs in root.iterfind(".//v3:observation", ns):
        name, value = obs.find("v3:code", ns), obs.find("v3:value", ns)
        if name is not None and value is not None:
            out[name.get("code", "")] = value.get("code", "")
    return out


def _registry_errors(root: etree._Element) -> list[str]:
    return [e.get("codeContext") or e.get("errorCode") or "?" for e in root.iter(f"{{{xds.RS}}}RegistryError")]


def parse_query_response(xml: bytes) -> list[DocumentRef]:
    try:
        root = etree.fromstring(xml, etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError as exc:
        raise ConsultationError(f"réponse ITI-18 illisible : {exc}") from None
    resp = root.find(f".//{{{QUERY}}}AdhocQueryResponse")
    if resp is None:
        raise ConsultationError("réponse ITI-18 sans AdhocQueryResponse")
    if not resp.get("status", "").endswith(":Success"):
        raise ConsultationError(f"ITI-18 en échec : {'; '.join(_registry_errors(resp)) or resp.get('status')}")
    out = []
    for eo in resp.iter(f"{{{xds.RIM}}}ExtrinsicObject"):
        slots = {s.get("name", ""): [(v.text or "").strip() for v in s.iter(f"{{{xds.RIM}}}Value")]
                 for s in eo.findall(f"{{{xds.RIM}}}Slot")}
        codes = {c.get("classificationScheme"): c.get("nodeRepresentation", "")
                 for c in eo.findall(f"{{{xds.RIM}}}Classification")}
        ext = {e.get("identificationScheme"): e.get("value", "") for e in eo.findall(f"{{{xds.RIM}}}ExternalIdentifier")}
        out.append(DocumentRef(eo.get("id", ""), ext.get(xds.DOC_UID, ""), (slots.get("repositoryUniqueId") or [""])[0],
                               eo.get("mimeType", ""), eo.get("status", ""), codes.get(xds.TYPE_CODE, ""),
                               codes.get(xds.FORMAT_CODE, ""), (slots.get("creationTime") or [""])[0], slots))
    return out


def parse_retrieve_response(content_type: str, body: bytes) -> dict[str, bytes]:
    """{DocumentUniqueId: bytes} of an ITI-43 answer (MTOM/XOP, or documents inline in base64)."""
    import base64

    parts: dict[str, bytes] = {}
    root_xml = body
    if "multipart/related" in content_type.lower():
        try:
            mime_parts = netutil.split_multipart(content_type, body)
        except ValueError as exc:
            raise ConsultationError(f"réponse ITI-43 illisible : {exc}") from None
        if not mime_parts:
            raise ConsultationError("réponse ITI-43 multipart sans partie")
        start = netutil.media_params(content_type)[1].get("start", "").strip("<>")
        root = next((p for p in mime_parts if start and p[0].get("content-id", "").strip("<>") == start), mime_parts[0])
        root_xml = root[1]
        for headers, data in mime_parts:
            if headers.get("content-transfer-encoding", "binary").lower() == "base64":
                data = base64.b64decode(b"".join(data.split()))
            parts[headers.get("content-id", "").strip().strip("<>")] = data
    try:
        root = etree.fromstring(root_xml.strip(), etree.XMLParser(resolve_entities=False, no_network=True,
                                                                   huge_tree=True))
    except etree.XMLSyntaxError as exc:
        raise ConsultationError(f"réponse ITI-43 illisible : {exc}") from None
    status = root.find(f".//{{{xds.RS}}}RegistryResponse")
    out: dict[str, bytes] = {}
    for dr in root.iter(f"{{{xds.XDSB}}}DocumentResponse"):
        uid = (dr.findtext(f"{{{xds.XDSB}}}DocumentUniqueId") or "").strip()
        doc = dr.find(f"{{{xds.XDSB}}}Document")
        if doc is None:
            continue
        include = doc.find(f"{{{xds.XOP}}}Include")
        if include is not None:
            from urllib.parse import unquote

            data = parts.get(unquote(include.get("href", "").removeprefix("cid:")))
            if data is not None:
                out[uid] = data
        elif doc.text:
            out[uid] = base64.b64decode("".join(doc.text.split()))
    if not out and status is not None and not status.get("status", "").endswith(":Success"):
        raise ConsultationError(f"ITI-43 en échec : {'; '.join(_registry_errors(root)) or status.get('status')}")
    return out
