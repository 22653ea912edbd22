"""Checks of the DMP publication (ITI-41/57) recorded by the DMP simulator (spec §4.4; ANS XDS samples).

XDS-01 metadata cross-walk with the KOS and the report; XDS-02 mTLS client certificate (ORG AUTH_CLI);
XDS-03 VIHF (present, signed by ORG SIGN, consistent); XDS-04 signature document (`signs`, verifiable).
Certificates are judged on their content (EKU, key usage, subject, policies) and their chain to the
IGC-Santé anchors, independently of how the DUT obtained them.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from drimcheck import xds
from drimcheck.checks import check
from drimcheck.checks.kos import ExpectedIdentity
from drimcheck.checks.tls import build_path
from drimcheck.kos import header_uid
from drimcheck.verdicts import Finding, failed, passed, skipped
from drimcheck.verdicts import evidence_of as _ev

KOS_CLASS = ("31", "1.2.250.1.213.1.1.4.1")
KOS_TYPE = ("IMG-KOS", "1.2.250.1.213.1.1.4.12")
KOS_FORMAT = ("1.2.840.10008.5.1.4.1.1.88.59", "1.2.840.10008.2.6.1")
AUTH_MODES = {"INDIRECTE", "INDIRECTE_RENFORCEE", "DIRECTE"}
REQUIRED_VIHF = ("VIHF_Version", "Secteur_Activite", "Ressource_URN", "Identifiant_Structure",
                 "urn:oasis:names:tc:xacml:2.0:resource:resource-id", "Authentification_Mode",
                 "urn:oasis:names:tc:xacml:2.0:subject:role", "urn:oasis:names:tc:xspa:1.0:subject:purposeofuse")


@dataclass(frozen=True)
class TrustMaterial:
    """IGC-Santé anchors, known intermediates, and (optionally) the policy OIDs of each certificate profile."""

    anchors: list[x509.Certificate]
    intermediates: list[x509.Certificate] = field(default_factory=list)
    auth_cli_policies: tuple[str, ...] = ()
    sign_policies: tuple[str, ...] = ()


def _dn(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string()


def _eku(cert: x509.Certificate) -> set[x509.ObjectIdentifier]:
    try:
        return set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        return set()


def _key_usage(cert: x509.Certificate) -> x509.KeyUsage | None:
    try:
        return cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return None


def _policies(cert: x509.Certificate) -> set[str]:
    try:
        return {p.policy_identifier.dotted_string for p in cert.extensions.get_extension_for_class(x509.CertificatePolicies).value}
    except x509.ExtensionNotFound:
        return set()


def _dns_names(cert: x509.Certificate) -> list[str]:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        return []


def _attr(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> str:
    values = cert.subject.get_attributes_for_oid(oid)
    return str(values[0].value) if values else ""


def auth_cli_flaws(cert: x509.Certificate, trust: TrustMaterial) -> list[str]:
    """Why a certificate is not an IGC-Santé ORG AUTH_CLI (client authentication of an organisation)."""
    flaws = []
    path, why = build_path(cert, trust.intermediates, trust.anchors)
    if path is None:
        flaws.append(f"ne chaîne pas vers IGC-Santé ({why})")
    eku = _eku(cert)
    if ExtendedKeyUsageOID.CLIENT_AUTH not in eku:
        flaws.append("pas d'usage clientAuth")
    if ExtendedKeyUsageOID.SERVER_AUTH in eku or _dns_names(cert):
        flaws.append(f"certificat serveur (usage serverAuth, SAN {', '.join(_dns_names(cert)) or '—'}) : "
                     "c'est un SERV_SSL, pas un ORG AUTH_CLI")
    ku = _key_usage(cert)
    if ku is not None and ku.content_commitment:
        flaws.append("usage nonRepudiation : c'est un certificat de signature (ORG SIGN)")
    if not _attr(cert, NameOID.ORGANIZATIONAL_UNIT_NAME) or not _attr(cert, NameOID.ORGANIZATION_NAME):
        flaws.append("sujet sans O et OU : pas un certificat d'organisation")
    if trust.auth_cli_policies and not (_policies(cert) & set(trust.auth_cli_policies)):
        flaws.append(f"politique de certification {sorted(_policies(cert)) or 'absente'} au lieu d'une politique ORG AUTH_CLI")
    return flaws


def sign_flaws(cert: x509.Certificate, trust: TrustMaterial) -> list[str]:
    """Why a certificate is not an IGC-Santé ORG SIGN (signature of an organisation)."""
    flaws = []
    path, why = build_path(cert, trust.intermediates, trust.anchors)
    if path is None:
        flaws.append(f"ne chaîne pas vers IGC-Santé ({why})")
    ku = _key_usage(cert)
    if ku is None or not ku.digital_signature or not ku.content_commitment:
        flaws.append("sans les usages digitalSignature et nonRepudiation d'un certificat de signature ORG SIGN")
    if ExtendedKeyUsageOID.SERVER_AUTH in _eku(cert):
        flaws.append("usage serverAuth : certificat serveur")
    if trust.sign_policies and not (_policies(cert) & set(trust.sign_policies)):
        flaws.append(f"politique de certification {sorted(_policies(cert)) or 'absente'} au lieu d'une politique ORG SIGN")
    return flaws


def _unreadable(req: str, ex: xds.DmpExchange | None) -> list[Finding]:
    """The finding when there is no publication (None) or the DMP could not read it (no request)."""
    if ex is None:
        return [skipped(req, "aucune publication reçue par le DMP dans ce scénario : rien à examiner")]
    return [failed(req, f"{ex.describe()} : requête illisible par le DMP — {ex.parse_error}", evidence=ex.evidence)]


def _same_cx(value: str, ident: str, oid: str, kind: str) -> bool:
    got = xds.parse_cx(value)
    return got == (ident, oid, kind)


#: modalities that are not acquisitions (derived or non-image objects): not expected in eventCodeList
NON_ACQUISITION_MODALITIES = {"SR", "KO", "PR", "DOC", "OT", "REG", "SEG", "PLAN", "RWV"}


def _xcn_id(value: str) -> str:
    return (value or "").split("^", 1)[0]


def _dtm_matches(value: str, expected: str) -> bool:
    """An XDS DTM (UTC or local, truncated precision allowed down to the day) equal to the expected time."""
    return len(value) >= 8 and value.isdigit() and expected.startswith(value)


def identity_slot_problems(entry: xds.RegistryObject, expected: ExpectedIdentity) -> list[str]:
    """Every identity-bearing slot of the KOS DocumentEntry compared with its source (report, PACS content):
    sourcePatientId, sourcePatientInfo (name, birth date, sex, birthplace), serviceStart/StopTime, author and
    legal authenticator, eventCodeList (every acquisition modality of the study). Values unknown to the
    scenario (empty in `expected`) are not compared."""
    problems = []
    source_pid = entry.slot("sourcePatientId")
    if source_pid is not None and not _same_cx(source_pid, expected.ins, expected.ins_oid, "NH"):
        problems.append(f"sourcePatientId « {source_pid} » au lieu de l'INS du CR {expected.ins}")
    info = entry.slots.get("sourcePatientInfo") or []
    fields_: dict[str, str] = {}
    for line in info:
        key, _, value = line.partition("|")
        fields_.setdefault(key.strip(), value.strip())
    if expected.family:
        if not info:
            problems.append("sourcePatientInfo absent (identité du patient : nom, date de naissance, sexe)")
        else:
            name = fields_.get("PID-5", "")
            want = f"{expected.family}^{expected.given}"
            if not (name == want or name.startswith(want + "^")):
                problems.append(f"sourcePatientInfo PID-5 « {name or 'absent'} » au lieu de « {want}… » (CR)")
            if expected.birth_date and fields_.get("PID-7", "")[:8] != expected.birth_date:
                problems.append(f"sourcePatientInfo PID-7 « {fields_.get('PID-7', 'absent')} » au lieu de "
                                f"{expected.birth_date} (date de naissance du CR)")
            if expected.sex and fields_.get("PID-8", "") != expected.sex:
                problems.append(f"sourcePatientInfo PID-8 « {fields_.get('PID-8', 'absent')} » au lieu de {expected.sex} "
                                "(sexe du CR)")
            place = fields_.get("PID-11", "")
            if expected.birthplace and place and not place.rstrip("^").endswith(expected.birthplace):
                problems.append(f"sourcePatientInfo PID-11 « {place} » au lieu du lieu de naissance {expected.birthplace}")
    if expected.service_time:
        for slot in ("serviceStartTime", "serviceStopTime"):
            stamp = entry.slot(slot)
            if stamp is not None and not _dtm_matches(stamp, expected.service_time):
                problems.append(f"{slot} {stamp} au lieu de {expected.service_time} (date de l'examen dans le CR)")
    if expected.author_id:
        authors = [_xcn_id(v) for c in entry.codes(xds.DOCUMENT_AUTHOR) for v in c.slots.get("authorPerson", [])]
        if authors and expected.author_id not in authors:
            problems.append(f"authorPerson {authors} au lieu de l'auteur du CR {expected.author_id}")
        institutions = [v for c in entry.codes(xds.DOCUMENT_AUTHOR) for v in c.slots.get("authorInstitution", [])]
        if expected.structure_id and institutions and not any(v.split("^")[-1] == expected.structure_id
                                                              for v in institutions):
            problems.append(f"authorInstitution {institutions} sans la structure du CR {expected.structure_id}")
        legal = entry.slot("legalAuthenticator")
        if legal is not None and _xcn_id(legal) != expected.author_id:
            problems.append(f"legalAuthenticator « {_xcn_id(legal)} » au lieu de l'auteur du CR {expected.author_id}")
    wanted = sorted(set(expected.modalities) - NON_ACQUISITION_MODALITIES)
    if wanted:
        events = {c.node for c in entry.codes(xds.EVENT_CODE)}
        missing = [m for m in wanted if m not in events]
        if missing:
            problems.append(f"eventCodeList {sorted(events) or 'vide'} sans la ou les modalité(s) {', '.join(missing)} "
                            f"de l'étude (séries {', '.join(wanted)} au PACS)")
    return problems


@check("XDS-01")
def kos_metadata(ex: xds.DmpExchange | None, expected: ExpectedIdentity) -> list[Finding]:
    """KOS DocumentEntry: class/type/format codes, patientId INS NH, hash, size, uniqueId = KOS SOP Instance UID,
    referenceIdList (accession, study, order) — consistent with the KOS bytes and the report."""
    if ex is None or ex.request is None:
        return _unreadable("XDS-01", ex)
    req = ex.request
    entries = req.kos_entries()
    if len(entries) != 1:
        return [failed("XDS-01", f"{ex.describe()} : {len(entries)} fiche(s) KOS dans le lot au lieu d'une",
                       evidence=ex.evidence)]
    entry = entries[0]
    data = req.documents.get(entry.id, b"")
    problems = []
    for label, scheme, want in (("classCode", xds.CLASS_CODE, KOS_CLASS), ("typeCode", xds.TYPE_CODE, KOS_TYPE),
                                ("formatCode", xds.FORMAT_CODE, KOS_FORMAT)):
        code = entry.code(scheme)
        got = (code.node, code.coding_scheme) if code else None
        if got != want:
            problems.append(f"{label} {got[0] + ' (' + got[1] + ')' if got else 'absent'} au lieu de {want[0]} ({want[1]})")
    if entry.mime_type != "application/dicom":
        problems.append(f"mimeType « {entry.mime_type} » au lieu de application/dicom")
    if not _same_cx(entry.patient_id, expected.ins, expected.ins_oid, "NH"):
        problems.append(f"patientId « {entry.patient_id} » au lieu de {expected.ins}^^^&{expected.ins_oid}&ISO^NH (INS du CR)")
    ss = req.submission_set
    if ss is not None and ss.patient_id != entry.patient_id:
        problems.append(f"patientId du lot « {ss.patient_id} » différent de celui de la fiche")
    sha1 = hashlib.sha1(data).hexdigest()
    if (entry.slot("hash") or "").lower() != sha1:
        problems.append(f"hash {entry.slot('hash') or 'absent'} au lieu du SHA-1 du KOS joint {sha1}")
    if entry.slot("size") != str(len(data)):
        problems.append(f"size {entry.slot('size') or 'absent'} au lieu de {len(data)} octets")
    sop_uid = header_uid(data, "SOPInstanceUID")
    if not sop_uid:
        problems.append("document KOS joint illisible (pas de SOPInstanceUID)")
    elif entry.unique_id != sop_uid:
        problems.append(f"uniqueId {entry.unique_id or 'absent'} au lieu du SOPInstanceUID du KOS {sop_uid}")
    refs = req.reference_ids(entry)
    accession = refs.get("urn:ihe:iti:xds:2013:accession", [])
    if not any(_same_cx(v, expected.accession, expected.accession_oid, "urn:ihe:iti:xds:2013:accession") for v in accession):
        problems.append(f"referenceIdList : accession {accession or 'absente'} au lieu de "
                        f"{expected.accession}^^^&{expected.accession_oid}&ISO^…accession")
    studies = [xds.parse_cx(v)[0] for v in refs.get("urn:ihe:iti:xds:2016:studyInstanceUID", [])]
    if expected.study_uid not in studies:
        problems.append(f"referenceIdList : studyInstanceUID {studies or 'absent'} au lieu de {expected.study_uid}")
    orders = [xds.parse_cx(v)[:2] for v in refs.get("urn:ihe:iti:xds:2013:order", [])]
    if (expected.order, expected.order_oid) not in orders:
        problems.append(f"referenceIdList : commande {orders or 'absente'} au lieu de {expected.order} ({expected.order_oid})")
    problems += identity_slot_problems(entry, expected)
    details = {"entry": entry.brief(), "reference_ids": refs, "kos_sha1": sha1, "kos_size": len(data),
               "slots": {k: v for k, v in entry.slots.items() if k != "hash"}}
    if problems:
        return [failed("XDS-01", f"{ex.describe()} : {' ; '.join(problems)}", evidence=ex.evidence, details=details)]
    return [passed("XDS-01", f"{ex.describe()} : fiche KOS classCode 31, typeCode IMG-KOS, formatCode KOS, patientId INS NH, "
                   f"hash/size du KOS ({len(data)} octets), uniqueId = SOPInstanceUID, referenceIdList (accession, étude, "
                   "commande) conformes au CR" + (" ; identité du patient (sourcePatientInfo), auteur, dates de l'examen "
                   "et modalités (eventCodeList) égales à leur source" if expected.family else ""),
                   evidence=ex.evidence, details=details)]


@check("XDS-02")
def client_certificate(exchanges: list[xds.DmpExchange], trust: TrustMaterial) -> list[Finding]:
    """Every request to the DMP came over mTLS with an IGC-Santé ORG AUTH_CLI client certificate."""
    if not exchanges:
        return [skipped("XDS-02", "aucune requête reçue par le DMP dans ce scénario")]
    seen: dict[str, x509.Certificate] = {}
    for ex in exchanges:
        cert = ex.client_certificate()
        if cert is None:
            return [failed("XDS-02", f"{ex.describe()} : requête au DMP sans certificat client TLS (mTLS ORG AUTH_CLI exigé)",
                           evidence=ex.evidence)]
        flaws = auth_cli_flaws(cert, trust)
        if flaws:
            return [failed("XDS-02", f"{ex.describe()} : certificat client « {_dn(cert)} » — {' ; '.join(flaws)}",
                           evidence=ex.evidence, details={"subject": _dn(cert), "issuer": cert.issuer.rfc4514_string()})]
        seen[_dn(cert)] = cert
    return [passed("XDS-02", f"{len(exchanges)} requête(s) au DMP en mTLS avec le certificat ORG AUTH_CLI "
                   f"« {', '.join(seen)} »", evidence=_ev(exchanges[0]), details={"subjects": list(seen)})]


def _dn_parts(text: str) -> set[str]:
    parts = re.split(r"(?<!\\),", text or "")
    out = set()
    for p in parts:
        k, _, v = p.strip().partition("=")
        if k:
            out.add(f"{k.strip().upper()}={v.strip()}")
    return out


def vihf_signature_problems(v: xds.Vihf, trust: TrustMaterial) -> list[str]:
    """Why a VIHF's signature is not acceptable: absent, invalid, not covering the assertion, a signer that is
    not an ORG SIGN certificate of the IGC-Santé, or an Issuer other than the signer's DN ([] when fine)."""
    if v.signature is None:
        return ["assertion non signée"]
    problems = []
    result = xds.verify_xmldsig(v.signature)
    if not result.ok:
        problems.append(result.detail)
    elif result.references != [f"#{v.id}"]:
        problems.append(f"la signature couvre {result.references} et non l'assertion #{v.id}")
    if result.cert is not None:
        flaws = sign_flaws(result.cert, trust)
        if flaws:
            problems.append(f"signataire « {_dn(result.cert)} » : {' ; '.join(flaws)}")
        if _dn_parts(v.issuer) != _dn_parts(_dn(result.cert)):
            problems.append(f"Issuer « {v.issuer} » différent du DN du signataire « {_dn(result.cert)} »")
    return problems


@check("XDS-03")
def vihf(exchanges: list[xds.DmpExchange], trust: TrustMaterial) -> list[Finding]:
    """Each DMP request carries a VIHF signed (enveloped, covering the assertion) by an ORG SIGN certificate,
    with the mandatory attributes and a resource-id equal to the submission's patientId."""
    readable = [(e, e.request) for e in exchanges if e.request is not None]
    if not exchanges:
        return [skipped("XDS-03", "aucune requête reçue par le DMP dans ce scénario")]
    if not readable:
        return [failed("XDS-03", f"{exchanges[0].describe()} : requête illisible — {exchanges[0].parse_error}",
                       evidence=exchanges[0].evidence)]
    for ex, req in readable:
        v = req.vihf
        problems = []
        if v is None:
            return [failed("XDS-03", f"{ex.describe()} : aucun VIHF (assertion SAML dans wsse:Security)", evidence=ex.evidence)]
        problems += vihf_signature_problems(v, trust)
        missing = [name for name in REQUIRED_VIHF if not v.attributes.get(name)]
        if missing:
            problems.append(f"attribut(s) absent(s) : {', '.join(missing)}")
        if v.first("Ressource_URN") and v.first("Ressource_URN") != "urn:dmp":
            problems.append(f"Ressource_URN « {v.first('Ressource_URN')} » au lieu de urn:dmp")
        mode = v.first("Authentification_Mode")
        if mode and mode not in AUTH_MODES:
            problems.append(f"Authentification_Mode « {mode} » inconnu")
        ss = req.submission_set
        resource = v.first("urn:oasis:names:tc:xacml:2.0:resource:resource-id")
        if ss is not None and resource and resource != ss.patient_id:
            problems.append(f"resource-id « {resource} » différent du patientId de la soumission « {ss.patient_id} »")
        if not v.name_id:
            problems.append("Subject/NameID (identifiant du professionnel) absent")
        if problems:
            return [failed("XDS-03", f"{ex.describe()} : VIHF — {' ; '.join(problems)}", evidence=ex.evidence,
                           details={"issuer": v.issuer, "attributes": v.attributes})]
    return [passed("XDS-03", f"VIHF signé par un certificat ORG SIGN, attributs obligatoires présents et resource-id "
                   f"cohérent dans {len(readable)} requête(s)", evidence=_ev(readable[0][0]))]


@check("XDS-04")
def signature_document(ex: xds.DmpExchange | None, trust: TrustMaterial) -> list[Finding]:
    """The submission set carries a signature document associated by `signs`, whose XMLDSig verifies and whose
    IHE Manifest lists the submission set and every document with its digest."""
    if ex is None or ex.request is None:
        return _unreadable("XDS-04", ex)
    req = ex.request
    ss = req.submission_set
    sigs = req.signature_entries()
    if not sigs:
        return [failed("XDS-04", f"{ex.describe()} : aucun document de signature (classCode Digital Signature) dans le lot",
                       evidence=ex.evidence)]
    sig = sigs[0]
    problems = []
    if not any(a.source == sig.id and ss is not None and a.target == ss.id for a in req.associations(xds.SIGNS)):
        problems.append(f"pas d'association « signs » de {sig.id} vers le lot de soumission")
    if not any(ss is not None and a.source == ss.id and a.target == sig.id for a in req.associations(xds.HAS_MEMBER)):
        problems.append("document de signature non membre (HasMember) du lot")
    data = req.documents.get(sig.id, b"")
    if (sig.slot("hash") or "").lower() != hashlib.sha1(data).hexdigest() or sig.slot("size") != str(len(data)):
        problems.append("hash/size de la fiche de signature différents du document joint")
    result = xds.verify_xmldsig_cli(data)
    if not result.ok:
        problems.append(result.detail)
    if result.cert is not None:
        flaws = sign_flaws(result.cert, trust)
        if flaws:
            problems.append(f"signataire « {_dn(result.cert)} » : {' ; '.join(flaws)}")
    try:
        root = xds.parse_xml(data, "document de signature")
        signature = root if root.tag == f"{{{xds.NS['ds']}}}Signature" else root.find(".//ds:Signature", xds.NS)
        manifest = xds.manifest_references(signature) if signature is not None else []
    except xds.XdsParseError as exc:
        manifest = []
        problems.append(str(exc))
    listed = {uri: (alg, value) for uri, alg, value in manifest}
    if ss is not None and f"urn:oid:{ss.unique_id}" not in listed:
        problems.append(f"le Manifest ne référence pas le lot urn:oid:{ss.unique_id}")
    for entry in req.entries:
        if entry.id == sig.id:
            continue
        uri = f"urn:oid:{entry.unique_id}"
        if uri not in listed:
            problems.append(f"le Manifest ne référence pas le document {uri}")
            continue
        ok = xds.digest_matches(req.documents.get(entry.id, b""), *listed[uri])
        if ok is None:
            problems.append(f"algorithme d'empreinte inconnu pour {uri} : {listed[uri][0]}")
        elif not ok:
            problems.append(f"empreinte du Manifest pour {uri} différente de celle du document joint")
    details = {"signature_entry": sig.brief(), "manifest": manifest, "xmldsig": result.detail}
    if problems:
        return [failed("XDS-04", f"{ex.describe()} : document de signature — {' ; '.join(problems)}", evidence=ex.evidence,
                       details=details)]
    return [passed("XDS-04", f"{ex.describe()} : document de signature associé par « signs », XMLDSig valide (xmlsec1), "
                   f"Manifest conforme aux {len(req.entries) - 1} document(s) du lot, signataire ORG SIGN",
                   evidence=ex.evidence, details=details)]


__all__ = ["TrustMaterial", "auth_cli_flaws", "sign_flaws", "identity_slot_problems", "kos_metadata", "client_certificate", "vihf",
           "signature_document"]
