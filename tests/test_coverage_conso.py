"""Conso side of the defect taxonomy (issue 9): the checks added or tightened for its axes can fail, on the defect
they are meant to catch, and the test data put in front of the Conso is what the scenarios say."""

from __future__ import annotations

import pytest

from drimcheck.checks import conso as c
from drimcheck.net import Exchange
from drimcheck.verdicts import Verdict


def verdicts(findings) -> list[Verdict]:
    return [f.verdict for f in findings]


def page(body: str) -> Exchange:
    return Exchange("t", "GET", "http://x/", "x", "now", [], status=200, response_headers=[],
                    response_body=f"<html><body>{body}</body></html>".encode())


# ------------------------------------------------------------------------------------------- CON-02: exact name traits

EXPECTED = {"nom-naissance": "MARCHAND-DUVAL", "premier-prenom-naissance": "JÉRÔME", "date-naissance": "1987-03-12",
            "sexe": "M", "lieu-naissance": "75056", "matricule-ins": "187037505600112", "oid-ins": "1.2.250.1.213.1.4.10",
            "prenoms-naissance": "JÉRÔME MARIE", "prenom-utilise": None, "nom-utilise": None}
LABELS = {"nom-naissance": "Nom de naissance", "premier-prenom-naissance": "Premier prénom de naissance",
          "date-naissance": "Date de naissance", "sexe": "Sexe", "lieu-naissance": "Lieu de naissance",
          "matricule-ins": "Matricule INS", "oid-ins": "OID de l'INS", "prenoms-naissance": "Liste des prénoms de naissance",
          "prenom-utilise": "Prénom utilisé", "nom-utilise": "Nom utilisé"}
SHOWN = dict(EXPECTED, **{"date-naissance": "12/03/1987", "prenom-utilise": "MARIE", "nom-utilise": "DUVAL"})


def traits_page(marked: bool, **change: str) -> Exchange:
    values = dict(SHOWN, **{k.replace("_", "-"): v for k, v in change.items()})
    if marked:
        return page("<table>" + "".join(f'<tr><th>{LABELS[k]}</th><td data-ins-trait="{k}">{v}</td></tr>'
                                        for k, v in values.items()) + "</table>")
    return page("".join(f"<p>{LABELS[k]} : {v}</p>" for k, v in values.items()))


@pytest.mark.parametrize("marked", [True, False])
def test_con02_name_traits_are_compared_exactly(marked: bool) -> None:
    # the patient uses its second given name: shown as « prénom utilisé », it is not the first birth given name
    assert verdicts(c.ins_traits_displayed(traits_page(marked), EXPECTED)) == [Verdict.PASS]
    for look_alike in ({"premier_prenom_naissance": "JÉRÔME MARIE"},  # the whole list as the first given name
                       {"premier_prenom_naissance": "MARIE"},  # the used (second) given name
                       {"premier_prenom_naissance": "MARIE JÉRÔME"},
                       {"prenoms_naissance": "JÉRÔME"}):  # the first given name as the list
        found = c.ins_traits_displayed(traits_page(marked, **look_alike), EXPECTED)
        assert verdicts(found) == [Verdict.FAIL], look_alike
        assert "prénom" in found[0].message


def test_con02_exact_comparison_folds_case_accents_and_separators() -> None:
    found = c.ins_traits_displayed(traits_page(True, premier_prenom_naissance="Jérôme", prenoms_naissance="Jerome, Marie",
                                               nom_naissance="marchand-duval"), EXPECTED)
    assert verdicts(found) == [Verdict.PASS]
    # a family name with another name appended is not the birth name
    found = c.ins_traits_displayed(traits_page(True, nom_naissance="MARCHAND-DUVAL DUPONT"), EXPECTED)
    assert verdicts(found) == [Verdict.FAIL] and "nom de naissance" in found[0].message


# ------------------------------------------------------------------------------------------- CON-04: each study, its own KOS

A, B = ("1.2.3", "1.2.3.4", "1.2.3.9"), ("1.2.5", "1.2.5.4", "1.2.5.9")  # (study, series, KOS)


def request(study: tuple[str, str, str], kos: str | None = None) -> dict:
    from drimcheck.wado import ANS_SAMPLE_ACCEPT

    return {"method": "GET", "path": f"/dicom-web-rs/studies/{study[0]}/series/{study[1]}", "study": study[0],
            "accept": ANS_SAMPLE_ACCEPT, "kos_sop_uid": kos or study[2], "token": {"fingerprint": "fp"}, "headers": []}


def test_con04_every_study_with_its_own_kos() -> None:
    kos = {A[0]: A[2], B[0]: B[2]}
    urls = [f"https://db7.350.mesimagesmedicales.fr/dicom-web-rs/studies/{s}/series/{se}" for s, se, _ in (A, B)]
    assert verdicts(c.wado_request_headers([request(A), request(B)], kos, urls, every_study=True)) == [Verdict.PASS]
    # the KOS of the first study sent for the second one
    reused = c.wado_request_headers([request(A), request(B, kos=A[2])], kos, urls, every_study=True)
    assert verdicts(reused) == [Verdict.FAIL] and B[2] in reused[0].message
    # only the first KOS of the record followed
    only_first = c.wado_request_headers([request(A)], kos, urls, every_study=True)
    assert verdicts(only_first) == [Verdict.FAIL] and B[0] in only_first[0].message
    assert verdicts(c.wado_request_headers([request(A)], kos, urls)) == [Verdict.PASS]  # not asked: as before


# ------------------------------------------------------------------------------------------- CON-05 / CON-07: varied study


@pytest.fixture(scope="module")
def varied() -> dict[str, dict]:
    from simulators.pacs import make_study

    return dict(c.instance_facts(ds) for ds in make_study("couverture-conso", varied=True).datasets())


def test_instance_facts_of_a_varied_study(varied: dict[str, dict]) -> None:
    from simulators.pacs.studies import BASIC_TEXT_SR, MULTIFRAME_FRAMES, MULTIFRAME_SC

    assert len(varied) == 7 and len({f["series"] for f in varied.values()}) == 4
    multi = [f for f in varied.values() if f["sop_class"] == MULTIFRAME_SC]
    report = [f for f in varied.values() if f["sop_class"] == BASIC_TEXT_SR]
    assert [f["frames"] for f in multi] == [MULTIFRAME_FRAMES] and len(multi[0]["pixels"]) == 64
    assert report[0]["pixels"] is None and report[0]["frames"] == 0 and len(report[0]["content"]) == 64
    assert all(f["content"] is None for f in varied.values() if f["sop_class"] != BASIC_TEXT_SR)


def test_con05_varied_study(varied: dict[str, dict]) -> None:
    from simulators.pacs.studies import BASIC_TEXT_SR, MULTIFRAME_SC

    served = [{"status": 200, "served_instances": list(varied)}]
    assert verdicts(c.export_complete(varied, dict(varied), served, "PACS-1")) == [Verdict.PASS]
    multi = next(u for u, f in varied.items() if f["sop_class"] == MULTIFRAME_SC)
    report = next(u for u, f in varied.items() if f["sop_class"] == BASIC_TEXT_SR)
    dropped = c.export_complete(varied, {u: f for u, f in varied.items() if u != multi}, served, "PACS-1")
    assert verdicts(dropped) == [Verdict.FAIL] and "multi-frame" in dropped[0].message
    no_report = c.export_complete(varied, {u: f for u, f in varied.items() if u != report}, served, "PACS-1")
    assert verdicts(no_report) == [Verdict.FAIL] and "non-image" in no_report[0].message
    for uid, change in ((multi, {"frames": 1}), (report, {"content": "0" * 64}),
                        (multi, {"sop_class": "1.2.840.10008.5.1.4.1.1.7"})):
        altered = dict(varied, **{uid: dict(varied[uid], **change)})
        found = c.export_complete(varied, altered, served, "PACS-1")
        assert verdicts(found) == [Verdict.FAIL] and next(iter(change)) in found[0].message, change


def test_con07_identity_of_every_kind_of_object(varied: dict[str, dict]) -> None:
    from simulators.pacs.studies import BASIC_TEXT_SR

    assert verdicts(c.export_identity(varied, dict(varied))) == [Verdict.PASS]
    report = next(u for u, f in varied.items() if f["sop_class"] == BASIC_TEXT_SR)
    relabelled = dict(varied, **{report: dict(varied[report], identity=dict(varied[report]["identity"], PatientID="C1"))})
    assert verdicts(c.export_identity(varied, relabelled)) == [Verdict.FAIL]


# ------------------------------------------------------------------------------------------- WL-06: look-alikes, withdrawal


def test_wl06_lookalike_host() -> None:
    hit = {"host_header": "db70.350.mesimagesmedicales.fr", "tls": {"sni": "db70.350.mesimagesmedicales.fr"},
           "path": "/dicom-web-rs/studies/1/series/2"}
    found = c.lookalike_not_contacted("suffixe", "db70.350.mesimagesmedicales.fr", "db70.350.mesimagesmedicales.fr",
                                      [hit], listed_contacted=True, window_s=1.0)
    assert verdicts(found) == [Verdict.FAIL] and "suffixe" in found[0].message and "SNI" in found[0].message
    args = ("préfixe", "xdb7.350.mesimagesmedicales.fr", "xdb7.350.mesimagesmedicales.fr", [])
    assert verdicts(c.lookalike_not_contacted(*args, listed_contacted=True, window_s=1.0)) == [Verdict.PASS]
    assert verdicts(c.lookalike_not_contacted(*args, listed_contacted=False, window_s=1.0)) == [Verdict.SKIP]


def test_wl06_withdrawn_source() -> None:
    host = "db7.350.mesimagesmedicales.fr"
    late = [{"host_header": host, "tls": {"sni": host}}]
    found = c.withdrawn_source_not_contacted(host, late, contacted_before=True, kos_retrieved=True, window_s=1.0)
    assert verdicts(found) == [Verdict.FAIL] and "retirée" in found[0].message
    assert verdicts(c.withdrawn_source_not_contacted(host, [], contacted_before=True, kos_retrieved=True,
                                                     window_s=1.0)) == [Verdict.PASS]
    # controls: never contacted while listed, or the later KOS not even read: nothing to conclude
    assert verdicts(c.withdrawn_source_not_contacted(host, [], contacted_before=False, kos_retrieved=True,
                                                     window_s=1.0)) == [Verdict.SKIP]
    assert verdicts(c.withdrawn_source_not_contacted(host, [], contacted_before=True, kos_retrieved=False,
                                                     window_s=1.0)) == [Verdict.SKIP]


# ------------------------------------------------------------------------------------------- test data


def test_lookalike_hosts_are_unlisted_names_of_the_listed_registry_domain() -> None:
    from urllib.parse import urlsplit

    from simulators.peers import DEFAULT_PEERS, LOOKALIKE_HOSTS, UNLISTED_PEER, WHITELISTED_PEER

    domain = WHITELISTED_PEER.partition(".")[2]
    for case, (authority, host) in LOOKALIKE_HOSTS.items():
        parsed = urlsplit(f"https://{authority}/x").hostname or ""
        assert parsed == host.lower(), case  # what a URL parser says the host is
        assert host.rstrip(".").lower() != WHITELISTED_PEER and host.rstrip(".").endswith("." + domain), case
    unlisted = next(s for s in DEFAULT_PEERS if s.fqdn == UNLISTED_PEER)
    assert not unlisted.whitelisted and set(unlisted.aliases) == {h for _, h in LOOKALIKE_HOSTS.values()}
    assert "ԁb7." + domain == LOOKALIKE_HOSTS["confusable Unicode"][1].encode("ascii").decode("idna")


def test_peer_answers_under_its_aliases(tmp_path) -> None:
    from cryptography import x509

    from fixtures.pki import TestPKI
    from simulators.peer_source import PeerSource

    pki = TestPKI(tmp_path / "pki")
    peer = PeerSource(pki, None, fqdn="db2.351.mesimagesmedicales.fr",
                      aliases=("db72.350.mesimagesmedicales.fr.", "xn--b7-32c.350.mesimagesmedicales.fr"))
    hosts = peer.hosts()
    assert set(hosts) == {"db2.351.mesimagesmedicales.fr", "db72.350.mesimagesmedicales.fr.",
                          "db72.350.mesimagesmedicales.fr", "xn--b7-32c.350.mesimagesmedicales.fr",
                          "ԁb7.350.mesimagesmedicales.fr"}
    assert len(set(hosts.values())) == 1
    san = peer.cert.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["db2.351.mesimagesmedicales.fr", "db72.350.mesimagesmedicales.fr",
                                                     "xn--b7-32c.350.mesimagesmedicales.fr"]


def test_lookalike_base_keeps_the_peer_port_and_path() -> None:
    from types import SimpleNamespace

    from simulators.conso_visit import lookalike_base

    portless = SimpleNamespace(base_url="https://db2.351.mesimagesmedicales.fr", base_path="/dicom-web-rs")
    assert lookalike_base(portless, "xdb7.350.mesimagesmedicales.fr") == "https://xdb7.350.mesimagesmedicales.fr/dicom-web-rs"
    ported = SimpleNamespace(base_url="https://db2.351.mesimagesmedicales.fr:8443", base_path="/dicom-web-rs")
    assert lookalike_base(ported, "a:443@b.fr") == "https://a:443@b.fr:8443/dicom-web-rs"


def test_the_reference_refuses_look_alike_parameter_names() -> None:
    """The golden DRIMbox refuses what the CON-01 look-alike rows send (else its campaign could not be CONFORME)."""
    from urllib.parse import urlencode

    from simulators.conso_visit import contextual_call_fields
    from simulators.drimbox.conso import CallError, parse_call
    from simulators.pacs import make_patient

    fields = contextual_call_fields(make_patient("couverture-appel"))
    parse_call(urlencode(fields).encode())
    for name in ("patient.identifier.value", "Patient.identifier.values"):
        renamed = [(name if k == "Patient.identifier.value" else k, v) for k, v in fields]
        with pytest.raises(CallError):
            parse_call(urlencode(renamed).encode())
