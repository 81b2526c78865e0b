"""Expressions for set-based writes: ``qty = qty + 1`` without reading the rows first.

Owns the expression values a caller puts on the right of an assignment in ``update_where``,
in upserts' ``update_columns`` and in ``batch_update``'s ``columns`` (column references, the
incoming value of a batch, arithmetic, ``now()``, ``coalesce`` and hand-written
``psycopg.sql``), and their compilation to SQL with bound parameters. It is pure:
no connection, no I/O. Every column an expression names is checked against the model, values
are always parameters, and arithmetic is refused on columns and values it cannot mean
anything for (text, JSON, compressed arrays, None), before any SQL exists.

>>> from orso_pg import table
>>> @table("stock")
... class Stock:
...     id: int | None = None
...     qty: int
>>> ctx = ExpressionContext(meta=Stock.__orso_table__, table="stock")
>>> (col("qty") + 1).compile(ctx).as_string(), ctx.params
('("qty" + %s)', [1])
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, Final

import attrs
from psycopg import sql

from orso_pg._compiler import Statement
from orso_pg._memo import Memo
from orso_pg._schema import Column, TableMeta
from orso_pg._types import Refused
from orso_pg.errors import QueryError, ValidationError
from orso_pg.query._filters import isa

__all__ = [
    "Assignments",
    "Expr",
    "ExpressionContext",
    "assignment_sql",
    "col",
    "incoming_names",
    "is_expression",
    "set_list",
    "shape",
    "update_assignments",
    "update_statement",
    "upsert_assignments",
]

# What arithmetic may act on: numbers and times. A column of another type (text, JSON, arrays,
# compressed frames) has no `+` that means what a caller of `col(...) + 1` expects.
_ARITHMETIC_TYPES: Final = (int, float, decimal.Decimal, dt.datetime, dt.date, dt.timedelta)
_ARITHMETIC_VALUES: Final = (int, float, decimal.Decimal, dt.timedelta)
_OPERATORS: Final = {"+": " + ", "-": " - ", "*": " * ", "/": " / ", "%": " % "}


@attrs.define(kw_only=True, slots=True)
class ExpressionContext:
    """What compiling an expression needs.

    Attributes:
        meta: The model whose columns the expression names.
        table: The table name, for messages.
        params: The parameters gathered so far, in placeholder order.
        target: The column being assigned, whose type checks plain values given to
            ``coalesce`` (None outside an assignment).
        stored: Qualify column references with this table name or alias (needed where the
            incoming row is visible too: ``ON CONFLICT DO UPDATE``, ``UPDATE ... FROM``).
        incoming: What ``Expr.excluded(...)`` (the value the batch brings) reads from:
            ``EXCLUDED`` in an upsert, the staging table in a batch update; None elsewhere.
    """

    meta: TableMeta
    table: str
    params: list[Any] = attrs.Factory(list)
    target: Column | None = None
    stored: str | None = None
    incoming: sql.Composable | None = None

    def column(self, name: object) -> Column:
        """Return the model's column *name*; raise a :class:`QueryError` naming the columns."""
        if not isinstance(name, str):
            msg = f"a column name must be a str, not {type(name).__name__} {name!r}"
            raise QueryError(msg, table=self.table, value=name)
        col_ = self.meta.column(name)
        if col_.type.compressed:
            msg = f"{self.table}.{col_.name} is compressed; expressions cannot read it"
            raise QueryError(msg, table=self.table, column=col_.name)
        return col_

    def bind(self, value: object) -> sql.Composable:
        """Append *value* to the parameters; return its placeholder."""
        self.params.append(value)
        return sql.Placeholder()


class Expr:
    """A SQL expression built from column references, values and functions.

    Build them with :func:`col` (or ``Expr.col``), ``Expr.excluded``, ``Expr.now``,
    ``Expr.coalesce``, ``Expr.raw`` and the operators ``+ - * / %`` and unary ``-``. An
    expression has no truth value: ``col("a") + 1 and ...`` raises a :class:`TypeError`.
    """

    __slots__ = ()

    # --- constructors ------------------------------------------------------------------------

    @staticmethod
    def col(name: str) -> Expr:
        """Return a reference to the stored value of column *name* (of the row being written)."""
        if not isa(name, str) or not name:
            msg = f"col() needs a column name, not {name!r}"
            raise QueryError(msg, value=name)
        return ColumnRef(name)

    @staticmethod
    def excluded(name: str) -> Expr:
        """Return the value an upsert proposes for *name* (``EXCLUDED.name``); upserts only."""
        if not isa(name, str) or not name:
            msg = f"excluded() needs a column name, not {name!r}"
            raise QueryError(msg, value=name)
        return Excluded(name)

    @staticmethod
    def now() -> Expr:
        """Return ``now()``: the start time of the transaction."""
        return _NOW

    @staticmethod
    def coalesce(*items: object) -> Expr:
        """Return ``coalesce(a, b, ...)``: the first item that is not NULL.

        Plain values are checked by the assigned column's type and bound.
        """
        if len(items) < 2:  # noqa: PLR2004 - coalesce of one item is the item
            msg = f"coalesce() needs at least two items, not {len(items)}"
            raise QueryError(msg, value=items)
        return Coalesce(tuple(items))

    @staticmethod
    def raw(query: sql.Composable, params: Sequence[object] = ()) -> Expr:
        """Return hand-written SQL as an expression (``%s`` placeholders for *params*).

        Only :mod:`psycopg.sql` objects are taken, as with ``Filter.raw``: a plain str would let
        a value end up inside SQL text.
        """
        if not isa(query, sql.Composable):
            msg = "Expr.raw needs a psycopg.sql object, e.g. sql.SQL('greatest(%s, 0)'), not a str"
            raise QueryError(msg, value=query)
        if isa(params, (str, bytes)) or not isa(params, Sequence):
            msg = f"Expr.raw params must be a sequence of values, not {params!r}"
            raise QueryError(msg, value=params)
        return RawExpr(query, tuple(params))

    # --- operators ---------------------------------------------------------------------------

    def __add__(self, other: object) -> Expr:
        return Arithmetic("+", self, other)

    def __radd__(self, other: object) -> Expr:
        return Arithmetic("+", other, self)

    def __sub__(self, other: object) -> Expr:
        return Arithmetic("-", self, other)

    def __rsub__(self, other: object) -> Expr:
        return Arithmetic("-", other, self)

    def __mul__(self, other: object) -> Expr:
        return Arithmetic("*", self, other)

    def __rmul__(self, other: object) -> Expr:
        return Arithmetic("*", other, self)

    def __truediv__(self, other: object) -> Expr:
        return Arithmetic("/", self, other)

    def __rtruediv__(self, other: object) -> Expr:
        return Arithmetic("/", other, self)

    def __mod__(self, other: object) -> Expr:
        return Arithmetic("%", self, other)

    def __neg__(self) -> Expr:
        return Arithmetic("*", self, -1)

    def __bool__(self) -> bool:
        msg = (
            f"an expression has no truth value: {self!r}; "
            "expressions are values to assign, not conditions (use Filter for conditions)"
        )
        raise TypeError(msg)

    # --- compilation -------------------------------------------------------------------------

    def compile(self, ctx: ExpressionContext) -> sql.Composable:
        """Return the SQL of the expression, appending its values to ``ctx.params``."""
        raise NotImplementedError


def col(name: str) -> Expr:
    """Return a reference to the stored value of column *name* (``Expr.col``).

    >>> col("qty") + 1
    (col('qty') + 1)
    """
    return Expr.col(name)


def is_expression(value: object) -> bool:
    """Return whether *value* is an :class:`Expr` (rather than a plain value to bind)."""
    return isinstance(value, Expr)


def _numeric(ctx: ExpressionContext, c: Column, role: str) -> None:
    python = c.type.python
    if not (isinstance(python, type) and issubclass(python, _ARITHMETIC_TYPES)) or (python is bool):
        msg = (
            f"{role} {ctx.table}.{c.name} is {c.type.label}; "
            "arithmetic applies to numeric, date, time and interval columns"
        )
        raise QueryError(msg, table=ctx.table, column=c.name)


@attrs.frozen(repr=False, slots=True)
class ColumnRef(Expr):
    """The stored value of a column."""

    name: str

    def __repr__(self) -> str:
        return f"col({self.name!r})"

    def compile(self, ctx: ExpressionContext) -> sql.Composable:
        """Return the column's identifier (qualified by the table when asked to)."""
        c = ctx.column(self.name)
        if ctx.stored is None:
            return sql.Identifier(c.name)
        return sql.Identifier(ctx.stored, c.name)

    def column_of(self, ctx: ExpressionContext) -> Column:
        """Return the model column referenced."""
        return ctx.column(self.name)


@attrs.frozen(repr=False, slots=True)
class Excluded(Expr):
    """The value the batch brings for a column (``EXCLUDED.col`` in an upsert)."""

    name: str

    def __repr__(self) -> str:
        return f"excluded({self.name!r})"

    def compile(self, ctx: ExpressionContext) -> sql.Composable:
        """Return ``EXCLUDED."col"`` (or the staged value); refused outside a batch."""
        c = ctx.column(self.name)
        if ctx.incoming is None:
            msg = (
                f"excluded({self.name!r}) is the value a batch brings; it applies only in the "
                "update_columns of batch_upsert and batch_upsert_rows and the columns of "
                "batch_update"
            )
            raise QueryError(msg, table=ctx.table, column=c.name)
        return sql.SQL("{}.{}").format(ctx.incoming, sql.Identifier(c.name))

    def column_of(self, ctx: ExpressionContext) -> Column:
        """Return the model column referenced."""
        return ctx.column(self.name)


@attrs.frozen(repr=False, slots=True)
class Arithmetic(Expr):
    """``left <op> right``: numbers, dates, times and intervals."""

    op: str
    left: object
    right: object

    def __repr__(self) -> str:
        return f"({self.left!r} {self.op} {self.right!r})"

    def compile(self, ctx: ExpressionContext) -> sql.Composable:
        """Return ``(left op right)``, values bound."""
        parts = [self._operand(ctx, self.left), self._operand(ctx, self.right)]
        return sql.SQL("({})").format(sql.SQL(_OPERATORS[self.op]).join(parts))

    def _operand(self, ctx: ExpressionContext, item: object) -> sql.Composable:
        if isinstance(item, ColumnRef | Excluded):
            _numeric(ctx, item.column_of(ctx), "arithmetic on")
            return item.compile(ctx)
        if isinstance(item, Expr):
            return item.compile(ctx)
        if item is None:
            msg = (
                f"arithmetic with None in {self!r} would set NULL; "
                "use Expr.coalesce(col(...), 0) to give NULL a value"
            )
            raise QueryError(msg, table=ctx.table, value=None)
        if isinstance(item, bool) or not isinstance(item, _ARITHMETIC_VALUES):
            msg = (
                f"arithmetic takes numbers, Decimals and timedeltas, "
                f"not {type(item).__name__} {item!r}"
            )
            raise QueryError(msg, table=ctx.table, value=item)
        return ctx.bind(item)


@attrs.frozen(repr=False, slots=True)
class Coalesce(Expr):
    """``coalesce(a, b, ...)``."""

    items: tuple[object, ...]

    def __repr__(self) -> str:
        return "coalesce(" + ", ".join(map(repr, self.items)) + ")"

    def compile(self, ctx: ExpressionContext) -> sql.Composable:
        """Return ``coalesce(...)``; plain values are checked by the assigned column's type."""
        parts: list[sql.Composable] = []
        for item in self.items:
            if isinstance(item, Expr):
                parts.append(item.compile(ctx))
            else:
                parts.append(ctx.bind(_dump(ctx, item)))
        return sql.SQL("coalesce({})").format(sql.SQL(", ").join(parts))


def _dump(ctx: ExpressionContext, value: object) -> object:
    target = ctx.target
    if target is None or value is None:
        return value
    try:
        return target.type.dump(value)
    except Refused as exc:
        msg = f"{ctx.table}.{target.name} = {value!r}: {exc}"
        raise ValidationError(msg, table=ctx.table, column=target.name, value=value) from None


@attrs.frozen(repr=False, slots=True)
class _Now(Expr):
    def __repr__(self) -> str:
        return "now()"

    def compile(self, ctx: ExpressionContext) -> sql.Composable:  # noqa: ARG002 - no values
        """Return ``now()``."""
        return sql.SQL("now()")


_NOW: Final = _Now()


@attrs.frozen(repr=False, slots=True, eq=False)
class RawExpr(Expr):
    """Hand-written SQL with its parameters (from :meth:`Expr.raw`)."""

    query: sql.Composable
    params: tuple[Any, ...]

    def __repr__(self) -> str:
        return f"Expr.raw({self.query!r}, {self.params!r})"

    def compile(self, ctx: ExpressionContext) -> sql.Composable:
        """Return the SQL as given, in parentheses."""
        ctx.params.extend(self.params)
        return sql.SQL("({})").format(self.query)


def assignment_sql(ctx: ExpressionContext, target: Column, value: Expr) -> sql.Composable:
    """Return ``"col" = <expression>`` for an assignment of *value* to *target*.

    Compressed columns take only values (their frames are encoded in Python).
    """
    if target.type.compressed:
        msg = f"{ctx.table}.{target.name} is compressed; it takes values, not expressions"
        raise QueryError(msg, table=ctx.table, column=target.name)
    ctx.target = target
    try:
        expr = value.compile(ctx)
    finally:
        ctx.target = None
    return sql.SQL("{} = {}").format(sql.Identifier(target.name), expr)


def shape(value: object) -> Hashable | None:
    """Return what the SQL text of *value* depends on (not its bound values), for caching.

    None means the text cannot be cached (hand-written SQL is not a value that can be compared).
    """
    if isinstance(value, ColumnRef):
        return ("col", value.name)
    if isinstance(value, Excluded):
        return ("excluded", value.name)
    if isinstance(value, Arithmetic):
        parts = (shape(value.left), shape(value.right))
        return None if None in parts else ("op", value.op, *parts)
    if isinstance(value, Coalesce):
        items = tuple(map(shape, value.items))
        return None if None in items else ("coalesce", *items)
    if isinstance(value, _Now):
        return ("now",)
    if isinstance(value, RawExpr):
        return None
    return "value"


# Statements of expression updates, per model, table, assignment shapes and WHERE fragment.
_UPDATES: Final[Memo[sql.Composable]] = Memo()


def update_statement(
    meta: TableMeta,
    table_name: str | None,
    label: str,
    assignments: Sequence[tuple[Column, object]],
    where: sql.Composable | None,
    where_params: tuple[Any, ...],
) -> Statement:
    """Return ``UPDATE t SET a = <expr or %s>, ... [, updated_at = now()] [WHERE ...]``.

    *assignments* pairs each column with an :class:`Expr` or an already dumped value.
    ``updated_at`` is set to ``now()`` unless it is assigned.
    """
    ctx = ExpressionContext(meta=meta, table=label)
    parts: list[sql.Composable] = []
    for target, value in assignments:
        if isinstance(value, Expr):
            parts.append(assignment_sql(ctx, target, value))
        else:
            parts.append(sql.SQL("{} = {}").format(sql.Identifier(target.name), ctx.bind(value)))
    names = {c.name for c, _ in assignments}
    if meta.updated_at is not None and meta.updated_at.name not in names:
        parts.append(sql.SQL("{} = now()").format(sql.Identifier(meta.updated_at.name)))
    shapes = tuple((c.name, shape(v)) for c, v in assignments)
    cacheable = all(s is not None for _, s in shapes)
    query: sql.Composable | None = None
    key = ("update", meta, table_name, shapes)
    if cacheable:
        query = _UPDATES.get(key, (where,))
    if query is None:
        head = sql.SQL("UPDATE {} SET {}").format(
            meta.qualified(table_name), sql.SQL(", ").join(parts)
        )
        query = head if where is None else sql.SQL("{} WHERE {}").format(head, where)
        if cacheable:
            _UPDATES.put(key, query, (where,))
    return Statement(query, (*ctx.params, *where_params))


# An upsert's DO UPDATE SET list, compiled once per batch, and its parameters.
Assignments = tuple[sql.Composable, tuple[Any, ...]]
UpdateColumns = Sequence[str] | Mapping[str, object]


def upsert_assignments(meta: TableMeta, label: str, values: Mapping[str, object]) -> Assignments:
    """Compile an upsert's ``update_columns`` mapping (column to expression or value).

    Column references are qualified by the table (``"trades"."qty"``), since the proposed row
    (``Expr.excluded``) is visible too; ``updated_at`` is set to ``now()`` unless assigned.
    """
    ctx = ExpressionContext(meta=meta, table=label, stored=label, incoming=sql.SQL("EXCLUDED"))
    return set_list(ctx, values, "update_columns")


def set_list(ctx: ExpressionContext, values: Mapping[str, object], what: str) -> Assignments:
    """Compile ``"col" = <expression or %s>, ... [, updated_at = now()]`` from *values*."""
    meta = ctx.meta
    if not values:
        msg = f"{what} maps at least one column to its new value"
        raise QueryError(msg, table=ctx.table, value=values)
    parts: list[sql.Composable] = []
    for name, value in values.items():
        target = ctx.column(name)
        if isinstance(value, Expr):
            parts.append(assignment_sql(ctx, target, value))
        else:
            ctx.target = target
            parts.append(
                sql.SQL("{} = {}").format(sql.Identifier(target.name), ctx.bind(_dump(ctx, value)))
            )
            ctx.target = None
    if meta.updated_at is not None and meta.updated_at.name not in values:
        parts.append(sql.SQL("{} = now()").format(sql.Identifier(meta.updated_at.name)))
    return sql.SQL(", ").join(parts), tuple(ctx.params)


def incoming_names(value: object) -> set[str]:
    """Return the columns whose incoming values (``Expr.excluded``) *value* reads."""
    if isinstance(value, Excluded):
        return {value.name}
    if isinstance(value, Arithmetic):
        return incoming_names(value.left) | incoming_names(value.right)
    if isinstance(value, Coalesce):
        return set().union(*map(incoming_names, value.items))
    return set()


def update_assignments(meta: TableMeta, label: str, values: Mapping[str, object]) -> Assignments:
    """Compile ``batch_update``'s ``columns`` mapping for ``UPDATE <t> AS t ... FROM <stage> AS s``.

    ``col(name)`` reads the stored row (``t``), ``Expr.excluded(name)`` the row the batch
    brings (``s``).
    """
    ctx = ExpressionContext(meta=meta, table=label, stored="t", incoming=sql.Identifier("s"))
    return set_list(ctx, values, "columns")
