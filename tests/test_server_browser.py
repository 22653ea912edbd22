"""The campaign server in a real browser: Debian's Chromium driven by Playwright (no browser download), against
`drimcheck serve` started as a subprocess on a free port with its worker.

An editor logs in, registers a DRIMbox from its sut.toml, runs a small campaign against the embedded
reference (CRT-03) that ends CONFORME, then one against the reference with the mutant vin-plain-http
(CLR-01, CRT-03) that ends NON CONFORME, follows both live (the page refreshes itself, no reload here),
sees the failing requirement first and opens its evidence. Screenshots of the results and of the
evidence are left in the test's temporary directory (path printed).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from playwright import sync_api as playwright_api  # the `test` extra; drives Debian's Chromium, downloads nothing

from drimcheck import config

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
PASSWORD = "mot-de-passe-navigateur"
CAMPAIGN_TIMEOUT_MS = 120_000  # one small campaign through queue and worker (~10 s alone, more on a busy machine)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(tmp_path):
    """`drimcheck serve` with one worker on a fresh data directory and an editor account; stopped afterwards."""
    assert CHROMIUM.is_file(), "/usr/bin/chromium absent : « make setup » installe le paquet Debian chromium"
    data = tmp_path / "data"
    add = subprocess.run([sys.executable, "-m", "drimcheck", "users", "add", "alice", "--role", "editor",
                          "--password-stdin", "--data", str(data)], input=PASSWORD + "\n", capture_output=True,
                         text=True, cwd=REPO, timeout=60)
    assert add.returncode == 0, add.stderr
    port = free_port()
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115 - closed after the process is stopped
    proc = subprocess.Popen([sys.executable, "-m", "drimcheck", "serve", "--port", str(port), "--data", str(data),
                             "--workers", "1"], cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text(errors="replace")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                assert time.monotonic() < deadline, "drimcheck serve n'écoute pas après 30 s"
                time.sleep(0.2)
        yield base
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # serve stops its worker, which stops its campaign
            try:
                proc.wait(timeout=25)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        log.close()
        deadline = time.monotonic() + 15  # the worker (its own process group) ends by itself once serve is gone
        while processes_using(data) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = processes_using(data)
        for pid in left:  # never leave a worker behind, even when that promise is broken
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        assert not left, f"processus restés après l'arrêt de drimcheck serve : {left}"


def processes_using(data: Path) -> list[int]:
    """Processes whose command line names this test's data directory (serve's worker and its campaigns)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if str(data).encode() in cmdline:
                found.append(int(entry.name))
    return found


def launch_on_reference(page, base: str, requirements: str, mutant: str = "") -> str:
    page.goto(f"{base}/campagnes")
    page.select_option("#drimbox", "reference")
    page.check("input[name=mode][value=partial]")
    page.fill("#exigences", requirements)
    page.fill("#mutant", mutant)
    page.click("text=Lancer la campagne")
    page.wait_for_url(re.compile(r".*/campagnes/\d+$"))
    return page.url


def wait_for_verdict(page) -> str:
    """The campaign page refreshes itself (meta refresh) until the worker has written the verdict."""
    verdict = page.locator("#verdict")
    playwright_api.expect(verdict).to_be_visible(timeout=CAMPAIGN_TIMEOUT_MS)
    return verdict.inner_text()


def test_editor_runs_a_conformant_and_a_failing_campaign_and_opens_the_evidence(served, tmp_path):
    started = time.monotonic()
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"], headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900}, locale="fr-FR")
            page.set_default_timeout(15_000)
            errors: list[str] = []  # console errors: a CSP refusal, a missing stylesheet...
            page.on("console", lambda m: errors.append(f"{page.url}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"{page.url}: {e}"))

            # log in (a signed-out visitor lands on the login page)
            page.goto(f"{served}/")
            assert page.url.endswith("/connexion")
            page.fill("#nom", "alice")
            page.fill("#mot_de_passe", PASSWORD)
            page.click("button:has-text('Se connecter')")
            playwright_api.expect(page.locator("h1")).to_have_text("Bonjour alice")

            # register a DRIMbox from its sut.toml (pasted), then find its kit
            page.click("nav >> text=Enregistrer une DRIMbox")
            page.fill("#nom", "DRIMbox Navigateur")
            page.fill("#version", "3.1")
            page.fill("#sut_toml", config.template_text())
            page.click("text=Vérifier et enregistrer")
            page.wait_for_url(re.compile(r".*/drimbox/\d+$"))
            playwright_api.expect(page.locator("h1")).to_contain_text("DRIMbox Navigateur")
            assert page.locator("a:has-text('Télécharger le kit de test')").count() == 1

            # a campaign against the embedded reference that ends CONFORME
            t0 = time.monotonic()
            launch_on_reference(page, served, "CRT-03")
            assert page.locator('meta[http-equiv="refresh"]').count() == 1  # followed live while it runs
            verdict = wait_for_verdict(page)
            timings = {"CRT-03": time.monotonic() - t0}
            assert verdict.startswith("Verdict : CONFORME"), verdict
            assert page.locator('meta[http-equiv="refresh"]').count() == 0
            assert page.locator("table.results tr.FAIL-row").count() == 0

            # a campaign with a mutant of the reference that ends NON CONFORME, failure first
            t0 = time.monotonic()
            launch_on_reference(page, served, "CLR-01 CRT-03", mutant="vin-plain-http")
            verdict = wait_for_verdict(page)
            timings["vin-plain-http CLR-01 CRT-03"] = time.monotonic() - t0
            assert "NON CONFORME" in verdict and "vin-plain-http" in verdict, verdict
            first = page.locator("table.results tbody tr").first
            assert first.get_attribute("id") == "req-CLR-01" and "FAIL-row" in (first.get_attribute("class") or "")
            playwright_api.expect(first).to_contain_text("Non conforme")
            page.screenshot(path=str(tmp_path / "resultats.png"), full_page=True)

            # the failing requirement's evidence: the recorded clear-HTTP exchange
            first.locator(".evidence-links a").first.click()
            page.wait_for_url(re.compile(r".*/preuve\?f=evidence"))
            playwright_api.expect(page.locator("h1")).to_contain_text("Preuve")
            playwright_api.expect(page.locator("section").first).to_contain_text("CLR-01")
            view = page.locator(".evidence-view").inner_text()
            assert "Requête" in view and "http://" in view and "HTTP 200" in view, view[:2000]
            shot = tmp_path / "preuve.png"
            page.screenshot(path=str(shot), full_page=True)

            # the CLI's full report, served to its owner
            page.go_back()
            page.click("text=Rapport complet (report.html)")
            playwright_api.expect(page.locator("h1")).to_have_text("Rapport de conformité DRIMbox — drimcheck")

            # and out
            page.go_back()
            page.click("button:has-text('Se déconnecter')")
            page.wait_for_url(re.compile(r".*/connexion$"))
            page.goto(f"{served}/campagnes/1")
            assert "/connexion" in page.url
            assert errors == [], errors
        finally:
            browser.close()
    elapsed = time.monotonic() - started
    print(f"\ncaptures d'écran : {tmp_path / 'resultats.png'} {shot} ; parcours navigateur : {elapsed:.1f} s ; "
          "du clic « Lancer » au verdict affiché : " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
    assert shot.stat().st_size > 10_000
