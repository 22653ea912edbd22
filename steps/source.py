"""Steps of the Source features: play the RIS, the PACS and the DMP around the DUT, hand evidence to checks."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from pytest_bdd import given, parsers, then, when

from drimcheck.checks import fqdn as fqdn_checks
from drimcheck.checks import kos as kos_checks
from drimcheck.checks import source as source_checks
from drimcheck.checks import xds as xds_checks
from drimcheck.hl7 import read_ack
from drimcheck.kos import KosDocument
from drimcheck.plugin import HarnessError
from fixtures import hl7 as messages
from fixtures.cda import Report, report_for
from simulators import iocm
from simulators.ris import MllpExchange, RisSimulator

ORDINALS = {"premier": 0, "second": 1, "dernier": -1}


@dataclass
class StudyCase:
    """One study of the scenario: where it is, its report versions, and what the DMP received for it."""

    pacs: Any
    study: Any
    report: Report
    sent: list[MllpExchange] = field(default_factory=list)
    publications: list[Any] = field(default_factory=list)  # successful ITI-41 for this study, in order
    update: Any = None  # the ITI-41 that followed the last trigger, if any (successful or not)
    waited_since: float | None = None  # a publication wait already ran from this time (and found nothing)
    last_trigger: float = 0.0
    trigger: str = ""
    stored: bool = True  # the study is on a PACS (False: the "absent study" of SRC-04)

    @property
    def uid(self) -> str:
        return self.study.study_uid


class SourceContext:
    """Per-scenario state of the Source features."""

    def __init__(self, campaign: Any, scenario: str):
        if "source" not in campaign.sut.roles:
            pytest.skip("la DRIMbox testée n'a pas le rôle Source")
        self.campaign = campaign
        self.dmp = campaign.sims.get("dmp")
        if self.dmp is None:
            raise HarnessError("simulateur DMP non démarré")
        addr = campaign.dut_address("mllp")
        # the ACK may wait for the DUT's own checks (C-FIND on its PACS): bounded like a publication
        self.ris = RisSimulator(addr.host, addr.port, campaign.evidence,
                                timeout_s=max(campaign.sut.timeouts.request_s, campaign.sut.timeouts.publication_s))
        self.seed = hashlib.sha256(scenario.encode()).hexdigest()[:12]
        self.cases: list[StudyCase] = []
        self.refused: list[tuple[str, MllpExchange]] = []  # every refused message (both lists below)
        self.mismatched: list[tuple[str, MllpExchange]] = []  # SRC-02
        self.malformed: list[tuple[str, MllpExchange]] = []  # SRC-03
        self._kos: dict[tuple[int, str], KosDocument] = {}
        self.inconsistent_update: tuple[StudyCase, str, MllpExchange] | None = None  # SRC-02 after a publication
        self.prefix: tuple[MllpExchange, str, str] | None = None  # SRC-04: (message, UID sent, UID held)
        self.other_trigger = 0.0  # last message sent about no case of the scenario (the UID prefix)
        self.started = time.monotonic()
        self.timeouts = campaign.sut.timeouts

    @property
    def case(self) -> StudyCase:
        if not self.cases:
            raise HarnessError("défaut du scénario : aucune étude préparée")
        return self.cases[-1]

    def add_study(self, pacs: Any, *, stored: bool = True, varied: bool = False) -> StudyCase:
        seed = f"source-{self.seed}-{pacs.name}-{len(self.cases)}"
        if stored:
            study = self.campaign.seed_study(seed, pacs=pacs, **({"varied": True} if varied else {}))
        else:
            from simulators.pacs import make_study

            study = make_study(seed)
        case = StudyCase(pacs, study, report_for(study, pacs.vi), stored=stored)
        self.cases.append(case)
        return case

    def stored_case(self, which: int) -> StudyCase:
        """The first (0) or last (-1) study of the scenario held by a PACS: refusals of different requirements
        are sent about different studies, so that a wrong publication is charged to one requirement only."""
        stored = [c for c in self.cases if c.stored]
        if not stored:
            raise HarnessError("défaut du scénario : aucune étude détenue par un PACS")
        return stored[which]

    def quiet_after_sends(self) -> None:
        """The bounded window after the last message sent in the scenario (once for several refusal checks)."""
        last = max([c.last_trigger for c in self.cases] + [self.other_trigger], default=time.monotonic())
        time.sleep(max(0.0, last + self.timeouts.quiet_s - time.monotonic()))

    def send(self, case: StudyCase, message: Any, label: str) -> MllpExchange:
        case.last_trigger = time.monotonic()
        case.trigger = getattr(message, "description", label)
        ex = self.ris.send(message, label)
        case.sent.append(ex)
        return ex

    def attempts(self, case: StudyCase, kind: str | None = "ITI-41", since: float | None = None) -> list[Any]:
        """DMP requests about the case's study (of one kind, or all with kind=None) received since a time."""
        since = case.last_trigger if since is None else since
        return [e for e in self.dmp.snapshot(since) if (kind is None or e.kind == kind) and case.uid in e.study_uids]

    def wait_publication(self, case: StudyCase, *, since: float | None = None) -> Any:
        """The first successful ITI-41 for the case's study since a time, waiting at most publication_s (once)."""
        since = case.last_trigger if since is None else since
        deadline = 0.0 if case.waited_since == since else self.timeouts.publication_s
        found = self.dmp.wait_for(lambda e: e.kind == "ITI-41" and e.success and case.uid in e.study_uids,
                                  since=since, deadline_s=deadline)
        if found is None:
            if case.waited_since != since:
                self.dut_log("publication attendue absente")
            case.waited_since = since
        elif all(found is not p for p in case.publications):
            case.publications.append(found)
        return found

    def dut_log(self, why: str) -> None:
        """Embedded reference only: keep the tail of its log next to the evidence of an expired wait."""
        dut = getattr(self.campaign, "dut", None)
        if dut is not None and hasattr(dut, "log_tail"):
            self.campaign.evidence.write_text("journal-drimbox-reference", f"{why}\n" + dut.log_tail(60).replace(" | ", "\n"))

    def quiet(self) -> None:
        """Observe the bounded window in which nothing more must happen."""
        time.sleep(self.timeouts.quiet_s)

    def kos(self, ex: Any, label: str) -> KosDocument | None:
        """The KOS of a DMP submission, read once (and judged by dciodvfy once) per scenario."""
        if ex is None or ex.kos_bytes() is None:
            return None
        key = (ex.seq, label)
        if key not in self._kos:
            self._kos[key] = KosDocument.from_bytes(ex.kos_bytes(), label=label,
                                                    evidence=[ex.kos_evidence] if ex.kos_evidence else ex.evidence)
        return self._kos[key]

    def expected(self, case: StudyCase) -> kos_checks.ExpectedIdentity:
        """Every identity-bearing value of the report (and of the PACS content) the KOS and its metadata carry."""
        from fixtures.cda import AUTHOR, ORGANISATION

        r = case.report
        return kos_checks.ExpectedIdentity(
            r.study_uid, r.ins, r.ins_oid, r.ipp, r.accession, r.accession_oid, r.order, r.order_oid,
            family=r.family, given=r.given, birth_date=r.birth_date, sex=r.sex, birthplace=r.birthplace,
            author_id=AUTHOR["rpps"], structure_id=ORGANISATION["id"], service_time=r.effective_time,
            modalities=tuple(sorted({s.modality for s in case.study.series})))

    def trust(self) -> xds_checks.TrustMaterial:
        from fixtures.pki import POLICY_OIDS

        rt = self.campaign
        if rt.sut.trust_anchors:
            return xds_checks.TrustMaterial(rt.trust_anchors())
        return xds_checks.TrustMaterial(rt.trust_anchors(), [rt.pki.igc_org.cert], (POLICY_OIDS["org_auth_cli"],),
                                        (POLICY_OIDS["org_sign"],))


@pytest.fixture
def source(campaign, request):
    return SourceContext(campaign, request.node.nodeid)


def _pacs(campaign, ordinal: str):
    index = ORDINALS[ordinal]
    if index >= len(campaign.sut.pacs):
        pytest.skip(f"la DRIMbox testée n'a pas de {ordinal} PACS")
    return campaign.pacs_entry(index % len(campaign.sut.pacs))


# --------------------------------------------------------------------------- arrange

@given(parsers.parse("le {ordinal} PACS de la DRIMbox détient une étude"))
def pacs_holds_study(campaign, source, ordinal):
    source.add_study(_pacs(campaign, ordinal))


@given(parsers.parse("le {ordinal} PACS de la DRIMbox détient deux études"))
def pacs_holds_two_studies(campaign, source, ordinal):
    pacs = _pacs(campaign, ordinal)
    source.add_study(pacs)
    source.add_study(pacs)


@given(parsers.parse("le {ordinal} PACS de la DRIMbox détient une étude variée : {what}"))
def pacs_holds_varied_study(campaign, source, ordinal, what):
    """Several series, modalities and SOP classes, a multi-frame image and a structured report (VARIED_SERIES)."""
    source.add_study(_pacs(campaign, ordinal), varied=True)


@given(parsers.parse("le {ordinal} PACS de la DRIMbox détient une étude d'un patient identifié par son {kind}"))
def pacs_holds_study_of(campaign, source, ordinal, kind):
    """Each value of the INS OID code set the requirement admits, not only the NIR (test OIDs of the INS)."""
    oids = {"INS-NIA de test": "1.2.250.1.213.1.4.11", "INS-NIR de test": "1.2.250.1.213.1.4.10"}
    if kind not in oids:
        raise HarnessError(f"identifiant de patient inconnu : {kind}")
    case = source.add_study(_pacs(campaign, ordinal))
    case.report = report_for(case.study, case.pacs.vi, ins_oid=oids[kind])


@given("la DRIMbox est mutualisée entre au moins deux PACS")
def mutualised(campaign):
    if len(campaign.sut.pacs) < 2:
        pytest.skip("DRIMbox à un seul PACS : cas mutualisé non applicable")


@given("chaque PACS de la DRIMbox détient une étude")
def each_pacs_holds_study(campaign, source):
    for pacs in campaign.sut.pacs:
        source.add_study(pacs)


@given("le DMP répondra en échec à la prochaine publication")
def dmp_will_fail(source, request):
    source.dmp.fail_next(1)
    request.addfinalizer(source.dmp.clear_failures)


@given(parsers.parse("le DMP répondra en échec aux {count:d} prochaines publications"))
def dmp_will_fail_n(source, request, count):
    """A retry after a retry: the DUT must keep trying (and still publish once) after several failures."""
    source.dmp.fail_next(count)
    request.addfinalizer(source.dmp.clear_failures)


@given("le KOS de cette étude a été publié au DMP")
def initially_published(source):
    case = source.case
    source.send(case, messages.oru_r01(case.report), "cr-initial")
    if source.wait_publication(case) is None:
        ack = read_ack(case.sent[-1].ack)
        raise HarnessError(f"publication initiale du KOS absente dans les {source.timeouts.publication_s:g} s "
                           f"(ACK {ack.code or ack.problem}) : la mise à jour n'est pas observable")


@given("le KOS de cette étude a été publié au DMP, sans quoi la suite n'est pas jugée")
def initially_published_or_skip(source):
    """As above, but a missing first publication (SRC-01/SRC-08's business, judged elsewhere) makes the sequence
    not applicable rather than a bench defect: the sequence runs on the last PACS of a mutualised DRIMbox."""
    case = source.case
    source.send(case, messages.oru_r01(case.report), "cr-initial")
    if source.wait_publication(case) is None:
        ack = read_ack(case.sent[-1].ack)
        pytest.skip(f"publication initiale du KOS absente (ACK {ack.code or ack.problem}) : suite de mises à jour "
                    f"non observable — voir SRC-01 et SRC-08")


# --------------------------------------------------------------------------- act

@when("le RIS envoie le CR validé d'une étude qu'aucun PACS de la DRIMbox ne détient")
def ris_sends_absent(campaign, source):
    case = source.add_study(campaign.pacs_entry(0), stored=False)
    source.send(case, messages.oru_r01(case.report), "cr-etude-absente")


@when(parsers.parse("le RIS envoie le CR validé de l'étude en {kind}"))
def ris_sends_report(source, kind):
    case = source.case
    message = messages.oru_r01(case.report) if kind == "ORU^R01" else messages.mdm(case.report, trigger="T02")
    source.send(case, message, f"cr-{kind}")


@when("le RIS envoie le CR validé de chaque étude en ORU^R01")
def ris_sends_each(source):
    for case in source.cases:
        source.send(case, messages.oru_r01(case.report), f"cr-{case.pacs.name}")


@when("le RIS envoie une nouvelle version du CR en MDM^T10")
def ris_sends_update(source):
    case = source.case
    case.report = report_for(case.study, case.pacs.vi, version=case.report.version + 1)
    source.send(case, messages.mdm(case.report, trigger="T10"), f"cr-v{case.report.version}-MDM^T10")


@when(parsers.parse("le RIS envoie le retrait du CR en {kind}"))
def ris_sends_withdrawal(source, kind):
    case = source.case
    message = messages.oru_r01(case.report, order_control="CA", status="D") if kind == "ORU^R01" else \
        messages.mdm(case.report, trigger="T04")
    source.send(case, message, f"retrait-{kind}")


def _rejected(source, case, *, all_instances: bool) -> list[tuple[str, str, str]]:
    rows = source.campaign.orthanc(case.pacs).instances_of_study(case.uid)
    chosen = rows if all_instances else rows[-1:]
    for r in chosen:
        source.campaign.orthanc(case.pacs).delete_instance(r["SOPInstanceUID"])
    return [(r["SeriesInstanceUID"], r["SOPClassUID"], r["SOPInstanceUID"]) for r in chosen]


@when("le PACS supprime une instance de l'étude et envoie la note de rejet IOCM à la DRIMbox")
def pacs_sends_rejection(source):
    case = source.case
    rt = source.campaign
    rejected = _rejected(source, case, all_instances=False)
    addr = rt.dut_address("iocm")
    case.last_trigger = time.monotonic()
    case.trigger = "note de rejet IOCM"
    result = iocm.send(iocm.rejection_note(case.study, rejected), addr.host, addr.port,
                       str(rt.sut.dut_value("iocm_aet", "DRIMBOX")), calling_aet=case.pacs.aet,
                       timeout_s=rt.sut.timeouts.request_s, evidence=rt.evidence)
    if not result.ok:
        raise HarnessError(f"note de rejet IOCM non remise à la DRIMbox ({addr}) : {result.error}")


@when(parsers.parse("le PACS supprime {what} de l'étude et envoie un OMI^O23 de modification"))
def pacs_sends_omi(source, what):
    case = source.case
    _rejected(source, case, all_instances=what.startswith("toutes"))
    source.send(case, messages.omi_o23(case.report, pacs_aet=case.pacs.aet), "omi-o23")


@when(parsers.parse("le RIS envoie un CR dont {what} diffère de celui des images"))
def ris_sends_mismatch(source, what):
    case = source.stored_case(0)
    field_ = "accession" if "accession" in what else "ipp"
    value = {"accession": f"{case.report.accession}X", "ipp": f"{case.report.ipp}X"}[field_]
    bad = report_for(case.study, case.pacs.vi, **{field_: value})
    label = f"CR avec {what} différent"
    entry = (label, source.send(case, messages.oru_r01(bad), f"incoherence-{field_}"))
    source.refused.append(entry)
    source.mismatched.append(entry)


@when(parsers.parse("le RIS envoie un CR dont {what} ressemble à celui des images : {how}"))
def ris_sends_lookalike(source, what, how):
    """Look-alike identities: a value equal to the images' one only for a lenient comparison."""
    case = source.stored_case(0)
    field_ = "accession" if "accession" in what else "ipp"
    value = getattr(case.report, field_)
    if how == "tronqué de son dernier caractère":
        bad_value = value[:-1]
    elif how == "en minuscules":
        bad_value = value.lower()
    else:
        raise HarnessError(f"ressemblance inconnue : {how}")
    if bad_value == value:
        raise HarnessError(f"défaut du banc : « {value} » n'a pas de variante « {how} »")
    bad = report_for(case.study, case.pacs.vi, **{field_: bad_value})
    label = f"CR avec {what} {how}"
    entry = (label, source.send(case, messages.oru_r01(bad), f"ressemblance-{field_}"))
    source.refused.append(entry)
    source.mismatched.append(entry)


@when(parsers.parse("le RIS envoie le CR de l'étude {defect}"))
def ris_sends_malformed(source, defect):
    case = source.stored_case(1)
    valid = messages.oru_r01(case.report)
    if defect == "sans OBX":
        message = messages.without_cda_obx(valid)
    elif defect == "avec un base64 invalide":
        message = messages.with_bad_base64(valid)
    elif defect == "avec un OID d'INS inconnu":
        message = messages.oru_r01(report_for(case.study, case.pacs.vi, ins_oid="1.2.250.1.213.1.4.99"))
    elif defect == "avec un OID d'INS admis prolongé d'un suffixe":  # look-alike: equal only for startswith
        message = messages.oru_r01(report_for(case.study, case.pacs.vi, ins_oid=f"{case.report.ins_oid}.1"))
    else:
        raise HarnessError(f"défaut de message inconnu : {defect}")
    entry = (f"CR {defect}", source.send(case, message, f"malforme-{len(source.malformed) + 1}"))
    source.refused.append(entry)
    source.malformed.append(entry)


@given("le premier PACS de la DRIMbox détient une troisième étude, dont le KOS a été publié au DMP")
def third_study_published(campaign, source):
    """Sequences (issue 9): a study whose first report was published, for an inconsistent update afterwards."""
    case = source.add_study(_pacs(campaign, "premier"))
    source.send(case, messages.oru_r01(case.report), "cr-initial")
    if source.wait_publication(case) is None:
        ack = read_ack(case.sent[-1].ack)
        raise HarnessError(f"publication initiale du KOS absente dans les {source.timeouts.publication_s:g} s "
                           f"(ACK {ack.code or ack.problem}) : la mise à jour incohérente n'est pas observable")


@when("le RIS envoie pour l'étude publiée une nouvelle version du CR en MDM^T10 dont le numéro d'accession diffère "
      "de celui des images")
def ris_sends_inconsistent_update(source):
    case = source.stored_case(2)
    if not case.publications:
        raise HarnessError("défaut du scénario : l'étude publiée n'a pas de publication")
    bad = report_for(case.study, case.pacs.vi, version=case.report.version + 1, accession=f"{case.report.accession}X")
    label = "nouvelle version du CR (MDM^T10) au numéro d'accession différent, après une publication réussie"
    source.inconsistent_update = (case, label, source.send(case, messages.mdm(bad, trigger="T10"), "maj-incoherente"))


@when("le RIS envoie le CR validé d'une étude dont l'UID n'est qu'un préfixe de celui d'une étude détenue")
def ris_sends_uid_prefix(campaign, source):
    """Look-alike identity (issue 9): the report names a study UID that only a prefix (or wildcard) search finds;
    IPP and accession are those of the held study, so nothing but the UID tells them apart."""
    pacs = _pacs(campaign, "premier")
    held = campaign.seed_study(f"source-{source.seed}-prefixe", pacs=pacs, n_series=1, n_instances=1)
    uid = held.study_uid[:-1].rstrip(".")
    report = report_for(held, pacs.vi, study_uid=uid)
    ex = source.ris.send(messages.oru_r01(report), "cr-uid-prefixe")
    source.prefix = (ex, uid, held.study_uid)
    source.other_trigger = time.monotonic()  # the shared observation window runs from the last message sent


# --------------------------------------------------------------------------- assert

def _published(source, case):
    return case.publications[-1] if case.publications else source.wait_publication(case)


@then("la DRIMbox acquitte AA et publie le KOS de l'étude au DMP")
def acked_and_published(source, judge):
    case = source.case
    publication = source.wait_publication(case)
    judge(source_checks.acknowledged_and_published(case.sent[-1], publication, source.attempts(case),
                                                   source.timeouts.publication_s))


@then("le KOS est un objet Key Object Selection valide selon dciodvfy")
def kos_iod(source, judge):
    judge(kos_checks.iod_valid(source.kos(_published(source, source.case), "KOS publié")))


@then("le KOS suit le gabarit Manifest")
def kos_template(source, judge):
    judge(kos_checks.manifest_template(source.kos(_published(source, source.case), "KOS publié")))


@then(parsers.parse("{which} KOS référence exactement les instances que le PACS détient {when_}"))
def kos_references(source, judge, which, when_):
    case = source.case
    rows = source.campaign.orthanc(case.pacs).instances_of_study(case.uid)
    if "nouvelle" in which:  # only a new version can show the change: none published = nothing to judge
        update = case.update if case.update is not None and case.update.success else None
        doc = source.kos(update, "nouvelle version du KOS")
    else:
        doc = source.kos(_published(source, case), "KOS publié")
    judge(kos_checks.references_pacs_content(doc, rows, case.pacs.name))


@then("le KOS porte l'identité du CR : INS, accession et commande")
def kos_identity(source, judge):
    case = source.case
    judge(kos_checks.identity(source.kos(_published(source, case), "KOS publié"), source.expected(case)))


@then("le KOS porte Retrieve AE Title et Retrieve Location UID")
def kos_retrieve_location(source, judge):
    judge(kos_checks.retrieve_location(source.kos(_published(source, source.case), "KOS publié")))


@then("chaque RetrieveURL du KOS est sur le FQDN dbN du PACS qui détient l'étude")
def kos_on_dbn(source, judge):
    case = source.case
    judge(fqdn_checks.retrieve_urls_on_dbn(source.kos(_published(source, case), "KOS publié"), case.pacs.db,
                                           viewer_link=case.report.viewer_link))


@then("les métadonnées XDS du KOS sont conformes et cohérentes avec le KOS et le CR")
def xds_metadata(source, judge):
    case = source.case
    judge(xds_checks.kos_metadata(_published(source, case), source.expected(case)))


@then("la publication est faite en mTLS avec un certificat ORG AUTH_CLI")
def xds_mtls(source, judge):
    case = source.case
    judge(xds_checks.client_certificate(source.attempts(case, kind=None, since=source.started), source.trust()))


@then("le VIHF est signé par un certificat ORG SIGN et cohérent")
def xds_vihf(source, judge):
    case = source.case
    judge(xds_checks.vihf(source.attempts(case, kind=None, since=source.started), source.trust()))


@then("le lot est accompagné d'un document de signature vérifiable")
def xds_signature(source, judge):
    judge(xds_checks.signature_document(_published(source, source.case), source.trust()))


@then("chaque étude est publiée avec le FQDN dbN du PACS qui la détient")
def each_with_its_pair(source, judge):
    outcomes = []
    for case in source.cases:
        publication = _published(source, case)
        outcomes.append(source_checks.PacsOutcome(case.pacs.name, case.pacs.db, case.uid, publication,
                                                  source.kos(publication, f"KOS de l'étude du PACS {case.pacs.name}"),
                                                  case.sent[-1] if case.sent else None))
    judge(source_checks.each_study_with_its_pair(outcomes, source.timeouts.publication_s))


@then("chaque RetrieveURL de chaque KOS est sur le FQDN dbN de son PACS")
def each_kos_on_its_dbn(source, judge):
    for case in source.cases:
        doc = source.kos(_published(source, case), f"KOS de l'étude du PACS {case.pacs.name}")
        judge(fqdn_checks.retrieve_urls_on_dbn(doc, case.pacs.db, viewer_link=case.report.viewer_link))


def _follow(campaign, source, case, doc, *, unlisted: bool = True, tag: str = "") -> list:
    """Use the artefact as its consumer does: GET every RetrieveURL of `doc` exactly as written in the KOS (mTLS
    peer certificate, PSC token, the KOS's own SOPInstanceUID as KOS-SOPInstanceUID), as the listed peer and,
    with `unlisted`, as a peer absent from the whitelist. Returns checks.whitelist.FollowedUrl items."""
    from drimcheck import limits
    from drimcheck.checks import whitelist as wl_checks
    from simulators.peer_conso import ANS_ACCEPT
    from steps.conso import source_access

    endpoint = campaign.sims.get("whitelist")
    if endpoint is None:
        raise HarnessError("simulateur de liste blanche absent de la campagne")
    endpoint.ensure_nominal(campaign)
    access = source_access(campaign).access
    idents = [endpoint.peers.get("listed")] + ([endpoint.peers.get("unlisted")] if unlisted else [])
    if doc is None or doc.view is None:
        return []
    access.learn(case.uid, doc.view.sop_uid)
    held = {r["SOPInstanceUID"] for r in source.campaign.orthanc(case.pacs).instances_of_study(case.uid)}
    followed = []
    for series in doc.view.series():
        url = series.retrieve_url or ""
        where = f"{case.pacs.name}, série {series.series_uid}"
        flaws = fqdn_checks.url_flaws(url, case.pacs.db, case.uid, series.series_uid) if url else ["absente"]
        item = wl_checks.FollowedUrl(where, url, {uid for _, uid in series.instances} & held,
                                     flaw="; ".join(flaws) or None)
        if item.flaw is None:
            for ident in idents:
                headers = {"Accept": ANS_ACCEPT, **access(ident, case.uid)}
                ex = campaign.client.get(url, headers=headers, client_cert=ident.issued,
                                         label=f"suivi-retrieveurl{tag}-{case.pacs.name}-{ident.key}",
                                         max_body=limits.MAX_RESPONSE_BODY)
                setattr(item, "listed" if ident.key == "listed" else "unlisted", ex)
        followed.append(item)
    return followed


@pytest.fixture
def followed_urls():
    """The RetrieveURLs a scenario followed (shared by the WL-05 and WADO-01 judgements of the same exchanges)."""
    return []


@then("chaque RetrieveURL de chaque KOS, suivie comme le ferait une DRIMbox Conso, sert sa série à une DRIMbox "
      "listée et rien à une DRIMbox absente de la liste")
def each_url_followed(campaign, source, judge, followed_urls):
    """Every RetrieveURL of every KOS, on the dbN of every PACS, followed by a listed and an unlisted peer."""
    from drimcheck.checks import whitelist as wl_checks

    endpoint = campaign.sims.get("whitelist")
    for case in source.cases:
        doc = source.kos(_published(source, case), f"KOS de l'étude du PACS {case.pacs.name}")
        followed_urls += _follow(campaign, source, case, doc)
    listed, unlisted = endpoint.peers.get("listed"), endpoint.peers.get("unlisted")
    judge(wl_checks.retrieve_urls_followed(followed_urls, f"la DRIMbox listée {listed.fqdn}",
                                           f"la DRIMbox absente de la liste {unlisted.fqdn}"))


@then("aucune de ces requêtes de la DRIMbox listée n'est refusée en 400, 404 ou 410 : le KOS référence chaque série "
      "et le PACS qui la détient est celui du dbN de l'URL")
def followed_not_refused(followed_urls, judge):
    judge(source_checks.followed_urls_not_refused(followed_urls, "KOS de l'étude de chaque PACS"))


@then("chaque RetrieveURL de la version en vigueur du KOS, suivie avec le KOS-SOPInstanceUID de cette version, sert "
      "sa série sans refus 400, 404 ou 410")
def current_version_followed(campaign, source, judge):
    """The KOS in force after updates (RPLC), used as its consumer uses it: its RetrieveURLs with its own UID."""
    case = source.case
    versions = _versions(source, case)
    doc = versions[-1] if versions else None
    followed = _follow(campaign, source, case, doc, unlisted=False, tag=f"-v{len(versions)}")
    judge(source_checks.followed_urls_not_refused(
        followed, f"version {len(versions)} du KOS (en vigueur après {len(versions) - 1} mise(s) à jour), "
                  f"étude du PACS {case.pacs.name}"))


@then("la DRIMbox publie la nouvelle version du KOS en remplacement (RPLC) de la précédente")
def replaced(source, judge):
    case = source.case
    previous = case.publications[-1] if case.publications else None
    update = source.dmp.wait_for(lambda e: e.kind == "ITI-41" and case.uid in e.study_uids,
                                 since=case.last_trigger, deadline_s=source.timeouts.publication_s)
    case.update = update
    if update is None:
        source.dut_log("nouvelle version du KOS attendue absente")
    if update is not None and update.success:
        case.publications.append(update)
    judge(source_checks.replaced_with_rplc(case.trigger, previous, update, source.timeouts.publication_s))


def _versions(source, case) -> list:
    return [d for d in (source.kos(p, f"KOS version {i}") for i, p in enumerate(case.publications, 1)) if d is not None]


@then("chaque version du KOS porte l'identité du CR : INS, accession et commande")
def each_version_identity(source, judge):
    case = source.case
    for doc in _versions(source, case):
        judge(kos_checks.identity(doc, source.expected(case)))


@then("les métadonnées XDS de chaque version du KOS sont conformes et cohérentes avec le KOS et le CR")
def each_version_metadata(source, judge):
    case = source.case
    for publication in case.publications:
        judge(xds_checks.kos_metadata(publication, source.expected(case)))


@then("chaque version du KOS est un objet Key Object Selection valide selon dciodvfy, suit le gabarit Manifest et porte "
      "Retrieve AE Title et Retrieve Location UID")
def each_version_iod(source, judge):
    for doc in _versions(source, source.case):
        judge(kos_checks.iod_valid(doc))
        judge(kos_checks.manifest_template(doc))
        judge(kos_checks.retrieve_location(doc))


@then("chaque version est accompagnée d'un document de signature vérifiable")
def each_version_signed(source, judge):
    for publication in source.case.publications:
        judge(xds_checks.signature_document(publication, source.trust()))


@then("chaque version du KOS de l'étude utilise le même FQDN dbN")
def same_host(source, judge):
    case = source.case
    versions = [source.kos(p, f"KOS version {i}") for i, p in enumerate(case.publications, 1)]
    judge(fqdn_checks.host_kept_across_updates([v for v in versions if v is not None]))


@then("la DRIMbox dépublie le KOS de l'étude (ITI-57, statut Deleted)")
def unpublished(source, judge):
    case = source.case
    current = None
    if case.publications:
        last = case.publications[-1]
        current = next(iter(last.assigned.get(e.id) for e in last.request.kos_entries()), None)
    if source.dmp.wait_for(lambda e: e.kind == "ITI-57" and case.uid in e.study_uids, since=case.last_trigger,
                           deadline_s=source.timeouts.publication_s) is None:
        source.dut_log("dépublication attendue absente")
    after = [e for e in source.dmp.snapshot(case.last_trigger) if case.uid in e.study_uids]
    judge(source_checks.unpublished(case.trigger, current, after, source.timeouts.publication_s))


@then("la DRIMbox publie malgré l'échec du DMP la nouvelle version du KOS en remplacement (RPLC) de la précédente, "
      "une seule fois")
def replaced_after_failure(source, judge):
    """A retry of an update keeps replacing the entry in force (RPLC) and is not published twice."""
    case = source.case
    previous = case.publications[-1] if case.publications else None
    trigger, since = case.trigger, case.last_trigger
    if read_ack(case.sent[-1].ack).error:  # a synchronous DUT reports the DMP failure: the RIS sends again
        source.send(case, messages.mdm(case.report, trigger="T10"), f"cr-v{case.report.version}-renvoi")
    update = source.wait_publication(case, since=since)
    source.quiet()
    if update is not None and all(update is not p for p in case.publications):
        case.publications.append(update)
    judge(source_checks.dmp_failure_handled(case.sent[-2:], source.attempts(case, since=since),
                                            source.timeouts.publication_s, source.timeouts.quiet_s))
    judge(source_checks.replaced_after_failure(f"{trigger} après un échec du DMP", previous, update,
                                               source.timeouts.publication_s))


@then("chaque CR incohérent reçoit un acquittement d'erreur et aucun KOS n'est publié")
def mismatch_refused(source, judge):
    source.quiet_after_sends()
    case = source.stored_case(0)
    judge(source_checks.mismatch_refused(source.mismatched, source.attempts(case, since=source.started),
                                         source.timeouts.quiet_s))


@then("chaque message mal formé est refusé (AE ou AR) et aucun KOS n'est publié")
def malformed_refused(source, judge):
    source.quiet_after_sends()
    case = source.stored_case(1)
    judge(source_checks.malformed_refused(source.malformed, source.attempts(case, since=source.started),
                                          source.timeouts.quiet_s))


@then(parsers.parse("aucun KOS n'est publié pour {which}"))
def absent_not_published(source, judge, which):
    source.quiet_after_sends()
    case = next((c for c in source.cases if not c.stored), None)
    if case is None:
        raise HarnessError("défaut du scénario : aucune étude absente des PACS")
    judge(source_checks.absent_study_not_published(case.sent[-1], source.attempts(case, since=source.started),
                                                   source.timeouts.quiet_s))


@then("la nouvelle version incohérente du CR de l'étude publiée reçoit un acquittement d'erreur et aucun KOS n'est "
      "publié")
def inconsistent_update_refused(source, judge):
    source.quiet_after_sends()
    if source.inconsistent_update is None:
        raise HarnessError("défaut du scénario : aucune mise à jour incohérente envoyée")
    case, label, ex = source.inconsistent_update
    since = case.last_trigger
    judge(source_checks.mismatch_refused([(label, ex)], source.attempts(case, since=since), source.timeouts.quiet_s))


@then("aucune publication au DMP ne suit le CR de l'étude dont l'UID n'est qu'un préfixe de celui d'une étude détenue")
def prefix_not_published(source, judge):
    source.quiet_after_sends()
    if source.prefix is None:
        raise HarnessError("défaut du scénario : aucun CR à l'UID préfixe envoyé")
    ex, uid, held = source.prefix
    attempts = [e for e in source.dmp.snapshot(source.started) if uid in e.study_uids or held in e.study_uids]
    judge(source_checks.absent_study_not_published(ex, attempts, source.timeouts.quiet_s))


@then("la DRIMbox ne perd pas le CR et ne publie qu'une seule fois")
def failure_handled(source, judge):
    case = source.case
    if read_ack(case.sent[-1].ack).error:  # a synchronous DUT reports the DMP failure: the RIS sends again
        source.send(case, messages.oru_r01(case.report), "cr-renvoi")
    source.wait_publication(case, since=source.started)
    source.quiet()
    judge(source_checks.dmp_failure_handled(case.sent, source.attempts(case, since=source.started),
                                            source.timeouts.publication_s, source.timeouts.quiet_s))


# --------------------------------------------------------------------------- PSC token after a first use (PSC-01)

@dataclass
class TokenAfterUse:
    token: str
    sid: str
    first: Any = None  # the accepted request
    again: Any = None  # the same request after PSC invalidated the token
    how: str = ""


def _series_with_token(campaign, access, access_peer, token: str, label: str):
    study = access.studies["test"]
    headers = access.access("listed", study.study_uid)
    headers["Authorization"] = f"Bearer {token}"
    return access_peer.fetch_series(campaign.pacs_entry().db, study.study_uid, study.series[0].series_uid,
                                    identity=access_peer.identities.get("listed"), label=label, headers=headers)


@given("la DRIMbox pair listée a été servie avec un jeton Pro Santé Connect neuf", target_fixture="used_token")
def token_used_once(campaign, access, access_peer):
    issued = campaign.simulator("psc").issue_token(client_id="drimcheck")
    used = TokenAfterUse(issued.access_token, issued.sid)
    used.first = _series_with_token(campaign, access, access_peer, used.token, "jeton-neuf-premier-usage")
    return used


@when(parsers.parse("Pro Santé Connect {how} ce jeton"))
def psc_invalidates(campaign, used_token, how):
    psc = campaign.simulator("psc")
    if how == "révoque":
        psc.revoke(used_token.token)
    elif how == "termine la session de":
        psc.logout_session(used_token.sid)
    else:
        raise HarnessError(f"invalidation de jeton inconnue : « {how} »")
    used_token.how = {"révoque": "révoqué", "termine la session de": "dont la session PSC est terminée"}[how]


@when("la DRIMbox pair listée demande de nouveau la série avec ce jeton")
def token_used_again(campaign, access, access_peer, used_token):
    used_token.again = _series_with_token(campaign, access, access_peer, used_token.token, "jeton-apres-invalidation")


@then("la DRIMbox refuse ce jeton (HTTP 401) alors qu'elle l'avait accepté")
def token_refused_after_use(used_token, judge):
    from drimcheck.checks import conso as conso_checks

    judge(conso_checks.token_refused(used_token.again, f"avec un jeton {used_token.how} après un premier usage accepté",
                                     used_token.first))
