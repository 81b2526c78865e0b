"""Composite primary keys and foreign keys: declarations, compiled SQL, key checks (no database)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import pytest

from orso_pg import DefinitionError, ForeignKey, Orso, QueryError, Sort, column, table, table_of
from orso_pg import _compiler as compiler
from orso_pg import _operations as ops
from orso_pg.batch import _sql as batch_sql
from orso_pg.errors import ValidationError
from orso_pg.migrate import _ddl as ddl
from orso_pg.query._filters import with_tiebreak
from orso_pg.testing import strategies
from tests.composite_models import Daily, Fill, Instrument, Listing, Tick
from tests.helpers import assert_sql

TS = datetime(2024, 3, 1, 9, 30, tzinfo=UTC)


def test_both_spellings_give_the_key_in_declaration_order():
    """@table(primary_key=...) keeps the order given; column(primary_key=True) the field order."""
    assert table_of(Tick).key_names == ("symbol", "ts")
    assert table_of(Daily).key_names == ("venue", "symbol", "day")
    assert Tick.primary_key_fields() == ("symbol", "ts")
    assert table_of(Tick).primary_key is None
    assert table_of(Tick).composite

    @table("cp_reversed", primary_key=("ts", "symbol"))
    class Reversed(Orso):
        symbol: str
        ts: datetime

    assert table_of(Reversed).key_names == ("ts", "symbol")
    assert all(c.not_null for c in table_of(Reversed).key)


def test_single_keys_are_unchanged():
    """A one-column key is still the column, and its field name is still returned."""
    assert table_of(Fill).key_names == ("id",)
    assert table_of(Fill).primary_key is table_of(Fill).key[0]
    assert Fill.primary_key_field() == "id"
    assert not table_of(Fill).composite


def test_primary_key_field_refuses_a_composite_key():
    """There is no one field to name: the error points to primary_key_fields()."""
    with pytest.raises(
        QueryError, match=r"composite primary key \(symbol, ts\).*primary_key_fields"
    ):
        Tick.primary_key_field()


def test_get_primary_key_is_a_tuple_in_key_order():
    """get_primary_key() returns what find_by_id takes."""
    tick = Tick(symbol="BTC", ts=TS, price=1.0)
    assert tick.get_primary_key() == ("BTC", TS)
    bar = Daily(venue="X", symbol="BTC", day=date(2024, 1, 2), close=1.0)
    assert bar.get_primary_key() == ("X", "BTC", date(2024, 1, 2))


@pytest.mark.parametrize(
    ("kwargs", "fields", "message"),
    [
        (
            {"primary_key": ("symbol", "nope")},
            {},
            r"primary_key \('symbol', 'nope'\) names unknown field 'nope'",
        ),
        ({"primary_key": ("symbol", "symbol")}, {}, r"names a field twice"),
        ({"primary_key": ()}, {}, r"primary_key= names no field"),
        (
            {"primary_key": ("symbol", "ts")},
            {"price": True},
            r"disagrees with @table\(primary_key=",
        ),
        (
            {"foreign_keys": [ForeignKey(("symbol",), Instrument)]},
            {},
            r"has 1 columns but references 2",
        ),
        (
            {"foreign_keys": [ForeignKey(("symbol", "nope"), Instrument)]},
            {},
            r"names unknown field 'nope'",
        ),
        ({"foreign_keys": [ForeignKey(("symbol", "ts"), "elsewhere")]}, {}, r"give ref_columns="),
        ({"foreign_keys": [ForeignKey((), Instrument)]}, {}, r"names no column"),
        ({"foreign_keys": [("symbol", "ts")]}, {}, r"takes ForeignKey values"),
        ({"foreign_keys": [ForeignKey(("symbol", "ts"), 3)]}, {}, r"a model or a table name"),  # type: ignore[arg-type]
        (
            {"foreign_keys": [ForeignKey(("symbol", "ts"), Instrument, on_delete="EXPLODE")]},  # type: ignore[arg-type]
            {},
            r"on_delete must be one of",
        ),
    ],
)
def test_bad_composite_declarations_name_the_class(
    kwargs: dict[str, Any], fields: dict[str, bool], message: str
):
    """Every mistake in a composite key or foreign key fails at decoration, with what is wrong."""
    with pytest.raises(DefinitionError, match=message):

        @table("cp_bad", **kwargs)
        class Bad(Orso):
            symbol: str
            ts: datetime
            price: float = column(primary_key=fields.get("price", False), default=0.0)


def test_a_compressed_column_cannot_be_in_a_composite_key():
    with pytest.raises(DefinitionError, match="compressed column cannot be in the primary key"):

        @table("cp_bad_compress", primary_key=("symbol", "prices"))
        class Bad(Orso):
            symbol: str
            prices: np.ndarray = column(compress=True)


def test_ref_to_a_composite_key_points_to_foreign_keys():
    """column(ref=) takes one column; a composite parent needs @table(foreign_keys=...)."""
    with pytest.raises(
        DefinitionError, match=r"composite primary key \(venue, symbol\).*foreign_keys"
    ):

        @table("cp_bad_ref")
        class Bad(Orso):
            id: int | None = column(primary_key=True, default=None)
            venue: str = column(ref=Instrument)


def test_foreign_key_by_table_name_with_ref_columns():
    """A table name and explicit ref_columns work for a parent that is not a model."""

    @table(
        "cp_ext",
        foreign_keys=[ForeignKey("code", "venues", ref_columns="code", on_delete="CASCADE")],
    )
    class Ext(Orso):
        id: int | None = column(primary_key=True, default=None)
        code: str

    (fk,) = table_of(Ext).foreign_keys
    assert (fk.columns, fk.ref_table, fk.ref_columns, fk.on_delete) == (
        ("code",),
        "venues",
        ("code",),
        "CASCADE",
    )


def test_create_table_declares_the_key_and_foreign_keys_as_constraints():
    assert (
        ddl.create_table(table_of(Listing)).as_string()
        == 'CREATE TABLE "cp_listings" ("venue" TEXT NOT NULL, "symbol" TEXT NOT NULL, '
        '"day" DATE NOT NULL, "status" TEXT NOT NULL, PRIMARY KEY ("venue", "symbol", "day"), '
        'FOREIGN KEY ("venue", "symbol") REFERENCES "cp_instruments" ("venue", "symbol"))'
    )


def test_single_row_statements_match_every_key_column():
    meta = table_of(Tick)
    key = ops.dump_key(meta, None, ("BTC", TS))
    assert_sql(
        compiler.select_by_key(meta, None, key),
        'SELECT "symbol", "ts", "price", "qty", "created_at", "updated_at" FROM "cp_ticks" '
        'WHERE "symbol" = %s AND "ts" = %s',
        ("BTC", TS),
    )
    assert_sql(
        compiler.delete_by_key(meta, None, key),
        'DELETE FROM "cp_ticks" WHERE "symbol" = %s AND "ts" = %s',
        ("BTC", TS),
    )
    assert_sql(
        compiler.update_by_key(meta, None, ("price",), (2.0,), key),
        'UPDATE "cp_ticks" SET "price" = %s, "updated_at" = now() '
        'WHERE "symbol" = %s AND "ts" = %s RETURNING "symbol", "ts", "price", "qty", '
        '"created_at", "updated_at"',
        (2.0, "BTC", TS),
    )
    assert compiler.select_all(meta, None).as_string().endswith('ORDER BY "symbol", "ts"')


def test_many_keys_go_as_one_array_per_column():
    """Any number of keys is two parameters and one statement text."""
    meta = table_of(Tick)
    keys = ops.dump_keys(meta, None, [("BTC", TS), ["ETH", TS]])
    assert keys == [("BTC", TS), ("ETH", TS)]
    assert_sql(
        batch_sql.delete_any(meta, None, keys),
        'DELETE FROM "cp_ticks" WHERE ("symbol", "ts") IN '
        "(SELECT * FROM unnest(%b::TEXT[], %b::TIMESTAMPTZ[]))",
        (["BTC", "ETH"], [TS, TS]),
    )
    assert compiler.select_by_keys(meta, None, []).params == ([], [])


def test_staged_update_joins_on_every_key_column():
    meta = table_of(Tick)
    stmt = batch_sql.update_from_stage(meta, None, ("symbol", "ts", "price"))
    assert stmt.as_string() == (
        'UPDATE "cp_ticks" AS t SET "price" = s."price", "updated_at" = now() '
        'FROM "orso_pg_stage" AS s WHERE t."symbol" = s."symbol" AND t."ts" = s."ts"'
    )


def test_upserts_conflict_on_the_composite_key_by_default():
    """A composite key with no unique key declared is what upsert matches on."""
    assert table_of(Tick).upsert_key == ("symbol", "ts")
    assert ops.upsert_key(table_of(Daily)) == ("venue", "symbol", "day")
    text = compiler.upsert(
        table_of(Tick), None, ("symbol", "ts", "price"), ("BTC", TS, 1.0), ("symbol", "ts")
    ).as_string()
    assert 'ON CONFLICT ("symbol", "ts") DO UPDATE SET "price" = EXCLUDED."price"' in text
    assert '"symbol" = EXCLUDED' not in text


def test_the_key_ends_every_sort():
    """Each key column a sort does not name is appended, in key order."""
    meta = table_of(Daily)
    assert with_tiebreak(meta, [Sort.desc("close")]) == (
        Sort.desc("close"),
        Sort("venue"),
        Sort("symbol"),
        Sort("day"),
    )
    assert with_tiebreak(meta, [Sort.desc("symbol")]) == (
        Sort.desc("symbol"),
        Sort("venue"),
        Sort("day"),
    )


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("BTC", r"cp_ticks: the primary key is \(symbol, ts\), a tuple of 2 values; got 'BTC'"),
        (("BTC",), r"a tuple of 2 values; got \('BTC',\)"),
        (("BTC", TS, 1), r"a tuple of 2 values"),
        (("BTC", "yesterday"), r"cp_ticks\.ts = 'yesterday' in the primary key \(symbol, ts\)"),
        ((None, TS), r"cp_ticks\.symbol: None in the primary key"),
        ({"symbol": "BTC"}, r"a tuple of 2 values"),
    ],
)
def test_bad_keys_name_the_table_and_the_value(key: object, message: str):
    with pytest.raises(ValidationError, match=message) as info:
        ops.dump_key(table_of(Tick), None, key)
    assert info.value.table == "cp_ticks"
    assert info.value.value == key


def test_a_bad_key_among_many_names_its_position():
    with pytest.raises(ValidationError, match="a tuple of 2 values") as info:
        ops.dump_keys(table_of(Tick), None, [("BTC", TS), ("ETH",)])
    assert info.value.position == 1


def test_single_column_operations_refuse_a_composite_key():
    """Code that needs one key column says so instead of using the first one."""
    with pytest.raises(
        QueryError, match=r"composite primary key \(symbol, ts\); this operation needs a single"
    ):
        compiler.require_key(table_of(Tick))


def test_the_testing_kit_keeps_composite_keys_unique():
    assert strategies.unique_keys(table_of(Tick))[0] == ("symbol", "ts")


def test_a_single_name_as_the_table_key_is_a_single_column_key():
    @table("cp_single", primary_key="code")
    class Single(Orso):
        code: str
        name: str = ""

    meta = table_of(Single)
    assert meta.key_names == ("code",)
    assert meta.primary_key is meta.key[0]
    assert not meta.composite


def test_a_model_without_a_key_has_an_empty_one():
    @table("cp_keyless")
    class Keyless(Orso):
        note: str

    assert table_of(Keyless).key == ()
    assert Keyless.primary_key_fields() == ()
    assert Keyless(note="x").get_primary_key() is None


def test_keys_in_writes_a_single_key_as_batch_deletes_always_did():
    """One helper for many keys: a single-column key keeps its ``= ANY(array)`` form."""
    meta = table_of(Fill)
    assert compiler.keys_in(meta).as_string() == '"id" = ANY(%b::BIGINT[])'
    assert batch_sql.delete_any(meta, None, [1, 2]).as_string() == (
        f'DELETE FROM "cp_fills" WHERE {compiler.keys_in(meta).as_string()}'
    )
    assert compiler.keys_params(meta, [1, 2]) == ([1, 2],)


def test_keyless_models_are_refused_where_a_key_is_needed():
    @table("cp_keyless_ops")
    class Keyless(Orso):
        note: str

    with pytest.raises(QueryError, match="Keyless has no primary key; this operation needs one"):
        compiler.require_keys(table_of(Keyless))


def test_a_key_with_a_generated_part_is_no_default_conflict_key():
    """A new row's identity part is drawn by the server, so it never conflicts: no default."""

    @table("cp_partitioned", primary_key=("id", "ts"))
    class Partitioned(Orso):
        id: int | None = column(default=None)
        ts: datetime

    meta = table_of(Partitioned)
    assert meta.key[0].identity
    assert meta.upsert_key is None
    with pytest.raises(QueryError, match=r"its primary key 'id' is generated by the server"):
        ops.upsert_key(meta)


def test_find_by_ids_joins_the_asked_keys_in_their_order():
    meta = table_of(Instrument)
    assert_sql(
        compiler.select_by_keys(meta, None, [("X", "BTC")]),
        'SELECT "t"."venue", "t"."symbol", "t"."name" FROM unnest(%b::TEXT[], %b::TEXT[]) '
        'WITH ORDINALITY AS k("k0", "k1", n) JOIN "cp_instruments" AS t '
        'ON t."venue" = k."k0" AND t."symbol" = k."k1" ORDER BY k.n',
        (["X"], ["BTC"]),
    )
