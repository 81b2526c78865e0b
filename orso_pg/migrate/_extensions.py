"""PostgreSQL extensions a model needs: ``vector`` for pgvector columns.

Owns checking, before a table with vector columns is planned, that the ``vector`` extension is
installed and visible, and installing it (``CREATE EXTENSION IF NOT EXISTS vector``) in the
migration's own transaction when the server offers it. A server that does not offer it gets a
:class:`~orso_pg.errors.MigrationError` saying how to install it. It must not plan table
changes.
"""

from __future__ import annotations

from typing import Final

from psycopg import sql

from orso_pg import _adapters, _vector
from orso_pg._compiler import Statement
from orso_pg._executor import Executor
from orso_pg._schema import TableMeta
from orso_pg.errors import DatabaseError, MigrationError
from orso_pg.migrate._steps import MigrationStep, Run

__all__ = ["ensure_vector", "needs_vector"]

_STATE: Final = Statement(
    sql.SQL(
        "SELECT (SELECT n.nspname::text FROM pg_catalog.pg_extension e"
        "  JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'vector'),"
        " EXISTS (SELECT 1 FROM pg_catalog.pg_available_extensions WHERE name = 'vector'),"
        " to_regtype('vector') IS NOT NULL"
    )
)
_CREATE: Final = Statement(sql.SQL("CREATE EXTENSION IF NOT EXISTS vector"))

_INSTALL: Final = (
    "install pgvector on the database server (e.g. the postgresql-NN-pgvector package on "
    "Debian/Ubuntu, pgvector from Homebrew, or build it from github.com/pgvector/pgvector), "
    "then run the migration again; the embedded PostgreSQL of orso_pg ships it"
)


def needs_vector(meta: TableMeta) -> bool:
    """Whether *meta* has a vector, halfvec or sparsevec column."""
    return any(_vector.kind_of(c.type) is not None for c in meta.columns)


def ensure_vector(ex: Executor, label: str) -> MigrationStep | None:
    """Make sure the ``vector`` extension is usable; return the step that installed it, if any.

    Raises:
        MigrationError: the server does not offer the extension, the migration's role may not
            create it, or it lives in a schema this connection's ``search_path`` leaves out.
    """
    row = ex.fetch_one(_STATE, table=label)
    assert row is not None  # noqa: S101 - a SELECT without FROM returns one row
    installed, available, visible = row
    if installed is not None:
        if not visible:
            msg = (
                f"{label}: the vector extension is installed in schema {installed!r}, which "
                "is not on this connection's search_path; add it to the search_path (or move "
                f"the extension: ALTER EXTENSION vector SET SCHEMA ...)"
            )
            raise MigrationError(msg, table=label)
        return None
    if not available:
        msg = f"{label}: the table has vector columns but this server has no vector extension; "
        raise MigrationError(msg + _INSTALL, table=label)
    try:
        ex.execute(_CREATE, table=label)
    except DatabaseError as exc:
        msg = (
            f"{label}: CREATE EXTENSION vector failed ({exc}); a superuser (or the database "
            "owner, pgvector being a trusted extension) must run it once"
        )
        raise MigrationError(msg, table=label) from exc
    _adapters.extension_created()
    return MigrationStep(
        "create extension vector (pgvector)", _CREATE.as_string(), actions=(Run(_CREATE),)
    )
