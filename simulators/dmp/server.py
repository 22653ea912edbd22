"""DMP simulator: XDS.b over HTTPS with mTLS (SOAP 1.2 + MTOM), recording every request.

* TLS: the server presents a SERV_SSL certificate of the run PKI; a client certificate chaining to
  IGC-Santé is required (a request without one is recorded and refused with a SOAP Fault; a
  certificate from another CA fails the handshake). Which certificate the DUT used is recorded and
  judged by the checks (XDS-02), so the simulator stays lenient on the certificate *profile*.
* ITI-41 (Provide and Register, RPLC included) and ITI-57 (status update) are parsed with
  `drimcheck.xds`, applied to the registry, answered Success, or Failure + RegistryErrorList when the
  request cannot be read or applied, or when the scenario asked for a failure. Parseable but
  non-conformant content is accepted and left to the checks: one defect, one finding.
* What the real DMP's SOAP 1.2 / WS-Addressing layer refuses before any XDS processing is refused the
  same way (:func:`transport_refusal`): a non-SOAP 1.2 media type (415), no ``wsa:Action`` or
  ``wsa:MessageID``, a Content-Type ``action`` that contradicts ``wsa:Action`` (400, SOAP Fault with the
  WS-Addressing subcode). The refused request is still parsed and recorded, attributed to its study, so
  the checks name the refusal. Which real behaviour each rule follows: docs/simulators.md.
* Every request is written to the evidence store (raw MIME, summary JSON, KOS and signature document).

Action handlers are a table (`handlers`): ITI-41, ITI-57, and the consultation side (ITI-18, ITI-43,
simulators/dmp/consultation.py), whose handlers build their own answer (`DmpExchange.answer`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

from drimcheck import xds
from drimcheck.limits import MAX_HEADERS, MAX_REQUEST_BODY
from simulators.dmp import patients
from simulators.dmp.consultation import ConsultationData, QueryError, retrieve_response, stored_query_response
from simulators.dmp.registry import Registry, RegistryError

BASE_PATH = "/si-dmp-server/v2/services"
DMP_FQDN = "dmp.drimcheck.test"


@dataclass
class Response:
    status_code: int
    body: bytes
    content_type: str


def registry_response(action: str, relates_to: str, errors: list[tuple[str, str]]) -> bytes:
    status = xds.RESPONSE_FAILURE if errors else xds.RESPONSE_SUCCESS
    items = "".join(f'<rs:RegistryError errorCode="{escape(code)}" codeContext="{escape(ctx)}" '
                    'severity="urn:oasis:names:tc:ebxml-regrep:ErrorSeverityType:Error" location="drimcheck-dmp"/>'
                    for code, ctx in errors)
    error_list = f"<rs:RegistryErrorList>{items}</rs:RegistryErrorList>" if errors else ""
    return (f'<?xml version="1.0" encoding="UTF-8"?><soap:Envelope xmlns:soap="{xds.NS["soap"]}" '
            f'xmlns:wsa="{xds.NS["wsa"]}"><soap:Header><wsa:Action soap:mustUnderstand="true">{escape(action)}Response'
            f'</wsa:Action><wsa:RelatesTo>{escape(relates_to)}</wsa:RelatesTo></soap:Header><soap:Body>'
            f'<rs:RegistryResponse xmlns:rs="{xds.NS["rs"]}" status="{status}">{error_list}</rs:RegistryResponse>'
            "</soap:Body></soap:Envelope>").encode()


def soap_fault(reason: str, code: str = "soap:Sender", subcode: str | None = None) -> bytes:
    """A SOAP 1.2 Fault; ``subcode`` a WS-Addressing fault (``wsa:...``, WS-Addressing 1.0 SOAP Binding §6)."""
    sub = f"<soap:Subcode><soap:Value>{escape(subcode)}</soap:Value></soap:Subcode>" if subcode else ""
    return (f'<?xml version="1.0" encoding="UTF-8"?><soap:Envelope xmlns:soap="{xds.NS["soap"]}" '
            f'xmlns:wsa="{xds.NS["wsa"]}"><soap:Body>'
            f'<soap:Fault><soap:Code><soap:Value>{code}</soap:Value>{sub}</soap:Code><soap:Reason>'
            f'<soap:Text xml:lang="fr">{escape(reason)}</soap:Text></soap:Reason></soap:Fault></soap:Body>'
            "</soap:Envelope>").encode()


#: media types of a SOAP 1.2 request (RFC 3902; MTOM/XOP: multipart/related). ``text/xml`` is SOAP 1.1's:
#: a SOAP 1.2 stack (the DMP's) refuses it, as it refuses a SOAP 1.1 envelope.
SOAP12_MEDIA_TYPES = ("application/soap+xml", "multipart/related")


def transport_refusal(content_type: str, request: xds.XdsRequest) -> tuple[int, str, str] | None:
    """What the real DMP's SOAP 1.2 / WS-Addressing stack refuses before the XDS layer sees the request:
    (HTTP status, fault subcode, French reason), or None.

    * a media type other than ``application/soap+xml`` or MTOM (SOAP 1.2 Part 2 §7.1.4, RFC 3902): 415;
    * no ``wsa:Action`` or no ``wsa:MessageID`` (IHE ITI TF-2x Appendix V: both required in a synchronous
      request; WS-Addressing 1.0 SOAP Binding §6.4.2 ``wsa:MessageAddressingHeaderRequired``): 400;
    * an ``action`` parameter of the Content-Type that differs from ``wsa:Action`` (WS-Addressing 1.0
      SOAP Binding: the SOAP 1.2 action feature must equal [action]; ``wsa:ActionMismatch``): 400.
    """
    media = (content_type or "").split(";")[0].strip().lower()
    if media not in SOAP12_MEDIA_TYPES:
        return (415, "soap:VersionMismatch" if media == "text/xml" else "soap:Sender",
                f"Content-Type « {media or 'absent'} » refusé : SOAP 1.2 attend application/soap+xml "
                "(ou multipart/related MTOM/XOP)")
    header = request.soap.envelope.find("soap:Header", xds.NS)
    for name in ("Action", "MessageID"):
        element = header.find(f"wsa:{name}", xds.NS) if header is not None else None
        if element is None or not (element.text or "").strip():
            return (400, "wsa:MessageAddressingHeaderRequired",
                    f"en-tête WS-Addressing {name} absent ou vide (exigé par le DMP, IHE ITI TF-2x annexe V)")
    declared = (xds._param(content_type, "action") or "").replace("\\", "").strip('"').strip()
    if declared and declared != request.soap.action:
        return (400, "wsa:ActionMismatch",
                f"action du Content-Type « {declared} » différente de wsa:Action « {request.soap.action} »")
    return None


class DmpSimulator:
    """The simulated DMP; `evidence` is an EvidenceStore-like object (write_bytes/write_json) or None."""

    def __init__(self, evidence: Any = None, *, study_resolver: Callable[[xds.XdsRequest], set[str]] | None = None):
        self.evidence = evidence
        self.registry = Registry()
        self.exchanges: list[xds.DmpExchange] = []
        self.consultation = ConsultationData(self.registry)
        self.handlers: dict[str, Callable[[xds.DmpExchange], None]] = {
            xds.ACTION_PNR: self._provide_and_register,
            xds.ACTION_UPDATE: self._update_document_set,
            xds.ACTION_QUERY: self._stored_query,
            xds.ACTION_RETRIEVE: self._retrieve_document_set,
            xds.ACTION_PATIENT: self._patient_existence,
        }
        self._records: dict[str, str] = {}  # INS -> state of the patient's record (patients.STATES); default open
        self._study_resolver = study_resolver or _studies_of
        self._cond = threading.Condition()
        self._failures: list[tuple[str, str]] = []  # queued scenario failures for the next ITI-41s
        self._server: Any = None  # simulators.httpsim.SimServer once started
        self.host = ""
        self.port = 0

    # -- scenario controls -----------------------------------------------------------------
    def fail_next(self, count: int = 1, code: str = "XDSRepositoryError",
                  context: str = "Échec simulé du DMP (demandé par le scénario)") -> None:
        with self._cond:
            self._failures.extend([(code, context)] * count)

    def set_record(self, ins: str, state: str) -> None:
        """The state of a patient's DMP record from now on: ouvert, inexistant, ferme or interdit (patients.py);
        the patient is given by its INS or a CX ``INS^^^&OID&ISO^NH``."""
        if state not in patients.STATES:
            raise ValueError(f"état de dossier inconnu {state!r} (attendu : {', '.join(patients.STATES)})")
        with self._cond:
            self._records[xds.parse_cx(ins)[0]] = state

    def record_state(self, patient_id: str) -> str:
        """State of the record of a patient given as an INS or a CX ``INS^^^&OID&ISO^NH``."""
        with self._cond:
            return self._records.get(xds.parse_cx(patient_id)[0], patients.OPEN)

    def clear_failures(self) -> None:
        with self._cond:
            self._failures.clear()

    def snapshot(self, since: float | None = None) -> list[xds.DmpExchange]:
        with self._cond:
            return [e for e in self.exchanges if since is None or e.received_at >= since]

    def wait_for(self, predicate: Callable[[xds.DmpExchange], bool], *, since: float, deadline_s: float) -> xds.DmpExchange | None:
        """The first exchange received after `since` that satisfies predicate, waiting at most deadline_s."""
        end = time.monotonic() + deadline_s
        with self._cond:
            while True:
                for e in self.exchanges:
                    if e.received_at >= since and predicate(e):
                        return e
                left = end - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(min(left, 0.05))

    # -- request handling ------------------------------------------------------------------
    def handle(self, path: str, content_type: str, body: bytes, client_cert_der: bytes | None) -> Response:
        with self._cond:
            seq = len(self.exchanges) + 1
        ex = xds.DmpExchange(seq, time.monotonic(), path, content_type, body, client_cert_der)
        try:
            if not client_cert_der:
                ex.status = "Fault"
                ex.parse_error = "aucun certificat client TLS (mTLS ORG AUTH_CLI exigé)"
                return self._finish(ex, Response(403, soap_fault(ex.parse_error), "application/soap+xml"))
            try:
                ex.request = xds.parse_request(content_type, body)
                ex.action = ex.request.action
            except xds.XdsParseError as exc:
                ex.parse_error = str(exc)
                ex.action = xds._param(content_type, "action") or ""
                ex.status = "Failure"
                ex.errors = [("XDSRegistryMetadataError", f"requête illisible : {exc}")]
                return self._finish(ex, self._answer(ex, ""))
            refusal = transport_refusal(content_type, ex.request)
            if refusal is not None:
                http_status, subcode, reason = refusal
                ex.status, ex.parse_error, ex.errors = "Fault", reason, [(subcode, reason)]
                self._attribute(ex)
                return self._finish(ex, Response(http_status, soap_fault(reason, subcode=subcode),
                                                 'application/soap+xml; charset=UTF-8; '
                                                 'action="http://www.w3.org/2005/08/addressing/fault"'))
            handler = self.handlers.get(ex.action)
            if handler is None:
                ex.status = "Fault"
                ex.parse_error = f"action {ex.action} non prise en charge par le DMP simulé"
                return self._finish(ex, Response(400, soap_fault(ex.parse_error), "application/soap+xml"))
            handler(ex)
            return self._finish(ex, ex.answer or self._answer(ex, ex.request.soap.message_id))
        except Exception as exc:  # noqa: BLE001 - never lose a request: record the simulator defect too
            ex.status = "Fault"
            ex.parse_error = f"défaut du DMP simulé : {type(exc).__name__}: {exc}"
            return self._finish(ex, Response(500, soap_fault(ex.parse_error, "soap:Receiver"), "application/soap+xml"))

    def _attribute(self, ex: xds.DmpExchange) -> None:
        """The studies a refused request is about, so that the checks find it among the scenario's attempts."""
        try:
            if ex.action == xds.ACTION_PNR:
                ex.study_uids = self._study_resolver(ex.request)
            elif ex.action == xds.ACTION_UPDATE:
                for assoc in ex.request.associations(xds.UPDATE_AVAILABILITY):
                    entry = self.registry.get(assoc.target)
                    if entry is not None:
                        ex.study_uids |= entry.study_uids
        except Exception:  # noqa: BLE001 - attribution is best effort; the refusal is recorded anyway
            pass

    def _rejected(self, entry: dict[str, Any], scope: dict[str, Any]) -> tuple[str, bytes]:
        """A request the HTTP layer refused for a bound (simulators.httpsim.BoundedApp: body, headers, time):
        recorded as a Fault exchange (its body is not kept), answered with a SOAP Fault."""
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in (scope.get("headers") or [])[:MAX_HEADERS]}
        content_type = headers.get("content-type", "")
        with self._cond:
            seq = len(self.exchanges) + 1
        ex = xds.DmpExchange(seq, time.monotonic(), entry.get("path") or "", content_type, b"",
                             (scope.get("state") or {}).get("peercert_der"))
        ex.status, ex.parse_error = "Fault", f"requête refusée par le DMP simulé : {entry['reason']}"
        ex.action = xds._param(content_type, "action") or ""
        fault = soap_fault(ex.parse_error)
        self._finish(ex, Response(entry["status"], fault, "application/soap+xml"))
        return "application/soap+xml; charset=UTF-8", fault

    def _answer(self, ex: xds.DmpExchange, relates_to: str) -> Response:
        return Response(200, registry_response(ex.action or xds.ACTION_PNR, relates_to, ex.errors),
                        "application/soap+xml; charset=UTF-8")

    def _provide_and_register(self, ex: xds.DmpExchange) -> None:
        request = ex.request
        ex.study_uids = self._study_resolver(request)
        with self._cond:
            forced = self._failures.pop(0) if self._failures else None
        if forced:
            ex.forced, ex.status, ex.errors = True, "Failure", [forced]
            return
        try:
            ex.assigned, ex.replaced = self.registry.register(request, study_uids=ex.study_uids)
            ex.status = "Success"
        except RegistryError as err:
            ex.status, ex.errors = "Failure", [(err.code, err.context)]

    def _update_document_set(self, ex: xds.DmpExchange) -> None:
        targets = [a.target for a in ex.request.associations(xds.UPDATE_AVAILABILITY)]
        for t in targets:
            entry = self.registry.get(t)
            if entry is not None:
                ex.study_uids |= entry.study_uids
        try:
            ex.status_updates = self.registry.update_status(ex.request)
            ex.status = "Success"
        except RegistryError as err:
            ex.status, ex.errors = "Failure", [(err.code, err.context)]

    def _stored_query(self, ex: xds.DmpExchange) -> None:
        """ITI-18: run the stored query on the registry (consultation.py), answer AdhocQueryResponse."""
        query = ex.request.query
        try:
            for pid in query.values("$XDSDocumentEntryPatientId"):
                refusal = patients.REGISTRY_REFUSALS.get(self.record_state(pid))
                if refusal:
                    raise QueryError(*refusal)
            entries = self.consultation.run(query)
            ex.status = "Success"
        except QueryError as err:
            entries, ex.status, ex.errors = [], "Failure", [(err.code, err.context)]
        ex.consultation = {"query": query.to_dict(), "total": len(entries),
                           "results": [e.brief() for e in entries]}
        body = stored_query_response(ex.request.soap.message_id, entries, query.return_type, ex.errors)
        ex.answer = Response(200, body, "application/soap+xml; charset=UTF-8")

    def _retrieve_document_set(self, ex: xds.DmpExchange) -> None:
        """ITI-43: the requested documents from the repository, MTOM; unknown ones are errors."""
        vihf = ex.request.vihf
        refusal = patients.REGISTRY_REFUSALS.get(self.record_state(vihf.first(xds.RESOURCE_ID) or "")) if vihf else None
        if refusal:
            found, ex.errors = [], [refusal] * len(ex.request.document_requests)
        else:
            found, ex.errors = self.consultation.retrieve(ex.request.document_requests)
        ctype, body, status = retrieve_response(ex.request.soap.message_id, found, ex.errors)
        ex.status = {xds.RESPONSE_SUCCESS: "Success", xds.RESPONSE_PARTIAL: "PartialSuccess"}.get(status, "Failure")
        ex.consultation = {"requested": [{"repository": r, "document": d} for r, d in ex.request.document_requests],
                           "returned": [e.brief() for e in found]}
        ex.study_uids = set()  # a consultation is about no publication: the Source checks must not see it
        ex.answer = Response(200, body, ctype)

    def _patient_existence(self, ex: xds.DmpExchange) -> None:
        """TD0.2 on /patients: whether the patient has a DMP record, its state, the practitioner's access."""
        query = ex.request.patient_query
        error = None
        if not ex.path.endswith("/patients"):
            error = f"TD0.2 attendu sur le service /patients, reçu sur {ex.path}"
        elif (query.reason_code, query.reason_system) != xds.EXISTENCE_REASON:
            error = (f"reasonCode « {query.reason_code}@{query.reason_system} » au lieu de "
                     f"{xds.EXISTENCE_REASON[0]}@{xds.EXISTENCE_REASON[1]}")
        state = self.record_state(query.extension)
        ex.status = "Failure" if error else "Success"
        if error:
            ex.errors = [("XDSRegistryError", error)]
        ex.consultation = {"patient_query": query.to_dict(), "record": state, "answer": patients.STATES[state]}
        ex.answer = Response(200, patients.existence_response(ex.request.soap.message_id, query, state, error),
                             "application/soap+xml; charset=UTF-8")

    def _finish(self, ex: xds.DmpExchange, response: Response) -> Response:
        self._record_evidence(ex, response)
        with self._cond:
            self.exchanges.append(ex)
            self._cond.notify_all()
        return response

    def _record_evidence(self, ex: xds.DmpExchange, response: Response) -> None:
        if self.evidence is None:
            return
        label = f"dmp-{ex.kind.lower()}-{ex.seq}"
        ex.evidence.append(self.evidence.write_bytes(f"{label}-requete", ex.body, ".mime"))
        cert = ex.client_certificate()
        summary: dict[str, Any] = {
            "seq": ex.seq, "path": ex.path, "content_type": ex.content_type, "action": ex.action,
            "client_certificate": {"subject": cert.subject.rfc4514_string(), "issuer": cert.issuer.rfc4514_string(),
                                   "serial": hex(cert.serial_number)} if cert else None,
            "status": ex.status, "errors": ex.errors, "forced_failure": ex.forced, "parse_error": ex.parse_error,
            "assigned_entry_uuids": ex.assigned, "replaced": ex.replaced, "status_updates": ex.status_updates,
            "studies": sorted(ex.study_uids), "request": ex.request.summary() if ex.request else None,
            "consultation": ex.consultation or None,
            "response": {"http_status": response.status_code, "content_type": response.content_type,
                         "body": _soap_text(response)},
        }
        ex.evidence.append(self.evidence.write_json(label, summary))
        if ex.request is not None:
            kos_ids = {e.id for e in ex.request.kos_entries()}
            for doc_id, data in ex.request.documents.items():
                suffix = ".dcm" if doc_id in kos_ids else ".xml"
                path = self.evidence.write_bytes(f"{label}-{'kos' if suffix == '.dcm' else 'document'}", data, suffix)
                ex.evidence.append(path)
                if suffix == ".dcm" and ex.kos_evidence is None:
                    ex.kos_evidence = path

    # -- HTTP server -----------------------------------------------------------------------
    def app(self):
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import Response as HttpResponse
        from starlette.routing import Route

        async def service(request: Request) -> HttpResponse:
            body = await request.body()
            state = request.scope.get("state") or {}
            response = await _in_thread(self.handle, request.url.path, request.headers.get("content-type", ""), body,
                                        state.get("peercert_der"))
            return HttpResponse(response.body, status_code=response.status_code, media_type=response.content_type)

        routes = [Route(f"{BASE_PATH}/{name}", service, methods=["POST"])
                  for name in ("repository", "registry", "patients", "habilitations")]
        return Starlette(routes=routes)

    def start(self, host: str, port: int, *, cert_chain: str, key: str, client_ca: str) -> None:
        """Serve HTTPS; a client certificate is requested and, when presented, must chain to `client_ca`."""
        import ssl

        from simulators.httpsim import SimServer

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(cert_chain, key)
        ctx.load_verify_locations(client_ca)
        ctx.verify_mode = ssl.CERT_OPTIONAL  # judged by the checks (XDS-02), recorded here
        try:
            self._server = SimServer(self.app(), host=host, port=port, ssl_context=ctx, name="dmp-simulator",
                                     max_body=MAX_REQUEST_BODY, on_rejected=self._rejected).start()
        except (OSError, RuntimeError) as exc:
            raise RuntimeError(f"DMP simulé : écoute impossible sur {host}:{port} ({exc})") from None
        self.host, self.port = host, self._server.port

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def urls(self, fqdn: str = DMP_FQDN) -> dict[str, str]:
        base = f"https://{fqdn}:{self.port}{BASE_PATH}"
        return {"repository_url": f"{base}/repository", "registry_url": f"{base}/registry",
                "patients_url": f"{base}/patients"}


def _soap_text(response: Response) -> str:
    """The SOAP part of an answer, for evidence (MTOM attachments, e.g. a retrieved KOS, are left out)."""
    body = response.body
    if "multipart/related" in response.content_type:
        start, end = body.find(b"<?xml"), body.find(b"Envelope>")
        body = body[start:end + len(b"Envelope>")] if start >= 0 and end > start else body[:4000]
    return body.decode("utf-8", "replace")


async def _in_thread(func, *args):
    import asyncio

    return await asyncio.get_running_loop().run_in_executor(None, func, *args)


def _studies_of(request: xds.XdsRequest) -> set[str]:
    """The studies a submission is about: its referenceIdList and the StudyInstanceUID of its KOS."""
    from drimcheck.kos import header_uid

    studies = set(request.study_uids())
    for entry in request.kos_entries():
        studies.add(header_uid(request.documents.get(entry.id, b""), "StudyInstanceUID"))
    return {s for s in studies if s}
