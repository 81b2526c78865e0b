"""Migration tooling: exact dry runs, the history with schemas, rollbacks of every kind of step."""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg import sql

from orso_pg import (
    Database,
    Index,
    MigrationAction,
    MigrationError,
    Migrations,
    Orso,
    ValidationError,
    column,
    migration,
    table,
)
from orso_pg.migrate._history import HISTORY_TABLE

ROWS = 300


@table("tooled")
class V1(Orso):
    id: int | None = column(primary_key=True, default=None)
    symbol: str
    qty: int
    prices: list[float] = column(factory=list)
    note: str | None = None


# One model per kind of step, each a change from V1.


@table("tooled")
class Added(V1):
    venue: str = "XNAS"


@table("tooled")
class Renamed(Orso):
    id: int | None = column(primary_key=True, default=None)
    ticker: str = column(renamed_from="symbol")
    qty: int
    prices: list[float] = column(factory=list)
    note: str | None = None


@table("tooled")
class RenamedBack(V1):
    symbol: str = column(renamed_from="ticker")


@table("tooled")
class RenamedCompressed(Renamed):
    prices: list[float] = column(factory=list, compress=True)


@table("tooled")
class RenamedIndexed(Renamed):
    ticker: str = column(renamed_from="symbol", index=True)


@table("tooled")
class Retyped(V1):
    qty: float  # type: ignore[assignment]


@table("tooled")
class Compressed(V1):
    prices: list[float] = column(factory=list, compress=True)


@table("tooled")
class Indexed(V1):
    symbol: str = column(index=True)


@table("tooled")
class NotNull(V1):
    note: str = ""


@table("tooled", indexes=[Index(("symbol",), unique=True)])
class UniqueSymbol(V1):
    pass


KINDS = {
    "add": Added,
    "rename": Renamed,
    "type change": Retyped,
    "compress": Compressed,
    "index": Indexed,
    "not null": NotNull,
}


def fill(db: Database, raw: psycopg.Connection[Any]) -> None:
    Migrations.init(db, [migration(V1)])
    raw.execute(
        "INSERT INTO tooled (symbol, qty, prices, note)"
        " SELECT 'S' || g, g, ARRAY[g * 0.5, -g::float8], 'n' || g"
        " FROM generate_series(1, %s) AS g",
        (ROWS,),
    )


def shape(raw: psycopg.Connection[Any], name: str = "tooled") -> dict[str, Any]:
    """Return the table's columns (type, NOT NULL, default), indexes and constraints."""
    oid = raw.execute("SELECT %s::regclass::oid", (name,)).fetchone()
    assert oid is not None
    return {
        "columns": raw.execute(
            "SELECT attnum, attname, format_type(atttypid, atttypmod), attnotnull,"
            " pg_get_expr(adbin, adrelid), attidentity FROM pg_attribute"
            " LEFT JOIN pg_attrdef ON adrelid = attrelid AND adnum = attnum"
            " WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            oid,
        ).fetchall(),
        "indexes": raw.execute(
            "SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = %s ORDER BY 1",
            oid,
        ).fetchall(),
        "constraints": raw.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid = %s ORDER BY 1",
            oid,
        ).fetchall(),
    }


def catalog(raw: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    """Return every relation of the schema with its columns: the catalog a dry run must keep."""
    return raw.execute(
        "SELECT c.relname, c.relkind, a.attname, format_type(a.atttypid, a.atttypmod),"
        " a.attnotnull, pg_get_expr(d.adbin, d.adrelid) FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped"
        " LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
        " WHERE n.nspname = current_schema() ORDER BY 1, 3"
    ).fetchall()


def data(raw: psycopg.Connection[Any]) -> str:
    """Return an md5 of V1's columns of every row, in id order (a renamed column by position)."""
    names = [
        r[0]
        for r in raw.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid ="
            " 'tooled'::regclass AND attnum BETWEEN 1 AND 5 AND NOT attisdropped ORDER BY attnum"
        )
    ]
    query = sql.SQL("SELECT md5(string_agg(row({})::text, '|' ORDER BY id)) FROM tooled")
    row = raw.execute(query.format(sql.SQL(", ").join(map(sql.Identifier, names)))).fetchone()
    assert row is not None
    return str(row[0])


def history_rows(raw: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return raw.execute(
        sql.SQL("SELECT * FROM {} ORDER BY id").format(sql.Identifier(HISTORY_TABLE))
    ).fetchall()


# --- dry runs ---------------------------------------------------------------------------------


def test_a_dry_run_of_a_lossy_change_fails_as_the_real_run_and_changes_nothing(db, raw):
    """The dry run raises the real run's error; schema, data and history stay as they were."""
    fill(db, raw)
    raw.execute("UPDATE tooled SET qty = 7 WHERE id = 7")
    Migrations.init(db, [migration(Retyped)])
    raw.execute("UPDATE tooled SET qty = 2.5 WHERE id = 9")
    before = (catalog(raw), data(raw), history_rows(raw))
    with pytest.raises(MigrationError) as dry:
        Migrations.dry_run(db, [migration(V1)])
    assert (catalog(raw), data(raw), history_rows(raw)) == before
    with pytest.raises(MigrationError) as real:
        Migrations.init(db, [migration(V1)])
    assert str(dry.value) == str(real.value)
    assert "the value '2.5' would become" in str(real.value)
    assert (catalog(raw), data(raw), history_rows(raw)) == before


def test_a_dry_run_returns_what_the_migration_returns_and_rolls_back(db, raw):
    """Results, steps and row counts of a dry run equal the real run's; nothing stays."""
    fill(db, raw)
    before = (catalog(raw), data(raw), history_rows(raw))
    dry = Migrations.dry_run(db, [migration(Compressed)])
    assert (catalog(raw), data(raw), history_rows(raw)) == before
    real = Migrations.init(db, [migration(Compressed)])
    assert dry == real
    assert real[0].rows_migrated == ROWS


def test_a_dry_run_builds_concurrent_indexes_in_its_transaction(db, raw):
    """A unique index over duplicates fails the dry run with the concurrent build's message."""
    fill(db, raw)
    raw.execute("UPDATE tooled SET symbol = 'S1' WHERE id = 2")
    before = (catalog(raw), history_rows(raw))
    with pytest.raises(MigrationError) as dry:
        Migrations.dry_run(db, [migration(UniqueSymbol)], concurrent_indexes=True)
    assert (catalog(raw), history_rows(raw)) == before
    with pytest.raises(MigrationError) as real:
        Migrations.init(db, [migration(UniqueSymbol)], concurrent_indexes=True)
    assert str(dry.value) == str(real.value)
    assert "could not build index" in str(real.value)

    raw.execute("UPDATE tooled SET symbol = 'S2' WHERE id = 2")
    (result,) = Migrations.dry_run(db, [migration(UniqueSymbol)], concurrent_indexes=True)
    assert result.steps[-1].description.endswith("concurrently, after the transaction")
    assert not any("(symbol)" in i[0] for i in shape(raw)["indexes"])


def test_dry_run_arguments_are_checked(db):
    """A non-positive lock timeout is refused before anything runs."""
    with pytest.raises(ValidationError, match="lock_timeout"):
        Migrations.dry_run(db, [migration(V1)], lock_timeout=0)


def test_a_dry_run_inside_a_transaction_is_rolled_back_with_it(db, raw):
    """Inside db.transaction() the dry run is a savepoint that is rolled back."""
    with db.transaction() as tx:
        (result,) = Migrations.dry_run(tx, [migration(V1)])
    assert result.action is MigrationAction.TABLE_CREATED
    assert raw.execute("SELECT to_regclass('tooled')").fetchone() == (None,)


# --- history ----------------------------------------------------------------------------------


def test_the_history_of_three_migrations(db, raw):
    """Each migration is a record: time, action, model, steps with SQL, schemas before/after."""
    fill(db, raw)
    Migrations.init(db, [migration(Renamed)])
    Migrations.init(db, [migration(Renamed, None)])  # matches: no new record
    Migrations.init(db, [migration(RenamedBack)])
    records = Migrations.history(db, "tooled")
    assert [r.action for r in records] == ["table_created", "data_migrated", "data_migrated"]
    created, renamed, back = records
    assert created.schema_before is None
    assert created.schema_after is not None
    assert [c["name"] for c in created.schema_after["columns"]][:2] == ["id", "symbol"]
    assert renamed.model.endswith("test_migration_tooling.Renamed")
    assert renamed.steps[0]["description"] == "rename column symbol to ticker"
    assert renamed.steps[0]["sql"] == 'ALTER TABLE "tooled" RENAME COLUMN "symbol" TO "ticker"'
    assert renamed.schema_before == created.schema_after
    assert renamed.schema_after is not None
    assert renamed.schema_after["renamed"] == {"symbol": "ticker"}
    assert back.steps[0]["description"] == "rename column ticker to symbol"
    assert all(r.applied_at.tzinfo is not None for r in records)
    assert created.applied_at <= renamed.applied_at <= back.applied_at
    assert Migrations.history(db) == records
    assert Migrations.history(db, "other") == []


def test_history_rows_written_before_schemas_were_recorded_stay_readable(db, raw):
    """An old history table gains the schema columns at the next migration; old rows read."""
    raw.execute(
        "CREATE TABLE orso_pg_migrations (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
        " applied_at TIMESTAMPTZ NOT NULL DEFAULT now(), table_schema TEXT NOT NULL,"
        " table_name TEXT NOT NULL, model TEXT NOT NULL, action TEXT NOT NULL,"
        " checksum TEXT NOT NULL, steps JSONB NOT NULL, target JSONB NOT NULL)"
    )
    raw.execute(
        "INSERT INTO orso_pg_migrations (table_schema, table_name, model, action, checksum,"
        " steps, target) VALUES (current_schema(), 'tooled', 'app.Old', 'data_migrated', 'x',"
        ' \'[{"description": "rename column a to b", "sql": "", "rewrites": false}]\','
        " '{}')"
    )
    (old,) = Migrations.history(db, "tooled")
    assert (old.model, old.schema_before, old.schema_after) == ("app.Old", None, None)
    with pytest.raises(MigrationError, match="did not record table schemas"):
        Migrations.rollback(db, "tooled")
    raw.execute("CREATE TABLE tooled (id BIGINT PRIMARY KEY)")
    Migrations.init(db, [migration(V1)], drop_columns=True)
    first, new = Migrations.history(db, "tooled")
    assert first == old
    assert new.schema_before is not None
    assert new.schema_after is not None


# --- rollback ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_rollback_restores_the_schema_and_keeps_every_row(db, raw, kind):
    """Each kind of step is undone in place: the schema is V1's again and every row is kept."""
    fill(db, raw)
    before, rows = shape(raw), data(raw)
    Migrations.init(db, [migration(KINDS[kind])])
    assert shape(raw) != before
    result = Migrations.rollback(db, "tooled", drop_columns=True)
    assert result.action is MigrationAction.DATA_MIGRATED
    assert result.rows_migrated == ROWS
    assert result.notes[0].startswith("back to the schema before record ")
    assert shape(raw) == before
    assert data(raw) == rows
    assert Migrations.plan(db, [migration(V1)])[0].action is MigrationAction.SCHEMA_MATCHED
    if kind == "add":  # the added column's data went to a backup table first
        assert result.backup_table == "tooled_backup_1"
        assert raw.execute("SELECT count(*) FROM tooled_backup_1").fetchone() == (ROWS,)


def test_a_rollback_keeps_a_column_added_since_unless_told(db, raw):
    """Without drop_columns the added column stays (nullable), and the result says so."""
    fill(db, raw)
    Migrations.init(db, [migration(Added)])
    result = Migrations.rollback(db, "tooled")
    assert any(n.startswith("kept column venue") for n in result.notes)
    assert raw.execute("SELECT count(*) FROM tooled WHERE venue = 'XNAS'").fetchone() == (ROWS,)


def test_a_rollback_refuses_to_lose_values_and_changes_nothing(db, raw):
    """A value the way back would change is named; the table stays as it is."""
    fill(db, raw)
    Migrations.init(db, [migration(Retyped)])
    raw.execute("UPDATE tooled SET qty = 1.25 WHERE id = 3")
    before = (shape(raw), data(raw), history_rows(raw))
    with pytest.raises(MigrationError, match=r"the value '1\.25' would become"):
        Migrations.rollback(db, "tooled", dry_run=True)
    with pytest.raises(MigrationError, match=r"the value '1\.25' would become"):
        Migrations.rollback(db, "tooled")
    assert (shape(raw), data(raw), history_rows(raw)) == before


def test_rolling_back_twice_undoes_the_rollback_and_to_goes_further(db, raw):
    """The rollback is recorded, so a second one redoes; --to picks any recorded schema."""
    fill(db, raw)
    v1 = shape(raw)
    Migrations.init(db, [migration(Renamed)])
    renamed = shape(raw)
    Migrations.init(db, [migration(RenamedCompressed)])
    Migrations.rollback(db, "tooled")
    assert shape(raw) == renamed
    Migrations.rollback(db, "tooled")  # undoes the rollback: compressed again, ticker kept
    compressed_shape = shape(raw)
    assert compressed_shape != renamed
    first = Migrations.history(db, "tooled")[0]
    result = Migrations.rollback(db, to=first.id, drop_columns=True)
    assert result.notes[0] == f"back to the schema after record {first.id}"
    models = [r.model for r in Migrations.history(db, "tooled")]
    assert models[-1] == f"rollback to the schema after record {first.id}"
    assert models[-3].startswith("rollback to the schema before record ")
    assert shape(raw) == v1
    assert V1.count(db) == ROWS


def test_a_rollback_of_a_created_table_is_refused(db, raw):
    """Going back before the table existed would drop it: refused, with what to do instead."""
    fill(db, raw)
    with pytest.raises(MigrationError, match="created it; going back would drop the table"):
        Migrations.rollback(db, "tooled")
    with pytest.raises(MigrationError, match="no migration of this table is recorded"):
        Migrations.rollback(db, "nothing_here")
    with pytest.raises(MigrationError, match="no history record 999"):
        Migrations.rollback(db, "tooled", to=999)
    with pytest.raises(ValidationError, match="a table or a history record"):
        Migrations.rollback(db)
    with pytest.raises(ValidationError, match="lock_timeout"):
        Migrations.rollback(db, "tooled", lock_retries=-1)


class Side(enum.Enum):
    BUY = "buy"
    SELL = "sell"


class WiderSide(enum.Enum):
    BUY = "buy"
    SELL = "sell"
    HOLD = "hold"


@table("sided")
class Sided(Orso):
    id: int | None = column(primary_key=True, default=None)
    side: Side
    venue: str = column(server_default="XNAS")


@table("sided")
class WiderSided(Orso):
    id: int | None = column(primary_key=True, default=None)
    side: WiderSide
    venue: str = column(server_default="XNYS")


def test_a_rollback_restores_enum_members_and_defaults(db, raw):
    """The enum's CHECK and a server default come back as they were recorded."""
    Migrations.init(db, [migration(Sided)])
    raw.execute("INSERT INTO sided (side) VALUES ('buy'), ('sell')")
    before = shape(raw, "sided")
    Migrations.init(db, [migration(WiderSided)])
    assert shape(raw, "sided") != before
    Migrations.rollback(db, "sided")
    assert shape(raw, "sided") == before


def test_a_rollback_undoes_the_concurrent_index_builds_with_the_rest(db, raw):
    """A migration with concurrent indexes is two records; one rollback undoes both."""
    fill(db, raw)
    before, rows = shape(raw), data(raw)
    Migrations.init(db, [migration(RenamedIndexed)], concurrent_indexes=True)
    last = Migrations.history(db, "tooled")[-1]
    assert last.steps[0]["description"].endswith("concurrently, after the transaction")
    Migrations.rollback(db, "tooled")
    assert shape(raw) == before
    assert data(raw) == rows


@table("parents")
class Parent(Orso):
    id: uuid.UUID | None = column(primary_key=True, default=None)
    code: str = column(unique=True, sql_type="varchar(12)")


@table("rich")
class Rich(Orso):
    id: str | None = column(primary_key=True, default=None)
    parent_id: uuid.UUID = column(ref="parents", on_delete="CASCADE")
    price: Decimal = column(sql_type="numeric(12,4)")
    tags: list[str] = column(factory=list)
    doc: dict[str, Any] = column(factory=dict)
    seen: dt.date | None = None
    venue: str | None = column(server_default="XNAS", index="hash", default=None)
    created_at: dt.datetime | None = column(created_at=True, default=None)


@table("rich")
class RichMore(Rich):
    extra: int | None = None


@table("pairs", primary_key=["a", "b"], unique=[["c", "d"]])
class Pair(Orso):
    a: int
    b: str
    c: int
    d: int


@table("pairs", primary_key=["a", "b"], unique=[["c", "d"]])
class PairMore(Pair):
    e: float = 0.0


def test_a_rollback_keeps_keys_defaults_references_and_declared_types(db, raw):
    """What the recorded schema holds beyond columns is rebuilt exactly."""
    Migrations.init(db, [migration(Parent), migration(Rich), migration(Pair)])
    parent = Parent(code="P1").insert(db)
    assert parent.id is not None
    Rich(parent_id=parent.id, price=Decimal("1.5")).insert(db)
    raw.execute("INSERT INTO pairs VALUES (1, 'x', 2, 3)")
    before = (shape(raw, "rich"), shape(raw, "pairs"))
    Migrations.init(db, [migration(RichMore), migration(PairMore)])
    Migrations.rollback(db, "rich", drop_columns=True)
    result = Migrations.rollback(db, "pairs", drop_columns=True)
    assert (shape(raw, "rich"), shape(raw, "pairs")) == before
    assert not [n for n in result.notes if "not restored" in n]


def test_a_rollback_can_build_the_indexes_it_brings_back_concurrently(db, raw):
    """An index dropped by the last migration comes back, built concurrently when asked."""
    Migrations.init(db, [migration(Indexed)])
    raw.execute("INSERT INTO tooled (symbol, qty, prices) VALUES ('A', 1, '{}'), ('B', 2, '{}')")
    indexed = shape(raw)
    Migrations.init(db, [migration(V1)])
    assert shape(raw) != indexed
    result = Migrations.rollback(db, "tooled", concurrent_indexes=True)
    assert result.steps[-1].description.endswith("concurrently, after the transaction")
    assert shape(raw) == indexed
    with db.transaction() as tx, pytest.raises(ValidationError, match="inside a transaction"):
        Migrations.rollback(tx, "tooled", concurrent_indexes=True)
