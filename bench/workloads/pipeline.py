"""Pipelined operations (PL1, PL2, ETL) and single-operation latencies through the pool (LAT*).

Owns each variant's work: raw psycopg in pipeline mode (the floor), orso_pg's ``db.pipeline()``
in both modes, the same orso_pg calls made one at a time, and, for the latency workloads, one
call per operation through psycopg_pool and through a ``Database`` (p50 and p99 per call come
from the harness). It must not format results.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import psycopg

from bench import data
from bench.harness import PerOp, Target, Variant, expect
from bench.models import Trade, TradeRow
from bench.workloads.calls import _SELECT, _Lookups
from bench.workloads.common import TradesWorkload, new_qty
from orso_pg import (
    Aggregate,
    Database,
    Filter,
    Orso,
    Pipeline,
    QueryBuilder,
    Sort,
    Transaction,
    column,
    table,
)

_UPDATE_ROW = (
    "UPDATE trades SET symbol = %s, ts = %s, price = %s, qty = %s, side = %s, meta = %s "
    "WHERE id = %s RETURNING id, symbol, ts, price, qty, side, meta"
)
_UPDATE_QTY = "UPDATE trades SET qty = %s WHERE id = %s"
_INSERT_ROW = (
    "INSERT INTO trades (symbol, ts, price, qty, side, meta) VALUES (%s, %s, %s, %s, %s, %s) "
    "RETURNING id, symbol, ts, price, qty, side, meta"
)
#: Statements a raw pipeline sends before it waits (orso_pg's default ``max_pending``).
_BATCH = 1000

Session = Database | Transaction

SECTORS = {"AAPL": "tech", "MSFT": "tech", "GOOG": "media", "AMZN": "retail", "NVDA": "chips"}


@table("bench_instruments")
class Instrument(Orso):
    """The symbols' reference data, joined by the complex query (LATQ)."""

    symbol: str = column(primary_key=True)
    sector: str


def _qty(trade: Trade | None) -> int:
    """The qty of a row the workload looked up."""
    assert trade is not None  # every id it asks for has a row
    return trade.qty


def _raw_pipeline(
    conn: psycopg.Connection[Any],
    inputs: Sequence[Any],
    send: Callable[[psycopg.Cursor[Any], Any], None],
    read: Callable[[psycopg.Cursor[Any]], int],
    *,
    sync_each: bool = False,
    reuse: bool = False,
) -> int:
    """Send one statement per input in pipeline mode, waiting every :data:`_BATCH`.

    A cursor per statement, as psycopg's documentation writes it; with *reuse*, the cursors
    of the previous batch are sent again (as orso_pg does).
    """
    total = 0
    spare: list[psycopg.Cursor[Any]] = []
    with conn.pipeline() as p:
        pending: list[psycopg.Cursor[Any]] = []
        for item in inputs:
            cur = spare.pop() if spare else conn.cursor(binary=True)
            send(cur, item)
            if sync_each:
                p._enqueue_sync()
            pending.append(cur)
            if len(pending) >= _BATCH:
                p.sync()
                total += sum(map(read, pending))
                if reuse:
                    spare.extend(pending)
                pending = []
        p.sync()
        total += sum(map(read, pending))
    return total


def _row_qty(cur: psycopg.Cursor[Any]) -> int:
    return TradeRow(*cur.fetchone()).qty  # type: ignore[misc]


class _Pipelined(TradesWorkload):
    """Many calls per repetition, on distinct random ids."""

    unit = "ops/s"
    salt = 10

    def calls(self) -> int:
        """Return the calls of a repetition: five times the per-call workloads'."""
        return self.size.lookups * 5

    def setup(self) -> None:
        super().setup()
        self.ids = data.sample_ids(self.data.n, self.calls(), salt=self.salt)
        self.load()

    def units(self) -> int:
        return len(self.ids)

    def raw_conn(self) -> psycopg.Connection[Any]:
        """An autocommit psycopg connection of this workload's own (closed with the clients)."""
        conn = self.env.connect(autocommit=True)
        self.clients._closers.append(conn.close)
        return conn


class PipelinedLookups(_Pipelined):
    """PL1: look up rows by primary key, sent in pipeline mode."""

    key = "PL1"
    title = "key lookups in a pipeline"
    target = Target(0.8, "pipelined find_by_id >= 0.8x raw psycopg pipeline mode")
    goal = ">= 50,000 lookups/s"

    def verify(self, _variant: Variant, result: Any) -> None:
        expect("sum of qty looked up", result, self.data.qty_sum(self.ids))

    def variants(self) -> list[Variant]:
        ids = self.ids
        db = self.clients.db
        conn = self.raw_conn()

        def send(cur: psycopg.Cursor[Any], i: int) -> None:
            cur.execute(_SELECT, (i,), prepare=True)

        def raw(*, sync_each: bool = False, reuse: bool = False) -> Callable[[], int]:
            return lambda: _raw_pipeline(
                conn, ids, send, _row_qty, sync_each=sync_each, reuse=reuse
            )

        def orso(*, transaction: bool) -> Callable[[], int]:
            def run() -> int:
                total = 0
                with db.pipeline(transaction=transaction, max_pending=_BATCH) as p:
                    # As the raw variant: a batch is sent, then its results are read.
                    for start in range(0, len(ids), _BATCH):
                        found = [Trade.find_by_id(i, p) for i in ids[start : start + _BATCH]]
                        total += sum(_qty(h.result()) for h in found)
                return total

            return run

        def one_at_a_time() -> int:
            return sum(_qty(Trade.find_by_id(i, db)) for i in ids)

        return [
            Variant("raw", "pipeline", raw(sync_each=False)),
            Variant("raw", "pipeline, a sync per statement", raw(sync_each=True), ref=True),
            Variant("raw", "pipeline, cursors reused", raw(reuse=True), ref=True),
            Variant("orso_pg", "find_by_id (pipeline)", orso(transaction=False)),
            Variant("orso_pg", "find_by_id (pipeline, transaction)", orso(transaction=True)),
            Variant("orso_pg", "find_by_id (Database, one at a time)", one_at_a_time, ref=True),
        ]


class PipelinedUpdates(_Pipelined):
    """PL2: update one row per call (a new qty), sent in pipeline mode."""

    key = "PL2"
    title = "single-row updates in a pipeline"
    target = Target(0.8, "pipelined update >= 0.8x raw pipelined updates")
    note = "orso_pg's update writes every column and returns the row, as raw's baseline does."
    salt = 11
    changes_table = True

    def setup(self) -> None:
        super().setup()
        self.expect_new_qty(self.ids)

    def verify(self, _variant: Variant, _result: Any) -> None:
        self.check_new_qty()

    def variants(self) -> list[Variant]:
        ids, rows = self.ids, self.data.rows
        db = self.clients.db
        conn = self.raw_conn()

        def send_row(cur: psycopg.Cursor[Any], i: int) -> None:
            s, ts, p, _, side, m = rows[i - 1]
            cur.execute(_UPDATE_ROW, (s, ts, p, new_qty(i), side, _json(m), i), prepare=True)

        def send_qty(cur: psycopg.Cursor[Any], i: int) -> None:
            cur.execute(_UPDATE_QTY, (new_qty(i), i), prepare=True)

        def raw_transaction(
            send: Callable[[psycopg.Cursor[Any], int], None], read: Callable[[Any], int]
        ) -> Callable[[], int]:
            def run() -> int:
                with conn.transaction():
                    return _raw_pipeline(conn, ids, send, read)

            return run

        def returned(cur: psycopg.Cursor[Any]) -> int:
            cur.fetchone()  # the returned row, as W5's raw variant reads it
            return 0

        def trade(i: int) -> Trade:
            s, ts, p, _, side, m = rows[i - 1]
            return Trade(id=i, symbol=s, ts=ts, price=p, qty=new_qty(i), side=side, meta=m)

        def orso(*, transaction: bool) -> Callable[[], int]:
            def run() -> int:
                with db.pipeline(transaction=transaction) as p:
                    for i in ids:
                        trade(i).update(p)
                return 0

            return run

        def orso_update_where() -> int:
            with db.pipeline(transaction=True) as p:
                for i in ids:
                    Trade.update_where(Filter.eq("id", i), {"qty": new_qty(i)}, p)
            return 0

        return [
            Variant("raw", "pipeline_full_row_returning", raw_transaction(send_row, returned)),
            Variant("raw", "pipeline_qty", raw_transaction(send_qty, lambda _cur: 0), ref=True),
            Variant("orso_pg", "update (pipeline, transaction)", orso(transaction=True)),
            Variant("orso_pg", "update (pipeline)", orso(transaction=False)),
            Variant("orso_pg", "update_where (pipeline, transaction)", orso_update_where),
        ]


def _json(value: Any) -> Any:
    return None if value is None else psycopg.types.json.Jsonb(value)


class PipelinedEtl(_Pipelined):
    """ETL: per input row, look the row up, then write it back changed (lookup + write)."""

    key = "ETL"
    title = "ETL, a lookup and a write per row"
    unit = "rows/s"
    goal = "pipeline >= 3x one call at a time"
    note = (
        "Every variant runs the same orso_pg calls (the pipelines read a chunk of rows, then "
        "write it); in autocommit each write is a commit of its own, which the server's "
        "fsync bounds however the calls are sent."
    )
    salt = 12
    changes_table = True

    def calls(self) -> int:
        return self.size.lookups * 2

    def setup(self) -> None:
        super().setup()
        self.expect_new_qty(self.ids)

    def verify(self, _variant: Variant, _result: Any) -> None:
        self.check_new_qty()

    def variants(self) -> list[Variant]:
        ids = self.ids
        db = self.clients.db

        def one_at_a_time(s: Session) -> None:
            for i in ids:
                trade = Trade.find_by_id(i, s)
                assert trade is not None
                trade.qty = new_qty(i)
                trade.update(s)

        def pipelined(p: Pipeline) -> None:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                found = [Trade.find_by_id(i, p) for i in chunk]
                for i, handle in zip(chunk, found, strict=True):
                    trade = handle.result()
                    assert trade is not None
                    trade.qty = new_qty(i)
                    trade.update(p)

        def in_transaction() -> int:
            with db.transaction() as tx:
                one_at_a_time(tx)
            return 0

        def autocommit() -> int:
            one_at_a_time(db)
            return 0

        def pipeline_transaction() -> int:
            with db.pipeline(transaction=True) as p:
                pipelined(p)
            return 0

        def pipeline_autocommit() -> int:
            with db.pipeline() as p:
                pipelined(p)
            return 0

        def pipeline_async_commit() -> int:
            with db.pipeline(synchronous_commit=False) as p:
                pipelined(p)
            return 0

        def pipeline_in_transaction() -> int:
            with db.transaction() as tx, tx.pipeline() as p:
                pipelined(p)
            return 0

        return [
            Variant("orso_pg", "one call at a time (transaction)", in_transaction, ref=True),
            Variant("orso_pg", "pipeline (transaction)", pipeline_transaction),
            Variant("orso_pg", "one call at a time (Database)", autocommit, ref=True),
            Variant("orso_pg", "pipeline (autocommit)", pipeline_autocommit),
            Variant(
                "orso_pg",
                "pipeline (autocommit, synchronous_commit=False)",
                pipeline_async_commit,
            ),
            Variant("orso_pg", "tx.pipeline() in a transaction", pipeline_in_transaction),
        ]


# --- latencies through the pool ---------------------------------------------------------------


class _Latency(_Lookups):
    """One operation per call through a pool (a checkout per call): p50 and p99 per call."""

    goal = "p99 < 5 ms"
    salt = 20


class LatencyLookup(_Latency):
    """LATL: one key lookup per call through the pool."""

    key = "LATL"
    title = "latency: a key lookup through the pool"

    def variants(self) -> list[Variant]:
        pool, db = self.clients.raw_pool, self.clients.db

        def raw() -> PerOp:
            def call(i: int) -> int:
                with pool.connection() as conn:
                    cur = conn.cursor(binary=True)
                    return TradeRow(*cur.execute(_SELECT, (i,), prepare=True).fetchone()).qty  # type: ignore[misc]

            return PerOp(call)

        def orso() -> PerOp:
            return PerOp(lambda i: Trade.find_by_id(i, db).qty)  # type: ignore[union-attr]

        def orso_held() -> PerOp:
            block = db.hold()
            held = block.__enter__()
            return PerOp(
                lambda i: Trade.find_by_id(i, held).qty,  # type: ignore[union-attr]
                close=lambda: block.__exit__(None, None, None),
            )

        return [
            Variant("raw", "pool_per_op", raw, "per_op"),
            Variant("orso_pg", "find_by_id (Database)", orso, "per_op"),
            Variant("orso_pg", "find_by_id (db.hold(), no checkout per call)", orso_held, "per_op"),
        ]


class LatencyUpdate(_Latency):
    """LATU: one single-row update per call through the pool (autocommit)."""

    key = "LATU"
    title = "latency: a single-row update through the pool"
    salt = 21
    changes_table = True

    def setup(self) -> None:
        super().setup()
        self.expect_new_qty(self.warm + self.ids)

    def verify(self, _variant: Variant, _result: Any) -> None:
        self.check_new_qty()

    def variants(self) -> list[Variant]:
        pool, db, rows = self.clients.raw_pool, self.clients.db, self.data.rows

        def raw() -> PerOp:
            def call(i: int) -> int:
                s, ts, p, _, side, m = rows[i - 1]
                with pool.connection() as conn:
                    cur = conn.cursor(binary=True)
                    cur.execute(_UPDATE_ROW, (s, ts, p, new_qty(i), side, _json(m), i))
                    cur.fetchone()
                return 0

            return PerOp(call)

        def orso() -> PerOp:
            def call(i: int) -> int:
                s, ts, p, _, side, m = rows[i - 1]
                Trade(id=i, symbol=s, ts=ts, price=p, qty=new_qty(i), side=side, meta=m).update(db)
                return 0

            return PerOp(call)

        return [
            Variant("raw", "pool_per_op_full_row_returning", raw, "per_op"),
            Variant("orso_pg", "update (Database)", orso, "per_op"),
        ]


class LatencyInsert(_Latency):
    """LATI: one single-row insert per call through the pool (autocommit)."""

    key = "LATI"
    title = "latency: a single-row insert through the pool"
    salt = 22
    changes_table = True

    def verify(self, _variant: Variant, _result: Any) -> None:
        n = self.data.n + len(self.warm) + len(self.ids)
        qty = self.data.qty_total + self.data.qty_sum(self.warm) + self.data.qty_sum(self.ids)
        self.check_table(n, qty)

    def variants(self) -> list[Variant]:
        pool, db, rows = self.clients.raw_pool, self.clients.db, self.data.rows

        def raw() -> PerOp:
            def call(i: int) -> int:
                s, ts, p, q, side, m = rows[i - 1]
                with pool.connection() as conn:
                    cur = conn.cursor(binary=True)
                    cur.execute(_INSERT_ROW, (s, ts, p, q, side, _json(m)))
                    cur.fetchone()
                return 0

            return PerOp(call)

        def orso() -> PerOp:
            def call(i: int) -> int:
                s, ts, p, q, side, m = rows[i - 1]
                Trade(symbol=s, ts=ts, price=p, qty=q, side=side, meta=m).insert(db)
                return 0

            return PerOp(call)

        return [
            Variant("raw", "pool_per_op_returning", raw, "per_op"),
            Variant("orso_pg", "insert (Database)", orso, "per_op"),
        ]


_COMPLEX = (
    "SELECT bench_instruments.sector, count(*) AS trades, sum(trades.qty) AS volume, "
    "avg(trades.price) AS avg_price FROM trades "
    "JOIN bench_instruments ON trades.symbol = bench_instruments.symbol "
    "WHERE trades.side = %s AND trades.qty > %s "
    "GROUP BY bench_instruments.sector ORDER BY volume DESC"
)


class LatencyComplex(_Latency):
    """LATQ: a join with a filter, a group and an order over the whole trades table."""

    key = "LATQ"
    title = "latency: join + filter + group + order over the table"
    goal = "p99 < 50 ms"
    salt = 23

    def calls(self) -> int:
        return max(20, self.size.lookups // 50)

    def setup(self) -> None:
        super().setup()
        self.env.admin.execute(
            "CREATE TABLE IF NOT EXISTS bench_instruments "
            "(symbol text PRIMARY KEY, sector text NOT NULL)"
        )
        self.env.admin.execute("TRUNCATE bench_instruments")
        with self.env.admin.cursor() as cur:
            cur.executemany("INSERT INTO bench_instruments VALUES (%s, %s)", SECTORS.items())
        self.env.admin.execute("ANALYZE bench_instruments")

        volume = [0] * 1001  # volume[q]: sum of qty over buys with qty == q
        for row in self.data.rows:
            if row[4] == "B":
                volume[row[3]] += row[3]
        above = [sum(volume[t + 1 :]) for t in range(500)]
        self.expected = sum(above[i % 500] for i in self.ids)

    def verify(self, _variant: Variant, result: Any) -> None:
        expect("sum of volumes", result, self.expected)

    def variants(self) -> list[Variant]:
        pool, db = self.clients.raw_pool, self.clients.db

        def raw() -> PerOp:
            def call(i: int) -> int:
                with pool.connection() as conn:
                    rows = conn.execute(_COMPLEX, ("B", i % 500), prepare=True).fetchall()
                return int(sum(r[2] for r in rows))

            return PerOp(call)

        def orso() -> PerOp:
            base = (
                QueryBuilder(Trade)
                .join(Instrument, ("symbol", "symbol"))
                .select("bench_instruments.sector")
                .aggregate(Aggregate.COUNT, "*", "trades")
                .aggregate(Aggregate.SUM, "qty", "volume")
                .aggregate(Aggregate.AVG, "price", "avg_price")
                .group_by("bench_instruments.sector")
                .order_by(Sort.desc("volume"))
            )

            def call(i: int) -> int:
                query = base.where(Filter.eq("side", "B") & Filter.gt("qty", i % 500))
                return int(sum(r[2] for r in query.fetch(db)))

            return PerOp(call)

        return [
            Variant("raw", "pool_per_op", raw, "per_op"),
            Variant("orso_pg", "QueryBuilder.fetch (Database)", orso, "per_op"),
        ]
