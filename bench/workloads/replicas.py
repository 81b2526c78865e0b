"""Read replicas: reads from four threads over a primary and a hot standby, and routing cost.

Owns the replica workloads' variants: key lookups (W3-style) and range reads (W4-style) from four
threads through a ``Database`` on one server, and through one whose reads are spread over the
primary and a streaming standby made for the run (``pg_basebackup -R``, see
:mod:`orso_pg.testing.standby`), next to raw psycopg_pool on the one server; and the routing
overhead of a single thread's lookups when the one server is listed as its own replica, against
a plain ``Database``. A standby needs the run's embedded server; on a configured server
(``ORSO_PG_DSN``) the standby variants are left out. It must not format results.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import sys
from collections.abc import Callable, Sequence
from typing import Any

from bench import data
from bench.harness import PerOp, Variant, expect
from bench.models import Trade, TradeRow
from bench.workloads.calls import _SELECT, _Lookups
from bench.workloads.reads import _RANGE, _range_filter, _Reads
from orso_pg import Database, QueryBuilder, Sort
from orso_pg.testing.standby import Standby


class _Replicated:
    """Databases over the run's server and, when one can be made, a standby of it."""

    def __init__(self, workload: Any) -> None:
        self.workload = workload
        self.standby: Standby | None = None
        self.why_not = ""
        self._stack = contextlib.ExitStack()
        env = workload.env
        if env.server_pid is None:
            self.why_not = "no standby: the run's server is ORSO_PG_DSN, not the embedded one"
            return
        try:
            self.standby = self._stack.enter_context(contextlib.closing(Standby(env.base_dsn)))
        except Exception as exc:
            self.why_not = f"no standby: {exc}"
            print(f"   {self.why_not}", file=sys.stderr)
            return
        self.standby.wait_caught_up()

    def database(self, replicas: Sequence[str]) -> Database:
        env = self.workload.env
        size = self.workload.clients.pool_size
        db = Database(
            env.base_dsn, schema=env.schema, min_size=size, max_size=size, replicas=replicas
        )
        self._stack.callback(db.close)
        return db

    def close(self) -> None:
        self._stack.close()


def _lookup(db: Any) -> PerOp:
    return PerOp(lambda i: Trade.find_by_id(i, db).qty)


class ReplicaLookups(_Lookups):
    """R3: the W3 lookups from four threads, over one server and over a primary and a standby."""

    key = "R3"
    title = "key lookups from 4 threads, primary + hot standby"
    goal = "reported next to one server"
    note = (
        "Both servers run on this machine, so a standby adds no CPU: the figure shows the "
        "router's cost and spread, not a second machine's capacity."
    )

    def setup(self) -> None:
        super().setup()
        self.replicated = _Replicated(self)

    def teardown(self) -> None:
        self.replicated.close()
        super().teardown()

    def variants(self) -> list[Variant]:
        clients, replicated = self.clients, self.replicated

        def raw_pool() -> PerOp:
            pool = clients.raw_pool

            def call(i: int) -> int:
                with pool.connection() as conn:
                    return conn.execute(_SELECT, (i,), prepare=True).fetchone()[4]  # type: ignore[index,no-any-return]

            return PerOp(call)

        found = [
            Variant("raw", "pool_per_op_autocommit", raw_pool, "threads"),
            Variant("orso_pg", "find_by_id (one server)", lambda: _lookup(clients.db), "threads"),
        ]
        return found + _routed(replicated, self.env.base_dsn, "find_by_id", _lookup)


def _routed(
    replicated: _Replicated, primary_dsn: str, name: str, make: Callable[[Database], PerOp]
) -> list[Variant]:
    """The variants reading through a Database with replicas: both servers, the standby alone."""
    standby = replicated.standby
    if standby is None:
        return []
    both = [standby.dsn, primary_dsn]
    return [
        Variant(
            "orso_pg",
            f"{name} (primary + standby)",
            lambda: make(replicated.database(both)),
            "threads",
        ),
        Variant(
            "orso_pg",
            f"{name} (standby only)",
            lambda: make(replicated.database([standby.dsn])),
            "threads",
        ),
    ]


class ReplicaRanges(_Reads):
    """R4: W4-style range reads into objects from four threads, one server vs primary + standby."""

    key = "R4"
    title = "range reads from 4 threads, primary + hot standby"
    unit = "rows/s"
    goal = "reported next to one server"

    def setup(self) -> None:
        super().setup()
        span = dt.timedelta(days=2)
        calls = self.size.batches
        self.queries = [
            (
                data.SYMBOLS[j % len(data.SYMBOLS)],
                data.START + dt.timedelta(hours=(j * 37) % (24 * 27)),
                data.START + dt.timedelta(hours=(j * 37) % (24 * 27)) + span,
            )
            for j in range(calls)
        ]
        self.expected = [self.window(*q) for q in self.queries]
        self.replicated = _Replicated(self)

    def teardown(self) -> None:
        self.replicated.close()
        super().teardown()

    def units(self) -> int:
        return sum(n for n, _ in self.expected)

    def inputs(self) -> Sequence[Any]:
        return self.queries

    def warmup_inputs(self) -> Sequence[Any]:
        return self.queries[:20]

    def verify(self, _variant: Variant, result: Any) -> None:
        expect("sum of qty read", result, sum(q for _, q in self.expected))

    def variants(self) -> list[Variant]:
        clients, replicated = self.clients, self.replicated

        def raw_pool() -> PerOp:
            pool = clients.raw_pool

            def call(q: tuple[str, dt.datetime, dt.datetime]) -> int:
                with pool.connection() as conn:
                    cur = conn.cursor(binary=True)
                    rows = cur.execute(_RANGE, q, prepare=True).fetchall()
                    return sum(TradeRow(*r).qty for r in rows)

            return PerOp(call)

        def orso(db: Database) -> PerOp:
            def call(q: tuple[str, dt.datetime, dt.datetime]) -> int:
                builder = QueryBuilder(Trade).where(_range_filter(*q)).order_by(Sort.asc("ts"))
                return sum(t.qty for t in Trade.query(builder, db))

            return PerOp(call)

        found = [
            Variant("raw", "pool_per_op_attrs", raw_pool, "threads"),
            Variant("orso_pg", "query (one server)", lambda: orso(clients.db), "threads"),
        ]
        return found + _routed(replicated, self.env.base_dsn, "query", orso)


class ReplicaRouting(_Lookups):
    """R1: the cost of routing: W3 lookups on one server listed as its own replica."""

    key = "R1"
    title = "routing overhead per call (one server as primary and replica)"
    goal = "p50 <= plain Database + 5 µs"
    salt = 5

    def setup(self) -> None:
        super().setup()
        self._stack = contextlib.ExitStack()

    def teardown(self) -> None:
        self._stack.close()
        super().teardown()

    def variants(self) -> list[Variant]:
        clients, env = self.clients, self.env

        def orso(replicas: Sequence[str]) -> PerOp:
            # Both Databases alike (one warm connection each), so only the routing differs.
            db = Database(
                env.base_dsn, schema=env.schema, min_size=1, max_size=4, replicas=replicas
            )
            self._stack.callback(db.close)
            return _lookup(db)

        def raw() -> PerOp:
            conn = clients.raw
            cur = conn.cursor(binary=True)

            def call(i: int) -> int:
                return cur.execute(_SELECT, (i,), prepare=True).fetchone()[4]  # type: ignore[index,no-any-return]

            return PerOp(call, finish=conn.commit)

        return [
            Variant("raw", "prepared_binary", raw, "per_op"),
            Variant("orso_pg", "find_by_id (Database)", lambda: orso(()), "per_op"),
            Variant(
                "orso_pg",
                "find_by_id (routed to a replica)",
                lambda: orso([env.base_dsn]),
                "per_op",
            ),
        ]
