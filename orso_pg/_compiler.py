"""DML compilation: model metadata and query values in, ``psycopg.sql`` statements out.

Owns the SQL text of every row operation (insert, select, update, delete, upsert, count, exists).
It is pure: no connection, no I/O, values only as bound parameters, names only through
:class:`psycopg.sql.Identifier` after they were checked against the model. A statement shape
(model, table, column set) always yields the same text, and shapes are cached, so psycopg's
automatic prepared statements apply and repeated calls skip compilation.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, Final

import attrs
from psycopg import sql

from orso_pg._memo import Memo
from orso_pg._schema import Column, TableMeta
from orso_pg.errors import QueryError

__all__ = [
    "Statement",
    "count",
    "delete_by_key",
    "exists",
    "insert",
    "select",
    "select_by_key",
    "update_by_key",
    "upsert",
]

_COMMA = sql.SQL(", ")
_NOW = sql.SQL("now()")


@attrs.frozen
class Statement:
    """A query and its parameters, ready for the executor.

    Attributes:
        query: The statement text as a :mod:`psycopg.sql` composition.
        params: The values bound to its placeholders, in order.
    """

    query: sql.Composable
    params: tuple[Any, ...] = ()

    def as_string(self) -> str:
        """Return the statement text (without a connection; for tests and logs)."""
        return self.query.as_string(None)


def column_list(columns: Sequence[Column]) -> sql.Composed:
    """Return ``"a", "b", ...`` for *columns*."""
    return _COMMA.join(sql.Identifier(c.name) for c in columns)


def require_key(meta: TableMeta) -> Column:
    """Return the primary key of *meta*, or raise :class:`QueryError` when it has none."""
    if meta.primary_key is None:
        msg = f"{meta.cls.__name__} has no primary key; this operation needs one"
        raise QueryError(msg, table=meta.name)
    return meta.primary_key


@functools.lru_cache(maxsize=1024)
def select(meta: TableMeta, table_name: str | None) -> sql.Composed:
    """Return ``SELECT <every column> FROM <table>``, the head of every model read."""
    return sql.SQL("SELECT {} FROM {}").format(
        column_list(meta.columns), meta.qualified(table_name)
    )


@functools.lru_cache(maxsize=1024)
def _select_by_key(meta: TableMeta, table_name: str | None) -> sql.Composed:
    key = require_key(meta)
    return sql.SQL("{} WHERE {} = %s").format(select(meta, table_name), sql.Identifier(key.name))


def select_by_key(meta: TableMeta, table_name: str | None, key: object) -> Statement:
    """Return the statement reading the row whose primary key is *key*."""
    return Statement(_select_by_key(meta, table_name), (key,))


@functools.lru_cache(maxsize=1024)
def _select_all(meta: TableMeta, table_name: str | None) -> sql.Composed:
    if meta.primary_key is None:
        return select(meta, table_name)
    return sql.SQL("{} ORDER BY {}").format(
        select(meta, table_name), sql.Identifier(meta.primary_key.name)
    )


def select_all(meta: TableMeta, table_name: str | None) -> Statement:
    """Return the statement reading every row, in primary key order when there is one."""
    return Statement(_select_all(meta, table_name))


@functools.lru_cache(maxsize=4096)
def _insert(meta: TableMeta, table_name: str | None, names: tuple[str, ...]) -> sql.Composed:
    columns = [meta.by_name[n] for n in names]
    if not columns:
        return sql.SQL("INSERT INTO {} DEFAULT VALUES RETURNING {}").format(
            meta.qualified(table_name), column_list(meta.columns)
        )
    return sql.SQL("INSERT INTO {} ({}) VALUES ({}) RETURNING {}").format(
        meta.qualified(table_name),
        column_list(columns),
        _COMMA.join(sql.Placeholder() * len(columns)),
        column_list(meta.columns),
    )


def insert(
    meta: TableMeta, table_name: str | None, names: tuple[str, ...], values: tuple[Any, ...]
) -> Statement:
    """Return ``INSERT ... RETURNING`` every column, for the columns *names*.

    Columns the server fills (generated keys, timestamps, defaults) are left out of *names* by
    the caller when the instance holds None, so the server's value comes back in the row.
    """
    return Statement(_insert(meta, table_name, names), values)


@functools.lru_cache(maxsize=4096)
def _update(meta: TableMeta, table_name: str | None, names: tuple[str, ...]) -> sql.Composed:
    key = require_key(meta)
    assignments: list[sql.Composable] = [
        sql.SQL("{} = %s").format(sql.Identifier(n)) for n in names
    ]
    if meta.updated_at is not None:
        assignments.append(sql.SQL("{} = {}").format(sql.Identifier(meta.updated_at.name), _NOW))
    if not assignments:
        # Nothing to change: still lock and return the row so a missing key is reported.
        assignments.append(sql.SQL("{0} = {0}").format(sql.Identifier(key.name)))
    return sql.SQL("UPDATE {} SET {} WHERE {} = %s RETURNING {}").format(
        meta.qualified(table_name),
        _COMMA.join(assignments),
        sql.Identifier(key.name),
        column_list(meta.columns),
    )


def update_by_key(
    meta: TableMeta,
    table_name: str | None,
    names: tuple[str, ...],
    values: tuple[Any, ...],
    key: object,
) -> Statement:
    """Return ``UPDATE ... SET <names> [, updated_at = now()] WHERE pk = key RETURNING *``."""
    return Statement(_update(meta, table_name, names), (*values, key))


@functools.lru_cache(maxsize=1024)
def _delete(meta: TableMeta, table_name: str | None) -> sql.Composed:
    key = require_key(meta)
    return sql.SQL("DELETE FROM {} WHERE {} = %s").format(
        meta.qualified(table_name), sql.Identifier(key.name)
    )


def delete_by_key(meta: TableMeta, table_name: str | None, key: object) -> Statement:
    """Return the statement deleting the row whose primary key is *key*."""
    return Statement(_delete(meta, table_name), (key,))


@functools.lru_cache(maxsize=4096)
def _upsert(
    meta: TableMeta,
    table_name: str | None,
    names: tuple[str, ...],
    conflict: tuple[str, ...],
) -> sql.Composed:
    columns = [meta.by_name[n] for n in names]
    keep = {*conflict}
    if meta.created_at is not None:
        keep.add(meta.created_at.name)
    if meta.primary_key is not None:
        keep.add(meta.primary_key.name)
    if meta.updated_at is not None:
        keep.add(meta.updated_at.name)
    assignments: list[sql.Composable] = [
        sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c.name))
        for c in columns
        if c.name not in keep
    ]
    if meta.updated_at is not None:
        assignments.append(sql.SQL("{} = {}").format(sql.Identifier(meta.updated_at.name), _NOW))
    if not assignments:
        # DO NOTHING would return no row for an existing key; a no-op update returns it.
        first = conflict[0]
        assignments.append(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(first)))
    return sql.SQL(
        "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT ({}) DO UPDATE SET {} RETURNING {}"
    ).format(
        meta.qualified(table_name),
        column_list(columns),
        _COMMA.join(sql.Placeholder() * len(columns)),
        _COMMA.join(map(sql.Identifier, conflict)),
        _COMMA.join(assignments),
        column_list(meta.columns),
    )


def upsert(
    meta: TableMeta,
    table_name: str | None,
    names: tuple[str, ...],
    values: tuple[Any, ...],
    conflict: tuple[str, ...],
) -> Statement:
    """Return one ``INSERT ... ON CONFLICT (conflict) DO UPDATE ... RETURNING *``.

    Every inserted column outside the conflict key (and outside the primary key and
    ``created_at``, which keep the stored row's values) is overwritten; ``updated_at`` is set to
    ``now()``.
    """
    return Statement(_upsert(meta, table_name, names, conflict), values)


def count(meta: TableMeta, table_name: str | None, where: Statement | None = None) -> Statement:
    """Return the statement counting the rows of the table (matching *where* when given)."""
    fragment = None if where is None else where.query

    def build() -> sql.Composable:
        return _where(
            sql.SQL("SELECT count(*) FROM {}").format(meta.qualified(table_name)), fragment
        )

    query = _around(("count", meta, table_name), (fragment,), build)
    return Statement(query, () if where is None else where.params)


def exists(meta: TableMeta, table_name: str | None, where: Statement | None = None) -> Statement:
    """Return ``SELECT EXISTS (SELECT 1 FROM <table> [WHERE ...])``, which stops at one row."""
    fragment = None if where is None else where.query

    def build() -> sql.Composable:
        inner = _where(sql.SQL("SELECT 1 FROM {}").format(meta.qualified(table_name)), fragment)
        return sql.SQL("SELECT EXISTS ({})").format(inner)

    query = _around(("exists", meta, table_name), (fragment,), build)
    return Statement(query, () if where is None else where.params)


# --- filtered reads and writes ----------------------------------------------------------------


def _where(head: sql.Composable, where: sql.Composable | None) -> sql.Composable:
    return head if where is None else sql.SQL("{} WHERE {}").format(head, where)


# Statements around a WHERE (and ORDER BY) fragment, per fragment object. The filter module
# hands back one fragment object per filter shape, so a filtered call made again finds its
# statement here, already composed, and the executor's rendering of it too.
_AROUND: Final[Memo[sql.Composable]] = Memo()


def _around(
    key: tuple[Any, ...],
    fragments: tuple[sql.Composable | None, ...],
    build: Callable[[], sql.Composable],
) -> sql.Composable:
    """Return the statement *build* makes from *fragments*, built once per fragment objects."""
    query = _AROUND.get(key, fragments)
    if query is None:
        query = _AROUND.put(key, build(), fragments)
    return query


def select_where(
    meta: TableMeta,
    table_name: str | None,
    where: sql.Composable | None,
    params: tuple[Any, ...],
    *,
    order_by: sql.Composable | None = None,
    limit: int | None = None,
    offset: int | None = None,
) -> Statement:
    """Return ``SELECT <every column> FROM t [WHERE] [ORDER BY] [LIMIT %s] [OFFSET %s]``.

    Limits and offsets are bound parameters, so pages of one query share one SQL text.
    """

    def build() -> sql.Composable:
        query = _where(select(meta, table_name), where)
        if order_by is not None:
            query = sql.SQL("{} ORDER BY {}").format(query, order_by)
        if limit is not None:
            query = sql.SQL("{} LIMIT %s").format(query)
        if offset:
            query = sql.SQL("{} OFFSET %s").format(query)
        return query

    key = ("select", meta, table_name, limit is not None, bool(offset))
    args = list(params)
    if limit is not None:
        args.append(limit)
    if offset:
        args.append(offset)
    return Statement(_around(key, (where, order_by), build), tuple(args))


def aggregate(
    meta: TableMeta,
    table_name: str | None,
    function: sql.Composable,
    column: str | None,
    where: sql.Composable | None,
    params: tuple[Any, ...],
) -> Statement:
    """Return ``SELECT fn(column) FROM t [WHERE ...]``; *column* None means ``*``."""

    def build() -> sql.Composable:
        expr = sql.SQL("*") if column is None else sql.Identifier(column)
        head = sql.SQL("SELECT {}({}) FROM {}").format(function, expr, meta.qualified(table_name))
        return _where(head, where)

    query = _around(("aggregate", meta, table_name, column), (function, where), build)
    return Statement(query, params)


def delete_where(
    meta: TableMeta, table_name: str | None, where: sql.Composable | None, params: tuple[Any, ...]
) -> Statement:
    """Return ``DELETE FROM t [WHERE ...]``."""

    def build() -> sql.Composable:
        return _where(sql.SQL("DELETE FROM {}").format(meta.qualified(table_name)), where)

    return Statement(_around(("delete", meta, table_name), (where,), build), params)


def update_where(
    meta: TableMeta,
    table_name: str | None,
    names: Sequence[str],
    values: Sequence[Any],
    where: sql.Composable | None,
    params: tuple[Any, ...],
) -> Statement:
    """Return ``UPDATE t SET a = %s, ... [, updated_at = now()] [WHERE ...]``."""

    def build() -> sql.Composable:
        assignments: list[sql.Composable] = [
            sql.SQL("{} = %s").format(sql.Identifier(n)) for n in names
        ]
        if meta.updated_at is not None and meta.updated_at.name not in names:
            stamp = sql.Identifier(meta.updated_at.name)
            assignments.append(sql.SQL("{} = {}").format(stamp, _NOW))
        target = meta.qualified(table_name)
        return _where(sql.SQL("UPDATE {} SET {}").format(target, _COMMA.join(assignments)), where)

    query = _around(("update", meta, table_name, tuple(names)), (where,), build)
    return Statement(query, (*values, *params))


@functools.lru_cache(maxsize=1024)
def _select_by_keys(meta: TableMeta, table_name: str | None, column: str) -> sql.Composed:
    col = meta.by_name[column]
    return sql.SQL("{} WHERE {} = ANY(%b::{}[])").format(
        select(meta, table_name), sql.Identifier(col.name), col.type.ddl
    )


def select_in(meta: TableMeta, table_name: str | None, column: str, values: list[Any]) -> Statement:
    """Return the statement reading rows whose *column* is one of *values* (one array bind)."""
    return Statement(_select_by_keys(meta, table_name, column), (values,))


@functools.lru_cache(maxsize=1024)
def _cast_keys(meta: TableMeta, column: str) -> sql.Composed:
    col = meta.by_name[column]
    return sql.SQL("SELECT k FROM unnest(%b::{}[]) WITH ORDINALITY AS u(k, n) ORDER BY n").format(
        col.type.ddl
    )


def cast_keys(meta: TableMeta, column: str, values: list[Any]) -> Statement:
    """Return the statement giving *values* back as *column*'s type stores them, in order.

    A declared ``sql_type`` may change a value on the way in (``char(n)`` pads it, ``uuid``
    writes it in canonical form); this shows callers the stored form of the values they asked
    for, without reading the table.
    """
    return Statement(_cast_keys(meta, column), (values,))
