"""The managed Orthanc PACS simulator, against a real Orthanc process (no mocks)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx
import pytest

from simulators.pacs import Orthanc, OrthancConfig, OrthancError, make_study
from simulators.pacs import orthanc as orthanc_module

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
TIMINGS: dict[str, float] = {}

if not Path(orthanc_module.DEFAULT_BINARY).exists():
    pytest.skip("Debian package orthanc not installed", allow_module_level=True)


@pytest.fixture(scope="module", autouse=True)
def _report_timings():
    yield
    if TIMINGS:
        print("\nOrthanc timings: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in TIMINGS.items()))


@pytest.fixture(scope="module")
def pacs(tmp_path_factory: pytest.TempPathFactory):
    """One Orthanc shared by the module; tests that stop it leave it running again."""
    orthanc = Orthanc(OrthancConfig(), tmp_path_factory.mktemp("pacs"))
    t0 = time.monotonic()
    orthanc.start()
    TIMINGS["start (empty storage)"] = time.monotonic() - t0
    yield orthanc
    orthanc.stop()


@pytest.fixture
def clean(pacs: Orthanc) -> Orthanc:
    if not pacs.running:
        pacs.start()
    pacs.clear()
    return pacs


def _gone(pid: int) -> bool:
    """True when the process no longer exists or is a zombie waiting for a reaper."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def _wait_gone(pid: int, seconds: float = 3.0) -> float | None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        if _gone(pid):
            return time.monotonic() - t0
        time.sleep(0.02)
    return None


def test_start_ready_with_our_config(pacs: Orthanc) -> None:
    assert pacs.running
    system = pacs.system()
    assert (system["DicomAet"], system["DicomPort"], system["HttpPort"]) == (pacs.aet, pacs.dicom_port, pacs.http_port)
    assert pacs.start_seconds is not None and pacs.start_seconds < 5
    assert pacs.base_url == f"http://127.0.0.1:{pacs.http_port}"
    assert httpx.get(pacs.base_url + "/system", timeout=5).status_code == 401  # basic auth is on
    with pacs.client() as client:
        assert "dicom-web" in client.get("/plugins").json()
        assert client.get(pacs.dicomweb_url + "/studies").status_code == 200
    conf = json.loads((pacs.scratch / "orthanc.json").read_text())
    assert conf["DicomWeb"]["Host"] == f"127.0.0.1:{pacs.http_port}"
    assert conf["SslEnabled"] is False and conf["RemoteAccessAllowed"] is False  # loopback by default
    assert "/etc/orthanc" not in json.dumps(conf)
    environ = Path(f"/proc/{pacs.pid}/environ").read_bytes().split(b"\0")
    assert b"TCP_NODELAY=1" in environ
    assert os.environ.get("TCP_NODELAY") == "1"


def test_store_stow_then_qido_lists_the_study(clean: Orthanc) -> None:
    study = make_study("stow", n_series=2, n_instances=3)
    clean.store(study.datasets())
    assert clean.instances_of_study(study.study_uid) == study.instance_rows()
    with clean.client() as client:
        found = client.get("/dicom-web/studies", params={"StudyInstanceUID": study.study_uid}).json()
    name = found[0]["00100010"]["Value"][0]["Alphabetic"]
    assert name == study.patient.dicom_name and not name.isascii()  # ISO_IR 100 accents survive
    assert found[0]["00100020"]["Value"] == [study.patient.ipp]
    assert found[0]["00080050"]["Value"] == [study.accession_number]


def test_store_cstore(clean: Orthanc) -> None:
    study = make_study("cstore", n_series=2, n_instances=5, modality="MR")
    t0 = time.monotonic()
    clean.store(study.datasets(), via="cstore")
    TIMINGS["C-STORE 10 instances"] = time.monotonic() - t0
    assert clean.instances_of_study(study.study_uid) == study.instance_rows()


def test_store_rejects_unknown_transport(clean: Orthanc) -> None:
    with pytest.raises(ValueError):
        clean.store([], via="ftp")


def test_stow_100_instances(clean: Orthanc) -> None:
    study = make_study("stow-100", n_series=4, n_instances=25, rows=64, columns=64)
    t0 = time.monotonic()
    clean.store(study.datasets())
    TIMINGS["STOW-RS 100 instances (64x64)"] = time.monotonic() - t0
    assert len(clean.instances_of_study(study.study_uid)) == 100


def test_instances_of_absent_study_is_empty(clean: Orthanc) -> None:
    assert clean.instances_of_study("1.2.3.4.5.6.7") == []


def test_clear_removes_everything(clean: Orthanc) -> None:
    first, second = make_study("clear-1"), make_study("clear-2", modality="US")
    clean.store(first.datasets())
    clean.store(second.datasets(), via="cstore")
    t0 = time.monotonic()
    clean.clear()
    TIMINGS["clear (2 studies)"] = time.monotonic() - t0
    assert clean.instances_of_study(first.study_uid) == []
    assert clean.instances_of_study(second.study_uid) == []
    with clean.client() as client:
        assert client.get("/patients").json() == []


def test_delete_instance_and_study(clean: Orthanc) -> None:
    study = make_study("delete")
    clean.store(study.datasets())
    victim = study.series[1].instances[0].sop_uid
    clean.delete_instance(victim)
    remaining = {row["SOPInstanceUID"] for row in clean.instances_of_study(study.study_uid)}
    assert remaining == study.instance_uids() - {victim}
    clean.delete_study(study.study_uid)
    assert clean.instances_of_study(study.study_uid) == []
    with pytest.raises(OrthancError, match="no study with UID"):
        clean.delete_study(study.study_uid)
    with pytest.raises(OrthancError, match="not a DICOM UID"):
        clean.delete_instance("../patients")


def test_add_modality_at_runtime_and_kept_across_restart(clean: Orthanc) -> None:
    clean.add_modality("DUT", "DRIMBOX", "127.0.0.1", 11112)
    with clean.client() as client:
        assert "DUT" in client.get("/modalities").json()
    clean.stop(graceful=False)
    clean.restart()
    with clean.client() as client:
        config = client.get("/modalities", params={"expand": ""}).json()["DUT"]
    assert (config["AET"], config["Port"], config["AllowMove"], config["AllowGet"]) == ("DRIMBOX", 11112, True, True)


def test_outage_kill_then_restart_keeps_data(clean: Orthanc) -> None:
    study = make_study("outage")
    clean.store(study.datasets())
    ports, pid = (clean.http_port, clean.dicom_port), clean.pid
    t0 = time.monotonic()
    clean.stop(graceful=False)
    TIMINGS["stop(graceful=False)"] = time.monotonic() - t0
    assert not clean.running and _wait_gone(pid, 2.0) is not None
    with pytest.raises(OrthancError):  # the outage is visible to clients, as one line
        clean.system()
    t0 = time.monotonic()
    clean.restart()
    TIMINGS["restart after kill"] = time.monotonic() - t0
    assert TIMINGS["restart after kill"] < 5
    assert (clean.http_port, clean.dicom_port) == ports and clean.pid != pid
    assert clean.instances_of_study(study.study_uid) == study.instance_rows()


def test_graceful_stop_is_bounded(pacs: Orthanc) -> None:
    t0 = time.monotonic()
    pacs.stop()
    TIMINGS["graceful stop"] = time.monotonic() - t0
    assert not pacs.running
    assert TIMINGS["graceful stop"] < 3.0  # SIGTERM alone takes ~3.5 s; the port pokes bring it to ~0.5 s
    pacs.start()
    assert pacs.running


def test_bad_credentials_give_one_line_error(pacs: Orthanc) -> None:
    intruder = Orthanc.external(pacs.base_url, username=pacs.auth[0], password="wrong", aet=pacs.aet)
    with pytest.raises(OrthancError) as info:
        intruder.start(timeout=2)
    assert "HTTP 401" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(OrthancError) as info:
        intruder.clear()
    assert "HTTP 401" in str(info.value) and "\n" not in str(info.value)


def test_unreachable_orthanc_gives_one_line_error(tmp_path: Path) -> None:
    port = orthanc_module._free_port()
    ghost = Orthanc.external(f"http://127.0.0.1:{port}", username="u", password="p")
    with pytest.raises(OrthancError) as info:
        ghost.instances_of_study("1.2.3")
    assert "ConnectError" in str(info.value) and "\n" not in str(info.value)


def test_missing_binary_gives_clear_error(tmp_path: Path) -> None:
    with pytest.raises(OrthancError) as info:
        Orthanc(OrthancConfig(binary="/nonexistent/Orthanc"), tmp_path).start()
    assert str(info.value) == "Orthanc binary not found or not executable: /nonexistent/Orthanc"


def test_port_in_use_gives_clear_error_fast(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        orthanc = Orthanc(OrthancConfig(http_port=port), tmp_path)
        t0 = time.monotonic()
        with pytest.raises(OrthancError) as info:
            orthanc.start(timeout=3)
        elapsed = time.monotonic() - t0
    first_line = str(info.value).splitlines()[0]
    assert "could not bind" in first_line and f"(port = {port})" in first_line
    assert elapsed < 3.5 and not orthanc.running


def test_restart_waits_for_its_port_then_says_why(tmp_path: Path) -> None:
    orthanc = Orthanc(OrthancConfig(), tmp_path)
    orthanc.start()
    orthanc.stop(graceful=False)
    squatter = socket.socket()
    squatter.bind(("0.0.0.0", orthanc.http_port))
    squatter.listen()
    try:
        t0 = time.monotonic()
        with pytest.raises(OrthancError) as info:
            orthanc.restart(timeout=1.5)
        assert time.monotonic() - t0 < 3.5
        assert f"(port = {orthanc.http_port})" in str(info.value).splitlines()[0]
    finally:
        squatter.close()
    orthanc.restart()  # the port is free again: same ports, it comes back
    try:
        assert orthanc.running
    finally:
        orthanc.stop(graceful=False)


def test_port_race_is_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    busy = socket.socket()
    busy.bind(("0.0.0.0", 0))
    busy.listen()
    real = orthanc_module._free_port
    handed = iter([busy.getsockname()[1]])  # the first "free" port gets taken before Orthanc binds it
    monkeypatch.setattr(orthanc_module, "_free_port", lambda: next(handed, None) or real())
    orthanc = Orthanc(OrthancConfig(), tmp_path)
    try:
        orthanc.start()
        assert orthanc.running and orthanc.http_port != busy.getsockname()[1]
        assert orthanc.log_path.read_text().count("=== drimcheck: starting Orthanc") == 2
    finally:
        orthanc.stop(graceful=False)
        busy.close()


def test_start_from_short_lived_thread_survives_thread_exit(tmp_path: Path) -> None:
    orthanc = Orthanc(OrthancConfig(), tmp_path)
    worker = threading.Thread(target=orthanc.start)
    worker.start()
    worker.join(20)
    try:
        time.sleep(0.3)  # PDEATHSIG would have fired at the worker's exit if the worker had forked Orthanc
        assert orthanc.running
    finally:
        orthanc.stop(graceful=False)


PARENT = textwrap.dedent("""
    import os, sys, time
    from simulators.pacs import orthanc as m
    mode = sys.argv[2]
    if mode in ("atexit", "no_pdeathsig"):
        m._prctl = None  # prove the atexit hook alone is enough
    o = m.Orthanc(m.OrthancConfig(), sys.argv[1])
    o.start()
    print(o.pid, flush=True)
    sys.stdin.readline()  # the test checks that Orthanc runs, then lets us go
    if mode in ("os_exit", "no_pdeathsig"):
        os._exit(0)  # no atexit, no finalizers: only PDEATHSIG can stop Orthanc
    if mode == "atexit":
        sys.exit(0)
    time.sleep(60)  # "sigkill": the test kills us
""")


@pytest.mark.parametrize("mode", ["os_exit", "sigkill", "atexit", "no_pdeathsig"])
def test_orthanc_dies_with_its_parent(tmp_path: Path, mode: str) -> None:
    """os_exit/sigkill: only PDEATHSIG can act; atexit: PDEATHSIG disabled; no_pdeathsig: control, Orthanc survives."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(tmp_path), mode], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    pid = None
    try:
        line = parent.stdout.readline()
        assert line.strip().isdigit(), parent.stderr.read() if parent.poll() is not None else line
        pid = int(line)
        assert not _gone(pid)
        if mode == "sigkill":
            parent.send_signal(signal.SIGKILL)
        else:
            parent.stdin.write("go\n")
            parent.stdin.flush()
        parent.wait(10)
        elapsed = _wait_gone(pid, 1.0 if mode == "no_pdeathsig" else 3.0)
        if mode == "no_pdeathsig":
            assert elapsed is None, "control case: without PDEATHSIG nor atexit, Orthanc should have survived"
        else:
            assert elapsed is not None, f"Orthanc pid {pid} survived its parent ({mode})"
            TIMINGS[f"orphan gone ({mode})"] = elapsed
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(5)
        if pid is not None and not _gone(pid):
            os.kill(pid, signal.SIGKILL)


def test_cmove_and_cget_with_declared_modality(clean: Orthanc) -> None:
    """What a DUT does on CR reception: C-MOVE to its own storage SCP (declared to Orthanc); and C-GET."""
    from pydicom import Dataset
    from pynetdicom import AE, StoragePresentationContexts, build_role, evt
    from pynetdicom.sop_class import (
        CTImageStorage,
        StudyRootQueryRetrieveInformationModelGet,
        StudyRootQueryRetrieveInformationModelMove,
    )

    from simulators.pacs import NODELAY_HANDLER

    study = make_study("move", n_series=2, n_instances=10)
    clean.store(study.datasets())
    received: list[str] = []

    def on_store(event):
        received.append(event.request.AffectedSOPInstanceUID)
        return 0x0000

    scp = AE("DUT_SCP")
    scp.supported_contexts = StoragePresentationContexts
    port = orthanc_module._free_port()
    server = scp.start_server(("127.0.0.1", port), block=False,
                              evt_handlers=[NODELAY_HANDLER, (evt.EVT_C_STORE, on_store)])
    try:
        clean.add_modality("DUT", "DUT_SCP", "127.0.0.1", port)
        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.StudyInstanceUID = study.study_uid
        scu = AE("DUT_SCP")
        scu.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
        assoc = scu.associate("127.0.0.1", clean.dicom_port, ae_title=clean.aet, evt_handlers=[NODELAY_HANDLER])
        assert assoc.is_established
        t0 = time.monotonic()
        responses = assoc.send_c_move(query, "DUT_SCP", StudyRootQueryRetrieveInformationModelMove)
        statuses = [status.Status for status, _ in responses]
        TIMINGS["C-MOVE 20 instances"] = time.monotonic() - t0
        assoc.release()
        assert statuses[-1] == 0x0000 and set(received) == study.instance_uids()
    finally:
        server.shutdown()

    received.clear()
    getter = AE("DUT_SCP")
    getter.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    getter.add_requested_context(CTImageStorage)
    assoc = getter.associate("127.0.0.1", clean.dicom_port, ae_title=clean.aet,
                             ext_neg=[build_role(CTImageStorage, scp_role=True)],
                             evt_handlers=[NODELAY_HANDLER, (evt.EVT_C_STORE, on_store)])
    assert assoc.is_established
    statuses = [status.Status for status, _ in assoc.send_c_get(query, StudyRootQueryRetrieveInformationModelGet)]
    assoc.release()
    assert statuses[-1] == 0x0000 and set(received) == study.instance_uids()
