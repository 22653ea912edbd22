"""The second author's mutants (mutants-coverage.toml, `cov2-`) do what their title says, in-process and fast.

Whether the campaign kills them is the selftest's business; these tests only make sure each one really
differs from the golden DRIMbox where it claims to (a mutant that changes nothing would be a false gap).
"""

from __future__ import annotations

import asyncio
import io
from datetime import UTC, datetime
from types import SimpleNamespace
from urllib.parse import urlencode

import httpx
import pydicom
import pytest

from simulators.drimbox import conso, conso_wado, mutants, service, trust
from simulators.pacs import make_study

FIELDS = {"Patient.identifier.value": "2850275123456", "Patient.identifier.system": "urn:oid:1.2.250.1.213.1.4.10",
          "Patient.name.family": "DUPONT", "Patient.name.given": "JEANNE MARIE", "Patient.gender": "F",
          "Patient.birthDate": "1985-02-01", "Address.district": "75056", "PatientID": "IPP1",
          "PatientIDIssuer": "RIS&1.2.3&ISO", "InformationEtConsentement": "true"}


def test_contextual_call_parameter_names_lenient():
    body = urlencode({**{k: v for k, v in FIELDS.items() if k != "PatientID"}, "patientid[]": "IPP1"}).encode()
    with pytest.raises(conso.CallError, match="inconnu"):
        conso.parse_call(body)
    with mutants.running("cov2-conso-param-names-lenient"):
        assert conso.parse_call(body)["PatientID"] == "IPP1"


def test_first_given_name_shown_whole():
    params = conso.parse_call(urlencode(FIELDS).encode())
    golden = {k: v for k, _, v in conso.ins_traits(params)}
    with mutants.running("cov2-conso-ins-first-given-full"):
        mutated = {k: v for k, _, v in conso.ins_traits(params)}
    assert golden["premier-prenom-naissance"] == golden["prenom-utilise"] == "JEANNE"
    assert mutated["premier-prenom-naissance"] == mutated["prenom-utilise"] == "JEANNE MARIE"
    assert {k: v for k, v in mutated.items() if "prenom" not in k} == {k: v for k, v in golden.items() if "prenom" not in k}


def _statuses(app, paths: list[str]) -> list[int]:
    async def get_all() -> list[int]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://vi1.test") as client:
            return [(await client.get(p)).status_code for p in paths]

    return asyncio.run(get_all())


def _clear_apps():
    config = SimpleNamespace(peers={}, trust={}, endpoints={}, name="t", pacs=[])
    box = SimpleNamespace(config=config, functions=[], serves_health_in_clear=lambda: False,
                          health=lambda: (200, {"status": "UP", "checks": []}))
    box.functions = [trust.Function(box)]
    return service.build_apps(box)


@pytest.mark.parametrize("mutant,role,paths", [
    ("cov2-clr-health-path-variants", "db", ["/q/health/", "/Q/HEALTH", "/q/health/live"]),
    ("cov2-acme-stale-path-variants", "vi", ["/.well-known/acme-challenge", "/.well-known/ACME-CHALLENGE/"])])
def test_clear_http_look_alike_paths(mutant, role, paths):
    exact = ["/q/health", "/.well-known/acme-challenge/", "/.well-known/acme-challenge/Hk2v9t3bQ1fYm4c7jW0sL5n8rT2uE6aZ9pKmNbVcQz"]
    assert set(_statuses(_clear_apps()[(role, "http")], paths + exact)) <= {301, 404}
    with mutants.running(mutant):
        app = _clear_apps()[(role, "http")]
        assert _statuses(app, paths) == [200] * len(paths)
        assert set(_statuses(app, exact)) <= {301, 404}  # the exact paths stay as golden


def test_whitelist_snapshot_keeps_a_withdrawn_source():
    box = SimpleNamespace(config=SimpleNamespace(peers={}, trust={}, endpoints={}, name="t", pacs=[]))

    def listing(*hosts: str) -> trust.ListInForce:
        return trust.ListInForce((), frozenset(), frozenset(hosts), "", "", datetime.now(UTC))

    for mutant, still_contacted in ((None, False), ("cov2-conso-whitelist-snapshot", True)):
        with mutants.running(mutant):
            f = trust.Function(box)
            f.state = listing("db7.350.mesimagesmedicales.fr")
            assert f.allows_host("db7.350.mesimagesmedicales.fr")
            f.state = listing()  # the Source withdrawn by the next list
            assert f.allows_host("db7.350.mesimagesmedicales.fr") is still_contacted


def test_export_identity_lost_outside_single_frame_ct():
    def first(modality: str) -> bytes:
        ds = next(make_study(f"cov2-{modality}", n_series=1, n_instances=1, modality=modality).datasets())
        out = io.BytesIO()
        ds.save_as(out, enforce_file_format=True)
        return out.getvalue()

    ct, mr = first("CT"), first("MR")
    with mutants.running("cov2-conso-export-identity-non-ct"):
        assert conso_wado._transcode_path(ct) == ct
        kept = pydicom.dcmread(io.BytesIO(conso_wado._transcode_path(mr)))
    source = pydicom.dcmread(io.BytesIO(mr))
    assert "OtherPatientIDsSequence" in source and "IssuerOfPatientID" in source
    assert "OtherPatientIDsSequence" not in kept and "IssuerOfPatientID" not in kept
    assert kept.PatientID == source.PatientID and kept.PixelData == source.PixelData


def test_second_outage_after_a_recovery_is_hidden_for_30_s():
    link = service.PacsLink("pacs1", "db1.test", "vi1.test", "PACS1", "127.0.0.1", 1, "http://127.0.0.1:1", "u", "p")
    for mutant, second_outage in ((None, "DOWN"), ("cov2-health-up-cached-after-recovery", "UP")):
        with mutants.running(mutant):
            box = service.Drimbox(service.DrimboxConfig("t", "test", [], [link], mutant=mutant))
            pacs_up = [True]
            box.probe = SimpleNamespace(echo=lambda pacs, port=None, up=pacs_up: (up[0], "C-ECHO"))
            statuses = []
            for up in (True, False, True, False):  # up, first outage, restarted, second outage
                pacs_up[0] = up
                statuses.append(box.health()[1]["checks"][1]["status"])
            assert statuses == ["UP", "DOWN", "UP", second_outage], mutant
