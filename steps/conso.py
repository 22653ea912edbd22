"""Steps of the Conso features (features/conso/): the RIS, the practitioner and the peers around the DUT.

What they arrange and trigger lives in simulators/conso_visit.py (patient history, contextual call,
browser) and simulators/peer_conso.py (drimcheck as a calling peer); what they judge is in
drimcheck/checks/conso.py. The practitioner's visit and the Source-side access material are made once
per campaign (`campaign.shared`) and judged by several scenarios.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from pytest_bdd import given, parsers, then, when

from drimcheck.checks import conso as checks
from drimcheck.checks.xds import TrustMaterial
from drimcheck.plugin import HarnessError

CALL_DEFECTS = {
    "sans Patient.identifier.value": lambda f: [(k, v) for k, v in f if k != "Patient.identifier.value"],
    "sans consentement": lambda f: [(k, v) for k, v in f if k != "InformationEtConsentement"],
    "avec un paramètre inconnu": lambda f: f + [("Patient.name.prefix", "M.")],
    "avec une valeur vide": lambda f: [(k, "" if k == "Patient.name.family" else v) for k, v in f],
    # look-alike names: the mandatory parameter is absent, a parameter of another name is there instead
    "avec Patient.identifier.value écrit en minuscules":
        lambda f: [("patient.identifier.value" if k == "Patient.identifier.value" else k, v) for k, v in f],
    "avec un suffixe au nom Patient.identifier.value":
        lambda f: [("Patient.identifier.values" if k == "Patient.identifier.value" else k, v) for k, v in f],
}


# ------------------------------------------------------------------------------------------ campaign state


@dataclass
class ConsoState:
    """Once per campaign: the patient's history, the visit of the practitioner, the export."""

    visit: Any = None  # simulators.conso_visit.ConsoVisit (browser session)
    history: Any = None
    opened: Any = None  # Visit
    fields: list = field(default_factory=list)
    export: Any = None  # (navigation, PACS name, datasets)

    def close(self) -> None:  # called when the campaign stops (CampaignRuntime.shared)
        self.visit.close()


def _conso(campaign) -> ConsoState:
    if "conso" not in campaign.sut.roles:
        pytest.skip("la DRIMbox testée n'a pas le rôle Conso")
    state = campaign.shared.get("conso")
    if state is None:
        from simulators.conso_visit import ConsoVisit

        state = campaign.shared["conso"] = ConsoState(ConsoVisit(campaign))
    return state


def _unified(campaign) -> ConsoState:
    state = _conso(campaign)
    if state.opened is None:
        raise HarnessError("défaut du scénario : le dossier n'a pas été ouvert")
    return state


# ------------------------------------------------------------------------------------------ contextual call


@pytest.fixture
def call_fields():
    from simulators.conso_visit import contextual_call_fields
    from simulators.pacs import make_patient

    return contextual_call_fields(make_patient("conso-appel"))


@when("le RIS envoie un appel contextuel complet", target_fixture="call_answer")
def valid_call(campaign, call_fields):
    return _conso(campaign).visit.call(call_fields, "appel-contextuel-complet").first


@then("la DRIMbox redirige le navigateur vers son interface (302 ou 303)")
def redirected(campaign, call_answer, judge):
    judge(checks.contextual_call_redirects(call_answer, _conso(campaign).visit.own_interface()))


@when(parsers.parse("le RIS envoie un appel contextuel mal formé : {defect}"), target_fixture="bad_call")
def invalid_call(campaign, call_fields, defect):
    if defect not in CALL_DEFECTS:
        raise HarnessError(f"défaut d'appel contextuel inconnu : « {defect} » (connus : {', '.join(CALL_DEFECTS)})")
    return defect, _conso(campaign).visit.call(CALL_DEFECTS[defect](call_fields), "appel-" + defect).first


@then("la DRIMbox le refuse en HTTP 400")
def refused_400(bad_call, judge):
    defect, ex = bad_call
    judge(checks.contextual_call_refused(ex, defect))


@given("drimcheck a relevé les indicateurs ModelStat de la DRIMbox", target_fixture="kpi_before")
def kpi_before(campaign):
    _conso(campaign)
    return campaign.read_kpi()


@when("le RIS envoie un appel contextuel complet puis un appel sans Patient.identifier.value", target_fixture="kpi_calls")
def two_calls(campaign, call_fields):
    """The expected Statut_Appel follows what the DUT answered (accepted: succes; refused: erreur): whether it
    should have refused the call is CON-01's concern."""
    visit = _conso(campaign).visit
    out = []
    for what, fields in (("appel complet", call_fields),
                         ("appel sans Patient.identifier.value", CALL_DEFECTS["sans Patient.identifier.value"](call_fields))):
        ex = visit.call(fields, "kpi-" + what.replace(" ", "-")).first
        accepted = ex is not None and ex.status is not None and ex.status < 400
        out.append((f"{what} ({'accepté' if accepted else 'refusé'})", "succes" if accepted else "erreur"))
    return out


@then("une ligne ModelStat est ajoutée par appel, avec le statut de l'appel")
def kpi_lines_added(campaign, kpi_before, kpi_calls, judge):
    deadline = time.monotonic() + campaign.sut.timeouts.request_s
    after = campaign.read_kpi()
    while len(checks.kpi_lines(after)) < len(checks.kpi_lines(kpi_before)) + len(kpi_calls) and \
            time.monotonic() < deadline and campaign.sut.hooks.get("kpi"):
        time.sleep(0.2)  # an external DUT may write its KPI file asynchronously
        after = campaign.read_kpi()
    campaign.evidence.write_text("indicateurs-modelstat", after)
    judge(checks.kpi_written(kpi_before, after, kpi_calls))


# ------------------------------------------------------------------------------------------ consultation


@given("le DMP détient pour un patient les KOS de deux études d'une Source listée, celui d'une Source absente de la "
       "liste blanche et ceux d'hôtes ressemblant à la Source listée")
def history(campaign):
    state = _conso(campaign)
    if state.history is None:
        from simulators.conso_visit import prepare_history

        for sim in ("whitelist",):
            endpoint = campaign.sims.get(sim)
            if endpoint is not None:
                endpoint.ensure_nominal(campaign)
        try:
            state.history = prepare_history(campaign)
        except Exception as exc:  # noqa: BLE001 - test data that cannot be put in place is a harness error
            raise HarnessError(f"préparation du dossier du patient impossible : {type(exc).__name__}: {exc}") from None
        campaign.evidence.write_json("dossier-dmp", {
            "patient": state.history.patient.ins,
            "kos": [{"source": k.peer, "kos": k.kos_uid, "etude": k.study.study_uid, "retrieve_urls": k.retrieve_urls}
                    for k in (*state.history.listed_kos(), state.history.unlisted)],
            "sosies": [{"cas": s.case, "hote": s.host, "kos": s.kos.kos_uid, "etude": s.kos.study.study_uid,
                        "retrieve_urls": s.kos.retrieve_urls} for s in state.history.lookalikes.values()]})


@given("un praticien a ouvert le dossier de ce patient depuis le RIS par appel contextuel")
def opened(campaign):
    state = _conso(campaign)
    if state.opened is None:
        from simulators.conso_visit import contextual_call_fields

        state.fields = contextual_call_fields(state.history.patient)
        state.opened = state.visit.open_record(state.fields)
        campaign.evidence.write_json("navigation", state.opened.call.to_dict())
    if state.opened.page is None:
        nav = state.opened.call
        final = nav.final
        raise HarnessError(f"dossier du patient non affiché : {nav.error or ''} dernière étape "
                           f"{final.method + ' ' + final.url if final else '(aucune)'} -> "
                           f"{final.status if final else '-'} (voir l'évidence de navigation)")


def _peer_requests(campaign, state: ConsoState, fqdn: str) -> list[dict]:
    peer = campaign.simulator("peers")[fqdn]
    mark = state.opened.marks.peers.get(fqdn, 0)
    return [r for r in peer.requests if r["seq"] > mark]


def _listed_requests(campaign, state: ConsoState) -> list[dict]:
    return _peer_requests(campaign, state, state.history.listed.peer)


@then("la page affiche les dix traits stricts de l'INS du patient")
def ins_traits(campaign, judge):
    state = _unified(campaign)
    fields = dict(state.fields)
    given_names = fields["Patient.name.given"]
    expected = {"nom-naissance": fields["Patient.name.family"], "premier-prenom-naissance": given_names.split()[0],
                "date-naissance": fields["Patient.birthDate"], "sexe": fields["Patient.gender"],
                "lieu-naissance": fields["Address.district"], "matricule-ins": fields["Patient.identifier.value"],
                "oid-ins": fields["Patient.identifier.system"], "prenoms-naissance": given_names,
                "prenom-utilise": None, "nom-utilise": None}
    judge(checks.ins_traits_displayed(state.opened.page, expected))


@then("l'appel contextuel a été redirigé vers l'interface de la DRIMbox")
def visit_redirected(campaign, judge):
    judge(checks.contextual_call_redirects(_unified(campaign).opened.call.first))


@then("le DMP a été consulté avec un VIHF construit depuis l'utilisateur Pro Santé Connect")
def dmp_vihf(campaign, judge):
    from fixtures.pki import POLICY_OIDS

    state = _unified(campaign)
    dmp, psc = campaign.simulator("dmp"), campaign.simulator("psc")
    exchanges = [e for e in dmp.snapshot(state.opened.marks.t) if e.kind in ("ITI-18", "ITI-43")]
    if campaign.sut.trust_anchors:
        trust = TrustMaterial(campaign.trust_anchors())
    else:
        trust = TrustMaterial(campaign.trust_anchors(), [campaign.pki.igc_org.cert], (POLICY_OIDS["org_auth_cli"],),
                              (POLICY_OIDS["org_sign"],))
    user = checks.PscUser.from_userinfo(psc.practitioner.userinfo())
    judge(checks.dmp_consultation(exchanges, user, state.history.listed.patient_id, trust))


@then("les requêtes WADO-RS vers la Source listée suivent les exemples ANS, chaque étude avec son propre KOS")
def wado_headers(campaign, judge):
    state = _unified(campaign)
    kos = state.history.listed_kos()
    _record_requests(campaign, state)
    judge(checks.wado_request_headers(_listed_requests(campaign, state), {k.study.study_uid: k.kos_uid for k in kos},
                                      [u for k in kos for u in k.retrieve_urls.values()], every_study=True))


def _record_requests(campaign, state: ConsoState) -> None:
    """The Sources' records of the visit, as evidence (once)."""
    if campaign.shared.get("conso-requests-recorded"):
        return
    campaign.shared["conso-requests-recorded"] = True
    for k in (state.history.listed, state.history.unlisted):
        campaign.evidence.write_json(f"source-{k.peer}", _peer_requests(campaign, state, k.peer))


@then("le jeton présenté à la Source est l'access token Pro Santé Connect actif du praticien")
def token_is_psc(campaign, judge):
    state = _unified(campaign)
    psc = campaign.simulator("psc")
    now = psc.now()
    tokens = {t.fingerprint: t.to_dict(now) for t in psc.tokens()}
    dut_sessions = {t.sid for t in psc.tokens() if t.grant == "authorization_code" and t.client_id == psc.dut_client_id}
    judge(checks.presented_token_active(_listed_requests(campaign, state), tokens, dut_sessions,
                                        psc.practitioner.sub))


@when("un navigateur revient de Pro Santé Connect vers la DRIMbox avec un state qu'elle ne lui a pas remis",
      target_fixture="forged_return")
def forged_return(campaign):
    state = _unified(campaign)
    start, forged, marks = state.visit.forged_login_return(state.fields)
    psc = campaign.simulator("psc")
    redemptions = [r for r in psc.requests_for("token") if r["seq"] > marks.psc
                   and (r.get("facts") or {}).get("grant_type") == "authorization_code"]
    return forged.final, redemptions


@then("la DRIMbox refuse ce retour sans présenter le code d'autorisation à Pro Santé Connect")
def forged_refused(forged_return, judge):
    judge(checks.forged_return_refused(*forged_return))


@then("la DRIMbox avait envoyé le praticien vers Pro Santé Connect avec un state et un nonce")
def login_with_state_and_nonce(campaign, judge):
    state = _unified(campaign)
    psc = campaign.simulator("psc")
    requests = [r for r in psc.requests if r["seq"] > state.opened.marks.psc and (r.get("endpoint") == "auth" or (
        r.get("facts") or {}).get("outcome") == "authorization_endpoint_elsewhere")]
    judge(checks.login_requested(requests, psc.dut_client_id))


@when("le praticien se reconnecte et que Pro Santé Connect rend un ID token au nonce d'une autre demande",
      target_fixture="replayed_login")
def replayed_login(campaign):
    from simulators.conso_visit import contextual_call_fields
    from simulators.pacs import make_patient

    state = _conso(campaign)
    psc = campaign.simulator("psc")
    patient = make_patient("conso-nonce")  # a patient of its own: its DMP requests belong to this login only
    psc.forge_next_nonce()
    visit = state.visit.open_record(contextual_call_fields(patient), label="connexion-nonce-autre-demande",
                                    fresh_browser=True)
    campaign.evidence.write_json("navigation-nonce", visit.call.to_dict())
    logins = [r for r in psc.requests_for("auth") if r["seq"] > visit.marks.psc and (r.get("facts") or {}).get("nonce_forged")]
    redemptions = [r for r in psc.requests_for("token") if r["seq"] > visit.marks.psc
                   and (r.get("facts") or {}).get("grant_type") == "authorization_code"]
    return {"visit": visit, "patient_id": patient.xds_id, "forged": bool(logins),
            "redemptions": redemptions}


@then("la DRIMbox n'ouvre pas de session avec ce jeton : le DMP n'est pas consulté pour le patient")
def replayed_login_refused(campaign, replayed_login, judge):
    r = replayed_login
    dmp = campaign.simulator("dmp")
    window = max(0.0, (r["visit"].page_at or time.monotonic()) + campaign.sut.timeouts.quiet_s - time.monotonic())
    dmp.wait_for(lambda e: True, since=r["visit"].marks.t, deadline_s=window)  # bounded: any DMP request ends it
    judge(checks.forged_nonce_refused(r["forged"], r["redemptions"], dmp.snapshot(r["visit"].marks.t), r["patient_id"],
                                      r["visit"].call.final))


@then("la DRIMbox présente à la Source son certificat SERV_SSL (mTLS)")
def mtls_to_source(campaign, judge):
    state = _unified(campaign)
    judge(checks.client_certificate_presented(_listed_requests(campaign, state), [p.db for p in campaign.sut.pacs]))


def _observe_unlisted(campaign, state: ConsoState) -> float:
    """Bounded observation of the unlisted peer (which also answers for the look-alike hosts) until `quiet_s` after
    the page, returning at its first request, if any; returns the window."""
    peers = campaign.simulator("peers")
    unlisted = state.history.unlisted.peer
    window = campaign.sut.timeouts.quiet_s
    left = (state.opened.page_at or time.monotonic()) + window - time.monotonic()
    if left > 0:
        peers[unlisted].wait_for(lambda e: True, timeout_s=left, after=state.opened.marks.peers.get(unlisted, 0))
    return window


@then("aucune requête n'arrive à la Source absente de la liste blanche")
def unlisted_never_contacted(campaign, judge):
    state = _unified(campaign)
    peers = campaign.simulator("peers")
    unlisted = state.history.unlisted.peer
    window = _observe_unlisted(campaign, state)
    _record_requests(campaign, state)
    lookalikes = {s.kos.study.study_uid for s in state.history.lookalikes.values()}  # judged by their own scenario
    requests = [{"host": fqdn, "path": r.get("path"), "time": r.get("time"), "status": r.get("status")}
                for fqdn in (state.history.listed.peer, unlisted) for r in _peer_requests(campaign, state, fqdn)
                if r.get("study") not in lookalikes]
    judge(checks.only_listed_sources_contacted(requests, [p.fqdn for p in peers.whitelisted], unlisted, window))


@then(parsers.parse("aucune requête n'arrive à l'hôte qui ressemble à la Source listée par « {case} »"))
def lookalike_never_contacted(campaign, case, judge):
    state = _unified(campaign)
    lookalike = state.history.lookalikes.get(case)
    if lookalike is None:
        from simulators.peers import LOOKALIKE_HOSTS

        if case not in LOOKALIKE_HOSTS:
            raise HarnessError(f"défaut du scénario : hôte ressemblant « {case} » inconnu ({', '.join(LOOKALIKE_HOSTS)})")
        raise HarnessError(f"la Source simulée hors liste ne répond pas pour l'hôte ressemblant « {case} » "
                           f"({LOOKALIKE_HOSTS[case][1]}) : ajoutez ce nom au banc (fichier hosts du kit)")
    window = _observe_unlisted(campaign, state)
    _record_requests(campaign, state)
    study = lookalike.kos.study.study_uid
    requests = [r for r in _peer_requests(campaign, state, state.history.unlisted.peer) if r.get("study") == study]
    judge(checks.lookalike_not_contacted(case, lookalike.authority, lookalike.host, requests,
                                         listed_contacted=bool(_listed_requests(campaign, state)), window_s=window))


@given("la DRIMbox a contacté la Source listée, puis appliqué une liste blanche qui ne la liste plus",
       target_fixture="withdrawal")
def source_withdrawn(campaign):
    from simulators.conso_visit import WITHDRAWN_VECTOR, prepare_withdrawal

    state = _unified(campaign)
    withdrawal = campaign.shared.get("conso-withdrawal")
    if withdrawal is None:
        withdrawal = campaign.shared["conso-withdrawal"] = prepare_withdrawal(campaign)
        endpoint = campaign.simulator("whitelist")
        endpoint.publish(WITHDRAWN_VECTOR)
        withdrawal.refreshed_at = campaign.refresh_whitelist()
        downloads = endpoint.wait_for_download(withdrawal.refreshed_at, campaign.sut.timeouts.whitelist_s)
        campaign.evidence.write_json("liste-sans-source", {"vecteur": WITHDRAWN_VECTOR,
                                                            "telechargements": [d.to_dict() for d in downloads]})
        if not any(d.complete for d in downloads):
            endpoint.ensure_nominal(campaign)
            raise HarnessError("la DRIMbox n'a pas téléchargé la liste blanche sans la Source listée : le retrait ne "
                               "peut pas être observé (voir WL-01)")
    withdrawal.contacted_before = bool(_listed_requests(campaign, state))
    return withdrawal


@when("un praticien ouvre le dossier d'un patient dont le seul KOS désigne cette Source")
def open_after_withdrawal(campaign, withdrawal):
    from simulators.conso_visit import contextual_call_fields

    if withdrawal.visit is not None:
        return
    state = _unified(campaign)
    listed = withdrawal.kos.peer
    try:
        withdrawal.visit = state.visit.open_record(contextual_call_fields(withdrawal.patient),
                                                   label="appel-contextuel-apres-retrait")
        campaign.evidence.write_json("navigation-apres-retrait", withdrawal.visit.call.to_dict())
        left = (withdrawal.visit.page_at or time.monotonic()) + campaign.sut.timeouts.quiet_s - time.monotonic()
        if left > 0:  # bounded observation: returns at the first request to the withdrawn Source, if any
            campaign.simulator("peers")[listed].wait_for(lambda e: True, timeout_s=left,
                                                         after=withdrawal.visit.marks.peers.get(listed, 0))
    finally:  # the nominal list again, whatever happened, for the scenarios that follow
        withdrawal.requests = [r for r in campaign.simulator("peers")[listed].requests
                               if r["seq"] > (withdrawal.visit.marks.peers.get(listed, 0) if withdrawal.visit else 0)]
        campaign.simulator("whitelist").ensure_nominal(campaign)


@then("aucune requête n'arrive à la Source retirée de la liste blanche")
def withdrawn_never_contacted(campaign, withdrawal, judge):
    visit = withdrawal.visit
    dmp = campaign.simulator("dmp")
    retrieved = any(withdrawal.kos.kos_uid == d.get("unique_id") for e in dmp.snapshot(visit.marks.t)
                    if e.kind == "ITI-43" for d in e.consultation.get("returned") or [])
    campaign.evidence.write_json("source-retiree", withdrawal.requests)
    judge(checks.withdrawn_source_not_contacted(withdrawal.kos.peer, withdrawal.requests, contacted_before=
                                                withdrawal.contacted_before, kos_retrieved=retrieved,
                                                window_s=campaign.sut.timeouts.quiet_s))


@then("la DRIMbox a testé l'existence du DMP du patient et l'autorisation d'accès avant d'y chercher des documents")
def dmp_access_tested(campaign, judge):
    state = _unified(campaign)
    exchanges = campaign.simulator("dmp").snapshot(state.opened.marks.t)
    judge(checks.dmp_access_tested(exchanges, state.history.listed.patient_id))


RECORD_STATES = {"inexistant": "inexistant", "fermé": "ferme", "interdit": "interdit"}


@dataclass
class RecordCase:
    """A patient whose DMP record the simulated DMP reports absent, closed or forbidden, and the visit."""

    label: str
    state: str
    patient: Any
    visit: Any = None


def _record_cases(campaign) -> dict[str, RecordCase]:
    """The three patients with a record not open, each visited once per campaign, one after the other, so that
    a single observation window (`quiet_s` after the last page) covers them all."""
    state = _conso(campaign)
    cases = campaign.shared.get("conso-records")
    if cases is None:
        from simulators.conso_visit import contextual_call_fields
        from simulators.pacs import make_patient

        dmp = campaign.simulator("dmp")
        cases = {label: RecordCase(label, code, make_patient(f"conso-dossier-{code}"))
                 for label, code in RECORD_STATES.items()}
        for case in cases.values():
            dmp.set_record(case.patient.ins, case.state)
        for case in cases.values():
            case.visit = state.visit.open_record(contextual_call_fields(case.patient),
                                                 label=f"appel-contextuel-dossier-{case.state}")
            campaign.evidence.write_json(f"navigation-dossier-{case.state}", case.visit.call.to_dict())
        campaign.shared["conso-records"] = cases
    return cases


@given(parsers.parse("le DMP répond pour un autre patient que son dossier est « {label} »"), target_fixture="record_case")
def record_case(campaign, label):
    if label not in RECORD_STATES:
        raise HarnessError(f"défaut du scénario : état de dossier « {label} » inconnu ({', '.join(RECORD_STATES)})")
    return label


@when("un praticien ouvre le dossier de cet autre patient depuis le RIS par appel contextuel", target_fixture="record_case")
def open_other_record(campaign, record_case):
    return _record_cases(campaign)[record_case]


@then("la DRIMbox a testé le dossier au DMP puis n'y a cherché aucun document ni demandé aucune image")
def dmp_access_respected(campaign, record_case, judge):
    visit, dmp, patient_id = record_case.visit, campaign.simulator("dmp"), record_case.patient.xds_id
    last = max(c.visit.page_at or c.visit.marks.t for c in _record_cases(campaign).values())
    left = last + campaign.sut.timeouts.quiet_s - time.monotonic()
    if left > 0:  # bounded observation window after the last page: returns at the first search, if any
        dmp.wait_for(lambda e: e.kind in ("ITI-18", "ITI-43"), since=visit.marks.t, deadline_s=left)
    peers = campaign.simulator("peers")
    requests = [{"host": fqdn, "path": r.get("path"), "status": r.get("status")}
                for fqdn, peer in peers.peers.items() for r in peer.requests if r["seq"] > visit.marks.peers.get(fqdn, 0)]
    judge(checks.dmp_access_respected(dmp.snapshot(visit.marks.t), patient_id, record_case.label, requests,
                                      visit.call.final))


@when("le praticien exporte vers son PACS l'étude de la Source listée")
def export_study(campaign):
    state = _unified(campaign)
    if state.export is None:
        from simulators.conso_visit import exported_study

        listed = state.history.listed
        expected = listed.study.instance_uids()
        served = checks.served_by_source(_listed_requests(campaign, state))
        if not expected <= served:  # nothing complete to export: the checks say why (the Source's refusal)
            state.export = (None, "", [])
            return
        nav = state.visit.export(state.opened, listed.study.study_uid)
        pacs, datasets = exported_study(campaign, listed.study.study_uid, len(expected), campaign.sut.timeouts.export_s)
        state.export = (nav, pacs, datasets)
        campaign.evidence.write_json("export", {"navigation": nav.to_dict() if nav else "hook", "pacs": pacs,
                                                "instances": [str(d.SOPInstanceUID) for d in datasets]})


def _export_facts(state: ConsoState) -> tuple[dict, dict, str]:
    expected = dict(checks.instance_facts(ds) for ds in state.history.listed.study.datasets())
    _, pacs, datasets = state.export
    return expected, dict(checks.instance_facts(ds) for ds in datasets), pacs


@then("l'étude exportée est complète et identique à celle de la Source")
def export_identical(campaign, judge):
    state = _unified(campaign)
    expected, exported, pacs = _export_facts(state)
    judge(checks.export_complete(expected, exported, _listed_requests(campaign, state), f"le PACS {pacs}"))


@then("l'identité du patient est conservée à l'export")
def export_keeps_identity(campaign, judge):
    expected, exported, _ = _export_facts(_unified(campaign))
    judge(checks.export_identity(expected, exported))


# ------------------------------------------------------------------------------------------ Source side: access control


@dataclass
class AccessState:
    """Once per campaign: studies the DUT published (their KOS), the header provider, the control exchanges."""

    access: Any  # simulators.peer_conso.SourceAccess
    studies: dict[str, Any] = field(default_factory=dict)  # "test" | "autre" -> SyntheticStudy
    control: Any = None
    gone: Any = None  # (instance UID, exchange before deletion)


def source_access(campaign, *, publish: bool = False) -> AccessState:
    """The campaign's access material towards the DUT Source (a header provider for PeerConso); with `publish`,
    make sure the DUT published the KOS of the two studies of its first PACS the Source-side scenarios use:
    "test" (the common test study) and "autre" (RIS ORU^R01 for both at once, bounded wait on the DMP)."""
    if "source" not in campaign.sut.roles:
        pytest.skip("la DRIMbox testée n'a pas le rôle Source")
    state = campaign.shared.get("source-access")
    if state is None:
        from simulators.peer_conso import SourceAccess

        state = campaign.shared["source-access"] = AccessState(SourceAccess(campaign.simulator("psc")))
    if publish and not state.studies:
        studies = {"test": campaign.seed_study("etude-de-test"),
                   "autre": campaign.seed_study("etude-acces-autre", n_series=1, n_instances=2)}
        _publish(campaign, state, list(studies.items()))
        state.studies = studies
    return state


def _publish(campaign, state: AccessState, todo: list[tuple[str, Any]]) -> None:
    from drimcheck.hl7 import read_ack
    from drimcheck.kos import header_uid
    from fixtures import hl7 as messages
    from fixtures.cda import report_for
    from simulators.ris import RisSimulator

    dmp = campaign.simulator("dmp")
    pacs = campaign.pacs_entry()
    addr = campaign.dut_address("mllp")
    t = campaign.sut.timeouts
    ris = RisSimulator(addr.host, addr.port, campaign.evidence, timeout_s=max(t.request_s, t.publication_s))
    since = time.monotonic()
    for name, study in todo:
        ex = ris.send(messages.oru_r01(report_for(study, pacs.vi)), f"cr-{name}")
        ack = read_ack(ex.ack)
        if not ack.accepted:
            raise HarnessError(f"CR de l'étude « {name} » non accepté par la DRIMbox ({ex.error or ack.code or ack.problem} "
                               f"{ack.text}) : son KOS, nécessaire aux requêtes WADO-RS, n'est pas publié")
    for name, study in todo:
        found = dmp.wait_for(lambda e, uid=study.study_uid: e.kind == "ITI-41" and e.success and uid in e.study_uids,
                             since=since, deadline_s=t.publication_s)
        data = found.kos_bytes() if found is not None else None
        if not data:
            raise HarnessError(f"KOS de l'étude « {name} » non publié au DMP dans les {t.publication_s:g} s : la "
                               "DRIMbox ne peut pas être interrogée en WADO-RS comme une Source")
        state.access.learn(study.study_uid, header_uid(data, "SOPInstanceUID"))


@pytest.fixture
def access_peer(campaign):
    """drimcheck as a peer Conso listed in the whitelist (simulators.peer_conso), without the access headers:
    each step says which ones it sends."""
    from simulators.peer_conso import PeerConso

    endpoint = campaign.sims.get("whitelist")
    if endpoint is None:
        raise HarnessError("simulateur de liste blanche absent de la campagne")
    return PeerConso(campaign.client, endpoint.peers, wado_root=str(campaign.sut.dut_value("wado_root", "/api/source")))


@given("la DRIMbox a publié au DMP les KOS de deux études de son PACS", target_fixture="access")
def published_two(campaign):
    return source_access(campaign, publish=True)


def _get(campaign, access, peer, study, *, label: str, headers: dict | None = None, instance: str | None = None,
         with_access: bool = True):
    sent = access.access("listed", study.study_uid) if with_access else {}
    sent.update(headers or {})
    ident = peer.identities.get("listed")
    return peer.fetch_series(campaign.pacs_entry().db, study.study_uid, study.series[0].series_uid, identity=ident,
                             label=label, headers=sent, instance_uid=instance)


@given("la DRIMbox sert une série à une DRIMbox pair listée munie d'un jeton PSC valide et du KOS")
def control(campaign, access, access_peer):
    if access.control is None:
        access.control = _get(campaign, access, access_peer, access.studies["test"], label="controle-requete-valide")


def _token_case(campaign, access, case: str) -> str | None:
    psc = campaign.simulator("psc")
    if case == "sans jeton":
        return None
    if case == "avec une chaîne qui n'est pas un jeton PSC":
        return "drimcheck-jeton-invente-0123456789"
    issued = psc.issue_token(client_id="drimcheck")
    if case == "avec un jeton expiré":
        psc.expire(issued.access_token)
    elif case == "avec un jeton révoqué":
        psc.revoke(issued.access_token)
    elif case == "avec un jeton dont la session PSC est terminée":
        psc.logout_session(issued.sid)
    else:
        raise HarnessError(f"cas de jeton inconnu : « {case} »")
    return issued.access_token


@when(parsers.parse("la DRIMbox pair listée demande la série {case}"), target_fixture="refusal")
def request_with_case(campaign, access, access_peer, case):
    study = access.studies["test"]
    if case.startswith("avec le KOS d'une autre étude"):
        headers = {"KOS-SOPInstanceUID": access.access.kos_uid(access.studies["autre"].study_uid)}
    elif case == "sans en-tête KOS-SOPInstanceUID":
        headers = {"KOS-SOPInstanceUID": None}
    elif case == "avec un en-tête Accept mal formé":
        # syntactically broken (RFC 9110 §5.6.6: a parameter is name=value); `multipart/related;
        # type="application/dicom"` alone is valid under DICOM PS3.18 §8.7 and must not be expected to be refused
        headers = {"Accept": 'multipart/related; type="application/dicom"; transfer-syntax'}
    else:
        token = _token_case(campaign, access, case)
        headers = {"Authorization": f"Bearer {token}" if token else None}
    return case, _get(campaign, access, access_peer, study, label=f"requete-{case}", headers=headers)


#: WADO-02 cases: the Accept sent. The first three in the ANS sample's shape (q, boundary: even a Source
#: derived from the ANS PoC can read them), the last two as dicomweb-client sends them (PS3.18 §8.7.3).
WADO_TS_CASES = {
    "seulement JPEG Lossless SV1 (1.2.840.10008.1.2.4.70)":
        'multipart/related; type="application/dicom";transfer-syntax=1.2.840.10008.1.2.4.70;q=0.9;boundary=**',
    "seulement JPEG-LS Lossless (1.2.840.10008.1.2.4.80)":
        'multipart/related; type="application/dicom";transfer-syntax=1.2.840.10008.1.2.4.80;q=0.9;boundary=**',
    "seulement Explicit VR Little Endian (1.2.840.10008.1.2.1)":
        'multipart/related; type="application/dicom";transfer-syntax=1.2.840.10008.1.2.1;q=0.9;boundary=**',
    "sans syntaxe de transfert, comme un client DICOMweb standard": 'multipart/related; type="application/dicom"',
    "toute syntaxe (transfer-syntax=*), comme un client DICOMweb standard":
        'multipart/related; type="application/dicom"; transfer-syntax=*',
}


@when(parsers.parse("la DRIMbox pair listée demande une série en acceptant {syntaxes}"), target_fixture="ts_request")
def request_with_syntaxes(campaign, access, access_peer, syntaxes):
    accept = WADO_TS_CASES.get(syntaxes)
    if accept is None:
        raise HarnessError(f"cas de syntaxe de transfert inconnu : « {syntaxes} »")
    ex = _get(campaign, access, access_peer, access.studies["test"], label=f"syntaxe-{syntaxes[:40]}",
              headers={"Accept": accept})
    return f"acceptant {syntaxes}", accept, ex


@then("la DRIMbox sert la série dans une syntaxe acceptée qu'elle déclare, ou répond HTTP 406 si aucune n'est "
      "disponible")
def serves_accepted_syntax(access, ts_request, judge):
    case, accept, ex = ts_request
    judge(checks.transfer_syntax_honoured(ex, case, accept, access.control))


@given("une instance référencée par le KOS de la seconde étude a disparu du PACS")
def instance_gone(campaign, access, access_peer):
    if access.gone is None:
        study = access.studies["autre"]
        sop = study.series[0].instances[0].sop_uid
        before = _get(campaign, access, access_peer, study, label="instance-avant-suppression", instance=sop)
        campaign.orthanc(campaign.pacs_entry()).delete_instance(sop)
        access.gone = (sop, before)


@when("la DRIMbox pair listée demande cette instance", target_fixture="refusal")
def request_gone(campaign, access, access_peer):
    sop, before = access.gone
    ex = _get(campaign, access, access_peer, access.studies["autre"], label="instance-disparue", instance=sop)
    return "d'une instance disparue du PACS", ex, before


@then("la DRIMbox refuse le jeton (HTTP 401)")
def refuses_token(access, refusal, judge):
    case, ex = refusal
    judge(checks.token_refused(ex, case, access.control))


@then(parsers.parse("la DRIMbox refuse la requête en HTTP {status:d}"))
def refuses_request(access, refusal, status, judge):
    case, ex, *before = refusal
    judge(checks.request_refused(ex, case, status, before[0] if before else access.control))
