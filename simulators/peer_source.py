"""Peer Source DRIMbox simulator: serves WADO-RS like a Source on another registry's dbN FQDN (spec §5.3).

A DUT Conso follows the RetrieveURL of a KOS to a peer Source; this simulator plays that peer, with
images held in a real Orthanc (``simulators.pacs.Orthanc``) and access control as the ANS PoC does it.

Routes (``base_path`` defaults to ``/dicom-web-rs``, the ANS test platform's; the Conso cuts the
RetrieveURL at ``/studies``)::

    GET {base_path}/studies/{study}/series/{series}
    GET {base_path}/studies/{study}/series/{series}/instances/{instance}

Checks, in the PoC's order, each answer recorded with its reason:

1. client certificate policy (optional): ``require_client_cert`` / ``allowed_client_dns`` -> 403;
2. ``Authorization: Bearer <token>`` introspected at PSC (RFC 7662, mTLS or Basic client auth):
   missing -> 401 ``WWW-Authenticate: Bearer``; inactive, unknown, or introspection impossible -> 401
   ``error="invalid_token"`` (the PoC too treats an introspection failure as inactive);
3. ``Accept``: RFC 9110 syntax only -> 400 with the reason (``drimcheck.wado``). Every header DICOM
   PS3.18 §8.7 allows is taken, as the Orthanc DICOMweb plugin and dcm4chee take it: the ANS sample
   list, a standard DICOMweb client's ``multipart/related; type="application/dicom"`` (no
   transfer-syntax: Explicit VR Little Endian), ``transfer-syntax=*``, with or without ``q`` and
   ``boundary``, several ranges; no Accept header at all means ``*/*`` (RFC 9110 §12.5.1). The ANS
   PoC's extra rules (transfer-syntax and q everywhere, boundary first) are NOT enforced here: a Conso
   that does not follow the ANS sample fails CON-04 (its request) and nothing after it;
4. ``KOS-SOPInstanceUID`` missing -> 400;
5. that KOS unknown here, or not referencing the study / series / instance -> 404;
6. referenced images gone from the PACS: all of them -> 410; some of a series -> 206 (the instances
   still held are served, ``Warning: 299`` lists how many are missing);
7. transfer-syntax negotiation (:data:`SUPPORTED_SYNTAXES`, best q first, client order on ties;
   ``*`` = Explicit VR Little Endian, the peer's first choice): none acceptable -> 406 (PS3.18 §8.7);
   Orthanc asked for each candidate in turn (it cannot encode every syntax for every image, e.g. JPEG
   Baseline needs 8-bit pixels): all refused -> 406 listing the attempts;
8. 200 ``multipart/related; type="application/dicom"; transfer-syntax=<ts>; boundary=<uuid>``,
   chunked; each part ``Content-Type: application/dicom; transfer-syntax=<ts>`` + ``Content-Length``.

Transfer syntaxes Orthanc 1.10.1 + DICOMweb 1.7 (Debian 12, DCMTK 3.6.7) really produces for 16-bit
CT images, verified by tests/test_peer_source.py (each part re-read with pydicom): Implicit and Explicit
VR Little Endian, Deflated Explicit VR LE, JPEG Extended (.51), JPEG Lossless (.57, .70), JPEG-LS
(.80, .81). It answers HTTP 500 for RLE (.5), JPEG Baseline (.50) on images over 8 bits, JPEG 2000
(.90/.91) and MPEG/H.264 (.100-.103). With the ANS sample Accept list (.70 q=0.9 first) the answer is
therefore JPEG Lossless SV1.

Every request is recorded (:attr:`PeerSource.requests`): client certificate and SNI, headers (Bearer
redacted), token facts and introspection outcome, parsed Accept, KOS, status and reason, negotiated
syntax, Orthanc attempts, parts served (SOP Instance UIDs), bytes and times to first part and end.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pydicom.uid import generate_uid

from drimcheck.wado import (
    EXPLICIT_VR_LE,
    IMPLICIT_VR_LE,
    AcceptError,
    MultipartError,
    MultipartReader,
    negotiate,
    parse_accept,
    parse_media_type,
    part_sop_uid,
)
from fixtures.pki import org_name
from simulators.httpsim import (
    HttpsSimulator,
    Recorder,
    SimServer,
    bearer_token,
    body_view,
    client_certificate,
    client_ssl_context,
    closing_lifespan,
    mapped_async_client,
    redact_url,
    request_headers_view,
    tls_summary,
    token_facts,
)

__all__ = ["DEFAULT_BASE_PATH", "SUPPORTED_SYNTAXES", "KosReference", "Introspection", "PeerSource"]

DEFAULT_BASE_PATH = "/dicom-web-rs"

#: What the peer offers, in its own order of preference (``transfer-syntax=*`` picks the first).
SUPPORTED_SYNTAXES: tuple[str, ...] = (
    EXPLICIT_VR_LE, IMPLICIT_VR_LE, "1.2.840.10008.1.2.1.99",
    "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81",
    "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.50",
)

_UID = re.compile(r"^[0-9]+(?:\.[0-9]+)*$")


@dataclass
class KosReference:
    """What a KOS held by this Source references: one study, its series and their instances (ordered)."""

    sop_uid: str
    study_uid: str
    series: dict[str, tuple[str, ...]]
    patient_id: str | None = None

    def references(self, study: str, series: str, instance: str | None = None) -> bool:
        if study != self.study_uid or series not in self.series:
            return False
        return instance is None or instance in self.series[series]

    def instance_count(self) -> int:
        return sum(len(v) for v in self.series.values())


@dataclass
class Introspection:
    """How the Source introspects tokens: endpoint, client identity (mTLS certificate or Basic secret), trust."""

    url: str
    client_id: str
    client_secret: str | None = None  # Basic when set
    client_cert: Any = None  # fixtures.pki.Issued for RFC 8705 mTLS when no secret
    trust: list[Path] = field(default_factory=list)
    hosts: dict[str, str] = field(default_factory=dict)
    timeout_s: float = 5.0

    def ssl_context(self) -> Any:
        return client_ssl_context(self.trust, None if self.client_secret else self.client_cert)


class PeerSource(HttpsSimulator):
    """One peer Source DRIMbox on its own FQDN and address (see the module docstring).

    Parameters: ``pki`` (run PKI), ``orthanc`` (a started ``simulators.pacs.Orthanc`` holding its
    images; several peers may share one), ``fqdn`` (dbN FQDN, e.g. ``db7.350.mesimagesmedicales.fr``),
    ``psc`` (a PscSimulator: the peer registers as its client and introspects there, by mTLS with its
    SERV_SSL, or Basic with ``introspection_auth="basic"``) or an explicit ``introspection``;
    ``host``/``port``; ``public_port`` (None = port-less URLs, the DUT resolves the FQDN through
    :meth:`hosts`); ``base_path``; ``require_client_cert`` / ``allowed_client_dns``; ``structure_id``
    and ``organisation`` (its SERV_SSL subject: OU and O); ``supported`` transfer syntaxes.
    """

    def __init__(self, pki: Any, orthanc: Any, *, fqdn: str, psc: Any = None,
                 introspection: Introspection | None = None, introspection_auth: str = "mtls",
                 host: str = "127.0.0.1", port: int = 0, public_port: int | None = None,
                 base_path: str = DEFAULT_BASE_PATH, require_client_cert: bool = False,
                 allowed_client_dns: Iterable[str] | None = None, structure_id: str = "300000009990350",
                 organisation: str = "DRIMCHECK CENTRE PAIR TEST",
                 supported: tuple[str, ...] = SUPPORTED_SYNTAXES, aliases: Iterable[str] = ()) -> None:
        self.pki = pki
        self.aliases = tuple(aliases)
        self.orthanc = orthanc
        self.fqdn = fqdn
        self.base_path = "/" + base_path.strip("/") if base_path.strip("/") else ""
        self._public_port = public_port
        self.require_client_cert = require_client_cert
        self.allowed_client_dns = list(allowed_client_dns) if allowed_client_dns is not None else None
        self.supported = tuple(supported)
        if self.aliases:  # one certificate for every name it answers to (dNSName: A-labels, no final dot)
            names = list(dict.fromkeys([fqdn, *(_dns_name(a) for a in self.aliases)]))
            self.cert = pki.issue(f"serv_ssl_{fqdn}_aliases", subject=org_name(fqdn, structure_id, organisation),
                                  profile="serv_ssl", san=names)
        else:
            self.cert = pki.serv_ssl(fqdn, ou=structure_id, organisation=organisation)
        if introspection is None and psc is not None:
            client_id = f"drimbox-{fqdn}"
            if introspection_auth == "basic":
                client = psc.register_client(client_id)
                introspection = Introspection(psc.endpoint("introspect"), client_id, client_secret=client.secret,
                                              trust=[psc.trust_pem], hosts=psc.hosts())
            elif introspection_auth == "mtls":
                psc.register_client(client_id, secret=None, tls_subject_dns=[self.cert.subject_dn])
                introspection = Introspection(psc.endpoint("introspect"), client_id, client_cert=self.cert,
                                              trust=[psc.trust_pem], hosts=psc.hosts())
            else:
                raise ValueError("introspection_auth must be 'mtls' or 'basic'")
        self.introspection = introspection
        self._kos: dict[str, KosReference] = {}
        self._fault: tuple[int, str] | None = None
        self._lock = threading.Lock()
        self._http: dict[str, httpx.AsyncClient] = {}
        self.recorder = Recorder(f"peer:{fqdn}")
        ctx = self.cert.server_context(client_cas=[pki.igc_chain_pem])
        self._server = SimServer(self._app(), host=host, port=port, ssl_context=ctx, name=f"peer:{fqdn}",
                                 lifespan="on", on_rejected=self._on_rejected)

    # lifecycle, address, base_url, requests, clear_requests, wait_for: see HttpsSimulator

    def hosts(self) -> dict[str, str]:
        """``{name: "ip:port"}`` for its FQDN and every alias (an IDN alias under its A-label and its U-label, an
        alias with a final dot with and without it: a client may look up either form)."""
        out = {self.fqdn: self.address}
        for alias in self.aliases:
            out[alias] = out[alias.rstrip(".")] = self.address
            if alias.startswith("xn--") or ".xn--" in alias:
                out[alias.encode("ascii").decode("idna")] = self.address
        return out

    @property
    def wado_base(self) -> str:
        """The WADO-RS base a Conso derives from a RetrieveURL (everything before ``/studies``)."""
        return self.base_url + self.base_path

    def retrieve_url(self, study_uid: str, series_uid: str) -> str:
        """The series-level RetrieveURL a KOS pointing at this Source carries (spec §4.3)."""
        return f"{self.wado_base}/studies/{study_uid}/series/{series_uid}"

    def instance_url(self, study_uid: str, series_uid: str, sop_uid: str) -> str:
        return f"{self.retrieve_url(study_uid, series_uid)}/instances/{sop_uid}"

    # ------------------------------------------------------------------ content

    def register_kos(self, sop_uid: str, study_uid: str, series: Mapping[str, Iterable[str]], *,
                     patient_id: str | None = None) -> KosReference:
        """Declare a KOS this Source published: its SOP Instance UID and what it references."""
        ref = KosReference(sop_uid, study_uid, {s: tuple(i) for s, i in series.items()}, patient_id)
        with self._lock:
            self._kos[sop_uid] = ref
        return ref

    def register_kos_dataset(self, ds: Any) -> KosReference:
        """Declare a KOS from its dataset (CurrentRequestedProcedureEvidenceSequence, first study item)."""
        evidence = ds.CurrentRequestedProcedureEvidenceSequence[0]
        series = {item.SeriesInstanceUID: [ref.ReferencedSOPInstanceUID for ref in item.ReferencedSOPSequence]
                  for item in evidence.ReferencedSeriesSequence}
        return self.register_kos(str(ds.SOPInstanceUID), str(evidence.StudyInstanceUID), series,
                                 patient_id=str(ds.get("PatientID", "")) or None)

    def register_study(self, study: Any, *, kos_sop_uid: str | None = None, store: bool = True) -> KosReference:
        """Store a ``simulators.pacs.SyntheticStudy`` in the Orthanc (unless ``store=False``) and declare a KOS
        referencing all of it; the KOS UID is deterministic per (FQDN, study) unless given."""
        if store:
            self.orthanc.store(study.datasets())
        uid = kos_sop_uid or generate_uid(entropy_srcs=["drimcheck-peer-kos", self.fqdn, study.study_uid])
        return self.register_kos(uid, study.study_uid,
                                 {s.series_uid: [i.sop_uid for i in s.instances] for s in study.series},
                                 patient_id=study.patient.ins)

    def forget_kos(self, sop_uid: str) -> None:
        with self._lock:
            self._kos.pop(sop_uid, None)

    @property
    def kos(self) -> dict[str, KosReference]:
        with self._lock:
            return dict(self._kos)

    def set_fault(self, status: int | None, message: str = "fault injected by the scenario") -> None:
        """Answer ``status`` to every WADO-RS request (after recording it); None restores normal service."""
        with self._lock:
            self._fault = (status, message) if status else None

    def dut_settings(self) -> dict[str, Any]:
        return {"fqdn": self.fqdn, "address": self.address, "wado_base": self.wado_base,
                "certificate_subject": self.cert.subject_dn, "ca_file": str(self.pki.igc_chain_pem)}

    # ------------------------------------------------------------------ HTTP

    def _app(self) -> Any:
        from starlette.applications import Starlette
        from starlette.routing import Route

        def take_clients() -> list[httpx.AsyncClient]:
            clients, self._http = self._http, {}
            return list(clients.values())

        base = self.base_path
        return Starlette(routes=[
            Route(base + "/studies/{study}/series/{series}", self._wado, methods=["GET"]),
            Route(base + "/studies/{study}/series/{series}/instances/{instance}", self._wado, methods=["GET"]),
        ], lifespan=closing_lifespan(take_clients))

    def _client(self, name: str) -> httpx.AsyncClient:
        client = self._http.get(name)
        if client is None:
            if name == "introspection":
                assert self.introspection is not None
                client = mapped_async_client(self.introspection.hosts, verify=self.introspection.ssl_context(),
                                             timeout=self.introspection.timeout_s)
            else:
                client = httpx.AsyncClient(auth=self.orthanc.auth, trust_env=False,
                                           timeout=httpx.Timeout(60.0, connect=5.0))
            self._http[name] = client
        return client

    async def _introspect(self, token: str) -> dict[str, Any]:
        spec = self.introspection
        if spec is None:
            return {"active": False, "error": "no introspection endpoint configured"}
        form = {"token": token, "token_type_hint": "access_token"}
        auth = None
        if spec.client_secret:
            auth = (spec.client_id, spec.client_secret)
        else:
            form["client_id"] = spec.client_id
        t0 = time.monotonic()
        try:
            resp = await self._client("introspection").post(spec.url, data=form, auth=auth)
            data = resp.json() if resp.status_code == 200 else {}
        except (httpx.HTTPError, ValueError) as exc:
            return {"active": False, "error": f"{type(exc).__name__}: {exc}",
                    "elapsed_s": round(time.monotonic() - t0, 6)}
        out = {"status": resp.status_code, "active": data.get("active") is True,
               "elapsed_s": round(time.monotonic() - t0, 6)}
        for key in ("sub", "client_id", "jti", "exp", "SubjectNameID", "scope"):
            if key in data:
                out[key] = data[key]
        return out

    async def _wado(self, request: Any) -> Any:
        from starlette.responses import Response

        t0 = time.monotonic()
        p = request.path_params
        study, series, instance = p["study"], p["series"], p.get("instance")
        headers = request.headers
        token = bearer_token(headers.get("authorization"))
        cert = client_certificate(request)
        entry = self.recorder.add({
            "peer": self.fqdn, "method": request.method, "path": request.url.path,
            "query": redact_url("?" + request.url.query)[1:] if request.url.query else "",
            "level": "instance" if instance else "series", "study": study, "series": series, "instance": instance,
            "client": f"{request.client.host}:{request.client.port}" if request.client else None,
            "host_header": headers.get("host"), "tls": tls_summary(request),
            "headers": request_headers_view(headers.items()), "accept": headers.get("accept"),
            "kos_sop_uid": headers.get("kos-sopinstanceuid"), "token": token_facts(token), "complete": False,
        })

        def answer(status: int, reason: str, message: str | None = None, extra_headers: dict | None = None,
                   **facts: Any) -> Any:
            body = (message or reason) + "\n"
            resp = Response(body, status_code=status, media_type="text/plain", headers=extra_headers or {})
            self.recorder.update(entry, complete=True, status=status, reason=reason,
                                 response_headers=request_headers_view(resp.headers.items()),
                                 response_body=body_view(body.encode(), "text/plain"),
                                 elapsed_s=round(time.monotonic() - t0, 6), **facts)
            return resp

        with self._lock:
            fault = self._fault
        if fault is not None:
            return answer(fault[0], "fault", fault[1])
        if self.require_client_cert and cert is None:
            return answer(403, "no_client_certificate", "a client certificate is required")
        if self.allowed_client_dns is not None and (cert is None or cert.subject not in self.allowed_client_dns):
            return answer(403, "client_not_allowed", "client certificate not allowed")
        if not all(_UID.match(u) and len(u) <= 64 for u in (study, series, instance or "1")):
            return answer(400, "invalid_uid", "invalid UID in the path")
        if token is None:
            return answer(401, "no_token", "Authentication failure",
                          {"WWW-Authenticate": 'Bearer realm="DRIMbox"'})
        intro = await self._introspect(token)
        self.recorder.update(entry, introspection=intro)
        if not intro.get("active"):
            return answer(401, "token_inactive" if "error" not in intro else "introspection_failed",
                          "Authentication failure",
                          {"WWW-Authenticate": 'Bearer realm="DRIMbox", error="invalid_token"'})
        accept = headers.get("accept")
        try:
            # absent: */* (RFC 9110 §12.5.1); present but empty: nothing acceptable (406 below)
            ranges = [] if accept is not None and not accept.strip() else parse_accept(accept or "*/*")
        except AcceptError as exc:
            return answer(400, "bad_accept", f"Invalid Accept header: {exc}")
        self.recorder.update(entry, accept_parsed=[{"media_type": r.media_type, "transfer_syntax": r.transfer_syntax,
                                                    "q": r.params.get("q"), "boundary": r.boundary} for r in ranges])
        kos_uid = (headers.get("kos-sopinstanceuid") or "").strip()
        if not kos_uid:
            return answer(400, "no_kos_header", "Missing KOS-SOPInstanceUID")
        with self._lock:
            kos = self._kos.get(kos_uid)
        if kos is None or not kos.references(study, series, instance):
            reason = "kos_unknown" if kos is None else "kos_mismatch"
            return answer(404, reason, f"Can't find KOS in database. SopInstance : {kos_uid} / Study : {study}")
        candidates = negotiate(ranges, self.supported)
        self.recorder.update(entry, candidates=candidates)
        expected = [instance] if instance else list(kos.series[series])
        url = f"{self.orthanc.dicomweb_url}/studies/{study}/series/{series}" + \
            (f"/instances/{instance}" if instance else "")
        # the PACS is asked for the best candidate while the presence check runs (saves one PACS round trip)
        first = asyncio.ensure_future(self._open(url, candidates[0])) if candidates else None
        t_presence = time.monotonic()
        present = await self._present(study, series, expected)
        self.recorder.update(entry, presence_check_s=round(time.monotonic() - t_presence, 6))
        missing = [u for u in expected if u not in present] if present is not None else expected
        if present is None or len(missing) == len(expected) or not candidates:
            if first is not None:
                resp, _ = await first
                if resp is not None:
                    await resp.aclose()
            if present is None:
                return answer(502, "pacs_unreachable", "the PACS does not answer")
            self.recorder.update(entry, expected=len(expected), missing=len(missing))
            if len(missing) == len(expected):
                return answer(410, "gone", "the referenced image(s) are no longer available")
            return answer(406, "not_acceptable", "none of the accepted transfer syntaxes is supported; supported: "
                          + ", ".join(self.supported))
        self.recorder.update(entry, expected=len(expected), missing=len(missing))
        return await self._stream(entry, t0, url, candidates, await first, missing, answer)

    async def _open(self, url: str, ts: str) -> tuple[httpx.Response | None, dict[str, Any]]:
        """Ask the PACS for ``url`` in syntax ``ts`` (streamed): (response or None, attempt record)."""
        client = self._client("pacs")
        req = client.build_request("GET", url, headers={
            "Accept": f'multipart/related; type="application/dicom"; transfer-syntax={ts}'})
        t_pacs = time.monotonic()
        try:
            resp = await client.send(req, stream=True)
        except httpx.HTTPError as exc:
            return None, {"transfer_syntax": ts, "error": type(exc).__name__}
        return resp, {"transfer_syntax": ts, "status": resp.status_code,
                      "headers_s": round(time.monotonic() - t_pacs, 6)}

    async def _present(self, study: str, series: str, expected: list[str]) -> set[str] | None:
        """The UIDs of ``expected`` the PACS still holds (in that series of that study); None when the PACS fails.

        Cheap on purpose (~5 ms for 325 instances; a QIDO-RS ``.../instances`` query takes ~1 s with the
        DICOMweb plugin 1.7): series lookup, the series' instance IDs and its parent study, then the
        expected instances' Orthanc IDs, which are SHA-1 of ``PatientID|StudyUID|SeriesUID|SOPUID``.
        """
        client = self._client("pacs")
        base = self.orthanc.base_url
        try:
            found = await client.post(f"{base}/tools/lookup", content=series)
            if found.status_code != 200:
                return None
            ids = [m["ID"] for m in found.json() if m.get("Type") == "Series"]
            if not ids:
                return set()
            info = await client.get(f"{base}/series/{ids[0]}")
            if info.status_code != 200:
                return None
            info = info.json()
            parent = await client.get(f"{base}/studies/{info['ParentStudy']}")
            if parent.status_code != 200:
                return None
            parent = parent.json()
            if parent.get("MainDicomTags", {}).get("StudyInstanceUID") != study:
                return set()
            patient_id = parent.get("PatientMainDicomTags", {}).get("PatientID", "")
            held = set(info.get("Instances", []))
            return {uid for uid in expected if _orthanc_id(patient_id, study, series, uid) in held}
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return None

    async def _stream(self, entry: dict[str, Any], t0: float, url: str, candidates: list[str],
                      first: tuple[httpx.Response | None, dict[str, Any]], missing: list[str], answer: Any) -> Any:
        from starlette.responses import StreamingResponse

        attempts = []
        upstream = None
        chosen = None
        for index, ts in enumerate(candidates):
            resp, attempt = first if index == 0 else await self._open(url, ts)
            attempts.append(attempt)
            if resp is None:
                continue
            if resp.status_code == 200:
                upstream, chosen = resp, ts
                break
            await resp.aclose()
            if resp.status_code == 404:
                break
        self.recorder.update(entry, pacs_attempts=attempts)
        if upstream is None:
            if attempts and attempts[-1].get("status") == 404:
                return answer(410, "gone", "the referenced image(s) are no longer available")
            return answer(406, "not_acceptable", "the PACS could not provide any accepted transfer syntax: "
                          + ", ".join(f"{a['transfer_syntax']}->{a.get('status', a.get('error'))}" for a in attempts))
        try:
            _, params = parse_media_type(upstream.headers.get("content-type", ""))
            reader = MultipartReader(params["boundary"])
        except (AcceptError, KeyError, MultipartError):
            await upstream.aclose()
            return answer(502, "pacs_bad_answer", "the PACS answered without a multipart boundary")
        boundary = str(uuid.uuid4())
        status = 206 if missing else 200
        headers = {"Content-Type": f'multipart/related; type="application/dicom"; transfer-syntax={chosen}; '
                                   f"boundary={boundary}"}
        if missing:
            headers["Warning"] = f'299 {self.fqdn} "{len(missing)} referenced instance(s) no longer available"'
        part_head = f"Content-Type: application/dicom; transfer-syntax={chosen}\r\n".encode()
        self.recorder.update(entry, status=status, reason="ok" if not missing else "partial", transfer_syntax=chosen,
                             response_headers=[[k, v] for k, v in headers.items()])
        served: list[str] = []
        stats = {"bytes": 0, "first": None}

        async def body():
            outcome = "interrupted (client went away)"
            try:
                async for chunk in upstream.aiter_bytes():
                    for part in reader.feed(chunk):
                        if stats["first"] is None:
                            stats["first"] = round(time.monotonic() - t0, 6)
                        served.append(part_sop_uid(part.body))
                        frame = (f"--{boundary}\r\n".encode() + part_head +
                                 f"Content-Length: {len(part.body)}\r\n\r\n".encode())
                        stats["bytes"] += len(frame) + len(part.body) + 2
                        yield frame + part.body + b"\r\n"
                tail = f"--{boundary}--\r\n".encode()
                stats["bytes"] += len(tail)
                reader.close()
                yield tail
                outcome = None
            except (MultipartError, httpx.HTTPError) as exc:
                outcome = f"{type(exc).__name__}: {exc}"
            finally:
                await upstream.aclose()
                self.recorder.update(entry, complete=True, parts=len(served), served_instances=served,
                                     bytes=stats["bytes"], t_first_part_s=stats["first"], stream_error=outcome,
                                     elapsed_s=round(time.monotonic() - t0, 6))

        return StreamingResponse(body(), status_code=status, headers=headers)


def _dns_name(name: str) -> str:
    """The dNSName a certificate carries for a host name: ASCII (A-labels), without the final dot."""
    return name.rstrip(".").encode("idna").decode("ascii")


def _orthanc_id(*uids: str) -> str:
    """Orthanc's identifier of a DICOM resource: SHA-1 of its identifying UIDs joined by ``|``, 5 groups of 8."""
    digest = hashlib.sha1("|".join(uids).encode("ascii", "replace")).hexdigest()
    return "-".join(digest[i:i + 8] for i in range(0, 40, 8))
