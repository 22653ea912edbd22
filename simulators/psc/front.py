"""The PSC's HTTP front: routes, host dispatch, injected faults, records, client authentication."""

from __future__ import annotations

import base64
import hmac
import time
from typing import Any

from simulators.httpsim import body_view, client_certificate, request_headers_view, response_headers_view, tls_summary
from simulators.psc.base import PscBase
from simulators.psc.model import (
    GRANT_TOKEN_EXCHANGE,
    OIDC_PATH,
    REALM,
    REALM_PATH,
    WALLET_AUTH_PATH,
    OAuthError,
    OidcClient,
)
from simulators.psc.web import _FORM_POST_CODE, _form_value, _host_only, _oauth_error_response, _redact_query


class HttpFrontMixin(PscBase):
    """Routing, fault injection, recording and client authentication of every request."""

    def _app(self) -> Any:
        from starlette.applications import Starlette
        from starlette.routing import Route

        def route(path: str, name: str, handler: Any, methods: list[str]) -> Route:
            async def endpoint(request: Any) -> Any:
                return await self._handle(request, name, handler)
            return Route(path, endpoint, methods=methods)

        auth_path = WALLET_AUTH_PATH if self.wallet_fqdn else OIDC_PATH + "/auth"
        return Starlette(routes=[
            route(REALM_PATH + "/.well-known/openid-configuration", "discovery", self._h_discovery, ["GET"]),
            route(REALM_PATH + "/.well-known/wallet-openid-configuration", "discovery", self._h_discovery, ["GET"]),
            route(REALM_PATH, "realm", self._h_realm, ["GET"]),
            route(auth_path, "auth", self._h_auth, ["GET", "POST"]),
            route(OIDC_PATH + "/token", "token", self._h_token, ["POST"]),
            route(OIDC_PATH + "/token/introspect", "introspect", self._h_introspect, ["POST"]),
            route(OIDC_PATH + "/revoke", "revoke", self._h_revoke, ["POST"]),
            route(OIDC_PATH + "/userinfo", "userinfo", self._h_userinfo, ["GET", "POST"]),
            route(OIDC_PATH + "/certs", "certs", self._h_certs, ["GET"]),
            route(OIDC_PATH + "/logout", "logout", self._h_logout, ["GET", "POST"]),
            # anything else (another path, or an endpoint asked on the other host): 404, recorded
            route("/{path:path}", "misdirected", self._h_misdirected,
                  ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]),
        ])

    async def _handle(self, request: Any, name: str, handler: Any) -> Any:
        from starlette.responses import Response

        t0 = time.monotonic()
        body = await request.body()
        facts: dict[str, Any] = {}
        fault_name = None
        if self.wallet_fqdn and name != "misdirected":
            host = _host_only(request.headers.get("host"))
            # the authorization endpoint lives on the wallet host only, every other endpoint on the issuer's only
            if host in (self.fqdn.lower(), self.wallet_fqdn) and (name == "auth") != (host == self.wallet_fqdn):
                name, handler = "misdirected", self._h_misdirected
        with self._lock:
            fault = self._faults.get(name)
            if (fault is None and name == "token" and "token-exchange" in self._faults
                    and _form_value(body, "grant_type") == GRANT_TOKEN_EXCHANGE):
                fault, fault_name = self._faults["token-exchange"], "token-exchange"
        try:
            if fault is not None:
                fault_name = fault_name or name
                if fault.error:
                    raise OAuthError(fault.status, fault.error, fault.description or "fault injected by the scenario")
                response: Response = Response("Service Unavailable\n" if fault.status == 503 else "fault\n",
                                              status_code=fault.status, media_type="text/plain")
            else:
                with self._lock:
                    response = handler(request, body, facts)
        except OAuthError as exc:
            facts.setdefault("outcome", exc.error)
            response = _oauth_error_response(exc)
        except Exception as exc:  # noqa: BLE001 - a simulator bug must be visible in the record, not a hang
            facts["outcome"] = "server_error"
            facts["exception"] = f"{type(exc).__name__}: {exc}"
            response = _oauth_error_response(OAuthError(500, "server_error", "internal error of the PSC simulator"))
        self._record(request, name, body, response, facts, fault_name, time.monotonic() - t0)
        return response

    def _record(self, request: Any, name: str, body: bytes, response: Any, facts: dict[str, Any],
                fault: str | None, elapsed: float) -> None:
        query = request.url.query
        client = request.client
        resp_body = bytes(getattr(response, "body", b"") or b"")
        if name == "auth" and resp_body:  # form_post page: the authorization code is a credential
            resp_body = _FORM_POST_CODE.sub(rb"\1[REDACTED]", resp_body)
        self.recorder.add({
            "endpoint": name,
            "method": request.method,
            "path": request.url.path,
            "query": _redact_query(query) if query else "",
            "client": f"{client.host}:{client.port}" if client else None,
            "host_header": request.headers.get("host"),
            "tls": tls_summary(request),
            "request": {"headers": request_headers_view(request.headers.items()),
                        "body": body_view(body, request.headers.get("content-type", ""))},
            "response": {"status": response.status_code,
                         "headers": response_headers_view(response.headers.items()),
                         "body": body_view(resp_body, response.headers.get("content-type", ""))},
            "facts": facts,
            "fault": fault,
            "elapsed_s": round(elapsed, 6),
        })

    def _authenticate(self, request: Any, form: dict[str, str], facts: dict[str, Any]) -> OidcClient:
        auth = request.headers.get("authorization", "")
        cert = client_certificate(request)
        method = None
        client_id = form.get("client_id")
        failure = "client authentication required"
        client = None
        if auth.lower().startswith("basic "):
            method = "client_secret_basic"
            try:
                raw = base64.b64decode(auth[6:].strip(), validate=True).decode("utf-8")
                cid, _, secret = raw.partition(":")
                from urllib.parse import unquote_plus

                cid, secret = unquote_plus(cid), unquote_plus(secret)
            except (ValueError, UnicodeDecodeError):
                cid, secret = "", ""
            candidate = self._clients.get(cid)
            if client_id and client_id != cid:
                failure = "client_id in the body differs from the Basic credentials"
            elif candidate and candidate.secret and hmac.compare_digest(candidate.secret, secret):
                client = candidate
            else:
                failure = "invalid client credentials"
            client_id = cid
        elif "client_secret" in form:
            method = "client_secret_post"
            candidate = self._clients.get(client_id or "")
            if candidate and candidate.secret and hmac.compare_digest(candidate.secret, form["client_secret"]):
                client = candidate
            else:
                failure = "invalid client credentials"
        elif cert is not None:
            method = "tls_client_auth"
            candidate = self._clients.get(client_id or "")
            if not client_id:
                failure = "client_id is required with tls_client_auth (RFC 8705)"
            elif candidate is None:
                failure = "unknown client_id"
            elif cert.subject not in candidate.tls_subject_dns:
                failure = "client certificate subject DN not registered for this client"
            elif not cert.client_auth_eku:
                failure = "client certificate not allowed for TLS client authentication"
            else:
                client = candidate
        facts["client_auth"] = {"method": method, "client_id": client_id, "ok": client is not None,
                                "cert_subject": cert.subject if cert else None}
        if client is None:
            facts["client_auth"]["failure"] = failure
            raise OAuthError(401, "invalid_client", failure,
                             www_authenticate=f'Basic realm="{REALM}"' if method == "client_secret_basic" else None)
        return client

    def _h_misdirected(self, request: Any, body: bytes, facts: dict[str, Any]) -> Any:
        """404 for a path this host does not serve. An authorization request sent to the issuer's host (a client
        that builds issuer-relative URLs instead of reading the discovery document) says where it belongs."""
        from starlette.responses import PlainTextResponse

        facts["outcome"] = "not_found"
        if request.url.path.rstrip("/").endswith(("/protocol/openid-connect/auth", WALLET_AUTH_PATH)) and \
                _host_only(request.headers.get("host")) != self.wallet_fqdn:
            facts["outcome"] = "authorization_endpoint_elsewhere"
            facts["authorization_endpoint"] = self.endpoint("auth")
        return PlainTextResponse("Not Found\n", status_code=404)
