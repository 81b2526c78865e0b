"""``QueryBuilder``: selects beyond the finders (column subsets, joins, grouping, aggregates).

Owns the builder value and its compilation to one ``SELECT``. A builder is immutable: every
method returns a new one, so a base query can be shared and refined. It is pure up to the
``fetch*`` / ``count`` / ``stream`` methods, which hand the compiled statement to a session.
Names are checked against the models involved (the base model and every joined one); values in
``where`` / ``having`` are bound parameters.
"""

from __future__ import annotations

import datetime as dt
import enum
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import attrs
import numpy as np
from psycopg import sql

from orso_pg._compiler import Statement
from orso_pg._schema import Column, TableMeta, identifier_problem, models, table_of
from orso_pg.errors import QueryError, ValidationError
from orso_pg.query import _vector as vq
from orso_pg.query._columns import require, to_arrow, to_pandas
from orso_pg.query._filters import Aggregate, CompileContext, Filter, Sort, compile_sorts, isa
from orso_pg.query._locks import RowLock

__all__ = ["JoinType", "QueryBuilder", "Window"]


_PAIR = 2


class JoinType(enum.Enum):
    """The kind of a join (orso's ``JoinType``)."""

    INNER = "inner"
    LEFT = "left"
    RIGHT = "right"
    FULL = "full"


_JOIN_SQL = {
    JoinType.INNER: sql.SQL(" INNER JOIN "),
    JoinType.LEFT: sql.SQL(" LEFT JOIN "),
    JoinType.RIGHT: sql.SQL(" RIGHT JOIN "),
    JoinType.FULL: sql.SQL(" FULL JOIN "),
}


@attrs.frozen
class _Join:
    meta: TableMeta
    name: str  # the table name, or its alias
    table_name: str | None
    on: tuple[tuple[str, str], ...]
    kind: JoinType


@attrs.frozen
class _AggregateColumn:
    function: Aggregate
    column: str
    alias: str
    order_by: str | None = None


@attrs.frozen
class _Bucket:
    column: str
    every: Any  # a timedelta or an interval string, bound as an interval
    origin: dt.datetime
    alias: str


class Window(enum.Enum):
    """A window function for :meth:`QueryBuilder.window` (aggregates are windows too)."""

    ROW_NUMBER = "row_number"
    RANK = "rank"
    DENSE_RANK = "dense_rank"
    LAG = "lag"
    LEAD = "lead"
    FIRST_VALUE = "first_value"
    LAST_VALUE = "last_value"


_RANKING = (Window.ROW_NUMBER, Window.RANK, Window.DENSE_RANK)
# date_bin needs an origin; buckets then start at whole units from midnight, 2000-01-01 UTC.
_ORIGIN = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


@attrs.frozen
class _WindowColumn:
    function: Window | Aggregate
    column: str | None
    alias: str
    partition_by: tuple[str, ...]
    order_by: tuple[Sort, ...]
    frame: tuple[int | None, int | None] | None
    offset: int


def _check_table_name(name: object) -> str | None:
    """Return *name* if it can name a table (None: the model's own); raise otherwise."""
    if name is None:
        return None
    if not isinstance(name, str) or not name:
        msg = f"table_name must be a non-empty str, not {name!r}"
        raise ValidationError(msg, value=name)
    _check_identifier("table name", name)
    return name


def _check_identifier(kind: str, name: str) -> None:
    """Refuse a name PostgreSQL or psycopg cannot take verbatim as a quoted identifier."""
    problem = identifier_problem(name)
    if problem is not None:
        msg = f"{kind} {name!r} {problem}"
        raise ValidationError(msg, table=name, value=name)


def _resolve_meta(table: type | str | TableMeta) -> TableMeta:
    if isinstance(table, TableMeta):
        return table
    if isinstance(table, str):
        found = models().get(table)
        if found is None:
            msg = f"no model is registered for table {table!r}; pass the model class"
            raise QueryError(msg, table=table)
        return found
    return table_of(table)


@attrs.frozen
class QueryBuilder:
    """A ``SELECT`` under construction (orso's ``QueryBuilder``).

    >>> from orso_pg import table, column, Filter, Sort
    >>> @table("candles")
    ... class Candle:
    ...     id: int | None = column(primary_key=True, default=None)
    ...     symbol: str
    ...     close: float
    >>> q = (QueryBuilder(Candle).select("symbol").aggregate(Aggregate.AVG, "close", "avg_close")
    ...      .group_by("symbol").having(Filter.gt("avg_close", 10)).order_by(Sort.asc("symbol")))
    >>> print(q.build().as_string())  # doctest: +NORMALIZE_WHITESPACE
    SELECT "symbol", avg("close") AS "avg_close" FROM "candles" GROUP BY "symbol"
    HAVING avg("close") > %s ORDER BY "symbol" ASC

    Args:
        table: The model class (or the table name of a decorated model).
        table_name: Read from this table instead of the model's own (``_with_table``).
    """

    meta: TableMeta = attrs.field(converter=_resolve_meta)
    table_name: str | None = attrs.field(default=None, converter=_check_table_name)
    columns: tuple[str, ...] = ()
    aggregates: tuple[_AggregateColumn, ...] = ()
    buckets: tuple[_Bucket, ...] = ()
    windows: tuple[_WindowColumn, ...] = ()
    distinct_rows: bool = False
    wheres: tuple[Filter, ...] = ()
    joins: tuple[_Join, ...] = ()
    groups: tuple[str, ...] = ()
    havings: tuple[Filter, ...] = ()
    orders: tuple[Sort, ...] = ()
    limit_rows: int | None = None
    offset_rows: int | None = None
    vectors: tuple[vq.VectorTerm, ...] = ()
    index_settings: tuple[tuple[str, int], ...] = ()
    row_lock: RowLock | None = None

    @classmethod
    def new(cls, table: type | str, table_name: str | None = None) -> QueryBuilder:
        """Start a query on *table* (orso's ``QueryBuilder::new``)."""
        return cls(table, table_name)

    # --- building -----------------------------------------------------------------------------

    def select(self, *columns: str) -> QueryBuilder:
        """Select only *columns* (``"col"`` or ``"table.col"`` for a joined model)."""
        return attrs.evolve(self, columns=(*self.columns, *columns))

    def select_all(self) -> QueryBuilder:
        """Select every column of the base model (the default)."""
        return attrs.evolve(self, columns=(), aggregates=())

    def aggregate(
        self,
        function: Aggregate,
        column: str,
        alias: str | None = None,
        *,
        order_by: str | None = None,
    ) -> QueryBuilder:
        """Add ``function(column) AS alias`` to the selection (``"*"`` counts rows).

        ``Aggregate.FIRST`` and ``Aggregate.LAST`` take the value of the first or last row of
        each group in the order of *order_by* (a column): a candle's open and close.
        """
        if not isa(function, Aggregate):
            msg = f"expected an Aggregate, got {function!r}"
            raise QueryError(msg, table=self.base_name, value=function)
        if not isa(column, str) or not (alias is None or (isa(alias, str) and alias)):
            msg = (
                f"an aggregate needs a column name and a non-empty alias, not {column!r}, {alias!r}"
            )
            raise QueryError(msg, table=self.base_name, value=alias)
        ordered = function in (Aggregate.FIRST, Aggregate.LAST)
        if ordered != (order_by is not None):
            msg = (
                f"{function.name} needs order_by="
                if ordered
                else "only FIRST and LAST take order_by"
            )
            raise QueryError(msg, table=self.base_name, value=order_by)
        if order_by is not None:
            self._column(order_by, qualify=bool(self.joins))
        if alias is not None:
            _check_identifier("alias", alias)
        name = alias or f"{function.value}_{column}".replace("*", "all").replace(".", "_")
        agg = _AggregateColumn(function, column, name, order_by)
        return attrs.evolve(self, aggregates=(*self.aggregates, agg))

    def time_bucket(
        self,
        column: str,
        every: dt.timedelta | str,
        *,
        alias: str = "bucket",
        origin: dt.datetime | None = None,
    ) -> QueryBuilder:
        """Select the start of the time bucket of *column* (PostgreSQL's ``date_bin``).

        *every* is a ``timedelta`` or an interval such as ``"1 minute"`` or ``"15 minutes"``
        (bound as a parameter); buckets are counted from *origin* (default midnight,
        2000-01-01 UTC). ``group_by(alias)`` and ``order_by(Sort.asc(alias))`` use it.
        """
        if not isa(alias, str) or not alias:
            msg = f"a time bucket needs a non-empty alias, not {alias!r}"
            raise QueryError(msg, table=self.base_name, value=alias)
        _check_identifier("alias", alias)
        self._check_output_alias(alias)
        _, col = self._column(column, qualify=bool(self.joins))
        if col.type.python is not dt.datetime:
            msg = f"time_bucket needs a timestamp column; {column!r} is {col.type.label}"
            raise QueryError(msg, table=self.base_name, column=column)
        if not isa(every, (dt.timedelta, str)) or not every:
            msg = f"every must be a timedelta or an interval string, not {every!r}"
            raise QueryError(msg, table=self.base_name, value=every)
        if origin is not None and (not isa(origin, dt.datetime) or origin.tzinfo is None):
            msg = f"origin must be an aware datetime, not {origin!r}"
            raise QueryError(msg, table=self.base_name, value=origin)
        bucket = _Bucket(column, every, origin or _ORIGIN, alias)
        return attrs.evolve(self, buckets=(*self.buckets, bucket))

    def window(
        self,
        function: Window | Aggregate,
        column: str | None = None,
        *,
        alias: str,
        partition_by: Sequence[str] = (),
        order_by: Sequence[Sort] = (),
        rows: tuple[int | None, int | None] | None = None,
        offset: int = 1,
    ) -> QueryBuilder:
        """Select a window function: ``function(column) OVER (PARTITION BY ... ORDER BY ...)``.

        *function* is a :class:`Window` (``ROW_NUMBER``, ``RANK``, ``DENSE_RANK`` take no
        column; ``LAG``/``LEAD`` take *offset*) or an :class:`Aggregate` (a moving aggregate).
        ``rows=(preceding, following)`` sets the frame ``ROWS BETWEEN preceding PRECEDING AND
        following FOLLOWING`` (``None`` is unbounded, ``0`` the current row); ``rows=(19, 0)``
        is a 20-row moving window.
        """
        if not isa(function, (Window, Aggregate)) or function in (Aggregate.FIRST, Aggregate.LAST):
            msg = f"expected a Window or one of the five aggregates, got {function!r}"
            raise QueryError(msg, table=self.base_name, value=function)
        if not isa(alias, str) or not alias:
            msg = f"a window needs a non-empty alias, not {alias!r}"
            raise QueryError(msg, table=self.base_name, value=alias)
        _check_identifier("alias", alias)
        self._check_output_alias(alias)
        needs_column = function not in _RANKING
        if needs_column != (column is not None):
            what = "needs a column" if needs_column else "takes no column"
            msg = f"{function.name} {what}"
            raise QueryError(msg, table=self.base_name, value=column)
        if column is not None and column != "*":
            self._column(column, qualify=bool(self.joins))
        for name in partition_by:
            self._column(name, qualify=bool(self.joins))
        if rows is not None and (
            not isa(rows, tuple)
            or len(rows) != _PAIR
            or not all(r is None or (isa(r, int) and not isa(r, bool) and r >= 0) for r in rows)
        ):
            msg = f"rows must be (preceding, following), each a non-negative int or None: {rows!r}"
            raise QueryError(msg, table=self.base_name, value=rows)
        if isa(offset, bool) or not isa(offset, int) or offset < 0:
            msg = f"offset must be a non-negative int, not {offset!r}"
            raise QueryError(msg, table=self.base_name, value=offset)
        win = _WindowColumn(
            function, column, alias, tuple(partition_by), tuple(order_by), rows, offset
        )
        return attrs.evolve(self, windows=(*self.windows, win))

    def _check_output_alias(self, alias: str) -> None:
        # GROUP BY and ORDER BY find these by their output name, which an input column of the
        # same name would shadow.
        if alias in self.meta.column_names:
            msg = f"alias {alias!r} is also a column of {self.base_name}; choose another"
            raise QueryError(msg, table=self.base_name, value=alias)
        taken = {a.alias for a in self.aggregates} | {b.alias for b in self.buckets}
        if alias in taken | {w.alias for w in self.windows}:
            msg = f"alias {alias!r} is already used in this query"
            raise QueryError(msg, table=self.base_name, value=alias)

    def select_count(self, alias: str = "count") -> QueryBuilder:
        """Add ``count(*) AS alias`` to the selection."""
        return self.aggregate(Aggregate.COUNT, "*", alias)

    def distinct(self, on: bool = True) -> QueryBuilder:
        """Return distinct rows only."""
        return attrs.evolve(self, distinct_rows=on)

    def where(self, condition: Filter) -> QueryBuilder:
        """Add a condition; several ``where`` calls are ANDed."""
        return attrs.evolve(self, wheres=(*self.wheres, condition))

    with_filter = where

    def join(
        self,
        other: type | str,
        on: tuple[str, str] | Sequence[tuple[str, str]],
        kind: JoinType = JoinType.INNER,
        *,
        alias: str | None = None,
        table_name: str | None = None,
    ) -> QueryBuilder:
        """Join another model on column pairs ``(base_column, other_column)``."""
        meta = _resolve_meta(other)
        table_name = _check_table_name(table_name)
        if not isa(kind, JoinType):
            msg = f"expected a JoinType, got {kind!r}"
            raise QueryError(msg, table=self.base_name, value=kind)
        single = isinstance(on, tuple) and len(on) == _PAIR and isinstance(on[0], str)
        pairs = [on] if single else on
        if isa(pairs, str) or not all(
            isa(p, (tuple, list)) and len(p) == _PAIR and all(isa(n, str) for n in p) for p in pairs
        ):
            msg = f"join on needs (base_column, other_column) pairs, not {on!r}"
            raise QueryError(msg, table=self.base_name, value=on)
        name = alias or table_name or meta.name
        if not isa(name, str) or not name:
            msg = f"a join alias must be a non-empty str, not {name!r}"
            raise QueryError(msg, table=self.base_name, value=name)
        _check_identifier("alias", name)
        checked = tuple((str(p[0]), str(p[1])) for p in pairs)
        joined = _Join(meta, name, table_name, checked, kind)
        return attrs.evolve(self, joins=(*self.joins, joined))

    def group_by(self, *columns: str) -> QueryBuilder:
        """Group rows by *columns*."""
        return attrs.evolve(self, groups=(*self.groups, *columns))

    def having(self, condition: Filter) -> QueryBuilder:
        """Filter groups; a name may be an aggregate's alias."""
        return attrs.evolve(self, havings=(*self.havings, condition))

    def order_by(self, *sorts: Sort) -> QueryBuilder:
        """Sort by *sorts*, after any sort already given."""
        return attrs.evolve(self, orders=(*self.orders, *sorts))

    def limit(self, count: int) -> QueryBuilder:
        """Return at most *count* rows."""
        return attrs.evolve(self, limit_rows=_non_negative("limit", count))

    def offset(self, count: int) -> QueryBuilder:
        """Skip the first *count* rows."""
        return attrs.evolve(self, offset_rows=_non_negative("offset", count))

    # --- vectors (pgvector) -------------------------------------------------------------------

    def vector_search(
        self,
        column: str,
        vector: Any,
        limit: int,
        *,
        distance: str | None = None,
        ef_search: int | None = None,
        probes: int | None = None,
    ) -> QueryBuilder:
        """Order by the distance of *column* to *vector*, closest first, and keep *limit* rows.

        The distance is the column's declared one (``column(distance=...)``, so its index
        serves the query) unless *distance* names another. The order comes before any
        :meth:`order_by` sort; filters from :meth:`where` apply first (pre-filtering).

        Args:
            column: A vector column.
            vector: The query vector (a list of floats or a 1-D array; a dict for sparsevec).
            limit: How many rows.
            distance: ``"l2"``, ``"cosine"``, ``"inner_product"`` or ``"l1"``.
            ef_search: ``hnsw.ef_search`` for this query only (``SET LOCAL`` in its own
                transaction): a larger candidate list, better recall, slower.
            probes: ``ivfflat.probes`` for this query only.
        """
        term = self._vector_term(vq.Role.ORDER, column, vector, distance)
        limited = self.limit(limit)
        return self._with_vector(limited, term, ef_search, probes)

    def vector_similar(
        self,
        column: str,
        vector: Any,
        threshold: float,
        *,
        distance: str | None = None,
        ef_search: int | None = None,
        probes: int | None = None,
    ) -> QueryBuilder:
        """Keep the rows whose *column* is closer to *vector* than *threshold* (exclusive)."""
        term = attrs.evolve(
            self._vector_term(vq.Role.WITHIN, column, vector, distance),
            threshold=vq.check_threshold(threshold, self.base_name),
        )
        return self._with_vector(self, term, ef_search, probes)

    def vector_distance(
        self,
        column: str,
        vector: Any,
        alias: str = "distance",
        *,
        distance: str | None = None,
        ef_search: int | None = None,
        probes: int | None = None,
    ) -> QueryBuilder:
        """Select the distance of *column* to *vector* as the output column *alias*.

        Sorting by the alias (``Sort.asc(alias)``) orders by the distance.
        """
        if not isa(alias, str) or not alias:
            msg = f"a distance alias must be a non-empty str, not {alias!r}"
            raise QueryError(msg, table=self.base_name, value=alias)
        _check_identifier("alias", alias)
        term = attrs.evolve(
            self._vector_term(vq.Role.SELECT, column, vector, distance), alias=alias
        )
        return self._with_vector(self, term, ef_search, probes)

    def _vector_term(
        self, role: vq.Role, column: str, value: Any, distance: str | None
    ) -> vq.VectorTerm:
        if not isa(column, str):
            msg = f"a vector column name must be a str, not {column!r}"
            raise QueryError(msg, table=self.base_name, value=column)
        checked = vq.check_distance(distance, self.base_name)
        # Checked now (column, value) so a bad query vector fails where it is given.
        _, col = self._column(column, qualify=False)
        return vq.VectorTerm(role, column, value, checked).checked(col, self.base_name)

    def _with_vector(
        self, base: QueryBuilder, term: vq.VectorTerm, ef_search: object, probes: object
    ) -> QueryBuilder:
        settings = dict(base.index_settings)
        settings.update(vq.search_settings(ef_search, probes, self.base_name))
        return attrs.evolve(
            base, vectors=(*base.vectors, term), index_settings=tuple(sorted(settings.items()))
        )

    def _vector_sql(self, role: vq.Role, params: list[Any]) -> list[sql.Composable]:
        qualify = bool(self.joins)
        return [
            t.compile(lambda n: self._column(n, qualify=qualify), self.base_name, params)
            for t in self.vectors
            if t.role is role
        ]

    def _nearest_order(self, params: list[Any]) -> list[sql.Composable]:
        """Return the ORDER BY keys of :meth:`vector_search`.

        A search ordered by a distance this query also selects (same column, same vector
        object, same distance) orders by the output column instead: one distance per row and
        one bound vector, and the index still serves the order.
        """
        selected = {
            (t.column, id(t.value), t.distance): t.alias
            for t in self.vectors
            if t.role is vq.Role.SELECT
        }
        keys: list[sql.Composable] = []
        qualify = bool(self.joins)
        for term in self.vectors:
            if term.role is not vq.Role.ORDER:
                continue
            alias = selected.get((term.column, id(term.value), term.distance))
            if alias is not None:
                keys.append(sql.Identifier(alias))
            else:
                keys.append(
                    term.compile(lambda n: self._column(n, qualify=qualify), self.base_name, params)
                )
        return keys

    def lock(self, lock: RowLock | None) -> QueryBuilder:
        """Lock the rows read with *lock* (None: no lock); see :class:`RowLock`."""
        if lock is not None and not isa(lock, RowLock):
            msg = f"lock() takes a RowLock, not {lock!r}"
            raise QueryError(msg, table=self.base_name, value=lock)
        return attrs.evolve(self, row_lock=lock)

    def for_update(
        self,
        *,
        nowait: bool = False,
        skip_locked: bool = False,
        of: str | type | Sequence[str | type] | None = None,
        no_key: bool = False,
    ) -> QueryBuilder:
        """Lock the rows read ``FOR UPDATE`` (``FOR NO KEY UPDATE`` with *no_key*).

        Run it in a transaction: the lock lasts until the transaction ends. *nowait* raises
        ``LockNotAvailableError`` on a locked row, *skip_locked* leaves locked rows out, *of*
        limits the lock to these tables (names or aliases) of a join.
        """
        make = RowLock.no_key_update if no_key else RowLock.update
        return self.lock(make(nowait=nowait, skip_locked=skip_locked, of=of))

    def for_share(
        self,
        *,
        nowait: bool = False,
        skip_locked: bool = False,
        of: str | type | Sequence[str | type] | None = None,
        key: bool = False,
    ) -> QueryBuilder:
        """Lock the rows read ``FOR SHARE`` (``FOR KEY SHARE`` with *key*).

        The options are those of :meth:`for_update`.
        """
        make = RowLock.key_share if key else RowLock.share
        return self.lock(make(nowait=nowait, skip_locked=skip_locked, of=of))

    # --- compilation --------------------------------------------------------------------------

    @property
    def base_name(self) -> str:
        """The base table's name as the query refers to it."""
        return self.table_name if self.table_name is not None else self.meta.name

    @property
    def selects_model(self) -> bool:
        """Whether the rows are whole base-model rows (so they load into instances)."""
        return (
            not self.columns
            and not self.aggregates
            and not self.groups
            and not self.buckets
            and not self.windows
        )

    def _base_ident(self) -> sql.Identifier:
        return self.meta.qualified(self.table_name)

    def _context(
        self, params: list[Any], *, aliases: bool = False, outputs: bool = False
    ) -> CompileContext:
        qualify = bool(self.joins)
        agg_exprs = {a.alias: self._aggregate_sql(a) for a in self.aggregates} if aliases else {}
        # Buckets and windows are found by their output name (GROUP BY and ORDER BY allow it).
        named: dict[str, Column | None] = {}
        if outputs:
            for b in self.buckets:
                named[b.alias] = self._column(b.column, qualify=qualify)[1]
            for w in self.windows:
                named[w.alias] = None

        def resolve(name: str) -> tuple[sql.Composable, Column | None]:
            if name in named:
                return sql.Identifier(name), named[name]
            if name in agg_exprs:
                return agg_exprs[name], None
            return self._column(name, qualify=qualify)

        return CompileContext(meta=self.meta, table=self.base_name, params=params, resolve=resolve)

    def _column(self, name: str, *, qualify: bool) -> tuple[sql.Composable, Column]:
        if "." in name:
            prefix, _, column = name.partition(".")
            if prefix == self.base_name:
                col = self.meta.column(column)
                return sql.Identifier(self.base_name, col.name), col
            for j in self.joins:
                if j.name == prefix:
                    col = j.meta.column(column)
                    return sql.Identifier(j.name, col.name), col
            known = ", ".join([self.base_name, *(j.name for j in self.joins)])
            msg = f"{name!r} names no table of this query; tables are: {known}"
            raise QueryError(msg, table=self.base_name, column=name)
        col = self.meta.column(name)
        if qualify:
            return sql.Identifier(self.base_name, col.name), col
        return sql.Identifier(col.name), col

    def _aggregate_sql(self, agg: _AggregateColumn) -> sql.Composable:
        if agg.column == "*":
            if agg.function is not Aggregate.COUNT:
                msg = f"{agg.function.value}(*) is not an aggregate; only count(*) is"
                raise QueryError(msg, table=self.base_name)
            return sql.SQL("count(*)")
        expr, _ = self._column(agg.column, qualify=bool(self.joins))
        if agg.order_by is not None:
            order, _ = self._column(agg.order_by, qualify=bool(self.joins))
            direction = sql.SQL("ASC" if agg.function is Aggregate.FIRST else "DESC")
            return sql.SQL("(array_agg({} ORDER BY {} {}))[1]").format(expr, order, direction)
        return sql.SQL("{}({})").format(agg.function.sql(), expr)

    def _bucket_sql(self, b: _Bucket, params: list[Any]) -> sql.Composable:
        expr, _ = self._column(b.column, qualify=bool(self.joins))
        params.extend((b.every, b.origin))
        return sql.SQL("date_bin(%s::interval, {}, %s::timestamptz)").format(expr)

    def _window_sql(self, w: _WindowColumn, params: list[Any]) -> sql.Composable:
        qualify = bool(self.joins)
        call: sql.Composable
        if w.column is None:
            call = sql.SQL("{}()").format(sql.SQL(w.function.value))
        elif w.column == "*":
            call = sql.SQL("count(*)")
        else:
            expr, _ = self._column(w.column, qualify=qualify)
            if w.function in (Window.LAG, Window.LEAD):
                call = sql.SQL("{}({}, {})").format(
                    sql.SQL(w.function.value), expr, sql.Literal(w.offset)
                )
            else:
                call = sql.SQL("{}({})").format(sql.SQL(w.function.value), expr)
        over: list[sql.Composable] = []
        if w.partition_by:
            over.append(
                sql.SQL("PARTITION BY {}").format(
                    sql.SQL(", ").join(self._column(p, qualify=qualify)[0] for p in w.partition_by)
                )
            )
        if w.order_by:
            order = compile_sorts(self._context(params), w.order_by)
            if order is not None:
                over.append(sql.SQL("ORDER BY {}").format(order))
        if w.frame is not None:
            before, after = w.frame
            over.append(
                sql.SQL("ROWS BETWEEN {} AND {}").format(
                    _frame_bound(before, "PRECEDING"), _frame_bound(after, "FOLLOWING")
                )
            )
        return sql.SQL("{} OVER ({})").format(call, sql.SQL(" ").join(over))

    def output_columns(self) -> list[tuple[str, Column | None, Aggregate | None]]:
        """Return the name, model column and aggregate of each output column, in order."""
        qualify = bool(self.joins)
        if self.selects_model:
            return [(c.name, c, None) for c in self.meta.columns] + self._distance_columns()
        out: list[tuple[str, Column | None, Aggregate | None]] = [
            (b.alias, self._column(b.column, qualify=qualify)[1], None) for b in self.buckets
        ]
        for name in self.columns:
            _, col = self._column(name, qualify=qualify)
            out.append((name, col, None))
        for agg in self.aggregates:
            agg_col = None if agg.column == "*" else self._column(agg.column, qualify=qualify)[1]
            out.append((agg.alias, agg_col, agg.function))
        for w in self.windows:
            wcol: Column | None = None
            if w.column not in (None, "*"):
                wcol = self._column(str(w.column), qualify=qualify)[1]
            if isinstance(w.function, Aggregate):
                out.append((w.alias, wcol, w.function))
            elif w.function in _RANKING:
                out.append((w.alias, None, Aggregate.COUNT))  # loads as an int
            else:
                out.append((w.alias, wcol, None))
        return out + self._distance_columns()

    def _distance_columns(self) -> list[tuple[str, Column | None, Aggregate | None]]:
        return [(str(t.alias), None, None) for t in self.vectors if t.role is vq.Role.SELECT]

    def _distances(self, params: list[Any]) -> list[sql.Composable]:
        """Return the ``distance AS alias`` items of :meth:`vector_distance` (last in the list)."""
        selected = [t for t in self.vectors if t.role is vq.Role.SELECT]
        exprs = self._vector_sql(vq.Role.SELECT, params)
        return [
            sql.SQL("{} AS {}").format(expr, sql.Identifier(str(t.alias)))
            for t, expr in zip(selected, exprs, strict=True)
        ]

    def _select_list(self, params: list[Any], *, models: bool = False) -> sql.Composable:
        if models:
            # Every column of the base model, then of each joined one, table by table.
            every = [sql.Identifier(self.base_name, c.name) for c in self.meta.columns]
            for j in self.joins:
                every.extend(sql.Identifier(j.name, c.name) for c in j.meta.columns)
            return sql.SQL(", ").join(every)
        qualify = bool(self.joins)
        if self.selects_model:
            if qualify:
                return sql.SQL(", ").join(
                    [sql.Identifier(self.base_name, c.name) for c in self.meta.columns]
                    + self._distances(params)
                )
            return sql.SQL(", ").join(
                [sql.Identifier(c.name) for c in self.meta.columns] + self._distances(params)
            )
        parts: list[sql.Composable] = [
            sql.SQL("{} AS {}").format(self._bucket_sql(b, params), sql.Identifier(b.alias))
            for b in self.buckets
        ]
        parts.extend(self._column(n, qualify=qualify)[0] for n in self.columns)
        parts.extend(
            sql.SQL("{} AS {}").format(self._aggregate_sql(a), sql.Identifier(a.alias))
            for a in self.aggregates
        )
        parts.extend(
            sql.SQL("{} AS {}").format(self._window_sql(w, params), sql.Identifier(w.alias))
            for w in self.windows
        )
        return sql.SQL(", ").join(parts + self._distances(params))

    def _from(self) -> sql.Composable:
        parts: list[sql.Composable] = [self._base_ident()]
        for j in self.joins:
            parts.append(_JOIN_SQL[j.kind])
            parts.append(j.meta.qualified(j.table_name))
            if j.name != (j.table_name or j.meta.name):
                parts.append(sql.SQL(" AS {}").format(sql.Identifier(j.name)))
            conditions = []
            for left, right in j.on:
                left_expr, _ = self._column(left, qualify=True)
                right_col = j.meta.column(right)
                conditions.append(
                    sql.SQL("{} = {}").format(left_expr, sql.Identifier(j.name, right_col.name))
                )
            if not conditions:
                msg = f"a join with {j.name} needs at least one (column, column) pair"
                raise QueryError(msg, table=self.base_name)
            parts.append(sql.SQL(" ON "))
            parts.append(sql.SQL(" AND ").join(conditions))
        return sql.Composed(parts)

    def _body(self, params: list[Any], *, ordered: bool, models: bool = False) -> sql.Composable:
        """Return SELECT ... FROM ... WHERE ... GROUP BY ... HAVING ... [ORDER BY ...]."""
        head = sql.SQL("SELECT DISTINCT ") if self.distinct_rows else sql.SQL("SELECT ")
        parts: list[sql.Composable] = [
            head,
            self._select_list(params, models=models),
            sql.SQL(" FROM "),
            self._from(),
        ]
        if self.wheres or any(t.role is vq.Role.WITHIN for t in self.vectors):
            ctx = self._context(params)
            conditions = [w.compile(ctx) for w in self.wheres]
            conditions.extend(self._vector_sql(vq.Role.WITHIN, params))
            parts.append(sql.SQL(" WHERE "))
            parts.append(_and(conditions))
        if self.groups:
            ctx = self._context(params, outputs=True)
            parts.append(sql.SQL(" GROUP BY "))
            parts.append(sql.SQL(", ").join(ctx.column(g)[0] for g in self.groups))
        if self.havings:
            ctx = self._context(params, aliases=True)
            parts.append(sql.SQL(" HAVING "))
            parts.append(_and([h.compile(ctx) for h in self.havings]))
        nearest = self._nearest_order(params) if ordered else []
        if ordered and (self.orders or nearest):
            ctx = self._context(params, aliases=True, outputs=True)
            order = compile_sorts(ctx, self.orders) if self.orders else None
            keys = [*nearest, *([order] if order is not None else [])]
            if keys:
                parts.append(sql.SQL(" ORDER BY "))
                parts.append(sql.SQL(", ").join(keys))
        return sql.Composed(parts)

    def build(self, *, models: bool = False) -> Statement:
        """Return the compiled ``SELECT`` and its parameters.

        With *models*, the selection is every column of the base model and of each joined
        one, in that order (what :meth:`fetch_models` loads).
        """
        if models and (not self.selects_model or self.distinct_rows):
            msg = (
                "fetch_models loads whole rows of each model; this query selects columns, "
                "groups or distinct rows: use fetch() or fetch_dicts()"
            )
            raise QueryError(msg, table=self.base_name)
        params: list[Any] = []
        query = self._body(params, ordered=True, models=models)
        if self.limit_rows is not None:
            query = sql.SQL("{} LIMIT %s").format(query)
            params.append(self.limit_rows)
        if self.offset_rows:
            query = sql.SQL("{} OFFSET %s").format(query)
            params.append(self.offset_rows)
        if self.row_lock is not None:
            query = sql.Composed([query, self._lock_clause(self.row_lock)])
        return Statement(query, tuple(params), vq.setting_statements(self.index_settings))

    def _lock_clause(self, lock: RowLock) -> sql.Composable:
        if self.distinct_rows or self.groups or self.aggregates or self.buckets or self.windows:
            msg = (
                "PostgreSQL locks only rows it can point to: a locking query cannot use "
                "DISTINCT, GROUP BY, aggregates, time buckets or window functions"
            )
            raise QueryError(msg, table=self.base_name)
        return lock.clause([self.base_name, *(j.name for j in self.joins)])

    def build_count(self) -> Statement:
        """Return a statement counting the rows :meth:`build` would return (ignoring limits)."""
        params: list[Any] = []
        body = self._body(params, ordered=False)
        return Statement(sql.SQL("SELECT count(*) FROM ({}) AS q").format(body), tuple(params))

    # --- running ------------------------------------------------------------------------------

    def fetch(self, db: object) -> list[tuple[Any, ...]]:
        """Run the query on *db* and return plain rows (tuples), values converted per column."""
        return _session(db)._fetch_builder(self)

    def fetch_dicts(self, db: object) -> list[dict[str, Any]]:
        """Run the query and return one dict per row, keyed by output column name."""
        names = [name for name, _, _ in self.output_columns()]
        return [dict(zip(names, row, strict=True)) for row in self.fetch(db)]

    def fetch_models(self, db: object) -> list[tuple[Any, ...]]:
        """Run the query and return, per row, an instance of the base model and of each join.

        ``QueryBuilder(Trade).join(Instrument, ("instrument", "id"))`` gives ``(trade,
        instrument)`` pairs; a model an outer join found no row for is None. One statement.
        """
        return _session(db)._fetch_models(self)

    def count(self, db: object) -> int:
        """Return how many rows the query yields (its limit and offset ignored)."""
        return _session(db)._count_builder(self)

    def stream(
        self, db: object, *, batch_size: int = 2000, timeout: float | None = None
    ) -> Iterator[tuple[Any, ...]]:
        """Yield the rows from a server-side cursor, *batch_size* at a time (flat memory).

        *timeout* bounds each round trip (the query, then each batch) in seconds, as on
        ``stream_where``.
        """
        return _session(db)._stream_builder(self, batch_size, timeout)

    # --- columnar results ------------------------------------------------------------------------

    def fetch_arrays(self, db: object) -> dict[str, np.ndarray]:
        """Run the query and return one numpy array per output column (see the README's dtypes).

        int64, float64, bool, ``datetime64[us]`` (UTC) and ``datetime64[D]`` where the column has
        such a type, ``object`` elsewhere; NULL is NaN in floats, NaT in timestamps and dates, and
        a masked entry (``numpy.ma``) in ints and bools.
        """
        return _session(db)._fetch_columns(self)

    def fetch_arrow(self, db: object) -> Any:
        """Run the query and return a ``pyarrow.Table`` (the ``arrow`` extra)."""
        require("pyarrow", "arrow")
        return to_arrow(self.fetch_arrays(db))

    def fetch_df(self, db: object) -> Any:
        """Run the query and return a pandas ``DataFrame`` (the ``pandas`` extra)."""
        require("pandas", "pandas")
        return to_pandas(self.fetch_arrays(db))

    def copy_out(self, target: object, db: object, *, format: str = "csv") -> int:
        """Stream the query's rows to *target* (a path or a binary file) with ``COPY ... TO``.

        ``format`` is ``"csv"`` (with a header line) or ``"binary"`` (PostgreSQL's binary COPY
        format, which ``COPY ... FROM`` reads back). Memory stays flat; returns the row count.
        """
        if format not in ("csv", "binary"):
            msg = f"format must be 'csv' or 'binary', not {format!r}"
            raise QueryError(msg, table=self.base_name, value=format)
        session = _session(db)
        if isinstance(target, str | os.PathLike):
            with Path(target).open("wb") as f:
                return session._copy_builder(self, f.write, format == "binary")
        write = getattr(target, "write", None)
        if write is None:
            msg = f"target must be a path or a binary file, not {type(target).__name__}"
            raise ValidationError(msg, table=self.base_name, value=target)
        return session._copy_builder(self, write, format == "binary")


class _Runner(Protocol):
    """The part of a session that runs a builder (``Database`` and ``Transaction`` have it)."""

    def _fetch_builder(self, builder: QueryBuilder) -> list[tuple[Any, ...]]: ...
    def _fetch_models(self, builder: QueryBuilder) -> list[tuple[Any, ...]]: ...
    def _fetch_columns(self, builder: QueryBuilder) -> dict[str, np.ndarray]: ...
    def _copy_builder(
        self, builder: QueryBuilder, write: Callable[[bytes], object], binary: bool
    ) -> int: ...
    def _count_builder(self, builder: QueryBuilder) -> int: ...
    def _stream_builder(
        self, builder: QueryBuilder, batch_size: int, timeout: float | None = None
    ) -> Iterator[tuple[Any, ...]]: ...


def _session(db: object) -> _Runner:
    # Checked by what a session can do, not by its class: the session layer sits above this one.
    if not hasattr(db, "_fetch_builder"):
        msg = f"db must be a Database or a Transaction, not {type(db).__name__}"
        raise ValidationError(msg, value=db)
    return db  # type: ignore[return-value]


def _frame_bound(n: int | None, side: str) -> sql.Composable:
    if n is None:
        return sql.SQL("UNBOUNDED " + side)
    if n == 0:
        return sql.SQL("CURRENT ROW")
    return sql.SQL("{} " + side).format(sql.Literal(n))


def _and(parts: list[sql.Composable]) -> sql.Composable:
    if len(parts) == 1:
        return parts[0]
    return sql.SQL(" AND ").join(sql.SQL("({})").format(p) for p in parts)


def _non_negative(name: str, value: int) -> int:
    if isa(value, bool) or not isa(value, int) or value < 0:
        msg = f"{name} must be a non-negative int, not {value!r}"
        raise QueryError(msg, value=value)
    return value
