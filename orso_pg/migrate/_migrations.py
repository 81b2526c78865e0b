"""Migrations: bring live tables in line with their models, losing nothing.

Owns ``Migrations.init``, ``Migrations.plan`` (the plan alone), ``Migrations.dry_run`` (the
migration in a transaction that is rolled back), ``Migrations.rollback`` (to a schema the
history recorded) and ``Migrations.history``, the ``migration()`` entries and their results,
and the safety around each table's migration: an advisory lock so two processes never migrate
at once (polled, outside any transaction), one transaction per table (all of its steps or
none), ``lock_timeout`` with retries so readers never queue behind a stalled ``ALTER``, an
exclusive lock on the table while its rows are converted, a row count checked before and after,
the history record (with the table's schema before and after) written in the same transaction,
and concurrent index builds after it.

It must not build DDL text itself (``_ddl`` and ``_planner`` do), read the
catalog itself (``_introspect``) nor touch connections directly: work reaches a
connection through the session's executor.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import random
import time
import typing
from collections.abc import Callable, Sequence
from typing import Any, Final, TypeVar

import attrs
from psycopg import sql

from orso_pg import _adapters
from orso_pg._compiler import Statement
from orso_pg._executor import Executor
from orso_pg._operations import check_session, check_table_name
from orso_pg._schema import TableMeta, table_of
from orso_pg.errors import (
    ConnectionLostError,
    LockTimeoutError,
    MigrationError,
    OrsoError,
    ValidationError,
)
from orso_pg.migrate import _ddl as ddl
from orso_pg.migrate import _extensions as extensions
from orso_pg.migrate import _history as history
from orso_pg.migrate import _partitions as placing
from orso_pg.migrate._apply import Progress, apply_step
from orso_pg.migrate._dryrun import build_in_transaction
from orso_pg.migrate._history import MigrationRecord
from orso_pg.migrate._introspect import LiveTable, read_table, read_table_oid
from orso_pg.migrate._planner import PlanOptions, describe, plan_create, plan_table
from orso_pg.migrate._rollback import rollback_target
from orso_pg.migrate._snapshot import renames_of, snapshot
from orso_pg.migrate._steps import BuildIndex, MigrationStep
from orso_pg.session._database import Transaction

__all__ = [
    "MigrationAction",
    "MigrationEntry",
    "MigrationPlan",
    "MigrationResult",
    "MigrationStep",
    "Migrations",
    "migration",
]


class MigrationAction(enum.Enum):
    """What a migration did (or, in a plan, would do) to one table."""

    TABLE_CREATED = "table_created"
    SCHEMA_MATCHED = "schema_matched"
    DATA_MIGRATED = "data_migrated"


@attrs.frozen
class MigrationEntry:
    """One model to migrate, optionally into a table of another name."""

    meta: TableMeta
    table_name: str | None = None

    @property
    def table(self) -> str:
        """The table this entry migrates."""
        return self.table_name if self.table_name is not None else self.meta.name


def migration(model: type, table_name: str | None = None) -> MigrationEntry:
    """Return a migration entry for *model* (orso's ``migration!(T)`` / ``migration!(T, name)``)."""
    meta = table_of(model)
    return MigrationEntry(meta, check_table_name(meta, table_name))


@attrs.frozen
class MigrationResult:
    """The outcome of migrating one table.

    Attributes:
        action: What happened.
        backup_table: The table holding the data of dropped columns, if any.
        rows_migrated: The rows of an altered table (all of them are kept), else None.
        schema_changes: The changes made, then what was kept as it is, in plain words.
        table: The table migrated.
        steps: The steps that ran, equal to the ones :meth:`Migrations.plan` showed.
        notes: What differs from the model but was kept (columns that left it, for example).
    """

    action: MigrationAction
    backup_table: str | None = None
    rows_migrated: int | None = None
    schema_changes: tuple[str, ...] = ()
    table: str = ""
    steps: tuple[MigrationStep, ...] = ()
    notes: tuple[str, ...] = ()


@attrs.frozen
class MigrationPlan:
    """What migrating one table would do (the dry run).

    Attributes:
        table: The table.
        action: The action the migration would report.
        steps: The steps, each with its SQL and whether it rewrites the table.
        notes: What differs from the model but would be kept.
        backup_table: The table that would receive the data of dropped columns.
    """

    table: str
    action: MigrationAction
    steps: tuple[MigrationStep, ...] = ()
    notes: tuple[str, ...] = ()
    backup_table: str | None = None

    @property
    def rewrites(self) -> bool:
        """Whether any step rewrites the whole table."""
        return any(step.rewrites for step in self.steps)


# One lock id for every orso_pg migration: two migrators of the same database serialise.
_LOCK_ID: Final = 0x6F72736F5F7067  # "orso_pg"
_TRY_LOCK = Statement(sql.SQL("SELECT pg_try_advisory_lock(%s)"), (_LOCK_ID,))
_LOCK_POLL_MAX: Final = 0.25
_UNLOCK = Statement(sql.SQL("SELECT pg_advisory_unlock(%s)"), (_LOCK_ID,))
_LOCK_TIMEOUT = sql.SQL("SELECT set_config('lock_timeout', %s, %s)")  # value, local
_TARGET = sql.Identifier("pg_temp", "orso_pg_target")
_TARGET_OID = Statement(sql.SQL("SELECT 'pg_temp.orso_pg_target'::regclass::oid::int8"))

_T = TypeVar("_T")

logger = logging.getLogger("orso_pg")


class Migrations:
    """Entry point of migrations (orso's ``Migrations::init``)."""

    @staticmethod
    def init(
        db: object,
        entries: Sequence[MigrationEntry],
        *,
        drop_columns: bool = False,
        allow_data_loss: bool = False,
        concurrent_indexes: bool = False,
        lock_timeout: float = 5.0,
        lock_retries: int = 3,
        progress: Progress | None = None,
    ) -> list[MigrationResult]:
        """Bring every table of *entries* in line with its model; return one result per entry.

        A missing table is created with its indexes. An existing one is changed in place, one
        transaction per table: columns are renamed (``column(renamed_from=...)``), added (rows
        get the model's default), retyped (refused, naming a value, when one would change),
        compressed or decompressed (every row re-encoded), made NOT NULL or nullable, and unique
        keys, indexes, foreign keys and defaults follow the model. Indexes, foreign keys in and
        out, defaults, grants, comments and triggers survive. Columns that left the model are
        kept unless *drop_columns*. Referenced tables are migrated before the tables that point
        at them.

        Args:
            db: A Database, or a Transaction (then every table's work is a savepoint of it).
            entries: ``migration(Model)`` or ``migration(Model, "table")`` entries.
            drop_columns: Drop columns that left the model, after copying their data (and the
                primary key) into a backup table named in the result.
            allow_data_loss: Let type changes through even when values change (rounding,
                truncation, reformatting).
            concurrent_indexes: Build new indexes of existing tables with ``CREATE INDEX
                CONCURRENTLY`` after the table's transaction (needs a Database).
            lock_timeout: Seconds a statement may wait for a table lock before the table's
                transaction is rolled back and retried.
            lock_retries: Retries after a lock timeout, with a growing pause between them.
            progress: Called as ``progress(label, done, total)`` while rows are converted.

        Raises:
            MigrationError: a table cannot be migrated without losing data, or a step failed;
                that table is as it was (tables before it in the list stay migrated).
            ValidationError: an argument is invalid.
        """
        options = PlanOptions(drop_columns, allow_data_loss, concurrent_indexes)
        return _migrate(db, entries, options, lock_timeout, lock_retries, progress, dry=False)

    @staticmethod
    def dry_run(
        db: object,
        entries: Sequence[MigrationEntry],
        *,
        drop_columns: bool = False,
        allow_data_loss: bool = False,
        concurrent_indexes: bool = False,
        lock_timeout: float = 5.0,
        lock_retries: int = 3,
        progress: Progress | None = None,
    ) -> list[MigrationResult]:
        """Run :meth:`init` for real inside a transaction, then roll everything back.

        Every step runs, value checks, conversions and row counts included, so the results
        are what :meth:`init` would return, and the error is the one it would raise. It takes
        the same locks as :meth:`init` (the migration's advisory lock, then each changed
        table's ``ACCESS EXCLUSIVE`` lock) and holds the table locks until the end, when the
        transaction rolls back. Indexes :meth:`init` would build ``CONCURRENTLY`` after a
        table's transaction are built with a plain ``CREATE INDEX`` inside it (which blocks
        writes to the table until the rollback).

        Args:
            db: A Database or a Transaction.
            entries: ``migration(Model)`` or ``migration(Model, "table")`` entries.
            drop_columns: As for :meth:`init`.
            allow_data_loss: As for :meth:`init`.
            concurrent_indexes: As for :meth:`init`.
            lock_timeout: As for :meth:`init`.
            lock_retries: As for :meth:`init`.
            progress: As for :meth:`init`.

        Raises:
            MigrationError: the real migration would fail; the message is the one it raises.
            ValidationError: an argument is invalid.
        """
        options = PlanOptions(drop_columns, allow_data_loss, concurrent_indexes)
        return _migrate(db, entries, options, lock_timeout, lock_retries, progress, dry=True)

    @staticmethod
    def rollback(
        db: object,
        table: str | None = None,
        *,
        to: int | None = None,
        dry_run: bool = False,
        drop_columns: bool = False,
        allow_data_loss: bool = False,
        concurrent_indexes: bool = False,
        lock_timeout: float = 5.0,
        lock_retries: int = 3,
        progress: Progress | None = None,
    ) -> MigrationResult:
        """Bring *table* back to the schema before its last migration, or after record *to*.

        The schemas come from ``orso_pg_migrations`` (see :meth:`history`). The table is
        migrated to the recorded schema under the rules of :meth:`init`: columns renamed since
        are renamed back, type changes are value-checked (refused, naming a value, when one
        would change), compressed columns are re-encoded, indexes and keys orso_pg added are
        dropped. A column added since is kept (named in the result's notes) unless
        *drop_columns*, when its data is first copied into a backup table. The rollback is
        recorded in the history like any migration, so rolling back again undoes it.

        Args:
            db: A Database or a Transaction.
            table: The table; optional when *to* is given.
            to: A history record id: go to the schema that record left.
            dry_run: Run it in a transaction that is rolled back (see :meth:`dry_run`).
            drop_columns: As for :meth:`init`.
            allow_data_loss: As for :meth:`init`.
            concurrent_indexes: As for :meth:`init` (indexes the rollback brings back).
            lock_timeout: As for :meth:`init`.
            lock_retries: As for :meth:`init`.
            progress: As for :meth:`init`.

        Raises:
            MigrationError: there is nothing recorded to go back to (or the last migration
                created the table), or the rollback would lose data; nothing was changed.
            ValidationError: neither a table nor a record was given.
        """
        session = check_session(db)
        if table is None and to is None:
            msg = "rollback needs a table or a history record id (to=)"
            raise ValidationError(msg, value=None)
        _check_locks(lock_timeout, lock_retries)
        _check_concurrent(session, concurrent_indexes=concurrent_indexes and not dry_run)
        options = PlanOptions(drop_columns, allow_data_loss, concurrent_indexes)
        runner = _Runner(options, lock_timeout, lock_retries, progress, dry=dry_run)

        def work(ex: Executor) -> MigrationResult:
            found: list[Any] = []

            def entries() -> list[MigrationEntry]:
                # Read under the migration lock: no other migration writes history meanwhile.
                found.append(rollback_target(ex, table, to))
                return [MigrationEntry(found[0].meta)]

            (result,) = _locked(ex, entries, runner)
            notes = (f"back to {found[0].what}", *result.notes, *found[0].notes)
            return attrs.evolve(result, notes=notes)

        return session._write(work)

    @staticmethod
    def history(db: object, table: str | None = None) -> list[MigrationRecord]:
        """Return the recorded migrations (of *table*, or of every table), oldest first."""
        session = check_session(db)
        return session._write(lambda ex: history.entries(ex, table))

    @staticmethod
    def plan(
        db: object,
        entries: Sequence[MigrationEntry],
        *,
        drop_columns: bool = False,
        allow_data_loss: bool = False,
        concurrent_indexes: bool = False,
    ) -> list[MigrationPlan]:
        """Return what :meth:`init` would do with the same arguments, without doing it.

        The plans are made in a transaction that is rolled back, without the migration lock,
        so nothing is created, not even the history table. Each :class:`MigrationStep` has its
        description, its SQL and whether it rewrites the table.

        Args:
            db: A Database or a Transaction.
            entries: ``migration(Model)`` or ``migration(Model, "table")`` entries.
            drop_columns: As for :meth:`init`.
            allow_data_loss: As for :meth:`init`.
            concurrent_indexes: As for :meth:`init`.

        Raises:
            MigrationError: the migration would be refused (the same error :meth:`init`
                raises before running anything).
        """
        session = check_session(db)
        options = PlanOptions(drop_columns, allow_data_loss, concurrent_indexes)
        checked = _checked(entries)

        def work(ex: Executor) -> list[MigrationPlan]:
            with ex.transaction(force_rollback=True):
                return _in_order(checked, lambda entry: _plan(ex, entry, options).plan)

        return session._write(work)


def _migrate(
    db: object,
    entries: Sequence[MigrationEntry],
    options: PlanOptions,
    lock_timeout: float,
    lock_retries: int,
    progress: Progress | None,
    *,
    dry: bool,
) -> list[MigrationResult]:
    """Run (or, *dry*, run and roll back) the migration of *entries*; the body of both."""
    session = check_session(db)
    if not dry:  # a dry run builds concurrent indexes plainly, inside its transaction
        _check_concurrent(session, concurrent_indexes=options.concurrent_indexes)
    _check_locks(lock_timeout, lock_retries)
    checked = _checked(entries)
    runner = _Runner(options, lock_timeout, lock_retries, progress, dry=dry)
    return session._write(lambda ex: _locked(ex, checked, runner))


def _check_concurrent(session: object, *, concurrent_indexes: bool) -> None:
    if concurrent_indexes and isinstance(session, Transaction):
        msg = "concurrent_indexes=True cannot run inside a transaction; pass the Database"
        raise ValidationError(msg, value=session)


def _check_locks(lock_timeout: float, lock_retries: int) -> None:
    if lock_timeout <= 0 or lock_retries < 0:
        msg = "lock_timeout must be positive and lock_retries zero or more"
        raise ValidationError(msg, value=(lock_timeout, lock_retries))


def _lock(ex: Executor) -> None:
    """Take the migration lock, for the session, outside any transaction.

    It is polled rather than waited for: a backend waiting in ``pg_advisory_lock`` holds a
    snapshot, which a ``CREATE INDEX CONCURRENTLY`` of the migrator holding the lock would
    wait for, and each would wait for the other.
    """
    pause = 0.005
    while not ex.scalar(_TRY_LOCK):
        if pause == 0.005:  # noqa: PLR2004 - the first wait
            logger.info("another migration holds the migration lock; waiting for it")
        time.sleep(pause)
        pause = min(_LOCK_POLL_MAX, pause * 2)


def _locked(
    ex: Executor,
    entries: Sequence[MigrationEntry] | Callable[[], Sequence[MigrationEntry]],
    runner: _Runner,
) -> list[MigrationResult]:
    """Migrate *entries* under the migration lock (all in one rolled-back transaction if dry).

    *entries* may be a function, called once the lock is held.
    """
    _lock(ex)
    try:
        chosen = entries() if callable(entries) else entries
        if not runner.dry:
            return _in_order(chosen, lambda entry: runner.migrate(ex, entry))
        with ex.transaction(force_rollback=True):
            return _in_order(chosen, lambda entry: runner.migrate(ex, entry))
    finally:
        with contextlib.suppress(OrsoError):
            ex.execute(_UNLOCK)


def _checked(entries: Sequence[object]) -> Sequence[MigrationEntry]:
    for entry in entries:
        if not isinstance(entry, MigrationEntry):
            msg = f"expected migration(Model) entries, got {type(entry).__name__}"
            raise ValidationError(msg, value=entry)
    return typing.cast("Sequence[MigrationEntry]", entries)


def _in_order(entries: Sequence[MigrationEntry], do: Callable[[MigrationEntry], _T]) -> list[_T]:
    """Call *do* on each entry in dependency order; return its answers in the entries' order."""
    done = {i: do(entries[i]) for i in _dependency_order(entries)}
    return [done[i] for i in range(len(entries))]


def _dependency_order(entries: Sequence[MigrationEntry]) -> list[int]:
    """Return entry indexes with every referenced table's entry before its referrers."""
    by_table = {entry.table: i for i, entry in enumerate(entries)}
    order: list[int] = []
    seen: set[int] = set()

    def visit(i: int, path: frozenset[int]) -> None:
        if i in seen or i in path:
            return
        meta = entries[i].meta
        parents = [c.ref_table or "" for c in meta.columns]
        parents.extend(fk.ref_table for fk in meta.foreign_keys)
        for name in parents:
            parent = by_table.get(name)
            if parent is not None and parent != i:
                visit(parent, path | {i})
        seen.add(i)
        order.append(i)

    for i in range(len(entries)):
        visit(i, frozenset())
    return order


# --- planning ---------------------------------------------------------------------------------


@attrs.define
class _Probe:
    """Answers the planner's questions about the live table."""

    ex: Executor
    ident: sql.Composable
    schema: str | None
    label: str

    def has_rows(self) -> bool:
        query = sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(self.ident)
        return bool(self.ex.scalar(Statement(query), table=self.label))

    def null_count(self, column: str) -> int:
        query = sql.SQL("SELECT count(*) FROM {} WHERE {} IS NULL").format(
            self.ident, sql.Identifier(column)
        )
        return int(self.ex.scalar(Statement(query), table=self.label))

    def row_count(self) -> int:
        query = sql.SQL("SELECT count(*) FROM {}").format(self.ident)
        return int(self.ex.scalar(Statement(query), table=self.label))

    def binary_coercible(self, source: int, target: int) -> bool:
        query = sql.SQL(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_cast WHERE castsource = %s::oid"
            " AND casttarget = %s::oid AND castmethod = 'b')"
        )
        return bool(self.ex.scalar(Statement(query, (source, target))))

    def values_outside(self, column: str, allowed: Sequence[str]) -> list[str]:
        query = sql.SQL(
            "SELECT DISTINCT {col}::text AS v FROM {table}"
            " WHERE {col} IS NOT NULL AND {col}::text <> ALL(%s::text[]) ORDER BY v LIMIT 5"
        ).format(col=sql.Identifier(column), table=self.ident)
        rows = self.ex.fetch_all(Statement(query, (list(allowed),)), table=self.label)
        return [str(r[0]) for r in rows]

    def name_taken(self, name: str) -> bool:
        query = sql.SQL(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c"
            " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = coalesce(%s, current_schema()) AND c.relname = %s)"
        )
        return bool(self.ex.scalar(Statement(query, (self.schema, name))))


def _schema_of(entry: MigrationEntry) -> str | None:
    return entry.meta.schema if entry.table_name is None else None


def _target(ex: Executor, meta: TableMeta) -> LiveTable:
    """Return the model's table as PostgreSQL builds it, from a temporary copy.

    Foreign keys are left out (a temporary table cannot reference a permanent one); the
    planner takes them from the model.
    """
    columns = ddl.table_elements(meta, references=False)
    create = sql.SQL("CREATE TEMP TABLE {} ({}) ON COMMIT DROP").format(
        _TARGET, sql.SQL(", ").join(columns)
    )
    ex.execute(Statement(create), table=meta.name)
    target = read_table_oid(ex, int(ex.scalar(_TARGET_OID)))
    ex.execute(Statement(sql.SQL("DROP TABLE {}").format(_TARGET)))
    return target


@attrs.frozen
class _Planned:
    """One entry's plan, with what applying it needs (None for a table to create)."""

    plan: MigrationPlan
    live: LiveTable | None = None
    target: LiveTable | None = None  # the model's table as PostgreSQL builds it
    previous: history.Record | None = None


def _plan(
    ex: Executor, entry: MigrationEntry, options: PlanOptions, target: LiveTable | None = None
) -> _Planned:
    """Plan one entry (against *target*, the model's table, when it was read already)."""
    meta, label, schema = entry.meta, entry.table, _schema_of(entry)
    probe = _Probe(ex, meta.qualified(entry.table_name), schema, label)
    # Before the model's table is built to be read (_target): its types must exist.
    extension = extensions.ensure_vector(ex, label) if extensions.needs_vector(meta) else None
    first = (extension,) if extension is not None else ()
    live = read_table(ex, label, schema)
    if live is None:
        raw = plan_create(meta, entry.table_name, label, probe.name_taken)
        placed = placing.plan_created(ex, meta, entry.table_name, label, schema)
        steps = first + raw.steps + placed.steps
        return _Planned(MigrationPlan(label, MigrationAction.TABLE_CREATED, steps, placed.notes))
    placed = placing.plan_existing(ex, meta, entry.table_name, label, live)
    options = placed.options(options)
    if target is None:
        target = _target(ex, meta)
    previous = history.latest(ex, live.schema, live.name)
    raw = plan_table(
        meta,
        entry.table_name,
        label,
        live,
        target,
        previous.target if previous is not None else None,
        probe,
        options,
    )
    steps = first + raw.steps + placed.steps
    action = MigrationAction.DATA_MIGRATED if steps else MigrationAction.SCHEMA_MATCHED
    plan = MigrationPlan(label, action, steps, raw.notes + placed.notes, raw.backup_table)
    return _Planned(plan, live, target, previous)


# --- applying ---------------------------------------------------------------------------------


@attrs.frozen
class _Runner:
    options: PlanOptions
    lock_timeout: float
    lock_retries: int
    progress: Progress | None
    dry: bool = False

    def migrate(self, ex: Executor, entry: MigrationEntry) -> MigrationResult:
        """Migrate one table in its own transaction, retrying after lock timeouts."""
        attempt = 0
        while True:
            try:
                with ex.transaction():
                    ex.execute(self.set_lock_timeout(local=True))
                    result = self.migrate_once(ex, entry)
                break
            except LockTimeoutError as exc:
                attempt += 1
                if attempt > self.lock_retries:
                    msg = (
                        f"{entry.table}: could not lock the tables it needs within "
                        f"{self.lock_timeout:g}s, {attempt} time{'s' if attempt > 1 else ''}; "
                        "nothing was changed"
                    )
                    raise MigrationError(msg, table=entry.table) from exc
                # Full jitter: two migrators that collided do not collide again in step.
                time.sleep(random.uniform(0, min(2.0, 0.1 * 2**attempt)))  # noqa: S311
        if extensions.needs_vector(entry.meta) and not self.dry:
            # Committed now: connections that found no extension before may look again.
            _adapters.extension_created()
        late = [s for s in result.steps if not s.transactional]
        if late and self.dry:
            with ex.transaction():
                build_in_transaction(ex, late)
                self.record_late(ex, entry, late)
        elif late:
            self.build_late(ex, entry, late)
        return result

    def set_lock_timeout(self, *, local: bool) -> Statement:
        """Set ``lock_timeout`` for the transaction (*local*) or the session."""
        return Statement(_LOCK_TIMEOUT, (f"{int(self.lock_timeout * 1000)}ms", local))

    def migrate_once(self, ex: Executor, entry: MigrationEntry) -> MigrationResult:
        history.ensure(ex)
        planned = _plan(ex, entry, self.options)
        if planned.live is None:
            return self.create(ex, entry, planned.plan)
        if planned.plan.steps:
            # Block writers (and readers) for the rest of this transaction, then plan again:
            # the table may have changed before the lock was granted, and conversions stage
            # rows by their physical position, which only holds while nobody writes.
            ex.execute(
                Statement(
                    sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
                        entry.meta.qualified(entry.table_name)
                    )
                ),
                table=entry.table,
            )
            planned = _plan(ex, entry, self.options, planned.target)
        plan, live, previous = planned.plan, planned.live, planned.previous
        assert live is not None  # noqa: S101 - the table exists: we hold a lock on it
        assert planned.target is not None  # noqa: S101 - planned against a live table
        target = describe(entry.meta, planned.target)
        rows = self.apply(ex, entry, plan) if plan.steps else None
        if plan.steps or previous is None or previous.checksum != history.checksum(target):
            after = read_table(ex, entry.table, _schema_of(entry))
            assert after is not None  # noqa: S101 - migrated, not dropped
            renamed = _renames(entry.meta, live)
            before = snapshot(live, compressed=_compressed(previous.target if previous else {}))
            _record(
                ex,
                entry,
                live,
                plan.action,
                target,
                [s for s in plan.steps if s.transactional],
                before=before,
                after=snapshot(after, compressed=target["compressed"], renamed=renamed),
            )
        return MigrationResult(
            plan.action,
            backup_table=plan.backup_table,
            rows_migrated=rows,
            schema_changes=tuple(s.description for s in plan.steps) + plan.notes,
            table=entry.table,
            steps=plan.steps,
            notes=plan.notes,
        )

    def apply(self, ex: Executor, entry: MigrationEntry, plan: MigrationPlan) -> int:
        count = Statement(
            sql.SQL("SELECT count(*) FROM {}").format(entry.meta.qualified(entry.table_name))
        )
        before = int(ex.scalar(count, table=entry.table))
        for step in plan.steps:
            if step.transactional:
                self.run(ex, entry, step)
        after = int(ex.scalar(count, table=entry.table))
        if after != before:
            msg = f"{entry.table}: the table had {before} rows before and {after} after; undone"
            raise MigrationError(msg, table=entry.table)
        return after

    def run(self, ex: Executor, entry: MigrationEntry, step: MigrationStep) -> None:
        try:
            apply_step(ex, step, progress=self.progress)
        except (MigrationError, LockTimeoutError, ConnectionLostError):
            raise
        except OrsoError as exc:
            msg = f"{entry.table}: step '{step.description}' failed: {exc}; nothing was changed"
            raise MigrationError(msg, table=entry.table, column=exc.column) from exc

    def create(self, ex: Executor, entry: MigrationEntry, plan: MigrationPlan) -> MigrationResult:
        for step in plan.steps:
            self.run(ex, entry, step)
        live = read_table(ex, entry.table, _schema_of(entry))
        assert live is not None  # noqa: S101 - just created
        target = describe(entry.meta, live)
        after = snapshot(live, compressed=target["compressed"])
        _record(ex, entry, live, plan.action, target, plan.steps, before=None, after=after)
        return MigrationResult(
            plan.action,
            schema_changes=tuple(s.description for s in plan.steps) + plan.notes,
            table=entry.table,
            steps=plan.steps,
            notes=plan.notes,
        )

    def build_late(self, ex: Executor, entry: MigrationEntry, steps: list[MigrationStep]) -> None:
        """Run the steps that cannot run in a transaction, then record them."""
        ex.execute(self.set_lock_timeout(local=False))
        try:
            for step in steps:
                self.run(ex, entry, step)
        finally:
            with contextlib.suppress(OrsoError):
                ex.execute(Statement(sql.SQL("RESET lock_timeout")))
        with ex.transaction():
            self.record_late(ex, entry, steps)

    def record_late(self, ex: Executor, entry: MigrationEntry, steps: list[MigrationStep]) -> None:
        """Record the steps run after the table's transaction (the indexes built then)."""
        live = read_table(ex, entry.table, _schema_of(entry))
        assert live is not None  # noqa: S101 - migrated just before
        previous = history.latest(ex, live.schema, live.name)
        target = previous.target if previous is not None else {}
        # The table's transaction wrote the latest record: this one, the rest of the same
        # migration, starts from where that one started, so a rollback undoes both.
        rows = [r for r in history.entries(ex, live.name) if r.schema == live.schema]
        first = rows[-1].schema_before if rows else None
        renamed = renames_of(rows[-1].schema_after, rows[-1].steps) if rows else {}
        if first is None:
            unbuilt = tuple(i for i in live.indexes if not _built(i, steps))
            first = snapshot(attrs.evolve(live, indexes=unbuilt), compressed=_compressed(target))
        _record(
            ex,
            entry,
            live,
            MigrationAction.DATA_MIGRATED,
            target,
            steps,
            before=first,
            after=snapshot(live, compressed=_compressed(target), renamed=renamed),
        )


def _record(
    ex: Executor,
    entry: MigrationEntry,
    live: LiveTable,
    action: MigrationAction,
    target: dict[str, Any],
    steps: Sequence[MigrationStep],
    *,
    before: dict[str, Any] | None,
    after: dict[str, Any],
) -> None:
    """Write the history record of one migration of *live*."""
    cls = entry.meta.cls
    # A rollback's stand-in model says what it went back to.
    label = getattr(cls, "__orso_history_label__", None)
    history.record(
        ex,
        schema=live.schema,
        table=live.name,
        model=label or f"{cls.__module__}.{cls.__qualname__}",
        action=action.value,
        target=target,
        steps=steps,
        before=before,
        after=after,
    )


def _compressed(target: dict[str, Any]) -> list[str]:
    return [str(name) for name in target.get("compressed", [])]


def _renames(meta: TableMeta, live: LiveTable) -> dict[str, str]:
    """Return ``{old: new}`` for the columns the planner renames (its rule, without a plan)."""
    present = {c.name for c in live.columns}
    found: dict[str, str] = {}
    for column in meta.columns:
        if column.name in present:
            continue
        for old in column.options.renamed_from:
            if old in present and old not in meta.by_name and old not in found:
                found[old] = column.name
                break
    return found


def _built(index: Any, steps: Sequence[MigrationStep]) -> bool:
    return any(
        isinstance(action, BuildIndex) and action.name == index.name
        for step in steps
        for action in step.actions
    )
