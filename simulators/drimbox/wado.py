"""Reference DRIMbox, Source side: WADO-RS image serving to peer DRIMboxes on the dbN HTTPS listener.

Routes (under WADO_ROOT): ``/studies/{study}/series/{series}`` and
``/studies/{study}/series/{series}/instances/{instance}``, answered from the PACS of the dbN FQDN
the request came to (a mutualised DRIMbox has one PACS per FQDN pair), as multipart/related DICOM.

Every request first goes through `guards`, in order; the first that returns a response ends the
request (drimbox-spec §5.3, the ANS PoC's error codes):

1. mTLS: a client certificate the trust function allows (IGC-Santé chain, validity, revocation, DN
   listed in the whitelist), else 403;
2. ``Authorization: Bearer <token>`` introspected at Pro Santé Connect (RFC 7662, through the Proxy
   e-santé with mTLS/RFC 8705, psc_client): missing -> 401 ``WWW-Authenticate: Bearer``; inactive
   (expired, revoked, logged out, unknown) or introspection impossible -> 401 ``error="invalid_token"``;
3. ``Accept`` as DICOM PS3.18 §8.7 (Content Negotiation) reads it, like the Orthanc DICOMweb plugin
   and dcm4chee: only a syntactically broken header is 400 (RFC 9110 media-range syntax, qvalue,
   transfer-syntax neither a UID nor ``*``); ``q`` and ``boundary`` are optional, a range without
   ``transfer-syntax`` means Explicit VR Little Endian (PS3.18 §8.7.3), no Accept header means ``*/*``.
   (The ANS PoC Source refuses with 400 everything but the shape of ANS's validator sample; the
   reference does not copy that limitation: it is judged on the Conso side, CON-04, as a warning.)
   Then the transfer syntax: :func:`negotiate` against :data:`SUPPORTED_SYNTAXES`, nothing acceptable
   -> 406 (PS3.18 §8.7);
4. ``KOS-SOPInstanceUID``: missing -> 400; not a KOS this Source published and still in force, or a
   KOS that does not reference the study / series / instance asked -> 404 (the Source's own archive,
   `source.Function.kos_in_force`).

Then a referenced object the PACS no longer holds is 410 (Gone), and the series or instance is
served as multipart/related from the PACS in the best acceptable transfer syntax: Orthanc (DICOMweb
plugin) is asked for each candidate in turn and transcodes (it refuses, HTTP 500, what it cannot
encode, e.g. JPEG 2000 with Debian's DCMTK build or JPEG Baseline for 16-bit pixels; all refused ->
406, conformant under PS3.18 §8.7: the origin server answers 406 when it cannot provide any acceptable
representation). The syntax served is declared (PS3.18 §8.7.3.4): ``transfer-syntax=`` on the
response Content-Type and on each part's Content-Type.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from simulators.drimbox import mutants

WADO_ROOT = "/api/source"  # same base as the RetrieveURL the reference writes in its KOS (ANS samples)
UPSTREAM_ACCEPT = 'multipart/related; type="application/dicom"'
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
#: what the reference serves, in its order of preference (``transfer-syntax=*`` picks the first): the
#: syntaxes Debian 12's Orthanc 1.10 + DICOMweb 1.7 really encodes (JPEG Baseline only for 8-bit images;
#: Orthanc's refusal then moves on to the next candidate)
SUPPORTED_SYNTAXES: tuple[str, ...] = (
    EXPLICIT_VR_LE, "1.2.840.10008.1.2", "1.2.840.10008.1.2.1.99",
    "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81",
    "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.50",
)
#: Orthanc's answers when it cannot encode the syntax asked (500 with Debian's build); anything else is a PACS failure
_CANNOT_ENCODE = frozenset({400, 406, 415, 500})

Guard = Callable[[Any], Any]  # request -> starlette Response (refusal) or None (go on)


class Function:
    def __init__(self, box: Any):
        import httpx

        self.box = box
        self.guards: list[Guard] = [self.require_trusted_peer, self.require_active_token, self.require_valid_accept,
                                    self.require_matching_kos]
        self._psc: Any = None
        self._psc_lock = threading.Lock()
        # one pooled client: creating an httpx client per request costs tens of milliseconds
        self._pacs_http = httpx.Client(timeout=10.0, trust_env=False)

    def start(self) -> None:
        pass

    def stop(self) -> None:
        self._pacs_http.close()
        if self._psc is not None:
            self._psc.close()

    def health_checks(self) -> list[dict[str, Any]]:
        return []

    def routes(self) -> dict:
        from starlette.routing import Route

        return {("db", "https"): [
            Route(f"{WADO_ROOT}/studies/{{study}}/series/{{series}}", self.series),
            Route(f"{WADO_ROOT}/studies/{{study}}/series/{{series}}/instances/{{instance}}", self.instance),
        ]}

    # -- guards ------------------------------------------------------------------------------------
    def require_trusted_peer(self, request: Any) -> Any:
        """mTLS: a client certificate the trust function allows, else 403 (nothing served)."""
        from starlette.responses import JSONResponse

        from simulators.drimbox.service import peer_certificate

        peer = peer_certificate(request)
        if peer is None:
            if mutants.active("mtls-optional"):
                return None
            return JSONResponse({"erreur": "certificat client (mTLS) requis"}, status_code=403)
        trust = self.box.function("trust")
        allowed, reason = trust.allows_client(peer["der"]) if trust is not None else (False, "fonction de confiance absente")
        if not allowed:
            return JSONResponse({"erreur": f"DRIMbox non autorisée : {reason}"}, status_code=403)
        return None

    def require_active_token(self, request: Any) -> Any:
        """A PSC access token, active according to PSC's introspection, else 401 (RFC 6750)."""
        from starlette.responses import JSONResponse

        from simulators.drimbox.psc_client import PscClient, PscError

        auth = request.headers.get("authorization") or ""
        scheme, _, token = auth.strip().partition(" ")
        token = token.strip() if scheme.lower() == "bearer" else ""
        if not token:
            if mutants.active("wado-no-token-check"):
                return None
            return JSONResponse({"erreur": "jeton Bearer PSC requis"}, status_code=401,
                                headers={"WWW-Authenticate": 'Bearer realm="DRIMbox"'})
        if mutants.active("wado-token-not-introspected"):
            return None
        if mutants.active("cov-psc-introspection-cached") and token in getattr(self, "_seen_active", set()):
            return None  # mutant: a token once active is never introspected again
        try:
            with self._psc_lock:
                if self._psc is None:
                    self._psc = PscClient(self.box.config)
            answer = self._psc.introspect(token)
        except PscError as exc:
            answer = {"active": False, "error": str(exc)}
        if answer.get("active") is not True:
            return JSONResponse({"erreur": "jeton inactif, expiré ou inconnu de Pro Santé Connect"}, status_code=401,
                                headers={"WWW-Authenticate": 'Bearer realm="DRIMbox", error="invalid_token"'})
        if mutants.active("cov-psc-introspection-cached"):
            self.__dict__.setdefault("_seen_active", set()).add(token)
        return None

    def require_valid_accept(self, request: Any) -> Any:
        """A syntactically valid Accept (PS3.18 §8.7), else 400; the negotiated syntaxes go to request.state."""
        from starlette.responses import JSONResponse

        try:
            ranges = parse_accept(request.headers.get("accept"))
        except ValueError as exc:
            return JSONResponse({"erreur": f"en-tête Accept invalide : {exc}"}, status_code=400)
        request.state.transfer_syntaxes = negotiate(ranges, SUPPORTED_SYNTAXES)
        return None

    def require_matching_kos(self, request: Any) -> Any:
        """KOS-SOPInstanceUID names a KOS this Source published, in force, that references what is asked."""
        from starlette.responses import JSONResponse

        if mutants.active("wado-kos-ignored"):
            return None
        uid = (request.headers.get("kos-sopinstanceuid") or "").strip()
        if not uid:
            return JSONResponse({"erreur": "en-tête KOS-SOPInstanceUID requis"}, status_code=400)
        source = self.box.function("source")
        found = source.kos_in_force(uid) if source is not None else None
        p = request.path_params
        if found is None:
            return JSONResponse({"erreur": f"KOS {uid} inconnu de cette DRIMbox"}, status_code=404)
        study, series = found
        instance = p.get("instance")
        if study != p["study"] or p["series"] not in series or (instance and instance not in series[p["series"]]):
            return JSONResponse({"erreur": f"le KOS {uid} ne référence pas l'objet demandé"}, status_code=404)
        return None

    # -- routes ------------------------------------------------------------------------------------
    def series(self, request: Any) -> Any:
        p = request.path_params
        return self._serve(request, f"/studies/{p['study']}/series/{p['series']}")

    def instance(self, request: Any) -> Any:
        p = request.path_params
        return self._serve(request, f"/studies/{p['study']}/series/{p['series']}/instances/{p['instance']}")

    def _serve(self, request: Any, path: str) -> Any:
        import uuid

        import httpx
        from starlette.responses import JSONResponse, Response

        from simulators.drimbox import netutil

        for guard in self.guards:
            refusal = guard(request)
            if refusal is not None:
                return refusal
        if mutants.active("src-wado-ts-ignored"):
            candidates = [None]  # whatever was asked: the PACS's default (Explicit VR LE), declared nowhere
        else:
            candidates = list(getattr(request.state, "transfer_syntaxes", None) or [])
            if not candidates:
                return JSONResponse({"erreur": "aucune des syntaxes de transfert acceptées n'est disponible ; "
                                     f"disponibles : {', '.join(SUPPORTED_SYNTAXES)}"}, status_code=406)
        pacs = self._pacs_for(request)
        attempts = []
        for ts in candidates:
            accept = UPSTREAM_ACCEPT + (f"; transfer-syntax={ts}" if ts else "")
            try:
                upstream = self._pacs_http.get(f"{pacs.http_url}/dicom-web{path}", headers={"Accept": accept},
                                               auth=(pacs.username, pacs.password))
            except httpx.HTTPError as exc:
                return JSONResponse({"erreur": f"PACS injoignable : {type(exc).__name__}"}, status_code=502)
            if upstream.status_code == 404 or (upstream.status_code == 200 and b"DICM" not in upstream.content[:4096]):
                # referenced by a KOS in force (guard above) but no longer held by the PACS
                return JSONResponse({"erreur": "objet référencé par le KOS absent du PACS"}, status_code=410)
            if upstream.status_code == 200:
                break
            if upstream.status_code not in _CANNOT_ENCODE:
                return JSONResponse({"erreur": f"PACS : HTTP {upstream.status_code}"}, status_code=502)
            attempts.append(f"{ts}->{upstream.status_code}")
        else:
            return JSONResponse({"erreur": "le PACS ne fournit aucune des syntaxes de transfert acceptées : "
                                 + ", ".join(attempts)}, status_code=406)
        if ts is None:
            return Response(upstream.content, status_code=200, media_type=upstream.headers.get("content-type"))
        try:
            parts = netutil.split_multipart(upstream.headers.get("content-type", ""), upstream.content)
        except ValueError:
            return JSONResponse({"erreur": "PACS : réponse multipart illisible"}, status_code=502)
        boundary = uuid.uuid4().hex
        body = bytearray()
        for _, content in parts:
            body += (f"--{boundary}\r\nContent-Type: application/dicom; transfer-syntax={ts}\r\n"
                     f"Content-Length: {len(content)}\r\n\r\n").encode() + content + b"\r\n"
        body += f"--{boundary}--\r\n".encode()
        ctype = f'multipart/related; type="application/dicom"; transfer-syntax={ts}; boundary={boundary}'
        return Response(bytes(body), status_code=200, headers={"Content-Type": ctype})

    def _pacs_for(self, request: Any) -> Any:
        host = (request.headers.get("host") or "").split(":")[0].lower()
        pacs = self.box.config.pacs
        if mutants.active("cov-wado-first-pacs-only"):
            return pacs[0]  # mutant: WADO-RS proxy configured with one upstream PACS
        return next((p for p in pacs if p.db.lower() == host), pacs[0])


# -- Accept (RFC 9110 §12.5.1 syntax, DICOM PS3.18 §8.7 semantics): the reference's own parser ------------

_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_QVALUE = r"0(\.[0-9]{0,3})?|1(\.0{0,3})?"
_DICOM_RANGES = ("multipart/related", "multipart/*", "*/*")


def _split(text: str, sep: str) -> list[str]:
    """Split outside quoted strings; ValueError on an unterminated quoted string."""
    out, cur, quoted, escaped = [], [], False, False
    for ch in text:
        if escaped:
            escaped = False
        elif ch == "\\" and quoted:
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == sep and not quoted:
            out.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    if quoted:
        raise ValueError(f"guillemet non fermé dans « {text.strip()} »")
    out.append("".join(cur))
    return out


def parse_accept(value: str | None) -> list[tuple[str, dict[str, str], int]]:
    """[(media range, params, position)], names lower-cased, values unquoted; ValueError when the header is
    syntactically broken. None (no header) means ``*/*``; an empty value accepts nothing ([])."""
    import re

    if value is None:
        return [("*/*", {}, 0)]
    out = []
    for element in _split(value, ","):
        if not element.strip():
            continue  # empty list elements are allowed (RFC 9110 §5.6.1), like the ANS sample's trailing comma
        media, *pieces = _split(element, ";")
        media = media.strip().lower()
        if not re.fullmatch(f"{_TOKEN}/{_TOKEN}", media):
            raise ValueError(f"« {media} » n'est pas un type de média")
        params = {}
        for piece in pieces:
            if not piece.strip():
                continue
            name, eq, val = piece.strip().partition("=")
            name, val = name.strip().lower(), val.strip()
            if not eq or not re.fullmatch(_TOKEN, name) or not val:
                raise ValueError(f"paramètre mal formé « {piece.strip()} »")
            if len(val) >= 2 and val[0] == val[-1] == '"':
                val = re.sub(r"\\(.)", r"\1", val[1:-1])
            elif not re.fullmatch(_TOKEN, val):
                raise ValueError(f"valeur mal formée « {piece.strip()} »")
            params[name] = val
        if "q" in params and not re.fullmatch(_QVALUE, params["q"]):
            raise ValueError(f"q invalide « {params['q']} »")
        ts = params.get("transfer-syntax")
        if ts is not None and not (ts == "*" or (re.fullmatch(r"[0-9]+(\.[0-9]+)*", ts) and len(ts) <= 64)):
            raise ValueError(f"transfer-syntax invalide « {ts} »")
        out.append((media, params, len(out)))
    return out


def negotiate(ranges: list[tuple[str, dict[str, str], int]], supported: tuple[str, ...]) -> list[str]:
    """The acceptable syntaxes among ``supported``, best first (q descending, client order on ties); a DICOM
    range without transfer-syntax means Explicit VR LE, ``*`` the server's first choice (PS3.18 §8.7.3)."""
    dicom = [(media, params, i) for media, params, i in ranges if media in _DICOM_RANGES
             and params.get("type", "application/dicom").lower() == "application/dicom"]
    ranked = sorted(((float(p.get("q") or 1), -i, p.get("transfer-syntax") or EXPLICIT_VR_LE)
                     for _, p, i in dicom), reverse=True)
    refused = {ts for q, _, ts in ranked if q == 0}
    out: list[str] = []
    for q, _, ts in ranked:
        if q == 0:
            continue
        for pick in (supported if ts == "*" else (ts,)):
            if pick in supported and pick not in out and pick not in refused:
                out.append(pick)
    return out


def accept_problem(value: str | None) -> str | None:
    """Why an Accept header is syntactically broken (the reference's 400), None when PS3.18 can read it."""
    try:
        parse_accept(value)
    except ValueError as exc:
        return str(exc)
    return None
