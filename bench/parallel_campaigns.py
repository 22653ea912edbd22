"""Benchmark: several campaigns against the embedded reference at once, on one machine, repeated.

Usage: .venv/bin/python bench/parallel_campaigns.py [--runs 5] [--jobs 3] [--full] [--out DIR]

Each repetition starts `--jobs` campaigns at the same moment (separate `drimcheck run` processes, each
with its own reference DRIMbox, Orthanc PACS and simulators) and waits for all of them. By default only
a subset runs (the HealthCheck scenarios, which stop and restart a PACS, and PACS-heavy Source and
Conso ones), so that 3 campaigns take about a minute on 2 cores; --full runs every scenario.
Every campaign must end CONFORME (exit 0, every selected requirement PASS). Prints one line per
campaign and a summary, and writes <out>/parallel_campaigns.json. Not a test: wall times depend on the
machine and its load (tests/test_parallel_campaigns.py checks the verdicts once).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

#: HealthCheck (PACS stopped and restarted: HLT-02/03), Source publication and refusals that query the PACS
#: (C-FIND), one study per PACS, images gone from the PACS, WADO-RS from the PACS, Conso export to the PACS.
SUBSET = ("HLT-01", "HLT-02", "HLT-03", "HLT-04", "HLT-05", "HLT-06", "SRC-01", "SRC-04", "SRC-07", "SRC-08",
          "WADO-01", "CON-05")


@dataclass
class Outcome:
    out: str
    exit_code: int | None
    wall_s: float
    verdict: str | None = None
    not_passed: dict[str, str] = field(default_factory=dict)  # requirement -> verdict, for selected ones
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return (self.exit_code == 0 and self.verdict.startswith("CONFORME") and not self.not_passed
                and self.problem is None)


def run_parallel(out: Path, jobs: int, requirements: tuple[str, ...] | None, timeout_s: float = 600) -> list[Outcome]:
    """Start `jobs` campaigns at once (same requirements), wait for all; one Outcome per campaign."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    procs = []
    for i in range(jobs):
        run_dir = out / f"campaign-{i + 1}"
        cmd = [sys.executable, "-m", "drimcheck", "run", "--quiet", "--out", str(run_dir)]
        for req in requirements or ():
            cmd += ["--req", req]
        log = open(out / f"campaign-{i + 1}.log", "wb")
        procs.append((run_dir, log, time.monotonic(), subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)))
    outcomes = []
    deadline = time.monotonic() + timeout_s
    for run_dir, log, t0, proc in procs:
        try:
            rc = proc.wait(max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
        wall = time.monotonic() - t0
        log.close()
        outcome = Outcome(str(run_dir), rc, round(wall, 2))
        try:
            data = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            outcome.problem = f"results.json unreadable: {exc}"
            outcomes.append(outcome)
            continue
        outcome.verdict = data["run"].get("verdict")
        selected = set(requirements) if requirements else None
        for r in data["requirements"]:
            wanted = r["id"] in selected if selected else r["verdict"] not in ("NOT_TESTED",)
            if wanted and r["verdict"] != "PASS":
                outcome.not_passed[r["id"]] = r["verdict"]
        outcomes.append(outcome)
    return outcomes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=3)
    parser.add_argument("--full", action="store_true", help="every scenario instead of the HLT/PACS subset")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench" / "parallel")
    args = parser.parse_args()
    requirements = None if args.full else SUBSET
    reps = []
    for rep in range(1, args.runs + 1):
        t0 = time.monotonic()
        outcomes = run_parallel(args.out / f"rep-{rep}", args.jobs, requirements)
        wall = time.monotonic() - t0
        good = sum(o.ok for o in outcomes)
        reps.append({"rep": rep, "wall_s": round(wall, 2), "conforme": good, "campaigns": [asdict(o) for o in outcomes]})
        print(f"repetition {rep}: {good}/{len(outcomes)} CONFORME, wall {wall:.1f} s")
        for o in outcomes:
            extra = o.problem or (", ".join(f"{k} {v}" for k, v in sorted(o.not_passed.items())) or "")
            print(f"  {Path(o.out).name}: exit {o.exit_code}, {o.verdict}, {o.wall_s:.1f} s {extra}".rstrip())
    walls = [r["wall_s"] for r in reps]
    total = sum(len(r["campaigns"]) for r in reps)
    good = sum(r["conforme"] for r in reps)
    print(f"\n{good}/{total} campaigns CONFORME over {len(reps)} repetitions of {args.jobs} parallel campaigns "
          f"({'full' if args.full else 'subset ' + ' '.join(SUBSET)}); wall per repetition: median "
          f"{statistics.median(walls):.1f} s, max {max(walls):.1f} s")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "parallel_campaigns.json").write_text(json.dumps(
        {"jobs": args.jobs, "full": args.full, "requirements": requirements, "repetitions": reps,
         "conforme": good, "campaigns": total}, indent=2, ensure_ascii=False), encoding="utf-8")
    return 0 if good == total else 1


if __name__ == "__main__":
    sys.exit(main())
