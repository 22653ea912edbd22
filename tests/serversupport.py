"""Helpers shared by the campaign-server tests on SQLite and PostgreSQL (imported, not collected).

The checks themselves live here too (functions taking a running server), so the SQLite and PostgreSQL test
files run the same assertions against their own database.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXTERNAL_SUT = REPO / "examples" / "external-dut" / "sut.toml"
HTTP_HOOKS = """[hooks]
before_campaign = { url = "https://admin.drimbox.example:8443/start" }
refresh_whitelist = { url = "https://admin.drimbox.example:8443/refresh-whitelist", method = "POST", timeout_s = 60 }
kpi = { url = "http://admin.drimbox.example:9090/kpi", method = "GET", verify_tls = false }
"""


def drimcheck(*args: str, stdin: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "drimcheck", *args], capture_output=True, text=True, input=stdin,
                          timeout=timeout, cwd=REPO)


def users_add(url: str, data: Path, name: str, role: str) -> str:
    """`drimcheck users add`: the API token, which must be the last word of the output."""
    proc = drimcheck("users", "add", name, "--role", role, "--db", url, "--data", str(data))
    assert proc.returncode == 0, proc.stderr
    token = proc.stdout.split()[-1]
    assert token.startswith("dck_") and len(token) > 40, proc.stdout
    return token


def external_sut(hooks: str) -> str:
    """The external-DUT example's sut.toml with its [hooks] section replaced (kit: the server's own), and its
    fixed ports (246xx) moved to free ones: making a kit binds the simulators' addresses, and other tests
    (test_external_dut) may hold the example's ports at the same time."""
    text = EXTERNAL_SUT.read_text(encoding="utf-8")
    head, sep, tail = text.partition("[hooks]")
    assert sep, "the example has a [hooks] section"
    rest = tail[tail.index("\n[simulators]"):]
    ports: dict[str, str] = {}

    def moved(m: re.Match) -> str:
        while m.group(0) not in ports:
            port = str(free_port())
            if port not in ports.values():
                ports[m.group(0)] = port
        return ports[m.group(0)]

    return re.sub(r"\b246\d\d\b", moved, head + hooks + rest)


@dataclass
class Server:
    client: object  # fastapi.testclient.TestClient
    url: str
    data: Path
    tokens: dict[str, str] = field(default_factory=dict)

    def h(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}


@contextmanager
def server(url: str, data: Path) -> Iterator[Server]:
    from fastapi.testclient import TestClient

    from drimcheck.server.app import create_app

    app = create_app(url, data)  # migrations applied here, before any other process uses the database
    srv = Server(TestClient(app), url, data)
    for name, role in (("alice", "editor"), ("bob", "editor"), ("ans", "ans")):
        srv.tokens[name] = users_add(url, data, name, role)
    yield srv


# ------------------------------------------------------------------------------------------- workers

@dataclass
class Worker:
    proc: subprocess.Popen
    log: Path

    @property
    def name(self) -> str:
        return f"{socket.gethostname()}:{self.proc.pid}"

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


def start_workers(url: str, data: Path, n: int, timeout: float = 30, extra: tuple[str, ...] = ()) -> list[Worker]:
    workers = []
    for i in range(n):
        log = data / f"worker-{i}.log"
        with open(log, "wb") as f:
            proc = subprocess.Popen([sys.executable, "-m", "drimcheck", "worker", "--db", url, "--data", str(data),
                                     *extra],
                                    stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO,
                                    start_new_session=True)
        workers.append(Worker(proc, log))
    deadline = time.monotonic() + timeout
    try:
        while not all("consumer started" in w.text() for w in workers):
            for w in workers:
                assert w.proc.poll() is None, w.text()
            assert time.monotonic() < deadline, [w.text() for w in workers]
            time.sleep(0.2)
    except BaseException:
        stop_workers(workers)
        raise
    return workers


def stop_workers(workers: list[Worker]) -> None:
    for w in workers:
        if w.proc.poll() is None:
            os.killpg(w.proc.pid, signal.SIGTERM)
    for w in workers:
        try:
            w.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(w.proc.pid, signal.SIGKILL)
            w.proc.wait()


def wait_campaign(srv: Server, who: str, cid: int, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        r = srv.client.get(f"/api/campaigns/{cid}", headers=srv.h(who))
        assert r.status_code == 200, r.text
        body = r.json()
        if body["status"] in ("done", "error"):
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.3)


# ------------------------------------------------------------------------------------------- checks

def check_auth(srv: Server) -> None:
    c = srv.client
    r = c.get("/api/campaigns/1")
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert "jeton" in r.json()["detail"]
    assert c.post("/api/campaigns", json={"dut": "reference", "mode": "full"}).status_code == 401
    assert c.get("/api/duts", headers={"Authorization": "Bearer dck_faux"}).status_code == 401
    assert c.get("/api/duts", headers={"Authorization": f"Basic {srv.tokens['alice']}"}).status_code == 401
    assert c.get("/api/me", headers=srv.h("alice")).json() == {"id": 1, "name": "alice", "role": "editor"}
    # tokens and passwords are stored hashed: no clear token in the database
    from sqlalchemy import select

    from drimcheck.server import db
    from drimcheck.server.models import User

    with db.session_scope(srv.url, srv.data) as session:
        users = list(session.scalars(select(User)))
    assert {"alice", "bob", "ans"} <= {u.name for u in users}
    for u in users:
        assert u.token_hash not in srv.tokens.values() and len(u.token_hash or "") == 64
        assert u.password_hash.startswith("scrypt$")


def check_isolation(srv: Server) -> None:
    """Editor bob gets 404 on alice's DUT and campaign; ANS sees both."""
    c = srv.client
    r = c.post("/api/duts", json={"sut_toml": external_sut(HTTP_HOOKS), "version": "2.1"}, headers=srv.h("alice"))
    assert r.status_code == 201, r.text
    dut = r.json()["id"]
    r = c.post("/api/campaigns", json={"dut": dut, "mode": "partial", "requirements": ["HLT-01"]},
               headers=srv.h("alice"))
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    for path in (f"/api/campaigns/{cid}", f"/api/campaigns/{cid}/report", f"/api/campaigns/{cid}/package",
                 f"/api/duts/{dut}", f"/api/duts/{dut}/kit", f"/api/duts/{dut}/dut-settings"):
        r = c.get(path, headers=srv.h("bob"))
        assert r.status_code == 404, (path, r.status_code)
        assert "introuvable" in r.json()["detail"] or "pas de" in r.json()["detail"]
    r = c.post("/api/campaigns", json={"dut": dut, "mode": "full"}, headers=srv.h("bob"))
    assert r.status_code == 404
    assert c.get("/api/campaigns", headers=srv.h("bob")).json() == []
    assert c.get("/api/duts", headers=srv.h("bob")).json() == []
    assert c.get(f"/api/compare?a={cid}&b={cid}", headers=srv.h("bob")).status_code == 404
    # the owner and ANS see them
    assert c.get(f"/api/campaigns/{cid}", headers=srv.h("alice")).json()["status"] == "queued"
    assert c.get(f"/api/campaigns/{cid}", headers=srv.h("ans")).json()["dut"] == dut
    assert dut in [d["id"] for d in c.get("/api/duts", headers=srv.h("ans")).json()]
    # bob cannot cancel it; alice can, once (a worker taking its job later skips it)
    assert c.post(f"/api/campaigns/{cid}/cancel", headers=srv.h("bob")).status_code == 404
    r = c.post(f"/api/campaigns/{cid}/cancel", headers=srv.h("alice"))
    assert r.status_code == 200 and r.json()["status"] == "error" and r.json()["error"] == "campagne annulée par alice"
    r = c.post(f"/api/campaigns/{cid}/cancel", headers=srv.h("alice"))
    assert r.status_code == 409 and "seule une campagne en attente" in r.json()["detail"]
    assert c.get("/api/dashboard", headers=srv.h("bob")).status_code == 403
    rows = c.get("/api/dashboard", headers=srv.h("ans")).json()
    assert [(row["editor"], row["version"]) for row in rows if row["dut_id"] == dut] == [("alice", "2.1")]


def check_bad_requests(srv: Server) -> None:
    c, h = srv.client, srv.h("alice")
    cases = [({"dut": "reference", "mode": "partial", "requirements": []}, "au moins une exigence"),
             ({"dut": "reference", "mode": "partial", "requirements": ["NOPE-1"]}, "exigence(s) inconnue(s) : NOPE-1"),
             ({"dut": "reference", "mode": "full", "requirements": ["HLT-01"]}, "requirements doit être vide"),
             ({"dut": "reference", "mode": "rapide"}, "mode inconnu"),
             ({"dut": "reference", "mode": "full", "mutant": "pas-un-mutant"}, "mutant inconnu"),
             ({"dut": [1], "mode": "full"}, "« dut »")]
    for body, expected in cases:
        r = c.post("/api/campaigns", json=body, headers=h)
        assert r.status_code == 422 and expected in r.json()["detail"], (body, r.text)
    assert c.post("/api/campaigns", content=b"{pas du json", headers=h).status_code == 422


def check_campaign_flow(srv: Server) -> dict:
    """A partial campaign against the embedded reference, and the same under a mutant, with two worker processes:
    each is taken by exactly one worker, the reference ends CONFORME with per-requirement verdicts, the mutant
    NON CONFORME. Returns timings (s) for the report."""
    c, h = srv.client, srv.h("alice")
    workers = start_workers(srv.url, srv.data, 2)
    try:
        t0 = time.monotonic()
        good = c.post("/api/campaigns", json={"dut": "reference", "mode": "partial", "requirements": ["HLT-01"]},
                      headers=h).json()["id"]
        bad = c.post("/api/campaigns", json={"dut": "reference", "mode": "partial", "requirements": ["HLT-01"],
                                             "mutant": "health-always-down"}, headers=h).json()["id"]
        g = wait_campaign(srv, "alice", good)
        t_good = time.monotonic() - t0
        b = wait_campaign(srv, "alice", bad)
        t_both = time.monotonic() - t0
        logs = {w.name: w.text() for w in workers}
    finally:
        stop_workers(workers)
    assert g["status"] == "done", g
    assert g["verdict"].startswith("CONFORME (campagne partielle"), g
    assert g["exit_code"] == 0
    assert g["requirement_verdicts"]["HLT-01"] == "PASS"
    assert set(g["requirement_verdicts"].values()) == {"PASS"}
    assert b["status"] == "done", b
    assert "NON CONFORME" in b["verdict"] and b["verdict"].startswith("mutant health-always-down"), b
    assert b["exit_code"] == 1
    assert b["requirement_verdicts"]["HLT-01"] == "FAIL"
    # each campaign was run by exactly one of the two workers, and both workers took one
    assert {g["worker"], b["worker"]} == set(logs), (g["worker"], b["worker"], list(logs))
    for cid, camp in ((good, g), (bad, b)):
        runs = [name for name, text in logs.items() if re.search(rf"campagne {cid} : (done|error)", text)]
        assert runs == [camp["worker"]], (cid, runs)
    # links: report, results, evidence; no package for a partial campaign
    assert g["links"]["package"] is None
    r = c.get(g["links"]["report"], headers=h)
    assert r.status_code == 200 and "CONFORME" in r.text
    assert r.headers["content-security-policy"].startswith("sandbox allow-scripts")  # an opaque origin
    results = c.get(g["links"]["results"], headers=h).json()
    assert results["run"]["verdict"] == g["verdict"]
    assert c.get(g["links"]["report"], headers=srv.h("bob")).status_code == 404
    diff = c.get(f"/api/compare?a={good}&b={bad}", headers=h).json()
    assert diff["verdict"] == "RÉGRESSION" and "HLT-01" in [row["id"] for row in diff["regressed"]]
    return {"reference": t_good, "both": t_both}


def check_worker_stop(srv: Server) -> None:
    """SIGTERM to a worker while it runs a campaign: the campaign's processes are stopped, it ends "error"."""
    c, h = srv.client, srv.h("alice")
    workers = start_workers(srv.url, srv.data, 1)
    try:
        cid = c.post("/api/campaigns", json={"dut": "reference", "mode": "partial", "requirements": ["HLT-01"]},
                     headers=h).json()["id"]
        deadline = time.monotonic() + 30
        while c.get(f"/api/campaigns/{cid}", headers=h).json()["status"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        time.sleep(2)  # the campaign's Orthanc and reference DRIMbox are starting
        t0 = time.monotonic()
    finally:
        stop_workers(workers)
    assert time.monotonic() - t0 < 15
    body = c.get(f"/api/campaigns/{cid}", headers=h).json()
    assert body["status"] == "error" and body["error"] == "campagne interrompue (arrêt du worker)", body
    marker = f"{srv.data}/runs/{cid}"
    left = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
    assert left.stdout == "", left.stdout


def check_max_running(srv: Server) -> None:
    """Two workers, `--max-running 1`: two campaigns run one after the other, whichever worker takes them."""
    from drimcheck.server import db
    from drimcheck.server.models import Campaign

    c, h = srv.client, srv.h("alice")
    workers = start_workers(srv.url, srv.data, 2, extra=("--max-running", "1"))
    try:
        ids = [c.post("/api/campaigns", json={"dut": "reference", "mode": "partial", "requirements": ["HLT-01"]},
                      headers=h).json()["id"] for _ in range(2)]
        bodies = [wait_campaign(srv, "alice", cid) for cid in ids]
        logs = "".join(w.text() for w in workers)
    finally:
        stop_workers(workers)
    assert [b["status"] for b in bodies] == ["done", "done"], bodies
    with db.session_scope(srv.url, srv.data) as session:
        spans = sorted((camp.started_at, camp.finished_at) for camp in (session.get(Campaign, i) for i in ids))
    assert spans[0][1] <= spans[1][0], spans  # never both running
    assert "raised RetryTask" in logs  # the second one waited in the queue, not in a worker


# ------------------------------------------------------------------------------------------- PostgreSQL

def _pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def pg_cluster() -> Iterator[str]:
    """A throwaway PostgreSQL cluster (Debian's binaries) on a free loopback port; yields its URL.

    initdb refuses to run as root: as root the cluster belongs to `nobody` (runuser), in a private temporary
    directory; trust authentication on loopback only; fsync off (a test database)."""
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL absent (paquet Debian postgresql, Makefile APT_PACKAGES)")
    root = Path(tempfile.mkdtemp(prefix="drimcheck-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "nobody")
        as_user = ["runuser", "-u", "nobody", "--"]
    os.chmod(root, 0o700)
    port = free_port()
    data = root / "data"

    def run(*cmd: str) -> None:
        proc = subprocess.run([*as_user, *cmd], capture_output=True, text=True, timeout=60, cwd=root)
        assert proc.returncode == 0, proc.stdout + proc.stderr

    try:
        run(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "drimcheck", "-E", "UTF8", "--no-sync")
        run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "postgres.log"), "-w", "-t", "30", "-o",
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
        run(str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "drimcheck", "drimcheck")
        yield f"postgresql://drimcheck@127.0.0.1:{port}/drimcheck"
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                           capture_output=True, timeout=60, cwd=root)
        shutil.rmtree(root, ignore_errors=True)


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]
