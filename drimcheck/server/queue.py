"""The campaign queue: huey (https://huey.readthedocs.io) with its SQL storage, in the server's own database.

huey's `SqlStorage` (peewee) keeps the queue in three tables of the same SQLite file or PostgreSQL database
as the server (created by huey itself, beside the Alembic-managed tables). Taking a job is one transaction:
`BEGIN IMMEDIATE` on SQLite, `SELECT … FOR UPDATE SKIP LOCKED` on PostgreSQL, then a DELETE whose row count
must be 1 — so any number of worker processes, on one machine (SQLite) or several (PostgreSQL), share the
queue and a job goes to exactly one of them. The campaign row is also claimed atomically by the worker
(queued -> running), so a job delivered twice would still run once.

The concurrency limit is the number of huey worker threads of a `drimcheck worker` process (`--concurrency`,
default 1): a campaign runs as a subprocess (Orthanc, simulators, the reference DRIMbox), so the limit is per
machine, where the load is.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from sqlalchemy.engine import make_url

QUEUE_NAME = "drimcheck-campagnes"
TASK_NAME = "run_campaign"
SQLITE_BUSY_TIMEOUT_S = 30


def peewee_database(url: str) -> Any:
    """The peewee database of a server URL (same file / same PostgreSQL database as SQLAlchemy)."""
    from drimcheck.server.db import normalize_url

    u = make_url(normalize_url(url))
    if u.get_backend_name() == "sqlite":
        from peewee import SqliteDatabase

        return SqliteDatabase(u.database, timeout=SQLITE_BUSY_TIMEOUT_S,
                              pragmas={"journal_mode": "wal", "busy_timeout": SQLITE_BUSY_TIMEOUT_S * 1000})
    from playhouse.postgres_ext import Psycopg3Database  # type: ignore[import-untyped]  # psycopg 3, as SQLAlchemy

    return Psycopg3Database(u.database, host=u.host, port=u.port, user=u.username, password=u.password)


@lru_cache(maxsize=8)
def huey_for(url: str) -> Any:
    """The huey instance of a database (one per URL and process), with the campaign task registered."""
    from huey.contrib.sql_huey import SqlHuey  # type: ignore[import-untyped]

    # tables: created once by create_tables(), under the migration lock (concurrent CREATE TABLE IF NOT EXISTS
    # from several starting workers collide on PostgreSQL)
    huey = SqlHuey(QUEUE_NAME, database=peewee_database(url), results=False, utc=True, create_tables=False)

    def run_campaign(campaign_id: int) -> None:
        from drimcheck.server import worker

        worker.execute(campaign_id)

    huey.drimcheck_task = huey.task(name=TASK_NAME)(run_campaign)
    return huey


def create_tables(url: str) -> None:
    """huey's tables (task, schedule, kv, counter), if absent; called by db.upgrade()."""
    huey_for(url).storage.create_tables()


def enqueue(url: str, campaign_id: int) -> None:
    """Put a campaign on the queue (the row must already be committed)."""
    huey_for(url).drimcheck_task(campaign_id)


def pending(url: str) -> int:
    """Jobs waiting in the queue (not yet taken by a worker)."""
    return int(huey_for(url).pending_count())
