"""`drimcheck serve`, `drimcheck worker`, `drimcheck users add`: the campaign server (drimcheck/server/).

Exit codes: 0 stopped normally (or user created), 2 bad arguments or database URL (one line), 3 the
database or the port cannot be used.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

DEFAULT_PORT = 8080


def _add_db_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, default=None, metavar="DOSSIER",
                   help="dossier des données du serveur (exécutions, kits, base SQLite par défaut) ; "
                        "par défaut : ./drimcheck-data")
    p.add_argument("--db", metavar="URL",
                   help="base de données : sqlite:///CHEMIN (par défaut DOSSIER/drimcheck.db) ou "
                        "postgresql://utilisateur:mot-de-passe@hôte:port/base")


def register(subparsers) -> None:
    s = subparsers.add_parser(
        "serve", help="serveur de campagnes (web et API) : DRIMbox, campagnes, preuves et paquets partagés",
        description="Lance le serveur de campagnes : pages web en français et API à jeton (/api), base SQLite "
                    "(par défaut) ou PostgreSQL, migrations appliquées au démarrage, et --workers processus worker "
                    "qui exécutent les campagnes en attente.")
    s.add_argument("--host", default="127.0.0.1", help="adresse d'écoute (par défaut 127.0.0.1)")
    s.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port d'écoute (par défaut {DEFAULT_PORT})")
    _add_db_options(s)
    s.add_argument("--workers", type=int, default=1, metavar="N",
                   help="campagnes exécutées en même temps sur cette machine (un processus worker, N à la fois ; "
                        "0 : aucun, les workers sont lancés à part avec « drimcheck worker »)")
    s.add_argument("--max-running", type=int, default=None, metavar="N",
                   help="au plus N campagnes en cours pour toute la base, tous workers et machines confondus")
    s.set_defaults(handler=cmd_serve)

    w = subparsers.add_parser(
        "worker", help="worker de campagnes : exécute les campagnes en attente du serveur",
        description="Prend les campagnes en attente (base partagée avec le serveur) et les exécute une par une "
                    "(ou --concurrency à la fois) avec « drimcheck run ». Plusieurs workers, sur une ou plusieurs "
                    "machines, peuvent partager la même base (PostgreSQL pour plusieurs machines, avec le dossier "
                    "de données partagé).")
    _add_db_options(w)
    w.add_argument("--concurrency", type=int, default=1, metavar="N",
                   help="campagnes exécutées en même temps par ce worker (par défaut 1)")
    w.add_argument("--max-running", type=int, default=None, metavar="N",
                   help="au plus N campagnes en cours pour toute la base, tous workers et machines confondus")
    w.add_argument("--parent-pid", type=int, default=None, help=argparse.SUPPRESS)  # set by `serve`
    w.set_defaults(handler=cmd_worker)

    u = subparsers.add_parser("users", help="gérer les comptes du serveur de campagnes",
                              description="Crée un compte (éditeur ou ANS) et affiche son jeton d'API.")
    usub = u.add_subparsers(dest="users_command", metavar="ACTION", title="actions")
    add = usub.add_parser("add", help="créer un compte ; le jeton d'API est le dernier mot affiché",
                          description="Crée un compte et affiche son mot de passe (généré, sauf --password-stdin) et "
                                      "son jeton d'API, dernier mot de la sortie.")
    add.add_argument("name", metavar="NOM", help="nom du compte")
    add.add_argument("--role", required=True, choices=("editor", "ans"), help="editor (éditeur) ou ans")
    add.add_argument("--password-stdin", action="store_true",
                     help="lire le mot de passe sur l'entrée standard (première ligne) au lieu d'en générer un")
    _add_db_options(add)
    u.set_defaults(handler=cmd_users)


def _resolve(args: argparse.Namespace, parent: argparse.Namespace | None = None) -> tuple[str, Path]:
    from drimcheck.cli import UsageError
    from drimcheck.server import db
    from drimcheck.server.app import DEFAULT_DATA_DIR

    data = (args.data or DEFAULT_DATA_DIR).resolve()
    try:
        data.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        from drimcheck.cli import os_reason

        raise UsageError(f"dossier de données {data} inutilisable : {os_reason(exc)}") from None
    url = args.db or os.environ.get("DRIMCHECK_DB") or db.default_url(data)
    try:
        db.normalize_url(url)
    except db.DatabaseUrlError as exc:
        raise UsageError(str(exc)) from None
    return url, data


def _db_error(exc: Exception) -> int:
    from drimcheck.cli import _error
    from drimcheck.verdicts import ExitCode

    detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return _error(f"base de données inutilisable : {detail[0] if detail else type(exc).__name__}",
                  ExitCode.INFRASTRUCTURE)


def cmd_users(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from drimcheck.cli import UsageError
    from drimcheck.server import db, services

    if args.users_command != "add":
        raise UsageError("users : une action est attendue : add (voir « drimcheck users --help »)")
    url, data = _resolve(args)
    password = None
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise UsageError("--password-stdin : mot de passe vide")
    try:
        db.upgrade(url)
        with db.session_scope(url, data) as session:
            user, password, token = services.create_user(session, args.name, args.role, password)
    except services.ServiceError as exc:
        raise UsageError(str(exc)) from None
    except SQLAlchemyError as exc:
        return _db_error(exc)
    role = "éditeur" if user.role == "editor" else "ANS"
    shown = "(celui donné sur l'entrée standard)" if args.password_stdin else password
    print(f"Compte « {user.name} » créé (rôle {role}). Mot de passe : {shown}")
    print(f"Jeton d'API (affiché une seule fois, en-tête « Authorization: Bearer … ») : {token}")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from drimcheck.cli import UsageError
    from drimcheck.server import worker

    if args.concurrency < 1:
        raise UsageError("--concurrency : au moins 1")
    if args.max_running is not None and args.max_running < 1:
        raise UsageError("--max-running : au moins 1")
    url, data = _resolve(args)
    try:
        return worker.run_worker(url, data, args.concurrency, parent_pid=args.parent_pid, max_running=args.max_running)
    except SQLAlchemyError as exc:
        return _db_error(exc)


def worker_command(url: str, data: Path, concurrency: int, max_running: int | None = None) -> list[str]:
    """The worker `serve` starts: it stops by itself when `serve` is gone (uvicorn ends the process with the
    signal it received, before any `finally` runs)."""
    return [sys.executable, "-m", "drimcheck", "worker", "--db", url, "--data", str(data),
            "--concurrency", str(concurrency), "--parent-pid", str(os.getpid()),
            *(["--max-running", str(max_running)] if max_running else [])]


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn
    from sqlalchemy.exc import SQLAlchemyError

    from drimcheck.cli import UsageError
    from drimcheck.server.app import create_app

    if not 0 < args.port < 65536:
        raise UsageError("--port : de 1 à 65535")
    if args.workers < 0:
        raise UsageError("--workers : 0 ou plus")
    if args.max_running is not None and args.max_running < 1:
        raise UsageError("--max-running : au moins 1")
    url, data = _resolve(args)
    try:
        app = create_app(url, data)
    except SQLAlchemyError as exc:
        return _db_error(exc)
    proc = None
    if args.workers:
        proc = subprocess.Popen(worker_command(url, data, args.workers, args.max_running), stdin=subprocess.DEVNULL,
                                start_new_session=True)
    print(f"drimcheck serve : http://{args.host}:{args.port}/ (API : /api, base : "
          f"{app.state.sessions.kw['bind'].url.render_as_string(hide_password=True)}, données : {data}, "
          f"{args.workers} campagne(s) à la fois)", flush=True)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    finally:
        if proc is not None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)  # the worker stops its campaigns (their reports are written)
                proc.wait(timeout=20)
            except (ProcessLookupError, PermissionError):
                pass
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
    return 0
