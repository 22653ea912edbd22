"""Exchange.outcome: the typed transport outcome checks match on, over real sockets (one small server per case).

Each case also asserts that the outcome agrees with the wording the checks used to match (``"within"`` in
Exchange.error meant a timeout), so moving a check from the string to the enum changes no verdict."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from drimcheck import limits
from drimcheck.config import Address, Endpoint, Sut, Timeouts
from drimcheck.evidence import EvidenceStore
from drimcheck.net import DutClient, Exchange, TransportOutcome

FQDN = "db1.349.mesimagesmedicales.fr"


@contextmanager
def server(behaviour: Callable[[socket.socket], None]) -> Iterator[int]:
    """A listening socket on 127.0.0.1 that runs `behaviour` on each accepted connection; yields its port."""
    lsock = socket.create_server(("127.0.0.1", 0))
    lsock.settimeout(0.2)
    stop = threading.Event()
    conns: list[socket.socket] = []

    def loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = lsock.accept()
            except OSError:
                continue
            conns.append(conn)
            try:
                behaviour(conn)
            except OSError:
                pass

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        yield lsock.getsockname()[1]
    finally:
        stop.set()
        t.join(5)
        lsock.close()
        for c in conns:
            c.close()


def answers(body: bytes = b'{"status": "UP"}', extra_headers: int = 0) -> Callable[[socket.socket], None]:
    def behaviour(conn: socket.socket) -> None:
        conn.recv(65536)
        head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        head += "".join(f"X-Pad-{i}: x\r\n" for i in range(extra_headers))
        conn.sendall(f"{head}Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
    return behaviour


def never_answers(conn: socket.socket) -> None:
    conn.recv(65536)  # the request is read, nothing is sent back (the connection is closed at the end)


def client(tmp_path: Path, *, http: int | None = None, https: int | None = None) -> DutClient:
    sut = Sut(name="outcome", roles=("source",), registry="349", pacs=(), health_url=f"http://{FQDN}/q/health",
              network={FQDN: Endpoint(FQDN, http=Address("127.0.0.1", http) if http else None,
                                      https=Address("127.0.0.1", https) if https else None)},
              timeouts=Timeouts(request_s=2.0))
    return DutClient(sut, EvidenceStore(tmp_path))


def recorded(ex: Exchange, tmp_path: Path) -> dict[str, object]:
    assert ex.evidence is not None
    data = json.loads(Path(tmp_path, ex.evidence).read_text())
    assert data["outcome"] == ex.outcome.value  # the evidence keeps the outcome for a later re-judging
    assert ex.timed_out == ("within" in (ex.error or ""))  # same cases as the former string match
    return data


def test_answered(tmp_path: Path) -> None:
    with server(answers()) as port:
        ex = client(tmp_path, http=port).get(f"http://{FQDN}/q/health", label="ok")
    assert ex.ok and ex.status == 200 and ex.outcome is TransportOutcome.ANSWERED and ex.error is None
    recorded(ex, tmp_path)


def test_no_answer_is_a_timeout(tmp_path: Path) -> None:
    with server(never_answers) as port:
        ex = client(tmp_path, http=port).get(f"http://{FQDN}/q/health", label="late", timeout=0.5)
    assert not ex.ok and ex.outcome is TransportOutcome.TIMEOUT and ex.timed_out
    recorded(ex, tmp_path)


def test_refused(tmp_path: Path) -> None:
    s = socket.create_server(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there any more
    ex = client(tmp_path, http=port).get(f"http://{FQDN}/q/health", label="refused")
    assert ex.outcome is TransportOutcome.REFUSED and not ex.timed_out and ex.error == "connection refused"
    recorded(ex, tmp_path)


def test_plain_http_where_tls_expected(tmp_path: Path) -> None:
    with server(answers()) as port:
        ex = client(tmp_path, https=port).get(f"https://{FQDN}/q/health", label="tls")
    assert ex.outcome is TransportOutcome.TLS and not ex.ok, ex.error
    recorded(ex, tmp_path)


def test_harness_cap_is_a_limit(tmp_path: Path) -> None:
    with server(answers(extra_headers=limits.MAX_HEADERS + 5)) as port:
        ex = client(tmp_path, http=port).get(f"http://{FQDN}/q/health", label="cap")
    assert ex.outcome is TransportOutcome.LIMIT and ex.status == 200 and not ex.ok, ex.error
    recorded(ex, tmp_path)


def test_off_bed_url_is_not_contacted(tmp_path: Path) -> None:
    ex = client(tmp_path, http=1).get("http://elsewhere.example/x", label="off")
    assert ex.outcome is TransportOutcome.NOT_CONTACTED and ex.status is None and "non contactée" in (ex.error or "")
    recorded(ex, tmp_path)
