"""Pagination values and result containers, without a database."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orso_pg import (
    Cursor,
    KeysetPage,
    PaginatedResult,
    Pagination,
    Sort,
    ValidationError,
    column,
    table,
    table_of,
)
from orso_pg._reads import _keyset_condition
from orso_pg.query._filters import CompileContext, with_tiebreak


@pytest.mark.parametrize(
    ("page", "per_page"),
    [(0, 10), (1, 0), (-1, 10), (1, -5), (True, 10), (1, 2.5), ("1", 10), (2**62, 4)],
)
def test_bad_pages_are_refused(page: object, per_page: object) -> None:
    """Page 0, per_page 0, negatives, non-ints and offsets past BIGINT are ValidationErrors."""
    with pytest.raises(ValidationError):
        Pagination(page, per_page)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        Pagination.new(page, per_page)  # type: ignore[arg-type]


def test_defaults_offset_and_limit() -> None:
    """The default is page 1 of 20; offset counts the rows before the page."""
    assert Pagination() == Pagination(1, 20)
    assert Pagination(3, 25).offset() == 50
    assert Pagination(3, 25).limit() == 25
    assert Pagination(1, 25).offset() == 0


@pytest.mark.parametrize(
    ("page", "per_page", "total", "pages", "has_next", "has_prev", "start", "end"),
    [
        (1, 10, 0, 0, False, False, 0, 0),
        (1, 10, 10, 1, False, False, 1, 10),
        (1, 10, 11, 2, True, False, 1, 10),
        (2, 10, 11, 2, False, True, 11, 11),
        (3, 10, 11, 2, False, True, 0, 11),
        (2, 3, 9, 3, True, True, 4, 6),
    ],
)
def test_totals(
    page: int,
    per_page: int,
    total: int,
    pages: int,
    has_next: bool,
    has_prev: bool,
    start: int,
    end: int,
) -> None:
    """total_pages, has_next, has_prev and the item range follow the total."""
    p = Pagination(page, per_page).with_total(total)
    result = PaginatedResult(["x"] * min(per_page, max(0, total - p.offset())), p)
    assert (result.total, result.total_pages) == (total, pages)
    assert (result.has_next(), result.has_prev()) == (has_next, has_prev)
    assert (p.start_item(), p.end_item()) == (start, end)
    assert (result.page, result.per_page) == (page, per_page)
    assert (p.next_page() is not None) == has_next
    assert (p.prev_page() is not None) == has_prev


def test_unknown_total() -> None:
    """Before a query runs the total is unknown: no page count and no next page."""
    p = Pagination(2, 10)
    assert p.total is None
    assert p.total_pages is None
    assert not p.has_next()
    assert p.has_prev()
    assert p.end_item() == 20
    assert PaginatedResult([], p).total == 0


@given(st.integers(1, 50), st.integers(1, 20), st.integers(0, 1000))
def test_pages_cover_the_total(page: int, per_page: int, total: int) -> None:
    """total_pages is the smallest page count holding every row; next/prev walk by one."""
    p = Pagination(page, per_page).with_total(total)
    assert p.total_pages == math.ceil(total / per_page)
    assert (p.total_pages or 0) * per_page >= total
    nxt = p.next_page()
    if nxt is not None:
        assert nxt.page == page + 1
        assert nxt.offset() < total
    prev = p.prev_page()
    assert (prev is None) == (page == 1)


def test_result_container() -> None:
    """A PaginatedResult maps, iterates and measures its rows, keeping its pagination."""
    p = Pagination(1, 5).with_total(3)
    result = PaginatedResult([1, 2, 3], p)
    doubled = result.map(lambda x: x * 2)
    assert list(doubled) == [2, 4, 6]
    assert doubled.pagination is p
    assert len(result) == 3
    assert not result.is_empty()
    assert PaginatedResult([], p).is_empty()


def test_keyset_page() -> None:
    """A keyset page knows whether more rows may follow from its cursor."""
    last = KeysetPage([1, 2], None)
    more = KeysetPage([1, 2], Cursor((2,)))
    assert not last.has_next()
    assert more.has_next()
    assert len(more) == 2
    assert list(more) == [1, 2]


@table("up_rows")
class Row:
    id: int | None = column(primary_key=True, default=None)
    a: int | None = None
    b: str


def keyset(sorts: list[Sort], values: tuple[object, ...]) -> tuple[str, list[object]]:
    meta = table_of(Row)
    ctx = CompileContext(meta=meta, table="up_rows")
    text = _keyset_condition(ctx, with_tiebreak(meta, sorts), values).as_string(None)
    assert text.count("%s") + text.count("%b") == len(ctx.params)
    return text, ctx.params


def test_keyset_condition_sql() -> None:
    """'After the cursor' puts NULLs where the sort does and leaves NOT NULL columns plain."""
    assert keyset([Sort.asc("a")], (1, 5)) == (
        '((("a" > %s OR "a" IS NULL)) OR ("a" = %s AND "id" > %s))',
        [1, 1, 5],
    )
    assert keyset([Sort.desc("b")], ("x", 5)) == (
        '(("b" < %s) OR ("b" = %s AND "id" > %s))',
        ["x", "x", 5],
    )
    assert keyset([Sort.asc("a", nulls="first")], (None, 5)) == (
        '(("a" IS NOT NULL) OR ("a" IS NULL AND "id" > %s))',
        [5],
    )
    assert keyset([Sort.asc("a")], (None, 5)) == ('(("a" IS NULL AND "id" > %s))', [5])
