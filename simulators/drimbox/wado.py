"""Reference DRIMbox, Source side: WADO-RS image serving to peer DRIMboxes on the dbN HTTPS listener.

Routes (under WADO_ROOT): ``/studies/{study}/series/{series}`` and
``/studies/{study}/series/{series}/instances/{instance}``, answered from the PACS of the dbN FQDN
the request came to (a mutualised DRIMbox has one PACS per FQDN pair), as multipart/related DICOM.

Every request first goes through `guards`, in order; the first that returns a response ends the
request. The trust space installs one guard: a client certificate (mTLS) that the trust function
allows (IGC-Santé chain, validity, revocation, DN listed in the whitelist). Later functions append
theirs (PSC Bearer token introspection, KOS-SOPInstanceUID consistency) without touching this one.
"""

from __future__ import annotations

from typing import Any, Callable

WADO_ROOT = "/api/source"  # same base as the RetrieveURL the reference writes in its KOS (ANS samples)
UPSTREAM_ACCEPT = 'multipart/related; type="application/dicom"'

Guard = Callable[[Any], Any]  # request -> starlette Response (refusal) or None (go on)


class Function:
    def __init__(self, box: Any):
        import httpx

        self.box = box
        self.guards: list[Guard] = [self.require_trusted_peer]
        # one pooled client: creating an httpx client per request costs tens of milliseconds
        self._pacs_http = httpx.Client(timeout=10.0, trust_env=False)

    def start(self) -> None:
        pass

    def stop(self) -> None:
        self._pacs_http.close()

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
        if upstream.status_code == 404:
            return JSONResponse({"erreur": "objet absent du PACS"}, status_code=404)
        if upstream.status_code != 200:
            return JSONResponse({"erreur": f"PACS : HTTP {upstream.status_code}"}, status_code=502)
        return Response(upstream.content, status_code=200, media_type=upstream.headers.get("content-type"))

    def _pacs_for(self, request: Any) -> Any:
        host = (request.headers.get("host") or "").split(":")[0].lower()
        pacs = self.box.config.pacs
        return next((p for p in pacs if p.db.lower() == host), pacs[0])
