"""The report of a failing campaign, looked at in a real browser (headless Chromium from Debian, `make setup`
installs it): the failures are on the first screen before anything else, and an evidence link opens a
readable view of the exchange inside the report."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
WINDOW = (1280, 900)

# Appended to a copy of the report: measures the layout as rendered, clicks the first evidence link of the
# failures list, and writes what it saw into the DOM that --dump-dom prints.
PROBE = """<script>
window.addEventListener('load', function () {
  var out = {}, fails = document.getElementById('echecs');
  out.fails_top = fails ? fails.getBoundingClientRect().top : null;
  out.fails_text = fails ? fails.innerText : '';
  out.viewport = window.innerHeight;
  var firstH2 = document.querySelector('h2');
  out.first_h2 = firstH2 ? firstH2.innerText : null;
  var matrix = document.querySelector('table.matrix');
  out.matrix_top = matrix ? matrix.getBoundingClientRect().top : null;
  out.matrix_height = matrix ? matrix.getBoundingClientRect().height : null;
  var link = fails ? fails.querySelector('a[href^="#ev-"]') : null;
  if (link) {
    var view = document.getElementById(link.getAttribute('href').slice(1));
    out.open_before = view.open;
    out.visible_before = view.innerText.length;
    link.click();
    out.open_after = view.open;
    var box = view.getBoundingClientRect();
    out.view_height = box.height;
    out.view_in_viewport = box.top < window.innerHeight && box.bottom > 0;
    out.view_text = view.innerText;
  }
  var p = document.createElement('pre'); p.id = 'probe'; p.textContent = JSON.stringify(out);
  document.body.appendChild(p);
});
</script>"""


def chromium(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Headless Chromium with a throwaway profile (root needs --no-sandbox); nothing is downloaded."""
    return subprocess.run([str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           f"--user-data-dir={cwd / 'chromium-profile'}", f"--window-size={WINDOW[0]},{WINDOW[1]}",
                           *args], capture_output=True, text=True, timeout=120, cwd=cwd)


@pytest.fixture(scope="module")
def failing_run(tmp_path_factory) -> Path:
    assert CHROMIUM.is_file(), "/usr/bin/chromium absent : « make setup » installe le paquet Debian chromium (APT_PACKAGES)"
    out = tmp_path_factory.mktemp("browser") / "run"
    proc = subprocess.run([sys.executable, "-m", "drimcheck", "run", "--mutant", "health-always-up", "--req", "HLT-02",
                           "--out", str(out)], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    return out


def test_failures_are_on_the_first_screen_and_an_evidence_view_opens(failing_run):
    html = (failing_run / "report.html").read_text(encoding="utf-8")
    (failing_run / "probe.html").write_text(html.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    proc = chromium("--dump-dom", (failing_run / "probe.html").as_uri(), cwd=failing_run.parent)
    found = re.search(r'<pre id="probe">(.*?)</pre>', proc.stdout, re.S)
    assert found, proc.stderr[-2000:]
    seen = json.loads(found.group(1).replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"))

    # failures first: the first section of the page, within the first screen, above the matrix
    assert seen["first_h2"].startswith("Échecs : 1 exigence non conforme")
    assert 0 < seen["fails_top"] < WINDOW[1] * 0.6 and seen["fails_top"] < seen["matrix_top"]
    assert "HLT-02" in seen["fails_text"] and "Le HealthCheck passe DOWN" in seen["fails_text"]
    assert "Attendu" in seen["fails_text"] and "aucune réponse DOWN dans les 10 s" in seen["fails_text"]
    assert "échéance 10 s" in seen["fails_text"]  # the timeline chart against the deadline
    assert seen["matrix_height"] < 6000  # the matrix of 56 requirements is no longer ~7,000 px tall

    # an evidence link opens a readable view of the exchange, in the report, on screen
    assert seen["open_before"] is False and seen["open_after"] is True
    assert seen["view_height"] > 200 and seen["view_in_viewport"]
    text = seen["view_text"]
    assert "GET https://db1." in text and "/q/health" in text and "HTTP 200" in text
    assert "TLSv1.3" in text and "IGC-SANTE" in text and "durée" in text


def test_first_screen_screenshot(failing_run, tmp_path):
    shot = tmp_path / "premier-ecran.png"
    proc = chromium(f"--screenshot={shot}", (failing_run / "report.html").as_uri(), cwd=tmp_path)
    assert shot.is_file() and shot.stat().st_size > 10_000, proc.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(shot.read_bytes()[16:20], "big"), int.from_bytes(shot.read_bytes()[20:24], "big")
    assert (width, height) == WINDOW


def test_the_report_reads_in_french(failing_run):
    html = (failing_run / "report.html").read_text(encoding="utf-8")
    assert "passed" not in html and "Étant Donné" not in html and "<th>PACS PACS-" not in html
    assert "(échouée," in html and "(réussie," in html
    assert "Supervision (health check)" in html and ">Santé<" not in html
