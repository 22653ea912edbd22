"""Checks of the Conso function and of the image exchange (drimcheck/checks/conso.py): every one can fail."""

from __future__ import annotations

import pytest

from drimcheck.checks import conso as c
from drimcheck.net import Exchange
from drimcheck.verdicts import Verdict
from drimcheck.wado import ANS_SAMPLE_ACCEPT


def ex(status: int | None = 200, body: bytes = b"", headers: list | None = None, error: str | None = None) -> Exchange:
    return Exchange("t", "GET", "http://x/", "x", "now", [], status=status, response_headers=headers or [],
                    response_body=body, error=error)


def verdicts(findings) -> list[Verdict]:
    return [f.verdict for f in findings]


def dicom_multipart(uids: list[str]) -> Exchange:
    import io

    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    parts = b""
    for uid in uids:
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPInstanceUID = uid
        ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        ds.SOPInstanceUID = uid
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        parts += b"--b\r\nContent-Type: application/dicom\r\n\r\n" + buf.getvalue() + b"\r\n"
    return ex(200, parts + b"--b--\r\n", [("content-type", 'multipart/related; type="application/dicom"; boundary=b')])


# ------------------------------------------------------------------------------------------- CON-01 / CON-06


def test_con01() -> None:
    assert verdicts(c.contextual_call_redirects(ex(303, headers=[("location", "/ui?uuid=1")]))) == [Verdict.PASS]
    assert verdicts(c.contextual_call_redirects(ex(302, headers=[("location", "/ui")]))) == [Verdict.PASS]
    assert verdicts(c.contextual_call_redirects(ex(200, b"ok"))) == [Verdict.FAIL]
    assert verdicts(c.contextual_call_redirects(ex(303))) == [Verdict.FAIL]  # no Location
    assert verdicts(c.contextual_call_redirects(ex(None, error="connection refused"))) == [Verdict.ERROR]
    assert verdicts(c.contextual_call_refused(ex(400), "sans INS")) == [Verdict.PASS]
    assert verdicts(c.contextual_call_refused(ex(303, headers=[("location", "/x")]), "sans INS")) == [Verdict.FAIL]
    assert verdicts(c.contextual_call_refused(ex(422), "sans INS")) == [Verdict.FAIL]


def test_con06_kpi_lines() -> None:
    before = "2026-01-01T00:00:00Z;ModelStat;Nombre_Appel=1;Statut_Appel=succes\n"
    good = before + "x;ModelStat;Nombre_Appel=1;Statut_Appel=succes\nx;ModelStat;Nombre_Appel=1;Statut_Appel=erreur\n"
    calls = [("a", "succes"), ("b", "erreur")]
    assert verdicts(c.kpi_written(before, good, calls)) == [Verdict.PASS]
    assert verdicts(c.kpi_written(before, before, calls)) == [Verdict.FAIL]  # no line
    swapped = before + "Nombre_Appel=1 Statut_Appel=erreur\nNombre_Appel=1 Statut_Appel=succes\n"
    assert verdicts(c.kpi_written(before, swapped, calls)) == [Verdict.FAIL]
    twice = before + "Nombre_Appel=2;Statut_Appel=succes\nNombre_Appel=1;Statut_Appel=erreur\n"
    assert verdicts(c.kpi_written(before, twice, calls)) == [Verdict.FAIL]
    assert c.kpi_lines('{"Nombre_Appel": 1, "Statut_Appel": "succès"}')[0]["status"] == "succes"  # JSON-ish, accents


# ------------------------------------------------------------------------------------------- CON-02

EXPECTED = {"nom-naissance": "MARCHAND-DUVAL", "premier-prenom-naissance": "JÉRÔME", "date-naissance": "1987-03-12",
            "sexe": "M", "lieu-naissance": "75056", "matricule-ins": "187037505600112", "oid-ins": "1.2.250.1.213.1.4.10",
            "prenoms-naissance": "JÉRÔME MARIE", "prenom-utilise": None, "nom-utilise": None}
LABELS = {"nom-naissance": "Nom de naissance", "premier-prenom-naissance": "Premier prénom de naissance",
          "date-naissance": "Date de naissance", "sexe": "Sexe", "lieu-naissance": "Lieu de naissance",
          "matricule-ins": "Matricule INS", "oid-ins": "OID", "prenoms-naissance": "Liste des prénoms de naissance",
          "prenom-utilise": "Prénom utilisé", "nom-utilise": "Nom utilisé"}
SHOWN = dict(EXPECTED, **{"date-naissance": "12/03/1987", "prenom-utilise": "JÉRÔME", "nom-utilise": "MARCHAND-DUVAL"})


def page(marked: bool, drop: tuple[str, ...] = (), change: dict | None = None) -> Exchange:
    values = dict(SHOWN, **(change or {}))
    if marked:
        rows = "".join(f'<tr><th>{LABELS[k]}</th><td data-ins-trait="{k}">{v}</td></tr>'
                       for k, v in values.items() if k not in drop)
    else:
        rows = "".join(f"<p>{LABELS[k]} : {v}</p>" for k, v in values.items() if k not in drop)
    return ex(200, f"<html><body><table>{rows}</table><script>var x='Nom utilisé';</script></body></html>".encode())


@pytest.mark.parametrize("marked", [True, False])
def test_con02_ins_traits(marked: bool) -> None:
    assert verdicts(c.ins_traits_displayed(page(marked), EXPECTED)) == [Verdict.PASS]
    missing = c.ins_traits_displayed(page(marked, drop=("lieu-naissance", "nom-utilise")), EXPECTED)
    assert verdicts(missing) == [Verdict.FAIL] and "lieu de naissance" in missing[0].message
    assert "nom utilisé" in missing[0].message  # the text inside <script> does not count
    wrong = c.ins_traits_displayed(page(marked, change={"date-naissance": "13/03/1987"}), EXPECTED)
    assert verdicts(wrong) == [Verdict.FAIL]
    assert verdicts(c.ins_traits_displayed(ex(500), EXPECTED)) == [Verdict.ERROR]


def test_con02_first_given_name_is_not_the_birth_name_label() -> None:
    """« Premier prénom de naissance » alone must not count as « nom de naissance »."""
    body = "".join(f"<p>{LABELS[k]} : {SHOWN[k]}</p>" for k in SHOWN if k != "nom-naissance")
    found = c.ins_traits_displayed(ex(200, body.encode()), dict(EXPECTED, **{"nom-naissance": None}))
    assert verdicts(found) == [Verdict.FAIL] and "absents : nom de naissance" in found[0].message


def test_con02_sex_variants() -> None:
    assert verdicts(c.ins_traits_displayed(page(True, change={"sexe": "Masculin"}), EXPECTED)) == [Verdict.PASS]
    assert verdicts(c.ins_traits_displayed(page(True, change={"sexe": "F"}), EXPECTED)) == [Verdict.FAIL]


# ------------------------------------------------------------------------------------------- CON-04, PSC-02, MTLS-02, WL-06

STUDY, SERIES, KOS = "1.2.3", "1.2.3.4", "1.2.3.9"
URL = f"https://db7.350.mesimagesmedicales.fr/dicom-web-rs/studies/{STUDY}/series/{SERIES}"
CERT = {"subject": "CN=db1.349.mesimagesmedicales.fr,OU=1,O=X,C=FR", "issuer": "CN=IGC", "client_auth_eku": True}


def record(**kw) -> dict:
    base = {"method": "GET", "path": f"/dicom-web-rs/studies/{STUDY}/series/{SERIES}", "study": STUDY,
            "accept": ANS_SAMPLE_ACCEPT, "kos_sop_uid": KOS, "token": {"fingerprint": "fp", "format": "jwt"},
            "headers": [], "tls": {"client_cert": CERT}, "introspection": {"active": True}, "status": 200,
            "served_instances": ["1", "2"], "host": "db7.350.mesimagesmedicales.fr"}
    base.update(kw)
    return base


def test_con04_headers() -> None:
    ok = c.wado_request_headers([record()], {STUDY: KOS}, [URL])
    assert verdicts(ok) == [Verdict.PASS]
    assert verdicts(c.wado_request_headers([record(path=record()["path"] + "/instances/5")], {STUDY: KOS}, [URL])) == \
        [Verdict.PASS]
    for bad in (dict(token=None), dict(kos_sop_uid=None), dict(kos_sop_uid="9.9"), dict(accept="application/json"),
                dict(accept='multipart/related; type="application/dicom'), dict(path="/other/studies/1")):
        assert verdicts(c.wado_request_headers([record(**bad)], {STUDY: KOS}, [URL])) == [Verdict.FAIL], bad
    # valid under DICOM PS3.18 but not the ANS validator sample's shape (what the PoC Source parses): a warning
    for other in ("*/*", 'multipart/related; type="application/dicom"',
                  'multipart/related; type="application/dicom"; transfer-syntax=*'):
        assert verdicts(c.wado_request_headers([record(accept=other)], {STUDY: KOS}, [URL])) == [Verdict.WARN], other
    assert verdicts(c.wado_request_headers([], {STUDY: KOS}, [URL])) == [Verdict.FAIL]


def test_psc02_token() -> None:
    tokens = {"fp": {"kind": "access", "sid": "s1", "claims": {"sub": "f:1"}}}
    assert verdicts(c.presented_token_active([record()], tokens, {"s1"}, "f:1")) == [Verdict.PASS]
    assert verdicts(c.presented_token_active([record()], {}, {"s1"}, "f:1")) == [Verdict.FAIL]  # unknown to PSC
    id_token = {"fp": {"kind": "id", "sid": "s1", "claims": {"sub": "f:1"}}}
    assert verdicts(c.presented_token_active([record()], id_token, {"s1"}, "f:1")) == [Verdict.FAIL]
    assert verdicts(c.presented_token_active([record()], tokens, {"s2"}, "f:1")) == [Verdict.FAIL]  # other session
    inactive = record(introspection={"active": False})
    assert verdicts(c.presented_token_active([inactive], tokens, {"s1"}, "f:1")) == [Verdict.FAIL]
    assert verdicts(c.presented_token_active([record(token=None)], tokens, {"s1"}, "f:1")) == [Verdict.SKIP]


def test_mtls02_client_certificate() -> None:
    own = ["db1.349.mesimagesmedicales.fr"]
    assert verdicts(c.client_certificate_presented([record()], own)) == [Verdict.PASS]
    assert verdicts(c.client_certificate_presented([record(tls={"client_cert": None})], own)) == [Verdict.FAIL]
    other = dict(CERT, subject="CN=db9.349.mesimagesmedicales.fr,O=X")
    assert verdicts(c.client_certificate_presented([record(tls={"client_cert": other})], own)) == [Verdict.FAIL]
    server_only = dict(CERT, client_auth_eku=False)
    assert verdicts(c.client_certificate_presented([record(tls={"client_cert": server_only})], own)) == [Verdict.FAIL]
    assert verdicts(c.client_certificate_presented([], own)) == [Verdict.SKIP]


def test_wl06_only_listed_sources() -> None:
    listed, unlisted = ["db7.350.mesimagesmedicales.fr"], "db2.351.mesimagesmedicales.fr"
    assert verdicts(c.only_listed_sources_contacted([record()], listed, unlisted, 1.0)) == [Verdict.PASS]
    stray = [record(), record(host=unlisted)]
    assert verdicts(c.only_listed_sources_contacted(stray, listed, unlisted, 1.0)) == [Verdict.FAIL]
    assert verdicts(c.only_listed_sources_contacted([], listed, unlisted, 1.0)) == [Verdict.SKIP]  # control


# ------------------------------------------------------------------------------------------- CON-05 / CON-07


def facts(pixels: str = "p", pid: str = "IPP1") -> dict:
    return {"series": SERIES, "pixels": pixels, "identity": {"PatientID": pid, "PatientName": "A^B"}}


def test_con05_export_complete() -> None:
    expected = {"1": facts(), "2": facts()}
    served = [record(served_instances=["1", "2"])]
    assert verdicts(c.export_complete(expected, dict(expected), served, "PACS-1")) == [Verdict.PASS]
    assert verdicts(c.export_complete(expected, {"1": facts()}, served, "PACS-1")) == [Verdict.FAIL]
    assert verdicts(c.export_complete(expected, {"1": facts(), "2": facts("q")}, served, "PACS-1")) == [Verdict.FAIL]
    assert verdicts(c.export_complete(expected, {}, [record(status=401, served_instances=[])], "PACS-1")) == \
        [Verdict.SKIP]  # the Source refused the DUT: judged by CON-04 / PSC-02 / MTLS-02


def test_con07_identity() -> None:
    expected = {"1": facts()}
    assert verdicts(c.export_identity(expected, {"1": facts()})) == [Verdict.PASS]
    assert verdicts(c.export_identity(expected, {"1": facts(pid="CIPP9")})) == [Verdict.FAIL]
    assert verdicts(c.export_identity(expected, {})) == [Verdict.SKIP]


def test_instance_facts_digest_native_pixels() -> None:
    from simulators.pacs import make_study

    ds = next(make_study("facts", n_series=1, n_instances=1).datasets())
    uid, f = c.instance_facts(ds)
    assert uid == ds.SOPInstanceUID and f["identity"]["PatientID"] == ds.PatientID and len(f["pixels"]) == 64
    assert ds.OtherPatientIDsSequence[0].PatientID in f["identity"]["OtherPatientIDs"]


# ------------------------------------------------------------------------------------------- PSC-01 / WADO-01


def test_source_refusals_need_a_served_control() -> None:
    served = dicom_multipart(["1.2.3.4.5"])
    assert verdicts(c.token_refused(ex(401), "sans jeton", served)) == [Verdict.PASS]
    assert verdicts(c.token_refused(served, "sans jeton", served)) == [Verdict.FAIL]
    assert verdicts(c.token_refused(ex(403), "sans jeton", served)) == [Verdict.FAIL]  # refused, wrong status
    assert verdicts(c.token_refused(ex(None, error="connection reset"), "sans jeton", served)) == [Verdict.FAIL]
    assert verdicts(c.token_refused(ex(401), "sans jeton", ex(500))) == [Verdict.SKIP]  # serves nobody: inconclusive
    assert verdicts(c.request_refused(ex(410), "instance disparue", 410, served)) == [Verdict.PASS]
    assert verdicts(c.request_refused(ex(404), "instance disparue", 410, served)) == [Verdict.FAIL]
    assert verdicts(c.request_refused(served, "sans KOS", 400, served)) == [Verdict.FAIL]


# ------------------------------------------------------------------------------------------- PSC-03


def test_psc03_login_and_forged_return() -> None:
    good = {"client_id": "dut", "response_type": "code", "scope": "openid scope_all", "state_present": True,
            "nonce_present": True}
    assert verdicts(c.login_requested([{"facts": good}], "dut")) == [Verdict.PASS]
    assert verdicts(c.login_requested([{"facts": dict(good, state_present=False)}], "dut")) == [Verdict.FAIL]
    assert verdicts(c.login_requested([{"facts": dict(good, nonce_present=False)}], "dut")) == [Verdict.FAIL]
    assert verdicts(c.login_requested([{"facts": good}], "other")) == [Verdict.FAIL]  # never sent to PSC
    assert verdicts(c.forged_return_refused(ex(400), [])) == [Verdict.PASS]
    redeemed = [{"facts": {"grant_type": "authorization_code", "outcome": "invalid_grant"}}]
    assert verdicts(c.forged_return_refused(ex(401), redeemed)) == [Verdict.FAIL]  # refused, but the code was used
    assert verdicts(c.forged_return_refused(ex(None, error="refused"), [])) == [Verdict.ERROR]


def test_psc03_forged_nonce(dmp_client) -> None:
    redeemed = [{"facts": {"grant_type": "authorization_code", "outcome": "ok"}}]
    exchanges, pid = _exchanges(dmp_client, ["td02", "iti18"])
    refused_page = ex(401, b"connexion refusee")
    assert verdicts(c.forged_nonce_refused(True, redeemed, [], pid, refused_page)) == [Verdict.PASS]
    assert verdicts(c.forged_nonce_refused(True, redeemed, exchanges, pid, ex(200))) == [Verdict.FAIL]
    other, _ = _exchanges(dmp_client, ["autre"])  # another patient's request is not this login's doing
    assert verdicts(c.forged_nonce_refused(True, redeemed, other, pid, refused_page)) == [Verdict.PASS]
    assert verdicts(c.forged_nonce_refused(True, [], [], pid, refused_page)) == [Verdict.SKIP]
    assert verdicts(c.forged_nonce_refused(False, [], [], pid, None)) == [Verdict.ERROR]


# ------------------------------------------------------------------------------------------- CON-08


@pytest.fixture(scope="module")
def dmp_client(tmp_path_factory):
    """The reference Conso's DMP request builders (no network: the requests go straight to DmpSimulator.handle)."""
    from types import SimpleNamespace

    from fixtures.pki import TestPKI
    from simulators.drimbox import conso_dmp

    pki = TestPKI(tmp_path_factory.mktemp("pki") / "pki")

    def creds(i):
        return {"cert": str(i.cert_path), "key": str(i.key_path), "chain": str(i.chain_path)}

    config = SimpleNamespace(peers={"dmp": {"registry_url": "https://dmp/r", "repository_url": "https://dmp/p"}},
                             certs={"org_auth_cli": creds(pki.org_auth_cli()), "org_sign": creds(pki.org_sign())},
                             trust={"igc_chain": str(pki.igc_chain_pem)}, hosts={})
    who = conso_dmp.Practitioner("899700990349", "CLAIRE", "RADIOLOGUE", "10", "SM44", "300000009990349", "SA07", "X")
    return conso_dmp.DmpConsultation(config), who


def _exchanges(dmp_client, steps: list[str], pid: str = "1840499000001^^^&1.2.250.1.213.1.4.10&ISO^NH",
               record: str = "ouvert"):
    """Send the reference client's requests, in this order, to a fresh DMP simulator; its exchanges."""
    from lxml import etree

    from simulators.dmp import DmpSimulator

    client, who = dmp_client
    sim = DmpSimulator()
    sim.set_record(pid, record)
    for step in steps:
        env, service = {"td02": (lambda: client.existence_request(who, pid), "patients"),
                        "td02-registry": (lambda: client.existence_request(who, pid), "registry"),
                        "iti18": (lambda: client.query_request(who, pid), "registry"),
                        "autre": (lambda: client.existence_request(who, "2990199000002^^^&1.2.250.1.213.1.4.10&ISO^NH"),
                                  "patients")}[step]
        sim.handle(f"/x/{service}", "application/soap+xml", etree.tostring(env(), xml_declaration=True), b"cert")
    return sim.snapshot(), pid


def test_con08_access_tested_before_search(dmp_client) -> None:
    assert verdicts(c.dmp_access_tested(*_exchanges(dmp_client, ["td02", "iti18"]))) == [Verdict.PASS]
    for steps in (["iti18"], ["iti18", "td02"], ["autre", "iti18"], ["td02-registry", "iti18"]):
        findings = c.dmp_access_tested(*_exchanges(dmp_client, steps))
        assert verdicts(findings) == [Verdict.FAIL], steps
    assert "avant le test" in c.dmp_access_tested(*_exchanges(dmp_client, ["iti18", "td02"]))[0].message
    assert "/patients" in c.dmp_access_tested(*_exchanges(dmp_client, ["td02-registry", "iti18"]))[0].message


def test_con08_denied_record_respected(dmp_client) -> None:
    page = ex(200, b"<p>le patient n'a pas de DMP</p>")
    exchanges, pid = _exchanges(dmp_client, ["td02"], record="interdit")
    assert verdicts(c.dmp_access_respected(exchanges, pid, "interdit", [], page)) == [Verdict.PASS]
    searched, _ = _exchanges(dmp_client, ["td02", "iti18"], record="interdit")
    assert verdicts(c.dmp_access_respected(searched, pid, "interdit", [], page)) == [Verdict.FAIL]
    untested, _ = _exchanges(dmp_client, ["iti18"], record="ferme")
    assert verdicts(c.dmp_access_respected(untested, pid, "fermé", [], page)) == [Verdict.FAIL]
    images = [{"host": "db7.350.mesimagesmedicales.fr", "path": "/studies/1", "status": 200}]
    assert verdicts(c.dmp_access_respected(exchanges, pid, "interdit", images, page)) == [Verdict.FAIL]
    for broken in (ex(502, b"Bad gateway"), ex(None, error="timeout"), None):
        assert verdicts(c.dmp_access_respected(exchanges, pid, "interdit", [], broken)) == [Verdict.FAIL]
    assert searched[-1].status == "Failure"  # the simulated DMP refuses the search of a forbidden record
    # another patient's requests are not this patient's
    other, _ = _exchanges(dmp_client, ["td02", "autre"], record="inexistant")
    assert verdicts(c.dmp_access_respected(other, pid, "inexistant", [], page)) == [Verdict.PASS]
