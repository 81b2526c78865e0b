"""Pages of results: offset pagination (orso's ``Pagination``) and keyset (cursor) pagination.

Owns the page values handed in by callers and the result containers handed back. It must not run
queries: :mod:`orso_pg._reads` fills these from the database.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

import attrs

from orso_pg.errors import ValidationError

__all__ = ["Cursor", "KeysetPage", "PaginatedResult", "Pagination"]

T = TypeVar("T")
U = TypeVar("U")

_BIGINT_MAX = 2**63 - 1


def _positive(name: str) -> Callable[[Any, attrs.Attribute[int], int], None]:
    def check(_instance: Any, _attribute: attrs.Attribute[int], value: int) -> None:
        candidate: object = value
        if isinstance(candidate, bool) or not isinstance(candidate, int) or value < 1:
            msg = f"{name} must be a positive int (pages start at 1), not {value!r}"
            raise ValidationError(msg, value=value)

    return check


@attrs.frozen
class Pagination:
    """A page request: 1-based *page* of *per_page* rows, and once run, the total.

    Attributes:
        page: The page number, starting at 1.
        per_page: Rows per page.
        total: The number of rows matching the query (set on results).
    """

    page: int = attrs.field(default=1, validator=_positive("page"))
    per_page: int = attrs.field(default=20, validator=_positive("per_page"))
    total: int | None = None

    def __attrs_post_init__(self) -> None:
        # LIMIT and OFFSET are BIGINTs: past that, PostgreSQL would refuse the statement.
        if self.page * self.per_page > _BIGINT_MAX:
            msg = f"page {self.page} of {self.per_page} rows is past the largest offset (2**63-1)"
            raise ValidationError(msg, value=(self.page, self.per_page))

    @classmethod
    def new(cls, page: int, per_page: int) -> Pagination:
        """Return page *page* of *per_page* rows (orso's ``Pagination::new``)."""
        return cls(page, per_page)

    def offset(self) -> int:
        """Return how many rows come before this page."""
        return (self.page - 1) * self.per_page

    def limit(self) -> int:
        """Return the page size."""
        return self.per_page

    def with_total(self, total: int) -> Pagination:
        """Return a copy knowing the total number of rows."""
        return attrs.evolve(self, total=total)

    @property
    def total_pages(self) -> int | None:
        """The number of pages (0 when nothing matches), once the total is known."""
        if self.total is None:
            return None
        return math.ceil(self.total / self.per_page)

    def has_next(self) -> bool:
        """Return whether a page follows this one."""
        pages = self.total_pages
        return pages is not None and self.page < pages

    def has_prev(self) -> bool:
        """Return whether a page precedes this one."""
        return self.page > 1

    def next_page(self) -> Pagination | None:
        """Return the request for the next page, or None on the last one."""
        return attrs.evolve(self, page=self.page + 1) if self.has_next() else None

    def prev_page(self) -> Pagination | None:
        """Return the request for the previous page, or None on the first one."""
        return attrs.evolve(self, page=self.page - 1) if self.has_prev() else None

    def start_item(self) -> int:
        """Return the 1-based position of this page's first row (0 when it is empty)."""
        if self.total is not None and self.offset() >= self.total:
            return 0
        return self.offset() + 1

    def end_item(self) -> int:
        """Return the 1-based position of this page's last row."""
        end = self.offset() + self.per_page
        return end if self.total is None else min(end, self.total)


@attrs.frozen
class PaginatedResult(Generic[T]):
    """One page of rows and the pagination that produced it, with its total filled in."""

    data: list[T]
    pagination: Pagination

    @property
    def total(self) -> int:
        """The number of rows matching the query, over every page."""
        return self.pagination.total or 0

    @property
    def total_pages(self) -> int:
        """The number of pages."""
        return self.pagination.total_pages or 0

    @property
    def page(self) -> int:
        """This page's number."""
        return self.pagination.page

    @property
    def per_page(self) -> int:
        """The page size."""
        return self.pagination.per_page

    def has_next(self) -> bool:
        """Return whether a page follows this one."""
        return self.pagination.has_next()

    def has_prev(self) -> bool:
        """Return whether a page precedes this one."""
        return self.pagination.has_prev()

    def map(self, func: Callable[[T], U]) -> PaginatedResult[U]:
        """Return the same page with *func* applied to every row."""
        return PaginatedResult([func(x) for x in self.data], self.pagination)

    def is_empty(self) -> bool:
        """Return whether this page has no rows."""
        return not self.data

    def __len__(self) -> int:
        return len(self.data)

    def __iter__(self) -> Iterator[T]:
        return iter(self.data)


@attrs.frozen
class Cursor:
    """Where a keyset page ended: the sort values of its last row, primary key last.

    Hand it back as ``after=`` to get the next page. ``values`` are plain Python values in the
    order of the sort (and the primary key), so a cursor can be stored or sent elsewhere.
    """

    values: tuple[Any, ...]


@attrs.frozen
class KeysetPage(Generic[T]):
    """One keyset page: its rows, and the cursor to continue from (None after the last row)."""

    data: list[T]
    next_cursor: Cursor | None

    def has_next(self) -> bool:
        """Return whether more rows may follow."""
        return self.next_cursor is not None

    def __len__(self) -> int:
        return len(self.data)

    def __iter__(self) -> Iterator[T]:
        return iter(self.data)
