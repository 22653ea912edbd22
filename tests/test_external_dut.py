"""The vendor path: the reference DRIMbox run as an EXTERNAL DUT from its kit (examples/external-dut/) gives
the embedded run's verdicts, requirement by requirement, and a mutant gives the same FAIL.

One test function on purpose: the example listens on fixed ports (246xx), so its campaigns never run in parallel.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.golden import golden_full_run

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "external-dut"
MUTANT, MUTANT_REQ = "src-vihf-unsigned", "XDS-03"  # a behaviour mutant: passed in the reference's own config

pytestmark = pytest.mark.slow


def drimcheck(*args: str, env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "drimcheck", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=900, env={**os.environ, **(env or {})})
    return proc, time.monotonic() - started


def verdicts(out: Path) -> tuple[dict[str, str], dict[str, str], dict]:
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    return ({r["id"]: r["verdict"] for r in results["requirements"]},
            {s["name"]: s["verdict"] for s in results["scenarios"]}, results)


def failures(results: dict) -> set[tuple[str, str]]:
    return {(s["name"], f["requirement"]) for s in results["scenarios"] for f in s["findings"] if f["verdict"] == "FAIL"}


def test_external_reference_from_its_kit_matches_the_embedded_run(tmp_path, tmp_path_factory):
    kit = tmp_path / "kit"
    sut = tmp_path / "sut.toml"
    sut.write_text((EXAMPLE / "sut.toml").read_text(encoding="utf-8").replace('kit = "kit"', f'kit = "{kit}"'),
                   encoding="utf-8")
    env = {"EXTERNAL_DUT_KIT": str(kit), "EXTERNAL_DUT_STATE": str(tmp_path / "state")}
    proc, _ = drimcheck("kit", "--sut", str(sut), "--out", str(kit))
    assert proc.returncode == 0, proc.stderr

    ext, ext_s = drimcheck("run", "--sut", str(sut), "--out", str(tmp_path / "ext"), "--quiet", env=env)
    assert not (tmp_path / "state" / "drimbox.pid").exists(), "after_campaign must stop the DRIMbox by its PID"
    emb_dir, emb = golden_full_run(tmp_path_factory)  # the session's embedded golden run (shared)
    print(f"wall time: external {ext_s:.1f} s")
    ext_req, ext_sc, ext_results = verdicts(tmp_path / "ext")
    emb_req, emb_sc, _ = verdicts(emb_dir)
    assert ext_results["sut"]["embedded"] is None  # drimcheck did not launch it
    assert emb.returncode == 0, emb.stderr
    assert ext_req == emb_req
    assert ext_sc == emb_sc
    assert ext.returncode == 0, ext.stderr
    log = (tmp_path / "state" / "drimbox.log").read_text(encoding="utf-8", errors="replace")
    assert log  # the reference really ran from the example's hooks

    # the same mutant, embedded (--mutant) and external (in its own configuration, DRIMBOX_MUTANT for the hook)
    ext_m, _ = drimcheck("run", "--sut", str(sut), "--out", str(tmp_path / "ext-m"), "--quiet", "--req", MUTANT_REQ,
                         env={**env, "DRIMBOX_MUTANT": MUTANT})
    emb_m, _ = drimcheck("run", "--mutant", MUTANT, "--out", str(tmp_path / "emb-m"), "--quiet", "--req", MUTANT_REQ)
    assert ext_m.returncode == emb_m.returncode == 1, (ext_m.stderr, emb_m.stderr)
    ext_req_m, _, ext_results_m = verdicts(tmp_path / "ext-m")
    emb_req_m, _, emb_results_m = verdicts(tmp_path / "emb-m")
    assert ext_req_m[MUTANT_REQ] == emb_req_m[MUTANT_REQ] == "FAIL"
    assert ext_req_m == emb_req_m
    assert failures(ext_results_m) == failures(emb_results_m) and failures(ext_results_m)
    config = json.loads((tmp_path / "state" / "drimbox.json").read_text(encoding="utf-8"))
    assert config["mutant"] == MUTANT
    assert not re.search(r"/harness/", json.dumps(config))  # configured from the kit's dut/ part only
