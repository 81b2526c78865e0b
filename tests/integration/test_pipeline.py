"""Pipelines against a real PostgreSQL: results equal one-by-one calls, errors, bounds, the pool."""

from __future__ import annotations

import datetime as dt
import functools
import gc
from collections.abc import Callable
from typing import Any, assert_type

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg import sql

from orso_pg import (
    Aggregate,
    ConfigError,
    ConnectionLostError,
    Database,
    DataError,
    Filter,
    MissingTableError,
    NotFoundError,
    Orso,
    Pagination,
    Pending,
    Pipeline,
    PipelineAbortedError,
    QueryError,
    RowLock,
    ServerUnavailableError,
    UniqueViolationError,
    column,
    table,
)
from orso_pg._compiler import Statement
from tests.conftest import Server
from tests.helpers import assert_pool_clean, create_tables


@table("p_items")
class Item(Orso):
    id: int | None = column(primary_key=True, default=None)
    name: str = column(unique=True)
    qty: int = 0


@table("p_notes")
class Note(Orso):
    id: int | None = column(primary_key=True, default=None)
    item: int
    text: str | None = None


@table("p_events")
class Event(Orso):
    id: int | None = column(primary_key=True, default=None)
    kind: str
    created_at: dt.datetime | None = column(created_at=True, default=None)


def _setup(db: Database) -> None:
    create_tables(db, Item, Note)


def _idle(db: Database) -> None:
    """Every pooled connection is back, idle, out of pipeline mode, and usable."""
    assert_pool_clean(db)
    assert Item.count(db) >= 0


# --- results ----------------------------------------------------------------------------------


def test_operations_return_pending_handles_resolved_at_sync(db: Database):
    """Each operation returns a Pending at once; the values arrive at sync."""
    _setup(db)
    with db.pipeline() as p:
        first = Item(name="a", qty=1).insert(p)
        second = Item(name="b", qty=2).insert(p)
        found = Item.find_by_id(1, p)
        assert isinstance(p, Pipeline)
        assert isinstance(found, Pending)
        assert_type(found, Pending[Item | None])  # what type checkers see (mypy runs on tests)
        assert_type(Item.find_by_id(1, db), Item | None)
        assert not found.done()
        p.sync()
        assert found.done()
        assert not found.failed()
        assert found.result() == Item(id=1, name="a", qty=1)
        assert first.result().id == 1
        assert second.result().id == 2
        count = Item.count(p)
        assert_type(count, Pending[int])
        assert count.result() == 2  # result() syncs by itself
        assert p.operations == 4
        assert "autocommit" in repr(p)
        assert "done" in repr(count)
    assert Item.count(db) == 2


class _UndoError(Exception):
    pass


def test_every_pipelined_operation_returns_what_the_database_returns(
    db: Database, raw: psycopg.Connection[Any]
):
    """Pipelined results equal the same calls made one by one on a Database."""
    _setup(db)
    for i in range(5):
        Item(name=f"n{i}", qty=i).insert(db)
    low = Filter.lt("qty", 3)

    def calls(s: Any) -> list[Any]:
        return [
            Item.find_by_id(2, s),
            Item.find_by_id_with_table(3, s, "p_items"),
            Item.find_one(low, s),
            Item.find_one_with_table(low, s, "p_items"),
            Item.find_where(low, s),
            Item.find_where_with_table(low, s, "p_items"),
            Item.find_by_field("qty", 4, s),
            Item.find_by_field_with_table("qty", 4, s, "p_items"),
            Item.find_by_field_in("qty", [1, 2], s),
            Item.find_by_field_in_with_table("qty", [1, 2], s, "p_items"),
            Item.find_all(s),
            Item.find_all_with_table(s, "p_items"),
            Item.count(s),
            Item.count_with_table(s, "p_items"),
            Item.count_where(low, s),
            Item.count_where_with_table(low, s, "p_items"),
            Item.exists(s),
            Item.exists_with_table(s, "p_items"),
            Item.exists_filter(low, s),
            Item.exists_filter_with_table(low, s, "p_items"),
            Item.aggregate(Aggregate.SUM, "qty", None, s),
            Item.aggregate_with_table(Aggregate.MAX, "qty", low, s, "p_items"),
            Item(id=1, name="n0", qty=10).update(s),
            Item(id=1, name="n0", qty=11).update_with_table(s, "p_items"),
            Item(name="n1", qty=20).upsert(s),
            Item(name="n1", qty=21).upsert_with_table(s, "p_items"),
            Item(id=2, name="n1", qty=22).insert_or_update(s),
            Item(id=2, name="n1", qty=23).insert_or_update_with_table(s, "p_items"),
            Item(name="x").insert(s),
            Item(name="y").insert_with_table(s, "p_items"),
            Item.update_where(Filter.eq("name", "x"), {"qty": 7}, s),
            Item.update_where_with_table(Filter.eq("name", "y"), {"qty": 8}, s, "p_items"),
            Item(id=6, name="").delete(s),
            Item(id=7, name="").delete_with_table(s, "p_items"),
            Item.delete_where(Filter.eq("qty", 4), s),
            Item.delete_where_with_table(Filter.eq("qty", 3), s, "p_items"),
            Item.find_all(s),
        ]

    with pytest.raises(_UndoError), db.transaction() as tx:
        expected = calls(tx)
        raise _UndoError  # roll back, so the pipeline starts from the same rows
    raw.execute("SELECT setval(pg_get_serial_sequence('p_items', 'id'), 5)")
    with db.pipeline() as p:
        handles = calls(p)
    assert all(isinstance(h, Pending) for h in handles)
    assert [h.result() for h in handles] == expected


def test_find_latest_and_first_in_a_pipeline(db: Database):
    """The created_at finders run in a pipeline too."""
    create_tables(db, Event)
    with db.pipeline() as p:
        Event(kind="a").insert(p)
        p.sync()
        Event(kind="b").insert(p)
    kind_b = Filter.eq("kind", "b")
    with db.pipeline() as p:
        handles = [
            Event.find_latest(p),
            Event.find_latest_with_table(p, "p_events"),
            Event.find_latest_filter(kind_b, p),
            Event.find_latest_filter_with_table(kind_b, p, "p_events"),
            Event.find_first_filter(kind_b, p),
            Event.find_first_filter_with_table(kind_b, p, "p_events"),
            Event.find_latest_by_field("kind", "a", p),
            Event.find_latest_by_field_with_table("kind", "a", p, "p_events"),
            Event.find_first_by_field_with_table("kind", "a", p, "p_events"),
        ]
    kinds = [h.result().kind for h in handles]  # type: ignore[union-attr]
    assert kinds == ["b", "b", "b", "b", "b", "b", "a", "a", "a"]


# --- the property: a pipeline equals the same operations one by one ---------------------------

_NAMES = st.sampled_from(["a", "b", "c", "d"])
_QTY = st.integers(0, 5)
_KEYS = st.integers(1, 6)

_OPS = st.one_of(
    st.tuples(st.just("insert"), _NAMES, _QTY),
    st.tuples(st.just("update"), _KEYS, _NAMES, _QTY),
    st.tuples(st.just("upsert"), _NAMES, _QTY),
    st.tuples(st.just("delete"), _KEYS),
    st.tuples(st.just("find_by_id"), _KEYS),
    st.tuples(st.just("find_one"), _NAMES),
    st.tuples(st.just("find_by_field"), _QTY),
    st.tuples(st.just("count")),
    st.tuples(st.just("exists")),
    st.tuples(st.just("update_where"), _QTY, _QTY),
    st.tuples(st.just("delete_where"), _QTY),
    st.tuples(st.just("aggregate")),
    st.tuples(st.just("note"), _KEYS, st.none() | _NAMES),
    st.tuples(st.just("note_find"), _KEYS),
    st.tuples(st.just("note_count"), _KEYS),
    st.tuples(st.just("note_delete"), _KEYS),
)


def _apply(op: tuple[Any, ...], s: Any, suffix: str) -> Any:
    """Run *op* on the tables ``p_items{suffix}`` and ``p_notes{suffix}`` through session *s*."""
    items, notes = "p_items" + suffix, "p_notes" + suffix
    name, *args = op
    calls: dict[str, Callable[[], Any]] = {
        "insert": lambda: Item(name=args[0], qty=args[1]).insert_with_table(s, items),
        "update": lambda: Item(id=args[0], name=args[1], qty=args[2]).update_with_table(s, items),
        "upsert": lambda: Item(name=args[0], qty=args[1]).upsert_with_table(s, items),
        "delete": lambda: Item(id=args[0], name="", qty=0).delete_with_table(s, items),
        "find_by_id": lambda: Item.find_by_id_with_table(args[0], s, items),
        "find_one": lambda: Item.find_one_with_table(Filter.eq("name", args[0]), s, items),
        "find_by_field": lambda: Item.find_by_field_with_table("qty", args[0], s, items),
        "count": lambda: Item.count_with_table(s, items),
        "exists": lambda: Item.exists_with_table(s, items),
        "update_where": lambda: Item.update_where_with_table(
            Filter.eq("qty", args[0]), {"qty": args[1]}, s, items
        ),
        "delete_where": lambda: Item.delete_where_with_table(Filter.eq("qty", args[0]), s, items),
        "aggregate": lambda: Item.aggregate_with_table(Aggregate.SUM, "qty", None, s, items),
        "note": lambda: Note(item=args[0], text=args[1]).insert_with_table(s, notes),
        "note_find": lambda: Note.find_by_field_with_table("item", args[0], s, notes),
        "note_count": lambda: Note.count_where_with_table(Filter.eq("item", args[0]), s, notes),
        "note_delete": lambda: Note.delete_where_with_table(Filter.eq("item", args[0]), s, notes),
    }
    return calls[name]()


def _outcome(call: Callable[[], Any]) -> Any:
    """Return ("ok", value) or ("error", class) for a call (a handle's result, or a call)."""
    try:
        return ("ok", call())
    except (UniqueViolationError, NotFoundError) as exc:
        return ("error", type(exc))


def _state(db: Database, suffix: str) -> Any:
    return (
        Item.find_all_with_table(db, "p_items" + suffix),
        Note.find_all_with_table(db, "p_notes" + suffix),
    )


def _reset(raw: psycopg.Connection[Any]) -> None:
    raw.execute(
        "TRUNCATE p_items, p_notes, p_items_seq, p_notes_seq RESTART IDENTITY; "
        "INSERT INTO p_items (name, qty) VALUES ('a', 1), ('b', 2); "
        "INSERT INTO p_items_seq (name, qty) VALUES ('a', 1), ('b', 2)"
    )


@pytest.fixture
def twin_tables(db: Database, raw: psycopg.Connection[Any]) -> Database:
    """p_items/p_notes for the pipeline and p_items_seq/p_notes_seq for the one-by-one run."""
    _setup(db)
    from orso_pg import Migrations, migration

    Migrations.init(db, [migration(Item, "p_items_seq"), migration(Note, "p_notes_seq")])
    return db


@settings(max_examples=25)
@given(ops=st.lists(_OPS, max_size=25), max_pending=st.integers(1, 6))
def test_a_pipeline_equals_the_same_operations_one_by_one(
    twin_tables: Database, raw: psycopg.Connection[Any], ops: list[Any], max_pending: int
):
    """Autocommit: every handle holds what the one-by-one call returned or raised."""
    db = twin_tables
    _reset(raw)
    expected = [_outcome(functools.partial(_apply, op, db, "_seq")) for op in ops]
    with db.pipeline(max_pending=max_pending) as p:
        handles = [_apply(op, p, "") for op in ops]
        got = [_outcome(h.result) for h in handles]
    assert got == expected
    assert _state(db, "") == _state(db, "_seq")


@settings(max_examples=25)
@given(ops=st.lists(_OPS, max_size=25), max_pending=st.integers(1, 6))
def test_a_transaction_pipeline_equals_a_transaction(
    twin_tables: Database, raw: psycopg.Connection[Any], ops: list[Any], max_pending: int
):
    """Transaction mode: all applied, or, after the first error, nothing and the rest aborted."""
    db = twin_tables
    _reset(raw)
    before = _state(db, "")
    expected: list[Any] = []
    failed_at = None
    try:
        with db.transaction() as tx:
            for i, op in enumerate(ops):
                outcome = _outcome(functools.partial(_apply, op, tx, "_seq"))
                expected.append(outcome)
                if outcome[0] == "error":
                    failed_at = i
                    raise outcome[1]("stop")
    except (UniqueViolationError, NotFoundError):
        pass
    raised = None
    try:
        with db.pipeline(transaction=True, max_pending=max_pending) as p:
            handles = [_apply(op, p, "") for op in ops]
    except (UniqueViolationError, NotFoundError) as exc:
        raised = type(exc)
    got = []
    for i, h in enumerate(handles):
        if failed_at is not None and i > failed_at:
            with pytest.raises(PipelineAbortedError, match=f"at operation {failed_at + 1} "):
                h.result()
        else:
            got.append(_outcome(h.result))
    assert got == expected
    if failed_at is None:
        assert raised is None
        assert _state(db, "") == _state(db, "_seq")
    else:
        assert raised is expected[failed_at][1]
        assert _state(db, "") == before
    _idle(db)


# --- errors -----------------------------------------------------------------------------------


def test_autocommit_an_error_fails_its_own_handle_only(db: Database):
    """A failed write fails its handle; what came before and after commits."""
    _setup(db)
    with db.pipeline() as p:
        a = Item(name="a").insert(p)
        dup = Item(name="a").insert(p)
        b = Item(name="b").insert(p)
        found = Item.find_one(Filter.eq("name", "b"), p)
        with pytest.raises(UniqueViolationError, match="p_items"):
            dup.result()
        assert dup.failed()
        assert a.result().id == 1
        assert b.result().name == "b"
        assert found.result() == b.result()
    assert [i.name for i in Item.find_all(db)] == ["a", "b"]
    _idle(db)


def test_autocommit_a_failed_read_does_not_take_the_next_operations_down(db: Database):
    """A failed read fails alone: the operations after it run, in order."""
    _setup(db)
    with db.pipeline() as p:
        counts = [Item.count(p) for _ in range(3)]
        missing = Item.count_with_table(p, "p_nowhere")
        before_insert = Item.count(p)
        inserted = Item(name="z").insert(p)
        after_insert = Item.count(p)
        p.sync()
        with pytest.raises(MissingTableError, match="p_nowhere"):
            missing.result()
    assert [c.result() for c in counts] == [0, 0, 0]
    assert before_insert.result() == 0
    assert inserted.result().name == "z"
    assert after_insert.result() == 1
    _idle(db)


def test_autocommit_an_error_nobody_looked_at_is_raised_at_the_end(db: Database):
    """Nothing fails silently: an unread failed handle raises when the block ends."""
    _setup(db)
    with pytest.raises(UniqueViolationError), db.pipeline() as p:
        Item(name="a").insert(p)
        Item(name="a").insert(p)
        Item(name="b").insert(p)
    assert [i.name for i in Item.find_all(db)] == ["a", "b"]
    _idle(db)


def test_transaction_an_error_aborts_the_rest_and_rolls_back(db: Database):
    """The first failure fails later operations clearly; nothing is half-applied."""
    _setup(db)
    Item(name="a").insert(db)
    with pytest.raises(UniqueViolationError) as raised, db.pipeline(transaction=True) as p:
        first = Item(name="b").insert(p)
        dup = Item(name="a").insert(p)
        later = Item.find_by_id(1, p)
        p.sync()
        after_sync = Item(name="c").insert(p)
        assert first.result().name == "b"
        with pytest.raises(UniqueViolationError):
            dup.result()
        with pytest.raises(PipelineAbortedError, match="earlier error at operation 2") as ab:
            later.result()
        assert ab.value.operation == 2
        assert after_sync.failed()
    assert "p_items" in str(raised.value)
    assert [i.name for i in Item.find_all(db)] == ["a"]
    _idle(db)


def test_transaction_a_missing_row_aborts_too(db: Database):
    """An update finding no row (found when its result is read) rolls the transaction back."""
    _setup(db)
    with pytest.raises(NotFoundError), db.pipeline(transaction=True) as p:
        Item(name="a").insert(p)
        Item(id=99, name="b").update(p)
        late = Item(name="c").insert(p)
    with pytest.raises(PipelineAbortedError, match="operation 2"):
        late.result()
    assert Item.count(db) == 0
    _idle(db)


def test_transaction_commits_when_all_succeed(db: Database):
    """A transaction pipeline commits at the end of the block; reads see earlier writes."""
    _setup(db)
    with db.pipeline(transaction=True, max_pending=2) as p:
        for i in range(5):
            Item(name=f"n{i}", qty=i).insert(p)
        total = Item.aggregate(Aggregate.SUM, "qty", None, p)
        locked = Item.find_by_id(1, p, lock=RowLock.update())
        assert "transaction" in repr(p)
    assert total.result() == 10
    assert locked.result() is not None
    assert Item.count(db) == 5


def test_a_block_that_raises(db: Database):
    """Autocommit runs what was queued; a transaction rolls it back and fails the handles."""
    _setup(db)
    with pytest.raises(RuntimeError), db.pipeline() as p:
        kept = Item(name="a").insert(p)
        raise RuntimeError
    assert kept.result().id == 1
    with pytest.raises(RuntimeError), db.pipeline(transaction=True) as p:
        gone = Item(name="b").insert(p)
        raise RuntimeError
    with pytest.raises(PipelineAbortedError, match="rolled back"):
        gone.result()
    assert [i.name for i in Item.find_all(db)] == ["a"]
    _idle(db)


def test_what_cannot_run_in_a_pipeline_says_so(db: Database):
    """Multi-statement operations, locks without a transaction and bad options are refused."""
    _setup(db)
    with db.pipeline() as p:
        with pytest.raises(QueryError, match="cannot run in a pipeline"):
            Item.batch_insert([Item(name="a")], p)  # type: ignore[call-overload]
        with pytest.raises(QueryError, match="cannot run in a pipeline"):
            p.fetch(sql.SQL("SELECT 1"))
        with pytest.raises(QueryError, match="cannot run in a pipeline"):
            Item.find_by_ids([1], p)  # type: ignore[arg-type]
        with pytest.raises(QueryError, match="cannot run in a pipeline"):
            list(Item.stream_where(None, p))  # type: ignore[arg-type]
        with pytest.raises(QueryError, match="cannot run in a pipeline"):
            Item.find_paginated(Pagination(1, 10), p)  # type: ignore[arg-type]
        with pytest.raises(QueryError, match="transaction=True"):
            Item.find_by_id(1, p, lock=RowLock.update())
        with pytest.raises(QueryError):  # checked before anything is sent
            Item.find_one(Filter.eq("nope", 1), p)
        assert p.operations == 0
    with db.pipeline(transaction=True) as p:
        with pytest.raises(QueryError, match="NOWAIT"):
            Item.find_by_id(1, p, lock=RowLock.update(nowait=True))
        with pytest.raises(QueryError, match="cannot run in a pipeline"):
            Item(id=1, name="a").delete_cascade(p)  # type: ignore[arg-type]
    with pytest.raises(QueryError, match="closed"):
        Item.count(p)
    for bad in ({"max_pending": 0}, {"max_bytes": True}):
        with pytest.raises(ConfigError), db.pipeline(**bad):
            pass
    _idle(db)


def test_listeners_see_pipelined_statements(db: Database):
    """Statement listeners are called for each queued statement."""
    _setup(db)
    seen: list[str] = []
    db.add_listener(lambda text, _params: seen.append(text))
    with db.pipeline() as p:
        Item.count(p)
        Item(name="a").insert(p)
    assert any("count" in s.lower() for s in seen)
    assert any(s.startswith("INSERT") for s in seen)


def test_a_connection_lost_mid_pipeline(server: Server, schema: str, raw: psycopg.Connection[Any]):
    """A backend killed mid-pipeline fails the pending handles; the pool recovers."""
    name = f"orso_pg_{schema}"
    with Database(server.dsn, schema=schema, max_size=1, application_name=name) as db:
        _setup(db)
        with pytest.raises(ConnectionLostError), db.pipeline() as p:
            before = Item.count(p)
            p.sync()
            raw.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s",
                (name,),
            )
            lost = Item.count(p)
            p.sync()
            with pytest.raises(ConnectionLostError):
                lost.result()
            Item.count(p)
        assert before.result() == 0
        assert Item.count(db) == 0  # the pool gave a live connection


def test_a_pipeline_syncs_by_itself_past_max_bytes(db: Database):
    """Parameters over max_bytes send a sync before max_pending operations are queued."""
    _setup(db)
    with db.pipeline(max_pending=1_000, max_bytes=2_000) as p:
        first = Item(name="x" * 1_500).insert(p)
        assert not first.done()  # under the bound: queued
        second = Item(name="y" * 1_500).insert(p)
        assert first.done()
        assert second.done()
        assert not p._queue


# --- memory -----------------------------------------------------------------------------------


def test_two_hundred_thousand_lookups_in_flat_memory(
    db: Database, server: Server, request: pytest.FixtureRequest
):
    """A pipeline syncs by itself: 200,000 lookups hold no more memory than a few thousand."""
    extra: list[Server] = request.config._orso_extra  # type: ignore[attr-defined]
    if server in extra:
        pytest.skip("one server is enough for a memory bound")
    _setup(db)
    for i in range(10):
        Item(name=f"n{i}", qty=i).insert(db)
    total = 0
    live: list[int] = []
    with db.pipeline(max_pending=500) as p:
        for i in range(200_000):
            handle = Item.find_by_id(i % 10 + 1, p)
            assert len(p._queue) < 500
            if i % 40_000 == 20_003:
                total += handle.result().qty  # type: ignore[union-attr]
                gc.collect()
                live.append(len(gc.get_objects()))
    assert total == sum(i % 10 for i in range(20_003, 200_000, 40_000))  # row 4, five times
    # The objects alive after 20,000 lookups are all that are alive after 180,000.
    assert max(live) - live[0] < 1_000, live


def test_the_readme_pipelines_section_runs(
    server: Server, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's example runs unchanged and its asserts hold."""
    from tests.readme_run import run_section

    ns = run_section("Pipelines", server, schema, monkeypatch)
    assert ns["aborted"] == 2  # the operation whose error aborted the later ones
    assert isinstance(ns["seen"], UniqueViolationError)


def test_a_value_python_cannot_hold_fails_its_handle(db: Database, raw: psycopg.Connection[Any]):
    """A stored 'infinity' timestamp is a DataError naming the column on its handle only."""
    create_tables(db, Event)
    raw.execute("INSERT INTO p_events (kind, created_at) VALUES ('x', 'infinity'), ('y', now())")
    with db.pipeline() as p:
        bad = Event.find_by_id(1, p)
        good = Event.find_by_id(2, p)
        with pytest.raises(DataError, match="created_at"):
            bad.result()
    assert good.result().kind == "y"  # type: ignore[union-attr]


def test_a_pipeline_keeps_the_client_side_deadline(
    server: Server, schema: str, raw: psycopg.Connection[Any]
):
    """A sync waiting past the deadline shuts the connection and says so; the pool recovers."""
    with Database(server.dsn, schema=schema, max_size=1, deadline=0.5) as db:
        _setup(db)
        Item(name="a").insert(db)
        raw.execute("BEGIN")
        raw.execute("SELECT * FROM p_items FOR UPDATE")  # the update below waits for this lock
        try:
            with pytest.raises(ServerUnavailableError, match="deadline"), db.pipeline() as p:
                assert Item.count(p).result() == 1  # within the deadline
                blocked = Item.update_where(Filter.eq("name", "a"), {"qty": 1}, p)
                p.sync()
        finally:
            raw.execute("ROLLBACK")
        with pytest.raises(ServerUnavailableError):
            blocked.result()
        assert Item.count(db) == 1


def test_the_pipeline_executor_ends_what_it_was_left_with(server: Server):
    """Leaving pipeline mode rolls back a transaction left open; a closed connection fails."""
    from orso_pg._executor import Executor, PipelineExecutor

    with psycopg.connect(server.dsn, autocommit=True) as conn:
        px = PipelineExecutor(Executor(conn))
        px.open()
        px.send(Statement(sql.SQL("BEGIN")), binary=False)
        px.sync()
        px.close()
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert conn.pgconn.pipeline_status == psycopg.pq.PipelineStatus.OFF
    with pytest.raises(ConnectionLostError):
        PipelineExecutor(Executor(conn)).open()
