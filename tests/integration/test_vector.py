"""pgvector columns end to end: every read and write path, checks, migrations, nearest searches.

The embedded PostgreSQL ships the ``vector`` extension, so these tests always run there; a second
server without the extension skips them (and runs the test of the error it gives instead).
"""

from __future__ import annotations

import math
import subprocess
import sys
import uuid
from typing import Any

import numpy as np
import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray
from psycopg.conninfo import make_conninfo

from orso_pg import (
    Database,
    Filter,
    MigrationAction,
    MigrationError,
    Migrations,
    Orso,
    Pagination,
    QueryBuilder,
    ValidationError,
    _adapters,
    column,
    migration,
    table,
)
from orso_pg.testing.strategies import strategy
from tests.conftest import Server
from tests.helpers import count_statements, create_tables


@table("vec_docs")
class Doc(Orso):
    id: int | None = column(primary_key=True, default=None)
    tag: str = column(unique=True)
    emb: list[float] = column(vector=3)
    arr: NDArray[np.float32] | None = column(vector=3, default=None)
    half: list[float] | None = column(vector=3, half=True, default=None)
    sparse: dict[int, float] | None = column(vector=5, sparse=True, default=None)


@table("vec_points")
class Point(Orso):
    id: int | None = column(primary_key=True, default=None)
    group: int = 0
    emb: NDArray[np.float32] = column(vector=16)


def _has_vector(server: Server) -> bool:
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'vector')"
        ).fetchone()
    return bool(row and row[0])


@pytest.fixture
def vdb(request: pytest.FixtureRequest, server: Server, db: Database) -> Database:
    """The test's Database on a server with pgvector (never skipped on the embedded one)."""
    embedded = request.node.callspec.params.get("server") == "embedded"
    if not _has_vector(server):
        if embedded:
            pytest.fail("the embedded PostgreSQL must ship the vector extension")
        pytest.skip(f"{server.id} has no vector extension (pgvector is not installed there)")
    return db


def f32(values: Any) -> list[float]:
    return [float(x) for x in np.asarray(values, dtype=np.float32)]


# --- the package is optional ------------------------------------------------------------------


def test_import_does_not_load_pgvector() -> None:
    """``import orso_pg`` works without touching pgvector."""
    code = "import sys, orso_pg; assert 'pgvector' not in sys.modules, 'pgvector was imported'"
    subprocess.run([sys.executable, "-c", code], check=True)  # noqa: S603 - our own interpreter


def test_missing_pgvector_names_the_extra() -> None:
    """A vector column without the package fails at decoration, naming the extra."""
    code = (
        "import sys; sys.modules['pgvector'] = None\n"
        "from orso_pg import table, column, DefinitionError\n"
        "try:\n"
        "    @table('t')\n"
        "    class T:\n"
        "        id: int | None = column(primary_key=True, default=None)\n"
        "        v: list[float] = column(vector=3)\n"
        "except DefinitionError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    )
    assert "orso_pg[vector]" in out.stdout
    assert "T.v" in out.stdout


# --- round trips ------------------------------------------------------------------------------


def test_every_path_round_trips(vdb: Database) -> None:
    """insert, update, upsert, finders, pages, streams, selects and batches keep the values."""
    create_tables(vdb, Doc)
    doc = Doc(
        tag="a",
        emb=[1.0, 2.5, -3.0],
        arr=np.array([0.5, 0.25, -1.0], dtype=np.float32),
        half=[1.5, -2.0, 0.25],
        sparse={0: 1.5, 4: -2.0},
    )
    doc.insert(vdb)
    assert doc.id is not None
    assert doc.emb == [1.0, 2.5, -3.0]
    assert isinstance(doc.arr, np.ndarray)
    assert doc.arr.dtype == np.float32
    np.testing.assert_array_equal(doc.arr, [0.5, 0.25, -1.0])
    assert doc.half == [1.5, -2.0, 0.25]
    assert doc.sparse == {0: 1.5, 4: -2.0}

    found = Doc.find_by_id(doc.id, vdb)
    assert found is not None
    assert found.emb == doc.emb
    np.testing.assert_array_equal(found.arr, doc.arr)
    assert (found.half, found.sparse) == (doc.half, doc.sparse)

    doc.emb = [0.1, 0.2, 0.3]
    doc.arr = None
    doc.sparse = {}
    doc.update(vdb)
    again = Doc.find_by_id(doc.id, vdb)
    assert again is not None
    assert again.emb == f32([0.1, 0.2, 0.3])
    assert again.arr is None
    assert again.sparse == {}

    Doc(tag="a", emb=[4.0, 5.0, 6.0], half=[0.5, 0.5, 0.5]).upsert(vdb)
    [upserted] = Doc.find_all(vdb)
    assert upserted.emb == [4.0, 5.0, 6.0]
    assert upserted.half == [0.5, 0.5, 0.5]

    docs = [
        Doc(tag=f"b{i}", emb=[float(i), 1.0, 2.0], arr=np.full(3, i, np.float32)) for i in range(5)
    ]
    assert Doc.batch_insert(docs, vdb) == 5
    assert Doc.batch_create_rows([("r", [7.0, 8.0, 9.0], None, None, {2: 3.0})], vdb) == 1
    by_tag = {d.tag: d for d in Doc.find_all(vdb)}
    assert by_tag["b3"].emb == [3.0, 1.0, 2.0]
    np.testing.assert_array_equal(by_tag["b3"].arr, [3.0, 3.0, 3.0])
    assert by_tag["r"].emb == [7.0, 8.0, 9.0]
    assert by_tag["r"].sparse == {2: 3.0}

    changed = [attrs_evolve(by_tag[f"b{i}"], emb=[0.0, 0.0, float(i)]) for i in range(5)]
    Doc.batch_update(changed, vdb)
    Doc.batch_upsert([Doc(tag="b0", emb=[9.0, 9.0, 9.0]), Doc(tag="z", emb=[1.0, 1.0, 1.0])], vdb)
    by_tag = {d.tag: d for d in Doc.find_all(vdb)}
    assert by_tag["b1"].emb == [0.0, 0.0, 1.0]
    assert by_tag["b0"].emb == [9.0, 9.0, 9.0]
    assert by_tag["z"].emb == [1.0, 1.0, 1.0]

    page = Doc.find_paginated(Pagination(1, 3), vdb)
    assert [d.emb for d in page.data] == [by_tag[d.tag].emb for d in page.data]
    streamed = {d.tag: d.emb for d in Doc.stream_where(None, vdb, batch_size=2)}
    assert streamed == {t: d.emb for t, d in by_tag.items()}
    assert Doc.find_by_field("tag", "z", vdb)[0].emb == [1.0, 1.0, 1.0]
    rows = QueryBuilder(Doc).select("tag", "emb", "half").where(Filter.eq("tag", "r")).fetch(vdb)
    assert rows == [("r", [7.0, 8.0, 9.0], None)]
    streamed_rows = list(QueryBuilder(Doc).select("emb").where(Filter.eq("tag", "z")).stream(vdb))
    assert streamed_rows == [([1.0, 1.0, 1.0],)]


def attrs_evolve(doc: Doc, **changes: Any) -> Doc:
    import attrs

    evolved: Doc = attrs.evolve(doc, **changes)  # type: ignore[misc]
    return evolved


@settings(max_examples=25)
@given(data=st.data())
def test_drawn_instances_round_trip(vdb: Database, data: st.DataObject) -> None:
    """Whatever the testing kit draws for a vector model is read back equal."""
    create_tables(vdb, Doc)
    Doc.delete_where(Filter.is_not_null("id"), vdb)
    doc = data.draw(strategy(Doc))
    doc.id = None
    doc.insert(vdb)
    found = Doc.find_by_id(doc.id, vdb)
    assert found is not None
    assert found.emb == doc.emb
    assert found.half == doc.half
    assert found.sparse == doc.sparse
    if doc.arr is None:
        assert found.arr is None
    else:
        np.testing.assert_array_equal(found.arr, doc.arr)


def test_transactions_read_and_write_vectors(vdb: Database) -> None:
    """A Transaction session runs the same paths (adapters registered on its connection)."""
    create_tables(vdb, Doc)
    with vdb.transaction() as tx:
        Doc(tag="t", emb=[1.0, 2.0, 3.0]).insert(tx)
        assert [d.emb for d in Doc.find_all(tx)] == [[1.0, 2.0, 3.0]]
        assert [d.tag for d, _ in Doc.nearest("emb", [1.0, 2.0, 3.0], 1, tx)] == ["t"]


# --- bad input --------------------------------------------------------------------------------


BAD = [
    ([1.0, 2.0], "expected 3 dimensions, got 2"),
    ([1.0, 2.0, 3.0, 4.0], "expected 3 dimensions, got 4"),
    ([1.0, math.nan, 3.0], "element 1 is nan"),
    ([1.0, 2.0, math.inf], "element 2 is inf"),
    ([1.0, 2.0, 1e39], "beyond the float32 range"),
    ([1.0, "x", 3.0], "element 1 is 'x', not a number"),
    ([[1.0, 2.0, 3.0]], "expected a 1-D vector, got a nested sequence"),
    (np.ones((3, 1), dtype=np.float32), "expected a 1-D vector, got an array of shape (3, 1)"),
    (np.array(["a", "b", "c"]), "expected numbers"),
    ("1,2,3", "expected a list of floats or a 1-D array, got str"),
]


@pytest.mark.parametrize(("value", "reason"), BAD)
def test_bad_vectors_are_refused_before_any_sql(vdb: Database, value: Any, reason: str) -> None:
    """Wrong dimensions, NaN, infinity, non-numbers and 2-D arrays name table, column, value."""
    create_tables(vdb, Doc)
    with count_statements(vdb) as log, pytest.raises(ValidationError) as caught:
        Doc(tag="bad", emb=value).insert(vdb)
    assert len(log) == 0
    err = caught.value
    assert (err.table, err.column) == ("vec_docs", "emb")
    assert err.value is value
    assert reason in str(err)
    assert "vec_docs.emb" in str(err)
    with pytest.raises(ValidationError, match=r"row 1 .*vec_docs\.emb|vec_docs\.emb"):
        Doc.batch_insert([Doc(tag="ok", emb=[1.0, 2.0, 3.0]), Doc(tag="bad", emb=value)], vdb)  # type: ignore[arg-type]
    assert Doc.count(vdb) == 0
    with pytest.raises(ValidationError, match="query vector"):
        Doc.nearest("emb", value, 3, vdb)


def test_bad_half_and_sparse_values(vdb: Database) -> None:
    """halfvec refuses what float16 cannot hold; sparsevec checks indices and values."""
    create_tables(vdb, Doc)
    cases = [
        ({"half": [1.0, 2.0, 70000.0]}, "half", "beyond the float16 range"),
        ({"sparse": {5: 1.0}}, "sparse", "index 5 is outside 0..4"),
        ({"sparse": {"a": 1.0}}, "sparse", "index 'a' is not an int"),
        ({"sparse": {1: math.nan}}, "sparse", "NaN and infinity"),
        ({"sparse": {1: "x"}}, "sparse", "not a number"),
    ]
    for change, name, reason in cases:
        with pytest.raises(ValidationError, match=reason) as caught:
            Doc(tag="x", emb=[1.0, 2.0, 3.0], **change).insert(vdb)  # type: ignore[arg-type]
        assert caught.value.column == name
    # A dense list is accepted for a sparse column: its zeros are left out.
    doc = Doc(tag="d", emb=[1.0, 2.0, 3.0], sparse=[0.0, 2.0, 0.0, 0.0, 1.0]).insert(vdb)  # type: ignore[arg-type]
    assert doc.sparse == {1: 2.0, 4: 1.0}


# --- migrations -------------------------------------------------------------------------------


def test_server_without_the_extension_says_how_to_install(
    request: pytest.FixtureRequest, server: Server, db: Database
) -> None:
    """A model needing pgvector on a server without it is a MigrationError, nothing created."""
    if _has_vector(server):
        pytest.skip(f"{server.id} ships the vector extension; the error needs a server without")
    with pytest.raises(MigrationError, match=r"no vector extension.*install pgvector") as caught:
        Migrations.init(db, [migration(Doc)])
    assert caught.value.table == "vec_docs"
    with db.connection() as conn:
        row = conn.execute("SELECT to_regclass('vec_docs')").fetchone()
    assert row == (None,)


def test_migrations_create_the_extension_and_indexes(vdb: Database) -> None:
    """The extension is installed in the migration's transaction; the second run matches."""

    @table("vec_indexed")
    class Indexed(Orso):
        id: int | None = column(primary_key=True, default=None)
        a: list[float] = column(vector=3, index="hnsw", distance="cosine", m=8, ef_construction=32)
        b: list[float] = column(vector=3, index="hnsw", distance="inner_product")
        c: list[float] = column(vector=3, index="hnsw", distance="l1")
        d: list[float] = column(vector=3, index="ivfflat", distance="l2", lists=4)
        e: list[float] = column(vector=3, half=True, index="hnsw", distance="cosine")
        f: dict[int, float] = column(vector=9, sparse=True, index="hnsw")

    plan = Migrations.plan(vdb, [migration(Indexed)])[0]
    with vdb.connection() as conn:
        installed = conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'vector'")
        already = bool(installed.fetchone()[0])  # type: ignore[index]
    if not already:
        assert plan.steps[0].sql == "CREATE EXTENSION IF NOT EXISTS vector"
    [first] = Migrations.init(vdb, [migration(Indexed)])
    assert first.action is MigrationAction.TABLE_CREATED
    sqls = "\n".join(s.sql for s in first.steps)
    assert 'USING hnsw ("a" "vector_cosine_ops") WITH ("ef_construction" = 32, "m" = 8)' in sqls
    assert 'USING hnsw ("b" "vector_ip_ops")' in sqls
    assert 'USING hnsw ("c" "vector_l1_ops")' in sqls
    assert 'USING ivfflat ("d" "vector_l2_ops") WITH ("lists" = 4)' in sqls
    assert 'USING hnsw ("e" "halfvec_cosine_ops")' in sqls
    assert 'USING hnsw ("f" "sparsevec_l2_ops")' in sqls
    [second] = Migrations.init(vdb, [migration(Indexed)])
    assert second.action is MigrationAction.SCHEMA_MATCHED, second.steps

    # Another distance (or index option) replaces the index.
    @table("vec_indexed")
    class Changed(Orso):
        id: int | None = column(primary_key=True, default=None)
        a: list[float] = column(vector=3, index="hnsw", distance="l2", m=8, ef_construction=32)
        b: list[float] = column(vector=3, index="hnsw", distance="inner_product", m=12)
        c: list[float] = column(vector=3, index="hnsw", distance="l1")
        d: list[float] = column(vector=3, index="ivfflat", distance="l2", lists=4)
        e: list[float] = column(vector=3, half=True, index="hnsw", distance="cosine")
        f: dict[int, float] = column(vector=9, sparse=True, index="hnsw")

    [third] = Migrations.init(vdb, [migration(Changed)])
    words = [s.description for s in third.steps]
    assert any(w.startswith("drop index vec_indexed_a_idx") for w in words)
    assert any(w.startswith("drop index vec_indexed_b_idx") for w in words)
    assert sum(w.startswith("create hnsw index") for w in words) == 2
    [fourth] = Migrations.init(vdb, [migration(Changed)])
    assert fourth.action is MigrationAction.SCHEMA_MATCHED


def test_vector_column_and_hnsw_index_on_a_populated_table(vdb: Database) -> None:
    """Adding a vector column with an HNSW index keeps the rows; new vectors are searchable."""

    @table("vec_grow")
    class Before(Orso):
        id: int | None = column(primary_key=True, default=None)
        name: str

    create_tables(vdb, Before)
    Before.batch_insert([Before(name=f"n{i}") for i in range(50)], vdb)

    @table("vec_grow")
    class After(Orso):
        id: int | None = column(primary_key=True, default=None)
        name: str
        emb: list[float] | None = column(vector=4, index="hnsw", distance="cosine", default=None)

    [result] = Migrations.init(vdb, [migration(After)])
    assert result.action is MigrationAction.DATA_MIGRATED
    assert After.count(vdb) == 50
    for i, row in enumerate(sorted(After.find_all(vdb), key=lambda r: r.id or 0)):
        row.emb = [1.0, float(i), 0.0, 1.0]
        row.update(vdb)
    [(best, dist)] = After.nearest("emb", [1.0, 7.0, 0.0, 1.0], 1, vdb)
    assert best.name == "n7"
    assert dist == pytest.approx(0.0, abs=1e-6)
    assert Migrations.init(vdb, [migration(After)])[0].action is MigrationAction.SCHEMA_MATCHED


def test_dimension_change_needs_allow_data_loss(vdb: Database) -> None:
    """vector(3) to vector(4) is refused while vectors exist, and drops them when allowed."""

    @table("vec_dims")
    class Three(Orso):
        id: int | None = column(primary_key=True, default=None)
        emb: list[float] | None = column(vector=3, default=None)
        req: list[float] = column(vector=2)

    create_tables(vdb, Three)
    Three(emb=[1.0, 2.0, 3.0], req=[1.0, 1.0]).insert(vdb)

    @table("vec_dims")
    class Four(Orso):
        id: int | None = column(primary_key=True, default=None)
        emb: list[float] | None = column(vector=4, default=None)
        req: list[float] = column(vector=2)

    with pytest.raises(MigrationError, match="allow_data_loss=True") as caught:
        Migrations.init(vdb, [migration(Four)])
    assert caught.value.column == "emb"
    assert [r.emb for r in Three.find_all(vdb)] == [[1.0, 2.0, 3.0]]
    [result] = Migrations.init(vdb, [migration(Four)], allow_data_loss=True)
    assert "existing vectors set to NULL" in result.steps[0].description
    [row] = Four.find_all(vdb)
    assert row.emb is None
    assert row.req == [1.0, 1.0]

    @table("vec_dims")
    class Wider(Orso):
        id: int | None = column(primary_key=True, default=None)
        emb: list[float] | None = column(vector=4, default=None)
        req: list[float] = column(vector=3)

    with pytest.raises(MigrationError, match="NOT NULL"):
        Migrations.init(vdb, [migration(Wider)], allow_data_loss=True)

    # halfvec to vector keeps the values; vector to halfvec rounds, so it asks first.
    @table("vec_dims")
    class Half(Orso):
        id: int | None = column(primary_key=True, default=None)
        emb: list[float] | None = column(vector=4, default=None)
        req: list[float] = column(vector=2, half=True)

    with pytest.raises(MigrationError, match="float16"):
        Migrations.init(vdb, [migration(Half)])
    Migrations.init(vdb, [migration(Half)], allow_data_loss=True)
    Migrations.init(vdb, [migration(Four)])
    assert [r.req for r in Four.find_all(vdb)] == [[1.0, 1.0]]


# --- nearest ----------------------------------------------------------------------------------


def _points(vdb: Database, count: int, seed: int = 7) -> np.ndarray[Any, Any]:
    rng = np.random.default_rng(seed)
    data = rng.normal(size=(count, 16)).astype(np.float32)
    Point.batch_insert([Point(group=i % 3, emb=v) for i, v in enumerate(data)], vdb)
    return data


def _exact(
    data: np.ndarray[Any, Any], q: np.ndarray[Any, Any], distance: str
) -> np.ndarray[Any, Any]:
    x, y = data.astype(np.float64), q.astype(np.float64)
    if distance == "l2":
        return np.sqrt(((x - y) ** 2).sum(axis=1))  # type: ignore[no-any-return]
    if distance == "l1":
        return np.abs(x - y).sum(axis=1)  # type: ignore[no-any-return]
    if distance == "inner_product":
        return -(x @ y)
    return 1 - (x @ y) / (np.linalg.norm(x, axis=1) * np.linalg.norm(y))  # type: ignore[no-any-return]


@pytest.mark.parametrize("distance", ["l2", "cosine", "inner_product", "l1"])
def test_nearest_matches_numpy_exactly_without_an_index(vdb: Database, distance: str) -> None:
    """Without an index, nearest is the exact k-NN: same rows, same order, same distances."""
    create_tables(vdb, Point)
    data = _points(vdb, 2000)
    ids = np.array([p.id for p in sorted(Point.find_all(vdb), key=lambda p: p.id or 0)])
    rng = np.random.default_rng(1)
    for q in rng.normal(size=(5, 16)).astype(np.float32):
        found = Point.nearest("emb", q, 10, vdb, distance=distance)
        exact = _exact(data, q, distance)
        order = np.argsort(exact, kind="stable")[:10]
        assert [p.id for p, _ in found] == list(ids[order])
        np.testing.assert_allclose([d for _, d in found], exact[order], rtol=1e-4, atol=1e-4)
        # Filters pre-filter: the same search within one group.
        only = Point.nearest("emb", q, 5, vdb, distance=distance, filter=Filter.eq("group", 1))
        in_group = np.flatnonzero(np.arange(len(data)) % 3 == 1)
        group_order = in_group[np.argsort(exact[in_group], kind="stable")[:5]]
        assert [p.id for p, _ in only] == list(ids[group_order])


def test_hnsw_recall_explain_and_ef_search(vdb: Database) -> None:
    """With HNSW (m=16, ef_construction=64) and ef_search=100, recall@10 is at least 0.95."""

    @table("vec_points")
    class Indexed(Orso):
        id: int | None = column(primary_key=True, default=None)
        group: int = 0
        emb: NDArray[np.float32] = column(vector=16, index="hnsw", distance="cosine")

    create_tables(vdb, Indexed)
    data = _points(vdb, 3000)
    ids = np.array([p.id for p in sorted(Indexed.find_all(vdb), key=lambda p: p.id or 0)])
    rng = np.random.default_rng(2)
    hits = 0
    queries = rng.normal(size=(20, 16)).astype(np.float32)
    for q in queries:
        found = Indexed.nearest("emb", q, 10, vdb, ef_search=100)
        distances = [d for _, d in found]
        assert distances == sorted(distances)
        truth = set(ids[np.argsort(_exact(data, q, "cosine"))[:10]])
        hits += len(truth & {p.id for p, _ in found})
    assert hits / (10 * len(queries)) >= 0.95

    stmt = QueryBuilder(Indexed).vector_search("emb", queries[0], 10).build()
    assert stmt.as_string() == (
        'SELECT "id", "group", "emb" FROM "vec_points" ORDER BY ("emb" <=> %s) LIMIT %s'
    )
    # nearest orders by the distance it selects: the index serves that order too.
    with count_statements(vdb) as log:
        Indexed.nearest("emb", queries[0], 10, vdb)
    [(text, params)] = log.statements
    assert text == (
        'SELECT "id", "group", "emb", ("emb" <=> %s) AS "distance" FROM "vec_points" '
        'ORDER BY "distance" LIMIT %s'
    )
    with vdb.connection() as conn:
        _adapters.prepare(conn)
        explained = conn.execute(("EXPLAIN " + text).encode(), params).fetchall()
    assert "Index Scan using vec_points_emb_idx" in "\n".join(r[0] for r in explained)
    with vdb.connection() as conn:
        _adapters.prepare(conn)
        plan = "\n".join(
            r[0] for r in conn.execute(b"EXPLAIN " + stmt.query.as_bytes(conn), stmt.params)
        )
    assert "Index Scan using vec_points_emb_idx" in plan

    # ef_search applies to its own query only: pgvector returns at most ef_search rows.
    vdb_one = Database(vdb.conninfo, schema=vdb.schema, min_size=1, max_size=1)
    try:
        assert len(Indexed.nearest("emb", queries[0], 10, vdb_one, ef_search=1)) == 1
        assert len(Indexed.nearest("emb", queries[0], 10, vdb_one)) == 10
        assert (
            len(
                QueryBuilder(Indexed)
                .vector_search("emb", queries[0], 10, ef_search=2)
                .fetch(vdb_one)
            )
            == 2
        )
        assert (
            len(
                list(
                    QueryBuilder(Indexed)
                    .vector_search("emb", queries[0], 10, ef_search=3)
                    .stream(vdb_one)
                )
            )
            == 3
        )
        with vdb_one.connection() as conn:
            assert conn.execute("SHOW hnsw.ef_search").fetchone() == ("40",)
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    finally:
        vdb_one.close()


def test_builder_methods_and_pages(vdb: Database) -> None:
    """vector_distance selects, vector_similar bounds, vector_search orders; pages on top."""
    create_tables(vdb, Point)
    data = _points(vdb, 300)
    ids = np.array([p.id for p in sorted(Point.find_all(vdb), key=lambda p: p.id or 0)])
    q = data[5]
    exact = _exact(data, q, "l2")
    rows = (
        QueryBuilder(Point)
        .select("id")
        .vector_distance("emb", q, "dist")
        .vector_similar("emb", q, 4.0)
        .vector_search("emb", q, 1000)
        .fetch_dicts(vdb)
    )
    within = np.flatnonzero(exact < 4.0)
    assert [r["id"] for r in rows] == list(ids[within[np.argsort(exact[within])]])
    assert rows[0]["dist"] == pytest.approx(0.0, abs=1e-6)

    builder = QueryBuilder(Point).vector_search("emb", q, 300, distance="l1")
    order = list(ids[np.argsort(_exact(data, q, "l1"))])
    pages = [Point.query_paginated(builder, Pagination(n, 50), vdb) for n in (1, 2, 3)]
    assert [p.id for page in pages for p in page.data] == order[:150]
    assert pages[0].pagination.total == 300
    assert [p.id for p in Point.query(builder.limit(7), vdb)] == order[:7]


def test_query_argument_errors(vdb: Database) -> None:
    """Unknown distances, non-vector columns and bad settings are QueryErrors, before SQL."""
    from orso_pg import QueryError

    create_tables(vdb, Point)
    q = np.zeros(16, np.float32)
    with pytest.raises(QueryError, match="distance must be one of"):
        Point.nearest("emb", q, 3, vdb, distance="hamming")
    with pytest.raises(QueryError, match="not a vector column"):
        Point.nearest("group", q, 3, vdb)
    with pytest.raises(QueryError, match="ef_search must be an int"):
        Point.nearest("emb", q, 3, vdb, ef_search=0)
    with pytest.raises(QueryError, match="probes must be an int"):
        Point.nearest("emb", q, 3, vdb, probes=True)
    with pytest.raises(QueryError, match="threshold must be finite"):
        QueryBuilder(Point).vector_similar("emb", q, math.inf)
    with pytest.raises(QueryError, match="threshold must be a number"):
        QueryBuilder(Point).vector_similar("emb", q, "1")  # type: ignore[arg-type]
    with pytest.raises(QueryError, match="filter must be a Filter"):
        Point.nearest("emb", q, 3, vdb, filter="group = 1")  # type: ignore[arg-type]
    with pytest.raises(QueryError, match="alias"):
        QueryBuilder(Point).vector_distance("emb", q, "")
    with pytest.raises(QueryError, match="column name must be a str"):
        QueryBuilder(Point).vector_search(3, q, 1)  # type: ignore[arg-type]


def test_connection_opened_before_the_extension(vdb: Database, server: Server) -> None:
    """A pooled connection that first saw no extension registers it once a migration made it."""
    fresh = f"vecdb_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{fresh}"')
    try:
        other = Database(make_conninfo(server.dsn, dbname=fresh), min_size=1, max_size=1)
        try:
            create_tables(other, Doc)
            Doc(tag="x", emb=[1.0, 2.0, 3.0]).insert(other)
            assert [d.emb for d in Doc.find_all(other)] == [[1.0, 2.0, 3.0]]
        finally:
            other.close()
    finally:
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{fresh}" WITH (FORCE)')


def test_readme_vector_section_runs(
    vdb: Database, server: Server, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's vector section runs as written, its asserts included."""
    import types

    from psycopg.conninfo import make_conninfo

    from tests.test_readme import README, python_block

    dsn = make_conninfo(server.dsn, options=f"-c search_path={schema}")
    monkeypatch.setenv("ORSO_PG_DSN", dsn)
    module = types.ModuleType("readme_vectors")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(compile(python_block("Vectors (pgvector)"), str(README), "exec"), module.__dict__)  # noqa: S102
    hits = module.__dict__["hits"]
    assert len(hits) == 5


def test_large_finite_float32_values_pass(vdb: Database) -> None:
    """A float32 vector whose squares overflow is still finite: the full check lets it in."""
    create_tables(vdb, Doc)
    big = np.array([3e38, -3e38, 1e20], dtype=np.float32)
    doc = Doc(tag="big", emb=[1.0, 2.0, 3.0], arr=big).insert(vdb)
    np.testing.assert_array_equal(doc.arr, big)
    with pytest.raises(ValidationError, match="element 1 is nan"):
        Doc(tag="nan", emb=[1.0, 2.0, 3.0], arr=np.array([1, np.nan, 2], np.float32)).insert(vdb)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (np.array([1.0, np.nan, 2.0], np.float32), "element 1 is nan"),
        (np.array([1.0, 2.0, np.inf], np.float32), "element 2 is inf"),
        (np.array([1.0, 2.0], np.float32), "expected 3 dimensions, got 2"),
        (np.ones((1, 3), np.float32), "expected a 1-D vector"),
    ],
)
def test_batches_name_a_bad_float32_array(vdb: Database, value: Any, reason: str) -> None:
    """float32 arrays go to COPY as they are; one the server refuses is named by its row."""
    create_tables(vdb, Doc)
    docs = [Doc(tag=f"d{i}", emb=[1.0, 2.0, 3.0], arr=np.ones(3, np.float32)) for i in range(3)]
    docs[1].arr = value
    with pytest.raises(ValidationError, match=reason) as caught:
        Doc.batch_insert(docs, vdb)
    assert caught.value.column == "arr"
    assert "row 1" in str(caught.value)
    assert Doc.count(vdb) == 0
    rows = [(f"r{i}", [1.0, 2.0, 3.0], d.arr, None, None) for i, d in enumerate(docs)]
    with pytest.raises(ValidationError, match=reason):
        Doc.batch_create_rows(rows, vdb)
    assert Doc.count(vdb) == 0
