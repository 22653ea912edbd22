"""Database access: engine and sessions from one URL, schema migrations (Alembic) applied at start-up.

URLs: `sqlite:///PATH` (the default, `<data_dir>/drimcheck.db`: nothing to install) or
`postgresql://user:password@host:port/name` (driver psycopg 3; `postgresql+psycopg://` is accepted too).
The campaign queue (drimcheck.server.queue) lives in the same database.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).with_name("migrations")
SQLITE_BUSY_TIMEOUT_S = 30  # several processes (server, workers) write the same SQLite file


class DatabaseUrlError(ValueError):
    """A --db URL drimcheck cannot use (French message)."""


def default_url(data_dir: Path) -> str:
    return f"sqlite:///{(Path(data_dir) / 'drimcheck.db').resolve()}"


def normalize_url(url: str) -> str:
    """The SQLAlchemy URL of a --db value: PostgreSQL through psycopg 3, SQLite as is."""
    try:
        u = make_url(url)
    except Exception:  # noqa: BLE001 - any parse failure is one French line
        raise DatabaseUrlError(f"URL de base de données invalide : {url!r} (sqlite:///CHEMIN ou "
                               "postgresql://utilisateur:mot-de-passe@hôte:port/base)") from None
    backend = u.get_backend_name()
    if backend == "sqlite":
        if not u.database or u.database == ":memory:":
            raise DatabaseUrlError("SQLite : donnez un fichier (sqlite:///CHEMIN), pas une base en mémoire : "
                                   "le serveur et les workers la partagent")
        return u.set(drivername="sqlite").render_as_string(hide_password=False)
    if backend == "postgresql":
        return u.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    raise DatabaseUrlError(f"base de données non prise en charge : {backend} (SQLite ou PostgreSQL)")


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer (server + workers)
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


@lru_cache(maxsize=8)
def engine(url: str) -> Engine:
    """One engine per URL and process (pooled connections)."""
    url = normalize_url(url)
    if url.startswith("sqlite"):
        path = Path(make_url(url).database or "")
        path.parent.mkdir(parents=True, exist_ok=True)
        eng = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False})
        event.listen(eng, "connect", _sqlite_pragmas)
        return eng
    return create_engine(url, pool_pre_ping=True)


@lru_cache(maxsize=8)
def session_factory(url: str, data_dir: str | Path) -> sessionmaker[Session]:
    """Sessions on `url`; `session.info["data_dir"]` is the server's data directory (runs, kits, uploads)."""
    return sessionmaker(engine(url), expire_on_commit=False, info={"data_dir": str(Path(data_dir).resolve())})


@contextmanager
def session_scope(url: str, data_dir: str | Path) -> Iterator[Session]:
    """A session committed on success, rolled back on error."""
    session = session_factory(url, str(data_dir))()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


MIGRATION_LOCK_ID = 0x44524D43  # PostgreSQL advisory lock key ("DRMC")


@contextmanager
def migration_lock(url: str) -> Iterator[None]:
    """One process at a time migrates (the server and workers may start together on an empty database):
    an advisory lock on PostgreSQL, an exclusive file lock beside the SQLite file."""
    eng = engine(url)
    if eng.dialect.name == "postgresql":
        with eng.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK_ID})
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_ID})
                connection.commit()
        return
    import fcntl

    with open(f"{eng.url.database}.lock", "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def upgrade(url: str) -> None:
    """Apply every migration (`alembic upgrade head`, programmatically: no alembic.ini to ship), then create the
    queue's tables (huey's own schema, drimcheck.server.queue) — under the migration lock."""
    from alembic import command
    from alembic.config import Config

    from drimcheck.server import queue

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with migration_lock(url):
        with engine(url).begin() as connection:
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, "head")
        queue.create_tables(url)


def current_revision(url: str) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine(url).connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
