"""Independent reading of DMP (XDS.b) requests: MTOM, SOAP 1.2, WS-Addressing, VIHF, ebRIM metadata.

The DMP simulator records every request through `parse_request`; the XDS checks judge the result.
Parsing is tolerant (indented MIME delimiters as in the ANS sample, base64 or binary parts, inline
documents): everything odd that could still be read is listed in `problems`; what cannot be read at
all raises `XdsParseError` with one French line, which the simulator answers with a Failure.

Signatures (VIHF assertion, signature document) are verified with python-xmlsec, independently of
whatever library the DRIMbox under test signs with.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from cryptography import x509
from lxml import etree

from drimcheck import safexml
from drimcheck.codec import judged_fact
from drimcheck.limits import MAX_MULTIPART_PARTS, MAX_PART_HEADER_BYTES

NS = {
    "soap": "http://www.w3.org/2003/05/soap-envelope",
    "wsa": "http://www.w3.org/2005/08/addressing",
    "wsse": "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd",
    "saml2": "urn:oasis:names:tc:SAML:2.0:assertion",
    "ds": "http://www.w3.org/2000/09/xmldsig#",
    "rim": "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0",
    "rs": "urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0",
    "lcm": "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0",
    "query": "urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0",
    "xdsb": "urn:ihe:iti:xds-b:2007",
    "xop": "http://www.w3.org/2004/08/xop/include",
    "hl7": "urn:hl7-org:v3",
}

ACTION_PNR = "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b"
ACTION_UPDATE = "urn:ihe:iti:2010:UpdateDocumentSet"
ACTION_QUERY = "urn:ihe:iti:2007:RegistryStoredQuery"
ACTION_RETRIEVE = "urn:ihe:iti:2007:RetrieveDocumentSet"
ACTION_PATIENT = "urn:hl7-org:v3:PRPA_IN201307UV02"  # DMP TD0.2 « test d'existence de dossier » (service /patients)

DOCUMENT_ENTRY_TYPE = "urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1"
SUBMISSION_SET_NODE = "urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd"
CLASS_CODE = "urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a"
TYPE_CODE = "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983"
FORMAT_CODE = "urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d"
CONFIDENTIALITY_CODE = "urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f"
EVENT_CODE = "urn:uuid:2c6b8cb7-8b2a-4051-b291-b1ae6a575ef4"
HEALTHCARE_FACILITY_TYPE = "urn:uuid:f33fb8ac-18af-42cc-ae0e-ed0b0bdb91e1"
PRACTICE_SETTING = "urn:uuid:cccf5598-8b07-4b77-a05e-ae952c785ead"
DOCUMENT_AUTHOR = "urn:uuid:93606bcf-9494-43ec-9b4e-a7748d1a838d"
DOCUMENT_PATIENT_ID = "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427"
DOCUMENT_UNIQUE_ID = "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"
SUBMISSION_PATIENT_ID = "urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446"
SUBMISSION_SOURCE_ID = "urn:uuid:554ac39e-e3fe-47fe-b233-965d2a147832"
SUBMISSION_UNIQUE_ID = "urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8"
SUBMISSION_AUTHOR = "urn:uuid:a7058bb9-b4e4-4307-ba5b-e3f0ab85e12d"
SUBMISSION_CONTENT_TYPE = "urn:uuid:aa543740-bdda-424e-8c96-df4873be8500"

HAS_MEMBER = "urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember"
RPLC = "urn:ihe:iti:2007:AssociationType:RPLC"
SIGNS = "urn:ihe:iti:2007:AssociationType:signs"
UPDATE_AVAILABILITY = "urn:ihe:iti:2010:AssociationType:UpdateAvailabilityStatus"

STATUS_APPROVED = "urn:oasis:names:tc:ebxml-regrep:StatusType:Approved"
STATUS_DEPRECATED = "urn:oasis:names:tc:ebxml-regrep:StatusType:Deprecated"
STATUS_DELETED = "urn:asip:ci-sis:2010:StatusType:Deleted"
RESPONSE_SUCCESS = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success"
RESPONSE_FAILURE = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Failure"
RESPONSE_PARTIAL = "urn:ihe:iti:2007:ResponseStatusType:PartialSuccess"

# ITI-18 Registry Stored Query identifiers (IHE ITI TF-2a 3.18.4.1.2.3.7)
FIND_DOCUMENTS = "urn:uuid:14d4debf-8f97-4251-9a74-a90016b0af0d"
FIND_DOCUMENTS_BY_REFERENCE_ID = "urn:uuid:12941a89-e02e-4be5-967c-ce4bfc8fe492"
GET_DOCUMENTS = "urn:uuid:5c4f972b-d56b-40ac-a5fc-c8ca9b40b9d4"
STORED_QUERIES = {FIND_DOCUMENTS: "FindDocuments", FIND_DOCUMENTS_BY_REFERENCE_ID: "FindDocumentsByReferenceId",
                  GET_DOCUMENTS: "GetDocuments"}
REFERENCE_ID_LIST = "urn:ihe:iti:xds:2013:referenceIdList"

KOS_FORMAT = "1.2.840.10008.5.1.4.1.1.88.59"
SIGNATURE_CLASS = "urn:oid:1.3.6.1.4.1.19376.1.2.1.1.1"
SIGNATURE_FORMAT = "http://www.w3.org/2000/09/xmldsig#"


class XdsParseError(ValueError):
    """The request cannot be read as what it claims to be (one French line)."""


# --------------------------------------------------------------------------- MIME / MTOM

@dataclass
class MimePart:
    content_id: str
    content_type: str
    transfer_encoding: str
    data: bytes


@dataclass
class Mime:
    root: bytes
    parts: dict[str, MimePart]
    content_type: str
    problems: list[str] = field(default_factory=list)


def _param(header: str, name: str) -> str | None:
    m = re.search(rf'(?:^|;)\s*{re.escape(name)}\s*=\s*("([^"]*)"|[^;\s]+)', header, re.IGNORECASE)
    if not m:
        return None
    return m.group(2) if m.group(2) is not None else m.group(1)


_BLANK_LINE = re.compile(rb"\r?\n\r?\n")


def parse_mime(content_type: str, body: bytes) -> Mime:
    """Split an MTOM/XOP multipart/related body; a plain SOAP body is its own root."""
    ctype = (content_type or "").split(";")[0].strip().lower()
    if ctype != "multipart/related":
        if ctype not in ("application/soap+xml", "text/xml", "application/xml"):
            raise XdsParseError(f"Content-Type « {content_type or 'absent'} » : ni MTOM (multipart/related) ni SOAP 1.2")
        return Mime(body, {}, content_type)
    boundary = _param(content_type, "boundary")
    if not boundary:
        raise XdsParseError("multipart/related sans paramètre boundary")
    problems: list[str] = []
    if (_param(content_type, "type") or "").lower() != "application/xop+xml":
        problems.append(f"paramètre type « {_param(content_type, 'type')} » au lieu de application/xop+xml (MTOM)")
    delimiter = re.compile(rb"^[ \t]*--" + re.escape(boundary.encode()) + rb"(--)?[ \t]*\r?$", re.MULTILINE)
    marks = []
    for mark in delimiter.finditer(body):
        marks.append(mark)
        if len(marks) > MAX_MULTIPART_PARTS + 1:
            raise XdsParseError(f"corps multipart de plus de {MAX_MULTIPART_PARTS} parties")
    if len(marks) < 2:
        raise XdsParseError(f"corps multipart sans délimiteurs « --{boundary} »")
    if any(body[m.start():m.start() + 1] in (b" ", b"\t") for m in marks):
        problems.append("délimiteurs MIME indentés (non conformes à RFC 2046)")
    parts: list[MimePart] = []
    for i, m in enumerate(marks[:-1]):
        if m.group(1):
            break
        # offsets into body, one copy per part (a part may be most of a 32 MiB request)
        begin, stop = m.end(), marks[i + 1].start()
        begin += 2 if body.startswith(b"\r\n", begin, stop) else 1 if body.startswith(b"\n", begin, stop) else 0
        sep = _BLANK_LINE.search(body, begin, min(stop, begin + MAX_PART_HEADER_BYTES + 4))
        if sep is None and stop - begin > MAX_PART_HEADER_BYTES:
            raise XdsParseError(f"partie MIME sans fin d'en-têtes dans ses {MAX_PART_HEADER_BYTES} premiers octets")
        head_end, data_begin = (sep.start(), sep.end()) if sep else (stop, stop)
        if sep is not None:
            stop -= 2 if body.endswith(b"\r\n", data_begin, stop) else 1 if body.endswith(b"\n", data_begin, stop) else 0
        head, data = body[begin:head_end], body[data_begin:stop]
        headers = {}
        for line in head.decode("latin-1").splitlines():
            if ":" in line:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
        cte = headers.get("content-transfer-encoding", "binary").lower()
        if cte == "base64":
            try:
                data = base64.b64decode(re.sub(rb"\s+", b"", data), validate=True)
            except (ValueError, binascii.Error):
                raise XdsParseError(f"partie {headers.get('content-id', '?')} : base64 invalide") from None
        parts.append(MimePart(headers.get("content-id", "").strip().strip("<>"), headers.get("content-type", ""), cte, data))
    if not parts:
        raise XdsParseError("corps multipart sans partie")
    start = (_param(content_type, "start") or "").strip().strip("<>")
    root = next((p for p in parts if p.content_id == start), None) if start else parts[0]
    if root is None:
        raise XdsParseError(f"partie racine start=<{start}> introuvable")
    if "application/xop+xml" not in root.content_type.lower():
        problems.append(f"partie racine de type « {root.content_type} » au lieu de application/xop+xml")
    return Mime(root.data, {p.content_id: p for p in parts if p is not root}, content_type, problems)


# --------------------------------------------------------------------------- SOAP envelope

@dataclass
class Soap:
    envelope: etree._Element
    action: str
    message_id: str
    to: str
    action_must_understand: bool
    security: etree._Element | None
    assertion: etree._Element | None
    body_child: etree._Element | None
    problems: list[str] = field(default_factory=list)


def parse_xml(data: bytes, what: str) -> etree._Element:
    """Parse XML written by the DUT within drimcheck.safexml's caps (size, nodes, depth; no entities)."""
    try:
        return safexml.fromstring(data.strip(), what)
    except safexml.XmlRejected as exc:
        raise XdsParseError(str(exc)) from None


def parse_soap(root_xml: bytes) -> Soap:
    env = parse_xml(root_xml, "enveloppe SOAP")
    if env.tag != f"{{{NS['soap']}}}Envelope":
        raise XdsParseError(f"racine {env.tag} au lieu d'une enveloppe SOAP 1.2")
    header = env.find("soap:Header", NS)
    body = env.find("soap:Body", NS)
    if body is None:
        raise XdsParseError("enveloppe SOAP sans Body")
    problems = []

    def wsa(name: str) -> etree._Element | None:
        return header.find(f"wsa:{name}", NS) if header is not None else None

    action_el = wsa("Action")
    mu = (action_el.get(f"{{{NS['soap']}}}mustUnderstand") or action_el.get("mustUnderstand") or "") if action_el is not None else ""
    if action_el is None:
        problems.append("en-tête WS-Addressing Action absent")
    if wsa("MessageID") is None:
        problems.append("en-tête WS-Addressing MessageID absent")
    security = header.find("wsse:Security", NS) if header is not None else None
    assertion = security.find("saml2:Assertion", NS) if security is not None else None
    children = [c for c in body if isinstance(c.tag, str)]
    message_id, to = wsa("MessageID"), wsa("To")
    return Soap(env, (action_el.text or "").strip() if action_el is not None else "",
                (message_id.text or "").strip() if message_id is not None else "",
                (to.text or "").strip() if to is not None else "",
                mu in ("true", "1"), security, assertion, children[0] if children else None, problems)


# --------------------------------------------------------------------------- ebRIM metadata

@dataclass
class Classification:
    scheme: str
    node: str
    coding_scheme: str
    name: str
    slots: dict[str, list[str]]
    classification_node: str = ""


@dataclass
class RegistryObject:
    kind: str  # "ExtrinsicObject" | "RegistryPackage" | "Association"
    id: str
    object_type: str = ""
    mime_type: str = ""
    status: str = ""
    slots: dict[str, list[str]] = field(default_factory=dict)
    classifications: list[Classification] = field(default_factory=list)
    external_ids: dict[str, str] = field(default_factory=dict)
    name: str = ""
    association_type: str = ""
    source: str = ""
    target: str = ""

    def code(self, scheme: str) -> Classification | None:
        return next((c for c in self.classifications if c.scheme == scheme), None)

    def has_code(self, scheme: str, node: str) -> bool:
        """The first classification of this scheme has this code (node)."""
        c = self.code(scheme)
        return c is not None and c.node == node

    def codes(self, scheme: str) -> list[Classification]:
        return [c for c in self.classifications if c.scheme == scheme]

    def slot(self, name: str) -> str | None:
        values = self.slots.get(name)
        return values[0] if values else None

    @property
    def unique_id(self) -> str:
        return self.external_ids.get(DOCUMENT_UNIQUE_ID) or self.external_ids.get(SUBMISSION_UNIQUE_ID, "")

    @property
    def patient_id(self) -> str:
        return self.external_ids.get(DOCUMENT_PATIENT_ID) or self.external_ids.get(SUBMISSION_PATIENT_ID, "")

    def brief(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "id": self.id}
        if self.kind == "Association":
            out.update(type=self.association_type, source=self.source, target=self.target, slots=self.slots)
        else:
            out.update(mime_type=self.mime_type, unique_id=self.unique_id, patient_id=self.patient_id,
                       codes={c.scheme: c.node for c in self.classifications if c.node})
        return out


def _slots(el: etree._Element) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for slot in el.findall("rim:Slot", NS):
        out[slot.get("name", "")] = [(v.text or "").strip() for v in slot.findall("rim:ValueList/rim:Value", NS)]
    return out


def _name(el: etree._Element) -> str:
    ls = el.find("rim:Name/rim:LocalizedString", NS)
    return ls.get("value", "") if ls is not None else ""


def parse_registry_objects(container: etree._Element) -> list[RegistryObject]:
    """Every RegistryPackage, ExtrinsicObject and Association of a RegistryObjectList (top-level
    Classifications are attached to the object they classify)."""
    objects: list[RegistryObject] = []
    by_id: dict[str, RegistryObject] = {}
    loose: list[etree._Element] = []
    for el in container:
        if not isinstance(el.tag, str):
            continue
        local = etree.QName(el).localname
        if local == "Classification":
            loose.append(el)
            continue
        if local not in ("ExtrinsicObject", "RegistryPackage", "Association"):
            continue
        obj = RegistryObject(local, el.get("id", ""), el.get("objectType", ""), el.get("mimeType", ""),
                             el.get("status", ""), _slots(el), name=_name(el),
                             association_type=el.get("associationType", ""), source=el.get("sourceObject", ""),
                             target=el.get("targetObject", ""))
        for c in el.findall("rim:Classification", NS):
            obj.classifications.append(_classification(c))
        for e in el.findall("rim:ExternalIdentifier", NS):
            obj.external_ids[e.get("identificationScheme", "")] = e.get("value", "")
        objects.append(obj)
        by_id[obj.id] = obj
    for c in loose:
        target = by_id.get(c.get("classifiedObject", ""))
        if target is not None:
            target.classifications.append(_classification(c))
    return objects


def _classification(c: etree._Element) -> Classification:
    slots = _slots(c)
    return Classification(c.get("classificationScheme", ""), c.get("nodeRepresentation", ""),
                          (slots.get("codingScheme") or [""])[0], _name(c), slots, c.get("classificationNode", ""))


# --------------------------------------------------------------------------- requests

@dataclass
class Vihf:
    """The VIHF SAML 2.0 assertion, read (its signature is verified by `verify_xmldsig`)."""

    element: etree._Element
    id: str
    issuer: str
    name_id: str
    authn_context: str
    attributes: dict[str, list[Any]]  # name -> text values, or {attr: value} for coded element values
    signature: etree._Element | None

    def first(self, name: str) -> str:
        values = self.attributes.get(name) or [""]
        return values[0] if isinstance(values[0], str) else ""


def read_vihf(assertion: etree._Element | None) -> Vihf | None:
    if assertion is None:
        return None
    attrs: dict[str, list[Any]] = {}
    for a in assertion.findall("saml2:AttributeStatement/saml2:Attribute", NS):
        values: list[Any] = []
        for v in a.findall("saml2:AttributeValue", NS):
            kids = [k for k in v if isinstance(k.tag, str)]
            values.append(dict(kids[0].attrib) if kids else (v.text or "").strip())
        attrs[a.get("Name", "")] = values

    def text(path: str) -> str:
        el = assertion.find(path, NS)
        return (el.text or "").strip() if el is not None else ""

    return Vihf(assertion, assertion.get("ID", ""), text("saml2:Issuer"), text("saml2:Subject/saml2:NameID"),
                text("saml2:AuthnStatement/saml2:AuthnContext/saml2:AuthnContextClassRef"), attrs,
                assertion.find("ds:Signature", NS))


KINDS = {ACTION_PNR: "ITI-41", ACTION_UPDATE: "ITI-57", ACTION_QUERY: "ITI-18", ACTION_RETRIEVE: "ITI-43",
         ACTION_PATIENT: "TD0.2"}
HL7V3 = "urn:hl7-org:v3"
RESOURCE_ID = "urn:oasis:names:tc:xacml:2.0:resource:resource-id"  # VIHF attribute: the patient concerned
EXISTENCE_REASON = ("TEST_EXST", "1.2.250.1.213.1.1.4.11")  # reasonCode of the DMP existence test


def query_values(raw: str) -> list[str]:
    """The values of one ebXML stored-query parameter value: ``'a'``, ``('a','b')`` or a bare number/text."""
    text = (raw or "").strip()
    if text.startswith("(") and text.endswith(")"):
        text = text[1:-1]
    out, cur, quoted, i = [], [], False, 0
    while i < len(text):
        ch = text[i]
        if ch == "'":
            if quoted and i + 1 < len(text) and text[i + 1] == "'":  # '' is an escaped quote
                cur.append("'")
                i += 2
                continue
            quoted = not quoted
        elif ch == "," and not quoted:
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
        i += 1
    if quoted:
        raise XdsParseError(f"valeur de paramètre mal formée (guillemet non fermé) : {raw!r}")
    out.append("".join(cur).strip())
    return [v for v in out if v]


@dataclass
class StoredQuery:
    """An ITI-18 AdhocQuery: its stored query id, response option and parameter slots (in order)."""

    query_id: str
    return_type: str
    return_composed: bool
    slots: list[tuple[str, list[str]]]  # (parameter name, raw Value texts), a name may repeat (AND semantics)

    @property
    def name(self) -> str:
        return STORED_QUERIES.get(self.query_id, self.query_id)

    def groups(self, name: str) -> list[list[str]]:
        """Each slot of parameter ``name`` as the list of its values (values ORed, slots ANDed)."""
        return [[v for raw in values for v in query_values(raw)] for n, values in self.slots if n == name]

    def values(self, name: str) -> list[str]:
        return [v for group in self.groups(name) for v in group]

    def to_dict(self) -> dict[str, Any]:
        return {"query_id": self.query_id, "name": self.name, "return_type": self.return_type,
                "return_composed_objects": self.return_composed,
                "parameters": [{"name": n, "values": v} for n, v in self.slots]}


def parse_stored_query(body_child: etree._Element) -> StoredQuery:
    if etree.QName(body_child).localname != "AdhocQueryRequest":
        raise XdsParseError(f"action ITI-18 mais Body {etree.QName(body_child).localname}")
    option = body_child.find("query:ResponseOption", NS)
    query = body_child.find("rim:AdhocQuery", NS)
    if query is None:
        raise XdsParseError("AdhocQueryRequest sans AdhocQuery")
    slots = [(slot.get("name", ""), [(v.text or "").strip() for v in slot.findall("rim:ValueList/rim:Value", NS)])
             for slot in query.findall("rim:Slot", NS)]
    return StoredQuery(query.get("id", ""), option.get("returnType", "") if option is not None else "",
                       (option.get("returnComposedObjects", "") if option is not None else "") in ("true", "1"), slots)


def parse_retrieve_request(body_child: etree._Element) -> list[tuple[str, str]]:
    if etree.QName(body_child).localname != "RetrieveDocumentSetRequest":
        raise XdsParseError(f"action ITI-43 mais Body {etree.QName(body_child).localname}")
    out = []
    for req in body_child.findall("xdsb:DocumentRequest", NS):
        repo = req.find("xdsb:RepositoryUniqueId", NS)
        doc = req.find("xdsb:DocumentUniqueId", NS)
        out.append(((repo.text or "").strip() if repo is not None else "", (doc.text or "").strip() if doc is not None else ""))
    if not out:
        raise XdsParseError("RetrieveDocumentSetRequest sans DocumentRequest")
    return out


@dataclass(frozen=True)
class PatientQuery:
    """A DMP TD0.2 request (HL7v3 PRPA_IN201307UV02): reasonCode and the patient identifier asked about."""

    reason_code: str
    reason_system: str
    root: str  # patientIdentifier/value/@root: the INS OID
    extension: str  # the INS

    @property
    def patient_id(self) -> str:
        return f"{self.extension}^^^&{self.root}&ISO^NH"

    def to_dict(self) -> dict[str, str]:
        return {"reasonCode": self.reason_code, "codeSystem": self.reason_system, "root": self.root,
                "extension": self.extension}


def parse_patient_query(body_child: etree._Element) -> PatientQuery:
    """The PRPA_IN201307UV02 of a TD0.2 (shape of the ANS PoC VerifyAuthorizationRequest)."""
    if etree.QName(body_child).localname != "PRPA_IN201307UV02":
        raise XdsParseError(f"action PRPA_IN201307UV02 mais Body {etree.QName(body_child).localname}")
    ns = {"v3": HL7V3}
    reason = body_child.find("v3:controlActProcess/v3:reasonCode", ns)
    value = body_child.find("v3:controlActProcess/v3:queryByParameter/v3:parameterList/v3:patientIdentifier/v3:value",
                            ns)
    if value is None or not value.get("extension"):
        raise XdsParseError("PRPA_IN201307UV02 sans patientIdentifier/value/@extension (INS du patient)")
    return PatientQuery(reason.get("code", "") if reason is not None else "",
                        reason.get("codeSystem", "") if reason is not None else "",
                        value.get("root", ""), value.get("extension", ""))


@dataclass
class XdsRequest:
    """One parsed DMP request: ITI-41 (submission) or ITI-57 (update), with its raw parts."""

    action: str
    soap: Soap
    objects: list[RegistryObject]
    documents: dict[str, bytes]  # ITI-41: Document id -> bytes
    vihf: Vihf | None
    problems: list[str] = field(default_factory=list)
    query: StoredQuery | None = None  # ITI-18
    document_requests: list[tuple[str, str]] = field(default_factory=list)  # ITI-43: (repository, document) uniqueIds
    patient_query: PatientQuery | None = None  # TD0.2

    @property
    def kind(self) -> str:
        return KINDS.get(self.action, self.action)

    def of_kind(self, kind: str) -> list[RegistryObject]:
        return [o for o in self.objects if o.kind == kind]

    @property
    def submission_set(self) -> RegistryObject | None:
        packages = self.of_kind("RegistryPackage")
        for p in packages:
            if any(c.classification_node == SUBMISSION_SET_NODE for c in p.classifications) or \
                    SUBMISSION_UNIQUE_ID in p.external_ids:
                return p
        return packages[0] if packages else None

    @property
    def entries(self) -> list[RegistryObject]:
        return self.of_kind("ExtrinsicObject")

    def associations(self, kind: str) -> list[RegistryObject]:
        return [a for a in self.of_kind("Association") if a.association_type == kind]

    def kos_entries(self) -> list[RegistryObject]:
        return [e for e in self.entries if e.mime_type == "application/dicom"
                or e.has_code(FORMAT_CODE, KOS_FORMAT)]

    def signature_entries(self) -> list[RegistryObject]:
        return [e for e in self.entries if e.has_code(CLASS_CODE, SIGNATURE_CLASS)
                or e.has_code(FORMAT_CODE, SIGNATURE_FORMAT)]

    def reference_ids(self, entry: RegistryObject) -> dict[str, list[str]]:
        """referenceIdList values by type (…:accession, …:studyInstanceUID, …:order)."""
        out: dict[str, list[str]] = {}
        for value in entry.slots.get("urn:ihe:iti:xds:2013:referenceIdList", []):
            kind = value.rsplit("^", 1)[-1] if "^" in value else ""
            out.setdefault(kind, []).append(value)
        return out

    def study_uids(self) -> set[str]:
        out = set()
        for e in self.kos_entries():
            for v in self.reference_ids(e).get("urn:ihe:iti:xds:2016:studyInstanceUID", []):
                out.add(v.split("^", 1)[0])
        return out

    def summary(self) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if self.query is not None:
            extra["query"] = self.query.to_dict()
        if self.patient_query is not None:
            extra["patient_query"] = self.patient_query.to_dict()
        if self.document_requests:
            extra["document_requests"] = [{"repository": r, "document": d} for r, d in self.document_requests]
        return {"action": self.action, "message_id": self.soap.message_id, "to": self.soap.to, **extra,
                "objects": [o.brief() for o in self.objects],
                "documents": {k: {"size": len(v), "sha1": hashlib.sha1(v).hexdigest()} for k, v in self.documents.items()},
                "vihf": {"issuer": self.vihf.issuer, "attributes": self.vihf.attributes,
                         "signed": self.vihf.signature is not None} if self.vihf else None,
                "problems": self.problems + self.soap.problems}


def parse_request(content_type: str, body: bytes) -> XdsRequest:
    """Read one DMP request; XdsParseError when it is not a readable ITI-41, ITI-57, ITI-18 or ITI-43 request."""
    mime = parse_mime(content_type, body)
    soap = parse_soap(mime.root)
    problems = list(mime.problems)
    action = soap.action or (_param(content_type, "action") or "")
    if soap.body_child is None:
        raise XdsParseError("Body SOAP vide")
    documents: dict[str, bytes] = {}
    if action == ACTION_PNR:
        if etree.QName(soap.body_child).localname != "ProvideAndRegisterDocumentSetRequest":
            raise XdsParseError(f"action ITI-41 mais Body {etree.QName(soap.body_child).localname}")
        sor = soap.body_child.find("lcm:SubmitObjectsRequest", NS)
        if sor is None:
            raise XdsParseError("ProvideAndRegisterDocumentSetRequest sans SubmitObjectsRequest")
        for doc in soap.body_child.findall("xdsb:Document", NS):
            doc_id = doc.get("id", "")
            include = doc.find("xop:Include", NS)
            if include is not None:
                cid = unquote(include.get("href", "").removeprefix("cid:"))
                part = mime.parts.get(cid)
                if part is None:
                    raise XdsParseError(f"document {doc_id} : partie MIME cid:{cid} absente")
                documents[doc_id] = part.data
            else:
                try:
                    documents[doc_id] = base64.b64decode(re.sub(r"\s+", "", doc.text or ""), validate=True)
                except ValueError:
                    raise XdsParseError(f"document {doc_id} : contenu base64 en ligne invalide") from None
                problems.append(f"document {doc_id} transmis en base64 dans l'enveloppe, pas en pièce MTOM")
    elif action == ACTION_UPDATE:
        sor = soap.body_child if etree.QName(soap.body_child).localname == "SubmitObjectsRequest" else None
        if sor is None:
            raise XdsParseError(f"action ITI-57 mais Body {etree.QName(soap.body_child).localname}")
    elif action == ACTION_QUERY:
        return XdsRequest(action, soap, [], {}, read_vihf(soap.assertion), problems,
                          query=parse_stored_query(soap.body_child))
    elif action == ACTION_RETRIEVE:
        return XdsRequest(action, soap, [], {}, read_vihf(soap.assertion), problems,
                          document_requests=parse_retrieve_request(soap.body_child))
    elif action == ACTION_PATIENT:
        return XdsRequest(action, soap, [], {}, read_vihf(soap.assertion), problems,
                          patient_query=parse_patient_query(soap.body_child))
    else:
        raise XdsParseError(f"action WS-Addressing « {action or 'absente'} » non prise en charge "
                            f"(attendu {', '.join(KINDS)})")
    rol = sor.find("rim:RegistryObjectList", NS)
    if rol is None:
        raise XdsParseError("SubmitObjectsRequest sans RegistryObjectList")
    objects = parse_registry_objects(rol)
    request = XdsRequest(action, soap, objects, documents, read_vihf(soap.assertion), problems)
    if request.submission_set is None:
        raise XdsParseError("lot de soumission (RegistryPackage) absent")
    if action == ACTION_PNR:
        for entry in request.entries:
            if entry.id not in documents:
                raise XdsParseError(f"fiche {entry.id} sans document joint")
    return request


def parse_cx(value: str) -> tuple[str, str, str]:
    """id^^^&OID&ISO^type -> (id, OID, type); missing parts are empty strings."""
    comps = (value or "").split("^")
    ident = comps[0] if comps else ""
    authority = comps[3] if len(comps) > 3 else ""
    sub = authority.split("&")
    oid = sub[1] if len(sub) > 1 else ""
    return ident, oid, comps[4] if len(comps) > 4 else ""


@dataclass
class DmpExchange:
    """One request the DMP simulator received, as recorded: raw bytes, TLS client certificate,
    what could be read of it, and what the DMP answered (the checks judge these records)."""

    seq: int
    received_at: float  # time.monotonic() at reception
    path: str
    content_type: str
    body: bytes
    client_cert_der: bytes | None
    request: XdsRequest | None = None
    parse_error: str | None = None
    action: str = ""
    status: str = ""  # "Success", "Failure", or "Fault" (refused before any XDS processing)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (errorCode, codeContext)
    forced: bool = False  # Failure requested by the scenario
    assigned: dict[str, str] = field(default_factory=dict)  # document id -> entry UUID
    replaced: list[str] = field(default_factory=list)  # entry UUIDs deprecated by RPLC
    status_updates: list[tuple[str, str]] = field(default_factory=list)  # (entry UUID, new status)
    study_uids: set[str] = field(default_factory=set)
    evidence: list[str] = field(default_factory=list)
    kos_evidence: str | None = None
    consultation: dict[str, Any] = field(default_factory=dict)  # ITI-18/ITI-43: what was asked and returned
    answer: Any = None  # the simulator's own response object, when the handler built it (ITI-18, ITI-43)

    @property
    def kind(self) -> str:
        return KINDS.get(self.action, self.action or "?")

    @property
    def success(self) -> bool:
        return self.status == "Success"

    def client_certificate(self) -> x509.Certificate | None:
        if not self.client_cert_der:
            return None
        try:
            return x509.load_der_x509_certificate(self.client_cert_der)
        except ValueError:
            return None

    def kos_bytes(self) -> bytes | None:
        if self.request is None:
            return None
        entries = self.request.kos_entries()
        return self.request.documents.get(entries[0].id) if entries else None

    def describe(self) -> str:
        what = f"{self.kind} n°{self.seq}"
        if self.forced:
            return f"{what} (échec demandé par le scénario)"
        return f"{what} ({self.status}{' : ' + self.errors[0][1] if self.errors else ''})"


# --------------------------------------------------------------------------- signatures

@dataclass
class SignatureCheck:
    ok: bool
    detail: str
    cert: x509.Certificate | None = None
    references: list[str] = field(default_factory=list)
    algorithm: str = ""


def signer_certificate(signature: etree._Element) -> x509.Certificate | None:
    el = signature.find("ds:KeyInfo/ds:X509Data/ds:X509Certificate", NS)
    if el is None or not (el.text or "").strip():
        return None
    try:
        return x509.load_der_x509_certificate(base64.b64decode(re.sub(r"\s+", "", el.text or "")))
    except ValueError:
        return None


def _signature_info(signature: etree._Element) -> tuple[x509.Certificate | None, list[str], str]:
    """The KeyInfo certificate, the SignedInfo reference URIs and the signature algorithm."""
    refs = [r.get("URI", "") for r in signature.findall("ds:SignedInfo/ds:Reference", NS)]
    method = signature.find("ds:SignedInfo/ds:SignatureMethod", NS)
    return signer_certificate(signature), refs, method.get("Algorithm", "") if method is not None else ""


@judged_fact  # a VIHF's SignatureValue is redacted in evidence: re-judging reads this result back
def verify_xmldsig(signature: etree._Element) -> SignatureCheck:
    """Core XMLDSig validation (every SignedInfo reference and the SignatureValue) with the KeyInfo certificate.

    The signature is verified in its own document; ID/Id attributes are registered for same-document
    references. The certificate's trust and profile are judged separately by the checks.
    """
    import xmlsec
    from cryptography.hazmat.primitives import serialization

    cert, refs, algorithm = _signature_info(signature)
    if cert is None:
        return SignatureCheck(False, "aucun certificat X.509 lisible dans KeyInfo", None, refs, algorithm)
    root = signature.getroottree().getroot()
    # Work on a copy so the registered IDs do not leak into the caller's tree.
    copy_root = etree.fromstring(etree.tostring(root), safexml.parser())  # already within the caps
    tag = f"{{{NS['ds']}}}Signature"
    index = list(root.iter(tag)).index(signature)
    copy_sig = list(copy_root.iter(tag))[index]
    xmlsec.tree.add_ids(copy_root, ["ID", "Id"])
    try:
        key = xmlsec.Key.from_memory(cert.public_bytes(serialization.Encoding.PEM), xmlsec.constants.KeyDataFormatCertPem)
        ctx = xmlsec.SignatureContext()
        ctx.key = key
        ctx.verify(copy_sig)
    except xmlsec.Error as exc:
        return SignatureCheck(False, f"signature XML invalide ({exc})", cert, refs, algorithm)
    except Exception as exc:  # noqa: BLE001 - malformed signature structures
        return SignatureCheck(False, f"signature XML inexploitable ({type(exc).__name__}: {exc})", cert, refs, algorithm)
    return SignatureCheck(True, "signature XML valide", cert, refs, algorithm)


def verify_xmldsig_cli(document: bytes, timeout_s: float = 30.0) -> SignatureCheck:
    """XMLDSig validation of a whole signature document with the xmlsec1 command line (Debian xmlsec1).

    Used for the IHE "signature de lot" whose ds:Manifest references (urn:oid:…) are not resolvable:
    xmlsec1 --ignore-manifests validates the SignedInfo references (the Manifest element itself and
    the SignedProperties) and the SignatureValue; the Manifest digests are checked by the caller.
    """
    import shutil
    import subprocess
    import tempfile
    from pathlib import Path

    from cryptography.hazmat.primitives import serialization

    try:
        root = parse_xml(document, "document de signature")
    except XdsParseError as exc:
        return SignatureCheck(False, str(exc))
    signature = root if root.tag == f"{{{NS['ds']}}}Signature" else root.find(".//ds:Signature", NS)
    if signature is None:
        return SignatureCheck(False, "aucun élément ds:Signature")
    cert, refs, algorithm = _signature_info(signature)
    if cert is None:
        return SignatureCheck(False, "aucun certificat X.509 lisible dans KeyInfo", None, refs, algorithm)
    binary = shutil.which("xmlsec1")
    if binary is None:
        return SignatureCheck(False, "xmlsec1 introuvable (paquet Debian xmlsec1)", cert, refs, algorithm)
    id_nodes = sorted({(etree.QName(el).namespace or "", etree.QName(el).localname)
                       for el in root.iter() if isinstance(el.tag, str) and el.get("Id")})
    with tempfile.TemporaryDirectory(prefix="drimcheck-xmlsec-") as tmp:
        doc_path, cert_path = Path(tmp) / "signature.xml", Path(tmp) / "signer.pem"
        doc_path.write_bytes(document)
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        cmd = [binary, "--verify", "--ignore-manifests", "--pubkey-cert-pem", str(cert_path)]
        for ns, local in id_nodes:
            cmd += ["--id-attr:Id", f"{ns}:{local}" if ns else local]
        try:
            proc = subprocess.run(cmd + [str(doc_path)], capture_output=True, text=True, timeout=timeout_s)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return SignatureCheck(False, f"xmlsec1 n'a pas pu vérifier : {exc}", cert, refs, algorithm)
    if proc.returncode != 0:
        reason = next((ln for ln in proc.stderr.splitlines() if "References (ok/all)" in ln), "")
        return SignatureCheck(False, f"signature XML invalide selon xmlsec1 ({reason or 'échec de vérification'})",
                              cert, refs, algorithm)
    return SignatureCheck(True, "signature XML valide (xmlsec1)", cert, refs, algorithm)


_DIGESTS = {
    "http://www.w3.org/2000/09/xmldsig#sha1": hashlib.sha1,
    "http://www.w3.org/2001/04/xmlenc#sha256": hashlib.sha256,
    "http://www.w3.org/2001/04/xmldsig-more#sha384": hashlib.sha384,
    "http://www.w3.org/2001/04/xmlenc#sha512": hashlib.sha512,
}


def manifest_references(signature: etree._Element) -> list[tuple[str, str, str]]:
    """(URI, DigestMethod, DigestValue) of every Reference in the signature's ds:Manifest objects."""
    out = []
    for ref in signature.findall("ds:Object/ds:Manifest/ds:Reference", NS):
        method = ref.find("ds:DigestMethod", NS)
        value = ref.find("ds:DigestValue", NS)
        out.append((ref.get("URI", ""), method.get("Algorithm", "") if method is not None else "",
                    (value.text or "").strip() if value is not None else ""))
    return out


def digest_matches(data: bytes, algorithm: str, value_b64: str) -> bool | None:
    """True/False, or None when the digest algorithm is unknown."""
    func = _DIGESTS.get(algorithm)
    if func is None:
        return None
    return base64.b64encode(func(data).digest()).decode() == value_b64


__all__ = [
    "XdsParseError", "MimePart", "Mime", "parse_mime", "Soap", "parse_soap", "parse_xml", "Classification",
    "RegistryObject", "parse_registry_objects", "Vihf", "read_vihf", "XdsRequest", "parse_request", "parse_cx",
    "DmpExchange", "SignatureCheck", "signer_certificate", "verify_xmldsig", "verify_xmldsig_cli",
    "manifest_references", "digest_matches", "NS",
    "ACTION_PNR", "ACTION_UPDATE", "ACTION_QUERY", "ACTION_RETRIEVE", "HAS_MEMBER", "RPLC", "SIGNS",
    "UPDATE_AVAILABILITY", "STATUS_APPROVED", "STATUS_DEPRECATED", "STATUS_DELETED", "RESPONSE_SUCCESS",
    "RESPONSE_FAILURE", "RESPONSE_PARTIAL", "KOS_FORMAT", "SIGNATURE_CLASS", "SIGNATURE_FORMAT", "KINDS",
    "FIND_DOCUMENTS", "FIND_DOCUMENTS_BY_REFERENCE_ID", "GET_DOCUMENTS", "STORED_QUERIES", "REFERENCE_ID_LIST",
    "StoredQuery", "query_values", "parse_stored_query", "parse_retrieve_request",
]
