"""The SQL of placement: partitioning clauses, partitions, tablespaces and Citus distribution.

Owns the text of ``PARTITION BY``, of the statements that make, attach, drop and move one
partition, of ``TABLESPACE`` clauses and of Citus' ``create_distributed_table`` /
``create_reference_table`` calls, all built from :class:`~orso_pg._partition.Placement`. It is
pure like :mod:`orso_pg.migrate._ddl`: no connection, every name through
:class:`psycopg.sql.Identifier`. Partition bounds are literals (``sql.Literal``), since DDL takes
no bound parameters; their values come from the partition arithmetic, never from a caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import sql

from orso_pg._compiler import Statement
from orso_pg._partition import Placement, RangePartitioning
from orso_pg._schema import TableMeta

__all__ = [
    "attach_partition",
    "create_default_partition",
    "create_like",
    "distribute",
    "drop_partition",
    "index_tablespace",
    "list_bound",
    "list_rows",
    "lock_exclusive",
    "move_index",
    "move_rows",
    "move_table",
    "partition_clause",
    "range_bound",
    "range_rows",
    "rows_exist",
    "set_tablespace",
    "table_suffix",
]


def partition_clause(placement: Placement) -> sql.Composable | None:
    """Return ``PARTITION BY RANGE ("ts")`` (or ``LIST``), or None for a plain table."""
    spec = placement.partitioning
    if spec is None:
        return None
    how = sql.SQL("RANGE") if isinstance(spec, RangePartitioning) else sql.SQL("LIST")
    return sql.SQL("PARTITION BY {} ({})").format(how, sql.Identifier(spec.column))


def table_suffix(meta: TableMeta) -> sql.Composable | None:
    """Return what follows ``CREATE TABLE t (...)``: the partitioning and the tablespace."""
    parts: list[sql.Composable] = []
    clause = partition_clause(meta.placement)
    if clause is not None:
        parts.append(clause)
    if meta.placement.tablespace is not None:
        parts.append(sql.SQL("TABLESPACE {}").format(sql.Identifier(meta.placement.tablespace)))
    return sql.SQL(" ").join(parts) if parts else None


def index_tablespace(meta: TableMeta) -> sql.Composable | None:
    """Return `` USING INDEX TABLESPACE x`` for key constraints, or None."""
    space = meta.placement.index_tablespace
    if space is None:
        return None
    return sql.SQL(" USING INDEX TABLESPACE {}").format(sql.Identifier(space))


def range_bound(lower: Any, upper: Any) -> sql.Composable:
    """Return ``FOR VALUES FROM (lower) TO (upper)``."""
    return sql.SQL("FOR VALUES FROM ({}) TO ({})").format(sql.Literal(lower), sql.Literal(upper))


def list_bound(values: Sequence[Any]) -> sql.Composable:
    """Return ``FOR VALUES IN (v, ...)``."""
    return sql.SQL("FOR VALUES IN ({})").format(sql.SQL(", ").join(map(sql.Literal, values)))


def range_rows(column: str, lower: Any, upper: Any) -> sql.Composable:
    """Return the condition ``column >= lower AND column < upper`` of a range's rows."""
    return sql.SQL("{c} >= {low} AND {c} < {high}").format(
        c=sql.Identifier(column), low=sql.Literal(lower), high=sql.Literal(upper)
    )


def list_rows(column: str, values: Sequence[Any]) -> sql.Composable:
    """Return the condition ``column IN (v, ...)`` of a list partition's rows."""
    return sql.SQL("{} IN ({})").format(
        sql.Identifier(column), sql.SQL(", ").join(map(sql.Literal, values))
    )


def lock_exclusive(table: sql.Identifier) -> Statement:
    """Return ``LOCK TABLE table IN ACCESS EXCLUSIVE MODE``."""
    return Statement(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(table))


def move_rows(
    source: sql.Identifier,
    target: sql.Identifier,
    columns: Sequence[str],
    condition: sql.Composable,
) -> Statement:
    """Return the statement moving the rows of *source* matching *condition* into *target*.

    One statement: ``WITH moved AS (DELETE FROM ONLY source WHERE ... RETURNING cols)
    INSERT INTO target (cols) SELECT cols FROM moved``. *columns* are the stored columns
    (generated ones are computed again by *target*).
    """
    cols = sql.SQL(", ").join(map(sql.Identifier, columns))
    return Statement(
        sql.SQL(
            "WITH moved AS (DELETE FROM ONLY {src} WHERE {cond} RETURNING {cols})"
            " INSERT INTO {dst} ({cols}) SELECT {cols} FROM moved"
        ).format(src=source, cond=condition, cols=cols, dst=target)
    )


def rows_exist(source: sql.Identifier, condition: sql.Composable) -> Statement:
    """Return ``SELECT EXISTS (SELECT 1 FROM ONLY source WHERE condition)``."""
    return Statement(
        sql.SQL("SELECT EXISTS (SELECT 1 FROM ONLY {} WHERE {})").format(source, condition)
    )


def create_like(parent: sql.Identifier, child: sql.Identifier, tablespace: str | None) -> Statement:
    """Return ``CREATE TABLE IF NOT EXISTS child (LIKE parent ...)``, placed in *tablespace*.

    The new table has the parent's columns, types, NOT NULL and CHECK constraints; attaching
    it adds the parent's indexes, keys and foreign keys. (``CREATE TABLE ... PARTITION OF``
    would take an ACCESS EXCLUSIVE lock on the parent until the loading transaction ends,
    which two loaders holding row locks on the parent turn into a deadlock; ``ATTACH
    PARTITION`` takes a SHARE UPDATE EXCLUSIVE lock, which writers and readers pass.)
    """
    query = sql.SQL(
        "CREATE TABLE IF NOT EXISTS {} (LIKE {} INCLUDING CONSTRAINTS INCLUDING GENERATED)"
    ).format(child, parent)
    if tablespace is not None:
        query = sql.SQL("{} TABLESPACE {}").format(query, sql.Identifier(tablespace))
    return Statement(query)


def attach_partition(
    parent: sql.Identifier, child: sql.Identifier, bound: sql.Composable
) -> Statement:
    """Return ``ALTER TABLE parent ATTACH PARTITION child <bound>``."""
    return Statement(sql.SQL("ALTER TABLE {} ATTACH PARTITION {} {}").format(parent, child, bound))


def create_default_partition(
    parent: sql.Composable, child: sql.Composable, tablespace: str | None
) -> Statement:
    """Return ``CREATE TABLE IF NOT EXISTS child PARTITION OF parent DEFAULT``."""
    query = sql.SQL("CREATE TABLE IF NOT EXISTS {} PARTITION OF {} DEFAULT").format(child, parent)
    if tablespace is not None:
        query = sql.SQL("{} TABLESPACE {}").format(query, sql.Identifier(tablespace))
    return Statement(query)


def drop_partition(child: sql.Identifier) -> Statement:
    """Return ``DROP TABLE child`` (a partition: it leaves its parent with it)."""
    return Statement(sql.SQL("DROP TABLE {}").format(child))


def move_table(table: sql.Composable, tablespace: str) -> Statement:
    """Return ``ALTER TABLE table SET TABLESPACE x`` (it rewrites a plain table's files)."""
    return Statement(
        sql.SQL("ALTER TABLE {} SET TABLESPACE {}").format(table, sql.Identifier(tablespace))
    )


def move_index(index: sql.Identifier, tablespace: str) -> Statement:
    """Return ``ALTER INDEX index SET TABLESPACE x``."""
    return Statement(
        sql.SQL("ALTER INDEX {} SET TABLESPACE {}").format(index, sql.Identifier(tablespace))
    )


def set_tablespace(table: sql.Composable, tablespace: str) -> Statement:
    """Return the statement placing *table* in *tablespace* (same text as :func:`move_table`)."""
    return move_table(table, tablespace)


def distribute(meta: TableMeta, table: str) -> Statement:
    """Return Citus' ``create_distributed_table`` or ``create_reference_table`` call.

    *table* is the table's name as Citus should resolve it (schema-qualified when known).

    >>> from orso_pg import Orso, table
    >>> @table("cx_trades", primary_key=("symbol", "id"), distribute_by="symbol")
    ... class CxTrade(Orso):
    ...     symbol: str
    ...     id: int
    >>> print(distribute(CxTrade.__orso_table__, "cx_trades").as_string())
    SELECT create_distributed_table('cx_trades', 'symbol')
    """
    placement = meta.placement
    if placement.reference:
        return Statement(sql.SQL("SELECT create_reference_table({})").format(sql.Literal(table)))
    assert placement.distribute_by is not None  # noqa: S101 - callers check distributed
    args: list[sql.Composable] = [sql.Literal(table), sql.Literal(placement.distribute_by)]
    if placement.colocate_with is not None:
        args.append(sql.SQL("colocate_with => {}").format(sql.Literal(placement.colocate_with)))
    return Statement(
        sql.SQL("SELECT create_distributed_table({})").format(sql.SQL(", ").join(args))
    )
