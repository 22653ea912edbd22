"""The fixtures' DICOM primitives (fixtures/dicom.py) name a study exactly as the synthetic studies do.

fixtures.cda and fixtures.kos import no simulator (.importlinter): they build identifiers with fixtures.dicom, the
synthetic studies with their own copies (simulators/pacs/studies.py). These tests keep the two in step until the
studies import them from fixtures.dicom."""

from __future__ import annotations

from pydicom.dataset import Dataset

from fixtures import dicom
from fixtures.cda import report_for
from fixtures.kos import build_kos
from simulators.pacs import make_study, studies


def test_same_uid_scheme_as_the_synthetic_studies():
    cases = [("cda", "1.2.3", 1), ("sop", "k", 1, 10), ("sop", "k", 11, 0), (), ("é", 0.5, None)]
    for parts in cases:
        assert dicom.uid(*parts) == studies._uid(*parts), parts
    assert dicom.uid("sop", "k", 1, 10) != dicom.uid("sop", "k", 11, 0)
    assert dicom.INS_ISSUER == studies.INS_ISSUER


def test_same_patient_module_as_the_synthetic_studies():
    for seed in ("a", "b", 7):
        p = make_study(seed).patient
        ours, theirs = Dataset(), Dataset()
        dicom.set_patient(ours, p, p.ins, dicom.INS_ISSUER, p.ins_oid)
        studies.set_patient(theirs, p, p.ins, studies.INS_ISSUER, p.ins_oid)
        assert ours == theirs and ours.PatientID == p.ins
        assert ours.OtherPatientIDsSequence[0].IssuerOfPatientIDQualifiersSequence[0].UniversalEntityID == p.ins_oid


def test_a_synthetic_study_is_what_the_fixtures_read():
    study = make_study("fixtures-dicom", modality="MR")
    kos = build_kos(study, "https://peer.example.test/wado-rs")
    assert kos.study_uid == study.study_uid
    report = report_for(study, "vi1.example.test", version=2)
    assert report.doc_id == studies._uid("cda", study.study_uid, 2)
    assert report.replaces == studies._uid("cda", study.study_uid, 1)
    assert report.modality == "MR" and report.ins == study.patient.ins
