"""Partitioned tables: a 30-day load (PT1) and one-day range reads of a symbol (PT2).

Owns the two partition workloads and their tables. PT1 loads N trades spanning 30 days into a
day-partitioned table: raw psycopg COPYs into the parent with the partitions made beforehand
(untimed), orso_pg's ``batch_insert`` starts from a table without partitions and makes them on
its way. PT2 reads one symbol's day at a time (``symbol = ? AND ts`` in the day, as the range read
W4 does) from the same rows held three ways: a partitioned table, a
plain table without an index on ``ts`` (the raw baseline: what partitioning saves) and a plain
table with one (the target says partitioning is no slower than it). It must not format results.
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any

from psycopg import sql

from bench import env
from bench.harness import Target, Variant, expect
from bench.workloads.common import TradesWorkload
from orso_pg import Filter, Migrations, Orso, migration, partition, table

_DAYS = 30
_START = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
_SYMBOLS = ("BTC", "ETH", "SOL", "XRP", "ADA", "DOGE", "AVAX", "DOT")
_TYPES = ("text", "timestamptz", "float8", "int8")
_PARTED = "bench_pt_trades"
_PLAIN = "bench_pt_plain"
_INDEXED = "bench_pt_indexed"
_READ_PARTED = "bench_pt_read"


@table(
    _PARTED,
    primary_key=("symbol", "ts"),
    partition_by=partition.range("ts", every="1 day"),
)
class PartTrade(Orso):
    """A trade in a day-partitioned table."""

    symbol: str
    ts: dt.datetime
    price: float
    qty: int


@table(_PLAIN)
class PlainTrade(Orso):
    """The same trade in a plain table without a key (no index could serve a ts range)."""

    symbol: str
    ts: dt.datetime
    price: float
    qty: int


@functools.cache
def _rows(n: int) -> list[tuple[str, dt.datetime, float, int]]:
    """Return *n* trades spread evenly over 30 days (unique timestamps)."""
    step = dt.timedelta(days=_DAYS) / n
    return [
        (_SYMBOLS[i % len(_SYMBOLS)], _START + i * step, 100.0 + i % 1000 / 8, 1 + i % 7)
        for i in range(n)
    ]


def _size(quick: bool) -> int:
    return 100_000 if quick else 1_000_000


def _copy(conn: Any, name: str, rows: list[tuple[Any, ...]]) -> None:
    query = sql.SQL("COPY {} (symbol, ts, price, qty) FROM STDIN (FORMAT BINARY)").format(
        sql.Identifier(name)
    )
    env.copy_in(conn, query, _TYPES, rows)


class PartitionLoad(TradesWorkload):
    """PT1: load N trades over 30 days into a day-partitioned table, one transaction."""

    key = "PT1"
    title = "load 30 days into a partitioned table"
    target = Target(0.85, "partitioned batch_insert >= 0.85x raw COPY (partitions made for raw)")
    changes_table = True

    def setup(self) -> None:
        self.n = _size(self.quick)
        self.rows = _rows(self.n)
        self.qty = sum(r[3] for r in self.rows)
        self.env.admin.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(_PARTED)))
        Migrations.init(self.clients.db, [migration(PartTrade)])

    def units(self) -> int:
        return self.n

    def reset(self) -> None:
        # Every repetition starts from a parent without partitions.
        for info in PartTrade.partitions(self.clients.db):
            self.env.admin.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(info.name)))
        env.settle(self.env, _PARTED)

    def teardown(self) -> None:
        self.env.admin.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(_PARTED)))
        super().teardown()

    def verify(self, _variant: Variant, _result: Any) -> None:
        row = self.env.admin.execute(
            sql.SQL("SELECT count(*), sum(qty) FROM {}").format(sql.Identifier(_PARTED))
        ).fetchone()
        assert row is not None
        expect("rows and sum(qty)", (row[0], int(row[1] or 0)), (self.n, self.qty))
        expect("partitions", len(PartTrade.partitions(self.clients.db)), _DAYS)

    def variants(self) -> list[Variant]:
        rows, clients = self.rows, self.clients

        def made() -> None:
            PartTrade.create_partitions(_START, _START + dt.timedelta(days=_DAYS), clients.db)

        def raw_copy(_: None) -> None:
            conn = clients.raw
            _copy(conn, _PARTED, rows)
            conn.commit()

        def orso_batch() -> None:
            PartTrade.batch_insert(
                [PartTrade(symbol=s, ts=ts, price=p, qty=q) for s, ts, p, q in rows], clients.db
            )

        def orso_rows() -> None:
            PartTrade.batch_create_rows(rows, clients.db)

        def orso_prebuilt(models: list[PartTrade]) -> None:
            PartTrade.batch_insert(models, clients.db)

        return [
            Variant("raw", "copy_binary, partitions made first", raw_copy, prepare=made),
            Variant("orso_pg", "batch_insert, partitions on demand", orso_batch),
            Variant("orso_pg", "batch_create_rows (tuples), partitions on demand", orso_rows),
            Variant(
                "orso_pg",
                "batch_insert, models built untimed",
                orso_prebuilt,
                ref=True,
                prepare=lambda: [
                    PartTrade(symbol=s, ts=ts, price=p, qty=q) for s, ts, p, q in rows
                ],
            ),
        ]


class PartitionRead(TradesWorkload):
    """PT2: read each of the 30 days, one range read at a time, into objects."""

    key = "PT2"
    title = "one-day range reads of a symbol: partitioned vs plain tables"
    target = Target(3.0, "partitioned one-day read >= 3x a plain table without a ts index")
    note = (
        "The raw baseline reads a plain table without an index on ts. The plain table with a "
        "ts index (ref) is what the partitioned read must not be slower than."
    )
    reps = 5

    def setup(self) -> None:
        self.n = _size(self.quick)
        rows = _rows(self.n)
        admin = self.env.admin
        for name in (_READ_PARTED, _PLAIN, _INDEXED):
            admin.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))
        db = self.clients.db
        Migrations.init(
            db,
            [
                migration(PartTrade, _READ_PARTED),
                migration(PlainTrade),
                migration(PlainTrade, _INDEXED),
            ],
        )
        admin.execute(sql.SQL("CREATE INDEX ON {} (ts)").format(sql.Identifier(_INDEXED)))
        PartTrade.create_partitions_with_table(
            _START, _START + dt.timedelta(days=_DAYS), db, _READ_PARTED
        )
        with self.env.connect() as conn:
            for name in (_READ_PARTED, _PLAIN, _INDEXED):
                _copy(conn, name, rows)
        env.settle(self.env, _READ_PARTED, _PLAIN, _INDEXED)
        self.reads = [
            (_SYMBOLS[d % len(_SYMBOLS)], _START + dt.timedelta(days=d)) for d in range(_DAYS)
        ]
        per_read: dict[tuple[str, dt.datetime], list[int]] = {q: [0, 0] for q in self.reads}
        for symbol, ts, _p, qty in rows:
            found = per_read.get((symbol, ts.replace(hour=0, minute=0, second=0, microsecond=0)))
            if found is not None:
                found[0] += 1
                found[1] += qty
        self.expected = [tuple(per_read[q]) for q in self.reads]

    def units(self) -> int:
        return sum(n for n, _ in self.expected)

    def teardown(self) -> None:
        for name in (_READ_PARTED, _PLAIN, _INDEXED):
            self.env.admin.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))
        super().teardown()

    def verify(self, _variant: Variant, result: Any) -> None:
        got = [
            (len(rows), sum(r[3] if isinstance(r, tuple) else r.qty for r in rows))
            for rows in result
        ]
        expect("rows and sum(qty) per read", got, self.expected)

    def variants(self) -> list[Variant]:
        clients, reads = self.clients, self.reads
        day = dt.timedelta(days=1)

        def raw(name: str) -> list[list[Any]]:
            conn = clients.raw
            query = sql.SQL(
                "SELECT symbol, ts, price, qty FROM {} WHERE symbol = %s AND ts >= %s AND ts < %s"
            ).format(sql.Identifier(name))
            cur = conn.cursor(binary=True)
            out = [cur.execute(query, (s, d, d + day), prepare=True).fetchall() for s, d in reads]
            conn.commit()
            return out

        def orso(model: type[Orso], name: str | None) -> list[list[Any]]:
            db = clients.db
            table_name = name if name is not None else model.table_name()
            return [
                model.find_where_with_table(
                    Filter.eq("symbol", s) & Filter.ge("ts", d) & Filter.lt("ts", d + day),
                    db,
                    table_name,
                )
                for s, d in reads
            ]

        return [
            Variant("raw", "plain table, no index on ts", functools.partial(raw, _PLAIN)),
            Variant("raw", "plain table, index on ts", functools.partial(raw, _INDEXED), ref=True),
            Variant("raw", "partitioned", functools.partial(raw, _READ_PARTED), ref=True),
            Variant(
                "orso_pg",
                "find_where, partitioned",
                functools.partial(orso, PartTrade, _READ_PARTED),
            ),
            Variant(
                "orso_pg",
                "find_where, plain table with an index on ts",
                functools.partial(orso, PlainTrade, _INDEXED),
                ref=True,
            ),
            Variant(
                "orso_pg",
                "find_where, plain table without one",
                functools.partial(orso, PlainTrade, None),
                ref=True,
            ),
        ]
