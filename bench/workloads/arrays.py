"""Compressed-array columns against native ``BIGINT[]``: time to insert and read, and bytes stored.

Owns the array workload: N rows of a 1,000-element int64 market-data series each, inserted in
bulk and read back into numpy arrays, by raw psycopg into a native ``int8[]`` column (the
baseline), by raw psycopg with orso_pg's codec into ``bytea`` (a reference), and by orso_pg
models with a native and with a ``compress=True`` column. After the first repetition of each
variant the table's ``pg_total_relation_size`` (heap, TOAST and index) is recorded. It must not
format results.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from psycopg import sql

from bench import data, env
from bench.harness import MismatchError, Variant, Workload
from bench.models import ARRAYS_NATIVE, ARRAYS_PACKED, SeriesNative, SeriesPacked
from bench.workloads.common import sizes
from orso_pg import codec, table_of
from orso_pg.migrate import _ddl as ddl

_COPY_NATIVE = "COPY series_native (id, points) FROM STDIN (FORMAT BINARY)"
_COPY_PACKED = "COPY series_packed (id, points) FROM STDIN (FORMAT BINARY)"
_TABLES = {
    "raw/native_int8[]": ARRAYS_NATIVE,
    "raw/codec_bytea": ARRAYS_PACKED,
    "orso_pg/native (NDArray[int64])": ARRAYS_NATIVE,
    "orso_pg/compressed (compress=True)": ARRAYS_PACKED,
}


class Arrays(Workload):
    """Insert then read back N rows carrying a 1,000-element int64 array each."""

    key = "ARR"
    title = "array column: insert + read N rows x 1,000 int64"
    goal = "compressed: <= 1.3x native time, >= 3x fewer bytes"
    note = "The compressed column's target is checked against raw psycopg's native int8[] column."

    def setup(self) -> None:
        self.series = data.series(sizes(self.quick).series_rows)
        for model in (SeriesNative, SeriesPacked):
            meta = table_of(model)
            self.env.admin.execute(
                sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(meta.name))
            )
            env.execute(self.env, ddl.create_table(meta))
            self.env.admin.execute(
                sql.SQL("ALTER TABLE {} SET (autovacuum_enabled = off)").format(
                    sql.Identifier(meta.name)
                )
            )

    def units(self) -> int:
        return len(self.series)

    def reset(self) -> None:
        self.env.admin.execute("TRUNCATE series_native, series_packed")
        env.settle(self.env, ARRAYS_NATIVE, ARRAYS_PACKED)

    def verify(self, _variant: Variant, result: Any) -> None:
        if len(result) != len(self.series):
            msg = f"{len(result)} arrays read back, {len(self.series)} written"
            raise MismatchError(msg)
        for i, (got, want) in enumerate(zip(result, self.series, strict=True)):
            if got.dtype != want.dtype or not np.array_equal(got, want):
                msg = f"row {i}: the array read back differs from the one written"
                raise MismatchError(msg)

    def figures(self, variant: Variant) -> dict[str, Any]:
        table = _TABLES[variant.label]
        size = self.env.scalar("SELECT pg_total_relation_size(%s::regclass)", (table,))
        raw_bytes = sum(a.nbytes for a in self.series)
        return {"stored_bytes": int(size), "array_bytes": raw_bytes}

    def teardown(self) -> None:
        super().teardown()
        self.env.admin.execute("DROP TABLE IF EXISTS series_native, series_packed")

    def variants(self) -> list[Variant]:
        series, clients = self.series, self.clients

        def raw_native() -> list[np.ndarray]:
            conn = clients.raw
            rows = ((i, points.tolist()) for i, points in enumerate(series))
            env.copy_in(conn, _COPY_NATIVE, ("int8", "int8[]"), rows)
            conn.commit()
            cur = conn.cursor(binary=True)
            found = cur.execute("SELECT points FROM series_native ORDER BY id").fetchall()
            conn.commit()
            return [np.array(v, dtype=np.int64) for (v,) in found]

        def raw_codec() -> list[np.ndarray]:
            conn = clients.raw
            rows = ((i, codec.encode(points)) for i, points in enumerate(series))
            env.copy_in(conn, _COPY_PACKED, ("int8", "bytea"), rows)
            conn.commit()
            cur = conn.cursor(binary=True)
            found = cur.execute("SELECT points FROM series_packed ORDER BY id").fetchall()
            conn.commit()
            return [codec.decode(v) for (v,) in found]

        def orso_native() -> list[np.ndarray]:
            db = clients.db
            SeriesNative.batch_insert(
                [SeriesNative(id=i, points=v) for i, v in enumerate(series)], db
            )
            return [o.points for o in SeriesNative.find_all(db)]

        def orso_packed() -> list[np.ndarray]:
            db = clients.db
            SeriesPacked.batch_insert(
                [SeriesPacked(id=i, points=v) for i, v in enumerate(series)], db
            )
            return [o.points for o in SeriesPacked.find_all(db)]

        return [
            Variant("raw", "native_int8[]", raw_native),
            Variant("raw", "codec_bytea", raw_codec, ref=True),
            Variant("orso_pg", "native (NDArray[int64])", orso_native),
            Variant("orso_pg", "compressed (compress=True)", orso_packed),
        ]
