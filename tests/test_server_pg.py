"""Campaign server (issue 14) on PostgreSQL: Debian's postgresql started by the test on a free port as a
throwaway cluster (tests/serversupport.pg_cluster), then the API, isolation and two-worker campaign checks
of the SQLite run against it (queue taken with SELECT … FOR UPDATE SKIP LOCKED)."""

from __future__ import annotations

import pytest
from serversupport import (
    check_auth,
    check_bad_requests,
    check_campaign_flow,
    check_isolation,
    check_max_running,
    check_worker_stop,
    pg_cluster,
    server,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    data = tmp_path_factory.mktemp("server-pg")
    with pg_cluster() as url, server(url, data) as s:
        yield s


def test_schema_and_queue_live_in_postgresql(srv):
    from sqlalchemy import inspect

    from drimcheck.server import db, queue

    assert db.engine(srv.url).dialect.name == "postgresql"
    assert db.current_revision(srv.url) == "0001"
    tables = set(inspect(db.engine(srv.url)).get_table_names())
    assert {"users", "duts", "campaigns", "alembic_version"} <= tables
    storage = queue.huey_for(srv.url).storage
    assert storage.for_update == "FOR UPDATE SKIP LOCKED"
    assert {"task", "schedule", "kv"} <= tables | set(storage.database.get_tables())
    assert not (srv.data / "drimcheck.db").exists()  # nothing went to a SQLite file


def test_api_requires_a_token(srv):
    check_auth(srv)


def test_an_editor_never_sees_another_editors_dut_or_campaign(srv):
    check_isolation(srv)


def test_bad_campaign_requests_are_refused_in_french(srv):
    check_bad_requests(srv)


def test_campaigns_against_the_reference_with_two_workers(srv, capsys):
    timings = check_campaign_flow(srv)
    with capsys.disabled():
        print(f"\n[serveur PostgreSQL] lancement -> verdict : référence {timings['reference']:.1f} s, "
              f"référence + mutant (2 workers) {timings['both']:.1f} s")


def test_a_stopped_worker_stops_its_campaign(srv):
    check_worker_stop(srv)


def test_max_running_is_one_limit_for_every_worker_of_the_database(srv):
    check_max_running(srv)
