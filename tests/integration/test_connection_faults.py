"""Connections under faults, against a private PostgreSQL stopped, restarted and paused.

Each figure the issue bounds (time to a clear error, time to recovery) is printed and asserted.
The server is this module's own (see tests/throwaway.py): the shared test servers are never
stopped or paused.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from orso_pg import (
    ConfigError,
    ConnectionLostError,
    Database,
    Filter,
    Orso,
    Pagination,
    ServerUnavailableError,
    column,
    table,
)
from orso_pg._compiler import Statement
from orso_pg.session._pool import MAX_RECONNECT_DELAY
from tests.helpers import create_tables
from tests.throwaway import Throwaway, figure, pgbouncer

pytestmark = pytest.mark.faults


@table("fault_rows")
class Row(Orso):
    id: int | None = column(primary_key=True, default=None)
    name: str = column(unique=True)


@pytest.fixture(scope="module")
def pg() -> Iterator[Throwaway]:
    server = Throwaway()
    try:
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute("CREATE ROLE nologin_role NOLOGIN")
            conn.execute("CREATE ROLE secret_role LOGIN PASSWORD 'right'")
        # Password authentication for that role only, so a wrong password can be tried.
        hba = server.data / "pg_hba.conf"
        hba.write_text("host all secret_role 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
        server.stop()
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def fresh(pg: Throwaway) -> Iterator[Throwaway]:
    """The private server, running and with an empty fault_rows table afterwards."""
    yield pg
    if pg.paused:
        pg.resume()
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS fault_rows")
        conn.execute("DROP TABLE IF EXISTS orso_migrations")


def _fill(db: Database, n: int) -> None:
    """Open n pooled connections at once, so the pool holds n idle ones afterwards."""
    barrier = threading.Barrier(n)

    def hold() -> None:
        with db.connection():
            barrier.wait(timeout=10)

    threads = [threading.Thread(target=hold) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert db.pool_stats()["pool_size"] >= n


@pytest.mark.parametrize(
    ("case", "dsn_suffix", "reason"),
    [
        ("refused", "port=1", "Connection refused"),
        ("unknown database", "dbname=no_such_db", 'database "no_such_db" does not exist'),
        ("unknown role", "user=no_such_role", 'role "no_such_role" does not exist'),
        ("role cannot log in", "user=nologin_role", 'role "nologin_role" is not permitted'),
        ("wrong password", "user=secret_role password=wrong", "password authentication failed"),
    ],
)
def test_wrong_dsn_fails_fast_with_libpq_reason(
    pg: Throwaway,
    case: str,
    dsn_suffix: str,
    reason: str,
    capfd: pytest.CaptureFixture[str],
    request: pytest.FixtureRequest,
):
    """A DSN retrying cannot fix raises ConfigError with libpq's reason in well under the
    connect timeout, and prints nothing on stderr."""
    started = time.monotonic()
    with pytest.raises(ConfigError, match=reason) as info:
        Database(f"{pg.dsn} {dsn_suffix}", connect_timeout=5)
    elapsed = time.monotonic() - started
    assert capfd.readouterr().err == ""
    figure(request, f"{case}: ConfigError after {elapsed * 1000:.0f} ms: {info.value}")
    assert elapsed < 2.0
    assert re.search(r"cannot connect to PostgreSQL at (\S+@)?127\.0\.0\.1:", str(info.value))


def test_server_down_is_a_bounded_wait_then_recovery_is_quick(
    fresh: Throwaway, capfd: pytest.CaptureFixture[str], request: pytest.FixtureRequest
):
    """While the server is down a call fails after unavailable_timeout with libpq's reason;
    once it is back, the pool serves again within 2 s."""
    with Database(fresh.dsn, min_size=2, max_size=4, unavailable_timeout=1.0) as db:
        create_tables(db, Row)
        Row(name="a").insert(db)
        _fill(db, 4)
        fresh.stop("fast")
        for attempt in range(2):  # the first finds dead connections; the second an empty pool
            started = time.monotonic()
            with pytest.raises(ServerUnavailableError, match="Connection refused") as info:
                Row.count(db)
            elapsed = time.monotonic() - started
            figure(request, f"server down, call {attempt + 1}: {elapsed:.2f} s: {info.value}")
            assert 0.9 < elapsed < 2.5
            assert "unavailable" in str(info.value)
        with pytest.raises(ServerUnavailableError), db.transaction():
            pass
        with pytest.raises(ServerUnavailableError):
            list(Row.stream_where(Filter.gt("id", 0), db))
        fresh.start()
        back = time.monotonic()
        while True:
            try:
                assert Row.count(db) == 1
                break
            except ServerUnavailableError:
                assert time.monotonic() - back < 5
        recovered = time.monotonic() - back
        figure(request, f"first success {recovered:.2f} s after the server was back")
        assert recovered < 2.0
        assert MAX_RECONNECT_DELAY <= 1.0
    assert capfd.readouterr().err == ""


def test_transactions_and_streams_survive_a_restart(
    fresh: Throwaway, request: pytest.FixtureRequest
):
    """After a restart, db.transaction(), run_transaction and stream_where each succeed at
    once: the dead connection is found at BEGIN, the pool swept, the work started again."""
    with Database(fresh.dsn, min_size=4, max_size=4) as db:
        create_tables(db, Row)
        Row(name="a").insert(db)
        failures = {"transaction": 0, "run_transaction": 0, "stream": 0}

        def restart() -> None:
            _fill(db, 4)
            fresh.stop("fast")
            fresh.start()

        restart()
        try:
            with db.transaction() as tx:
                Row(name="b").insert(tx)
        except ConnectionLostError:
            failures["transaction"] += 1
        restart()
        try:
            assert db.run_transaction(Row.count) >= 1
        except ConnectionLostError:
            failures["run_transaction"] += 1
        restart()
        try:
            names = sorted(r.name for r in Row.stream_where(Filter.gt("id", 0), db))
            assert names[0] == "a"
        except ConnectionLostError:
            failures["stream"] += 1
        figure(request, f"failures after a restart: {failures}")
        assert all(n <= 1 for n in failures.values())
        assert sum(failures.values()) == 0
        assert Row.count(db) == 2


def test_a_silent_server_ends_a_call_at_the_deadline(
    fresh: Throwaway, request: pytest.FixtureRequest
):
    """A server whose processes are stopped (SIGSTOP) answers nothing: the call ends at the
    client-side deadline with ServerUnavailableError, and the pool works once it resumes."""
    with Database(fresh.dsn, min_size=1, max_size=2, deadline=1.0) as db:
        create_tables(db, Row)
        Row(name="a").insert(db)
        fresh.pause()
        started = time.monotonic()
        with pytest.raises(ServerUnavailableError, match="within 1 s") as info:
            Row.count(db)
        elapsed = time.monotonic() - started
        figure(request, f"silent server: {type(info.value).__name__} after {elapsed:.2f} s")
        assert 0.9 < elapsed < 2.0
        fresh.resume()
        assert Row.count(db) == 1


def test_a_statement_timeout_implies_a_deadline(fresh: Throwaway):
    """With statement_timeout set, a silent server is given up on 5 s after it."""
    with Database(fresh.dsn, statement_timeout=200, min_size=1, max_size=1) as db:
        assert db.deadline == pytest.approx(5.2)
    with pytest.raises(ConfigError, match="deadline"):
        Database(fresh.dsn, deadline=0)


# --- PgBouncer --------------------------------------------------------------------------------

TZ = Statement(sql.SQL("SELECT current_setting('TimeZone')"))


@pytest.fixture(scope="module")
def bouncer(pg: Throwaway) -> Iterator[str]:
    """A PgBouncer 1.18-style pool in transaction mode (two server sessions) in front of pg."""
    with pgbouncer(pg, pool_mode="transaction", pool_size=2) as dsn:
        yield dsn


def _hammer(db: Database, work: Callable[[], object], threads: int = 8, calls: int = 100) -> int:
    errors: list[BaseException] = []

    def run() -> None:
        for _ in range(calls):
            try:
                work()
            except Exception as exc:  # noqa: BLE001 - counted for the main thread
                errors.append(exc)

    pool = [threading.Thread(target=run) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert not errors, errors[:3]
    return len(errors)


def test_pgbouncer_transaction_mode_is_detected_and_works(
    fresh: Throwaway, bouncer: str, request: pytest.FixtureRequest
):
    """Through PgBouncer in transaction mode orso_pg connects (no ``options`` parameter),
    turns prepared statements off by itself, keeps the time zone, and its pipelined pages
    and server-side cursors work."""
    with Database(fresh.dsn) as direct:
        assert not direct.behind_pooler
        create_tables(direct, Row)
        for i in range(50):
            Row(name=f"r{i}").insert(direct)
    with Database(bouncer, max_size=8, timezone="America/New_York") as db:
        assert db.behind_pooler
        with db.connection() as conn:
            assert conn.prepare_threshold is None
        errors = _hammer(db, lambda: Row.find_by_id(7, db))
        figure(request, f"{8 * 100} lookups through PgBouncer (transaction mode): {errors} errors")
        _hammer(db, lambda: _check_tz(db, "America/New_York"), calls=20)
        page = Row.find_paginated(Pagination.new(2, 10), db)
        assert page.total == 50
        assert [r.name for r in page.data] == [f"r{i}" for i in range(10, 20)]
        assert sum(1 for _ in Row.stream_where(Filter.gt("id", 0), db, batch_size=7)) == 50
        with db.transaction(statement_timeout=2000) as tx:
            assert Row.count(tx) == 50


def _check_tz(db: Database, expected: str) -> None:
    assert db._read(lambda ex: ex.scalar(TZ)) == expected


def test_pgbouncer_transaction_mode_refuses_settings_it_would_drop(bouncer: str):
    """schema= and statement_timeout= would be lost between transactions: a ConfigError
    says so, instead of writes landing in public."""
    for kwargs in ({"schema": "public"}, {"statement_timeout": 1000}):
        with pytest.raises(ConfigError, match="pooler in transaction mode"):
            Database(bouncer, **kwargs)


def test_pgbouncer_session_mode_keeps_settings(fresh: Throwaway):
    """In session mode every setting holds, and prepared statements stay on unless
    prepare=False."""
    with psycopg.connect(fresh.dsn, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS bounced")
    with (
        pgbouncer(fresh, pool_mode="session", pool_size=4) as dsn,
        Database(dsn, schema="bounced", statement_timeout=3000, max_size=2) as db,
    ):
        assert not db.behind_pooler
        with db.connection() as conn:
            assert conn.prepare_threshold == 5
            assert _scalar(conn, "SHOW search_path") == '"bounced",public'
            assert _scalar(conn, "SHOW statement_timeout") == "3s"
        with Database(dsn, prepare=False, max_size=1) as plain, plain.connection() as conn:
            assert conn.prepare_threshold is None


def _scalar(conn: psycopg.Connection[Any], query: str) -> Any:
    row = conn.execute(query).fetchone()
    assert row is not None
    return row[0]
