"""A campaign worker: takes campaigns from the queue (huey consumer) and runs each as `drimcheck run`.

`drimcheck worker --db URL --data DIR [--concurrency N]` runs here; any number of them may share one database
(on several machines with PostgreSQL, the data directory then being shared storage: the run directories are
read by the server). Each campaign is a subprocess in its own process group:

    python -m drimcheck run [--sut <data>/duts/<dut>/sut-<campaign>.toml] --out <data>/runs/<campaign> --quiet
        [--referencement] [--req ID]... [--mutant M]

then the worker reads results.json: verdict (the report's words), per-requirement verdicts, exit code. A
worker stopped by SIGTERM/SIGINT stops its campaigns (SIGTERM to their process group: a campaign writes its
reports and ends within 10 s, then SIGKILL) and marks them "error" (interrupted).
"""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text, update

from drimcheck.server import db
from drimcheck.server.models import Campaign, Dut, utcnow

CAMPAIGN_TIMEOUT_S = 3 * 3600  # a campaign is bounded by itself (about 25 s for the reference); a safety net
STOP_GRACE_S = 12.0  # an interrupted campaign ends within 10 s (README), then its group is killed
TAIL_CHARS = 2000

log = logging.getLogger("drimcheck.worker")

_context: dict[str, Any] = {}
_running: dict[int, subprocess.Popen] = {}
_lock = threading.Lock()


class _NotStarted(Exception):
    """The campaign cannot start (its error is already known)."""


BUSY_RETRY_S = 2.0  # a job refused by --max-running goes back to the queue for this long
MAX_RUNNING_LOCK_ID = 0x44524D44  # PostgreSQL advisory lock key of the global limit


def configure(url: str, data_dir: Path, max_running: int | None = None) -> None:
    _context.update(url=url, data_dir=Path(data_dir).resolve(), name=f"{socket.gethostname()}:{os.getpid()}",
                    max_running=max_running)


def worker_name() -> str:
    return str(_context.get("name") or f"{socket.gethostname()}:{os.getpid()}")


def _claim(url: str, data_dir: Path, campaign_id: int, max_running: int | None = None) -> str:
    """queued -> running, atomically: "claimed"; "gone" if another worker has it (or it was cancelled);
    "busy" when `max_running` campaigns already run, counted over every worker of the database.

    One UPDATE whose condition counts the running campaigns: atomic on SQLite (the statement holds the write
    lock); on PostgreSQL the transaction first takes an advisory lock, so two claims never count together."""
    run_dir = data_dir / "runs" / str(campaign_id)
    with db.session_scope(url, data_dir) as session:
        condition = [Campaign.id == campaign_id, Campaign.status == "queued"]
        if max_running is not None:
            if session.get_bind().dialect.name == "postgresql":
                session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MAX_RUNNING_LOCK_ID})
            running = select(func.count()).select_from(Campaign).where(Campaign.status == "running")
            condition.append(running.scalar_subquery() < max_running)
        result = session.execute(update(Campaign).where(*condition).values(
            status="running", worker=worker_name(), started_at=utcnow(), run_dir=str(run_dir)))
        if getattr(result, "rowcount", 0) == 1:
            return "claimed"
        status = session.scalar(select(Campaign.status).where(Campaign.id == campaign_id))
        return "busy" if status == "queued" else "gone"


def command(campaign: Campaign, dut: Dut | None, data_dir: Path) -> list[str]:
    """The `drimcheck run` command line of a campaign (writes the DUT's sut.toml beside its kit)."""
    run_dir = data_dir / "runs" / str(campaign.id)
    cmd = [sys.executable, "-m", "drimcheck", "run", "--out", str(run_dir), "--quiet"]
    if dut is not None:
        base = data_dir / "duts" / str(dut.id)
        base.mkdir(parents=True, exist_ok=True)
        sut_file = base / f"sut-{campaign.id}.toml"
        sut_file.write_text(dut.sut_toml, encoding="utf-8")
        cmd += ["--sut", str(sut_file)]
    if campaign.mode == "referencement":
        cmd.append("--referencement")
    for req in campaign.requirements or []:
        cmd += ["--req", req]
    if campaign.mutant:
        cmd += ["--mutant", campaign.mutant]
    return cmd


def _tail(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - TAIL_CHARS))
            return f.read().decode("utf-8", "replace").strip()
    except OSError:
        return ""


def _kill_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def execute(campaign_id: int) -> None:
    """Run one campaign (the huey task). Status, verdict and per-requirement verdicts go to the database."""

    url, data_dir = _context["url"], _context["data_dir"]
    claim = _claim(url, data_dir, campaign_id, _context.get("max_running"))
    if claim == "busy":
        from huey.exceptions import RetryTask  # type: ignore[import-untyped]

        raise RetryTask(delay=BUSY_RETRY_S)  # back in the queue (huey's schedule), taken again later
    if claim == "gone":
        log.info("campagne %s déjà prise, annulée ou absente", campaign_id)
        return
    try:
        _run_claimed(url, data_dir, campaign_id)
    except Exception as exc:  # a claimed campaign never stays "running": it ends in error, with the reason
        log.exception("campagne %s : erreur interne du worker", campaign_id)
        with db.session_scope(url, data_dir) as session:
            session.execute(update(Campaign).where(Campaign.id == campaign_id, Campaign.status == "running").values(
                status="error", error=f"erreur interne du worker : {type(exc).__name__}: {exc}"[:2000],
                finished_at=utcnow()))


def _run_claimed(url: str, data_dir: Path, campaign_id: int) -> None:
    from drimcheck.server import services

    error: str | None = None
    code: int | None = None
    with db.session_scope(url, data_dir) as session:
        campaign = session.get(Campaign, campaign_id)
        assert campaign is not None
        dut = session.get(Dut, campaign.dut_id) if campaign.dut_id is not None else None
        cmd = command(campaign, dut, data_dir)
        if dut is not None and re.search(r"(?m)^\s*\[pki\]", dut.sut_toml):
            try:
                services.dut_kit(session, dut)  # `[pki] kit = "kit"`: the kit the server keeps for this DUT
            except services.ServiceError as exc:
                error = f"kit de test : {exc}"
    logs = data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    out_path, err_path = logs / f"{campaign_id}.out", logs / f"{campaign_id}.err"
    try:
        if error is not None:
            raise _NotStarted
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True,
                                    env={**os.environ, "NO_COLOR": "1"})
            with _lock:
                _running[campaign_id] = proc
            try:
                code = proc.wait(timeout=CAMPAIGN_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                _kill_group(proc, signal.SIGTERM)
                try:
                    code = proc.wait(timeout=STOP_GRACE_S)
                except subprocess.TimeoutExpired:
                    _kill_group(proc, signal.SIGKILL)
                    code = proc.wait()
                error = f"campagne arrêtée : plus de {CAMPAIGN_TIMEOUT_S // 3600} h"
            finally:
                with _lock:
                    _running.pop(campaign_id, None)
    except _NotStarted:
        pass
    except OSError as exc:
        error = f"lancement de la campagne impossible : {exc}"
    with db.session_scope(url, data_dir) as session:
        campaign = session.get(Campaign, campaign_id)
        assert campaign is not None
        results = services.campaign_results(campaign)
        run_value = results.get("run")
        run: dict[str, Any] = run_value if isinstance(run_value, dict) else {}
        campaign.exit_code = code
        campaign.verdict = run.get("verdict") if isinstance(run.get("verdict"), str) else None
        campaign.requirement_verdicts = {
            r["id"]: r["verdict"] for r in results.get("requirements", [])
            if isinstance(r, dict) and isinstance(r.get("id"), str) and r.get("verdict") not in ("NOT_RUN", "NOT_TESTED")}
        if error is None and code in (0, 1) and results:
            campaign.status = "done"
        else:
            campaign.status = "error"
            infra = run.get("infrastructure_error") if isinstance(run.get("infrastructure_error"), str) else None
            if error is None and code in (130, 143):
                error = "campagne interrompue (arrêt du worker)"
            campaign.error = error or infra or _tail(err_path) or f"drimcheck run : code de sortie {code}"
        campaign.finished_at = utcnow()
    log.info("campagne %s : %s (code %s)", campaign_id, campaign.status, code)


def stop_running() -> None:
    """SIGTERM to every running campaign's process group, SIGKILL after STOP_GRACE_S; they end as "error"."""
    with _lock:
        procs = dict(_running)
    for proc in procs.values():
        _kill_group(proc, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for proc in procs.values():
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _kill_group(proc, signal.SIGKILL)
    if not procs or "url" not in _context:
        return
    with db.session_scope(_context["url"], _context["data_dir"]) as session:
        session.execute(update(Campaign).where(Campaign.id.in_(list(procs)), Campaign.status == "running")
                        .values(status="error", error="campagne interrompue (arrêt du worker)", finished_at=utcnow()))


def _watch_parent(parent_pid: int) -> None:
    """Started by `drimcheck serve`: when serve is gone (even SIGKILLed), stop as on SIGTERM."""
    while os.getppid() == parent_pid:
        time.sleep(1.0)
    log.info("serveur %s arrêté : arrêt du worker", parent_pid)
    os.kill(os.getpid(), signal.SIGTERM)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap_orphans(url: str, data_dir: Path) -> int:
    """Campaigns left "running" by a worker of this machine that no longer exists (killed, machine restarted)
    end in error; returns how many. Workers of other machines are not judged from here."""
    host = socket.gethostname()
    reaped = 0
    with db.session_scope(url, data_dir) as session:
        rows = session.execute(select(Campaign.id, Campaign.worker).where(Campaign.status == "running")).all()
        for cid, owner in rows:
            name, _, pid = (owner or "").rpartition(":")
            if name != host or not pid.isdigit() or _alive(int(pid)):
                continue
            result = session.execute(update(Campaign).where(Campaign.id == cid, Campaign.status == "running").values(
                status="error", error=f"campagne interrompue : le worker {owner} a disparu", finished_at=utcnow()))
            reaped += int(getattr(result, "rowcount", 0) == 1)
    return reaped


def run_worker(url: str, data_dir: Path, concurrency: int = 1, parent_pid: int | None = None,
               max_running: int | None = None) -> int:
    """The `drimcheck worker` process: a huey consumer with `concurrency` threads, until SIGTERM/SIGINT;
    `max_running`: at most that many campaigns running over every worker of the database."""
    from drimcheck.server import queue

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    for noisy in ("alembic", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    db.upgrade(url)
    configure(url, data_dir, max_running)
    reaped = reap_orphans(url, Path(data_dir))
    if reaped:
        log.info("%d campagne(s) d'un worker disparu de cette machine marquée(s) en erreur", reaped)
    huey = queue.huey_for(url)
    consumer = huey.create_consumer(workers=concurrency, worker_type="thread", periodic=False,
                                    initial_delay=0.1, backoff=1.2, max_delay=1.0, check_worker_health=True)
    log.info("worker %s : %d campagne(s) à la fois%s, base %s", worker_name(), concurrency,
             f" ({max_running} au plus pour toute la base)" if max_running else "",
             db.engine(url).url.render_as_string(hide_password=True))
    if parent_pid is not None:
        threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True, name="parent-watch").start()
    try:
        consumer.run()
    finally:
        stop_running()
    return 0
