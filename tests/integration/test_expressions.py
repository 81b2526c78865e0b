"""Expressions in set-based updates and upserts, against a real PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st
from psycopg import sql

from orso_pg import (
    Database,
    DataError,
    Expr,
    Filter,
    Orso,
    QueryError,
    col,
    column,
    table,
)
from tests.conftest import Server, isolated_schema
from tests.helpers import count_statements, create_tables


@table("e_positions", unique=[("account", "symbol")])
class Position(Orso):
    id: int | None = column(primary_key=True, default=None)
    account: str
    symbol: str
    qty: int
    fees: float | None = None
    seen: dt.datetime | None = None
    updated_at: dt.datetime | None = column(updated_at=True, default=None)


def _positions(db: Database, qtys: list[int]) -> list[Position]:
    return [Position(account=f"a{n}", symbol="BTC", qty=q).insert(db) for n, q in enumerate(qtys)]


def test_increment_is_one_statement(db: Database):
    """`qty = qty + 1` for chosen ids runs as one UPDATE and changes only those rows."""
    create_tables(db, Position)
    rows = _positions(db, [1, 2, 3, 4])
    chosen = [rows[0].id, rows[2].id]
    with count_statements(db) as log:
        changed = Position.update_where(Filter.in_values("id", chosen), {"qty": col("qty") + 1}, db)
    assert changed == 2
    assert len(log) == 1
    assert log.texts()[0].startswith('UPDATE "e_positions" SET "qty" = ("qty" + %s)')
    assert [p.qty for p in Position.find_all(db)] == [2, 2, 4, 4]
    stamped = Position.find_by_id(rows[0].id, db)
    untouched = Position.find_by_id(rows[1].id, db)
    assert stamped is not None
    assert untouched is not None
    assert stamped.updated_at is not None
    assert untouched.updated_at is not None
    assert stamped.updated_at > untouched.updated_at


def test_functions_values_and_raw_sql(db: Database):
    """coalesce, now(), a plain value and Expr.raw mix in one update."""
    create_tables(db, Position)
    first, second = _positions(db, [5, -3])
    Position.update_where(Filter.eq("id", first.id), {"fees": 1.5}, db)
    before = db.fetch(sql.SQL("SELECT now()"))[0][0]
    Position.update_where(
        Filter.is_not_null("id"),
        {
            "fees": Expr.coalesce(col("fees"), 0.0) + 0.25,
            "seen": Expr.now(),
            "symbol": "ETH",
            "qty": Expr.raw(sql.SQL("greatest({}, %s)").format(sql.Identifier("qty")), [0]),
        },
        db,
    )
    one, two = Position.find_by_id(first.id, db), Position.find_by_id(second.id, db)
    assert one is not None
    assert two is not None
    assert (one.fees, two.fees) == (1.75, 0.25)
    assert (one.qty, two.qty) == (5, 0)
    assert one.symbol == two.symbol == "ETH"
    assert one.seen is not None
    assert one.seen >= before


def test_dates_take_intervals(db: Database):
    """A timestamptz column moves by a timedelta, as PostgreSQL's interval arithmetic does."""
    create_tables(db, Position)
    (p,) = _positions(db, [1])
    start = dt.datetime(2024, 3, 1, 12, tzinfo=dt.UTC)
    Position.update_where(Filter.eq("id", p.id), {"seen": start}, db)
    Position.update_where(Filter.eq("id", p.id), {"seen": col("seen") + dt.timedelta(days=2)}, db)
    found = Position.find_by_id(p.id, db)
    assert found is not None
    assert found.seen == start + dt.timedelta(days=2)


def test_refused_expressions_run_nothing(db: Database):
    """Meaningless arithmetic and EXCLUDED outside an upsert fail before any statement."""
    create_tables(db, Position)
    _positions(db, [1])
    with count_statements(db) as log:
        with pytest.raises(QueryError, match=r"e_positions.symbol is text"):
            Position.update_where(None, {"symbol": col("symbol") + 1}, db)  # type: ignore[call-overload]
        with pytest.raises(QueryError, match="upsert"):
            Position.update_where(None, {"qty": Expr.excluded("qty")}, db)  # type: ignore[call-overload]
        with pytest.raises(QueryError, match="coalesce"):
            Position.update_where(None, {"qty": col("qty") + None}, db)  # type: ignore[call-overload]
    assert len(log) == 0


def test_overflow_is_translated(db: Database):
    """An expression PostgreSQL cannot compute is a DataError naming the table; nothing changes."""
    create_tables(db, Position)
    _positions(db, [2**62])
    with pytest.raises(DataError, match="out of range") as info:
        Position.update_where(None, {"qty": col("qty") * 4}, db)  # type: ignore[call-overload]
    assert info.value.table == "e_positions"
    assert [p.qty for p in Position.find_all(db)] == [2**62]


@given(
    qtys=st.lists(st.integers(-1000, 1000), min_size=1, max_size=30),
    factor=st.integers(-5, 5),
    delta=st.integers(-1000, 1000),
    threshold=st.integers(-1000, 1000),
)
def test_update_matches_python(
    server: Server, qtys: list[int], factor: int, delta: int, threshold: int
):
    """`qty = qty * factor - delta` over `qty > threshold` gives what Python computes."""
    with isolated_schema(server) as name, Database(server.dsn, schema=name, max_size=2) as db:
        create_tables(db, Position)
        _positions(db, qtys)
        expr = col("qty") * factor - delta
        changed = Position.update_where(Filter.gt("qty", threshold), {"qty": expr}, db)
        want = [q * factor - delta if q > threshold else q for q in qtys]
        assert changed == sum(q > threshold for q in qtys)
        assert [p.qty for p in Position.find_all(db)] == want


def test_upsert_accumulates_with_excluded(db: Database):
    """update_columns maps columns to expressions: stored + proposed, in one staged statement."""
    create_tables(db, Position)
    Position(account="a", symbol="BTC", qty=10, fees=1.0).insert(db)
    batch = [
        Position(account="a", symbol="BTC", qty=5, fees=9.0),
        Position(account="b", symbol="BTC", qty=7),
    ]
    update = {"qty": col("qty") + Expr.excluded("qty"), "fees": Expr.coalesce(col("fees"), 0.0)}
    result = Position.batch_upsert(batch, db, update_columns=update)
    assert (result.inserted, result.updated) == (1, 1)
    rows = {p.account: p for p in Position.find_all(db)}
    assert (rows["a"].qty, rows["a"].fees) == (15, 1.0)
    assert (rows["b"].qty, rows["b"].fees) == (7, None)
    again = Position.batch_upsert_rows(
        [("a", "BTC", 1), ("b", "BTC", 2)],
        db,
        columns=["account", "symbol", "qty"],
        update_columns={"qty": col("qty") * 2 + Expr.excluded("qty"), "symbol": "BTC"},
    )
    assert (again.inserted, again.updated) == (0, 2)
    assert sorted(p.qty for p in Position.find_all(db)) == [16, 31]


def test_upsert_expressions_with_table_and_in_a_transaction(db: Database):
    """The target of a _with_table upsert qualifies the stored row; a transaction sees it."""
    create_tables(db, Position)
    db.fetch(sql.SQL("CREATE TABLE e_positions_2024 (LIKE e_positions INCLUDING ALL)"))
    Position(account="a", symbol="BTC", qty=1).insert_with_table(db, "e_positions_2024")
    with db.transaction() as tx:
        Position.batch_upsert_with_table(
            [Position(account="a", symbol="BTC", qty=2)],
            tx,
            "e_positions_2024",
            update_columns={"qty": col("qty") + Expr.excluded("qty")},
        )
        assert [p.qty for p in Position.find_all_with_table(tx, "e_positions_2024")] == [3]


def test_upsert_expression_errors(db: Database):
    """Expressions with on_conflict='nothing', bad names and compressed targets are refused."""
    create_tables(db, Position)
    one = [Position(account="a", symbol="BTC", qty=1)]
    with pytest.raises(QueryError, match="on_conflict='nothing'"):
        Position.batch_upsert(one, db, update_columns={"qty": 1}, on_conflict="nothing")
    with pytest.raises(QueryError, match="nope"):
        Position.batch_upsert(one, db, update_columns={"nope": col("qty")})
    with pytest.raises(QueryError, match=r"e_positions.symbol is text"):
        Position.batch_upsert(one, db, update_columns={"qty": col("symbol") - 1})
    assert Position.count(db) == 0


def test_batch_update_with_expressions(db: Database):
    """batch_update's columns may map to expressions: stored (col) and incoming (excluded)."""
    create_tables(db, Position)
    a, b, c = _positions(db, [10, 20, 30])
    a.qty, b.qty, c.qty = 1, 2, 3
    a.fees = 0.5
    with count_statements(db) as log:
        changed = Position.batch_update(
            [a, b],
            db,
            columns={
                "qty": col("qty") + Expr.excluded("qty"),
                "fees": Expr.coalesce(Expr.excluded("fees"), col("fees"), 9.0),
                "symbol": "ETH",
            },
        )
    assert changed == 2
    assert any("AS t SET" in text for text in log.texts())
    rows = {p.id: p for p in Position.find_all(db)}
    assert [(rows[p.id].qty, rows[p.id].fees, rows[p.id].symbol) for p in (a, b, c)] == [
        (11, 0.5, "ETH"),
        (22, 9.0, "ETH"),
        (30, None, "BTC"),
    ]
    with pytest.raises(QueryError, match="at least one column"):
        Position.batch_update([a], db, columns={})
    with pytest.raises(QueryError, match=r"e_positions\.symbol is text"):
        Position.batch_update([a], db, columns={"qty": Expr.excluded("symbol") * 2})
    with db.transaction() as tx:
        Position.batch_update_with_table([a], tx, "e_positions", columns={"qty": col("qty") - 1})
    found = Position.find_by_id(a.id, db)
    assert found is not None
    assert found.qty == 10
