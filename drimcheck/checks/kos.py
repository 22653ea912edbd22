"""Checks of the KOS manifest a Source publishes (spec §4.3; DICOM PS3.3 A.35.4; PS3.16 TID 2010; IHE XDS-I.b).

Every check takes a `KosDocument` (bytes + reading + evidence); `None` means no KOS was published
in the scenario, which these checks cannot judge (SKIP: the publication requirement says why).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from drimcheck.checks import check
from drimcheck.kos import INS_ISSUERS, INS_OIDS, INS_RE, KOS_SOP_CLASS, KosDocument, KosView, profile_only
from drimcheck.verdicts import Finding, errored, failed, passed, skipped, warned

MANIFEST = ("113030", "DCM")
KEY_OBJECT_DESCRIPTION = ("113012", "DCM")
REFERENCE_VALUE_TYPES = {"IMAGE", "COMPOSITE", "WAVEFORM"}
XDSI_PROFILE = "IHEXDSIManifest"


@dataclass(frozen=True)
class ExpectedIdentity:
    """What the report (CDA) sent by the RIS says the KOS must carry (the keyword fields are optional: empty
    means "not known", and the value is then not compared)."""

    study_uid: str
    ins: str
    ins_oid: str
    ipp: str
    accession: str
    accession_oid: str
    order: str
    order_oid: str
    family: str = ""
    given: str = ""
    birth_date: str = ""  # YYYYMMDD
    sex: str = ""
    birthplace: str = ""  # INSEE code
    author_id: str = ""  # RPPS of the report's author
    structure_id: str = ""  # identifier of the author's organisation in the report
    service_time: str = ""  # serviceEvent effectiveTime of the report, YYYYMMDDHHMMSS
    modalities: tuple[str, ...] = ()  # modalities of the series the PACS holds for the study


def _unreadable(req: str, doc: KosDocument | None) -> list[Finding]:
    """The finding when no KOS was published (None) or it could not be read (no view)."""
    if doc is None:
        return [skipped(req, "aucun KOS publié dans ce scénario : rien à examiner (voir l'exigence de publication)")]
    return [failed(req, f"{doc.label} illisible : {doc.error}", evidence=doc.evidence)]


_INVALID = re.compile(r"Value invalid for this VR - \((0x[0-9a-fA-F]{4}),(0x[0-9a-fA-F]{4})\) (\w\w) (.+?)\s+\w\w \[\d+\] = <(.*?)>")
_MISSING = re.compile(r"Missing attribute Type (\w+) Required Element=<(\w+)> Module=<(\w+)>")
_UNWANTED = re.compile(r"Attribute present when condition unsatisfied .*?Element=<(\w+)>")


def summarize_iod_errors(errors: list[str]) -> list[str]:
    """dciodvfy errors grouped into readable French statements (the raw lines stay in the details)."""
    invalid: dict[str, str] = {}
    missing: dict[str, list[str]] = {}
    unwanted: list[str] = []
    other: list[str] = []
    for line in errors:
        text = line.removeprefix("Error - ")
        if m := _INVALID.search(text):
            vr, name, value = m.group(3), m.group(4).strip(), m.group(5)
            hint = " : une date dans un champ heure" if vr == "TM" and re.fullmatch(r"(19|20)\d{6}", value) else ""
            invalid.setdefault(f"{name} = « {value} » invalide pour la VR {vr}{hint}", name)
        elif m := _MISSING.search(text):
            missing.setdefault(m.group(1), [])
            if m.group(2) not in missing[m.group(1)]:
                missing[m.group(1)].append(m.group(2))
        elif m := _UNWANTED.search(text):
            unwanted.append(m.group(1))
        elif "contains invalid data values" in text:
            continue  # summary line of the invalid values above
        else:
            other.append(text)
    out = list(invalid)
    out += [f"attribut(s) de type {t} absent(s) : {', '.join(names)}" for t, names in sorted(missing.items())]
    if unwanted:
        out.append(f"attribut(s) conditionnel(s) présent(s) à tort : {', '.join(dict.fromkeys(unwanted))}")
    return out + list(dict.fromkeys(other))


def _short(items: list[str], n: int = 3) -> str:
    counts = Counter(items)
    shown = [f"{m} (×{c})" if c > 1 else m for m, c in list(counts.items())[:n]]
    more = len(counts) - n
    return " ; ".join(shown) + (f" ; … et {more} autre(s)" if more > 0 else "")


@check("KOS-01")
def iod_valid(doc: KosDocument | None) -> list[Finding]:
    """Key Object Selection Document IOD, judged by dciodvfy (errors fail; the RetrieveURL warning is waived)."""
    if doc is None or doc.view is None:
        return _unreadable("KOS-01", doc)
    view = doc.view
    report = doc.iod()
    details = {"dciodvfy": report.to_dict()}
    if report.failure:
        return [errored("KOS-01", f"{doc.label} : {report.failure}", evidence=doc.evidence, details=details)]
    waived = (f" (avertissement dciodvfy levé explicitement : RetrieveURL (0008,1190) hors IOD standard, "
              f"×{sum('Retrieve URL' in w['message'] for w in report.waived)} — extension DRIM-M attendue ; "
              "détail dans les données du constat)") if report.waived else ""
    if view.sop_class_uid != KOS_SOP_CLASS:
        return [failed("KOS-01", f"{doc.label} : SOP Class {view.sop_class_uid or 'absente'} au lieu de "
                       f"Key Object Selection Document ({KOS_SOP_CLASS})", evidence=doc.evidence, details=details)]
    if report.errors:
        return [failed("KOS-01", f"{doc.label} : dciodvfy signale {len(report.errors)} erreur(s) d'IOD — "
                       f"{' ; '.join(summarize_iod_errors(report.errors))}{waived}",
                       evidence=doc.evidence, details=details)]
    if report.warnings:
        return [warned("KOS-01", f"{doc.label} : IOD {report.iod or 'KOS'} sans erreur, mais dciodvfy avertit : "
                       f"{_short([w.removeprefix('Warning - ') for w in report.warnings])}{waived}",
                       evidence=doc.evidence, details=details)]
    return [passed("KOS-01", f"{doc.label} : IOD {report.iod or 'KeyObjectSelectionDocument'} valide selon dciodvfy"
                   f"{waived}", evidence=doc.evidence, details=details)]


@check("KOS-02")
def manifest_template(doc: KosDocument | None) -> list[Finding]:
    """TID 2010 Manifest: (113030, DCM) CONTAINER SEPARATE, one reference item per instance, one evidence study."""
    if doc is None or doc.view is None:
        return _unreadable("KOS-02", doc)
    v = doc.view
    problems = []
    if v.concept is None or (v.concept[0], v.concept[1]) != MANIFEST:
        problems.append(f"titre du document {v.concept or 'absent'} au lieu de (113030, DCM, « Manifest »)")
    if v.value_type != "CONTAINER":
        problems.append(f"ValueType racine « {v.value_type} » au lieu de CONTAINER")
    if v.continuity != "SEPARATE":
        problems.append(f"ContinuityOfContent « {v.continuity} » au lieu de SEPARATE")
    if v.templates and ("DCMR", "2010") not in v.templates:
        problems.append(f"ContentTemplateSequence {v.templates} au lieu de DCMR 2010")
    if len(v.evidence) != 1:
        problems.append(f"{len(v.evidence)} étude(s) dans CurrentRequestedProcedureEvidenceSequence au lieu d'une seule")
    elif v.evidence[0].study_uid != v.study_uid:
        problems.append(f"étude en preuve {v.evidence[0].study_uid} différente du StudyInstanceUID du KOS {v.study_uid}")
    evidence = v.referenced()
    referenced: Counter[str] = Counter()
    descriptions = 0
    for item in v.content:
        if item.value_type in REFERENCE_VALUE_TYPES:
            if item.relationship != "CONTAINS":
                problems.append(f"item {item.value_type} en relation {item.relationship or 'absente'} au lieu de CONTAINS")
            if len(item.refs) != 1:
                problems.append(f"item {item.value_type} avec {len(item.refs)} référence(s) au lieu d'une")
            for _, uid in item.refs:
                referenced[uid] += 1
        elif item.value_type == "TEXT" and item.concept and (item.concept[0], item.concept[1]) == KEY_OBJECT_DESCRIPTION:
            descriptions += 1
        else:
            problems.append(f"item de contenu inattendu dans un Manifest : {item.value_type} {item.concept or ''}".strip())
    if descriptions > 1:
        problems.append(f"{descriptions} items « Key Object Description » au lieu d'un au plus")
    missing = sorted(set(evidence) - set(referenced))
    extra = sorted(set(referenced) - set(evidence))
    doubled = sorted(uid for uid, n in referenced.items() if n > 1)
    if missing:
        problems.append(f"{len(missing)} instance(s) en preuve sans item IMAGE dans le contenu (ex. {missing[0]})")
    if extra:
        problems.append(f"{len(extra)} item(s) IMAGE référençant une instance absente de la preuve (ex. {extra[0]})")
    if doubled:
        problems.append(f"{len(doubled)} instance(s) référencée(s) par plusieurs items (ex. {doubled[0]})")
    if not evidence:
        problems.append("aucune instance référencée")
    details = {"instances_in_evidence": len(evidence), "reference_items": sum(referenced.values()),
               "concept": v.concept, "continuity": v.continuity}
    if problems:
        return [failed("KOS-02", f"{doc.label} : gabarit Manifest non respecté — {' ; '.join(problems[:4])}"
                       + (f" ; … ({len(problems) - 4} autre(s))" if len(problems) > 4 else ""),
                       evidence=doc.evidence, details={**details, "problems": problems})]
    return [passed("KOS-02", f"{doc.label} : Manifest (113030, DCM) CONTAINER SEPARATE, {len(evidence)} item(s) IMAGE "
                   "pour autant d'instances en preuve, une seule étude", evidence=doc.evidence, details=details)]


@check("KOS-03")
def references_pacs_content(doc: KosDocument | None, pacs_rows: list[dict[str, str]], pacs_name: str) -> list[Finding]:
    """The referenced set equals what the PACS holds for the study, as drimcheck itself queried it (QIDO-RS)."""
    if doc is None or doc.view is None:
        return _unreadable("KOS-03", doc)
    v = doc.view
    held = {r["SOPInstanceUID"]: (r["SOPClassUID"], r["SeriesInstanceUID"]) for r in pacs_rows
            if r.get("StudyInstanceUID") in (None, v.study_uid)}
    referenced = v.referenced()
    missing = sorted(set(held) - set(referenced))
    extra = sorted(set(referenced) - set(held))
    wrong_class = sorted(uid for uid in set(held) & set(referenced) if held[uid][0] != referenced[uid][0])
    wrong_series = sorted(uid for uid in set(held) & set(referenced) if held[uid][1] != referenced[uid][1])
    details = {"pacs": pacs_name, "held": len(held), "referenced": len(referenced), "missing": missing[:50],
               "extra": extra[:50], "wrong_sop_class": wrong_class[:50], "wrong_series": wrong_series[:50]}
    if not held:
        return [errored("KOS-03", f"le PACS {pacs_name} ne détient aucune instance de l'étude {v.study_uid} : "
                        "référence impossible à établir", evidence=doc.evidence, details=details)]
    problems = []
    if missing:
        problems.append(f"{len(missing)} instance(s) détenue(s) par le PACS absente(s) du KOS (ex. {missing[0]})")
    if extra:
        problems.append(f"{len(extra)} instance(s) référencée(s) que le PACS ne détient pas pour cette étude (ex. {extra[0]})")
    if wrong_class:
        uid = wrong_class[0]
        problems.append(f"{len(wrong_class)} SOP Class erronée(s) (ex. {uid} : {referenced[uid][0]} au lieu de {held[uid][0]})")
    if wrong_series:
        uid = wrong_series[0]
        problems.append(f"{len(wrong_series)} instance(s) rangée(s) sous une autre série (ex. {uid} sous {referenced[uid][1]})")
    if problems:
        return [failed("KOS-03", f"{doc.label} : {' ; '.join(problems)} (PACS {pacs_name} : {len(held)} instances)",
                       evidence=doc.evidence, details=details)]
    series = len({s for _, s in held.values()})
    return [passed("KOS-03", f"{doc.label} : les {len(held)} instances ({series} série(s)) détenues par le PACS {pacs_name} "
                   "sont référencées, sans instance en trop, SOP Class et séries exactes", evidence=doc.evidence,
                   details=details)]


# --- KOS-04: one small named condition per rule, each a pure function of the view (and the report's identity),
# returning the problems it finds, in the order the finding lists them.


def ins_oids(v: KosView) -> list[str]:
    """The INS OIDs among IssuerOfPatientIDQualifiersSequence's issuers."""
    return [o for o in v.patient_id_oids if o in INS_OIDS]


def patient_id_is_ins(v: KosView) -> list[str]:
    if INS_RE.match(v.patient_id):
        return []
    return [f"PatientID « {v.patient_id} » n'est pas un matricule INS (15 caractères NIR/NIA)"]


def issuer_is_ins(v: KosView) -> list[str]:
    if v.issuer_of_patient_id in INS_ISSUERS:
        return []
    return [f"IssuerOfPatientID « {v.issuer_of_patient_id} » au lieu de ASIP-SANTE-INS-NIR"]


def ins_oid_present(v: KosView) -> list[str]:
    if ins_oids(v):
        return []
    return [f"OID de l'INS absent de IssuerOfPatientIDQualifiersSequence ({v.patient_id_oids or 'vide'})"]


def other_ids_agree(v: KosView) -> list[str]:
    """No OtherPatientIDsSequence item presented as an INS (issuer or OID) with another value than PatientID."""
    return [f"OtherPatientIDsSequence : « {other.value} » présenté comme INS alors que PatientID vaut "
            f"« {v.patient_id} »" for other in v.other_ids
            if (other.issuer in INS_ISSUERS or set(other.oids) & set(INS_OIDS)) and other.value != v.patient_id]


def request_present(v: KosView) -> list[str]:
    return [] if v.requests else ["ReferencedRequestSequence absente : ni numéro d'accession ni commande"]


def request_accession_issued(v: KosView) -> list[str]:
    """The first request carries an accession number (where the ANS samples put it), with its issuer."""
    if not v.requests:
        return []
    req = v.requests[0]
    if not req.accession:
        return ["AccessionNumber absent de ReferencedRequestSequence (emplacement des exemples ANS)"]
    if not req.accession_oids:
        return [f"numéro d'accession « {req.accession} » sans IssuerOfAccessionNumberSequence"]
    return []


def request_study_matches(v: KosView) -> list[str]:
    if not v.requests or not v.requests[0].study_uid or v.requests[0].study_uid == v.study_uid:
        return []
    return [f"ReferencedRequestSequence désigne l'étude {v.requests[0].study_uid}, pas {v.study_uid}"]


def top_accession_matches(v: KosView) -> list[str]:
    """The top-level AccessionNumber, when present, is the request's."""
    if not v.requests:
        return []
    accession = v.requests[0].accession
    if not v.accession_top or not accession or v.accession_top == accession:
        return []
    return [f"AccessionNumber racine « {v.accession_top} » différent de celui de la demande « {accession} »"]


def own_series(v: KosView) -> list[str]:
    if v.series_uid not in {s.series_uid for s in v.series()}:
        return []
    return [f"la série du KOS {v.series_uid} est aussi une série référencée (série propre exigée)"]


def not_self_referencing(v: KosView) -> list[str]:
    return ["le KOS se référence lui-même"] if v.sop_uid in v.referenced() else []


#: the rules that need no report, in the order of the finding
IDENTITY_CONDITIONS: tuple[Callable[[KosView], list[str]], ...] = (
    patient_id_is_ins, issuer_is_ins, ins_oid_present, other_ids_agree, request_present, request_accession_issued,
    request_study_matches, top_accession_matches, own_series, not_self_referencing)


def study_matches_report(v: KosView, expected: ExpectedIdentity) -> list[str]:
    if v.study_uid == expected.study_uid:
        return []
    return [f"StudyInstanceUID {v.study_uid} au lieu de {expected.study_uid} (serviceEvent du CR)"]


def patient_id_matches_report(v: KosView, expected: ExpectedIdentity) -> list[str]:
    if v.patient_id == expected.ins:
        return []
    what = " : c'est l'IPP" if v.patient_id == expected.ipp else ""
    return [f"PatientID « {v.patient_id} » au lieu de l'INS du CR « {expected.ins} »{what}"]


def ins_oid_matches_report(v: KosView, expected: ExpectedIdentity) -> list[str]:
    """Judged only when an INS OID is present (its absence is ins_oid_present's finding)."""
    oids = ins_oids(v)
    if not oids or expected.ins_oid in oids:
        return []
    return [f"OID de l'INS {oids[0]} au lieu de {expected.ins_oid}"]


def name_matches_report(v: KosView, expected: ExpectedIdentity) -> list[str]:
    if not expected.family:
        return []
    want = f"{expected.family}^{expected.given}"
    if v.patient_name.rstrip("^") == want:
        return []
    return [f"PatientName « {v.patient_name} » au lieu de « {want} » (nom et prénom du CR)"]


def birth_date_matches_report(v: KosView, expected: ExpectedIdentity) -> list[str]:
    if not expected.birth_date or v.patient_birth_date == expected.birth_date:
        return []
    return [f"PatientBirthDate « {v.patient_birth_date} » au lieu de {expected.birth_date} (CR)"]


def sex_matches_report(v: KosView, expected: ExpectedIdentity) -> list[str]:
    if not expected.sex or v.patient_sex == expected.sex:
        return []
    return [f"PatientSex « {v.patient_sex} » au lieu de {expected.sex} (CR)"]


def accession_matches_report(v: KosView, expected: ExpectedIdentity) -> list[str]:
    """The first request's accession number and its issuer, when present, are the report's."""
    if not v.requests or not v.requests[0].accession:
        return []
    req = v.requests[0]
    problems = []
    if req.accession != expected.accession:
        problems.append(f"numéro d'accession « {req.accession} » au lieu de « {expected.accession} » (CR)")
    if req.accession_oids and expected.accession_oid not in req.accession_oids:
        problems.append(f"émetteur de l'accession {req.accession_oids} au lieu de {expected.accession_oid}")
    return problems


def order_matches_report(v: KosView, expected: ExpectedIdentity) -> list[str]:
    if not v.requests or not v.requests[0].placer_order or v.requests[0].placer_order == expected.order:
        return []
    return [f"numéro de commande « {v.requests[0].placer_order} » au lieu de « {expected.order} » (CR)"]


#: the rules that compare the KOS with the report (CDA) sent by the RIS, in the order of the finding
REPORT_CONDITIONS: tuple[Callable[[KosView, ExpectedIdentity], list[str]], ...] = (
    study_matches_report, patient_id_matches_report, ins_oid_matches_report, name_matches_report,
    birth_date_matches_report, sex_matches_report, accession_matches_report, order_matches_report)


def identity_problems(v: KosView, expected: ExpectedIdentity | None = None) -> list[str]:
    """Every KOS-04 problem of a readable KOS, condition by condition."""
    problems = [p for condition in IDENTITY_CONDITIONS for p in condition(v)]
    if expected is not None:
        problems += [p for condition in REPORT_CONDITIONS for p in condition(v, expected)]
    return problems


@check("KOS-04")
def identity(doc: KosDocument | None, expected: ExpectedIdentity | None = None) -> list[Finding]:
    """PatientID = INS with its issuer and OID; accession and order in ReferencedRequestSequence (ANS samples);
    KOS series distinct from every referenced series; values equal to the report's when it is known."""
    if doc is None or doc.view is None:
        return _unreadable("KOS-04", doc)
    v = doc.view
    problems = identity_problems(v, expected)
    details = {"patient_id": v.patient_id, "issuer": v.issuer_of_patient_id, "oids": v.patient_id_oids,
               "requests": [r.__dict__ for r in v.requests], "kos_series": v.series_uid}
    if problems:
        return [failed("KOS-04", f"{doc.label} : {' ; '.join(problems)}", evidence=doc.evidence, details=details)]
    req = v.requests[0]  # no problem: request_present and ins_oid_present held
    return [passed("KOS-04", f"{doc.label} : PatientID = INS {v.patient_id} ({v.issuer_of_patient_id}, OID {ins_oids(v)[0]}), "
                   f"accession {req.accession} et commande {req.placer_order or '—'} dans ReferencedRequestSequence, "
                   "série du KOS propre" + (" ; conforme au CR" if expected else ""), evidence=doc.evidence,
                   details=details)]


@check("KOS-05")
def retrieve_location(doc: KosDocument | None) -> list[Finding]:
    """IHE XDS-I.b: Retrieve AE Title and Retrieve Location UID on each series (dciodvfy -profile IHEXDSIManifest)."""
    if doc is None or doc.view is None:
        return _unreadable("KOS-05", doc)
    v = doc.view
    base = doc.iod()
    profiled = doc.iod(XDSI_PROFILE)
    details = {"dciodvfy_profile": profiled.to_dict()}
    if base.failure or profiled.failure:
        return [errored("KOS-05", f"{doc.label} : {base.failure or profiled.failure}", evidence=doc.evidence, details=details)]
    missing = []
    for s in v.series():
        absent = [name for name, value in (("Retrieve AE Title", s.retrieve_aet),
                                           ("Retrieve Location UID", s.retrieve_location_uid)) if not value]
        if absent:
            missing.append(f"série {s.series_uid} : {', '.join(absent)}")
    extra = sorted(set(profile_only(base, profiled)))
    if missing or extra:
        why = (f"{len(missing)} série(s) sans {'/'.join(sorted({m.split(' : ')[1] for m in missing}))}" if missing else "")
        oracle = f"dciodvfy -profile {XDSI_PROFILE} : {' ; '.join(summarize_iod_errors(extra))}" if extra else ""
        return [failed("KOS-05", f"{doc.label} : {' ; '.join(x for x in (why, oracle) if x)} (DRIM-M s'appuie sur la "
                       "RetrieveURL et les exemples ANS n'en portent pas : exigence inférée d'IHE XDS-I.b)",
                       evidence=doc.evidence, details={**details, "missing": missing})]
    return [passed("KOS-05", f"{doc.label} : Retrieve AE Title et Retrieve Location UID présents sur les "
                   f"{len(v.series())} série(s) ; aucune erreur du profil {XDSI_PROFILE}", evidence=doc.evidence,
                   details=details)]


__all__ = ["ExpectedIdentity", "iod_valid", "manifest_template", "references_pacs_content", "identity",
           "retrieve_location", "identity_problems", "IDENTITY_CONDITIONS", "REPORT_CONDITIONS", "ins_oids"]
