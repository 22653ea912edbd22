"""Measurement: peak memory and wall time of a campaign against each kind of hostile DUT (issue 11).

Usage: .venv/bin/python bench/hostile_dut.py [--req HLT-01] [--request-s 5] [--kind NAME ...]

For each kind, a small server on loopback plays the DUT's dbN FQDN over TLS (certificate of a test
PKI): it answers the campaign's preflight like a healthy DRIMbox (200, status UP), then misbehaves on
every later connection (never answers, streams forever, 2 GB body, gzip bomb, one byte a second,
endless headers, garbage TLS). A campaign (`drimcheck run --sut <external sut.toml> --req ...`) runs
in a subprocess; its peak RSS (VmHWM, sampled from /proc) and wall time are printed, with its exit
code and verdicts. Not a test: figures depend on the machine. Writes runs/bench/hostile_dut.json.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests import test_hostile_client as hostile  # noqa: E402  (the hostile servers of the test suite)

HEALTHY = json.dumps({"status": "UP", "checks": [{"name": "PACS", "status": "UP"}]}).encode()


def healthy(conn: socket.socket, server: hostile.HostileServer) -> None:
    hostile.answer(200, [("Content-Type", "application/json")], HEALTHY)(conn, server)


def garbage_after_handshake(conn: socket.socket, server: hostile.HostileServer) -> None:
    """Garbage instead of HTTP, inside TLS (the TLS handshake itself is healthy)."""
    server.read_head(conn)
    conn.sendall(bytes(range(256)) * 64)
    server.stop.wait(10)


# kind -> (behaviour, raw): raw behaviours get the TCP connection itself (no TLS on our side)
KINDS = {
    "jamais-de-reponse": (hostile.never_answers, False),
    "flux-sans-fin": (hostile.streams_forever, False),
    "corps-de-2-Go": (hostile.huge_content_length, False),
    "bombe-gzip-2-Go": (hostile.compression_bomb(), False),
    "un-octet-par-seconde": (hostile.trickles, False),
    "en-tetes-sans-fin": (hostile.huge_headers, False),
    "charabia-apres-TLS": (garbage_after_handshake, False),
    "charabia-TLS": (hostile.garbage_tls, True),
    "TLS-muet": (hostile.silent_tls, True),
}


class AfterPreflight:
    """TLS and a healthy answer on the first connection (the preflight), then `behaviour` on every other one."""

    def __init__(self, behaviour, tls, raw: bool):
        self.behaviour, self.tls, self.raw = behaviour, tls, raw
        self.count = 0
        self.lock = threading.Lock()

    def __call__(self, conn, server):
        with self.lock:
            self.count += 1
            first = self.count == 1
        if first or not self.raw:
            conn.settimeout(5)
            conn = self.tls.wrap_socket(conn, server_side=True)
            server._conns.append(conn)
        (healthy if first else self.behaviour)(conn, server)


def run_one(kind: str, tls, work: Path, reqs: list[str], request_s: float) -> dict:
    behaviour, raw = KINDS[kind]
    with hostile.HostileServer(AfterPreflight(behaviour, tls, raw)) as server:
        sut = work / f"{kind}.toml"
        sut.write_text(hostile.external_sut_text(server.port, request_s))
        out = REPO / "runs" / "bench" / "hostile_dut" / kind
        cmd = [sys.executable, "-m", "drimcheck", "run", "--sut", str(sut), "--out", str(out), "--quiet"]
        for r in reqs:
            cmd += ["--req", r]
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        code, peak = hostile._peak_rss_of(proc)
        wall = time.monotonic() - t0
        err = proc.stderr.read().decode(errors="replace").strip().splitlines()
        proc.stderr.close()
        connections = server.accepted
    verdicts: dict[str, int] = {}
    errors = []
    try:
        data = json.loads((out / "results.json").read_text())
        for s in data["scenarios"]:
            verdicts[s["verdict"]] = verdicts.get(s["verdict"], 0) + 1
            if s.get("error"):
                errors.append(s["error"])
            errors += [f["message"] for f in s.get("findings") or [] if f.get("verdict") not in ("PASS", "SKIP")]
    except (OSError, ValueError):
        pass
    reports = all((out / n).is_file() for n in ("results.json", "junit.xml", "report.html"))
    return {"kind": kind, "exit": code, "wall_s": round(wall, 2), "peak_rss_mb": round(peak / 1e6, 1),
            "connections": connections, "reports": reports, "verdicts": verdicts,
            "first_error": (errors[0] if errors else (err[-1] if err else ""))[:160]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--req", action="append", help="requirement(s) to run (default HLT-01)")
    parser.add_argument("--request-s", type=float, default=5.0)
    parser.add_argument("--kind", action="append", choices=sorted(KINDS))
    args = parser.parse_args()
    reqs = args.req or ["HLT-01"]
    from fixtures.pki import TestPKI

    rows = []
    with tempfile.TemporaryDirectory(prefix="drimcheck-bench-hostile-") as tmp:
        work = Path(tmp)
        tls = TestPKI(work / "pki").serv_ssl(hostile.FQDN).server_context()
        for kind in args.kind or list(KINDS):
            row = run_one(kind, tls, work, reqs, args.request_s)
            rows.append(row)
            print(f"{kind:22s} exit {row['exit']}  wall {row['wall_s']:6.2f} s  peak RSS {row['peak_rss_mb']:6.1f} MB  "
                  f"reports {'oui' if row['reports'] else 'NON'}  {row['verdicts']}  {row['first_error']}", flush=True)
    out = REPO / "runs" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    (out / "hostile_dut.json").write_text(json.dumps({"req": reqs, "request_s": args.request_s, "runs": rows},
                                                     indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
