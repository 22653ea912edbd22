"""IGC-Santé publication point simulator: serves a TestPKI's CRLs and CA certificates over plain HTTP.

CRLs are signed afresh from the PKI at every request, so a revocation made during a run is visible
on the next download. Every request is recorded so tests can assert what a DUT fetched, and when.
"""

from __future__ import annotations

import socket
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from fixtures.pki import PublicationUnavailable, TestPKI

__all__ = ["IGCPublicationServer"]

_CONTENT_TYPES = {".crl": "application/pkix-crl", ".cer": "application/pkix-cert"}


class _Server(ThreadingHTTPServer):
    """One thread per connection, at most ``max_connections`` at once (more are closed unanswered).

    The stdlib already bounds what a client makes it read: request line and header lines of 64 KiB,
    100 header fields (431), no request body is read (only GET/HEAD are served).
    """

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    max_connections = 64
    request_queue_size = 128  # listen backlog: a burst of connections is accepted, then counted

    def __init__(self, *args, **kwargs) -> None:
        self._active = 0
        self._active_lock = threading.Lock()
        self.refused_connections = 0
        super().__init__(*args, **kwargs)

    def process_request(self, request, client_address) -> None:
        with self._active_lock:
            full = self._active >= self.max_connections
            if full:
                self.refused_connections += 1
            else:
                self._active += 1
        if full:
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def handle_error(self, request, client_address) -> None:
        pass  # a client that breaks its connection is its own problem; the request log has what was seen

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._active_lock:
                self._active -= 1


class IGCPublicationServer:
    """Plain-HTTP server for ``pki.publication()``, run in a daemon thread; records every request.

    Paths are served exactly as written in the certificates' CRL DP / AIA URLs: if
    ``pki.publication_url`` has a path (``http://h:p/igc``), that prefix is part of the served path.
    """

    request_timeout = 5.0  # seconds a connection may stay silent before the handler gives up
    connection_deadline = 30.0  # seconds a connection may last in all (a client trickling bytes is cut off)
    stop_timeout = 5.0

    def __init__(self, pki: TestPKI, host: str = "127.0.0.1", port: int = 0) -> None:
        self.pki = pki
        self.host = host
        self.port = port
        self._prefix = urlsplit(pki.publication_url).path.rstrip("/")
        self._requests: list[dict] = []
        self._lock = threading.Lock()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Bind and serve in a daemon thread (the bound port is in ``url``)."""
        if self._httpd is not None:
            raise RuntimeError("IGCPublicationServer already started")
        self._httpd = _Server((self.host, self.port), self._handler_class())
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"igc-publication:{self.port}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket; bounded by ``stop_timeout``. Idempotent."""
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        self._httpd = self._thread = None
        httpd.shutdown()
        httpd.server_close()
        if thread is not None:
            thread.join(self.stop_timeout)

    def dut_settings(self) -> dict:
        """What a DRIMbox under test needs to know: where IGC-Santé publishes CRLs and CA certificates."""
        return {"url": self.pki.publication_url}

    def __enter__(self) -> IGCPublicationServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL of the running server, e.g. ``http://127.0.0.1:40123``."""
        if self._httpd is None:
            raise RuntimeError("IGCPublicationServer is not running")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def url_for(self, cert_url: str) -> str:
        """Map a URL written in a certificate (CRL DP / AIA) to this server, keeping its path."""
        return self.url + urlsplit(cert_url).path

    # ------------------------------------------------------------------ request log

    @property
    def requests(self) -> list[dict]:
        """Snapshot of recorded requests: time (aware UTC), client, client_port, method, path, status, user_agent."""
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def _record(self, entry: dict) -> None:
        with self._lock:
            self._requests.append(entry)

    # ------------------------------------------------------------------ HTTP

    def _lookup(self, path: str) -> bytes | None:
        if self._prefix:
            if not path.startswith(self._prefix + "/"):
                return None
            path = path[len(self._prefix) :]
        return self.pki.published(path)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        sim = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "drimcheck-igc/1"
            timeout = sim.request_timeout  # socket timeout: a silent client cannot hold a thread forever

            def setup(self) -> None:
                super().setup()
                # nor can a client trickling one byte at a time: the socket is shut down at the deadline
                self._deadline = threading.Timer(sim.connection_deadline, self._expire)
                self._deadline.daemon = True
                self._deadline.start()

            def _expire(self) -> None:
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

            def finish(self) -> None:
                self._deadline.cancel()
                super().finish()

            def _serve(self, send_body: bool) -> None:
                path = urlsplit(self.path).path
                try:
                    body = sim._lookup(path)
                except PublicationUnavailable:  # a CRL that must not be obtainable (fixtures.pki.CRL_FAULTS)
                    body, status = b"service unavailable\n", 503
                    ctype = "text/plain"
                except Exception:  # noqa: BLE001 - a PKI failure must surface as 500, not kill the handler silently
                    body, status = b"internal error\n", 500
                    ctype = "text/plain"
                else:
                    if body is None:
                        body, status, ctype = b"not found\n", 404, "text/plain"
                    else:
                        status = 200
                        ctype = _CONTENT_TYPES.get(path[path.rfind(".") :], "application/octet-stream")
                self._log(status)
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                if send_body:
                    self.wfile.write(body)

            def do_GET(self) -> None:
                self._serve(send_body=True)

            def do_HEAD(self) -> None:
                self._serve(send_body=False)

            def _not_allowed(self) -> None:
                self._log(405)
                self.send_response(405)
                self.send_header("Allow", "GET, HEAD")
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed

            def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
                # stdlib-generated errors (malformed request line, unknown method...) are recorded too
                self._log(code)
                super().send_error(code, message, explain)

            def _log(self, status: int) -> None:
                headers = getattr(self, "headers", None)
                sim._record(
                    {
                        "time": datetime.now(UTC),
                        "client": self.client_address[0],
                        "client_port": self.client_address[1],
                        "method": getattr(self, "command", None),
                        "path": getattr(self, "path", None),
                        "status": status,
                        "user_agent": headers.get("User-Agent") if headers is not None else None,
                    }
                )

            def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
                pass

        return Handler


def start_for_campaign(runtime) -> IGCPublicationServer:
    """Campaign hook: publish the run's PKI (CRL, CA certificates) in plain HTTP where the certificates say."""
    addr = runtime.simulator_address("igc")
    server = IGCPublicationServer(runtime.pki, host=addr.host, port=addr.port)
    server.start()
    return server
