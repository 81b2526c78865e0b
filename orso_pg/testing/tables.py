"""Tables for tests: migrating a list of models, and empty tables that vanish after each use.

Owns :func:`migrate` and :func:`fresh_tables`, the two ways a test gets the tables of its
models. Statements run through a session and its :class:`~orso_pg._executor.Executor` like every
other operation. It must not import hypothesis or pytest (the pytest plugin builds on it, and
must load where hypothesis is not installed).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator, Sequence

from psycopg import sql

from orso_pg._compiler import Statement
from orso_pg._executor import Executor
from orso_pg._schema import TableMeta, table_of
from orso_pg.migrate import _ddl as ddl
from orso_pg.migrate._migrations import MigrationResult, Migrations, migration
from orso_pg.session._database import Database, Transaction

__all__ = ["fresh_tables", "migrate"]

_PREPEND_SEARCH_PATH = sql.SQL(
    "SELECT set_config('search_path', %s || ', ' || current_setting('search_path'), true)"
)


def migrate(db: Database | Transaction, *models: type) -> list[MigrationResult]:
    """Create the tables of *models* (in dependency order) that do not exist yet.

    The same as ``Migrations.init(db, [migration(m) for m in models])``: one transaction, one
    result per model.
    """
    return Migrations.init(db, [migration(model) for model in models])


class _Undo(Exception):  # noqa: N818 - a private signal, never seen outside this module
    """Raised at the end of a :func:`fresh_tables` block to roll its transaction back."""


@contextlib.contextmanager
def fresh_tables(db: Database | Transaction, *models: type) -> Iterator[Transaction]:
    """Yield a transaction holding empty tables of *models*; undo all of it afterwards.

    The tables are created in a schema of their own, put first on the transaction's
    ``search_path``, so they never collide with tables that already exist, nor with other
    tests or pytest-xdist workers running at the same time. Leaving the block, normally or by
    an exception, rolls everything back: schema, tables and rows. That makes it the isolation
    for one hypothesis example: cheap (a few milliseconds) and nothing left to clean up.

    Everything inside runs on one connection, in one transaction: use the yielded transaction
    as ``db``. Work that needs committed data or other connections (concurrency, ``LISTEN``)
    needs a database of its own instead (the ``orso_db`` fixture).

    Args:
        db: The database (or an open transaction, which gets a savepoint).
        models: The models whose tables to create, in dependency order (referenced first).
    """
    metas = [table_of(model) for model in models]
    schema = f"orso_scratch_{uuid.uuid4().hex[:16]}"
    with contextlib.suppress(_Undo), db.transaction() as tx:
        tx._write(lambda ex: _create(ex, schema, metas))
        yield tx
        raise _Undo


def _create(ex: Executor, schema: str, metas: Sequence[TableMeta]) -> None:
    ident = sql.Identifier(schema)
    ex.execute(Statement(sql.SQL("CREATE SCHEMA {}").format(ident)))
    ex.scalar(Statement(_PREPEND_SEARCH_PATH, (ident.as_string(None),)))
    # Straight DDL rather than Migrations.init: its advisory lock would be held until the
    # rollback and serialise every example of every worker sharing the server.
    for meta in metas:
        ex.execute(ddl.create_table(meta), table=meta.name)
        for stmt in ddl.create_indexes(meta):
            ex.execute(stmt, table=meta.name)
