"""Copy and swap: rebuild a model's table as the model declares it, then take its name.

Owns ``Model.copy_and_swap``: what a migration refuses to do in place (partition a plain table,
change a partition key) done by copying. In one transaction: the live table is locked against
writers (readers go on), a new table is created from the model under a temporary name, the rows
are copied across in keyset-ordered chunks through the model's own batch path (so partitions
are made as the rows need them, and progress is reported), then the live table is renamed
``<table>_old`` and the new one, with its partitions, takes the table's names. It must not
build DDL beyond renames (``_ddl`` and the migrations do) nor touch a connection directly.
"""

from __future__ import annotations

from typing import Any

from psycopg import sql

from orso_pg import _partition
from orso_pg._compiler import Statement
from orso_pg._executor import Executor
from orso_pg._operations import check_session
from orso_pg._schema import table_of
from orso_pg.batch import _batch as batch
from orso_pg.batch._progress import ProgressOption
from orso_pg.errors import MigrationError
from orso_pg.migrate._introspect import read_table
from orso_pg.migrate._migrations import Migrations, migration
from orso_pg.query._filters import Sort
from orso_pg.session._database import Database, Transaction

__all__ = ["copy_and_swap"]

_CHILDREN = sql.SQL(
    "SELECT c.relname::text FROM pg_catalog.pg_inherits i"
    " JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid"
    " WHERE i.inhparent = %s::regclass ORDER BY 1"
)


def _rename(ex: Executor, schema: str, old: str, new: str, label: str) -> None:
    ex.execute(
        Statement(
            sql.SQL("ALTER TABLE {} RENAME TO {}").format(
                sql.Identifier(schema, old), sql.Identifier(new)
            )
        ),
        table=label,
    )


def copy_and_swap(
    cls: type,
    db: object,
    *,
    chunk_size: int = 50_000,
    progress: ProgressOption = None,
) -> str:
    """Rebuild the model's table as the model declares it; return the old table's new name.

    Args:
        cls: The model; its table must exist and hold the model's columns.
        db: A ``Database`` (the work runs in one transaction of its own) or a ``Transaction``.
        chunk_size: Rows read and written per chunk.
        progress: As for the batch operations (``True`` for a progress bar).

    Raises:
        MigrationError: the table does not exist, or ``<table>_old`` or ``<table>_swap`` does.
    """
    meta = table_of(cls)
    session = check_session(db)
    label = meta.name
    old, new = _partition.fit(f"{label}_old"), _partition.fit(f"{label}_swap")
    if isinstance(session, Database):
        with session.transaction() as tx:
            return _swap(cls, tx, label, old, new, chunk_size, progress)
    assert isinstance(session, Transaction)  # noqa: S101 - check_session allows these two
    return _swap(cls, session, label, old, new, chunk_size, progress)


def _swap(
    cls: Any,
    tx: Transaction,
    label: str,
    old: str,
    new: str,
    chunk_size: int,
    progress: ProgressOption,
) -> str:
    meta = table_of(cls)

    def check(ex: Executor) -> str:
        live = read_table(ex, label, meta.schema)
        if live is None:
            msg = f"{label}: there is no table to copy; Migrations.init creates it"
            raise MigrationError(msg, table=label)
        for taken in (old, new):
            if read_table(ex, taken, live.schema) is not None:
                msg = f"{label}: a table {taken} exists already; rename or drop it first"
                raise MigrationError(msg, table=label)
        # Writers wait until the swap commits; readers go on reading the old table.
        ex.execute(
            Statement(sql.SQL("LOCK TABLE {} IN SHARE MODE").format(meta.qualified())),
            table=label,
        )
        return live.schema

    schema = tx._atomic(check)
    Migrations.init(tx, [migration(cls, new)])
    sorts = [Sort.asc(name) for name in meta.key_names]
    pages = _pages(cls, tx, sorts, label, chunk_size)
    batch.insert(cls, pages, tx, new, chunk_size=chunk_size, progress=progress)

    def swap(ex: Executor) -> None:
        _identities(ex, cls, schema, new, label)
        children = ex.fetch_all(
            Statement(_CHILDREN, (sql.Identifier(schema, new).as_string(None),)), table=label
        )
        _rename(ex, schema, label, old, label)
        _rename(ex, schema, new, label, label)
        prefix = f"{new}_p"
        for (child,) in children:
            if child.startswith(prefix):
                suffix = child[len(prefix) :]
                _rename(ex, schema, child, _partition.partition_name(label, suffix), label)
            elif child == _partition.default_name(new):
                _rename(ex, schema, child, _partition.default_name(label), label)

    tx._atomic(swap)
    return old


def _identities(ex: Executor, cls: Any, schema: str, table: str, label: str) -> None:
    """Move each identity sequence of the new table past the largest key copied into it."""
    meta = table_of(cls)
    target = sql.Identifier(schema, table)
    for column in meta.columns:
        if not column.identity:
            continue
        query = sql.SQL(
            "SELECT setval(pg_get_serial_sequence(%s, %s), greatest(max({}), 1)) FROM {}"
        ).format(sql.Identifier(column.name), target)
        ex.execute(Statement(query, (target.as_string(None), column.name)), table=label)


def _pages(cls: Any, tx: Transaction, sorts: list[Sort], label: str, size: int) -> Any:
    """Yield every row of the live table in key order, one keyset page at a time."""
    cursor = None
    while True:
        page = cls.find_keyset(None, sorts, tx, after=cursor, limit=size, table_name=label)
        yield from page.data
        if not page.has_next():
            return
        cursor = page.next_cursor
