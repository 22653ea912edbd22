"""Checks extended by the coverage work (issue 9): each new comparison fails on hand-made evidence that breaks it."""

from __future__ import annotations

from dataclasses import replace

import pytest
from simsupport import multipart_dicom

from drimcheck import xds
from drimcheck.checks import kos as kos_checks
from drimcheck.checks.xds import identity_slot_problems
from drimcheck.kos import KosDocument
from drimcheck.verdicts import Verdict
from simulators.drimbox import source_kos
from simulators.pacs import make_study
from simulators.pacs.studies import BASIC_TEXT_SR, MULTIFRAME_FRAMES, MULTIFRAME_SC, VARIED_SERIES

AUTHOR_ID = "801234560801"


def _expected(st) -> kos_checks.ExpectedIdentity:
    p = st.patient
    return kos_checks.ExpectedIdentity(
        st.study_uid, p.ins, p.ins_oid, p.ipp, st.accession_number, st.accession_issuer_oid, st.order_placer_number,
        st.order_placer_oid, family=p.family, given=p.given, birth_date=p.birth_date, sex=p.sex,
        birthplace=p.birthplace_insee, author_id=AUTHOR_ID, service_time=f"{st.study_date}{st.study_time}",
        modalities=tuple(sorted({s.modality for s in st.series})))


def _entry(st, **slot_overrides) -> xds.RegistryObject:
    """A KOS DocumentEntry as a conformant Source writes it for `st` (slots as the DMP simulator parses them)."""
    p = st.patient
    when = f"{st.study_date}{st.study_time}"
    slots = {
        "sourcePatientId": [f"{p.ins}^^^&{p.ins_oid}&ISO^NH"],
        "sourcePatientInfo": [f"PID-5|{p.family}^{p.given}^^^^^L", f"PID-7|{p.birth_date}", f"PID-8|{p.sex}",
                              f"PID-11|^^^^^^BDL^^{p.birthplace_insee}"],
        "serviceStartTime": [when], "serviceStopTime": [when],
        "legalAuthenticator": [f"{AUTHOR_ID}^BIDEAULT^Jacques^^^^^^&1.2.250.1.71.4.2.1&ISO^D^^^IDNPS"],
    }
    for k, v in slot_overrides.items():
        if v is None:
            slots.pop(k, None)
        else:
            slots[k] = v
    author = xds.Classification(xds.DOCUMENT_AUTHOR, "", "", "", {
        "authorPerson": [f"{AUTHOR_ID}^BIDEAULT^Jacques^^^^^^&1.2.250.1.71.4.2.1&ISO^D^^^IDNPS"]})
    events = [xds.Classification(xds.EVENT_CODE, m, "1.2.250.1.213.1.1.5.618", m, {})
              for m in sorted({s.modality for s in st.series})]
    return xds.RegistryObject("ExtrinsicObject", "urn:uuid:e1", slots=slots, classifications=[author, *events])


@pytest.fixture(scope="module")
def varied():
    return make_study("coverage-checks", varied=True)


def test_conformant_entry_has_no_identity_problem(varied) -> None:
    assert identity_slot_problems(_entry(varied), _expected(varied)) == []


@pytest.mark.parametrize("slots, expected_text", [
    ({"sourcePatientInfo": None}, "sourcePatientInfo absent"),
    ({"sourcePatientInfo": ["PID-5|AUTRE^NOM^^^^^L", "PID-7|19500101", "PID-8|M"]}, "PID-5"),
    ({"sourcePatientId": ["123456789012345^^^&1.2.250.1.213.1.4.10&ISO^NH"]}, "sourcePatientId"),
    ({"serviceStartTime": ["20991231235959"]}, "serviceStartTime"),
    ({"legalAuthenticator": ["10000000000^AUTRE^Medecin"]}, "legalAuthenticator"),
])
def test_each_identity_slot_is_compared_with_its_source(varied, slots, expected_text) -> None:
    problems = identity_slot_problems(_entry(varied, **slots), _expected(varied))
    assert problems and any(expected_text in p for p in problems), problems


def test_birth_date_and_sex_are_compared(varied) -> None:
    p = varied.patient
    other_sex = "M" if p.sex == "F" else "F"
    info = [f"PID-5|{p.family}^{p.given}", "PID-7|19000101", f"PID-8|{other_sex}"]
    problems = identity_slot_problems(_entry(varied, sourcePatientInfo=info), _expected(varied))
    assert any("PID-7" in x for x in problems) and any("PID-8" in x for x in problems)


def test_every_acquisition_modality_must_be_in_event_codes(varied) -> None:
    entry = _entry(varied)
    entry.classifications = [c for c in entry.classifications if not (c.scheme == xds.EVENT_CODE and c.node != "CT")]
    problems = identity_slot_problems(entry, _expected(varied))
    assert any("eventCodeList" in x and "MR" in x for x in problems), problems
    # non-acquisition objects (the structured report, "OT" secondary captures) are not required
    assert not any("SR" in x.split("modalité(s)")[-1] for x in problems)


def test_author_other_than_report_author_fails(varied) -> None:
    entry = _entry(varied)
    entry.classifications[0] = replace(entry.classifications[0], slots={"authorPerson": ["999^X^Y"]})
    assert any("authorPerson" in x for x in identity_slot_problems(entry, _expected(varied)))


def test_unknown_values_are_not_compared(varied) -> None:
    p = varied.patient
    bare = kos_checks.ExpectedIdentity(varied.study_uid, p.ins, p.ins_oid, "", "", "", "", "")
    assert identity_slot_problems(_entry(varied, sourcePatientInfo=None, serviceStartTime=["1"]), bare) == []


def _reference_kos(st, **mutate) -> bytes:
    p = st.patient
    images = [source_kos.ImageRef(st.study_uid, s.series_uid, i.sop_uid, i.sop_class_uid, i.number, s.number, s.modality,
                                  s.description) for s in st.series for i in s.instances]
    facts = source_kos.StudyFacts(
        study_uid=st.study_uid, ins=p.ins, ins_oid=p.ins_oid, family=p.family, given=p.given, birth_date=p.birth_date,
        sex=p.sex, birthplace=p.birthplace_insee, accession=st.accession_number, accession_oid=st.accession_issuer_oid,
        order=st.order_placer_number, order_oid=st.order_placer_oid, institution="Centre", study_date=st.study_date,
        study_time=st.study_time, study_description=st.description, study_id=st.study_id, images=images)
    ds = source_kos.build_kos(facts, db_fqdn="db1.349.mesimagesmedicales.fr", retrieve_aet="DRIMBOX",
                              retrieve_location_uid="2.25.1")
    for func in mutate.values():
        func(ds)
    return source_kos.encode(ds)


def test_kos04_compares_patient_name_with_the_report(varied) -> None:
    good = KosDocument.from_bytes(_reference_kos(varied), label="KOS")
    assert kos_checks.identity(good, _expected(varied))[0].verdict is Verdict.PASS
    bad = KosDocument.from_bytes(_reference_kos(varied, m=lambda ds: setattr(ds, "PatientName", "AUTRE^PATIENT")),
                                 label="KOS")
    f = kos_checks.identity(bad, _expected(varied))[0]
    assert f.verdict is Verdict.FAIL and "PatientName" in f.message


def test_kos03_fails_when_one_kind_of_object_of_a_varied_study_is_left_out(varied) -> None:
    rows = varied.instance_rows()
    without_sr = [r for r in rows if r["SOPClassUID"] != BASIC_TEXT_SR]
    st_partial = replace(varied, series=tuple(s for s in varied.series if s.modality != "SR"))
    doc = KosDocument.from_bytes(_reference_kos(st_partial), label="KOS")
    assert kos_checks.references_pacs_content(doc, without_sr, "P")[0].verdict is Verdict.PASS
    f = kos_checks.references_pacs_content(doc, rows, "P")[0]
    assert f.verdict is Verdict.FAIL and "absente(s) du KOS" in f.message


def test_varied_study_mixes_modalities_sop_classes_multiframe_and_non_image() -> None:
    st = make_study("coverage-varied", varied=True)
    datasets = list(st.datasets())
    assert [(s.modality, s.instances[0].sop_class_uid, len(s.instances)) for s in st.series] == list(VARIED_SERIES)
    multi = [d for d in datasets if d.SOPClassUID == MULTIFRAME_SC]
    assert multi and int(multi[0].NumberOfFrames) == MULTIFRAME_FRAMES
    assert len(multi[0].PixelData) == MULTIFRAME_FRAMES * st.rows * st.columns * 2
    sr = [d for d in datasets if d.SOPClassUID == BASIC_TEXT_SR]
    assert sr and "PixelData" not in sr[0] and sr[0].PatientID == st.patient.ipp
    assert [d.SOPInstanceUID for d in make_study("coverage-varied", varied=True).datasets()] == \
        [d.SOPInstanceUID for d in datasets]
    assert make_study("coverage-varied").study_uid != st.study_uid  # never the same study as a plain one


# ------------------------------------------------------------------ WL-05: every RetrieveURL followed as a Conso would


def _answer(status: int, *uids: str):
    from drimcheck.net import Exchange

    body, content_type = multipart_dicom(*uids) if uids else (b"{}", "application/json")
    return Exchange(label="t", method="GET", url="https://db2.349.mesimagesmedicales.fr/x", connect_to="127.0.0.1:1",
                    started_at="", request_headers=[], status=status, response_body=body,
                    response_headers=[("content-type", content_type)])


def _followed(listed, unlisted, *, flaw=None):
    from drimcheck.checks.whitelist import FollowedUrl

    return FollowedUrl("PACS-2, série 1.2.3", "https://db2.349.mesimagesmedicales.fr/api/source/studies/1/series/1.2.3",
                       {"1.1", "1.2"}, listed, unlisted, flaw)


def test_wl05_followed_urls_pass_when_listed_served_and_unlisted_refused() -> None:
    from drimcheck.checks.whitelist import retrieve_urls_followed

    f = retrieve_urls_followed([_followed(_answer(200, "1.1", "1.2"), _answer(403))], "listée", "absente")[0]
    assert f.verdict is Verdict.PASS and f.requirement == "WL-05"


@pytest.mark.parametrize("listed, unlisted, text", [
    ("403", "403", "refusée en suivant"),  # whitelist not loaded on the second dbN: the listed peer turned away
    ("none", "403", "refusée en suivant"),  # handshake refused to the listed peer
    ("full", "leak", "servi(s) à absente"),  # whitelist enforced on the first dbN only
])
def test_wl05_followed_urls_fail(listed, unlisted, text) -> None:
    from drimcheck.checks.whitelist import retrieve_urls_followed

    answers = {"403": _answer(403), "none": None, "full": _answer(200, "1.1", "1.2"), "leak": _answer(200, "1.1")}
    f = retrieve_urls_followed([_followed(answers[listed], answers[unlisted])], "listée", "absente")[0]
    assert f.verdict is Verdict.FAIL and text in f.message, f.message


@pytest.mark.parametrize("listed", ["410", "401", "partial"])
def test_wl05_followed_urls_leave_non_access_answers_to_other_requirements(listed) -> None:
    """A 410/404 is WADO-01's, a 401 PSC-01's, an incomplete series not the whitelist's: no WL-05 failure."""
    from drimcheck.checks.whitelist import retrieve_urls_followed

    answers = {"410": _answer(410), "401": _answer(401), "partial": _answer(200, "1.1")}
    f = retrieve_urls_followed([_followed(answers[listed], _answer(403))], "listée", "absente")[0]
    assert f.verdict is Verdict.PASS, f.message


def test_wl05_flawed_urls_are_left_to_fqdn01() -> None:
    from drimcheck.checks.whitelist import retrieve_urls_followed

    f = retrieve_urls_followed([_followed(None, None, flaw="adresse IP")], "listée", "absente")[0]
    assert f.verdict is Verdict.SKIP and "FQDN-01" in f.message


def test_src06_after_failure_leaves_a_lost_report_to_src05() -> None:
    from types import SimpleNamespace

    from drimcheck.checks.source import replaced_after_failure

    previous = SimpleNamespace(success=True, evidence=["e"], assigned={}, request=None)
    f = replaced_after_failure("MDM^T10", previous, None, 8)[0]
    assert f.verdict is Verdict.SKIP and "SRC-05" in f.message
    # otherwise it is the RPLC check itself: no initial publication is a scenario defect
    assert replaced_after_failure("MDM^T10", None, None, 8)[0].verdict is Verdict.ERROR


def test_kos04_compares_birth_date_and_sex_with_the_report(varied) -> None:
    other = "M" if varied.patient.sex == "F" else "F"
    bad = KosDocument.from_bytes(_reference_kos(varied, b=lambda ds: setattr(ds, "PatientBirthDate", "19000101"),
                                                s=lambda ds: setattr(ds, "PatientSex", other)), label="KOS")
    f = kos_checks.identity(bad, _expected(varied))[0]
    assert f.verdict is Verdict.FAIL and "PatientBirthDate" in f.message and "PatientSex" in f.message


def test_author_institution_other_than_the_report_structure_fails(varied) -> None:
    expected = replace(_expected(varied), structure_id="101235555")
    entry = _entry(varied)
    good = "Centre^^^^^&1.2.250.1.71.4.2.2&ISO^IDNST^^^101235555"
    entry.classifications[0].slots["authorInstitution"] = [good]
    assert identity_slot_problems(entry, expected) == []
    entry.classifications[0].slots["authorInstitution"] = [good.replace("101235555", "999999999")]
    assert any("authorInstitution" in x for x in identity_slot_problems(entry, expected))
