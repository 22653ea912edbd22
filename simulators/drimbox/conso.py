"""Conso function of the reference DRIMbox: contextual call, PSC login, DMP consultation, images, export, KPI.

Flow (drimbox-spec §5, §6; what a RIS/DPI and the practitioner's browser see), on the plain-HTTP
entry point ``endpoints["conso"]`` (the local network side of the DRIMbox):

1. ``POST /api/conso/parameters`` (the ANS PoC path), ``application/x-www-form-urlencoded``: the
   contextual call. Mandatory: ``Patient.identifier.value`` (INS), ``Patient.identifier.system``
   (its OID), ``Patient.name.family``, ``Patient.name.given``, ``Patient.gender``, ``Patient.birthDate``,
   ``Address.district``, ``PatientID``, ``PatientIDIssuer`` and the consent flag
   (``InformationEtConsentement`` as the ANS test server, or ``InformationEtOppositionConsultation`` as
   the PoC); optional: ``StudyInstanceUID``, ``Modality``, ``AccessionNumber``, ``AccessionNumberIssuer``,
   ``StudyDate``, ``AnatomicRegion``, ``Situation``. Unknown parameter, empty value, repeated parameter
   or missing mandatory one: **400** with the reason. Otherwise **303** to ``/conso/patient?uuid=<uuid>``.
   Either way one KPI line "ModelStat" (``Nombre_Appel=1``, ``Statut_Appel=succes|erreur``) is appended
   to ``<workdir>/kpi/ModelStat.log``.
2. ``GET /conso/patient?uuid=…``: without a logged-in session, a session cookie and **302** to PSC's
   authorization endpoint (state and nonce kept in the session); PSC sends the browser back to
   ``/api/auth/redirect`` whose state must be one this session issued (else 400), the code is exchanged
   through the Proxy e-santé (psc_client), the ID token verified (nonce), the UserInfo read; **303**
   back to the patient page.
3. The patient page (200, HTML): the ten strict INS traits (requirement INS/va1.36, spec §5.1), then the
   consultation: ITI-18 FindDocuments for the INS, ITI-43 of the KOS found (conso_dmp: VIHF of the PSC
   user, INDIRECTE_RENFORCEE, mTLS ORG AUTH_CLI), each KOS read, and each series retrieved by WADO-RS
   from the host of its RetrieveURL **only if** the trust function says it is a ``db`` of the valid
   whitelist (conso_wado). One row per study with what was received, or why nothing was.
4. ``POST /conso/export`` (form: uuid, study): the received instances go to the DRIMbox's first PACS by
   STOW-RS; 200 with the count.

The reference's own code (no harness import).
"""

from __future__ import annotations

import html
import logging
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

from simulators.drimbox import conso_dmp, conso_wado, mutants
from simulators.drimbox.psc_client import Login, PscClient, PscError

log = logging.getLogger("drimbox.conso")

CALL_PATH = "/api/conso/parameters"
PAGE_PATH = "/conso/patient"
CALLBACK_PATH = "/api/auth/redirect"
EXPORT_PATH = "/conso/export"
COOKIE = "DRIMBOX_CONSO_SESSION"
CONSENT = ("InformationEtConsentement", "InformationEtOppositionConsultation")
MANDATORY = ("Patient.identifier.value", "Patient.identifier.system", "Patient.name.family", "Patient.name.given",
             "Patient.gender", "Patient.birthDate", "Address.district", "PatientID", "PatientIDIssuer")
OPTIONAL = ("StudyInstanceUID", "Modality", "AccessionNumber", "AccessionNumberIssuer", "StudyDate", "AnatomicRegion",
            "Situation")
KNOWN = set(MANDATORY) | set(OPTIONAL) | set(CONSENT)
_LENIENT_NAMES = {name.lower(): name for name in KNOWN}  # mutant cov2-conso-param-names-lenient only
SESSION_TTL_S = 8 * 3600


class CallError(ValueError):
    """A contextual call refused with 400 (one French line)."""


def parse_call(body: bytes) -> dict[str, str]:
    """The contextual call's parameters; CallError for an unknown, empty, repeated or missing mandatory one."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise CallError("corps non UTF-8") from None
    params: dict[str, str] = {}
    for pair in text.split("&") if text.strip() else []:
        key, eq, raw = pair.partition("=")
        key = unquote_plus(key).strip()
        if mutants.active("cov2-conso-param-names-lenient"):  # mutant: names matched as equalsIgnoreCase, "[]" cut
            key = _LENIENT_NAMES.get(key.lower().removesuffix("[]"), key)
        value = unquote_plus(raw).strip()
        if key not in KNOWN:
            raise CallError(f"paramètre inconnu : {key or '(vide)'}")
        if not eq or not value:
            raise CallError(f"paramètre sans valeur : {key}")
        if key in params:
            raise CallError(f"paramètre répété : {key}")
        params[key] = value
    missing = [k for k in MANDATORY if k not in params]
    if not any(k in params for k in CONSENT):
        missing.append(" ou ".join(CONSENT))
    if missing:
        raise CallError(f"paramètre(s) obligatoire(s) absent(s) : {', '.join(missing)}")
    return params


# --------------------------------------------------------------------------- INS traits


def _date_fr(value: str) -> str:
    digits = value.replace("-", "")
    if len(digits) == 8 and digits.isdigit():
        return f"{digits[6:8]}/{digits[4:6]}/{digits[0:4]}"
    return value


def ins_traits(params: dict[str, str]) -> list[tuple[str, str, str]]:
    """(key, French label, value) of the ten strict INS traits shown at start-up (INS/va1.36, spec §5.1).

    The contextual call carries the birth name and the birth given names; the used name and used given
    name are not parameters of the call: they are shown as the birth name and first birth given name.
    """
    given = params.get("Patient.name.given", "")
    first = given.split()[0] if given.split() else given
    if mutants.active("cov2-conso-ins-first-given-full"):  # mutant: the DPI's "prénom" field shown whole
        first = given
    oid = params.get("Patient.identifier.system", "").removeprefix("urn:oid:")
    traits = [
        ("nom-naissance", "Nom de naissance", params.get("Patient.name.family", "")),
        ("premier-prenom-naissance", "Premier prénom de naissance", first),
        ("date-naissance", "Date de naissance", _date_fr(params.get("Patient.birthDate", ""))),
        ("sexe", "Sexe", params.get("Patient.gender", "")),
        ("lieu-naissance", "Lieu de naissance (code INSEE)", params.get("Address.district", "")),
        ("matricule-ins", "Matricule INS", params.get("Patient.identifier.value", "")),
        ("oid-ins", "OID de l'INS", oid),
        ("prenoms-naissance", "Liste des prénoms de naissance", given),
        ("prenom-utilise", "Prénom utilisé", first),
        ("nom-utilise", "Nom utilisé", params.get("Patient.name.family", "")),
    ]
    if mutants.active("conso-ins-traits-missing"):  # shows only the identity of a classic patient banner
        traits = [t for t in traits if t[0] not in ("lieu-naissance", "prenoms-naissance", "oid-ins")]
    return traits


# --------------------------------------------------------------------------- state


@dataclass
class Call:
    uuid: str
    params: dict[str, str]
    received_at: float
    consultation: Consultation | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def patient_id(self) -> str:
        oid = self.params["Patient.identifier.system"].removeprefix("urn:oid:")
        return f"{self.params['Patient.identifier.value']}^^^&{oid}&ISO^NH"


@dataclass
class Session:
    sid: str
    created: float
    pending: dict[str, tuple[str, str]] = field(default_factory=dict)  # state -> (nonce, call uuid)
    login: Login | None = None


@dataclass
class StudyResult:
    kos: conso_wado.Kos | None
    kos_uid: str
    series: list[conso_wado.SeriesFetch] = field(default_factory=list)
    problem: str | None = None

    @property
    def instances(self) -> list[bytes]:
        return [i for s in self.series for i in s.instances]

    @property
    def expected(self) -> int:
        return sum(len(s.instances) for s in self.kos.series) if self.kos else 0

    def status(self) -> str:
        if self.problem:
            return self.problem
        refused = [s.refused or s.error for s in self.series if s.refused or s.error]
        if refused and not self.instances:
            return refused[0]
        if len(self.instances) < self.expected:
            return f"images incomplètes ({refused[0] if refused else 'réponse partielle'})"
        return "images reçues"


@dataclass
class Consultation:
    started: float
    seconds: float = 0.0
    studies: list[StudyResult] = field(default_factory=list)
    documents: int = 0
    problem: str | None = None


class Function:
    def __init__(self, box: Any):
        self.box = box
        self.config = box.config
        self.calls: dict[str, Call] = {}
        self.sessions: dict[str, Session] = {}
        self._lock = threading.Lock()
        self._kpi_lock = threading.Lock()
        self.kpi_path = Path(self.config.workdir) / "kpi" / "ModelStat.log"
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._psc: PscClient | None = None
        self._dmp: conso_dmp.DmpConsultation | None = None
        self._wado: conso_wado.WadoClient | None = None

    # -- Function protocol --------------------------------------------------------------------------
    def routes(self) -> dict:
        return {}

    def health_checks(self) -> list[dict]:
        return []

    def start(self) -> None:
        self.kpi_path.parent.mkdir(parents=True, exist_ok=True)
        self.kpi_path.touch()
        address = self.config.endpoints.get("conso")
        if not address:
            log.warning("no conso endpoint configured: contextual calls are not served")
            return
        import uvicorn

        host, _, port = address.rpartition(":")
        config = uvicorn.Config(self.app(), host=host.strip("[]"), port=int(port), log_level="warning",
                                access_log=False, lifespan="off", timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="conso-http", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"conso entry point cannot listen on {address}")
            time.sleep(0.005)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            if self._thread is not None:
                self._thread.join(timeout=3)
        for client in (self._psc, self._wado):
            if client is not None:
                client.close()

    # -- clients (created on first use: a DRIMbox without PSC still serves its Source role) ---------
    @property
    def psc(self) -> PscClient:
        if self._psc is None:
            self._psc = PscClient(self.config)
        return self._psc

    @property
    def dmp(self) -> conso_dmp.DmpConsultation:
        if self._dmp is None:
            self._dmp = conso_dmp.DmpConsultation(self.config)
        return self._dmp

    @property
    def wado(self) -> conso_wado.WadoClient:
        if self._wado is None:
            self._wado = conso_wado.WadoClient(self.config)
        return self._wado

    # -- KPI ----------------------------------------------------------------------------------------
    def kpi(self, ok: bool) -> None:
        """One "ModelStat" line per contextual call received (FAQ ANS)."""
        if mutants.active("conso-no-kpi"):
            return
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        line = f"{stamp};ModelStat;Nombre_Appel=1;Statut_Appel={'succes' if ok else 'erreur'}\n"
        with self._kpi_lock, open(self.kpi_path, "a", encoding="utf-8") as f:
            f.write(line)

    # -- HTTP ---------------------------------------------------------------------------------------
    def app(self) -> Any:
        from starlette.applications import Starlette
        from starlette.routing import Route

        return Starlette(routes=[
            Route(CALL_PATH, self.contextual_call, methods=["POST"]),
            Route(PAGE_PATH, self.patient_page, methods=["GET"]),
            Route(CALLBACK_PATH, self.callback, methods=["GET"]),
            Route(EXPORT_PATH, self.export, methods=["POST"]),
        ])

    def _base(self, request: Any) -> str:
        return f"{request.url.scheme}://{request.headers.get('host') or self.config.endpoints['conso']}"

    async def contextual_call(self, request: Any) -> Any:
        from starlette.responses import PlainTextResponse, RedirectResponse

        body = await request.body()
        try:
            params = parse_call(body) if not mutants.active("conso-params-unchecked") else _lenient(body)
        except CallError as exc:
            self.kpi(False)
            log.info("contextual call refused: %s", exc)
            return PlainTextResponse(f"Appel contextuel refusé : {exc}\n", status_code=400)
        call = Call(str(uuid.uuid4()), params, time.time())
        with self._lock:
            self.calls[call.uuid] = call
        self.kpi(True)
        return RedirectResponse(f"{self._base(request)}{PAGE_PATH}?uuid={call.uuid}", status_code=303)

    def _session(self, request: Any) -> Session | None:
        sid = request.cookies.get(COOKIE)
        with self._lock:
            session = self.sessions.get(sid or "")
            if session is not None and time.time() - session.created > SESSION_TTL_S:
                self.sessions.pop(session.sid, None)
                return None
            return session

    def _redirect_uri(self, request: Any) -> str:
        return f"{self._base(request)}{CALLBACK_PATH}"

    def patient_page(self, request: Any) -> Any:
        from starlette.responses import HTMLResponse, RedirectResponse

        call = self.calls.get(request.query_params.get("uuid", ""))
        if call is None:
            return HTMLResponse(_page("Appel inconnu", "<p>Appel contextuel inconnu ou expiré.</p>"), status_code=404)
        session = self._session(request)
        if session is None or session.login is None:
            if session is None:
                session = Session(secrets.token_urlsafe(32), time.time())
                with self._lock:
                    self.sessions[session.sid] = session
            try:
                login = self.psc.authorization(self._redirect_uri(request))
            except PscError as exc:
                return HTMLResponse(_page("Connexion impossible", f"<p>{html.escape(str(exc))}</p>"), status_code=502)
            session.pending[login.state] = (login.nonce, call.uuid)
            resp = RedirectResponse(login.url, status_code=302)
            resp.set_cookie(COOKIE, session.sid, httponly=True, samesite="lax", path="/")
            return resp
        with call.lock:
            if call.consultation is None:
                call.consultation = self.consult(call, session.login)
                self._forget_old_images(call)
        return HTMLResponse(self.render(call))

    def _forget_old_images(self, current: Call, keep: int = 4) -> None:
        """Received images are kept for the export of the most recent consultations only (bounded memory)."""
        with self._lock:
            done = sorted((c for c in self.calls.values() if c.consultation is not None and c is not current),
                          key=lambda c: c.received_at, reverse=True)
        for old in done[keep - 1:]:
            for study in old.consultation.studies:
                for series in study.series:
                    series.instances = []

    def callback(self, request: Any) -> Any:
        from starlette.responses import HTMLResponse, RedirectResponse

        session = self._session(request)
        state = request.query_params.get("state", "")
        pending = session.pending.pop(state, None) if session is not None else None
        if pending is None and mutants.active("conso-state-unchecked") and session is not None and session.pending:
            pending = session.pending.pop(next(iter(session.pending)))
        if pending is None:
            return HTMLResponse(_page("Connexion refusée", "<p>Réponse de Pro Santé Connect inattendue (state "
                                      "inconnu pour cette session).</p>"), status_code=400)
        nonce, call_uuid = pending
        if request.query_params.get("error"):
            return HTMLResponse(_page("Connexion refusée", f"<p>Pro Santé Connect : "
                                      f"{html.escape(request.query_params['error'])}</p>"), status_code=401)
        try:
            session.login = self.psc.complete(request.query_params.get("code", ""), self._redirect_uri(request), nonce)
        except PscError as exc:
            return HTMLResponse(_page("Connexion refusée", f"<p>{html.escape(str(exc))}</p>"), status_code=401)
        log.info("practitioner %s logged in through PSC", session.login.practitioner)
        return RedirectResponse(f"{self._base(request)}{PAGE_PATH}?uuid={call_uuid}", status_code=303)

    async def export(self, request: Any) -> Any:
        from starlette.concurrency import run_in_threadpool
        from starlette.responses import HTMLResponse

        session = self._session(request)
        if session is None or session.login is None:
            return HTMLResponse(_page("Export refusé", "<p>Session expirée : reconnectez-vous.</p>"), status_code=401)
        body = (await request.body()).decode("utf-8", "replace")
        form = {unquote_plus(k): unquote_plus(v) for k, _, v in (p.partition("=") for p in body.split("&") if p)}
        call = self.calls.get(form.get("uuid", ""))
        study = next((s for s in (call.consultation.studies if call and call.consultation else [])
                      if s.kos and s.kos.study_uid == form.get("study")), None)
        if study is None or not study.instances:
            return HTMLResponse(_page("Export impossible", "<p>Aucune image reçue pour cette étude.</p>"), status_code=404)
        pacs = self.config.pacs[0]
        try:
            stored = await run_in_threadpool(self.wado.export, pacs, study.instances,
                                             local_patient=(call.params["PatientID"], call.params["PatientIDIssuer"]))
        except conso_wado.WadoError as exc:
            return HTMLResponse(_page("Export en échec", f"<p>{html.escape(str(exc))}</p>"), status_code=502)
        return HTMLResponse(_page("Export terminé", f'<p id="export" data-instances="{stored}">{stored} instance(s) '
                                  f"de l'étude {html.escape(study.kos.study_uid)} envoyée(s) au PACS "
                                  f"{html.escape(pacs.name)}.</p>"))

    # -- consultation -------------------------------------------------------------------------------
    def consult(self, call: Call, login: Login) -> Consultation:
        out = Consultation(time.monotonic())
        trust = self.box.function("trust")
        try:
            who = conso_dmp.Practitioner.from_userinfo(login.userinfo, call.params.get("Situation"))
            if not mutants.active("conso-no-dmp-access-test"):
                try:
                    self.dmp.check_access(who, call.patient_id)
                except conso_dmp.AccessDenied:
                    if not mutants.active("conso-dmp-access-ignored"):
                        raise
            modalities = [call.params["Modality"]] if call.params.get("Modality") else None
            docs = self.dmp.find_documents(who, call.patient_id, modalities=modalities,
                                           accession=call.params.get("AccessionNumber"))
            out.documents = len(docs)
            kos_docs = [d for d in docs if d.is_kos]
            blobs = self.dmp.retrieve(who, call.patient_id, kos_docs)
        except Exception as exc:  # noqa: BLE001 - DMP, PSC or transport failure: shown to the user
            log.warning("DMP consultation failed: %s", exc)
            out.problem = f"consultation du DMP impossible : {exc}"
            out.seconds = time.monotonic() - out.started
            return out
        token = login.id_token if mutants.active("conso-id-token-as-bearer") else login.access_token
        first_kos_uid = None  # mutant cov-conso-kos-uid-first-study only
        for doc in kos_docs:
            data = blobs.get(doc.unique_id)
            if data is None:
                out.studies.append(StudyResult(None, doc.unique_id, problem="KOS non rendu par le DMP"))
                continue
            try:
                kos = conso_wado.read_kos(data)
            except conso_wado.WadoError as exc:
                out.studies.append(StudyResult(None, doc.unique_id, problem=str(exc)))
                continue
            result = StudyResult(kos, kos.sop_uid)
            for series in kos.series:
                allowed = trust is not None and trust.allows_host(series.host)
                if not allowed:
                    result.series.append(conso_wado.SeriesFetch(
                        series.series_uid, series.retrieve_url, series.host, len(series.instances),
                        refused=f"Source {series.host} absente de la liste blanche : non contactée"))
                    continue
                first_kos_uid = first_kos_uid or kos.sop_uid
                header_uid = first_kos_uid if mutants.active("cov-conso-kos-uid-first-study") else kos.sop_uid
                result.series.append(self.wado.fetch_series(series, token, header_uid))
            out.studies.append(result)
        out.seconds = time.monotonic() - out.started
        return out

    # -- page ---------------------------------------------------------------------------------------
    def render(self, call: Call) -> str:
        rows = "".join(f'<tr><th>{html.escape(label)}</th><td data-ins-trait="{key}">{html.escape(value)}</td></tr>'
                       for key, label, value in ins_traits(call.params))
        parts = [f'<section id="identite-ins"><h2>Identité du patient (traits stricts INS)</h2><table>{rows}</table>'
                 "</section>"]
        c = call.consultation
        if c is None or c.problem:
            parts.append(f'<section id="examens"><p class="erreur">{html.escape(c.problem if c else "?")}</p></section>')
        else:
            lines = []
            for s in c.studies:
                fetched = [f for f in s.series if f.status is not None]
                first = fetched[0].first_instance_s if fetched else None  # latency to the study's first instance
                export = ""
                if s.instances and s.kos:
                    export = (f'<form method="post" action="{EXPORT_PATH}"><input type="hidden" name="uuid" '
                              f'value="{call.uuid}"><input type="hidden" name="study" value="{s.kos.study_uid}">'
                              '<button type="submit">Exporter vers le PACS</button></form>')
                lines.append(
                    f'<tr data-study="{html.escape(s.kos.study_uid if s.kos else "")}" data-kos="{html.escape(s.kos_uid)}"'
                    f' data-instances="{len(s.instances)}" data-expected="{s.expected}"'
                    f' data-seconds="{sum(f.seconds for f in fetched):.4f}"'
                    f' data-first-instance-s="{"" if first is None else f"{first:.4f}"}"'
                    f' data-bytes="{sum(len(i) for f in fetched for i in f.instances)}">'
                    f"<td>{html.escape(s.kos.study_date if s.kos else '')}</td>"
                    f"<td>{html.escape(s.kos.study_description if s.kos else '')}</td>"
                    f"<td>{html.escape(', '.join(s.kos.hosts()) if s.kos else '')}</td>"
                    f"<td>{len(s.instances)} / {s.expected}</td><td>{html.escape(s.status())}</td><td>{export}</td></tr>")
            parts.append(f'<section id="examens" data-documents="{c.documents}" data-seconds="{c.seconds:.4f}">'
                         "<h2>Examens d'imagerie (DMP)</h2><table><tr><th>Date</th><th>Examen</th><th>Source</th>"
                         f"<th>Images</th><th>État</th><th></th></tr>{''.join(lines)}</table></section>")
        return _page("Dossier d'imagerie", "".join(parts))


def _lenient(body: bytes) -> dict[str, str]:
    """Mutant conso-params-unchecked: whatever the caller sent (unknown, empty and missing parameters included)."""
    out = {}
    for pair in body.decode("utf-8", "replace").split("&"):
        key, _, value = pair.partition("=")
        out[unquote_plus(key)] = unquote_plus(value)
    for key in MANDATORY:
        out.setdefault(key, "")
    return out


def _page(title: str, content: str) -> str:
    return (f'<!doctype html><html lang="fr"><head><meta charset="utf-8"><title>{html.escape(title)} — DRIMbox'
            f"</title></head><body><h1>{html.escape(title)}</h1>{content}</body></html>")


__all__ = ["Function", "parse_call", "ins_traits", "CallError", "MANDATORY", "OPTIONAL", "CONSENT", "CALL_PATH",
           "PAGE_PATH", "CALLBACK_PATH", "EXPORT_PATH"]
