"""Around a DUT Conso: the patient's imaging history (DMP + peer Sources), the RIS's contextual call, the practitioner.

* :func:`prepare_history` puts the test data in place once per campaign: a patient whose DMP record holds
  the KOS of two studies held by the peer Source **listed** in the whitelist
  (``db7.350.mesimagesmedicales.fr``): a varied one as sites produce them (CT, MR, a multi-frame image and a
  structured report, four series) and a second one (MR, 1 series x 2 instances), each with its own KOS;
  the KOS of a study held by the **unlisted** peer (``db2.351.mesimagesmedicales.fr``, 1 series x 2
  instances); and one KOS per look-alike host of the listed peer (simulators.peers.LOOKALIKE_HOSTS: 1
  instance each, served by the unlisted peer under that name). The KOS are written by the harness
  (fixtures.kos), never by the reference DRIMbox.
* :func:`prepare_withdrawal` puts in place a second patient whose only KOS points at the listed peer, and the
  whitelist that no longer lists it (:data:`WITHDRAWN_VECTOR`), for a consultation after the withdrawal.
* :func:`contextual_call_fields` gives the form a RIS posts for a patient (spec §5.1 parameter names).
* :class:`ConsoVisit` plays the RIS and then the practitioner's browser (drimcheck.browser): the
  contextual call to ``[dut] conso`` (path ``[dut] conso_path``, default the PoC's
  ``/api/conso/parameters``), the redirects through Pro Santé Connect (automatic login of the test
  practitioner) back to the DUT's page, and the export of a study (the page's export form, or the
  ``[hooks] export`` command with ``DRIMCHECK_STUDY_UID``). It remembers where every simulator's record
  stood before the visit, so that what the DUT did during the visit can be told apart.

Everything here arranges and triggers; the checks (drimcheck/checks/conso.py) judge the records.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

from drimcheck.browser import Browser, Navigation
from simulators.pacs import make_patient, make_study

DEFAULT_CALL_PATH = "/api/conso/parameters"
CONSENT_PARAMETER = "InformationEtConsentement"  # ANS test server's name (the PoC's: InformationEtOppositionConsultation)
LOCAL_IPP_ISSUER = "DRIMCHECK-RIS-CONSO&1.2.250.1.213.4.5.2.9&ISO"  # CX-4 of PID-3 at the calling site (FAQ)
SECOND_GIVEN_NAME = "MARIE"  # the patient has two birth given names (the list and the first one differ)


WITHDRAWN_VECTOR = "retrait-source-conso"  # whitelist vector: the nominal list without the listed peer Source


@dataclass(frozen=True)
class Lookalike:
    """A KOS whose RetrieveURLs name a look-alike of the listed peer (simulators.peers.LOOKALIKE_HOSTS)."""

    case: str
    authority: str  # as written in the RetrieveURL
    host: str  # the name a client connects to
    kos: Any  # simulators.dmp.consultation.PreloadedKos (peer = the simulator that answers for `host`)


@dataclass
class History:
    """The patient and the KOS the DMP holds for it (simulators.dmp.consultation.PreloadedKos)."""

    patient: Any
    listed: Any  # study at the whitelisted peer
    unlisted: Any  # study at the peer absent from the whitelist
    second: Any = None  # another study at the whitelisted peer, with its own KOS
    lookalikes: dict[str, Lookalike] = field(default_factory=dict)  # case -> KOS naming a look-alike host

    def listed_kos(self) -> list[Any]:
        """Every KOS of the record whose Source is the listed peer."""
        return [k for k in (self.listed, self.second) if k is not None]


def preload(dmp: Any, peer: Any, study: Any, base: str | None = None, *, store: bool = True) -> Any:
    """`study` stored at `peer` (its Orthanc, unless `store` is False: already there) with a KOS the peer knows, and
    that KOS in the DMP for the patient; the RetrieveURLs start with `base` (default the peer's own WADO-RS base).
    Returns a PreloadedKos."""
    from fixtures.kos import build_kos, kos_uid_for
    from simulators.dmp.consultation import MODALITY_SCHEME, PreloadedKos, preload_peer_study

    if base is None:
        return preload_peer_study(dmp, peer, study, store=store)
    uid = kos_uid_for(study.study_uid, peer.fqdn, base)
    peer.register_study(study, kos_sop_uid=uid, store=store)
    kos = build_kos(study, base, sop_uid=uid, institution=f"DRIMBOX {peer.fqdn}")
    p = study.patient
    entry = dmp.consultation.preload_kos(kos.data, patient_id=p.xds_id,
                                         event_codes=[(m, MODALITY_SCHEME, m) for m in kos.modalities],
                                         accession=(study.accession_number, study.accession_issuer_oid))
    return PreloadedKos(peer.fqdn, study, uid, entry, kos.data, kos.retrieve_urls)


def lookalike_base(peer: Any, authority: str) -> str:
    """The WADO-RS base of a look-alike authority served by `peer`: its port (if the peer's URLs have one) and
    its base path."""
    base = peer.base_url  # https://<fqdn>[:port]
    port = base.rsplit(":", 1)[1] if base.count(":") > 1 else ""
    return f"https://{authority}{':' + port if port else ''}{peer.base_path}"


def prepare_history(runtime: Any) -> History:
    """Patient, studies at the two peers and at look-alike hosts, their KOS in the DMP (once per campaign, see
    module doc)."""
    from simulators.peers import LOOKALIKE_HOSTS

    dmp, peers = runtime.simulator("dmp"), runtime.simulator("peers")
    if not peers.whitelisted or not peers.unlisted:
        raise RuntimeError("the campaign needs one listed and one unlisted peer Source")
    listed_peer, unlisted_peer = peers.whitelisted[0], peers.unlisted[0]
    patient = make_patient("conso-patient")
    listed = make_study("conso-pair-liste", varied=True, patient=patient)
    second = make_study("conso-pair-liste-2", n_series=1, n_instances=2, modality="MR", patient=patient)
    unlisted = make_study("conso-pair-hors-liste", n_series=1, n_instances=2, modality="MR", patient=patient)
    served = set(getattr(unlisted_peer, "aliases", ()))
    lookalikes = {case: (authority, host, make_study(f"conso-sosie-{index}", n_series=1, n_instances=1, rows=8,
                                                     columns=8, patient=patient))
                  for index, (case, (authority, host)) in enumerate(LOOKALIKE_HOSTS.items())
                  if host in served}  # an unlisted peer that does not answer for a name: that case is left out
    # the studies of each peer's Orthanc in one STOW-RS (the peers share one), then the KOS
    held = {id(listed_peer.orthanc): (listed_peer.orthanc, [listed, second])}
    held.setdefault(id(unlisted_peer.orthanc), (unlisted_peer.orthanc, []))[1].extend(
        [unlisted, *(v[2] for v in lookalikes.values())])
    for orthanc, studies in held.values():
        orthanc.store(d for study in studies for d in study.datasets())
    history = History(patient, preload(dmp, listed_peer, listed, store=False),
                      preload(dmp, unlisted_peer, unlisted, store=False), preload(dmp, listed_peer, second, store=False))
    for case, (authority, host, study) in lookalikes.items():
        history.lookalikes[case] = Lookalike(case, authority, host, preload(
            dmp, unlisted_peer, study, lookalike_base(unlisted_peer, authority), store=False))
    return history


@dataclass
class Withdrawal:
    """A patient whose only KOS points at the listed peer, consulted after the whitelist stopped listing it."""

    patient: Any
    kos: Any  # PreloadedKos at the listed peer
    visit: Any = None  # Visit after the withdrawal
    refreshed_at: float | None = None  # monotonic time the DUT was made to apply the list without the peer
    contacted_before: bool = False  # the DUT had contacted the peer in the first consultation
    requests: list = field(default_factory=list)  # the peer's records after the second contextual call


def prepare_withdrawal(runtime: Any) -> Withdrawal:
    """The second patient and its KOS at the listed peer, and the whitelist vector without that peer (registered
    in the whitelist simulator's catalogue, not published)."""
    from fixtures import whitelist as wl
    from simulators.whitelist import Vector

    dmp, peers, endpoint = runtime.simulator("dmp"), runtime.simulator("peers"), runtime.simulator("whitelist")
    listed_peer = peers.whitelisted[0]
    vectors = endpoint.vectors
    if WITHDRAWN_VECTOR not in vectors.catalogue:
        gone = listed_peer.fqdn.lower()
        vectors.catalogue[WITHDRAWN_VECTOR] = Vector(
            WITHDRAWN_VECTOR, f"liste nominale signée dont la Source {listed_peer.fqdn} est retirée", "valide",
            lambda: wl.signed_whitelist([d for d in vectors.nominal_domains() if d.db.lower() != gone],
                                        vectors.pki.whitelist_signer(), generated_at=vectors.generated_at))
    patient = make_patient("conso-retrait")
    study = make_study("conso-retrait", n_series=1, n_instances=1, rows=8, columns=8, patient=patient)
    return Withdrawal(patient, preload(dmp, listed_peer, study))


def contextual_call_fields(patient: Any) -> list[tuple[str, str]]:
    """The contextual call of a RIS for a patient (simulators.pacs.Patient): every mandatory parameter (spec §5.1).
    The patient has two birth given names (its own, then MARIE), so the list and the first one differ."""
    p = patient
    return [
        ("Patient.identifier.value", p.ins),
        ("Patient.identifier.system", p.ins_oid),
        ("Patient.name.family", p.family),
        ("Patient.name.given", f"{p.given} {SECOND_GIVEN_NAME}"),
        ("Patient.gender", p.sex),
        ("Patient.birthDate", f"{p.birth_date[:4]}-{p.birth_date[4:6]}-{p.birth_date[6:]}"),
        ("Address.district", p.birthplace_insee),
        (CONSENT_PARAMETER, "oui"),
        ("PatientID", f"C{p.ipp}"),  # the calling site's own IPP
        ("PatientIDIssuer", LOCAL_IPP_ISSUER),
    ]


@dataclass
class Marks:
    """Where each simulator's record stood before the visit."""

    t: float
    peers: dict[str, int] = field(default_factory=dict)  # peer FQDN -> last seq
    psc: int = 0
    proxy: int = 0


@dataclass
class Visit:
    """What the practitioner saw, and when."""

    marks: Marks
    call: Navigation
    page_at: float | None = None  # monotonic time the patient page arrived

    @property
    def page(self) -> Any:
        final = self.call.final
        return final if final is not None and final.status == 200 else None


class ConsoVisit:
    """The RIS and the practitioner's browser in front of the DUT's Conso entry point (one session)."""

    def __init__(self, runtime: Any, *, timeout_s: float | None = None):
        self.runtime = runtime
        addr = runtime.dut_address("conso")
        path = str(runtime.sut.dut_value("conso_path", DEFAULT_CALL_PATH))
        self.entry_url = f"http://{addr.host}:{addr.port}/{path.lstrip('/')}"
        self.timeout_s = timeout_s if timeout_s is not None else runtime.sut.timeouts.request_s
        self.browser = self._browser()

    def _browser(self, **kw: Any) -> Browser:
        """A practitioner's browser confined to the test bed: the DUT's FQDNs and [dut] endpoints, the simulators."""
        rt = self.runtime
        return Browser(rt.sut, rt.extra_hosts(), rt.evidence, timeout_s=kw.pop("timeout_s", self.timeout_s),
                       bed=list(rt.dut_addresses().values()), **kw)

    def own_interface(self) -> list[str]:
        """Where the DUT's own user interface may be (CON-01): its contextual-call entry point ("host:port")
        and its declared FQDNs."""
        addr = self.runtime.dut_address("conso")
        return [f"{addr.host}:{addr.port}", *self.runtime.sut.network]

    def close(self) -> None:
        self.browser.close()

    def marks(self) -> Marks:
        rt = self.runtime
        peers = rt.sims.get("peers")
        return Marks(time.monotonic(), {fqdn: p.recorder.last_seq for fqdn, p in peers.peers.items()} if peers else {},
                     rt.sims["psc"].recorder.last_seq if "psc" in rt.sims else 0,
                     rt.sims["proxy"].recorder.last_seq if "proxy" in rt.sims else 0)

    def call(self, fields: list[tuple[str, str]] | str, label: str) -> Navigation:
        """The RIS posts a contextual call; the answer is not followed (its status and Location are the point)."""
        return self.browser.submit(self.entry_url, fields, label=label, follow=False)

    def open_record(self, fields: list[tuple[str, str]], label: str = "appel-contextuel", *,
                    fresh_browser: bool = False) -> Visit:
        """Contextual call, then the practitioner's browser follows everything up to the patient page;
        ``fresh_browser``: from a new browser (no DUT session yet, hence a new PSC login)."""
        marks = self.marks()
        deadline = self.timeout_s * 6  # call, page, PSC, callback, page, consultation
        browser = self._browser() if fresh_browser else self.browser
        try:
            nav = browser.submit(self.entry_url, fields, label=label, follow=True, deadline_s=deadline)
        finally:
            if fresh_browser:
                browser.close()
        visit = Visit(marks, nav)
        if visit.page is not None:
            visit.page_at = time.monotonic()
        return visit

    def forged_login_return(self, fields: list[tuple[str, str]]) -> tuple[Navigation, Navigation, Marks]:
        """A fresh browser session that starts a login (contextual call, then the DUT's redirection to PSC, not
        followed), then comes back to the DUT's redirect_uri with a state the DUT never issued and a made-up
        code, as a forged link would (CSRF). Returns (the start, the forged return, marks before the return)."""
        browser = self._browser(timeout_s=self.runtime.sut.timeouts.request_s)
        try:
            call = browser.submit(self.entry_url, fields, label="connexion-appel", follow=False)
            page = call.final.header("location") if call.final is not None else None
            start = browser.open(urljoin(self.entry_url, page), label="connexion-debut", follow=False,
                                 origin="redirection") if page else call
            location = start.final.header("location") if start.final is not None else None
            redirect_uri = parse_qs(urlsplit(location or "").query).get("redirect_uri", [""])[0]
            marks = self.marks()
            if not redirect_uri:
                return start, Navigation(error="aucune redirection vers Pro Santé Connect (redirect_uri inconnu)"), marks
            forged = f"{redirect_uri}{'&' if '?' in redirect_uri else '?'}state=drimcheck-state-forge&" \
                     "session_state=drimcheck&code=drimcheck-code-forge"
            return start, browser.open(forged, label="connexion-retour-forge", follow=False,
                                       origin="adresse de retour (redirect_uri)"), marks
        finally:
            browser.close()

    def export(self, visit: Visit, study_uid: str, label: str = "export") -> Navigation | None:
        """The practitioner asks for the export of a study: the page's form, else `[hooks] export`; None when
        the hook ran (nothing to follow)."""
        page = visit.page
        form = export_form(page.text(), study_uid) if page is not None else None
        if form is not None:
            action, fields = form
            return self.browser.submit(urljoin(page.url, action), fields, label=label, origin="action de formulaire",
                                       deadline_s=self.runtime.sut.timeouts.export_s + self.runtime.sut.timeouts.request_s)
        if self.runtime.sut.hooks.get("export"):
            self.runtime.run_hook("export", {"DRIMCHECK_STUDY_UID": study_uid})
            return None
        from drimcheck.errors import HarnessError

        raise HarnessError("la page de la DRIMbox n'offre aucun formulaire d'export pour l'étude (form dont l'action "
                           "contient « export » et portant l'UID de l'étude) et [hooks] export n'est pas déclaré")


def export_form(page_html: str, study_uid: str) -> tuple[str, list[tuple[str, str]]] | None:
    """(action, fields) of the page's export form for a study: a <form> whose action mentions "export" and
    that carries the study UID in one of its inputs."""
    import lxml.html

    try:
        doc = lxml.html.fromstring(page_html)
    except (ValueError, lxml.etree.ParserError):
        return None
    for form in doc.iter("form"):
        action = form.get("action") or ""
        inputs = [(i.get("name"), i.get("value") or "") for i in form.iter("input") if i.get("name")]
        if "export" in action.lower() and any(v == study_uid for _, v in inputs):
            return action, inputs
    return None


EXPLICIT_LE_ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1'


def exported_study(runtime: Any, study_uid: str, expected: int, deadline_s: float) -> tuple[str, list[Any]]:
    """The instances of `study_uid` the DUT exported to one of its PACS (drimcheck's Orthancs), read back in
    Explicit VR Little Endian (Orthanc decodes what the DUT stored, e.g. JPEG Lossless, with DCMTK).

    Polls every PACS until one holds `expected` instances or `deadline_s` passes (then returns what the fullest
    PACS holds). Returns (PACS name, pydicom datasets)."""
    import io

    import pydicom

    from drimcheck.wado import retrieve

    end = time.monotonic() + deadline_s
    best: tuple[int, Any] = (0, None)
    while True:
        for pacs in runtime.sut.pacs:
            count = len(runtime.orthanc(pacs).instances_of_study(study_uid))
            if count > best[0] or best[1] is None:
                best = (count, pacs)
        if best[0] >= expected or time.monotonic() >= end:
            break
        time.sleep(0.1)
    count, pacs = best
    if not count:
        return (pacs.name if pacs else "?"), []
    orthanc = runtime.orthanc(pacs)
    with orthanc.client() as client:
        result = retrieve(client, f"{orthanc.dicomweb_url}/studies/{study_uid}", headers={"Accept": EXPLICIT_LE_ACCEPT})
    datasets = []
    for part in result.parts:
        try:
            datasets.append(pydicom.dcmread(io.BytesIO(part.body)))
        except Exception:  # noqa: BLE001 - an unreadable object is reported by its absence
            continue
    return pacs.name, datasets
