"""pgvector workloads: loading embeddings (VEC1) and top-10 nearest searches with HNSW (VEC2).

Owns both vector workloads. VEC1 loads N vectors of 128 float32 dimensions into an empty table:
raw psycopg with a hand-written ``COPY ... (FORMAT BINARY)`` through pgvector's psycopg adapter
(the floor), orso_pg's ``batch_insert`` and ``batch_create_rows``, and SQLAlchemy Core with
pgvector's SQLAlchemy ``VECTOR`` type. VEC2 asks for the 10 nearest rows (cosine, HNSW index
m=16, ef_construction=64) of random query vectors, one call each through a pool: raw psycopg_pool
with the adapter registered per connection, orso_pg's ``Model.nearest`` and SQLAlchemy Core.
Every variant returns rows with their id, vector (as a numpy array) and distance. It must not
format results.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import numpy as np
import psycopg
import psycopg_pool
from numpy.typing import NDArray
from psycopg import sql

from bench import env
from bench.harness import MismatchError, PerOp, Target, Variant, Workload
from orso_pg import Orso, column, table, table_of
from orso_pg.migrate import _ddl as ddl

DIMS: Final = 128
_TABLE: Final = "vec_bench"
_COPY: Final = "COPY vec_bench (id, emb) FROM STDIN (FORMAT BINARY)"
_NEAREST: Final = (
    "SELECT id, emb, emb <=> %(q)s AS distance FROM vec_bench ORDER BY emb <=> %(q)s LIMIT 10"
)


@table(_TABLE)
class Embedding(Orso):
    """One embedding; the HNSW index serves cosine distance."""

    id: int
    emb: NDArray[np.float32] = column(vector=DIMS, index="hnsw", distance="cosine")


def _vectors(n: int, seed: int) -> NDArray[np.float32]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, DIMS)).astype(np.float32)


def _count(quick: bool) -> int:
    return 10_000 if quick else 100_000


def _sa_table() -> Any:
    from pgvector.sqlalchemy import VECTOR
    from sqlalchemy import BigInteger, Column, MetaData, Table

    return Table(
        _TABLE, MetaData(), Column("id", BigInteger, primary_key=True), Column("emb", VECTOR(DIMS))
    )


def _create(workload: Workload) -> None:
    """(Re)create the empty table (without its index) and the extension."""
    admin = workload.env.admin
    admin.execute("CREATE EXTENSION IF NOT EXISTS vector")
    admin.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(_TABLE)))
    meta = table_of(Embedding)
    env.execute(workload.env, ddl.create_table(meta))
    admin.execute(
        sql.SQL("ALTER TABLE {} SET (autovacuum_enabled = off)").format(sql.Identifier(_TABLE))
    )


def _register(conn: psycopg.Connection[Any]) -> None:
    from pgvector.psycopg import register_vector

    register_vector(conn)


class VectorLoad(Workload):
    """VEC1: load N embeddings of 128 dimensions into the empty table, one transaction."""

    key = "VEC1"
    title = "vector load: N x 128-d float32"
    target = Target(0.9, "batch_insert of vectors >= 0.9x raw binary COPY with pgvector")

    def setup(self) -> None:
        _create(self)
        self.vectors = _vectors(_count(self.quick), 1)
        self.rows = [(i, v) for i, v in enumerate(self.vectors)]
        self.checksum = float(self.vectors.astype(np.float64).sum())

    def units(self) -> int:
        return len(self.vectors)

    def reset(self) -> None:
        self.env.admin.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(_TABLE)))
        env.settle(self.env, _TABLE)

    def verify(self, _variant: Variant, _result: Any) -> None:
        count, total = self.env.admin.execute(
            "SELECT count(*), sum((SELECT sum(x) FROM unnest(emb::real[]) AS x)) FROM vec_bench"
        ).fetchone()  # type: ignore[misc]
        if count != len(self.vectors) or abs(float(total) - self.checksum) > 1e-3 * len(self.rows):
            msg = f"{count} vectors loaded (sum {total}), expected {len(self.vectors)}"
            raise MismatchError(msg)

    def variants(self) -> list[Variant]:
        rows, clients = self.rows, self.clients

        def raw_copy() -> None:
            conn = clients.raw
            _register(conn)
            env.copy_in(conn, _COPY, ("int8", "vector"), rows)
            conn.commit()

        def orso_batch() -> None:
            Embedding.batch_insert([Embedding(id=i, emb=v) for i, v in rows], clients.db)

        def orso_rows() -> None:
            Embedding.batch_create_rows(rows, clients.db)

        def core() -> None:
            from sqlalchemy import insert

            emb = _sa_table()
            with clients.engine.begin() as conn:
                conn.execute(insert(emb), [{"id": i, "emb": v} for i, v in rows])

        return [
            Variant("raw", "copy_binary (pgvector adapter)", raw_copy),
            Variant("orso_pg", "batch_insert", orso_batch),
            Variant("orso_pg", "batch_create_rows (tuples)", orso_rows),
            Variant("sqlalchemy_core", "executemany (pgvector VECTOR)", core),
        ]

    def teardown(self) -> None:
        super().teardown()
        self.env.admin.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(_TABLE)))


class VectorNearest(Workload):
    """VEC2: top-10 nearest rows (cosine, HNSW) of random query vectors, one call each, pooled."""

    key = "VEC2"
    title = "top-10 nearest with HNSW, one call each through a pool"
    unit = "ops/s"
    target = Target(0.85, "nearest top-10 >= 0.85x hand-written psycopg through a pool")
    note = "N x 128-d rows, HNSW m=16 ef_construction=64, default ef_search (40)."

    def setup(self) -> None:
        _create(self)
        vectors = _vectors(_count(self.quick), 1)
        with self.env.connect() as conn:
            _register(conn)
            env.copy_in(conn, _COPY, ("int8", "vector"), enumerate(vectors))
            conn.commit()
        self.env.admin.execute("SET maintenance_work_mem = '1GB'")
        create = ddl.create_index(table_of(Embedding), table_of(Embedding).indexes[0])
        env.execute(self.env, create)
        self.env.admin.execute("RESET maintenance_work_mem")
        env.settle(self.env, _TABLE)
        calls = 300 if self.quick else 1000
        queries = _vectors(calls + 50, 2)
        self.warm, self.queries = list(queries[:50]), list(queries[50:])
        with self.env.connect() as conn:
            _register(conn)
            self.expected = sum(
                sum(row[0] for row in conn.execute(_NEAREST, {"q": q}).fetchall())
                for q in self.queries
            )

    def units(self) -> int:
        return len(self.queries)

    def inputs(self) -> Sequence[Any]:
        return self.queries

    def warmup_inputs(self) -> Sequence[Any]:
        return self.warm

    def verify(self, _variant: Variant, result: Any) -> None:
        if result != self.expected:
            msg = f"sum of the ids found: {result}, expected {self.expected}"
            raise MismatchError(msg)

    def variants(self) -> list[Variant]:
        clients = self.clients

        def raw_pool() -> PerOp:
            pool: psycopg_pool.ConnectionPool[psycopg.Connection[Any]] = (
                psycopg_pool.ConnectionPool(
                    self.env.dsn,
                    min_size=2,
                    max_size=2,
                    kwargs={"autocommit": True},
                    configure=_register,
                    open=False,
                )
            )
            pool.open(wait=True)

            def call(q: NDArray[np.float32]) -> int:
                with pool.connection() as conn:
                    cur = conn.cursor(binary=True)
                    found = [
                        (i, v.to_numpy(), d)
                        for i, v, d in cur.execute(_NEAREST, {"q": q}, prepare=True).fetchall()
                    ]
                return sum(i for i, _, _ in found)

            return PerOp(call, close=pool.close)

        def orso_db() -> PerOp:
            db = clients.db
            return PerOp(lambda q: sum(e.id for e, _ in Embedding.nearest("emb", q, 10, db)))

        def core() -> PerOp:
            from sqlalchemy import select

            emb = _sa_table()
            engine = clients.engine

            def call(q: NDArray[np.float32]) -> int:
                distance = emb.c.emb.cosine_distance(q)
                stmt = select(emb.c.id, emb.c.emb, distance.label("distance"))
                with engine.connect() as conn:
                    rows = conn.execute(stmt.order_by(distance).limit(10)).all()
                return sum(r.id for r in rows)

            return PerOp(call)

        return [
            Variant("raw", "pool_per_op (pgvector adapter)", raw_pool, "per_op"),
            Variant("orso_pg", "Model.nearest (Database)", orso_db, "per_op"),
            Variant("sqlalchemy_core", "engine_connect_per_op (pgvector)", core, "per_op"),
        ]

    def teardown(self) -> None:
        super().teardown()
        self.env.admin.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(_TABLE)))
