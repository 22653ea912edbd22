"""The drimcheck command line: one entry point, subcommands, strict exit codes.

Exit codes: 0 conformant, 1 non-conformant, 2 usage or configuration error, 3 DUT unreachable or
infrastructure error (a failing hook included), 130 / 143 campaign or selftest interrupted by SIGINT /
SIGTERM (128 + signal number, as a shell reports it; the reports of what ran are written). Bad input is
reported in one line on stderr, never as a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from drimcheck import __version__
from drimcheck.verdicts import ExitCode

USE_COLOR = sys.stdout.isatty() and os.environ.get("NO_COLOR") is None
COLORS = {"PASS": "32", "FAIL": "31", "WARN": "33", "ERROR": "35", "SKIP": "90"}


class UsageError(Exception):
    """Bad arguments or files: one line, exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one clear line instead of usage + message
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _paint(verdict: str) -> str:
    text = f"{verdict:<5}"
    return f"\033[{COLORS[verdict]}m{text}\033[0m" if USE_COLOR and verdict in COLORS else text


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="drimcheck", description="Banc de conformité des DRIMbox (DRIM-M).")
    p.add_argument("--version", action="version", version=f"drimcheck {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    run = sub.add_parser("run", help="run a campaign against a DRIMbox (default: the embedded reference)")
    run.add_argument("--sut", type=Path, help="SUT description (sut.toml); default: the embedded reference DRIMbox")
    run.add_argument("--out", type=Path, help="report directory (default: runs/<timestamp>/)")
    run.add_argument("--strict", action="store_true", help="inferred requirements FAIL instead of WARN")
    run.add_argument("--req", action="append", metavar="ID", help="only scenarios tagged with this requirement (repeatable)")
    run.add_argument("--mutant", metavar="ID", help="run the embedded reference as this mutant (see 'drimcheck mutants')")
    run.add_argument("--quiet", action="store_true", help="no progress display")
    run.add_argument("--keep-workdir", action="store_true", help="keep the temporary directory (PKI, Orthanc, DUT logs)")

    st = sub.add_parser("selftest", help="golden reference must pass, every mutant must be caught on its requirement")
    st.add_argument("--out", type=Path, default=Path("runs/selftest"), help="directory for selftest.json and each campaign")
    st.add_argument("--jobs", type=int, default=2, help="campaigns run in parallel (default 2)")
    st.add_argument("--mutant", action="append", metavar="ID", help="only these mutants (repeatable)")

    req = sub.add_parser("requirements", help="list the requirement catalogue with its coverage")
    req.add_argument("--json", action="store_true", help="machine-readable output")

    sub.add_parser("mutants", help="list the mutants of the reference DRIMbox")

    init = sub.add_parser("init", help="write a commented sut.toml template")
    init.add_argument("--out", type=Path, default=Path("sut.toml"))
    init.add_argument("--force", action="store_true", help="overwrite an existing file")

    import importlib
    import pkgutil

    from drimcheck import commands

    for mod in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        importlib.import_module(f"drimcheck.commands.{mod.name}").register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.command is None:
            raise UsageError("a command is required: run, selftest, requirements, mutants, init (see 'drimcheck --help')")
        handler = getattr(args, "handler", None) or {
            "run": cmd_run, "selftest": cmd_selftest, "requirements": cmd_requirements,
            "mutants": cmd_mutants, "init": cmd_init}[args.command]
        return int(handler(args))
    except UsageError as exc:
        print(f"drimcheck: error: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    except KeyboardInterrupt:
        print("drimcheck: interrupted", file=sys.stderr)
        return ExitCode.INFRASTRUCTURE


def _load_sut(path: Path | None):
    from drimcheck.config import ConfigError, load

    try:
        return load(path)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None


def cmd_run(args: argparse.Namespace) -> int:
    from drimcheck import catalogue
    from drimcheck.runner import InterruptGuard, default_run_dir, run_campaign

    sut = _load_sut(args.sut)
    if args.mutant:
        if not sut.embedded:
            raise UsageError("--mutant only applies to the embedded reference DRIMbox")
        from simulators.drimbox import mutants

        try:
            mutants.get(args.mutant)
        except KeyError as exc:
            raise UsageError(exc.args[0]) from None
    reqs = set(args.req) if args.req else None
    if reqs:
        unknown = catalogue.unknown_ids(reqs)
        if unknown:
            raise UsageError(f"unknown requirement(s): {', '.join(unknown)} (see 'drimcheck requirements')")
    run_dir = args.out or default_run_dir()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / ".write-test").touch()
        (run_dir / ".write-test").unlink()
    except OSError as exc:
        raise UsageError(f"cannot write to {run_dir}: {exc.strerror or exc}") from None

    stream = sys.stdout  # the campaign captures pytest's own output; progress goes to the real stdout

    def progress(result, done, total):
        if args.quiet:
            return
        print(f"[{done}/{total}] {_paint(result.verdict.value)} {result.name} "
              f"({', '.join(result.requirements)}; {result.duration_s:.1f} s)", file=stream, flush=True)
        for f in result.findings:
            if f.verdict.value in ("FAIL", "ERROR", "WARN"):
                print(f"        {_paint(f.verdict.value)} {f.requirement}: {f.message}", file=stream, flush=True)

    if not args.quiet:
        label = sut.name + (f" (mutant {args.mutant})" if args.mutant else "")
        print(f"drimcheck {__version__} — campagne contre « {label} »{' — mode strict' if args.strict else ''}", flush=True)
    with InterruptGuard() as guard:  # SIGINT/SIGTERM: reports of what ran, cleanup, exit 130/143 within 10 s
        result = run_campaign(sut, run_dir, strict=args.strict, mutant=args.mutant, requirements=reqs,
                              keep_workdir=args.keep_workdir, on_scenario_done=progress,
                              command=["drimcheck", *(sys.argv[1:] if sys.argv[1:] else [])], guard=guard)
        paths = guard.write_reports(result, run_dir)
    if not args.quiet:
        summary = result.summary()
        scen = ", ".join(f"{n} {k}" for k, n in summary["scenarios"].items()) or "aucun"
        reqs_line = ", ".join(f"{n} {k}" for k, n in summary["requirements"].items())
        if result.infrastructure_error:
            print(f"ERREUR : {result.infrastructure_error}")
        print(f"Verdict : {result.verdict_fr} — scénarios : {scen} — exigences : {reqs_line} "
              f"({result.duration_s:.1f} s)")
        print(f"Rapport : {paths['html']} (et results.json, junit.xml, evidence/ dans {run_dir})")
    return int(result.exit_code)


def cmd_selftest(args: argparse.Namespace) -> int:
    from drimcheck.selftest import run_selftest

    if args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    return run_selftest(args.out, jobs=args.jobs, only=args.mutant)


def cmd_requirements(args: argparse.Namespace) -> int:
    from drimcheck.coverage import coverage_rows

    rows = coverage_rows()
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return 0
    automated = sum(1 for r in rows if r["automated"])
    for r in rows:
        mark = "auto" if r["automated"] else "----"
        print(f"{r['id']:<8} {mark}  {r['strength']:<8} {r['actor']:<6} {r['title']}")
        if not r["automated"]:
            print(f"{'':<16}non testé : {r['not_tested']}")
    print(f"\n{automated} exigences automatisées sur {len(rows)} cataloguées.")
    return 0


def cmd_mutants(args: argparse.Namespace) -> int:
    from simulators.drimbox import mutants

    for m in mutants.load().values():
        print(f"{m.id:<24} {', '.join(m.violates):<16} {m.title}")
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    from drimcheck.config import template_text

    if args.out.exists() and not args.force:
        raise UsageError(f"{args.out} already exists (use --force to overwrite)")
    try:
        args.out.write_text(template_text(), encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {args.out}: {exc.strerror or exc}") from None
    print(f"{args.out} written: describe your DRIMbox there, then run 'drimcheck run --sut {args.out}'")
    return 0


if __name__ == "__main__":
    sys.exit(main())
