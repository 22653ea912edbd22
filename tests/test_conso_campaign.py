"""The reference DRIMbox's Conso function end to end, in a real campaign runtime (processes, sockets, TLS).

The practitioner's visit as the consultation feature plays it: contextual call, PSC login through the
Proxy e-santé, DMP consultation, WADO-RS from the listed peer only, page, export to the PACS, KPI line,
and what every simulator recorded; then the checks on those records.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from drimcheck import config as sut_config
from drimcheck.campaign import CampaignRuntime
from drimcheck.checks import conso as checks
from drimcheck.verdicts import Verdict
from simulators.pacs import orthanc as orthanc_module

pytestmark = pytest.mark.slow
if not Path(orthanc_module.DEFAULT_BINARY).exists():
    pytest.skip("Debian package orthanc not installed", allow_module_level=True)


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    rt = CampaignRuntime(sut_config.load(None), tmp_path_factory.mktemp("run"))
    try:
        yield rt.ensure_started()
    finally:
        rt.stop()


def test_practitioner_visit_end_to_end(runtime) -> None:
    from simulators.conso_visit import ConsoVisit, contextual_call_fields, exported_study, prepare_history

    assert {"dmp", "psc", "proxy", "peers"} <= set(runtime.sims) and runtime.sut.roles == ("source", "conso")
    history = prepare_history(runtime)
    visit = ConsoVisit(runtime)
    try:
        kpi_before = runtime.read_kpi()
        opened = visit.open_record(contextual_call_fields(history.patient))
        statuses = [h.status for h in opened.call.hops]
        assert statuses == [303, 302, 302, 303, 200], opened.call.to_dict()  # call, page, PSC, callback, page
        page = opened.page.text()
        listed, unlisted = history.listed, history.unlisted
        assert f'data-study="{listed.study.study_uid}"' in page and "images reçues" in page
        assert "absente de la liste blanche" in page and f'data-kos="{unlisted.kos_uid}"' in page
        assert len(checks.kpi_lines(runtime.read_kpi())) == len(checks.kpi_lines(kpi_before)) + 1

        peers = runtime.sims["peers"]
        served = [r for r in peers[listed.peer].requests if r["status"] == 200]
        # four series of the varied study, one of the second study, each asked with its own study's KOS
        assert len(served) == 5 and all(r["transfer_syntax"] == "1.2.840.10008.1.2.4.70" for r in served)
        assert {r["kos_sop_uid"] for r in served if r["study"] == history.second.study.study_uid} == \
            {history.second.kos_uid}
        assert not peers[unlisted.peer].requests  # never contacted, under its own name or a look-alike one
        assert len(history.lookalikes) == 5 and all(f'data-kos="{s.kos.kos_uid}"' in page
                                                     for s in history.lookalikes.values())
        proxy = runtime.sims["proxy"]
        assert any(r.get("route") == "psc" and r["path"].endswith("/token") and r["tls"]["client_cert"]
                   for r in proxy.requests)  # the code was exchanged through the proxy, in mTLS

        nav = visit.export(opened, listed.study.study_uid)
        assert nav.final.status == 200 and 'data-instances="7"' in nav.final.text()
        pacs, datasets = exported_study(runtime, listed.study.study_uid, 7, 2.0)
        expected = dict(checks.instance_facts(ds) for ds in listed.study.datasets())
        exported = dict(checks.instance_facts(ds) for ds in datasets)
        assert pacs == "PACS-1"
        assert checks.export_complete(expected, exported, served, pacs)[0].verdict is Verdict.PASS
        assert checks.export_identity(expected, exported)[0].verdict is Verdict.PASS
    finally:
        visit.close()


def test_forged_callback_state_is_refused(runtime) -> None:
    """The callback answers 400 to a state this browser session never received (CSRF on the login)."""
    from simulators.conso_visit import ConsoVisit

    visit = ConsoVisit(runtime)
    try:
        addr = runtime.dut_address("conso")
        nav = visit.browser.open(f"http://{addr.host}:{addr.port}/api/auth/redirect?state=forged&code=x", label="forge")
        assert nav.final.status == 400
    finally:
        visit.close()
