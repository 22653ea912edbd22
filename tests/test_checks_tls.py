"""TLS checks judge the chain a server presented: built from the real throwaway PKI."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from drimcheck.checks import tls
from drimcheck.net import Exchange, TlsInfo
from drimcheck.verdicts import Verdict
from fixtures.pki import TestPKI

FQDN = "db1.349.mesimagesmedicales.fr"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return TestPKI(tmp_path_factory.mktemp("pki"))


def presented(issued) -> TlsInfo:
    chain = [issued.cert] + [c for c in issued.chain if c.issuer != c.subject]  # server sends leaf + intermediates
    return TlsInfo(sni=FQDN, version="TLSv1.3", chain_der=[c.public_bytes(Encoding.DER) for c in chain])


def only(findings):
    assert len(findings) == 1
    return findings[0]


def test_serv_ssl_from_igc_passes_every_certificate_check(pki):
    info = presented(pki.serv_ssl(FQDN))
    anchors = [pki.igc_root.cert]
    assert only(tls.chains_to_igc_sante(info, FQDN, anchors)).verdict is Verdict.PASS
    assert only(tls.san_names_fqdn(info, FQDN)).verdict is Verdict.PASS
    assert only(tls.currently_valid(info, FQDN)).verdict is Verdict.PASS


@pytest.mark.parametrize("make, reason", [
    (lambda p: p.market_ov(FQDN), "ne chaîne pas"),
    (lambda p: p.negative("wrong_ca", FQDN), "signature"),
    (lambda p: p.negative("wrong_eku", FQDN), "serverAuth"),
])
def test_certificates_not_from_igc_or_without_server_usage_fail_crt01(pki, make, reason):
    f = only(tls.chains_to_igc_sante(presented(make(pki)), FQDN, [pki.igc_root.cert]))
    assert f.verdict is Verdict.FAIL and reason in f.message


def test_rogue_ca_imitating_igc_names_is_caught_by_signature_not_name(pki):
    # The rogue CA copies the IGC names exactly: only the signature check can tell.
    f = only(tls.chains_to_igc_sante(presented(pki.negative("wrong_ca", FQDN)), FQDN, [pki.igc_root.cert]))
    assert f.verdict is Verdict.FAIL


def test_expired_certificate_is_judged_by_validity_only(pki):
    info = presented(pki.negative("expired", FQDN))
    assert only(tls.chains_to_igc_sante(info, FQDN, [pki.igc_root.cert])).verdict is Verdict.PASS
    f = only(tls.currently_valid(info, FQDN))
    assert f.verdict is Verdict.FAIL and "expiré" in f.message
    assert only(tls.currently_valid(presented(pki.negative("not_yet_valid", FQDN)), FQDN)).verdict is Verdict.FAIL


def test_certificate_expiring_within_30_days_is_a_warning(pki):
    cert = pki.serv_ssl(FQDN).cert
    soon = cert.not_valid_after_utc - timedelta(days=10)
    assert only(tls.currently_valid(presented(pki.serv_ssl(FQDN)), FQDN, now=soon)).verdict is Verdict.WARN


def test_san_mismatch_fails_crt02_only(pki):
    info = presented(pki.negative("san_mismatch", FQDN))
    f = only(tls.san_names_fqdn(info, FQDN))
    assert f.verdict is Verdict.FAIL and "absent du subjectAltName" in f.message
    assert only(tls.chains_to_igc_sante(info, FQDN, [pki.igc_root.cert])).verdict is Verdict.PASS


def test_no_certificate_at_all():
    empty = TlsInfo(sni=FQDN)
    assert only(tls.chains_to_igc_sante(empty, FQDN, [])).verdict is Verdict.FAIL
    assert only(tls.san_names_fqdn(empty, FQDN)).verdict is Verdict.SKIP
    assert only(tls.currently_valid(None, FQDN)).verdict is Verdict.SKIP


@pytest.mark.parametrize("pattern, host, ok", [
    ("db1.349.mesimagesmedicales.fr", "DB1.349.mesimagesmedicales.fr", True),
    ("*.349.mesimagesmedicales.fr", "db1.349.mesimagesmedicales.fr", True),
    ("*.mesimagesmedicales.fr", "db1.349.mesimagesmedicales.fr", False),
    ("db2.349.mesimagesmedicales.fr", "db1.349.mesimagesmedicales.fr", False),
])
def test_hostname_matching_follows_rfc6125(pattern, host, ok):
    assert tls.hostname_matches(pattern, host) is ok


def clear(status=None, location="", error=None):
    return Exchange(label="c", method="GET", url=f"http://{FQDN}/q/health", connect_to="127.0.0.1:80", started_at="",
                    request_headers=[], status=status, error=error,
                    response_headers=[("location", location)] if location else [], response_body=b"{}")


@pytest.mark.parametrize("exchange, verdict", [
    (clear(error="connection refused"), Verdict.PASS),
    (clear(301, f"https://{FQDN}/q/health"), Verdict.PASS),
    (clear(404), Verdict.PASS),
    (clear(200), Verdict.FAIL),
    (clear(301, "http://elsewhere.example/q/health"), Verdict.FAIL),
    (None, Verdict.SKIP),
])
def test_nothing_served_in_clear(exchange, verdict):
    assert only(tls.nothing_served_in_clear(exchange, FQDN)).verdict is verdict


# --------------------------------------------------------------------------- CRT-05's legacy-version probe
# Real TLS servers (Python's ssl, the same libssl as the reference) on loopback; hostile answers from plain sockets.

import socket  # noqa: E402
import ssl  # noqa: E402
import struct  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

from drimcheck.checks import trust  # noqa: E402
from drimcheck.config import Address  # noqa: E402
from drimcheck.net import LEGACY_SUITES, legacy_client_hello, probe_tls_version  # noqa: E402

LEGACY_VERSIONS = (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1)


class _Listener:
    """Accepts connections in a thread and hands each to `handle(conn)`; closed by close()."""

    def __init__(self, handle):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.address = Address("127.0.0.1", self.sock.getsockname()[1])
        self.handle = handle
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn):
        try:
            self.handle(conn)
        except (OSError, ssl.SSLError, ValueError):
            pass
        finally:
            conn.close()

    def close(self):
        self.sock.close()


def _tls_server(ctx):
    def handle(conn):
        with ctx.wrap_socket(conn, server_side=True) as tls_conn:
            tls_conn.settimeout(2)
            tls_conn.recv(1)
    return _Listener(handle)


def test_a_server_accepting_tls10_only_with_historical_suites_is_caught(pki):
    """The `tls-legacy-ciphers-only` mutant's context: OpenSSL's default list ("ALL") finds no shared suite."""
    from simulators.drimbox.service import accept_legacy_tls_with_legacy_ciphers_only

    ctx = pki.serv_ssl(FQDN).server_context()
    accept_legacy_tls_with_legacy_ciphers_only(ctx)
    server = _tls_server(ctx)
    try:
        probes = [probe_tls_version(server.address, FQDN, v, timeout=3) for v in LEGACY_VERSIONS]
    finally:
        server.close()
    assert [(p.outcome, p.negotiated) for p in probes] == [("accepted", "TLSv1"), ("accepted", "TLSv1.1")]
    assert "NULL" in probes[0].detail
    control = Exchange(label="c", method="GET", url=f"https://{FQDN}/", connect_to="x", started_at="",
                       request_headers=[], status=200, tls=TlsInfo(sni=FQDN, version="TLSv1.3"))
    assert only(trust.legacy_tls_refused(probes, control, FQDN)).verdict is Verdict.FAIL


def test_a_tls12_only_server_refuses_both_handshakes_of_the_probe(pki):
    server = _tls_server(pki.serv_ssl(FQDN).server_context())  # minimum TLS 1.2, like the golden reference
    try:
        probe = probe_tls_version(server.address, FQDN, ssl.TLSVersion.TLSv1, timeout=3)
    finally:
        server.close()
    assert probe.outcome == "refused" and probe.negotiated is None
    # the OpenSSL handshake, then the raw ClientHello with the historical suites, both turned down by an alert
    assert "suites historiques" in probe.detail and "alerte protocol_version" in probe.detail, probe.detail


def _parse_client_hello(record: bytes) -> dict:
    kind, _, length = struct.unpack("!BHH", record[:5])
    body = record[5:]
    assert kind == 22 and len(body) == length and body[0] == 1
    hello = body[4:]
    version = int.from_bytes(hello[:2], "big")
    sid = hello[34]
    pos = 35 + sid
    n = int.from_bytes(hello[pos:pos + 2], "big")
    suites = [int.from_bytes(hello[pos + 2 + i:pos + 4 + i], "big") for i in range(0, n, 2)]
    pos += 2 + n
    pos += 1 + hello[pos]  # compression methods
    ext_total = int.from_bytes(hello[pos:pos + 2], "big")
    exts, pos, end = {}, pos + 2, pos + 2 + ext_total
    while pos < end:
        code, size = struct.unpack("!HH", hello[pos:pos + 4])
        exts[code] = hello[pos + 4:pos + 4 + size]
        pos += 4 + size
    assert pos == end == len(hello)
    return {"version": version, "suites": suites, "extensions": exts}


def test_the_raw_client_hello_offers_the_suites_openssl3_lacks_and_no_fallback_signal():
    hello = _parse_client_hello(legacy_client_hello(0x0302, FQDN))
    assert hello["version"] == 0x0302
    suites = set(hello["suites"])
    assert {0x000A, 0x0005, 0x0004, 0x0009, 0x0007, 0x0096, 0x0003, 0xC012} <= suites  # 3DES, RC4, DES, IDEA, SEED...
    assert 0x5600 not in suites  # TLS_FALLBACK_SCSV would make a TLS 1.2 server refuse and hide what it accepts
    assert len(hello["suites"]) == len(LEGACY_SUITES) + 1 < 128  # + renegotiation SCSV; old stacks choke past 128
    assert FQDN.encode() in hello["extensions"][0]  # SNI: the FQDN, as for the OpenSSL handshake
    assert 13 not in hello["extensions"]  # no signature_algorithms: TLS 1.2 only
    assert 0x0000 not in _parse_client_hello(legacy_client_hello(0x0301, "127.0.0.1"))["extensions"]  # no SNI for an IP


def _hostile(answer: bytes, release: threading.Event):
    def handle(conn):
        conn.settimeout(3)
        conn.recv(4096)
        if answer:
            conn.sendall(answer)
        release.wait(60)  # then hang, connection open: the probe must not wait for more than it needs
    return _Listener(handle)


@pytest.mark.parametrize("answer, outcome, expected", [
    (b"\x16\x03\x01\xff\xff" + b"A" * 64, "refused", "pas du TLS"),  # a record longer than TLS allows: not read
    (b"HTTP/1.1 400 Bad Request\r\n\r\n", "refused", "pas du TLS"),
    (b"\x17\x03\x01\x00\x02ab", "refused", "pas une poignée de main"),
    (b"\x16\x03\x01\x00\x04\x0b\x00\x00\x00", "refused", "au lieu d'un ServerHello"),
    (b"", "unreachable", "timed out"),  # silent to the OpenSSL handshake: nothing observed (ERROR in CRT-05)
])
def test_the_raw_probe_reads_a_bounded_answer_and_calls_anything_but_a_serverhello_a_refusal(answer, outcome, expected):
    release = threading.Event()
    server = _hostile(answer, release)
    try:
        started = time.monotonic()
        probe = probe_tls_version(server.address, FQDN, ssl.TLSVersion.TLSv1, timeout=0.5)
        elapsed = time.monotonic() - started
    finally:
        release.set()
        server.close()
    assert probe.outcome == outcome and expected in probe.detail, probe.detail
    assert elapsed < 30  # a bound, not a timing: two handshakes of 0.5 s at most, never the server's 60 s hang


def test_a_serverhello_of_the_offered_version_is_an_acceptance_even_without_a_finished_handshake():
    """What a 3DES-only server does (the local OpenSSL cannot offer 3DES): seen in tests/test_fidelity_tls.py
    against GnuTLS; here the ServerHello alone, which is what makes the version accepted."""
    def server_hello(version: int, suite: int) -> bytes:
        body = version.to_bytes(2, "big") + b"\x11" * 32 + b"\x00" + suite.to_bytes(2, "big") + b"\x00"
        handshake = b"\x02" + len(body).to_bytes(3, "big") + body
        return b"\x16\x03\x01" + len(handshake).to_bytes(2, "big") + handshake

    def handle(conn):
        conn.settimeout(3)
        hello = _parse_client_hello(conn.recv(4096))
        if 0x000A in hello["suites"]:
            conn.sendall(server_hello(hello["version"], 0x000A))
        else:
            conn.sendall(b"\x15\x03\x01\x00\x02\x02\x28")  # handshake_failure to the OpenSSL handshake
    server = _Listener(handle)
    try:
        probe = probe_tls_version(server.address, FQDN, ssl.TLSVersion.TLSv1_1, timeout=3)
    finally:
        server.close()
    assert (probe.outcome, probe.negotiated) == ("accepted", "TLSv1.1")
    assert "ServerHello TLSv1.1 avec DES-CBC3-SHA" in probe.detail
