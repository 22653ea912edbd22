"""Plumbing shared by drimcheck's HTTP(S) simulators (Pro Santé Connect, Proxy e-santé, peer DRIMboxes).

* :class:`SimServer` — an ASGI app served by uvicorn in a daemon thread, over HTTP or HTTPS with any
  ``ssl.SSLContext`` (so mTLS contexts from ``fixtures.pki.Issued.server_context`` work as they are);
  the client certificate and TLS parameters of each connection reach the app
  (:func:`client_certificate`, :func:`tls_summary`), which uvicorn alone does not provide.
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
from datetime import datetime, timezone
from typing import Any

import httpx
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from drimcheck.evidence import body_for_evidence, redact_headers, redact_text
from drimcheck.jose import JoseError, b64url, decode_unverified, fingerprint

__all__ = [
    "HttpsSimulator", "SimServer", "ClientCert", "client_certificate", "tls_summary", "Recorder",
    "request_headers_view", "response_headers_view", "redact_url", "body_view", "token_facts", "bearer_token",
    "mapped_client", "mapped_async_client", "MappedTransport", "AsyncMappedTransport", "public_url", "utc_now",
    "client_ssl_context", "closing_lifespan",
]

#: Claims of a JWT worth recording (identify the token and its holder; none is a secret).
TOKEN_FACT_CLAIMS = ("jti", "iss", "sub", "aud", "azp", "typ", "sid", "scope", "iat", "exp", "auth_time", "acr",
                     "preferred_username", "act")


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


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
    def from_der(cls, der: bytes) -> "ClientCert":
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


def _tls_protocol():
    """uvicorn's h11 protocol, extended to hand the TLS facts of the connection to the app (in scope state)."""
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

    return TlsFactsH11


# --------------------------------------------------------------------------- server


class SimServer:
    """Serve an ASGI app in a daemon thread (uvicorn, h11) on host:port, optionally with TLS.

    ``ssl_context`` is used as given (server side): set ``verify_mode`` to CERT_OPTIONAL/CERT_REQUIRED
    and load client CAs for mTLS. The socket is bound in :meth:`start` (port 0 = any free port; the
    bound port is then in ``port``). :meth:`stop` is bounded and idempotent.
    """

    start_timeout = 10.0
    graceful_shutdown_s = 0.5

    def __init__(self, app: Any, *, host: str = "127.0.0.1", port: int = 0,
                 ssl_context: ssl.SSLContext | None = None, name: str = "simulator", lifespan: str = "off",
                 interface: str = "auto") -> None:
        self.app = app
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

    def start(self) -> "SimServer":
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
        config = uvicorn.Config(self.app, host=self.host, port=self.port, log_level="error", access_log=False,
                                lifespan=self.lifespan, http=_tls_protocol(), timeout_keep_alive=5, interface=self.interface,
                                timeout_graceful_shutdown=self.graceful_shutdown_s, **kwargs)
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

    def __enter__(self) -> "SimServer":
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
