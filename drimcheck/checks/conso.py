"""Checks of the Conso function and of the image exchange between DRIMboxes (drimbox-spec §5, §6, §8).

Conso side, over what drimcheck's simulators recorded while the practitioner used the DUT:
CON-01 contextual call (400 on bad parameters, 302/303 otherwise), CON-02 strict INS traits on the
page, CON-03 DMP consultation with a VIHF built from the PSC user, CON-04 WADO-RS request headers as
in the ANS samples, CON-05/CON-07 exported study identical to the source (instances and pixels /
patient identity), CON-06 KPI "ModelStat" line, PSC-02 the token presented is an active PSC access
token of the practitioner's session, PSC-03 login by the code flow with state and nonce and a forged
return refused, MTLS-02 the DUT presents its SERV_SSL to the Source, WL-06 only
whitelisted Sources contacted, CON-08 the record's existence and the access tested (TD0.2) before any
search, and respected when the record is absent, closed or forbidden.

Source side, over drimcheck's own requests as a calling peer: PSC-01 (401 without an active PSC token),
WADO-01 (400/404/410), WADO-02 (transfer syntax accepted by the request and declared). "Served" means DICOM
objects returned (checks.whitelist.served_instances); each refusal is judged only when the same peer,
correctly equipped, is served (the control), so that a DUT that serves nobody cannot pass and one defect fails one requirement.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypedDict

from lxml import etree
from pydicom import Dataset

from drimcheck import xds
from drimcheck.checks import check
from drimcheck.checks.whitelist import _how_refused as _how
from drimcheck.checks.whitelist import contacted_only_listed_hosts, served_instances
from drimcheck.checks.xds import TrustMaterial, vihf_signature_problems
from drimcheck.net import Exchange
from drimcheck.verdicts import Finding, errored, failed, passed, skipped, warned
from drimcheck.verdicts import evidence_of as _ev
from drimcheck.wado import (
    EXPLICIT_VR_LE,
    AcceptError,
    MultipartError,
    acceptable_syntaxes,
    check_drimbox_accept,
    iter_parts,
    parse_accept,
    parse_media_type,
)

MODE_PSC = "INDIRECTE_RENFORCEE"
RESOURCE_ID = xds.RESOURCE_ID
ROLE = "urn:oasis:names:tc:xacml:2.0:subject:role"


# ------------------------------------------------------------------------------------------- records judged
# What the simulators record, as these checks read it (JSON-shaped dicts: checks never import simulators/; the
# keys a check does not read are not declared, they stay in the records and in the details).


class ClientCertFacts(TypedDict, total=False):
    """The client certificate a simulator's TLS layer verified (``ClientCert.to_dict``)."""

    subject: str
    issuer: str
    client_auth_eku: bool


class TlsFacts(TypedDict, total=False):
    """The TLS connection of a recorded request (``tls_summary``); None over plain HTTP."""

    sni: str | None
    client_cert: ClientCertFacts | None


class TokenFacts(TypedDict, total=False):
    """Non-secret facts of the Bearer token a request presented (``token_facts``)."""

    fingerprint: str
    format: str
    claims: dict[str, object]


class Introspection(TypedDict, total=False):
    """What the Source's introspection of the token at PSC answered."""

    active: object  # judged `is True`: whatever else the answer says is inactive
    error: str


class SourceRequest(TypedDict, total=False):
    """A request a peer Source (or a host the DUT must not contact) recorded, or its summary by the steps."""

    method: str
    path: str | None
    host: str
    host_header: str | None
    tls: TlsFacts | None
    headers: object
    accept: str | None
    study: str | None
    kos_sop_uid: str | None
    token: TokenFacts | None
    introspection: Introspection | None
    status: int | None
    served_instances: list[str]


class PscToken(TypedDict, total=False):
    """A token Pro Santé Connect issued (its token store, ``to_dict``)."""

    kind: str
    sid: str | None
    claims: dict[str, object]


class PscRequest(TypedDict, total=False):
    """A request PSC recorded at one of its endpoints, with the facts it drew from it (they depend on the
    endpoint: JSON values)."""

    path: str
    host_header: str | None
    facts: dict[str, object]


class InstanceFacts(TypedDict):
    """What CON-05 and CON-07 compare of one DICOM instance (:func:`instance_facts`)."""

    sop_class: str
    series: str
    identity: dict[str, str]
    frames: int
    content: str | None
    pixels: str | None




# ------------------------------------------------------------------------------------------- CON-01


def _on_interface(location: str, base: str, interface: Iterable[str]) -> tuple[bool, str]:
    """Whether a Location (resolved against the URL it answered) leads to the DUT's own interface: the
    origin of the contextual call, or one of the given "host:port" entry points or host names (the DUT's
    FQDNs). Returns (verdict, absolute URL)."""
    from urllib.parse import urljoin, urlsplit

    target = urljoin(base, location)
    try:
        parts, call = urlsplit(target), urlsplit(base)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        call_port = call.port or (443 if call.scheme == "https" else 80)
    except ValueError:
        return False, location
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False, target
    host = parts.hostname.lower()
    if (host, port) == ((call.hostname or "").lower(), call_port):
        return True, target
    for entry in interface:
        name, colon, entry_port = str(entry).lower().rpartition(":") if ":" in str(entry) else (str(entry).lower(), "", "")
        if (colon and entry_port.isdigit() and (host, port) == (name.strip("[]"), int(entry_port))) or \
                (not colon and host == name):
            return True, target
    return False, target


@check("CON-01")
def contextual_call_redirects(ex: Exchange | None, interface: Iterable[str] = ()) -> list[Finding]:
    """A valid contextual call is answered 302 or 303 towards the Conso's user interface: the Location
    leads to the DUT itself (the origin of the call, ``interface``: its other entry points "host:port"
    and its FQDNs), never to a host off the test bed."""
    if ex is None or not ex.ok:
        return [errored("CON-01", f"appel contextuel valide sans réponse ({_how(ex)})", evidence=_ev(ex))]
    location = ex.header("location")
    if ex.status in (302, 303) and location:
        own, target = _on_interface(location, ex.url, interface)
        if not own:
            return [failed("CON-01", f"appel contextuel valide : HTTP {ex.status} vers {target.split('?')[0]}, qui n'est "
                           "pas l'interface de la DRIMbox testée (hors de ses FQDN et de son point d'entrée)",
                           evidence=_ev(ex))]
        uuid = "uuid=" in location
        return [passed("CON-01", f"appel contextuel valide : HTTP {ex.status} vers {location.split('?')[0]}"
                       + (" (identifiant d'appel uuid)" if uuid else ""), evidence=_ev(ex))]
    return [failed("CON-01", f"appel contextuel valide : {_how(ex)} au lieu d'une redirection 302/303"
                   + ("" if location or ex.status not in (302, 303) else " (sans Location)"), evidence=_ev(ex))]


@check("CON-01")
def contextual_call_refused(ex: Exchange | None, case: str) -> list[Finding]:
    """A contextual call with an unknown parameter, an empty value or a missing mandatory parameter gets 400."""
    if ex is None or not ex.ok or ex.status is None:  # ok: answered, with a status
        return [errored("CON-01", f"appel contextuel {case} : pas de réponse ({_how(ex)})", evidence=_ev(ex))]
    if ex.status == 400:
        return [passed("CON-01", f"appel contextuel {case} : refusé (HTTP 400)", evidence=_ev(ex))]
    if ex.status in (301, 302, 303, 307, 308) or 200 <= ex.status < 300:
        return [failed("CON-01", f"appel contextuel {case} : accepté ({_how(ex)}) au lieu de HTTP 400",
                       evidence=_ev(ex))]
    return [failed("CON-01", f"appel contextuel {case} : {_how(ex)} au lieu de HTTP 400", evidence=_ev(ex))]


# ------------------------------------------------------------------------------------------- CON-02

#: the ten strict INS traits (requirement INS/va1.36, spec §5.1): key, French name, label pattern (accents removed)
INS_TRAITS = (
    ("nom-naissance", "nom de naissance", r"\bnom\s+de\s+naissance"),
    ("premier-prenom-naissance", "premier prénom de naissance", r"premier\s+prenom"),
    ("date-naissance", "date de naissance", r"date\s+de\s+naissance"),
    ("sexe", "sexe", r"\bsexe\b"),
    ("lieu-naissance", "lieu de naissance", r"lieu\s+de\s+naissance"),
    ("matricule-ins", "matricule INS", r"matricule|\bnir\b"),
    ("oid-ins", "OID de l'INS", r"\boid\b"),
    ("prenoms-naissance", "liste des prénoms de naissance", r"liste\s+des\s+prenoms|prenoms\s+de\s+naissance|"
                                                            r"prenom\(s\)\s+de\s+naissance"),
    ("prenom-utilise", "prénom utilisé", r"\bprenom\s+utilise"),
    ("nom-utilise", "nom utilisé", r"\bnom\s+utilise"),
)
SEX_WORDS = {"F": ("f", "feminin", "femme", "female"), "M": ("m", "masculin", "homme", "male"),
             "female": ("f", "feminin", "femme", "female"), "male": ("m", "masculin", "homme", "male")}


def _fold(text: str) -> str:
    """Lower case, no diacritics, single spaces."""
    text = unicodedata.normalize("NFKD", text)
    return " ".join("".join(c for c in text if not unicodedata.combining(c)).lower().split())


def _date_forms(value: str) -> list[str]:
    d = re.sub(r"\D", "", value)
    if len(d) != 8:
        return [_fold(value)]
    y, m, j = d[:4], d[4:6], d[6:]
    return [f"{j}/{m}/{y}", f"{y}-{m}-{j}", d, f"{j}-{m}-{y}", f"{j}.{m}.{y}"]


def _value_forms(key: str, value: str) -> list[str]:
    if key == "date-naissance":
        return _date_forms(value)
    if key == "sexe":
        return list(SEX_WORDS.get(value, (_fold(value),)))
    return [_fold(value)]


#: traits whose displayed value must be exactly the call's, not merely contain it: names, where a look-alike (the
#: whole list of given names, the used given name or another given name in place of the first) is another trait
EXACT_TRAITS = ("nom-naissance", "premier-prenom-naissance", "prenoms-naissance")


def _name_tokens(text: str) -> list[str]:
    """The words of a (folded) name value: separators are spaces, commas, semicolons and slashes, not hyphens."""
    return [t for t in re.split(r"[\s,;/]+", _fold(text).strip(" :-")) if t]


def _exact_problem(key: str, shown: str, value: str, all_given: str | None, *, whole: bool) -> str | None:
    """Why a displayed name trait is not exactly the call's value (None when it is). ``whole``: ``shown`` is an
    element that must hold the value and nothing else; otherwise it is the page text from the trait's label to
    the next label (the end of the label may precede the value), which must hold the value as whole words and,
    for the first given name, no other birth given name next to it. ``all_given``: the call's list of birth
    given names (another given name shown as the first one is the look-alike to catch)."""
    got, want = _name_tokens(shown), _name_tokens(value)
    if whole:
        return None if got == want else f"« {shown.strip()} » au lieu de « {value} »"
    at = next((i for i in range(len(got) - len(want) + 1) if got[i:i + len(want)] == want), None) if want else None
    if at is None:
        return f"valeur « {value} » absente après le libellé"
    others = [t for t in _name_tokens(all_given or "") if t not in want]
    around = got[at - 1:at] + got[at + len(want):at + len(want) + 1]
    if key == "premier-prenom-naissance" and any(t in others for t in around):
        return f"« {' '.join(got[max(0, at - 1):at + len(want) + 1])} » au lieu du seul premier prénom « {value} »"
    return None


def _segment(text: str, start: int) -> str:
    """The page text from `start` (the end of a trait's label) to the next trait label."""
    ends = [m.start() for _, _, pattern in INS_TRAITS for m in [re.compile(pattern).search(text, start)] if m]
    return text[start:min(ends)] if ends else text[start:start + 80]


def _contains(text: str, forms: list[str], *, whole: bool = False) -> bool:
    return any(re.search(rf"(?<!\w){re.escape(f)}(?!\w)", text) if whole or len(f) <= 2 else f in text for f in forms)


def page_text(html_text: str) -> tuple[str, dict[str, str]]:
    """Visible text of an HTML page (folded) and the elements marked ``data-ins-trait`` (key -> folded text)."""
    import lxml.html

    try:
        doc = lxml.html.fromstring(html_text or "<html/>")
    except (ValueError, lxml.etree.ParserError):
        return _fold(html_text or ""), {}
    for bad in _elements(doc.xpath("//script|//style")):
        parent = bad.getparent()
        if parent is not None:  # the root is the page itself, never a script or style
            parent.remove(bad)
    marked = {key: _fold(_text(el)) for el in _elements(doc.xpath("//*[@data-ins-trait]"))
              if (key := el.get("data-ins-trait")) is not None}  # selected by that attribute: always there
    return _fold(_text(doc)), marked


def _elements(found: object) -> list[etree._Element]:
    """The elements of an XPath result (a node-set expression gives only elements)."""
    return [el for el in found if isinstance(el, etree._Element)] if isinstance(found, list) else []


def _text(el: etree._Element) -> str:
    """The text nodes of an element joined by spaces (an HTML tree parsed from text holds str)."""
    return " ".join(t if isinstance(t, str) else t.decode("utf-8", "replace") for t in el.itertext())


@check("CON-02")
def ins_traits_displayed(page: Exchange | None, expected: dict[str, str | None]) -> list[Finding]:
    """The page the practitioner lands on shows the ten strict INS traits, with the values of the contextual call.

    ``expected``: trait key -> value sent in the call (None when the call does not carry it: the label alone is
    required). Elements marked ``data-ins-trait="<key>"`` are read when present; otherwise the page text must
    show each trait's label and each expected value. The name traits (:data:`EXACT_TRAITS`) are compared
    exactly, word for word: in an element, its whole text; in the page text, what follows the label up to the
    next label must start with the value, and the first given name must not be followed by the other birth
    given names (the list, or the used given name, shown in place of the first given name is another trait).
    """
    if page is None or not page.ok or page.status != 200:
        return [errored("CON-02", f"page du dossier patient non obtenue ({_how(page)})", evidence=_ev(page))]
    text, marked = page_text(page.text())
    missing, wrong = [], []
    all_given = expected.get("prenoms-naissance")
    for key, name, pattern in INS_TRAITS:
        value = expected.get(key)
        if marked:
            shown = marked.get(key)
            if shown is None:
                missing.append(name)
            elif value and key in EXACT_TRAITS:
                problem = _exact_problem(key, shown, value, all_given, whole=True)
                if problem:  # an element holds the trait and nothing else
                    wrong.append(f"{name} {problem}")
            elif value and not _contains(shown, _value_forms(key, value), whole=key == "sexe"):
                wrong.append(f"{name} « {shown} » au lieu de « {value} »")
            continue
        m = re.search(pattern, text)
        if m is None:
            missing.append(name)
        elif value and key in EXACT_TRAITS:
            problem = _exact_problem(key, _segment(text, m.end()), value, all_given, whole=False)
            if problem:
                wrong.append(f"{name} : {problem}")
        elif value:
            zone = text[m.end():m.end() + 60] if key == "sexe" else text
            if not _contains(zone, _value_forms(key, value), whole=key == "sexe"):
                wrong.append(f"{name} : valeur « {value} » absente de la page")
    how = "les éléments data-ins-trait" if marked else "le texte de la page"
    if missing or wrong:
        return [failed("CON-02", "traits stricts de l'INS incomplets (" + " ; ".join(
            ([f"absents : {', '.join(missing)}"] if missing else []) + wrong) + f" ; lus dans {how})",
            evidence=_ev(page), details={"expected": expected, "marked": marked})]
    return [passed("CON-02", f"les {len(INS_TRAITS)} traits stricts de l'INS sont affichés avec les valeurs de "
                   f"l'appel contextuel ({how})", evidence=_ev(page))]


# ------------------------------------------------------------------------------------------- CON-03


@dataclass(frozen=True)
class PscUser:
    """What drimcheck's PSC said about the logged-in practitioner (from its UserInfo)."""

    name_id: str  # SubjectNameID
    profession: str  # codeProfession of the first exercice
    structures: tuple[str, ...]  # ancienIdentifiantDeLaStructure / identifiantTechnique of every activity

    @classmethod
    def from_userinfo(cls, userinfo: dict[str, Any]) -> PscUser:
        exercices = (userinfo.get("SubjectRefPro") or {}).get("exercices") or [{}]
        ids = []
        for ex in exercices:
            for a in ex.get("activities") or []:
                ids += [a.get("ancienIdentifiantDeLaStructure"), a.get("identifiantTechniqueDeLaStructure")]
        return cls(str(userinfo.get("SubjectNameID", "")), str(exercices[0].get("codeProfession", "")),
                   tuple(i for i in ids if i))


def _vihf_problems(request: xds.XdsRequest, user: PscUser, patient_id: str, trust: TrustMaterial) -> list[str]:
    v = request.vihf
    if v is None:
        return ["aucun VIHF"]
    problems = [f"VIHF : {p}" for p in vihf_signature_problems(v, trust)]
    mode = v.first("Authentification_Mode")
    if mode != MODE_PSC:
        problems.append(f"Authentification_Mode « {mode or 'absent'} » au lieu de {MODE_PSC} (utilisateur authentifié "
                        "par Pro Santé Connect)")
    if v.name_id != user.name_id:
        problems.append(f"NameID « {v.name_id} » au lieu du SubjectNameID PSC « {user.name_id} »")
    structure = v.first("Identifiant_Structure")
    if structure not in user.structures:
        problems.append(f"Identifiant_Structure « {structure} » absent des activités PSC du praticien")
    roles = [r.get("code") for r in v.attributes.get(ROLE, []) if isinstance(r, dict)]
    if user.profession and user.profession not in roles:
        problems.append(f"rôle {roles} sans la profession PSC « {user.profession} »")
    resource = v.first(RESOURCE_ID)
    if resource != patient_id:
        problems.append(f"resource-id « {resource} » au lieu du patient « {patient_id} »")
    return problems


@check("CON-03")
def dmp_consultation(exchanges: list[xds.DmpExchange], user: PscUser, patient_id: str,
                     trust: TrustMaterial) -> list[Finding]:
    """The DUT queried the DMP for the patient (ITI-18), retrieved the KOS found (ITI-43), each request carrying a
    signed VIHF built from the PSC user: NameID, structure, profession, INDIRECTE_RENFORCEE, resource-id."""
    queries = [e for e in exchanges if e.kind == "ITI-18"]
    retrieves = [e for e in exchanges if e.kind == "ITI-43"]
    if not queries:
        return [failed("CON-03", "aucune requête ITI-18 (Registry Stored Query) reçue par le DMP pendant la "
                       "consultation du dossier", details={"requests": [e.describe() for e in exchanges]})]
    for ex in queries + retrieves:
        if ex.request is None:
            return [failed("CON-03", f"{ex.describe()} : requête illisible — {ex.parse_error}", evidence=ex.evidence)]
        problems = _vihf_problems(ex.request, user, patient_id, trust)
        if ex.kind == "ITI-18":
            asked = ex.request.query.values("$XDSDocumentEntryPatientId") if ex.request.query else []
            if asked != [patient_id]:
                problems.append(f"$XDSDocumentEntryPatientId {asked} au lieu de « {patient_id} »")
        if problems:
            return [failed("CON-03", f"{ex.describe()} : {' ; '.join(problems)}", evidence=ex.evidence,
                           details={"attributes": ex.request.vihf.attributes if ex.request.vihf else None})]
    found = sum(len(e.consultation.get("results", [])) for e in queries)
    if found and not any(e.consultation.get("returned") for e in retrieves):
        return [failed("CON-03", f"le DMP a répondu {found} document(s) mais aucun KOS n'a été récupéré (ITI-43)",
                       evidence=queries[0].evidence)]
    return [passed("CON-03", f"{len(queries)} ITI-18 et {len(retrieves)} ITI-43 pour {patient_id}, VIHF signé au nom "
                   f"du praticien PSC {user.name_id} ({MODE_PSC})", evidence=queries[0].evidence)]


# ------------------------------------------------------------------------------------------- CON-08


def _same_patient(a: str, b: str) -> bool:
    """Two patient identifiers (CX ``INS^^^&OID&ISO^NH``) name the same INS with the same OID."""
    ida, oida, _ = xds.parse_cx(a)
    idb, oidb, _ = xds.parse_cx(b)
    return bool(ida) and ida == idb and oida == oidb


def _about(ex: xds.DmpExchange, patient_id: str) -> bool:
    """The request concerns the patient: TD0.2 identifier, ITI-18 $XDSDocumentEntryPatientId, or the VIHF
    resource-id (ITI-43 carries the patient only there)."""
    req = ex.request
    if req is None:
        return False
    if req.patient_query is not None:
        return _same_patient(req.patient_query.patient_id, patient_id)
    if req.query is not None and any(_same_patient(p, patient_id)
                                     for p in req.query.values("$XDSDocumentEntryPatientId")):
        return True
    return req.vihf is not None and _same_patient(req.vihf.first(RESOURCE_ID), patient_id)


def _access_tests(exchanges: list[xds.DmpExchange], patient_id: str) -> tuple[list[xds.DmpExchange], list[str]]:
    """The TD0.2 requests about the patient, and what is wrong with them (reasonCode, service, readability)."""
    tests, problems = [], []
    for ex in exchanges:
        if ex.kind != "TD0.2":
            continue
        if ex.request is None:
            problems.append(f"{ex.describe()} : requête illisible — {ex.parse_error}")
            continue
        if not _about(ex, patient_id):
            continue
        q = ex.request.patient_query
        if q is None:  # every readable TD0.2 carries its query (xds.parse_request): not an access test
            problems.append(f"{ex.describe()} : requête sans PRPA_IN201307UV02")
        elif (q.reason_code, q.reason_system) != xds.EXISTENCE_REASON:
            problems.append(f"{ex.describe()} : reasonCode « {q.reason_code} » ({q.reason_system or 'sans système'}) "
                            f"au lieu de {xds.EXISTENCE_REASON[0]} ({xds.EXISTENCE_REASON[1]})")
        elif not ex.path.endswith("/patients"):
            problems.append(f"{ex.describe()} : envoyé à {ex.path} au lieu du service /patients")
        else:
            tests.append(ex)
    return tests, problems


@check("CON-08")
def dmp_access_tested(exchanges: list[xds.DmpExchange], patient_id: str) -> list[Finding]:
    """Open record, authorised practitioner: the DUT tested the existence of the record and the access (TD0.2,
    PRPA_IN201307UV02 TEST_EXST on /patients) for that patient before its first document search (ITI-18)."""
    tests, problems = _access_tests(exchanges, patient_id)
    searches = [e for e in exchanges if e.kind == "ITI-18" and _about(e, patient_id)]
    if problems and not tests:
        return [failed("CON-08", problems[0], evidence=[p for e in exchanges for p in e.evidence][:4])]
    if not tests:
        return [failed("CON-08", f"aucun test d'existence du DMP ni de l'autorisation d'accès (TD0.2, "
                       f"PRPA_IN201307UV02 TEST_EXST) pour {patient_id} avant la consultation",
                       details={"requests": [e.describe() for e in exchanges]},
                       evidence=searches[0].evidence if searches else [])]
    if searches and searches[0].seq < tests[0].seq:
        return [failed("CON-08", f"{searches[0].describe()} envoyée avant le test d'existence et d'autorisation "
                       f"({tests[0].describe()})", evidence=searches[0].evidence + tests[0].evidence)]
    answer = tests[0].consultation.get("record", "?")
    return [passed("CON-08", f"{tests[0].describe()} pour {patient_id} (dossier {answer}) avant "
                   f"{'la première recherche ITI-18' if searches else 'toute recherche'}", evidence=tests[0].evidence)]


@check("CON-08")
def dmp_access_respected(exchanges: list[xds.DmpExchange], patient_id: str, record: str,
                         source_requests: list[SourceRequest], page: Exchange | None) -> list[Finding]:
    """Record absent, closed or forbidden: the DUT tested it (TD0.2), then searched no document and retrieved no KOS
    for that patient (ITI-18, ITI-43) and asked no Source for images; it answered the practitioner (no 5xx)."""
    tests, problems = _access_tests(exchanges, patient_id)
    if not tests:
        return [failed("CON-08", problems[0] if problems else
                       f"aucun test d'existence du DMP (TD0.2) pour {patient_id}, dossier « {record} »",
                       details={"requests": [e.describe() for e in exchanges]})]
    after = [e for e in exchanges if e.kind in ("ITI-18", "ITI-43") and e.seq > tests[0].seq and _about(e, patient_id)]
    if after:
        return [failed("CON-08", f"dossier « {record} » signalé par le DMP ({tests[0].describe()}), la DRIMbox a "
                       f"pourtant envoyé {', '.join(e.describe() for e in after)}",
                       evidence=tests[0].evidence + after[0].evidence)]
    if source_requests:
        hosts = sorted({str(r.get("host", "?")) for r in source_requests})
        return [failed("CON-08", f"dossier « {record} » : {len(source_requests)} requête(s) d'images envoyée(s) à "
                       f"{', '.join(hosts)}", evidence=tests[0].evidence)]
    if page is None or page.status is None or page.status >= 500:
        what = "aucune réponse" if page is None or page.status is None else f"HTTP {page.status}"
        return [failed("CON-08", f"dossier « {record} » : le praticien n'obtient pas de page de la DRIMbox ({what}"
                       f"{' : ' + page.error if page is not None and page.error else ''})", evidence=tests[0].evidence)]
    return [passed("CON-08", f"dossier « {record} » ({tests[0].describe()}) : aucune recherche ni récupération au DMP, "
                   f"aucune Source contactée, page HTTP {page.status}", evidence=tests[0].evidence)]


# ------------------------------------------------------------------------------------------- CON-04 / PSC-02 / MTLS-02


@check("CON-04")
def wado_request_headers(requests: list[SourceRequest], kos_of_study: dict[str, str], retrieve_urls: Iterable[str], *,
                         every_study: bool = False) -> list[Finding]:
    """Each WADO-RS request of the DUT to the Source: series (or instance) of a KOS RetrieveURL,
    ``Authorization: Bearer``, ``KOS-SOPInstanceUID`` of the KOS that references the series, an Accept that
    DICOM PS3.18 §8.7 reads and that asks for DICOM (multipart/related application/dicom): FAIL otherwise.
    ``kos_of_study``: study UID -> SOP Instance UID of its KOS, for every KOS of the record at that Source;
    with ``every_study``, the images of each of these studies must have been asked for (a Conso that follows
    only the first KOS of the record fails), each with its own KOS.

    The exact Accept shape of ANS's WADO-RS validator sample (ansdata/wado-rs/requete-wado-rs-serie.txt:
    transfer-syntax and q in every element, boundary in the first) is also the only one the ANS PoC Source
    can parse; PS3.18 does not require it (a standard DICOMweb client sends none of it), so a request that
    deviates from it only there is a WARN: it works with a PS3.18 Source, not with a PoC-derived one."""
    if not requests:
        return [failed("CON-04", "aucune requête WADO-RS reçue par la Source listée dont le KOS est au DMP : les "
                       "images de l'étude n'ont pas été demandées")]
    paths = {re.sub(r"^https?://[^/]+", "", u) for u in retrieve_urls}
    shape: list[tuple[SourceRequest, str]] = []
    for r in requests:
        problems = []
        path = r.get("path") or ""
        if not any(path == p or path.startswith(p + "/instances/") for p in paths):
            problems.append(f"chemin {path} hors des RetrieveURL du KOS")
        try:
            ranges = parse_accept(r.get("accept"))
            if not acceptable_syntaxes(ranges):
                problems.append("Accept : aucun élément multipart/related; type=\"application/dicom\" accepté "
                                "(DICOM PS3.18 §8.7.3)")
            else:
                try:
                    check_drimbox_accept(ranges)
                except AcceptError as exc:
                    shape.append((r, str(exc)))
        except AcceptError as exc:
            problems.append(f"Accept illisible (RFC 9110, DICOM PS3.18 §8.7) : {exc}")
        if not r.get("token"):
            problems.append("pas d'en-tête Authorization: Bearer <jeton PSC>")
        expected = kos_of_study.get(r.get("study") or "")
        got = r.get("kos_sop_uid")
        if not got:
            problems.append("pas d'en-tête KOS-SOPInstanceUID")
        elif expected and got != expected:
            problems.append(f"KOS-SOPInstanceUID {got} au lieu du KOS {expected} qui référence la série")
        if problems:
            return [failed("CON-04", f"requête {r.get('method')} {path} : {' ; '.join(problems)}",
                           details={"accept": r.get("accept"), "headers": r.get("headers")})]
    if every_study:
        asked = {r.get("study") for r in requests}
        never = [study for study in kos_of_study if study not in asked]
        if never:
            return [failed("CON-04", f"{len(never)} étude(s) sur {len(kos_of_study)} de la Source listée jamais "
                           f"demandée(s) (étude {never[0]}, KOS {kos_of_study[never[0]]}) : seules les images "
                           f"d'autres KOS du dossier l'ont été", details={"never_asked": never,
                                                                           "asked": sorted(a for a in asked if a)})]
    if shape:
        r, why = shape[0]
        return [warned("CON-04", f"requête {r.get('method')} {r.get('path')} : Accept valide selon DICOM PS3.18 mais "
                       f"pas de la forme de l'échantillon validateur ANS ({why}) ; une Source dérivée du PoC ANS, "
                       "qui ne lit que cette forme, la refusera (HTTP 400)",
                       details={"accept": r.get("accept"), "requests_not_in_ans_form": len(shape)})]
    return [passed("CON-04", f"{len(requests)} requête(s) WADO-RS conformes aux exemples ANS (Accept avec syntaxes de "
                   "transfert et q, Bearer, KOS-SOPInstanceUID)")]


@check("PSC-02")
def presented_token_active(requests: list[SourceRequest], psc_tokens: dict[str, PscToken], dut_sessions: set[str],
                           practitioner_sub: str) -> list[Finding]:
    """The Bearer token the DUT presents to the Source is an access token issued by PSC in the session the
    practitioner opened through the DUT, active when used (the Source's introspection said so)."""
    with_token = [(r, facts) for r in requests if (facts := r.get("token"))]
    if not with_token:
        return [skipped("PSC-02", "aucun jeton présenté à la Source : voir CON-04")]
    for r, facts in with_token:
        rec = psc_tokens.get(facts.get("fingerprint", ""))
        where = f"requête {r.get('path')}"
        if rec is None:
            return [failed("PSC-02", f"{where} : jeton inconnu de Pro Santé Connect (ni émis ni échangé par PSC)",
                           details={"token": facts})]
        if rec.get("kind") != "access":
            return [failed("PSC-02", f"{where} : jeton PSC de type « {rec.get('kind')} » présenté au lieu de l'access "
                           "token", details={"token": facts})]
        if rec.get("sid") not in dut_sessions or (rec.get("claims") or {}).get("sub") != practitioner_sub:
            return [failed("PSC-02", f"{where} : access token d'une autre session que celle ouverte par le "
                           "praticien sur la DRIMbox", details={"token": facts})]
        intro = r.get("introspection") or {}
        if intro.get("active") is not True:
            return [failed("PSC-02", f"{where} : jeton inactif à l'introspection par la Source "
                           f"({intro.get('error') or 'active=false'})", details={"token": facts})]
    return [passed("PSC-02", f"{len(with_token)} requête(s) avec l'access token PSC actif de la session du praticien")]


@check("PSC-03")
def login_requested(auth_requests: list[PscRequest], dut_client_id: str) -> list[Finding]:
    """The DUT sent the practitioner to PSC's authorization endpoint: its client, response_type=code, scope
    openid, a state and a nonce (the authorization requests PSC recorded during the visit)."""
    mine = [r for r in auth_requests if (r.get("facts") or {}).get("client_id") == dut_client_id]
    elsewhere = [r for r in auth_requests if (r.get("facts") or {}).get("outcome") == "authorization_endpoint_elsewhere"]
    if not mine and elsewhere:  # an authorization URL built from the issuer, not read from the discovery document
        where = elsewhere[0]
        return [failed("PSC-03", f"la DRIMbox a envoyé le praticien vers {where.get('path')} sur {where.get('host_header')} "
                       f"(404) : le point d'autorisation de Pro Santé Connect est "
                       f"{where['facts'].get('authorization_endpoint')}, sur un autre hôte que l'émetteur comme le vrai "
                       "PSC ; il se lit dans le document de découverte", details={"requests": len(elsewhere)})]
    if not mine:
        return [failed("PSC-03", f"aucune demande d'authentification à Pro Santé Connect pour le client {dut_client_id} "
                       "pendant l'ouverture du dossier")]
    for r in mine:
        facts = r["facts"]
        problems = [text for ok, text in (
            (facts.get("response_type") == "code", f"response_type={facts.get('response_type')} au lieu de code"),
            ("openid" in str(facts.get("scope") or "").split(), "scope sans openid"),
            (facts.get("state_present"), "sans state (protection CSRF du retour)"),
            (facts.get("nonce_present"), "sans nonce (protection contre le rejeu de l'ID token)")) if not ok]
        if problems:
            return [failed("PSC-03", f"demande d'authentification à PSC {' ; '.join(problems)}",
                           details={"facts": facts})]
    return [passed("PSC-03", f"{len(mine)} demande(s) d'authentification PSC en flux code, avec state et nonce")]


@check("PSC-03")
def forged_return_refused(forged: Exchange | None, code_redemptions: list[PscRequest]) -> list[Finding]:
    """A return from PSC carrying a state this browser never received is refused: the DUT does not redeem the
    code it carries (no token request reaches PSC meanwhile)."""
    if forged is None or not forged.ok:
        return [errored("PSC-03", f"retour forgé vers la DRIMbox sans réponse ({_how(forged)})", evidence=_ev(forged))]
    if code_redemptions:
        return [failed("PSC-03", f"retour de PSC au state inconnu accepté : la DRIMbox a présenté le code à PSC "
                       f"({len(code_redemptions)} requête(s) au point de jeton, HTTP {forged.status})", evidence=_ev(forged),
                       details={"token_requests": [r.get("facts") for r in code_redemptions]})]
    return [passed("PSC-03", f"retour de PSC au state inconnu refusé (HTTP {forged.status}), aucun code présenté à PSC",
                   evidence=_ev(forged))]


@check("PSC-03")
def forged_nonce_refused(forged: bool, code_redemptions: list[PscRequest], dmp_exchanges: list[xds.DmpExchange],
                         patient_id: str, final: Exchange | None) -> list[Finding]:
    """A login whose ID token carries the nonce of another authorization request (a code injected from another
    login) is refused: the DUT redeemed the code, then consulted nothing for the patient of that call."""
    if not forged:
        return [errored("PSC-03", "Pro Santé Connect n'a reçu aucune demande d'authentification de la DRIMbox pendant "
                        "cette connexion : rien à juger", evidence=_ev(final))]
    if not code_redemptions:
        return [skipped("PSC-03", f"non jugeable : la DRIMbox n'a pas échangé le code auprès de PSC (fin de la navigation "
                        f"{_how(final)})", evidence=_ev(final))]
    used = [e for e in dmp_exchanges if _about(e, patient_id)]
    if used:
        return [failed("PSC-03", f"ID token au nonce d'une autre demande accepté : la DRIMbox a consulté le DMP au nom "
                       f"du praticien ({', '.join(e.describe() for e in used)})", evidence=_ev(final) + used[0].evidence)]
    return [passed("PSC-03", f"ID token au nonce d'une autre demande refusé : code échangé, aucune requête au DMP pour "
                   f"le patient (navigation terminée {_how(final)})", evidence=_ev(final))]


@check("MTLS-02")
def client_certificate_presented(requests: list[SourceRequest], dut_fqdns: Iterable[str]) -> list[Finding]:
    """The DUT presents to the Source its IGC-Santé SERV_SSL certificate (CN = one of its dbN FQDNs, client
    authentication allowed); the Source's TLS layer verified its chain to IGC-Santé."""
    if not requests:
        return [skipped("MTLS-02", "aucune requête WADO-RS vers la Source : voir CON-04")]
    own = {f.lower() for f in dut_fqdns}
    certs: list[ClientCertFacts] = []
    for r in requests:
        tls = r.get("tls")
        cert = (tls.get("client_cert") if tls else None) or None
        if cert is None:
            return [failed("MTLS-02", f"requête {r.get('path')} sans certificat client (mTLS entre DRIMbox absent)")]
        cn = next((p[3:] for p in cert.get("subject", "").split(",") if p.startswith("CN=")), "")
        if cn.lower() not in own:
            return [failed("MTLS-02", f"certificat client « {cert.get('subject')} » : CN hors des FQDN dbN de la "
                           f"DRIMbox ({', '.join(sorted(own))})", details={"certificate": cert})]
        if not cert.get("client_auth_eku"):
            return [failed("MTLS-02", f"certificat client « {cert.get('subject')} » sans usage clientAuth",
                           details={"certificate": cert})]
        certs.append(cert)
    first = certs[0]  # the first request's
    return [passed("MTLS-02", f"{len(requests)} requête(s) en mTLS avec « {first.get('subject')} » (émis par "
                   f"« {first.get('issuer')} »)")]


@check("WL-06")
def only_listed_sources_contacted(requests: list[SourceRequest], listed_hosts: Iterable[str], unlisted_host: str,
                                  window_s: float) -> list[Finding]:
    """Conso side: whatever the KOS say, only Sources of the valid whitelist are contacted; judged when the DUT
    did contact the listed Source of the same patient (otherwise it contacted nobody: inconclusive)."""
    listed = {h.lower() for h in listed_hosts}
    if not any(str(r.get("host", "")).lower() in listed for r in requests):
        return [skipped("WL-06", "non jugeable : la DRIMbox n'a contacté aucune Source, même listée (voir CON-04)")]
    findings = contacted_only_listed_hosts(requests, listed, unlisted_host)
    for f in findings:
        f.message += f" (observation jusqu'à {window_s:g} s après l'affichage du dossier)"
    return findings


def _request_names(r: SourceRequest) -> str:
    """How a recorded request named its host: Host header and TLS SNI."""
    sni = (r.get("tls") or {}).get("sni")
    host = r.get("host_header")
    return ", ".join(dict.fromkeys(f"{what} {v}" for what, v in (("Host", host), ("SNI", sni)) if v)) or "nom inconnu"


@check("WL-06")
def lookalike_not_contacted(case: str, authority: str, host: str, requests: list[SourceRequest], *, listed_contacted: bool,
                            window_s: float) -> list[Finding]:
    """Conso side: a KOS whose RetrieveURL names a host that looks like a listed one (same registry domain,
    suffix, prefix, a port hiding another host, final dot, Unicode confusable) but is not listed is never followed.
    ``requests``: what the simulator answering for ``host`` recorded for that KOS's study. Judged when the DUT
    contacted the listed Source of the same record (otherwise it contacted nobody: inconclusive)."""
    if requests:
        r = requests[0]
        return [failed("WL-06", f"hôte ressemblant à une Source listée ({case}) contacté : {len(requests)} requête(s) "
                       f"vers {host} (autorité de la RetrieveURL « {authority} », {_request_names(r)}), absent de la liste "
                       "blanche", details={"requests": requests[:10], "authority": authority, "host": host})]
    if not listed_contacted:
        return [skipped("WL-06", "non jugeable : la DRIMbox n'a contacté aucune Source, même listée (voir CON-04)")]
    return [passed("WL-06", f"aucune requête vers {host} ({case}, autorité de la RetrieveURL « {authority} »), absent de "
                   f"la liste blanche (observation jusqu'à {window_s:g} s après l'affichage du dossier)")]


@check("WL-06")
def withdrawn_source_not_contacted(host: str, requests: list[SourceRequest], *, contacted_before: bool, kos_retrieved: bool,
                                   window_s: float) -> list[Finding]:
    """Conso side, time and state: a Source the DUT contacted while listed, then removed from the whitelist the
    DUT applied, is no longer contacted by a later consultation whose KOS designates it. Judged when the DUT did
    contact it before, and did read the later KOS (ITI-43), so that the decision not to follow was its own."""
    if requests:
        return [failed("WL-06", f"Source {host} retirée de la liste blanche appliquée par la DRIMbox, contactée "
                       f"quand même par la consultation suivante ({len(requests)} requête(s), "
                       f"{_request_names(requests[0])}) : une autorisation antérieure est restée en vigueur",
                       details={"requests": requests[:10]})]
    if not contacted_before:
        return [skipped("WL-06", f"non jugeable : la DRIMbox n'avait pas contacté {host} quand elle était listée "
                        "(voir CON-04)")]
    if not kos_retrieved:
        return [skipped("WL-06", f"non jugeable : la DRIMbox n'a pas récupéré au DMP (ITI-43) le KOS désignant {host} "
                        "lors de la consultation suivante (voir CON-03)")]
    return [passed("WL-06", f"Source {host} contactée tant qu'elle était listée, plus aucune requête après son retrait "
                   f"de la liste blanche (KOS récupéré au DMP, observation jusqu'à {window_s:g} s après l'affichage "
                   "du dossier)")]


# ------------------------------------------------------------------------------------------- CON-05 / CON-07


def served_by_source(requests: list[SourceRequest]) -> set[str]:
    """Instances a peer Source served with HTTP 200 (its request records)."""
    return {uid for r in requests if r.get("status") == 200 for uid in r.get("served_instances") or [] if uid}


@check("CON-05")
def export_complete(expected: dict[str, InstanceFacts], exported: dict[str, InstanceFacts],
                    source_requests: list[SourceRequest],
                    where: str) -> list[Finding]:
    """The study exported to the local PACS holds every instance of the source study, with identical UIDs and
    pixel data (SHA-256 of the decoded pixels). Judged when the Source served the whole study to the DUT."""
    served = served_by_source(source_requests)
    if not set(expected) <= served:
        return [skipped("CON-05", f"non jugeable : la Source n'a servi que {len(served & set(expected))} des "
                        f"{len(expected)} instance(s) à la DRIMbox (voir CON-04, PSC-02, MTLS-02)")]
    missing = sorted(set(expected) - set(exported))
    extra = sorted(set(exported) - set(expected))
    different = sorted(uid for uid in set(expected) & set(exported)
                       if any(expected[uid].get(k) != exported[uid].get(k) for k in CONTENT_FACTS))
    details = {"expected": len(expected), "exported": len(exported), "missing": missing[:10], "extra": extra[:10],
               "different": different[:10]}
    if missing:
        kinds = _kinds({uid: expected[uid] for uid in missing})
        return [failed("CON-05", f"{len(missing)} instance(s) sur {len(expected)} absente(s) de l'étude exportée "
                       f"vers {where} ({kinds})", details=details)]
    if extra or different:
        changed = sorted({k for uid in different for k in CONTENT_FACTS if expected[uid].get(k) != exported[uid].get(k)})
        details["changed"] = changed
        return [failed("CON-05", f"étude exportée différente de la source : {len(different)} instance(s) modifiée(s) "
                       f"({', '.join(changed) or '-'}), {len(extra)} instance(s) en trop", details=details)]
    return [passed("CON-05", f"{len(expected)} instance(s) exportée(s) vers {where} ({_kinds(expected)}), UID, "
                   "classes SOP, séries, pixels et contenu identiques à la source", details=details)]


def _kinds(facts: dict[str, InstanceFacts]) -> str:
    """« 5 image(s), 1 multi-frame, 1 non-image » of a set of instance facts."""
    frames = [f.get("frames") for f in facts.values()]
    multi = sum(1 for n in frames if n and n > 1)
    non_image = sum(1 for f in facts.values() if f.get("pixels") is None)
    single = len(facts) - multi - non_image
    return ", ".join(p for p in (f"{single} image(s) mono-trame" if single else "",
                                 f"{multi} multi-frame" if multi else "",
                                 f"{non_image} objet(s) non-image" if non_image else "") if p)


IDENTITY_FIELDS = ("PatientID", "IssuerOfPatientID", "PatientName", "PatientBirthDate", "PatientSex", "OtherPatientIDs")
#: what CON-05 compares per instance, besides its presence
CONTENT_FACTS = ("sop_class", "series", "frames", "pixels", "content")


def _content_digest(ds: Dataset) -> str | None:
    """SHA-256 of the content tree of a non-image object (SR ContentSequence, or an encapsulated document), None
    for an object without either."""
    import hashlib

    if "ContentSequence" in ds:
        return hashlib.sha256(str(ds.ContentSequence).encode("utf-8", "replace")).hexdigest()
    if "EncapsulatedDocument" in ds:
        return hashlib.sha256(bytes(ds.EncapsulatedDocument)).hexdigest()
    return None


def instance_facts(ds: Dataset) -> tuple[str, InstanceFacts]:
    """(SOP Instance UID, {"sop_class", "series", "frames", "pixels": SHA-256 of the native pixel data (None for a
    non-image object), "content": digest of a non-image object's content, "identity"}) of a dataset in a native
    transfer syntax (what CON-05 and CON-07 compare)."""
    import hashlib

    others = "; ".join(f"{o.get('PatientID', '')}^{o.get('IssuerOfPatientID', '')}"
                       for o in ds.get("OtherPatientIDsSequence", []))
    pixels = ds.get("PixelData")
    identity = {"PatientID": str(ds.get("PatientID", "")), "IssuerOfPatientID": str(ds.get("IssuerOfPatientID", "")),
                "PatientName": str(ds.get("PatientName", "")), "PatientBirthDate": str(ds.get("PatientBirthDate", "")),
                "PatientSex": str(ds.get("PatientSex", "")), "OtherPatientIDs": others}
    try:
        frames = int(ds.get("NumberOfFrames", 1) or 1) if pixels is not None else 0
    except (TypeError, ValueError):
        frames = -1
    return str(ds.SOPInstanceUID), {"sop_class": str(ds.get("SOPClassUID", "")),
                                    "series": str(ds.get("SeriesInstanceUID", "")), "identity": identity,
                                    "frames": frames, "content": _content_digest(ds),
                                    "pixels": hashlib.sha256(bytes(pixels)).hexdigest() if pixels is not None else None}


@check("CON-07")
def export_identity(expected: dict[str, InstanceFacts], exported: dict[str, InstanceFacts]) -> list[Finding]:
    """The exported instances keep the patient identity of the source (PatientID and its issuer, name, birth
    date, sex, other identifiers such as the INS)."""
    common = sorted(set(expected) & set(exported))
    if not common:
        return [skipped("CON-07", "aucune instance exportée à comparer (voir CON-05)")]
    for uid in common:
        changed = [f"{k} « {exported[uid]['identity'].get(k)} » au lieu de « {expected[uid]['identity'].get(k)} »"
                   for k in IDENTITY_FIELDS if exported[uid]["identity"].get(k) != expected[uid]["identity"].get(k)]
        if changed:
            return [failed("CON-07", f"identité du patient modifiée à l'export (instance {uid}) : {' ; '.join(changed)}",
                           details={"expected": expected[uid]["identity"], "exported": exported[uid]["identity"]})]
    return [passed("CON-07", f"identité du patient inchangée dans les {len(common)} instance(s) exportée(s)")]


# ------------------------------------------------------------------------------------------- CON-06

_KPI_COUNT = re.compile(r"Nombre_Appel\"?\s*[=:]\s*\"?(\d+)", re.IGNORECASE)
_KPI_STATUS = re.compile(r"Statut_Appel\"?\s*[=:]\s*\"?([^\W\d_]+)", re.IGNORECASE)


def kpi_lines(text: str) -> list[dict[str, str]]:
    """The ModelStat lines of a KPI file: {"count", "status", "line"}."""
    out = []
    for line in (text or "").splitlines():
        count = _KPI_COUNT.search(line)
        if count:
            status = _KPI_STATUS.search(line)
            out.append({"count": count.group(1), "status": _fold(status.group(1)) if status else "", "line": line})
    return out


@check("CON-06")
def kpi_written(before: str, after: str, calls: list[tuple[str, str]]) -> list[Finding]:
    """One KPI "ModelStat" line per contextual call received: ``Nombre_Appel=1`` and ``Statut_Appel`` succes or
    erreur as the call was accepted or refused. ``calls``: (description, expected status) in order."""
    old, new = kpi_lines(before), kpi_lines(after)
    added = new[len(old):] if len(new) >= len(old) else []
    details = {"new_lines": [a["line"] for a in added], "calls": calls}
    if len(added) != len(calls):
        return [failed("CON-06", f"{len(added)} ligne(s) ModelStat ajoutée(s) pour {len(calls)} appel(s) contextuel(s)",
                       details=details)]
    for (what, status), line in zip(calls, added, strict=True):  # same length: checked above
        if line["count"] != "1" or line["status"] != status:
            return [failed("CON-06", f"{what} : ligne « {line['line']} » au lieu de Nombre_Appel=1 ; "
                           f"Statut_Appel={status}", details=details)]
    return [passed("CON-06", f"une ligne ModelStat par appel contextuel ({', '.join(s for _, s in calls)})",
                   details=details)]


# ------------------------------------------------------------------------------------------- PSC-01 / WADO-01 (Source side)


def _control(requirement: str, control: Exchange | None) -> Finding | None:
    if served_instances(control):
        return None
    return skipped(requirement, f"non jugeable : la DRIMbox pair listée, munie d'un jeton PSC valide et du KOS, n'est "
                   f"pas servie non plus ({_how(control)} ; voir WL-05)", evidence=_ev(control))


def _refusal(requirement: str, ex: Exchange | None, case: str, status: int, control: Exchange | None) -> list[Finding]:
    inconclusive = _control(requirement, control)
    if inconclusive:
        return [inconclusive]
    served = served_instances(ex)
    if served:
        return [failed(requirement, f"requête {case} : {len(served)} objet(s) DICOM servi(s) au lieu d'un refus "
                       f"HTTP {status}", evidence=_ev(ex, control))]
    if ex is None or not ex.ok:
        return [failed(requirement, f"requête {case} : pas de réponse HTTP ({_how(ex)}) au lieu de HTTP {status}",
                       evidence=_ev(ex, control))]
    if ex.status != status:
        return [failed(requirement, f"requête {case} : refusée en HTTP {ex.status} au lieu de HTTP {status}",
                       evidence=_ev(ex, control))]
    return [passed(requirement, f"requête {case} : refusée (HTTP {status}), la même requête correcte étant servie",
                   evidence=_ev(ex, control))]


@check("PSC-01")
def token_refused(ex: Exchange | None, case: str, control: Exchange | None) -> list[Finding]:
    """The Source serves nothing without an active PSC token: 401 (no token, expired, revoked, session ended,
    not a PSC token), while the same request with a valid token is served."""
    return _refusal("PSC-01", ex, case, 401, control)


@check("WADO-01")
def request_refused(ex: Exchange | None, case: str, status: int, control: Exchange | None) -> list[Finding]:
    """The Source checks the WADO-RS request: 400 without KOS-SOPInstanceUID or with a malformed Accept, 404 for
    a KOS that does not reference the object, 410 for a referenced instance gone from the PACS."""
    return _refusal("WADO-01", ex, case, status, control)


# ------------------------------------------------------------------------------------------- WADO-02 (Source side)


def _served_syntaxes(ex: Exchange) -> tuple[list[tuple[str | None, str | None]], str | None]:
    """[(declared syntax, actual syntax from the file meta)] per DICOM part, and the response-level declaration;
    declared = the part's Content-Type transfer-syntax, else the response's (PS3.18 §8.7.3.4)."""
    import io

    import pydicom

    try:
        media, params = parse_media_type(ex.header("content-type") or "")
    except AcceptError:
        media, params = "", {}
    top = params.get("transfer-syntax")
    bodies: list[tuple[str | None, bytes]] = []
    if media.startswith("multipart/") and params.get("boundary"):
        try:
            for part in iter_parts([ex.response_body], params["boundary"]):
                bodies.append((part.transfer_syntax, part.body))
        except MultipartError:
            pass
    if not bodies:  # unreadable framing: what whitelist.dicom_parts finds, declared at response level only
        from drimcheck.checks.whitelist import dicom_parts

        bodies = [(None, b) for b in dicom_parts(ex)]
    out = []
    for declared, body in bodies:
        if len(body) <= 132 or body[128:132] != b"DICM":
            continue
        try:
            actual = str(pydicom.dcmread(io.BytesIO(body), stop_before_pixels=True).file_meta.TransferSyntaxUID)
        except Exception:  # noqa: BLE001 - an unreadable object has no known syntax
            actual = None
        out.append((declared or top, actual))
    return out, top


@check("WADO-02")
def transfer_syntax_honoured(ex: Exchange | None, case: str, accept: str, control: Exchange | None) -> list[Finding]:
    """The Source answers in a transfer syntax the request accepts and declares it (DICOM PS3.18 §8.7.3):
    every DICOM part in an accepted syntax (a range without transfer-syntax accepts Explicit VR LE, ``*``
    any), its syntax named by ``transfer-syntax=`` on its Content-Type or the response's (mandatory for
    anything but Explicit VR Little Endian, PS3.18 §8.7.3.4), the declaration matching the file meta.
    406 is conformant when nothing acceptable can be produced, except when Explicit VR Little Endian is
    acceptable (every origin server supports it). A PS3.18-valid Accept refused with 400 (as the ANS PoC
    does for anything but its sample's shape) is a WARN: a standard DICOMweb client is not served."""
    inconclusive = _control("WADO-02", control)
    if inconclusive:
        return [inconclusive]
    accepted = acceptable_syntaxes(parse_accept(accept))
    anything = "*" in accepted
    if ex is None or not ex.ok:
        return [failed("WADO-02", f"requête {case} : pas de réponse HTTP ({_how(ex)})", evidence=_ev(ex, control))]
    if ex.status == 406:
        if EXPLICIT_VR_LE in accepted or anything:
            return [failed("WADO-02", f"requête {case} : HTTP 406 alors qu'Explicit VR Little Endian, que toute Source "
                           "DICOMweb fournit, est accepté (DICOM PS3.18 §8.7.3)", evidence=_ev(ex, control))]
        return [passed("WADO-02", f"requête {case} : HTTP 406, aucune syntaxe acceptée disponible (conforme à DICOM "
                       "PS3.18 §8.7)", evidence=_ev(ex, control))]
    if ex.status == 400:
        return [warned("WADO-02", f"requête {case} : refusée en HTTP 400 alors que son Accept est valide selon DICOM "
                       "PS3.18 §8.7 (comme la Source du PoC ANS) : un client DICOMweb standard n'est pas servi",
                       evidence=_ev(ex, control), details={"accept": accept})]
    if not ex.status or not 200 <= ex.status < 300:
        return [failed("WADO-02", f"requête {case} : HTTP {ex.status} au lieu des images ou d'un refus HTTP 406",
                       evidence=_ev(ex, control))]
    parts, top = _served_syntaxes(ex)
    if not parts:
        return [failed("WADO-02", f"requête {case} : HTTP {ex.status} sans objet DICOM", evidence=_ev(ex, control))]
    details = {"accept": accept, "content_type": ex.header("content-type"),
               "parts": [{"declared": d, "actual": a} for d, a in parts]}
    for declared, actual in parts:
        if actual is None or not (anything or actual in accepted):
            return [failed("WADO-02", f"requête {case} : objet servi en {actual or 'syntaxe illisible'}, syntaxe que la "
                           f"requête n'accepte pas ({', '.join(sorted(accepted))})", evidence=_ev(ex, control),
                           details=details)]
        if declared is None and actual != EXPLICIT_VR_LE:
            return [failed("WADO-02", f"requête {case} : objet servi en {actual} sans transfer-syntax= dans le "
                           "Content-Type de la partie ni de la réponse (DICOM PS3.18 §8.7.3.4)",
                           evidence=_ev(ex, control), details=details)]
        if declared is not None and declared != actual:
            return [failed("WADO-02", f"requête {case} : syntaxe déclarée {declared}, objet réellement en {actual}",
                           evidence=_ev(ex, control), details=details)]
    used = sorted({a for _, a in parts if a})
    return [passed("WADO-02", f"requête {case} : {len(parts)} objet(s) servi(s) en {', '.join(used)}, syntaxe acceptée "
                   "et déclarée", evidence=_ev(ex, control), details=details)]
