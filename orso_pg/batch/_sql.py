"""The SQL of batch operations: COPY, the staging table, and the set-based statements fed by it.

Owns the text of every statement :mod:`orso_pg.batch._batch` runs: ``COPY ... FROM STDIN``, the
temporary staging table, the staged ``INSERT ... SELECT ... ON CONFLICT`` and ``UPDATE ... FROM``,
``DELETE ... = ANY(%s)`` and the allocation of generated keys. It is pure, like
:mod:`orso_pg._compiler`: no connection, values only as bound parameters (a whole list is one array
parameter, so no statement comes near PostgreSQL's 65,535-parameter limit), names only through
:class:`psycopg.sql.Identifier` after the caller checked them against the model. Every shape is
cached, so its text is stable and psycopg can prepare it.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from psycopg import sql

from orso_pg._compiler import (
    Statement,
    column_list,
    keys_in,
    keys_params,
    require_key,
    require_keys,
)
from orso_pg._schema import TableMeta
from orso_pg.migrate import _ddl as ddl

__all__ = [
    "STAGE",
    "allocate_keys",
    "copy",
    "create_stage",
    "delete_any",
    "drop_stage",
    "key_condition",
    "truncate_stage",
    "update_assigning",
    "update_from_stage",
    "upsert_assigning",
    "upsert_from_stage",
]

STAGE = sql.Identifier("orso_pg_stage")
_COMMA = sql.SQL(", ")
_NOW = sql.SQL("now()")
_BINARY = sql.SQL(" FROM STDIN (FORMAT BINARY)")
_TEXT = sql.SQL(" FROM STDIN (FORMAT TEXT)")


@functools.lru_cache(maxsize=1024)
def copy(
    meta: TableMeta, table_name: str | None, names: tuple[str, ...], *, binary: bool, stage: bool
) -> sql.Composed:
    """Return ``COPY <table> (<names>) FROM STDIN (FORMAT BINARY|TEXT)``.

    With *stage*, the rows go to the staging table instead of the model's table.

    >>> from orso_pg import table
    >>> @table("ticks")
    ... class Tick:
    ...     id: int | None = None
    ...     price: float
    >>> meta = Tick.__orso_table__
    >>> copy(meta, None, ("price",), binary=True, stage=False).as_string()
    'COPY "ticks" ("price") FROM STDIN (FORMAT BINARY)'
    """
    target = STAGE if stage else meta.qualified(table_name)
    return sql.Composed(
        [
            sql.SQL("COPY "),
            target,
            sql.SQL(" ("),
            column_list([meta.by_name[n] for n in names]),
            sql.SQL(")"),
            _BINARY if binary else _TEXT,
        ]
    )


@functools.lru_cache(maxsize=1024)
def _create_stage(meta: TableMeta, table_name: str | None) -> sql.Composed:
    # CREATE TABLE AS copies the live column types (typmods included) and nothing else: no
    # NOT NULL, no defaults, no indexes, so staging is as cheap as a heap append can be.
    return sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA").format(
        STAGE, column_list(meta.columns), meta.qualified(table_name)
    )


def create_stage(meta: TableMeta, table_name: str | None) -> Statement:
    """Return the statement creating the staging table, shaped like the model's table.

    It is a temporary table dropped at commit at the latest; it holds one chunk at a time.
    """
    return Statement(_create_stage(meta, table_name))


_TRUNCATE_STAGE = Statement(sql.SQL("TRUNCATE {}").format(STAGE))
_DROP_STAGE = Statement(sql.SQL("DROP TABLE {}").format(STAGE))


def truncate_stage() -> Statement:
    """Return the statement emptying the staging table between chunks."""
    return _TRUNCATE_STAGE


def drop_stage() -> Statement:
    """Return the statement dropping the staging table once a batch is done.

    ``ON COMMIT DROP`` alone would leave it in place until the end of a caller's transaction,
    where a second batch in the same transaction would find the name taken.
    """
    return _DROP_STAGE


def _keep_on_update(meta: TableMeta, conflict: tuple[str, ...]) -> set[str]:
    keep = set(conflict)
    keep.update(meta.key_names)
    for col in (meta.created_at, meta.updated_at):
        if col is not None:
            keep.add(col.name)
    return keep


@functools.lru_cache(maxsize=1024)
def _upsert(
    meta: TableMeta,
    table_name: str | None,
    names: tuple[str, ...],
    conflict: tuple[str, ...],
    update: tuple[str, ...] | None,
    do_nothing: bool,
) -> sql.Composed:
    columns = column_list([meta.by_name[n] for n in names])
    head = sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT ({}) ").format(
        meta.qualified(table_name),
        columns,
        columns,
        STAGE,
        _COMMA.join(map(sql.Identifier, conflict)),
    )
    if do_nothing:
        return sql.SQL("WITH ins AS ({}DO NOTHING RETURNING 1) SELECT count(*), 0 FROM ins").format(
            head
        )
    keep = _keep_on_update(meta, conflict)
    chosen = [n for n in names if n not in keep and (update is None or n in update)]
    assignments: list[sql.Composable] = [
        sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(n)) for n in chosen
    ]
    if meta.updated_at is not None:
        assignments.append(sql.SQL("{} = {}").format(sql.Identifier(meta.updated_at.name), _NOW))
    if not assignments:
        # DO UPDATE needs an assignment; rewriting the key with itself changes nothing.
        assignments.append(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(conflict[0])))
    return _counted(meta, head, _COMMA.join(assignments))


# A partitioned table refuses system columns in RETURNING ("cannot retrieve a system column
# in this context"), so xmax cannot tell inserted rows from updated ones there. Instead, the
# DO UPDATE's WHERE (true) counts the updates in a transaction-local setting: PostgreSQL
# evaluates it exactly once per row it updates, after locking the row. The statement's
# settings reset the count first, in the same transaction.
_UPDATED = "orso_pg.upsert_updated"
_COUNT_UPDATE = sql.SQL(
    " WHERE set_config({name}, (current_setting({name})::int8 + 1)::text, true) IS NOT NULL"
).format(name=sql.Literal(_UPDATED))
_RESET_UPDATED = Statement(
    sql.SQL("SELECT set_config({}, '0', true)").format(sql.Literal(_UPDATED))
)


def _counted(meta: TableMeta, head: sql.Composable, assignments: sql.Composable) -> sql.Composed:
    """Return the staged upsert that counts inserted and updated rows."""
    if meta.placement.partitioning is not None:
        return sql.SQL(
            "WITH ins AS ({}DO UPDATE SET {}{} RETURNING 1) "
            "SELECT n - u, u FROM (SELECT count(*) AS n, "
            "current_setting({})::int8 AS u FROM ins) AS c"
        ).format(head, assignments, _COUNT_UPDATE, sql.Literal(_UPDATED))
    # xmax is 0 on a freshly inserted row version and holds the updating transaction's id on a
    # row version written by DO UPDATE, which tells the two outcomes apart in one statement.
    return sql.SQL(
        "WITH ins AS ({}DO UPDATE SET {} RETURNING xmax = 0 AS inserted) "
        "SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM ins"
    ).format(head, assignments)


def _settings(meta: TableMeta, do_nothing: bool = False) -> tuple[Statement, ...]:
    if do_nothing or meta.placement.partitioning is None:
        return ()
    return (_RESET_UPDATED,)


def upsert_from_stage(
    meta: TableMeta,
    table_name: str | None,
    names: tuple[str, ...],
    conflict: tuple[str, ...],
    *,
    update: tuple[str, ...] | None = None,
    do_nothing: bool = False,
) -> Statement:
    """Return the staged upsert; it returns one row ``(inserted, updated)``.

    Every staged column outside the conflict key, the primary key and the timestamps is
    overwritten on conflict (only those in *update* when given); ``updated_at`` is set to
    ``now()``. With *do_nothing*, existing keys are left alone and ``updated`` is 0.
    """
    return Statement(
        _upsert(meta, table_name, names, conflict, update, do_nothing),
        settings=_settings(meta, do_nothing),
    )


@functools.lru_cache(maxsize=1024)
def _update(
    meta: TableMeta, table_name: str | None, names: tuple[str, ...], key: tuple[str, ...]
) -> sql.Composed:
    keep = _keep_on_update(meta, key)
    assignments: list[sql.Composable] = [
        sql.SQL("{0} = s.{0}").format(sql.Identifier(n)) for n in names if n not in keep
    ]
    if meta.updated_at is not None:
        assignments.append(sql.SQL("{} = {}").format(sql.Identifier(meta.updated_at.name), _NOW))
    if not assignments:
        assignments.append(sql.SQL("{0} = s.{0}").format(sql.Identifier(key[0])))
    match = sql.SQL(" AND ").join(sql.SQL("t.{0} = s.{0}").format(sql.Identifier(k)) for k in key)
    return sql.SQL("UPDATE {} AS t SET {} FROM {} AS s WHERE {}").format(
        meta.qualified(table_name), _COMMA.join(assignments), STAGE, match
    )


def update_from_stage(meta: TableMeta, table_name: str | None, names: tuple[str, ...]) -> Statement:
    """Return ``UPDATE <table> SET ... FROM <stage> WHERE <pk> = <staged pk>``.

    The staged columns *names* (the primary key among them) are written, except ``created_at``;
    ``updated_at`` is set to ``now()``. Its row count is the number of rows updated.
    """
    key = tuple(c.name for c in require_keys(meta))
    return Statement(_update(meta, table_name, names, key))


@functools.lru_cache(maxsize=1024)
def _key_array(meta: TableMeta) -> sql.Composed:
    # The array takes the key's own type: psycopg would send small ints as int4[], and
    # "bigint = ANY(int4[])" is a cross-type comparison PostgreSQL cannot hash, so a long
    # list would be scanned once per row.
    if meta.composite:
        return keys_in(meta)
    key = require_key(meta)
    if key.options.sql_type is not None:
        # A declared type may be narrower (varchar(3)): a cast would truncate keys into matches.
        return sql.SQL("{} = ANY(%s)").format(sql.Identifier(key.name))
    return sql.SQL("{} = ANY(%b::{}[])").format(sql.Identifier(key.name), key.type.ddl)


def _delete_any(meta: TableMeta, table_name: str | None) -> sql.Composed:
    return sql.SQL("DELETE FROM {} WHERE {}").format(meta.qualified(table_name), _key_array(meta))


def delete_any(meta: TableMeta, table_name: str | None, keys: Sequence[object]) -> Statement:
    """Return ``DELETE ... WHERE <pk> = ANY(%s)``: every key in one array parameter.

    A composite key's keys (tuples) go as one array per key column.
    """
    return Statement(_delete_any(meta, table_name), keys_params(meta, keys))


def key_condition(meta: TableMeta, keys: Sequence[object]) -> Statement:
    """Return ``<pk> = ANY(%s)`` as a condition, for cascading deletes."""
    return Statement(_key_array(meta), keys_params(meta, keys))


@functools.lru_cache(maxsize=1024)
def _allocate(meta: TableMeta) -> sql.Composed:
    key = require_key(meta)
    if key.identity:
        expr: sql.Composable = sql.SQL("nextval(pg_get_serial_sequence(%s, %s))")
    else:
        default = ddl.default_clause(key)
        if default is None:
            msg = f"{meta.cls.__name__}.{key.name} has no server default to allocate keys from"
            raise ValueError(msg)
        expr = default
    return sql.SQL("SELECT {} FROM generate_series(1, %s)").format(expr)


def allocate_keys(meta: TableMeta, table_name: str | None, count: int) -> Statement:
    """Return the statement drawing *count* fresh primary keys from the key's server default.

    Identity keys come from the column's sequence (in increasing order), UUID keys from
    ``gen_random_uuid()``: the same values an ``INSERT`` would have produced.
    """
    key = require_key(meta)
    query = _allocate(meta)
    if key.identity:
        return Statement(query, (meta.qualified(table_name).as_string(None), key.name, count))
    return Statement(query, (count,))


def upsert_assigning(
    meta: TableMeta,
    table_name: str | None,
    names: tuple[str, ...],
    conflict: tuple[str, ...],
    assignments: sql.Composable,
    params: tuple[object, ...],
) -> Statement:
    """Return the staged upsert whose ``DO UPDATE SET`` is *assignments* (with *params*).

    It returns one row ``(inserted, updated)``, as :func:`upsert_from_stage` does. The
    assignments come compiled from the caller's expressions, so this text is not cached.
    """
    columns = column_list([meta.by_name[n] for n in names])
    head = sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT ({}) ").format(
        meta.qualified(table_name),
        columns,
        columns,
        STAGE,
        _COMMA.join(map(sql.Identifier, conflict)),
    )
    return Statement(_counted(meta, head, assignments), params, settings=_settings(meta))


def update_assigning(
    meta: TableMeta,
    table_name: str | None,
    assignments: sql.Composable,
    params: tuple[object, ...],
) -> Statement:
    """Return ``UPDATE <table> AS t SET <assignments> FROM <stage> AS s WHERE t.pk = s.pk``.

    *assignments* come compiled from the caller's expressions (``t`` is the stored row, ``s``
    the staged one), so this text is not cached. Its row count is the number of rows updated.
    """
    key = sql.Identifier(require_key(meta).name)
    query = sql.SQL("UPDATE {} AS t SET {} FROM {} AS s WHERE t.{} = s.{}").format(
        meta.qualified(table_name), assignments, STAGE, key, key
    )
    return Statement(query, params)
