"""The fixtures' DICOM primitives (fixtures/dicom.py) name a study exactly as the synthetic studies do.

fixtures.cda and fixtures.kos import no simulator (.importlinter): they build identifiers with fixtures.dicom, and
the synthetic studies (simulators/pacs/studies.py) import the same primitives from it (one copy)."""

from __future__ import annotations

from fixtures import dicom
from fixtures.cda import report_for
from fixtures.kos import build_kos
from simulators.pacs import make_study, studies


def test_the_synthetic_studies_use_the_fixtures_primitives():
    assert studies._uid is dicom.uid and studies.set_patient is dicom.set_patient and studies._entity is dicom.entity
    assert studies.UID_PREFIX == dicom.UID_PREFIX
    assert dicom.uid("sop", "k", 1, 10) != dicom.uid("sop", "k", 11, 0)  # separated entropy (11 series or more)


def test_patient_module_of_a_synthetic_study():
    for seed in ("a", "b", 7):
        study = make_study(seed)
        p = study.patient
        ds = next(iter(study.datasets()))
        assert ds.PatientID and ds.OtherPatientIDsSequence[0].PatientID == p.ins
        assert ds.OtherPatientIDsSequence[0].IssuerOfPatientID == dicom.INS_ISSUER
        assert ds.OtherPatientIDsSequence[0].IssuerOfPatientIDQualifiersSequence[0].UniversalEntityID == p.ins_oid


def test_a_synthetic_study_is_what_the_fixtures_read():
    study = make_study("fixtures-dicom", modality="MR")
    kos = build_kos(study, "https://peer.example.test/wado-rs")
    assert kos.study_uid == study.study_uid
    report = report_for(study, "vi1.example.test", version=2)
    assert report.doc_id == studies._uid("cda", study.study_uid, 2)
    assert report.replaces == studies._uid("cda", study.study_uid, 1)
    assert report.modality == "MR" and report.ins == study.patient.ins
