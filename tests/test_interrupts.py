"""SIGINT/SIGTERM at any moment of a real campaign, and the campaign hooks a vendor relies on.

Every test runs `drimcheck run` (or `selftest`) as a real process against the embedded reference or an
external SUT description whose hooks are small shell scripts writing marker files, signals it, and checks
what a CI maintainer relies on: the process ends within 10 s of the first signal with 130 (SIGINT) or 143
(SIGTERM), results.json / junit.xml / report.html describe what ran with the interrupted scenario marked,
the work directory and its CA keys are gone, no child process is left, and after_campaign ran while the
simulators were still up.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import pytest

from drimcheck import config
from drimcheck.campaign import workdir_pattern
from simulators.procutil import free_port

REPO = Path(__file__).resolve().parent.parent
BOUND_S = 10.0  # README: a signal stops the run within 10 s

pytestmark = pytest.mark.slow


# ------------------------------------------------------------------------------------------ helpers

def hook_script(tmp: Path, name: str, body: str) -> str:
    """A shell script hook; it logs its call (and the PKI dir it was given) to <tmp>/calls.log."""
    path = tmp / f"{name}.sh"
    path.write_text(f"#!/bin/sh\necho \"{name} $$ $DRIMCHECK_PKI_DIR\" >> {tmp}/calls.log\n{body}\n")
    path.chmod(0o755)
    return str(path)


def up_probe(ports: list[int], marker: Path) -> str:
    """Shell lines writing, for each port, 'PORT up' or 'PORT down' (can a TCP connection be opened?)."""
    lines = []
    for port in ports:
        lines.append(f"{sys.executable} -c \"import socket; socket.create_connection(('127.0.0.1', {port}), 2)\" "
                     f"2>/dev/null && echo '{port} up' >> {marker} || echo '{port} down' >> {marker}")
    return "\n".join(lines)


def reference_with_hooks(tmp: Path, hooks: dict[str, str]) -> tuple[Path, dict[str, int]]:
    """The embedded reference's sut.toml with hooks, its IGC simulator and first PACS on known ports."""
    ports = {"igc": free_port(), "pacs_http": free_port()}
    text = config.reference_text()
    text = text.replace('igc = "auto"', f'igc = "127.0.0.1:{ports["igc"]}"')
    text = text.replace("http_port = 0", f"http_port = {ports['pacs_http']}", 1)
    assert f"127.0.0.1:{ports['igc']}" in text and f"http_port = {ports['pacs_http']}" in text
    text += "\n[hooks]\n" + "".join(f'{k} = "{v}"\n' for k, v in hooks.items())
    path = tmp / "sut.toml"
    path.write_text(text)
    return path, ports


def external_sut(tmp: Path, hooks: dict[str, str]) -> tuple[Path, dict[str, int]]:
    """An external DRIMbox (Source) on loopback that nothing serves: start-up ends with « DUT injoignable »."""
    p = {k: free_port() for k in ("db", "db_http", "vi", "vi_http", "dicom", "pacs_http", "igc", "whitelist", "dmp",
                                  "mllp", "iocm")}
    hook_lines = "".join(f'{k} = "{v}"\n' for k, v in hooks.items())
    text = f"""[sut]
name = "DRIMbox externe de test"
roles = ["source"]
registry = "349"

[[pacs]]
name = "PACS"
db = "db1.349.mesimagesmedicales.fr"
vi = "vi1.349.mesimagesmedicales.fr"
aet = "DRIMCHECK_PACS"
dicom_port = {p['dicom']}
http_port = {p['pacs_http']}

[network]
"db1.349.mesimagesmedicales.fr" = {{ https = "127.0.0.1:{p['db']}", http = "127.0.0.1:{p['db_http']}" }}
"vi1.349.mesimagesmedicales.fr" = {{ https = "127.0.0.1:{p['vi']}", http = "127.0.0.1:{p['vi_http']}" }}

[timeouts]
request_s = 1

[hooks]
{hook_lines}
[simulators]
igc = "127.0.0.1:{p['igc']}"
whitelist = "127.0.0.1:{p['whitelist']}"
dmp = "127.0.0.1:{p['dmp']}"

[dut]
mllp = "127.0.0.1:{p['mllp']}"
iocm = "127.0.0.1:{p['iocm']}"
"""
    path = tmp / "sut.toml"
    path.write_text(text)
    return path, p


class Campaign:
    """`drimcheck ARGS` in its own process group (as a shell job is), output to files."""

    def __init__(self, tmp: Path, *args: str):
        self.out = tmp / "out"
        self.log = tmp / "stdout.txt"
        self.err = tmp / "stderr.txt"
        with open(self.log, "wb") as o, open(self.err, "wb") as e:
            self.proc = subprocess.Popen([sys.executable, "-m", "drimcheck", *args], stdout=o, stderr=e, cwd=REPO,
                                         start_new_session=True)
        self.first_signal: float | None = None

    def wait_for(self, what, timeout: float = 120) -> None:
        end = time.monotonic() + timeout
        while not what():
            assert self.proc.poll() is None, f"campaign ended early ({self.proc.returncode}): {self.output()}"
            assert time.monotonic() < end, f"timed out waiting; {self.output()}"
            time.sleep(0.05)

    def signal(self, signum: int, times: int = 1, gap: float = 0.3, group: bool = False) -> None:
        """group=True: as a terminal's Ctrl-C, to the whole foreground group; else to drimcheck only (CI's kill)."""
        for i in range(times):
            if i:
                time.sleep(gap)
            if self.first_signal is None:
                self.first_signal = time.monotonic()
            if self.proc.poll() is None:
                (os.killpg if group else os.kill)(self.proc.pid, signum)

    def finish(self, timeout: float = 150) -> tuple[int, float]:
        """Exit code, and seconds from the first signal to the exit."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            raise AssertionError(f"still running {timeout} s later; {self.output()}") from None
        return code, time.monotonic() - (self.first_signal or time.monotonic())

    def output(self) -> str:
        return f"stdout: {self.log.read_text(errors='replace')[-2000:]}\nstderr: {self.err.read_text(errors='replace')[-2000:]}"


def reports(out: Path) -> dict:
    """results.json (schema-valid), junit.xml (well-formed, one case per scenario), report.html: all written."""
    data = json.loads((out / "results.json").read_text())
    jsonschema.validate(data, json.loads((REPO / "docs" / "results.schema.json").read_text()))
    suite = ET.parse(out / "junit.xml").getroot()
    assert len(suite.findall(".//testcase")) == len(data["scenarios"])
    html = (out / "report.html").read_text()
    assert "</html>" in html and data["run"]["verdict"].split()[0] in html
    return data


def assert_interrupted(data: dict, signame: str, code: int) -> dict:
    run = data["run"]
    assert run["exit_code"] == code and run["interrupted"]["signal"] == signame, run
    assert run["infrastructure_error"].startswith(f"campagne interrompue ({signame})"), run
    assert "injoignable" not in run["infrastructure_error"]
    hit = [s for s in data["scenarios"] if s["interrupted"]]
    assert len(hit) <= 1, hit
    for s in hit:
        assert s["verdict"] == "ERROR" and s["error"].startswith("campagne interrompue"), s
        assert all(f["verdict"] == "ERROR" and "défaut du banc" not in f["message"] for f in s["findings"]
                   if f["check"] == "drimcheck.plugin")
    return hit[0] if hit else {}


def calls(tmp: Path) -> list[list[str]]:
    log = tmp / "calls.log"
    return [line.split() for line in log.read_text().splitlines()] if log.exists() else []


def workdirs_of(pid: int) -> list[Path]:
    return sorted(Path(tempfile.gettempdir()).glob(workdir_pattern(pid)))


def processes_mentioning(text: str) -> list[str]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and int(d.name) != os.getpid():
            try:
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmd:
                out.append(f"{d.name}: {cmd[:200]}")
    return out


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def assert_cleaned_up(run: Campaign, workdir: Path | None = None) -> None:
    assert not workdirs_of(run.proc.pid), workdirs_of(run.proc.pid)
    if workdir is not None:
        assert not workdir.exists(), f"work directory (CA keys) left: {workdir}"
        deadline = time.monotonic() + 3  # SIGKILLed children are reaped by init, not instantly
        while processes_mentioning(str(workdir)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not processes_mentioning(str(workdir)), processes_mentioning(str(workdir))
    assert not group_alive(run.proc.pid), "a process of the campaign's group survived it"


# ------------------------------------------------------------------------------------------ tests

def test_sigint_during_start_up_stops_within_10_s_and_runs_after_campaign_while_simulators_are_up(tmp_path):
    after_marker = tmp_path / "after.txt"
    before = hook_script(tmp_path, "before", f"touch {tmp_path}/before-started\nsleep 60")
    sut, ports = reference_with_hooks(tmp_path, {})
    after = hook_script(tmp_path, "after", up_probe([ports["igc"], ports["pacs_http"]], after_marker))
    sut.write_text(sut.read_text() + f'before_campaign = "{before}"\nafter_campaign = "{after}"\n')
    run = Campaign(tmp_path, "run", "--sut", str(sut), "--req", "HLT-01", "--out", str(tmp_path / "out"))
    run.wait_for(lambda: (tmp_path / "before-started").exists())
    workdir = Path(calls(tmp_path)[0][2]).parent
    assert workdir.is_dir() and (workdir / "pki").is_dir()
    run.signal(signal.SIGINT, group=True)  # Ctrl-C in a terminal
    code, took = run.finish()
    assert code == 130, run.output()
    assert took < BOUND_S, f"{took:.1f} s"
    data = reports(run.out)
    hit = assert_interrupted(data, "SIGINT", 130)
    assert "pendant la préparation du banc" in data["run"]["infrastructure_error"]
    assert hit, "the scenario whose set-up was interrupted is marked"
    assert len(data["scenarios"]) == 1 and data["run"]["interrupted"]["scenarios_not_run"]
    assert [c[0] for c in calls(tmp_path)] == ["before", "after"]
    assert after_marker.read_text().split("\n")[:2] == [f"{ports['igc']} up", f"{ports['pacs_http']} up"]
    evidence = sorted(p.name for p in (run.out / "evidence" / "campaign").iterdir())
    assert any("hook-before_campaign" in n for n in evidence) and any("hook-after_campaign" in n for n in evidence)
    assert "campagne interrompue" in next((run.out / "evidence" / "campaign").glob("*hook-before_campaign*")).read_text()
    assert_cleaned_up(run, workdir)
    assert "Traceback" not in run.err.read_text()


def test_sigterm_while_a_finalizer_waits_on_a_hook_stops_within_10_s(tmp_path):
    # WL-07 (XXE): the step's refresh_whitelist call is the hook's first call, the finalizer that restores
    # the nominal list makes the second one, which would wait 60 s.
    refresh = hook_script(tmp_path, "refresh", f'n=$(grep -c refresh {tmp_path}/calls.log)\n'
                                               f'if [ "$n" -ge 2 ]; then touch {tmp_path}/in-finalizer; sleep 60; fi')
    after = hook_script(tmp_path, "after", "")
    sut, _ = reference_with_hooks(tmp_path, {"refresh_whitelist": refresh, "after_campaign": after})
    run = Campaign(tmp_path, "run", "--sut", str(sut), "--req", "WL-07", "--out", str(tmp_path / "out"), "--quiet")
    run.wait_for(lambda: (tmp_path / "in-finalizer").exists())
    run.signal(signal.SIGTERM)
    code, took = run.finish()
    assert code == 143, run.output()
    assert took < BOUND_S, f"{took:.1f} s"
    data = reports(run.out)
    hit = assert_interrupted(data, "SIGTERM", 143)
    assert hit and "XXE" in hit["name"] and "pendant les scénarios" in data["run"]["infrastructure_error"]
    # its steps had ended: the step that raised, then the one it left unexecuted
    assert [[st["outcome"] for st in s["steps"]][-2:] for s in data["scenarios"]] == [["failed", "not_run"]]
    assert len(data["run"]["interrupted"]["scenarios_not_run"]) == 1  # the second WL-07 scenario
    assert [c[0] for c in calls(tmp_path)] == ["refresh", "refresh", "after"]  # owed once the DUT was up
    assert_cleaned_up(run, Path(calls(tmp_path)[0][2]).parent)


def test_three_sigints_0_3_s_apart_mid_scenario_still_write_reports_and_remove_the_workdir(tmp_path):
    refresh = hook_script(tmp_path, "refresh", f"touch {tmp_path}/refreshing\nsleep 60")
    before = hook_script(tmp_path, "before", "")
    after = hook_script(tmp_path, "after", "sleep 1")  # cleanup takes a while: the 2nd and 3rd signal land in it
    sut, _ = reference_with_hooks(tmp_path, {"refresh_whitelist": refresh, "before_campaign": before,
                                             "after_campaign": after})
    run = Campaign(tmp_path, "run", "--sut", str(sut), "--req", "WL-07", "--out", str(tmp_path / "out"))
    run.wait_for(lambda: (tmp_path / "refreshing").exists())
    workdir = Path(calls(tmp_path)[0][2]).parent
    run.signal(signal.SIGINT, times=3, gap=0.3, group=True)
    code, took = run.finish()
    assert code == 130, run.output()
    assert took < BOUND_S, f"{took:.1f} s"
    data = reports(run.out)
    hit = assert_interrupted(data, "SIGINT", 130)
    assert hit and "XXE" in hit["name"] and data["run"]["interrupted"]["scenarios_not_run"]
    assert [c[0] for c in calls(tmp_path)] == ["before", "refresh", "after"]
    assert "arrêt déjà en cours" in run.err.read_text() and "Traceback" not in run.err.read_text()
    assert "INTERROMPU" in run.log.read_text()
    assert_cleaned_up(run, workdir)


def test_failing_before_campaign_hook_is_named_and_after_campaign_still_runs_before_the_simulators_stop(tmp_path):
    before = hook_script(tmp_path, "before", "echo 'préparation de la DRIMbox : échec' >&2\nexit 1")
    sut, ports = reference_with_hooks(tmp_path, {})
    after = hook_script(tmp_path, "after", up_probe([ports["igc"]], tmp_path / "after.txt"))
    sut.write_text(sut.read_text() + f'before_campaign = "{before}"\nafter_campaign = "{after}"\n')
    run = Campaign(tmp_path, "run", "--sut", str(sut), "--req", "HLT-01", "--out", str(tmp_path / "out"))
    code, _ = run.finish()
    assert code == 3, run.output()
    data = reports(run.out)
    error = data["run"]["infrastructure_error"]
    assert error.startswith("hook before_campaign en échec (code 1) : préparation de la DRIMbox : échec"), error
    assert "injoignable" not in error and data["run"]["interrupted"] is None
    assert all(s["error"].endswith(error) and not s["interrupted"] for s in data["scenarios"])
    assert [c[0] for c in calls(tmp_path)] == ["before", "after"]
    assert (tmp_path / "after.txt").read_text() == f"{ports['igc']} up\n"
    files = [p.name for p in (run.out / "evidence" / "campaign").iterdir()]
    assert any("hook-before_campaign" in n for n in files) and any("hook-after_campaign" in n for n in files)
    assert not any("hook" in p.name for p in (run.out / "evidence").glob("*--*/*")), "hook evidence under a scenario"
    assert_cleaned_up(run, Path(calls(tmp_path)[0][2]).parent)


def test_external_dut_unreachable_after_campaign_runs_while_simulators_are_up(tmp_path):
    before = hook_script(tmp_path, "before", "echo DUT started")
    sut, ports = external_sut(tmp_path, {})
    after = hook_script(tmp_path, "after", up_probe([ports["igc"], ports["dmp"], ports["pacs_http"]],
                                                    tmp_path / "after.txt"))
    sut.write_text(sut.read_text().replace("[hooks]\n", f'[hooks]\nbefore_campaign = "{before}"\n'
                                                        f'after_campaign = "{after}"\n'))
    run = Campaign(tmp_path, "run", "--sut", str(sut), "--req", "HLT-01", "--out", str(tmp_path / "out"))
    code, _ = run.finish()
    assert code == 3, run.output()
    data = reports(run.out)
    assert data["run"]["infrastructure_error"].startswith("DUT injoignable"), data["run"]
    assert [c[0] for c in calls(tmp_path)] == ["before", "after"]
    assert (tmp_path / "after.txt").read_text().split("\n")[:3] == [f"{p} up" for p in
                                                                     (ports["igc"], ports["dmp"], ports["pacs_http"])]
    assert_cleaned_up(run, Path(calls(tmp_path)[0][2]).parent)


def test_sigterm_while_an_external_dut_starts_kills_the_hook_and_runs_after_campaign(tmp_path):
    before = hook_script(tmp_path, "before", f"touch {tmp_path}/starting\nsleep 60 &\necho $! > {tmp_path}/daemon.pid\n"
                                             "wait")
    after = hook_script(tmp_path, "after", "")
    sut, _ = external_sut(tmp_path, {"before_campaign": before, "after_campaign": after})
    run = Campaign(tmp_path, "run", "--sut", str(sut), "--out", str(tmp_path / "out"), "--quiet")
    run.wait_for(lambda: (tmp_path / "daemon.pid").exists())
    run.signal(signal.SIGTERM)
    code, took = run.finish()
    assert code == 143 and took < BOUND_S, (code, took, run.output())
    data = reports(run.out)
    assert_interrupted(data, "SIGTERM", 143)
    assert [c[0] for c in calls(tmp_path)] == ["before", "after"]
    daemon = int((tmp_path / "daemon.pid").read_text())
    time.sleep(0.2)
    assert not Path(f"/proc/{daemon}").exists() or "zombie" in Path(f"/proc/{daemon}/status").read_text().lower()
    assert_cleaned_up(run, Path(calls(tmp_path)[0][2]).parent)


def test_interrupted_selftest_stops_its_campaigns_and_exits_143(tmp_path):
    run = Campaign(tmp_path, "selftest", "--mutant", "health-slow-recovery", "--jobs", "1", "--out", str(tmp_path / "st"))
    golden = tmp_path / "st" / "golden"
    run.wait_for(lambda: (golden / "evidence").is_dir(), timeout=180)  # the golden campaign is running
    time.sleep(1)
    run.signal(signal.SIGTERM)  # to the selftest only: it must pass the signal on
    code, took = run.finish()
    assert code == 143, run.output()
    assert took < BOUND_S + 3, f"{took:.1f} s"
    data = reports(golden)
    assert data["run"]["interrupted"]["signal"] == "SIGTERM"
    assert not (tmp_path / "st" / "mutants").exists(), "no campaign starts after the signal"
    assert not (tmp_path / "st" / "selftest.json").exists()
    assert "selftest interrompu (SIGTERM)" in run.log.read_text()
    assert not list(Path(tempfile.gettempdir()).glob(f"drimcheck-keys-{run.proc.pid}-*")), "key pool left"
    assert not group_alive(run.proc.pid)


def test_watchdog_forces_the_exit_when_cleanup_hangs_after_removing_what_it_must(tmp_path):
    """Something that ignores the interruption (here: a loop swallowing KeyboardInterrupt) cannot keep the
    process alive: HARD_LIMIT_S after the first signal the emergency cleanup runs and the process exits 143."""
    script = tmp_path / "hang.py"
    script.write_text(f"""
import pathlib, time
from drimcheck.runner import InterruptGuard
marker = pathlib.Path({str(tmp_path)!r})
with InterruptGuard() as guard:
    guard.on_emergency(lambda: (marker / "emergency").write_text("done"))
    (marker / "ready").touch()
    end = time.monotonic() + 60
    while time.monotonic() < end:
        try:
            time.sleep(0.05)
        except KeyboardInterrupt:
            (marker / "swallowed").touch()
""")
    proc = subprocess.Popen([sys.executable, str(script)], cwd=REPO, stderr=subprocess.PIPE, text=True)
    end = time.monotonic() + 30
    while not (tmp_path / "ready").exists():
        assert proc.poll() is None and time.monotonic() < end, proc.stderr.read() if proc.poll() is not None else ""
        time.sleep(0.05)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(30)
    took = time.monotonic() - t0
    from drimcheck.runner import HARD_LIMIT_S

    assert code == 143 and HARD_LIMIT_S - 0.5 <= took < BOUND_S, (code, took)
    assert (tmp_path / "swallowed").exists() and (tmp_path / "emergency").read_text() == "done"
    assert "arrêt forcé" in proc.stderr.read()


def test_sigterm_during_teardown_bounds_a_hanging_after_campaign_and_keeps_the_verdicts(tmp_path):
    before = hook_script(tmp_path, "before", "")
    after = hook_script(tmp_path, "after", f"touch {tmp_path}/stopping\nsleep 60")
    sut, _ = reference_with_hooks(tmp_path, {"before_campaign": before, "after_campaign": after})
    run = Campaign(tmp_path, "run", "--sut", str(sut), "--req", "HLT-01", "--out", str(tmp_path / "out"), "--quiet")
    run.wait_for(lambda: (tmp_path / "stopping").exists())
    run.signal(signal.SIGTERM)
    code, took = run.finish()
    assert code == 143 and took < BOUND_S, (code, took, run.output())
    data = reports(run.out)
    assert_interrupted(data, "SIGTERM", 143)
    error = data["run"]["infrastructure_error"]
    assert "pendant le nettoyage" in error and "hook after_campaign en échec" in error, error
    verdicts = [s["verdict"] for s in data["scenarios"]]
    assert len(verdicts) >= 2 and set(verdicts) == {"PASS"}  # every HLT-01 scenario ran before the signal
    assert data["run"]["interrupted"]["scenarios_not_run"] == []
    assert_cleaned_up(run, Path(calls(tmp_path)[0][2]).parent)
