"""Hooks of the external-DUT example: start, stop, refresh and read the reference DRIMbox as a vendor would.

    python3 examples/external-dut/hooks.py start|stop|refresh-whitelist|kpi

start: configure the reference from the kit (configure.py), start it in the background, record its PID,
return once it is ready. stop: stop it by that PID. refresh-whitelist: its admin endpoint (what its daily
job does). kpi: print its ModelStat file. Environment: EXTERNAL_DUT_KIT (default: kit/ beside this file),
EXTERNAL_DUT_STATE (default: .state/ beside this file), DRIMBOX_MUTANT (run the reference as a mutant).
Only the standard library here: the reference itself runs with the repository's .venv when there is one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
KIT = Path(os.environ.get("EXTERNAL_DUT_KIT") or HERE / "kit").resolve()
STATE = Path(os.environ.get("EXTERNAL_DUT_STATE") or HERE / ".state").resolve()
SETTINGS = KIT / "dut" / "dut-settings.json"
PID_FILE = STATE / "drimbox.pid"
READY_TIMEOUT_S = 30.0


def python() -> str:
    venv = REPO_ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def _alive(pid: int) -> bool:
    """The recorded process still runs and is still our DRIMbox (a stale PID file never kills another process)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        try:
            os.kill(pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True  # no /proc: trust the PID file
    return b"simulators.drimbox" in cmdline and str(STATE).encode() in cmdline


def stop() -> int:
    try:
        pid = int(PID_FILE.read_text().strip())
    except (OSError, ValueError):
        print("pas de DRIMbox démarrée (aucun fichier PID)")
        return 0
    if _alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    PID_FILE.unlink(missing_ok=True)
    print(f"DRIMbox arrêtée (PID {pid})")
    return 0


def start() -> int:
    stop()  # a DRIMbox left over by an interrupted campaign
    STATE.mkdir(parents=True, exist_ok=True)
    command = [python(), str(HERE / "configure.py"), "--settings", str(SETTINGS), "--workdir", str(STATE)]
    if os.environ.get("DRIMBOX_MUTANT"):
        command += ["--mutant", os.environ["DRIMBOX_MUTANT"]]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    config = json.loads((STATE / "drimbox.json").read_text(encoding="utf-8"))
    ready = Path(config["ready_file"])
    ready.unlink(missing_ok=True)
    log = open(STATE / "drimbox.log", "ab")  # noqa: SIM115 - the DUT's stdout, open while it runs
    proc = subprocess.Popen([python(), "-m", "simulators.drimbox", "--config", str(STATE / "drimbox.json")],
                            cwd=str(REPO_ROOT), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, start_new_session=True)
    PID_FILE.write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not ready.exists():
        if proc.poll() is not None:
            print(f"la DRIMbox s'est arrêtée (code {proc.returncode}), voir {STATE / 'drimbox.log'}", file=sys.stderr)
            PID_FILE.unlink(missing_ok=True)
            return 1
        if time.monotonic() > deadline:
            print(f"DRIMbox non prête en {READY_TIMEOUT_S:g} s, voir {STATE / 'drimbox.log'}", file=sys.stderr)
            stop()
            return 1
        time.sleep(0.05)
    print(f"DRIMbox démarrée (PID {proc.pid})")
    return 0


def refresh_whitelist() -> int:
    settings = json.loads(SETTINGS.read_text(encoding="utf-8"))
    admin = settings["endpoints"]["admin"]
    req = urllib.request.Request(f"http://{admin}/whitelist/refresh", data=b"", method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:  # answered once the list is downloaded and applied
            print(resp.read().decode("utf-8", "replace"))
    except OSError as exc:  # the DRIMbox's own failure is judged from what it then does, as for the embedded one
        print(f"déclencheur : {exc}")
    return 0


def kpi() -> int:
    try:
        sys.stdout.write((STATE / "kpi" / "ModelStat.log").read_text(encoding="utf-8"))
    except OSError:
        pass
    return 0


if __name__ == "__main__":
    action = sys.argv[1] if len(sys.argv) > 1 else ""
    actions = {"start": start, "stop": stop, "refresh-whitelist": refresh_whitelist, "kpi": kpi}
    if action not in actions:
        print(f"usage: hooks.py {'|'.join(actions)}", file=sys.stderr)
        sys.exit(2)
    sys.exit(actions[action]())
