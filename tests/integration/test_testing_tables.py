"""orso_pg.testing's database helpers: fresh tables, migrate, isolated databases, the server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from orso_pg import Database, MigrationAction
from orso_pg.testing import fresh_tables, migrate
from orso_pg.testing.server import ENV_DSN, isolated_database, session_server
from tests.conftest import Server
from tests.models import Keyed, Order

SCRATCH_SCHEMAS = "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'orso_scratch_%'"


def scratch_schemas(raw: psycopg.Connection[Any]) -> int:
    row = raw.execute(SCRATCH_SCHEMAS).fetchone()
    assert row is not None
    return int(row[0])


def test_fresh_tables_are_empty_usable_and_undone(db: Database, raw: psycopg.Connection[Any]):
    """Inside the block the tables take rows; afterwards schema, tables and rows are gone."""
    before = scratch_schemas(raw)
    with fresh_tables(db, Keyed, Order) as tx:
        assert Keyed.count(tx) == 0
        Keyed(symbol="BTC", venue="XN", seq=1).insert(tx)
        Order(symbol="BTC", qty=3).insert(tx)
        assert Order.count(tx) == 1
    assert scratch_schemas(raw) == before
    assert raw.execute("SELECT to_regclass('rt_keyed')").fetchone() == (None,)


def test_fresh_tables_shadow_committed_tables_of_the_same_name(db: Database):
    """A committed table of the same name is neither seen nor changed inside the block."""
    migrate(db, Keyed)
    Keyed(symbol="ETH", venue="XN", seq=1).insert(db)
    with fresh_tables(db, Keyed) as tx:
        assert Keyed.count(tx) == 0
        Keyed(symbol="ETH", venue="XN", seq=1).insert(tx)  # no clash with the committed row
    assert [k.symbol for k in Keyed.find_all(db)] == ["ETH"]


def test_consecutive_fresh_tables_never_share_rows(db: Database):
    """Each block starts empty, whatever the previous one wrote."""
    for _ in range(3):
        with fresh_tables(db, Keyed) as tx:
            assert Keyed.count(tx) == 0
            Keyed(symbol="SOL", venue="XN", seq=1).insert(tx)


def test_an_error_inside_fresh_tables_propagates_and_undoes_the_work(
    db: Database, raw: psycopg.Connection[Any]
):
    """An exception raised in the block reaches the caller and the work is rolled back."""
    before = scratch_schemas(raw)
    with pytest.raises(ZeroDivisionError), fresh_tables(db, Keyed) as tx:
        Keyed(symbol="ADA", venue="XN", seq=1).insert(tx)
        _ = 1 / 0
    assert scratch_schemas(raw) == before


def test_fresh_tables_inside_a_transaction_undo_only_their_savepoint(db: Database):
    """Given a transaction, the block is a savepoint: work outside it commits as usual."""
    migrate(db, Keyed, Order)
    with db.transaction() as outer:
        Order(qty=1).insert(outer)
        with fresh_tables(outer, Keyed, Order) as inner:
            Order(qty=2).insert(inner)
            assert Order.count(inner) == 1
        Order(qty=3).insert(outer)
    assert sorted(o.qty for o in Order.find_all(db)) == [1, 3]


def test_migrate_creates_missing_tables_and_matches_existing_ones(db: Database):
    """migrate creates each table once and then reports that it matches."""
    first = migrate(db, Keyed, Order)
    assert [r.action for r in first] == [MigrationAction.TABLE_CREATED] * 2
    second = migrate(db, Keyed, Order)
    assert [r.action for r in second] == [MigrationAction.SCHEMA_MATCHED] * 2


def test_isolated_database_has_a_schema_of_its_own_dropped_afterwards(
    server: Server, db: Database, raw: psycopg.Connection[Any]
):
    """The database works in a new schema, invisible from others, and the schema is dropped."""
    with isolated_database(db, server.dsn) as inner:
        assert inner.schema is not None
        assert inner.schema.startswith("orso_test_")
        migrate(inner, Keyed)
        Keyed(symbol="DOT", venue="XN", seq=1).insert(inner)
        assert Keyed.count(inner) == 1
        assert raw.execute("SELECT to_regclass('rt_keyed')").fetchone() == (None,)
        name = inner.schema
    gone = raw.execute("SELECT count(*) FROM pg_namespace WHERE nspname = %s", (name,))
    assert gone.fetchone() == (0,)


def test_session_server_takes_the_dsn_from_the_environment(
    server: Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    """With ORSO_PG_TEST_DSN set, that server is used and nothing is started."""
    monkeypatch.setenv(ENV_DSN, server.dsn)
    with session_server(tmp_path / "pgdata") as found:
        assert found.dsn == server.dsn
        assert found.version == server.version
        assert not found.embedded
    assert not (tmp_path / "pgdata").exists()
