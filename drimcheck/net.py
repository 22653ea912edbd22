"""HTTP(S) towards the DUT: real address from the SUT description, SNI and Host = FQDN, every exchange recorded.

The client does not abort on certificate problems: it records the TLS handshake (version, cipher,
the chain the server presented) as evidence, and the TLS checks judge it. Content checks can then
run even against a DUT whose certificate is wrong, so that one defect fails one requirement.

A DUT is hostile by assumption: every exchange is bounded in time as a whole (connect, handshake,
each read and write get the time left until one deadline, see :class:`BoundedTransport`) and in size
(headers, body on the wire, body after content decoding, done here piece by piece: see
:func:`read_body` and :mod:`drimcheck.limits`). A cap exceeded ends the exchange with a recorded
error (French, it reaches the reports); the prefix received is kept. Only the DUT's declared FQDNs
(``[network]``) are contacted: any other host is recorded as not contacted.
"""

from __future__ import annotations

import _ssl
import enum
import io
import json
import os
import socket
import ssl
import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from drimcheck import limits
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

        chain: list[dict[str, Any]] = []
        for der in self.chain_der:
            try:
                c = x509.load_der_x509_certificate(der)
                chain.append({"subject": c.subject.rfc4514_string(), "issuer": c.issuer.rfc4514_string(),
                              "serial": hex(c.serial_number), "not_after": c.not_valid_after_utc.isoformat()})
            except ValueError:
                chain.append({"unparsable": True, "size": len(der)})
        return {"sni": self.sni, "version": self.version, "cipher": self.cipher, "chain": chain}


class TransportOutcome(enum.Enum):
    """How an exchange ended at the transport level. Checks match on this, never on the wording of
    :attr:`Exchange.error` (a French or English sentence meant for the reports)."""

    ANSWERED = "answered"  # the response was read whole (whatever its status)
    NOT_CONTACTED = "not_contacted"  # the URL is off the test bed: nothing was sent
    TIMEOUT = "timeout"  # no answer, or no complete answer, within the exchange's deadline
    REFUSED = "refused"  # the connection was refused
    TLS = "tls"  # TLS handshake or record failure (including plain HTTP where TLS was expected)
    PROTOCOL = "protocol"  # malformed HTTP, undecodable content coding
    LIMIT = "limit"  # a harness cap exceeded (headers, body size, content codings)
    FAILED = "failed"  # any other transport failure (connection reset, ...)


@dataclass
class Exchange:
    """One request/response with the DUT, or the error that prevented it.

    ``outcome`` is what checks match on; ``error`` is the readable line (None when the outcome is ANSWERED)."""

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
    outcome: TransportOutcome = TransportOutcome.ANSWERED
    evidence: str | None = None  # path of the evidence file, relative to the run directory
    client_certificate: str | None = None  # subject of the certificate the harness presented (mTLS), if any

    @property
    def ok(self) -> bool:
        return self.error is None and self.status is not None

    @property
    def timed_out(self) -> bool:
        """No answer, or no complete answer, within the exchange's deadline."""
        return self.outcome is TransportOutcome.TIMEOUT

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
            "outcome": self.outcome.value,
            **({"client_certificate": self.client_certificate} if self.client_certificate else {}),
        }


# ----------------------------------------------------------------------------- bounded exchanges

_H11_INCOMPLETE_EVENT = 100 * 1024  # httpcore's h11 refuses a header block (or chunk header) larger than this
_PIECE = 64 * 1024  # content decoding yields at most this many bytes at a time
ACCEPT_ENCODING = "gzip, deflate"  # what read_body can decode under its caps (never br/zstd)


class Deadline:
    """The instant (monotonic) an exchange must be over; ``None``: only the per-operation timeouts apply."""

    def __init__(self, at: float | None = None):
        self.at = at

    def left(self, timeout: float | None, exc: type[Exception]) -> float | None:
        """The timeout of one blocking operation: the smaller of its own and the time left; raises `exc` when none is."""
        if self.at is None:
            return timeout
        left = self.at - time.monotonic()
        if left <= 0:
            raise exc("deadline of the exchange passed")
        return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A network stream whose every read, write and TLS handshake ends by the deadline of the exchange."""

    def __init__(self, inner: httpcore.NetworkStream, deadline: Deadline):
        self._inner = inner
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._deadline.left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._deadline.left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        inner = self._inner.start_tls(ssl_context, server_hostname, self._deadline.left(timeout, httpcore.ConnectTimeout))
        return _DeadlineStream(inner, self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self, deadline: Deadline):
        self._inner = httpcore.SyncBackend()
        self._deadline = deadline

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Any = None) -> httpcore.NetworkStream:
        stream = self._inner.connect_tcp(host, port, self._deadline.left(timeout, httpcore.ConnectTimeout),
                                         local_address, socket_options)
        return _DeadlineStream(stream, self._deadline)

    def connect_unix_socket(self, path: str, timeout: float | None = None, socket_options: Any = None) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("unix sockets are not part of the test bed")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class BoundedTransport(httpx.HTTPTransport):
    """httpx transport whose connections obey ``deadline``: set ``deadline.at`` before a request, and the
    connect, the TLS handshake and every read and write of that exchange end by then (a server that
    trickles one byte a second cannot stretch an exchange past its bound)."""

    def __init__(self, ssl_context: ssl.SSLContext, deadline: Deadline, **pool: Any):
        super().__init__(verify=ssl_context, trust_env=False)
        self._pool.close()
        # httpx.HTTPTransport has no network_backend argument: the pool it would use, with ours
        self._pool = httpcore.ConnectionPool(ssl_context=ssl_context, network_backend=_DeadlineBackend(deadline), **pool)


def bounded_client(ssl_context: ssl.SSLContext, deadline: Deadline, timeout: float, **kw: Any) -> httpx.Client:
    """An httpx client over :class:`BoundedTransport`, no environment proxies, asking only for decodable codings."""
    return httpx.Client(transport=BoundedTransport(ssl_context, deadline), timeout=httpx.Timeout(timeout),
                        trust_env=False, headers={"Accept-Encoding": ACCEPT_ENCODING}, **kw)


class _Inflater:
    """One content coding (gzip or deflate), inflated at most ``_PIECE`` bytes per step (zlib max_length)."""

    def __init__(self, coding: str):
        self.coding = coding
        self._raw_fallback = coding == "deflate"  # "deflate" is zlib-wrapped by the RFC, raw by some servers
        self._z = zlib.decompressobj(zlib.MAX_WBITS | 16 if coding in ("gzip", "x-gzip") else zlib.MAX_WBITS)
        self._produced = False

    def feed(self, data: bytes) -> Iterator[bytes]:
        while True:
            try:
                out = self._z.decompress(data, _PIECE)
            except zlib.error as exc:
                if self._raw_fallback and not self._produced:
                    self._raw_fallback = False
                    self._z = zlib.decompressobj(-zlib.MAX_WBITS)
                    continue
                raise httpx.DecodingError(f"{self.coding} : {exc}") from None
            self._raw_fallback = self._raw_fallback and not out
            self._produced = self._produced or bool(out)
            if out:
                yield out
            data = self._z.unconsumed_tail
            if self._z.eof or (not data and len(out) < _PIECE):
                return

    def flush(self) -> Iterator[bytes]:
        yield from self.feed(b"")


def _codings(header: str | None) -> list[_Inflater]:
    """Decoders for a Content-Encoding value, in decoding order; unknown codings are left as they are (as httpx)."""
    names = [c.strip().lower() for c in (header or "").split(",") if c.strip()]
    if len(names) > limits.MAX_CONTENT_CODINGS:
        raise limits.LimitExceeded(limits.too_large("trop de codages de contenu", limits.MAX_CONTENT_CODINGS, "codages"),
                                   limit=limits.MAX_CONTENT_CODINGS, what="content-codings")
    return [_Inflater(n) for n in reversed(names) if n in ("gzip", "x-gzip", "deflate")]


def _through(decoders: list[_Inflater], data: bytes, final: bool = False) -> Iterator[bytes]:
    if not decoders:
        if data:
            yield data
        return
    head, rest = decoders[0], decoders[1:]
    for piece in head.feed(data):
        yield from _through(rest, piece)
    if final:
        for piece in head.flush():
            yield from _through(rest, piece)
        yield from _through(rest, b"", final=True)


def check_headers(resp: httpx.Response) -> None:
    """Count and size of the response's header fields within MAX_HEADERS / MAX_HEADER_BYTES."""
    items = resp.headers.raw
    if len(items) > limits.MAX_HEADERS:
        raise limits.LimitExceeded(limits.too_large("trop d'en-têtes", limits.MAX_HEADERS, "en-têtes"),
                                   limit=limits.MAX_HEADERS, what="headers")
    if sum(len(k) + len(v) for k, v in items) > limits.MAX_HEADER_BYTES:
        raise limits.LimitExceeded(limits.too_large("en-têtes trop volumineux", limits.MAX_HEADER_BYTES),
                                   limit=limits.MAX_HEADER_BYTES, what="header-bytes")


def iter_body(resp: httpx.Response, *, max_body: int, max_wire: int = limits.MAX_RESPONSE_WIRE,
              deadline: float | None = None) -> Iterator[bytes]:
    """The decoded body, piece by piece (at most 64 KiB each), within the caps and the deadline.

    Raises limits.LimitExceeded past ``max_body`` decoded bytes or ``max_wire`` bytes on the wire (a
    Content-Length above either is refused before reading), httpx.ReadTimeout past ``deadline``
    (monotonic), httpx.DecodingError on corrupt compressed data."""
    length = resp.headers.get("content-length", "")
    wire_cap = min(max_wire, max_body) if not resp.headers.get("content-encoding") else max_wire
    if length.strip().isdigit() and int(length) > wire_cap:
        raise _too_large(wire_cap)
    decoders = _codings(resp.headers.get("content-encoding"))
    wire = decoded = 0
    raw_iter = resp.iter_raw()
    while True:
        raw = next(raw_iter, None)
        final = raw is None
        if not final:
            wire += len(raw or b"")
            if wire > max_wire:
                raise _too_large(max_wire)
        for piece in _through(decoders, raw or b"", final=final):
            decoded += len(piece)
            if decoded > max_body:
                raise _too_large(max_body)
            if deadline is not None and time.monotonic() > deadline:
                raise httpx.ReadTimeout("body not complete within the deadline")
            yield piece
        if final:
            return


def _too_large(cap: int) -> limits.LimitExceeded:
    return limits.LimitExceeded(limits.too_large("réponse trop volumineuse", cap), limit=cap, what="body")


def read_body(resp: httpx.Response, *, max_body: int, deadline: float | None, into: io.BytesIO) -> bytes:
    """The whole decoded body (see iter_body), written to ``into`` as it arrives, so that the caller
    keeps what was received when a cap or the deadline cuts it."""
    for piece in iter_body(resp, max_body=max_body, deadline=deadline):
        into.write(piece)
    return into.getvalue()


def kept_prefix(buf: io.BytesIO) -> bytes:
    """What to keep of a body cut short: its first MAX_KEPT_ON_ERROR bytes."""
    return buf.getbuffer()[:limits.MAX_KEPT_ON_ERROR].tobytes()


def expects_images(headers: dict[str, str] | None) -> bool:
    """Whether a request asks for DICOM (WADO-RS): its answer gets MAX_RESPONSE_BODY, others MAX_DOCUMENT_BODY."""
    accept = next((v for k, v in (headers or {}).items() if k.lower() == "accept"), "") or ""
    return "multipart/related" in accept.lower() or "application/dicom" in accept.lower()


def classify_error(exc: BaseException) -> TransportOutcome:
    """The transport outcome of a failure, along the same lines as :func:`describe_error`."""
    if isinstance(exc, limits.LimitExceeded):
        return TransportOutcome.LIMIT
    if isinstance(exc, httpx.TimeoutException):
        return TransportOutcome.TIMEOUT
    if isinstance(exc, httpx.ConnectError):
        cause = str(exc) or type(exc).__name__
        if "Connection refused" in cause or "Errno 111" in cause:
            return TransportOutcome.REFUSED
        if "WRONG_VERSION_NUMBER" in cause or "wrong version number" in cause:
            return TransportOutcome.TLS
        return TransportOutcome.FAILED
    if isinstance(exc, httpx.RemoteProtocolError):
        if "too long" in str(exc).lower() or "buffer" in str(exc).lower():
            return TransportOutcome.LIMIT
        return TransportOutcome.PROTOCOL
    if isinstance(exc, httpx.DecodingError):
        return TransportOutcome.PROTOCOL
    if isinstance(exc, ssl.SSLError):
        return TransportOutcome.TLS
    return TransportOutcome.FAILED


def describe_error(exc: BaseException, timeout: float, *, answered: bool = False) -> str:
    """One readable line for a transport failure (what a report reader needs, not a traceback).

    answered: the status line and headers had arrived (a timeout then means the body was not complete)."""
    if isinstance(exc, limits.LimitExceeded):
        return str(exc)
    if isinstance(exc, httpx.TimeoutException) and answered:
        return f"response not complete within {timeout:g} s (status line received, body unfinished)"
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
        if "too long" in str(exc).lower() or "buffer" in str(exc).lower():
            return limits.too_large("en-têtes trop volumineux", _H11_INCOMPLETE_EVENT)
        return f"protocol error: {exc}"
    if isinstance(exc, httpx.DecodingError):
        return f"réponse compressée illisible : {exc}"
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
                content: bytes | None = None, timeout: float | None = None, client_cert: Any = None,
                max_body: int | None = None) -> Exchange:
        """Send one request; never raises on transport problems: the Exchange carries the error.

        client_cert: an object with chain_path/key_path (fixtures.pki.Issued) or a (chain PEM, key PEM)
        tuple, presented as TLS client certificate (a fresh connection per request, as every request here).
        timeout bounds the whole exchange, body included. max_body: cap of the decoded body (default:
        MAX_RESPONSE_BODY when the request asks for DICOM, MAX_DOCUMENT_BODY otherwise).
        A URL whose host is not one of the DUT's declared FQDNs is recorded as not contacted.
        """
        timeout = timeout if timeout is not None else self.timeout
        if max_body is None:
            max_body = limits.MAX_RESPONSE_BODY if expects_images(headers) else limits.MAX_DOCUMENT_BODY
        parts = urlsplit(url)
        fqdn = (parts.hostname or "").lower()
        if fqdn not in {k.lower() for k in self.sut.network} or parts.scheme not in ("http", "https"):
            ex = Exchange(label=label, method=method, url=url, connect_to="", request_headers=list((headers or {}).items()),
                          started_at=datetime.now(UTC).isoformat(), request_body=content,
                          error=f"adresse hors du banc de test : {url} non contactée (ni FQDN déclaré de la DRIMbox "
                                "testée, ni simulateur de drimcheck)", outcome=TransportOutcome.NOT_CONTACTED)
            if self.evidence is not None:
                ex.evidence = self.evidence.write_json(label, ex.to_evidence())
            return ex
        fqdn, addr = self.address_for(url)
        target = f"{parts.scheme}://{addr.host}:{addr.port}{parts.path or '/'}" + (f"?{parts.query}" if parts.query else "")
        default_port = 443 if parts.scheme == "https" else 80
        host_header = fqdn if (parts.port or default_port) == default_port else f"{fqdn}:{parts.port}"
        req_headers = {"Host": host_header, "User-Agent": "drimcheck", **(headers or {})}
        ex = Exchange(label=label, method=method, url=url, connect_to=str(addr),
                      started_at=datetime.now(UTC).isoformat(), request_headers=list(req_headers.items()),
                      request_body=content)
        if parts.scheme == "https":
            ex.tls = TlsInfo(sni=fqdn)
        t0 = time.monotonic()
        deadline = Deadline(t0 + timeout)
        body = io.BytesIO()
        try:
            with bounded_client(self._context(client_cert), deadline, timeout) as client:
                with client.stream(method, target, headers=req_headers, content=content,
                                   extensions={"sni_hostname": fqdn} if ex.tls else {}) as resp:
                    if ex.tls:
                        _capture_tls(resp, ex.tls)
                    ex.status = resp.status_code
                    ex.response_headers = list(resp.headers.multi_items())[:limits.MAX_HEADERS]
                    check_headers(resp)
                    ex.response_body = read_body(resp, max_body=max_body, deadline=deadline.at, into=body)
        except Exception as exc:  # noqa: BLE001 - every transport failure becomes evidence, not a traceback
            ex.error = describe_error(exc, timeout, answered=ex.status is not None)
            ex.outcome = classify_error(exc)
            ex.response_body = kept_prefix(body)
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

#: Everything the local OpenSSL 3 can still negotiate, NULL encryption included (COMPLEMENTOFALL), at security
#: level 0 (SHA-1 and MD5 signatures, small keys): the first, complete handshake of a legacy-version probe.
PROBE_CIPHERS = "ALL:COMPLEMENTOFALL:@SECLEVEL=0"

#: Historical TLS <= 1.1 cipher suites (IANA code points) offered by the second probe, a raw ClientHello: the
#: ones Debian's OpenSSL 3 no longer compiles (3DES, RC4, DES, export grade, IDEA, SEED: it is built with
#: OPENSSL_NO_WEAK_SSL_CIPHERS) and the CBC/NULL suites of every key exchange that such servers pair them with.
#: 88 suites: below the 128 that some old stacks cannot parse; TLS_FALLBACK_SCSV is never sent (a server that
#: also speaks TLS 1.2 would answer inappropriate_fallback and hide that it accepts the old version).
LEGACY_SUITES: dict[int, str] = {
    0x0001: "NULL-MD5", 0x0002: "NULL-SHA", 0x0003: "EXP-RC4-MD5", 0x0004: "RC4-MD5", 0x0005: "RC4-SHA",
    0x0006: "EXP-RC2-CBC-MD5", 0x0007: "IDEA-CBC-SHA", 0x0008: "EXP-DES-CBC-SHA", 0x0009: "DES-CBC-SHA",
    0x000A: "DES-CBC3-SHA", 0x000B: "EXP-DH-DSS-DES-CBC-SHA", 0x000C: "DH-DSS-DES-CBC-SHA",
    0x000D: "DH-DSS-DES-CBC3-SHA", 0x000E: "EXP-DH-RSA-DES-CBC-SHA", 0x000F: "DH-RSA-DES-CBC-SHA",
    0x0010: "DH-RSA-DES-CBC3-SHA", 0x0011: "EXP-EDH-DSS-DES-CBC-SHA", 0x0012: "EDH-DSS-DES-CBC-SHA",
    0x0013: "EDH-DSS-DES-CBC3-SHA", 0x0014: "EXP-EDH-RSA-DES-CBC-SHA", 0x0015: "EDH-RSA-DES-CBC-SHA",
    0x0016: "EDH-RSA-DES-CBC3-SHA", 0x0017: "EXP-ADH-RC4-MD5", 0x0018: "ADH-RC4-MD5",
    0x0019: "EXP-ADH-DES-CBC-SHA", 0x001A: "ADH-DES-CBC-SHA", 0x001B: "ADH-DES-CBC3-SHA",
    0x002F: "AES128-SHA", 0x0030: "DH-DSS-AES128-SHA", 0x0031: "DH-RSA-AES128-SHA", 0x0032: "DHE-DSS-AES128-SHA",
    0x0033: "DHE-RSA-AES128-SHA", 0x0034: "ADH-AES128-SHA", 0x0035: "AES256-SHA", 0x0036: "DH-DSS-AES256-SHA",
    0x0037: "DH-RSA-AES256-SHA", 0x0038: "DHE-DSS-AES256-SHA", 0x0039: "DHE-RSA-AES256-SHA",
    0x003A: "ADH-AES256-SHA", 0x0041: "CAMELLIA128-SHA", 0x0042: "DH-DSS-CAMELLIA128-SHA",
    0x0043: "DH-RSA-CAMELLIA128-SHA", 0x0044: "DHE-DSS-CAMELLIA128-SHA", 0x0045: "DHE-RSA-CAMELLIA128-SHA",
    0x0046: "ADH-CAMELLIA128-SHA", 0x0062: "EXP1024-DES-CBC-SHA", 0x0063: "EXP1024-DHE-DSS-DES-CBC-SHA",
    0x0064: "EXP1024-RC4-SHA", 0x0065: "EXP1024-DHE-DSS-RC4-SHA", 0x0066: "DHE-DSS-RC4-SHA",
    0x0084: "CAMELLIA256-SHA", 0x0085: "DH-DSS-CAMELLIA256-SHA", 0x0086: "DH-RSA-CAMELLIA256-SHA",
    0x0087: "DHE-DSS-CAMELLIA256-SHA", 0x0088: "DHE-RSA-CAMELLIA256-SHA", 0x0089: "ADH-CAMELLIA256-SHA",
    0x0096: "SEED-SHA", 0x0097: "DH-DSS-SEED-SHA", 0x0098: "DH-RSA-SEED-SHA", 0x0099: "DHE-DSS-SEED-SHA",
    0x009A: "DHE-RSA-SEED-SHA", 0x009B: "ADH-SEED-SHA",
    0xC001: "ECDH-ECDSA-NULL-SHA", 0xC002: "ECDH-ECDSA-RC4-SHA", 0xC003: "ECDH-ECDSA-DES-CBC3-SHA",
    0xC004: "ECDH-ECDSA-AES128-SHA", 0xC005: "ECDH-ECDSA-AES256-SHA", 0xC006: "ECDHE-ECDSA-NULL-SHA",
    0xC007: "ECDHE-ECDSA-RC4-SHA", 0xC008: "ECDHE-ECDSA-DES-CBC3-SHA", 0xC009: "ECDHE-ECDSA-AES128-SHA",
    0xC00A: "ECDHE-ECDSA-AES256-SHA", 0xC00B: "ECDH-RSA-NULL-SHA", 0xC00C: "ECDH-RSA-RC4-SHA",
    0xC00D: "ECDH-RSA-DES-CBC3-SHA", 0xC00E: "ECDH-RSA-AES128-SHA", 0xC00F: "ECDH-RSA-AES256-SHA",
    0xC010: "ECDHE-RSA-NULL-SHA", 0xC011: "ECDHE-RSA-RC4-SHA", 0xC012: "ECDHE-RSA-DES-CBC3-SHA",
    0xC013: "ECDHE-RSA-AES128-SHA", 0xC014: "ECDHE-RSA-AES256-SHA", 0xC015: "AECDH-NULL-SHA",
    0xC016: "AECDH-RC4-SHA", 0xC017: "AECDH-DES-CBC3-SHA", 0xC018: "AECDH-AES128-SHA", 0xC019: "AECDH-AES256-SHA",
}
_EMPTY_RENEGOTIATION_INFO_SCSV = 0x00FF
#: supported_groups of the raw ClientHello: the NIST, SEC 2 binary, brainpool and X curves, then RFC 7919 groups.
_LEGACY_GROUPS = (23, 24, 25, 29, 30, 21, 22, 19, 20, 26, 27, 28, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
                  16, 17, 18, 256, 257, 258)
_WIRE_VERSIONS = {ssl.TLSVersion.SSLv3: 0x0300, ssl.TLSVersion.TLSv1: 0x0301, ssl.TLSVersion.TLSv1_1: 0x0302,
                  ssl.TLSVersion.TLSv1_2: 0x0303}
_VERSION_NAMES = {0x0300: "SSLv3", 0x0301: "TLSv1", 0x0302: "TLSv1.1", 0x0303: "TLSv1.2", 0x0304: "TLSv1.3"}
_ALERTS = {0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac", 40: "handshake_failure",
           42: "bad_certificate", 47: "illegal_parameter", 50: "decode_error", 51: "decrypt_error",
           70: "protocol_version", 71: "insufficient_security", 80: "internal_error", 86: "inappropriate_fallback",
           90: "user_canceled", 109: "missing_extension", 112: "unrecognized_name"}
#: the largest TLS record a peer may send (2^14 plaintext + 2048 of expansion): a bigger length is not TLS.
_MAX_TLS_RECORD = 2 ** 14 + 2048
#: records read looking for the ServerHello (it is the first handshake message: normally in the first record).
_MAX_HELLO_RECORDS = 4


def _tls_vector(data: bytes, length_bytes: int) -> bytes:
    return len(data).to_bytes(length_bytes, "big") + data


def legacy_client_hello(version: int, sni: str) -> bytes:
    """A TLS record carrying a ClientHello for exactly `version` (wire code) with :data:`LEGACY_SUITES`."""
    suites = b"".join(code.to_bytes(2, "big") for code in [*LEGACY_SUITES, _EMPTY_RENEGOTIATION_INFO_SCSV])
    extensions = b""
    try:
        host = sni.encode("ascii")
    except UnicodeEncodeError:
        host = b""
    if host and not _is_ip(sni):
        server_name = b"\x00" + _tls_vector(host, 2)
        extensions += b"\x00\x00" + _tls_vector(_tls_vector(server_name, 2), 2)
    groups = b"".join(g.to_bytes(2, "big") for g in _LEGACY_GROUPS)
    extensions += b"\x00\x0a" + _tls_vector(_tls_vector(groups, 2), 2)  # supported_groups (elliptic_curves)
    extensions += b"\x00\x0b" + _tls_vector(_tls_vector(b"\x00\x01\x02", 1), 2)  # ec_point_formats
    extensions += b"\xff\x01" + _tls_vector(b"\x00", 2)  # renegotiation_info (initial handshake)
    body = (version.to_bytes(2, "big") + os.urandom(32) + b"\x00" + _tls_vector(suites, 2) + b"\x01\x00"
            + _tls_vector(extensions, 2))
    handshake = b"\x01" + _tls_vector(body, 3)
    return b"\x16\x03\x01" + _tls_vector(handshake, 2)  # record version TLS 1.0, as every client of that era


def _is_ip(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except OSError:
        return False
    return True


def _recv_exactly(sock: socket.socket, count: int, deadline: float) -> bytes:
    data = b""
    while len(data) < count:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("délai dépassé")
        sock.settimeout(left)
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise EOFError(len(data))
        data += chunk
    return data


def raw_legacy_hello(address: Address, sni: str, version: ssl.TLSVersion, *, timeout: float) -> tuple[str, str | None, str]:
    """Send :func:`legacy_client_hello` and read (bounded) the server's first answer, without finishing the handshake.

    Returns (outcome, negotiated, detail): "accepted" when the server answers with a ServerHello of the offered
    (or an older) version, "refused" on an alert, a hang-up or an answer that is not a ServerHello,
    "unreachable" when no TCP connection could be made.
    """
    wire = _WIRE_VERSIONS[version]
    deadline = time.monotonic() + timeout
    try:
        sock = socket.create_connection((address.host, address.port), timeout=timeout)
    except OSError as exc:
        return "unreachable", None, f"{type(exc).__name__}: {exc}"
    with sock:
        try:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            sock.sendall(legacy_client_hello(wire, sni))
            handshake = b""
            for _ in range(_MAX_HELLO_RECORDS):
                kind, _record_version, length = struct.unpack("!BHH", _recv_exactly(sock, 5, deadline))
                if length > _MAX_TLS_RECORD:
                    return "refused", None, f"réponse qui n'est pas du TLS (enregistrement de {length} octets)"
                payload = _recv_exactly(sock, length, deadline)
                if kind == 21:  # alert
                    code = payload[1] if len(payload) >= 2 else -1
                    return "refused", None, f"alerte {_ALERTS.get(code, code)}"
                if kind != 22:
                    return "refused", None, f"réponse qui n'est pas une poignée de main TLS (type d'enregistrement {kind})"
                handshake += payload
                if handshake and handshake[0] != 2:
                    return "refused", None, f"premier message {handshake[0]} au lieu d'un ServerHello"
                if len(handshake) >= 4 + 2 + 32 + 1:
                    sid = handshake[38]
                    if sid <= 32 and len(handshake) >= 39 + sid + 2:
                        chosen = int.from_bytes(handshake[4:6], "big")
                        suite = int.from_bytes(handshake[39 + sid:41 + sid], "big")
                        name = _VERSION_NAMES.get(chosen, f"0x{chosen:04x}")
                        suite_name = LEGACY_SUITES.get(suite, f"0x{suite:04x}")
                        if 0x0300 <= chosen <= wire:
                            return "accepted", name, f"ServerHello {name} avec {suite_name}"
                        return "refused", None, f"ServerHello {name} à une offre {_VERSION_NAMES[wire]} (version refusée)"
                    if sid > 32:
                        return "refused", None, "ServerHello malformé"
            return "refused", None, "pas de ServerHello complet dans les premiers enregistrements"
        except EOFError:
            return "refused", None, "connexion fermée par le serveur sans ServerHello"
        except (ConnectionResetError, BrokenPipeError) as exc:
            return "refused", None, f"connexion coupée par le serveur ({type(exc).__name__})"
        except TimeoutError:
            return "refused", None, f"aucune réponse en {timeout:g} s"
        except OSError as exc:
            return "refused", None, f"{type(exc).__name__}: {exc}"


def probe_tls_version(address: Address, sni: str, version: ssl.TLSVersion, *, timeout: float = 5.0,
                      evidence: EvidenceStore | None = None, label: str = "tls-version") -> TlsVersionProbe:
    """Offer exactly `version` as a legacy server needs it, and record the outcome.

    Two handshakes: first a complete one through the local OpenSSL with every cipher suite it can still
    negotiate (:data:`PROBE_CIPHERS`); when the server turns it down, a raw ClientHello offering the
    historical suites OpenSSL 3 no longer has (:data:`LEGACY_SUITES`: 3DES, RC4, DES, export, IDEA, SEED, ...),
    read up to the ServerHello. A server that picks the version in either is "accepted". A refusal
    (alert, reset, EOF) of both is "refused"; a failure before anything is sent, because the local
    OpenSSL cannot offer the version, only counts when the raw ClientHello could not conclude either
    ("client-unable", inconclusive).
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
            ctx.set_ciphers(PROBE_CIPHERS)
    except (ValueError, ssl.SSLError) as exc:
        probe.outcome, probe.detail = "client-unable", f"contexte TLS impossible : {exc}"
    else:
        try:
            with socket.create_connection((address.host, address.port), timeout=timeout) as sock:
                with ctx.wrap_socket(sock, server_hostname=sni) as tls:
                    probe.outcome, probe.negotiated = "accepted", tls.version()
                    cipher = tls.cipher()
                    probe.detail = f"poignée de main réussie ({tls.version()}, {cipher[0] if cipher else '?'})"
        except ssl.SSLError as exc:
            reason = exc.reason or ""
            probe.outcome = "client-unable" if reason in _CLIENT_SIDE else "refused"
            probe.detail = f"{reason or type(exc).__name__}: {exc}"
        except (ConnectionRefusedError, TimeoutError, OSError) as exc:
            if isinstance(exc, (ConnectionResetError, BrokenPipeError)):
                probe.outcome, probe.detail = "refused", f"connexion coupée par le serveur ({type(exc).__name__})"
            else:
                probe.outcome, probe.detail = "unreachable", f"{type(exc).__name__}: {exc}"
    if probe.outcome in ("refused", "client-unable") and version in _WIRE_VERSIONS:
        outcome, negotiated, detail = raw_legacy_hello(address, sni, version, timeout=timeout)
        detail = f"{probe.detail} ; suites historiques (3DES, RC4, DES, export…) : {detail}"
        if outcome == "accepted":
            probe.outcome, probe.negotiated = "accepted", negotiated
        elif outcome == "refused":
            probe.outcome = "refused"
        probe.detail = detail
    if evidence is not None:
        probe.evidence = evidence.write_json(label, probe.to_evidence())
    return probe
