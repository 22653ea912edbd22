"""`drimcheck selftest`: prove every automated check can fail, and fails only for its own requirement.

The campaign runs (strict mode, so inferred requirements FAIL) against the golden reference
DRIMbox, which must pass everything, and against each mutant, which must fail on at least one
requirement it declares and on none it does not declare. Each campaign is a separate
`drimcheck run` process, several at a time.

Two matrices:
- targeted (default, what `make test` runs): the golden campaign is complete; each mutant campaign runs the
  scenarios tagged with the requirements it declares (`--req`), so "on none it does not declare" is judged
  over the requirements those scenarios judge;
- full (`--full`, `make selftest-full`): every mutant against every scenario, the complete cross-matrix.
`--shard K/N` runs one N-th of the mutants (the golden campaign in shard 1) so a CI matrix can split the
work; `--combine DIR...` judges the shards' selftest.json together, as one selftest.
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


@dataclass(frozen=True)
class Plan:
    label: str
    out_dir: Path
    mutant: str | None = None
    reqs: tuple[str, ...] = ()  # empty: every scenario (complete campaign)


def _run_one(plan: Plan, env: dict[str, str]) -> CampaignOutcome:
    label = plan.label
    cmd = [sys.executable, "-m", "drimcheck", "run", "--strict", "--quiet", "--force", "--out", str(plan.out_dir)]
    if plan.mutant:
        cmd += ["--mutant", plan.mutant]
    for req in plan.reqs:
        cmd += ["--req", req]
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
        data = json.loads((plan.out_dir / "results.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        outcome.problem = f"no results.json ({exc}); stderr: {stderr.strip()[-300:]}"
        return outcome
    for r in data["requirements"]:
        {"FAIL": outcome.failed, "ERROR": outcome.errored, "WARN": outcome.warned,
         "PASS": outcome.passed}.get(r["verdict"], set()).add(r["id"])
    if data["run"].get("infrastructure_error"):
        outcome.problem = data["run"]["infrastructure_error"]
    return outcome


def parse_shard(text: str) -> tuple[int, int]:
    """'K/N' with 1 <= K <= N -> (K, N); ValueError otherwise."""
    k, sep, n = text.partition("/")
    if not sep or not k.isdigit() or not n.isdigit() or not 1 <= int(k) <= int(n):
        raise ValueError(f"--shard attend K/N avec 1 <= K <= N (reçu : {text!r})")
    return int(k), int(n)


def run_selftest(out: Path, *, jobs: int = 2, only: list[str] | None = None, full: bool = False,
                 shard: tuple[int, int] | None = None) -> int:
    """Exit 0/1 as judged; 128 + signal number (130, 143) when SIGINT/SIGTERM stops it: every campaign
    process gets the signal, writes its own reports and cleans up; no selftest.json is written."""
    if threading.current_thread() is not threading.main_thread():
        return _run_selftest(out, jobs=jobs, only=only, full=full, shard=shard)

    def handler(signum, frame):
        first = _CAMPAIGNS.signum is None
        with _CAMPAIGNS.lock:
            _CAMPAIGNS.signum = _CAMPAIGNS.signum or signum
        _CAMPAIGNS.forward(signum)  # a terminal's Ctrl-C reached them already; a CI's SIGTERM did not
        if first:
            raise _Interrupted(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return _run_selftest(out, jobs=jobs, only=only, full=full, shard=shard)
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


def _plans(out: Path, selected: list, *, full: bool, golden: bool) -> list[Plan]:
    plans = [Plan("golden", out / "golden")] if golden else []
    for m in selected:
        plans.append(Plan(m.id, out / "mutants" / m.id, m.id, () if full else tuple(m.violates)))
    return plans


def _run_selftest(out: Path, *, jobs: int = 2, only: list[str] | None = None, full: bool = False,
                  shard: tuple[int, int] | None = None) -> int:
    from simulators.drimbox import mutants as mutant_catalogue

    catalogue = mutant_catalogue.load()
    if only:
        unknown = sorted(set(only) - set(catalogue))
        if unknown:
            print(f"drimcheck : erreur : mutant(s) inconnu(s) : {', '.join(unknown)} (voir « drimcheck mutants »)",
                  file=sys.stderr)
            return ExitCode.USAGE
    selected = sorted((m for m in catalogue.values() if not only or m.id in only), key=lambda m: m.id)
    if shard is not None:
        k, n = shard
        selected = [m for i, m in enumerate(selected) if i % n == k - 1]
    rows = {r["id"]: r for r in coverage_rows()}
    automated = sorted(r for r, row in rows.items() if row["automated"])
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with_golden = shard is None or shard[0] == 1
    matrix = "complète (chaque mutant contre tous les scénarios)" if full else \
        "ciblée (chaque mutant contre les scénarios de ses exigences)"
    where = f", tranche {shard[0]}/{shard[1]}" if shard else ""
    print(f"drimcheck selftest : {'référence + ' if with_golden else ''}{len(selected)} mutant(s), matrice {matrix}"
          f"{where}, {jobs} campagne(s) en parallèle", flush=True)

    plans = _plans(out, selected, full=full, golden=with_golden)
    key_pool = Path(tempfile.mkdtemp(prefix=f"drimcheck-keys-{os.getpid()}-"))  # never under the report directory
    try:
        _make_key_pool(key_pool, jobs)
        env = {**os.environ, "DRIMCHECK_KEY_POOL": str(key_pool)}
        outcomes = _run_campaigns(plans, jobs, env)
        # A campaign that did not go as expected runs once more, alone (no parallel load): timing-sensitive
        # checks can be starved on a loaded 2-core machine. Both attempts are reported (selftest.json).
        by_id = {m.id: m for m in selected}
        again = [Plan(p.label, p.out_dir.with_name(p.out_dir.name + "-retry"), p.mutant, p.reqs) for p in plans
                 if not _as_expected(outcomes[p.label], by_id.get(p.label), automated)]
        first = {}
        if again:
            print(f"relance, une campagne à la fois : {', '.join(p.label for p in again)}", flush=True)
            for label, outcome in _run_campaigns(again, 1, env).items():
                first[label] = outcomes[label]
                outcomes[label] = outcome
    finally:
        shutil.rmtree(key_pool, ignore_errors=True)
    report = _report(selected, outcomes, automated, first, full=full, shard=shard)
    return _conclude(out, report, automated, complete=not only and shard is None, t0=t0)


def kill_rule(declared: set[str], failed: set[str], unexpected: set[str], *, known_gap: bool) -> bool:
    """The mutant kill rule, the only one: a mutant is as expected when it fails (FAIL) on at least one
    requirement it declares and fails or errs on none it does not declare. A known gap is not expected to be
    killed, but a failure outside its declaration is still wrong. `unexpected`: failed or errored requirements
    outside `declared` (see _unexpected)."""
    if unexpected:
        return False
    return known_gap or bool(failed & declared)


def _unexpected(declared: set[str], o: CampaignOutcome) -> set[str]:
    return (o.failed | o.errored) - declared


def _as_expected(o: CampaignOutcome, mutant, automated: list[str]) -> bool:
    """Golden (mutant None): everything automated PASS. Mutant: the kill rule."""
    if o.problem is not None:
        return False
    if mutant is None:
        return o.exit_code == 0 and not (o.failed | o.errored | o.warned) and set(automated) <= o.passed
    declared = set(mutant.violates)
    return kill_rule(declared, o.failed, _unexpected(declared, o), known_gap=bool(mutant.known_gap))


def _run_campaigns(plans: list[Plan], jobs: int, env: dict[str, str]) -> dict[str, CampaignOutcome]:
    outcomes: dict[str, CampaignOutcome] = {}
    pool = ThreadPoolExecutor(max_workers=jobs)
    try:
        futures = {p.label: pool.submit(_run_one, p, env) for p in plans}
        for p in plans:
            outcomes[p.label] = futures[p.label].result()
            o = outcomes[p.label]
            print(f"  {p.label:<24} exit {o.exit_code}  {o.duration_s:5.1f} s  "
                  f"FAIL={','.join(sorted(o.failed)) or '-'}  ERROR={','.join(sorted(o.errored)) or '-'}", flush=True)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)  # interrupted: no new campaign; running ones get the signal
    return outcomes


def _attempt(o: CampaignOutcome) -> dict:
    return {"failed_requirements": sorted(o.failed), "errored_requirements": sorted(o.errored),
            "problem": o.problem, "duration_s": round(o.duration_s, 1)}


def _report(selected: list, outcomes: dict[str, CampaignOutcome], automated: list[str],
            first: dict[str, CampaignOutcome], *, full: bool, shard: tuple[int, int] | None) -> dict:
    """selftest.json's content (without the verdict): golden, one entry per mutant."""
    report: dict = {"matrix": "full" if full else "targeted",
                    "shard": f"{shard[0]}/{shard[1]}" if shard else None, "golden": None, "mutants": []}
    if "golden" in outcomes:
        golden = outcomes["golden"]
        golden_failures = sorted(golden.failed | golden.errored | golden.warned)
        golden_not_passed = sorted(set(automated) - golden.passed)
        golden_ok = golden.problem is None and golden.exit_code == 0 and not golden_failures and not golden_not_passed
        report["golden"] = {"passed": golden_ok,
                            "failures": golden_failures + ([golden.problem] if golden.problem else []),
                            "not_passed": golden_not_passed, "duration_s": round(golden.duration_s, 1)}
        if "golden" in first:
            report["golden"]["first_attempt"] = _attempt(first["golden"])
    for m in selected:
        o = outcomes[m.id]
        declared = set(m.violates)
        entry = {"id": m.id, "title": m.title, "violates": list(m.violates),
                 "scenarios": "all" if full else list(m.violates),
                 "killed": bool(o.failed & declared),
                 "failed_requirements": sorted(o.failed), "unexpected_failures": sorted(_unexpected(declared, o)),
                 "duration_s": round(o.duration_s, 1)}
        if m.known_gap:
            entry["known_gap"] = m.known_gap
        if o.problem:
            entry["problem"] = o.problem
        if m.id in first:
            entry["first_attempt"] = _attempt(first[m.id])
        report["mutants"].append(entry)
    return report


def _conclude(out: Path, report: dict, automated: list[str], *, complete: bool, t0: float) -> int:
    """Judge a report (one selftest, or shards combined), write selftest.json, print the summary."""
    golden = report["golden"]
    all_ok = golden is None or golden["passed"]
    if complete and golden is None:
        all_ok = False  # a complete selftest without its golden campaign proves nothing
    killers: dict[str, list[str]] = {r: [] for r in automated}
    for e in report["mutants"]:
        bad_declaration = sorted(set(e["violates"]) - set(automated))
        if bad_declaration:
            e["declares_non_automated"] = bad_declaration
        killed_on = sorted(set(e["failed_requirements"]) & set(e["violates"]))
        for r in killed_on:
            killers.setdefault(r, []).append(e["id"])
        # a known gap is reported, never a pass or a failure of the selftest by being missed (kill_rule)
        all_ok &= kill_rule(set(e["violates"]), set(e["failed_requirements"]), set(e["unexpected_failures"]),
                            known_gap=bool(e.get("known_gap"))) and not bad_declaration and not e.get("problem")
    gaps = [e for e in report["mutants"] if e.get("known_gap")]
    report["known_gaps"] = {"total": len(gaps), "still_missed": sorted(e["id"] for e in gaps if not e["killed"]),
                            "now_caught": sorted(e["id"] for e in gaps if e["killed"])}
    report["requirements"] = [{"id": r, "automated": True, "killing_mutants": killers[r]} for r in automated]
    if complete:
        all_ok &= all(killers[r] for r in automated)
    report["passed"] = all_ok
    report["duration_s"] = round(time.monotonic() - t0, 1)
    (out / "selftest.json").write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")

    if golden is None:
        print("référence : non lancée dans cette tranche")
    else:
        print(f"référence : {'OK' if golden['passed'] else 'ÉCHEC ' + ', '.join(golden['failures'] + golden['not_passed'])}")
    for e in report["mutants"]:
        state = "tué" if e["killed"] and not e["unexpected_failures"] else "NON TUÉ" if not e["killed"] else "tué mais hors cible"
        if e.get("known_gap") and not e["unexpected_failures"]:
            state = "lacune connue, non détectée" if not e["killed"] else "lacune connue, désormais détectée (retirer known_gap)"
        extra = f" ; échecs inattendus : {', '.join(e['unexpected_failures'])}" if e["unexpected_failures"] else ""
        if "first_attempt" in e:
            extra += " ; verdict de la relance (1re tentative : échoue sur " + \
                f"{', '.join(e['first_attempt']['failed_requirements'] + e['first_attempt']['errored_requirements']) or 'rien'})"
        print(f"  {e['id']:<24} {state} (déclare {', '.join(e['violates'])} ; échoue sur "
              f"{', '.join(e['failed_requirements']) or 'rien'}){extra}")
    if gaps:
        print(f"lacunes connues (mutants réalistes écrits sans lire les contrôles) : {len(gaps)}, dont "
              f"{len(report['known_gaps']['still_missed'])} non détectée(s) : "
              f"{', '.join(report['known_gaps']['still_missed']) or 'aucune'}")
    orphans = [r["id"] for r in report["requirements"] if not r["killing_mutants"]]
    if orphans and complete:
        print(f"exigences automatisées sans mutant tueur : {', '.join(orphans)}")
    print(f"selftest : {'RÉUSSI' if all_ok else 'ÉCHEC'} en {report['duration_s']:.1f} s — {out / 'selftest.json'}")
    return ExitCode.CONFORMANT if all_ok else ExitCode.NON_CONFORMANT


def combine(out: Path, shard_dirs: list[Path]) -> int:
    """Judge the selftest.json of every shard of one matrix as a single selftest (CI matrix fan-in)."""
    from simulators.drimbox import mutants as mutant_catalogue

    t0 = time.monotonic()
    reports = []
    for d in shard_dirs:
        path = d / "selftest.json"
        try:
            if path.stat().st_size > 16 * 1024 * 1024:
                raise ValueError("fichier trop grand")
            reports.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            print(f"drimcheck : erreur : {path} illisible ({type(exc).__name__})", file=sys.stderr)
            return ExitCode.USAGE
    try:
        matrices = {r["matrix"] for r in reports}
        shards = [r["shard"] for r in reports]
        goldens = [r["golden"] for r in reports if r.get("golden")]
        mutant_entries = [e for r in reports for e in r["mutants"]]
    except (KeyError, TypeError):
        print("drimcheck : erreur : un selftest.json n'a pas la forme attendue", file=sys.stderr)
        return ExitCode.USAGE
    if len(matrices) != 1 or None in shards or len(goldens) != 1:
        print("drimcheck : erreur : --combine attend les tranches d'une même matrice (--shard K/N), "
              "dont exactement une avec la campagne de référence", file=sys.stderr)
        return ExitCode.USAGE
    ns = {s.split("/")[1] for s in shards}
    ks = sorted(int(s.split("/")[0]) for s in shards)
    missing = sorted(set(mutant_catalogue.load()) - {e["id"] for e in mutant_entries})
    if len(ns) != 1 or ks != list(range(1, int(next(iter(ns))) + 1)) or missing:
        print(f"drimcheck : erreur : tranches incomplètes ({', '.join(sorted(shards))})"
              + (f" ; mutants absents : {', '.join(missing[:5])}" if missing else ""), file=sys.stderr)
        return ExitCode.USAGE
    rows = {r["id"]: r for r in coverage_rows()}
    automated = sorted(r for r, row in rows.items() if row["automated"])
    report = {"matrix": matrices.pop(), "shard": None, "combined_from": sorted(shards), "golden": goldens[0],
              "mutants": sorted(mutant_entries, key=lambda e: e["id"])}
    out.mkdir(parents=True, exist_ok=True)
    return _conclude(out, report, automated, complete=True, t0=t0)
