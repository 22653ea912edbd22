"""DMP simulator, consultation side: ITI-18 Registry Stored Query, ITI-43 Retrieve Document Set, KOS preload.

What a Conso DRIMbox asks the DMP (drimbox-spec §5.2, §11.3, IHE ITI TF-2a 3.18 / TF-2b 3.43):

* **ITI-18** ``urn:ihe:iti:2007:RegistryStoredQuery`` on ``/registry``:
  FindDocuments (``$XDSDocumentEntryPatientId`` and ``$XDSDocumentEntryStatus`` required; optional
  ``$XDSDocumentEntryEventCodeList`` — values of one slot ORed, slots ANDed —, creationTime range
  ``$XDSDocumentEntryCreationTimeFrom`` inclusive / ``…To`` exclusive, and the class/type/format/practice/
  facility/confidentiality code lists), FindDocumentsByReferenceId (patient, status and
  ``$XDSDocumentEntryReferenceIdList``; an accession matches on its number and type, the assigning
  authority being the PoC's placeholder ``1.2.3.4.5.6``), GetDocuments (``$XDSDocumentEntryUniqueId`` or
  ``…EntryUUID``). ``returnType`` LeafClass (full ExtrinsicObjects with ``repositoryUniqueId``) or
  ObjectRef. Answer: ``AdhocQueryResponse`` with ``totalResultCount``; Failure + RegistryErrorList for
  an unknown stored query (XDSUnknownStoredQuery), a missing or repeated required parameter
  (XDSStoredQueryParamNumber) or an unsupported return type.
* **ITI-43** ``urn:ihe:iti:2007:RetrieveDocumentSet`` on ``/repository``: every DocumentRequest is
  answered from the repository, MTOM/XOP, each document an ``application/octet-stream`` part (the KOS
  bytes as registered); unknown document or repository -> XDSDocumentUniqueIdError /
  XDSUnknownRepositoryId, status PartialSuccess or Failure.
* **Preload** (scenario API): :meth:`ConsultationData.preload_kos` registers a KOS for a patient as if a
  Source had published it (metadata as the ANS samples); :func:`preload_peer_study` also declares the
  study and its KOS at a peer Source simulator, so the KOS RetrieveURL leads there.

Every query is recorded on its ``DmpExchange`` (``consultation``: stored query, parameters, entries
returned; retrieve: documents asked, returned, missing) with the VIHF the request carried.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from lxml import etree

from drimcheck import xds
from simulators.dmp.registry import REPOSITORY_UNIQUE_ID, Entry, Registry

SOAP, WSA, RIM, RS, QUERY, XDSB, XOP = (xds.NS[k] for k in ("soap", "wsa", "rim", "rs", "query", "xdsb", "xop"))
ERROR_SEVERITY = "urn:oasis:names:tc:ebxml-regrep:ErrorSeverityType:Error"

#: code-list parameters of FindDocuments -> classification scheme they filter on
CODE_PARAMETERS = {
    "$XDSDocumentEntryClassCode": xds.CLASS_CODE,
    "$XDSDocumentEntryTypeCode": xds.TYPE_CODE,
    "$XDSDocumentEntryFormatCode": xds.FORMAT_CODE,
    "$XDSDocumentEntryPracticeSettingCode": xds.PRACTICE_SETTING,
    "$XDSDocumentEntryHealthcareFacilityTypeCode": xds.HEALTHCARE_FACILITY_TYPE,
    "$XDSDocumentEntryEventCodeList": xds.EVENT_CODE,
    "$XDSDocumentEntryConfidentialityCode": xds.CONFIDENTIALITY_CODE,
}
EXTERNAL_ID_NAMES = {xds.DOCUMENT_PATIENT_ID: "XDSDocumentEntry.patientId",
                     xds.DOCUMENT_UNIQUE_ID: "XDSDocumentEntry.uniqueId"}

KOS_CLASS = ("31", "1.2.250.1.213.1.1.4.1", "Imagerie médicale")
KOS_TYPE = ("IMG-KOS", "1.2.250.1.213.1.1.4.12", "Reference d'objets d'un examen d'imagerie")
KOS_FORMAT = (xds.KOS_FORMAT, "1.2.840.10008.2.6.1", "Document de Références d'objets d'imagerie selon profil IHE RAD XDS-I")
MODALITY_SCHEME = "1.2.250.1.213.1.1.5.618"  # JDV_ModaliteAcquisition_CISIS

__all__ = ["QueryError", "ConsultationData", "PreloadedKos", "preload_peer_study", "stored_query_response",
           "retrieve_response", "CODE_PARAMETERS"]


class QueryError(Exception):
    """A stored query the registry refuses: XDS error code and context."""

    def __init__(self, code: str, context: str):
        super().__init__(f"{code}: {context}")
        self.code = code
        self.context = context


def _dtm(value: str, pad: str) -> str:
    """A DTM truncated or padded to 14 digits (YYYYMMDDhhmmss) so that precisions compare."""
    digits = "".join(ch for ch in value if ch.isdigit())[:14]
    return digits + pad[len(digits):] if len(digits) < 14 else digits


def _code_matches(value: str, entry: Entry, scheme: str) -> bool:
    """``code^^codingScheme`` (the scheme may be omitted) against the entry's classifications."""
    parts = value.split("^")
    code, coding = parts[0], parts[2] if len(parts) > 2 else ""
    return any(c.node == code and (not coding or c.coding_scheme == coding) for c in entry.metadata.codes(scheme))


def _reference_matches(value: str, entry: Entry) -> bool:
    """A referenceIdList CXi matches on identifier and type (the assigning authority varies, see module doc)."""
    wanted_id, _, wanted_type = xds.parse_cx(value)
    for ref in entry.metadata.slots.get(xds.REFERENCE_ID_LIST, []):
        ident, _, kind = xds.parse_cx(ref)
        if ident == wanted_id and (not wanted_type or kind == wanted_type):
            return True
    return False


class ConsultationData:
    """The stored queries and the retrieve over a registry, and the harness's preload API."""

    def __init__(self, registry: Registry):
        self.registry = registry

    # -- ITI-18 ---------------------------------------------------------------------------------
    def run(self, query: xds.StoredQuery) -> list[Entry]:
        if query.return_type not in ("LeafClass", "ObjectRef"):
            raise QueryError("XDSRegistryError", f"returnType « {query.return_type or 'absent'} » non pris en charge "
                                                 "(LeafClass ou ObjectRef)")
        if query.query_id == xds.FIND_DOCUMENTS:
            return self._find(query)
        if query.query_id == xds.FIND_DOCUMENTS_BY_REFERENCE_ID:
            references = query.values("$XDSDocumentEntryReferenceIdList")
            if not references:
                raise QueryError("XDSStoredQueryParamNumber", "$XDSDocumentEntryReferenceIdList obligatoire")
            return [e for e in self._find(query) if any(_reference_matches(r, e) for r in references)]
        if query.query_id == xds.GET_DOCUMENTS:
            uuids, uids = query.values("$XDSDocumentEntryEntryUUID"), query.values("$XDSDocumentEntryUniqueId")
            if bool(uuids) == bool(uids):
                raise QueryError("XDSStoredQueryParamNumber",
                                 "un et un seul de $XDSDocumentEntryEntryUUID, $XDSDocumentEntryUniqueId attendu")
            return [e for e in self.registry.entries() if e.entry_uuid in uuids or e.unique_id in uids]
        raise QueryError("XDSUnknownStoredQuery", f"requête stockée {query.query_id or '(sans id)'} inconnue")

    def _find(self, query: xds.StoredQuery) -> list[Entry]:
        patients = query.groups("$XDSDocumentEntryPatientId")
        if len(patients) != 1 or len(patients[0]) != 1:
            raise QueryError("XDSStoredQueryParamNumber", "$XDSDocumentEntryPatientId obligatoire, une seule valeur")
        statuses = query.values("$XDSDocumentEntryStatus")
        if not statuses:
            raise QueryError("XDSStoredQueryParamNumber", "$XDSDocumentEntryStatus obligatoire")
        patient = patients[0][0]
        low = query.values("$XDSDocumentEntryCreationTimeFrom")
        high = query.values("$XDSDocumentEntryCreationTimeTo")
        out = []
        for e in self.registry.entries():
            if e.patient_id != patient or e.status not in statuses:
                continue
            created = e.metadata.slot("creationTime") or ""
            if low and (not created or _dtm(created, "0" * 14) < _dtm(low[0], "0" * 14)):
                continue
            if high and (not created or _dtm(created, "0" * 14) >= _dtm(high[0], "0" * 14)):
                continue
            if all(any(_code_matches(v, e, scheme) for v in group)
                   for name, scheme in CODE_PARAMETERS.items() for group in query.groups(name)):
                out.append(e)
        return out

    # -- ITI-43 ---------------------------------------------------------------------------------
    def retrieve(self, requests: list[tuple[str, str]]) -> tuple[list[Entry], list[tuple[str, str]]]:
        found, errors = [], []
        for repo, doc in requests:
            entry = self.registry.retrieve(repo, doc)
            if entry is not None and entry.status != xds.STATUS_DELETED:
                found.append(entry)
            elif not any(e.repository_unique_id == repo for e in self.registry.entries()) and \
                    repo != REPOSITORY_UNIQUE_ID:
                errors.append(("XDSUnknownRepositoryId", f"dépôt {repo} inconnu"))
            else:
                errors.append(("XDSDocumentUniqueIdError", f"document {doc} inconnu du dépôt {repo}"))
        return found, errors

    # -- preload (scenario API) -----------------------------------------------------------------
    def preload_kos(self, kos: bytes, *, patient_id: str, creation_time: str | None = None,
                    event_codes: Iterable[tuple[str, str, str]] = (), status: str = xds.STATUS_APPROVED,
                    accession: tuple[str, str] | None = None, type_code: tuple[str, str, str] = KOS_TYPE,
                    format_code: tuple[str, str, str] = KOS_FORMAT) -> Entry:
        """Register a KOS for a patient (``INS^^^&OID&ISO^NH``) as a Source publication would have."""
        from drimcheck.kos import header_uid

        unique_id = header_uid(kos, "SOPInstanceUID")
        study_uid = header_uid(kos, "StudyInstanceUID")
        entry_uuid = f"urn:uuid:{uuid.uuid4()}"
        created = creation_time or datetime.now(UTC).strftime("%Y%m%d%H%M%S")

        def code(scheme: str, value: tuple[str, str, str]) -> xds.Classification:
            return xds.Classification(scheme, value[0], value[1], value[2], {"codingScheme": [value[1]]})

        refs = [f"{study_uid}^^^&1.2.3.4.5.6&ISO^urn:ihe:iti:xds:2016:studyInstanceUID"]
        if accession:
            refs.insert(0, f"{accession[0]}^^^&{accession[1]}&ISO^urn:ihe:iti:xds:2013:accession")
        meta = xds.RegistryObject(
            "ExtrinsicObject", entry_uuid, xds.DOCUMENT_ENTRY_TYPE, "application/dicom", status,
            slots={"creationTime": [created], "languageCode": ["fr-FR"], "hash": [hashlib.sha1(kos).hexdigest()],
                   "size": [str(len(kos))], "sourcePatientId": [patient_id], xds.REFERENCE_ID_LIST: refs},
            classifications=[code(xds.CLASS_CODE, KOS_CLASS), code(xds.TYPE_CODE, type_code),
                             code(xds.FORMAT_CODE, format_code),
                             code(xds.CONFIDENTIALITY_CODE, ("N", "2.16.840.1.113883.5.25", "Normal"))]
            + [code(xds.EVENT_CODE, c) for c in event_codes],
            external_ids={xds.DOCUMENT_PATIENT_ID: patient_id, xds.DOCUMENT_UNIQUE_ID: unique_id},
            name="Reference d'Objets d'un Examen d'Imagerie")
        entry = Entry(entry_uuid, unique_id, patient_id, status, "application/dicom", meta, kos,
                      f"2.25.{uuid.uuid4().int}", time.time(), {study_uid} if study_uid else set())
        return self.registry.add(entry)


@dataclass(frozen=True)
class PreloadedKos:
    """A KOS put in the DMP for a patient, pointing at a peer Source simulator that holds the study."""

    peer: str  # FQDN of the peer Source the RetrieveURLs name
    study: Any  # simulators.pacs.SyntheticStudy
    kos_uid: str
    entry: Entry
    data: bytes
    retrieve_urls: dict[str, str]

    @property
    def patient_id(self) -> str:
        return self.entry.patient_id


def preload_peer_study(dmp: Any, peer: Any, study: Any, *, kos_uid: str | None = None,
                       creation_time: str | None = None, store: bool = True) -> PreloadedKos:
    """Scenario API: the study goes to the peer's Orthanc (unless `store=False`), the peer learns its KOS, and
    the DMP gets that KOS (built by fixtures.kos, RetrieveURL = the peer's WADO-RS base) for the patient's INS."""
    from fixtures.kos import build_kos, kos_uid_for

    uid = kos_uid or kos_uid_for(study.study_uid, peer.fqdn)
    peer.register_study(study, kos_sop_uid=uid, store=store)
    kos = build_kos(study, peer.wado_base, sop_uid=uid, institution=f"DRIMBOX {peer.fqdn}")
    p = study.patient
    data = dmp.consultation.preload_kos(
        kos.data, patient_id=p.xds_id, creation_time=creation_time,
        event_codes=[(m, MODALITY_SCHEME, m) for m in kos.modalities],
        accession=(study.accession_number, study.accession_issuer_oid))
    return PreloadedKos(peer.fqdn, study, uid, data, kos.data, kos.retrieve_urls)


# --------------------------------------------------------------------------- SOAP answers


def _el(parent: Any, ns: str, tag: str, attrib: dict | None = None, text: str | None = None) -> Any:
    el = etree.SubElement(parent, f"{{{ns}}}{tag}", attrib or {})
    if text is not None:
        el.text = text
    return el


def _envelope(action: str, relates_to: str) -> tuple[Any, Any]:
    env = etree.Element(f"{{{SOAP}}}Envelope", nsmap={"soap": SOAP, "wsa": WSA})
    header = _el(env, SOAP, "Header")
    _el(header, WSA, "Action", {f"{{{SOAP}}}mustUnderstand": "true"}, f"{action}Response")
    _el(header, WSA, "RelatesTo", text=relates_to)
    return env, _el(env, SOAP, "Body")


def _error_list(parent: Any, errors: list[tuple[str, str]]) -> None:
    if errors:
        lst = _el(parent, RS, "RegistryErrorList")
        for code, context in errors:
            _el(lst, RS, "RegistryError", {"errorCode": code, "codeContext": context, "severity": ERROR_SEVERITY,
                                           "location": "drimcheck-dmp"})


def _slot(parent: Any, name: str, values: list[str]) -> None:
    vl = _el(_el(parent, RIM, "Slot", {"name": name}), RIM, "ValueList")
    for v in values:
        _el(vl, RIM, "Value", text=v)


def _name(parent: Any, value: str) -> None:
    if value:
        _el(_el(parent, RIM, "Name"), RIM, "LocalizedString", {"value": value})


def _extrinsic(parent: Any, entry: Entry) -> None:
    meta = entry.metadata
    eo = _el(parent, RIM, "ExtrinsicObject", {"id": entry.entry_uuid, "mimeType": entry.mime_type,
                                              "objectType": xds.DOCUMENT_ENTRY_TYPE, "status": entry.status})
    slots = dict(meta.slots)
    slots["repositoryUniqueId"] = [entry.repository_unique_id]
    slots.setdefault("size", [str(len(entry.document))])
    slots.setdefault("hash", [hashlib.sha1(entry.document).hexdigest()])
    for name, values in slots.items():
        _slot(eo, name, values)
    _name(eo, meta.name)
    for c in meta.classifications:
        if c.classification_node:
            continue
        cl = _el(eo, RIM, "Classification", {"classificationScheme": c.scheme, "classifiedObject": entry.entry_uuid,
                                             "id": f"urn:uuid:{uuid.uuid4()}", "nodeRepresentation": c.node})
        for name, values in c.slots.items():
            _slot(cl, name, values)
        _name(cl, c.name)
    for scheme, value in meta.external_ids.items():
        ei = _el(eo, RIM, "ExternalIdentifier", {"id": f"urn:uuid:{uuid.uuid4()}", "identificationScheme": scheme,
                                                 "registryObject": entry.entry_uuid, "value": value})
        _name(ei, EXTERNAL_ID_NAMES.get(scheme, ""))


def stored_query_response(relates_to: str, entries: list[Entry], return_type: str,
                          errors: list[tuple[str, str]]) -> bytes:
    env, body = _envelope(xds.ACTION_QUERY, relates_to)
    status = xds.RESPONSE_FAILURE if errors else xds.RESPONSE_SUCCESS
    attrs = {"status": status}
    if not errors:
        attrs.update(startIndex="0", totalResultCount=str(len(entries)))
    resp = etree.SubElement(body, f"{{{QUERY}}}AdhocQueryResponse", attrs, nsmap={"query": QUERY, "rim": RIM, "rs": RS})
    _error_list(resp, errors)
    rol = _el(resp, RIM, "RegistryObjectList")
    for e in entries if not errors else []:
        if return_type == "ObjectRef":
            _el(rol, RIM, "ObjectRef", {"id": e.entry_uuid})
        else:
            _extrinsic(rol, e)
    return etree.tostring(env, xml_declaration=True, encoding="UTF-8")


BOUNDARY = "MIMEBoundary_drimcheck_dmp"


def retrieve_response(relates_to: str, found: list[Entry], errors: list[tuple[str, str]]) -> tuple[str, bytes, str]:
    """(Content-Type, MTOM body, status) of an ITI-43 answer."""
    status = xds.RESPONSE_SUCCESS if not errors else xds.RESPONSE_PARTIAL if found else xds.RESPONSE_FAILURE
    env, body = _envelope(xds.ACTION_RETRIEVE, relates_to)
    resp = etree.SubElement(body, f"{{{XDSB}}}RetrieveDocumentSetResponse", nsmap={"xdsb": XDSB, "rs": RS, "xop": XOP})
    _error_list(_el(resp, RS, "RegistryResponse", {"status": status}), errors)
    parts = []
    for i, entry in enumerate(found, 1):
        dr = _el(resp, XDSB, "DocumentResponse")
        _el(dr, XDSB, "RepositoryUniqueId", text=entry.repository_unique_id)
        _el(dr, XDSB, "DocumentUniqueId", text=entry.unique_id)
        _el(dr, XDSB, "mimeType", text=entry.mime_type)
        cid = f"document{i}@dmp.drimcheck.test"
        _el(_el(dr, XDSB, "Document"), XOP, "Include", {"href": f"cid:{cid}"})
        parts.append((cid, entry.document))
    root = etree.tostring(env, xml_declaration=True, encoding="UTF-8")
    out = bytearray(f"--{BOUNDARY}\r\nContent-Type: application/xop+xml; charset=UTF-8; type=\"application/soap+xml\"\r\n"
                    "Content-Transfer-Encoding: binary\r\nContent-ID: <root.message@dmp.drimcheck.test>\r\n\r\n".encode())
    out += root + b"\r\n"
    for cid, data in parts:
        out += (f"--{BOUNDARY}\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n"
                f"Content-ID: <{cid}>\r\n\r\n").encode() + data + b"\r\n"
    out += f"--{BOUNDARY}--\r\n".encode()
    ctype = (f'multipart/related; boundary="{BOUNDARY}"; type="application/xop+xml"; '
             f'start="<root.message@dmp.drimcheck.test>"; start-info="application/soap+xml"; '
             f'action="{xds.ACTION_RETRIEVE}Response"')
    return ctype, bytes(out), status
