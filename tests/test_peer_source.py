"""Peer Source DRIMbox simulator against a real Orthanc: access control, negotiation, multipart answers."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import pydicom
import pytest

from drimcheck import jose
from drimcheck.wado import ANS_SAMPLE_ACCEPT, EXPLICIT_VR_LE, IMPLICIT_VR_LE, dicom_accept, retrieve
from fixtures.pki import TestPKI
from simulators import peers as peers_module
from simulators.pacs import Orthanc, OrthancConfig, make_study
from simulators.pacs import orthanc as orthanc_module
from simulators.peer_source import PeerSource
from simulators.psc import PscSimulator
from simsupport import client, stub_runtime

pytestmark = pytest.mark.slow
if not Path(orthanc_module.DEFAULT_BINARY).exists():
    pytest.skip("Debian package orthanc not installed", allow_module_level=True)

PEER = "db7.350.mesimagesmedicales.fr"
CONSO = "db1.349.mesimagesmedicales.fr"
JPEG_LOSSLESS, JPEG_LS, JPEG_BASELINE = "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.50"
#: syntaxes Orthanc 1.10.1/DICOMweb 1.7 really produces for 16-bit CT (documented in simulators/peer_source.py)
WORKING = [IMPLICIT_VR_LE, EXPLICIT_VR_LE, "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.4.51",
           "1.2.840.10008.1.2.4.57", JPEG_LOSSLESS, JPEG_LS, "1.2.840.10008.1.2.4.81"]
LOSSLESS_DECODERS = {JPEG_LOSSLESS: "dcmdjpeg", "1.2.840.10008.1.2.4.57": "dcmdjpeg", JPEG_LS: "dcmdjpls"}


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> TestPKI:
    return TestPKI(tmp_path_factory.mktemp("peer") / "pki")


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    pacs = Orthanc(OrthancConfig(aet="PEER_PACS"), tmp_path_factory.mktemp("peer-pacs"))
    pacs.start()
    yield pacs
    pacs.stop(graceful=False)


@pytest.fixture(scope="module")
def psc(pki):
    with PscSimulator(pki) as sim:
        yield sim


@pytest.fixture(scope="module")
def peer(pki, orthanc, psc):
    with PeerSource(pki, orthanc, fqdn=PEER, psc=psc) as sim:
        yield sim


@pytest.fixture(scope="module")
def study(peer):
    s = make_study("peer-source-a", n_series=2, n_instances=3, rows=32, columns=32)
    peer.kos_ref = peer.register_study(s)
    return s


@pytest.fixture(scope="module")
def conso(pki, peer):
    """The calling Conso: its SERV_SSL as client certificate, trusting IGC-Santé."""
    with client(peer.hosts(), [pki.igc_trust_pem], pki.serv_ssl(CONSO), timeout=30) as h:
        yield h


@pytest.fixture(autouse=True)
def _nominal(psc, peer):
    yield
    psc.clear_faults()
    peer.set_fault(None)


def fetch(conso, url: str, *, token: str | None, kos: str | None, accept: str | None = ANS_SAMPLE_ACCEPT):
    headers = {}
    if accept is not None:
        headers["Accept"] = accept
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if kos is not None:
        headers["KOS-SOPInstanceUID"] = kos
    return retrieve(conso, url, headers=headers)


@pytest.fixture
def token(psc) -> str:
    return psc.issue_token().access_token


def series_url(peer, study, index: int = 0) -> str:
    return peer.retrieve_url(study.study_uid, study.series[index].series_uid)


def read_parts(result, ts: str) -> list[pydicom.Dataset]:
    """Every part: announced syntax in its header, a readable DICOM file in that syntax."""
    out = []
    for part in result.parts:
        assert part.content_type == f"application/dicom; transfer-syntax={ts}"
        assert int(part.headers["content-length"]) == len(part.body)
        ds = pydicom.dcmread(io.BytesIO(part.body))
        assert ds.file_meta.TransferSyntaxUID == ts
        assert ds.SOPInstanceUID == ds.file_meta.MediaStorageSOPInstanceUID
        out.append(ds)
    return out


# ----------------------------------------------------------------------------------------- nominal


def test_ans_sample_request_is_answered_in_jpeg_lossless(peer, study, conso, token, tmp_path) -> None:
    assert peer.retrieve_url(study.study_uid, "1.2") == \
        f"https://{PEER}/dicom-web-rs/studies/{study.study_uid}/series/1.2"
    result = fetch(conso, series_url(peer, study), token=token, kos=peer.kos_ref.sop_uid)
    assert result.status == 200 and result.error is None
    assert result.media_type == "multipart/related"
    assert result.media_params["type"] == "application/dicom"
    assert result.media_params["transfer-syntax"] == JPEG_LOSSLESS
    assert result.header("transfer-encoding") == "chunked"
    datasets = read_parts(result, JPEG_LOSSLESS)
    expected = {i.sop_uid: i for i in study.series[0].instances}
    assert {ds.SOPInstanceUID for ds in datasets} == set(expected)
    # an outside decoder (DCMTK) restores the original pixels exactly: lossless and well formed
    originals = {ds.SOPInstanceUID: ds for ds in study.datasets()}
    src = tmp_path / "part.dcm"
    src.write_bytes(result.parts[0].body)
    subprocess.run(["dcmdjpeg", str(src), str(tmp_path / "raw.dcm")], check=True, capture_output=True)
    decoded = pydicom.dcmread(tmp_path / "raw.dcm")
    assert decoded.PixelData == originals[decoded.SOPInstanceUID].PixelData
    entry = peer.requests[-1]
    assert entry["status"] == 200 and entry["complete"] and entry["transfer_syntax"] == JPEG_LOSSLESS
    assert entry["parts"] == 3 and set(entry["served_instances"]) == set(expected)
    assert entry["introspection"]["active"] is True and entry["introspection"]["status"] == 200
    assert entry["token"]["fingerprint"] == jose.fingerprint(token) and token not in json.dumps(peer.requests)
    assert entry["tls"]["client_cert"]["subject"].startswith(f"CN={CONSO}") and entry["tls"]["sni"] == PEER
    assert entry["kos_sop_uid"] == peer.kos_ref.sop_uid and entry["t_first_part_s"] <= entry["elapsed_s"]


@pytest.mark.parametrize("ts", WORKING)
def test_every_verified_syntax_really_comes_back(peer, study, conso, token, ts, tmp_path) -> None:
    result = fetch(conso, series_url(peer, study, 1), token=token, kos=peer.kos_ref.sop_uid,
                   accept=dicom_accept((ts, 0.9)))
    assert result.status == 200 and result.media_params["transfer-syntax"] == ts
    datasets = read_parts(result, ts)
    assert len(datasets) == 3
    if ts in LOSSLESS_DECODERS or ts in (IMPLICIT_VR_LE, EXPLICIT_VR_LE):
        originals = {d.SOPInstanceUID: d.PixelData for d in study.datasets()}
        for part, ds in zip(result.parts, datasets):
            if ts in LOSSLESS_DECODERS:
                (tmp_path / "in.dcm").write_bytes(part.body)
                subprocess.run([LOSSLESS_DECODERS[ts], str(tmp_path / "in.dcm"), str(tmp_path / "out.dcm")],
                               check=True, capture_output=True)
                ds = pydicom.dcmread(tmp_path / "out.dcm")
            assert ds.PixelData == originals[ds.SOPInstanceUID]


def test_q_values_order_the_choice(peer, study, conso, token) -> None:
    kos = peer.kos_ref.sop_uid
    url = series_url(peer, study)
    picked = fetch(conso, url, token=token, kos=kos, accept=dicom_accept((JPEG_LOSSLESS, 0.8), (JPEG_LS, 0.9)))
    assert picked.media_params["transfer-syntax"] == JPEG_LS
    tie = dicom_accept(("1.2.840.10008.1.2.4.57", 0.5), (JPEG_LOSSLESS, 0.5), (EXPLICIT_VR_LE, 0.4))
    assert fetch(conso, url, token=token, kos=kos, accept=tie).media_params["transfer-syntax"] == \
        "1.2.840.10008.1.2.4.57"
    refused = dicom_accept((JPEG_LS, 0), (EXPLICIT_VR_LE, 0.1))
    assert fetch(conso, url, token=token, kos=kos, accept=refused).media_params["transfer-syntax"] == EXPLICIT_VR_LE


def test_falls_back_when_orthanc_cannot_encode(peer, study, conso, token) -> None:
    # JPEG Baseline needs 8-bit pixels: Orthanc refuses it for this 12-bit CT, the next choice is served
    result = fetch(conso, series_url(peer, study), token=token, kos=peer.kos_ref.sop_uid,
                   accept=dicom_accept((JPEG_BASELINE, 0.9), (JPEG_LOSSLESS, 0.5)))
    assert result.status == 200 and result.media_params["transfer-syntax"] == JPEG_LOSSLESS
    attempts = peer.requests[-1]["pacs_attempts"]
    assert [a["transfer_syntax"] for a in attempts] == [JPEG_BASELINE, JPEG_LOSSLESS]
    assert attempts[0]["status"] == 500 and attempts[1]["status"] == 200
    only_baseline = fetch(conso, series_url(peer, study), token=token, kos=peer.kos_ref.sop_uid,
                          accept=dicom_accept((JPEG_BASELINE, 0.9)))
    assert only_baseline.status == 406 and b"1.2.840.10008.1.2.4.50->500" in only_baseline.error_body


def test_unsupported_only_is_406_without_asking_the_pacs(peer, study, conso, token) -> None:
    result = fetch(conso, series_url(peer, study), token=token, kos=peer.kos_ref.sop_uid,
                   accept=dicom_accept(("1.2.840.10008.1.2.4.91", 0.9), ("1.2.840.10008.1.2.4.100", 0.5)))
    assert result.status == 406 and result.part_count == 0
    entry = peer.requests[-1]
    assert entry["reason"] == "not_acceptable" and entry["candidates"] == [] and "pacs_attempts" not in entry


# ----------------------------------------------------------------------------------------- 400


def test_absent_accept_is_served_as_explicit_vr_little_endian(peer, study, conso, token) -> None:
    # RFC 9110 §12.5.1: no Accept means */*; PS3.18 §8.7.3: the default DICOM syntax is Explicit VR LE
    request = conso.build_request("GET", series_url(peer, study), headers={
        "Authorization": f"Bearer {token}", "KOS-SOPInstanceUID": peer.kos_ref.sop_uid})
    del request.headers["accept"]
    resp = conso.send(request)
    assert resp.status_code == 200 and f"transfer-syntax={EXPLICIT_VR_LE}" in resp.headers["content-type"]
    assert peer.requests[-1]["accept"] is None and peer.requests[-1]["transfer_syntax"] == EXPLICIT_VR_LE


@pytest.mark.parametrize("accept, ts", [
    # what standard DICOMweb clients send (PS3.18 §8.7.3): no q, no boundary, default or wildcard syntax
    ('multipart/related; type="application/dicom"', EXPLICIT_VR_LE),
    (f'multipart/related; type="application/dicom"; transfer-syntax={JPEG_LOSSLESS}', JPEG_LOSSLESS),
    ('multipart/related; type="application/dicom"; transfer-syntax=*', EXPLICIT_VR_LE),
    (f'multipart/related; type="application/dicom"; transfer-syntax={JPEG_BASELINE}, '
     f'multipart/related; type="application/dicom"; transfer-syntax={JPEG_LS}', JPEG_LS),
    ("*/*", EXPLICIT_VR_LE),
    (f'multipart/related; type="application/dicom";transfer-syntax={JPEG_LOSSLESS};boundary=**', JPEG_LOSSLESS),
    (f'multipart/related; type="application/dicom";transfer-syntax={JPEG_LOSSLESS};q=0.9', JPEG_LOSSLESS),
])
def test_every_ps318_accept_is_served(peer, study, conso, token, accept, ts) -> None:
    result = fetch(conso, series_url(peer, study), token=token, kos=peer.kos_ref.sop_uid, accept=accept)
    assert result.status == 200 and result.media_params["transfer-syntax"] == ts
    assert len(read_parts(result, ts)) == 3


@pytest.mark.parametrize("accept", ["application/json", "", 'multipart/related; type="application/dicom+json"',
                                    f'multipart/related; type="application/dicom"; transfer-syntax={EXPLICIT_VR_LE};q=0'])
def test_nothing_acceptable_is_406(peer, study, conso, token, accept) -> None:
    result = fetch(conso, series_url(peer, study), token=token, kos=peer.kos_ref.sop_uid, accept=accept)
    assert result.status == 406 and result.part_count == 0
    assert peer.requests[-1]["reason"] == "not_acceptable"


@pytest.mark.parametrize("accept, reason", [
    (f'multipart/related; type="application/dicom";transfer-syntax={JPEG_LOSSLESS};q=high;boundary=**', "invalid q"),
    ("multipart/related; type=\"application/dicom", "unterminated"),
    ('multipart/related; type="application/dicom"; transfer-syntax', "malformed parameter"),
    ('multipart/related; type="application/dicom"; transfer-syntax=jpeg', "invalid transfer-syntax"),
    ("dicom", "not a media range"),
])
def test_malformed_accept_is_400(peer, study, conso, token, accept, reason) -> None:
    result = fetch(conso, series_url(peer, study), token=token, kos=peer.kos_ref.sop_uid, accept=accept)
    assert result.status == 400 and reason.encode() in result.error_body
    assert peer.requests[-1]["reason"] == "bad_accept"


def test_missing_kos_header_is_400(peer, study, conso, token) -> None:
    result = fetch(conso, series_url(peer, study), token=token, kos=None)
    assert result.status == 400 and result.error_body == b"Missing KOS-SOPInstanceUID\n"
    assert fetch(conso, series_url(peer, study), token=token, kos="").status == 400


# ----------------------------------------------------------------------------------------- 401


def test_no_or_inactive_token_is_401(peer, psc, study, conso) -> None:
    url, kos = series_url(peer, study), peer.kos_ref.sop_uid
    none = fetch(conso, url, token=None, kos=kos)
    assert none.status == 401 and none.header("www-authenticate") == 'Bearer realm="DRIMbox"'
    assert peer.requests[-1]["reason"] == "no_token"
    garbage = fetch(conso, url, token="not-a-psc-token", kos=kos)
    assert garbage.status == 401 and 'error="invalid_token"' in garbage.header("www-authenticate")
    assert peer.requests[-1]["introspection"] == {"status": 200, "active": False,
                                                  "elapsed_s": peer.requests[-1]["introspection"]["elapsed_s"]}
    expired = psc.issue_token(lifetime_s=0).access_token
    assert fetch(conso, url, token=expired, kos=kos).status == 401
    revoked = psc.issue_token().access_token
    assert fetch(conso, url, token=revoked, kos=kos).status == 200
    psc.revoke(revoked)
    assert fetch(conso, url, token=revoked, kos=kos).status == 401
    logged_out = psc.issue_token()
    assert fetch(conso, url, token=logged_out.access_token, kos=kos).status == 200
    psc.logout_session(logged_out.sid)
    assert fetch(conso, url, token=logged_out.access_token, kos=kos).status == 401  # replay after logout


def test_introspection_failure_is_401(peer, psc, study, conso, token) -> None:
    psc.set_unavailable(endpoints=["introspect"])
    result = fetch(conso, series_url(peer, study), token=token, kos=peer.kos_ref.sop_uid)
    assert result.status == 401
    assert peer.requests[-1]["introspection"]["status"] == 503 and peer.requests[-1]["reason"] == "token_inactive"
    psc.set_unavailable(False, endpoints=["introspect"])
    assert fetch(conso, series_url(peer, study), token=token, kos=peer.kos_ref.sop_uid).status == 200


# ----------------------------------------------------------------------------------------- 404, 410, 206


def test_kos_that_does_not_reference_the_request_is_404(peer, study, conso, token) -> None:
    other = make_study("peer-source-other", n_series=1, n_instances=1, rows=8, columns=8)
    other_kos = peer.register_study(other, store=False)
    kos = peer.kos_ref.sop_uid
    s0 = study.series[0]
    cases = [
        (series_url(peer, study), "1.2.3.4.5", "kos_unknown"),
        (series_url(peer, study), other_kos.sop_uid, "kos_mismatch"),  # KOS of another study
        (peer.retrieve_url(study.study_uid, "1.2.3.999"), kos, "kos_mismatch"),  # series not referenced
        (peer.instance_url(study.study_uid, s0.series_uid, "1.2.3.998"), kos, "kos_mismatch"),
        (peer.instance_url(study.study_uid, s0.series_uid, study.series[1].instances[0].sop_uid), kos,
         "kos_mismatch"),  # instance of another series
    ]
    for url, kos_uid, reason in cases:
        result = fetch(conso, url, token=token, kos=kos_uid)
        assert result.status == 404, url
        assert peer.requests[-1]["reason"] == reason
    assert fetch(conso, peer.retrieve_url(study.study_uid, "not-a-uid"), token=token, kos=kos).status == 400


def test_instance_level_retrieval(peer, study, conso, token) -> None:
    s1 = study.series[1]
    sop = s1.instances[2].sop_uid
    result = fetch(conso, peer.instance_url(study.study_uid, s1.series_uid, sop), token=token,
                   kos=peer.kos_ref.sop_uid)
    assert result.status == 200 and result.part_count == 1
    assert read_parts(result, JPEG_LOSSLESS)[0].SOPInstanceUID == sop
    assert peer.requests[-1]["level"] == "instance" and peer.requests[-1]["served_instances"] == [sop]


def test_deleted_images_are_410_or_206(peer, orthanc, conso, token) -> None:
    gone = make_study("peer-source-gone", n_series=1, n_instances=3, rows=8, columns=8)
    kos = peer.register_study(gone).sop_uid
    s = gone.series[0]
    orthanc.delete_instance(s.instances[0].sop_uid)
    one = fetch(conso, peer.instance_url(gone.study_uid, s.series_uid, s.instances[0].sop_uid), token=token, kos=kos)
    assert one.status == 410 and peer.requests[-1]["reason"] == "gone"
    partial = fetch(conso, peer.retrieve_url(gone.study_uid, s.series_uid), token=token, kos=kos)
    assert partial.status == 206 and partial.part_count == 2
    assert partial.header("warning").startswith(f'299 {PEER} "1 referenced instance(s)')
    assert peer.requests[-1]["reason"] == "partial" and peer.requests[-1]["missing"] == 1
    for inst in s.instances[1:]:
        orthanc.delete_instance(inst.sop_uid)
    assert fetch(conso, peer.retrieve_url(gone.study_uid, s.series_uid), token=token, kos=kos).status == 410


# ----------------------------------------------------------------------------------------- policy, config


def test_client_certificate_policy_and_basic_introspection(pki, orthanc, psc, study, token) -> None:
    strict = PeerSource(pki, orthanc, fqdn="db8.350.mesimagesmedicales.fr", psc=psc, require_client_cert=True,
                        allowed_client_dns=[pki.serv_ssl(CONSO).subject_dn], introspection_auth="basic")
    kos = strict.register_study(study, store=False).sop_uid
    with strict:
        url = strict.retrieve_url(study.study_uid, study.series[0].series_uid)
        with client(strict.hosts(), [pki.igc_trust_pem]) as anonymous:
            assert fetch(anonymous, url, token=token, kos=kos).status == 403
            assert strict.requests[-1]["reason"] == "no_client_certificate"
        with client(strict.hosts(), [pki.igc_trust_pem], pki.serv_ssl("db3.349.mesimagesmedicales.fr")) as other:
            assert fetch(other, url, token=token, kos=kos).status == 403
            assert strict.requests[-1]["reason"] == "client_not_allowed"
        with client(strict.hosts(), [pki.igc_trust_pem], pki.serv_ssl(CONSO)) as allowed:
            assert fetch(allowed, url, token=token, kos=kos).status == 200
        intro = psc.requests_for("introspect")[-1]["facts"]["client_auth"]
        assert intro["method"] == "client_secret_basic" and intro["client_id"] == "drimbox-db8.350.mesimagesmedicales.fr"
        strict.set_fault(503)
        with client(strict.hosts(), [pki.igc_trust_pem], pki.serv_ssl(CONSO)) as allowed:
            assert fetch(allowed, url, token=token, kos=kos).status == 503


def test_mtls_introspection_identity(peer, psc, study, conso, token) -> None:
    fetch(conso, series_url(peer, study), token=token, kos=peer.kos_ref.sop_uid)
    auth = psc.requests_for("introspect")[-1]["facts"]["client_auth"]
    assert auth == {"method": "tls_client_auth", "client_id": f"drimbox-{PEER}", "ok": True,
                    "cert_subject": peer.cert.subject_dn}


def test_register_kos_dataset(peer, study) -> None:
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    ds = Dataset()
    ds.SOPInstanceUID = "1.2.3.4.77"
    ds.PatientID = "279035121518989"
    item = Dataset()
    item.StudyInstanceUID = study.study_uid
    series = Dataset()
    series.SeriesInstanceUID = study.series[0].series_uid
    refs = []
    for inst in study.series[0].instances:
        ref = Dataset()
        ref.ReferencedSOPInstanceUID = inst.sop_uid
        refs.append(ref)
    series.ReferencedSOPSequence = Sequence(refs)
    item.ReferencedSeriesSequence = Sequence([series])
    ds.CurrentRequestedProcedureEvidenceSequence = Sequence([item])
    ref = peer.register_kos_dataset(ds)
    assert ref.references(study.study_uid, study.series[0].series_uid, study.series[0].instances[1].sop_uid)
    assert not ref.references(study.study_uid, study.series[1].series_uid)
    assert ref.patient_id == "279035121518989" and peer.kos["1.2.3.4.77"] is ref
    peer.forget_kos("1.2.3.4.77")
    assert "1.2.3.4.77" not in peer.kos


def test_peers_start_for_campaign(pki, psc, tmp_path) -> None:
    assert peers_module.start_for_campaign(stub_runtime(pki, sims={"psc": psc})) is None  # Source-only SUT
    runtime = stub_runtime(pki, roles=("source", "conso"), sims={"psc": psc})
    runtime.workdir = tmp_path
    group = peers_module.start_for_campaign(runtime)
    try:
        assert set(group.peers) == {peers_module.WHITELISTED_PEER, peers_module.UNLISTED_PEER}
        assert [p.fqdn for p in group.whitelisted] == [peers_module.WHITELISTED_PEER]
        assert [p.fqdn for p in group.unlisted] == [peers_module.UNLISTED_PEER]
        hosts = group.hosts()
        assert len(set(hosts.values())) == 2 and hosts[peers_module.WHITELISTED_PEER] == \
            str(runtime.simulator_address("peers"))
        settings = group.dut_settings()["peers"]
        assert settings[0]["wado_base"] == f"https://{peers_module.WHITELISTED_PEER}/dicom-web-rs"
        assert settings[1]["whitelisted"] is False
        s = make_study("peers-campaign", n_series=1, n_instances=2, rows=8, columns=8)
        token = psc.issue_token().access_token
        for peer in group.peers.values():
            kos = peer.register_study(s).sop_uid
            with client(group.hosts(), [pki.igc_trust_pem], pki.serv_ssl(CONSO)) as h:
                result = fetch(h, peer.retrieve_url(s.study_uid, s.series[0].series_uid), token=token, kos=kos)
                assert result.status == 200 and result.part_count == 2
        assert [e["peer"] for e in group.requests()] == [peers_module.WHITELISTED_PEER, peers_module.UNLISTED_PEER]
    finally:
        group.stop()
    assert not group.orthanc.running
