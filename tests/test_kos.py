"""KOS reading, dciodvfy oracle, KOS/FQDN checks and the offline `drimcheck check-kos` (real ANS samples)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from drimcheck.checks import fqdn as fqdn_checks
from drimcheck.checks import kos as kos_checks
from drimcheck.kos import KosDocument, dciodvfy, read_kos
from drimcheck.verdicts import Verdict
from simulators.drimbox import source_kos
from simulators.pacs import make_study

REPO = Path(__file__).resolve().parents[1]
#: the ANS artefacts copied into the repository (fixtures/ans/README.md gives their provenance)
ANSDATA = REPO / "fixtures" / "ans"
ANS = ANSDATA / "kos"
DB1 = "db1.349.mesimagesmedicales.fr"


def reference_kos(seed: str = "kos-test", db: str = DB1, **mutate) -> tuple[bytes, object]:
    """A KOS written by the reference Source (its own code), for a synthetic study."""
    st = make_study(seed)
    p = st.patient
    images = [source_kos.ImageRef(st.study_uid, s.series_uid, i.sop_uid, i.sop_class_uid, i.number, s.number, s.modality,
                                  s.description) for s in st.series for i in s.instances]
    facts = source_kos.StudyFacts(
        study_uid=st.study_uid, ins=p.ins, ins_oid=p.ins_oid, family=p.family, given=p.given, birth_date=p.birth_date,
        sex=p.sex, birthplace=p.birthplace_insee, accession=st.accession_number, accession_oid=st.accession_issuer_oid,
        order=st.order_placer_number, order_oid=st.order_placer_oid, institution="Centre d'imagerie",
        study_date=st.study_date, study_time=st.study_time, study_description=st.description, study_id=st.study_id,
        images=images)
    ds = source_kos.build_kos(facts, db_fqdn=db, retrieve_aet="DRIMBOX", retrieve_location_uid=source_kos.stable_uid(db))
    for func in mutate.values():
        func(ds)
    return source_kos.encode(ds), st


def expected_of(st) -> kos_checks.ExpectedIdentity:
    p = st.patient
    return kos_checks.ExpectedIdentity(st.study_uid, p.ins, p.ins_oid, p.ipp, st.accession_number, st.accession_issuer_oid,
                                       st.order_placer_number, st.order_placer_oid)


def doc(data: bytes) -> KosDocument:
    return KosDocument.from_bytes(data, label="KOS", evidence=["evidence/kos.dcm"])


def check_kos(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "drimcheck", "check-kos", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=120)


# --------------------------------------------------------------------------- the reference KOS

def test_reference_kos_passes_every_offline_check() -> None:
    data, st = reference_kos()
    d = doc(data)
    findings = [*kos_checks.iod_valid(d), *kos_checks.manifest_template(d), *kos_checks.identity(d, expected_of(st)),
                *kos_checks.retrieve_location(d), *fqdn_checks.retrieve_urls_on_dbn(d, DB1)]
    assert [f.verdict for f in findings] == [Verdict.PASS] * 5, [f.message for f in findings]
    rows = st.instance_rows()
    assert kos_checks.references_pacs_content(d, rows, "PACS-1")[0].verdict is Verdict.PASS
    # the RetrieveURL warning is waived explicitly and visibly
    assert "levé explicitement" in findings[0].message
    assert findings[0].details["dciodvfy"]["waived"]


def test_reading_a_kos() -> None:
    data, st = reference_kos()
    v = read_kos(data)
    assert v.study_uid == st.study_uid and v.patient_id == st.patient.ins
    assert set(v.referenced()) == st.instance_uids()
    assert all(u.startswith(f"https://{DB1}/api/source/studies/{st.study_uid}/series/") for _, u in v.retrieve_urls())
    assert v.requests[0].accession == st.accession_number


# --------------------------------------------------------------------------- each check fails for its reason

@pytest.mark.filterwarnings("ignore:Invalid value for VR TM")
def test_kos01_date_in_series_time_is_an_iod_error() -> None:
    data, _ = reference_kos(m=lambda ds: setattr(ds, "SeriesTime", ds.SeriesDate))
    f = kos_checks.iod_valid(doc(data))[0]
    assert f.verdict is Verdict.FAIL and "Series Time" in f.message and "date dans un champ heure" in f.message


def test_kos01_not_a_kos() -> None:
    ct = next(make_study("ct-not-kos").datasets())
    from simulators.pacs.orthanc import encode_dataset

    f = kos_checks.iod_valid(doc(encode_dataset(ct)))[0]
    assert f.verdict is Verdict.FAIL and "Key Object Selection" in f.message


def test_kos02_template_problems() -> None:
    data, _ = reference_kos(m=lambda ds: setattr(ds.ConceptNameCodeSequence[0], "CodeValue", "113000"))
    assert kos_checks.manifest_template(doc(data))[0].verdict is Verdict.FAIL
    data, _ = reference_kos(m=lambda ds: ds.ContentSequence.pop(0))
    f = kos_checks.manifest_template(doc(data))[0]
    assert f.verdict is Verdict.FAIL and "sans item IMAGE" in f.message
    data, _ = reference_kos(m=lambda ds: ds.CurrentRequestedProcedureEvidenceSequence.append(
        copy.deepcopy(ds.CurrentRequestedProcedureEvidenceSequence[0])))
    assert "2 étude(s)" in kos_checks.manifest_template(doc(data))[0].message


def test_kos03_missing_extra_and_wrong_class() -> None:
    data, st = reference_kos()
    rows = st.instance_rows()
    d = doc(data)
    missing = kos_checks.references_pacs_content(d, rows + [dict(rows[0], SOPInstanceUID="1.2.3.4")], "P")[0]
    assert missing.verdict is Verdict.FAIL and "absente(s) du KOS" in missing.message
    extra = kos_checks.references_pacs_content(d, rows[1:], "P")[0]
    assert extra.verdict is Verdict.FAIL and "ne détient pas" in extra.message
    wrong = kos_checks.references_pacs_content(d, [dict(rows[0], SOPClassUID="1.2.840.10008.5.1.4.1.1.4")] + rows[1:], "P")[0]
    assert wrong.verdict is Verdict.FAIL and "SOP Class erronée" in wrong.message
    assert kos_checks.references_pacs_content(d, [], "P")[0].verdict is Verdict.ERROR


def test_kos04_identity() -> None:
    data, st = reference_kos(m=lambda ds: setattr(ds, "PatientID", "IPP000000001"))
    f = kos_checks.identity(doc(data), expected_of(st))[0]
    assert f.verdict is Verdict.FAIL and "matricule INS" in f.message
    st_ipp = replace(expected_of(st), ipp="IPP000000001")
    assert "c'est l'IPP" in kos_checks.identity(doc(data), st_ipp)[0].message
    data, st = reference_kos(m=lambda ds: setattr(ds, "SeriesInstanceUID",
                                                   ds.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0].SeriesInstanceUID))
    assert "série propre" in kos_checks.identity(doc(data), expected_of(st))[0].message
    data, st = reference_kos(m=lambda ds: setattr(ds.ReferencedRequestSequence[0], "AccessionNumber", ""))
    assert "AccessionNumber absent" in kos_checks.identity(doc(data), expected_of(st))[0].message


def test_kos05_retrieve_location_is_inferred_and_cross_checked_by_dciodvfy() -> None:
    def strip(ds):
        for item in ds.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence:
            del item.RetrieveAETitle
            del item.RetrieveLocationUID

    data, _ = reference_kos(m=strip)
    f = kos_checks.retrieve_location(doc(data))[0]
    assert f.verdict is Verdict.FAIL and "IHEXDSIManifest" in f.message and "RetrieveLocationUID" in f.message


@pytest.mark.parametrize("host, why", [
    ("localhost:4200", "poste local"), ("10.20.30.40", "adresse IP"), ("drimbox.radiologie.local", "hôte interne"),
    ("db2.349.mesimagesmedicales.fr", "au lieu de"), ("vi1.349.mesimagesmedicales.fr", "n'est pas un FQDN dbN"),
])
def test_fqdn01_flaws(host, why) -> None:
    def move(ds):
        for item in ds.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence:
            item.RetrieveURL = item.RetrieveURL.replace(DB1, host)

    data, _ = reference_kos(m=move)
    f = fqdn_checks.retrieve_urls_on_dbn(doc(data), DB1)[0]
    assert f.verdict is Verdict.FAIL and why in f.message


def test_fqdn01_path_must_lead_to_the_series_and_scheme_https() -> None:
    def cut(ds):
        for item in ds.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence:
            item.RetrieveURL = item.RetrieveURL.split("/series/")[0].replace("https://", "http://")

    data, _ = reference_kos(m=cut)
    f = fqdn_checks.retrieve_urls_on_dbn(doc(data), DB1)[0]
    assert f.verdict is Verdict.FAIL and "ne mène pas" in f.message and "https" in f.message


def test_fqdn01_viewer_link_must_be_the_twin() -> None:
    data, _ = reference_kos()
    f = fqdn_checks.retrieve_urls_on_dbn(doc(data), DB1, viewer_link="https://vi2.349.mesimagesmedicales.fr/x")[0]
    assert f.verdict is Verdict.ERROR and "couple" in f.message
    assert fqdn_checks.twin_db("vi7.test.mesimagesmedicales.fr") == "db7.test.mesimagesmedicales.fr"


def test_fqdn02_host_kept_across_updates() -> None:
    first, _ = reference_kos("v")
    second, _ = reference_kos("v", db="db2.349.mesimagesmedicales.fr")
    assert fqdn_checks.host_kept_across_updates([doc(first), doc(first)])[0].verdict is Verdict.PASS
    f = fqdn_checks.host_kept_across_updates([doc(first), doc(second)])[0]
    assert f.verdict is Verdict.FAIL and "a changé" in f.message
    assert fqdn_checks.host_kept_across_updates([doc(first)])[0].verdict is Verdict.SKIP


def test_no_kos_means_skip_not_pass() -> None:
    for check in (kos_checks.iod_valid, kos_checks.manifest_template, kos_checks.retrieve_location):
        assert check(None)[0].verdict is Verdict.SKIP
    assert fqdn_checks.retrieve_urls_on_dbn(None, DB1)[0].verdict is Verdict.SKIP


def test_dciodvfy_waives_only_the_retrieve_url() -> None:
    data, _ = reference_kos(m=lambda ds: setattr(ds, "RetrieveLocationUID", "1.2.3"))  # another non-standard attribute
    report = dciodvfy(data)
    assert any("Retrieve URL" in w["message"] for w in report.waived)
    assert any("Standard Extended SOP Class" in w for w in report.warnings)  # not waived: not only RetrieveURL


# --------------------------------------------------------------------------- check-kos on real samples

def test_check_kos_on_poc_sample() -> None:
    proc = check_kos(str(ANS / "poc-kos.dcm"), "--fqdn", DB1, "--json")
    assert proc.returncode == 1, proc.stderr
    findings = {f["requirement"]: f for f in json.loads(proc.stdout)["findings"]}
    kos01 = findings["KOS-01"]
    assert kos01["verdict"] == "FAIL"
    assert "Series Time = « 20221209 »" in kos01["message"] and "date dans un champ heure" in kos01["message"]
    assert "type 2 absent(s)" in kos01["message"] and "AccessionNumber" in kos01["message"]
    assert findings["FQDN-01"]["verdict"] == "FAIL" and "localhost" in findings["FQDN-01"]["message"]
    assert findings["KOS-05"]["verdict"] == "WARN"  # inferred: a warning unless --strict
    strict = json.loads(check_kos(str(ANS / "poc-kos.dcm"), "--fqdn", DB1, "--json", "--strict").stdout)
    assert {f["requirement"]: f["verdict"] for f in strict["findings"]}["KOS-05"] == "FAIL"


def test_check_kos_on_kos_from_the_ans_xds_sample() -> None:
    proc = check_kos(str(ANS / "kos-from-publication.dcm"), "--fqdn", DB1, "--json")
    assert proc.returncode == 1
    findings = {f["requirement"]: f for f in json.loads(proc.stdout)["findings"]}
    assert findings["FQDN-01"]["verdict"] == "FAIL" and "localhost" in findings["FQDN-01"]["message"]
    assert findings["KOS-01"]["verdict"] == "WARN"  # no IOD error, only dubious values
    assert findings["KOS-02"]["verdict"] == "PASS" and findings["KOS-04"]["verdict"] == "PASS"


def test_check_kos_on_our_kos_and_on_a_kos_that_is_not_a_manifest(tmp_path: Path) -> None:
    data, st = reference_kos()
    ours = tmp_path / "ours.dcm"
    ours.write_bytes(data)
    proc = check_kos(str(ours), "--fqdn", DB1)
    assert proc.returncode == 0, proc.stdout
    assert "Verdict : CONFORME" in proc.stdout
    from simulators.iocm import rejection_note
    from simulators.pacs.orthanc import encode_dataset

    rows = st.instance_rows()[:1]
    note = tmp_path / "rejet.dcm"
    note.write_bytes(encode_dataset(rejection_note(st, [(r["SeriesInstanceUID"], r["SOPClassUID"], r["SOPInstanceUID"])
                                                        for r in rows])))
    out = json.loads(check_kos(str(note), "--json").stdout)
    verdicts = {f["requirement"]: f["verdict"] for f in out["findings"]}
    assert verdicts["KOS-02"] == "FAIL" and verdicts["FQDN-01"] == "FAIL"  # a rejection note, no RetrieveURL


@pytest.mark.parametrize("args, words", [
    (["/nonexistent.dcm"], "fichier introuvable"),
    (["/etc/hostname"], "pas un fichier DICOM"),
    (["{ours}", "--fqdn", "vi1.349.mesimagesmedicales.fr"], "--fqdn : dbN"),
])
def test_check_kos_usage_errors(tmp_path: Path, args, words) -> None:
    data, _ = reference_kos()
    ours = tmp_path / "ours.dcm"
    ours.write_bytes(data)
    proc = check_kos(*[a.format(ours=ours) for a in args])
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and "Traceback" not in proc.stderr
