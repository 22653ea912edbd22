"""Harness transport additions of the trust space: client certificates (mTLS), legacy TLS probes, configuration."""

from __future__ import annotations

import socket
import ssl
import threading
import warnings

import pytest

from drimcheck import config
from drimcheck.config import Address, Endpoint, Sut
from drimcheck.net import DutClient, probe_tls_version
from fixtures.pki import TestPKI

FQDN = "db1.349.mesimagesmedicales.fr"


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> TestPKI:
    return TestPKI(tmp_path_factory.mktemp("net") / "pki")


class TlsServer:
    """Minimal TLS echo of the client certificate subject (HTTP/1.0), in a thread.

    The server thread records what it saw after the client may already have returned: read `negotiated`
    only after `wait_handled(n)`, which waits for the thread to finish with the first n connections.
    """

    def __init__(self, ctx: ssl.SSLContext):
        self.ctx = ctx
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.negotiated: list[str] = []
        self.handled = 0  # connections the thread is done with (handshake refused or exchange finished)
        self._done = threading.Condition()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            try:
                with self.ctx.wrap_socket(conn, server_side=True) as tls:
                    self.negotiated.append(tls.version())
                    tls.recv(4096)
                    peer = tls.getpeercert()
                    subject = dict(x[0] for x in peer["subject"])["commonName"] if peer else "none"
                    body = subject.encode()
                    tls.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            except (ssl.SSLError, OSError, ValueError):  # probes hang up right after the handshake
                pass
            finally:
                with self._done:
                    self.handled += 1
                    self._done.notify_all()

    def wait_handled(self, count: int, timeout: float = 30.0) -> None:
        """Block until the server thread has finished with `count` connections (bounded wait, not a timing)."""
        with self._done:
            assert self._done.wait_for(lambda: self.handled >= count, timeout), \
                f"server thread handled {self.handled} of {count} connections"

    def close(self):
        self.sock.close()


def sut_for(port: int) -> Sut:
    return Sut(name="t", roles=("source",), registry="349", pacs=(), health_url=f"https://{FQDN}/q/health",
               network={FQDN: Endpoint(FQDN, https=Address("127.0.0.1", port))})


def test_client_certificate_is_presented_and_recorded(pki):
    server_cert = pki.serv_ssl(FQDN)
    server = TlsServer(server_cert.server_context(client_cas=[pki.igc_chain_pem], require_client_cert=False))
    try:
        client = DutClient(sut_for(server.port), None, timeout=3)
        peer = pki.serv_ssl("db901.test.mesimagesmedicales.fr")
        ex = client.get(f"https://{FQDN}/x", label="mtls", client_cert=peer)
        assert ex.status == 200 and ex.text() == "db901.test.mesimagesmedicales.fr"
        assert ex.client_certificate == peer.subject_dn and ex.to_evidence()["client_certificate"] == peer.subject_dn
        anonymous = client.get(f"https://{FQDN}/x", label="anon")
        assert anonymous.text() == "none" and anonymous.client_certificate is None
    finally:
        server.close()


def test_legacy_probe_refused_by_a_modern_server_and_accepted_by_a_legacy_one(pki):
    cert = pki.serv_ssl(FQDN)
    modern = TlsServer(cert.server_context())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        legacy_ctx = cert.server_context(minimum_version=ssl.TLSVersion.TLSv1)
    legacy_ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    legacy = TlsServer(legacy_ctx)
    try:
        for version in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
            refused = probe_tls_version(Address("127.0.0.1", modern.port), FQDN, version, timeout=3)
            assert refused.outcome == "refused" and refused.negotiated is None, refused.detail
            accepted = probe_tls_version(Address("127.0.0.1", legacy.port), FQDN, version, timeout=3)
            assert accepted.outcome == "accepted" and accepted.negotiated in ("TLSv1", "TLSv1.1"), accepted.detail
        legacy.wait_handled(2)  # the thread appends the version after the handshake the client already saw
        assert set(legacy.negotiated) == {"TLSv1", "TLSv1.1"}
    finally:
        modern.close()
        legacy.close()


def test_legacy_probe_of_a_closed_port_is_unreachable():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    assert probe_tls_version(Address("127.0.0.1", port), FQDN, ssl.TLSVersion.TLSv1, timeout=1).outcome == "unreachable"


def test_trust_space_configuration_fields():
    base = config.reference_text()
    sut = config.parse(base + "\n[tls]\nmarket_trust_anchors = []\n")
    assert sut.timeouts.whitelist_s == 3 and sut.timeouts.whitelist_settle_s == 0
    assert sut.dut_address("admin") is not None
    with pytest.raises(config.ConfigError, match="whitelist_settle_s"):
        config.parse(base.replace("whitelist_settle_s = 0", "whitelist_settle_s = -1"))
    with pytest.raises(config.ConfigError, match="market_trust_anchors"):
        config.parse(base + "\n[tls]\nmarket_trust_anchors = \"x.pem\"\n")
    defaults = config.parse(base.replace("whitelist_s = 3", "").replace("whitelist_settle_s = 0", ""))
    assert defaults.timeouts.whitelist_s == 10 and defaults.timeouts.whitelist_settle_s == 1
