"""Migration steps: what one change to a table is, and what running it takes.

Owns :class:`MigrationStep` (a description in plain words, the SQL text, whether the table is
rewritten, whether it runs inside the migration's transaction) and the actions a step is made
of: a statement, a checked type change, a compressed-array conversion, a concurrent index
build. These are plain values: ``_planner`` makes them and ``_apply`` runs
them; this module must not do either.
"""

from __future__ import annotations

import attrs
from psycopg import sql

from orso_pg._compiler import Statement
from orso_pg._schema import Column

__all__ = ["Action", "BuildIndex", "CastCheck", "Convert", "MigrationStep", "Run"]


@attrs.frozen
class Run:
    """Run one statement."""

    stmt: Statement


@attrs.frozen
class CastCheck:
    """Change a column's type with a cast, refusing when a value would fail or change.

    Attributes:
        table: The table, for messages.
        column: The column (its name after any rename).
        source: The current type, as PostgreSQL spells it.
        target: The new type, as PostgreSQL spells it.
        lossless: A query returning a value that the cast would change (as text, before and
            after), or None when that check does not apply or data loss is allowed.
        scan: ``SELECT <column> AS v FROM <table> WHERE <column> IS NOT NULL``.
        test: The cast applied to ``$1``, to find a value that fails it.
        alter: The ``ALTER TABLE ... TYPE ... USING`` statement.
    """

    table: str
    column: str
    source: str
    target: str
    lossless: Statement | None
    scan: sql.Composable
    test: sql.Composable
    alter: Statement


@attrs.frozen
class Convert:
    """Re-encode a column between a native array and a compressed codec frame, in batches.

    The converted values are staged by ``ctid`` in a temporary table, then the column's type is
    changed in place with a ``USING`` that looks each row up there, so the column keeps its
    position, comment, privileges and indexes. The table must be locked against writers.

    Attributes:
        table: The table, for messages.
        column: The model column (its target type converts the values).
        source_dtype: The numpy dtype of the current array elements (None when decoding).
        select: Streams ``ctid::text`` and the value of every non-NULL row.
        before: The statements run before the rows are staged (creating the stage).
        copy: The ``COPY ... FROM STDIN`` statement filling the stage.
        after: Indexing the stage, the lookup function, the ``ALTER``, and the cleanup.
    """

    table: str
    column: Column
    source_dtype: str | None
    select: Statement
    before: tuple[Statement, ...]
    copy: sql.Composable
    after: tuple[Statement, ...]


@attrs.frozen
class BuildIndex:
    """Build an index with ``CREATE INDEX CONCURRENTLY``, outside any transaction.

    ``plain`` is the same index built by a plain ``CREATE INDEX``, which a dry run runs inside
    its transaction instead (``CONCURRENTLY`` cannot run in one).
    """

    table: str
    schema: str
    name: str
    stmt: Statement
    plain: Statement | None = None


Action = Run | CastCheck | Convert | BuildIndex


@attrs.frozen
class MigrationStep:
    """One planned (or applied) change to one table.

    Two steps are equal when their description, SQL and flags are: what a dry run shows is
    what a migration then runs.

    Attributes:
        description: The change in plain words.
        sql: The statements it runs, separated by ``;`` and newlines.
        rewrites: Whether PostgreSQL rewrites the whole table (time and disk in proportion to
            its size, under an exclusive lock).
        transactional: False for ``CREATE INDEX CONCURRENTLY``, which runs after the
            migration's transaction commits.
    """

    description: str
    sql: str
    rewrites: bool = False
    transactional: bool = True
    actions: tuple[Action, ...] = attrs.field(default=(), eq=False, repr=False)
