"""Per-call workloads: key lookups (W3), pooled lookups from four threads (W7), single-row
updates (W5) and single-row deletes.

Owns each variant's per-call function: raw psycopg with prepared statements (the floor), orso_pg's
``find_by_id``, ``update`` and ``delete`` through a ``Database`` and through a transaction, and
SQLAlchemy Core and ORM. Every variant first makes untimed warm-up calls on ids disjoint from the
timed ones, so prepared statements and statement caches are warm and no identity map can serve a
timed call. It must not format results.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, delete, select, update

from bench import data
from bench.harness import PerOp, Target, Variant, expect
from bench.models import Trade, TradeORM, TradeRow, trades_core
from bench.workloads.common import TradesWorkload, new_qty
from orso_pg import Filter

_SELECT = "SELECT id, symbol, ts, price, qty, side, meta FROM trades WHERE id = %s"


class _PerId(TradesWorkload):
    """One call per distinct random id; ``size.warm`` more ids serve the untimed warm-up."""

    unit = "ops/s"
    salt = 0  # a different salt draws different ids

    def calls(self) -> int:
        """Return how many timed calls a repetition makes."""
        return self.size.lookups

    def setup(self) -> None:
        super().setup()
        ids = data.sample_ids(self.data.n, self.calls() + self.size.warm, salt=self.salt)
        self.warm, self.ids = ids[: self.size.warm], ids[self.size.warm :]

    def units(self) -> int:
        return len(self.ids)

    def inputs(self) -> Sequence[Any]:
        return self.ids

    def warmup_inputs(self) -> Sequence[Any]:
        return self.warm


class _Lookups(_PerId):
    """Lookups of distinct random ids on the loaded table (read-only)."""

    def setup(self) -> None:
        super().setup()
        self.load()

    def verify(self, _variant: Variant, result: Any) -> None:
        expect("sum of qty looked up", result, self.data.qty_sum(self.ids))


class Lookups(_Lookups):
    """W3: look up rows by primary key, one call each, on one connection."""

    key = "W3"
    title = "key lookups, one per call"
    target = Target(0.8, "key lookups >= 0.8x raw prepared statements")

    def variants(self) -> list[Variant]:
        clients = self.clients

        def raw(*, binary: bool, objects: bool) -> PerOp:
            conn = clients.raw
            cur = conn.cursor(binary=binary)
            if objects:

                def call(i: int) -> int:
                    return TradeRow(*cur.execute(_SELECT, (i,), prepare=True).fetchone()).qty  # type: ignore[misc]

            else:

                def call(i: int) -> int:
                    return cur.execute(_SELECT, (i,), prepare=True).fetchone()[4]  # type: ignore[index,no-any-return]

            return PerOp(call, finish=conn.commit)

        def orso_db() -> PerOp:
            db = clients.db
            return PerOp(lambda i: Trade.find_by_id(i, db).qty)  # type: ignore[union-attr]

        def orso_tx() -> PerOp:
            tx, end = clients.transaction()
            return PerOp(
                lambda i: Trade.find_by_id(i, tx).qty,  # type: ignore[union-attr]
                finish=end,
                close=end,
            )

        def core() -> PerOp:
            stmt = select(trades_core).where(trades_core.c.id == bindparam("id"))
            conn = clients.engine.connect()
            return PerOp(
                lambda i: conn.execute(stmt, {"id": i}).one().qty,
                finish=conn.commit,
                close=conn.close,
            )

        def orm() -> PerOp:
            session = clients.sessions()
            return PerOp(
                lambda i: session.get(TradeORM, i).qty,  # type: ignore[union-attr]
                finish=session.commit,
                close=session.close,
            )

        return [
            Variant("raw", "prepared_text", lambda: raw(binary=False, objects=False), "per_op"),
            Variant("raw", "prepared_binary", lambda: raw(binary=True, objects=False), "per_op"),
            Variant(
                "raw", "prepared_binary_attrs", lambda: raw(binary=True, objects=True), "per_op"
            ),
            Variant("orso_pg", "find_by_id (Database)", orso_db, "per_op"),
            Variant("orso_pg", "find_by_id (transaction)", orso_tx, "per_op"),
            Variant("sqlalchemy_core", "select_one", core, "per_op"),
            Variant("sqlalchemy_orm", "session_get", orm, "per_op"),
        ]


class PooledLookups(_Lookups):
    """W7: the W3 lookups split over four threads sharing a pool of four, a checkout per call."""

    key = "W7"
    title = "key lookups from 4 threads through a pool"
    target = Target(0.8, "pooled key lookups >= 0.8x raw psycopg_pool")

    def variants(self) -> list[Variant]:
        clients = self.clients

        def raw_pool() -> PerOp:
            pool = clients.raw_pool

            def call(i: int) -> int:
                with pool.connection() as conn:
                    return conn.execute(_SELECT, (i,), prepare=True).fetchone()[4]  # type: ignore[index,no-any-return]

            return PerOp(call)

        def orso_db() -> PerOp:
            db = clients.db
            return PerOp(lambda i: Trade.find_by_id(i, db).qty)  # type: ignore[union-attr]

        def core() -> PerOp:
            engine = clients.engine
            stmt = select(trades_core).where(trades_core.c.id == bindparam("id"))

            def call(i: int) -> int:
                with engine.connect() as conn:
                    return conn.execute(stmt, {"id": i}).one().qty  # type: ignore[no-any-return]

            return PerOp(call)

        def orm() -> PerOp:
            sessions = clients.sessions

            def call(i: int) -> int:
                with sessions() as session:
                    return session.get(TradeORM, i).qty  # type: ignore[union-attr]

            return PerOp(call)

        return [
            Variant("raw", "pool_per_op_autocommit", raw_pool, "threads"),
            Variant("orso_pg", "find_by_id (Database)", orso_db, "threads"),
            Variant("sqlalchemy_core", "engine_connect_per_op", core, "threads"),
            Variant("sqlalchemy_orm", "session_per_op", orm, "threads"),
        ]


class RowUpdates(_PerId):
    """W5: update one row per call (a new qty), every call in one transaction."""

    key = "W5"
    title = "single-row updates, one transaction"
    note = "orso_pg's update writes every column and returns the row (RETURNING)."
    salt = 3
    changes_table = True

    def setup(self) -> None:
        super().setup()
        self.expect_new_qty(self.warm + self.ids)

    def verify(self, _variant: Variant, _result: Any) -> None:
        self.check_new_qty()

    def variants(self) -> list[Variant]:
        clients, rows = self.clients, self.data.rows

        def raw_prepared() -> PerOp:
            conn = clients.raw
            cur = conn.cursor()

            def call(i: int) -> int:
                cur.execute(
                    "UPDATE trades SET qty = %s WHERE id = %s", (new_qty(i), i), prepare=True
                )
                return 0

            return PerOp(call, finish=conn.commit)

        def raw_full_row() -> PerOp:
            conn = clients.raw
            cur = conn.cursor(binary=True)
            query = (
                "UPDATE trades SET symbol = %s, ts = %s, price = %s, qty = %s, side = %s, "
                "meta = %s WHERE id = %s RETURNING id, symbol, ts, price, qty, side, meta"
            )

            def call(i: int) -> int:
                s, ts, p, _, side, m = rows[i - 1]
                cur.execute(query, (s, ts, p, new_qty(i), side, m, i), prepare=True)
                cur.fetchone()
                return 0

            return PerOp(call, finish=conn.commit)

        def orso_update() -> PerOp:
            tx, end = clients.transaction()

            def call(i: int) -> int:
                s, ts, p, _, side, m = rows[i - 1]
                trade = Trade(id=i, symbol=s, ts=ts, price=p, qty=new_qty(i), side=side, meta=m)
                trade.update(tx)
                return 0

            return PerOp(call, finish=end, close=end)

        def orso_update_where() -> PerOp:
            tx, end = clients.transaction()

            def call(i: int) -> int:
                Trade.update_where(Filter.eq("id", i), {"qty": new_qty(i)}, tx)
                return 0

            return PerOp(call, finish=end, close=end)

        def core() -> PerOp:
            stmt = (
                update(trades_core)
                .where(trades_core.c.id == bindparam("b_id"))
                .values(qty=bindparam("b_qty"))
            )
            conn = clients.engine.connect()

            def call(i: int) -> int:
                conn.execute(stmt, {"b_id": i, "b_qty": new_qty(i)})
                return 0

            return PerOp(call, finish=conn.commit, close=conn.close)

        def orm() -> PerOp:
            session = clients.sessions()

            def call(i: int) -> int:
                stmt = update(TradeORM).where(TradeORM.id == i).values(qty=new_qty(i))
                session.execute(stmt, execution_options={"synchronize_session": False})
                return 0

            return PerOp(call, finish=session.commit, close=session.close)

        return [
            Variant("raw", "prepared_qty", raw_prepared, "per_op"),
            Variant("raw", "prepared_full_row_returning", raw_full_row, "per_op"),
            Variant("orso_pg", "update (transaction)", orso_update, "per_op"),
            Variant("orso_pg", "update_where (transaction)", orso_update_where, "per_op"),
            Variant("sqlalchemy_core", "update", core, "per_op"),
            Variant("sqlalchemy_orm", "update_stmt", orm, "per_op"),
        ]


class RowDeletes(_PerId):
    """Delete one row per call by primary key, every call in one transaction."""

    key = "DEL1"
    title = "single-row deletes, one transaction"
    salt = 4
    changes_table = True

    def calls(self) -> int:
        return self.size.lookups // 5

    def setup(self) -> None:
        super().setup()
        self.remaining = self.data.qty_total - self.data.qty_sum(self.warm + self.ids)

    def verify(self, _variant: Variant, _result: Any) -> None:
        self.check_table(self.data.n - len(self.ids) - len(self.warm), self.remaining)

    def variants(self) -> list[Variant]:
        clients, rows = self.clients, self.data.rows

        def raw_prepared() -> PerOp:
            conn = clients.raw
            cur = conn.cursor()

            def call(i: int) -> int:
                cur.execute("DELETE FROM trades WHERE id = %s", (i,), prepare=True)
                return 0

            return PerOp(call, finish=conn.commit)

        def orso_delete() -> PerOp:
            tx, end = clients.transaction()

            def call(i: int) -> int:
                s, ts, p, q, side, m = rows[i - 1]
                Trade(id=i, symbol=s, ts=ts, price=p, qty=q, side=side, meta=m).delete(tx)
                return 0

            return PerOp(call, finish=end, close=end)

        def core() -> PerOp:
            stmt = delete(trades_core).where(trades_core.c.id == bindparam("b_id"))
            conn = clients.engine.connect()

            def call(i: int) -> int:
                conn.execute(stmt, {"b_id": i})
                return 0

            return PerOp(call, finish=conn.commit, close=conn.close)

        def orm() -> PerOp:
            session = clients.sessions()

            def call(i: int) -> int:
                stmt = delete(TradeORM).where(TradeORM.id == i)
                session.execute(stmt, execution_options={"synchronize_session": False})
                return 0

            return PerOp(call, finish=session.commit, close=session.close)

        return [
            Variant("raw", "prepared", raw_prepared, "per_op"),
            Variant("orso_pg", "delete (transaction)", orso_delete, "per_op"),
            Variant("sqlalchemy_core", "delete", core, "per_op"),
            Variant("sqlalchemy_orm", "delete_stmt", orm, "per_op"),
        ]
