"""Offset and keyset pagination on a real table: every row once, in order, with true totals."""

from __future__ import annotations

import itertools
import tempfile
from typing import Any

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg import sql

from orso_pg import (
    Cursor,
    Database,
    Filter,
    Orso,
    OrsoError,
    Pagination,
    Sort,
    SortOrder,
    ValidationError,
    column,
    table,
)
from orso_pg._compiler import Statement
from orso_pg._executor import Executor
from tests import filter_eval
from tests.conftest import Server
from tests.helpers import count_statements, create_tables


@table("page_rows")
class PageRow(Orso):
    id: int | None = column(primary_key=True, default=None)
    a: int | None = None
    f: float | None = None
    t: str | None = None
    b: bool | None = None


COLUMNS = ("a", "f", "t", "b")
SELECT_PAGE = 'SELECT "id", "a", "f", "t", "b"'
VALUES: dict[str, st.SearchStrategy[Any]] = {
    "a": st.integers(-3, 3),
    "f": st.sampled_from([0.0, -0.0, 1.5, -2.0, float("inf"), float("-inf"), float("nan")]),
    "t": st.text(st.sampled_from(list("aAbé_%")), max_size=2),
    "b": st.booleans(),
}
ROW = st.fixed_dictionaries({name: filter_eval.nullable(s) for name, s in VALUES.items()})
ROWS = st.lists(ROW, max_size=25)
SORTS = st.lists(
    st.builds(
        Sort,
        st.sampled_from(COLUMNS),
        st.sampled_from(SortOrder),
        st.sampled_from([None, "first", "last"]),
    ),
    max_size=3,
    unique_by=lambda s: s.column,
)
FILTERS = st.one_of(
    st.none(),
    st.builds(Filter.is_not_null, st.sampled_from(COLUMNS)),
    st.builds(Filter.ge, st.just("a"), st.integers(-3, 3)),
    st.builds(Filter.eq, st.just("b"), st.booleans()),
)


@pytest.fixture
def pages(db: Database, raw: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    """The page_rows table, its text column ordered by code point (COLLATE "C")."""
    create_tables(db, PageRow)
    raw.execute('ALTER TABLE page_rows ALTER COLUMN t TYPE text COLLATE "C"')
    # Test data need not survive a crash: not waiting for each commit's WAL flush keeps
    # hundreds of small writes cheap on a busy disk.
    raw.execute("SET synchronous_commit = off")
    return raw


def insert(raw: psycopg.Connection[Any], rows: list[dict[str, Any]], first_id: int) -> list[Any]:
    """Insert *rows* with ids from *first_id*; return them as dicts with their ids."""
    numbered = [{"id": first_id + n, **row} for n, row in enumerate(rows)]
    names = ("id", *COLUMNS)
    query = sql.SQL("INSERT INTO page_rows ({}) VALUES ({})").format(
        sql.SQL(", ").join(map(sql.Identifier, names)),
        sql.SQL(", ").join(sql.Placeholder() * len(names)),
    )
    with raw.transaction(), raw.cursor() as cur:
        cur.executemany(query, [tuple(r[n] for n in names) for r in numbered])
    return numbered


def matching(rows: list[dict[str, Any]], f: Filter | None) -> list[dict[str, Any]]:
    return [r for r in rows if f is None or filter_eval.evaluate(f, r) is True]


def offset_walk(
    db: Database, f: Filter | None, sorts: list[Sort], per_page: int
) -> tuple[list[int], set[int]]:
    """Walk every offset page; return the ids in order and the totals the pages reported."""
    ids: list[int] = []
    totals: set[int] = set()
    for number in itertools.count(1):
        page = Pagination(number, per_page)
        if f is None:
            result = PageRow.list(sorts, page, db)
        else:
            result = PageRow.list_where(f, sorts, page, db)
        totals.add(result.total)
        assert len(result) <= per_page
        ids.extend(r.id for r in result if r.id is not None)
        if not result.has_next():
            assert result.page >= result.total_pages
            break
    return ids, totals


@settings(max_examples=40, deadline=None)
@given(rows=ROWS, sorts=SORTS, f=FILTERS, per_page=st.integers(1, 7))
def test_offset_pages_concatenate_to_the_ordered_result(
    db: Database,
    pages: psycopg.Connection[Any],
    rows: list[dict[str, Any]],
    sorts: list[Sort],
    f: Filter | None,
    per_page: int,
) -> None:
    """Offset pages, walked to the end, give every matching row once in ORDER BY order."""
    pages.execute("TRUNCATE page_rows")
    want = [r["id"] for r in filter_eval.sort_rows(matching(insert(pages, rows, 1), f), sorts)]
    ids, totals = offset_walk(db, f, sorts, per_page)
    assert ids == want
    assert totals == {len(want)}


def keyset_walk(
    db: Database, f: Filter | None, sorts: list[Sort], limit: int, between: Any = None
) -> list[int]:
    ids: list[int] = []
    after: Cursor | None = None
    for step in itertools.count():
        page = PageRow.find_keyset(f, sorts, db, after=after, limit=limit)
        assert len(page) <= limit
        ids.extend(r.id for r in page if r.id is not None)
        if not page.has_next():
            return ids
        after = page.next_cursor
        if between is not None:
            between(step)
    raise AssertionError  # pragma: no cover - itertools.count never ends


@settings(max_examples=40, deadline=None)
@given(rows=ROWS, sorts=SORTS, f=FILTERS, limit=st.integers(1, 7))
def test_keyset_pages_concatenate_to_the_ordered_result(
    db: Database,
    pages: psycopg.Connection[Any],
    rows: list[dict[str, Any]],
    sorts: list[Sort],
    f: Filter | None,
    limit: int,
) -> None:
    """Keyset pages give every matching row once, in ORDER BY order, NULLs where sorted."""
    pages.execute("TRUNCATE page_rows")
    want = [r["id"] for r in filter_eval.sort_rows(matching(insert(pages, rows, 1), f), sorts)]
    assert keyset_walk(db, f, sorts, limit) == want


@settings(max_examples=30, deadline=None)
@given(
    rows=ROWS,
    sorts=SORTS,
    limit=st.integers(1, 5),
    extra=st.lists(st.lists(ROW, max_size=3), min_size=8, max_size=8),
    deletions=st.lists(st.integers(1, 25), max_size=4),
)
def test_keyset_survives_inserts_and_deletes_between_pages(
    db: Database,
    pages: psycopg.Connection[Any],
    rows: list[dict[str, Any]],
    sorts: list[Sort],
    limit: int,
    extra: list[list[dict[str, Any]]],
    deletions: list[int],
) -> None:
    """Rows written between keyset pages never make a row present at the start repeat or vanish."""
    pages.execute("TRUNCATE page_rows")
    start = insert(pages, rows, 1)
    next_id = len(start) + 1
    deleted: set[int] = set()

    def write(step: int) -> None:
        nonlocal next_id
        if step >= len(extra):
            return  # rows added after the cursor on every step would make the walk endless
        batch = extra[step]
        insert(pages, batch, next_id)
        next_id += len(batch)
        if step < len(deletions):
            pages.execute("DELETE FROM page_rows WHERE id = %s", (deletions[step],))
            deleted.add(deletions[step])

    ids = keyset_walk(db, None, sorts, limit, between=write)
    assert len(ids) == len(set(ids))
    kept = {r["id"] for r in start} - deleted
    assert kept <= set(ids)
    # What came back is in sort order, whichever rows it holds.
    final = {r.id: r for r in PageRow.find_by_ids(ids, db)}
    as_dicts = [{"id": i, **{c: getattr(final[i], c) for c in COLUMNS}} for i in ids if i in final]
    assert [r["id"] for r in filter_eval.sort_rows(as_dicts, sorts)] == [r["id"] for r in as_dicts]


def test_totals_respect_the_filter(db: Database, pages: psycopg.Connection[Any]) -> None:
    """find_where_paginated, list_where and search report the filtered total, not the table's."""
    insert(pages, [{"a": n % 3, "f": None, "t": f"x{n}", "b": None} for n in range(10)], 1)
    result = PageRow.find_where_paginated(Filter.eq("a", 0), Pagination(1, 2), db)
    assert result.total == 4
    assert result.total_pages == 2
    assert result.has_next()
    assert not result.has_prev()
    assert [r.id for r in result] == [1, 4]
    last = PageRow.find_where_paginated(Filter.eq("a", 0), Pagination(2, 2), db)
    assert [r.id for r in last] == [7, 10]
    assert not last.has_next()
    assert last.has_prev()
    beyond = PageRow.find_where_paginated(Filter.eq("a", 0), Pagination(5, 2), db)
    assert beyond.data == []
    assert beyond.total == 4
    everything = PageRow.find_paginated(Pagination(1, 3), db)
    assert (everything.total, everything.total_pages, len(everything)) == (10, 4, 3)
    none = PageRow.find_where_paginated(Filter.eq("a", 99), Pagination(1, 3), db)
    assert (none.total, none.total_pages, none.data) == (0, 0, [])


def test_default_page_is_one_of_twenty(db: Database, pages: psycopg.Connection[Any]) -> None:
    """list and list_where without a pagination return page 1 of 20, as orso does."""
    insert(pages, [{"a": 1, "f": None, "t": None, "b": None}] * 25, 1)
    result = PageRow.list(None, None, db)
    assert (len(result), result.total, result.page, result.per_page) == (20, 25, 1, 20)
    assert [r.id for r in result] == list(range(1, 21))


def test_each_page_is_its_count_then_its_rows(db: Database, pages: psycopg.Connection[Any]) -> None:
    """A page runs its count, then its rows (no more); a keyset page is one statement."""
    insert(pages, [{"a": n, "f": None, "t": None, "b": None} for n in range(5)], 1)
    with count_statements(db) as log:
        PageRow.find_paginated(Pagination(1, 2), db)
    assert [t.split(" FROM ")[0] for t in log.texts()] == ["SELECT count(*)", SELECT_PAGE]
    with count_statements(db) as log:
        PageRow.list_where(Filter.gt("a", 1), [Sort.desc("a")], Pagination(2, 1), db)
    assert len(log) == 2
    assert log.texts()[1].endswith("LIMIT %s OFFSET %s")
    with count_statements(db) as log:
        PageRow.find_keyset(None, [Sort.asc("a")], db, limit=2)
    assert len(log) == 1


def test_a_page_and_its_total_share_one_read_only_snapshot(db: Database) -> None:
    """Statements fetched together outside a transaction run in one REPEATABLE READ snapshot.

    Inside a transaction they run in it, with its isolation; either way in one round trip.
    """
    probe = Statement(
        sql.SQL(
            "SELECT current_setting('transaction_isolation'),"
            " current_setting('transaction_read_only'), transaction_timestamp()"
        )
    )
    with db.connection() as conn:
        first, second = Executor(conn).fetch_together([probe, probe])
        assert first == second  # one transaction: the same transaction_timestamp()
        assert first[0][:2] == ("repeatable read", "on")
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    with db.transaction() as tx:
        inside, again = Executor(tx.connection).fetch_together([probe, probe])
        assert inside == again
        assert inside[0][:2] == ("read committed", "off")


def test_a_page_is_one_round_trip(db: Database, pages: psycopg.Connection[Any]) -> None:
    """The count and the rows go out together and come back after one Sync (libpq's trace)."""
    insert(pages, [{"a": n, "f": None, "t": None, "b": None} for n in range(5)], 1)
    with db.transaction() as tx, tempfile.TemporaryFile("w+") as trace:
        tx.connection.pgconn.trace(trace.fileno())
        page = PageRow.find_where_paginated(Filter.gt("a", 0), Pagination(2, 2), tx)
        tx.connection.pgconn.untrace()
        trace.seek(0)
        messages = [line.split("\t")[1:4:2] for line in trace.read().splitlines()]
    assert (page.total, [r.a for r in page]) == (4, [3, 4])
    sent = [name for side, name in messages if side == "F"]
    assert sent.count("Execute") == 2
    assert sent.count("Sync") == 1
    # Nothing comes back before both statements are out.
    first_reply = next(i for i, (side, _) in enumerate(messages) if side == "B")
    assert [name for side, name in messages[:first_reply]].count("Execute") == 2


def test_a_failing_page_leaves_its_connection_usable(
    server: Server, schema: str, pages: psycopg.Connection[Any]
) -> None:
    """A page whose statements fail ends its snapshot: the pool's only connection still works."""
    insert(pages, [{"a": n, "f": None, "t": None, "b": None} for n in range(3)], 1)
    crash = Filter.raw(sql.SQL("1 / a = 1"))
    with Database(server.dsn, schema=schema, min_size=1, max_size=1) as single:
        with pytest.raises(OrsoError, match="division by zero"):
            PageRow.find_where_paginated(crash, Pagination(1, 2), single)
        assert PageRow.find_paginated(Pagination(1, 2), single).total == 3
        with single.connection() as conn:
            count = Statement(sql.SQL("SELECT count(*) FROM page_rows"))
            with pytest.raises(OrsoError, match="division by zero"):
                Executor(conn).fetch_together([count, Statement(sql.SQL("SELECT 1 / 0"))])
            # Not left for the pool to roll back: the snapshot was ended on the spot.
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            assert Executor(conn).fetch_together([count]) == [[(3,)]]


def test_bad_pagination_arguments(db: Database, pages: psycopg.Connection[Any]) -> None:
    """Page 0, per_page 0, a bad keyset limit or a foreign cursor fail before any SQL."""
    with pytest.raises(ValidationError, match="page must be a positive int"):
        PageRow.find_paginated(Pagination(0, 10), db)
    with pytest.raises(ValidationError, match="per_page must be a positive int"):
        PageRow.find_paginated(Pagination(1, 0), db)
    with count_statements(db) as log:
        with pytest.raises(ValidationError, match="expected a Pagination"):
            PageRow.find_paginated((1, 10), db)  # type: ignore[arg-type]
        with pytest.raises(ValidationError, match="limit must be a positive int"):
            PageRow.find_keyset(None, [], db, limit=0)
        with pytest.raises(ValidationError, match="cursor does not match"):
            PageRow.find_keyset(None, [Sort.asc("a")], db, after=Cursor((1,)))
    assert len(log) == 0


def test_keyset_cursor_on_null_with_later_sorts(
    db: Database, pages: psycopg.Connection[Any]
) -> None:
    """A cursor holding NULL in a NULLS LAST sort followed by other sorts continues correctly."""
    insert(pages, [{"a": None, "f": None, "t": None, "b": None}] * 3, 1)
    insert(pages, [{"a": 0, "f": None, "t": None, "b": None}], 4)
    sorts = [Sort.asc("a"), Sort.asc("f"), Sort.desc("t", nulls="last")]
    assert keyset_walk(db, None, sorts, 1) == [4, 1, 2, 3]
    assert keyset_walk(db, Filter.is_null("f"), [Sort.desc("a", nulls="first")], 2) == [1, 2, 3, 4]
