"""Proxy e-santé simulator: terminates the DUT's mutual TLS and relays to national services (PSC, DMP).

Real world (drimbox-spec §6.4): the proxy e-santé is the component of a DRIMbox installation that
holds the ORG certificate and talks to PSC and the DMP over mTLS (RFC 8705 client authentication).
Here it is a generic relay the harness controls:

* **Front side**: HTTPS on ``https://proxy.esante.drimcheck.test[:port]`` (SERV_SSL of the run PKI);
  a client certificate chaining to IGC-Santé (ORG AUTH_CLI or SERV_SSL) is requested at TLS level and
  *required* by the relay: a request without one is answered 403 ``client_certificate_required`` and
  recorded (a TLS-level refusal would leave no trace for the checks; ``tls_require_client_cert=True``
  enforces it in the handshake instead). ``allowed_client_dns`` restricts the accepted subjects.
* **Routes**: ``prefix -> upstream base URL`` (longest prefix wins); ``/psc/...`` relays to
  ``<psc>/...``. Each route has its upstream hosts map, trust anchors and the client certificate the
  proxy presents upstream (default: its own ORG AUTH_CLI). Hop-by-hop headers are dropped,
  ``X-Forwarded-For/-Proto/-Host`` and ``X-Forwarded-Client-Cert`` (Envoy style: ``Hash=..;Subject=".."``)
  are added. Bodies are streamed both ways.
* **Optional token exchange on a route** (:class:`TokenExchange`, SECU-IG "API Pro Santé Connectée"):
  the incoming ``Authorization: Bearer <PSC token>`` is exchanged at PSC (RFC 8693, via the route
  named ``via``) and the upstream receives the exchanged token.
* **Faults**: :meth:`ProxySimulator.set_unavailable` (a route answers 503 without relaying: "PSC
  unavailable"), :meth:`ProxySimulator.refuse_token_exchange` (any relayed RFC 8693 request, and the
  proxy's own exchanges, get an RFC 6749 §5.2 error: 400 ``invalid_request`` by default, or 401
  ``invalid_client`` with ``WWW-Authenticate``), :meth:`ProxySimulator.set_fault` (any status on a
  route). Upstream unreachable: 502; upstream timeout: 504.
* Every request is recorded (:attr:`ProxySimulator.requests`) with route, upstream URL and status,
  client certificate, fault applied, token facts (never raw tokens) and timings.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx

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
    response_headers_view,
    tls_summary,
    token_facts,
)

__all__ = ["DEFAULT_FQDN", "Route", "TokenExchange", "ProxySimulator", "start_for_campaign"]

DEFAULT_FQDN = "proxy.esante.drimcheck.test"
GRANT_TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
TOKEN_TYPE_ACCESS = "urn:ietf:params:oauth:token-type:access_token"
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
              "transfer-encoding", "upgrade", "host", "content-length"}
_CAPTURE = 256 * 1024  # bytes of each body kept for evidence


@dataclass
class TokenExchange:
    """Exchange the caller's Bearer token at PSC before relaying (RFC 8693).

    ``via`` names the route that reaches PSC; ``token_path`` is appended to that route's upstream.
    The proxy authenticates with ``client_id`` by mTLS (its route certificate) or ``client_secret``.
    """

    via: str = "psc"
    token_path: str = "/auth/realms/esante-wallet/protocol/openid-connect/token"
    client_id: str = "proxy-esante"
    client_secret: str | None = None
    audience: str | None = None
    scope: str | None = None


@dataclass
class Route:
    """``prefix`` (e.g. ``/psc``) relayed to ``upstream`` (base URL, e.g. ``https://auth.psc.drimcheck.test:8443``)."""

    name: str
    prefix: str
    upstream: str
    hosts: dict[str, str] = field(default_factory=dict)  # upstream FQDN -> "ip:port"
    trust: list[Path] = field(default_factory=list)  # PEM files that verify the upstream server
    client_cert: Any = None  # fixtures.pki.Issued presented upstream (mTLS), None = none
    exchange: TokenExchange | None = None
    timeout_s: float = 10.0

    def matches(self, path: str) -> bool:
        return path == self.prefix or path.startswith(self.prefix.rstrip("/") + "/")

    def upstream_url(self, path: str, query: str) -> str:
        rest = path[len(self.prefix.rstrip("/")):]
        base = self.upstream.rstrip("/") if rest else self.upstream
        return base + rest + (f"?{query}" if query else "")

    def ssl_context(self) -> ssl.SSLContext:
        return client_ssl_context(self.trust, self.client_cert)


@dataclass(frozen=True)
class _Fault:
    status: int
    error: str | None = None
    description: str | None = None


class ProxySimulator(HttpsSimulator):
    """The Proxy e-santé on a real mTLS socket (see the module docstring).

    Parameters: ``pki`` (run PKI), ``fqdn``, ``host``/``port`` (listening address), ``public_port``
    ("auto" = bound port in URLs, None = 443), ``server_cert`` (default SERV_SSL for ``fqdn``),
    ``client_cert`` (what it presents upstream; default an ORG AUTH_CLI "PROXY E-SANTE DRIMCHECK"),
    ``client_cas`` (PEM files trusted for DUT certificates; default IGC-Santé chain),
    ``tls_require_client_cert``, ``allowed_client_dns`` (None = any IGC-chained client certificate).
    """

    def __init__(self, pki: Any, *, fqdn: str = DEFAULT_FQDN, host: str = "127.0.0.1", port: int = 0,
                 public_port: int | str | None = "auto", server_cert: Any = None, client_cert: Any = "default",
                 client_cas: list[Path] | None = None, tls_require_client_cert: bool = False,
                 allowed_client_dns: list[str] | None = None) -> None:
        self.pki = pki
        self.fqdn = fqdn
        self.server_cert = server_cert if server_cert is not None else \
            pki.serv_ssl(fqdn, organisation="DRIMCHECK PROXY E-SANTE TEST")
        self.client_cert = pki.org_auth_cli("PROXY E-SANTE DRIMCHECK", organisation="DRIMCHECK PROXY E-SANTE TEST") \
            if client_cert == "default" else client_cert
        #: PEM file a client must trust to verify this proxy's certificate (IGC-Santé chain)
        self.trust_pem: Path = pki.igc_chain_pem
        self.allowed_client_dns = allowed_client_dns
        self._public_port = public_port
        self._routes: list[Route] = []
        self._faults: dict[str, _Fault] = {}  # route name -> fault
        self._exchange_refusal: _Fault | None = None
        self._lock = threading.Lock()
        self._clients: dict[str, httpx.AsyncClient] = {}
        self.recorder = Recorder("proxy")
        self.events = Recorder("proxy-scenario")
        ctx = self.server_cert.server_context(client_cas=client_cas or [pki.igc_chain_pem],
                                              require_client_cert=tls_require_client_cert)
        self._server = SimServer(self._app(), host=host, port=port, ssl_context=ctx, name="proxy", lifespan="on",
                                 on_rejected=self._on_rejected)

    # lifecycle, address, hosts(), base_url, requests, clear_requests, wait_for: see HttpsSimulator

    def url_for(self, route: str, path: str = "") -> str:
        """Public URL of ``path`` through the route named ``route`` (e.g. ``url_for("psc", OIDC_PATH + "/token")``)."""
        r = self.route(route)
        return self.base_url + r.prefix.rstrip("/") + path

    # ------------------------------------------------------------------ routes and faults

    def add_route(self, prefix: str, upstream: str, *, name: str | None = None, hosts: dict[str, str] | None = None,
                  trust: list[Path] | None = None, client_cert: Any = "default",
                  exchange: TokenExchange | None = None, timeout_s: float = 10.0) -> Route:
        """Relay ``prefix`` to ``upstream``; ``trust`` defaults to the IGC-Santé root + the market root."""
        if not prefix.startswith("/"):
            raise ValueError(f"route prefix must start with '/': {prefix!r}")
        route = Route(name or prefix.strip("/") or "root", prefix, upstream, dict(hosts or {}),
                      list(trust) if trust is not None else [self.pki.igc_trust_pem, self.pki.market_trust_pem],
                      self.client_cert if client_cert == "default" else client_cert, exchange, timeout_s)
        with self._lock:
            self._routes = sorted([r for r in self._routes if r.name != route.name] + [route],
                                  key=lambda r: -len(r.prefix))
            self._clients.pop(route.name, None)
        return route

    def route(self, name: str) -> Route:
        for r in self._routes:
            if r.name == name:
                return r
        raise KeyError(f"no proxy route named {name!r}")

    @property
    def routes(self) -> list[Route]:
        return list(self._routes)

    def set_unavailable(self, route: str, unavailable: bool = True, *, status: int = 503) -> None:
        """The route answers ``status`` (503) without relaying, e.g. ``set_unavailable("psc")``; False restores it."""
        self.route(route)
        if unavailable:
            self.set_fault(route, status)
        else:
            self.clear_faults(route)

    def set_fault(self, route: str, status: int, error: str | None = None, description: str | None = None) -> None:
        """Answer ``status`` on a route (JSON ``{"error", "error_description"}`` when ``error`` is given)."""
        self.route(route)
        with self._lock:
            self._faults[route] = _Fault(status, error, description)
        self.events.add({"action": "set_fault", "route": route, "status": status, "error": error})

    def clear_faults(self, *routes: str) -> None:
        """Remove route faults (all when none given) and the token-exchange refusal when clearing all."""
        with self._lock:
            for name in routes or list(self._faults):
                self._faults.pop(name, None)
            if not routes:
                self._exchange_refusal = None
        self.events.add({"action": "clear_faults", "routes": list(routes) or "all"})

    def refuse_token_exchange(self, refuse: bool = True, *, status: int = 400, error: str | None = None,
                              description: str = "token exchange refused") -> None:
        """Refuse every RFC 8693 exchange passing through or made by the proxy (False restores them).

        The answer follows RFC 6749 §5.2 as RFC 8693 §2.2.2 requires: 400 with ``error`` (default
        ``invalid_request``), or 401 ``invalid_client`` with ``WWW-Authenticate: Basic``.
        """
        with self._lock:
            if not refuse:
                self._exchange_refusal = None
            else:
                error = error or ("invalid_client" if status == 401 else "invalid_request")
                self._exchange_refusal = _Fault(status, error, description)
        self.events.add({"action": "refuse_token_exchange", "refuse": refuse, "status": status, "error": error})

    # ------------------------------------------------------------------ records

    def requests_for(self, route: str) -> list[dict[str, Any]]:
        return self.recorder.snapshot(lambda e: e.get("route") == route)


    # ------------------------------------------------------------------ campaign

    def dut_settings(self) -> dict[str, Any]:
        """Base URL, per-route URLs, the PEM that verifies the proxy, and the certificate the DUT presents."""
        out: dict[str, Any] = {"fqdn": self.fqdn, "address": self.address, "url": self.base_url,
                               "ca_file": str(self.trust_pem), "client_certificate": "org_auth_cli",
                               "routes": {r.name: self.base_url + r.prefix.rstrip("/") for r in self._routes}}
        if any(r.name == "psc" for r in self._routes):
            from simulators.psc import OIDC_PATH

            base = self.url_for("psc", OIDC_PATH)
            out["psc"] = {"token_endpoint": base + "/token", "introspection_endpoint": base + "/token/introspect",
                          "userinfo_endpoint": base + "/userinfo", "end_session_endpoint": base + "/logout",
                          "revocation_endpoint": base + "/revoke"}  # RFC 7009, as PSC's Keycloak serves it
        return out

    # ------------------------------------------------------------------ HTTP

    def _app(self) -> Any:
        from starlette.applications import Starlette
        from starlette.routing import Route as StarletteRoute

        def take_clients() -> list[httpx.AsyncClient]:
            clients, self._clients = self._clients, {}
            return list(clients.values())

        methods = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]
        return Starlette(routes=[StarletteRoute("/{path:path}", self._relay, methods=methods)],
                         lifespan=closing_lifespan(take_clients))

    def _client_for(self, route: Route) -> httpx.AsyncClient:
        client = self._clients.get(route.name)
        if client is None:
            client = mapped_async_client(route.hosts, verify=route.ssl_context(), timeout=route.timeout_s)
            self._clients[route.name] = client
        return client

    async def _relay(self, request: Any) -> Any:
        from starlette.responses import Response, StreamingResponse

        t0 = time.monotonic()
        body = await request.body()
        cert = client_certificate(request)
        path, query = request.url.path, request.url.query
        entry = self.recorder.add({
            "method": request.method, "path": path, "query": redact_url("?" + query)[1:] if query else "",
            "client": f"{request.client.host}:{request.client.port}" if request.client else None,
            "host_header": request.headers.get("host"), "tls": tls_summary(request),
            "request": {"headers": request_headers_view(request.headers.items()),
                        "body": body_view(body, request.headers.get("content-type", ""))},
            "token": token_facts(bearer_token(request.headers.get("authorization"))),
            "route": None, "upstream_url": None, "upstream_status": None, "fault": None, "response": None,
            "complete": False,
        })

        def finish(response: Any, **facts: Any) -> Any:
            resp_body = bytes(getattr(response, "body", b"") or b"")
            self.recorder.update(entry, complete=True, elapsed_s=round(time.monotonic() - t0, 6), **facts,
                                 response={"status": response.status_code,
                                           "headers": response_headers_view(response.headers.items()),
                                           "body": body_view(resp_body, response.headers.get("content-type", ""))})
            return response

        if cert is None:
            return finish(_json_error(403, "client_certificate_required",
                                      "the Proxy e-santé requires a client certificate (mTLS)"),
                          refused="no_client_cert")
        if self.allowed_client_dns is not None and cert.subject not in self.allowed_client_dns:
            return finish(_json_error(403, "access_denied", "client certificate not allowed"),
                          refused="client_dn_not_allowed")
        route = next((r for r in self._routes if r.matches(path)), None)
        if route is None:
            return finish(_json_error(404, "not_found", f"no route for {path}"))
        self.recorder.update(entry, route=route.name)
        with self._lock:
            fault = self._faults.get(route.name)
            refusal = self._exchange_refusal
        if fault is not None:
            if fault.error:
                return finish(_json_error(fault.status, fault.error, fault.description or "fault injected"),
                              fault=f"route:{fault.status}")
            return finish(Response("Service Unavailable\n" if fault.status == 503 else "fault\n",
                                   status_code=fault.status, media_type="text/plain"), fault=f"route:{fault.status}")
        is_exchange = _form_param(body, request.headers.get("content-type", ""), "grant_type") == GRANT_TOKEN_EXCHANGE
        if is_exchange:
            self.recorder.update(entry, grant_type=GRANT_TOKEN_EXCHANGE)
            if refusal is not None:
                return finish(_exchange_error(refusal), fault="token_exchange_refused")
        headers = _forward_headers(request, cert)
        if route.exchange is not None:
            presented = bearer_token(request.headers.get("authorization"))
            exchanged, problem = await self._exchange(route.exchange, presented, refusal)
            if exchanged is None:
                resp = _json_error(401, "invalid_token", problem or "token exchange failed")
                safe = (problem or "token exchange failed").replace('"', "'")
                resp.headers["WWW-Authenticate"] = f'Bearer error="invalid_token", error_description="{safe}"'
                return finish(resp, fault="token_exchange_refused" if refusal else None, exchange={"ok": False,
                                                                                                    "error": problem})
            headers = [(k, v) for k, v in headers if k.lower() != "authorization"]
            headers.append(("Authorization", f"Bearer {exchanged}"))
            self.recorder.update(entry, exchange={"ok": True, "issued": token_facts(exchanged)})
        url = route.upstream_url(path, query)
        self.recorder.update(entry, upstream_url=url)
        client = self._client_for(route)
        try:
            upstream = await client.send(client.build_request(request.method, url, headers=headers, content=body),
                                         stream=True)
        except httpx.TimeoutException as exc:
            return finish(_json_error(504, "gateway_timeout", f"upstream {route.name}: {type(exc).__name__}"),
                          upstream_error=f"{type(exc).__name__}: {exc}")
        except httpx.HTTPError as exc:
            return finish(_json_error(502, "bad_gateway", f"upstream {route.name} unreachable"),
                          upstream_error=f"{type(exc).__name__}: {exc}")
        resp_headers = [(k, v) for k, v in upstream.headers.multi_items() if k.lower() not in HOP_BY_HOP]
        self.recorder.update(entry, upstream_status=upstream.status_code)
        captured = bytearray()
        counted = [0]

        async def stream():
            try:
                async for chunk in upstream.aiter_raw():
                    counted[0] += len(chunk)
                    if len(captured) < _CAPTURE:
                        captured.extend(chunk[:_CAPTURE - len(captured)])
                    yield chunk
            finally:
                await upstream.aclose()
                view = body_view(bytes(captured), upstream.headers.get("content-type", ""))
                if counted[0] > len(captured):
                    view.update(size=counted[0], truncated=True)
                self.recorder.update(
                    entry, complete=True, elapsed_s=round(time.monotonic() - t0, 6), response_bytes=counted[0],
                    response={"status": upstream.status_code, "headers": response_headers_view(resp_headers),
                              "body": view})

        return StreamingResponse(stream(), status_code=upstream.status_code, headers=dict(_merge(resp_headers)))

    async def _exchange(self, spec: TokenExchange, subject: str | None,
                        refusal: _Fault | None) -> tuple[str | None, str]:
        """Exchange ``subject`` at PSC; (token, "") or (None, reason). Recorded as its own entry."""
        if not subject:
            return None, "no bearer token to exchange"
        entry = self.recorder.add({"kind": "token_exchange", "route": spec.via, "subject": token_facts(subject),
                                   "complete": False})
        if refusal is not None:
            self.recorder.update(entry, complete=True, fault="token_exchange_refused", status=refusal.status,
                                 error=refusal.error)
            return None, f"{refusal.error}: {refusal.description}"
        via = self.route(spec.via)
        form = {"grant_type": GRANT_TOKEN_EXCHANGE, "subject_token": subject,
                "subject_token_type": TOKEN_TYPE_ACCESS, "client_id": spec.client_id}
        if spec.client_secret:
            form["client_secret"] = spec.client_secret
        if spec.audience:
            form["audience"] = spec.audience
        if spec.scope:
            form["scope"] = spec.scope
        try:
            resp = await self._client_for(via).post(via.upstream.rstrip("/") + spec.token_path, data=form)
        except httpx.HTTPError as exc:
            self.recorder.update(entry, complete=True, error=f"{type(exc).__name__}: {exc}")
            return None, "PSC unreachable for the token exchange"
        try:
            data = resp.json()
        except ValueError:
            data = {}
        self.recorder.update(entry, complete=True, status=resp.status_code, error=data.get("error"),
                             issued=token_facts(data.get("access_token")))
        if resp.status_code != 200 or not data.get("access_token"):
            return None, f"{data.get('error', 'error')}: {data.get('error_description', resp.status_code)}"
        return data["access_token"], ""


# --------------------------------------------------------------------------- helpers


def _json_error(status: int, error: str, description: str) -> Any:
    from starlette.responses import Response

    return Response(json.dumps({"error": error, "error_description": description}), status_code=status,
                    media_type="application/json", headers={"Cache-Control": "no-store"})


def _exchange_error(fault: _Fault) -> Any:
    resp = _json_error(fault.status, fault.error or "invalid_request", fault.description or "token exchange refused")
    if fault.status == 401:
        resp.headers["WWW-Authenticate"] = 'Basic realm="proxy-esante"'
    return resp


def _form_param(body: bytes, content_type: str, name: str) -> str | None:
    if "application/x-www-form-urlencoded" not in content_type.lower() or len(body) > 1_000_000:
        return None
    values = parse_qs(body.decode("utf-8", "replace")).get(name)
    return values[0] if values else None


def _forward_headers(request: Any, cert: Any) -> list[tuple[str, str]]:
    out = [(k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP and
           k.lower() not in ("x-forwarded-client-cert",)]
    client = request.client.host if request.client else ""
    out += [("X-Forwarded-For", client), ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", request.headers.get("host", ""))]
    if cert is not None:
        out.append(("X-Forwarded-Client-Cert", f'Hash={cert.sha256};Subject="{cert.subject}"'))
    return out


def _merge(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Starlette takes a dict: join repeated headers (Set-Cookie excepted, kept last)."""
    merged: dict[str, str] = {}
    for k, v in headers:
        key = k.lower()
        merged[key] = f"{merged[key]}, {v}" if key in merged and key != "set-cookie" else v
    return list(merged.items())


# --------------------------------------------------------------------------- campaign


def start_for_campaign(runtime: Any) -> ProxySimulator:
    """Start the proxy at ``runtime.simulator_address("proxy")`` with routes to the simulators already running.

    ``/psc`` -> the PSC simulator (and the proxy's ORG AUTH_CLI is registered as an mTLS identity of
    the DUT's PSC client, plus a ``proxy-esante`` client for its own exchanges); ``/dmp`` -> the DMP
    simulator when one runs and its ``dut_settings()`` carries a ``url`` (or ``base_url``). More routes:
    ``runtime.sims["proxy"].add_route(prefix, upstream, ...)``.
    """
    addr = runtime.simulator_address("proxy")
    proxy = ProxySimulator(runtime.pki, host=addr.host, port=addr.port)
    psc = runtime.sims.get("psc")
    if psc is not None:
        proxy.add_route("/psc", psc.base_url, name="psc", hosts=psc.hosts(), trust=[psc.trust_pem])
        dn = proxy.client_cert.subject_dn
        if psc.dut_client_id:
            client = psc.client(psc.dut_client_id)
            if dn not in client.tls_subject_dns:
                client.tls_subject_dns.append(dn)
        psc.register_client("proxy-esante", secret=None, tls_subject_dns=[dn])
    dmp = runtime.sims.get("dmp")
    settings = dmp.dut_settings() if dmp is not None and hasattr(dmp, "dut_settings") else {}
    url = settings.get("url") or settings.get("base_url") if isinstance(settings, dict) else None
    if url:
        trust = [Path(settings["ca_file"])] if settings.get("ca_file") else None
        proxy.add_route("/dmp", url, name="dmp", hosts=dmp.hosts() if hasattr(dmp, "hosts") else {}, trust=trust)
    proxy.start()
    return proxy
