"""A hostile DUT writing to drimcheck's simulators: every read is bounded in size and time (issue 11).

Real sockets against the real simulators. The DMP simulator runs in a subprocess so that its peak
memory (VmHWM) can be measured; the other HTTPS simulators run in-process. Each attack asserts a
clear answer (or error), a bounded time, a bounded memory, a record of the refusal, and that the
simulator still serves a normal request afterwards.
"""

from __future__ import annotations

import gzip
import json
import os
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import pytest

from drimcheck import kos, safexml, xds
from drimcheck.limits import (
    MAX_DICOM_PDU,
    MAX_HEADERS,
    MAX_MLLP_FRAME,
    MAX_MULTIPART_PARTS,
    MAX_REQUEST_BODY,
    MAX_XML_BYTES,
    MAX_XML_DEPTH,
)

ROOT = Path(__file__).resolve().parent.parent
MEMORY_BOUND_MB = 300
DMP_PATH = "/si-dmp-server/v2/services/repository"
DMP_FQDN = "dmp.drimcheck.test"


# --------------------------------------------------------------------------- the DMP in a subprocess

def serve_dmp(workdir: str) -> None:
    """Subprocess entry point: a DMP simulator over HTTPS + mTLS; prints its address, serves until stdin closes.

    ``python -c 'from tests.test_hostile_server import serve_dmp; serve_dmp(DIR)'``. On stdin's end it prints
    the exchanges and rejections it recorded (JSON) and exits.
    """
    from fixtures.pki import TestPKI
    from simulators.dmp import DmpSimulator

    pki = TestPKI(Path(workdir) / "pki")
    server = pki.serv_ssl(DMP_FQDN)
    client = pki.org_auth_cli()
    sim = DmpSimulator()
    sim.start("127.0.0.1", 0, cert_chain=str(server.chain_path), key=str(server.key_path),
              client_ca=str(pki.igc_chain_pem))
    sim._server.head_timeout_s = 1.0  # short bounds for the slow-client tests
    sim._server.body_timeout_s = 2.0
    print(json.dumps({"port": sim.port, "trust": str(pki.igc_trust_pem), "chain": str(client.chain_path),
                      "key": str(client.key_path)}), flush=True)
    sys.stdin.read()
    report = {"exchanges": [{"status": e.status, "parse_error": e.parse_error, "path": e.path} for e in sim.exchanges],
              "rejections": [{k: r.get(k) for k in ("status", "reason", "received_bytes", "header_count")}
                             for r in sim._server.rejections.snapshot()]}
    sim.stop()
    print(json.dumps(report), flush=True)


class DmpProcess:
    def __init__(self, workdir: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", f"from tests.test_hostile_server import serve_dmp; serve_dmp({str(workdir)!r})"],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line:
            self.proc.kill()
            raise RuntimeError("the DMP subprocess did not start")
        info = json.loads(line)
        self.port = info["port"]
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.ctx.load_verify_locations(info["trust"])
        self.ctx.load_cert_chain(info["chain"], info["key"])

    def connect(self, timeout: float = 10.0) -> ssl.SSLSocket:
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        return self.ctx.wrap_socket(raw, server_hostname=DMP_FQDN)

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmHWM")

    def finish(self) -> dict:
        out, _ = self.proc.communicate("", timeout=30)
        return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def dmp(tmp_path_factory):
    proc = DmpProcess(tmp_path_factory.mktemp("hostile-dmp"))
    try:
        yield proc
    finally:
        if proc.proc.poll() is None:
            proc.proc.kill()
            proc.proc.wait(10)


def read_answer(sock: socket.socket, limit: int = 1 << 20) -> bytes:
    """What the server sent until it closed (or ``limit`` bytes); b"" when it reset first."""
    out = bytearray()
    try:
        while len(out) < limit:
            data = sock.recv(65536)
            if not data:
                break
            out += data
    except (ConnectionResetError, ssl.SSLError, TimeoutError):
        pass
    return bytes(out)


def send_quietly(sock: socket.socket, data: bytes) -> bool:
    """sendall; False when the server closed first (it may refuse a head before the client finished sending)."""
    try:
        sock.sendall(data)
        return True
    except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
        return False


def status_of(answer: bytes) -> int | None:
    if not answer.startswith((b"HTTP/1.1 ", b"HTTP/1.0 ")):
        return None
    return int(answer[9:12])


def post(dmp: DmpProcess, body: bytes, content_type: str = "application/soap+xml", extra: bytes = b"") -> bytes:
    with dmp.connect() as sock:
        sock.sendall(b"POST " + DMP_PATH.encode() + b" HTTP/1.1\r\nHost: " + DMP_FQDN.encode()
                     + b"\r\nContent-Type: " + content_type.encode() + b"\r\nContent-Length: "
                     + str(len(body)).encode() + b"\r\nConnection: close\r\n" + extra + b"\r\n")
        sock.sendall(body)
        return read_answer(sock)


def assert_still_serving(dmp: DmpProcess) -> None:
    """A normal (unreadable but well-formed) SOAP request gets the DMP's usual answer."""
    answer = post(dmp, b"<a/>")
    assert status_of(answer) == 200 and b"ResponseStatusType:Failure" in answer, answer[:300]


def test_dmp_refuses_a_declared_oversized_body_without_reading_it(dmp) -> None:
    t0 = time.monotonic()
    with dmp.connect() as sock:
        sock.sendall(b"POST " + DMP_PATH.encode() + b" HTTP/1.1\r\nHost: " + DMP_FQDN.encode()
                     + b"\r\nContent-Type: application/soap+xml\r\nContent-Length: 5000000000\r\n\r\n")
        answer = read_answer(sock)
    assert status_of(answer) == 413 and b"trop volumineux" in answer and b"soap:Fault" in answer
    assert time.monotonic() - t0 < 10
    assert_still_serving(dmp)


def test_dmp_cuts_a_streamed_chunked_body_at_the_cap(dmp) -> None:
    chunk = b"%x\r\n%s\r\n" % (1 << 16, b"A" * (1 << 16))
    sent = 0
    t0 = time.monotonic()
    with dmp.connect(timeout=20) as sock:
        sock.sendall(b"POST " + DMP_PATH.encode() + b" HTTP/1.1\r\nHost: " + DMP_FQDN.encode()
                     + b"\r\nContent-Type: application/soap+xml\r\nTransfer-Encoding: chunked\r\n\r\n")
        try:
            while sent < 4 * MAX_REQUEST_BODY:  # "forever": 4 times the cap, one chunk in memory at a time
                sock.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, TimeoutError):
            pass
        answer = read_answer(sock)
    assert sent < 2 * MAX_REQUEST_BODY, "the server kept reading past its cap"
    assert answer == b"" or status_of(answer) == 413  # the answer may be lost to the reset of a closing socket
    assert time.monotonic() - t0 < 60
    assert dmp.peak_rss_mb() < MEMORY_BOUND_MB
    assert_still_serving(dmp)


def test_dmp_does_not_inflate_a_compression_bomb(dmp) -> None:
    bomb = gzip.compress(b"\0" * (256 << 20), compresslevel=9)  # 256 MiB of zeros in ~250 kB
    assert len(bomb) < 1 << 20
    t0 = time.monotonic()
    answer = post(dmp, bomb, extra=b"Content-Encoding: gzip\r\n")
    assert status_of(answer) == 200 and b"ResponseStatusType:Failure" in answer  # bytes as sent: not SOAP
    assert time.monotonic() - t0 < 10
    assert dmp.peak_rss_mb() < MEMORY_BOUND_MB
    assert_still_serving(dmp)


def test_dmp_refuses_ten_thousand_headers(dmp) -> None:
    headers = b"".join(b"X-Hostile-%d: v\r\n" % i for i in range(10_000))
    for block in (headers, b"".join(b"X-H%d: v\r\n" % i for i in range(MAX_HEADERS + 1))):
        with dmp.connect() as sock:
            sent = send_quietly(sock, b"GET " + DMP_PATH.encode() + b" HTTP/1.1\r\nHost: " + DMP_FQDN.encode()
                                + b"\r\n" + block + b"\r\n")
            answer = read_answer(sock)
        # 431; or, when the server refused while 150 kB of headers were still being sent, the reset may eat the
        # answer (the refusal is recorded all the same: see test_dmp_records_every_refusal_and_stays_small)
        assert status_of(answer) == 431 or not sent and answer == b"", answer[:200]
    assert_still_serving(dmp)


def test_dmp_refuses_a_trickled_head_and_a_stalled_body(dmp) -> None:
    t0 = time.monotonic()
    with dmp.connect() as sock:  # head: one byte every 0.2 s, never finished (head_timeout_s = 1 s)
        for byte in b"POST":  # (then silence: a byte sent after the server's close would reset the connection)
            sock.sendall(bytes([byte]))
            time.sleep(0.2)
        answer = read_answer(sock)
    assert status_of(answer) == 408 and time.monotonic() - t0 < 10
    t0 = time.monotonic()
    with dmp.connect() as sock:  # body: announced, never sent (body_timeout_s = 2 s)
        sock.sendall(b"POST " + DMP_PATH.encode() + b" HTTP/1.1\r\nHost: " + DMP_FQDN.encode()
                     + b"\r\nContent-Type: application/soap+xml\r\nContent-Length: 1000\r\n\r\n<a")
        answer = read_answer(sock)
    assert status_of(answer) == 408 and b"non re" in answer and time.monotonic() - t0 < 10
    assert_still_serving(dmp)


def _multipart(parts: int) -> tuple[str, bytes]:
    part = b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n"
    return 'multipart/related; boundary=b; type="application/xop+xml"', part * parts + b"--b--\r\n"


def test_dmp_refuses_a_hundred_thousand_multipart_parts(dmp) -> None:
    ctype, body = _multipart(100_000)
    t0 = time.monotonic()
    answer = post(dmp, body, ctype)
    assert status_of(answer) == 200 and f"plus de {MAX_MULTIPART_PARTS} parties".encode() in answer
    assert time.monotonic() - t0 < 10
    assert_still_serving(dmp)


BILLION_LAUGHS = (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
                  + b"".join(b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
                             for i in range(1, 10))
                  + b']><soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Body>&lol9;'
                  + b"</soap:Body></soap:Envelope>")
DEEP = b"<a>" * 100_000 + b"</a>" * 100_000
FLAT = b"<r>" + b"<a/>" * (MAX_XML_BYTES // 4 - 2) + b"</r>"  # ~16 MiB: 550 MB of nodes if parsed


@pytest.mark.parametrize("document, words", [(BILLION_LAUGHS, "entit"), (DEEP, "imbrication"),
                                             (FLAT, "trop complexe")], ids=["billion-laughs", "deep", "flat"])
def test_dmp_xml_bombs_fail_cleanly(dmp, document, words) -> None:
    t0 = time.monotonic()
    answer = post(dmp, document)
    assert status_of(answer) == 200 and b"ResponseStatusType:Failure" in answer
    assert words.encode() in answer, answer[-600:]
    assert time.monotonic() - t0 < 20
    assert dmp.peak_rss_mb() < MEMORY_BOUND_MB
    assert_still_serving(dmp)


def test_dmp_records_every_refusal_and_stays_small(dmp) -> None:
    """Last of the DMP tests (module order): the refusals are in the simulator's log, the peak is bounded."""
    peak = dmp.peak_rss_mb()
    report = dmp.finish()
    statuses = {r["status"] for r in report["rejections"]}
    assert {413, 431, 408} <= statuses, report["rejections"]
    faults = [e for e in report["exchanges"] if e["status"] == "Fault"]
    assert any("trop volumineux" in (e["parse_error"] or "") for e in faults)
    assert any("parties" in (e["parse_error"] or "") for e in report["exchanges"])
    assert peak < MEMORY_BOUND_MB, f"DMP simulator peak RSS {peak:.0f} MB"


# --------------------------------------------------------------------------- the other HTTPS simulators


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    from fixtures.pki import TestPKI

    return TestPKI(tmp_path_factory.mktemp("hostile") / "pki")


def _psc(pki):
    from simulators.psc import OIDC_PATH, PscSimulator

    return PscSimulator(pki), OIDC_PATH + "/token"


def _peer(pki):
    from simulators.peer_source import PeerSource
    from simulators.peers import DEFAULT_PEERS

    return PeerSource(pki, None, fqdn=DEFAULT_PEERS[0].fqdn), "/"


def _proxy(pki):
    from simulators.proxy import ProxySimulator

    return ProxySimulator(pki), "/"


@pytest.mark.parametrize("make", [_psc, _peer, _proxy], ids=["psc", "peer", "proxy"])
def test_https_simulators_refuse_oversized_requests_and_keep_serving(pki, make) -> None:
    sim, path = make(pki)
    with sim:
        server = sim._server
        ctx = ssl.create_default_context(cafile=str(pki.igc_trust_pem))
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # the name/chain are other tests' business; here: the bounds

        def exchange(head: bytes, body_chunks=()) -> tuple[bytes, int]:
            sent = 0
            with ctx.wrap_socket(socket.create_connection(("127.0.0.1", sim.port), timeout=10)) as sock:
                if send_quietly(sock, head):
                    for c in body_chunks:
                        if not send_quietly(sock, c):
                            break
                        sent += len(c)
                return read_answer(sock), sent

        host = b"Host: x\r\n"
        t0 = time.monotonic()
        answer, _ = exchange(b"POST " + path.encode() + b" HTTP/1.1\r\n" + host + b"Content-Length: 9999999999\r\n\r\n")
        assert status_of(answer) == 413 and b"trop volumineux" in answer
        many = b"".join(b"X-H%d: v\r\n" % i for i in range(10_000))
        answer, _ = exchange(b"GET " + path.encode() + b" HTTP/1.1\r\n" + host + many + b"\r\n")
        assert status_of(answer) in (431, None)  # None: refused while the headers were still being sent (reset)
        chunk = b"%x\r\n%s\r\n" % (1 << 16, b"A" * (1 << 16))
        tracemalloc.start()  # traces the server's thread too (same process)
        try:
            answer, sent = exchange(b"POST " + path.encode() + b" HTTP/1.1\r\n" + host
                                    + b"Transfer-Encoding: chunked\r\n\r\n",
                                    (chunk for _ in range(4 * MAX_REQUEST_BODY >> 16)))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 3 * MAX_REQUEST_BODY, f"{peak >> 20} MiB allocated while refusing a body streamed forever"
        # refused at the cap (413), or answered without reading the body (405/404) and closed: never read to the end
        assert sent < 2 * MAX_REQUEST_BODY and (answer == b"" or b"connection: close" in answer.lower())
        assert time.monotonic() - t0 < 60
        refused = server.rejections.snapshot()
        assert [r["status"] for r in refused][:2] == [413, 431]
        logged = [r for r in sim.requests if r.get("rejected")]
        assert [r["rejected"]["status"] for r in logged] == [r["status"] for r in refused]
        answer, _ = exchange(b"GET " + path.encode() + b" HTTP/1.1\r\n" + host + b"Connection: close\r\n\r\n")
        assert status_of(answer) not in (None, 413, 431, 500)


def test_igc_publication_point_bounds_heads_connections_and_time(pki) -> None:
    from simulators.igc import IGCPublicationServer

    server = IGCPublicationServer(pki)
    server.connection_deadline = 1.5
    with server:
        def connect() -> socket.socket:
            return socket.create_connection(("127.0.0.1", server.port), timeout=10)

        with connect() as sock:
            sent = send_quietly(sock, b"GET /x HTTP/1.1\r\nHost: x\r\n"
                                + b"".join(b"X-H%d: v\r\n" % i for i in range(10_000)) + b"\r\n")
            answer = read_answer(sock)
        assert status_of(answer) == 431 or not sent and answer == b""
        t0 = time.monotonic()
        with connect() as sock:  # a request line trickled byte by byte, each within the 5 s silence timeout
            for byte in b"GET /x":
                if not send_quietly(sock, bytes([byte])):
                    break
                time.sleep(0.4)
            read_answer(sock)
        assert time.monotonic() - t0 < 5  # cut at the 1.5 s deadline, not at the end of the trickle
        held = [connect() for _ in range(server._httpd.max_connections + 10)]  # silent clients
        try:
            time.sleep(0.5)
            assert server._httpd.refused_connections >= 10
        finally:
            for sock in held:
                sock.close()
        deadline = time.monotonic() + 10
        while True:  # the held connections are released (closed by the clients) and the server serves again
            with connect() as sock:
                sock.sendall(b"GET /nothing HTTP/1.0\r\n\r\n")
                answer = read_answer(sock)
            if status_of(answer) is None and time.monotonic() < deadline:
                time.sleep(0.2)
                continue
            break
        assert answer.startswith(b"HTTP/1.0 404")
        assert 431 in [r["status"] for r in server.requests]


# --------------------------------------------------------------------------- XML parsers (in-process)


@pytest.mark.parametrize("document", [BILLION_LAUGHS, DEEP, FLAT, b"x" * (MAX_XML_BYTES + 1)],
                         ids=["billion-laughs", "deep", "flat", "too-big"])
def test_xml_parsers_fail_cleanly_within_bounds(document) -> None:
    from drimcheck import whitelist

    tracemalloc.start()
    t0 = time.monotonic()
    try:
        with pytest.raises(xds.XdsParseError):
            xds.parse_soap(document)
        try:  # unusable input, or a report refusing the list (a DOCTYPE is refused before parsing)
            assert not whitelist.verify_whitelist(document).valid
        except whitelist.UnusableInput:
            pass
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert time.monotonic() - t0 < 10
    assert peak < 64 << 20  # Python-side allocations: nothing like the document's expansion


def test_xml_depth_cap_is_the_documented_one() -> None:
    ok = b"<a>" * MAX_XML_DEPTH + b"</a>" * MAX_XML_DEPTH
    assert safexml.fromstring(ok).tag == "a"
    deeper = b"<a>" * (MAX_XML_DEPTH + 1) + b"</a>" * (MAX_XML_DEPTH + 1)
    with pytest.raises(safexml.XmlRejected, match="imbrication"):
        safexml.fromstring(deeper)
    entity = b'<!DOCTYPE r [<!ENTITY e SYSTEM "file:///etc/passwd">]><r>&e;</r>'
    assert b"root:" not in (safexml.fromstring(entity).text or "").encode()  # XXE inert


def test_multipart_part_cap_in_the_parser() -> None:
    ctype, body = _multipart(MAX_MULTIPART_PARTS + 5)
    with pytest.raises(xds.XdsParseError, match="parties"):
        xds.parse_mime(ctype, body)


# --------------------------------------------------------------------------- KOS


def _deep_sequence_dataset(depth: int) -> bytes:
    """Implicit VR LE dataset: SOPClassUID then ContentSequence items nested ``depth`` deep (undefined lengths)."""
    uid = b"1.2.840.10008.5.1.4.1.1.88.59\0"
    out = struct.pack("<HHI", 0x0008, 0x0016, len(uid)) + uid
    open_ = struct.pack("<HHI", 0x0040, 0xA730, 0xFFFFFFFF) + struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
    close = struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    return out + open_ * depth + close * depth


def test_kos_deep_nesting_and_endless_files_are_clean_errors(tmp_path) -> None:
    data = _deep_sequence_dataset(5000)
    with pytest.raises(kos.KosError, match="imbriquées"):
        kos.read_kos(data)
    assert kos.KosDocument.from_bytes(data).error
    t0 = time.monotonic()
    tracemalloc.start()
    try:
        with pytest.raises(kos.KosError, match="trop volumineux"):
            kos.load(Path("/dev/zero"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < kos.MAX_KOS_BYTES + (8 << 20) and time.monotonic() - t0 < 10


# --------------------------------------------------------------------------- MLLP (the DUT's acknowledgements)


class _Dut:
    """A TCP server playing a hostile DUT: ``behaviour(conn)`` runs for each connection, in a thread."""

    def __init__(self, behaviour) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.behaviour = behaviour
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            with conn:
                try:
                    self.behaviour(conn, self.stop)
                except OSError:
                    pass

    def close(self) -> None:
        self.stop.set()
        self.sock.close()
        self.thread.join(5)
        assert not self.thread.is_alive()


def _stream_forever(conn: socket.socket, stop: threading.Event) -> None:
    conn.recv(65536)
    conn.sendall(b"\x0bMSH|^~\\&|")
    block = b"A" * 65536
    while not stop.is_set():
        conn.sendall(block)  # no end of frame, ever


def _trickle(conn: socket.socket, stop: threading.Event) -> None:
    conn.recv(65536)
    conn.sendall(b"\x0b")
    while not stop.is_set():
        conn.sendall(b"A")
        time.sleep(0.05)


def test_mllp_ack_without_end_marker_is_cut_at_the_cap() -> None:
    from simulators.ris import RisSimulator

    dut = _Dut(_stream_forever)
    try:
        tracemalloc.start()
        t0 = time.monotonic()
        ex = RisSimulator("127.0.0.1", dut.port, timeout_s=20).send(b"MSH|^~\\&|TEST", "hostile")
        elapsed = time.monotonic() - t0
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    finally:
        dut.close()
    assert ex.ack is None and "trop volumineux" in ex.error and "fin de trame" in ex.error
    assert elapsed < 20 and peak < 4 * MAX_MLLP_FRAME + (4 << 20)


def test_mllp_trickled_ack_is_bounded_in_time() -> None:
    from simulators.ris import RisSimulator

    dut = _Dut(_trickle)
    try:
        t0 = time.monotonic()
        ex = RisSimulator("127.0.0.1", dut.port, timeout_s=1.0).send(b"MSH|^~\\&|TEST", "slow")
        elapsed = time.monotonic() - t0
    finally:
        dut.close()
    assert ex.ack is None and "aucun acquittement dans les 1 s" in ex.error and elapsed < 5


# --------------------------------------------------------------------------- DICOM (IOCM C-STORE to the DUT)


def _oversized_pdu(conn: socket.socket, stop: threading.Event) -> None:
    conn.recv(65536)  # the A-ASSOCIATE-RQ
    conn.sendall(struct.pack(">BBL", 0x02, 0, 0xFFFFFFF0))  # an A-ASSOCIATE-AC announcing ~4 GiB
    block = b"\0" * 65536
    while not stop.is_set():
        conn.sendall(block)


def _note():
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    from simulators.iocm import KOS_SOP_CLASS

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = KOS_SOP_CLASS, "1.2.3.4"
    return ds


def test_dicom_association_with_an_oversized_pdu_is_refused() -> None:
    from simulators import iocm

    dut = _Dut(_oversized_pdu)
    try:
        tracemalloc.start()
        t0 = time.monotonic()
        result = iocm.send(_note(), "127.0.0.1", dut.port, "DUT", timeout_s=3)
        elapsed = time.monotonic() - t0
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    finally:
        dut.close()
    assert not result.ok and "PDU DICOM" in result.error and str(MAX_DICOM_PDU) in result.error
    assert elapsed < 10 and peak < 32 << 20


def test_dicom_bounded_ae_still_stores_to_a_normal_scp() -> None:
    from pynetdicom import AE, evt

    from simulators import iocm

    stored = []

    def on_store(event):
        stored.append(event.request.AffectedSOPInstanceUID)
        return 0x0000

    scp = AE(ae_title="DUT")
    scp.add_supported_context(iocm.KOS_SOP_CLASS, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
    server = scp.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    try:
        port = server.server_address[1]
        result = iocm.send(_note(), "127.0.0.1", port, "DUT", timeout_s=5)
    finally:
        server.shutdown()
    assert result.ok and result.error is None and stored == ["1.2.3.4"]


def test_no_thread_left_behind() -> None:
    """Nothing these tests started is still running (servers stopped, DUT threads joined)."""
    names = [t.name for t in threading.enumerate() if t is not threading.main_thread() and t.is_alive()]
    assert not [n for n in names if n.startswith(("psc:", "proxy:", "peer:", "dmp-simulator:"))], names
    assert os.getpid() > 0


# --------------------------------------------------------------------------- SimServer's bounds, in-process


def test_simserver_bounds_bodies_in_flight_and_closes_early_answers() -> None:
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    from simulators.httpsim import SimServer

    async def echo(request):
        return Response(f"{len(await request.body())}")

    async def refuse(request):  # answers without reading the body
        return Response("non", status_code=403)

    app = Starlette(routes=[Route("/echo", echo, methods=["POST"]), Route("/refuse", refuse, methods=["POST"])])
    with SimServer(app, max_body=1 << 20, name="bounded") as server:
        def connect() -> socket.socket:
            return socket.create_connection(("127.0.0.1", server.port), timeout=10)

        head = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 900000\r\nConnection: close\r\n\r\n"
        with connect() as first, connect() as second:
            first.sendall(head + b"a" * 600_000)  # in flight, not finished
            time.sleep(0.3)
            second.sendall(head + b"b" * 600_000)  # 1.2 MB in flight together: over the 1 MiB budget
            answer = read_answer(second)
            assert status_of(answer) == 503 and b"simultan" in answer
            first.sendall(b"a" * 300_000)
            assert read_answer(first, 4096).split(b"\r\n\r\n", 1)[-1] == b"900000"  # the first one completes
        with connect() as sock:
            sock.sendall(b"POST /refuse HTTP/1.1\r\nHost: x\r\nContent-Length: 900000\r\n\r\n")
            answer = read_answer(sock)  # without sending the body: answered and closed, not kept alive
        assert status_of(answer) == 403 and b"connection: close" in answer.lower()
        assert [r["status"] for r in server.rejections.snapshot()] == [503]
        with connect() as sock:
            sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
            assert read_answer(sock).endswith(b"\r\n\r\n5")


def test_dmp_refusal_is_written_to_the_evidence_store(pki, tmp_path) -> None:
    from drimcheck.evidence import EvidenceStore
    from simulators.dmp import DmpSimulator

    server = pki.serv_ssl(DMP_FQDN)
    sim = DmpSimulator(EvidenceStore(tmp_path))
    sim.start("127.0.0.1", 0, cert_chain=str(server.chain_path), key=str(server.key_path),
              client_ca=str(pki.igc_chain_pem))
    try:
        ctx = pki.org_auth_cli().client_context([pki.igc_trust_pem])
        with ctx.wrap_socket(socket.create_connection(("127.0.0.1", sim.port), timeout=10),
                             server_hostname=DMP_FQDN) as sock:
            sock.sendall(b"POST " + DMP_PATH.encode() + b" HTTP/1.1\r\nHost: " + DMP_FQDN.encode()
                         + b"\r\nContent-Type: application/soap+xml\r\nContent-Length: 99999999999\r\n\r\n")
            answer = read_answer(sock)
    finally:
        sim.stop()
    assert status_of(answer) == 413
    ex = sim.exchanges[-1]
    assert ex.status == "Fault" and "trop volumineux" in ex.parse_error and ex.client_cert_der
    summaries = [json.loads((tmp_path / p).read_text()) for p in ex.evidence if p.endswith(".json")]
    assert summaries and "trop volumineux" in summaries[0]["parse_error"]
    assert summaries[0]["response"]["http_status"] == 413
