"""Every read method on a real database, on the model's table and through its _with_table twin."""

from __future__ import annotations

import datetime as dt
import enum
import os
import sys
import types
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import attrs
import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from orso_pg import (
    Aggregate,
    Database,
    DatabaseError,
    Filter,
    JoinType,
    Migrations,
    Orso,
    Pagination,
    QueryBuilder,
    QueryError,
    SearchFilter,
    Sort,
    ValidationError,
    column,
    migration,
    table,
)
from tests.conftest import Server
from tests.helpers import count_statements, create_tables
from tests.test_readme import python_block


class Side(enum.Enum):
    BUY = "buy"
    SELL = "sell"


@table("q_trades")
class QTrade(Orso):
    id: str | None = column(primary_key=True, default=None)
    symbol: str
    price: float
    qty: int
    amount: Decimal | None = None
    side: Side | None = None
    note: str | None = None
    active: bool = True
    created_at: dt.datetime | None = column(created_at=True, default=None)
    updated_at: dt.datetime | None = column(updated_at=True, default=None)


@table("q_venues")
class QVenue(Orso):
    id: int | None = column(primary_key=True, default=None)
    symbol: str
    venue: str


@table("q_odd")
class QOdd(Orso):
    id: int | None = column(primary_key=True, default=None)
    total: int
    present: bool


@table("q_plain")
class QPlain(Orso):
    id: int | None = column(primary_key=True, default=None)
    value: int


@table("q_typed")
class QTyped(Orso):
    id: int | None = column(primary_key=True, default=None)
    tags: list[int] | None = None
    words: list[str] | None = None
    doc: dict[str, Any] | None = None
    code: str | None = column(sql_type="varchar(3)", default=None)
    at: dt.datetime | None = None


T0 = dt.datetime(2024, 3, 1, 9, tzinfo=dt.UTC)
ROWS = [
    ("BTC", 100.0, 1, Decimal("1.50"), Side.BUY, "50% off"),
    ("ETH", 10.5, 2, None, Side.SELL, "a_b"),
    ("btc-usd", 101.0, 3, Decimal("2.25"), Side.BUY, "back\\slash"),
    ("SOL", 1.25, 4, None, None, None),
    ("Ünï", 5.0, 5, Decimal(0), Side.SELL, "axb"),
]


@attrs.define
class Trades:
    """The trades table of one test (the model's own, or another name) and its rows."""

    db: Database
    table: str | None
    rows: list[QTrade]

    def call(self, name: str, *args: Any) -> Any:
        """Call QTrade.<name>(*args, db), or its _with_table twin on the other table."""
        if self.table is None:
            return getattr(QTrade, name)(*args, self.db)
        return getattr(QTrade, f"{name}_with_table")(*args, self.db, self.table)

    @property
    def name(self) -> str:
        return self.table or "q_trades"

    def by_symbol(self, *symbols: str) -> list[QTrade]:
        return [r for r in self.rows if r.symbol in symbols]


@pytest.fixture(params=[None, "other_trades"], ids=["own-table", "with-table"])
def trades(request: pytest.FixtureRequest, db: Database) -> Trades:
    """Five trades created a minute apart, in q_trades or in other_trades (only that one)."""
    name: str | None = request.param
    Migrations.init(db, [migration(QTrade, name)])
    rows = []
    for n, (symbol, price, qty, amount, side, note) in enumerate(ROWS):
        trade = QTrade(
            symbol=symbol,
            price=price,
            qty=qty,
            amount=amount,
            side=side,
            note=note,
            created_at=T0 + dt.timedelta(minutes=n),
        )
        rows.append(trade.insert(db) if name is None else trade.insert_with_table(db, name))
    return Trades(db, name, rows)


def ids(rows: list[QTrade]) -> set[str | None]:
    return {r.id for r in rows}


# --- finders ----------------------------------------------------------------------------------


def test_find_where(trades: Trades) -> None:
    """find_where returns exactly the matching rows, loaded with their Python types."""
    found = trades.call("find_where", Filter.ge("price", 10) & Filter.eq("side", Side.BUY))
    assert ids(found) == ids(trades.by_symbol("BTC", "btc-usd"))
    btc = next(r for r in found if r.symbol == "BTC")
    assert btc == trades.by_symbol("BTC")[0]
    assert btc.side is Side.BUY
    assert btc.amount == Decimal("1.50")
    assert trades.call("find_where", Filter.eq("symbol", "nope")) == []


def test_find_one(trades: Trades) -> None:
    """find_one returns the match with the lowest key, or None."""
    buys = trades.by_symbol("BTC", "btc-usd")
    found = trades.call("find_one", Filter.eq("side", Side.BUY))
    assert found is not None
    assert found.id == min(r.id for r in buys if r.id is not None)
    assert trades.call("find_one", Filter.eq("qty", 99)) is None


def test_latest_and_first(trades: Trades) -> None:
    """The latest/first finders order by created_at, with and without a filter or a field."""
    assert trades.call("find_latest").symbol == "Ünï"
    assert trades.call("find_latest_filter", Filter.eq("side", Side.BUY)).symbol == "btc-usd"
    assert trades.call("find_first_filter", Filter.eq("side", Side.SELL)).symbol == "ETH"
    assert trades.call("find_latest_by_field", "side", Side.SELL).symbol == "Ünï"
    assert trades.call("find_first_by_field", "side", "buy").symbol == "BTC"
    assert trades.call("find_latest_by_field", "side", None).symbol == "SOL"
    assert trades.call("find_latest_filter", Filter.eq("qty", 99)) is None
    assert trades.call("find_first_by_field", "qty", 99) is None


def test_latest_needs_created_at(db: Database) -> None:
    """A model without created_at gets a QueryError naming the option, before any SQL."""
    with pytest.raises(QueryError, match="created_at=True"):
        QPlain.find_latest(db)


def test_exists(trades: Trades) -> None:
    """exists_filter answers with EXISTS, for matches and for none."""
    assert trades.call("exists_filter", Filter.eq("symbol", "SOL"))
    assert not trades.call("exists_filter", Filter.eq("symbol", "DOGE"))
    with count_statements(trades.db) as log:
        trades.call("exists_filter", Filter.gt("qty", 0))
    assert log.texts()[0].startswith("SELECT EXISTS (SELECT 1 FROM")


def test_find_by_field(trades: Trades) -> None:
    """find_by_field matches a value, and None matches NULL."""
    assert ids(trades.call("find_by_field", "symbol", "ETH")) == ids(trades.by_symbol("ETH"))
    assert ids(trades.call("find_by_field", "note", None)) == ids(trades.by_symbol("SOL"))
    with pytest.raises(QueryError, match="has no column 'nope'"):
        trades.call("find_by_field", "nope", 1)


def test_find_by_ids_order_and_duplicates(trades: Trades) -> None:
    """find_by_ids follows the order asked for, drops unknown ids and repeats none."""
    a, b, c = (r.id for r in trades.rows[:3])
    unknown = "00000000-0000-0000-0000-000000000000"
    found = trades.call("find_by_ids", [c, unknown, a, c, b])
    assert [r.id for r in found] == [c, a, b]
    assert trades.call("find_by_ids", []) == []
    assert trades.call("find_by_ids", iter([b])) == [trades.rows[1]]


def test_find_by_field_in(trades: Trades) -> None:
    """find_by_field_in matches any of the values, and an empty list matches nothing."""
    found = trades.call("find_by_field_in", "symbol", ["SOL", "ETH", "nope"])
    assert ids(found) == ids(trades.by_symbol("SOL", "ETH"))
    assert trades.call("find_by_field_in", "symbol", []) == []
    assert ids(trades.call("find_by_field_in", "side", [Side.SELL])) == ids(
        trades.by_symbol("ETH", "Ünï")
    )


def test_count_where(trades: Trades) -> None:
    """count_where counts the matches; NOT IN with a NULL in the list matches nothing."""
    assert trades.call("count_where", Filter.is_not_null("amount")) == 3
    assert trades.call("count_where", Filter.not_in_values("qty", [1, 2])) == 3
    assert trades.call("count_where", Filter.not_in_values("qty", [1, None])) == 0
    assert trades.call("count_where", Filter.in_values("qty", [])) == 0
    assert trades.call("count_where", Filter.not_in_values("qty", [])) == 5


def test_delete_where(trades: Trades) -> None:
    """delete_where deletes the matches and returns how many."""
    assert trades.call("delete_where", Filter.eq("side", Side.BUY)) == 2
    assert trades.call("delete_where", Filter.eq("side", Side.BUY)) == 0
    assert trades.call("count_where", Filter.all_of()) == 3


def test_update_where(trades: Trades) -> None:
    """update_where sets the columns on every match, sets updated_at, and returns the count."""
    before = {r.id: r for r in trades.call("find_where", Filter.all_of())}
    changed = trades.call("update_where", Filter.eq("side", Side.SELL), {"note": "sold", "qty": 0})
    assert changed == 2
    after = {r.id: r for r in trades.call("find_where", Filter.all_of())}
    for key, row in after.items():
        old = before[key]
        if old.side is Side.SELL:
            assert (row.note, row.qty) == ("sold", 0)
            assert row.updated_at is not None
            assert old.updated_at is not None
            assert row.updated_at > old.updated_at
        else:
            assert row == old


def test_update_where_timestamps(trades: Trades) -> None:
    """updated_at=None means now(); created_at=None would be a NULL and is refused."""
    sol = trades.by_symbol("SOL")[0]
    assert trades.call("update_where", Filter.eq("symbol", "SOL"), {"updated_at": None}) == 1
    (after,) = trades.call("find_by_field", "symbol", "SOL")
    assert after.updated_at is not None
    assert sol.updated_at is not None
    assert after.updated_at > sol.updated_at
    with pytest.raises(ValidationError, match="created_at is NOT NULL"):
        trades.call("update_where", Filter.all_of(), {"created_at": None})


def test_update_where_refusals(trades: Trades) -> None:
    """Bad values, unknown columns and empty updates fail before any SQL runs."""
    with count_statements(trades.db) as log:
        with pytest.raises(ValidationError, match="qty") as e:
            trades.call("update_where", Filter.all_of(), {"qty": "many"})
        assert e.value.column == "qty"
        assert e.value.value == "many"
        with pytest.raises(ValidationError, match="NOT NULL"):
            trades.call("update_where", Filter.all_of(), {"symbol": None})
        with pytest.raises(QueryError, match="columns are"):
            trades.call("update_where", Filter.all_of(), {"nope": 1})
        with pytest.raises(QueryError, match="at least one column"):
            trades.call("update_where", Filter.all_of(), {})
        with pytest.raises(QueryError, match="at least one column"):
            trades.call("update_where", Filter.all_of(), [("qty", 1)])
    assert len(log) == 0


# --- search -----------------------------------------------------------------------------------


def search(trades: Trades, s: SearchFilter, page: Pagination | None = None) -> set[str]:
    result = trades.call("search", s, page)
    return {r.symbol for r in result}


def test_search(trades: Trades) -> None:
    """Search ignores case by default, takes % _ and \\ literally, and spans columns."""
    assert search(trades, SearchFilter.new("btc", ["symbol"])) == {"BTC", "btc-usd"}
    assert search(trades, SearchFilter.new("50%", ["note"])) == {"BTC"}
    assert search(trades, SearchFilter.new("%", ["note"])) == {"BTC"}
    assert search(trades, SearchFilter.new("a_b", ["note"])) == {"ETH"}
    assert search(trades, SearchFilter.new("\\", ["note"])) == {"btc-usd"}
    assert search(trades, SearchFilter.new("", ["note"])) == {"BTC", "ETH", "btc-usd", "Ünï"}
    assert search(trades, SearchFilter.new("o", ["symbol", "note"])) == {"SOL", "BTC"}
    exact = SearchFilter.new("btc", ["symbol"]).with_exact_match()
    assert search(trades, exact) == {"BTC"}
    assert search(trades, exact.with_case_sensitive()) == set()
    assert search(trades, SearchFilter.new("btc", ["symbol"]).with_case_sensitive()) == {"btc-usd"}
    assert search(trades, SearchFilter.new("BUY", ["side"])) == {"BTC", "btc-usd"}


def test_search_pages(trades: Trades) -> None:
    """Search returns pages (1 of 20 by default) whose total counts every match."""
    result = trades.call("search", SearchFilter.new("t", ["symbol", "note"]), Pagination(1, 2))
    assert (len(result), result.total, result.total_pages) == (2, 3, 2)
    assert trades.call("search", SearchFilter.new("b", ["note"]), None).per_page == 20


# --- aggregates -------------------------------------------------------------------------------


def test_aggregates_return_python_values(trades: Trades) -> None:
    """Aggregates come back as the column's Python type: int, float, Decimal, datetime, enum."""
    agg = trades.call
    everything = Filter.all_of()
    assert agg("aggregate", Aggregate.COUNT, "*", None) == 5
    assert agg("aggregate", Aggregate.COUNT, "amount", everything) == 3
    total = agg("aggregate", Aggregate.SUM, "qty", None)
    assert (total, type(total)) == (15, int)
    mean = agg("aggregate", Aggregate.AVG, "qty", None)
    assert (mean, type(mean)) == (3.0, float)
    assert agg("aggregate", Aggregate.SUM, "price", None) == pytest.approx(217.75)
    assert agg("aggregate", Aggregate.MIN, "price", None) == 1.25
    assert agg("aggregate", Aggregate.SUM, "amount", None) == Decimal("3.75")
    assert agg("aggregate", Aggregate.MAX, "amount", None) == Decimal("2.25")
    assert agg("aggregate", Aggregate.AVG, "amount", None) == Decimal("1.25")
    assert agg("aggregate", Aggregate.MAX, "created_at", None) == T0 + dt.timedelta(minutes=4)
    assert agg("aggregate", Aggregate.MIN, "side", None) is Side.BUY
    assert agg("aggregate", Aggregate.MAX, "symbol", Filter.lt("qty", 3)) in ("BTC", "ETH")
    assert agg("aggregate", Aggregate.Sum, "qty", Filter.eq("side", Side.SELL)) == 7


def test_aggregates_on_empty_sets(trades: Trades) -> None:
    """Over no rows COUNT is 0 and every other aggregate is None."""
    nothing = Filter.eq("qty", 99)
    assert trades.call("aggregate", Aggregate.COUNT, "*", nothing) == 0
    assert trades.call("aggregate", Aggregate.COUNT, "qty", nothing) == 0
    for function in (Aggregate.SUM, Aggregate.AVG, Aggregate.MIN, Aggregate.MAX):
        assert trades.call("aggregate", function, "qty", nothing) is None
    assert trades.call("aggregate", Aggregate.MAX, "created_at", nothing) is None


@pytest.mark.parametrize(
    ("function", "name", "match"),
    [
        (Aggregate.SUM, "symbol", "needs a numeric column"),
        (Aggregate.AVG, "created_at", "needs a numeric column"),
        (Aggregate.MIN, "active", "does not apply"),
        (Aggregate.MAX, "*", r"max\(\*\) is not an aggregate"),
        (Aggregate.SUM, "nope", "columns are"),
        ("sum", "qty", "expected an Aggregate"),
    ],
)
def test_aggregate_refusals(trades: Trades, function: Any, name: str, match: str) -> None:
    """Aggregates that do not apply to a column are QueryErrors before any SQL runs."""
    with count_statements(trades.db) as log, pytest.raises(QueryError, match=match):
        trades.call("aggregate", function, name, None)
    assert len(log) == 0


# --- statement counts -------------------------------------------------------------------------


def test_every_finder_is_one_statement(trades: Trades) -> None:
    """Each finder, count, aggregate and set-based write is one statement (a page is two)."""
    f = Filter.gt("qty", 1)
    some_ids = [r.id for r in trades.rows]
    calls: list[tuple[str, tuple[Any, ...]]] = [
        ("find_where", (f,)),
        ("find_one", (f,)),
        ("find_latest", ()),
        ("find_latest_filter", (f,)),
        ("find_first_filter", (f,)),
        ("exists_filter", (f,)),
        ("find_by_field", ("symbol", "BTC")),
        ("find_latest_by_field", ("symbol", "BTC")),
        ("find_first_by_field", ("symbol", "BTC")),
        ("find_by_ids", (some_ids,)),
        ("find_by_field_in", ("qty", [1, 2])),
        ("count_where", (f,)),
        ("find_paginated", (Pagination(2, 2),)),
        ("find_where_paginated", (f, Pagination(1, 2))),
        ("list", ([Sort.desc("price")], Pagination(1, 3))),
        ("list_where", (f, [Sort.asc("symbol")], None)),
        ("search", (SearchFilter.new("b", ["symbol"]), None)),
        ("aggregate", (Aggregate.AVG, "price", f)),
        ("query", (QueryBuilder(QTrade).where(f),)),
        ("query_paginated", (QueryBuilder(QTrade).where(f), Pagination(1, 2))),
        ("update_where", (f, {"note": "x"})),
        ("delete_where", (f,)),
    ]
    # A page is two statements, its count and its rows, sent in one round trip.
    paged = {"find_paginated", "find_where_paginated", "list", "list_where", "search"}
    for name, args in calls:
        with count_statements(trades.db) as log:
            trades.call(name, *args)
        if name in paged or name == "query_paginated":
            assert len(log) == 2, (name, log.texts())
            assert log.texts()[0].startswith("SELECT count(*) FROM"), (name, log.texts())
        else:
            assert len(log) == 1, (name, log.texts())


def test_pages_load_columns_called_total_and_present(db: Database) -> None:
    """A model whose columns are called total and present still pages correctly."""
    create_tables(db, QOdd)
    for n in range(3):
        QOdd(total=n * 10, present=n % 2 == 0).insert(db)
    page = QOdd.find_paginated(Pagination(1, 2), db)
    assert page.total == 3
    assert [(r.total, r.present) for r in page] == [(0, True), (10, False)]
    built = QOdd.query_paginated(QueryBuilder(QOdd), Pagination(2, 2), db)
    assert (built.total, [(r.total, r.present) for r in built]) == (3, [(20, True)])


# --- QueryBuilder -----------------------------------------------------------------------------


@pytest.fixture
def market(db: Database) -> Trades:
    """Trades in q_trades and the venues each symbol trades on."""
    create_tables(db, QTrade, QVenue)
    rows = [
        QTrade(symbol=s, price=p, qty=q, amount=a, side=side, note=n).insert(db)
        for s, p, q, a, side, n in ROWS
    ]
    for symbol, venue in [("BTC", "X"), ("BTC", "Y"), ("ETH", "X"), ("DOGE", "Z")]:
        QVenue(symbol=symbol, venue=venue).insert(db)
    return Trades(db, None, rows)


def test_builder_fetch_and_dicts(market: Trades) -> None:
    """fetch returns tuples of Python values; fetch_dicts keys them by output name."""
    q = (
        QueryBuilder(QTrade)
        .select("symbol", "side", "amount")
        .where(Filter.is_not_null("side"))
        .order_by(Sort.desc("qty"))
        .limit(2)
        .offset(1)
    )
    assert q.fetch(market.db) == [("btc-usd", Side.BUY, Decimal("2.25")), ("ETH", Side.SELL, None)]
    assert q.fetch_dicts(market.db)[0] == {
        "symbol": "btc-usd",
        "side": Side.BUY,
        "amount": Decimal("2.25"),
    }
    assert q.count(market.db) == 4


def test_builder_group_having(market: Trades) -> None:
    """GROUP BY with aggregates and HAVING returns one converted row per group."""
    q = (
        QueryBuilder(QTrade)
        .select("side")
        .aggregate(Aggregate.SUM, "qty", "qty")
        .aggregate(Aggregate.AVG, "price", "mean")
        .aggregate(Aggregate.MAX, "amount")
        .select_count("n")
        .where(Filter.is_not_null("side"))
        .group_by("side")
        .having(Filter.ge("n", 2))
        .order_by(Sort.asc("side"))
    )
    rows = q.fetch_dicts(market.db)
    assert rows == [
        {"side": Side.BUY, "qty": 4, "mean": 100.5, "max_amount": Decimal("2.25"), "n": 2},
        {"side": Side.SELL, "qty": 7, "mean": 7.75, "max_amount": Decimal(0), "n": 2},
    ]
    assert type(rows[0]["qty"]) is int
    assert q.count(market.db) == 2
    assert q.having(Filter.gt("qty", 5)).count(market.db) == 1


def test_builder_joins(market: Trades) -> None:
    """Inner and left joins on column pairs, filtered and sorted by the joined table."""
    inner = (
        QueryBuilder(QTrade)
        .join(QVenue, ("symbol", "symbol"))
        .select("symbol", "q_venues.venue")
        .where(Filter.eq("q_venues.venue", "X"))
        .order_by(Sort.asc("symbol"))
    )
    assert inner.fetch(market.db) == [("BTC", "X"), ("ETH", "X")]
    left = (
        QueryBuilder(QTrade)
        .join(QVenue, [("symbol", "symbol")], JoinType.LEFT, alias="v")
        .select("symbol")
        .select_count()
        .group_by("symbol")
        .order_by(Sort.desc("count"), Sort.asc("symbol"))
    )
    assert left.fetch(market.db)[:2] == [("BTC", 2), ("ETH", 1)]
    assert left.count(market.db) == 5
    distinct = QueryBuilder(QTrade).join(QVenue, ("symbol", "symbol")).select("symbol")
    assert len(distinct.fetch(market.db)) == 3
    assert sorted(distinct.distinct().fetch(market.db)) == [("BTC",), ("ETH",)]


def test_builder_stream(market: Trades) -> None:
    """stream yields the same rows as fetch, from a server-side cursor."""
    q = QueryBuilder(QTrade).select("symbol", "side").order_by(Sort.asc("qty"))
    assert list(q.stream(market.db, batch_size=2)) == q.fetch(market.db)
    whole = QueryBuilder(QTrade).order_by(Sort.asc("qty"))
    assert [row[1] for row in whole.stream(market.db)] == [s for s, *_ in ROWS]


def test_query_and_query_paginated(market: Trades) -> None:
    """query loads instances; query_paginated pages them with the builder's filtered total."""
    db = market.db
    q = QueryBuilder(QTrade).where(Filter.gt("qty", 1)).order_by(Sort.desc("qty"))
    assert [r.symbol for r in QTrade.query(q, db)] == ["Ünï", "SOL", "btc-usd", "ETH"]
    page = QTrade.query_paginated(q, Pagination(2, 3), db)
    assert ([r.symbol for r in page], page.total, page.total_pages) == (["ETH"], 4, 2)
    joined = QueryBuilder(QTrade).join(QVenue, ("symbol", "symbol")).distinct()
    assert {r.symbol for r in QTrade.query(joined, db)} == {"BTC", "ETH"}


def test_query_with_table(db: Database) -> None:
    """query_with_table and query_paginated_with_table read the other table."""
    Migrations.init(db, [migration(QTrade, "trades_b")])
    QTrade(symbol="A", price=1.0, qty=1).insert_with_table(db, "trades_b")
    q = QueryBuilder(QTrade).where(Filter.eq("symbol", "A"))
    assert [r.symbol for r in QTrade.query_with_table(q, db, "trades_b")] == ["A"]
    page = QTrade.query_paginated_with_table(q, Pagination(1, 5), db, "trades_b")
    assert page.total == 1
    with pytest.raises(DatabaseError, match="q_trades"):
        QTrade.query(q, db)  # the model's own table was never created


def test_query_refusals(market: Trades) -> None:
    """query refuses a builder of another model or one whose rows are not whole instances."""
    with pytest.raises(QueryError, match="not QTrade instances"):
        QTrade.query(QueryBuilder(QTrade).select("symbol"), market.db)
    with pytest.raises(QueryError, match="the query is on QVenue"):
        QTrade.query(QueryBuilder(QVenue), market.db)
    with pytest.raises(QueryError, match="expected a QueryBuilder"):
        QTrade.query("SELECT 1", market.db)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="expected a Pagination"):
        QTrade.query_paginated(QueryBuilder(QTrade), 3, market.db)  # type: ignore[arg-type]


# --- streaming --------------------------------------------------------------------------------

STREAM_ROWS = 3000
# An unusual batch size, different in each test process, so that the FETCH this test looks for
# in pg_stat_activity is its own even when other runs share the server.
BATCH = 400 + os.getpid() % 499


@pytest.fixture
def many(db: Database, raw: psycopg.Connection[Any]) -> Database:
    """q_plain with 3000 rows, loaded by COPY in one transaction."""
    create_tables(db, QPlain)
    with raw.transaction(), raw.cursor().copy("COPY q_plain (value) FROM STDIN") as copy:
        for n in range(STREAM_ROWS):
            copy.write_row((n,))
    return db


def fetches(raw: psycopg.Connection[Any]) -> list[tuple[str, str]]:
    """Return the sessions of this database whose last statement fetched from our cursor."""
    rows = raw.execute(
        "SELECT state, query FROM pg_stat_activity"
        " WHERE datname = current_database() AND query LIKE %s",
        (f"FETCH FORWARD {BATCH} FROM %",),
    ).fetchall()
    return [(str(state), str(query)) for state, query in rows]


def test_stream_where_reads_from_a_server_side_cursor(
    many: Database, raw: psycopg.Connection[Any]
) -> None:
    """Rows arrive while the server-side cursor is open, fetched in batches, and all arrive."""
    it: Iterator[QPlain] = QPlain.stream_where(
        Filter.ge("value", 0), many, sorts=[Sort.asc("value")], batch_size=BATCH
    )
    assert fetches(raw) == []  # nothing runs before the first row is asked for
    first = next(it)
    assert first.value == 0
    assert [state for state, _ in fetches(raw)] == ["idle in transaction"]
    rest = [row.value for row in it]
    assert [first.value, *rest] == list(range(STREAM_ROWS))
    assert fetches(raw) == []  # the cursor's transaction ended with the iteration


def test_stream_closed_early_returns_the_connection(
    many: Database, raw: psycopg.Connection[Any]
) -> None:
    """Closing a stream half-way ends its transaction; the database stays usable."""
    it = QPlain.stream_where(None, many, batch_size=BATCH)
    for _ in range(BATCH + 1):
        next(it)
    assert [state for state, _ in fetches(raw)] == ["idle in transaction"]
    it.close()  # type: ignore[attr-defined]
    assert fetches(raw) == []
    assert QPlain.count(many) == STREAM_ROWS


def test_stream_in_a_transaction_sees_its_cursor(many: Database) -> None:
    """Inside a transaction the stream's cursor is listed in pg_cursors while rows arrive."""
    with many.transaction() as tx:
        it = QPlain.stream_where(Filter.lt("value", 1000), tx, batch_size=100)
        assert next(it).id is not None
        cursors = tx.connection.execute("SELECT name FROM pg_cursors").fetchall()
        assert any(str(name).startswith("orso_pg_cursor_") for (name,) in cursors)
        assert sum(1 for _ in it) == 999


def test_stream_checks_its_query_at_the_call(many: Database) -> None:
    """A bad filter, sort or batch size fails when stream_where is called, not later."""
    with count_statements(many) as log:
        with pytest.raises(QueryError, match="columns are"):
            QPlain.stream_where(Filter.eq("nope", 1), many)
        with pytest.raises(QueryError, match="columns are"):
            QPlain.stream_where(None, many, sorts=[Sort.asc("nope")])
        with pytest.raises(ValidationError, match="batch_size"):
            QPlain.stream_where(None, many, batch_size=0)
        with pytest.raises(QueryError, match="columns are"):
            QueryBuilder(QPlain).select("nope").stream(many)
    assert len(log) == 0


def test_errors_keep_the_driver_error(market: Trades) -> None:
    """A statement PostgreSQL refuses is a DatabaseError with psycopg's error as __cause__."""
    raw_filter = Filter.raw(psycopg.sql.SQL("1 / %s = 1"), [0])
    with pytest.raises(DatabaseError) as e:
        QTrade.find_where(raw_filter, market.db)
    assert isinstance(e.value.__cause__, psycopg.Error)
    assert QTrade.count_where(Filter.raw(psycopg.sql.SQL("qty > %s"), [2]), market.db) == 3


# --- operators on typed columns ---------------------------------------------------------------


def test_array_json_and_declared_type_operators(db: Database) -> None:
    """Array, JSONB and sql_type columns filter by value, with no cast changing the values."""
    create_tables(db, QTyped)
    rows = [
        QTyped(tags=[1, 2], words=["a", "b"], doc={"k": "v", "n": 1}, code="ABC", at=T0),
        QTyped(tags=[3], words=[], doc={"k": True}, code="ABD"),
        QTyped(tags=[], words=["a"], doc={}, code=None),
        QTyped(),
    ]
    a, b, c, d = (r.insert(db).id for r in rows)

    def found(f: Filter) -> list[int | None]:
        return sorted(r.id for r in QTyped.find_where(f, db))  # type: ignore[type-var]

    assert found(Filter.eq("tags", [1, 2])) == [a]
    assert found(Filter.eq("tags", [])) == [c]
    assert found(Filter.ne("words", [])) == [a, c]
    assert found(Filter.contains("tags", [2])) == [a]
    assert found(Filter.contains("words", [])) == [a, b, c]
    assert found(Filter.overlaps("tags", [3, 2])) == [a, b]
    assert found(Filter.any("tags", 3)) == [b]
    assert found(Filter.any("words", "a")) == [a, c]
    assert found(Filter.contains("doc", {"k": "v"})) == [a]
    assert found(Filter.has_key("doc", "k")) == [a, b]
    assert found(Filter.json_eq("doc", "k", value=True)) == [b]
    assert found(Filter.json_eq("doc", "n", 1)) == [a]
    assert found(Filter.is_null("doc")) == [d]
    # A varchar(3) cast would cut "ABCDEF" to "ABC" and match row a: no cast is applied.
    assert found(Filter.in_values("code", ["ABCDEF"])) == []
    assert found(Filter.in_values("code", ["ABD", None])) == [b]
    assert found(Filter.in_values("code", [])) == []
    assert found(Filter.not_in_values("code", [])) == [a, b, c, d]
    assert found(Filter.eq("at", T0.astimezone(dt.timezone(dt.timedelta(hours=5))))) == [a]
    with pytest.raises(ValidationError, match="naive datetime"):
        found(Filter.lt("at", dt.datetime(2024, 1, 1)))  # noqa: DTZ001


def test_readme_queries_block_runs(server: Server, schema: str, monkeypatch: pytest.MonkeyPatch):
    """The README's Queries example runs as written and its asserts hold."""
    monkeypatch.setenv("ORSO_PG_DSN", make_conninfo(server.dsn, options=f"-c search_path={schema}"))
    module = types.ModuleType("readme_queries")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(compile(python_block("Queries"), "README.md", "exec"), module.__dict__)  # noqa: S102


@table("q_keyless")
class QKeyless(Orso):
    name: str
    value: int


def test_keyless_model_pages(db: Database) -> None:
    """A model without a primary key still pages, with a total, in some order."""
    create_tables(db, QKeyless)
    for n in range(5):
        QKeyless(name=f"n{n}", value=n).insert(db)
    first = QKeyless.find_paginated(Pagination(1, 3), db)
    assert (len(first), first.total, first.total_pages) == (3, 5, 2)
    listed = QKeyless.list([Sort.desc("value")], Pagination(2, 3), db)
    assert [r.value for r in listed] == [1, 0]


def test_wrong_argument_types(market: Trades) -> None:
    """A search that is not a SearchFilter or a keyset filter that is not a Filter is refused."""
    with pytest.raises(QueryError, match="expected a SearchFilter"):
        QTrade.search("btc", None, market.db)  # type: ignore[arg-type]
    with pytest.raises(QueryError, match="expected a Filter"):
        QTrade.find_keyset("qty > 1", [], market.db)  # type: ignore[arg-type]
    plain = QueryBuilder(QTrade).select("qty").where(Filter.lt("qty", 3)).order_by(Sort.asc("qty"))
    assert list(plain.stream(market.db)) == [(1,), (2,)]
