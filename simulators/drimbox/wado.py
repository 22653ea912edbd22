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
3. ``Accept``: every element a ``multipart/related`` range with ``transfer-syntax=`` and ``q=``, the
   first with ``boundary=`` (the PoC's rules), else 400;
4. ``KOS-SOPInstanceUID``: missing -> 400; not a KOS this Source published and still in force, or a
   KOS that does not reference the study / series / instance asked -> 404 (the Source's own archive,
   `source.Function.kos_in_force`).

Then a referenced object the PACS no longer holds is 410 (Gone), and the series or instance is
served as multipart/related from the PACS.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

WADO_ROOT = "/api/source"  # same base as the RetrieveURL the reference writes in its KOS (ANS samples)
UPSTREAM_ACCEPT = 'multipart/related; type="application/dicom"'

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
            if self.box.is_mutant("mtls-optional"):
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
            if self.box.is_mutant("wado-no-token-check"):
                return None
            return JSONResponse({"erreur": "jeton Bearer PSC requis"}, status_code=401,
                                headers={"WWW-Authenticate": 'Bearer realm="DRIMbox"'})
        if self.box.is_mutant("wado-token-not-introspected"):
            return None
        if self.box.is_mutant("cov-psc-introspection-cached") and token in getattr(self, "_seen_active", set()):
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
        if self.box.is_mutant("cov-psc-introspection-cached"):
            self.__dict__.setdefault("_seen_active", set()).add(token)
        return None

    def require_valid_accept(self, request: Any) -> Any:
        """An Accept list as the ANS samples: multipart/related ranges with transfer-syntax and q, boundary first."""
        from starlette.responses import JSONResponse

        problem = accept_problem(request.headers.get("accept"))
        if problem:
            return JSONResponse({"erreur": f"en-tête Accept invalide : {problem}"}, status_code=400)
        return None

    def require_matching_kos(self, request: Any) -> Any:
        """KOS-SOPInstanceUID names a KOS this Source published, in force, that references what is asked."""
        from starlette.responses import JSONResponse

        if self.box.is_mutant("wado-kos-ignored"):
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
        import httpx
        from starlette.responses import JSONResponse, Response

        for guard in self.guards:
            refusal = guard(request)
            if refusal is not None:
                return refusal
        pacs = self._pacs_for(request)
        try:
            upstream = self._pacs_http.get(f"{pacs.http_url}/dicom-web{path}", headers={"Accept": UPSTREAM_ACCEPT},
                                           auth=(pacs.username, pacs.password))
        except httpx.HTTPError as exc:
            return JSONResponse({"erreur": f"PACS injoignable : {type(exc).__name__}"}, status_code=502)
        if upstream.status_code == 404 or (upstream.status_code == 200 and b"DICM" not in upstream.content[:4096]):
            # referenced by a KOS in force (guard above) but no longer held by the PACS
            return JSONResponse({"erreur": "objet référencé par le KOS absent du PACS"}, status_code=410)
        if upstream.status_code != 200:
            return JSONResponse({"erreur": f"PACS : HTTP {upstream.status_code}"}, status_code=502)
        return Response(upstream.content, status_code=200, media_type=upstream.headers.get("content-type"))

    def _pacs_for(self, request: Any) -> Any:
        host = (request.headers.get("host") or "").split(":")[0].lower()
        pacs = self.box.config.pacs
        if self.box.is_mutant("cov-wado-first-pacs-only"):
            return pacs[0]  # mutant: WADO-RS proxy configured with one upstream PACS
        return next((p for p in pacs if p.db.lower() == host), pacs[0])


def accept_problem(value: str | None) -> str | None:
    """Why an Accept header does not follow the ANS samples (None when it does)."""
    import re

    if not value or not value.strip():
        return "absent"
    elements = [e.strip() for e in re.split(r',(?=(?:[^"]*"[^"]*")*[^"]*$)', value) if e.strip()]
    if not elements:
        return "vide"
    for index, element in enumerate(elements):
        media, *params = [p.strip() for p in element.split(";")]
        names = {}
        for p in params:
            name, eq, val = p.partition("=")
            if not eq or not name.strip() or not val.strip():
                return f"paramètre mal formé « {p} »"
            names[name.strip().lower()] = val.strip().strip('"')
        if media.lower() not in ("multipart/related", "multipart/*", "*/*"):
            return f"type « {media} » au lieu de multipart/related"
        if "transfer-syntax" not in names:
            return f"transfer-syntax absent de « {element} »"
        if not re.fullmatch(r"\*|[0-9]+(\.[0-9]+)*", names["transfer-syntax"]):
            return f"transfer-syntax invalide « {names['transfer-syntax']} »"
        if "q" not in names or not re.fullmatch(r"0(\.[0-9]{0,3})?|1(\.0{0,3})?", names["q"]):
            return f"q absent ou invalide dans « {element} »"
        if index == 0 and "boundary" not in names:
            return f"boundary absent du premier élément « {element} »"
    return None
