"""Dry runs: the steps a real migration runs outside its transaction, run inside one instead.

A dry run is the real migration (every check, conversion and row count) inside a transaction
that is rolled back at the end. The one kind of step that cannot run in a transaction is
``CREATE INDEX CONCURRENTLY``: a dry run builds that index with a plain ``CREATE INDEX`` in
its transaction, so that an index the real run could not build (a unique index over duplicate
values) fails the dry run with the same message. That plain build blocks writes to the table
while it runs, until the dry run rolls back.

This module owns that substitution only. It must not decide what to change nor open
transactions; it runs through an :class:`~orso_pg._executor.Executor`.
"""

from __future__ import annotations

from collections.abc import Sequence

from orso_pg._executor import Executor
from orso_pg.errors import ConnectionLostError, DatabaseError, LockTimeoutError, MigrationError
from orso_pg.migrate._steps import BuildIndex, MigrationStep

__all__ = ["build_in_transaction"]

# A failure of these classes happens while the index is built; a concurrent build has its
# (invalid) index in the catalog by then and drops it, which the real run's message says.
_BUILD_FAILURES = ("22", "23")


def build_in_transaction(ex: Executor, steps: Sequence[MigrationStep]) -> None:
    """Run *steps* (built concurrently by a real run) inside the dry run's transaction."""
    for step in steps:
        for action in step.actions:
            # The planner's only steps outside a transaction are concurrent index builds.
            assert isinstance(action, BuildIndex)  # noqa: S101
            assert action.plain is not None  # noqa: S101
            try:
                with ex.transaction():
                    ex.execute(action.plain, table=action.table)
            except (LockTimeoutError, ConnectionLostError):
                raise
            except DatabaseError as exc:
                cleanup = ""
                if (exc.sqlstate or "")[:2] in _BUILD_FAILURES:
                    cleanup = "; the invalid index it left behind was dropped"
                msg = f"{action.table}: could not build index {action.name}: {exc}{cleanup}"
                raise MigrationError(msg, table=action.table) from exc
