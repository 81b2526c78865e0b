"""Migrating placement: partitioned tables, DEFAULT partitions, tablespaces and Citus.

Owns the part of a migration plan that is about where a table lives rather than its columns:
it refuses to turn a plain table into a partitioned one in place (or back, or to change the
partition key), adds a missing DEFAULT partition, moves a table or its indexes to the model's
tablespaces, and distributes the table with Citus when the server has the ``citus``
extension (a note says it was skipped otherwise, or a :class:`~orso_pg.errors.MigrationError`
when the model requires it). It reads the few catalog facts it needs through the executor and
must not run a change itself (``_apply`` runs the steps) nor build DDL text itself
(:mod:`orso_pg.migrate._placement` does).
"""

from __future__ import annotations

import re
from typing import Final

import attrs
from psycopg import sql

from orso_pg import _partition
from orso_pg._compiler import Statement
from orso_pg._executor import Executor
from orso_pg._schema import TableMeta
from orso_pg.errors import MigrationError
from orso_pg.migrate import _placement as ddl
from orso_pg.migrate._introspect import LiveTable
from orso_pg.migrate._planner import PlanOptions
from orso_pg.migrate._steps import MigrationStep, Run

__all__ = ["Placed", "plan_created", "plan_existing"]

_CITUS = Statement(
    sql.SQL("SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'citus')")
)
_DISTRIBUTED = sql.SQL(
    "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition WHERE logicalrelid = %s::oid)"
)
_SHAPE = sql.SQL(
    "SELECT c.relkind::text, CASE WHEN c.relkind = 'p' THEN pg_catalog.pg_get_partkeydef(c.oid)"
    " END, ts.spcname::text,"
    " coalesce((SELECT pt.partdefid <> 0 FROM pg_catalog.pg_partitioned_table pt"
    "  WHERE pt.partrelid = c.oid), false)"
    " FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_tablespace ts"
    " ON ts.oid = c.reltablespace WHERE c.oid = %s::oid"
)
_INDEX_SPACES = sql.SQL(
    "SELECT ic.relname::text, ts.spcname::text, ic.oid::int8 FROM pg_catalog.pg_index i"
    " JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid"
    " LEFT JOIN pg_catalog.pg_tablespace ts ON ts.oid = ic.reltablespace"
    " WHERE i.indrelid = %s::oid ORDER BY ic.relname"
)
# The partitions' indexes attached to one partitioned index, with where they are.
_CHILD_INDEXES = sql.SQL(
    "SELECT n.nspname::text, c.relname::text, ts.spcname::text FROM pg_catalog.pg_inherits i"
    " JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid"
    " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
    " LEFT JOIN pg_catalog.pg_tablespace ts ON ts.oid = c.reltablespace"
    " WHERE i.inhparent = %s::oid ORDER BY c.relname"
)
_KEY: Final = re.compile(r"^(?P<how>RANGE|LIST|HASH) \((?P<cols>.*)\)$")
_DEFAULT_SPACE: Final = "pg_default"


@attrs.frozen
class Placed:
    """The placement part of one table's plan.

    Attributes:
        steps: Steps to run after the table's other steps.
        notes: What is left as it is, or skipped, in plain words.
        partitioned: The live table is partitioned (its indexes cannot be built concurrently).
    """

    steps: tuple[MigrationStep, ...] = ()
    notes: tuple[str, ...] = ()
    partitioned: bool = False

    def options(self, options: PlanOptions) -> PlanOptions:
        """Return *options* as they apply to this table."""
        if self.partitioned and options.concurrent_indexes:
            return attrs.evolve(options, concurrent_indexes=False)
        return options


def _step(description: str, *stmts: Statement, rewrites: bool = False) -> MigrationStep:
    text = ";\n".join(s.as_string() for s in stmts)
    return MigrationStep(description, text, rewrites=rewrites, actions=tuple(Run(s) for s in stmts))


def _fail(label: str, message: str) -> MigrationError:
    return MigrationError(f"{label}: {message}", table=label)


def _default_step(
    meta: TableMeta, parent: sql.Identifier, schema: str | None, label: str
) -> MigrationStep:
    name = _partition.default_name(label)
    child = sql.Identifier(schema, name) if schema is not None else sql.Identifier(name)
    return _step(
        f"create default partition {name}",
        ddl.create_default_partition(parent, child, meta.placement.tablespace),
    )


def _distribution(
    ex: Executor, meta: TableMeta, label: str, regclass: str, oid: int | None
) -> tuple[list[MigrationStep], list[str]]:
    placement = meta.placement
    if not placement.distributed:
        return [], []
    how = (
        "reference table (create_reference_table)"
        if placement.reference
        else f"distributed by {placement.distribute_by} (create_distributed_table"
        + (f", co-located with {placement.colocate_with})" if placement.colocate_with else ")")
    )
    if not ex.scalar(_CITUS, table=label):
        if placement.require_distribution:
            msg = (
                f"the model asks for a Citus {how} and require_distribution=True, but the server "
                "has no citus extension; run the migration on the Citus coordinator"
            )
            raise _fail(label, msg)
        return [], [f"distribution skipped: the server has no citus extension (wanted: {how})"]
    if oid is not None and ex.scalar(Statement(_DISTRIBUTED, (oid,)), table=label):
        return [], []
    return [_step(f"make {label} a Citus {how}", ddl.distribute(meta, regclass))], []


def plan_created(
    ex: Executor, meta: TableMeta, table_name: str | None, label: str, schema: str | None
) -> Placed:
    """Return the placement steps that follow creating the model's table."""
    steps: list[MigrationStep] = []
    spec = meta.placement.partitioning
    parent = meta.qualified(table_name)
    if spec is not None and spec.default:
        steps.append(_default_step(meta, parent, schema, label))
    regclass = parent.as_string(None)
    more, notes = _distribution(ex, meta, label, regclass, None)
    return Placed(tuple(steps + more), tuple(notes), spec is not None)


def _key_of(definition: str | None) -> tuple[str, tuple[str, ...]] | None:
    if definition is None:
        return None
    found = _KEY.match(definition.strip())
    if found is None:
        return (definition, ())
    columns = tuple(c.strip().strip('"') for c in found["cols"].split(","))
    return (found["how"], columns)


def plan_existing(
    ex: Executor, meta: TableMeta, table_name: str | None, label: str, live: LiveTable
) -> Placed:
    """Return the placement steps bringing the live table *live* in line with the model.

    Raises:
        MigrationError: the partitioning differs (PostgreSQL cannot change it in place), or
            distribution is required on a server without Citus.
    """
    row = ex.fetch_one(Statement(_SHAPE, (live.oid,)), table=label)
    assert row is not None  # noqa: S101 - the table was just read
    kind, key_sql, space, has_default = str(row[0]), row[1], row[2], bool(row[3])
    spec = meta.placement.partitioning
    partitioned = kind == "p"
    live_key = _key_of(key_sql)
    if spec is not None and not partitioned:
        msg = (
            f"the table exists as a plain table and the model partitions it by "
            f"{spec.strategy} ({spec.column}); PostgreSQL cannot partition a table in place. "
            f"{meta.cls.__name__}.copy_and_swap(db) copies the rows into a partitioned table "
            f"and swaps the names in one transaction (the old table is kept as {label}_old)"
        )
        raise _fail(label, msg)
    if spec is None and partitioned:
        msg = (
            f"the table is partitioned by {key_sql} and the model declares no partition_by=; "
            "declare the same partitioning on the model (PostgreSQL cannot turn a partitioned "
            "table back into a plain one in place)"
        )
        raise _fail(label, msg)
    if spec is not None and live_key != (spec.strategy, (spec.column,)):
        msg = (
            f"the table is partitioned by {key_sql} and the model by {spec.strategy} "
            f"({spec.column}); PostgreSQL cannot change a partition key in place: "
            f"{meta.cls.__name__}.copy_and_swap(db) rebuilds the table by copying its rows"
        )
        raise _fail(label, msg)
    ident = meta.qualified(table_name)
    steps: list[MigrationStep] = []
    notes: list[str] = []
    if spec is not None and spec.default and not has_default:
        steps.append(
            _default_step(meta, sql.Identifier(live.schema, live.name), live.schema, label)
        )
    want = meta.placement.tablespace
    if want is not None and (space or _DEFAULT_SPACE) != want:
        if partitioned:
            steps.append(
                _step(
                    f"set the tablespace of new partitions of {label} to {want} (existing "
                    "partitions stay where they are; Model.move_partitions_before moves them)",
                    ddl.set_tablespace(ident, want),
                )
            )
        else:
            steps.append(
                _step(
                    f"move table {label} to tablespace {want}, rewriting the table",
                    ddl.move_table(ident, want),
                    rewrites=True,
                )
            )
    steps.extend(_index_moves(ex, meta, label, live, partitioned, notes))
    more, skipped = _distribution(
        ex, meta, label, sql.Identifier(live.schema, live.name).as_string(None), live.oid
    )
    return Placed(tuple(steps + more), tuple(notes + skipped), partitioned)


def _index_moves(
    ex: Executor,
    meta: TableMeta,
    label: str,
    live: LiveTable,
    partitioned: bool,
    notes: list[str],
) -> list[MigrationStep]:
    want = meta.placement.index_tablespace
    if want is None:
        return []
    rows = ex.fetch_all(Statement(_INDEX_SPACES, (live.oid,)), table=label)
    away = [(name, space, oid) for name, space, oid in rows if (space or _DEFAULT_SPACE) != want]
    if partitioned:
        return [_partitioned_index_move(ex, label, live, found, want, notes) for found in away]
    return [
        _step(
            f"move index {name} to tablespace {want}, rewriting the index",
            ddl.move_index(sql.Identifier(live.schema, name), want),
            rewrites=True,
        )
        for name, _, _ in away
    ]


def _partitioned_index_move(
    ex: Executor,
    label: str,
    live: LiveTable,
    index: tuple[str, str | None, int],
    want: str,
    notes: list[str],
) -> MigrationStep:
    """Return the step moving a partitioned index and its partitions' indexes to *want*.

    The partitioned index has no files: placing it sets where the indexes of partitions made
    later go. Each partition's index that is where the partitioned index was (it followed the
    default) is rebuilt in *want*; one placed elsewhere on purpose (by
    ``move_partitions_before``) stays, and a note says so.
    """
    name, space, oid = index
    was = space or _DEFAULT_SPACE
    children = ex.fetch_all(Statement(_CHILD_INDEXES, (oid,)), table=label)
    follow = [(schema, child) for schema, child, at in children if (at or _DEFAULT_SPACE) == was]
    kept = [child for _, child, at in children if (at or _DEFAULT_SPACE) not in (was, want)]
    if kept:
        notes.append(
            f"indexes {', '.join(kept)} of partitions of {label} stay in their own tablespaces "
            f"(they were placed there apart from index {name})"
        )
    stmts = [ddl.move_index(sql.Identifier(live.schema, name), want)]
    stmts.extend(ddl.move_index(sql.Identifier(schema, child), want) for schema, child in follow)
    return _step(
        f"move index {name} of partitioned table {label} and {len(follow)} partition "
        f"index(es) to tablespace {want}, rewriting the indexes (new partitions' indexes go "
        "there too)",
        *stmts,
        rewrites=bool(follow),
    )
