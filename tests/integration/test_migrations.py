"""Migrations on a populated table (100,000 rows, with child rows pointing at it).

Every case migrates ``assets`` from ``Asset`` to another model of the same table, then checks a
hash of the data that must survive, the child rows and their foreign key, and the objects the
model does not know about (a comment, a grant, a trigger, an expression index).
"""

from __future__ import annotations

import datetime as dt
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
    column,
    migration,
    table,
    table_of,
)
from orso_pg.migrate import _ddl as ddl
from orso_pg.migrate._history import HISTORY_TABLE
from tests.conftest import isolated_schema
from tests.migration_helpers import (
    CHILDREN,
    ROWS,
    Asset,
    AssetCompressed,
    AssetRenamed,
    columns_of,
    digest,
    history,
    populate,
    survivors,
)

# --- the models the cases migrate to (same table; the registry keeps the latest) -------------
# A subclass is Asset with the fields it declares added or changed.


@table("assets")
class AssetAdded(Asset):
    venue: str = "XNAS"
    memo: str | None = None
    lot: int = column(default=1, server_default=100)


@table("assets")
class AssetNoDefault(Asset):
    venue: str


@table("assets")
class AssetWithoutNote(Orso):
    id: int | None = column(primary_key=True, default=None)
    symbol: str
    price: float
    qty: int
    prices: list[float] = column(factory=list)
    ticks: list[int] = column(factory=list)


@table("assets")
class AssetWidened(Orso):
    id: int | None = column(primary_key=True, default=None)
    symbol: str = column(sql_type="varchar(40)")
    price: float
    qty: Decimal
    note: str | None = None
    prices: list[float] = column(factory=list)
    ticks: list[int] = column(factory=list)


@table("assets")
class AssetNarrowed(Asset):
    symbol: str = column(sql_type="varchar(4)")
    qty: int = column(sql_type="integer")


@table("assets")
class AssetNoteRequired(Orso):
    id: int | None = column(primary_key=True, default=None)
    symbol: str | None = None
    price: float
    qty: int
    note: str
    prices: list[float] = column(factory=list)
    ticks: list[int] = column(factory=list)


@table("assets", indexes=[Index(("price", "qty"))])
class AssetIndexed(Asset):
    symbol: str = column(unique=True)
    price: float = column(index=True)


@table("assets")
class AssetTicksCompressed(Asset):
    ticks: list[int] = column(factory=list, compress=True)


@table("widths")
class Narrow(Orso):
    id: int = column(primary_key=True)
    small: int = column(sql_type="integer")
    code: str = column(sql_type="varchar(10)")
    label: str = column(sql_type="varchar(10)")
    amount: Decimal = column(sql_type="numeric(10,2)")
    seen: dt.datetime = column(sql_type="timestamp")


@table("widths")
class WiderInPlace(Orso):
    id: int = column(primary_key=True)
    small: int = column(sql_type="integer")
    code: str = column(sql_type="varchar(20)")
    label: str
    amount: Decimal = column(sql_type="numeric(12,2)")
    seen: dt.datetime = column(sql_type="timestamp")
    flag: bool = column(default=False, server_default=True)


@table("widths")
class Widest(Orso):
    id: int = column(primary_key=True)
    small: int
    code: str = column(sql_type="varchar(20)")
    label: str
    amount: Decimal = column(sql_type="numeric(12,2)")
    seen: dt.datetime
    flag: bool = column(default=False, server_default=True)


# --- helpers ----------------------------------------------------------------------------------


def relfilenode(raw: psycopg.Connection[Any], table_name: str = "assets") -> int:
    row = raw.execute("SELECT relfilenode FROM pg_class WHERE oid = %s::regclass", (table_name,))
    found = row.fetchone()
    assert found is not None
    return int(found[0])


def migrate_and_check(
    db: Database, raw: psycopg.Connection[Any], model: type, **options: Any
) -> Any:
    """Plan, migrate, and check the plan was what ran and what must survive survived."""
    before = survivors(raw)
    planned = Migrations.plan(db, [migration(model)], **options)[0]
    node = relfilenode(raw)
    (result,) = Migrations.init(db, [migration(model)], **options)
    assert result.steps == planned.steps
    assert result.action is MigrationAction.DATA_MIGRATED
    assert result.rows_migrated == ROWS
    assert (relfilenode(raw) != node) == planned.rewrites
    assert survivors(raw) == before
    again = Migrations.init(db, [migration(model)], **options)[0]
    assert again.action is MigrationAction.SCHEMA_MATCHED
    assert again.steps == ()
    return result


# --- cases ------------------------------------------------------------------------------------


def test_add_columns_fill_existing_rows_with_the_model_defaults(db, raw):
    """New columns get the model default in every existing row, without a rewrite."""
    populate(db, raw)
    kept = digest(raw, "assets", ["id", "symbol", "price", "qty", "note", "prices", "ticks"])
    result = migrate_and_check(db, raw, AssetAdded)
    assert not any(step.rewrites for step in result.steps)
    assert (
        digest(raw, "assets", ["id", "symbol", "price", "qty", "note", "prices", "ticks"]) == kept
    )
    counts = raw.execute(
        "SELECT count(*) FILTER (WHERE venue = 'XNAS'), count(*) FILTER (WHERE memo IS NULL),"
        " count(*) FILTER (WHERE lot = 100) FROM assets"
    ).fetchone()
    assert counts == (ROWS, ROWS, ROWS)
    cols = columns_of(raw)
    assert cols["venue"] == ("text", True, None)
    assert cols["lot"] == ("bigint", True, "100")
    created = AssetAdded(symbol="NEW", price=1.0, qty=1).insert(db)
    assert created.venue == "XNAS"


def test_not_null_column_without_default_is_refused_before_anything_runs(db, raw):
    """A NOT NULL column the model gives no default for is refused; nothing changes."""
    populate(db, raw)
    before = (columns_of(raw), history(raw))
    with pytest.raises(MigrationError, match=r"cannot add NOT NULL column venue") as info:
        Migrations.init(db, [migration(AssetNoDefault)])
    assert info.value.column == "venue"
    with pytest.raises(MigrationError, match="venue"):
        Migrations.plan(db, [migration(AssetNoDefault)])
    assert (columns_of(raw), history(raw)) == before


def test_removed_column_is_kept_and_reported(db, raw):
    """A column that left the model keeps its data and is reported, not dropped."""
    populate(db, raw)
    kept = digest(raw, "assets", ["id", "note"])
    (result,) = Migrations.init(db, [migration(AssetWithoutNote)])
    assert result.action is MigrationAction.SCHEMA_MATCHED
    assert any("kept column note" in change for change in result.schema_changes)
    assert digest(raw, "assets", ["id", "note"]) == kept
    assert AssetWithoutNote.count(db) == ROWS


def test_dropping_a_removed_column_backs_its_data_up_first(db, raw):
    """With drop_columns=True the column's values go to a named backup table, then it is dropped."""
    populate(db, raw)
    kept = digest(raw, "assets", ["id", "note"])
    result = migrate_and_check(db, raw, AssetWithoutNote, drop_columns=True)
    assert result.backup_table == "assets_backup_1"
    assert "note" not in columns_of(raw)
    assert digest(raw, "assets_backup_1", ["id", "note"]) == kept


def test_rename_keeps_every_value(db, raw):
    """renamed_from= renames the column in place; no value is lost."""
    populate(db, raw)
    kept = digest(raw, "assets", ["id", "symbol"])
    result = migrate_and_check(db, raw, AssetRenamed)
    assert [s.description for s in result.steps] == ["rename column symbol to ticker"]
    assert "RENAME COLUMN" in result.steps[0].sql
    assert digest(raw, "assets", ["id", "ticker"]) == kept
    assert "symbol" not in columns_of(raw)


def test_widening_types_keeps_every_value(db, raw):
    """text to varchar(40) and bigint to numeric keep every value (compared as text)."""
    populate(db, raw)
    kept = digest(raw, "assets", ["id", "symbol", "qty"])
    result = migrate_and_check(db, raw, AssetWidened)
    assert {s.description.split(" from ")[0] for s in result.steps} == {
        "change type of column symbol",
        "change type of column qty",
    }
    assert digest(raw, "assets", ["id", "symbol", "qty"]) == kept
    cols = columns_of(raw)
    assert cols["symbol"][0] == "character varying(40)"
    assert cols["qty"][0] == "numeric"


def test_narrowing_a_type_fails_naming_a_value_that_does_not_fit(db, raw):
    """varchar(4) would cut 'S10000'; the error names the column and the value, nothing changes."""
    populate(db, raw)
    before = (columns_of(raw), digest(raw, "assets", ["id", "symbol", "qty"]), history(raw))
    with pytest.raises(MigrationError, match=r"column symbol .* 'S\d{4,}'") as info:
        Migrations.init(db, [migration(AssetNarrowed)])
    assert info.value.column == "symbol"
    assert str(info.value.value).startswith("S")
    after = (columns_of(raw), digest(raw, "assets", ["id", "symbol", "qty"]), history(raw))
    assert after == before


def test_narrowing_fails_on_an_out_of_range_value_and_passes_once_it_fits(db, raw):
    """bigint to integer fails naming 3000000000, and succeeds once that row is fixed."""
    populate(db, raw)
    raw.execute("UPDATE assets SET qty = 3000000000 WHERE id = 77")
    raw.execute("UPDATE assets SET symbol = left(symbol, 4)")
    with pytest.raises(MigrationError, match="3000000000") as info:
        Migrations.init(db, [migration(AssetNarrowed)])
    assert info.value.column == "qty"
    raw.execute("UPDATE assets SET qty = 77 WHERE id = 77")
    kept = digest(raw, "assets", ["id", "symbol", "qty"])
    migrate_and_check(db, raw, AssetNarrowed)
    assert digest(raw, "assets", ["id", "symbol", "qty"]) == kept
    assert columns_of(raw)["qty"][0] == "integer"


def test_set_not_null_is_refused_with_the_count_of_null_rows(db, raw):
    """note has 10,000 NULLs: SET NOT NULL is refused with that count before anything runs."""
    populate(db, raw)
    before = columns_of(raw)
    with pytest.raises(MigrationError, match=r"NOT NULL: 10000 rows hold NULL"):
        Migrations.init(db, [migration(AssetNoteRequired)])
    assert columns_of(raw) == before


def test_not_null_changes_apply_once_the_data_allows_them(db, raw):
    """symbol becomes nullable and note NOT NULL once its NULLs are filled."""
    populate(db, raw)
    raw.execute("UPDATE assets SET note = '' WHERE note IS NULL")
    kept = digest(raw, "assets", ["id", "symbol", "note"])
    result = migrate_and_check(db, raw, AssetNoteRequired)
    assert {s.description for s in result.steps} == {
        "drop NOT NULL on column symbol",
        "set NOT NULL on column note",
    }
    cols = columns_of(raw)
    assert cols["symbol"][1] is False
    assert cols["note"][1] is True
    assert digest(raw, "assets", ["id", "symbol", "note"]) == kept


def test_unique_and_index_changes_are_added_then_dropped(db, raw):
    """Adding unique=True and indexes creates them; going back drops exactly those."""
    populate(db, raw)
    custom = survivors(raw)["custom_index"]
    result = migrate_and_check(db, raw, AssetIndexed)
    assert sorted(s.description for s in result.steps) == [
        "add unique constraint (symbol)",
        "create btree index assets_price_idx on (price)",
        "create btree index assets_price_qty_idx on (price, qty)",
    ]
    back = migrate_and_check(db, raw, Asset)
    assert sorted(s.description.split(" (")[0] for s in back.steps) == [
        "drop index assets_price_idx",
        "drop index assets_price_qty_idx",
        "drop unique constraint assets_symbol_key",
    ]
    assert survivors(raw)["custom_index"] == custom


def test_duplicate_values_make_a_unique_key_fail_and_change_nothing(db, raw):
    """A duplicate symbol makes ADD UNIQUE fail at the last step: everything is rolled back."""
    populate(db, raw)
    raw.execute("UPDATE assets SET symbol = 'S1' WHERE id = 2")
    before = (columns_of(raw), survivors(raw), history(raw))
    node = relfilenode(raw)
    with pytest.raises(MigrationError, match="unique") as info:
        Migrations.init(db, [migration(AssetIndexed)])
    assert "S1" in str(info.value)
    assert (columns_of(raw), survivors(raw), history(raw)) == before
    assert relfilenode(raw) == node
    indexes = raw.execute(
        "SELECT count(*) FROM pg_indexes WHERE schemaname = current_schema()"
        " AND tablename = 'assets'"
    ).fetchone()
    assert indexes == (2,)


def _arrays(raw: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return raw.execute("SELECT id, prices, ticks FROM assets ORDER BY id").fetchall()


@pytest.mark.slow
def test_compress_on_and_off_converts_every_row(db, raw):
    """Turning compress on stores real codec frames; turning it off gives the same arrays back."""
    populate(db, raw)
    raw.execute("UPDATE assets SET prices = '{}' WHERE id = 5")
    original = _arrays(raw)
    assert len(survivors(raw)["column_comments_and_grants"]) == 2  # price and prices
    migrate_and_check(db, raw, AssetCompressed)
    assert columns_of(raw)["prices"][0] == "bytea"
    magic = raw.execute("SELECT count(*) FROM assets WHERE substr(prices, 1, 4) = 'OPGA'")
    assert magic.fetchone() == (ROWS,)
    loaded = {a.id: a for a in AssetCompressed.find_by_ids([1, 5, 99_999], db)}
    assert loaded[1].prices == [0.5, 0.625, -1.0]
    assert loaded[5].prices == []
    assert loaded[99_999].prices == [49_999.5, 49_999.625, -99_999.0]
    result = migrate_and_check(db, raw, Asset)
    assert all(s.description.startswith("decompress") for s in result.steps if s.rewrites)
    assert _arrays(raw) == original


def test_a_null_array_element_cannot_be_compressed_and_nothing_changes(db, raw):
    """An array holding NULL is refused, naming the column; the table keeps its arrays."""
    populate(db, raw)
    raw.execute("UPDATE assets SET ticks = ARRAY[1, NULL]::bigint[] WHERE id = 9")
    # Put the updated row back near the start of the heap, so the conversion meets it early.
    raw.execute("CLUSTER assets USING assets_pkey")
    original = _arrays(raw)
    with pytest.raises(MigrationError, match="NULL element") as info:
        Migrations.init(db, [migration(AssetTicksCompressed)])
    assert info.value.column == "ticks"
    assert _arrays(raw) == original


def test_a_custom_table_name_is_migrated_like_the_model_table(db, raw):
    """migration(Model, "assets_2024") migrates that table and leaves the model's own alone."""
    populate(db, raw, "assets_2024")
    kept = digest(raw, "assets_2024", ["id", "symbol"])
    planned = Migrations.plan(db, [migration(AssetRenamed, "assets_2024")])[0]
    (result,) = Migrations.init(db, [migration(AssetRenamed, "assets_2024")])
    assert result.table == "assets_2024"
    assert result.steps == planned.steps
    assert result.rows_migrated == ROWS
    assert digest(raw, "assets_2024", ["id", "ticker"]) == kept
    assert raw.execute("SELECT to_regclass('assets')").fetchone() == (None,)
    assert survivors(raw, "assets_2024")["comment"] == ("market assets",)


def test_history_records_each_applied_migration_with_steps_and_checksum(db, raw):
    """One history row per applied migration, holding its steps and the model's checksum."""
    populate(db, raw)
    rows_before = len(history(raw))
    result = migrate_and_check(db, raw, AssetRenamed)
    rows = raw.execute(
        sql.SQL(
            "SELECT action, checksum, steps FROM {} WHERE table_name = 'assets' ORDER BY id"
        ).format(sql.Identifier(HISTORY_TABLE))
    ).fetchall()
    assert len(history(raw)) == rows_before + 1
    action, checksum, steps = rows[-1]
    assert action == "data_migrated"
    assert len(checksum) == 64
    assert [s["sql"] for s in steps] == [s.sql for s in result.steps]
    assert rows[0][1] != checksum


@table("baseline", indexes=[("price",)])
class Baseline(Orso):
    id: int | None = column(primary_key=True, default=None)
    price: float


@table("baseline")
class BaselineUnindexed(Orso):
    id: int | None = column(primary_key=True, default=None)
    price: float


def test_a_matching_table_made_without_migrations_gets_one_record_then_none(db, raw):
    """A table that already matches gets one record without steps, so its index is known later."""
    meta = table_of(Baseline)
    for stmt in [ddl.create_table(meta), *ddl.create_indexes(meta)]:
        raw.execute(stmt.query)
    (result,) = Migrations.init(db, [migration(Baseline)])
    assert (result.action, result.steps) == (MigrationAction.SCHEMA_MATCHED, ())
    assert history(raw) == [("baseline", "schema_matched")]
    Migrations.init(db, [migration(Baseline)])
    assert len(history(raw)) == 1
    # The record says the model made the index: when it leaves the model, it is dropped.
    (result,) = Migrations.init(db, [migration(BaselineUnindexed)])
    assert [s.description for s in result.steps] == ["drop index baseline_price_idx (price)"]


def test_widening_matrix_rewrites_only_where_it_says_and_keeps_every_value(db, raw):
    """varchar and numeric widen in place; int4 to int8 and timestamp to timestamptz rewrite."""
    Migrations.init(db, [migration(Narrow)])
    raw.execute(
        "INSERT INTO widths SELECT g, g, 'c' || g, 'l' || g, g / 100.0,"
        " timestamp '2020-01-01' + g * interval '1 minute' FROM generate_series(1, %s) g",
        (ROWS,),
    )
    raw.execute(
        "CREATE TABLE width_refs (id BIGINT PRIMARY KEY, width_id BIGINT REFERENCES widths)"
    )
    raw.execute("INSERT INTO width_refs SELECT g, g FROM generate_series(1, %s) g", (CHILDREN,))
    kept = digest(raw, "widths", ["id", "small", "code", "label", "amount"])
    children = digest(raw, "width_refs", ["id", "width_id"])

    for model, rewrite in ((WiderInPlace, False), (Widest, True)):
        planned = Migrations.plan(db, [migration(model)])[0]
        node = relfilenode(raw, "widths")
        (result,) = Migrations.init(db, [migration(model)])
        assert result.steps == planned.steps
        assert (relfilenode(raw, "widths") != node) is rewrite
        assert planned.rewrites is rewrite
        assert digest(raw, "widths", ["id", "small", "code", "label", "amount"]) == kept
        assert digest(raw, "width_refs", ["id", "width_id"]) == children

    assert [(s.description.split(" from ")[0], s.rewrites) for s in result.steps] == [
        ("change type of column small", True),
        ("change type of column seen", True),
    ]
    cols = columns_of(raw, "widths")
    assert cols["small"][0] == "bigint"
    assert cols["seen"][0] == "timestamp with time zone"
    assert cols["flag"] == ("boolean", True, "true")
    moved = raw.execute(
        "SELECT count(*) FROM widths"
        " WHERE seen <> (timestamp '2020-01-01' + id * interval '1 minute') AT TIME ZONE 'UTC'"
    ).fetchone()
    assert moved == (0,)


def test_a_foreign_key_moved_to_a_same_named_table_in_another_schema_is_replaced(db, raw, server):
    """A reference to another schema's table is not satisfied by the local namesake."""
    with isolated_schema(server) as other:

        @table("fk_owners", schema=other)
        class Owner(Orso):
            id: int | None = column(primary_key=True, default=None)

        @table("fk_pets")
        class LocalPet(Orso):
            id: int | None = column(primary_key=True, default=None)
            owner_id: int = column(ref="fk_owners")

        @table("fk_pets")
        class Pet(Orso):
            id: int | None = column(primary_key=True, default=None)
            owner_id: int = column(ref=Owner)

        for where in (sql.Identifier(other, "fk_owners"), sql.Identifier("fk_owners")):
            raw.execute(sql.SQL("CREATE TABLE {} (id bigint PRIMARY KEY)").format(where))
            raw.execute(sql.SQL("INSERT INTO {} VALUES (1)").format(where))
        Migrations.init(db, [migration(LocalPet)])
        LocalPet(owner_id=1).insert(db)
        target = (
            "SELECT confrelid::regclass::text FROM pg_constraint"
            " WHERE contype = 'f' AND conrelid = 'fk_pets'::regclass"
        )
        assert raw.execute(target).fetchall() == [("fk_owners",)]

        (plan,) = Migrations.plan(db, [migration(Pet)])
        assert [s.description.split(" (")[0] for s in plan.steps] == [
            "drop foreign key fk_pets_owner_id_fkey",
            f"add foreign key owner_id -> {other}.fk_owners.id",
        ]
        (result,) = Migrations.init(db, [migration(Pet)])
        assert result.steps == plan.steps
        assert raw.execute(target).fetchall() == [(f"{other}.fk_owners",)]
        assert Migrations.plan(db, [migration(Pet)])[0].steps == ()
        assert Pet.count(db) == 1
