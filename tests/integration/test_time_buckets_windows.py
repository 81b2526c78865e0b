"""Time buckets, FIRST/LAST and window functions, checked against pandas on the same rows."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orso_pg import (
    Aggregate,
    Database,
    Filter,
    Orso,
    QueryBuilder,
    QueryError,
    Sort,
    ValidationError,
    Window,
    column,
    table,
)
from tests.helpers import assert_sql, create_tables

pd = pytest.importorskip("pandas")

UTC = dt.UTC
T0 = dt.datetime(2024, 5, 6, 9, 30, tzinfo=UTC)


@table("tb_trades")
class Trade(Orso):
    id: int | None = column(primary_key=True, default=None)
    symbol: str
    ts: dt.datetime
    price: float
    qty: int


def frame(rows: list[Trade]) -> Any:
    return pd.DataFrame(
        {
            "symbol": [r.symbol for r in rows],
            "ts": pd.to_datetime([r.ts for r in rows], utc=True),
            "price": [r.price for r in rows],
            "qty": [r.qty for r in rows],
        }
    )


trades = st.lists(
    st.builds(
        Trade,
        symbol=st.sampled_from(["AAA", "BBB"]),
        # Distinct microseconds within a few minutes: FIRST/LAST need an order without ties.
        ts=st.integers(0, 600_000_000).map(lambda us: T0 + dt.timedelta(microseconds=us)),
        price=st.floats(1, 1e6, allow_nan=False),
        qty=st.integers(1, 10_000),
    ),
    min_size=1,
    max_size=60,
    unique_by=lambda t: t.ts,
)


def candle_query() -> QueryBuilder:
    return (
        QueryBuilder(Trade)
        .time_bucket("ts", dt.timedelta(minutes=1))
        .select("symbol")
        .aggregate(Aggregate.FIRST, "price", "open", order_by="ts")
        .aggregate(Aggregate.MAX, "price", "high")
        .aggregate(Aggregate.MIN, "price", "low")
        .aggregate(Aggregate.LAST, "price", "close", order_by="ts")
        .aggregate(Aggregate.SUM, "qty", "volume")
        .group_by("bucket", "symbol")
        .order_by(Sort.asc("symbol"), Sort.asc("bucket"))
    )


@given(rows=trades)
@settings(max_examples=20)
def test_candles_equal_pandas(db: Database, rows: list[Trade]):
    create_tables(db, Trade)
    Trade.delete_where(Filter.is_not_null("id"), db)
    Trade.batch_insert(rows, db)
    got = candle_query().fetch_dicts(db)
    df = frame(rows).sort_values("ts")
    df["bucket"] = df["ts"].dt.floor("1min")
    want = (
        df.groupby(["symbol", "bucket"])
        .agg(
            open=("price", "first"),
            high=("price", "max"),
            low=("price", "min"),
            close=("price", "last"),
            volume=("qty", "sum"),
        )
        .reset_index()
    )
    assert len(got) == len(want)
    for g, (_, w) in zip(got, want.iterrows(), strict=True):
        assert g["symbol"] == w["symbol"]
        assert g["bucket"] == w["bucket"].to_pydatetime()
        assert (g["open"], g["high"], g["low"], g["close"]) == (
            w["open"],
            w["high"],
            w["low"],
            w["close"],
        )
        assert g["volume"] == w["volume"]
        assert type(g["volume"]) is int


@given(rows=trades)
@settings(max_examples=20)
def test_windows_equal_pandas(db: Database, rows: list[Trade]):
    create_tables(db, Trade)
    Trade.delete_where(Filter.is_not_null("id"), db)
    Trade.batch_insert(rows, db)
    by_time = [Sort.asc("ts")]
    q = (
        QueryBuilder(Trade)
        .select("symbol", "ts", "price")
        .window(Window.ROW_NUMBER, alias="n", partition_by=["symbol"], order_by=by_time)
        .window(Window.LAG, "price", alias="prev", partition_by=["symbol"], order_by=by_time)
        .window(
            Window.LEAD, "price", alias="next2", partition_by=["symbol"], order_by=by_time, offset=2
        )
        .window(
            Aggregate.AVG,
            "price",
            alias="ma3",
            partition_by=["symbol"],
            order_by=by_time,
            rows=(2, 0),
        )
        .window(
            Aggregate.SUM,
            "qty",
            alias="cum",
            partition_by=["symbol"],
            order_by=by_time,
            rows=(None, 0),
        )
        .window(
            Window.RANK, alias="price_rank", partition_by=["symbol"], order_by=[Sort.desc("price")]
        )
        .order_by(Sort.asc("symbol"), Sort.asc("ts"))
    )
    got = q.fetch_arrays(db)
    df = frame(rows).sort_values(["symbol", "ts"]).reset_index(drop=True)
    g = df.groupby("symbol")
    want = {
        "n": (g.cumcount() + 1).to_numpy(),
        "prev": g["price"].shift(1).to_numpy(),
        "next2": g["price"].shift(-2).to_numpy(),
        "ma3": g["price"].rolling(3, min_periods=1).mean().reset_index(level=0, drop=True),
        "cum": g["qty"].cumsum().to_numpy(),
        "price_rank": g["price"].rank(method="min", ascending=False).astype("int64").to_numpy(),
    }
    assert got["n"].tolist() == want["n"].tolist()
    np.testing.assert_array_equal(got["prev"], want["prev"])
    np.testing.assert_array_equal(got["next2"], want["next2"])
    np.testing.assert_allclose(got["ma3"], want["ma3"].sort_index().to_numpy(), rtol=1e-12)
    assert got["cum"].tolist() == want["cum"].tolist()
    assert got["price_rank"].tolist() == want["price_rank"].tolist()


def test_candle_sql_binds_the_interval_and_origin():
    stmt = candle_query().where(Filter.eq("symbol", "AAA")).build()
    assert_sql(
        stmt,
        'SELECT date_bin(%s::interval, "ts", %s::timestamptz) AS "bucket", "symbol", '
        '(array_agg("price" ORDER BY "ts" ASC))[1] AS "open", max("price") AS "high", '
        'min("price") AS "low", (array_agg("price" ORDER BY "ts" DESC))[1] AS "close", '
        'sum("qty") AS "volume" FROM "tb_trades" WHERE "symbol" = %s '
        'GROUP BY "bucket", "symbol" ORDER BY "symbol" ASC, "bucket" ASC',
        (dt.timedelta(minutes=1), dt.datetime(2000, 1, 1, tzinfo=UTC), "AAA"),
    )


def test_a_string_interval_and_an_origin(db: Database):
    create_tables(db, Trade)
    Trade.batch_insert(
        [Trade(symbol="A", ts=T0 + dt.timedelta(minutes=m), price=1.0, qty=1) for m in range(30)],
        db,
    )
    origin = dt.datetime(2024, 5, 6, 9, 35, tzinfo=UTC)
    rows = (
        QueryBuilder(Trade)
        .time_bucket("ts", "15 minutes", alias="q", origin=origin)
        .aggregate(Aggregate.COUNT, "*", "n")
        .group_by("q")
        .order_by(Sort.asc("q"))
        .fetch(db)
    )
    assert [(b.minute, n) for b, n in rows] == [(20, 5), (35, 15), (50, 10)]
    arrays = (
        QueryBuilder(Trade)
        .time_bucket("ts", "15 minutes", alias="q", origin=origin)
        .aggregate(Aggregate.LAST, "qty", "last_qty", order_by="ts")
        .group_by("q")
        .fetch_arrays(db)
    )
    assert arrays["q"].dtype == np.dtype("datetime64[us]")
    assert arrays["last_qty"].dtype == np.int64


BAD_DECLARATIONS: list[tuple[Any, str]] = [
    (lambda q: q.aggregate(Aggregate.FIRST, "price", "o"), "FIRST needs order_by"),
    (lambda q: q.aggregate(Aggregate.MAX, "price", "h", order_by="ts"), "only FIRST and LAST"),
    (lambda q: q.aggregate(Aggregate.LAST, "price", "c", order_by="nope"), "nope"),
    (lambda q: q.time_bucket("price", "1 minute"), "needs a timestamp column"),
    (lambda q: q.time_bucket("ts", 60), "timedelta or an interval"),
    (lambda q: q.time_bucket("ts", "1 minute", alias="price"), "also a column"),
    (lambda q: q.time_bucket("ts", "1 minute", origin=dt.datetime(2000, 1, 1)), "aware"),  # noqa: DTZ001
    (lambda q: q.time_bucket("ts", "1 minute", alias="b%s"), "alias"),
    (lambda q: q.window(Window.LAG, alias="x"), "LAG needs a column"),
    (lambda q: q.window(Window.RANK, "price", alias="x"), "RANK takes no column"),
    (lambda q: q.window(Aggregate.FIRST, "price", alias="x"), "five aggregates"),
    (lambda q: q.window(Window.LAG, "price", alias="x", rows=(1,)), "rows must be"),
    (lambda q: q.window(Window.LAG, "price", alias="x", rows=(-1, 0)), "rows must be"),
    (lambda q: q.window(Window.LAG, "price", alias="x", offset=-1), "offset"),
    (lambda q: q.window(Window.LAG, "price", alias="x", partition_by=["nope"]), "nope"),
    (
        lambda q: q.window(Window.RANK, alias="x").window(Window.RANK, alias="x"),
        "already used",
    ),
    (lambda q: q.window(Window.RANK, alias=""), "non-empty alias"),
]


@pytest.mark.parametrize(
    ("build", "message"), BAD_DECLARATIONS, ids=[f"case{i}" for i in range(len(BAD_DECLARATIONS))]
)
def test_bad_declarations_are_query_errors(build: Any, message: str):
    with pytest.raises((QueryError, ValidationError), match=message):
        build(QueryBuilder(Trade))


def test_model_aggregate_refuses_first_without_an_order(db: Database):
    create_tables(db, Trade)
    with pytest.raises(QueryError, match="order_by"):
        Trade.aggregate(Aggregate.FIRST, "price", None, db)


def test_a_bucket_cannot_be_filtered_in_where(db: Database):
    create_tables(db, Trade)
    q = QueryBuilder(Trade).time_bucket("ts", "1 minute").where(Filter.is_null("bucket"))
    with pytest.raises(QueryError):
        q.fetch(db)
