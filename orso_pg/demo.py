"""``make demo``: an end-to-end market-data ETL on the embedded PostgreSQL (or ``ORSO_PG_DSN``).

Defines market-data models, creates their tables in a schema of its own (recreated on every
run), bulk-loads trades from a generator and daily candles with compressed price arrays, upserts
corrections, reads them back with filters and pages, migrates a model change without losing a
row, and prints what happened with timings and sizes. It is a script for people, not a library
module: nothing imports it.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Iterator

import numpy as np
from psycopg import sql

from orso_pg import (
    Aggregate,
    Database,
    Filter,
    Migrations,
    Orso,
    Pagination,
    Sort,
    UniqueViolationError,
    ValidationError,
    column,
    migration,
    table,
)

SCHEMA = "orso_demo"
SYMBOLS = ("BTC-USD", "ETH-USD", "SOL-USD")
START = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
DAYS = 30
MINUTES = 1440
TRADES = 200_000


@table("instruments")
class Instrument(Orso):
    """A tradable pair."""

    symbol: str = column(primary_key=True)
    base: str
    quote: str
    tick: float


@table("trades", indexes=[("symbol", "ts")])
class Trade(Orso):
    """One trade."""

    id: int | None = column(primary_key=True, default=None)
    symbol: str = column(ref=Instrument, on_delete="CASCADE")
    ts: dt.datetime
    price: float
    qty: float
    side: str
    created_at: dt.datetime | None = column(created_at=True, default=None)


@table("candles", unique=[("symbol", "day")])
class Candle(Orso):
    """One day of 1-minute candles, the series stored compressed."""

    id: int | None = column(primary_key=True, default=None)
    symbol: str = column(ref=Instrument)
    day: dt.date
    closes: np.ndarray = column(compress=True)  # float64, 1440 per day
    volumes: np.ndarray = column(compress=True)  # int64 lots
    updated_at: dt.datetime | None = column(updated_at=True, default=None)


@table("candles_native", unique=[("symbol", "day")])
class NativeCandle(Orso):
    """The same candles in native PostgreSQL arrays, to compare storage."""

    id: int | None = column(primary_key=True, default=None)
    symbol: str
    day: dt.date
    closes: list[float]
    volumes: list[int]


@table("candles", unique=[("ticker", "day")])
class CandleV2(Orso):
    """The next version of ``Candle``: a renamed column and a new one."""

    id: int | None = column(primary_key=True, default=None)
    ticker: str = column(ref=Instrument, renamed_from="symbol")
    day: dt.date
    closes: np.ndarray = column(compress=True)
    volumes: np.ndarray = column(compress=True)
    venue: str = "COINBASE"
    updated_at: dt.datetime | None = column(updated_at=True, default=None)


def _step(title: str) -> None:
    print(f"\n== {title}")


def _fresh_schema(db: Database) -> None:
    with db.connection() as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SCHEMA)))
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(SCHEMA)))


def _trades(rng: np.random.Generator) -> Iterator[Trade]:
    """Yield a random walk of trades, one at a time (the loader never holds them all)."""
    prices = {"BTC-USD": 42_000.0, "ETH-USD": 2_300.0, "SOL-USD": 95.0}
    picks = rng.integers(0, len(SYMBOLS), TRADES)
    steps = rng.normal(0, 0.0004, TRADES)
    sizes = rng.lognormal(-1.5, 1.2, TRADES)
    gaps = rng.exponential(0.05, TRADES).cumsum()
    for i in range(TRADES):
        symbol = SYMBOLS[picks[i]]
        prices[symbol] = round(prices[symbol] * (1 + steps[i]), 2)
        yield Trade(
            symbol=symbol,
            ts=START + dt.timedelta(seconds=float(gaps[i])),
            price=prices[symbol],
            qty=round(float(sizes[i]), 5),
            side="buy" if steps[i] >= 0 else "sell",
        )


def _day_series(rng: np.random.Generator, start: float) -> tuple[np.ndarray, np.ndarray]:
    closes = np.round(start * np.exp(np.cumsum(rng.normal(0, 5e-4, MINUTES))), 2)
    volumes = np.where(rng.random(MINUTES) < 0.05, 0, rng.lognormal(8, 1.5, MINUTES)).astype(
        np.int64
    )
    return closes, volumes


def _size(db: Database, table_name: str) -> int:
    with db.connection() as conn:
        row = conn.execute("SELECT pg_total_relation_size(%s::regclass)", (table_name,)).fetchone()
    return int(row[0]) if row else 0


def main() -> None:
    """Run the demo."""
    started = time.perf_counter()
    rng = np.random.default_rng(7)
    # A demo opts in to the embedded PostgreSQL when no server is named; an application would
    # refuse to guess (Database() alone raises ConfigError saying how to choose).
    dsn = os.environ.get("ORSO_PG_DSN") or "embedded"
    with Database(dsn) as admin:
        print(f"database: {admin.server}")
        _fresh_schema(admin)
    with Database(dsn, schema=SCHEMA) as db:
        _step("create tables")
        entries = [migration(m) for m in (Instrument, Trade, Candle, NativeCandle)]
        for result in Migrations.init(db, entries):
            print(f"{result.table}: {result.action.name} {list(result.schema_changes)}")

        _step("single rows: keys and timestamps come back from the server")
        for symbol in SYMBOLS:
            base, quote = symbol.split("-")
            Instrument(symbol=symbol, base=base, quote=quote, tick=0.01).insert(db)
        first = Trade(symbol="BTC-USD", ts=START, price=42_000.0, qty=0.5, side="buy").insert(db)
        print(f"inserted: {first}")

        _step(f"bulk load {TRADES:,} trades from a generator (COPY BINARY, one transaction)")
        t = time.perf_counter()
        loaded = Trade.batch_create(_trades(rng), db, progress=False)
        elapsed = time.perf_counter() - t
        print(f"{loaded:,} rows in {elapsed:.2f} s ({loaded / elapsed:,.0f} rows/s)")

        _step(f"candles: {len(SYMBOLS)} symbols x {DAYS} days x {MINUTES} minutes, compressed")
        candles, natives = [], []
        for symbol, opening in zip(SYMBOLS, (42_000.0, 2_300.0, 95.0), strict=True):
            start = opening
            for d in range(DAYS):
                closes, volumes = _day_series(rng, start)
                day = (START + dt.timedelta(days=d)).date()
                candles.append(Candle(symbol=symbol, day=day, closes=closes, volumes=volumes))
                natives.append(
                    NativeCandle(
                        symbol=symbol, day=day, closes=closes.tolist(), volumes=volumes.tolist()
                    )
                )
                start = float(closes[-1])
        t = time.perf_counter()
        Candle.batch_create(candles, db, progress=False)
        compressed_time = time.perf_counter() - t
        t = time.perf_counter()
        NativeCandle.batch_create(natives, db, progress=False)
        native_time = time.perf_counter() - t
        small, big = _size(db, "candles"), _size(db, "candles_native")
        print(
            f"compressed: {small / 1024:,.0f} KiB in {compressed_time:.2f} s; "
            f"native arrays: {big / 1024:,.0f} KiB in {native_time:.2f} s "
            f"({big / small:.1f}x more bytes)"
        )
        back = Candle.find_one(
            Filter.eq("symbol", "ETH-USD") & Filter.eq("day", candles[DAYS].day), db
        )
        assert back is not None
        exact = (
            np.array_equal(back.closes, candles[DAYS].closes) and back.closes.dtype == np.float64
        )
        print(f"read back ETH-USD {back.day}: {back.closes.size} closes, bit-exact: {exact}")

        _step("upsert corrections: half the days exist, half are new")
        fixes = [
            Candle(symbol=c.symbol, day=c.day, closes=c.closes * 1.0, volumes=c.volumes + 1)
            for c in candles[: DAYS // 2]
        ]
        for d in range(DAYS, DAYS + DAYS // 2):
            closes, volumes = _day_series(rng, 40_000.0)
            day = (START + dt.timedelta(days=d)).date()
            fixes.append(Candle(symbol="BTC-USD", day=day, closes=closes, volumes=volumes))
        upserted = Candle.batch_upsert(fixes, db, progress=False)
        print(f"{upserted}")

        _step("queries")
        btc = Filter.eq("symbol", "BTC-USD") & Filter.ge("qty", 1.0)
        print(f"BTC trades with qty >= 1: {Trade.count_where(btc, db):,}")
        volume = Trade.aggregate(Aggregate.SUM, "qty", Filter.eq("symbol", "ETH-USD"), db)
        print(f"ETH traded volume: {volume:,.2f}")
        page = Trade.list_where(
            Filter.eq("side", "buy"), [Sort.desc("price")], Pagination(2, 3), db
        )
        print(f"priciest buys, page 2 of {page.total_pages:,}: {[t.price for t in page]}")
        latest = Trade.find_latest_filter(Filter.eq("symbol", "SOL-USD"), db)
        print(f"latest SOL-USD trade created at {latest.created_at if latest else None}")

        _step("bad input is refused before any SQL runs, naming table, column and value")
        try:
            naive = dt.datetime(2024, 1, 1)  # noqa: DTZ001 - the point of this step
            Trade(symbol="BTC-USD", ts=naive, price=1, qty=1, side="buy").insert(db)
        except ValidationError as exc:
            print(f"ValidationError: {exc}")
        try:
            Instrument(symbol="ETH-USD", base="ETH", quote="USD", tick=0.01).insert(db)
        except UniqueViolationError as exc:
            print(f"UniqueViolationError on {exc.column}={exc.value}")

        _step("migrate a model change without losing a row")
        for plan in Migrations.plan(db, [migration(CandleV2)]):
            for step in plan.steps:
                print(f"plan: {step.description}")
        before = Candle.count(db)
        (migrated,) = Migrations.init(db, [migration(CandleV2)])
        print(f"{migrated.action.name}: {list(migrated.schema_changes)}")
        renamed = CandleV2.find_one(Filter.eq("ticker", "ETH-USD") & Filter.eq("day", back.day), db)
        assert renamed is not None
        same = np.array_equal(renamed.closes, back.closes)
        print(f"rows before {before}, after {CandleV2.count(db)}; ETH-USD closes unchanged: {same}")

        _step("cascade")
        sol = Instrument.find_by_id("SOL-USD", db)
        if sol is not None:
            sol.delete_cascade(db)  # trades cascade on the server; candles are deleted first
        print(f"after deleting SOL-USD: {Trade.count(db):,} trades, {CandleV2.count(db)} candles")
    print(f"\ndone in {time.perf_counter() - started:.2f} s")


if __name__ == "__main__":
    main()
