"""Benchmark: wall time of a full campaign against the embedded reference DRIMbox (and per scenario).

Usage: .venv/bin/python bench/campaign.py [--runs 3] [--mutant ID]
Prints a table and writes runs/bench/campaign.json. Not a test: figures depend on the machine;
compare them with figures measured in the same run, never with fixed thresholds. Each run prints the
1-minute load average before it (other processes on a 2-core machine move the figures by seconds), the
verdict and the scenario count, the sum of the scenario durations and the rest (start-up before the first
scenario's body is counted in the first scenario; the rest is collection, teardown, reports, interpreter).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--mutant")
    args = parser.parse_args()
    out_root = REPO / "runs" / "bench" / "campaign"
    walls, loads, per_scenario = [], [], {}
    for i in range(args.runs):
        out = out_root / f"run-{i + 1}"
        cmd = [sys.executable, "-m", "drimcheck", "run", "--quiet", "--force", "--out", str(out)]
        if args.mutant:
            cmd += ["--mutant", args.mutant]
        load = os.getloadavg()[0]
        t0 = time.monotonic()
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        walls.append(time.monotonic() - t0)
        data = json.loads((out / "results.json").read_text())
        for s in data["scenarios"]:
            per_scenario.setdefault(s["name"], []).append(s["duration_s"])
        summed = sum(s["duration_s"] for s in data["scenarios"])
        loads.append(load)
        print(f"run {i + 1}: exit {proc.returncode}, {data['run']['verdict']}, {len(data['scenarios'])} scenarios, "
              f"wall {walls[-1]:.2f} s (in-run {data['run']['duration_s']:.2f} s, scenarios {summed:.2f} s, "
              f"rest {walls[-1] - summed:.2f} s), load {load:.2f}")
    print(f"\ncampaign wall time: median {statistics.median(walls):.2f} s, min {min(walls):.2f} s over {len(walls)} runs")
    for name, values in sorted(per_scenario.items(), key=lambda kv: -statistics.median(kv[1])):
        print(f"  {statistics.median(values):6.2f} s  {name}")
    result = {"runs": len(walls), "wall_s": walls, "median_s": statistics.median(walls), "load_1min": loads,
              "scenarios_median_s": {k: statistics.median(v) for k, v in per_scenario.items()}}
    out_root.mkdir(parents=True, exist_ok=True)
    (out_root.parent / "campaign.json").write_text(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
