"""HTTP(S) towards the DUT: real address from the SUT description, SNI and Host = FQDN, every exchange recorded.

The client does not abort on certificate problems: it records the TLS handshake (version, cipher,
the chain the server presented) as evidence, and the TLS checks judge it. Content checks can then
run even against a DUT whose certificate is wrong, so that one defect fails one requirement.
"""

from __future__ import annotations

import json
import socket
import ssl
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

import _ssl
import httpx

from drimcheck.config import Address, Sut
from drimcheck.evidence import EvidenceStore, body_for_evidence, redact_headers


@dataclass
class TlsInfo:
    """What the TLS handshake showed: negotiated version and cipher, SNI sent, chain presented (leaf first)."""

    sni: str
    version: str | None = None
    cipher: str | None = None
    chain_der: list[bytes] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        from cryptography import x509

        chain = []
        for der in self.chain_der:
            try:
                c = x509.load_der_x509_certificate(der)
                chain.append({"subject": c.subject.rfc4514_string(), "issuer": c.issuer.rfc4514_string(),
                              "serial": hex(c.serial_number), "not_after": c.not_valid_after_utc.isoformat()})
            except ValueError:
                chain.append({"unparsable": True, "size": len(der)})
        return {"sni": self.sni, "version": self.version, "cipher": self.cipher, "chain": chain}


@dataclass
class Exchange:
    """One request/response with the DUT, or the error that prevented it."""

    label: str
    method: str
    url: str
    connect_to: str
    started_at: str
    request_headers: list[tuple[str, str]]
    request_body: bytes | None = None
    status: int | None = None
    response_headers: list[tuple[str, str]] = field(default_factory=list)
    response_body: bytes = b""
    elapsed_s: float = 0.0
    tls: TlsInfo | None = None
    error: str | None = None
    evidence: str | None = None  # path of the evidence file, relative to the run directory
    client_certificate: str | None = None  # subject of the certificate the harness presented (mTLS), if any

    @property
    def ok(self) -> bool:
        return self.error is None and self.status is not None

    def header(self, name: str) -> str | None:
        for k, v in self.response_headers:
            if k.lower() == name.lower():
                return v
        return None

    def json(self) -> Any:
        """The body parsed as JSON, or None when it is not JSON."""
        try:
            return json.loads(self.response_body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return None

    def text(self) -> str:
        return self.response_body.decode("utf-8", errors="replace")

    def to_evidence(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "started_at": self.started_at,
            "request": {"method": self.method, "url": self.url, "connect_to": self.connect_to,
                        "headers": redact_headers(self.request_headers),
                        "body": body_for_evidence(self.request_body)},
            "response": None if self.status is None else {
                "status": self.status, "headers": redact_headers(self.response_headers),
                "body": body_for_evidence(self.response_body, self.header("content-type") or "")},
            "elapsed_s": round(self.elapsed_s, 4),
            "tls": self.tls.to_dict() if self.tls else None,
            "error": self.error,
            **({"client_certificate": self.client_certificate} if self.client_certificate else {}),
        }


def describe_error(exc: BaseException, timeout: float) -> str:
    """One readable line for a transport failure (what a report reader needs, not a traceback)."""
    if isinstance(exc, httpx.ConnectTimeout):
        return f"connection or TLS handshake not completed within {timeout:g} s"
    if isinstance(exc, (httpx.ReadTimeout, httpx.WriteTimeout, httpx.PoolTimeout)):
        return f"no answer within {timeout:g} s (the connection was accepted)"
    if isinstance(exc, httpx.ConnectError):
        cause = str(exc) or type(exc).__name__
        if "Connection refused" in cause or "Errno 111" in cause:
            return "connection refused"
        if "WRONG_VERSION_NUMBER" in cause or "wrong version number" in cause:
            return "TLS handshake failed: the server did not answer with TLS (plain HTTP?)"
        return f"connection failed: {cause}"
    if isinstance(exc, httpx.RemoteProtocolError):
        return f"protocol error: {exc}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc.reason or exc}"
    return f"{type(exc).__name__}: {exc}"


class DutClient:
    """Talks to the DUT's FQDNs over their configured addresses and records every exchange."""

    def __init__(self, sut: Sut, evidence: EvidenceStore | None, *, timeout: float | None = None):
        self.sut = sut
        self.evidence = evidence
        self.timeout = timeout if timeout is not None else sut.timeouts.request_s
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False  # judged by the TLS checks from the recorded chain, not here
        ctx.verify_mode = ssl.CERT_NONE
        self._tls_ctx = ctx
        self._client_ctx: dict[tuple[str, str], ssl.SSLContext] = {}  # one context per client certificate (mTLS)

    def address_for(self, url: str) -> tuple[str, Address]:
        parts = urlsplit(url)
        fqdn = parts.hostname or ""
        endpoint = self.sut.endpoint(fqdn)
        addr = endpoint.https if parts.scheme == "https" else endpoint.http
        if addr is None:
            from drimcheck.config import ConfigError

            raise ConfigError(f"{self.sut.source_file}: no {parts.scheme} address for {fqdn} in [network]")
        return fqdn, addr

    def _context(self, client_cert: Any) -> ssl.SSLContext:
        """The recording TLS context, presenting a client certificate when given (mTLS as a peer DRIMbox)."""
        if client_cert is None:
            return self._tls_ctx
        chain, key = (client_cert if isinstance(client_cert, tuple) else (client_cert.chain_path, client_cert.key_path))
        cache = self._client_ctx
        if (str(chain), str(key)) not in cache:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            ctx.load_cert_chain(str(chain), str(key))
            cache[(str(chain), str(key))] = ctx
        return cache[(str(chain), str(key))]

    def request(self, method: str, url: str, *, label: str, headers: dict[str, str] | None = None,
                content: bytes | None = None, timeout: float | None = None, client_cert: Any = None) -> Exchange:
        """Send one request; never raises on transport problems: the Exchange carries the error.

        client_cert: an object with chain_path/key_path (fixtures.pki.Issued) or a (chain PEM, key PEM)
        tuple, presented as TLS client certificate (a fresh connection per request, as every request here).
        """
        timeout = timeout if timeout is not None else self.timeout
        parts = urlsplit(url)
        fqdn, addr = self.address_for(url)
        target = f"{parts.scheme}://{addr.host}:{addr.port}{parts.path or '/'}" + (f"?{parts.query}" if parts.query else "")
        default_port = 443 if parts.scheme == "https" else 80
        host_header = fqdn if (parts.port or default_port) == default_port else f"{fqdn}:{parts.port}"
        req_headers = {"Host": host_header, "User-Agent": "drimcheck", **(headers or {})}
        ex = Exchange(label=label, method=method, url=url, connect_to=str(addr),
                      started_at=datetime.now(timezone.utc).isoformat(), request_headers=list(req_headers.items()),
                      request_body=content)
        if parts.scheme == "https":
            ex.tls = TlsInfo(sni=fqdn)
        t0 = time.monotonic()
        try:
            with httpx.Client(verify=self._context(client_cert), timeout=httpx.Timeout(timeout), trust_env=False) as client:
                with client.stream(method, target, headers=req_headers, content=content,
                                   extensions={"sni_hostname": fqdn} if ex.tls else {}) as resp:
                    if ex.tls:
                        _capture_tls(resp, ex.tls)
                    ex.status = resp.status_code
                    ex.response_headers = list(resp.headers.multi_items())
                    ex.response_body = _read_bounded(resp, t0, timeout)
        except Exception as exc:  # noqa: BLE001 - every transport failure becomes evidence, not a traceback
            ex.error = describe_error(exc, timeout)
        ex.elapsed_s = time.monotonic() - t0
        if client_cert is not None:
            ex.client_certificate = _subject_of(client_cert)
        if self.evidence is not None:
            ex.evidence = self.evidence.write_json(label, ex.to_evidence())
        return ex

    def get(self, url: str, *, label: str, **kw: Any) -> Exchange:
        return self.request("GET", url, label=label, **kw)


def _subject_of(client_cert: Any) -> str:
    """For evidence: which certificate the harness presented."""
    cert = getattr(client_cert, "cert", None)
    return cert.subject.rfc4514_string() if cert is not None else str(client_cert[0])


def _capture_tls(resp: httpx.Response, info: TlsInfo) -> None:
    stream = resp.extensions.get("network_stream")
    sslobj = stream.get_extra_info("ssl_object") if stream is not None else None
    if sslobj is None:
        return
    info.version = sslobj.version()
    cipher = sslobj.cipher()
    info.cipher = cipher[0] if cipher else None
    try:
        info.chain_der = [c.public_bytes(_ssl.ENCODING_DER) for c in sslobj.get_unverified_chain() or []]
    except (AttributeError, ssl.SSLError):
        der = sslobj.getpeercert(True)
        info.chain_der = [der] if der else []


def _read_bounded(resp: httpx.Response, t0: float, timeout: float) -> bytes:
    """Read the body with an overall deadline, so a DUT that trickles bytes cannot hang the run."""
    chunks = []
    for chunk in resp.iter_bytes():
        chunks.append(chunk)
        if time.monotonic() - t0 > timeout:
            raise httpx.ReadTimeout("body not complete within the deadline")
    return b"".join(chunks)


def tcp_reachable(addr: Address, timeout: float = 2.0) -> bool:
    """Whether something accepts TCP connections at the address (used to tell 'down' from 'wrong')."""
    try:
        with socket.create_connection((addr.host, addr.port), timeout=timeout):
            return True
    except OSError:
        return False


@dataclass
class Poll:
    """One timed request of a periodic poller (the Météo): monotonic send and receive times."""

    sent_at: float
    received_at: float
    exchange: Exchange


@dataclass
class TlsVersionProbe:
    """One handshake attempt offering a single (old) TLS version: what the server did with it."""

    fqdn: str
    connect_to: str
    offered: str
    outcome: str  # "accepted" | "refused" | "client-unable" (our OpenSSL cannot offer it) | "unreachable"
    negotiated: str | None = None
    detail: str = ""
    evidence: str | None = None

    def to_evidence(self) -> dict[str, Any]:
        return {"fqdn": self.fqdn, "connect_to": self.connect_to, "offered": self.offered, "outcome": self.outcome,
                "negotiated": self.negotiated, "detail": self.detail}


_CLIENT_SIDE = ("NO_PROTOCOLS_AVAILABLE", "NO_CIPHERS_AVAILABLE", "NO_SUITABLE_SIGNATURE_ALGORITHM")


def probe_tls_version(address: Address, sni: str, version: ssl.TLSVersion, *, timeout: float = 5.0,
                      evidence: EvidenceStore | None = None, label: str = "tls-version") -> TlsVersionProbe:
    """Offer exactly `version` (and every cipher, @SECLEVEL=0, so that OpenSSL 3 really sends it) and record the outcome.

    A server refusal (protocol_version alert, reset, EOF) is "refused"; a failure before anything is
    sent, because the local OpenSSL cannot offer the version, is "client-unable" (inconclusive).
    """
    import warnings

    probe = TlsVersionProbe(fqdn=sni, connect_to=str(address), offered=version.name, outcome="refused")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TLSv1/TLSv1_1 are deprecated: that is the point
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            ctx.minimum_version = version
            ctx.maximum_version = version
            ctx.set_ciphers("ALL:@SECLEVEL=0")
    except (ValueError, ssl.SSLError) as exc:
        probe.outcome, probe.detail = "client-unable", f"contexte TLS impossible : {exc}"
    else:
        try:
            with socket.create_connection((address.host, address.port), timeout=timeout) as sock:
                with ctx.wrap_socket(sock, server_hostname=sni) as tls:
                    probe.outcome, probe.negotiated = "accepted", tls.version()
                    probe.detail = f"poignée de main réussie ({tls.version()}, {tls.cipher()[0] if tls.cipher() else '?'})"
        except ssl.SSLError as exc:
            reason = exc.reason or ""
            probe.outcome = "client-unable" if reason in _CLIENT_SIDE else "refused"
            probe.detail = f"{reason or type(exc).__name__}: {exc}"
        except (ConnectionRefusedError, socket.timeout, TimeoutError, OSError) as exc:
            if isinstance(exc, (ConnectionResetError, BrokenPipeError)):
                probe.outcome, probe.detail = "refused", f"connexion coupée par le serveur ({type(exc).__name__})"
            else:
                probe.outcome, probe.detail = "unreachable", f"{type(exc).__name__}: {exc}"
    if evidence is not None:
        probe.evidence = evidence.write_json(label, probe.to_evidence())
    return probe
