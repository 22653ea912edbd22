"""Plumbing shared by drimcheck's HTTP(S) simulators (Pro Santé Connect, Proxy e-santé, peer DRIMboxes).

* :class:`SimServer` — an ASGI app served by uvicorn in a daemon thread, over HTTP or HTTPS with any
  ``ssl.SSLContext`` (so mTLS contexts from ``fixtures.pki.Issued.server_context`` work as they are);
  the client certificate and TLS parameters of each connection reach the app
  (:func:`client_certificate`, :func:`tls_summary`), which uvicorn alone does not provide.
* :class:`BoundedApp` — what a client (the DUT) can make a simulator read is bounded: header count and
  size, body size (declared or streamed), time to send the head and the body, bodies in flight; a request
  over a bound gets 413/431/408/400/503 in French, is recorded in ``SimServer.rejections`` (and handed to
  the simulator's ``on_rejected``), and the simulator keeps serving. Caps: ``drimcheck/limits.py``.
* :class:`Recorder` — the thread-safe request log every simulator keeps: evidence-friendly dicts
  (headers with credentials redacted, bodies as ``drimcheck.evidence.body_for_evidence`` views, tokens
  reduced to non-secret facts), sequence-numbered, with a bounded :meth:`Recorder.wait_for`.
* :func:`mapped_client` / :func:`mapped_async_client` — httpx clients that reach FQDNs through a hosts
  map (``{fqdn: "ip:port"}``) while keeping SNI, certificate name checks and ``Host`` on the FQDN:
  the test bed has no DNS.
* :func:`public_url` — ``https://fqdn`` or ``https://fqdn:port`` (the port only when it is not 443).
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from drimcheck.evidence import body_for_evidence, redact_headers, redact_text
from drimcheck.jose import JoseError, b64url, decode_unverified, fingerprint
from drimcheck.limits import MAX_HEADER_BYTES, MAX_HEADERS, MAX_REQUEST_BODY, too_large

__all__ = [
    "HttpsSimulator", "SimServer", "ClientCert", "client_certificate", "tls_summary", "Recorder",
    "request_headers_view", "response_headers_view", "redact_url", "body_view", "token_facts", "bearer_token",
    "mapped_client", "mapped_async_client", "MappedTransport", "AsyncMappedTransport", "public_url", "utc_now",
    "client_ssl_context", "closing_lifespan", "BoundedApp",
]

#: Claims of a JWT worth recording (identify the token and its holder; none is a secret).
TOKEN_FACT_CLAIMS = ("jti", "iss", "sub", "aud", "azp", "typ", "sid", "scope", "iat", "exp", "auth_time", "acr",
                     "preferred_username", "act")


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def public_url(fqdn: str, port: int | None) -> str:
    """``https://fqdn`` when port is None or 443, else ``https://fqdn:port``."""
    return f"https://{fqdn}" if port in (None, 443) else f"https://{fqdn}:{port}"


# --------------------------------------------------------------------------- TLS facts of a request


@dataclass(frozen=True)
class ClientCert:
    """The verified client certificate of a TLS connection (mTLS)."""

    der: bytes
    subject: str  # RFC 4514, CN first
    issuer: str
    serial: str  # hex
    sha256: str  # hex digest of the DER
    not_after: str
    client_auth_eku: bool  # the certificate allows TLS client authentication

    @classmethod
    def from_der(cls, der: bytes) -> ClientCert:
        cert = x509.load_der_x509_certificate(der)
        try:
            ekus = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
            client_auth = ExtendedKeyUsageOID.CLIENT_AUTH in ekus
        except x509.ExtensionNotFound:
            client_auth = True  # no EKU extension: any usage
        return cls(der=der, subject=cert.subject.rfc4514_string(), issuer=cert.issuer.rfc4514_string(),
                   serial=format(cert.serial_number, "x"), sha256=hashlib.sha256(der).hexdigest(),
                   not_after=cert.not_valid_after_utc.isoformat(), client_auth_eku=client_auth)

    @property
    def x5t_s256(self) -> str:
        """RFC 8705 certificate thumbprint (base64url SHA-256 of the DER), as in a ``cnf`` claim."""
        return b64url(hashlib.sha256(self.der).digest())

    def to_dict(self) -> dict[str, Any]:
        return {"subject": self.subject, "issuer": self.issuer, "serial": self.serial, "sha256": self.sha256,
                "not_after": self.not_after, "client_auth_eku": self.client_auth_eku}


def client_certificate(request: Any) -> ClientCert | None:
    """The client certificate the TLS layer verified for this request's connection, or None."""
    state = request.scope.get("state") or {}
    der = state.get("peercert_der")
    if not der:
        return None
    cached = state.get("peercert_obj")
    if cached is None:
        cached = ClientCert.from_der(der)
        state["peercert_obj"] = cached
    return cached


def tls_summary(request: Any) -> dict[str, Any] | None:
    """``{"version", "cipher", "sni", "client_cert"}`` of the request's connection; None over plain HTTP."""
    state = request.scope.get("state") or {}
    if not state.get("tls_version"):
        return None
    cert = client_certificate(request)
    return {"version": state.get("tls_version"), "cipher": state.get("tls_cipher"), "sni": state.get("tls_sni"),
            "client_cert": cert.to_dict() if cert else None}


_STATUS_TEXT = {400: "Bad Request", 408: "Request Timeout", 413: "Content Too Large",
                431: "Request Header Fields Too Large", 503: "Service Unavailable"}


def _raw_response(status: int, text: str) -> bytes:
    """A complete HTTP/1.1 answer written straight to the transport (no h11 state needed), closing."""
    body = (text + "\n").encode("utf-8")
    return (f"HTTP/1.1 {status} {_STATUS_TEXT.get(status, 'Error')}\r\ncontent-type: text/plain; charset=utf-8\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode("ascii") + body


def _tls_protocol(server: SimServer | None = None):
    """uvicorn's h11 protocol, extended to hand the TLS facts of the connection to the app (in scope state)
    and, with a ``server``, to bound the request head: a head that does not arrive within
    ``server.head_timeout_s`` gets 408, a head over ``server.max_header_bytes`` (h11's
    ``max_incomplete_event_size``) gets 431, any other unreadable head 400; each is recorded in
    ``server.rejections`` and the connection is closed."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class TlsFactsH11(H11Protocol):
        def connection_made(self, transport):  # type: ignore[override]
            super().connection_made(transport)
            sslobj = transport.get_extra_info("ssl_object")
            if sslobj is not None:
                cipher = sslobj.cipher()
                self.app_state = {**self.app_state, "tls_version": sslobj.version(),
                                  "tls_cipher": cipher[0] if cipher else None,
                                  "tls_sni": getattr(sslobj, "drimcheck_sni", None),
                                  "peercert_der": sslobj.getpeercert(binary_form=True)}
            self._head_timer = None
            self._head_scope = None
            self._head_bytes = 0
            if server is not None:
                self._arm_head()  # a connection that never sends a request is not kept forever

        # -- bounded request head (server given) --------------------------------------------
        def _arm_head(self) -> None:
            if self._head_timer is None:
                self._head_scope, self._head_bytes = self.scope, 0
                self._head_timer = self.loop.call_later(server.head_timeout_s, self._head_expired)

        def _disarm_head(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_expired(self) -> None:
            self._head_timer = None
            if self.transport.is_closing() or self.scope is not self._head_scope:
                return
            if self._head_bytes:  # a silent idle connection is simply closed; a trickled head is answered
                reason = f"en-tête de requête HTTP non reçu en {server.head_timeout_s:g} s"
                server._protocol_rejection(self, 408, reason, self._head_bytes)
                self.transport.write(_raw_response(408, reason))
            self.transport.close()

        def data_received(self, data: bytes) -> None:  # type: ignore[override]
            if server is not None and (self.cycle is None or self.cycle.response_complete):
                self._arm_head()
                self._head_bytes += len(data)
            super().data_received(data)
            if self._head_timer is not None and self.scope is not self._head_scope:
                self._disarm_head()

        def send_400_response(self, msg: str) -> None:  # type: ignore[override]
            if server is None:
                return super().send_400_response(msg)
            self._disarm_head()
            if self._head_bytes > server.max_header_bytes:
                status = 431
                reason = too_large("en-têtes de requête trop volumineux", server.max_header_bytes)
            else:
                status, reason = 400, "requête HTTP illisible (ligne de requête ou en-têtes invalides)"
            server._protocol_rejection(self, status, reason, self._head_bytes)
            self.transport.write(_raw_response(status, reason))
            self.transport.close()

        def connection_lost(self, exc):  # type: ignore[override]
            self._disarm_head()
            super().connection_lost(exc)

    return TlsFactsH11


# --------------------------------------------------------------------------- bounded requests


class _Limited(Exception):
    """Raised into the app once the middleware has answered a request that exceeded a bound."""


class BoundedApp:
    """ASGI middleware bounding what a client can make a simulator read (uvicorn bounds none of it).

    * more than ``server.max_headers`` header fields or ``server.max_header_bytes`` bytes of them: 431;
    * a declared ``Content-Length`` over ``server.max_body``: 413 before reading a byte of the body;
    * a body (chunked or not) growing past ``server.max_body`` while the app reads it: 413;
    * a body not complete within ``server.body_timeout_s`` of the request head: 408;
    * more than ``server.max_inflight_body`` bytes of bodies being received by concurrent requests: 503.

    No simulator inflates a request body (``Content-Encoding`` is left to the app, which sees the bytes as
    sent), so the wire size is the size kept. The answer is plain text in French (or what the server's
    ``on_rejected`` returns), sent with ``connection: close``; the app's own answer, if it tries one, is
    dropped. Each rejection is recorded in ``server.rejections`` and handed to ``server.on_rejected``.
    """

    def __init__(self, app: Any, server: SimServer) -> None:
        self.app = app
        self.server = server

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope.get("type") != "http":
            return await self.app(scope, receive, send)
        import asyncio

        srv = self.server
        t0 = time.monotonic()
        headers = scope.get("headers") or []
        if len(headers) > srv.max_headers:
            return await self._answer(scope, send, 431, too_large("trop d'en-têtes de requête", srv.max_headers,
                                                                 "en-têtes"), srv.max_headers, 0, t0)
        if sum(len(k) + len(v) for k, v in headers) > srv.max_header_bytes:
            return await self._answer(scope, send, 431, too_large("en-têtes de requête trop volumineux",
                                                                 srv.max_header_bytes), srv.max_header_bytes, 0, t0)
        declared = next((v for k, v in headers if k == b"content-length"), None)
        if declared is not None and declared.strip().isdigit() and int(declared) > srv.max_body:
            return await self._answer(scope, send, 413, too_large("corps de requête trop volumineux", srv.max_body)
                                      + f" (Content-Length: {int(declared)})", srv.max_body, 0, t0)
        has_body = declared is not None and declared.strip() not in (b"", b"0") or \
            any(k == b"transfer-encoding" for k, _ in headers)
        state = {"received": 0, "body_done": not has_body, "rejected": False, "started": False}
        deadline = t0 + srv.body_timeout_s

        async def reject(status: int, reason: str, limit: int) -> None:
            state["rejected"] = True
            if not state["started"]:
                await self._answer(scope, send, status, reason, limit, state["received"], t0)
            else:
                srv._record_rejection(scope, status, reason, limit, state["received"], t0)
            raise _Limited(reason)

        async def bounded_receive() -> dict:
            if state["rejected"]:
                raise _Limited("request already rejected")
            if state["body_done"]:
                return await receive()  # waiting for the disconnect: the app's own business
            try:
                message = await asyncio.wait_for(receive(), max(deadline - time.monotonic(), 0.001))
            except TimeoutError:
                await reject(408, f"corps de requête non reçu en entier en {srv.body_timeout_s:g} s",
                             int(srv.body_timeout_s))
            if message.get("type") == "http.request":
                size = len(message.get("body") or b"")
                state["received"] += size
                srv._inflight += size
                if not message.get("more_body", False):
                    state["body_done"] = True
                if state["received"] > srv.max_body:
                    await reject(413, too_large("corps de requête trop volumineux", srv.max_body), srv.max_body)
                if srv._inflight > srv.max_inflight_body:
                    await reject(503, too_large("corps de requêtes simultanées trop volumineux",
                                                srv.max_inflight_body), srv.max_inflight_body)
            else:
                state["body_done"] = True
            return message

        async def guarded_send(message: dict) -> None:
            if state["rejected"]:
                return  # we answered already
            if message.get("type") == "http.response.start" and not state["body_done"]:
                # answered before the whole body was read (405, 404, an early refusal): close after the answer
                # rather than let the client stream the rest of its body into a kept-alive connection
                message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
            state["started"] = True
            await send(message)

        try:
            await self.app(scope, bounded_receive, guarded_send)
        except Exception:  # once refused, what the app raises (our _Limited, Starlette's 500) is moot
            if not state["rejected"]:
                raise
        finally:
            srv._inflight -= state["received"]

    async def _answer(self, scope: dict, send: Callable, status: int, reason: str, limit: int, received: int,
                      t0: float) -> None:
        custom = self.server._record_rejection(scope, status, reason, limit, received, t0)
        ctype, body = custom if custom else ("text/plain; charset=utf-8", (reason + "\n").encode("utf-8"))
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", ctype.encode("latin-1")),
                                (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


# --------------------------------------------------------------------------- server


class SimServer:
    """Serve an ASGI app in a daemon thread (uvicorn, h11) on host:port, optionally with TLS.

    ``ssl_context`` is used as given (server side): set ``verify_mode`` to CERT_OPTIONAL/CERT_REQUIRED
    and load client CAs for mTLS. The socket is bound in :meth:`start` (port 0 = any free port; the
    bound port is then in ``port``). :meth:`stop` is bounded and idempotent.
    """

    start_timeout = 10.0
    graceful_shutdown_s = 0.5
    #: a request head (request line + headers) must arrive within this time of its first byte
    head_timeout_s = 30.0
    #: a request body must arrive within this time of its head
    body_timeout_s = 120.0
    #: concurrent connections (uvicorn ``limit_concurrency``: over it, 503)
    max_connections = 200
    #: refusals kept as evidence (and handed to ``on_rejected``); later ones are only counted
    max_recorded_rejections = 1000

    def __init__(self, app: Any, *, host: str = "127.0.0.1", port: int = 0,
                 ssl_context: ssl.SSLContext | None = None, name: str = "simulator", lifespan: str = "off",
                 interface: str = "auto", max_body: int = MAX_REQUEST_BODY,
                 on_rejected: Callable[[dict[str, Any], dict], tuple[str, bytes] | None] | None = None) -> None:
        """``max_body``: bytes of one request body (drimcheck/limits.py); ``on_rejected(entry, scope)`` is
        called for every request refused for a bound (413, 431, 408, 400, 503), with the entry recorded in
        :attr:`rejections`; it may return ``(content_type, body)`` to answer in the simulator's own format
        (a SOAP Fault for the DMP). It runs in the server's event loop: keep it short."""
        self.app = app
        self.max_body = max_body
        self.max_headers = MAX_HEADERS
        self.max_header_bytes = MAX_HEADER_BYTES
        # bodies being received at once, all requests together: one request at the cap, not two (a request
        # body costs ~3 times its size while a simulator reads and parses it: measured 95 MB for 31 MiB)
        self.max_inflight_body = max_body
        self.on_rejected = on_rejected
        #: every request refused for a bound, as evidence (status, reason, limit, method, path, headers...)
        self.rejections = Recorder(f"{name}:limites")
        self.rejected_total = 0  # every refusal, also those past max_recorded_rejections
        self._inflight = 0  # bytes of request bodies being received (event-loop thread only)
        self.interface = interface  # "asgi3" for a bare ASGI callable uvicorn's auto-detection misreads
        self.lifespan = lifespan  # "on" when the app closes resources at shutdown (Starlette lifespan)
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.name = name
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and bool(self._server and self._server.started)

    @property
    def scheme(self) -> str:
        return "https" if self.ssl_context is not None else "http"

    @property
    def address(self) -> str:
        """``ip:port`` where the server listens (what a hosts map points an FQDN at)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        """Base URL by IP address (``scheme://ip:port``); clients checking names use the FQDN instead."""
        return f"{self.scheme}://{self.address}"

    def start(self) -> SimServer:
        import uvicorn

        if self._thread is not None:
            raise RuntimeError(f"{self.name}: already started")
        family = socket.AF_INET6 if _is_ipv6(self.host) else socket.AF_INET
        # proto must be IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted sockets only when the listening
        # socket says so (proto 0 -> Nagle + delayed ACK = ~44 ms per response on keep-alive connections)
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise OSError(f"{self.name}: cannot listen on {self.address}: {exc.strerror or exc}") from None
        sock.listen(128)
        self.port = sock.getsockname()[1]
        self._sock = sock
        kwargs: dict[str, Any] = {}
        if self.ssl_context is not None:
            ctx = self.ssl_context
            if ctx.sni_callback is None:
                ctx.sni_callback = _remember_sni
            kwargs["ssl_context_factory"] = lambda _config, _default: ctx
        # every simulator app is ASGI 3 (Starlette, or a bare callable with interface="asgi3")
        config = uvicorn.Config(BoundedApp(self.app, self), host=self.host, port=self.port, log_level="error",
                                access_log=False, lifespan=self.lifespan, http=_tls_protocol(self), timeout_keep_alive=5,
                                interface="asgi3", timeout_graceful_shutdown=self.graceful_shutdown_s,
                                h11_max_incomplete_event_size=self.max_header_bytes,
                                limit_concurrency=self.max_connections, **kwargs)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name=f"{self.name}:{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self.start_timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name}: server did not start on {self.address}")
            time.sleep(0.005)
        return self

    # -- rejections (called in the server's event loop) ---------------------------------------
    def _record_rejection(self, scope: dict, status: int, reason: str, limit: int, received: int,
                          t0: float) -> tuple[str, bytes] | None:
        """Record a request refused for a bound; the simulator's ``on_rejected`` may shape the answer."""
        self.rejected_total += 1
        if len(self.rejections) >= self.max_recorded_rejections:  # a flood is counted, not kept
            return None
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in (scope.get("headers") or [])[:MAX_HEADERS]]
        state = scope.get("state") or {}
        client = scope.get("client")
        entry = self.rejections.add({
            "status": status, "reason": reason, "limit": limit, "received_bytes": received,
            "elapsed_s": round(time.monotonic() - t0, 3), "method": scope.get("method"), "path": scope.get("path"),
            "client": f"{client[0]}:{client[1]}" if client else None,
            "header_count": len(scope.get("headers") or []), "headers": request_headers_view(headers),
            "tls": {"version": state.get("tls_version"), "sni": state.get("tls_sni")} if state.get("tls_version") else None,
        })
        if self.on_rejected is None:
            return None
        try:
            return self.on_rejected(dict(entry), scope)
        except Exception:  # noqa: BLE001 - the refusal itself must go out; the entry is in self.rejections
            return None

    def _protocol_rejection(self, protocol: Any, status: int, reason: str, received: int) -> None:
        """A request head refused by the protocol (before any ASGI scope): recorded like the others."""
        client = getattr(protocol, "client", None)
        scope = {"type": "http", "method": None, "path": None, "headers": [], "client": client,
                 "state": getattr(protocol, "app_state", {}) or {}}
        limit = int(self.head_timeout_s) if status == 408 else self.max_header_bytes
        self._record_rejection(scope, status, reason, limit, received, time.monotonic())

    def stop(self, timeout: float = 5.0) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.should_exit = True
        if thread is not None:
            thread.join(timeout)
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
            self._sock = None

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _remember_sni(sslobj: Any, server_name: str | None, _ctx: ssl.SSLContext) -> None:
    """SNI callback: keep the name the client asked for, so requests can record it."""
    try:
        sslobj.drimcheck_sni = server_name
    except AttributeError:
        pass
    return None


def _is_ipv6(host: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(host.strip("[]")), ipaddress.IPv6Address)
    except ValueError:
        return False


# --------------------------------------------------------------------------- recording


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (scheme case-insensitive), else None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def token_facts(token: str | None) -> dict[str, Any] | None:
    """Non-secret facts of a token: fingerprint (sha256 prefix), format and the identifying JWT claims."""
    if not token:
        return None
    facts: dict[str, Any] = {"fingerprint": fingerprint(token), "length": len(token)}
    try:
        header, claims = decode_unverified(token)
    except JoseError:
        facts["format"] = "opaque"
        return facts
    facts["format"] = "jwt"
    facts["alg"] = header.get("alg")
    facts["kid"] = header.get("kid")
    facts["claims"] = {k: claims[k] for k in TOKEN_FACT_CLAIMS if k in claims}
    return facts


_URL_SECRET = re.compile(r"([?&](?:code|access_token|id_token|refresh_token|token|id_token_hint)=)[^&#]*", re.I)


def redact_url(value: str) -> str:
    """A URL with authorization codes and tokens in its query replaced by [REDACTED]."""
    return _URL_SECRET.sub(lambda m: m.group(1) + "[REDACTED]", value)


def request_headers_view(headers: Iterable[tuple[str, str]] | Mapping[str, str]) -> list[list[str]]:
    """Headers as ``[[name, value], ...]`` with credentials redacted (Authorization keeps its scheme)."""
    return redact_headers(list(headers.items()) if isinstance(headers, Mapping) else list(headers))


def response_headers_view(headers: Iterable[tuple[str, str]] | Mapping[str, str]) -> list[list[str]]:
    """Like :func:`request_headers_view`; also redacts codes and tokens in a ``Location`` URL."""
    out = request_headers_view(headers)
    return [[k, redact_url(v) if k.lower() == "location" else v] for k, v in out]


def body_view(body: bytes | None, content_type: str = "") -> dict[str, Any]:
    """Evidence view of a body (size, redacted text or base64, truncated when large)."""
    view = body_for_evidence(body, content_type)
    if "text" in view:
        view["text"] = redact_text(view["text"])
    return view


class Recorder:
    """Thread-safe, sequence-numbered log of a simulator's requests (newest last).

    Each entry is a dict built by the simulator; :meth:`add` stamps ``seq``, ``time`` (ISO UTC) and
    ``t`` (``time.monotonic()``). Entries may be completed later by their handler (e.g. the part count
    of a streamed answer) through :meth:`update`; snapshots are shallow copies.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._entries: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._seq = 0

    def add(self, entry: dict[str, Any]) -> dict[str, Any]:
        with self._cond:
            self._seq += 1
            stamped = {"seq": self._seq, "simulator": self.name, "time": utc_now(), "t": time.monotonic(), **entry}
            self._entries.append(stamped)
            self._cond.notify_all()
            return stamped

    def update(self, entry: dict[str, Any], **fields: Any) -> None:
        with self._cond:
            entry.update(fields)
            self._cond.notify_all()

    def snapshot(self, predicate: Callable[[dict[str, Any]], bool] | None = None) -> list[dict[str, Any]]:
        with self._lock:
            items = [dict(e) for e in self._entries]
        return [e for e in items if predicate is None or predicate(e)]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    @property
    def last_seq(self) -> int:
        """Sequence number of the newest entry (0 when none yet): pass it as ``after`` to wait for new ones."""
        with self._lock:
            return self._seq

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], *, timeout_s: float,
                 after: int = 0) -> dict[str, Any] | None:
        """The first entry with ``seq > after`` satisfying the predicate, waiting at most ``timeout_s``; None on timeout.

        Use it both ways: to wait for a request, and to observe (boundedly) that none arrives.
        """
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                for e in self._entries:
                    if e["seq"] > after and predicate(e):
                        return dict(e)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(min(remaining, 0.05))

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


# --------------------------------------------------------------------------- simulator base


class HttpsSimulator:
    """Lifecycle, addresses and request log shared by the HTTPS simulators.

    A subclass sets ``fqdn``, ``recorder`` (a :class:`Recorder`), ``_server`` (a :class:`SimServer`) and
    ``_public_port`` (``"auto"``: the bound port is written in URLs unless it is 443; an int: that port;
    None: port-less URLs, clients resolve the FQDN through :meth:`hosts`).
    """

    fqdn: str
    recorder: Recorder
    _server: SimServer
    _public_port: int | str | None = "auto"

    def start(self):
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _on_rejected(self, entry: dict[str, Any], scope: dict[str, Any]) -> None:
        """``SimServer(on_rejected=...)``: a request refused for a bound goes to this simulator's log too, with
        ``rejected`` saying why (its body was not kept). Answered with the plain-text refusal."""
        host = next((v for k, v in entry.get("headers") or [] if k.lower() == "host"), None)
        self.recorder.add({
            "endpoint": "rejected", "method": entry.get("method"), "path": entry.get("path"), "query": "",
            "client": entry.get("client"), "host_header": host, "tls": entry.get("tls"),
            "headers": entry.get("headers"), "token": None, "complete": True,
            "request": {"headers": entry.get("headers"), "body": None},
            "response": {"status": entry.get("status"), "headers": [], "body": None},
            "rejected": {k: entry.get(k) for k in ("status", "reason", "limit", "received_bytes", "header_count",
                                                   "elapsed_s")},
        })
        return None

    @property
    def rejections(self) -> list[dict[str, Any]]:
        """Requests refused for a bound (SimServer.rejections), oldest first."""
        return self._server.rejections.snapshot()

    @property
    def address(self) -> str:
        """``ip:port`` where it listens."""
        return self._server.address

    @property
    def port(self) -> int:
        return self._server.port

    def hosts(self) -> dict[str, str]:
        """``{fqdn: "ip:port"}``: how a client without DNS reaches it (campaign hosts map)."""
        return {self.fqdn: self.address}

    @property
    def base_url(self) -> str:
        """``https://<fqdn>[:port]`` per ``_public_port``."""
        port = self.port if self._public_port == "auto" else self._public_port
        return public_url(self.fqdn, port)  # type: ignore[arg-type]

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Snapshot of every recorded request, oldest first."""
        return self.recorder.snapshot()

    def clear_requests(self) -> None:
        self.recorder.clear()

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], *, timeout_s: float,
                 after: int = 0) -> dict[str, Any] | None:
        """Bounded wait for a recorded request (None: none arrived in time); see :meth:`Recorder.wait_for`."""
        return self.recorder.wait_for(predicate, timeout_s=timeout_s, after=after)


# --------------------------------------------------------------------------- clients through a hosts map


def _split_hostport(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


def _remap(request: httpx.Request, hosts: Mapping[str, str]) -> None:
    target = hosts.get(request.url.host)
    if target is None:
        return
    ip, port = _split_hostport(target)
    fqdn = request.url.host
    request.url = request.url.copy_with(host=ip, port=port)
    if request.url.scheme == "https":
        request.extensions = {**request.extensions, "sni_hostname": fqdn}


class MappedTransport(httpx.HTTPTransport):
    """Sync transport that connects to ``hosts[fqdn]`` (``"ip:port"``); SNI and Host stay the FQDN."""

    def __init__(self, hosts: Mapping[str, str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hosts = dict(hosts)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        _remap(request, self.hosts)
        return super().handle_request(request)


class AsyncMappedTransport(httpx.AsyncHTTPTransport):
    """Async variant of :class:`MappedTransport`."""

    def __init__(self, hosts: Mapping[str, str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hosts = dict(hosts)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        _remap(request, self.hosts)
        return await super().handle_async_request(request)


def client_ssl_context(trust: Iterable[Any], cert: Any = None) -> ssl.SSLContext:
    """TLS client context (TLS >= 1.2) trusting the PEM files ``trust``, presenting ``cert`` (a
    ``fixtures.pki.Issued``: its chain and key) when given."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    for path in trust:
        ctx.load_verify_locations(cafile=str(path))
    if cert is not None:
        ctx.load_cert_chain(str(cert.chain_path), str(cert.key_path))
    return ctx


def closing_lifespan(take_clients: Callable[[], Iterable[httpx.AsyncClient]]) -> Any:
    """A Starlette lifespan that, at shutdown, closes the async clients ``take_clients()`` hands over
    (clients bound to the server's event loop must be closed in it)."""
    import contextlib

    @contextlib.asynccontextmanager
    async def lifespan(app: Any):
        yield
        for client in list(take_clients()):
            await client.aclose()

    return lifespan


def mapped_client(hosts: Mapping[str, str] | None = None, *, verify: ssl.SSLContext | bool = True,
                  timeout: float = 10.0, **kwargs: Any) -> httpx.Client:
    """An httpx.Client resolving FQDNs through ``hosts``; ``verify`` is an SSLContext (with a client
    certificate loaded for mTLS) or a bool. Never reads proxy settings from the environment."""
    transport = MappedTransport(hosts or {}, verify=verify)
    return httpx.Client(transport=transport, timeout=httpx.Timeout(timeout), trust_env=False, **kwargs)


def mapped_async_client(hosts: Mapping[str, str] | None = None, *, verify: ssl.SSLContext | bool = True,
                        timeout: float = 10.0, **kwargs: Any) -> httpx.AsyncClient:
    """Async variant of :func:`mapped_client`."""
    transport = AsyncMappedTransport(hosts or {}, verify=verify)
    return httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(timeout), trust_env=False, **kwargs)
