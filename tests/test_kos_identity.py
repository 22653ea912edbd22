"""KOS-04 condition by condition: each named condition of `checks/kos.py` on the reference Source's KOS (it holds)
and on that KOS with one fact changed (it gives its one problem, word for word), then `identity` as their sum."""

from __future__ import annotations

from dataclasses import replace

import pytest

from drimcheck.checks import kos as k
from drimcheck.kos import INS_OIDS, KosView, OtherId
from drimcheck.verdicts import Verdict
from tests.test_kos import doc, expected_of, reference_kos


@pytest.fixture(scope="module")
def reference() -> tuple[KosView, k.ExpectedIdentity]:
    data, st = reference_kos("kos-identity-conditions")
    view = doc(data).view
    assert view is not None
    p = st.patient
    expected = replace(expected_of(st), family=p.family, given=p.given, birth_date=p.birth_date, sex=p.sex)
    return view, expected


def first_request(v: KosView, **changes: object) -> KosView:
    return replace(v, requests=[replace(v.requests[0], **changes), *v.requests[1:]])


def test_the_reference_kos_meets_every_condition(reference) -> None:
    v, expected = reference
    for condition in k.IDENTITY_CONDITIONS:
        assert condition(v) == [], condition.__name__
    for report_condition in k.REPORT_CONDITIONS:
        assert report_condition(v, expected) == [], report_condition.__name__
    assert k.identity_problems(v, expected) == []


# (condition, how the view is changed, the one problem expected)
VIEW_CASES = [
    (k.patient_id_is_ins, lambda v: replace(v, patient_id="IPP1"),
     "PatientID « IPP1 » n'est pas un matricule INS (15 caractères NIR/NIA)"),
    (k.issuer_is_ins, lambda v: replace(v, issuer_of_patient_id="HOPITAL"),
     "IssuerOfPatientID « HOPITAL » au lieu de ASIP-SANTE-INS-NIR"),
    (k.ins_oid_present, lambda v: replace(v, patient_id_oids=["1.2.3"]),
     "OID de l'INS absent de IssuerOfPatientIDQualifiersSequence (['1.2.3'])"),
    (k.ins_oid_present, lambda v: replace(v, patient_id_oids=[]),
     "OID de l'INS absent de IssuerOfPatientIDQualifiersSequence (vide)"),
    (k.other_ids_agree, lambda v: replace(v, other_ids=[OtherId("123456789012345", "", [min(INS_OIDS)], "TEXT")]),
     "OtherPatientIDsSequence : « 123456789012345 » présenté comme INS alors que PatientID vaut « {patient_id} »"),
    (k.request_present, lambda v: replace(v, requests=[]),
     "ReferencedRequestSequence absente : ni numéro d'accession ni commande"),
    (k.request_accession_issued, lambda v: first_request(v, accession=""),
     "AccessionNumber absent de ReferencedRequestSequence (emplacement des exemples ANS)"),
    (k.request_accession_issued, lambda v: first_request(v, accession_oids=[]),
     "numéro d'accession « {accession} » sans IssuerOfAccessionNumberSequence"),
    (k.request_study_matches, lambda v: first_request(v, study_uid="1.2.3"),
     "ReferencedRequestSequence désigne l'étude 1.2.3, pas {study_uid}"),
    (k.top_accession_matches, lambda v: replace(v, accession_top="OTHER"),
     "AccessionNumber racine « OTHER » différent de celui de la demande « {accession} »"),
    (k.own_series, lambda v: replace(v, series_uid=v.series()[0].series_uid),
     "la série du KOS {first_series} est aussi une série référencée (série propre exigée)"),
    (k.not_self_referencing, lambda v: replace(v, sop_uid=next(iter(v.referenced()))),
     "le KOS se référence lui-même"),
]


@pytest.mark.parametrize(("condition", "change", "problem"), VIEW_CASES,
                         ids=[f"{c.__name__}-{i}" for i, (c, _, _) in enumerate(VIEW_CASES)])
def test_each_condition_finds_its_problem(reference, condition, change, problem) -> None:
    v, expected = reference
    changed = change(v)
    want = problem.format(patient_id=v.patient_id, accession=v.requests[0].accession, study_uid=v.study_uid,
                          first_series=v.series()[0].series_uid)
    assert condition(changed) == [want]
    # the same words, in the finding of the check
    assert want in k.identity_problems(changed, expected)


def test_conditions_on_the_request_do_not_judge_a_kos_without_one(reference) -> None:
    v, expected = reference
    bare = replace(v, requests=[])
    for condition in (k.request_accession_issued, k.request_study_matches, k.top_accession_matches):
        assert condition(bare) == [], condition.__name__
    for report_condition in (k.accession_matches_report, k.order_matches_report):
        assert report_condition(bare, expected) == [], report_condition.__name__
    assert k.identity_problems(bare, expected) == [k.request_present(bare)[0]]


REPORT_CASES = [
    (k.study_matches_report, lambda e: replace(e, study_uid="1.2.3"),
     "StudyInstanceUID {study_uid} au lieu de 1.2.3 (serviceEvent du CR)"),
    (k.patient_id_matches_report, lambda e: replace(e, ins="999999999999999"),
     "PatientID « {patient_id} » au lieu de l'INS du CR « 999999999999999 »"),
    (k.ins_oid_matches_report, lambda e: replace(e, ins_oid="1.2.3"),
     "OID de l'INS {ins_oid} au lieu de 1.2.3"),
    (k.name_matches_report, lambda e: replace(e, family="AUTRE", given="X"),
     "PatientName « {patient_name} » au lieu de « AUTRE^X » (nom et prénom du CR)"),
    (k.birth_date_matches_report, lambda e: replace(e, birth_date="19000101"),
     "PatientBirthDate « {birth_date} » au lieu de 19000101 (CR)"),
    (k.sex_matches_report, lambda e: replace(e, sex="O"),
     "PatientSex « {sex} » au lieu de O (CR)"),
    (k.accession_matches_report, lambda e: replace(e, accession="ACN0"),
     "numéro d'accession « {accession} » au lieu de « ACN0 » (CR)"),
    (k.accession_matches_report, lambda e: replace(e, accession_oid="1.2.3"),
     "émetteur de l'accession {accession_oids} au lieu de 1.2.3"),
    (k.order_matches_report, lambda e: replace(e, order="OPN0"),
     "numéro de commande « {order} » au lieu de « OPN0 » (CR)"),
]


@pytest.mark.parametrize(("condition", "change", "problem"), REPORT_CASES,
                         ids=[f"{c.__name__}-{i}" for i, (c, _, _) in enumerate(REPORT_CASES)])
def test_each_report_condition_finds_its_problem(reference, condition, change, problem) -> None:
    v, expected = reference
    other = change(expected)
    req = v.requests[0]
    want = problem.format(study_uid=v.study_uid, patient_id=v.patient_id, ins_oid=k.ins_oids(v)[0],
                          patient_name=v.patient_name, birth_date=v.patient_birth_date, sex=v.patient_sex,
                          accession=req.accession, accession_oids=req.accession_oids, order=req.placer_order)
    assert condition(v, other) == [want]
    assert k.identity_problems(v, other) == [want]


def test_patient_id_of_the_ipp_is_named(reference) -> None:
    v, expected = reference
    assert k.patient_id_matches_report(replace(v, patient_id=expected.ipp), expected)[0].endswith(" : c'est l'IPP")


def test_report_fields_left_empty_are_not_compared(reference) -> None:
    v, expected = reference
    unknown = replace(expected, family="", birth_date="", sex="")
    other = replace(v, patient_name="X^Y", patient_birth_date="19000101", patient_sex="O")
    assert k.REPORT_CONDITIONS and all(c(other, unknown) == [] for c in k.REPORT_CONDITIONS)


def test_identity_lists_the_problems_in_the_order_of_the_conditions(reference) -> None:
    v, expected = reference
    broken = replace(first_request(v, study_uid="1.2.3"), patient_id="IPP1", issuer_of_patient_id="HOPITAL")
    other = replace(expected, sex="O")
    problems = k.identity_problems(broken, other)
    assert problems == [*k.patient_id_is_ins(broken), *k.issuer_is_ins(broken), *k.other_ids_agree(broken),
                        *k.request_study_matches(broken),
                        *k.patient_id_matches_report(broken, other), *k.sex_matches_report(broken, other)]
    document = doc(reference_kos("kos-identity-conditions")[0])
    document.view = broken
    finding = k.identity(document, other)[0]
    assert finding.verdict is Verdict.FAIL
    assert finding.message == f"KOS : {' ; '.join(problems)}"
