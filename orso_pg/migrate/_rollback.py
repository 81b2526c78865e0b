"""Rollbacks: which recorded schema a table goes back to, as a model the planner understands.

Owns the choice of the history record a rollback returns to (the schema before the table's last
migration with steps, or the schema after a given record), the renames made since (so a renamed
column is renamed back rather than dropped and added), and the refusals: a table the last
migration created (going back would drop it), rows written before schemas were recorded.

It must not plan nor apply anything: :meth:`~orso_pg.Migrations.rollback` migrates the table to
the model returned here, under the same rules as any migration. It reads through an
:class:`~orso_pg._executor.Executor` and never touches a connection itself.
"""

from __future__ import annotations

from typing import Any

import attrs

from orso_pg._executor import Executor
from orso_pg._schema import TableMeta
from orso_pg.errors import MigrationError
from orso_pg.migrate import _history as history
from orso_pg.migrate._snapshot import meta_from_snapshot, renames_of

__all__ = ["RollbackTarget", "rollback_target"]


@attrs.frozen
class RollbackTarget:
    """The schema a rollback returns to.

    Attributes:
        meta: The recorded schema as a model.
        record_id: The history record it was read from.
        what: In words: ``"the schema before record 12"`` or ``"the schema after record 9"``.
        notes: What of the recorded schema cannot be restored (a default expression).
    """

    meta: TableMeta
    record_id: int
    what: str
    notes: tuple[str, ...] = ()


def rollback_target(ex: Executor, table: str | None, to: int | None) -> RollbackTarget:
    """Return the schema *table* goes back to: before its last migration, or after record *to*.

    Raises:
        MigrationError: nothing is recorded to go back to, the record is of another table,
            the last migration created the table, or the record predates recorded schemas.
    """
    if to is not None:
        found = history.entries(ex, entry_id=to)
        if not found or (table is not None and found[0].table != table):
            of = f" of table {table}" if table is not None else ""
            msg = f"there is no history record {to}{of} in {history.HISTORY_TABLE}"
            raise MigrationError(msg, table=table, value=to)
        chosen = found[0]
        recorded = chosen.schema_after
        what = f"the schema after record {chosen.id}"
        since = [r for r in _of_table(ex, chosen) if r.id > chosen.id]
    else:
        assert table is not None  # noqa: S101 - the caller names a table or a record
        rows = [r for r in history.entries(ex, table) if r.steps]
        if not rows:
            msg = f"{table}: no migration of this table is recorded in {history.HISTORY_TABLE}"
            raise MigrationError(msg, table=table)
        chosen = rows[-1]
        if chosen.schema_before is None and chosen.action == "table_created":
            msg = (
                f"{table}: its last migration (record {chosen.id}) created it; going back "
                "would drop the table and its rows, which a rollback never does: drop it "
                "yourself if that is what you want"
            )
            raise MigrationError(msg, table=table)
        recorded = chosen.schema_before
        what = f"the schema before record {chosen.id}"
        since = [r for r in _of_table(ex, chosen) if r.id >= chosen.id]
    if recorded is None:
        msg = (
            f"{chosen.table}: record {chosen.id} was written by an orso_pg version that did not "
            "record table schemas; there is no schema to go back to"
        )
        raise MigrationError(msg, table=chosen.table)
    current = _names_now(recorded, since)
    meta, notes = meta_from_snapshot(
        recorded, record_id=chosen.id, current=current, label=f"rollback to {what}"
    )
    return RollbackTarget(meta, chosen.id, what, tuple(notes))


def _of_table(ex: Executor, chosen: history.MigrationRecord) -> list[history.MigrationRecord]:
    return [r for r in history.entries(ex, chosen.table) if r.schema == chosen.schema]


def _names_now(recorded: dict[str, Any], since: list[history.MigrationRecord]) -> dict[str, str]:
    """Return ``{recorded column name: its name now}`` after the renames made *since*."""
    names = {str(c["name"]): str(c["name"]) for c in recorded["columns"]}
    for row in since:
        renamed = renames_of(row.schema_after, row.steps)
        for old, now in names.items():
            if now in renamed:
                names[old] = renamed[now]
    return names
