"""DMP publication of the reference Source DRIMbox: ITI-41 (with RPLC), ITI-57, VIHF, signature document.

The reference's own code (the harness parses and verifies independently): ebRIM metadata as in the
ANS samples (drimbox-spec §4.4), a VIHF SAML 2.0 assertion signed with the ORG SIGN certificate
(enveloped XMLDSig, exclusive c14n, RSA-SHA256), the IHE "signature de lot" document (XMLDSig over
an IHE Manifest of the submission set and its documents, XAdES SignedProperties), MTOM/XOP framing,
and an HTTPS client presenting the ORG AUTH_CLI certificate (mTLS).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import ssl
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from lxml import etree

from simulators.drimbox.source_kos import Identity

SOAP = "http://www.w3.org/2003/05/soap-envelope"
WSA = "http://www.w3.org/2005/08/addressing"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
DS = "http://www.w3.org/2000/09/xmldsig#"
XADES = "http://uri.etsi.org/01903/v1.3.2#"
RIM = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"
RS = "urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0"
LCM = "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"
XDSB = "urn:ihe:iti:xds-b:2007"
XOP = "http://www.w3.org/2004/08/xop/include"
HL7 = "urn:hl7-org:v3"
XSI = "http://www.w3.org/2001/XMLSchema-instance"

EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"

ACTION_PNR = "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b"
ACTION_UPDATE = "urn:ihe:iti:2010:UpdateDocumentSet"
SUCCESS = "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success"

# ebRIM / XDS identifiers (IHE ITI TF-3 §4.2)
DOC_ENTRY = "urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1"
SS_NODE = "urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd"
CLASS_CODE = "urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a"
TYPE_CODE = "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983"
FORMAT_CODE = "urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d"
CONF_CODE = "urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f"
EVENT_CODE = "urn:uuid:2c6b8cb7-8b2a-4051-b291-b1ae6a575ef4"
HCFT_CODE = "urn:uuid:f33fb8ac-18af-42cc-ae0e-ed0b0bdb91e1"
PRACTICE_CODE = "urn:uuid:cccf5598-8b07-4b77-a05e-ae952c785ead"
DOC_AUTHOR = "urn:uuid:93606bcf-9494-43ec-9b4e-a7748d1a838d"
DOC_PID = "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427"
DOC_UID = "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"
SS_AUTHOR = "urn:uuid:a7058bb9-b4e4-4307-ba5b-e3f0ab85e12d"
SS_CONTENT = "urn:uuid:aa543740-bdda-424e-8c96-df4873be8500"
SS_PID = "urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446"
SS_SOURCE = "urn:uuid:554ac39e-e3fe-47fe-b233-965d2a147832"
SS_UID = "urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8"
HAS_MEMBER = "urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember"
RPLC = "urn:ihe:iti:2007:AssociationType:RPLC"
SIGNS = "urn:ihe:iti:2007:AssociationType:signs"
UPDATE_STATUS = "urn:ihe:iti:2010:AssociationType:UpdateAvailabilityStatus"
APPROVED = "urn:oasis:names:tc:ebxml-regrep:StatusType:Approved"
DELETED = "urn:asip:ci-sis:2010:StatusType:Deleted"

KOS_TYPE = ("IMG-KOS", "1.2.250.1.213.1.1.4.12", "Reference d'objets d'un examen d'imagerie")
KOS_CLASS = ("31", "1.2.250.1.213.1.1.4.1", "Imagerie médicale")
KOS_FORMAT = ("1.2.840.10008.5.1.4.1.1.88.59", "1.2.840.10008.2.6.1",
              "Document de Références d'objets d'imagerie selon profil IHE RAD XDS-I")
SOURCE_ID = "1.2.250.1.999.1.1.8121"  # test sourceId of the ANS sample
LPS = {"LPS_ID": "DRIMCHECK-REF", "LPS_Nom": "drimcheck DRIMbox de référence", "LPS_ID_HOMOLOGATION_DMP": "DRIMCHECK",
       "LPS_Version": "0.1.0"}


def new_uid() -> str:
    return f"2.25.{uuid.uuid4().int}"


def urn_uuid() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def now_dtm() -> str:
    return datetime.now(UTC).strftime("%Y%m%d%H%M%S")


@dataclass
class Credentials:
    """PEM paths of a certificate (leaf + chain) and its key."""

    cert: str
    key: str
    chain: str

    def load(self) -> tuple[x509.Certificate, Any]:
        return _load_credentials(self.cert, self.key)


@functools.lru_cache(maxsize=16)
def _load_credentials(cert_path: str, key_path: str) -> tuple[x509.Certificate, Any]:
    """Parse once per process: loading an RSA key validates it, which costs tens of milliseconds."""
    with open(cert_path, "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    with open(key_path, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None)
    return cert, key


@dataclass(kw_only=True)
class Publication(Identity):
    """Everything the metadata of one KOS publication needs (the report's identity, author and context)."""

    author_id: str
    author_family: str
    author_given: str
    author_role: str  # e.g. "10" (Médecin)
    author_specialty: str  # e.g. "SM44"
    structure_id: str
    structure_name: str
    facility_type: str  # healthCareFacility code, e.g. SA08
    practice: str
    modalities: list[str]
    service_start: str
    service_stop: str
    confidentiality: list[tuple[str, str, str]] = field(default_factory=list)  # (code, scheme, name)

    @property
    def patient_id(self) -> str:
        return f"{self.ins}^^^&{self.ins_oid}&ISO^NH"


# --------------------------------------------------------------------------- XML helpers

def _el(parent: etree._Element | None, ns: str, tag: str, attrib: dict | None = None, text: str | None = None,
        nsmap: dict | None = None) -> etree._Element:
    el = etree.SubElement(parent, f"{{{ns}}}{tag}", attrib or {}, nsmap=nsmap) if parent is not None else \
        etree.Element(f"{{{ns}}}{tag}", attrib or {}, nsmap=nsmap)
    if text is not None:
        el.text = text
    return el


def _c14n(el: etree._Element) -> bytes:
    return etree.tostring(el, method="c14n", exclusive=True, with_comments=False)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _reference(parent: etree._Element, uri: str, digest: bytes, *, transforms: list[str], ref_type: str | None = None) -> None:
    attrib = {"URI": uri}
    if ref_type:
        attrib["Type"] = ref_type
    ref = _el(parent, DS, "Reference", attrib)
    if transforms:
        tr = _el(ref, DS, "Transforms")
        for t in transforms:
            _el(tr, DS, "Transform", {"Algorithm": t})
    _el(ref, DS, "DigestMethod", {"Algorithm": SHA256})
    _el(ref, DS, "DigestValue", text=_b64(digest))


def _finish_signature(signature: etree._Element, signed_info: etree._Element, key: Any, cert: x509.Certificate,
                      *, before: etree._Element | None = None) -> None:
    value = key.sign(_c14n(signed_info), padding.PKCS1v15(), hashes.SHA256())
    sv = etree.Element(f"{{{DS}}}SignatureValue")
    sv.text = _b64(value)
    ki = etree.Element(f"{{{DS}}}KeyInfo")
    _el(_el(ki, DS, "X509Data"), DS, "X509Certificate", text=_b64(cert.public_bytes(serialization.Encoding.DER)))
    index = list(signature).index(signed_info)
    signature.insert(index + 1, sv)
    signature.insert(index + 2, ki)


def sign_enveloped(target: etree._Element, key: Any, cert: x509.Certificate, *, position: int) -> etree._Element:
    """Enveloped XMLDSig of `target` (referenced by its ID attribute), inserted as child number `position`."""
    digest = hashlib.sha256(_c14n(target)).digest()  # = enveloped transform + exc-c14n once inserted
    signature = etree.Element(f"{{{DS}}}Signature", nsmap={"ds": DS})
    target.insert(position, signature)
    si = _el(signature, DS, "SignedInfo")
    _el(si, DS, "CanonicalizationMethod", {"Algorithm": EXC_C14N})
    _el(si, DS, "SignatureMethod", {"Algorithm": RSA_SHA256})
    _reference(si, f"#{target.get('ID')}", digest, transforms=[ENVELOPED, EXC_C14N])
    _finish_signature(signature, si, key, cert)
    return signature


# --------------------------------------------------------------------------- VIHF

@dataclass(frozen=True)
class VihfSubject:
    """Who the VIHF speaks for: the author of an automatic publication, or the practitioner logged in with PSC."""

    name_id: str  # NameID: RPPS/ADELI national id (SubjectNameID for a PSC user)
    subject_id: str  # "Prénom Nom"
    structure_id: str
    sector: str  # secteur d'activité code (TRE_R02), e.g. SA07
    role: str  # profession code (TRE_G15), e.g. "10"
    specialty: str  # savoir-faire code, e.g. "SM44"
    resource_id: str  # patient: INS^^^&OID&ISO^NH
    mode: str = "INDIRECTE"  # Authentification_Mode: INDIRECTE (Source), INDIRECTE_RENFORCEE (PSC user)


def build_vihf(subject: VihfSubject, key: Any, cert: x509.Certificate, *, signed: bool = True) -> etree._Element:
    """The VIHF SAML 2.0 assertion (VIHF 3.0 attributes), signed by the ORG SIGN certificate unless `signed` is False."""
    instant = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    assertion = _el(None, SAML, "Assertion", {"ID": f"_{uuid.uuid4()}", "IssueInstant": instant, "Version": "2.0"},
                    nsmap={"saml2": SAML})
    _el(assertion, SAML, "Issuer", {"Format": "urn:oasis:names:tc:SAML:1.1:nameid-format:X509SubjectName"},
        text=cert.subject.rfc4514_string())
    subject_el = _el(assertion, SAML, "Subject")
    _el(subject_el, SAML, "NameID", text=subject.name_id)
    authn = _el(assertion, SAML, "AuthnStatement", {"AuthnInstant": instant})
    context = _el(authn, SAML, "AuthnContext")
    _el(context, SAML, "AuthnContextClassRef", text="urn:oasis:names:tc:SAML:2.0:ac:classes:TLSClient")
    if subject.mode == "INDIRECTE_RENFORCEE":  # the practitioner authenticated in a browser (PSC)
        _el(context, SAML, "AuthnContextDecl", text="APP_BROWSER_AUTH")
    statement = _el(assertion, SAML, "AttributeStatement")

    def attribute(name: str, *values: Any) -> None:
        a = _el(statement, SAML, "Attribute", {"Name": name})
        for v in values:
            av = _el(a, SAML, "AttributeValue")
            if isinstance(v, str):
                av.text = v
            else:
                tag, attrs = v
                _el(av, HL7, tag, {**attrs, f"{{{XSI}}}type": "CE"}, nsmap={None: HL7, "xsi": XSI})

    attribute("VIHF_Version", "3.0")
    attribute("Secteur_Activite", f"{subject.sector}^1.2.250.1.71.4.2.4")
    attribute("Ressource_URN", "urn:dmp")
    attribute("urn:oasis:names:tc:xspa:1.0:subject:subject-id", subject.subject_id)
    attribute("Identifiant_Structure", subject.structure_id)
    for name, value in LPS.items():
        attribute(name, value)
    attribute("urn:oasis:names:tc:xacml:2.0:resource:resource-id", subject.resource_id)
    attribute("Authentification_Mode", subject.mode)
    attribute("urn:oasis:names:tc:xspa:1.0:subject:purposeofuse",
              ("PurposeOfUse", {"code": "normal", "codeSystem": "1.2.250.1.213.1.1.4.248", "displayName": "Acces normal"}))
    attribute("urn:oasis:names:tc:xacml:2.0:subject:role",
              ("Role", {"code": subject.role, "codeSystem": "1.2.250.1.71.1.2.7", "displayName": "Medecin"}),
              ("Role", {"code": subject.specialty, "codeSystem": "1.2.250.1.71.4.2.5", "displayName": subject.specialty}))
    if signed:
        sign_enveloped(assertion, key, cert, position=1)  # after Issuer, as the SAML schema orders it
    return assertion


def vihf(pub: Publication, key: Any, cert: x509.Certificate, *, signed: bool = True,
         resource_id: str | None = None) -> etree._Element:
    """The VIHF of an automatic Source publication (Authentification_Mode INDIRECTE)."""
    return build_vihf(VihfSubject(pub.author_id, f"{pub.author_given} {pub.author_family}", pub.structure_id,
                                  pub.facility_type, pub.author_role, pub.author_specialty,
                                  resource_id or pub.patient_id), key, cert, signed=signed)


# --------------------------------------------------------------------------- ebRIM metadata

def _slot(parent: etree._Element, name: str, *values: str) -> None:
    slot = _el(parent, RIM, "Slot", {"name": name})
    vl = _el(slot, RIM, "ValueList")
    for v in values:
        _el(vl, RIM, "Value", text=v)


def _name(parent: etree._Element, value: str, tag: str = "Name") -> None:
    _el(_el(parent, RIM, tag), RIM, "LocalizedString",
        {"charset": "UTF8", "value": value, "{http://www.w3.org/XML/1998/namespace}lang": "FR"})


class _Ids:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}{self.n}"


def _classify(parent: etree._Element, ids: _Ids, scheme: str, obj: str, code: str, coding: str, name: str) -> None:
    c = _el(parent, RIM, "Classification", {"classificationScheme": scheme, "classifiedObject": obj, "id": ids("cl"),
                                            "nodeRepresentation": code})
    _slot(c, "codingScheme", coding)
    _name(c, name)


def _external(parent: etree._Element, ids: _Ids, scheme: str, obj: str, value: str, name: str) -> None:
    e = _el(parent, RIM, "ExternalIdentifier", {"id": ids("ei"), "identificationScheme": scheme, "registryObject": obj,
                                                "value": value})
    _name(e, name)


@dataclass
class DocumentSpec:
    """One document of a submission: its entry id (urn:uuid), uniqueId, bytes and codes."""

    entry_id: str
    unique_id: str
    data: bytes
    mime_type: str
    class_code: tuple[str, str, str]
    type_code: tuple[str, str, str]
    format_code: tuple[str, str, str]
    name: str
    language: str
    creation_time: str
    events: list[tuple[str, str, str]] = field(default_factory=list)
    hash_override: str | None = None
    size_override: int | None = None
    source_patient_id: str | None = None  # mutant cov-xds-sourcepatientid-ipp only


def _author(parent: etree._Element, ids: _Ids, scheme: str, obj: str, pub: Publication) -> None:
    c = _el(parent, RIM, "Classification", {"classificationScheme": scheme, "classifiedObject": obj, "id": ids("cl"),
                                            "nodeRepresentation": ""})
    _slot(c, "authorPerson", f"{pub.author_id}^{pub.author_family}^{pub.author_given}^^^^^^&1.2.250.1.71.4.2.1&ISO^D^^^IDNPS")
    _slot(c, "authorInstitution", f"{pub.structure_name}^^^^^&1.2.250.1.71.4.2.2&ISO^IDNST^^^{pub.structure_id}")


def _document_entry(rol: etree._Element, ids: _Ids, pub: Publication, doc: DocumentSpec, submitted: str,
                    *, with_references: bool) -> None:
    eo = _el(rol, RIM, "ExtrinsicObject", {"id": doc.entry_id, "mimeType": doc.mime_type, "objectType": DOC_ENTRY})
    _slot(eo, "creationTime", doc.creation_time)
    _slot(eo, "languageCode", doc.language)
    _slot(eo, "legalAuthenticator",
          f"{pub.author_id}^{pub.author_family}^{pub.author_given}^^^^^^&1.2.250.1.71.4.2.1&ISO^D^^^IDNPS")
    if pub.service_start:
        _slot(eo, "serviceStartTime", pub.service_start)
    if pub.service_stop:
        _slot(eo, "serviceStopTime", pub.service_stop)
    _slot(eo, "sourcePatientId", doc.source_patient_id or f"{pub.ins}^^^&{pub.ins_oid}&ISO^NH")
    _slot(eo, "hash", doc.hash_override or hashlib.sha1(doc.data).hexdigest())
    _slot(eo, "size", str(doc.size_override if doc.size_override is not None else len(doc.data)))
    info = [f"PID-5|{pub.family}^{pub.given}^^^^^L", f"PID-7|{pub.birth_date}", f"PID-8|{pub.sex}"]
    if pub.birthplace:
        info.append(f"PID-11|^^^^^^BDL^^{pub.birthplace}")
    _slot(eo, "sourcePatientInfo", *info)
    if with_references:
        _slot(eo, "urn:ihe:iti:xds:2013:referenceIdList",
              f"{pub.accession}^^^&{pub.accession_oid}&ISO^urn:ihe:iti:xds:2013:accession",
              f"{pub.study_uid}^^^&1.2.3.4.5.6&ISO^urn:ihe:iti:xds:2016:studyInstanceUID",
              f"{pub.order}^^^&{pub.order_oid}&ISO^urn:ihe:iti:xds:2013:order")
    _name(eo, doc.name)
    _author(eo, ids, DOC_AUTHOR, doc.entry_id, pub)
    _classify(eo, ids, CLASS_CODE, doc.entry_id, *doc.class_code)
    _classify(eo, ids, TYPE_CODE, doc.entry_id, *doc.type_code)
    _classify(eo, ids, FORMAT_CODE, doc.entry_id, *doc.format_code)
    _classify(eo, ids, CONF_CODE, doc.entry_id, "N", "2.16.840.1.113883.5.25", "Normal")
    for code, scheme, name in pub.confidentiality:
        _classify(eo, ids, CONF_CODE, doc.entry_id, code, scheme, name)
    _classify(eo, ids, HCFT_CODE, doc.entry_id, pub.facility_type, "1.2.250.1.71.4.2.4", pub.facility_type)
    _classify(eo, ids, PRACTICE_CODE, doc.entry_id, pub.practice, "1.2.250.1.213.1.1.4.9", pub.practice)
    for code, scheme, name in doc.events:
        _classify(eo, ids, EVENT_CODE, doc.entry_id, code, scheme, name)
    _external(eo, ids, DOC_PID, doc.entry_id, pub.patient_id, "XDSDocumentEntry.patientId")
    _external(eo, ids, DOC_UID, doc.entry_id, doc.unique_id, "XDSDocumentEntry.uniqueId")


def _submission_set(rol: etree._Element, ids: _Ids, pub: Publication, ss_id: str, ss_uid: str, submitted: str,
                    title: str) -> None:
    rp = _el(rol, RIM, "RegistryPackage", {"id": ss_id})
    _slot(rp, "submissionTime", submitted)
    _name(rp, title)
    _author(rp, ids, SS_AUTHOR, ss_id, pub)
    _classify(rp, ids, SS_CONTENT, ss_id, "04", "1.2.250.1.213.2.2", "Hospitalisation de jour")
    _el(rp, RIM, "Classification", {"classificationNode": SS_NODE, "classifiedObject": ss_id, "id": ids("cl")})
    _external(rp, ids, SS_PID, ss_id, pub.patient_id, "XDSSubmissionSet.patientId")
    _external(rp, ids, SS_SOURCE, ss_id, SOURCE_ID, "XDSSubmissionSet.sourceId")
    _external(rp, ids, SS_UID, ss_id, ss_uid, "XDSSubmissionSet.uniqueId")


def _association(rol: etree._Element, kind: str, source: str, target: str, **slots: str) -> None:
    a = _el(rol, RIM, "Association", {"associationType": kind, "id": urn_uuid(), "sourceObject": source,
                                      "targetObject": target})
    for name, value in slots.items():
        _slot(a, name, value)


# --------------------------------------------------------------------------- signature document

def signature_document(ss_uid: str, documents: list[tuple[str, bytes]], key: Any, cert: x509.Certificate,
                       *, sig_uid: str, tamper_digest: bool = False) -> bytes:
    """IHE DSG-style "signature de lot": XMLDSig over an IHE Manifest (one Reference per document of the set)."""
    signature = etree.Element(f"{{{DS}}}Signature", {"Id": sig_uid}, nsmap={None: DS})
    si = _el(signature, DS, "SignedInfo")
    _el(si, DS, "CanonicalizationMethod", {"Algorithm": EXC_C14N})
    _el(si, DS, "SignatureMethod", {"Algorithm": RSA_SHA256})
    props = _el(_el(signature, DS, "Object"), DS, "SignatureProperties")
    _el(props, DS, "SignatureProperty", {"Id": "purposeOfSignature", "Target": f"#{sig_uid}"}, text="1.2.840.10065.1.12.1.14")
    manifest = _el(_el(signature, DS, "Object"), DS, "Manifest", {"Id": "IHEManifest"})
    entries = [(f"urn:oid:{ss_uid}", b"")] + [(f"urn:oid:{uid}", data) for uid, data in documents]
    for i, (uri, data) in enumerate(entries):
        ref = _el(manifest, DS, "Reference", {"URI": uri})
        _el(ref, DS, "DigestMethod", {"Algorithm": SHA256})
        digest = hashlib.sha256(data).digest()
        if tamper_digest and i == 1:
            digest = hashlib.sha256(data + b"\0").digest()
        _el(ref, DS, "DigestValue", text=_b64(digest))
    qp = _el(_el(signature, DS, "Object"), XADES, "QualifyingProperties", {"Target": f"#{sig_uid}"}, nsmap={"xades": XADES})
    sp = _el(qp, XADES, "SignedProperties", {"Id": "S0-SignedProperties"})
    ssp = _el(sp, XADES, "SignedSignatureProperties")
    _el(ssp, XADES, "SigningTime", text=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    cert_el = _el(_el(_el(ssp, XADES, "SigningCertificateV2"), XADES, "Cert"), XADES, "CertDigest")
    _el(cert_el, DS, "DigestMethod", {"Algorithm": SHA256})
    _el(cert_el, DS, "DigestValue", text=_b64(cert.fingerprint(hashes.SHA256())))
    _el(_el(ssp, XADES, "SignaturePolicyIdentifier"), XADES, "SignaturePolicyImplied")
    _reference(si, "#IHEManifest", hashlib.sha256(_c14n(manifest)).digest(), transforms=[EXC_C14N],
               ref_type="http://www.w3.org/2000/09/xmldsig#Manifest")
    _reference(si, "#S0-SignedProperties", hashlib.sha256(_c14n(sp)).digest(), transforms=[EXC_C14N],
               ref_type="http://uri.etsi.org/01903#SignedProperties")
    _finish_signature(signature, si, key, cert)
    return etree.tostring(signature, xml_declaration=True, encoding="UTF-8")


# --------------------------------------------------------------------------- requests

def _envelope(action: str, to: str, assertion: etree._Element | None) -> tuple[etree._Element, etree._Element]:
    env = _el(None, SOAP, "Envelope", nsmap={"soap": SOAP, "wsa": WSA})
    header = _el(env, SOAP, "Header")
    _el(header, WSA, "MessageID", text=urn_uuid())
    _el(header, WSA, "To", text=to)
    _el(header, WSA, "Action", {f"{{{SOAP}}}mustUnderstand": "true"}, text=action)
    if assertion is not None:
        _el(header, WSSE, "Security", nsmap={"wsse": WSSE}).append(assertion)
    return env, _el(env, SOAP, "Body")


@dataclass
class BuiltRequest:
    content_type: str
    body: bytes
    entry_uuid: str = ""
    unique_id: str = ""
    submission_uid: str = ""


BOUNDARY = "MIMEBoundary_drimcheck_ref"


def _mtom(envelope: etree._Element, action: str, attachments: list[tuple[str, bytes]]) -> tuple[str, bytes]:
    root = etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")
    out = bytearray()
    out += (f"--{BOUNDARY}\r\nContent-Type: application/xop+xml; charset=UTF-8; type=\"application/soap+xml\"\r\n"
            "Content-Transfer-Encoding: binary\r\nContent-ID: <0.1>\r\n\r\n").encode() + root + b"\r\n"
    for cid, data in attachments:
        out += (f"--{BOUNDARY}\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n"
                f"Content-ID: <{cid}>\r\n\r\n").encode() + data + b"\r\n"
    out += f"--{BOUNDARY}--\r\n".encode()
    ctype = (f'multipart/related; boundary="{BOUNDARY}"; type="application/xop+xml"; start="<0.1>"; '
             f'start-info="application/soap+xml"; action="{action}"')
    return ctype, bytes(out)


def provide_and_register(pub: Publication, kos: bytes, kos_uid: str, kos_created: str, *, to: str, signer: Credentials,
                         replaces: str | None = None, signed_vihf: bool = True, with_signature: bool = True,
                         overrides: dict[str, Any] | None = None) -> BuiltRequest:
    """ITI-41 of one KOS (+ its signature document), optionally replacing (RPLC) a previous entry."""
    overrides = overrides or {}
    cert, key = signer.load()
    submitted = now_dtm()
    ids = _Ids()
    ss_id, ss_uid = urn_uuid(), new_uid()
    kos_entry = urn_uuid()
    events = [(m, "1.2.250.1.213.1.1.5.618", m) for m in pub.modalities]
    kos_doc = DocumentSpec(kos_entry, overrides.get("unique_id", kos_uid), kos, "application/dicom",
                           KOS_CLASS, overrides.get("type_code", KOS_TYPE), overrides.get("format_code", KOS_FORMAT),
                           "Reference d'Objets d'un Examen d'Imagerie", "fr-FR", kos_created, events,
                           hash_override=overrides.get("hash"), size_override=overrides.get("size"),
                           source_patient_id=overrides.get("source_patient_id"))
    env, body = _envelope(ACTION_PNR, to, vihf(pub, key, cert, signed=signed_vihf,
                                               resource_id=overrides.get("resource_id")))
    pnr = _el(body, XDSB, "ProvideAndRegisterDocumentSetRequest",
              nsmap={None: RIM, "lcm": LCM, "xdsb": XDSB, "rs": RS})
    rol = _el(_el(pnr, LCM, "SubmitObjectsRequest"), RIM, "RegistryObjectList")
    _submission_set(rol, ids, pub, ss_id, ss_uid, submitted, "Publication KOS DRIMbox")
    _document_entry(rol, ids, pub, kos_doc, submitted, with_references=True)
    _association(rol, HAS_MEMBER, ss_id, kos_entry, SubmissionSetStatus="Original")
    attachments = [("0.2", kos)]
    docs = [(kos_entry, "0.2")]
    if replaces:
        _association(rol, RPLC, kos_entry, replaces)
    if with_signature:
        sig_uid = new_uid()
        sig_entry = urn_uuid()
        sig_bytes = signature_document(ss_uid, [(kos_doc.unique_id, kos)], key, cert, sig_uid=sig_uid,
                                       tamper_digest=overrides.get("tamper_manifest", False))
        sig_doc = DocumentSpec(sig_entry, sig_uid, sig_bytes, "text/xml",
                               ("urn:oid:1.3.6.1.4.1.19376.1.2.1.1.1", "URN", "Digital Signature"),
                               ("E1762", "ASTM", "Full Document"),
                               ("http://www.w3.org/2000/09/xmldsig#", "URN", "Default Signature Style"),
                               "Source", "art", submitted,
                               [("1.2.840.10065.1.12.1.14", "1.2.840.10065.1.12", "Source")])
        _document_entry(rol, ids, pub, sig_doc, submitted, with_references=False)
        _association(rol, HAS_MEMBER, ss_id, sig_entry, SubmissionSetStatus="Original")
        _association(rol, SIGNS, sig_entry, ss_id, SubmissionSetStatus="Original")
        attachments.append(("0.3", sig_bytes))
        docs.append((sig_entry, "0.3"))
    for entry_id, cid in docs:
        _el(_el(pnr, XDSB, "Document", {"id": entry_id}), XOP, "Include", {"href": f"cid:{cid}"}, nsmap={"xop": XOP})
    ctype, data = _mtom(env, ACTION_PNR, attachments)
    return BuiltRequest(ctype, data, kos_entry, kos_doc.unique_id, ss_uid)


def update_status(pub: Publication, entry_uuid: str, *, to: str, signer: Credentials) -> BuiltRequest:
    """ITI-57: the KOS entry goes from Approved to Deleted (ASIP status)."""
    cert, key = signer.load()
    ids = _Ids()
    ss_id, ss_uid = urn_uuid(), new_uid()
    env, body = _envelope(ACTION_UPDATE, to, vihf(pub, key, cert))
    sor = _el(body, LCM, "SubmitObjectsRequest", nsmap={"lcm": LCM, None: RIM})
    rol = _el(sor, RIM, "RegistryObjectList")
    _submission_set(rol, ids, pub, ss_id, ss_uid, now_dtm(), "Dépublication KOS DRIMbox")
    _association(rol, UPDATE_STATUS, ss_id, entry_uuid, OriginalStatus=APPROVED, NewStatus=DELETED)
    ctype, data = _mtom(env, ACTION_UPDATE, [])
    return BuiltRequest(ctype, data, entry_uuid, "", ss_uid)


# --------------------------------------------------------------------------- transport

class DmpError(RuntimeError):
    """The DMP refused the request or could not be reached (the caller retries)."""


def client_context(creds: Credentials, trust_pem: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=trust_pem)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(creds.chain, creds.key)
    return ctx


def post(url: str, content_type: str, body: bytes, ctx: ssl.SSLContext, hosts: dict[str, str],
         timeout_s: float = 10.0) -> Any:
    """POST one SOAP request over mTLS through the hosts map; DmpError on transport errors."""
    import httpx

    from simulators.drimbox import netutil

    try:
        with netutil.client(hosts, ctx, timeout_s=timeout_s) as client:
            return client.post(url, content=body, headers={"Content-Type": content_type})
    except httpx.HTTPError as exc:
        raise DmpError(f"DMP injoignable : {type(exc).__name__}: {exc}") from None


def send(url: str, request: BuiltRequest, ctx: ssl.SSLContext, hosts: dict[str, str], timeout_s: float = 10.0) -> str:
    """POST one request; returns the RegistryResponse status, raises DmpError on Failure or transport errors."""
    response = post(url, request.content_type, request.body, ctx, hosts, timeout_s)
    text = response.text
    if response.status_code != 200:
        raise DmpError(f"DMP : HTTP {response.status_code} {text[:200]}")
    try:
        root = etree.fromstring(soap_part(response.headers.get("content-type", ""), response.content))
        status = root.find(f".//{{{RS}}}RegistryResponse").get("status", "")
    except (etree.XMLSyntaxError, AttributeError) as exc:
        raise DmpError(f"réponse du DMP illisible : {exc}") from None
    if status != SUCCESS:
        errors = [e.get("codeContext", "") for e in root.iter(f"{{{RS}}}RegistryError")]
        raise DmpError(f"DMP : {status} {'; '.join(errors)}")
    return status


def soap_part(content_type: str, body: bytes) -> bytes:
    if "multipart/related" not in content_type.lower():
        return body
    start = body.find(b"<")
    end = body.rfind(b"Envelope>")
    return body[start:end + len(b"Envelope>")] if start >= 0 and end > 0 else body
