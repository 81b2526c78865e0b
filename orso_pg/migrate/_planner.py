"""Migration planning: the steps that bring one live table in line with its model.

Owns the diff between a table read from ``pg_catalog`` (``_introspect``) and the
table the model asks for, and the in-place steps that close it: renames, added columns filled
with the model's default, type changes with an explicit ``USING`` and a check that no value
changes, compressed-array conversions, nullability, defaults, unique constraints, indexes and
foreign keys. Each step (``_steps``) carries its SQL text, whether it rewrites the
table, and what to run.

It is pure: it must not run anything. The few facts it needs from the database (does the table
hold rows, how many NULLs a column has, is a cast binary-coercible, is a name taken) come
through the :class:`Probe` it is given. Everything that would lose data is refused here, before
anything runs, with a :class:`~orso_pg.errors.MigrationError` naming the table and column.

What the model type spells is compared in PostgreSQL's spelling: the caller creates the model's
table as a temporary table and reads it back, so ``VARCHAR(20)`` and ``character varying(20)``
are the same type here without this module knowing PostgreSQL's grammar of type names.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any, Final, Protocol

import attrs
from psycopg import sql

from orso_pg import _vector
from orso_pg._compiler import Statement
from orso_pg._schema import MAX_IDENTIFIER_BYTES, Column, Index, TableForeignKey, TableMeta
from orso_pg._types import Refused
from orso_pg.errors import MigrationError
from orso_pg.migrate import _ddl as ddl
from orso_pg.migrate._introspect import LiveColumn, LiveConstraint, LiveTable
from orso_pg.migrate._steps import BuildIndex, CastCheck, Convert, MigrationStep, Run

__all__ = [
    "PlanOptions",
    "Probe",
    "TablePlan",
    "describe",
    "index_name",
    "plan_create",
    "plan_table",
]

# Names of the temporary objects a data conversion uses; fixed, so plans are reproducible.
STAGE: Final = sql.Identifier("pg_temp", "orso_pg_stage")
CONVERT_FN: Final = sql.Identifier("pg_temp", "orso_pg_convert")

# Defaults PostgreSQL evaluates once for an ADD COLUMN (stable, not volatile): no rewrite.
_STABLE_DEFAULTS: Final = frozenset(
    {"now()", "current_timestamp", "current_date", "transaction_timestamp()"}
)
_STRING: Final = "S"
_ARRAY: Final = "A"
_TIMESTAMPS: Final = frozenset({"timestamp", "timestamptz"})


@attrs.frozen
class PlanOptions:
    """What a migration is allowed to do.

    Attributes:
        drop_columns: Drop columns that left the model (after backing their data up).
        allow_data_loss: Let type changes that change or drop values through.
        concurrent_indexes: Build new indexes of existing tables with
            ``CREATE INDEX CONCURRENTLY`` after the transaction.
    """

    drop_columns: bool = False
    allow_data_loss: bool = False
    concurrent_indexes: bool = False


@attrs.frozen
class TablePlan:
    """The plan for one table: its steps, what is kept as is, and the backup table if any."""

    steps: tuple[MigrationStep, ...]
    notes: tuple[str, ...] = ()
    backup_table: str | None = None


class Probe(Protocol):
    """The facts about the live database a plan depends on."""

    def has_rows(self) -> bool:
        """Whether the live table holds at least one row."""

    def null_count(self, column: str) -> int:
        """How many rows hold NULL in the live column *column*."""

    def row_count(self) -> int:
        """How many rows the live table holds."""

    def binary_coercible(self, source: int, target: int) -> bool:
        """Whether a value of type OID *source* is also a valid *target* without conversion."""

    def name_taken(self, name: str) -> bool:
        """Whether a relation called *name* exists in the table's schema."""

    def values_outside(self, column: str, allowed: Sequence[str]) -> list[str]:
        """A few distinct non-NULL values of *column* (as text) that *allowed* lacks."""


# --- helpers ----------------------------------------------------------------------------------


def _render(*stmts: Statement | sql.Composable) -> str:
    texts = [s.as_string() if isinstance(s, Statement) else s.as_string(None) for s in stmts]
    return ";\n".join(texts)


def _step(
    description: str, *stmts: Statement, rewrites: bool = False, transactional: bool = True
) -> MigrationStep:
    return MigrationStep(
        description,
        _render(*stmts),
        rewrites=rewrites,
        transactional=transactional,
        actions=tuple(Run(s) for s in stmts),
    )


def _alter(ident: sql.Composable, action: sql.Composable) -> Statement:
    return Statement(sql.SQL("ALTER TABLE {} {}").format(ident, action))


def _alter_column(ident: sql.Composable, column: str, action: sql.Composable) -> Statement:
    return _alter(ident, sql.SQL("ALTER COLUMN {} {}").format(sql.Identifier(column), action))


def _names(columns: Sequence[str]) -> sql.Composable:
    return sql.SQL(", ").join(map(sql.Identifier, columns))


def _fit(name: str) -> str:
    """Return *name*, shortened with a hash when it is longer than PostgreSQL keeps."""
    data = name.encode("utf-8")
    if len(data) <= MAX_IDENTIFIER_BYTES:
        return name
    digest = hashlib.sha1(data, usedforsecurity=False).hexdigest()[:8]
    head = data[: MAX_IDENTIFIER_BYTES - 9].decode("utf-8", "ignore")
    return f"{head}_{digest}"


def index_name(table: str, index: Index, taken: Callable[[str], bool]) -> str:
    """Return the name of a new index of *table*: ``<table>_<columns>_idx``, made unique."""
    if index.name is not None:
        return index.name
    base = f"{table}_{'_'.join(index.columns)}_idx"
    name = _fit(base)
    suffix = 1
    while taken(name):
        name = _fit(f"{base}{suffix}")
        suffix += 1
    return name


def _fk_spec(column: Column) -> tuple[str, str, str, str]:
    assert column.ref_table is not None  # noqa: S101 - callers filter
    action = (column.options.on_delete or "NO ACTION").upper()
    return (column.name, column.ref_table, column.ref_column or "id", action)


def _model_fks(meta: TableMeta) -> list[tuple[str, str, str, str]]:
    return [_fk_spec(c) for c in meta.columns if c.ref_table is not None]


def _composite_fk_spec(fk: TableForeignKey) -> list[Any]:
    return [list(fk.columns), fk.ref_table, list(fk.ref_columns), fk.on_delete or "NO ACTION"]


def describe(meta: TableMeta, target: LiveTable) -> dict[str, Any]:
    """Return the schema the model asks for, as JSON-ready data (kept in the history).

    *target* is the model's table as PostgreSQL built it (a temporary copy, or the table just
    created). The next migration drops only indexes, unique keys, foreign keys and defaults
    that this description lists, so objects someone added by hand are never removed.
    """
    described: dict[str, Any] = {
        "columns": {
            c.name: {
                "type": c.type,
                "not_null": c.not_null,
                "default": c.default,
                "identity": c.identity,
            }
            for c in target.columns
        },
        "primary_key": list(target.primary_key),
        "unique": sorted(sorted(key) for key in meta.unique_keys),
        "indexes": sorted(
            [
                {"columns": list(i.columns), "method": i.method, "unique": i.unique}
                for i in meta.indexes
            ],
            key=lambda i: (i["columns"], i["method"], i["unique"]),
        ),
        "foreign_keys": sorted(list(spec) for spec in _model_fks(meta)),
        "compressed": sorted(c.name for c in meta.columns if c.type.compressed),
    }
    if meta.foreign_keys:
        # Only when there are some: the checksums recorded for other models stay the same.
        described["composite_foreign_keys"] = sorted(
            _composite_fk_spec(fk) for fk in meta.foreign_keys
        )
    return described


# --- creating a table -------------------------------------------------------------------------


def plan_create(
    meta: TableMeta, table_name: str | None, label: str, taken: Callable[[str], bool]
) -> TablePlan:
    """Return the steps creating the model's table and its indexes."""
    steps = [_step(f"create table {label}", ddl.create_table(meta, table_name))]
    names: set[str] = set()
    for index in meta.indexes:
        name = index_name(label, index, lambda n: n in names or taken(n))
        names.add(name)
        steps.append(
            _step(
                f"create {_index_words(index)} {name} on ({', '.join(index.columns)})",
                ddl.create_index(meta, index, table_name, name=name),
            )
        )
    return TablePlan(tuple(steps))


def _model_index_key(
    index: Index,
) -> tuple[tuple[str, ...], str, bool, str | None, tuple[tuple[str, int], ...]]:
    """Return what a live index must match to be *index*.

    A vector index's operator class and storage parameters count too (the introspection reads
    them for vector methods only).
    """
    return (index.columns, index.method, index.unique, index.opclass, index.params)


def _index_words(index: Index) -> str:
    return f"{'unique ' if index.unique else ''}{index.method} index"


# --- altering a table -------------------------------------------------------------------------


@attrs.define
class _Planner:
    meta: TableMeta
    table_name: str | None
    label: str
    ident: sql.Composable
    live: LiveTable
    target: LiveTable
    previous: dict[str, Any] | None
    probe: Probe
    options: PlanOptions
    steps: list[MigrationStep] = attrs.Factory(list)
    late: list[MigrationStep] = attrs.Factory(list)
    notes: list[str] = attrs.Factory(list)
    renames: dict[str, str] = attrs.Factory(dict)
    extras: list[LiveColumn] = attrs.Factory(list)
    backup: str | None = None

    # -- small lookups

    def fail(self, message: str, column: str | None = None, value: object = None) -> MigrationError:
        if value is None:
            return MigrationError(f"{self.label}: {message}", table=self.label, column=column)
        return MigrationError(
            f"{self.label}: {message}", table=self.label, column=column, value=value
        )

    def now(self, live_name: str) -> str:
        """The name a live column has once the renames ran."""
        return self.renames.get(live_name, live_name)

    def owned(self, kind: str, spec: object) -> bool:
        """Whether the previous migration of this table put *spec* there."""
        return self.previous is not None and spec in self.previous.get(kind, [])

    def fk_is(self, column: Column, con: LiveConstraint) -> bool:
        """Whether the live single-column foreign key *con* is the one *column* declares.

        A column naming no schema (a reference by table name) takes the table wherever the
        search_path found it; one referencing a model declared with a schema needs that schema.
        """
        now = (self.now(con.columns[0]), con.ref_table, con.ref_columns[0], con.on_delete)
        return _fk_spec(column) == now and column.ref_schema in (None, con.ref_schema)

    def live_for(self, column: Column) -> LiveColumn | None:
        """The live column holding *column*'s data (by its name or a former name)."""
        found = self.live.column(column.name)
        if found is not None:
            return found
        for old, new in self.renames.items():
            if new == column.name:
                return self.live.column(old)
        return None

    # -- the plan

    def run(self) -> TablePlan:
        self.plan_renames()
        self.plan_primary_key_check()
        self.plan_drop_constraints()
        self.plan_enum_checks_drop()
        self.steps.extend(self.rename_steps())
        self.plan_extra_columns()
        for column in self.meta.columns:
            if self.live_for(column) is None:
                self.plan_add(column)
        for column in self.meta.columns:
            live = self.live_for(column)
            if live is not None:
                self.plan_existing(column, live)
        self.plan_primary_key_add()
        self.plan_unique_add()
        self.plan_enum_checks_add()
        self.plan_index_add()
        self.plan_fk_add()
        return TablePlan(tuple(self.steps + self.late), tuple(self.notes), self.backup)

    def plan_renames(self) -> None:
        present = {c.name for c in self.live.columns}
        for column in self.meta.columns:
            if column.name in present:
                continue
            for old in column.options.renamed_from:
                if old in present and old not in self.meta.by_name and old not in self.renames:
                    self.renames[old] = column.name
                    break
        self.extras = [
            c
            for c in self.live.columns
            if c.name not in self.meta.by_name and c.name not in self.renames
        ]

    def involves_extra(self, columns: Sequence[str]) -> bool:
        """Whether *columns* include a column that left the model (kept or dropped)."""
        names = {c.name for c in self.extras}
        return any(c in names for c in columns)

    def rename_steps(self) -> list[MigrationStep]:
        return [
            _step(
                f"rename column {old} to {new}",
                _alter(
                    self.ident,
                    sql.SQL("RENAME COLUMN {} TO {}").format(
                        sql.Identifier(old), sql.Identifier(new)
                    ),
                ),
            )
            for old, new in self.renames.items()
        ]

    def plan_primary_key_check(self) -> None:
        live_key = tuple(self.now(c) for c in self.live.primary_key)
        want = self.target.primary_key
        if live_key and want and live_key != want:
            msg = (
                f"the primary key is ({', '.join(live_key)}) and the model's is "
                f"({', '.join(want)}); changing a primary key is not done automatically"
            )
            raise self.fail(msg, column=want[0])

    def plan_primary_key_add(self) -> None:
        want = self.target.primary_key
        if want and not self.live.primary_key:
            self.late.append(
                _step(
                    f"add primary key ({', '.join(want)})",
                    _alter(self.ident, sql.SQL("ADD PRIMARY KEY ({})").format(_names(want))),
                )
            )

    # -- constraints and indexes that leave

    def plan_drop_constraints(self) -> None:
        refs = [c for c in self.meta.columns if c.ref_table is not None]
        for con in self.live.of_kind("f"):
            if con.ref_table is None or self.involves_extra(con.columns):
                continue
            if len(con.columns) != 1:
                self.plan_drop_composite_fk(con)
                continue
            spec = (con.columns[0], con.ref_table, con.ref_columns[0], con.on_delete)
            kept = any(self.fk_is(c, con) for c in refs)
            if not kept and self.owned("foreign_keys", list(spec)):
                self.steps.append(
                    _step(
                        f"drop foreign key {con.name} ({spec[0]} -> {spec[1]}.{spec[2]})",
                        _alter(
                            self.ident,
                            sql.SQL("DROP CONSTRAINT {}").format(sql.Identifier(con.name)),
                        ),
                    )
                )
        model_keys = {frozenset(k) for k in self.meta.unique_keys}
        for con in self.live.of_kind("u"):
            now_key = frozenset(self.now(c) for c in con.columns)
            if self.involves_extra(con.columns):
                continue
            if now_key in model_keys or not self.owned("unique", sorted(con.columns)):
                continue
            self.check_not_referenced(con.columns, f"unique key {con.name}")
            self.steps.append(
                _step(
                    f"drop unique constraint {con.name} ({', '.join(con.columns)})",
                    _alter(
                        self.ident, sql.SQL("DROP CONSTRAINT {}").format(sql.Identifier(con.name))
                    ),
                )
            )
        model_indexes = {_model_index_key(i) for i in self.meta.indexes}
        for idx in self.live.indexes:
            if idx.constraint or idx.primary or idx.custom or self.involves_extra(idx.columns):
                continue
            now_index = (
                tuple(self.now(c) for c in idx.columns),
                idx.method,
                idx.unique,
                idx.opclass,
                idx.params,
            )
            index_spec = {"columns": list(idx.columns), "method": idx.method, "unique": idx.unique}
            if not idx.valid:
                if now_index in model_indexes or self.owned("indexes", index_spec):
                    self.steps.append(
                        _step(
                            f"drop invalid index {idx.name} (left by an interrupted build)",
                            Statement(
                                sql.SQL("DROP INDEX {}").format(
                                    sql.Identifier(self.live.schema, idx.name)
                                )
                            ),
                        )
                    )
                else:
                    self.notes.append(f"index {idx.name} is invalid; it is not the model's: kept")
                continue
            if now_index in model_indexes or not self.owned("indexes", index_spec):
                continue
            if idx.unique:
                self.check_not_referenced(idx.columns, f"unique index {idx.name}")
            self.steps.append(
                _step(
                    f"drop index {idx.name} ({', '.join(idx.columns)})",
                    Statement(
                        sql.SQL("DROP INDEX {}").format(sql.Identifier(self.live.schema, idx.name))
                    ),
                )
            )

    def live_fk_spec(self, con: LiveConstraint) -> list[Any]:
        """The spec (as :func:`describe` records it) of a live foreign key, after renames."""
        columns = [self.now(c) for c in con.columns]
        return [columns, con.ref_table, list(con.ref_columns), con.on_delete]

    def plan_drop_composite_fk(self, con: LiveConstraint) -> None:
        spec = self.live_fk_spec(con)
        wanted = [_composite_fk_spec(fk) for fk in self.meta.foreign_keys]
        if spec in wanted or not self.owned("composite_foreign_keys", spec):
            return
        self.steps.append(
            _step(
                f"drop foreign key {con.name} ({', '.join(spec[0])}) -> "
                f"{spec[1]} ({', '.join(spec[2])})",
                _alter(self.ident, sql.SQL("DROP CONSTRAINT {}").format(sql.Identifier(con.name))),
            )
        )

    def check_not_referenced(self, columns: Sequence[str], what: str) -> None:
        for key in self.live.inbound:
            if set(key.ref_columns) == set(columns):
                msg = (
                    f"cannot drop {what}: foreign key {key.name} of {key.schema}.{key.table} "
                    "references it"
                )
                raise self.fail(msg, column=columns[0])

    # -- columns

    def plan_extra_columns(self) -> None:
        extras = self.extras
        if not extras:
            return
        if not self.options.drop_columns:
            for col in extras:
                self.notes.append(
                    f"kept column {col.name} ({col.type}), which is no longer in the model; "
                    "pass drop_columns=True to drop it (its data is backed up first)"
                )
                if col.not_null and col.default is None and not col.identity and not col.generated:
                    self.steps.append(
                        _step(
                            f"drop NOT NULL on kept column {col.name}, so rows of the model "
                            "can be inserted without it",
                            _alter_column(self.ident, col.name, sql.SQL("DROP NOT NULL")),
                        )
                    )
            return
        names = [c.name for c in extras]
        for name in names:
            if name in self.live.primary_key:
                raise self.fail(f"cannot drop column {name}: it is in the primary key", name)
            for key in self.live.inbound:
                if name in key.ref_columns:
                    msg = (
                        f"cannot drop column {name}: foreign key {key.name} of "
                        f"{key.schema}.{key.table} references it"
                    )
                    raise self.fail(msg, name)
        pk = [c for c in self.live.primary_key if c not in names]
        kept = [*pk, *names] if pk else [c.name for c in self.live.columns]
        self.backup = self.backup_name()
        backup_ident = sql.Identifier(self.live.schema, self.backup)
        self.steps.append(
            _step(
                f"back up column{'s' if len(names) > 1 else ''} {', '.join(names)} "
                f"into {self.backup}",
                Statement(
                    sql.SQL("CREATE TABLE {} AS SELECT {} FROM {}").format(
                        backup_ident, _names(kept), self.ident
                    )
                ),
            )
        )
        for name in names:
            self.steps.append(
                _step(
                    f"drop column {name} (backed up in {self.backup})",
                    _alter(self.ident, sql.SQL("DROP COLUMN {}").format(sql.Identifier(name))),
                )
            )

    def backup_name(self) -> str:
        number = 1
        while True:
            name = _fit(f"{self.live.name}_backup_{number}")
            if not self.probe.name_taken(name):
                return name
            number += 1

    def plan_add(self, column: Column) -> None:
        target = self.target.column(column.name)
        assert target is not None  # noqa: S101 - the target table has every model column
        default = ddl.default_clause(column)
        fill = None if default is not None or column.identity else self.model_fill(column)
        definition = ddl.column_definition(
            column, keys=False, fill=None if fill is None else sql.Literal(fill[1])
        )
        stmts = [_alter(self.ident, sql.SQL("ADD COLUMN {}").format(definition))]
        words = f"add column {column.name} {target.type}{' NOT NULL' if target.not_null else ''}"
        if fill is not None:
            # The model's default fills the rows there are; the column keeps no default.
            stmts.append(_alter_column(self.ident, column.name, sql.SQL("DROP DEFAULT")))
            words += f", existing rows set to the model default {fill[0]!r}"
        elif default is not None:
            words += f", existing rows set to DEFAULT {default.as_string(None)}"
        elif target.not_null and not column.identity and self.probe.has_rows():
            msg = (
                f"cannot add NOT NULL column {column.name}: the table has rows and the model "
                "gives no default to fill them with; give the field a default, a "
                "server_default=, or make it optional"
            )
            raise self.fail(msg, column.name)
        rewrites = column.identity or (
            default is not None
            and not isinstance(default, sql.Literal)
            and default.as_string(None).lower() not in _STABLE_DEFAULTS
        )
        self.steps.append(_step(words, *stmts, rewrites=rewrites))

    def model_fill(self, column: Column) -> tuple[Any, Any] | None:
        """Return the model's default of *column* and its stored form, or None without one."""
        present, value = column_default(self.meta, column)
        if not present or value is None:
            return None
        try:
            return value, column.type.dump(value)
        except Refused as exc:
            msg = f"the model default {value!r} of column {column.name} cannot be stored: {exc}"
            raise self.fail(msg, column.name, value) from None

    def plan_existing(self, column: Column, live: LiveColumn) -> None:
        target = self.target.column(column.name)
        assert target is not None  # noqa: S101 - the target table has every model column
        current_default = live.default
        handles_default = not live.identity and not target.identity
        if live.identity != target.identity:
            self.notes.append(
                f"column {column.name}: identity differs from the model's; left as it is"
            )
        if live.type != target.type:
            drop_default = (
                handles_default
                and live.default is not None
                and (target.default is not None or self.owned_default(live))
            )
            if drop_default:
                current_default = None
            self.plan_type(column, live, target, drop_default=drop_default)
        if handles_default and current_default != target.default:
            self.plan_default(column, live, target, current_default)
        if live.not_null and not target.not_null:
            self.steps.append(
                _step(
                    f"drop NOT NULL on column {column.name}",
                    _alter_column(self.ident, column.name, sql.SQL("DROP NOT NULL")),
                )
            )
        elif target.not_null and not live.not_null:
            nulls = self.probe.null_count(live.name)
            if nulls:
                msg = (
                    f"cannot make column {column.name} NOT NULL: {nulls} row"
                    f"{'s hold' if nulls > 1 else ' holds'} NULL; fill "
                    f"{'them' if nulls > 1 else 'it'} first or keep the field optional"
                )
                raise self.fail(msg, column.name, None)
            self.steps.append(
                _step(
                    f"set NOT NULL on column {column.name}",
                    _alter_column(self.ident, column.name, sql.SQL("SET NOT NULL")),
                )
            )

    def owned_default(self, live: LiveColumn) -> bool:
        if self.previous is None:
            return False
        before = self.previous.get("columns", {}).get(live.name)
        return before is not None and before.get("default") == live.default

    def vector_step(
        self,
        column: Column,
        live: LiveColumn,
        target: LiveColumn,
        pre: list[Statement],
        words: str,
    ) -> MigrationStep:
        """Change a vector column's dimensions or kind (vector, halfvec, sparsevec).

        PostgreSQL cannot cast a vector to other dimensions, so existing values are dropped
        (set to NULL), which only *allow_data_loss* permits; ``vector`` to ``halfvec`` rounds
        to float16, so it needs the same permission; ``halfvec`` to ``vector`` keeps values.
        """
        same_size = live.typmod == target.typmod
        widening = live.type_name == "halfvec" and target.type_name == "vector"
        castable = same_size and (widening or "sparsevec" not in (live.type_name, target.type_name))
        name = sql.Identifier(column.name)
        populated = self.probe.null_count(live.name) < self.probe.row_count()
        if castable and (widening or self.options.allow_data_loss or not populated):
            using: sql.Composable = sql.SQL("({})::{}").format(name, column.type.ddl)
        elif not populated or self.options.allow_data_loss:
            if populated and target.not_null:
                msg = (
                    f"cannot change column {column.name} from {live.type} to {target.type}: the "
                    "existing vectors cannot be converted and the column is NOT NULL; make the "
                    "field optional for this migration or empty the column first"
                )
                raise self.fail(msg, column.name)
            using = sql.SQL("NULL")
            if populated:
                words += "; existing vectors set to NULL (allow_data_loss)"
        else:
            how = "rounds every element to float16" if castable else "cannot convert them"
            msg = (
                f"cannot change column {column.name} from {live.type} to {target.type}: the "
                f"table holds vectors and the change {how}; pass allow_data_loss=True to "
                f"{'round them' if castable else 'set them to NULL'}"
            )
            raise self.fail(msg, column.name)
        alter = _alter_column(
            self.ident, column.name, sql.SQL("TYPE {} USING {}").format(column.type.ddl, using)
        )
        return _step(words, *pre, alter, rewrites=True)

    def plan_default(
        self, column: Column, live: LiveColumn, target: LiveColumn, current: str | None
    ) -> None:
        clause = ddl.default_clause(column)
        if target.default is not None and clause is not None:
            self.steps.append(
                _step(
                    f"set default of column {column.name} to {clause.as_string(None)}",
                    _alter_column(
                        self.ident, column.name, sql.SQL("SET DEFAULT {}").format(clause)
                    ),
                )
            )
        elif current is not None and self.owned_default(live):
            self.steps.append(
                _step(
                    f"drop default {current} of column {column.name}",
                    _alter_column(self.ident, column.name, sql.SQL("DROP DEFAULT")),
                )
            )
        elif current is not None:
            self.notes.append(
                f"kept default {current} of column {column.name}, which the model does not set"
            )

    def plan_type(
        self, column: Column, live: LiveColumn, target: LiveColumn, *, drop_default: bool
    ) -> None:
        pre: list[Statement] = []
        if drop_default:
            pre.append(_alter_column(self.ident, column.name, sql.SQL("DROP DEFAULT")))
        words = f"change type of column {column.name} from {live.type} to {target.type}"
        if live.type_name in _vector.KINDS and target.type_name in _vector.KINDS:
            self.steps.append(self.vector_step(column, live, target, pre, words))
            return
        if column.type.compressed and live.category == _ARRAY:
            self.steps.append(self.convert_step(column, live, target, pre, encode=True))
            return
        if live.type_name == "bytea" and target.category == _ARRAY:
            self.steps.append(self.convert_step(column, live, target, pre, encode=False))
            return
        name = sql.Identifier(column.name)
        using = _using(live, target, column.type.ddl)
        alter = _alter_column(
            self.ident,
            column.name,
            sql.SQL("TYPE {} USING {}").format(column.type.ddl, using(name)),
        )
        lossless: Statement | None = None
        string_to_other = live.category == _STRING and target.category != _STRING
        if not self.options.allow_data_loss and not string_to_other:
            back = _using(target, live, live.type_sql())
            lossless = Statement(
                sql.SQL(
                    "SELECT {c}::text, ({new})::text FROM {t} WHERE {c} IS NOT NULL"
                    " AND ({back}) IS DISTINCT FROM {c} LIMIT 1"
                ).format(c=name, new=using(name), t=self.ident, back=back(using(name)))
            )
        check = CastCheck(
            table=self.label,
            column=column.name,
            source=live.type,
            target=target.type,
            lossless=lossless,
            scan=sql.SQL("SELECT {c} AS v FROM {t} WHERE {c} IS NOT NULL").format(
                c=name, t=self.ident
            ),
            test=sql.SQL("SELECT {}").format(using(sql.SQL("$1"))),
            alter=alter,
        )
        shown = [*pre, *([lossless] if lossless is not None else []), alter]
        self.steps.append(
            MigrationStep(
                words,
                _render(*shown),
                rewrites=self.cast_rewrites(live, target),
                actions=(*(Run(s) for s in pre), check),
            )
        )

    def cast_rewrites(self, live: LiveColumn, target: LiveColumn) -> bool:
        if live.type_oid == target.type_oid:
            if target.typmod < 0:
                return live.type_name not in ("varchar", "numeric", "varbit")
            if live.typmod < 0:
                return True
            if live.type_name == "varchar":
                return target.typmod < live.typmod
            if live.type_name == "numeric":
                # typmod = ((precision << 16) | scale) + 4: same scale, no smaller precision.
                old, new = live.typmod - 4, target.typmod - 4
                return (old & 0xFFFF) != (new & 0xFFFF) or (new >> 16) < (old >> 16)
            return True
        return not (
            target.typmod < 0 and self.probe.binary_coercible(live.type_oid, target.type_oid)
        )

    def convert_step(
        self,
        column: Column,
        live: LiveColumn,
        target: LiveColumn,
        pre: list[Statement],
        *,
        encode: bool,
    ) -> MigrationStep:
        name = sql.Identifier(column.name)
        ddl_type = column.type.ddl
        dtype = None
        if encode:
            dtype = _ARRAY_DTYPES.get(live.type_name)
            if dtype is None:
                msg = f"cannot compress column {column.name}: {live.type} is not a numeric array"
                raise self.fail(msg, column.name)
        create = Statement(
            sql.SQL("CREATE TEMP TABLE {} (k text, v {}) ON COMMIT DROP").format(STAGE, ddl_type)
        )
        copy = sql.SQL("COPY {} (k, v) FROM STDIN (FORMAT BINARY)").format(STAGE)
        index = Statement(sql.SQL("CREATE INDEX ON {} (k)").format(STAGE))
        function = Statement(
            sql.SQL(
                "CREATE FUNCTION {}(text) RETURNS {} LANGUAGE sql STABLE"
                " AS 'SELECT v FROM pg_temp.orso_pg_stage WHERE k = $1'"
            ).format(CONVERT_FN, ddl_type)
        )
        alter = _alter_column(
            self.ident,
            column.name,
            sql.SQL("TYPE {} USING {}(ctid::text)").format(ddl_type, CONVERT_FN),
        )
        cleanup = (
            Statement(sql.SQL("DROP FUNCTION {}(text)").format(CONVERT_FN)),
            Statement(sql.SQL("DROP TABLE {}").format(STAGE)),
        )
        select = Statement(
            sql.SQL("SELECT ctid::text, {c} FROM {t} WHERE {c} IS NOT NULL").format(
                c=name, t=self.ident
            )
        )
        action = Convert(
            table=self.label,
            column=column,
            source_dtype=dtype,
            select=select,
            before=(*pre, create),
            copy=copy,
            after=(index, function, alter, *cleanup),
        )
        how = "compress" if encode else "decompress"
        return MigrationStep(
            f"{how} column {column.name} ({live.type} to {target.type}), converting every row",
            _render(*pre, create, select, copy, index, function, alter, *cleanup),
            rewrites=True,
            actions=(action,),
        )

    # -- enum members (a CHECK constraint per enum column, named by ddl.enum_check_name)

    def enum_check_kept(self, con: LiveConstraint) -> bool:
        """Whether the live enum check *con* is the one the model's table has (same text)."""
        if len(con.columns) != 1 or con.columns[0] in self.renames:
            return False
        want = next((c for c in self.target.of_kind("c") if c.name == con.name), None)
        return (
            want is not None and want.columns == con.columns and want.definition == con.definition
        )

    def plan_enum_checks_drop(self) -> None:
        """Drop the enum checks whose members changed or whose column is no enum any more.

        Only constraints named as orso_pg names an enum check on that very column are
        touched: checks added by hand are kept.
        """
        for con in self.live.of_kind("c"):
            if len(con.columns) != 1 or con.name != ddl.enum_check_name(con.columns[0]):
                continue
            if self.involves_extra(con.columns) or self.enum_check_kept(con):
                continue
            self.steps.append(
                _step(
                    f"drop enum check {con.name} on column {self.now(con.columns[0])}",
                    _alter(
                        self.ident, sql.SQL("DROP CONSTRAINT {}").format(sql.Identifier(con.name))
                    ),
                )
            )

    def plan_enum_checks_add(self) -> None:
        kept = {con.name for con in self.live.of_kind("c") if self.enum_check_kept(con)}
        for column in self.meta.columns:
            check = ddl.enum_check(column)
            if check is None or ddl.enum_check_name(column.name) in kept:
                continue
            choices = sorted(column.type.choices or ())
            live = self.live_for(column)
            if live is not None:
                outside = self.probe.values_outside(live.name, choices)
                if outside:
                    shown = ", ".join(repr(v) for v in outside)
                    msg = (
                        f"cannot hold column {column.name} to the members of "
                        f"{column.type.python.__name__}: rows hold {shown}; update or delete "
                        "those rows first, or add the members back to the enum"
                    )
                    raise self.fail(msg, column.name, outside[0])
            self.late.append(
                _step(
                    f"add enum check on column {column.name} ({', '.join(choices)})",
                    _alter(self.ident, sql.SQL("ADD {}").format(check)),
                )
            )

    # -- constraints and indexes that arrive

    def plan_unique_add(self) -> None:
        have = {frozenset(self.now(c) for c in con.columns) for con in self.live.of_kind("u")}
        have.add(frozenset(self.target.primary_key))
        have.update(
            frozenset(self.now(c) for c in idx.columns)
            for idx in self.live.indexes
            if idx.unique and idx.valid and not idx.custom
        )
        for key in self.meta.unique_keys:
            if frozenset(key) in have:
                continue
            self.late.append(
                _step(
                    f"add unique constraint ({', '.join(key)})",
                    _alter(self.ident, sql.SQL("ADD UNIQUE ({})").format(_names(key))),
                )
            )

    def plan_index_add(self) -> None:
        have = {
            (
                tuple(self.now(c) for c in idx.columns),
                idx.method,
                idx.unique,
                idx.opclass,
                idx.params,
            )
            for idx in self.live.indexes
            if idx.valid and not idx.custom and not idx.constraint
        }
        planned: set[str] = set()
        invalid = {i.name for i in self.live.indexes if not i.valid}
        for index in self.meta.indexes:
            if _model_index_key(index) in have:
                continue
            name = index_name(
                self.live.name,
                index,
                lambda n: n in planned or (n not in invalid and self.probe.name_taken(n)),
            )
            planned.add(name)
            concurrent = self.options.concurrent_indexes
            stmt = ddl.create_index(
                self.meta, index, self.table_name, name=name, concurrently=concurrent
            )
            words = f"create {_index_words(index)} {name} on ({', '.join(index.columns)})"
            if not concurrent:
                self.late.append(_step(words, stmt))
                continue
            plain = ddl.create_index(self.meta, index, self.table_name, name=name)
            build = BuildIndex(self.label, self.live.schema, name, stmt, plain)
            self.late.append(
                MigrationStep(
                    words + " concurrently, after the transaction",
                    stmt.as_string(),
                    transactional=False,
                    actions=(build,),
                )
            )

    def plan_composite_fk_add(self) -> None:
        have = [
            (self.live_fk_spec(con), con.ref_schema)
            for con in self.live.of_kind("f")
            if len(con.columns) > 1 and con.ref_table is not None
        ]
        for fk in self.meta.foreign_keys:
            spec = _composite_fk_spec(fk)
            if any(spec == live and fk.ref_schema in (None, schema) for live, schema in have):
                continue
            self.late.append(
                _step(
                    f"add foreign key ({', '.join(fk.columns)}) -> "
                    f"{fk.ref_schema + '.' if fk.ref_schema else ''}{fk.ref_table} "
                    f"({', '.join(fk.ref_columns)})",
                    _alter(
                        self.ident,
                        sql.SQL("ADD {}").format(ddl.foreign_key_constraint(fk)),
                    ),
                )
            )

    def plan_fk_add(self) -> None:
        self.plan_composite_fk_add()
        have = [
            con
            for con in self.live.of_kind("f")
            if len(con.columns) == 1 and con.ref_table is not None
        ]
        for column in self.meta.columns:
            if column.ref_table is None or any(self.fk_is(column, con) for con in have):
                continue
            self.late.append(
                _step(
                    f"add foreign key {column.name} -> "
                    f"{column.ref_schema + '.' if column.ref_schema else ''}{column.ref_table}."
                    f"{column.ref_column or 'id'}",
                    _alter(
                        self.ident,
                        sql.SQL("ADD FOREIGN KEY ({}){}").format(
                            sql.Identifier(column.name), ddl.references(column)
                        ),
                    ),
                )
            )


_ARRAY_DTYPES: Final = {
    "_int8": "int64",
    "_int4": "int32",
    "_int2": "int16",
    "_float8": "float64",
    "_float4": "float32",
    "_bool": "bool",
}


def _using(
    source: LiveColumn, target: LiveColumn, target_sql: sql.Composable
) -> Callable[[sql.Composable], sql.Composable]:
    """Return how a value of *source*'s type becomes *target*'s in a ``USING`` clause."""
    if {source.type_name, target.type_name} == _TIMESTAMPS and source.type_name != target.type_name:
        # Stored timestamps without a zone are read as UTC, whatever the session's zone.
        return lambda value: sql.SQL("({}) AT TIME ZONE 'UTC'").format(value)
    return lambda value: sql.SQL("({})::{}").format(value, target_sql)


def column_default(meta: TableMeta, column: Column) -> tuple[bool, Any]:
    """Return ``(True, value)`` when the model field has a default value, else ``(False, None)``."""
    field = attrs.fields_dict(meta.cls).get(column.name)
    if field is None or field.default is attrs.NOTHING:
        return False, None
    default: Any = field.default
    if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
        if default.takes_self:
            return False, None
        return True, default.factory()
    return True, default


def plan_table(
    meta: TableMeta,
    table_name: str | None,
    label: str,
    live: LiveTable,
    target: LiveTable,
    previous: dict[str, Any] | None,
    probe: Probe,
    options: PlanOptions,
) -> TablePlan:
    """Return the steps that bring *live* in line with the model.

    Args:
        meta: The model.
        table_name: The table name given to ``migration()``, or None for the model's own.
        label: The table's name for messages.
        live: The table as it is.
        target: The model's table as PostgreSQL builds it (a temporary copy).
        previous: What the last migration of this table recorded (:func:`describe`), if any.
        probe: Answers the questions about the live data the plan depends on.
        options: What the migration may do.

    Raises:
        MigrationError: the model asks for something that cannot be done without losing
            data or that is not done automatically; nothing has run.
    """
    planner = _Planner(
        meta=meta,
        table_name=table_name,
        label=label,
        ident=meta.qualified(table_name),
        live=live,
        target=target,
        previous=previous,
        probe=probe,
        options=options,
    )
    return planner.run()
