"""Bulk workloads: insert (W1), upsert half existing (W2), batch updates (W6a-c), batch delete.

Owns each bulk workload's variants side by side, so the same work is visibly done by raw
psycopg (the floor: COPY, COPY into a staging table, one statement with an array parameter),
orso_pg's batch operations and SQLAlchemy Core and ORM. Building each library's objects from the
prebuilt tuples is inside the timed region; everything else (inputs, table resets) is outside.
It must not format results.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import ARRAY, BigInteger, any_, bindparam, delete, insert, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from bench import data, env
from bench.harness import Target, Variant
from bench.models import DATA_COLUMNS, Trade, TradeORM, trades_core
from bench.workloads.common import TradesWorkload
from orso_pg import Filter, col

_INSERT_ONE = (
    "INSERT INTO trades (symbol, ts, price, qty, side, meta) VALUES (%s, %s, %s, %s, %s, %s)"
)
_UPSERT_ONE = (
    "INSERT INTO trades (id, symbol, ts, price, qty, side, meta) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET "
    "symbol = EXCLUDED.symbol, ts = EXCLUDED.ts, price = EXCLUDED.price, qty = EXCLUDED.qty, "
    "side = EXCLUDED.side, meta = EXCLUDED.meta"
)
_UPSERT_STAGED = (
    "INSERT INTO trades (id, symbol, ts, price, qty, side, meta) "
    "SELECT id, symbol, ts, price, qty, side, meta FROM stage ON CONFLICT (id) DO UPDATE SET "
    "symbol = EXCLUDED.symbol, ts = EXCLUDED.ts, price = EXCLUDED.price, qty = EXCLUDED.qty, "
    "side = EXCLUDED.side, meta = EXCLUDED.meta"
)
_STAGE_TYPES = ("int8", "float8", "int8")
_SA_IDS = bindparam("ids", type_=ARRAY(BigInteger))


def _models(rows: list[tuple[Any, ...]]) -> list[Trade]:
    return [
        Trade(symbol=s, ts=ts, price=p, qty=q, side=side, meta=m) for s, ts, p, q, side, m in rows
    ]


def _columns(rows: list[tuple[Any, ...]]) -> dict[str, Any]:
    """The rows as a numpy user holds them: one array per column (JSON stays a list)."""
    import numpy as np

    symbols, stamps, prices, qtys, sides, metas = zip(*rows, strict=True)
    utc = [t.astimezone(dt.UTC).replace(tzinfo=None) for t in stamps]
    return {
        "symbol": np.array(symbols, dtype=object),
        "ts": np.array(utc, dtype="datetime64[us]"),
        "price": np.array(prices, dtype=np.float64),
        "qty": np.array(qtys, dtype=np.int64),
        "side": np.array(sides, dtype=object),
        "meta": list(metas),
    }


def _frame(rows: list[tuple[Any, ...]]) -> Any:
    import pandas as pd

    cols = _columns(rows)
    cols["ts"] = pd.Series(cols["ts"]).dt.tz_localize("UTC")
    cols["meta"] = pd.Series(cols["meta"], dtype=object)
    return pd.DataFrame(cols)


def _arrow(rows: list[tuple[Any, ...]]) -> Any:
    import pyarrow as pa

    cols = _columns(rows)
    return pa.table(
        {
            "symbol": pa.array(cols["symbol"], pa.string()),
            "ts": pa.array(cols["ts"], pa.timestamp("us", tz="UTC")),
            "price": pa.array(cols["price"]),
            "qty": pa.array(cols["qty"]),
            "side": pa.array(cols["side"], pa.string()),
            # JSON objects of one shape: an Arrow struct column, read back as dicts.
            "meta": pa.array(cols["meta"]),
        }
    )


def _models_with_ids(rows: list[tuple[Any, ...]]) -> list[Trade]:
    return [
        Trade(id=i, symbol=s, ts=ts, price=p, qty=q, side=side, meta=m)
        for i, s, ts, p, q, side, m in rows
    ]


class BulkInsert(TradesWorkload):
    """W1: insert N rows into the empty table, ids from the identity, one transaction."""

    key = "W1"
    title = "bulk insert"
    target = Target(0.85, "bulk insert >= 0.85x raw COPY")
    changes_table = True

    def setup(self) -> None:
        super().setup()
        self.rows = self.data.rows
        self.dicts = [{k: v for k, v in d.items() if k != "id"} for d in self.data.dicts]
        self.columnar = {
            "dict": _columns(self.rows),
            "pandas": _frame(self.rows),
            "arrow": _arrow(self.rows),
        }

    def units(self) -> int:
        return self.data.n

    def reset(self) -> None:
        env.empty_trades(self.env)

    def verify(self, _variant: Variant, _result: Any) -> None:
        self.check_every_row()

    def variants(self) -> list[Variant]:
        rows, dicts, clients = self.rows, self.dicts, self.clients

        def raw_copy() -> None:
            conn = clients.raw
            env.copy_new_rows(conn, rows)
            conn.commit()

        def raw_executemany() -> None:
            conn = clients.raw
            conn.cursor().executemany(_INSERT_ONE, rows)
            conn.commit()

        def orso_batch() -> None:
            Trade.batch_insert(_models(rows), clients.db)

        def orso_prebuilt(models: list[Trade]) -> None:
            Trade.batch_insert(models, clients.db)

        def orso_rows() -> None:
            # The same prebuilt tuples raw COPY writes, loaded without building instances.
            Trade.batch_create_rows(rows, clients.db)

        def orso_columnar(data: Any) -> None:
            # The same data held as columns (built untimed, as a user holds it already).
            Trade.batch_create_rows(data, clients.db)

        def core() -> None:
            with clients.engine.begin() as conn:
                conn.execute(insert(trades_core), dicts)

        def orm_bulk() -> None:
            with clients.sessions() as session:
                stmt = insert(TradeORM).execution_options(render_nulls=True)
                session.execute(stmt, dicts)
                session.commit()

        def orm_add_all() -> None:
            with clients.sessions() as session:
                session.add_all([TradeORM(**d) for d in dicts])
                session.commit()

        return [
            Variant("raw", "copy_binary", raw_copy),
            Variant("raw", "executemany", raw_executemany),
            Variant("orso_pg", "batch_insert", orso_batch),
            Variant("orso_pg", "batch_create_rows (tuples)", orso_rows),
            Variant(
                "orso_pg",
                "batch_create_rows (dict of arrays)",
                orso_columnar,
                prepare=lambda: self.columnar["dict"],
            ),
            Variant(
                "orso_pg",
                "batch_create_rows (DataFrame)",
                orso_columnar,
                prepare=lambda: self.columnar["pandas"],
            ),
            Variant(
                "orso_pg",
                "batch_create_rows (Arrow)",
                orso_columnar,
                prepare=lambda: self.columnar["arrow"],
            ),
            Variant(
                "orso_pg",
                "batch_insert, models built untimed",
                orso_prebuilt,
                ref=True,
                prepare=lambda: _models(rows),
            ),
            Variant("sqlalchemy_core", "executemany", core),
            Variant("sqlalchemy_orm", "bulk_insert_render_nulls", orm_bulk),
            Variant("sqlalchemy_orm", "add_all", orm_add_all),
        ]


class BulkUpsert(TradesWorkload):
    """W2: upsert N rows with ids 1..N while ids 1..N/2 exist (every column updated)."""

    key = "W2"
    title = "bulk upsert, half existing"
    target = Target(0.85, "bulk upsert >= 0.85x raw COPY staging")
    changes_table = True

    def setup(self) -> None:
        super().setup()
        self.rows = list(self.data.with_ids())
        self.dicts = self.data.dicts
        half = self.data.n // 2
        # The existing half differs in qty, so the sum proves that every row was updated.
        self.existing = [(*r[:4], r[4] + 1, *r[5:]) for r in self.rows[:half]]

    def units(self) -> int:
        return self.data.n

    def reset(self) -> None:
        env.load_trades(self.env, self.existing, len(self.existing))

    def verify(self, _variant: Variant, _result: Any) -> None:
        self.check_every_row()

    def variants(self) -> list[Variant]:
        rows, dicts, clients = self.rows, self.dicts, self.clients

        def raw_staging() -> None:
            conn = clients.raw
            conn.execute("CREATE TEMP TABLE stage (LIKE trades) ON COMMIT DROP")
            env.copy_rows(conn, rows, "stage")
            conn.execute(_UPSERT_STAGED)
            conn.commit()

        def raw_executemany() -> None:
            conn = clients.raw
            conn.cursor().executemany(_UPSERT_ONE, rows)
            conn.commit()

        def orso_batch() -> None:
            Trade.batch_upsert(_models_with_ids(rows), clients.db)

        def orso_prebuilt(models: list[Trade]) -> None:
            Trade.batch_upsert(models, clients.db)

        def orso_rows() -> None:
            Trade.batch_upsert_rows(rows, clients.db)

        def upsert_of(target: Any) -> Any:
            stmt = pg_insert(target)
            return stmt.on_conflict_do_update(
                index_elements=["id"], set_={c: stmt.excluded[c] for c in DATA_COLUMNS}
            )

        def core() -> None:
            with clients.engine.begin() as conn:
                conn.execute(upsert_of(trades_core), dicts)

        def orm_bulk() -> None:
            with clients.sessions() as session:
                session.execute(upsert_of(TradeORM).execution_options(render_nulls=True), dicts)
                session.commit()

        return [
            Variant("raw", "copy_staging", raw_staging),
            Variant("raw", "executemany", raw_executemany),
            Variant("orso_pg", "batch_upsert", orso_batch),
            Variant("orso_pg", "batch_upsert_rows (tuples)", orso_rows),
            Variant(
                "orso_pg",
                "batch_upsert, models built untimed",
                orso_prebuilt,
                ref=True,
                prepare=lambda: _models_with_ids(rows),
            ),
            Variant("sqlalchemy_core", "executemany", core),
            Variant("sqlalchemy_orm", "bulk_upsert_render_nulls", orm_bulk),
        ]


class SetUpdate(TradesWorkload):
    """W6a: one set-based update of every listed id (``qty = 7``), in one statement."""

    key = "W6a"
    title = "batch update, set-based (qty = 7 for N ids)"
    note = (
        "The reference sets qty = qty + 1; a constant is used so that every library can state it."
    )
    changes_table = True

    def setup(self) -> None:
        super().setup()
        self.ids = data.sample_ids(self.data.n, self.data.n)

    def units(self) -> int:
        return len(self.ids)

    def verify(self, _variant: Variant, _result: Any) -> None:
        self.check_table(self.data.n, 7 * len(self.ids))

    def variants(self) -> list[Variant]:
        ids, clients = self.ids, self.clients

        def raw_any() -> None:
            conn = clients.raw
            conn.execute("UPDATE trades SET qty = 7 WHERE id = ANY(%s)", (ids,))
            conn.commit()

        def orso_update_where() -> None:
            Trade.update_where(Filter.in_values("id", ids), {"qty": 7}, clients.db)

        def core() -> None:
            with clients.engine.begin() as conn:
                stmt = update(trades_core).where(trades_core.c.id == any_(_SA_IDS)).values(qty=7)
                conn.execute(stmt, {"ids": ids})

        def orm() -> None:
            with clients.sessions() as session:
                stmt = update(TradeORM).where(TradeORM.id == any_(_SA_IDS)).values(qty=7)
                session.execute(
                    stmt, {"ids": ids}, execution_options={"synchronize_session": False}
                )
                session.commit()

        return [
            Variant("raw", "any_array", raw_any),
            Variant("orso_pg", "update_where_in", orso_update_where),
            Variant("sqlalchemy_core", "any_array", core),
            Variant("sqlalchemy_orm", "update_any_array", orm),
        ]


class IncrementUpdate(TradesWorkload):
    """W6c: ``qty = qty + 1`` for N ids, a set-based update computed from the row itself."""

    key = "W6c"
    title = "batch update, expression (qty = qty + 1 for N ids)"
    target = Target(0.9, "update_where with col('qty') + 1 >= 0.9x raw UPDATE ... = ANY(%s)")
    note = (
        "The read-modify-write variant (find_by_ids, then batch_update) is how orso_pg had to "
        "do it before expressions; it is shown for reference."
    )
    changes_table = True

    def setup(self) -> None:
        super().setup()
        self.ids = data.sample_ids(self.data.n, self.data.n, salt=3)

    def units(self) -> int:
        return len(self.ids)

    def verify(self, _variant: Variant, _result: Any) -> None:
        self.check_table(self.data.n, self.data.qty_total + len(self.ids))

    def variants(self) -> list[Variant]:
        ids, clients = self.ids, self.clients

        def raw_any() -> None:
            conn = clients.raw
            conn.execute("UPDATE trades SET qty = qty + 1 WHERE id = ANY(%s)", (ids,))
            conn.commit()

        def orso_expression() -> None:
            Trade.update_where(Filter.in_values("id", ids), {"qty": col("qty") + 1}, clients.db)

        def orso_read_modify_write() -> None:
            trades = Trade.find_by_ids(ids, clients.db)
            for trade in trades:
                trade.qty += 1
            Trade.batch_update(trades, clients.db, columns=("qty",))

        def core() -> None:
            with clients.engine.begin() as conn:
                stmt = (
                    update(trades_core)
                    .where(trades_core.c.id == any_(_SA_IDS))
                    .values(qty=trades_core.c.qty + 1)
                )
                conn.execute(stmt, {"ids": ids})

        def orm() -> None:
            with clients.sessions() as session:
                stmt = (
                    update(TradeORM)
                    .where(TradeORM.id == any_(_SA_IDS))
                    .values(qty=TradeORM.qty + 1)
                )
                session.execute(
                    stmt, {"ids": ids}, execution_options={"synchronize_session": False}
                )
                session.commit()

        return [
            Variant("raw", "any_array", raw_any),
            Variant("orso_pg", "update_where (col('qty') + 1)", orso_expression),
            Variant("orso_pg", "find_by_ids + batch_update", orso_read_modify_write, ref=True),
            Variant("sqlalchemy_core", "any_array", core),
            Variant("sqlalchemy_orm", "update_any_array", orm),
        ]


class RowUpdate(TradesWorkload):
    """W6b: a different (price, qty) for each of N rows."""

    key = "W6b"
    title = "batch update, per-row values"
    note = (
        "orso_pg's batch_update writes every column of each model unless given columns= "
        "(the raw side writes two)."
    )
    changes_table = True

    def setup(self) -> None:
        super().setup()
        self.values = data.new_values(data.sample_ids(self.data.n, self.data.n, salt=1))
        rows = self.data.rows
        self.full = [(i, *rows[i - 1][:2], p, q, *rows[i - 1][4:]) for i, p, q in self.values]
        self.dicts = [{"id": i, "price": p, "qty": q} for i, p, q in self.values]

    def units(self) -> int:
        return len(self.values)

    def verify(self, _variant: Variant, _result: Any) -> None:
        self.check_table(self.data.n, sum(q for _, _, q in self.values), self.data.meta_count())

    def variants(self) -> list[Variant]:
        values, full, dicts, clients = self.values, self.full, self.dicts, self.clients

        def raw_staging() -> None:
            conn = clients.raw
            conn.execute("CREATE TEMP TABLE stage (id int8, price float8, qty int8) ON COMMIT DROP")
            env.copy_in(conn, "COPY stage FROM STDIN (FORMAT BINARY)", _STAGE_TYPES, values)
            conn.execute(
                "UPDATE trades t SET price = s.price, qty = s.qty FROM stage s WHERE t.id = s.id"
            )
            conn.commit()

        def raw_unnest() -> None:
            conn = clients.raw
            ids, prices, qtys = (list(c) for c in zip(*values, strict=True))
            conn.execute(
                "UPDATE trades t SET price = s.price, qty = s.qty "
                "FROM unnest(%s::int8[], %s::float8[], %s::int8[]) AS s(id, price, qty) "
                "WHERE t.id = s.id",
                (ids, prices, qtys),
            )
            conn.commit()

        def orso_batch() -> None:
            Trade.batch_update(_models_with_ids(full), clients.db)

        def orso_columns() -> None:
            # The two columns the raw and SQLAlchemy variants write.
            Trade.batch_update(_models_with_ids(full), clients.db, columns=("price", "qty"))

        def core() -> None:
            stmt = (
                update(trades_core)
                .where(trades_core.c.id == bindparam("b_id"))
                .values(price=bindparam("b_price"), qty=bindparam("b_qty"))
            )
            params = [{"b_id": i, "b_price": p, "b_qty": q} for i, p, q in values]
            with clients.engine.begin() as conn:
                conn.execute(stmt, params)

        def orm() -> None:
            with clients.sessions() as session:
                session.execute(update(TradeORM), dicts)
                session.commit()

        return [
            Variant("raw", "copy_staging", raw_staging),
            Variant("raw", "unnest_arrays", raw_unnest),
            Variant("orso_pg", "batch_update", orso_batch),
            Variant("orso_pg", "batch_update (columns=price, qty)", orso_columns),
            Variant("sqlalchemy_core", "executemany", core),
            Variant("sqlalchemy_orm", "bulk_update_by_pk", orm),
        ]


class BatchDelete(TradesWorkload):
    """Delete half of the rows, given their ids, in one operation."""

    key = "DEL"
    title = "batch delete (N/2 ids)"
    reps = 7  # one short statement per repetition: more of them steady the median
    changes_table = True

    def setup(self) -> None:
        super().setup()
        self.ids = data.sample_ids(self.data.n, self.data.n // 2, salt=2)

    def units(self) -> int:
        return len(self.ids)

    def verify(self, _variant: Variant, _result: Any) -> None:
        remaining = self.data.qty_total - self.data.qty_sum(self.ids)
        self.check_table(self.data.n - len(self.ids), remaining)

    def variants(self) -> list[Variant]:
        ids, clients = self.ids, self.clients

        def raw_any() -> None:
            conn = clients.raw
            conn.execute("DELETE FROM trades WHERE id = ANY(%s)", (ids,))
            conn.commit()

        def orso_batch() -> None:
            Trade.batch_delete(ids, clients.db)

        def core() -> None:
            with clients.engine.begin() as conn:
                conn.execute(
                    delete(trades_core).where(trades_core.c.id == any_(_SA_IDS)), {"ids": ids}
                )

        def orm() -> None:
            with clients.sessions() as session:
                stmt = delete(TradeORM).where(TradeORM.id == any_(_SA_IDS))
                session.execute(
                    stmt, {"ids": ids}, execution_options={"synchronize_session": False}
                )
                session.commit()

        return [
            Variant("raw", "any_array", raw_any),
            Variant("orso_pg", "batch_delete", orso_batch),
            Variant("sqlalchemy_core", "any_array", core),
            Variant("sqlalchemy_orm", "delete_any_array", orm),
        ]


__all__ = ["BatchDelete", "BulkInsert", "BulkUpsert", "RowUpdate", "SetUpdate"]
