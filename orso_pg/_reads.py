"""Query operations: the finders, lists, pages, search, aggregates and set-based writes.

Owns the steps of every read method of ``Orso`` (and ``update_where`` / ``delete_where``):
compiling filters and sorts against the model, choosing the statement from
:mod:`orso_pg._compiler`, running it through a session in as few round trips as the result
needs (one for every finder, one for a page with its total), and loading rows into instances.
It must not build SQL text by hand nor touch a connection directly.
"""

from __future__ import annotations

import decimal
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import attrs
from psycopg import sql

from orso_pg import _compiler as compiler
from orso_pg import _partitions as partitions
from orso_pg import _types
from orso_pg._compiler import Statement
from orso_pg._executor import ALL, ONE, ROWCOUNT, SCALAR, load_rows, load_stream, loader
from orso_pg._operations import check_session, dump_keys, dump_value, optional, run, setup
from orso_pg._schema import Column, TableMeta, table_of
from orso_pg.errors import QueryError, ValidationError
from orso_pg.query._expressions import is_expression, update_statement
from orso_pg.query._filters import (
    Aggregate,
    CompileContext,
    Filter,
    SearchFilter,
    Sort,
    compile_filter,
    compile_sorts,
    isa,
    with_tiebreak,
)
from orso_pg.query._locks import RowLock, locked
from orso_pg.query._pagination import Cursor, KeysetPage, PaginatedResult, Pagination
from orso_pg.query._results import aggregate_value, check_batch_size, unloadable_value
from orso_pg.session._database import Session
from orso_pg.session._pipeline import Step

if TYPE_CHECKING:
    from orso_pg.query._builder import QueryBuilder

__all__ = [
    "aggregate",
    "count_where",
    "delete_where",
    "exists_filter",
    "find_by_field",
    "find_by_field_in",
    "find_by_ids",
    "find_first",
    "find_keyset",
    "find_one",
    "find_page",
    "find_where",
    "search",
    "stream",
    "update_where",
]

M = TypeVar("M")

DEFAULT_PAGINATION = Pagination(1, 20)


def _where(
    meta: TableMeta, label: str, f: Filter | None
) -> tuple[sql.Composable | None, tuple[Any, ...]]:
    return compile_filter(meta, label, f)


def _order(meta: TableMeta, label: str, sorts: Sequence[Sort]) -> sql.Composable | None:
    return compile_sorts(CompileContext(meta=meta, table=label), sorts)


def _load_all(meta: TableMeta, rows: Iterable[Sequence[Any]]) -> list[Any]:
    return load_rows(meta, rows if isinstance(rows, list) else list(rows))


# --- finders ----------------------------------------------------------------------------------


def find_where(
    cls: type[M],
    f: Filter | None,
    db: object,
    table_name: object = None,
    *,
    lock: RowLock | None = None,
) -> list[M]:
    """Return every row matching *f* (in no particular order), locked by *lock* when given."""
    meta, table, label, session = setup(cls, db, table_name)
    session._check_lock(lock, label)
    where, params = _where(meta, label, f)
    stmt = locked(compiler.select_where(meta, table, where, params), lock, label)
    found: list[M] = run(
        Step(session, stmt, ALL, label, lambda rows: _load_all(meta, rows), lock=lock)
    )
    return found


def find_first(
    cls: type[M],
    f: Filter | None,
    sorts: Sequence[Sort],
    db: object,
    table_name: object = None,
    *,
    lock: RowLock | None = None,
) -> M | None:
    """Return the first row matching *f* under *sorts* (primary key as tie-breaker), or None."""
    meta, table, label, session = setup(cls, db, table_name)
    session._check_lock(lock, label)
    where, params = _where(meta, label, f)
    order = _order(meta, label, with_tiebreak(meta, sorts))
    stmt = compiler.select_where(meta, table, where, params, order_by=order, limit=1)
    stmt = locked(stmt, lock, label)
    found: M | None = run(Step(session, stmt, ONE, label, optional(meta), lock=lock))
    return found


def find_one(
    cls: type[M],
    f: Filter | None,
    db: object,
    table_name: object = None,
    *,
    lock: RowLock | None = None,
) -> M | None:
    """Return one row matching *f* (the lowest primary key), or None; locked by *lock*."""
    return find_first(cls, f, (), db, table_name, lock=lock)


def timestamp_sort(meta: TableMeta, *, latest: bool) -> Sort:
    """Return the sort on the model's ``created_at`` column for latest/first finders."""
    if meta.created_at is None:
        msg = (
            f"{meta.cls.__name__} has no created_at column; "
            "find_latest/find_first need column(created_at=True)"
        )
        raise QueryError(msg, table=meta.name)
    name = meta.created_at.name
    return Sort.desc(name) if latest else Sort.asc(name)


def exists_filter(cls: type, f: Filter | None, db: object, table_name: object = None) -> bool:
    """Return whether a row matches *f* (``EXISTS``, stopping at the first)."""
    meta, table, label, session = setup(cls, db, table_name)
    where, params = _where(meta, label, f)
    stmt = compiler.exists(
        meta, table, None if where is None else compiler.Statement(where, params)
    )
    return run(Step(session, stmt, SCALAR, label, bool))


def count_where(cls: type, f: Filter | None, db: object, table_name: object = None) -> int:
    """Return how many rows match *f*."""
    meta, table, label, session = setup(cls, db, table_name)
    where, params = _where(meta, label, f)
    stmt = compiler.count(meta, table, None if where is None else compiler.Statement(where, params))
    return run(Step(session, stmt, SCALAR, label, int))


def find_by_field(
    cls: type[M], field: str, value: object, db: object, table_name: object = None
) -> list[M]:
    """Return the rows whose *field* equals *value* (``None`` matches NULL)."""
    return find_where(cls, Filter.eq(field, value), db, table_name)


def find_by_ids(
    cls: type[M], ids: Iterable[object], db: object, table_name: object = None
) -> list[M]:
    """Return the rows with the given primary keys, in the order asked for, in one round trip.

    Keys with no row are left out; a key asked for twice is returned once.
    """
    meta, table, label, session = setup(cls, db, table_name)
    if meta.composite:
        return _find_by_composite_keys(meta, table, label, session, ids)
    pk = compiler.require_key(meta)
    keys = dump_keys(meta, table, ids)
    if not keys:
        return []
    stmt = compiler.select_in(meta, table, pk.name, keys)
    if pk.options.sql_type is None:
        rows = session._read(lambda ex: ex.fetch_all(stmt, table=label))
        asked = [_hashable(k) for k in keys]
    else:
        # A declared type may store a key differently from how it was asked for (char(n)
        # pads it, uuid canonicalises it): the server casts the asked keys too, in the same
        # round trip, and both sides are matched after the column's loader.
        cast = compiler.cast_keys(meta, pk.name, keys)
        rows, stored = session._read(lambda ex: ex.fetch_together([stmt, cast], table=label))
        load_key = pk.type.load
        asked = [k if k is None or load_key is None else load_key(k) for (k,) in stored]
    found = {}
    for obj in load_rows(meta, rows):
        found[getattr(obj, pk.name)] = obj
    ordered = []
    for k in asked:
        obj = found.pop(k, None)  # popped: a key asked for twice is returned once
        if obj is not None:
            ordered.append(obj)
    return ordered


def _find_by_composite_keys(
    meta: TableMeta, table: str | None, label: str, session: Session, ids: Iterable[object]
) -> list[Any]:
    keys = dump_keys(meta, table, ids)
    if not keys:
        return []
    stmt = compiler.select_by_keys(meta, table, keys)
    rows = session._read(lambda ex: ex.fetch_all(stmt, table=label))
    load = loader(meta)
    positions = [meta.columns.index(c) for c in meta.key]
    seen: set[object] = set()
    ordered = []
    for row in rows:  # in the order asked; a key asked for again repeats its row
        stored: object = tuple(row[i] for i in positions)
        try:
            hash(stored)
        except TypeError:
            # A JSON or array part: both sides come from the server in one form, so their
            # text tells them apart exactly.
            stored = repr(stored)
        if stored not in seen:
            seen.add(stored)
            ordered.append(load(row))
    return ordered


def _hashable(key: object) -> object:
    """Return *key* as a loaded row holds it (bytea keys load as bytes)."""
    return bytes(key) if isinstance(key, (bytearray, memoryview)) else key


def find_by_field_in(
    cls: type[M], field: str, values: Iterable[object], db: object, table_name: object = None
) -> list[M]:
    """Return the rows whose *field* is one of *values* (an empty list matches nothing)."""
    return find_where(cls, Filter.in_values(field, values), db, table_name)


# --- writes by filter -------------------------------------------------------------------------


def delete_where(cls: type, f: Filter | None, db: object, table_name: object = None) -> int:
    """Delete the rows matching *f*; return how many. ``None`` deletes every row."""
    meta, table, label, session = setup(cls, db, table_name)
    where, params = _where(meta, label, f)
    stmt = compiler.delete_where(meta, table, where, params)
    return run(Step(session, stmt, ROWCOUNT, label, int, write=True))


def update_where(
    cls: type,
    f: Filter | None,
    values: Mapping[str, object],
    db: object,
    table_name: object = None,
) -> int:
    """Set *values* (column to value) on every row matching *f*; return how many rows changed.

    A value may be an expression (``col("qty") + 1``, ``Expr.now()``, ``Expr.coalesce``...),
    computed by the server from the row itself, still in one statement.
    ``updated_at`` is set to ``now()`` unless *values* sets it to a time (None means now()).
    """
    meta, table, label, session = setup(cls, db, table_name)
    if not isa(values, Mapping) or not values:
        msg = f"update_where needs a mapping of at least one column to set, not {values!r}"
        raise QueryError(msg, table=label, value=values)
    names: list[str] = []
    dumped: list[Any] = []
    expressions = False
    spec = meta.placement.partitioning
    moved: list[object] = []  # the partition column's new value, when the update sets one
    for name, value in values.items():
        col = meta.column(name)
        if spec is not None and col.name == spec.column:
            moved.append(value)
        if is_expression(value):
            expressions = True
            names.append(col.name)
            dumped.append(value)
            continue
        if value is None and col.not_null:
            if col is meta.updated_at:
                continue  # the statement sets it to now()
            # A server-filled column (a key, created_at) holds None only before its insert:
            # as an update it would be a NULL the table refuses.
            msg = f"{label}.{col.name} is NOT NULL; None given"
            raise ValidationError(msg, table=label, column=col.name, value=None)
        names.append(col.name)
        dumped.append(dump_value(meta, table, col, value))
    where, params = _where(meta, label, f)
    if expressions:
        pairs = [(meta.by_name[n], v) for n, v in zip(names, dumped, strict=True)]
        stmt = update_statement(meta, table, label, pairs, where, params)
    else:
        stmt = compiler.update_where(meta, table, names, dumped, where, params)
    step = Step(session, stmt, ROWCOUNT, label, int, write=True)
    if moved:
        return partitions.update_moving(step, meta, table, moved[0])
    return run(step)


# --- pages ------------------------------------------------------------------------------------


def _page(
    meta: TableMeta,
    session: Session,
    label: str,
    count: Statement,
    rows: Statement,
    page: Pagination,
) -> PaginatedResult[Any]:
    """Run a page's count and rows together (one round trip, one snapshot) and load them."""
    counted, found = session._read(lambda ex: ex.fetch_together([count, rows], table=label))
    return PaginatedResult(load_rows(meta, found), page.with_total(int(counted[0][0])))


def find_page(
    cls: type[M],
    f: Filter | None,
    sorts: Sequence[Sort] | None,
    pagination: Pagination | None,
    db: object,
    table_name: object = None,
) -> PaginatedResult[M]:
    """Return one page of the rows matching *f* and the total, from one snapshot.

    Rows are in *sorts* order with the primary key as the last tie-breaker, so pages never
    overlap or skip rows. Without a pagination, page 1 of 20 (as orso).
    """
    meta, table, label, session = setup(cls, db, table_name)
    page = DEFAULT_PAGINATION if pagination is None else pagination
    if not isa(page, Pagination):
        msg = f"expected a Pagination, got {type(page).__name__} {page!r}"
        raise ValidationError(msg, table=label, value=page)
    where, params = _where(meta, label, f)
    order = _order(meta, label, with_tiebreak(meta, sorts or ()))
    if order is None:
        order = sql.SQL("1")  # a model without a key: any order
    count = compiler.count(meta, table, None if where is None else Statement(where, params))
    rows = compiler.select_where(
        meta, table, where, params, order_by=order, limit=page.limit(), offset=page.offset()
    )
    return _page(meta, session, label, count, rows, page)


def search(
    cls: type[M],
    search_filter: SearchFilter,
    pagination: Pagination | None,
    db: object,
    table_name: object = None,
) -> PaginatedResult[M]:
    """Return one page of the rows matching *search_filter* (case-insensitive by default)."""
    if not isa(search_filter, SearchFilter):
        msg = f"expected a SearchFilter, got {type(search_filter).__name__}"
        raise QueryError(msg, value=search_filter)
    return find_page(cls, search_filter.to_filter(), (), pagination, db, table_name)


def _keyset_condition(
    ctx: CompileContext, sorts: Sequence[Sort], values: Sequence[Any]
) -> sql.Composable:
    """Return the condition "strictly after *values*" under *sorts* (NULLs placed as sorted)."""
    branches: list[sql.Composable] = []
    for i, sort in enumerate(sorts):
        value = values[i]
        if value is None and sort.nulls_last:
            # Nothing sorts after NULL but other NULLs, which tie: this branch is empty. It is
            # skipped before its terms bind anything, so no parameter is left without a place.
            continue
        terms: list[sql.Composable] = []
        for prior, prior_value in zip(sorts[:i], values[:i], strict=True):
            expr, col = ctx.column(prior.column)
            if prior_value is None:
                terms.append(sql.SQL("{} IS NULL").format(expr))
            else:
                terms.append(sql.SQL("{} = {}").format(expr, ctx.value(col, prior_value)))
        expr, col = ctx.column(sort.column)
        if value is None:
            terms.append(sql.SQL("{} IS NOT NULL").format(expr))
        else:
            op = sql.SQL(" > ") if sort.ascending else sql.SQL(" < ")
            after = sql.Composed([expr, op, ctx.value(col, value)])
            # NULLs after every value: they follow the cursor too, unless the column has none
            # (a key): an OR there would only keep the planner off the index.
            if sort.nulls_last and (col is None or not col.not_null):
                after = sql.SQL("({} OR {} IS NULL)").format(after, expr)
            terms.append(after)
        branches.append(sql.SQL("({})").format(sql.SQL(" AND ").join(terms)))
    if not branches:
        return sql.SQL("FALSE")
    return sql.SQL("({})").format(sql.SQL(" OR ").join(branches))


def find_keyset(
    cls: type[M],
    f: Filter | None,
    sorts: Sequence[Sort],
    db: object,
    *,
    after: Cursor | None = None,
    limit: int = 100,
    table_name: object = None,
) -> KeysetPage[M]:
    """Return up to *limit* rows after *after* in *sorts* order (keyset pagination).

    Each page is found by the sort values of the previous page's last row, never by an offset,
    so walking every page returns each row once even while rows are inserted or deleted
    between pages, and deep pages cost what the first one does.
    """
    meta, table, label, session = setup(cls, db, table_name)
    compiler.require_keys(meta)  # the key is the tie-breaker that makes every position unique
    full = with_tiebreak(meta, sorts)
    if isa(limit, bool) or not isa(limit, int) or limit < 1:
        msg = f"limit must be a positive int, not {limit!r}"
        raise ValidationError(msg, table=label, value=limit)
    ctx = CompileContext(meta=meta, table=label)
    conditions: list[sql.Composable] = []
    if f is not None:
        if not isa(f, Filter):
            msg = f"expected a Filter, got {type(f).__name__} {f!r}"
            raise QueryError(msg, table=label, value=f)
        conditions.append(f.compile(ctx))
    if after is not None:
        if not isa(after, Cursor) or len(after.values) != len(full):
            msg = f"the cursor does not match this query's sort ({len(full)} values expected)"
            raise ValidationError(msg, table=label, value=after)
        conditions.append(_keyset_condition(ctx, full, after.values))
    where_sql = sql.SQL(" AND ").join(conditions) if conditions else None
    order = compile_sorts(ctx, full)
    stmt = compiler.select_where(
        meta, table, where_sql, tuple(ctx.params), order_by=order, limit=limit + 1
    )
    rows = session._read(lambda ex: ex.fetch_all(stmt, table=label))
    data = _load_all(meta, rows[:limit])
    next_cursor = None
    if len(rows) > limit and data:
        last = data[-1]
        next_cursor = Cursor(tuple(getattr(last, s.column) for s in full))
    return KeysetPage(data, next_cursor)


def stream(
    cls: type[M],
    f: Filter | None,
    sorts: Sequence[Sort],
    db: object,
    *,
    batch_size: int = 2000,
    table_name: object = None,
    timeout: float | None = None,
) -> Iterator[M]:
    """Return an iterator over the rows matching *f*, read from a server-side cursor.

    The filter, sorts and batch size are checked now, so a bad query fails at the call rather
    than at the first ``next()``; rows are fetched *batch_size* at a time as they are consumed.
    *timeout* bounds each round trip (the query, then each page) in seconds.
    """
    meta, table, label, session = setup(cls, db, table_name)
    check_batch_size(batch_size, label)
    where, params = _where(meta, label, f)
    order = _order(meta, label, sorts)
    stmt = compiler.select_where(meta, table, where, params, order_by=order)
    return load_stream(meta, session._iterate(stmt, batch_size, label, timeout), batch_size)


# --- aggregates -------------------------------------------------------------------------------

_NUMERIC_TYPES = (int, float, decimal.Decimal)
_UNORDERED = (dict, list, bool, uuid.UUID, bytes)
_UNORDERED_FAMILIES = frozenset({"bool", "uuid", "bytes", "json", "jsonb"})


def aggregate(
    cls: type,
    function: Aggregate,
    column: str,
    f: Filter | None,
    db: object,
    table_name: object = None,
) -> Any:
    """Return ``function(column)`` over the rows matching *f* (None on an empty set).

    ``column`` may be ``"*"`` with COUNT.
    """
    meta, table, label, session = setup(cls, db, table_name)
    if not isa(function, Aggregate):
        msg = f"expected an Aggregate, got {function!r}"
        raise QueryError(msg, table=label, value=function)
    col: Column | None
    if column == "*":
        if function is not Aggregate.COUNT:
            msg = f"{function.value}(*) is not an aggregate; only count(*) is"
            raise QueryError(msg, table=label, column=column)
        col = None
    else:
        col = meta.column(column)
        # Both the annotation (what the result loads as) and the SQL type (which a declared
        # sql_type sets, and which the server aggregates) must allow the function.
        sql_family = _types.family(col.type)
        summable = col.type.python in (*_NUMERIC_TYPES, _types.INTERVAL.python) and (
            sql_family in ("number", "interval", "other")
        )
        if function in (Aggregate.SUM, Aggregate.AVG) and not summable:
            msg = f"{function.value} needs a numeric column; {label}.{col.name} is {col.type.label}"
            raise QueryError(msg, table=label, column=col.name)
        # PostgreSQL has no min/max over boolean, uuid, bytea, json or jsonb on every supported
        # version: refuse them here rather than let the server fail the statement.
        unordered = (
            col.type.compressed
            or col.type.python in _UNORDERED
            or sql_family in _UNORDERED_FAMILIES
        )
        if unordered and function is not Aggregate.COUNT:
            msg = f"{function.value} does not apply to {label}.{col.name} ({col.type.label})"
            raise QueryError(msg, table=label, column=col.name)
    where, params = _where(meta, label, f)
    stmt = compiler.aggregate(
        meta, table, function.sql(), None if col is None else col.name, where, params
    )

    def finish(value: Any) -> Any:
        try:
            return aggregate_value(function, col, value)
        except _types.Unloadable as exc:
            assert col is not None  # noqa: S101 - count(*) loads nothing
            raise unloadable_value(label, col, value, exc) from None

    return run(Step(session, stmt, SCALAR, label, finish))


# --- QueryBuilder -----------------------------------------------------------------------------


def columns_query(
    cls: type, f: Filter | None, columns: Sequence[str] | None, sorts: Sequence[Sort]
) -> QueryBuilder:
    """Return the builder of a columnar read: *columns* of the rows matching *f*, in *sorts*."""
    from orso_pg.query._builder import QueryBuilder

    builder = QueryBuilder(cls)
    if columns is not None:
        if isinstance(columns, str) or not columns:
            msg = "columns must be a non-empty list of column names"
            raise QueryError(msg, table=table_of(cls).name, value=columns)
        builder = builder.select(*columns)
    if f is not None:
        builder = builder.where(f)
    if sorts:
        builder = builder.order_by(*sorts)
    return builder


def _model_builder(cls: type, builder: QueryBuilder) -> TableMeta:
    meta = table_of(cls)
    from orso_pg.query._builder import QueryBuilder

    if not isa(builder, QueryBuilder):
        msg = f"expected a QueryBuilder, got {type(builder).__name__}"
        raise QueryError(msg, table=meta.name, value=builder)
    if builder.meta is not meta:
        msg = f"the query is on {builder.meta.cls.__name__}, not {meta.cls.__name__}"
        raise QueryError(msg, table=meta.name)
    if not builder.selects_model:
        msg = (
            "this query selects columns or groups, so its rows are not "
            f"{meta.cls.__name__} instances; use builder.fetch() or fetch_dicts()"
        )
        raise QueryError(msg, table=meta.name)
    return meta


def query(cls: type[M], builder: QueryBuilder, db: object) -> list[M]:
    """Run *builder* and load its rows as instances of *cls*."""
    meta = _model_builder(cls, builder)
    session = check_session(db)
    session._check_lock(builder.row_lock, builder.base_name)
    stmt = builder.build()
    rows = session._read_locked(
        builder.row_lock, lambda ex: ex.fetch_all(stmt, table=builder.base_name)
    )
    return _load_all(meta, rows)


def query_paginated(
    cls: type[M], builder: QueryBuilder, pagination: Pagination, db: object
) -> PaginatedResult[M]:
    """Run one page of *builder* with the total of the whole query, from one snapshot."""
    meta = _model_builder(cls, builder)
    session = check_session(db)
    session._check_lock(builder.row_lock, builder.base_name)
    if not isa(pagination, Pagination):
        msg = f"expected a Pagination, got {type(pagination).__name__}"
        raise ValidationError(msg, table=meta.name, value=pagination)
    page = attrs.evolve(
        builder,
        orders=with_tiebreak(meta, builder.orders),
        limit_rows=pagination.limit(),
        offset_rows=pagination.offset(),
    )
    count = builder.build_count()
    return _page(meta, session, builder.base_name, count, page.build(), pagination)
