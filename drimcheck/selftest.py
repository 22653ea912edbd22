"""`drimcheck selftest`: prove every automated check can fail, and fails only for its own requirement.

The campaign runs (strict mode, so inferred requirements FAIL) against the golden reference
DRIMbox, which must pass everything, and against each mutant, which must fail on at least one
requirement it declares and on none it does not declare. Each campaign is a separate
`drimcheck run` process, several at a time.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from drimcheck.coverage import coverage_rows
from drimcheck.verdicts import ExitCode

CAMPAIGN_TIMEOUT_S = 900
KEY_POOL_SIZE = 96  # RSA keys shared by the campaigns of one selftest (a campaign uses ~30)
STOP_GRACE_S = 11  # a campaign stops within 10 s of SIGINT/SIGTERM (runner.InterruptGuard); then SIGKILL


class _Interrupted(KeyboardInterrupt):
    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


class _Campaigns:
    """The campaign processes of a selftest, so that a signal reaches every one of them."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running: set[subprocess.Popen] = set()
        self.signum: int | None = None

    def forward(self, signum: int) -> None:
        with self.lock:
            for proc in self.running:
                try:
                    proc.send_signal(signum)
                except (ProcessLookupError, OSError):
                    pass

    def wait_all(self, grace: float) -> None:
        end = time.monotonic() + grace
        with self.lock:
            procs = list(self.running)
        for proc in procs:
            try:
                proc.wait(max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()


_CAMPAIGNS = _Campaigns()


@dataclass
class CampaignOutcome:
    label: str
    exit_code: int
    duration_s: float
    failed: set[str] = field(default_factory=set)  # requirement verdict FAIL
    errored: set[str] = field(default_factory=set)  # requirement verdict ERROR
    warned: set[str] = field(default_factory=set)
    passed: set[str] = field(default_factory=set)
    problem: str | None = None  # the campaign itself did not produce results


def _make_key_pool(directory: Path, jobs: int) -> None:
    """Generate the selftest's key pool with every core (see fixtures.pki.new_rsa_key)."""
    from concurrent.futures import ProcessPoolExecutor

    from fixtures.pki import make_key_pool

    workers = max(1, min(jobs, os.cpu_count() or 1))
    share = -(-KEY_POOL_SIZE // workers)
    pool = ProcessPoolExecutor(max_workers=workers)
    try:
        for f in [pool.submit(make_key_pool, directory, share, 2048, i * share) for i in range(workers)]:
            f.result()
    except BaseException:  # interrupted: the workers must not go on generating keys
        for proc in list((getattr(pool, "_processes", None) or {}).values()):
            proc.kill()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


def _run_one(label: str, out_dir: Path, mutant: str | None, env: dict[str, str]) -> CampaignOutcome:
    cmd = [sys.executable, "-m", "drimcheck", "run", "--strict", "--quiet", "--force", "--out", str(out_dir)]
    if mutant:
        cmd += ["--mutant", mutant]
    t0 = time.monotonic()
    with _CAMPAIGNS.lock:
        if _CAMPAIGNS.signum is not None:
            return CampaignOutcome(label, -1, 0.0, problem="selftest interrompu")
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        _CAMPAIGNS.running.add(proc)
    try:
        _, stderr = proc.communicate(timeout=CAMPAIGN_TIMEOUT_S)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return CampaignOutcome(label, -1, time.monotonic() - t0, problem=f"timeout after {CAMPAIGN_TIMEOUT_S} s")
    finally:
        with _CAMPAIGNS.lock:
            _CAMPAIGNS.running.discard(proc)
    outcome = CampaignOutcome(label, code, time.monotonic() - t0)
    try:
        data = json.loads((out_dir / "results.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        outcome.problem = f"no results.json ({exc}); stderr: {stderr.strip()[-300:]}"
        return outcome
    for r in data["requirements"]:
        {"FAIL": outcome.failed, "ERROR": outcome.errored, "WARN": outcome.warned,
         "PASS": outcome.passed}.get(r["verdict"], set()).add(r["id"])
    if data["run"].get("infrastructure_error"):
        outcome.problem = data["run"]["infrastructure_error"]
    return outcome


def run_selftest(out: Path, *, jobs: int = 2, only: list[str] | None = None) -> int:
    """Exit 0/1 as judged; 128 + signal number (130, 143) when SIGINT/SIGTERM stops it: every campaign
    process gets the signal, writes its own reports and cleans up; no selftest.json is written."""
    if threading.current_thread() is not threading.main_thread():
        return _run_selftest(out, jobs=jobs, only=only)

    def handler(signum, frame):
        first = _CAMPAIGNS.signum is None
        with _CAMPAIGNS.lock:
            _CAMPAIGNS.signum = _CAMPAIGNS.signum or signum
        _CAMPAIGNS.forward(signum)  # a terminal's Ctrl-C reached them already; a CI's SIGTERM did not
        if first:
            raise _Interrupted(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return _run_selftest(out, jobs=jobs, only=only)
    except KeyboardInterrupt:
        signum = _CAMPAIGNS.signum or signal.SIGINT
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)  # stopping: further signals change nothing
        _CAMPAIGNS.wait_all(STOP_GRACE_S)
        print(f"selftest interrompu ({signal.Signals(signum).name}) : les campagnes lancées ont écrit leurs rapports "
              f"sous {out}", flush=True)
        return 128 + int(signum)
    finally:
        for sig, h in previous.items():
            if signal.getsignal(sig) is not signal.SIG_IGN:
                signal.signal(sig, h)


def _run_selftest(out: Path, *, jobs: int = 2, only: list[str] | None = None) -> int:
    from simulators.drimbox import mutants as mutant_catalogue

    catalogue = mutant_catalogue.load()
    if only:
        unknown = sorted(set(only) - set(catalogue))
        if unknown:
            print(f"drimcheck : erreur : mutant(s) inconnu(s) : {', '.join(unknown)} (voir « drimcheck mutants »)", file=sys.stderr)
            return ExitCode.USAGE
    selected = [m for m in catalogue.values() if not only or m.id in only]
    rows = {r["id"]: r for r in coverage_rows()}
    automated = sorted(r for r, row in rows.items() if row["automated"])
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    print(f"drimcheck selftest : référence + {len(selected)} mutant(s), {jobs} campagne(s) en parallèle", flush=True)

    plans = [("golden", out / "golden", None)] + [(m.id, out / "mutants" / m.id, m.id) for m in selected]
    key_pool = Path(tempfile.mkdtemp(prefix=f"drimcheck-keys-{os.getpid()}-"))  # never under the report directory
    try:
        _make_key_pool(key_pool, jobs)
        env = {**os.environ, "DRIMCHECK_KEY_POOL": str(key_pool)}
        outcomes = _run_campaigns(plans, jobs, env)
        # A campaign that did not go as expected runs once more, alone (no parallel load): timing-sensitive
        # checks can be starved on a loaded 2-core machine. Both attempts are reported (selftest.json).
        by_id = {m.id: m for m in selected}
        again = [(label, d.with_name(d.name + "-retry"), mid) for label, d, mid in plans
                 if not _as_expected(outcomes[label], by_id.get(label), automated)]
        first = {}
        if again:
            print(f"relance, une campagne à la fois : {', '.join(label for label, _, _ in again)}", flush=True)
            for label, outcome in _run_campaigns(again, 1, env).items():
                first[label] = outcomes[label]
                outcomes[label] = outcome
    finally:
        shutil.rmtree(key_pool, ignore_errors=True)
    return _judge(out, selected, outcomes, automated, only, t0, first)


def _as_expected(o: CampaignOutcome, mutant, automated: list[str]) -> bool:
    """Golden (mutant None): everything automated PASS. Mutant: killed on a declared requirement, nothing else."""
    if o.problem is not None:
        return False
    if mutant is None:
        return o.exit_code == 0 and not (o.failed | o.errored | o.warned) and set(automated) <= o.passed
    declared = set(mutant.violates)
    return bool(o.failed & declared) and not ((o.failed | o.errored) - declared)


def _run_campaigns(plans: list, jobs: int, env: dict[str, str]) -> dict[str, CampaignOutcome]:
    outcomes: dict[str, CampaignOutcome] = {}
    pool = ThreadPoolExecutor(max_workers=jobs)
    try:
        futures = {label: pool.submit(_run_one, label, d, mid, env) for label, d, mid in plans}
        for label, _, _ in plans:
            outcomes[label] = futures[label].result()
            o = outcomes[label]
            print(f"  {label:<24} exit {o.exit_code}  {o.duration_s:5.1f} s  "
                  f"FAIL={','.join(sorted(o.failed)) or '-'}  ERROR={','.join(sorted(o.errored)) or '-'}", flush=True)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)  # interrupted: no new campaign; running ones get the signal
    return outcomes


def _attempt(o: CampaignOutcome) -> dict:
    return {"failed_requirements": sorted(o.failed), "errored_requirements": sorted(o.errored),
            "problem": o.problem, "duration_s": round(o.duration_s, 1)}


def _judge(out: Path, selected: list, outcomes: dict[str, CampaignOutcome], automated: list[str],
           only: list[str] | None, t0: float, first: dict[str, CampaignOutcome]) -> int:
    golden = outcomes["golden"]
    golden_failures = sorted(golden.failed | golden.errored | golden.warned)
    golden_not_passed = sorted(set(automated) - golden.passed)
    golden_ok = golden.problem is None and golden.exit_code == 0 and not golden_failures and not golden_not_passed
    report = {
        "golden": {"passed": golden_ok, "failures": golden_failures + ([golden.problem] if golden.problem else []),
                   "not_passed": golden_not_passed, "duration_s": round(golden.duration_s, 1)},
        "mutants": [],
        "requirements": [],
    }
    if "golden" in first:
        report["golden"]["first_attempt"] = _attempt(first["golden"])
    all_ok = golden_ok
    killers: dict[str, list[str]] = {r: [] for r in automated}
    for m in selected:
        o = outcomes[m.id]
        declared = set(m.violates)
        killed_on = sorted(o.failed & declared)
        unexpected = sorted((o.failed | o.errored) - declared)
        bad_declaration = sorted(declared - set(automated))
        entry = {"id": m.id, "title": m.title, "violates": list(m.violates), "killed": bool(killed_on),
                 "failed_requirements": sorted(o.failed), "unexpected_failures": unexpected,
                 "duration_s": round(o.duration_s, 1)}
        if o.problem:
            entry["problem"] = o.problem
        if m.id in first:
            entry["first_attempt"] = _attempt(first[m.id])
        if bad_declaration:
            entry["declares_non_automated"] = bad_declaration
        report["mutants"].append(entry)
        for r in killed_on:
            killers[r].append(m.id)
        all_ok &= bool(killed_on) and not unexpected and not bad_declaration and o.problem is None
    for r in automated:
        report["requirements"].append({"id": r, "automated": True, "killing_mutants": killers[r]})
        if not only:
            all_ok &= bool(killers[r])
    report["passed"] = all_ok
    report["duration_s"] = round(time.monotonic() - t0, 1)
    (out / "selftest.json").write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")

    print(f"référence : {'OK' if golden_ok else 'ÉCHEC ' + ', '.join(report['golden']['failures'] + golden_not_passed)}")
    for e in report["mutants"]:
        state = "tué" if e["killed"] and not e["unexpected_failures"] else "NON TUÉ" if not e["killed"] else "tué mais hors cible"
        extra = f" ; échecs inattendus : {', '.join(e['unexpected_failures'])}" if e["unexpected_failures"] else ""
        if "first_attempt" in e:
            extra += " ; verdict de la relance (1re tentative : échoue sur " + \
                f"{', '.join(e['first_attempt']['failed_requirements'] + e['first_attempt']['errored_requirements']) or 'rien'})"
        print(f"  {e['id']:<24} {state} (déclare {', '.join(e['violates'])} ; échoue sur "
              f"{', '.join(e['failed_requirements']) or 'rien'}){extra}")
    orphans = [r["id"] for r in report["requirements"] if not r["killing_mutants"]]
    if orphans and not only:
        print(f"exigences automatisées sans mutant tueur : {', '.join(orphans)}")
    print(f"selftest : {'RÉUSSI' if all_ok else 'ÉCHEC'} en {report['duration_s']:.1f} s — {out / 'selftest.json'}")
    return ExitCode.CONFORMANT if all_ok else ExitCode.NON_CONFORMANT
