"""Independent verifier of ANS whitelists ("liste blanche DRIM-M"), as ANS expects a DRIMbox to verify them.

`verify_whitelist(data, ...)` judges one file and returns a `WhitelistReport`:

1. parsing immune to XXE and entity expansion: no DTD is loaded, no entity resolved, no network;
   any DOCTYPE makes the list invalid (a whitelist has none);
2. exactly one ds:Signature, a direct child of the root (enveloped), and no duplicate Id;
3. the ANS XAdES profile: references ``URI=""`` (XPath Filter 2.0 subtract of the signature, or
   enveloped-signature, then c14n) and ``#<SignedProperties Id>``, nothing that could fetch or
   exclude content (no external URI, no XPath 1.0/XSLT transform, no SHA-1);
4. XAdES signed properties: SigningTime, SigningCertificate(V2) digest naming the signing
   certificate among KeyInfo's, IssuerSerial(V2) consistent, DataObjectFormat pointing at the
   document reference, QualifyingProperties targeting this signature;
5. XMLDSig integrity of every reference and of SignatureValue with python-xmlsec (libxmlsec1),
   the key pinned to the certificate step 4 identified; a failing reference is then named from our
   own digests (lxml c14n), which therefore cross-check xmlsec on every valid list;
6. certification path from the signer to a trust anchor (signatures, CA constraints, validity of
   every certificate at ``at``), signer CN and OU, signing key usage, signing time within the
   signer's validity;
7. revocation of every certificate of the path that is not itself a trust anchor, from the CRLs
   given (CRL signature checked, current at ``at``): no usable CRL means revocation unknown, and
   the list is not valid unless ``check_revocation=False``;
8. content: domains are read from ``/ListeBlancheDRIM-M/ListeDomaines/Domaine`` of the verified
   tree only, with the full string value of each field (comments ignored); a Domaine anywhere
   else (e.g. hidden inside the signature, which the transform excludes) makes the list invalid.

Domains are returned only when the list is valid: exactly the signed ones.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any, cast

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from lxml import etree

from drimcheck import safexml
from drimcheck.limits import MAX_XML_BYTES

NS_2025 = "https://github.com/ansforge/DRIM-M_DATA"
NS_2024 = "https://listeblanche.mesimagesmedicales.fr/schema"
KNOWN_NAMESPACES = (NS_2025, NS_2024)
ROOT = "ListeBlancheDRIM-M"
DS = "http://www.w3.org/2000/09/xmldsig#"
XADES = "http://uri.etsi.org/01903/v1.3.2#"
XADES_141 = "http://uri.etsi.org/01903/v1.4.1#"
FILTER2 = "http://www.w3.org/2002/06/xmldsig-filter2"
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
C14N_METHODS = {
    "http://www.w3.org/2001/10/xml-exc-c14n#": True,  # exclusive
    "http://www.w3.org/TR/2001/REC-xml-c14n-20010315": False,
    "http://www.w3.org/2006/12/xml-c14n11": False,
}
SIGNATURE_METHODS = {
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256", "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384",
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512", "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384", "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512",
}
DIGESTS = {
    "http://www.w3.org/2001/04/xmlenc#sha256": hashlib.sha256,
    "http://www.w3.org/2001/04/xmldsig-more#sha384": hashlib.sha384,
    "http://www.w3.org/2001/04/xmlenc#sha512": hashlib.sha512,
}
SIGNED_PROPERTIES_TYPE = "http://uri.etsi.org/01903#SignedProperties"
EXPECTED_CN = "Liste Blanche DRIM-M"
EXPECTED_OU = "318751275100020"
MAX_SIZE = MAX_XML_BYTES  # drimcheck/limits.py
DEFAULT_ANCHOR_FILES = ("igc-sante-test-racine.pem", "igc-sante-test-organisations.pem")


class UnusableInput(ValueError):
    """The input is not an XML document at all (exit 2 for the CLI), as opposed to a list that is not valid."""


@dataclass(frozen=True)
class Domain:
    identifiant: str
    db: str
    vi: str
    denomination: str
    dn: str
    support_contact: str
    date_maj: str
    extra: dict[str, str] = field(default_factory=dict)  # unknown elements (tolerated), e.g. ResponsableContact


@dataclass(frozen=True)
class Problem:
    code: str
    message: str  # French, for the report reader


@dataclass
class WhitelistReport:
    valid: bool = False
    problems: list[Problem] = field(default_factory=list)
    checks: dict[str, str] = field(default_factory=dict)  # step -> "ok" | "échec" | "non vérifié"
    checked_at: str = ""
    namespace: str | None = None
    generated_at: str | None = None
    signing_time: str | None = None
    signer: dict[str, str] | None = None
    chain: list[str] = field(default_factory=list)
    domains: list[Domain] = field(default_factory=list)
    domain_count: int = 0  # Domaine entries found in the signed content, even when the list is not valid

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["problems"] = [asdict(p) for p in self.problems]
        return out


# ------------------------------------------------------------------------------------------- inputs


def default_trust_anchors() -> list[x509.Certificate]:
    """The public IGC-Santé TEST root and ORGANISATIONS intermediate, as extracted from ANS's signed sample."""
    out: list[x509.Certificate] = []
    for name in DEFAULT_ANCHOR_FILES:
        out.extend(x509.load_pem_x509_certificates(
            resources.files("drimcheck").joinpath(f"data/{name}").read_bytes()))
    return out


def load_certificates(path: Path) -> list[x509.Certificate]:
    """PEM (one or more) or DER certificates; ValueError with a readable message otherwise."""
    data = path.read_bytes()
    try:
        if b"-----BEGIN" in data:
            certs = x509.load_pem_x509_certificates(data)
        else:
            certs = [x509.load_der_x509_certificate(data)]
    except ValueError:
        raise ValueError(f"{path} : aucun certificat X.509 lisible (PEM ou DER attendu)") from None
    return certs


def load_crl(path: Path) -> x509.CertificateRevocationList:
    data = path.read_bytes()
    try:
        return x509.load_pem_x509_crl(data) if b"-----BEGIN" in data else x509.load_der_x509_crl(data)
    except ValueError:
        raise ValueError(f"{path} : CRL illisible (PEM ou DER attendu)") from None


def secure_parser() -> etree.XMLParser:
    """No DTD, no entity resolution, no network, default size limits: XXE and billion laughs are inert."""
    return safexml.parser(collect_ids=False)


# Linear by construction: each alternative stops at its own terminator (no backtracking into the document).
_DOCTYPE_IN_PROLOG = re.compile(rb"\A(?:\xef\xbb\xbf)?(?:\s|<\?(?:[^?]|\?(?!>))*\?>|<!--(?:[^-]|-(?!->))*-->)*<!DOCTYPE")


def has_doctype(data: bytes) -> bool:
    """A DOCTYPE before the root element, seen without parsing it (its DTD is never handed to a parser)."""
    return bool(_DOCTYPE_IN_PROLOG.match(data))


def parse(data: bytes) -> etree._ElementTree:
    if not data.strip():
        raise UnusableInput("fichier vide")
    if len(data) > MAX_SIZE:
        raise UnusableInput(f"fichier trop volumineux ({len(data)} octets)")
    try:
        return etree.ElementTree(safexml.fromstring(data, "liste blanche", collect_ids=False))
    except safexml.XmlRejected as exc:
        raise UnusableInput(str(exc)) from None


# ------------------------------------------------------------------------------------------- helpers


def detach(el: etree._Element) -> None:
    """Remove an element from its parent, keeping the text that followed it (what a subtract filter leaves)."""
    parent, prev = el.getparent(), el.getprevious()
    assert parent is not None, "detach() is given a signature, a child of the root"
    if el.tail:
        if prev is not None:
            prev.tail = (prev.tail or "") + el.tail
        else:
            parent.text = (parent.text or "") + el.tail
    parent.remove(el)


def _around(el: etree._Element) -> tuple[etree._Element | None, str | None]:
    """What detach() will modify: the previous sibling (or parent) and its text, to undo it."""
    prev, parent = el.getprevious(), el.getparent()
    assert parent is not None, "a signature, a child of the root"
    return (prev, prev.tail) if prev is not None else (None, parent.text)


def _restore(parent: etree._Element, index: int, el: etree._Element, tail: str | None,
             before: tuple[etree._Element | None, str | None]) -> None:
    prev, text = before
    if prev is not None:
        prev.tail = text
    else:
        parent.text = text
    parent.insert(index, el)
    el.tail = tail


def _text(el: etree._Element | None) -> str:
    """Full string value of an element (all its text, comments and processing instructions excluded)."""
    if el is None:
        return ""
    return "".join(cast("Iterable[str]", el.itertext())).strip()  # lxml skips the content of comments and PIs


def _ds(el: etree._Element, path: str) -> list[etree._Element]:
    found = el.xpath(path, namespaces={"ds": DS, "xades": XADES, "xades141": XADES_141, "f2": FILTER2})
    return cast("list[etree._Element]", found)  # every path here selects elements


def _one(el: etree._Element, path: str) -> etree._Element | None:
    found = _ds(el, path)
    return found[0] if len(found) == 1 else None


def _parse_time(value: str) -> datetime | None:
    try:
        t = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _name(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string()


def _attr(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> list[str]:
    return [str(a.value) for a in cert.subject.get_attributes_for_oid(oid)]


def _der_read(data: bytes, pos: int = 0) -> tuple[int, bytes, int]:
    """One DER TLV at pos: (tag, value, next position); ValueError when malformed."""
    if pos + 2 > len(data):
        raise ValueError("truncated")
    tag, length = data[pos], data[pos + 1]
    pos += 2
    if length & 0x80:
        n = length & 0x7F
        if n == 0 or n > 4 or pos + n > len(data):
            raise ValueError("bad length")
        length = int.from_bytes(data[pos:pos + n], "big")
        pos += n
    if pos + length > len(data):
        raise ValueError("truncated value")
    return tag, data[pos:pos + length], pos + length


def decode_issuer_serial(der: bytes) -> tuple[bytes, int]:
    """IssuerSerial (RFC 5035) -> (issuer Name DER, serial); ValueError when it is not that structure."""
    tag, seq, end = _der_read(der)
    if tag != 0x30 or end != len(der):
        raise ValueError("not a SEQUENCE")
    tag, names, pos = _der_read(seq)
    if tag != 0x30:
        raise ValueError("GeneralNames expected")
    tag, dirname, _ = _der_read(names)
    if tag != 0xA4:
        raise ValueError("directoryName expected")
    tag, serial, _ = _der_read(seq, pos)
    if tag != 0x02:
        raise ValueError("INTEGER expected")
    # dirname is the EXPLICIT [4] content: the Name SEQUENCE itself
    return dirname, int.from_bytes(serial, "big", signed=True)


# ------------------------------------------------------------------------------------------- verifier


class _Verification:
    def __init__(self, data: bytes, anchors: list[x509.Certificate], crls: list[x509.CertificateRevocationList],
                 check_revocation: bool, at: datetime, expected_cn: str, expected_ou: str):
        self.data = data
        self.anchors = anchors
        self.crls = crls
        self.check_revocation = check_revocation
        self.at = at
        self.expected_cn = expected_cn
        self.expected_ou = expected_ou
        self.report = WhitelistReport(checked_at=at.isoformat())

    def problem(self, step: str, code: str, message: str) -> None:
        self.report.problems.append(Problem(code, message))
        self.report.checks[step] = "échec"

    def ok(self, step: str) -> None:
        self.report.checks.setdefault(step, "ok")

    def run(self) -> WhitelistReport:
        rep = self.report
        if has_doctype(self.data):
            self.problem("analyse", "doctype", "la liste contient une déclaration DOCTYPE (DTD, entités) : refusée "
                         "sans être analysée (protection XXE et expansion d'entités)")
            return self.finish([])
        tree = parse(self.data)
        root = tree.getroot()
        # a DOCTYPE that has_doctype() did not see, e.g. in another encoding than UTF-8 (lxml-stubs lack .doctype)
        if tree.docinfo.doctype or tree.docinfo.internalDTD is not None:  # type: ignore[attr-defined]
            self.problem("analyse", "doctype", "la liste contient une déclaration DOCTYPE : refusée")
            return self.finish([])
        self.ok("analyse")
        ns = etree.QName(root).namespace
        rep.namespace = ns
        if etree.QName(root).localname != ROOT:
            self.problem("format", "racine", f"élément racine « {etree.QName(root).localname} » au lieu de « {ROOT} »")
        elif ns not in KNOWN_NAMESPACES:
            self.problem("format", "espace-de-noms", f"espace de noms inconnu « {ns} »")
        ids = Counter(str(a) for a in root.xpath("//@Id | //@ID | //@id"))
        duplicates = sorted(i for i, n in ids.items() if n > 1)
        if duplicates:
            self.problem("structure", "identifiants-dupliques", f"attribut Id dupliqué : {', '.join(duplicates)} "
                         "(résolution des références ambiguë)")
        domains = self.read_content(root)
        sigs = _ds(root, "//ds:Signature")
        if not sigs:
            self.problem("signature", "non-signee", "la liste n'est pas signée (aucun ds:Signature)")
            return self.finish(domains)
        if len(sigs) > 1:
            self.problem("signature", "signatures-multiples", f"{len(sigs)} éléments ds:Signature (une seule attendue)")
            return self.finish(domains)
        sig = sigs[0]
        if sig.getparent() is not root:
            self.problem("signature", "signature-deplacee", "ds:Signature n'est pas un enfant direct de la racine : "
                         "la signature ne porte pas sur ce document (enveloppement)")
            return self.finish(domains)
        profile = self.check_profile(sig)
        if profile is None:
            return self.finish(domains)
        doc_ref, props_ref, props = profile
        leaf, keyinfo = self.check_xades(sig, doc_ref, props)
        if leaf is not None:
            self.check_integrity(root, sig, leaf, doc_ref, props_ref, props)
            path = self.check_path(leaf, keyinfo)
            self.check_signer(leaf)
            if path is not None:
                self.check_revocation_status(path)
        return self.finish(domains)

    def finish(self, domains: list[Domain]) -> WhitelistReport:
        rep = self.report
        rep.domain_count = len(domains)
        rep.valid = not rep.problems
        rep.domains = domains if rep.valid else []
        return rep

    # -- content (what is returned) ------------------------------------------------------------
    def read_content(self, root: etree._Element) -> list[Domain]:
        ns = etree.QName(root).namespace or ""
        q = (lambda t: f"{{{ns}}}{t}") if ns else (lambda t: t)
        rep = self.report
        gen = root.findall(q("DateDeGeneration"))
        rep.generated_at = _text(gen[0]) if gen else None
        lists = root.findall(q("ListeDomaines"))
        if len(lists) != 1:
            self.problem("contenu", "liste-domaines", f"{len(lists)} éléments ListeDomaines (un seul attendu)")
            return []
        signed = lists[0].findall(q("Domaine"))
        expected = {id(e) for e in signed} | {id(lists[0])}
        outside = [e for e in _ds(root, "//*[local-name()='Domaine' or local-name()='ListeDomaines']")
                   if id(e) not in expected]
        if outside:
            self.problem("contenu", "contenu-hors-signature", f"{len(outside)} élément(s) Domaine/ListeDomaines hors de "
                         "/ListeBlancheDRIM-M/ListeDomaines : contenu non couvert par la signature (enveloppement)")
        out = []
        known = {"Identifiant", "db", "vi", "Denomination", "DNCertificatOperateur", "SupportContact", "DateMAJ"}
        for i, el in enumerate(signed, 1):
            values: dict[str, str] = {}
            extra: dict[str, str] = {}
            for child in el:
                tag = child.tag
                if not isinstance(tag, str):
                    continue
                name = tag[tag.rfind("}") + 1:]
                # a childless element's value is its text; otherwise (comments, PIs) the full string value
                (values if name in known else extra)[name] = (child.text or "").strip() if len(child) == 0 else _text(child)
            missing = [f for f in ("Identifiant", "db", "DNCertificatOperateur") if not values.get(f)]
            if missing:
                self.problem("contenu", "domaine-incomplet", f"Domaine n° {i} sans {', '.join(missing)}")
            out.append(Domain(values.get("Identifiant", ""), values.get("db", ""), values.get("vi", ""),
                              values.get("Denomination", ""), values.get("DNCertificatOperateur", ""),
                              values.get("SupportContact", ""), values.get("DateMAJ", ""), extra))
        self.ok("contenu")
        return out

    # -- signature profile -----------------------------------------------------------------------
    def check_profile(self, sig: etree._Element) -> tuple[etree._Element, etree._Element, etree._Element] | None:
        signed_info = _one(sig, "ds:SignedInfo")
        if signed_info is None:
            self.problem("profil", "signedinfo", "ds:SignedInfo absent ou multiple")
            return None
        c14n = _one(signed_info, "ds:CanonicalizationMethod")
        if c14n is None or c14n.get("Algorithm") not in C14N_METHODS:
            self.problem("profil", "canonicalisation", f"méthode de canonicalisation non admise : "
                         f"{c14n.get('Algorithm') if c14n is not None else 'absente'}")
        method = _one(signed_info, "ds:SignatureMethod")
        if method is None or method.get("Algorithm") not in SIGNATURE_METHODS:
            self.problem("profil", "algorithme-signature", "algorithme de signature non admis : "
                         f"{method.get('Algorithm') if method is not None else 'absent'} (RSA/ECDSA SHA-2 attendu)")
        props = _ds(sig, "ds:Object/xades:QualifyingProperties/xades:SignedProperties")
        props_id = props[0].get("Id") if len(props) == 1 else None
        doc_ref = props_ref = None
        for ref in _ds(signed_info, "ds:Reference"):
            uri = ref.get("URI")
            digest = _one(ref, "ds:DigestMethod")
            if digest is None or digest.get("Algorithm") not in DIGESTS:
                self.problem("profil", "algorithme-empreinte", f"référence « {uri} » : algorithme d'empreinte non admis "
                             f"({digest.get('Algorithm') if digest is not None else 'absent'}) ; SHA-2 attendu")
                continue
            transforms = [t.get("Algorithm", "") for t in _ds(ref, "ds:Transforms/ds:Transform")]
            if uri == "":
                if doc_ref is not None:
                    self.problem("profil", "references", "plusieurs références au document")
                elif not self._document_transforms_ok(ref, transforms):
                    self.problem("profil", "transformations", "transformations de la référence au document non admises : "
                                 f"{', '.join(transforms) or 'aucune'} (attendu : soustraction XPath Filter 2.0 de "
                                 "ds:Signature ou enveloped-signature, puis canonicalisation)")
                else:
                    doc_ref = ref
            elif uri is not None and props_id and uri == f"#{props_id}":
                if ref.get("Type") != SIGNED_PROPERTIES_TYPE:
                    self.problem("profil", "type-proprietes", "la référence aux SignedProperties n'a pas le Type XAdES")
                elif any(t not in C14N_METHODS for t in transforms):
                    self.problem("profil", "transformations", f"transformations non admises sur les SignedProperties : "
                                 f"{', '.join(transforms)}")
                else:
                    props_ref = ref
            elif uri and uri.startswith("#") and any(e.get("Id") == uri[1:] for e in sig.iter() if isinstance(e.tag, str)):
                continue  # another part of this signature (e.g. KeyInfo): covered, harmless
            else:
                self.problem("profil", "reference-inattendue", f"référence « {uri} » hors du profil ANS "
                             "(seuls le document, ses SignedProperties et des éléments de la signature sont admis)")
        if doc_ref is None:
            self.problem("profil", "reference-document", "aucune référence admise ne couvre le document (URI=\"\")")
        if props_ref is None:
            self.problem("xades", "proprietes-non-signees", "les SignedProperties XAdES ne sont pas couvertes par la "
                         "signature (aucune référence de Type SignedProperties vers elles) : pas une XAdES Baseline-B")
        if self.report.checks.get("profil") == "échec" or doc_ref is None or props_ref is None:
            return None
        self.ok("profil")
        return doc_ref, props_ref, props[0]

    @staticmethod
    def _document_transforms_ok(ref: etree._Element, transforms: list[str]) -> bool:
        if not transforms:
            return False
        first = transforms[0]
        if first == ENVELOPED:
            pass
        elif first == FILTER2:
            xpaths = _ds(ref, "ds:Transforms/ds:Transform[1]/f2:XPath")
            if len(xpaths) != 1 or xpaths[0].get("Filter") != "subtract":
                return False
            expr = re.sub(r"\s+", "", _text(xpaths[0]))
            prefix = next((p for p, u in (xpaths[0].nsmap or {}).items() if u == DS), None)
            if prefix is None or expr != f"/descendant::{prefix}:Signature":
                return False
        else:
            return False
        return all(t in C14N_METHODS for t in transforms[1:])

    # -- XAdES ---------------------------------------------------------------------------------
    def check_xades(self, sig: etree._Element, doc_ref: etree._Element,
                    props: etree._Element) -> tuple[x509.Certificate | None, list[x509.Certificate]]:
        qp = props.getparent()
        assert qp is not None, "SignedProperties found under QualifyingProperties"
        sig_id = sig.get("Id")
        if not sig_id or qp.get("Target") != f"#{sig_id}":
            self.problem("xades", "cible", f"QualifyingProperties/@Target « {qp.get('Target')} » ne désigne pas cette "
                         f"signature (Id « {sig_id} »)")
        signing_time = _one(props, "xades:SignedSignatureProperties/xades:SigningTime")
        st = _parse_time(_text(signing_time)) if signing_time is not None else None
        if st is None:
            self.problem("xades", "signingtime", "SigningTime absent ou illisible")
        else:
            self.report.signing_time = st.isoformat()
        dofs = _ds(props, "xades:SignedDataObjectProperties/xades:DataObjectFormat")
        doc_ref_id = doc_ref.get("Id")
        if not dofs:
            self.problem("xades", "dataobjectformat", "DataObjectFormat absent (exigé en XAdES Baseline-B)")
        elif not doc_ref_id or not any(d.get("ObjectReference") == f"#{doc_ref_id}" for d in dofs):
            self.problem("xades", "dataobjectformat", "DataObjectFormat ne désigne pas la référence au document")
        keyinfo: list[x509.Certificate] = []
        for el in _ds(sig, "ds:KeyInfo/ds:X509Data/ds:X509Certificate"):
            try:
                keyinfo.append(x509.load_der_x509_certificate(base64.b64decode(_text(el))))
            except ValueError:
                self.problem("xades", "keyinfo", "certificat illisible dans KeyInfo")
        certs = _ds(props, "xades:SignedSignatureProperties/xades:SigningCertificateV2/xades:Cert") or \
            _ds(props, "xades:SignedSignatureProperties/xades:SigningCertificate/xades:Cert")
        if len(certs) != 1:
            self.problem("xades", "signing-certificate", "SigningCertificateV2 absent (ou plusieurs Cert) : le certificat "
                         "signataire n'est pas protégé par la signature")
            return None, keyinfo
        cert_el = certs[0]
        method = _one(cert_el, "xades:CertDigest/ds:DigestMethod")
        value = _one(cert_el, "xades:CertDigest/ds:DigestValue")
        algo = DIGESTS.get(method.get("Algorithm", "")) if method is not None else None
        if algo is None or value is None:
            self.problem("xades", "signing-certificate", "CertDigest absent ou algorithme non admis (SHA-2 attendu)")
            return None, keyinfo
        try:
            expected = base64.b64decode(_text(value), validate=True)
        except ValueError:
            expected = b""
        leaf = next((c for c in keyinfo if algo(c.public_bytes(serialization.Encoding.DER)).digest() == expected), None)
        if leaf is None:
            self.problem("xades", "signing-certificate", "aucun certificat de KeyInfo ne correspond à l'empreinte "
                         "SigningCertificateV2 : certificat signataire introuvable ou substitué")
            return None, keyinfo
        self.report.signer = {"subject": _name(leaf), "issuer": leaf.issuer.rfc4514_string(),
                              "serial": format(leaf.serial_number, "x"),
                              "not_before": leaf.not_valid_before_utc.isoformat(),
                              "not_after": leaf.not_valid_after_utc.isoformat()}
        issuer_serial = _one(cert_el, "xades:IssuerSerialV2")
        if issuer_serial is not None:
            try:
                issuer_der, serial = decode_issuer_serial(base64.b64decode(_text(issuer_serial)))
                consistent = issuer_der == leaf.issuer.public_bytes() and serial == leaf.serial_number
            except ValueError:
                consistent = False
            if not consistent:
                self.problem("xades", "issuer-serial", "IssuerSerialV2 ne correspond pas à l'émetteur et au numéro de "
                             "série du certificat signataire")
        if st is not None and not leaf.not_valid_before_utc <= st <= leaf.not_valid_after_utc:
            self.problem("xades", "signingtime", f"SigningTime {st.isoformat()} hors de la période de validité du "
                         "certificat signataire")
        self.ok("xades")
        return leaf, keyinfo

    # -- XMLDSig ---------------------------------------------------------------------------------
    def check_integrity(self, root: etree._Element, sig: etree._Element, leaf: x509.Certificate,
                        doc_ref: etree._Element, props_ref: etree._Element, props: etree._Element) -> None:
        import xmlsec

        reasons = self._own_digest_mismatches(root, sig, doc_ref, props_ref, props)
        try:
            # the tree is ours (parsed here) and no longer read for content: xmlsec may register its Ids
            xmlsec.tree.add_ids(root, ["Id"])  # duplicates were reported above; xmlsec then fails or picks one
            ctx = xmlsec.SignatureContext()
            ctx.key = xmlsec.Key.from_memory(leaf.public_bytes(serialization.Encoding.PEM), xmlsec.KeyFormat.CERT_PEM)  # type: ignore[attr-defined]
            ctx.verify(sig)
        except xmlsec.Error as exc:
            detail = "; ".join(reasons) or f"valeur de signature invalide ({exc})"
            self.problem("integrite", "signature-invalide", f"intégrité XMLDSig en échec : {detail}")
            return
        if reasons:  # xmlsec accepted what our own canonicalization rejects: say so rather than guess
            self.problem("integrite", "verificateurs-divergents", "xmlsec valide la signature mais le recalcul "
                         f"indépendant des empreintes diverge : {'; '.join(reasons)}")
            return
        self.ok("integrite")

    @staticmethod
    def _own_digest_mismatches(root: etree._Element, sig: etree._Element, doc_ref: etree._Element,
                               props_ref: etree._Element, props: etree._Element) -> list[str]:
        out = []
        for label, ref, node in (("document", doc_ref, None), ("SignedProperties", props_ref, props)):
            method = _one(ref, "ds:DigestMethod")
            assert method is not None, "check_profile() admitted this reference"
            algo = DIGESTS[method.get("Algorithm", "")]
            transforms = [t.get("Algorithm", "") for t in _ds(ref, "ds:Transforms/ds:Transform")]
            exclusive = C14N_METHODS.get(transforms[-1], False) if transforms else False
            if node is None:  # the subtract filter's node-set: the document without the signature, put back after
                parent = sig.getparent()
                assert parent is not None, "the signature is a child of the root"
                index, tail = parent.index(sig), sig.tail
                before_text = _around(sig)
                detach(sig)
                try:
                    canon = etree.tostring(root.getroottree(), method="c14n", exclusive=exclusive, with_comments=False)
                finally:
                    _restore(parent, index, sig, tail, before_text)
            else:
                canon = etree.tostring(node, method="c14n", exclusive=exclusive, with_comments=False)
            try:
                expected = base64.b64decode(_text(_one(ref, "ds:DigestValue")), validate=True)
            except (ValueError, TypeError):
                expected = b""
            if algo(canon).digest() != expected:
                out.append(f"empreinte de la référence au {label} différente (contenu modifié après signature)"
                           if node is None else
                           "empreinte des SignedProperties différente (propriétés signées modifiées)")
        return out

    # -- certificates --------------------------------------------------------------------------
    def check_path(self, leaf: x509.Certificate, keyinfo: list[x509.Certificate]) -> list[x509.Certificate] | None:
        """Leaf -> ... -> first trust anchor (what trust rests on), then up to the root for the report only."""
        path = [leaf]
        pool = [c for c in keyinfo + self.anchors if c != leaf]
        current = leaf
        for _ in range(8):
            if current.issuer == current.subject:
                break
            candidates = sorted((c for c in pool if c.subject == current.issuer and c != current),
                                key=lambda c: c not in self.anchors)  # anchors first; the signature decides
            issuer = None
            for cand in candidates:
                try:
                    current.verify_directly_issued_by(cand)
                    issuer = cand
                    break
                except Exception:  # noqa: BLE001 - InvalidSignature, unsupported key, wrong names
                    continue
            if issuer is None:
                if current in self.anchors:
                    break
                self.problem("chaine", "chaine-non-fiable", f"« {_name(current)} » : émetteur « "
                             f"{current.issuer.rfc4514_string()} » introuvable parmi les ancres de confiance et KeyInfo "
                             "(ou signature du certificat invalide)")
                self.report.chain = [_name(c) for c in path]
                return None
            try:
                bc = issuer.extensions.get_extension_for_class(x509.BasicConstraints).value
                ku = issuer.extensions.get_extension_for_class(x509.KeyUsage).value
                is_ca = bc.ca and ku.key_cert_sign
            except x509.ExtensionNotFound:
                is_ca = False
            if not is_ca:
                self.problem("chaine", "chaine-non-fiable", f"« {_name(issuer)} » n'est pas une AC (basicConstraints/keyUsage)")
                return None
            path.append(issuer)
            current = issuer
        self.report.chain = [_name(c) for c in path]
        anchored = next((i for i, c in enumerate(path) if c in self.anchors), None)
        if anchored is None:
            self.problem("chaine", "chaine-non-fiable", f"la chaîne aboutit à « {_name(path[-1])} », qui n'est pas une "
                         "ancre de confiance")
            return None
        trusted = path[:anchored + 1]
        self.ok("chaine")
        for cert in trusted:
            if self.at < cert.not_valid_before_utc:
                self.problem("validite", "pas-encore-valide", f"« {_name(cert)} » n'est valide qu'à partir du "
                             f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC (vérification au {self.at:%Y-%m-%d %H:%M} UTC)")
            elif self.at > cert.not_valid_after_utc:
                self.problem("validite", "certificat-expire", f"« {_name(cert)} » a expiré le "
                             f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC (vérification au {self.at:%Y-%m-%d %H:%M} UTC)")
        self.ok("validite")
        return trusted

    def check_signer(self, leaf: x509.Certificate) -> None:
        cns, ous = _attr(leaf, NameOID.COMMON_NAME), _attr(leaf, NameOID.ORGANIZATIONAL_UNIT_NAME)
        if cns != [self.expected_cn] or self.expected_ou not in ous:
            self.problem("signataire", "signataire-inattendu", f"signataire « {_name(leaf)} » : CN={self.expected_cn} "
                         f"et OU={self.expected_ou} attendus")
        try:
            ku = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
            signing = ku.digital_signature or ku.content_commitment
        except x509.ExtensionNotFound:
            signing = True  # no keyUsage: not restricted
        if not signing:
            self.problem("signataire", "usage-cle", "le certificat signataire n'a ni digitalSignature ni nonRepudiation")
        self.ok("signataire")

    def check_revocation_status(self, path: list[x509.Certificate]) -> None:
        if not self.check_revocation:
            self.report.checks["revocation"] = "non vérifié"
            return
        for cert, issuer in zip(path, path[1:], strict=False):
            if cert in self.anchors:
                break  # trust anchors are trusted as configured
            usable = []
            for crl in self.crls:
                if crl.issuer != cert.issuer or not crl.is_signature_valid(
                        issuer.public_key()):  # type: ignore[arg-type]  # a key type a CRL cannot use raises here
                    continue
                if crl.last_update_utc > self.at or (crl.next_update_utc is not None and crl.next_update_utc < self.at):
                    continue
                usable.append(crl)
            if not usable:
                self.problem("revocation", "revocation-inconnue", f"aucune CRL valide au {self.at:%Y-%m-%d %H:%M} UTC "
                             f"signée par « {cert.issuer.rfc4514_string()} » : révocation de « {_name(cert)} » inconnue")
                continue
            for crl in usable:
                entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
                if entry is not None and entry.revocation_date_utc <= self.at:
                    self.problem("revocation", "certificat-revoque", f"« {_name(cert)} » révoqué le "
                                 f"{entry.revocation_date_utc:%Y-%m-%d %H:%M} UTC")
                    break
        self.ok("revocation")


def verify_whitelist(data: bytes, *, trust_anchors: Iterable[x509.Certificate] | None = None,
                     crls: Iterable[x509.CertificateRevocationList] = (), check_revocation: bool = True,
                     at: datetime | None = None, expected_cn: str = EXPECTED_CN,
                     expected_ou: str = EXPECTED_OU) -> WhitelistReport:
    """Verify an ANS whitelist; raises UnusableInput only when the input is not XML at all."""
    anchors = list(trust_anchors) if trust_anchors is not None else default_trust_anchors()
    at = at or datetime.now(UTC)
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return _Verification(data, anchors, list(crls), check_revocation, at, expected_cn, expected_ou).run()
