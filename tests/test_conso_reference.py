"""The reference DRIMbox's Conso building blocks and the practitioner's browser, in isolation."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from fixtures.kos import build_kos
from fixtures.pki import TestPKI
from simulators.conso_visit import contextual_call_fields, export_form
from simulators.drimbox import conso, conso_dmp, conso_wado, mutants, netutil
from simulators.drimbox.psc_client import PscClient, PscError
from simulators.drimbox.wado import accept_problem
from simulators.pacs import make_patient, make_study

FIELDS = contextual_call_fields(make_patient("reference"))


# ------------------------------------------------------------------------------------------- contextual call


def test_contextual_call_parameters() -> None:
    params = conso.parse_call(urlencode(FIELDS).encode())
    assert params["Patient.identifier.value"] == dict(FIELDS)["Patient.identifier.value"]
    assert params["PatientIDIssuer"] == dict(FIELDS)["PatientIDIssuer"]  # '&' inside a value survives decoding
    poc_consent = [(k if k != "InformationEtConsentement" else "InformationEtOppositionConsultation", v)
                   for k, v in FIELDS]
    assert conso.parse_call(urlencode(poc_consent).encode())  # the PoC's name of the consent flag
    optional = FIELDS + [("Modality", "CT"), ("AccessionNumber", "ACN1"), ("Situation", "300000009990349")]
    assert conso.parse_call(urlencode(optional).encode())["Modality"] == "CT"


@pytest.mark.parametrize("body,reason", [
    (urlencode([f for f in FIELDS if f[0] != "Patient.birthDate"]), "obligatoire"),
    (urlencode([f for f in FIELDS if f[0] != "InformationEtConsentement"]), "obligatoire"),
    (urlencode(FIELDS + [("Foo", "bar")]), "inconnu"),
    (urlencode(FIELDS) + "&Modality=", "sans valeur"),
    (urlencode(FIELDS) + "&Modality", "sans valeur"),
    (urlencode(FIELDS + [("Patient.gender", "F")]), "répété"),
    ("", "obligatoire"),
])
def test_contextual_call_refusals(body: str, reason: str) -> None:
    with pytest.raises(conso.CallError, match=reason):
        conso.parse_call(body.encode())


def test_ins_traits_are_the_ten_strict_ones() -> None:
    traits = conso.ins_traits(conso.parse_call(urlencode(FIELDS).encode()))
    assert len(traits) == 10 and len({k for k, _, _ in traits}) == 10
    values = {k: v for k, _, v in traits}
    assert values["prenoms-naissance"].endswith(" MARIE") and " " not in values["premier-prenom-naissance"]
    assert values["date-naissance"].count("/") == 2 and values["oid-ins"] == "1.2.250.1.213.1.4.10"
    with mutants.running("conso-ins-traits-missing"):
        missing = conso.ins_traits(conso.parse_call(urlencode(FIELDS).encode()))
    assert len(missing) == 7


# ------------------------------------------------------------------------------------------- WADO-RS pieces


def test_accept_rules_of_the_source() -> None:
    assert accept_problem(conso_wado.ANS_ACCEPT) is None
    assert accept_problem('multipart/related; type="application/dicom";transfer-syntax=*;q=1;boundary=**') is None
    # DICOM PS3.18 §8.7: q, boundary and transfer-syntax are optional; only a broken header is refused
    for good in (None, "", "*/*", 'multipart/related; type="application/dicom"; q=0.5; boundary=x',
                 'multipart/related; type="application/dicom"; transfer-syntax=1.2; q=0.9'):
        assert accept_problem(good) is None, good
    for bad in ('multipart/related; type="application/dicom"; transfer-syntax=1.2; q=2; boundary=x',
                'multipart/related; transfer-syntax=abc; q=0.9; boundary=x', 'multipart/related; type="application',
                'multipart/related; type="application/dicom"; transfer-syntax', "dicom"):
        assert accept_problem(bad), bad


def test_split_multipart() -> None:
    body = b"--b\r\nContent-Type: application/dicom\r\n\r\nAB\r\nC\r\n--b\r\nContent-ID: <x>\r\n\r\n\r\n--b--\r\n"
    parts = netutil.split_multipart('multipart/related; boundary="b"', body)
    assert parts == [({"content-type": "application/dicom"}, b"AB\r\nC"), ({"content-id": "<x>"}, b"")]
    with pytest.raises(ValueError):
        netutil.split_multipart("multipart/related; boundary=b", body[:-8])  # truncated
    with pytest.raises(ValueError):
        netutil.split_multipart("application/dicom", body)


def test_read_kos_of_the_fixture_builder() -> None:
    study = make_study("reference-kos", n_series=2, n_instances=3)
    built = build_kos(study, {study.series[0].series_uid: "https://db7.350.mesimagesmedicales.fr/a",
                              study.series[1].series_uid: "https://db2.351.mesimagesmedicales.fr/b"})
    kos = conso_wado.read_kos(built.data)
    assert kos.sop_uid == built.sop_uid and kos.study_uid == study.study_uid and kos.patient_id == study.patient.ins
    assert kos.hosts() == ["db2.351.mesimagesmedicales.fr", "db7.350.mesimagesmedicales.fr"]
    assert [len(s.instances) for s in kos.series] == [3, 3]
    with pytest.raises(conso_wado.WadoError):
        conso_wado.read_kos(b"not dicom")


def test_wado_headers_follow_the_ans_sample_unless_mutated() -> None:
    client = conso_wado.WadoClient.__new__(conso_wado.WadoClient)  # headers only: no connection
    assert client.headers("tok", "1.2") == {"Accept": conso_wado.ANS_ACCEPT, "Authorization": "Bearer tok",
                                            "KOS-SOPInstanceUID": "1.2"}
    with mutants.running("conso-no-token"):
        assert "Authorization" not in client.headers("tok", "1.2")  # end to end: tests/test_conso_campaign.py


def test_practitioner_from_psc_userinfo() -> None:
    from simulators.psc import DEFAULT_PRACTITIONER

    info = DEFAULT_PRACTITIONER.userinfo()
    who = conso_dmp.Practitioner.from_userinfo(info)
    assert (who.name_id, who.structure_id, who.profession) == ("899700990349", "300000009990349", "10")
    assert conso_dmp.Practitioner.from_userinfo(info, "1750099903").structure_id == "1750099903"  # Situation
    assert conso_dmp.Practitioner.from_userinfo(info, "HOPITAL DRIMCHECK TEST").sector == "SA01"
    with pytest.raises(conso_dmp.ConsultationError):
        conso_dmp.Practitioner.from_userinfo({"SubjectNameID": "1"})


def test_export_form_is_found_by_action_and_study() -> None:
    page = ('<form method="post" action="/conso/export"><input type="hidden" name="uuid" value="u1">'
            '<input type="hidden" name="study" value="1.2.3"><button>Exporter</button></form>'
            '<form action="/autre"><input name="study" value="9.9"></form>')
    assert export_form(page, "1.2.3") == ("/conso/export", [("uuid", "u1"), ("study", "1.2.3")])
    assert export_form(page, "9.9") is None and export_form("", "1") is None


# ------------------------------------------------------------------------------------------- PSC client


@pytest.fixture(scope="module")
def psc(tmp_path_factory):
    from simulators.psc import PscSimulator

    pki = TestPKI(tmp_path_factory.mktemp("pki") / "pki")
    sim = PscSimulator(pki).start()
    client = sim.register_client("drimbox-dut", redirect_uris=["http://127.0.0.1:1/*"])
    yield sim, pki, client
    sim.stop()


def _client(sim, client) -> PscClient:
    cfg = SimpleNamespace(peers={"psc": sim.dut_settings("drimbox-dut")}, certs={}, hosts=sim.hosts())
    return PscClient(cfg)


def test_psc_login_verifies_the_id_token(psc) -> None:
    """Direct back channel (no proxy: client_secret_basic); the ID token's signature and nonce are checked."""
    sim, pki, client = psc
    rp = _client(sim, client)
    try:
        request = rp.authorization("http://127.0.0.1:1/cb")
        query = parse_qs(urlsplit(request.url).query)
        assert query["state"] == [request.state] and query["nonce"] == [request.nonce] and query["acr_values"] == ["eidas1"]
        from simsupport import client as mapped

        with mapped(sim.hosts(), [pki.market_trust_pem]) as h:
            back = h.get(request.url)
        code = parse_qs(urlsplit(back.headers["location"]).query)["code"][0]
        with pytest.raises(PscError, match="nonce"):  # a replayed answer with another login's nonce
            rp.complete(code, "http://127.0.0.1:1/cb", "autre-nonce")
        request = rp.authorization("http://127.0.0.1:1/cb")
        with mapped(sim.hosts(), [pki.market_trust_pem]) as h:
            code = parse_qs(urlsplit(h.get(request.url).headers["location"]).query)["code"][0]
        login = rp.complete(code, "http://127.0.0.1:1/cb", request.nonce)
        assert login.practitioner == "899700990349" and login.userinfo["SubjectRefPro"]["exercices"]
        assert rp.introspect(login.access_token)["active"] is True
        assert rp.introspect("forged")["active"] is False
        sim.revoke(login.access_token)
        assert rp.introspect(login.access_token)["active"] is False
        forged = login.id_token.rsplit(".", 1)[0] + ".c2lnbmF0dXJl"
        with pytest.raises(PscError, match="signature"):
            rp.verify_id_token(forged, request.nonce)
        # PSC issues the next login's tokens with another request's nonce: refused, unless the check is skipped
        for skip in (False, True):
            sim.forge_next_nonce()
            request = rp.authorization("http://127.0.0.1:1/cb")
            with mapped(sim.hosts(), [pki.market_trust_pem]) as h:
                code = parse_qs(urlsplit(h.get(request.url).headers["location"]).query)["code"][0]
            assert sim.requests_for("auth")[-1]["facts"]["nonce_forged"] is True
            if skip:  # the conso-nonce-unchecked mutant
                with mutants.running("conso-nonce-unchecked"):
                    assert rp.complete(code, "http://127.0.0.1:1/cb", request.nonce).access_token
            else:
                with pytest.raises(PscError, match="nonce"):
                    rp.complete(code, "http://127.0.0.1:1/cb", request.nonce)
    finally:
        rp.close()


# ------------------------------------------------------------------------------------------- browser


def test_browser_follows_redirects_keeps_cookies_and_is_bounded(tmp_path) -> None:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse, RedirectResponse
    from starlette.routing import Route

    from drimcheck import config as sut_config
    from drimcheck.browser import Browser
    from drimcheck.evidence import EvidenceStore
    from simulators.httpsim import SimServer

    async def start(request):
        resp = RedirectResponse("/next", status_code=303)
        resp.set_cookie("sid", "abc")
        return resp

    async def next_(request):
        return PlainTextResponse(f"cookie={request.cookies.get('sid')} method={request.method}")

    async def loop(request):
        return RedirectResponse("/loop", status_code=302)

    app = Starlette(routes=[Route("/start", start, methods=["POST"]), Route("/next", next_),
                            Route("/loop", loop)])
    with SimServer(app) as server:
        evidence = EvidenceStore(tmp_path)
        with Browser(sut_config.load(None), {}, evidence, timeout_s=2, max_redirects=3,
                     bed=[f"127.0.0.1:{server.port}", "127.0.0.1:9"]) as browser:
            nav = browser.submit(f"{server.url}/start", [("a", "b")], label="t")
            assert [h.status for h in nav.hops] == [303, 200] and nav.final.text() == "cookie=abc method=GET"
            assert all(Path(tmp_path, h.evidence).exists() for h in nav.hops)
            import json

            sent = json.loads(Path(tmp_path, nav.hops[1].evidence).read_text())["request"]["headers"]
            assert ["Cookie", "[REDACTED]"] in sent  # sent back, redacted in evidence
            looped = browser.open(f"{server.url}/loop", label="boucle")
            assert looped.error and "redirections" in looped.error and len(looped.hops) == 4
            refused = browser.open("http://127.0.0.1:9/x", label="refus")
            assert refused.error and refused.final.status is None
