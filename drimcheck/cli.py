"""The drimcheck command line: one entry point, subcommands, strict exit codes.

Exit codes: 0 conformant, 1 non-conformant, 2 usage or configuration error, 3 DUT unreachable or
infrastructure error (a failing hook included), 130 / 143 campaign or selftest interrupted by SIGINT /
SIGTERM (128 + signal number, as a shell reports it; the reports of what ran are written). Bad input is
reported in one line on stderr, never as a traceback: any UsageError, ConfigError or OSError on a named
file gives exit 2; a standard output that cannot be written (full disk, /dev/full) gives one line and
exit 2; a closed pipe (`| head`) ends quietly with the command's own code; anything unexpected gives one
line « erreur interne » and exit 3 (DRIMCHECK_DEBUG=1 adds the traceback).
"""

from __future__ import annotations

import argparse
import errno
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


def read_input(path: Path, limit: int, what: str = "fichier") -> bytes:
    """The bytes of an input file, read with a size cap (config.read_capped); UsageError otherwise."""
    from drimcheck.config import InputError, read_capped

    try:
        return read_capped(path, limit, what)
    except InputError as exc:
        raise UsageError(str(exc)) from None


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
    run.add_argument("--force", action="store_true",
                     help="empty --out first if it is a non-empty drimcheck report directory (otherwise refused)")
    run.add_argument("--referencement", action="store_true",
                     help="referencing campaign: complete, within the normative bounds, into an empty --out; "
                          "writes a verifiable package (referencement-<run>.zip)")
    run.add_argument("--sign-cert", type=Path, metavar="PEM",
                     help="with --referencement: operator certificate signing the package manifest (CMS detached)")
    run.add_argument("--sign-key", type=Path, metavar="PEM",
                     help="its private key (password, if any, in $DRIMCHECK_SIGN_KEY_PASSWORD)")

    st = sub.add_parser("selftest", help="golden reference must pass, every mutant must be caught on its requirement")
    st.add_argument("--out", type=Path, default=Path("runs/selftest"), help="directory for selftest.json and each campaign")
    st.add_argument("--jobs", type=int, default=2, help="campaigns run in parallel (default 2)")
    st.add_argument("--mutant", action="append", metavar="ID", help="only these mutants (repeatable)")

    req = sub.add_parser("requirements", help="list the requirement catalogue with its coverage")
    req.add_argument("--json", action="store_true", help="machine-readable output")
    req.add_argument("--coverage", action="store_true",
                     help="defect taxonomy: for each requirement, the axes covered, out of scope or still to cover")

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


class _GuardedStdout:
    """sys.stdout during main(): a closed pipe or a full disk never raises out of a print.

    A broken pipe (`drimcheck requirements | head -1`) silences the rest of the output and the command
    ends normally; any other write error (ENOSPC on /dev/full, EIO...) is remembered, the rest of the
    output is dropped, and main() reports it in one line with exit 2 once the command is done (a
    campaign still writes its reports). The file descriptor is pointed at /dev/null so that the final
    flush at interpreter exit cannot fail again.
    """

    def __init__(self, inner):
        self._inner = inner
        self.broken = False
        self.error: OSError | None = None

    def _silence(self, exc: OSError) -> None:
        if isinstance(exc, BrokenPipeError):
            self.broken = True
        elif self.error is None:
            self.error = exc
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._inner.fileno())
            os.close(devnull)
        except (OSError, ValueError, AttributeError):
            pass

    @property
    def silenced(self) -> bool:
        return self.broken or self.error is not None

    def write(self, text: str) -> int:
        if self.silenced:
            return len(text)
        try:
            return self._inner.write(text)
        except UnicodeEncodeError:  # lone surrogates, or a terminal that is not UTF-8
            encoding = getattr(self._inner, "encoding", None) or "utf-8"
            return self.write(text.encode(encoding, "backslashreplace").decode(encoding))
        except OSError as exc:
            self._silence(exc)
            return len(text)

    def flush(self) -> None:
        if self.silenced:
            try:
                self._inner.flush()  # now to /dev/null: empties the buffer
            except (OSError, ValueError):
                pass
            return
        try:
            self._inner.flush()
        except OSError as exc:
            self._silence(exc)

    def __getattr__(self, name: str):
        return getattr(self._inner, name)


def _one_line(text: str, limit: int = 600) -> str:
    """A message as one printable line (whitespace runs folded, control characters escaped)."""
    from drimcheck.config import printable

    return printable(" ".join(str(text).split()), limit)


def _error(message: str, code: int, prefix: str = "drimcheck: error: ") -> int:
    try:
        print(prefix + _one_line(message), file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass
    return int(code)


def _internal(exc: BaseException) -> int:
    """Anything unexpected: one line and exit 3; DRIMCHECK_DEBUG=1 also prints the traceback."""
    if os.environ.get("DRIMCHECK_DEBUG") == "1":
        import traceback

        try:
            traceback.print_exception(exc, file=sys.stderr)
        except (OSError, ValueError):
            pass
    detail = str(exc) if not isinstance(exc, RecursionError) else "structure imbriquée trop profondément"
    return _error(f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__, ExitCode.INFRASTRUCTURE,
                  prefix="drimcheck: erreur interne : ")


def main(argv: list[str] | None = None) -> int:
    """The command line. Never a traceback: exit 2 and one line for bad input, 3 and one line otherwise."""
    saved = sys.stdout
    out = _GuardedStdout(saved)
    sys.stdout = out
    try:
        code = _main(argv)
        out.flush()
        if out.error is not None:
            reason = "plus d'espace disponible" if out.error.errno == errno.ENOSPC else (out.error.strerror or out.error)
            return _error(f"sortie standard impossible à écrire : {reason}", ExitCode.USAGE)
        return code
    finally:
        sys.stdout = saved


def _main(argv: list[str] | None) -> int:
    from drimcheck.config import InputError

    try:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as exc:  # --help, --version
            return exc.code if isinstance(exc.code, int) else 0
        if args.command is None:
            raise UsageError("a command is required: run, selftest, requirements, mutants, init, check-sut, "
                             "check-kos, check-whitelist (see 'drimcheck --help')")
        handler = getattr(args, "handler", None) or {
            "run": cmd_run, "selftest": cmd_selftest, "requirements": cmd_requirements,
            "mutants": cmd_mutants, "init": cmd_init}[args.command]
        return int(handler(args))
    except (UsageError, InputError) as exc:  # InputError includes ConfigError (sut.toml)
        return _error(str(exc), ExitCode.USAGE)
    except KeyboardInterrupt:  # outside a campaign (e.g. while reading sut.toml): same code as an interrupted run
        print("drimcheck : interrompu (SIGINT)", file=sys.stderr)
        return 130
    except OSError as exc:
        if exc.filename is not None:  # a file named on the command line (or in sut.toml) cannot be used
            return _error(f"{exc.filename} : {exc.strerror or exc}", ExitCode.USAGE)
        return _internal(exc)
    except Exception as exc:  # noqa: BLE001 - the last line of defence of the exit-code contract
        return _internal(exc)


def _load_sut(path: Path | None):
    from drimcheck.config import ConfigError, load

    try:
        return load(path)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None


def _check_kit(sut) -> None:
    """A [pki] kit that is missing, expired or made for another IGC address is a configuration error (exit 2)."""
    from drimcheck import kit

    try:
        kit.check_usable(sut)
    except kit.KitError as exc:
        raise UsageError(str(exc)) from None


def cmd_run(args: argparse.Namespace) -> int:
    from drimcheck import catalogue, package
    from drimcheck.runner import InterruptGuard, default_run_dir, run_campaign

    sut = _load_sut(args.sut)
    _check_kit(sut)
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
    campaign, signer, sut_bytes = _referencing_checks(args, sut)
    run_dir = args.out or default_run_dir()
    try:
        if args.out is None:
            while run_dir.exists():  # two runs in the same second
                run_dir = run_dir.with_name(run_dir.name + "-b")
        package.prepare_run_dir(run_dir, force=args.force)
        (run_dir / ".write-test").touch()
        (run_dir / ".write-test").unlink()
    except package.PackageError as exc:
        raise UsageError(str(exc)) from None
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
    for reason in campaign.loosened:
        print(f"HORS RÉFÉRENCEMENT : {reason} — la campagne ne pourra pas être déclarée conforme", file=sys.stderr, flush=True)
    with InterruptGuard() as guard:  # SIGINT/SIGTERM: reports of what ran, cleanup, exit 130/143 within 10 s
        result = run_campaign(sut, run_dir, strict=args.strict, mutant=args.mutant, requirements=reqs,
                              keep_workdir=args.keep_workdir, on_scenario_done=progress,
                              command=["drimcheck", *(sys.argv[1:] if sys.argv[1:] else [])], campaign=campaign,
                              guard=guard)
        paths = guard.write_reports(result, run_dir)
        if args.referencement and not result.interrupted_by:
            try:
                paths["package"] = package.build_package(run_dir, result, sut, sut_bytes=sut_bytes, signer=signer)
            except OSError as exc:
                print(f"drimcheck: error: paquet de référencement non écrit : {exc.strerror or exc}", file=sys.stderr)
                return ExitCode.INFRASTRUCTURE
    if not args.quiet:
        summary = result.summary()
        scen = ", ".join(f"{n} {k}" for k, n in summary["scenarios"].items()) or "aucun"
        reqs_line = ", ".join(f"{n} {k}" for k, n in summary["requirements"].items())
        if result.infrastructure_error:
            print(f"ERREUR : {result.infrastructure_error}")
        print(f"Verdict : {result.verdict_fr} — scénarios : {scen} — exigences : {reqs_line} "
              f"({result.duration_s:.1f} s)")
        print(f"Rapport : {paths['html']} (et results.json, junit.xml, evidence/ dans {run_dir})")
        if "package" in paths:
            print(f"Paquet de référencement : {paths['package']} (SHA-256 "
                  f"{package.sha256_hex(paths['package'].read_bytes())}"
                  f"{', manifeste signé' if signer else ''} ; vérifier : drimcheck verify-package {paths['package']})")
    if result.campaign.loosened:
        print(f"HORS RÉFÉRENCEMENT : borne normative relâchée ({' ; '.join(result.campaign.loosened)}) — "
              f"code de sortie {int(result.exit_code)}, jamais 0", file=sys.stderr)
    return int(result.exit_code)


def _referencing_checks(args: argparse.Namespace, sut):
    """What the reports must say about this run, the package signer, the sut.toml bytes; refusals exit 2."""
    from drimcheck import bounds, catalogue, package
    from drimcheck.results import CampaignInfo

    try:
        sut_bytes = package.sut_source_bytes(sut)
    except OSError as exc:
        raise UsageError(f"cannot read {sut.source_file}: {exc.strerror or exc}") from None
    effective = bounds.effective(sut.timeouts, catalogue.load())
    if args.referencement:
        if args.req:
            raise UsageError("--referencement refuse --req : une campagne de référencement exécute toutes les exigences")
        if args.mutant:
            raise UsageError("--referencement refuse --mutant : un mutant n'est pas une DRIMbox à référencer")
        if effective.out_of_referencing:
            raise UsageError(f"--referencement refuse une borne normative relâchée : {'; '.join(effective.reasons_fr())}")
        if args.force:
            raise UsageError("--referencement refuse --force : donnez un dossier --out vide ou inexistant")
        if args.out is not None and args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
            raise UsageError(f"--referencement exige un dossier --out vide ou inexistant : {args.out} ne l'est pas")
    elif args.sign_cert or args.sign_key:
        raise UsageError("--sign-cert et --sign-key ne s'emploient qu'avec --referencement")
    signer = None
    if args.sign_cert or args.sign_key:
        if not (args.sign_cert and args.sign_key):
            raise UsageError("--sign-cert et --sign-key vont ensemble (certificat et clé privée de l'opérateur)")
        try:
            signer = package.load_signer(args.sign_cert, args.sign_key)
        except package.PackageError as exc:
            raise UsageError(str(exc)) from None
    campaign = CampaignInfo(referencing=bool(args.referencement), loosened=effective.reasons_fr(),
                            sut_file=sut.source_file, sut_sha256=package.sha256_hex(sut_bytes))
    return campaign, signer, sut_bytes


def cmd_selftest(args: argparse.Namespace) -> int:
    from drimcheck.selftest import run_selftest

    if args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    return run_selftest(args.out, jobs=args.jobs, only=args.mutant)


def cmd_requirements(args: argparse.Namespace) -> int:
    from drimcheck.coverage import coverage_rows

    if getattr(args, "coverage", False):
        from drimcheck.coverage import render_taxonomy

        print(render_taxonomy(), end="")
        return 0
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
        raise UsageError(f"{args.out} existe déjà (--force pour l'écraser)")
    try:
        args.out.write_text(template_text(), encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"écriture de {args.out} impossible : {exc.strerror or exc}") from None
    print(f"{args.out} écrit : décrivez-y votre DRIMbox, vérifiez-le avec « drimcheck check-sut {args.out} », "
          f"puis lancez « drimcheck run --sut {args.out} »")
    return 0


if __name__ == "__main__":
    sys.exit(main())
