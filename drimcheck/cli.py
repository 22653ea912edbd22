"""The drimcheck command line: one entry point, subcommands, strict exit codes.

Exit codes: 0 conformant, 1 non-conformant, 2 usage or configuration error, 3 DUT unreachable or
infrastructure error (a failing hook included), 130 / 143 campaign or selftest interrupted by SIGINT /
SIGTERM (128 + signal number, as a shell reports it; the reports of what ran are written). Bad input is
reported in one line on stderr, never as a traceback: any UsageError, ConfigError or OSError on a named
file gives exit 2; a standard output that cannot be written (full disk, /dev/full) gives one line and
exit 2; a closed pipe (`| head`) ends quietly with the command's own code; anything unexpected gives one
line « erreur interne » and exit 3 (DRIMCHECK_DEBUG=1 adds the traceback).

Everything a user reads is French, argparse's own words included ("usage:", "options", "show this help
message and exit", its error messages): argparse looks its texts up through the module globals `_` and
`ngettext` at call time, so they are swapped for a French table while the parser is built and used
(_french_argparse), without gettext catalogues and without touching argparse outside drimcheck.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

from drimcheck import __version__
from drimcheck.verdicts import ExitCode

USE_COLOR = sys.stdout.isatty() and os.environ.get("NO_COLOR") is None
COLORS = {"PASS": "32", "FAIL": "31", "WARN": "33", "ERROR": "35", "SKIP": "90"}


ERROR_PREFIX = "drimcheck : erreur : "
INTERNAL_PREFIX = "drimcheck : erreur interne : "


class UsageError(Exception):
    """Bad arguments or files: one line, exit 2."""


class _FrenchHelpFormatter(argparse.HelpFormatter):
    """French typography in help: « options : », « commandes : » (argparse appends the colon itself)."""

    def start_section(self, heading: str | None) -> None:
        super().start_section(f"{heading} " if heading else heading)


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", _FrenchHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:  # one clear line instead of usage + message
        raise UsageError(f"{message} (voir « {self.prog} --help »)")


# argparse's own texts (Python 3.11+), in French; a text missing here stays English, never breaks.
_ARGPARSE_FR = {
    "usage: ": "utilisation : ",
    "positional arguments": "arguments",
    "options": "options",
    "show this help message and exit": "afficher cette aide et quitter",
    "argument %(argument_name)s: %(message)s": "argument %(argument_name)s : %(message)s",
    "unrecognized arguments: %s": "arguments non reconnus : %s",
    "not allowed with argument %s": "incompatible avec l'argument %s",
    "ignored explicit argument %r": "valeur ignorée : %r",
    "the following arguments are required: %s": "arguments obligatoires manquants : %s",
    "one of the arguments %s is required": "l'un des arguments %s est obligatoire",
    "expected one argument": "une valeur est attendue",
    "expected at most one argument": "au plus une valeur est attendue",
    "expected at least one argument": "au moins une valeur est attendue",
    "ambiguous option: %(option)s could match %(matches)s": "option ambiguë : %(option)s peut désigner %(matches)s",
    "unexpected option string: %s": "option inattendue : %s",
    "invalid %(type)s value: %(value)r": "valeur invalide (type %(type)s attendu) : %(value)r",
    "invalid choice: %(value)r (choose from %(choices)s)": "choix invalide : %(value)r (choisir parmi %(choices)s)",
    "unknown parser %(parser_name)r (choices: %(choices)s)": "commande inconnue %(parser_name)r (commandes : %(choices)s)",
    "can't open '%(filename)s': %(error)s": "impossible d'ouvrir « %(filename)s » : %(error)s",
    "%(prog)s: error: %(message)s\n": "%(prog)s : erreur : %(message)s\n",
}
_ARGPARSE_FR_PLURAL = {"expected %s argument": ("%s valeur est attendue", "%s valeurs sont attendues")}


@contextmanager
def _french_argparse():
    """argparse speaks French while drimcheck builds and runs its parser (texts looked up at call time)."""
    # argparse's private gettext aliases, looked up at call time (typeshed does not declare them)
    saved = argparse._, argparse.ngettext  # type: ignore[attr-defined]
    argparse._ = lambda text: _ARGPARSE_FR.get(text, text)  # type: ignore[attr-defined]
    argparse.ngettext = (  # type: ignore[attr-defined]
        lambda one, many, n: _ARGPARSE_FR_PLURAL.get(one, (one, many))[0 if n == 1 else 1])
    try:
        yield
    finally:
        argparse._, argparse.ngettext = saved  # type: ignore[attr-defined]


def command_names(parser: argparse.ArgumentParser | None = None) -> list[str]:
    """Every subcommand, in the order of `drimcheck --help` (built-in ones, then drimcheck/commands/*)."""
    parser = parser or build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return list(sub.choices)


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
    with _french_argparse():
        return _build_parser()


def _build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="drimcheck", description="Banc de conformité des DRIMbox (DRIM-M). Codes de sortie : 0 conforme, "
                                              "1 non conforme, 2 erreur d'utilisation ou de configuration, "
                                              "3 DRIMbox injoignable ou erreur d'infrastructure.")
    p.add_argument("--version", action="version", version=f"drimcheck {__version__}",
                   help="afficher la version de drimcheck et quitter")
    sub = p.add_subparsers(dest="command", metavar="COMMANDE", parser_class=_Parser, title="commandes")

    run = sub.add_parser("run", help="exécuter une campagne contre une DRIMbox (par défaut : la DRIMbox de référence intégrée)",
                         description="Exécute une campagne de conformité et écrit results.json, junit.xml, report.html et "
                                     "evidence/ dans --out.")
    run.add_argument("--sut", type=Path, metavar="FICHIER",
                     help="description du SUT (sut.toml) ; par défaut : la DRIMbox de référence intégrée")
    run.add_argument("--out", type=Path, metavar="DOSSIER", help="dossier des rapports (par défaut : runs/<horodatage>/)")
    run.add_argument("--strict", action="store_true", help="les exigences inférées donnent FAIL au lieu de WARN")
    run.add_argument("--req", action="append", metavar="ID",
                     help="seulement les scénarios de cette exigence (répétable)")
    run.add_argument("--mutant", metavar="ID",
                     help="exécuter la DRIMbox de référence sous ce mutant (voir « drimcheck mutants »)")
    run.add_argument("--quiet", action="store_true", help="sans affichage de progression : seule la ligne du verdict")
    run.add_argument("--keep-workdir", action="store_true",
                     help="garder le dossier temporaire (PKI, Orthanc, journaux de la DRIMbox)")
    run.add_argument("--force", action="store_true",
                     help="vider d'abord --out s'il contient déjà un rapport drimcheck (sinon refusé)")
    run.add_argument("--referencement", action="store_true",
                     help="campagne de référencement : complète, dans les bornes normatives, dans un --out vide ; "
                          "écrit un paquet vérifiable (referencement-<exécution>.zip)")
    run.add_argument("--sign-cert", type=Path, metavar="PEM",
                     help="avec --referencement : certificat de l'opérateur qui signe le manifeste du paquet "
                          "(CMS détaché)")
    run.add_argument("--sign-key", type=Path, metavar="PEM",
                     help="sa clé privée (mot de passe éventuel dans $DRIMCHECK_SIGN_KEY_PASSWORD)")

    st = sub.add_parser("selftest", help="auto-test : la référence passe, chaque mutant est détecté sur son exigence",
                        description="Exécute la DRIMbox de référence (tout doit passer) puis chaque mutant (son exigence "
                                    "doit échouer).")
    st.add_argument("--out", type=Path, default=Path("runs/selftest"), metavar="DOSSIER",
                    help="dossier de selftest.json et de chaque campagne (par défaut : runs/selftest)")
    st.add_argument("--jobs", type=int, default=2, metavar="N", help="campagnes exécutées en parallèle (par défaut 2)")
    st.add_argument("--mutant", action="append", metavar="ID", help="seulement ces mutants (répétable)")
    st.add_argument("--full", action="store_true",
                    help="matrice complète : chaque mutant contre tous les scénarios (par défaut : les scénarios "
                         "des exigences qu'il déclare)")
    st.add_argument("--shard", metavar="K/N", help="ne lancer que la tranche K sur N des mutants (matrice CI) ; "
                                                   "la campagne de référence est dans la tranche 1")
    st.add_argument("--combine", type=Path, action="append", metavar="DOSSIER",
                    help="juger ensemble les selftest.json des tranches (répétable), sans rien lancer")

    req = sub.add_parser("requirements", help="lister le catalogue des exigences, leurs sources et leur couverture",
                         description="Liste chaque exigence du catalogue avec sa force, son acteur, sa couverture "
                                     "automatisée et les documents publics qu'elle cite.")
    req.add_argument("--json", action="store_true", help="sortie lisible par une machine")
    req.add_argument("--coverage", action="store_true",
                     help="taxonomie des défauts : pour chaque exigence, les axes couverts, hors périmètre ou à couvrir")

    sub.add_parser("mutants", help="lister les mutants de la DRIMbox de référence",
                   description="Liste les mutants de la DRIMbox de référence et l'exigence que chacun viole.")

    init = sub.add_parser("init", help="écrire un modèle commenté de sut.toml",
                          description="Écrit un modèle commenté de description du SUT (sut.toml).")
    init.add_argument("--out", type=Path, default=Path("sut.toml"), metavar="FICHIER",
                      help="fichier à écrire (par défaut : sut.toml)")
    init.add_argument("--force", action="store_true", help="écraser un fichier existant")

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


_ERRNO_FR = {errno.ENOENT: "fichier ou dossier introuvable", errno.EACCES: "permission refusée",
             errno.EPERM: "opération non permise", errno.EISDIR: "est un répertoire",
             errno.ENOTDIR: "un élément du chemin n'est pas un dossier", errno.ENOSPC: "plus d'espace disponible",
             errno.EROFS: "système de fichiers en lecture seule", errno.EEXIST: "existe déjà",
             errno.ENOTEMPTY: "dossier non vide", errno.EIO: "erreur d'entrée-sortie",
             errno.ENAMETOOLONG: "nom trop long", errno.EMFILE: "trop de fichiers ouverts",
             errno.EDQUOT: "quota de disque dépassé", errno.EFBIG: "fichier trop volumineux"}


def os_reason(exc: OSError) -> str:
    """Why a file operation failed, in French (never Python's English exception text)."""
    return _ERRNO_FR.get(exc.errno or 0, f"erreur système n° {exc.errno}" if exc.errno else "erreur d'entrée-sortie")


def _one_line(text: str, limit: int = 600) -> str:
    """A message as one printable line (whitespace runs folded, control characters escaped)."""
    from drimcheck.config import printable

    return printable(" ".join(str(text).split()), limit)


def _error(message: str, code: int, prefix: str = ERROR_PREFIX) -> int:
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
                  prefix=INTERNAL_PREFIX)


def main(argv: list[str] | None = None) -> int:
    """The command line. Never a traceback: exit 2 and one line for bad input, 3 and one line otherwise."""
    saved = sys.stdout
    out = _GuardedStdout(saved)
    sys.stdout = out
    try:
        code = _main(argv)
        out.flush()
        if out.error is not None:
            reason = os_reason(out.error)
            return _error(f"sortie standard impossible à écrire : {reason}", ExitCode.USAGE)
        return code
    finally:
        sys.stdout = saved


def _main(argv: list[str] | None) -> int:
    from drimcheck.config import InputError

    try:
        parser = build_parser()
        try:
            with _french_argparse():
                args = parser.parse_args(argv)
        except SystemExit as exc:  # --help, --version
            return exc.code if isinstance(exc.code, int) else 0
        if args.command is None:
            raise UsageError(f"une commande est attendue : {', '.join(command_names(parser))} "
                             f"(voir « drimcheck --help », ou « drimcheck COMMANDE --help »)")
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
            return _error(f"{exc.filename} : {os_reason(exc)}", ExitCode.USAGE)
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
            raise UsageError("--mutant ne s'applique qu'à la DRIMbox de référence intégrée (pas à un --sut externe)")
        from simulators.drimbox import mutants

        try:
            mutants.get(args.mutant)
        except KeyError:
            raise UsageError(f"mutant inconnu « {args.mutant} » (voir « drimcheck mutants »)") from None
    reqs = set(args.req) if args.req else None
    if reqs:
        unknown = catalogue.unknown_ids(reqs)
        if unknown:
            raise UsageError(f"exigence(s) inconnue(s) : {', '.join(unknown)} (voir « drimcheck requirements »)")
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
        raise UsageError(f"écriture impossible dans {run_dir} : {os_reason(exc)}") from None

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
                print(f"{ERROR_PREFIX}paquet de référencement non écrit : {os_reason(exc)}", file=sys.stderr)
                return ExitCode.INFRASTRUCTURE
    if args.quiet:
        print(f"Verdict : {result.verdict_fr}")
    else:
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
        raise UsageError(f"lecture impossible de {sut.source_file} : {os_reason(exc)}") from None
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
    from drimcheck.selftest import combine, parse_shard, run_selftest

    if args.jobs < 1:
        raise UsageError("--jobs : au moins 1")
    if args.combine:
        if args.mutant or args.shard or args.full:
            raise UsageError("--combine ne se combine pas avec --mutant, --shard ni --full")
        return combine(args.out, args.combine)
    shard = None
    if args.shard:
        if args.mutant:
            raise UsageError("--shard ne se combine pas avec --mutant")
        try:
            shard = parse_shard(args.shard)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    return run_selftest(args.out, jobs=args.jobs, only=args.mutant, full=args.full, shard=shard)


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
        strength = "requise" if r["strength"] == "required" else "inférée"
        print(f"{r['id']:<8} {mark}  {strength:<8} {r['actor']:<6} {r['title']}")
        print(f"{'':<16}sources : {r['source']}")
        if not r["automated"]:
            print(f"{'':<16}non testé : {r['not_tested'] or 'aucun contrôle automatisé'}")
    print(f"\n{automated} exigences automatisées sur {len(rows)} cataloguées.")
    return 0


def cmd_mutants(args: argparse.Namespace) -> int:
    from simulators.drimbox import mutants

    for m in mutants.load().values():
        gap = f"  [lacune connue : {m.known_gap}]" if m.known_gap else ""
        print(f"{m.id:<24} {', '.join(m.violates):<16} {m.title}{gap}")
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    from drimcheck.config import template_text

    if args.out.exists() and not args.force:
        raise UsageError(f"{args.out} existe déjà (--force pour l'écraser)")
    try:
        args.out.write_text(template_text(), encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"écriture de {args.out} impossible : {os_reason(exc)}") from None
    print(f"{args.out} écrit : décrivez-y votre DRIMbox, vérifiez-le avec « drimcheck check-sut {args.out} », "
          f"puis lancez « drimcheck run --sut {args.out} »")
    return 0


if __name__ == "__main__":
    sys.exit(main())
