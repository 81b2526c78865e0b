"""Hand-written SQL: db.fetch, db.fetch_dicts and Model.from_sql against a real PostgreSQL."""

from __future__ import annotations

import datetime as dt
import enum

import pytest
from psycopg import sql

from orso_pg import (
    Database,
    DatabaseError,
    Orso,
    QueryError,
    UniqueViolationError,
    column,
    table,
)
from tests.helpers import count_statements, create_tables


class Side(enum.Enum):
    BUY = "buy"
    SELL = "sell"


@table("s_ticks")
class Tick(Orso):
    id: int | None = column(primary_key=True, default=None)
    symbol: str = column(unique=True)
    price: float
    side: Side = Side.BUY
    series: list[int] = column(compress=True, factory=lambda: [0, 1, 2])
    at: dt.datetime | None = None
    label: str | None = column(sql_type="varchar(8)", default=None)


def _ticks(db: Database) -> list[Tick]:
    at = dt.datetime(2024, 1, 2, tzinfo=dt.UTC)
    return [
        Tick(symbol="BTC", price=1.5, side=Side.SELL, at=at).insert(db),
        Tick(symbol="ETH", price=2.5, series=[7, 8]).insert(db),
    ]


def test_from_sql_loads_instances_in_any_column_order(db: Database):
    """SELECT * and a reordered column list both load whole instances, decoded as by finders."""
    create_tables(db, Tick)
    ticks = _ticks(db)
    loaded = Tick.from_sql(sql.SQL("SELECT * FROM s_ticks ORDER BY id"), [], db)
    assert loaded == Tick.find_all(db)
    assert loaded[0].side is Side.SELL
    assert loaded[1].series == [7, 8]
    names = ["label", "at", "series", "side", "price", "symbol", "id"]
    reordered = sql.SQL("SELECT {} FROM s_ticks WHERE price > %s").format(
        sql.SQL(", ").join(map(sql.Identifier, names))
    )
    (eth,) = Tick.from_sql(reordered, [2.0], db)
    assert eth.id == ticks[1].id
    assert eth == ticks[1]


def test_from_sql_runs_writes_returning_rows(db: Database):
    """UPDATE ... RETURNING * is a source of instances too, and the change is committed."""
    create_tables(db, Tick)
    _ticks(db)
    bumped = Tick.from_sql(
        sql.SQL("UPDATE s_ticks SET price = price * 2 WHERE symbol = %s RETURNING *"), ["BTC"], db
    )
    assert [t.price for t in bumped] == [3.0]
    assert [t.price for t in Tick.find_all(db)] == [3.0, 2.5]
    with pytest.raises(QueryError, match="returns no rows"):
        Tick.from_sql(sql.SQL("UPDATE s_ticks SET price = 0 WHERE false"), [], db)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("SELECT id, symbol, price, side, series, at FROM s_ticks", "missing label"),
        ("SELECT *, 1 AS extra FROM s_ticks", "extra extra"),
        ("SELECT *, price FROM s_ticks", "repeated price"),
        (
            "SELECT id, symbol, price, side, series, label, at::timestamp AS at FROM s_ticks",
            "as timestamp",
        ),
        (
            "SELECT id, symbol, price::text AS price, side, series, at, label FROM s_ticks",
            "as text",
        ),
    ],
)
def test_from_sql_names_mismatched_columns(db: Database, query: str, message: str):
    """A missing, extra, repeated or mistyped column is a QueryError naming it."""
    create_tables(db, Tick)
    _ticks(db)
    with pytest.raises(QueryError, match=message):
        Tick.from_sql(sql.SQL(query), [], db)


def test_compatible_types_load(db: Database):
    """A narrower integer or a varchar for a text column loads; a declared sql_type is trusted."""
    create_tables(db, Tick)
    _ticks(db)
    query = sql.SQL(
        "SELECT id::int4 AS id, symbol::varchar AS symbol, price::float4 AS price, side, series,"
        " at, 'x'::text AS label FROM s_ticks ORDER BY id"
    )
    loaded = Tick.from_sql(query, [], db)
    assert [(t.symbol, t.price, t.label) for t in loaded] == [("BTC", 1.5, "x"), ("ETH", 2.5, "x")]


def test_plain_strings_are_refused(db: Database):
    """A str query is refused before anything runs, for every raw entry point."""
    create_tables(db, Tick)
    with count_statements(db) as log:
        for call in (
            lambda: db.fetch("SELECT 1"),  # type: ignore[arg-type]
            lambda: db.fetch_dicts("SELECT 1"),  # type: ignore[arg-type]
            lambda: Tick.from_sql("SELECT * FROM s_ticks", [], db),  # type: ignore[arg-type]
        ):
            with pytest.raises(QueryError, match=r"psycopg\.sql object"):
                call()
        with pytest.raises(QueryError, match="sequence of values"):
            db.fetch(sql.SQL("SELECT %s"), "x")
    assert len(log) == 0


def test_fetch_tuples_and_dicts(db: Database):
    """fetch returns tuples, fetch_dicts dicts; both are seen by listeners, with their params."""
    create_tables(db, Tick)
    _ticks(db)
    query = sql.SQL("SELECT symbol, price FROM s_ticks WHERE price > %s ORDER BY symbol")
    with count_statements(db) as log:
        assert db.fetch(query, [1.0]) == [("BTC", 1.5), ("ETH", 2.5)]
        assert db.fetch_dicts(query, (2.0,)) == [{"symbol": "ETH", "price": 2.5}]
    assert log.statements == [
        (query.as_string(None), (1.0,)),
        (query.as_string(None), (2.0,)),
    ]
    assert db.fetch(sql.SQL("UPDATE s_ticks SET price = 1 WHERE false")) == []
    with pytest.raises(QueryError, match="several columns named x"):
        db.fetch_dicts(sql.SQL("SELECT 1 AS x, 2 AS x"))


def test_errors_are_translated(db: Database):
    """Driver errors come back as orso_pg errors, with the driver's as the cause."""
    create_tables(db, Tick)
    _ticks(db)
    with pytest.raises(UniqueViolationError) as info:
        db.fetch(sql.SQL("UPDATE s_ticks SET symbol = 'BTC'"))
    assert info.value.constraint is not None
    with pytest.raises(DatabaseError, match="syntax error"):
        Tick.from_sql(sql.SQL("SELEC * FROM s_ticks"), [], db)


def test_inside_a_transaction(db: Database):
    """Raw SQL given a transaction runs in it, and is undone with it."""
    create_tables(db, Tick)
    _ticks(db)
    with pytest.raises(RuntimeError), db.transaction() as tx:
        tx.fetch(sql.SQL("DELETE FROM s_ticks WHERE symbol = %s"), ["BTC"])
        assert tx.fetch(sql.SQL("SELECT count(*) FROM s_ticks")) == [(1,)]
        assert [t.symbol for t in Tick.from_sql(sql.SQL("SELECT * FROM s_ticks"), [], tx)] == [
            "ETH"
        ]
        raise RuntimeError
    assert db.fetch(sql.SQL("SELECT count(*) FROM s_ticks")) == [(2,)]
