"""Source checks on recorded exchanges, independence rules, and the reference Source end to end (real processes)."""

from __future__ import annotations

import ast
import time
from pathlib import Path

import pytest

from drimcheck import xds
from drimcheck.checks import source as checks
from drimcheck.verdicts import Verdict
from simulators.ris import MllpExchange

REPO = Path(__file__).resolve().parents[1]


def mllp(code: str | None, *, error: str | None = None, mtype: str = "ORU^R01") -> MllpExchange:
    ack = None if code is None else f"MSH|^~\\&|D|F|R|F|20240101||ACK^R01^ACK|1|P|2.5\rMSA|{code}|C1\r".encode()
    ex = MllpExchange("cr", mtype, "C1", b"MSH|", time.monotonic(), ack, time.monotonic() + 0.01, error)
    ex.evidence = ["evidence/hl7.json"]
    return ex


def dmp(seq: int, *, status: str = "Success", forced: bool = False, kind: str = "ITI-41", at: float | None = None,
        request=None) -> xds.DmpExchange:
    action = xds.ACTION_PNR if kind == "ITI-41" else xds.ACTION_UPDATE
    ex = xds.DmpExchange(seq, at if at is not None else time.monotonic(), "/r", "x", b"", b"cert", request=request,
                         action=action, status=status, forced=forced)
    ex.evidence = [f"evidence/dmp-{seq}.json"]
    return ex


def test_src01() -> None:
    m = mllp("AA")
    assert checks.acknowledged_and_published(m, dmp(1), [dmp(1)], 5)[0].verdict is Verdict.PASS
    assert "aucun KOS" in checks.acknowledged_and_published(m, None, [], 5)[0].message
    refused = checks.acknowledged_and_published(mllp("AE"), None, [], 5)[0]
    assert refused.verdict is Verdict.FAIL and "AE au lieu de AA" in refused.message
    assert "pas d'acquittement" in checks.acknowledged_and_published(mllp(None, error="timeout"), None, [], 5)[0].message


def test_src02_03_refusals() -> None:
    good = [("a", mllp("AE")), ("b", mllp("AR"))]
    assert checks.mismatch_refused(good, [], 1)[0].verdict is Verdict.PASS
    assert "AA au lieu" in checks.mismatch_refused([("a", mllp("AA"))], [], 1)[0].message
    published = checks.malformed_refused(good, [dmp(3)], 1)[0]
    assert published.verdict is Verdict.FAIL and "malgré un message mal formé" in published.message


def test_src04() -> None:
    assert checks.absent_study_not_published(mllp("AE"), [], 1)[0].verdict is Verdict.PASS
    assert checks.absent_study_not_published(mllp("AA"), [dmp(1)], 1)[0].verdict is Verdict.FAIL


def test_src05() -> None:
    t = time.monotonic()
    failed, ok, again = dmp(1, status="Failure", forced=True, at=t), dmp(2, at=t + 0.4), dmp(3, at=t + 0.6)
    assert checks.dmp_failure_handled([mllp("AA")], [failed, ok], 5, 1)[0].verdict is Verdict.PASS
    assert "CR perdu" in checks.dmp_failure_handled([mllp("AA")], [failed], 5, 1)[0].message
    assert "publié deux fois" in checks.dmp_failure_handled([mllp("AA")], [failed, ok, again], 5, 1)[0].message
    assert checks.dmp_failure_handled([mllp("AA")], [ok], 5, 1)[0].verdict is Verdict.ERROR  # failure not injected
    assert "aucune tentative" in checks.dmp_failure_handled([mllp("AA")], [], 5, 1)[0].message


def test_src06_and_src07_need_the_recorded_requests() -> None:
    # real parsed requests from the reference builder (see test_dmp) are exercised in the campaign; here the
    # verdicts that do not need them
    assert checks.replaced_with_rplc("MDM^T10", None, None, 5)[0].verdict is Verdict.ERROR
    assert checks.unpublished("retrait", None, [], 5)[0].verdict is Verdict.ERROR
    deleted = checks.unpublished("retrait", "urn:uuid:1", [dmp(4, kind="ITI-41")], 5)[0]
    assert deleted.verdict is Verdict.FAIL and "reçu à la place" in deleted.message


def test_src08_flags_only_cross_pacs_mix_ups() -> None:
    from tests.test_kos import doc, reference_kos

    db1, db2 = "db1.349.mesimagesmedicales.fr", "db2.349.mesimagesmedicales.fr"
    k1, k2 = doc(reference_kos("m1", db=db1)[0]), doc(reference_kos("m2", db=db2)[0])
    ok = [checks.PacsOutcome("P1", db1, "s1", dmp(1), k1), checks.PacsOutcome("P2", db2, "s2", dmp(2), k2)]
    assert checks.each_study_with_its_pair(ok, 5)[0].verdict is Verdict.PASS
    swapped = [checks.PacsOutcome("P1", db1, "s1", dmp(1), k2), checks.PacsOutcome("P2", db2, "s2", dmp(2), k1)]
    assert "le FQDN du PACS P2" in checks.each_study_with_its_pair(swapped, 5)[0].message
    missing = [ok[0], checks.PacsOutcome("P2", db2, "s2", None, None, mllp("AE"))]
    assert "non publiée" in checks.each_study_with_its_pair(missing, 5)[0].message
    localhost = doc(reference_kos("m3", db="localhost")[0])
    other = [checks.PacsOutcome("P1", db1, "s1", dmp(1), localhost), ok[1]]
    assert checks.each_study_with_its_pair(other, 5)[0].verdict is Verdict.PASS  # FQDN-01's business, not SRC-08's


# --------------------------------------------------------------------------- independence

def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
    return out


def test_reference_source_has_its_own_code() -> None:
    for path in sorted((REPO / "simulators" / "drimbox").glob("source*.py")):
        bad = {m for m in _imports(path) if m.split(".")[0] in ("drimcheck", "fixtures")}
        assert not bad, f"{path.name} imports harness code {bad}"


def test_checks_do_not_import_simulators() -> None:
    for path in sorted((REPO / "drimcheck").rglob("*.py")):
        if "checks" in path.parts or path.name in ("kos.py", "xds.py", "hl7.py"):
            bad = {m for m in _imports(path) if m.startswith("simulators")}
            assert not bad, f"{path} imports {bad}"


# --------------------------------------------------------------------------- end to end

@pytest.mark.slow
def test_reference_source_end_to_end(tmp_path: Path) -> None:
    """The reference DRIMbox process, two real Orthanc PACS, the DMP simulator over mTLS: publish, update, delete."""
    from drimcheck import config
    from drimcheck.campaign import CampaignRuntime
    from drimcheck.hl7 import read_ack
    from fixtures import hl7 as messages
    from fixtures.cda import report_for
    from simulators.ris import RisSimulator

    rt = CampaignRuntime(config.load(None), tmp_path)
    rt.ensure_started()
    try:
        dmp_sim = rt.sims["dmp"]
        addr = rt.dut_address("mllp")
        ris = RisSimulator(addr.host, addr.port, rt.evidence)
        pacs2 = rt.pacs_entry(1)
        study = rt.seed_study("e2e-pacs2", pacs=pacs2)
        report = report_for(study, pacs2.vi)
        t0 = time.monotonic()
        assert read_ack(ris.send(messages.oru_r01(report)).ack).code == "AA"
        first = dmp_sim.wait_for(lambda e: study.study_uid in e.study_uids and e.success, since=t0, deadline_s=10)
        assert first is not None and first.client_certificate() is not None
        from drimcheck.kos import read_kos

        kos = read_kos(first.kos_bytes())
        assert {u.split("/")[2] for _, u in kos.retrieve_urls()} == {pacs2.db}  # the second PACS's own FQDN
        t1 = time.monotonic()
        assert read_ack(ris.send(messages.mdm(report_for(study, pacs2.vi, version=2), trigger="T10")).ack).code == "AA"
        update = dmp_sim.wait_for(lambda e: study.study_uid in e.study_uids and e.success, since=t1, deadline_s=10)
        assert update is not None and update.replaced
        t2 = time.monotonic()
        assert read_ack(ris.send(messages.mdm(report, trigger="T04")).ack).code == "AA"
        deletion = dmp_sim.wait_for(lambda e: e.kind == "ITI-57", since=t2, deadline_s=10)
        assert deletion is not None and deletion.status_updates[0][1] == xds.STATUS_DELETED
    finally:
        rt.stop()
