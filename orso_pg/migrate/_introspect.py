"""Reading a live table's shape from ``pg_catalog``.

Owns the catalog queries migrations diff against: a table's columns (with PostgreSQL's own
spelling of their types from ``format_type``, nullability, defaults, identity), its primary key,
unique, foreign key and check constraints, the foreign keys of other tables that point at it,
and its indexes (with their validity). It reads through an
:class:`~orso_pg._executor.Executor` and must not change anything, decide what a difference
means (``_planner`` does) nor touch a connection itself.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import attrs
from psycopg import sql

from orso_pg._compiler import Statement
from orso_pg._executor import Executor

__all__ = [
    "InboundKey",
    "LiveColumn",
    "LiveConstraint",
    "LiveIndex",
    "LiveTable",
    "read_table",
    "read_table_oid",
]

# pg_constraint.confdeltype -> the ON DELETE action it stands for.
ON_DELETE: Mapping[str, str] = {
    "a": "NO ACTION",
    "r": "RESTRICT",
    "c": "CASCADE",
    "n": "SET NULL",
    "d": "SET DEFAULT",
}

_MODIFIERS = re.compile(r"\((\d+(?:,\d+)*)\)")


@attrs.frozen
class LiveColumn:
    """One column as PostgreSQL describes it.

    Attributes:
        name: The column name.
        type: The type as ``format_type`` spells it, e.g. ``character varying(20)``.
        type_oid: The type's OID.
        type_schema: The schema of the type.
        type_name: The type's internal name (``int8``, ``_float8``, ``varchar``).
        typmod: The type modifier, -1 when there is none.
        category: ``pg_type.typcategory``: ``S`` strings, ``A`` arrays, ``N`` numbers...
        not_null: The column is NOT NULL.
        default: The default expression as ``pg_get_expr`` prints it, or None.
        identity: ``""``, ``"a"`` (ALWAYS) or ``"d"`` (BY DEFAULT).
        generated: ``""``, or ``"s"`` for a stored generated column.
    """

    name: str
    type: str
    type_oid: int
    type_schema: str
    type_name: str
    typmod: int
    category: str
    not_null: bool
    default: str | None
    identity: str = ""
    generated: str = ""

    def type_sql(self) -> sql.Composable:
        """Return this column's type as SQL, built from its catalog name and modifiers."""
        name = sql.Identifier(self.type_schema, self.type_name)
        if self.typmod < 0:
            return name
        found = _MODIFIERS.search(self.type)
        if found is None:
            return name
        numbers = [sql.Literal(int(n)) for n in found.group(1).split(",")]
        return sql.Composed([name, sql.SQL("("), sql.SQL(", ").join(numbers), sql.SQL(")")])


@attrs.frozen
class LiveConstraint:
    """A primary key (``p``), unique (``u``), foreign key (``f``) or check (``c``) constraint.

    ``definition`` is the constraint as ``pg_get_constraintdef`` prints it.
    """

    name: str
    kind: str
    columns: tuple[str, ...]
    ref_schema: str | None = None
    ref_table: str | None = None
    ref_columns: tuple[str, ...] = ()
    on_delete: str = "NO ACTION"
    definition: str = ""


@attrs.frozen
class LiveIndex:
    """An index of the table.

    Attributes:
        name: The index name.
        columns: The key columns, in order (expression keys are left out).
        method: The access method (``btree``, ``brin``...).
        unique: A unique index.
        primary: The primary key's index.
        valid: False for an index a failed ``CREATE INDEX CONCURRENTLY`` left behind.
        custom: Expressions, a predicate, INCLUDE columns or non-default ordering: never
            matched against a model index.
        constraint: The index backs a primary key, unique or exclusion constraint.
    """

    name: str
    columns: tuple[str, ...]
    method: str
    unique: bool
    primary: bool
    valid: bool
    custom: bool
    constraint: bool


@attrs.frozen
class InboundKey:
    """A foreign key of another table (or this one) that references this table."""

    name: str
    schema: str
    table: str
    columns: tuple[str, ...]
    ref_columns: tuple[str, ...]


@attrs.frozen
class LiveTable:
    """Everything migrations need to know about one existing table."""

    oid: int
    schema: str
    name: str
    columns: tuple[LiveColumn, ...]
    constraints: tuple[LiveConstraint, ...]
    indexes: tuple[LiveIndex, ...]
    inbound: tuple[InboundKey, ...]

    def column(self, name: str) -> LiveColumn | None:
        """Return the column called *name*, or None."""
        return next((c for c in self.columns if c.name == name), None)

    @property
    def primary_key(self) -> tuple[str, ...]:
        """The primary key's columns (empty without one)."""
        found = next((c for c in self.constraints if c.kind == "p"), None)
        return found.columns if found is not None else ()

    def of_kind(self, kind: str) -> tuple[LiveConstraint, ...]:
        """Return the constraints of one kind (``p``, ``u``, ``f`` or ``c``)."""
        return tuple(c for c in self.constraints if c.kind == kind)


_FIND = sql.SQL(
    "SELECT c.oid::int8, n.nspname::text FROM pg_catalog.pg_class c"
    " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
    " WHERE c.relname = %s AND n.nspname = coalesce(%s, current_schema())"
    " AND c.relkind IN ('r', 'p')"
)

_BY_OID = sql.SQL(
    "SELECT c.oid::int8, n.nspname::text, c.relname::text FROM pg_catalog.pg_class c"
    " JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = %s::oid"
)

_COLUMNS = sql.SQL(
    "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.atttypid::int8,"
    " tn.nspname::text, t.typname::text, a.atttypmod, t.typcategory::text, a.attnotnull,"
    " pg_get_expr(d.adbin, d.adrelid), a.attidentity::text, a.attgenerated::text"
    " FROM pg_catalog.pg_attribute a"
    " JOIN pg_catalog.pg_type t ON t.oid = a.atttypid"
    " JOIN pg_catalog.pg_namespace tn ON tn.oid = t.typnamespace"
    " LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
    " WHERE a.attrelid = %s::oid AND a.attnum > 0 AND NOT a.attisdropped"
    " ORDER BY a.attnum"
)

# Column names of a constraint's key, in key order.
_CONSTRAINTS = sql.SQL(
    "SELECT con.conname::text, con.contype::text,"
    " ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY AS k(num, ord)"
    "  JOIN pg_catalog.pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.num"
    "  ORDER BY k.ord),"
    " rn.nspname::text, rc.relname::text,"
    " ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY AS k(num, ord)"
    "  JOIN pg_catalog.pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.num"
    "  ORDER BY k.ord),"
    " con.confdeltype::text, pg_get_constraintdef(con.oid)"
    " FROM pg_catalog.pg_constraint con"
    " LEFT JOIN pg_catalog.pg_class rc ON rc.oid = con.confrelid"
    " LEFT JOIN pg_catalog.pg_namespace rn ON rn.oid = rc.relnamespace"
    " WHERE con.conrelid = %s::oid AND con.contype IN ('p', 'u', 'f', 'c')"
    " ORDER BY con.conname"
)

_INBOUND = sql.SQL(
    "SELECT con.conname::text, cn.nspname::text, cc.relname::text,"
    " ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY AS k(num, ord)"
    "  JOIN pg_catalog.pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.num"
    "  ORDER BY k.ord),"
    " ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY AS k(num, ord)"
    "  JOIN pg_catalog.pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.num"
    "  ORDER BY k.ord)"
    " FROM pg_catalog.pg_constraint con"
    " JOIN pg_catalog.pg_class cc ON cc.oid = con.conrelid"
    " JOIN pg_catalog.pg_namespace cn ON cn.oid = cc.relnamespace"
    " WHERE con.confrelid = %s::oid AND con.contype = 'f'"
    " ORDER BY cn.nspname, cc.relname, con.conname"
)

_INDEXES = sql.SQL(
    "SELECT ic.relname::text,"
    " ARRAY(SELECT a.attname::text FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(num, ord)"
    "  JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.num"
    "  WHERE k.ord <= i.indnkeyatts ORDER BY k.ord),"
    " am.amname::text, i.indisunique, i.indisprimary, i.indisvalid,"
    " (i.indexprs IS NOT NULL OR i.indpred IS NOT NULL OR i.indnatts <> i.indnkeyatts"
    "  OR EXISTS (SELECT 1 FROM unnest(i.indoption::int2[]) AS o(flag) WHERE o.flag <> 0)),"
    " EXISTS (SELECT 1 FROM pg_catalog.pg_constraint c WHERE c.conindid = i.indexrelid"
    "  AND c.conrelid = i.indrelid AND c.contype IN ('p', 'u', 'x'))"
    " FROM pg_catalog.pg_index i"
    " JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid"
    " JOIN pg_catalog.pg_am am ON am.oid = ic.relam"
    " WHERE i.indrelid = %s::oid ORDER BY ic.relname"
)


def read_table(ex: Executor, name: str, schema: str | None) -> LiveTable | None:
    """Return table *name* of *schema* (the connection's current schema when None), or None."""
    row = ex.fetch_one(Statement(_FIND, (name, schema)), table=name)
    if row is None:
        return None
    return _read(ex, int(row[0]), str(row[1]), name)


def read_table_oid(ex: Executor, oid: int) -> LiveTable:
    """Return the table whose OID is *oid* (it must exist)."""
    row = ex.fetch_one(Statement(_BY_OID, (oid,)))
    assert row is not None  # noqa: S101 - the caller just created or found the table
    return _read(ex, oid, str(row[1]), str(row[2]))


def _read(ex: Executor, oid: int, schema: str, name: str) -> LiveTable:
    params = (oid,)
    columns = tuple(
        LiveColumn(
            name=r[0],
            type=r[1],
            type_oid=int(r[2]),
            type_schema=r[3],
            type_name=r[4],
            typmod=int(r[5]),
            category=r[6],
            not_null=bool(r[7]),
            default=r[8],
            identity=r[9] or "",
            generated=r[10] or "",
        )
        for r in ex.fetch_all(Statement(_COLUMNS, params), table=name)
    )
    constraints = tuple(
        LiveConstraint(
            name=r[0],
            kind=r[1],
            columns=tuple(r[2]),
            ref_schema=r[3],
            ref_table=r[4],
            ref_columns=tuple(r[5]),
            on_delete=ON_DELETE.get(r[6] or "a", "NO ACTION"),
            definition=r[7] or "",
        )
        for r in ex.fetch_all(Statement(_CONSTRAINTS, params), table=name)
    )
    inbound = tuple(
        InboundKey(name=r[0], schema=r[1], table=r[2], columns=tuple(r[3]), ref_columns=tuple(r[4]))
        for r in ex.fetch_all(Statement(_INBOUND, params), table=name)
    )
    indexes = tuple(
        LiveIndex(
            name=r[0],
            columns=tuple(r[1]),
            method=r[2],
            unique=bool(r[3]),
            primary=bool(r[4]),
            valid=bool(r[5]),
            custom=bool(r[6]),
            constraint=bool(r[7]),
        )
        for r in ex.fetch_all(Statement(_INDEXES, params), table=name)
    )
    return LiveTable(oid, schema, name, columns, constraints, indexes, inbound)
