"""Campaign server (issue 14) on SQLite: accounts and tokens, 401/404 isolation, sut.toml policy (no shell
hooks), upload caps, package verification, HTTP hook actions, and campaigns run by two worker processes.

Shared checks with the PostgreSQL run: tests/serversupport.py.
"""

from __future__ import annotations

import http.server
import io
import json
import subprocess
import threading
import zipfile

import pytest
from fastapi import Request
from serversupport import (
    HTTP_HOOKS,
    check_auth,
    check_bad_requests,
    check_campaign_flow,
    check_isolation,
    drimcheck,
    external_sut,
    server,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    data = tmp_path_factory.mktemp("server")
    with server(f"sqlite:///{data / 'drimcheck.db'}", data) as s:
        yield s


def test_users_add_prints_the_token_last_and_refuses_duplicates(srv):
    from drimcheck.server import db, services

    proc = drimcheck("users", "add", "dora", "--role", "ans", "--password-stdin", "--db", srv.url,
                     "--data", str(srv.data), stdin="correct horse battery\n")
    assert proc.returncode == 0, proc.stderr
    token = proc.stdout.split()[-1]
    assert "Jeton d'API" in proc.stdout and "correct horse" not in proc.stdout
    with db.session_scope(srv.url, srv.data) as session:
        assert services.authenticate(session, "dora", "correct horse battery").role == "ans"
        assert services.authenticate(session, "dora", "wrong") is None
        assert services.authenticate(session, "nobody", "x") is None
        assert services.user_for_token(session, token).name == "dora"
    again = drimcheck("users", "add", "dora", "--role", "editor", "--db", srv.url, "--data", str(srv.data))
    assert again.returncode == 2 and again.stderr == "drimcheck : erreur : l'utilisateur « dora » existe déjà\n"
    bad = drimcheck("users", "add", "eve", "--role", "root", "--db", srv.url, "--data", str(srv.data))
    assert bad.returncode == 2 and "choix invalide" in bad.stderr and "Traceback" not in bad.stderr
    url = drimcheck("users", "add", "eve", "--role", "editor", "--db", "mysql://x@h/db", "--data", str(srv.data))
    assert url.returncode == 2 and "non prise en charge : mysql" in url.stderr


def test_api_requires_a_token(srv):
    check_auth(srv)


def test_an_editor_never_sees_another_editors_dut_or_campaign(srv):
    check_isolation(srv)


def test_bad_campaign_requests_are_refused_in_french(srv):
    check_bad_requests(srv)


def test_a_sut_toml_with_a_shell_hook_is_refused(srv):
    c, h = srv.client, srv.h("alice")
    shell = external_sut('[hooks]\nbefore_campaign = "curl -s https://admin.example/start"\n'
                         'after_campaign = "rm -rf /srv/drimbox"\n')
    r = c.post("/api/duts", json={"sut_toml": shell}, headers=h)
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert detail.startswith("[hooks] before_campaign : une commande shell est refusée par le serveur")
    assert 'before_campaign = { url = "https://' in detail
    # the same as a raw sut.toml body
    r = c.post("/api/duts", content=shell.encode(), headers={**h, "Content-Type": "application/toml"})
    assert r.status_code == 422 and "commande shell" in r.json()["detail"]
    # server files cannot be named either
    anchors = external_sut(HTTP_HOOKS).replace("[health]", '[tls]\ntrust_anchors = ["/etc/ssl/certs/ca.pem"]\n\n[health]')
    r = c.post("/api/duts", json={"sut_toml": anchors}, headers=h)
    assert r.status_code == 422 and r.json()["detail"].startswith("[tls] trust_anchors")
    other_kit = external_sut(HTTP_HOOKS).replace('kit = "kit"', 'kit = "../../duts/1/kit"')
    r = c.post("/api/duts", json={"sut_toml": other_kit}, headers=h)
    assert r.status_code == 422 and r.json()["detail"].startswith("[pki] kit")
    # validated as check-sut does: one line naming the key and the closest valid one
    typo = external_sut(HTTP_HOOKS).replace("[health]\nurl", "[health]\nulr")
    r = c.post("/api/duts", json={"sut_toml": typo}, headers=h)
    assert r.status_code == 422
    assert r.json()["detail"] == "sut.toml : clé inconnue [health] ulr (vouliez-vous dire url ?)"
    for hook, expected in (('{ url = "ftp://x/kpi" }', "[hooks] kpi url : URL https ou http"),
                           ('{ url = "https://x/kpi", method = "DELETE" }', "[hooks] kpi method : POST ou GET ou PUT"),
                           ('{ url = "https://x/kpi", timeout_s = 115 }', "[hooks] kpi timeout_s : au plus 110 s"),
                           ('{ url = "https://x/kpi", verify = false }', "clé inconnue [hooks] kpi verify"),
                           ('{ method = "GET" }', "[hooks] kpi url : valeur obligatoire manquante")):
        r = c.post("/api/duts", json={"sut_toml": external_sut(f"[hooks]\nkpi = {hook}\n")}, headers=h)
        assert r.status_code == 422 and expected in r.json()["detail"], (hook, r.json())
    # HTTP hook actions are accepted, and shown as such in the effective configuration
    r = c.post("/api/duts", content=external_sut(HTTP_HOOKS).encode(),
               headers={**h, "Content-Type": "application/toml"}, params={"name": "Ma DRIMbox"})
    assert r.status_code == 201, r.text
    assert r.json()["name"] == "Ma DRIMbox" and r.json()["version"] == "0.1.0"
    from drimcheck.config import parse

    sut = parse(external_sut(HTTP_HOOKS), "sut.toml")
    hooks = sut.effective()["hooks"]
    assert hooks["before_campaign"] == "POST https://admin.drimbox.example:8443/start"
    assert hooks["kpi"] == "GET http://admin.drimbox.example:9090/kpi"
    assert sut.hooks["kpi"].split()[1:3] == ["-m", "drimcheck.http_hook"]


def test_uploads_are_capped(srv, monkeypatch):
    from drimcheck.server import services

    c, h = srv.client, srv.h("alice")
    big = external_sut(HTTP_HOOKS) + "#" * (services.MAX_SUT_BYTES + 1) + "\n"
    r = c.post("/api/duts", json={"sut_toml": big}, headers=h)
    assert r.status_code == 413 and "trop volumineux" in r.json()["detail"]
    r = c.post("/api/duts", content=big.encode(), headers={**h, "Content-Type": "application/toml"})
    assert r.status_code == 413 and "trop volumineux" in r.json()["detail"]
    monkeypatch.setattr(services, "MAX_PACKAGE_BYTES", 4096)
    r = c.post("/api/packages/verify", content=b"PK" + b"\0" * 5000, headers=h)
    assert r.status_code == 413 and "paquet trop volumineux" in r.json()["detail"]
    assert c.post("/api/packages/verify", content=b"", headers=h).status_code == 422


def test_a_package_is_verified_on_upload(srv):
    c, h = srv.client, srv.h("ans")
    r = c.post("/api/packages/verify", content=b"pas une archive", headers=h)
    assert r.status_code == 200 and r.json()["verdict"] == "ILLISIBLE" and r.json()["valid"] is False
    for members, expected in (({"report.html": "<p>rapport</p>", "manifest.sha256": "0" * 64 + "  report.html\n"},
                               "report.html"),
                              ({"report.html": "x", "../evil.txt": "zip-slip"}, "zip-slip")):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for name, text in members.items():
                zf.writestr(name, text)
        r = c.post("/api/packages/verify", content=buf.getvalue(), headers=h)
        body = r.json()
        assert r.status_code == 200 and body["verdict"] == "NON VALIDE" and body["valid"] is False
        assert any(expected in p for p in body["problems"]), body["problems"]
    assert c.post("/api/packages/verify", content=buf.getvalue()).status_code == 401


def test_the_kit_of_a_dut_holds_no_ca_key(srv):
    c, h = srv.client, srv.h("alice")
    dut = c.post("/api/duts", json={"sut_toml": external_sut(HTTP_HOOKS)}, headers=h).json()["id"]
    r = c.get(f"/api/duts/{dut}/kit", headers=h)
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip", r.text[:500]
    names = zipfile.ZipFile(io.BytesIO(r.content)).namelist()
    assert "kit/dut-settings.json" in names and "kit/hosts" in names
    assert not any("harness" in n or "ca.key" in n for n in names), names
    settings = c.get(f"/api/duts/{dut}/dut-settings", headers=h).json()
    assert settings == json.loads(zipfile.ZipFile(io.BytesIO(r.content)).read("kit/dut-settings.json"))
    assert (srv.data / "duts" / str(dut) / "kit" / "harness").is_dir()  # the CA keys stay on the server


class _HookHandler(http.server.BaseHTTPRequestHandler):
    seen: list = []

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        type(self).seen.append((self.command, self.path, body))
        code = 500 if self.path == "/boom" else 200
        self.send_response(code)
        payload = b"ModelStat;1;2\n" if code == 200 else b"panne"
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _answer

    def log_message(self, *args) -> None:
        pass


def test_an_http_hook_action_sends_one_bounded_request_and_reports_failures(tmp_path):
    from drimcheck.config import parse

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HookHandler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    port = httpd.server_address[1]
    try:
        sut = parse(external_sut(f'[hooks]\nkpi = {{ url = "http://127.0.0.1:{port}/kpi", method = "GET" }}\n'
                                 f'export = {{ url = "http://127.0.0.1:{port}/export", timeout_s = 5 }}\n'
                                 f'refresh_whitelist = {{ url = "http://127.0.0.1:{port}/boom" }}\n'), "sut.toml")
        env = {"PATH": "/usr/bin:/bin", "DRIMCHECK_HOOK": "kpi", "DRIMCHECK_RUN_DIR": "/secret/run"}
        # the hook runner starts each as `sh -c COMMAND` (drimcheck.campaign.run_hook)
        kpi = subprocess.run(sut.hooks["kpi"], shell=True, env=env, capture_output=True, text=True, timeout=30)
        assert kpi.returncode == 0 and kpi.stdout == "ModelStat;1;2\n"
        export = subprocess.run(sut.hooks["export"], shell=True, capture_output=True, text=True, timeout=30,
                                env={**env, "DRIMCHECK_HOOK": "export", "DRIMCHECK_STUDY_UID": "1.2.3"})
        assert export.returncode == 0
        boom = subprocess.run(sut.hooks["refresh_whitelist"], shell=True, env=env, capture_output=True, text=True,
                              timeout=30)
        assert boom.returncode == 1 and f"POST http://127.0.0.1:{port}/boom : réponse HTTP 500" in boom.stderr
    finally:
        httpd.shutdown()
    methods = [(m, p) for m, p, _ in _HookHandler.seen]
    assert methods == [("GET", "/kpi"), ("POST", "/export"), ("POST", "/boom")]
    assert json.loads(_HookHandler.seen[1][2]) == {"hook": "export", "study_uid": "1.2.3"}  # no server path sent
    refused = subprocess.run(sut.hooks["kpi"].replace(f"{port}/kpi", "1/kpi"), shell=True, env=env,
                             capture_output=True, text=True, timeout=30)
    assert refused.returncode == 1 and "en échec" in refused.stderr


def test_campaigns_against_the_reference_with_two_workers(srv, capsys):
    timings = check_campaign_flow(srv)
    with capsys.disabled():
        print(f"\n[serveur SQLite] lancement -> verdict : référence {timings['reference']:.1f} s, "
              f"référence + mutant (2 workers) {timings['both']:.1f} s")


def test_max_running_counts_the_running_campaigns_of_the_whole_database(srv):
    """The claim of --max-running (one UPDATE counting the running campaigns); the two-worker run of it is in
    tests/test_server_pg.py."""
    from drimcheck.server import db, worker
    from drimcheck.server.models import Campaign

    with db.session_scope(srv.url, srv.data) as session:
        camps = [Campaign(owner_id=2, mode="full", requirements=[], status="queued", requirement_verdicts={})
                 for _ in range(3)]
        session.add_all(camps)
        session.flush()
        a, b, gone = (camp.id for camp in camps)
        camps[2].status = "error"
    assert worker._claim(srv.url, srv.data, a, max_running=1) == "claimed"
    assert worker._claim(srv.url, srv.data, b, max_running=1) == "busy"
    assert worker._claim(srv.url, srv.data, b, max_running=2) == "claimed"
    assert worker._claim(srv.url, srv.data, gone, max_running=5) == "gone"
    assert worker._claim(srv.url, srv.data, a) == "gone"  # already running
    with db.session_scope(srv.url, srv.data) as session:  # leave no running campaign for the other tests
        for cid in (a, b):
            session.get(Campaign, cid).status = "done"


def test_a_worker_marks_the_campaigns_of_a_vanished_worker_of_its_machine(srv):
    import socket

    from drimcheck.server import db, worker
    from drimcheck.server.models import Campaign

    dead = subprocess.Popen(["true"])
    dead.wait()
    host = socket.gethostname()
    with db.session_scope(srv.url, srv.data) as session:
        orphan = Campaign(owner_id=1, mode="full", requirements=[], status="running", worker=f"{host}:{dead.pid}",
                          requirement_verdicts={})
        elsewhere = Campaign(owner_id=1, mode="full", requirements=[], status="running", worker="autre-machine:1",
                             requirement_verdicts={})
        session.add_all([orphan, elsewhere])
        session.flush()
        ids = orphan.id, elsewhere.id
    assert worker.reap_orphans(srv.url, srv.data) == 1
    c, h = srv.client, srv.h("alice")
    gone = c.get(f"/api/campaigns/{ids[0]}", headers=h).json()
    assert gone["status"] == "error" and gone["error"] == f"campagne interrompue : le worker {host}:{dead.pid} a disparu"
    assert c.get(f"/api/campaigns/{ids[1]}", headers=h).json()["status"] == "running"  # not judged from here
    with db.session_scope(srv.url, srv.data) as session:  # leave no running campaign for the other tests
        session.get(Campaign, ids[1]).status = "error"


def test_no_request_body_goes_past_the_global_cap_declared_or_not():
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from drimcheck.server.app import BodyLimit

    inner = FastAPI()

    @inner.post("/echo")
    async def echo(request: Request):
        return {"size": len(await request.body())}

    client = TestClient(BodyLimit(inner, limit=1000))
    assert client.post("/echo", content=b"x" * 1000).json() == {"size": 1000}
    r = client.post("/echo", content=b"x" * 1001)  # Content-Length says it: refused before reading
    assert r.status_code == 413 and r.json()["detail"] == "envoi trop volumineux : au plus 1000 octets"
    r = client.post("/echo", content=iter([b"x" * 600, b"x" * 600]))  # chunked: counted while read
    assert r.status_code == 413 and "au plus 1000 octets" in r.json()["detail"]
