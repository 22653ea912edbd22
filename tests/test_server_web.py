"""The web pages of the campaign server (drimcheck/server/web.py) through Starlette's TestClient, on a SQLite file.

Login and session cookie, CSRF refusal on every kind of POST, isolation between two editors (404, never the
other editor's data), the ANS pages (403 to an editor), and the evidence of a real campaign: the CLI runs
a mutant of the reference once for the module (CLR-01 and CRT-03, ~7 s) and the campaign row points at its run
directory, as a worker would leave it. One test (slow, ~40 s) runs a referencing campaign through a real
worker, downloads its package and has ANS verify it; the browser path is tests/test_server_browser.py.
"""

from __future__ import annotations

import html
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from drimcheck import config
from drimcheck.server import services, web
from drimcheck.server.app import create_app
from drimcheck.server.models import Campaign

REPO = Path(__file__).resolve().parent.parent
PASSWORDS = {"alice": "mot-de-passe-alice", "bob": "mot-de-passe-bob", "agent": "mot-de-passe-ans"}
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture(scope="module")
def mutant_run(tmp_path_factory) -> Path:
    """A real campaign: the reference with mutant vin-plain-http on CLR-01 and CRT-03 (CLR-01 FAIL, the rest PASS)."""
    out = tmp_path_factory.mktemp("web-run") / "run"
    proc = subprocess.run([sys.executable, "-m", "drimcheck", "run", "--mutant", "vin-plain-http", "--req", "CLR-01",
                           "--req", "CRT-03", "--out", str(out), "--quiet"], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    return out


@pytest.fixture
def app(tmp_path):
    application = create_app(f"sqlite:///{tmp_path / 'drimcheck.db'}", tmp_path / "data")
    with application.state.sessions() as s:
        services.create_user(s, "alice", "editor", PASSWORDS["alice"])
        services.create_user(s, "bob", "editor", PASSWORDS["bob"])
        services.create_user(s, "agent", "ans", PASSWORDS["agent"])
    return application


def client(app, base_url: str = "http://testserver") -> TestClient:
    return TestClient(app, base_url=base_url, follow_redirects=False)


def text(response) -> str:
    """The page as a reader sees it (entities decoded: d&#39;Alice -> d'Alice)."""
    return html.unescape(response.text)


def csrf_of(c: TestClient, page: str = "/connexion") -> str:
    found = CSRF.search(c.get(page).text)
    assert found, f"pas de jeton CSRF dans {page}"
    return found.group(1)


def logged_in(app, name: str) -> TestClient:
    c = client(app)
    r = c.post("/connexion", data={"csrf": csrf_of(c), "nom": name, "mot_de_passe": PASSWORDS[name]})
    assert r.status_code == 303, text(r)
    return c


def user_id(app, name: str) -> int:
    from sqlalchemy import select

    from drimcheck.server.models import User

    with app.state.sessions() as s:
        return s.scalar(select(User.id).where(User.name == name))


def register(c: TestClient, name: str, text: str | None = None):
    return c.post("/drimbox/nouvelle", data={"csrf": csrf_of(c, "/drimbox/nouvelle"), "nom": name, "version": "1.0",
                                             "sut_toml": config.template_text() if text is None else text})


def add_done_campaign(app, owner: str, run_dir: Path) -> int:
    """The campaign row a worker leaves after running the CLI into run_dir."""
    data = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
    with app.state.sessions() as s:
        c = Campaign(owner_id=user_id(app, owner), dut_id=None, mode="partial", requirements=["CLR-01", "CRT-03"],
                     mutant="vin-plain-http", status="done", verdict=data["run"]["verdict"],
                     exit_code=data["run"]["exit_code"], run_dir=str(run_dir),
                     requirement_verdicts={r["id"]: r["verdict"] for r in data["requirements"]})
        s.add(c)
        s.commit()
        return c.id


def first_evidence(run_dir: Path) -> str:
    data = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
    return next(e for s in data["scenarios"] for f in s["findings"] for e in f["evidence"])


# ------------------------------------------------------------------------------------------------ login


def test_signed_out_visitor_is_sent_to_the_login_page_in_french(app):
    c = client(app)
    r = c.get("/campagnes?drimbox=reference")
    assert r.status_code == 303 and r.headers["location"] == "/connexion?suite=%2Fcampagnes%3Fdrimbox%3Dreference"
    page = c.get(r.headers["location"])
    assert page.status_code == 200 and '<html lang="fr">' in text(page)
    assert "Nom d'utilisateur" in text(page) and "Mot de passe" in text(page) and "Se connecter" in text(page)
    assert page.headers["content-security-policy"].startswith("default-src 'none'")


def test_login_sets_a_signed_httponly_lax_cookie_and_goes_back_where_asked(app):
    c = client(app)
    r = c.post("/connexion", data={"csrf": csrf_of(c), "nom": "alice", "mot_de_passe": PASSWORDS["alice"],
                                   "suite": "/campagnes"})
    assert r.status_code == 303 and r.headers["location"] == "/campagnes"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{web.COOKIE}=") and "HttpOnly" in cookie and "samesite=lax" in cookie.lower()
    assert "secure" not in cookie.lower()  # plain HTTP here: a Secure cookie would never come back
    home = c.get("/")
    assert home.status_code == 200 and "Bonjour alice" in text(home) and "Se déconnecter" in text(home)


def test_cookie_is_secure_over_https(app):
    c = client(app, "https://testserver")
    r = c.post("/connexion", data={"csrf": csrf_of(c), "nom": "alice", "mot_de_passe": PASSWORDS["alice"]})
    assert r.status_code == 303 and "secure" in r.headers["set-cookie"].lower().split("; ")


def test_wrong_password_is_refused_without_saying_which_part_is_wrong(app):
    c = client(app)
    for name, password in (("alice", "mauvais"), ("inconnu", "mauvais")):
        r = c.post("/connexion", data={"csrf": csrf_of(c), "nom": name, "mot_de_passe": password})
        assert r.status_code == 401 and "Nom d'utilisateur ou mot de passe incorrect." in text(r)
    assert c.get("/").status_code == 303


def test_repeated_failed_logins_are_braked(app):
    c = client(app)
    for _ in range(web.LOGIN_MAX_FAILURES):
        assert c.post("/connexion", data={"csrf": csrf_of(c), "nom": "alice", "mot_de_passe": "devine"}).status_code == 401
    r = c.post("/connexion", data={"csrf": csrf_of(c), "nom": "alice", "mot_de_passe": PASSWORDS["alice"]})
    assert r.status_code == 429 and "Trop de tentatives de connexion échouées : réessayez dans" in text(r)
    assert c.get("/").status_code == 303
    # another account is not locked by it
    assert c.post("/connexion", data={"csrf": csrf_of(c), "nom": "bob", "mot_de_passe": PASSWORDS["bob"]}).status_code == 303


def test_login_never_redirects_to_another_site(app):
    for target in ("//exemple.org/", "https://exemple.org/", "/\\exemple.org"):
        c = client(app)
        r = c.post("/connexion", data={"csrf": csrf_of(c), "nom": "bob", "mot_de_passe": PASSWORDS["bob"],
                                       "suite": target})
        assert r.status_code == 303 and r.headers["location"] == "/", target


def test_a_forged_or_altered_cookie_is_no_session(app):
    c = logged_in(app, "alice")
    value = c.cookies[web.COOKIE]
    body, mac = value.split(".")
    forged = web.sign_session(b"une autre cle", json.loads(web._unb64(body)))
    for bad in (forged, body + "." + mac[:-2] + ("AA" if not mac.endswith("AA") else "BB"), "n'importe quoi"):
        c.cookies.set(web.COOKIE, bad)
        assert c.get("/").status_code == 303, bad


def test_logout_ends_the_session(app):
    c = logged_in(app, "alice")
    r = c.post("/deconnexion", data={"csrf": csrf_of(c, "/")})
    assert r.status_code == 303 and r.headers["location"] == "/connexion"
    assert c.get("/").status_code == 303


# ------------------------------------------------------------------------------------------------ CSRF


@pytest.mark.parametrize("path", ["/connexion", "/deconnexion", "/drimbox/nouvelle", "/drimbox/1/sut", "/campagnes",
                                  "/campagnes/1/annuler", "/ans/paquet"])
def test_every_post_without_the_right_csrf_token_is_refused_403(app, path):
    c = logged_in(app, "agent")
    token = csrf_of(c, "/")
    for data in ({}, {"csrf": ""}, {"csrf": token[:-1] + ("A" if token[-1] != "A" else "B")}):
        r = c.post(path, data={**data, "nom": "agent", "mot_de_passe": PASSWORDS["agent"], "drimbox": "reference",
                               "mode": "full", "sut_toml": config.template_text()})
        assert r.status_code == 403 and "Jeton CSRF absent ou invalide" in text(r), (path, data)
    # a token from another session is no better
    other = client(app)
    assert c.post(path, data={"csrf": csrf_of(other)}).status_code == 403
    with app.state.sessions() as s:
        assert s.query(Campaign).count() == 0 and services.list_duts(s, _user(s, "agent")) == []


def _user(s, name):
    from sqlalchemy import select

    from drimcheck.server.models import User

    return s.scalar(select(User).where(User.name == name))


# ------------------------------------------------------------------------------------------------ DRIMbox


def test_register_a_drimbox_then_download_its_kit_and_settings(app):
    c = logged_in(app, "alice")
    r = register(c, "Ma DRIMbox")
    assert r.status_code == 303 and re.fullmatch(r"/drimbox/\d+", r.headers["location"])
    page = c.get(r.headers["location"])
    assert page.status_code == 200 and "Ma DRIMbox" in text(page) and "Télécharger le kit de test" in text(page)
    kit = c.get(r.headers["location"] + "/kit.zip")
    assert kit.status_code == 200 and kit.headers["content-type"] == "application/zip" and kit.content[:2] == b"PK"
    settings = c.get(r.headers["location"] + "/dut-settings.json")
    assert settings.status_code == 200 and "attachment" in settings.headers["content-disposition"]
    assert isinstance(settings.json(), dict) and settings.json()


def test_the_sut_toml_of_a_drimbox_can_be_replaced(app):
    c = logged_in(app, "alice")
    url = register(c, "Ma DRIMbox").headers["location"]
    token = csrf_of(c, url)
    r = c.post(url + "/sut", data={"csrf": token, "sut_toml": config.template_text() + "\n[[pacs]]\n", "version": ""})
    assert r.status_code == 400 and 'class="flash"' in r.text and "[[pacs]]" in text(r)  # the edit is kept to fix
    new = config.template_text().replace("\n", "\n# modifié\n", 1)
    r = c.post(url + "/sut", data={"csrf": token, "sut_toml": new, "version": "1.1"})
    assert r.status_code == 303 and r.headers["location"] == url
    page = text(c.get(url))
    assert "version 1.1" in page and "# modifié" in page


def test_an_invalid_sut_toml_is_refused_with_the_french_reason(app):
    c = logged_in(app, "alice")
    r = register(c, "Cassée", config.template_text() + "\n[sut]\nname = 'doublon'\n")
    assert r.status_code == 400 and 'class="flash"' in text(r)
    r = register(c, "Crochet", config.template_text().replace("before_campaign = \"\"", "before_campaign = \"rm -rf /\"", 1))
    assert r.status_code == 400 and "commande shell est refusée" in text(r)
    r = register(c, "Vide", "")
    assert r.status_code == 400 and "Collez le sut.toml ou choisissez un fichier." in text(r)
    with app.state.sessions() as s:
        assert services.list_duts(s, _user(s, "alice")) == []


def test_a_sut_toml_can_be_uploaded_as_a_file(app):
    c = logged_in(app, "alice")
    r = c.post("/drimbox/nouvelle", data={"csrf": csrf_of(c, "/drimbox/nouvelle"), "nom": "", "version": ""},
               files={"fichier": ("sut.toml", config.template_text().encode(), "text/plain")})
    assert r.status_code == 303, text(r)


def test_uploads_over_the_cap_are_refused_before_reading(app):
    c = logged_in(app, "alice")
    big = "#" * (web.FORM_MAX_BYTES + 10)
    r = c.post("/drimbox/nouvelle", data={"csrf": csrf_of(c, "/drimbox/nouvelle"), "sut_toml": big})
    assert r.status_code == 413 and "Envoi trop volumineux" in text(r)


# ------------------------------------------------------------------------------------------------ isolation


def test_an_editor_sees_nothing_of_another_editor(app, mutant_run):
    alice, bob = logged_in(app, "alice"), logged_in(app, "bob")
    dut_url = register(alice, "DRIMbox d'Alice").headers["location"]
    cid = add_done_campaign(app, "alice", mutant_run)
    ev = first_evidence(mutant_run)
    own = [dut_url, dut_url + "/kit.zip", dut_url + "/dut-settings.json", f"/campagnes/{cid}",
           f"/campagnes/{cid}/rapport", f"/campagnes/{cid}/preuve?f={ev}", f"/campagnes/{cid}/{ev}",
           f"/comparer?a={cid}&b={cid}"]
    for url in own:
        assert alice.get(url).status_code == 200, url
        r = bob.get(url)
        assert r.status_code == 404 and "Page introuvable" in text(r) and "Alice" not in text(r), url
    for url in ("/", "/campagnes"):
        page = text(bob.get(url))
        assert "DRIMbox d'Alice" not in page and f"Campagne {cid}" not in page, url
    # bob can neither change alice's sut.toml nor launch a campaign on her DRIMbox
    r = bob.post(dut_url + "/sut", data={"csrf": csrf_of(bob, "/"), "sut_toml": config.template_text()})
    assert r.status_code == 404
    r = bob.post("/campagnes", data={"csrf": csrf_of(bob, "/"), "drimbox": dut_url.rsplit("/", 1)[1], "mode": "full"})
    assert r.status_code == 400 and "Choisissez la DRIMbox à tester." in text(r)
    # and the ANS account sees both
    ans = logged_in(app, "agent")
    assert ans.get(dut_url).status_code == 200 and ans.get(f"/campagnes/{cid}").status_code == 200
    assert re.search(rf'Campagne {cid}</a></td>\s*<td>alice</td>', text(ans.get("/campagnes")))


def test_ans_pages_are_for_ans_only(app):
    alice = logged_in(app, "alice")
    register(alice, "DRIMbox d'Alice")
    for url in ("/ans", "/ans/paquet"):
        r = alice.get(url)
        assert r.status_code == 403 and "Page réservée aux comptes ANS." in text(r)
    assert "Tableau de bord ANS" not in text(alice.get("/"))
    r = alice.post("/ans/paquet", data={"csrf": csrf_of(alice, "/")}, files={"paquet": ("p.zip", b"PK", "application/zip")})
    assert r.status_code == 403 and "Page réservée aux comptes ANS." in text(r)
    ans = logged_in(app, "agent")
    board = ans.get("/ans")
    assert board.status_code == 200 and "DRIMbox d'Alice" in text(board) and "alice" in text(board)
    assert ans.get("/ans/paquet").status_code == 200


def package_zip(tamper: bool = False) -> bytes:
    """A referencing package as `drimcheck run --referencement` lays it out (manifest of every file's SHA-256)."""
    import io
    import zipfile

    from drimcheck import package

    results = json.dumps({"run": {"id": "r1", "verdict": "CONFORME", "exit_code": 0}, "sut": {"name": "DRIMbox d'Alice"},
                          "harness": {"catalogue_version": "7"},
                          "campaign": {"mode": "full", "referencing": True, "out_of_referencing": False}}).encode()
    files = {"report.html": b"<html>", "results.json": results, "junit.xml": b"<testsuite/>", "sut.toml": b"[sut]",
             "configuration.json": b"{}", "versions.json": b"{}", "evidence/s/001-a.json": b"{}"}
    manifest = package.manifest_text(files)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in files.items():
            z.writestr(name, data + (b" " if tamper and name == "sut.toml" else b""))
        z.writestr(package.MANIFEST, manifest)
    return buf.getvalue()


def test_ans_verifies_an_uploaded_package(app):
    ans = logged_in(app, "agent")
    token = csrf_of(ans, "/ans/paquet")
    r = ans.post("/ans/paquet", data={"csrf": token}, files={"paquet": ("referencement-r1.zip", package_zip(), "application/zip")})
    page = text(r)
    assert r.status_code == 200 and '<div class="banner PASS" id="verdict">VALIDE</div>' in page
    assert "Résultat pour referencement-r1.zip" in page and "Verdict de la campagne</dt><dd>CONFORME" in page
    assert "Version du catalogue</dt><dd>7" in page and "Manifeste signé</dt><dd>non" in page
    r = ans.post("/ans/paquet", data={"csrf": token}, files={"paquet": ("p.zip", package_zip(tamper=True), "application/zip")})
    page = text(r)
    assert '<div class="banner FAIL" id="verdict">NON VALIDE</div>' in page
    assert "empreinte SHA-256 différente du manifeste (fichier modifié) : sut.toml" in page
    r = ans.post("/ans/paquet", data={"csrf": token}, files={"paquet": ("p.zip", b"pas une archive", "application/zip")})
    assert "ILLISIBLE" in text(r)
    r = ans.post("/ans/paquet", data={"csrf": token})
    assert r.status_code == 400 and "Choisissez le paquet de référencement" in text(r)


# ------------------------------------------------------------------------------------------------ campaigns


def test_launch_form_checks_requirements_and_queues_a_campaign(app):
    c = logged_in(app, "alice")
    token = csrf_of(c, "/campagnes")
    r = c.post("/campagnes", data={"csrf": token, "drimbox": "reference", "mode": "partial", "exigences": "XYZ-99"})
    assert r.status_code == 400 and "Exigence inconnue du catalogue : XYZ-99." in text(r)
    r = c.post("/campagnes", data={"csrf": token, "drimbox": "reference", "mode": "partial", "exigences": ""})
    assert r.status_code == 400 and "indiquez au moins une exigence" in text(r)
    r = c.post("/campagnes", data={"csrf": token, "drimbox": "reference", "mode": "partial", "exigences": "crt-03"})
    assert r.status_code == 303 and re.fullmatch(r"/campagnes/\d+", r.headers["location"])
    page = c.get(r.headers["location"])
    assert page.status_code == 200 and "en file d'attente" in text(page)
    assert '<meta http-equiv="refresh" content="2">' in text(page)  # followed live until it ends
    with app.state.sessions() as s:
        (campaign,) = s.query(Campaign).all()
        assert (campaign.mode, campaign.requirements, campaign.dut_id) == ("partial", ["CRT-03"], None)
    # no worker here: it stays queued, and can be cancelled by its owner only
    assert "Annuler la campagne" in text(page)
    bob = logged_in(app, "bob")
    assert bob.post(r.headers["location"] + "/annuler", data={"csrf": csrf_of(bob, "/")}).status_code == 404
    r2 = c.post(r.headers["location"] + "/annuler", data={"csrf": token})
    assert r2.status_code == 303
    page = c.get(r.headers["location"])
    assert "en erreur" in text(page) and "campagne annulée par alice" in text(page) and "refresh" not in text(page)
    r2 = c.post(r.headers["location"] + "/annuler", data={"csrf": token})
    assert r2.status_code == 409 and "seule une campagne en attente peut être annulée" in text(r2)


def test_results_show_failures_first_and_the_evidence_of_the_failing_requirement(app, mutant_run):
    c = logged_in(app, "alice")
    cid = add_done_campaign(app, "alice", mutant_run)
    page = c.get(f"/campagnes/{cid}")
    assert page.status_code == 200 and "http-equiv=\"refresh\"" not in text(page)
    assert "NON CONFORME" in text(page) and "Rapport complet (report.html)" in text(page)
    rows = re.findall(r'<tr id="req-([A-Z0-9-]+)" class="([A-Z_]+)-row">', text(page))
    assert rows[0] == ("CLR-01", "FAIL") and {v for _, v in rows[1:]} == {"PASS"}, rows
    links = re.findall(rf'href="(/campagnes/{cid}/preuve\?f=[^"]+)"', text(page))
    assert links, "aucun lien de preuve pour l'exigence en échec"
    view = c.get(links[0].replace("&amp;", "&"))
    assert view.status_code == 200 and "Constats qui la citent" in text(view) and "CLR-01" in text(view)
    assert "Échange enregistré" in text(view) and ("Requête" in text(view) or "<pre>" in text(view))
    report = c.get(f"/campagnes/{cid}/rapport")
    assert report.status_code == 200 and "Rapport de conformité DRIMbox" in text(report)
    assert "script-src 'unsafe-inline'" in report.headers["content-security-policy"]
    # the report's relative « ouvrir le fichier » links resolve to served evidence files
    rel = re.search(r'<a href="(evidence/[^"]+)">ouvrir le fichier</a>', text(report)).group(1)
    raw = c.get(f"/campagnes/{cid}/{rel}")
    assert raw.status_code == 200 and raw.headers["x-content-type-options"] == "nosniff"


def test_evidence_paths_cannot_leave_the_evidence_directory(app, mutant_run, tmp_path):
    run = tmp_path / "run"
    subprocess.run(["cp", "-r", str(mutant_run), str(run)], check=True)
    (run / "evidence" / "lien").symlink_to(run / "results.json")
    (tmp_path / "secret.txt").write_text("secret")
    c = logged_in(app, "alice")
    cid = add_done_campaign(app, "alice", run)
    for f in ("results.json", "evidence/../results.json", "evidence/lien", "/etc/passwd", "evidence/%2e%2e/results.json",
              "evidence/..%2fresults.json", "evidence//x", "evidence/x\\..\\..\\results.json", "../secret.txt"):
        assert c.get(f"/campagnes/{cid}/preuve", params={"f": f}).status_code == 404, f
    for path in ("evidence/lien", "evidence/%2e%2e/results.json", "evidence/..%2Fresults.json",
                 "evidence/%2e%2e/%2e%2e/secret.txt"):
        assert c.get(f"/campagnes/{cid}/{path}").status_code == 404, path


def test_compare_two_runs(app, mutant_run):
    c = logged_in(app, "alice")
    a, b = add_done_campaign(app, "alice", mutant_run), add_done_campaign(app, "alice", mutant_run)
    page = c.get(f"/campagnes/{b}")
    assert f'<option value="{a}">' in text(page)  # the other runs of the same DRIMbox are offered
    r = c.get(f"/comparer?a={a}&b={b}")
    assert r.status_code == 200 and "SANS RÉGRESSION" in text(r) and "Régressions (0)" in text(r)


def test_unknown_pages_get_the_french_error_page_and_the_api_keeps_json(app):
    c = logged_in(app, "alice")
    r = c.get("/nulle-part")
    assert r.status_code == 404 and "Page introuvable" in text(r) and r.headers["content-type"].startswith("text/html")
    for url in ("/campagnes/abc", "/campagnes/99999", "/drimbox/99999/kit.zip", "/comparer?a=1"):
        assert c.get(url).status_code == 404, url
    api = c.get("/api/nulle-part")
    assert api.status_code in (401, 404) and api.headers["content-type"].startswith("application/json")


def test_the_referencing_package_is_offered_to_its_owner_only(app, mutant_run, tmp_path):
    import io
    import zipfile

    run = tmp_path / "run"
    subprocess.run(["cp", "-r", str(mutant_run), str(run)], check=True)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("results.json", (run / "results.json").read_text())
    (run / "referencement-essai.zip").write_bytes(buf.getvalue())
    cid = add_done_campaign(app, "alice", run)
    alice, bob = logged_in(app, "alice"), logged_in(app, "bob")
    assert "Télécharger le paquet de référencement" in text(alice.get(f"/campagnes/{cid}"))
    r = alice.get(f"/campagnes/{cid}/paquet")
    assert r.status_code == 200 and r.content == buf.getvalue() and "referencement-essai.zip" in r.headers["content-disposition"]
    assert bob.get(f"/campagnes/{cid}/paquet").status_code == 404
    other = add_done_campaign(app, "alice", mutant_run)  # no package in that run
    assert "paquet de référencement" not in text(alice.get(f"/campagnes/{other}"))
    assert alice.get(f"/campagnes/{other}/paquet").status_code == 404


def test_ans_dashboard_shows_the_latest_referencing_result_and_regressions(app):
    alice = logged_in(app, "alice")
    dut_id = int(register(alice, "DRIMbox d'Alice").headers["location"].rsplit("/", 1)[1])
    with app.state.sessions() as s:  # two referencing campaigns as workers leave them: CRT-03 then fails
        for verdict, crt03 in (("CONFORME", "PASS"), ("NON CONFORME", "FAIL")):
            s.add(Campaign(owner_id=user_id(app, "alice"), dut_id=dut_id, mode="referencement", requirements=[],
                           status="done", verdict=verdict, exit_code=0 if crt03 == "PASS" else 1, run_dir=None,
                           requirement_verdicts={"CRT-03": crt03, "HLT-01": "PASS"}))
        s.commit()
    board = logged_in(app, "agent").get("/ans")
    page = text(board)
    assert board.status_code == 200 and "1 en régression" in page
    assert re.search(r'<td class="cell FAIL regressed" title="CRT-03 : Non conforme \(régression\)">✗</td>', page)
    assert re.search(r'<td class="cell PASS" title="HLT-01 : Conforme">✓</td>', page)
    row = page[page.index("Par DRIMbox et version"):]
    assert "Campagne 2" in row and '<span class="v FAIL">CRT-03</span>' in row and "comparer les deux derniers" in row


@pytest.mark.slow
def test_a_referencing_campaign_gives_a_package_that_ans_verifies(app, tmp_path):
    """Through a real worker: a referencing campaign on the embedded reference (a full campaign, ~30 s), its
    package downloaded by the editor, then uploaded by ANS and found VALIDE."""
    import os
    import signal

    data = Path(app.state.data_dir)
    worker = subprocess.Popen([sys.executable, "-m", "drimcheck", "worker", "--db", app.state.db_url, "--data", str(data)],
                              cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        alice = logged_in(app, "alice")
        r = alice.post("/campagnes", data={"csrf": csrf_of(alice, "/campagnes"), "drimbox": "reference",
                                           "mode": "referencement"})
        assert r.status_code == 303
        deadline = time.monotonic() + 400
        while 'id="verdict"' not in (page := text(alice.get(r.headers["location"]))):
            assert time.monotonic() < deadline, "campagne de référencement non terminée en 400 s"
            time.sleep(1)
        assert "Verdict : <strong>CONFORME (campagne de référencement)</strong>" in page
        assert "Télécharger le paquet de référencement" in page
        package = alice.get(r.headers["location"] + "/paquet")
        assert package.status_code == 200 and package.content[:2] == b"PK"
        ans = logged_in(app, "agent")
        v = ans.post("/ans/paquet", data={"csrf": csrf_of(ans, "/ans/paquet")},
                     files={"paquet": ("referencement.zip", package.content, "application/zip")})
        assert '<div class="banner PASS" id="verdict">VALIDE</div>' in text(v) and "Problèmes" not in text(v)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=30)
