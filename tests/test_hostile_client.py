"""A hostile DUT cannot exhaust, steer or hang drimcheck's clients (issue 11, client side).

Small real servers on loopback misbehave the way a buggy or hostile DRIMbox could: never answer after
accept, stream forever, send a compression bomb, trickle one byte a second, send huge headers, speak
garbage TLS, redirect (or post a form) off the test bed. The harness clients (DutClient, Browser,
wado.retrieve) are driven at them; each test asserts the recorded error, a bounded wall time (a
correctness bound, generous on purpose: request_s + 3 s), a bounded memory peak (tracemalloc), and
that the harness hung up (nothing left running). The last test runs a whole campaign (CLI in a
subprocess) against a HealthCheck answering 2 GB.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from drimcheck import limits
from drimcheck.browser import Browser
from drimcheck.config import Address, Endpoint, Sut, Timeouts
from drimcheck.evidence import EvidenceStore
from drimcheck.net import DutClient
from drimcheck.verdicts import Verdict
from drimcheck.wado import MultipartError, MultipartReader, retrieve

FQDN = "db1.349.mesimagesmedicales.fr"
REQUEST_S = 2.0
BOUND_S = REQUEST_S + 3.0  # correctness bound on the wall time of one exchange (not a benchmark)
MEMORY_CAP = 300 * limits.MIB
ZEROS = bytes(1024 * 1024)
GIB = 1024 * limits.MIB


# ------------------------------------------------------------------------------------------- servers


class HostileServer:
    """A TCP server on loopback; each connection runs `behaviour(conn, server)` in its own thread.

    `hung_up` is set when a behaviour saw the harness close the connection (send failed / EOF)."""

    def __init__(self, behaviour: Callable[[socket.socket, HostileServer], None], tls: Any = None):
        self.behaviour = behaviour
        self.tls = tls  # ssl.SSLContext: speak TLS (server side) before the behaviour
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.hits: list[bytes] = []  # request heads received
        self.hung_up = threading.Event()
        self.stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    def _accept(self) -> None:
        self.sock.settimeout(0.1)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.accepted += 1
            self._conns.append(conn)
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            if self.tls is not None:
                conn.settimeout(5)
                conn = self.tls.wrap_socket(conn, server_side=True)
                self._conns.append(conn)
            self.behaviour(conn, self)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            self.hung_up.set()
        except OSError:  # ssl.SSLError included
            pass

    def read_head(self, conn: socket.socket) -> bytes:
        data = b""
        conn.settimeout(5)
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
        self.hits.append(data)
        return data

    def close(self) -> None:
        self.stop.set()
        self._acceptor.join(2)
        for c in self._conns:
            try:
                c.close()
            except OSError:
                pass
        for t in self._threads:
            t.join(3)
        self.sock.close()

    def __enter__(self) -> HostileServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def send_forever(conn: socket.socket, server: HostileServer, chunk: bytes) -> None:
    """Write `chunk` until the harness hangs up (or the test ends)."""
    conn.settimeout(30)
    while not server.stop.is_set():
        conn.sendall(chunk)
    server.hung_up.set()


def wait_for_hang_up(conn: socket.socket, server: HostileServer) -> None:
    """After the last byte: the harness hangs up when the read of EOF (or a reset) says so."""
    conn.settimeout(0.1)
    while not server.stop.is_set():
        try:
            if conn.recv(65536) == b"":
                server.hung_up.set()
                return
        except TimeoutError:
            continue


def never_answers(conn, server):
    server.read_head(conn)
    server.stop.wait(60)


def streams_forever(conn, server):
    server.read_head(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n")
    send_forever(conn, server, ZEROS)


def huge_content_length(conn, server):
    """A 2 GB body announced by Content-Length, streamed (only as far as the harness reads)."""
    server.read_head(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (2 * GIB))
    send_forever(conn, server, ZEROS)


CRC32_OF_2_GIB_OF_ZEROS = 0x4DBDF21C  # zlib.crc32 over 2048 x 1 MiB of zeros


def gzip_bomb_stream() -> Iterator[bytes]:
    """A valid gzip stream of 2 GiB of zeros, about 2 MB on the wire, produced as it is consumed.

    After a full flush deflate restarts from an empty window, so compressing 1 MiB of zeros then
    flushing always gives the same block: it is compressed once and repeated (the server costs no CPU,
    whatever the pace of the client)."""
    z = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    first = z.compress(ZEROS) + z.flush(zlib.Z_FULL_FLUSH)
    block = z.compress(ZEROS) + z.flush(zlib.Z_FULL_FLUSH)
    end = z.flush()[:-8] + struct.pack("<II", CRC32_OF_2_GIB_OF_ZEROS, (2 * GIB) & 0xFFFFFFFF)
    yield first
    for _ in range(2047 // 64):
        yield block * 64
    yield block * (2047 % 64)
    yield end


def compression_bomb(content_type: bytes = b"application/json"):
    def behaviour(conn, server):
        server.read_head(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: " + content_type +
                     b"\r\nContent-Encoding: gzip\r\nConnection: close\r\n\r\n")
        conn.settimeout(30)
        for piece in gzip_bomb_stream():
            if server.stop.is_set():
                return
            conn.sendall(piece)
        wait_for_hang_up(conn, server)  # all 2 MB may fit in the socket buffers
    return behaviour


def trickles(conn, server):
    """The whole answer one byte per second: no single read ever times out."""
    server.read_head(conn)
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 100
    for i in range(len(answer)):
        if server.stop.wait(1.0 if i else 0):
            return
        conn.sendall(answer[i:i + 1])


def huge_headers(conn, server):
    server.read_head(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\n")
    send_forever(conn, server, b"X-Hostile: " + b"a" * 1000 + b"\r\n")


def many_headers(conn, server):
    """500 small header fields: under h11's block limit, over MAX_HEADERS."""
    server.read_head(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(500))
                 + b"\r\nok")
    server.stop.wait(10)


def garbage_tls(conn, server):
    conn.settimeout(5)
    conn.recv(4096)  # the ClientHello
    conn.sendall(os.urandom(4096))
    server.stop.wait(10)


def silent_tls(conn, server):
    """Accepts, reads the ClientHello, never answers it."""
    conn.settimeout(5)
    conn.recv(4096)
    server.stop.wait(60)


def answer(status: int, headers: list[tuple[str, str]], body: bytes = b""):
    def behaviour(conn, server):
        server.read_head(conn)
        head = f"HTTP/1.1 {status} X\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + \
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        conn.sendall(head.encode() + body)
    return behaviour


# ------------------------------------------------------------------------------------------- harness side


def sut_for(http_port: int | None = None, https_port: int | None = None) -> Sut:
    return Sut(name="hostile", roles=("source", "conso"), registry="349", pacs=(), health_url=f"http://{FQDN}/q/health",
               network={FQDN: Endpoint(FQDN, https=Address("127.0.0.1", https_port) if https_port else None,
                                       http=Address("127.0.0.1", http_port) if http_port else None)},
               timeouts=Timeouts(request_s=REQUEST_S))


def measured(action: Callable[[], object]) -> tuple[object, float, int]:
    """(result, wall time in s, peak of Python allocations in bytes) of one action."""
    tracemalloc.start()
    t0 = time.monotonic()
    try:
        result = action()
    finally:
        elapsed = time.monotonic() - t0
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return result, elapsed, peak


def dut_get(server: HostileServer, tmp_path: Path, *, https: bool = False, **kw):
    sut = sut_for(https_port=server.port) if https else sut_for(http_port=server.port)
    client = DutClient(sut, EvidenceStore(tmp_path))
    scheme = "https" if https else "http"
    return measured(lambda: client.get(f"{scheme}://{FQDN}/q/health", label="hostile", **kw))


def assert_recorded(ex, tmp_path: Path, fragment: str) -> dict:
    assert ex.error is not None and fragment in ex.error, ex.error
    assert not ex.ok
    recorded = json.loads(Path(tmp_path, ex.evidence).read_text())
    assert recorded["error"] == ex.error
    return recorded


def assert_hung_up(server: HostileServer) -> None:
    """Nothing left running: the harness closed its end (the server's next write fails)."""
    assert server.hung_up.wait(5), "the harness kept the connection open"


# ------------------------------------------------------------------------------------------- DutClient


@pytest.mark.slow
def test_never_answering_dut_is_bounded_by_request_s(tmp_path):
    with HostileServer(never_answers) as server:
        ex, elapsed, peak = dut_get(server, tmp_path)
    assert_recorded(ex, tmp_path, f"no answer within {REQUEST_S:g} s")
    assert REQUEST_S - 0.2 <= elapsed < BOUND_S and peak < MEMORY_CAP


@pytest.mark.slow
def test_endless_body_is_cut_at_the_cap_with_a_french_finding(tmp_path):
    with HostileServer(streams_forever) as server:
        ex, elapsed, peak = dut_get(server, tmp_path)
        assert_hung_up(server)
    recorded = assert_recorded(ex, tmp_path, "réponse trop volumineuse : plus de 1 Mio")
    assert ex.status == 200 and recorded["response"]["status"] == 200  # what arrived is still recorded
    assert len(ex.response_body) <= limits.MAX_KEPT_ON_ERROR
    assert elapsed < BOUND_S and peak < 4 * limits.MAX_DOCUMENT_BODY + 8 * limits.MIB


@pytest.mark.slow
def test_announced_2gb_body_is_refused_before_reading(tmp_path):
    with HostileServer(huge_content_length) as server:
        ex, elapsed, peak = dut_get(server, tmp_path)
        assert_hung_up(server)
    assert_recorded(ex, tmp_path, "réponse trop volumineuse")
    assert ex.response_body == b"" and elapsed < BOUND_S and peak < 8 * limits.MIB


@pytest.mark.slow
def test_gzip_bomb_is_inflated_piece_by_piece_and_stopped_at_the_cap(tmp_path):
    with HostileServer(compression_bomb()) as server:
        ex, elapsed, peak = dut_get(server, tmp_path)
        assert_hung_up(server)
    assert_recorded(ex, tmp_path, f"réponse trop volumineuse : plus de {limits.MAX_DOCUMENT_BODY // limits.MIB} Mio")
    assert elapsed < BOUND_S and peak < 4 * limits.MAX_DOCUMENT_BODY + 8 * limits.MIB


@pytest.mark.slow
def test_gzip_bomb_on_an_image_request_stays_within_the_image_cap(tmp_path):
    """The larger cap of WADO-RS answers (Accept: multipart/related) bounds a bomb too."""
    with HostileServer(compression_bomb(b"multipart/related; boundary=x")) as server:
        ex, elapsed, peak = dut_get(server, tmp_path, headers={"Accept": 'multipart/related; type="application/dicom"'})
        assert_hung_up(server)
    assert_recorded(ex, tmp_path, "réponse trop volumineuse : plus de 64 Mio")
    assert elapsed < BOUND_S and peak < 2 * limits.MAX_RESPONSE_BODY + 16 * limits.MIB < MEMORY_CAP


@pytest.mark.slow
def test_trickling_dut_cannot_stretch_an_exchange_past_request_s(tmp_path):
    with HostileServer(trickles) as server:
        ex, elapsed, _ = dut_get(server, tmp_path)
    assert ex.error is not None and "within" in ex.error  # HLT-06 counts it as late
    assert elapsed < BOUND_S  # the deadline covers headers and body, not each read (100 bytes at 1 byte/s)


@pytest.mark.slow
def test_endless_headers_are_refused(tmp_path):
    with HostileServer(huge_headers) as server:
        ex, elapsed, peak = dut_get(server, tmp_path)
        assert_hung_up(server)
    assert_recorded(ex, tmp_path, "en-têtes trop volumineux")
    assert ex.status is None and elapsed < BOUND_S and peak < 16 * limits.MIB


def test_too_many_header_fields_are_refused(tmp_path):
    with HostileServer(many_headers) as server:
        ex, elapsed, _ = dut_get(server, tmp_path)
    assert_recorded(ex, tmp_path, f"trop d'en-têtes : plus de {limits.MAX_HEADERS} en-têtes")
    assert len(ex.response_headers) <= limits.MAX_HEADERS and elapsed < BOUND_S


@pytest.mark.slow
@pytest.mark.parametrize("behaviour, fragment", [(garbage_tls, "TLS"), (silent_tls, "within")])
def test_garbage_or_silent_tls_ends_in_a_recorded_error(tmp_path, behaviour, fragment):
    with HostileServer(behaviour) as server:
        ex, elapsed, peak = dut_get(server, tmp_path, https=True)
    assert_recorded(ex, tmp_path, fragment)
    assert ex.status is None and elapsed < BOUND_S and peak < 16 * limits.MIB


def _compressed(coding: str, data: bytes) -> bytes:
    if coding == "gzip":
        z = zlib.compressobj(6, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    elif coding == "deflate-raw":
        z = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    else:
        z = zlib.compressobj(6, zlib.DEFLATED, zlib.MAX_WBITS)
    return z.compress(data) + z.flush()


def test_the_bomb_is_a_valid_2gib_gzip_stream():
    """What the bomb server sends is really 2 MB of gzip that inflates to 2 GiB (checked on its head and size)."""
    wire = b"".join(gzip_bomb_stream())
    assert 1.5e6 < len(wire) < 2.5e6 and struct.unpack("<I", wire[-4:])[0] == (2 * GIB) & 0xFFFFFFFF
    head = zlib.decompressobj(zlib.MAX_WBITS | 16).decompress(wire[:20_000], 8 * limits.MIB)
    assert head == bytes(len(head)) and len(head) == 8 * limits.MIB


@pytest.mark.parametrize("coding, header", [("gzip", "gzip"), ("deflate", "deflate"), ("deflate-raw", "deflate"),
                                            ("gzip-twice", "gzip, gzip"), ("identity", "br")])
def test_honest_compressed_answers_are_still_decoded(tmp_path, coding, header):
    """The decoding drimcheck now does itself (bounded) gives what httpx gave: gzip, deflate (zlib or raw),
    stacked codings; an unknown coding is left as it is."""
    doc = json.dumps({"status": "UP", "checks": [{"name": f"PACS-{i}", "status": "UP"} for i in range(2000)]}).encode()
    if coding == "gzip-twice":
        body = _compressed("gzip", _compressed("gzip", doc))
    elif coding == "identity":
        body = doc
    else:
        body = _compressed(coding, doc)
    with HostileServer(answer(200, [("Content-Type", "application/json"), ("Content-Encoding", header)], body)) as s:
        ex, _, _ = dut_get(s, tmp_path)
    assert ex.ok and ex.response_body == doc and ex.json()["status"] == "UP"


def test_corrupt_compressed_answer_is_a_recorded_error(tmp_path):
    with HostileServer(answer(200, [("Content-Encoding", "gzip")], b"\x1f\x8b" + bytes(range(200)))) as s:
        ex, _, _ = dut_get(s, tmp_path)
    assert_recorded(ex, tmp_path, "réponse compressée illisible")


def test_dut_client_contacts_only_the_dut_fqdns(tmp_path):
    with HostileServer(answer(200, [], b"canary")) as canary:
        client = DutClient(sut_for(http_port=canary.port), EvidenceStore(tmp_path))
        ex = client.get(f"http://localhost:{canary.port}/canary", label="hors-banc")
        time.sleep(0.2)
        assert canary.accepted == 0
    assert_recorded(ex, tmp_path, f"hors du banc de test : http://localhost:{canary.port}/canary non contactée")


# ------------------------------------------------------------------------------------------- Browser


def browser(sut: Sut, tmp_path: Path, **kw) -> Browser:
    return Browser(sut, {}, EvidenceStore(tmp_path), timeout_s=REQUEST_S, **kw)


@pytest.mark.parametrize("location", ["http://localhost:{canary}/canary", "http://127.0.0.1:{canary}/canary",
                                      "//evil.example/x", "file:///etc/passwd"])
def test_redirect_off_the_bed_is_recorded_and_not_followed(tmp_path, location):
    with HostileServer(answer(200, [], b"canary")) as canary:
        where = location.format(canary=canary.port)
        with HostileServer(answer(302, [("Location", where)])) as dut:
            with browser(sut_for(http_port=dut.port), tmp_path, bed=[f"127.0.0.1:{dut.port}"]) as b:
                nav, elapsed, _ = measured(lambda: b.open(f"http://127.0.0.1:{dut.port}/api/conso/parameters",
                                                          label="appel"))
        time.sleep(0.2)
        assert canary.accepted == 0 and not canary.hits
    assert [h.status for h in nav.hops] == [302, None] and elapsed < BOUND_S
    off = nav.hops[1]
    assert nav.error == off.error and off.error.startswith("redirection hors du banc de test : ")
    assert off.error.endswith("non contactée") and off.connect_to == ""
    assert json.loads(Path(tmp_path, off.evidence).read_text())["response"] is None


def test_redirect_to_a_dut_fqdn_or_a_simulator_is_followed(tmp_path):
    with HostileServer(answer(200, [], b"page")) as page, HostileServer(answer(200, [], b"psc")) as psc:
        sut = sut_for(http_port=page.port)
        with HostileServer(answer(302, [("Location", f"http://{FQDN}/ui")])) as dut:
            with Browser(sut, {"psc.test": f"127.0.0.1:{psc.port}"}, EvidenceStore(tmp_path), timeout_s=REQUEST_S,
                         bed=[f"127.0.0.1:{dut.port}"]) as b:
                nav = b.open(f"http://127.0.0.1:{dut.port}/call", label="appel")
                to_sim = b.open("http://psc.test/auth", label="psc")
    assert nav.error is None and nav.final.text() == "page"
    assert to_sim.error is None and to_sim.final.text() == "psc"


def test_form_action_off_the_bed_is_recorded_and_not_posted(tmp_path):
    from simulators.conso_visit import export_form

    with HostileServer(answer(200, [], b"stolen")) as canary:
        action = f"http://localhost:{canary.port}/export"
        page = (f'<html><form method="post" action="{action}"><input name="study" value="1.2.3"/></form></html>').encode()
        with HostileServer(answer(200, [("Content-Type", "text/html")], page)) as dut:
            with browser(sut_for(http_port=dut.port), tmp_path, bed=[f"127.0.0.1:{dut.port}"]) as b:
                shown = b.open(f"http://127.0.0.1:{dut.port}/page", label="page")
                form_action, fields = export_form(shown.final.text(), "1.2.3")
                nav = b.submit(form_action, fields, label="export", origin="action de formulaire")
        time.sleep(0.2)
        assert canary.accepted == 0
    assert nav.error == f"action de formulaire hors du banc de test : {action} non contactée"


@pytest.mark.slow
@pytest.mark.parametrize("behaviour, fragment", [
    (compression_bomb(b"text/html"), "réponse trop volumineuse"), (streams_forever, "réponse trop volumineuse"),
    (trickles, "within"), (never_answers, "within"), (huge_headers, "en-têtes trop volumineux")])
def test_browser_is_bounded_in_time_and_size(tmp_path, behaviour, fragment):
    with HostileServer(behaviour) as dut, browser(sut_for(http_port=dut.port), tmp_path, bed=[f"127.0.0.1:{dut.port}"]) as b:
        nav, elapsed, peak = measured(lambda: b.open(f"http://127.0.0.1:{dut.port}/page", label="page"))
    assert nav.error and fragment in nav.error, nav.error
    assert elapsed < BOUND_S and peak < 4 * limits.MAX_DOCUMENT_BODY + 16 * limits.MIB


# ------------------------------------------------------------------------------------------- CON-01, WADO


def test_con01_fails_a_redirect_off_the_dut():
    from drimcheck.checks import conso
    from drimcheck.net import Exchange

    def call(location: str) -> Exchange:
        return Exchange("appel", "POST", "http://127.0.0.1:5000/api/conso/parameters", "127.0.0.1:5000", "now", [],
                        status=303, response_headers=[("location", location)])

    interface = ["127.0.0.1:5000", "vi1.349.mesimagesmedicales.fr"]
    for off in ("http://localhost:8999/canary", "http://127.0.0.1:8999/canary", "https://evil.example/ui",
                "javascript:alert(1)"):
        [finding] = conso.contextual_call_redirects(call(off), interface)
        assert finding.verdict == Verdict.FAIL and "pas l'interface de la DRIMbox" in finding.message
    for own in ("/ui?uuid=1", "http://127.0.0.1:5000/ui", "https://vi1.349.mesimagesmedicales.fr/ui"):
        assert [f.verdict for f in conso.contextual_call_redirects(call(own), interface)] == [Verdict.PASS]


def test_multipart_part_count_is_capped():
    reader = MultipartReader("b", max_parts=3)
    body = b"".join(b"--b\r\nContent-Type: application/dicom\r\n\r\nx\r\n" for _ in range(5)) + b"--b--"
    with pytest.raises(MultipartError, match="trop de parties : plus de 3 parties"):
        reader.feed(body)


def test_multipart_part_without_end_is_capped():
    reader = MultipartReader("b", max_part_bytes=1024)
    reader.feed(b"--b\r\nContent-Type: application/dicom\r\n\r\n")
    with pytest.raises(MultipartError, match="partie trop volumineuse : plus de 1 Kio"):
        for _ in range(100):
            reader.feed(bytes(1024))


@pytest.mark.slow
def test_wado_retrieve_is_bounded_against_a_bomb():
    with HostileServer(compression_bomb(b"multipart/related; boundary=x")) as server, httpx.Client(timeout=REQUEST_S) as client:
        result, elapsed, peak = measured(lambda: retrieve(client, f"http://127.0.0.1:{server.port}/studies/1",
                                                           timeout_s=REQUEST_S, max_bytes=8 * limits.MIB))
    assert result.error == "réponse trop volumineuse : plus de 8 Mio (8388608 octets)"
    assert elapsed < BOUND_S and peak < 64 * limits.MIB


# ------------------------------------------------------------------------------------------- a whole campaign


def external_sut_text(https_port: int, request_s: float) -> str:
    """The `drimcheck init` template for a DUT whose db1 HTTPS is on `https_port`; every other address of
    the template (simulators, PACS, [dut]) on a free loopback port, so that runs on one machine do not clash."""
    import re

    from drimcheck import config
    from simulators.procutil import free_port

    text = re.sub(r"127\.0\.0\.1:\d+", lambda m: f"127.0.0.1:{free_port()}", config.template_text())
    text = re.sub(r"(dicom_port|http_port) = \d+", lambda m: f"{m.group(1)} = {free_port()}", text)
    text = re.sub(r'("db1\.349\.mesimagesmedicales\.fr" = \{ https = )"[^"]+"', rf'\1"127.0.0.1:{https_port}"', text)
    return text.replace("request_s = 5", f"request_s = {request_s:g}")


def _peak_rss_of(proc: subprocess.Popen) -> tuple[int, int]:
    """Wait for the process, sampling VmHWM (peak RSS, kB) from /proc; (exit code, peak in bytes)."""
    peak = 0
    status = Path(f"/proc/{proc.pid}/status")
    while proc.poll() is None:
        try:
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]) * 1024)
        except OSError:
            pass
        time.sleep(0.05)
    return proc.returncode, peak


@pytest.mark.slow
def test_campaign_against_a_2gb_healthcheck_ends_bounded_with_reports(tmp_path):
    """A DUT that answers its HealthCheck with 2 GB: the answer is cut at the cap, the DUT did answer, so
    HLT-01 FAILs naming the cap (exit 1, not "unreachable"); every report is written, memory stays bounded."""
    from fixtures.pki import TestPKI

    tls = TestPKI(tmp_path / "pki").serv_ssl(FQDN).server_context()
    with HostileServer(huge_content_length, tls=tls) as dut:
        text = external_sut_text(dut.port, request_s=2)
        sut = tmp_path / "sut.toml"
        sut.write_text(text)
        out = tmp_path / "out"
        t0 = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "drimcheck", "run", "--sut", str(sut), "--req", "HLT-01",
                                 "--out", str(out), "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                cwd=Path(__file__).resolve().parent.parent)
        code, peak = _peak_rss_of(proc)
        elapsed = time.monotonic() - t0
        stderr = proc.stderr.read().decode()
        proc.stdout.close()
        proc.stderr.close()
        assert dut.accepted >= 1, stderr
    assert code == 1, stderr
    for name in ("results.json", "junit.xml", "report.html"):
        assert (out / name).is_file(), name
    data = json.loads((out / "results.json").read_text())
    assert data["run"]["exit_code"] == 1 and data["scenarios"]
    hlt01 = [f for s in data["scenarios"] for f in s["findings"] if f["requirement"] == "HLT-01"
             and "[hooks]" not in f["message"]]  # a scenario needing a hook this sut.toml does not declare
    assert hlt01 and all(f["verdict"] == "FAIL" for f in hlt01), hlt01
    assert any("réponse trop volumineuse" in f["message"] for f in hlt01), hlt01
    assert elapsed < 120 and peak < MEMORY_CAP, (elapsed, peak)
