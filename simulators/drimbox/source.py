"""Source function of the reference DRIMbox: validated report in, KOS published to the DMP.

Flow (drimcheck's reading of drimbox-spec §4 and seed §2):
1. MLLP listener (`endpoints["mllp"]`): ORU^R01 / MDM^T02 (new report), MDM^T10 or a new report for an
   already published study (update), ORC|CA / OBX-11 D / MDM^T04 (withdrawal), OMI^O23 from the PACS.
2. Validation before the ACK: HL7 structure, INS and its OID, base64 CDA; C-FIND at IMAGE level on
   every PACS of the (possibly mutualised) DRIMbox to find the one that holds the study; consistency
   of the accession number and IPP between the report and the images. Any failure: ACK AE (AR for an
   unsupported message), nothing published. Otherwise ACK AA and a publication job is queued.
3. A single worker publishes jobs in order: the KOS (RetrieveURL on the dbN FQDN of the PACS holding
   the study), ITI-41 with VIHF and signature document over mTLS (ORG AUTH_CLI), RPLC for a new
   version (report update, IOCM rejection note on `endpoints["iocm"]`, OMI^O23), ITI-57 Deleted on
   withdrawal or when no image is left. A DMP Failure or transport error is retried with backoff,
   and never published twice.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from simulators.drimbox import mutants
from simulators.drimbox import source_hl7 as hl7
from simulators.drimbox import source_kos as kos
from simulators.drimbox import source_xds as xds
from simulators.drimbox.source_pacs import IocmScp, PacsError, find_images, find_study_uids

log = logging.getLogger("drimbox.source")

RETRY_DELAYS_S = (0.3, 0.6, 1.2, 2.4, 4.8)
INTERNAL_HOST = "drimbox-source.radiologie.local"
INTERNAL_IP = "10.20.30.40"
FAKE_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture, for the wrong-SOP-class mutant
#: SOP classes a Source that manifests "images only" would leave out (mutant cov-src-kos-images-only):
#: SR, key objects, presentation states, encapsulated documents, raw data
NON_IMAGE_PREFIXES = ("1.2.840.10008.5.1.4.1.1.88.", "1.2.840.10008.5.1.4.1.1.11.", "1.2.840.10008.5.1.4.1.1.104.",
                      "1.2.840.10008.5.1.4.1.1.66")


@dataclass
class StudyState:
    """What the Source knows about one study it published (its local archive, FAQ 8801)."""

    study_uid: str
    pacs: Any  # service.PacsLink
    report: hl7.Report
    found: Any = None  # source_pacs.StudyOnPacs at the last query
    entry_uuid: str | None = None
    kos_uid: str | None = None
    kos_sop_uid: str | None = None  # SOP Instance UID of the KOS in force (what a Conso sends as KOS-SOPInstanceUID)
    kos_series: dict[str, set[str]] = field(default_factory=dict)  # what that KOS references: series -> instances
    version: int = 0
    first_entry: str | None = None  # entry of the first version (mutants cov-src-*-original-entry only)
    deleted: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Job:
    kind: str  # "publish" | "replace" | "delete"
    study_uid: str
    reason: str
    requery: bool = False  # the exam changed on the PACS (IOCM, OMI^O23): query it again before publishing
    attempt: int = 0


class Function:
    def __init__(self, box: Any):
        self.box = box
        self.config = box.config
        self.states: dict[str, StudyState] = {}
        self._lock = threading.RLock()
        # Jobs of one study run in order, one at a time; studies run in parallel, so a slow PACS or DMP
        # exchange for one examination never delays the others.
        self._queues: dict[str, deque[Job]] = {}
        self._active: set[str] = set()
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="source-publisher")
        self._mllp: hl7.MllpServer | None = None
        self._iocm: IocmScp | None = None
        self._stopping = threading.Event()

    # -- Function protocol ------------------------------------------------------------------
    def routes(self) -> dict:
        return {}

    def health_checks(self) -> list[dict]:
        return []

    def start(self) -> None:
        endpoints = self.config.endpoints
        if "mllp" in endpoints:
            host, port = _split(endpoints["mllp"])
            self._mllp = hl7.MllpServer(host, port, self.on_message)
            self._mllp.start()
        if "iocm" in endpoints:
            host, port = _split(endpoints["iocm"])
            aet = str(self.config.settings.get("iocm_aet", self.config.calling_aet))
            self._iocm = IocmScp(aet, host, port, self.on_rejection)
            self._iocm.start()

    def stop(self) -> None:
        self._stopping.set()
        self._executor.shutdown(wait=False, cancel_futures=True)
        for part in (self._mllp, self._iocm):
            if part is not None:
                part.stop()

    def kos_in_force(self, kos_sop_uid: str) -> tuple[str, dict[str, set[str]]] | None:
        """The study and the series/instances referenced by a KOS this Source published and that is still in
        force (not replaced by a newer version, not withdrawn); None otherwise (the local archive, FAQ 8801)."""
        with self._lock:
            for state in self.states.values():
                if state.kos_sop_uid == kos_sop_uid and not state.deleted:
                    return state.study_uid, state.kos_series
        return None

    # -- HL7 ----------------------------------------------------------------------------------
    def on_message(self, text: str) -> bytes:
        msg = None
        try:
            msg = hl7.Message(text)
            if msg.type == ("OMI", "O23"):
                return self._on_exam_change(msg)
            return self._on_report(msg)
        except hl7.Hl7Error as err:
            log.info("message refused (%s): %s", err.code, err.reason)
            return hl7.ack(msg, err.code, err.reason, raw=text)
        except Exception as exc:  # never leave the RIS without an answer (logged)
            log.exception("message processing failed")
            return hl7.ack(msg, "AE", f"erreur interne : {type(exc).__name__}", raw=text)

    def _on_report(self, msg: hl7.Message) -> bytes:
        lenient = mutants.active("src-ack-aa-on-malformed")
        # mutant: the INS-NIA OIDs (production .9, test .11) forgotten, only the INS-NIR ones accepted
        oids = {"1.2.250.1.213.1.4.8", "1.2.250.1.213.1.4.10"} if mutants.active("cov-src-ins-nia-refused") else hl7.INS_OIDS
        try:
            report = hl7.read_report(msg, ins_oids=None if lenient else oids)
        except hl7.Hl7Error as err:
            if lenient and err.code == "AE":
                return hl7.ack(msg, "AA")  # accepted, then silently dropped
            raise
        if report.kind == "withdrawal" and mutants.active("cov-src-withdrawal-t04-only") and report.message_type != "MDM^T04":
            report.kind = "update"  # ORC|CA and OBX-11 D read as a corrected report
        if report.kind == "withdrawal":
            return self._on_withdrawal(msg, report)
        if mutants.active("src-mdm-ignored") and report.message_type == "MDM^T02":
            return hl7.ack(msg, "AA")
        pacs, found = self._locate(report.study_uid)
        if pacs is None:
            if not mutants.active("src-publish-absent-study"):
                raise hl7.Hl7Error("AE", f"étude {report.study_uid} absente des PACS de la DRIMbox")
            pacs, found = self.config.pacs[0], _empty()
        elif not mutants.active("src-publish-despite-mismatch") and not self._update_unchecked(report.study_uid):
            _check_consistency(report, found)
        with self._lock:
            state = self.states.get(report.study_uid)
            update = state is not None and not state.deleted
            if update:
                state.report, state.found, state.pacs = report, found, pacs
            else:
                self.states[report.study_uid] = StudyState(report.study_uid, pacs, report, found)
        self._enqueue(Job("replace" if update else "publish", report.study_uid, report.message_type))
        return hl7.ack(msg, "AA")

    def _update_unchecked(self, study_uid: str) -> bool:
        """Mutant cov2-src-update-unchecked: the consistency checks belong to the registration of a new study;
        a new version of the report of a study already published goes straight to the update."""
        if not mutants.active("cov2-src-update-unchecked"):
            return False
        with self._lock:
            state = self.states.get(study_uid)
            return state is not None and not state.deleted and state.entry_uuid is not None

    def _on_withdrawal(self, msg: hl7.Message, report: hl7.Report) -> bytes:
        with self._lock:
            state = self.states.get(report.study_uid)
        if state is None or state.deleted:
            raise hl7.Hl7Error("AE", f"aucun KOS publié pour l'étude {report.study_uid}")
        if not mutants.active("src-no-iti57-on-withdrawal"):
            self._enqueue(Job("delete", report.study_uid, "retrait du CR"))
        return hl7.ack(msg, "AA")

    def _on_exam_change(self, msg: hl7.Message) -> bytes:
        change = hl7.read_omi(msg)
        with self._lock:
            state = self.states.get(change.study_uid)
        if state is None or state.deleted:
            raise hl7.Hl7Error("AE", f"aucun KOS publié pour l'étude {change.study_uid}")
        self._enqueue(Job("delete" if change.cancelled else "replace", change.study_uid, "OMI^O23", requery=True))
        return hl7.ack(msg, "AA")

    def on_rejection(self, study_uid: str, rejected: list[str]) -> None:
        """IOCM rejection note received from the PACS."""
        if mutants.active("src-ignore-iocm"):
            return
        with self._lock:
            state = self.states.get(study_uid)
        if state is None or state.deleted:
            log.info("IOCM rejection for unpublished study %s ignored", study_uid)
            return
        self._enqueue(Job("replace", study_uid, f"note de rejet IOCM ({len(rejected)} instance(s))", requery=True))

    # -- PACS ---------------------------------------------------------------------------------
    def _query(self, pacs: Any, study_uid: str):
        return find_images(pacs.host, pacs.dicom_port, pacs.aet, self.config.calling_aet, study_uid)

    def _locate(self, study_uid: str):
        """The PACS that holds the study (C-FIND on each PACS in turn) and what it holds."""
        candidates = self.config.pacs[:1] if mutants.active("src-single-pacs") else self.config.pacs
        errors = []
        for pacs in candidates:
            try:
                found = self._query(pacs, study_uid)
            except PacsError as exc:
                errors.append(f"{pacs.name} : {exc}")
                continue
            if not found.images and mutants.active("cov2-src-study-uid-prefix"):
                found = self._query_by_prefix(pacs, study_uid)
            if found.images:
                return pacs, found
        if errors and len(errors) == len(candidates):
            raise hl7.Hl7Error("AE", "PACS injoignable(s) : " + " ; ".join(errors))
        return None, None

    def _query_by_prefix(self, pacs: Any, study_uid: str):
        """Mutant cov2-src-study-uid-prefix: "RIS that truncate UIDs" tolerated, the study found by prefix."""
        for uid in find_study_uids(pacs.host, pacs.dicom_port, pacs.aet, self.config.calling_aet):
            if uid != study_uid and uid.startswith(study_uid):
                return self._query(pacs, uid)
        return _empty()

    # -- publication jobs ---------------------------------------------------------------------
    def _enqueue(self, job: Job) -> None:
        with self._lock:
            self._queues.setdefault(job.study_uid, deque()).append(job)
            if job.study_uid in self._active or self._stopping.is_set():
                return
            self._active.add(job.study_uid)
        self._executor.submit(self._drain, job.study_uid)

    def _drain(self, study_uid: str) -> None:
        while True:
            with self._lock:
                pending = self._queues.get(study_uid)
                if not pending:
                    self._active.discard(study_uid)
                    return
                job = pending.popleft()
            try:
                self._run(job)
            except (xds.DmpError, PacsError) as exc:
                self._retry(job, str(exc))
            except Exception:  # one bad job must not stop the others (logged)
                log.exception("job %s failed", job)

    def _retry(self, job: Job, why: str) -> None:
        log.warning("%s (job %s for %s, attempt %d)", why, job.kind, job.study_uid, job.attempt + 1)
        if mutants.active("src-lose-report-on-failure") or job.attempt >= len(RETRY_DELAYS_S) or \
                (mutants.active("cov-src-single-retry") and job.attempt >= 1):
            log.error("job %s for %s abandoned", job.kind, job.study_uid)
            return
        delay = RETRY_DELAYS_S[job.attempt]
        retry = replace(job, attempt=job.attempt + 1)
        timer = threading.Timer(delay, self._enqueue, args=(retry,))
        timer.daemon = True
        timer.start()

    def _run(self, job: Job) -> None:
        with self._lock:
            state = self.states.get(job.study_uid)
        if state is None or state.deleted:
            return
        if job.kind == "delete":
            self._delete(state)
            return
        if job.requery:
            found = self._query(state.pacs, state.study_uid)  # the exam changed on the PACS: ask it again
            if not found.images:
                self._delete(state)  # every image is gone
                return
            state.found = found
        self._publish(state, replacing=state.entry_uuid)
        if job.attempt and mutants.active("src-publish-twice-after-failure"):
            self._publish(state, replacing=None)

    def _dmp(self) -> dict[str, Any]:
        dmp = self.config.peers.get("dmp")
        if not dmp:
            raise xds.DmpError("aucun DMP configuré (peers.dmp)")
        return dmp

    def _client(self) -> tuple[xds.Credentials, Any]:
        certs = self.config.certs
        if mutants.active("src-dmp-serv-ssl-cert"):
            role = f"serv_ssl:{self.config.pacs[0].db}"
        else:
            role = "org_auth_cli"
        creds = xds.Credentials(**certs[role])
        return creds, xds.client_context(creds, self._dmp().get("server_ca") or self.config.trust["igc_chain"])

    def _signer(self) -> xds.Credentials:
        return xds.Credentials(**self.config.certs["org_sign"])

    def _publish(self, state: StudyState, *, replacing: str | None) -> None:
        report, found = state.report, state.found
        version = state.version + 1
        db = self._retrieve_host(state, version)
        facts = kos.StudyFacts(
            **report.identity(), institution=report.structure_name, study_date=found.study_date, study_time=found.study_time,
            study_description=found.study_description, study_id=found.study_id,
            referring_physician=found.referring_physician, images=list(found.images))
        self._mutate_facts(facts)
        location_uid = kos.stable_uid("drimbox-source", state.pacs.db)
        ds = kos.build_kos(facts, db_fqdn=db, retrieve_aet=self.config.calling_aet, retrieve_location_uid=location_uid,
                           instance_number=version)
        self._mutate_kos(ds, report, db)
        data = kos.encode(ds)
        created = f"{ds.InstanceCreationDate}{ds.InstanceCreationTime}"
        pub = self._publication(report, facts)
        overrides = self._xds_overrides(report)
        dmp = self._dmp()
        if mutants.active("src-update-without-rplc"):
            replacing = None
        if mutants.active("cov-src-rplc-original-entry") and replacing and state.first_entry:
            replacing = state.first_entry
        request = xds.provide_and_register(
            pub, data, ds.SOPInstanceUID, created, to=dmp["repository_url"], signer=self._signer(), replaces=replacing,
            signed_vihf=not mutants.active("src-vihf-unsigned"), with_signature=not mutants.active("src-no-signature-document"),
            overrides=overrides)
        creds, ctx = self._client()
        xds.send(dmp["repository_url"], request, ctx, self.config.hosts)
        state.entry_uuid, state.kos_uid, state.version = request.entry_uuid, request.unique_id, version
        state.first_entry = state.first_entry or request.entry_uuid
        if not (mutants.active("cov-src-wado-first-kos-only") and state.kos_sop_uid):  # mutant: archive keeps the first KOS
            state.kos_sop_uid = str(ds.SOPInstanceUID)
            state.kos_series = {str(item.SeriesInstanceUID): {str(r.ReferencedSOPInstanceUID) for r in item.ReferencedSOPSequence}
                                for item in ds.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence}
        state.history.append({"kos": ds.SOPInstanceUID, "entry": request.entry_uuid, "replaced": replacing})
        log.info("KOS %s published for study %s (version %d)", ds.SOPInstanceUID, state.study_uid, version)

    def _delete(self, state: StudyState) -> None:
        if state.entry_uuid is None:
            state.deleted = True
            return
        dmp = self._dmp()
        entry = state.first_entry if mutants.active("cov-src-delete-original-entry") and state.first_entry else state.entry_uuid
        request = xds.update_status(self._publication(state.report, None), entry,
                                    to=dmp["registry_url"], signer=self._signer())
        creds, ctx = self._client()
        xds.send(dmp["registry_url"], request, ctx, self.config.hosts)
        state.deleted = True
        log.info("KOS of study %s deleted (ITI-57)", state.study_uid)

    def _publication(self, report: hl7.Report, facts: kos.StudyFacts | None) -> xds.Publication:
        modalities = sorted({i.modality for i in facts.images if i.modality}) if facts else report.modalities
        if mutants.active("cov-src-events-first-modality") and facts and facts.images and facts.images[0].modality:
            modalities = [facts.images[0].modality]
        flags = {"MASQUE_PS": "Masqué aux professionnels de santé", "INVISIBLE_PATIENT": "Non visible par le patient"}
        return xds.Publication(
            **report.identity(), author_id=report.author_id, author_family=report.author_family, author_given=report.author_given,
            author_role="10", author_specialty=report.author_specialty or "SM44", structure_id=report.structure_id,
            structure_name=report.structure_name or "DRIMbox", facility_type=report.facility_type or "SA08",
            practice=report.practice or "AMBULATOIRE", modalities=modalities or report.modalities,
            service_start=report.service_start, service_stop=report.service_stop,
            confidentiality=[(c, "1.2.250.1.213.1.1.4.13", flags[c]) for c in report.confidentiality if c in flags])

    # -- mutants (each breaks one requirement, see mutants-source.toml) --------------------------
    def _retrieve_host(self, state: StudyState, version: int) -> str:
        db = state.pacs.db
        others = [p.db for p in self.config.pacs if p.db != db]
        if mutants.active("src-retrieve-other-pacs-db") and others:
            return others[0]
        if mutants.active("src-host-changes-on-update") and version > 1:
            return others[0] if others else f"db99.{self.config.registry}.mesimagesmedicales.fr"
        return db

    def _mutate_facts(self, facts: kos.StudyFacts) -> None:
        if mutants.active("src-kos-missing-instance") and len(facts.images) > 1:
            facts.images.pop()
        if mutants.active("src-kos-extra-instance") and facts.images:
            first = facts.images[0]
            facts.images.append(replace(first, sop_uid=kos.new_uid(), instance_number=9999))
        if mutants.active("src-kos-wrong-sop-class"):
            facts.images = [replace(i, sop_class_uid=FAKE_SOP_CLASS) for i in facts.images]
        if mutants.active("cov-src-kos-images-only"):
            kept = [i for i in facts.images if not i.sop_class_uid.startswith(NON_IMAGE_PREFIXES)]
            facts.images = kept or facts.images

    def _mutate_kos(self, ds: Any, report: hl7.Report, db: str) -> None:
        series = ds.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence
        for base, mutant in ((f"http://localhost:4200{kos.RETRIEVE_BASE_PATH}", "src-retrieve-localhost"),
                             (f"https://{INTERNAL_HOST}{kos.RETRIEVE_BASE_PATH}", "src-retrieve-internal-host"),
                             (f"https://{INTERNAL_IP}{kos.RETRIEVE_BASE_PATH}", "src-retrieve-ip")):
            if mutants.active(mutant):
                for item in series:
                    item.RetrieveURL = item.RetrieveURL.replace(f"https://{db}{kos.RETRIEVE_BASE_PATH}", base)
        if mutants.active("src-kos-patientid-ipp"):
            ds.PatientID = report.ipp
        if mutants.active("src-kos-no-accession"):
            ds.ReferencedRequestSequence[0].AccessionNumber = ""
        if mutants.active("src-kos-series-reused") and series:
            ds.SeriesInstanceUID = series[0].SeriesInstanceUID
        if mutants.active("src-kos-series-time-date"):
            ds.SeriesTime = ds.SeriesDate
        if mutants.active("src-kos-broken-template"):
            ds.ConceptNameCodeSequence[0].CodeValue = "113000"
            ds.ConceptNameCodeSequence[0].CodeMeaning = "Of Interest"
        if mutants.active("src-kos-no-retrieve-location"):
            for item in series:
                del item.RetrieveAETitle
                del item.RetrieveLocationUID
        if mutants.active("cov-src-retrieve-url-first-series") and series:
            for item in series:
                item.RetrieveURL = series[0].RetrieveURL

    def _xds_overrides(self, report: hl7.Report) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if mutants.active("src-xds-wrong-typecode"):
            out["type_code"] = ("18748-4", "2.16.840.1.113883.6.1", "CR d'imagerie médicale")
        if mutants.active("src-xds-wrong-hash"):
            out["hash"] = "0" * 40
        if mutants.active("src-xds-uniqueid-not-kos"):
            out["unique_id"] = kos.new_uid()
        if mutants.active("src-signature-manifest-digest"):
            out["tamper_manifest"] = True
        if mutants.active("cov-xds-sourcepatientid-ipp"):
            out["source_patient_id"] = f"{report.ipp}^^^&{report.ipp_oid}&ISO^PI"  # the local IPP, as IHE's "source" id
        return out


def _check_consistency(report: hl7.Report, found: Any) -> None:
    """The images must carry the report's accession number and IPP (PoC checks, drimbox-spec §4.2)."""
    if found.accession_numbers != {report.accession}:
        seen = ", ".join(sorted(a or "(vide)" for a in found.accession_numbers))
        raise hl7.Hl7Error("AE", f"numéro d'accession du CR ({report.accession}) différent de celui des images ({seen})")
    if found.patient_ids != {report.ipp}:
        seen = ", ".join(sorted(p or "(vide)" for p in found.patient_ids))
        raise hl7.Hl7Error("AE", f"IPP du CR ({report.ipp}) différent de celui des images ({seen})")


def _empty():
    from simulators.drimbox.source_pacs import StudyOnPacs

    return StudyOnPacs()


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)

