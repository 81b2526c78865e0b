"""Enum columns: held to their members by a CHECK constraint, migrated as members change, and
read back as an error naming the row when another program stored something else."""

from __future__ import annotations

import enum
from typing import Any

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg import errors as pg_errors

from orso_pg import (
    Aggregate,
    Database,
    DataError,
    Filter,
    MigrationAction,
    MigrationError,
    Migrations,
    Orso,
    Pagination,
    QueryBuilder,
    column,
    migration,
    table,
    table_of,
)
from orso_pg.migrate import _ddl as ddl
from tests.helpers import create_tables


class SideV1(enum.Enum):
    BUY = "buy"
    SELL = "sell"


class SideV2(enum.Enum):
    BUY = "buy"
    SELL = "sell"
    HOLD = "hold"


@table("enum_orders")
class OrderV1(Orso):
    id: int | None = column(primary_key=True, default=None)
    side: SideV1
    qty: int = 0


@table("enum_orders")
class OrderV2(Orso):
    id: int | None = column(primary_key=True, default=None)
    side: SideV2
    qty: int = 0


@table("enum_orders")
class OrderText(Orso):
    id: int | None = column(primary_key=True, default=None)
    side: str
    qty: int = 0


@table("enum_orders")
class OrderNoSide(Orso):
    id: int | None = column(primary_key=True, default=None)
    qty: int = 0


@table("enum_orders")
class OrderSideDefault(Orso):
    id: int | None = column(primary_key=True, default=None)
    qty: int = 0
    side: SideV1 = SideV1.SELL


def _migrate(db: Database, model: type) -> Any:
    (result,) = Migrations.init(db, [migration(model)])
    again = Migrations.init(db, [migration(model)])[0]
    assert again.action is MigrationAction.SCHEMA_MATCHED
    assert again.steps == ()
    return result


def _insert_raw(raw: psycopg.Connection[Any], side: str) -> None:
    raw.execute("INSERT INTO enum_orders (side, qty) VALUES (%s, 0)", (side,))


def test_the_table_refuses_values_outside_the_enum(db: Database, raw: psycopg.Connection[Any]):
    """A value another program writes must be a member: the CHECK constraint refuses others."""
    result = _migrate(db, OrderV1)
    assert result.action is MigrationAction.TABLE_CREATED
    _insert_raw(raw, "buy")
    with pytest.raises(pg_errors.CheckViolation, match="side_enum_check"):
        _insert_raw(raw, "hold")
    assert [o.side for o in OrderV1.find_all(db)] == [SideV1.BUY]


def test_members_migrate_both_ways(db: Database, raw: psycopg.Connection[Any]):
    """Adding a member widens the check; removing it narrows the check once no row holds it."""
    _migrate(db, OrderV1)
    OrderV1(side=SideV1.SELL).insert(db)
    widened = _migrate(db, OrderV2)
    assert widened.action is MigrationAction.DATA_MIGRATED
    assert [s.description for s in widened.steps] == [
        "drop enum check side_enum_check on column side",
        "add enum check on column side (buy, hold, sell)",
    ]
    held = OrderV2(side=SideV2.HOLD).insert(db)
    with pytest.raises(MigrationError, match="rows hold 'hold'") as info:
        Migrations.init(db, [migration(OrderV1)])
    assert info.value.column == "side"
    assert info.value.value == "hold"
    _insert_raw(raw, "hold")  # the failed migration changed nothing: hold is still allowed
    OrderV2.delete_where(Filter.eq("side", SideV2.HOLD), db)
    assert held.id is not None
    narrowed = _migrate(db, OrderV1)
    assert narrowed.action is MigrationAction.DATA_MIGRATED
    with pytest.raises(pg_errors.CheckViolation):
        _insert_raw(raw, "hold")
    assert [o.side for o in OrderV1.find_all(db)] == [SideV1.SELL]


def test_an_enum_becoming_text_and_back(db: Database, raw: psycopg.Connection[Any]):
    """A plain str column has no check; turning it into an enum adds one, and back drops it."""
    _migrate(db, OrderText)
    OrderText(side="buy").insert(db)
    to_enum = _migrate(db, OrderV1)
    assert [s.description for s in to_enum.steps] == ["add enum check on column side (buy, sell)"]
    to_text = _migrate(db, OrderText)
    assert [s.description for s in to_text.steps] == [
        "drop enum check side_enum_check on column side"
    ]
    _insert_raw(raw, "anything")


def test_a_check_added_by_hand_is_kept(db: Database, raw: psycopg.Connection[Any]):
    """Only the check orso_pg names is managed: one a user added stays through migrations."""
    _migrate(db, OrderV1)
    raw.execute("ALTER TABLE enum_orders ADD CONSTRAINT side_short CHECK (side <> 'sell')")
    assert _migrate(db, OrderV2).action is MigrationAction.DATA_MIGRATED
    with pytest.raises(pg_errors.CheckViolation, match="side_short"):
        _insert_raw(raw, "sell")


def test_an_unknown_value_on_read_names_the_row(db: Database, raw: psycopg.Connection[Any]):
    """A value the enum lacks, written by another program, is a DataError with the row key."""
    create_tables(db, OrderText)
    OrderText(side="buy", qty=1).insert(db)
    strange = OrderText(side="short", qty=2).insert(db)
    for read in (
        lambda: OrderV1.find_all(db),
        lambda: OrderV1.find_by_id(strange.id, db),
        lambda: OrderV1.find_paginated(Pagination(1, 10), db),
        lambda: list(OrderV1.stream_where(None, db)),
    ):
        with pytest.raises(DataError) as info:
            read()
        err = info.value
        assert (err.table, err.column, err.value) == ("enum_orders", "side", "short")
        assert f"id = {strange.id}" in str(err)
        assert "SideV1" in str(err)
        assert not isinstance(err.__cause__, KeyError)
    with pytest.raises(DataError, match=r"'short'.*SideV1"):
        QueryBuilder.new(OrderV1).select("side").fetch(db)
    with pytest.raises(DataError, match=r"'short'.*SideV1"):
        OrderV1.aggregate(Aggregate.MAX, "side", None, db)
    assert [o.side for o in OrderV1.find_where(Filter.eq("qty", 1), db)] == [SideV1.BUY]


@settings(max_examples=20, deadline=None)
@given(members=st.sets(st.sampled_from(["a", "b", "c", "d", "e'f", "g h"]), min_size=1))
def test_the_check_allows_exactly_the_members(
    db: Database, raw: psycopg.Connection[Any], members: set[str]
):
    """Whatever the members (quotes and spaces included), the check allows those and no other."""
    side = enum.Enum("Side", {f"M{i}": v for i, v in enumerate(sorted(members))})  # type: ignore[misc]

    class Row(Orso):
        id: int | None = column(primary_key=True, default=None)
        side: Any

    Row.__annotations__["side"] = side  # a class made in a test: no name to resolve
    model = table("enum_any")(Row)
    # The table's own DDL, run directly: twenty migrations would contend for the migration
    # lock with other runs sharing the server.
    raw.execute("DROP TABLE IF EXISTS enum_any")
    raw.execute(ddl.create_table(table_of(model)).as_string().encode())
    for value in ["a", "b", "c", "d", "e'f", "g h", "z"]:
        try:
            with raw.transaction():
                raw.execute("INSERT INTO enum_any (side) VALUES (%s)", (value,))
            allowed = True
        except pg_errors.CheckViolation:
            allowed = False
        assert allowed == (value in members)
    raw.execute("DELETE FROM enum_any")


def test_an_enum_column_added_to_a_table_with_rows(db: Database, raw: psycopg.Connection[Any]):
    """A new enum column is filled with the model's default and gets its check once."""
    _migrate(db, OrderNoSide)
    OrderNoSide(qty=3).insert(db)
    added = _migrate(db, OrderSideDefault)
    assert [s.description for s in added.steps] == [
        (
            "add column side text NOT NULL, existing rows set to the model default "
            "<SideV1.SELL: 'sell'>"
        ),
        "add enum check on column side (buy, sell)",
    ]
    assert [(o.qty, o.side) for o in OrderSideDefault.find_all(db)] == [(3, SideV1.SELL)]
    with pytest.raises(pg_errors.CheckViolation):
        _insert_raw(raw, "hold")
