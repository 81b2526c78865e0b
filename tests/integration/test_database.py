"""Databases, pools and transactions against a real PostgreSQL."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from orso_pg import (
    ConfigError,
    Database,
    DatabaseConfig,
    DatabaseError,
    Filter,
    MissingTableError,
    Orso,
    Pagination,
    PoolError,
    PoolTimeoutError,
    QueryCanceledError,
    SerializationError,
    UniqueViolationError,
    column,
    table,
)
from orso_pg.session import _embedded
from orso_pg.session._cluster import Cluster
from tests.conftest import Server
from tests.helpers import create_tables


@table("ledger_entries")
class Entry(Orso):
    id: int | None = column(primary_key=True, default=None)
    account: str = column(unique=True)
    amount: int = 0


def _setting(db: Database, name: str) -> str:
    with db.connection() as conn:
        row = conn.execute("SELECT current_setting(%s)", (name,)).fetchone()
    assert row is not None
    return str(row[0])


def test_connection_defaults(db: Database, schema: str):
    """Pooled connections carry orso_pg's application name, UTC, UTF-8 and the schema."""
    assert _setting(db, "application_name") == "orso_pg"
    assert _setting(db, "TimeZone") == "UTC"
    assert _setting(db, "client_encoding") == "UTF8"
    assert _setting(db, "search_path") == f'"{schema}",public'
    params = conninfo_to_dict(db.conninfo)
    assert params["keepalives"] == "1"
    assert params["connect_timeout"]  # the DSN's own value wins when it has one


def test_dsn_from_the_environment(server: Server, monkeypatch: pytest.MonkeyPatch):
    """Without an argument, ORSO_PG_DSN names the server."""
    monkeypatch.setenv("ORSO_PG_DSN", server.dsn)
    with Database(application_name="from_env") as db:
        assert _setting(db, "application_name") == "from_env"
        assert int(_setting(db, "server_version_num")) // 10000 == server.version


def test_orso_config_parity(server: Server):
    """Database.init takes orso's DatabaseConfig with its pool size."""
    config = DatabaseConfig.new(server.dsn).with_pool_size(3)
    assert config.max_pool_size == 3
    assert DatabaseConfig.postgres(server.dsn).max_pool_size == 16
    with Database.init(config) as db:
        assert db.pool_stats()["pool_max"] == 3
        assert "pool=3" in repr(db)
    assert db.closed


def test_embedded_server_starts_is_shared_and_stops(
    embedded_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    """ORSO_PG_DSN=embedded starts a PostgreSQL in ORSO_PG_DATA, shared, stopped on close."""
    monkeypatch.setenv("ORSO_PG_DSN", "embedded")
    data = embedded_dir
    monkeypatch.setenv("ORSO_PG_DATA", str(data))
    first = Database()
    second = Database()
    try:
        assert int(_setting(first, "server_version_num")) >= 170000
        assert (data / "PG_VERSION").exists()
        assert (data / "postmaster.pid").exists()
        create_tables(first, Entry)
        Entry(account="a").insert(first)
        assert Entry.count(second) == 1
    finally:
        first.close()
        assert (data / "postmaster.pid").exists()  # the second database still uses it
        second.close()
    assert not (data / "postmaster.pid").exists()
    with Database(data_dir=data) as again:  # the data is still there after a restart
        assert Entry.count(again) == 1


@pytest.mark.parametrize(
    "dsn",
    [
        "host=127.0.0.1 port=1 connect_timeout=1",
        "postgresql://nobody@127.0.0.1:1/x?connect_timeout=1",
    ],
)
def test_unreachable_server_is_a_config_error(dsn: str):
    """A server that does not answer raises ConfigError saying where and why."""
    refused = r"cannot connect to PostgreSQL at (\S+@)?127\.0\.0\.1:1/"
    with pytest.raises(ConfigError, match=refused):
        Database(dsn, connect_timeout=1)


def test_malformed_dsn_is_a_config_error():
    """A connection string libpq cannot parse raises ConfigError."""
    with pytest.raises(ConfigError, match="invalid connection string"):
        Database("this is = not a dsn")


def test_statement_timeout(server: Server, schema: str):
    """statement_timeout cancels long statements with QueryCanceledError."""
    with Database(server.dsn, schema=schema, statement_timeout=300) as db:
        create_tables(db, Entry)
        with pytest.raises(QueryCanceledError, match="statement timeout"), db.transaction() as tx:
            tx.connection.execute("SELECT pg_sleep(3)")
        assert Entry.count(db) == 0


def test_session_state_does_not_leak(server: Server, schema: str):
    """SET on a lent connection is reset before the pool hands it to the next borrower."""
    with Database(server.dsn, schema=schema, min_size=1, max_size=1) as db:
        with db.connection() as conn:
            pid = conn.info.backend_pid
            conn.execute("SET statement_timeout = '4321s'")
            conn.execute("SET search_path = public")
            conn.execute("CREATE TEMP TABLE scratch (x int)")
        with db.connection() as conn:
            assert conn.info.backend_pid == pid
            assert conn.execute("SHOW statement_timeout").fetchone() == ("0",)
            path = conn.execute("SHOW search_path").fetchone()
            assert path == (f'"{schema}",public',)
            assert conn.execute("SELECT to_regclass('pg_temp.scratch')").fetchone() == (None,)


def test_transaction_commits_or_rolls_back(db: Database):
    """Work in a transaction is visible after the block, and gone if the block raised."""
    create_tables(db, Entry)
    with db.transaction() as tx:
        Entry(account="kept").insert(tx)
        assert Entry.count(tx) == 1
    assert Entry.count(db) == 1
    with pytest.raises(RuntimeError), db.transaction() as tx:
        Entry(account="dropped").insert(tx)
        raise RuntimeError
    assert [e.account for e in Entry.find_all(db)] == ["kept"]


def test_nested_transactions_are_savepoints(db: Database):
    """An exception in a nested transaction undoes only the nested work."""
    create_tables(db, Entry)
    with db.transaction() as tx:
        Entry(account="outer").insert(tx)
        with pytest.raises(UniqueViolationError), tx.transaction() as inner:
            Entry(account="inner").insert(inner)
            Entry(account="outer").insert(inner)
        Entry(account="after").insert(tx)
    assert sorted(e.account for e in Entry.find_all(db)) == ["after", "outer"]


def test_failed_operation_inside_a_transaction_can_be_caught(db: Database):
    """A batch that fails inside a transaction undoes only itself; the transaction goes on."""
    create_tables(db, Entry)
    with db.transaction() as tx:
        Entry(account="a").insert(tx)
        with pytest.raises(UniqueViolationError):
            Entry.batch_create([Entry(account="b"), Entry(account="a")], tx)
        Entry(account="c").insert(tx)
    assert sorted(e.account for e in Entry.find_all(db)) == ["a", "c"]


def test_serializable_conflict_raises_serialization_error(db: Database):
    """Two serializable transactions writing what the other read: one gets SerializationError."""
    create_tables(db, Entry)
    x = Entry(account="x", amount=1).insert(db)
    y = Entry(account="y", amount=1).insert(db)
    # Write skew: each transaction reads both rows and writes one of them.
    with pytest.raises(SerializationError), db.transaction(isolation="serializable") as one:
        total_one = sum(e.amount for e in Entry.find_all(one))
        with db.transaction(isolation="serializable") as two:
            y.amount = sum(e.amount for e in Entry.find_all(two))
            y.update(two)
        x.amount = total_one
        x.update(one)
    stored = {e.account: e.amount for e in Entry.find_all(db)}
    assert stored == {"x": 1, "y": 2}


def test_read_only_transaction(db: Database):
    """A read-only transaction refuses writes."""
    create_tables(db, Entry)
    with pytest.raises(Exception, match="read-only"), db.transaction(read_only=True) as tx:
        Entry(account="x").insert(tx)
    assert Entry.count(db) == 0


def test_pool_timeout(server: Server, schema: str):
    """When every connection is busy, a caller waits `timeout` seconds and gets PoolTimeoutError."""
    with Database(server.dsn, schema=schema, max_size=1, timeout=0.3) as db:
        create_tables(db, Entry)
        with db.transaction(), pytest.raises(PoolTimeoutError):
            Entry.count(db)


def test_closed_database_refuses_work(server: Server, schema: str):
    """After close, operations raise PoolError."""
    db = Database(server.dsn, schema=schema)
    create_tables(db, Entry)
    db.close()
    with pytest.raises(PoolError, match="this Database is closed") as info:
        Entry.count(db)
    assert "pool" not in str(info.value)
    with pytest.raises(PoolError, match="this Database is closed"):
        Entry(account="x").insert(db)
    with pytest.raises(PoolError, match="this Database is closed"), db.transaction():
        pass


@table("never_created")
class Ghost(Orso):
    id: int | None = column(primary_key=True, default=None)
    name: str = ""


def test_a_missing_table_names_the_model_and_the_fix(db: Database):
    """A table never migrated is a MissingTableError naming the model and what creates it."""
    with pytest.raises(MissingTableError) as info:
        Ghost.find_all(db)
    text = str(info.value)
    assert "Ghost" in text
    assert "Migrations.init(db, [migration(Ghost)])" in text
    assert "orso-pg migrate" in text
    assert info.value.table == "never_created"
    assert isinstance(info.value, DatabaseError)
    with pytest.raises(MissingTableError, match=r"migration\(Ghost, 'ghosts_2024'\)"):
        Ghost(name="x").insert_with_table(db, "ghosts_2024")
    with pytest.raises(MissingTableError, match=r"Ghost.*orso-pg migrate"):
        Ghost.find_paginated(Pagination(1, 10), db)
    create_tables(db, Entry)
    elsewhere = Filter.raw(sql.SQL("EXISTS (SELECT 1 FROM no_model_has_this)"))
    with pytest.raises(MissingTableError, match=r"migrations create the tables of models") as info:
        Entry.find_where(elsewhere, db)
    assert info.value.table == "no_model_has_this"


def test_reads_recover_after_backends_are_killed(server: Server, schema: str):
    """When the server drops every connection, the next read sweeps the pool and succeeds."""
    with Database(
        server.dsn, schema=schema, min_size=2, max_size=2, application_name="victim"
    ) as db:
        create_tables(db, Entry)
        Entry(account="a").insert(db)
        with psycopg.connect(server.dsn, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'victim'"
            )
        assert Entry.count(db) == 1
        assert Entry.count(db) == 1


def test_listeners_see_every_statement(db: Database):
    """A listener receives each statement's text and parameters."""
    create_tables(db, Entry)
    seen: list[tuple[str, tuple[Any, ...]]] = []

    def listener(text: str, params: tuple[Any, ...]) -> None:
        seen.append((text, params))

    db.add_listener(listener)
    Entry(account="a").insert(db)
    Entry.find_by_id(1, db)
    db.remove_listener(listener)
    Entry.count(db)
    assert [t.split()[0] for t, _ in seen] == ["INSERT", "SELECT"]
    assert seen[1][1] == (1,)


def test_database_is_shared_by_threads(db: Database):
    """One Database serves several threads at once."""
    create_tables(db, Entry)
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for j in range(20):
                Entry(account=f"{i}-{j}").insert(db)
        except BaseException as exc:  # noqa: BLE001 - collected for the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert Entry.count(db) == 80


@pytest.mark.slow
def test_reads_recover_after_a_server_restart(embedded_dir: Path):
    """After a real server restart, the first read on the stale pool succeeds."""
    path, dsn = _embedded.acquire(embedded_dir)
    try:
        with Database(dsn, min_size=2, max_size=2) as db:
            create_tables(db, Entry)
            Entry(account="a").insert(db)
            cluster = Cluster.prepare(path)
            cluster.stop()
            cluster.start()
            assert Entry.count(db) == 1
    finally:
        _embedded.release(path)


def test_run_transaction_retries_serialization_failures(db: Database):
    """run_transaction reruns the work after a serialization failure and returns its result."""
    create_tables(db, Entry)
    Entry(account="x", amount=1).insert(db)
    Entry(account="y", amount=1).insert(db)
    calls: list[int] = []

    def skew(tx: Any) -> int:
        calls.append(1)
        total: int = sum(e.amount for e in Entry.find_all(tx))
        if len(calls) == 1:
            # A concurrent transaction commits a conflicting write while this one is open.
            with db.transaction(isolation="serializable") as other:
                sum(e.amount for e in Entry.find_all(other))
                Entry.update_where(Filter.eq("account", "y"), {"amount": 5}, other)
        Entry.update_where(Filter.eq("account", "x"), {"amount": total}, tx)
        return total

    assert db.run_transaction(skew) == 6
    assert len(calls) == 2
    assert {e.account: e.amount for e in Entry.find_all(db)} == {"x": 6, "y": 5}


def test_run_transaction_gives_up(db: Database):
    """After the last attempt the SerializationError reaches the caller; other errors at once."""
    create_tables(db, Entry)
    attempts: list[int] = []

    def always_conflicts(tx: Any) -> None:
        attempts.append(1)
        tx.connection.execute("SELECT 1")
        raise SerializationError("simulated", sqlstate="40001")

    with pytest.raises(SerializationError):
        db.run_transaction(always_conflicts, attempts=3, initial_delay=0.001)
    assert len(attempts) == 3

    def fails(tx: Any) -> None:
        attempts.append(1)
        raise ValueError

    with pytest.raises(ValueError):
        db.run_transaction(fails)
    assert len(attempts) == 4
