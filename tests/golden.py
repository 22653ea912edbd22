"""One full campaign against the embedded reference, shared by the tests that only read its outcome
(imported, not collected).

Under pytest-xdist every worker asks for it; the first runs it, the others wait on a lock and read the same
run directory (the run root is the one pytest shares between the workers of a session). It is never reused
across sessions: a stale golden run would hide a regression. A test that needs a run of its own, or changes
the reference, must not use it.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _shared_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.getbasetemp()
    # xdist: each worker's basetemp is <session root>/popen-gwN, and the session root is theirs alone
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def golden_full_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """(run directory, the `drimcheck run` process) of this session's full campaign against the reference."""
    root = _shared_root(tmp_path_factory) / "golden-full-run"
    root.mkdir(exist_ok=True)
    out, log = root / "r", root / "proc.txt"
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the first worker runs it; the others wait here, then read it
        if not log.exists():
            proc = subprocess.run([sys.executable, "-m", "drimcheck", "run", "--out", str(out)], capture_output=True,
                                  text=True, cwd=REPO, timeout=600)
            log.write_text(f"{proc.returncode}\n{proc.stdout}\n\x00{proc.stderr}", encoding="utf-8")
        code, _, rest = log.read_text(encoding="utf-8").partition("\n")
        stdout, _, stderr = rest.partition("\n\x00")
    return out, subprocess.CompletedProcess(["drimcheck", "run"], int(code), stdout, stderr)
