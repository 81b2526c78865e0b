"""Read workloads: a filtered range read into objects (W4), ``find_by_ids``, aggregates, pages.

Owns each read's variants: raw psycopg (binary rows into a slotted attrs class built
positionally, the fastest way to get objects, which is the baseline), orso_pg's finders, and
SQLAlchemy Core and ORM. The table is loaded once and left untouched by these workloads, so
they share it. Expected results come from the generated data, never from a library. It must not
format results.
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
from collections.abc import Sequence
from typing import Any

from psycopg.rows import class_row
from sqlalchemy import BigInteger, and_, any_, bindparam, func, select
from sqlalchemy.dialects.postgresql import ARRAY

from bench import data
from bench.harness import PerOp, Target, Variant, expect
from bench.models import Trade, TradeORM, TradeRow, trades_core
from bench.workloads.common import TradesWorkload
from orso_pg import Aggregate, Filter, Pagination, QueryBuilder, Sort

_RANGE = (
    "SELECT id, symbol, ts, price, qty, side, meta FROM trades "
    "WHERE symbol = %s AND ts BETWEEN %s AND %s ORDER BY ts"
)
_BY_IDS = "SELECT id, symbol, ts, price, qty, side, meta FROM trades WHERE id = ANY(%s)"
_SUM = "SELECT sum(qty) FROM trades WHERE symbol = %s AND ts BETWEEN %s AND %s"
_COUNT = "SELECT count(*) FROM trades WHERE symbol = %s AND ts BETWEEN %s AND %s"
_PAGE = (
    "SELECT id, symbol, ts, price, qty, side, meta FROM trades "
    "WHERE symbol = %s AND ts BETWEEN %s AND %s ORDER BY ts, id LIMIT %s OFFSET %s"
)
# The total joined laterally to the page: one statement, so one snapshot without a transaction.
_PAGE_WITH_TOTAL = (
    "SELECT c.total, p.* FROM (SELECT count(*) AS total FROM trades "
    "WHERE symbol = %s AND ts BETWEEN %s AND %s) AS c LEFT JOIN LATERAL ("
    "SELECT TRUE AS present, id, symbol, ts, price, qty, side, meta FROM trades "
    "WHERE symbol = %s AND ts BETWEEN %s AND %s ORDER BY ts, id LIMIT %s OFFSET %s) AS p ON TRUE"
)
_READS_MODELS = Target(0.6, "reads into models >= 0.6x raw psycopg building attrs objects")


def _qty(row: Any) -> int:
    return row[4] if type(row) is tuple else row.qty  # type: ignore[no-any-return]


def _ts(row: Any) -> dt.datetime:
    return row[2] if type(row) is tuple else row.ts  # type: ignore[no-any-return]


def _sa_range(c: Any) -> Any:
    return and_(c.symbol == bindparam("symbol"), c.ts.between(bindparam("low"), bindparam("high")))


class _Reads(TradesWorkload):
    """A read-only workload on the loaded table."""

    def setup(self) -> None:
        super().setup()
        self.load()
        by_symbol: dict[str, list[tuple[dt.datetime, int]]] = {s: [] for s in data.SYMBOLS}
        for s, ts, _p, qty, _side, _m in self.data.rows:
            by_symbol[s].append((ts, qty))
        self._times: dict[str, list[dt.datetime]] = {}
        self._sums: dict[str, list[int]] = {}
        for s, items in by_symbol.items():
            items.sort()
            self._times[s] = [t for t, _ in items]
            running = [0]
            for _, qty in items:
                running.append(running[-1] + qty)
            self._sums[s] = running

    def window(self, symbol: str, low: dt.datetime, high: dt.datetime) -> tuple[int, int]:
        """Return ``(rows, sum of qty)`` of *symbol* with ``low <= ts <= high``, from the data."""
        times, sums = self._times[symbol], self._sums[symbol]
        a, b = bisect.bisect_left(times, low), bisect.bisect_right(times, high)
        return b - a, sums[b] - sums[a]


def _range_filter(symbol: str, low: dt.datetime, high: dt.datetime) -> Filter:
    return Filter.eq("symbol", symbol) & Filter.between("ts", low, high)


class RangeRead(_Reads):
    """W4: ``symbol = ? AND ts BETWEEN ? AND ? ORDER BY ts``, every row into an object."""

    key = "W4"
    title = "filtered range read into objects"
    target = _READS_MODELS
    reps = 5
    note = "find_where takes no order: it skips the ORDER BY, so it is a reference only."

    def setup(self) -> None:
        super().setup()
        low, high = data.START, data.START + dt.timedelta(days=15)
        self.queries = [
            (data.SYMBOLS[j % len(data.SYMBOLS)], low, high) for j in range(self.size.reads)
        ]
        self.expected = [self.window(*q) for q in self.queries]

    def units(self) -> int:
        return sum(n for n, _ in self.expected)

    def verify(self, variant: Variant, result: Any) -> None:
        got = [(len(rows), sum(map(_qty, rows))) for rows in result]
        expect("rows and sum(qty) per read", got, self.expected)
        if not variant.ref:  # what counts for the baseline and the target is read in ts order
            times = [[_ts(row) for row in rows] for rows in result]
            expect("reads in ts order", times, [sorted(t) for t in times])

    def variants(self) -> list[Variant]:
        clients, queries = self.clients, self.queries

        def raw(mode: str) -> list[list[Any]]:
            conn = clients.raw
            if mode == "class_row":
                cur: Any = conn.cursor(binary=True, row_factory=class_row(Trade))
            else:
                cur = conn.cursor(binary=True)
            out = []
            for q in queries:
                rows = cur.execute(_RANGE, q, prepare=True).fetchall()
                out.append([TradeRow(*r) for r in rows] if mode == "attrs" else rows)
            conn.commit()
            return out

        def orso_find_where() -> list[list[Any]]:
            db = clients.db
            return [Trade.find_where(_range_filter(*q), db) for q in queries]

        def orso_query() -> list[list[Any]]:
            db = clients.db
            return [
                Trade.query(
                    QueryBuilder(Trade).where(_range_filter(*q)).order_by(Sort.asc("ts")), db
                )
                for q in queries
            ]

        def core() -> list[list[Any]]:
            stmt = select(trades_core).where(_sa_range(trades_core.c)).order_by(trades_core.c.ts)
            with clients.engine.connect() as conn:
                return [
                    list(conn.execute(stmt, {"symbol": s, "low": lo, "high": hi}).all())
                    for s, lo, hi in queries
                ]

        def orm() -> list[list[Any]]:
            stmt = select(TradeORM).where(_sa_range(TradeORM)).order_by(TradeORM.ts)
            out = []
            for s, lo, hi in queries:
                # A session per read, so no identity map serves a row loaded by an earlier read.
                with clients.sessions() as session:
                    out.append(
                        list(session.scalars(stmt, {"symbol": s, "low": lo, "high": hi}).all())
                    )
            return out

        return [
            Variant("raw", "tuples_binary", lambda: raw("tuples"), ref=True),
            Variant("raw", "attrs_positional", lambda: raw("attrs")),
            Variant("raw", "class_row (orso_pg's class)", lambda: raw("class_row")),
            Variant("orso_pg", "find_where (unordered)", orso_find_where, ref=True),
            Variant("orso_pg", "query (QueryBuilder, ordered)", orso_query),
            Variant("sqlalchemy_core", "rows", core),
            Variant("sqlalchemy_orm", "objects", orm),
        ]


class FindByIds(_Reads):
    """``find_by_ids``: calls of 100 random ids each, every row into an object."""

    key = "IDS"
    title = "find_by_ids, 100 ids per call"
    target = _READS_MODELS
    per_call = 100
    warm_calls = 20

    def setup(self) -> None:
        super().setup()
        count = (self.size.batches + self.warm_calls) * self.per_call
        ids = data.sample_ids(self.data.n, min(count, self.data.n), salt=5)
        chunks = [ids[i : i + self.per_call] for i in range(0, len(ids), self.per_call)]
        self.warm, self.batches = chunks[: self.warm_calls], chunks[self.warm_calls :]

    def units(self) -> int:
        return sum(map(len, self.batches))

    def inputs(self) -> Sequence[Any]:
        return self.batches

    def warmup_inputs(self) -> Sequence[Any]:
        return self.warm

    def verify(self, _variant: Variant, result: Any) -> None:
        expect("sum of qty", result, sum(self.data.qty_sum(b) for b in self.batches))

    def variants(self) -> list[Variant]:
        clients = self.clients

        def raw(*, objects: bool) -> PerOp:
            conn = clients.raw
            cur = conn.cursor(binary=True)

            def call(ids: list[int]) -> int:
                rows = cur.execute(_BY_IDS, (ids,), prepare=True).fetchall()
                if objects:
                    return sum(o.qty for o in [TradeRow(*r) for r in rows])
                return sum(r[4] for r in rows)

            return PerOp(call, finish=conn.commit)

        def orso_ids() -> PerOp:
            db = clients.db
            return PerOp(lambda ids: sum(o.qty for o in Trade.find_by_ids(ids, db)))

        def core() -> PerOp:
            stmt = select(trades_core).where(
                trades_core.c.id == any_(bindparam("ids", type_=ARRAY(BigInteger)))
            )
            conn = clients.engine.connect()
            return PerOp(
                lambda ids: sum(r.qty for r in conn.execute(stmt, {"ids": ids}).all()),
                finish=conn.commit,
                close=conn.close,
            )

        def orm() -> PerOp:
            sessions = clients.sessions

            def call(ids: list[int]) -> int:
                with sessions() as session:
                    found = session.scalars(select(TradeORM).where(TradeORM.id.in_(ids))).all()
                    return sum(o.qty for o in found)

            return PerOp(call)

        return [
            Variant("raw", "any_array_tuples", lambda: raw(objects=False), "per_op", ref=True),
            Variant("raw", "any_array_attrs", lambda: raw(objects=True), "per_op"),
            Variant("orso_pg", "find_by_ids", orso_ids, "per_op"),
            Variant("sqlalchemy_core", "any_array_rows", core, "per_op"),
            Variant("sqlalchemy_orm", "in_objects", orm, "per_op"),
        ]


class Aggregates(_Reads):
    """``SUM(qty)`` over one symbol and one day, one call each, a different window per call."""

    key = "AGG"
    title = "aggregates: sum(qty) over a filter, one per call"
    unit = "ops/s"

    def setup(self) -> None:
        super().setup()
        calls = self.size.batches * 2
        windows = []
        for k in range(calls + 20):
            low = data.START + dt.timedelta(hours=(k * 7) % (24 * 29))
            windows.append((data.SYMBOLS[k % len(data.SYMBOLS)], low, low + dt.timedelta(days=1)))
        self.warm, self.windows = windows[:20], windows[20:]

    def units(self) -> int:
        return len(self.windows)

    def inputs(self) -> Sequence[Any]:
        return self.windows

    def warmup_inputs(self) -> Sequence[Any]:
        return self.warm

    def verify(self, _variant: Variant, result: Any) -> None:
        expect("sum of sums", result, sum(self.window(*w)[1] for w in self.windows))

    def variants(self) -> list[Variant]:
        clients = self.clients

        def raw() -> PerOp:
            conn = clients.raw
            cur = conn.cursor(binary=True)
            return PerOp(
                lambda w: int(cur.execute(_SUM, w, prepare=True).fetchone()[0] or 0),  # type: ignore[index]
                finish=conn.commit,
            )

        def orso_aggregate() -> PerOp:
            db = clients.db
            return PerOp(
                lambda w: Trade.aggregate(Aggregate.SUM, "qty", _range_filter(*w), db) or 0
            )

        def orso_aggregate_tx() -> PerOp:
            tx, end = clients.transaction()
            return PerOp(
                lambda w: Trade.aggregate(Aggregate.SUM, "qty", _range_filter(*w), tx) or 0,
                finish=end,
                close=end,
            )

        def core() -> PerOp:
            stmt = select(func.sum(trades_core.c.qty)).where(_sa_range(trades_core.c))
            conn = clients.engine.connect()
            return PerOp(
                lambda w: int(
                    conn.execute(stmt, {"symbol": w[0], "low": w[1], "high": w[2]}).scalar() or 0
                ),
                finish=conn.commit,
                close=conn.close,
            )

        def orm() -> PerOp:
            session = clients.sessions()

            def call(w: tuple[str, dt.datetime, dt.datetime]) -> int:
                stmt = select(func.sum(TradeORM.qty)).where(
                    TradeORM.symbol == w[0], TradeORM.ts.between(w[1], w[2])
                )
                return int(session.scalar(stmt) or 0)

            return PerOp(call, finish=session.commit, close=session.close)

        return [
            Variant("raw", "prepared", raw, "per_op"),
            Variant("orso_pg", "aggregate(SUM) (Database)", orso_aggregate, "per_op"),
            Variant("orso_pg", "aggregate(SUM) (transaction)", orso_aggregate_tx, "per_op"),
            Variant("sqlalchemy_core", "select_sum", core, "per_op"),
            Variant("sqlalchemy_orm", "session_scalar", orm, "per_op"),
        ]


class Pages(_Reads):
    """Offset pagination: every page of 50 of a filtered, ordered result, with its total."""

    key = "PAGE"
    title = "paginated listing, 50 per page with the total"
    unit = "ops/s"
    per_page = 50

    def setup(self) -> None:
        super().setup()
        self.filter = ("AAPL", data.START, data.START + dt.timedelta(days=15))
        self.rows, self.qty = self.window(*self.filter)
        self.pages = list(range(1, math.ceil(self.rows / self.per_page) + 1))

    def units(self) -> int:
        return len(self.pages)

    def inputs(self) -> Sequence[Any]:
        return self.pages

    def warmup_inputs(self) -> Sequence[Any]:
        return self.pages[:10]

    def verify(self, _variant: Variant, result: Any) -> None:
        expect("sum of qty over every page", result, self.qty)

    def variants(self) -> list[Variant]:
        clients, where, per_page, total = self.clients, self.filter, self.per_page, self.rows

        def raw_one() -> PerOp:
            conn = clients.raw
            cur = conn.cursor(binary=True)

            def call(page: int) -> int:
                params = (*where, *where, per_page, (page - 1) * per_page)
                rows = cur.execute(_PAGE_WITH_TOTAL, params, prepare=True).fetchall()
                expect("total", rows[0][0], total)
                return sum(o.qty for o in [TradeRow(*r[2:]) for r in rows if r[1] is not None])

            return PerOp(call, finish=conn.commit)

        def raw_two() -> PerOp:
            conn = clients.raw
            cur = conn.cursor(binary=True)

            def call(page: int) -> int:
                expect("total", cur.execute(_COUNT, where, prepare=True).fetchone()[0], total)  # type: ignore[index]
                params = (*where, per_page, (page - 1) * per_page)
                rows = cur.execute(_PAGE, params, prepare=True).fetchall()
                return sum(o.qty for o in [TradeRow(*r) for r in rows])

            return PerOp(call, finish=conn.commit)

        def raw_pipeline() -> PerOp:
            conn = clients.raw
            counter, pager = conn.cursor(binary=True), conn.cursor(binary=True)

            def call(page: int) -> int:
                with conn.pipeline():
                    counter.execute(_COUNT, where, prepare=True)
                    params = (*where, per_page, (page - 1) * per_page)
                    pager.execute(_PAGE, params, prepare=True)
                expect("total", counter.fetchone()[0], total)  # type: ignore[index]
                return sum(o.qty for o in [TradeRow(*r) for r in pager.fetchall()])

            return PerOp(call, finish=conn.commit)

        def orso_list() -> PerOp:
            db = clients.db
            f = _range_filter(*where)
            sorts = [Sort.asc("ts")]

            def call(page: int) -> int:
                result = Trade.list_where(f, sorts, Pagination(page, per_page), db)
                expect("total", result.pagination.total, total)
                return sum(o.qty for o in result.data)

            return PerOp(call)

        params = {"symbol": where[0], "low": where[1], "high": where[2]}

        def core() -> PerOp:
            c = trades_core.c
            count = select(func.count()).select_from(trades_core).where(_sa_range(c))
            page_stmt = (
                select(trades_core)
                .where(_sa_range(c))
                .order_by(c.ts, c.id)
                .limit(bindparam("lim"))
                .offset(bindparam("off"))
            )
            conn = clients.engine.connect()

            def call(page: int) -> int:
                expect("total", conn.execute(count, params).scalar(), total)
                rows = conn.execute(
                    page_stmt, {**params, "lim": per_page, "off": (page - 1) * per_page}
                ).all()
                return sum(r.qty for r in rows)

            return PerOp(call, finish=conn.commit, close=conn.close)

        def orm() -> PerOp:
            sessions = clients.sessions

            def call(page: int) -> int:
                base = select(TradeORM).where(_sa_range(TradeORM))
                with sessions() as session:
                    counted = session.scalar(
                        select(func.count()).select_from(base.subquery()), params
                    )
                    expect("total", counted, total)
                    stmt = (
                        base.order_by(TradeORM.ts, TradeORM.id)
                        .limit(per_page)
                        .offset((page - 1) * per_page)
                    )
                    return sum(o.qty for o in session.scalars(stmt, params).all())

            return PerOp(call)

        return [
            Variant("raw", "one_statement_attrs", raw_one, "per_op"),
            Variant("raw", "count_then_page_attrs", raw_two, "per_op"),
            Variant("raw", "pipelined_count_and_page_attrs", raw_pipeline, "per_op"),
            Variant("orso_pg", "list_where", orso_list, "per_op"),
            Variant("sqlalchemy_core", "count_then_page", core, "per_op"),
            Variant("sqlalchemy_orm", "count_then_page", orm, "per_op"),
        ]
