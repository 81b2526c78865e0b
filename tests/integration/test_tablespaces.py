"""Tablespaces: tables, partitions and indexes placed, moved by age, and changed by migrations.

Each test gets a tablespace in a temporary directory owned by the server's OS user. A server
whose files are not on this machine (or whose user this process cannot hand a directory to)
is skipped, except the embedded one under CI, which must always host one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from orso_pg import Database, MigrationAction, Migrations, Orso, column, migration, partition, table
from tests.conftest import IN_CI

T0 = datetime(2024, 3, 1, tzinfo=UTC)


@pytest.fixture
def tablespace(server: Any, schema: str) -> Iterator[str]:
    """A tablespace of this test's own, dropped (with the schema's tables) afterwards."""
    with _space(server, schema, f"ts_{schema}") as name:
        yield name


@pytest.fixture
def cold(server: Any, schema: str, tablespace: str) -> Iterator[str]:
    """A second tablespace of this test's own (set up after, so dropped before, the first)."""
    with _space(server, schema, f"cold_{schema}") as name:
        yield name


@contextlib.contextmanager
def _space(server: Any, schema: str, name: str) -> Iterator[str]:
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        row = conn.execute("SHOW data_directory").fetchone()
        data = Path(row[0] if row else "")
        reason = None
        if not data.is_dir():
            reason = "the server's files are not on this machine"
        elif os.geteuid() != 0 and data.stat().st_uid != os.geteuid():
            reason = "this process cannot give a directory to the server's OS user"
        if reason is not None:
            if IN_CI and server.id == "embedded":
                pytest.fail(f"the embedded server must host a tablespace: {reason}")
            pytest.skip(reason)
        owner = data.stat()
        where = Path(tempfile.mkdtemp(prefix="orso_pg_space_"))
        os.chown(where, owner.st_uid, owner.st_gid)
        where.chmod(0o700)
        conn.execute(
            sql.SQL("CREATE TABLESPACE {} LOCATION {}").format(
                sql.Identifier(name), sql.Literal(str(where))
            )
        )
        try:
            yield name
        finally:
            # The tablespace must be empty to go: drop what the test put there first.
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
            conn.execute(sql.SQL("DROP TABLESPACE {}").format(sql.Identifier(name)))
            shutil.rmtree(where, ignore_errors=True)


def space_of(raw: psycopg.Connection[Any], relation: str) -> str | None:
    row = raw.execute(
        "SELECT t.spcname FROM pg_class c LEFT JOIN pg_tablespace t ON t.oid = c.reltablespace"
        " WHERE c.oid = %s::regclass",
        (relation,),
    ).fetchone()
    assert row is not None
    return None if row[0] is None else str(row[0])


def test_a_partitioned_table_its_partitions_and_indexes_go_to_their_tablespaces(
    db: Database, raw: psycopg.Connection[Any], tablespace: str
) -> None:
    """@table(tablespace=, index_tablespace=) place the parent, new partitions and indexes."""

    @table(
        "sp_trades",
        primary_key=("symbol", "ts"),
        partition_by=partition.range("ts", every="1 day"),
        tablespace=tablespace,
        index_tablespace=tablespace,
        indexes=[("price",)],
    )
    class Trade(Orso):
        symbol: str
        ts: datetime
        price: float

    assert Migrations.init(db, [migration(Trade)])[0].action is MigrationAction.TABLE_CREATED
    Trade.batch_insert(
        [Trade(symbol="A", ts=T0 + timedelta(hours=12 * i), price=1.0) for i in range(6)], db
    )
    assert space_of(raw, "sp_trades") == tablespace
    assert space_of(raw, "sp_trades_pkey") == tablespace
    parts = Trade.partitions(db)
    assert len(parts) == 3
    assert {p.tablespace for p in parts} == {tablespace}
    assert Migrations.init(db, [migration(Trade)])[0].action is MigrationAction.SCHEMA_MATCHED


def test_old_partitions_move_to_another_tablespace(
    db: Database, raw: psycopg.Connection[Any], tablespace: str
) -> None:
    """move_partitions_before moves the old days and their indexes, and only once."""

    @table(
        "sp_moves",
        primary_key=("symbol", "ts"),
        partition_by=partition.range("ts", every="1 day"),
    )
    class Move(Orso):
        symbol: str
        ts: datetime
        price: float

    Migrations.init(db, [migration(Move)])
    Move.batch_insert(
        [Move(symbol="A", ts=T0 + timedelta(hours=12 * i), price=float(i)) for i in range(8)], db
    )
    moved = Move.move_partitions_before(T0 + timedelta(days=2), tablespace, db)
    assert moved == ["sp_moves_p20240301", "sp_moves_p20240302"]
    assert [p.tablespace for p in Move.partitions(db)] == [tablespace, tablespace, None, None]
    assert space_of(raw, "sp_moves_p20240301_pkey") == tablespace
    assert Move.move_partitions_before(T0 + timedelta(days=2), tablespace, db) == []
    assert Move.count(db) == 8
    with pytest.raises(ValueError, match="tablespace name"):
        Move.move_partitions_before(T0, "", db)


def test_a_tablespace_change_is_a_planned_step(
    db: Database, raw: psycopg.Connection[Any], tablespace: str, schema: str
) -> None:
    """Moving a plain table and its indexes is planned, says it rewrites, and then matches."""

    @table("sp_plain", indexes=[("name",)])
    class Before(Orso):
        id: int | None = column(primary_key=True, default=None)
        name: str

    Migrations.init(db, [migration(Before)])
    Before(name="a").insert(db)

    @table("sp_plain", indexes=[("name",)], tablespace=tablespace, index_tablespace=tablespace)
    class After(Orso):
        id: int | None = column(primary_key=True, default=None)
        name: str

    plan = Migrations.plan(db, [migration(After)])[0]
    where = f'"{schema}"'
    assert [(s.description, s.sql, s.rewrites) for s in plan.steps] == [
        (
            f"move table sp_plain to tablespace {tablespace}, rewriting the table",
            f'ALTER TABLE "sp_plain" SET TABLESPACE "{tablespace}"',
            True,
        ),
        (
            f"move index sp_plain_name_idx to tablespace {tablespace}, rewriting the index",
            f'ALTER INDEX {where}."sp_plain_name_idx" SET TABLESPACE "{tablespace}"',
            True,
        ),
        (
            f"move index sp_plain_pkey to tablespace {tablespace}, rewriting the index",
            f'ALTER INDEX {where}."sp_plain_pkey" SET TABLESPACE "{tablespace}"',
            True,
        ),
    ]
    result = Migrations.init(db, [migration(After)])[0]
    assert result.action is MigrationAction.DATA_MIGRATED
    assert result.rows_migrated == 1
    assert space_of(raw, "sp_plain") == tablespace
    assert space_of(raw, "sp_plain_pkey") == tablespace
    assert Migrations.init(db, [migration(After)])[0].action is MigrationAction.SCHEMA_MATCHED

    @table(
        "sp_parted",
        primary_key=("symbol", "ts"),
        partition_by=partition.range("ts", every="1 day"),
    )
    class Parted(Orso):
        symbol: str
        ts: datetime

    Migrations.init(db, [migration(Parted)])

    @table(
        "sp_parted",
        primary_key=("symbol", "ts"),
        partition_by=partition.range("ts", every="1 day"),
        tablespace=tablespace,
        index_tablespace=tablespace,
    )
    class PartedThere(Orso):
        symbol: str
        ts: datetime

    plan = Migrations.plan(db, [migration(PartedThere)])[0]
    assert [s.rewrites for s in plan.steps] == [False, False]
    assert plan.steps[0].description.startswith(
        f"set the tablespace of new partitions of sp_parted to {tablespace}"
    )
    assert plan.steps[1].description.startswith(
        "move index sp_parted_pkey of partitioned table sp_parted and 0 partition index(es)"
    )
    Migrations.init(db, [migration(PartedThere)])
    PartedThere(symbol="A", ts=T0).insert(db)
    assert [p.tablespace for p in PartedThere.partitions(db)] == [tablespace]


def test_an_index_tablespace_change_moves_a_partitioned_tables_indexes(
    db: Database, raw: psycopg.Connection[Any], tablespace: str, cold: str, schema: str
) -> None:
    """The partitioned index and its partitions' indexes move; deliberately placed ones stay."""

    def model(index_space: str | None) -> Any:
        @table(
            "sp_ix",
            primary_key=("symbol", "ts"),
            partition_by=partition.range("ts", every="1 day"),
            indexes=[("price",)],
            index_tablespace=index_space,
        )
        class Ix(Orso):
            symbol: str
            ts: datetime
            price: float

        return Ix

    before = model(None)
    Migrations.init(db, [migration(before)])
    before.batch_insert(
        [before(symbol="A", ts=T0 + timedelta(hours=12 * i), price=1.0) for i in range(6)], db
    )
    assert before.move_partitions_before(T0 + timedelta(days=1), cold, db) == ["sp_ix_p20240301"]
    after = model(tablespace)
    plan = Migrations.plan(db, [migration(after)])[0]
    where = f'"{schema}"'
    moves = [
        f'ALTER INDEX {where}."{name}" SET TABLESPACE "{tablespace}"'
        for name in ("sp_ix_p20240302_{}", "sp_ix_p20240303_{}")
    ]
    assert [(s.description, s.sql, s.rewrites) for s in plan.steps] == [
        (
            (
                f"move index sp_ix_{kind} of partitioned table sp_ix and 2 partition index(es) "
                f"to tablespace {tablespace}, rewriting the indexes (new partitions' indexes go "
                "there too)"
            ),
            ";\n".join(
                [f'ALTER INDEX {where}."sp_ix_{kind}" SET TABLESPACE "{tablespace}"']
                + [m.format(kind) for m in moves]
            ),
            True,
        )
        for kind in ("pkey", "price_idx")
    ]
    assert any("sp_ix_p20240301_pkey" in n and "stay" in n for n in plan.notes)
    Migrations.init(db, [migration(after)])
    assert space_of(raw, "sp_ix_pkey") == tablespace
    assert space_of(raw, "sp_ix_p20240302_pkey") == tablespace
    assert space_of(raw, "sp_ix_p20240303_price_idx") == tablespace
    assert space_of(raw, "sp_ix_p20240301_pkey") == cold
    # A partition made later puts its indexes in the new place.
    after(symbol="B", ts=T0 + timedelta(days=9), price=2.0).insert(db)
    assert space_of(raw, "sp_ix_p20240310_pkey") == tablespace
    assert space_of(raw, "sp_ix_p20240310_price_idx") == tablespace
    assert after.count(db) == 7
    assert Migrations.init(db, [migration(after)])[0].action is MigrationAction.SCHEMA_MATCHED
