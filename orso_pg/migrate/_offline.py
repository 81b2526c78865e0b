"""Offline plans: a migration planned against a recorded schema rather than the live tables.

Owns the recorded-schema document (``orso-pg schema`` writes it: each table's schema as the
history records it, plus the model schema its latest history record says orso_pg owns there),
reading it back from that document or from ``orso-pg history --json``, and planning against
it: the recorded tables are recreated in a scratch database, with their history, and
:meth:`~orso_pg.Migrations.plan` runs there, so the SQL is the planner's own, with
PostgreSQL's spelling of every type.

It must not choose nor start the scratch server (the command line does) and must never be
pointed at a database that matters: it creates tables. It reads and writes through an
:class:`~orso_pg._executor.Executor` and never touches a connection itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from psycopg import sql

from orso_pg._compiler import Statement
from orso_pg._executor import Executor
from orso_pg._operations import check_session
from orso_pg.errors import DatabaseError, MigrationError, ValidationError
from orso_pg.migrate import _history as history
from orso_pg.migrate._introspect import read_table
from orso_pg.migrate._migrations import MigrationEntry, Migrations, _compressed, _schema_of
from orso_pg.migrate._snapshot import FORMAT, meta_from_snapshot, snapshot

__all__ = ["DOCUMENT_FORMAT", "create_schemas", "prepare", "record_schema", "recorded_tables"]

#: The version of the document ``orso-pg schema`` prints.
DOCUMENT_FORMAT: Final = 1
_OWNED: Final = "owned"


def record_schema(db: object, entries: Sequence[MigrationEntry]) -> list[dict[str, Any]]:
    """Return the recorded schema of each existing table of *entries* (missing ones are left out).

    Each is what the history records after a migration (``schema_after``), plus ``owned``:
    the model schema of the table's latest history record (what orso_pg owns there), or None.
    """
    session = check_session(db)

    def work(ex: Executor) -> list[dict[str, Any]]:
        found = []
        for entry in entries:
            live = read_table(ex, entry.table, _schema_of(entry))
            if live is None:
                continue
            previous = history.latest(ex, live.schema, live.name)
            owned = None if previous is None else previous.target
            recorded = snapshot(live, compressed=_compressed(owned or {}))
            recorded[_OWNED] = owned
            found.append(recorded)
        return found

    return session._write(work)


def recorded_tables(
    document: object, *, source: str = "the recorded schema"
) -> list[dict[str, Any]]:
    """Return the table schemas in *document* (parsed JSON).

    Accepted: what ``orso-pg schema`` prints (``{"format": 1, "tables": [...]}``), one table's
    schema (a history record's ``schema_after``), a list of them, or what
    ``orso-pg history --json`` prints (each table's latest ``schema_after`` is taken).

    Raises:
        ValidationError: *document* is none of these; the message names *source*.
    """
    tables: list[Any]
    if isinstance(document, Mapping) and "tables" in document:
        if document.get("format") != DOCUMENT_FORMAT:
            msg = (
                f"{source}: unknown format {document.get('format')!r} (expected {DOCUMENT_FORMAT})"
            )
            raise ValidationError(msg, value=document.get("format"))
        tables = list(document["tables"])
    elif isinstance(document, Mapping):
        tables = [document]
    elif isinstance(document, list) and all(
        isinstance(item, Mapping) and "schema_after" in item for item in document
    ):
        latest: dict[tuple[str, str], Any] = {}
        for item in document:
            if item["schema_after"] is not None:
                latest[(str(item["schema"]), str(item["table"]))] = item["schema_after"]
        tables = list(latest.values())
    elif isinstance(document, list):
        tables = list(document)
    else:
        msg = f"{source}: expected a JSON object or array, not {type(document).__name__}"
        raise ValidationError(msg, value=None)
    for table in tables:
        if not (
            isinstance(table, Mapping)
            and table.get("format") == FORMAT
            and {"schema", "table", "columns", "primary_key"} <= table.keys()
        ):
            msg = (
                f"{source}: not a recorded table schema (from orso-pg schema, or a "
                "history record's schema_after)"
            )
            raise ValidationError(msg, value=None)
    return [dict(table) for table in tables]


def create_schemas(scratch: object, tables: Sequence[Mapping[str, Any]]) -> None:
    """Create the schemas of the recorded *tables* in the *scratch* database."""

    def work(ex: Executor) -> None:
        for name in sorted({str(t["schema"]) for t in tables}):
            create = sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(name))
            ex.execute(Statement(create))

    check_session(scratch)._write(work)


def prepare(scratch: object, tables: Sequence[Mapping[str, Any]]) -> list[str]:
    """Recreate the recorded *tables* in the *scratch* database, with their history.

    The tables are created empty by a migration (so the history records them, in the
    connection's current schema: open *scratch* with the schema the plan will use, after
    :func:`create_schemas`), and the model schema each recorded as owned is put back in its
    history. Return what of the recorded schemas could not be recreated.

    Raises:
        MigrationError: a recorded table cannot be recreated (a type the scratch server
            lacks, a reference to a table the document does not hold).
    """
    session = check_session(scratch)
    notes: list[str] = []
    entries = []
    for number, table in enumerate(tables, 1):
        meta, lost = meta_from_snapshot(table, record_id=number, current={})
        entries.append(MigrationEntry(meta))
        notes.extend(f"{meta.name}: {note}" for note in lost)

    try:
        Migrations.init(session, entries)
    except (MigrationError, DatabaseError) as exc:
        msg = f"cannot recreate the recorded schema in the scratch server: {exc}"
        raise MigrationError(msg, table=exc.table, column=exc.column) from exc

    def owned(ex: Executor) -> None:
        for table in tables:
            target = table.get(_OWNED)
            if target is not None:
                history.set_latest_target(ex, str(table["schema"]), str(table["table"]), target)

    session._write(owned)
    return notes
