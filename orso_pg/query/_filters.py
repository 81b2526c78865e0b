"""Filters, sorts and search: query values and their compilation to ``WHERE`` / ``ORDER BY``.

Owns the filter tree (``Filter.eq(...) & ~Filter.is_null(...) | ...``), :class:`Sort`,
:class:`SearchFilter` and :class:`Aggregate`, and turns them into :mod:`psycopg.sql` fragments
with bound parameters. It is pure: no connection, no I/O. Every column name is checked against the
model before it reaches SQL, and every value goes through the column's own check, so a filter on a
TIMESTAMPTZ column refuses a naive datetime just as an insert does. An operator that does not fit
the column's type (LIKE on a number, ``any`` on a scalar, ``has_key`` outside JSONB, anything but
a NULL test on a compressed column) is a :class:`QueryError` here, not a server error later.
The SQL of a filter shape (its columns and operators, not its values) and of a list of sorts is
composed once per model and handed back as the same object afterwards; values are checked and
bound on every call.

Semantics follow SQL: comparisons with NULL are unknown, ``~`` of unknown is unknown, and a row
matches only when the whole filter is true. Two conveniences differ from raw SQL:
``Filter.eq(col, None)`` means ``col IS NULL`` (and ``ne`` means ``IS NOT NULL``), and
``in_values`` with an empty list matches nothing (``not_in_values`` with one matches every row).

>>> f = Filter.eq("symbol", "BTC") & Filter.between("price", 1, 2) | ~Filter.is_null("qty")
>>> f
Or(And(Condition('symbol', 'eq', ('BTC',)), Condition('price', 'between', (1, 2))), \
Not(Condition('qty', 'is_null', ())))
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any, ClassVar, Final, Literal, cast

import attrs
from psycopg import sql

from orso_pg import _types
from orso_pg._memo import Memo
from orso_pg._schema import Column, TableMeta
from orso_pg._types import Refused
from orso_pg.errors import QueryError, ValidationError

__all__ = [
    "Aggregate",
    "And",
    "Condition",
    "Filter",
    "Not",
    "Or",
    "Raw",
    "SearchFilter",
    "Sort",
    "SortOrder",
]

Resolver = Callable[[str], tuple[sql.Composable, "Column | None"]]


def isa(value: object, kind: type | tuple[type, ...]) -> bool:
    """Return ``isinstance(value, kind)``, for checking arguments of callers without types.

    A plain ``isinstance`` on an annotated parameter is "unreachable" to mypy; this keeps the
    runtime check (and its clear error) for callers who pass the wrong thing anyway.
    """
    return isinstance(value, kind)


class Filter:
    """A condition on rows; build one with the static constructors and combine with ``& | ~``."""

    __slots__ = ()

    def __and__(self, other: Filter) -> Filter:
        if not isa(other, Filter):
            return NotImplemented
        return And((*_flatten(self, And), *_flatten(other, And)))

    def __or__(self, other: Filter) -> Filter:
        if not isa(other, Filter):
            return NotImplemented
        return Or((*_flatten(self, Or), *_flatten(other, Or)))

    def __invert__(self) -> Filter:
        return Not(self)

    def __bool__(self) -> bool:
        # Python's `and`/`or`/`not` would ask a filter for its truth and silently keep one
        # side (`Filter.eq(...) and Filter.gt(...)` is just the second): refuse instead.
        msg = (
            "a Filter has no truth value: combine filters with & (and), | (or) and ~ (not), "
            "not with Python's and/or/not; test for a missing filter with `is None`"
        )
        raise TypeError(msg)

    def and_with(self, other: Filter) -> Filter:
        """Return ``self & other`` (orso's ``and_with``)."""
        return self & other

    def or_with(self, other: Filter) -> Filter:
        """Return ``self | other`` (orso's ``or_with``)."""
        return self | other

    def compile(self, ctx: CompileContext) -> sql.Composable:
        """Return this filter as SQL, appending its parameters to *ctx*."""
        raise NotImplementedError

    def bind(self, ctx: CompileContext) -> None:
        """Check the values and append the parameters :meth:`compile` would, without the SQL."""
        raise NotImplementedError

    def shape(self) -> Hashable | None:
        """Return what the SQL of this filter depends on besides the model, or None.

        Two filters of equal shape compile to the same SQL text with different parameters,
        which lets :func:`compile_filter` build the text once. None means "do not reuse"
        (hand-written SQL, or arguments too odd to compare).
        """
        return None

    # --- constructors (orso's Filter::eq, ...) ------------------------------------------------

    @staticmethod
    def eq(column: str, value: object) -> Filter:
        """Match rows where *column* equals *value* (``None``: where it IS NULL)."""
        if value is None:
            return Condition(column, "is_null", ())
        return Condition(column, "eq", (value,))

    @staticmethod
    def ne(column: str, value: object) -> Filter:
        """Match rows where *column* differs from *value* (``None``: where it IS NOT NULL)."""
        if value is None:
            return Condition(column, "is_not_null", ())
        return Condition(column, "ne", (value,))

    @staticmethod
    def lt(column: str, value: object) -> Filter:
        """Match rows where *column* < *value*."""
        return Condition(column, "lt", (value,))

    @staticmethod
    def le(column: str, value: object) -> Filter:
        """Match rows where *column* <= *value*."""
        return Condition(column, "le", (value,))

    @staticmethod
    def gt(column: str, value: object) -> Filter:
        """Match rows where *column* > *value*."""
        return Condition(column, "gt", (value,))

    @staticmethod
    def ge(column: str, value: object) -> Filter:
        """Match rows where *column* >= *value*."""
        return Condition(column, "ge", (value,))

    @staticmethod
    def like(column: str, pattern: str) -> Filter:
        """Match rows where *column* LIKE *pattern* (``%`` and ``_`` are wildcards)."""
        return Condition(column, "like", (pattern,))

    @staticmethod
    def not_like(column: str, pattern: str) -> Filter:
        """Match rows where *column* NOT LIKE *pattern*."""
        return Condition(column, "not_like", (pattern,))

    @staticmethod
    def ilike(column: str, pattern: str) -> Filter:
        """Match rows where *column* ILIKE *pattern* (case-insensitive LIKE)."""
        return Condition(column, "ilike", (pattern,))

    @staticmethod
    def not_ilike(column: str, pattern: str) -> Filter:
        """Match rows where *column* NOT ILIKE *pattern*."""
        return Condition(column, "not_ilike", (pattern,))

    @staticmethod
    def in_values(column: str, values: Iterable[object]) -> Filter:
        """Match rows where *column* is one of *values* (an empty list matches nothing)."""
        return Condition(column, "in", (_values("in_values", column, values),))

    @staticmethod
    def not_in_values(column: str, values: Iterable[object]) -> Filter:
        """Match rows where *column* is none of *values* (SQL ``NOT IN`` semantics)."""
        return Condition(column, "not_in", (_values("not_in_values", column, values),))

    @staticmethod
    def is_null(column: str) -> Filter:
        """Match rows where *column* IS NULL."""
        return Condition(column, "is_null", ())

    @staticmethod
    def is_not_null(column: str) -> Filter:
        """Match rows where *column* IS NOT NULL."""
        return Condition(column, "is_not_null", ())

    @staticmethod
    def between(column: str, low: object, high: object) -> Filter:
        """Match rows where *low* <= *column* <= *high*."""
        return Condition(column, "between", (low, high))

    @staticmethod
    def not_between(column: str, low: object, high: object) -> Filter:
        """Match rows where *column* is outside [*low*, *high*]."""
        return Condition(column, "not_between", (low, high))

    @staticmethod
    def contains(column: str, value: object) -> Filter:
        """Match rows whose array or JSONB *column* contains *value* (``@>``)."""
        return Condition(column, "contains", (value,))

    @staticmethod
    def overlaps(column: str, values: Iterable[object]) -> Filter:
        """Match rows whose array *column* shares an element with *values* (``&&``)."""
        return Condition(column, "overlaps", (_values("overlaps", column, values),))

    @staticmethod
    def any(column: str, value: object) -> Filter:
        """Match rows whose array *column* has an element equal to *value*."""
        return Condition(column, "any", (value,))

    @staticmethod
    def has_key(column: str, key: str) -> Filter:
        """Match rows whose JSONB object *column* has the top-level *key*."""
        return Condition(column, "has_key", (key,))

    @staticmethod
    def json_eq(column: str, key: str, value: str | float | bool) -> Filter:
        """Match rows whose JSONB *column* has *key* with the value *value* (``->>``).

        ``->>`` gives the value as text, so *value* is compared as JSON writes it: a str as
        itself, ``True`` as ``true``, ``5`` as ``5``. A missing key or a JSON null never
        matches.
        """
        return Condition(column, "json_eq", (key, value))

    @staticmethod
    def raw(query: sql.Composable, params: Sequence[object] = ()) -> Filter:
        """Return a filter of hand-written SQL: the explicit escape hatch.

        *query* must be a :mod:`psycopg.sql` object (``sql.SQL("...")`` with ``%s``
        placeholders, ``sql.Identifier``...); a plain string is refused so that no value ends up
        inside SQL text by accident.
        """
        if not isa(query, sql.Composable):
            msg = "Filter.raw needs a psycopg.sql object, e.g. sql.SQL('x > %s'), not a str"
            raise QueryError(msg, value=query)
        return Raw(query, tuple(params))

    # --- orso's FilterOperator builders -------------------------------------------------------

    @staticmethod
    def all_of(*filters: Filter) -> Filter:
        """Return the AND of *filters* (orso's ``FilterOperator::and``); empty is always true."""
        return And(tuple(filters))

    @staticmethod
    def any_of(*filters: Filter) -> Filter:
        """Return the OR of *filters* (orso's ``FilterOperator::or``); empty is always false."""
        return Or(tuple(filters))

    @staticmethod
    def negate(f: Filter) -> Filter:
        """Return NOT *f* (orso's ``FilterOperator::negate``)."""
        return Not(f)

    and_ = all_of
    or_ = any_of


def _flatten(f: Filter, kind: type[And | Or]) -> tuple[Filter, ...]:
    return f.items if isinstance(f, kind) else (f,)


def _values(name: str, column: str, values: Iterable[object]) -> tuple[object, ...]:
    # A str is iterable too: in_values("sym", "BTC") would silently mean {"B", "T", "C"}.
    if isa(values, (str, bytes, bytearray)) or not isa(values, Iterable):
        msg = f"{name}({column!r}, ...) needs a list of values, not {values!r}"
        raise QueryError(msg, column=str(column), value=values)
    return tuple(values)


@attrs.define(kw_only=True, slots=True)
class CompileContext:
    """What compiling a filter needs: names to SQL, values to parameters.

    Attributes:
        meta: The model whose columns the filter names.
        table: The table name used in messages.
        params: The parameters gathered so far, in placeholder order.
        resolve: Maps a name in a filter to its SQL expression and column (defaults to the
            model's columns; joins and HAVING clauses widen it).
    """

    meta: TableMeta
    table: str
    params: list[Any] = attrs.Factory(list)
    resolve: Resolver | None = None

    def column(self, name: str) -> tuple[sql.Composable, Column | None]:
        """Return the SQL expression and column for *name*; raise if the model lacks it."""
        if not isa(name, str):
            msg = f"a column name must be a str, not {type(name).__name__} {name!r}"
            raise QueryError(msg, table=self.table, value=name)
        if self.resolve is not None:
            return self.resolve(name)
        col = self.meta.column(name)
        return sql.Identifier(col.name), col

    def value(self, column: Column | None, value: object) -> sql.Composable:
        """Check *value* against *column*, bind it, and return its placeholder."""
        self.bind(column, value)
        return placeholder(column)

    def bind(self, column: Column | None, value: object) -> None:
        """Check *value* against *column* and append it to the parameters."""
        self.params.append(dump_for(self, column, value))


def placeholder(column: Column | None) -> sql.Composable:
    """Return the placeholder of a value compared with *column*.

    An array column's placeholder is cast to the column's type: psycopg types a list of small
    ints as ``smallint[]``, and PostgreSQL has no ``bigint[] = smallint[]``.
    """
    if column is not None and _is_array(column):
        return sql.SQL("{}::{}").format(sql.Placeholder(), column.type.ddl)
    return sql.Placeholder()


def dump_for(ctx: CompileContext, column: Column | None, value: object) -> object:
    """Return *value* checked and converted by *column*'s type (as stored)."""
    if column is None or value is None:
        return value
    if column.type.compressed:
        msg = f"{ctx.table}.{column.name} is compressed; only is_null/is_not_null apply to it"
        raise QueryError(msg, table=ctx.table, column=column.name, value=value)
    try:
        return column.type.dump(value)
    except Refused as exc:
        msg = f"filter on {ctx.table}.{column.name} = {value!r}: {exc}"
        raise ValidationError(msg, table=ctx.table, column=column.name, value=value) from None


_BINARY: Final = {
    "eq": sql.SQL("{} = {}"),
    "ne": sql.SQL("{} <> {}"),
    "lt": sql.SQL("{} < {}"),
    "le": sql.SQL("{} <= {}"),
    "gt": sql.SQL("{} > {}"),
    "ge": sql.SQL("{} >= {}"),
    "like": sql.SQL("{} LIKE {}"),
    "not_like": sql.SQL("{} NOT LIKE {}"),
    "ilike": sql.SQL("{} ILIKE {}"),
    "not_ilike": sql.SQL("{} NOT ILIKE {}"),
}
_TEXT_OPS: Final = frozenset({"like", "not_like", "ilike", "not_ilike"})
OPERATORS: Final = frozenset(
    {
        *_BINARY,
        "in",
        "not_in",
        "is_null",
        "is_not_null",
        "between",
        "not_between",
        "contains",
        "overlaps",
        "any",
        "has_key",
        "json_eq",
    }
)


@attrs.frozen(repr=False)
class Condition(Filter):
    """One comparison of a column (a leaf of the filter tree)."""

    column: str
    op: str
    values: tuple[Any, ...]

    def __repr__(self) -> str:
        return f"Condition({self.column!r}, {self.op!r}, {self.values!r})"

    def compile(self, ctx: CompileContext) -> sql.Composable:
        """Return this comparison as SQL."""
        expr, col = ctx.column(self.column)
        # The SQL first: it refuses an operator that does not fit the column before any value
        # is checked against that column.
        text = self._sql(ctx, expr, col)
        self._bind(ctx, col)
        return text

    def bind(self, ctx: CompileContext) -> None:
        """Check the values and append their parameters."""
        self._bind(ctx, ctx.column(self.column)[1])

    def shape(self) -> Hashable | None:
        """The column and the operator: the SQL does not depend on the values."""
        if isa(self.column, str) and isa(self.op, str):
            return (self.column, self.op)
        return None

    def _sql(self, ctx: CompileContext, expr: sql.Composable, col: Column | None) -> sql.Composable:
        op = self.op
        if op in _COMPARISONS and col is not None and _types.family(col.type) == "json":
            msg = (
                f"{op} needs a type with equality and order; {ctx.table}.{self.column} is "
                "json (declare sql_type='jsonb', or compare a key with json_eq)"
            )
            raise QueryError(msg, table=ctx.table, column=self.column)
        if op in _TEXT_OPS:
            _require(ctx, self, col, _is_text(col), "a text column")
            return _BINARY[op].format(expr, sql.Placeholder())
        if op in _BINARY:
            return _BINARY[op].format(expr, placeholder(col))
        if op == "is_null":
            return sql.SQL("{} IS NULL").format(expr)
        if op == "is_not_null":
            return sql.SQL("{} IS NOT NULL").format(expr)
        if op in ("between", "not_between"):
            template = (
                sql.SQL("{} BETWEEN {} AND {}")
                if op == "between"
                else sql.SQL("{} NOT BETWEEN {} AND {}")
            )
            return template.format(expr, placeholder(col), placeholder(col))
        if op in ("in", "not_in"):
            return self._sql_in(ctx, expr, col)
        if op == "overlaps":
            _require(ctx, self, col, _is_array(col), "an array column")
            return sql.SQL("{} && {}").format(expr, placeholder(col))
        if op == "contains":
            _require(ctx, self, col, _is_array(col) or _is_json(col), "an array or JSONB column")
            return sql.SQL("{} @> {}").format(expr, placeholder(col))
        if op == "any":
            _require(ctx, self, col, _is_array(col), "an array column")
            return sql.SQL("{} = ANY({})").format(sql.Placeholder(), expr)
        if op == "has_key":
            _require(ctx, self, col, _is_json(col), "a JSONB column")
            return sql.SQL("{} ? {}").format(expr, sql.Placeholder())
        if op == "json_eq":
            _require(ctx, self, col, _is_json_text(col), "a JSON or JSONB column")
            return sql.SQL("{} ->> {} = {}").format(expr, sql.Placeholder(), sql.Placeholder())
        msg = f"unknown filter operator {op!r}"
        raise QueryError(msg, table=ctx.table, column=self.column)

    def _sql_in(
        self, ctx: CompileContext, expr: sql.Composable, col: Column | None
    ) -> sql.Composable:
        _require(ctx, self, col, not _is_array(col), "a scalar column (for arrays: overlaps)")
        # One array parameter keeps the SQL text the same whatever the list's length, and an
        # explicit element type lets an empty list or a list of NULLs through. A type the user
        # declared may carry a length or precision (varchar(3), numeric(10,2)) that a cast would
        # apply to the values, truncating or rounding them into false matches: those columns
        # get an untyped array, which PostgreSQL types from the column.
        if col is not None and col.options.sql_type is not None:
            array: sql.Composable = sql.Placeholder()
        else:
            # Binary: psycopg packs a long list of numbers far faster than it quotes text.
            array = sql.SQL("%b::{}[]").format(_column_type(ctx, col))
        if self.op == "in":
            return sql.SQL("{} = ANY({})").format(expr, array)
        return sql.SQL("{} <> ALL({})").format(expr, array)

    def _bind(self, ctx: CompileContext, col: Column | None) -> None:
        """Check the values against *col* and append them in placeholder order."""
        op, values = self.op, self.values
        if op in _TEXT_OPS or op == "has_key":
            (text,) = values
            ctx.params.append(_pattern(ctx, self, col, text))
        elif op in _BINARY or op == "contains":
            (value,) = values
            ctx.bind(col, value)
        elif op == "overlaps":
            (value,) = values
            ctx.bind(col, list(value))
        elif op in ("between", "not_between"):
            low, high = values
            ctx.bind(col, low)
            ctx.bind(col, high)
        elif op in ("in", "not_in"):
            (items,) = values
            ctx.params.append(_dump_list(ctx, col, items))
        elif op == "any":
            (value,) = values
            ctx.params.append(_element(ctx, col, value))
        elif op == "json_eq":
            key, value = values
            ctx.params.extend([_pattern(ctx, self, col, key), _json_text(ctx, self, value)])


def _dump_list(ctx: CompileContext, col: Column | None, items: Sequence[object]) -> list[Any]:
    """Return the values of an ``in_values`` list checked by *col*'s type.

    A list of plain ints for a BIGINT column, the common case of id lists, is checked as a
    whole (type and range) instead of value by value.
    """
    if col is not None and col.type is _types.BIGINT and all(type(v) is int for v in items):
        ints = cast("list[int]", list(items))
        if not ints or (min(ints) >= _types.INT8_MIN and max(ints) <= _types.INT8_MAX):
            return ints
    return [dump_for(ctx, col, v) for v in items]


# Operators are checked against the column's SQL type family (orso_pg._types.family), which
# follows a declared sql_type: a str column stored as uuid is no text column. A type orso_pg
# does not know ("other": a domain, an extension's type) is left to the server.


def _is_text(col: Column | None) -> bool:
    if col is None:
        return True
    python = col.type.python
    textual = python is str or (isinstance(python, type) and issubclass(python, enum.Enum))
    return textual and _types.family(col.type) in ("text", "other")


def _is_array(col: Column | None) -> bool:
    return (
        col is not None
        and col.type.copy_name.endswith("[]")
        and _types.family(col.type) in ("array", "other")
    )


def _is_json(col: Column | None) -> bool:
    # jsonb only: plain json has no @>, ? nor equality.
    return col is not None and _types.family(col.type) == "jsonb"


def _is_json_text(col: Column | None) -> bool:
    return col is not None and _types.family(col.type) in ("json", "jsonb")


_COMPARISONS: Final = frozenset(
    {"eq", "ne", "lt", "le", "gt", "ge", "between", "not_between", "in", "not_in"}
)


def _require(ctx: CompileContext, cond: Condition, col: Column | None, ok: bool, what: str) -> None:
    if not ok or (col is not None and col.type.compressed):
        kind = col.type.label if col is not None else "an expression"
        msg = f"{cond.op} needs {what}; {ctx.table}.{cond.column} is {kind}"
        raise QueryError(msg, table=ctx.table, column=cond.column)


def _pattern(ctx: CompileContext, cond: Condition, col: Column | None, value: object) -> str:
    """Return a text operand (a LIKE pattern, a JSON key) after checking it is bindable text."""
    name = col.name if col is not None else cond.column
    if not isa(value, str):
        msg = f"{cond.op} on {ctx.table}.{name} needs a str, not {value!r}"
        raise QueryError(msg, table=ctx.table, column=name, value=value)
    try:
        return _types.TEXT.dump(value)  # type: ignore[no-any-return]
    except Refused as exc:
        msg = f"{cond.op} on {ctx.table}.{name} = {value!r}: {exc}"
        raise ValidationError(msg, table=ctx.table, column=name, value=value) from None


def _json_text(ctx: CompileContext, cond: Condition, value: object) -> str:
    """Return *value* as ``->>`` shows a JSON scalar: str as is, others as JSON writes them."""
    if isa(value, str):
        return _pattern(ctx, cond, None, value)
    if isinstance(value, (bool, int)) or (isinstance(value, float) and math.isfinite(value)):
        return json.dumps(value)
    msg = f"json_eq on {ctx.table}.{cond.column} compares str, int, float or bool, not {value!r}"
    raise QueryError(msg, table=ctx.table, column=cond.column, value=value)


def _element(ctx: CompileContext, col: Column | None, value: object) -> object:
    """Return *value* checked and converted as one element of the array column *col*."""
    if col is None or value is None:
        return value
    dumped = dump_for(ctx, col, [value])
    return dumped[0] if isa(dumped, list) else value  # type: ignore[index]


def _column_type(ctx: CompileContext, col: Column | None) -> sql.Composable:
    if col is None:
        msg = "this operator needs a model column, not an expression"
        raise QueryError(msg, table=ctx.table)
    return col.type.ddl


@attrs.frozen(repr=False)
class _Junction(Filter):
    """Several filters joined by AND or OR."""

    items: tuple[Filter, ...]
    _word: ClassVar[sql.SQL]
    _empty: ClassVar[sql.SQL]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(map(repr, self.items))})"

    def compile(self, ctx: CompileContext) -> sql.Composable:
        """Return the junction as SQL (TRUE for an empty AND, FALSE for an empty OR)."""
        if not self.items:
            return self._empty
        parts = [_sub(ctx, item).compile(ctx) for item in self.items]
        if len(parts) == 1:
            return parts[0]
        return sql.SQL("({})").format(self._word.join(parts))

    def bind(self, ctx: CompileContext) -> None:
        """Append every item's parameters, in order."""
        for item in self.items:
            _sub(ctx, item).bind(ctx)

    def shape(self) -> Hashable | None:
        """The kind of junction and its items' shapes."""
        shapes = []
        for item in self.items:
            inner = item.shape() if isa(item, Filter) else None
            if inner is None:
                return None
            shapes.append(inner)
        return (type(self).__name__, tuple(shapes))


class And(_Junction):
    """All of several filters."""

    _word = sql.SQL(" AND ")
    _empty = sql.SQL("TRUE")


class Or(_Junction):
    """Any of several filters."""

    _word = sql.SQL(" OR ")
    _empty = sql.SQL("FALSE")


@attrs.frozen(repr=False)
class Not(Filter):
    """The negation of a filter."""

    item: Filter

    def __repr__(self) -> str:
        return f"Not({self.item!r})"

    def compile(self, ctx: CompileContext) -> sql.Composable:
        """Return the negation as SQL."""
        return sql.SQL("NOT ({})").format(_sub(ctx, self.item).compile(ctx))

    def bind(self, ctx: CompileContext) -> None:
        """Append the negated filter's parameters."""
        _sub(ctx, self.item).bind(ctx)

    def shape(self) -> Hashable | None:
        """The negated filter's shape, marked."""
        inner = self.item.shape() if isa(self.item, Filter) else None
        return None if inner is None else ("Not", inner)


def _sub(ctx: CompileContext, item: object) -> Filter:
    """Return *item* if it is a filter; ``all_of(f, None)`` fails here, naming what it got."""
    if not isa(item, Filter):
        msg = f"a filter combines Filters, not {type(item).__name__} {item!r}"
        raise QueryError(msg, table=ctx.table, value=item)
    return item  # type: ignore[return-value]


@attrs.frozen(repr=False)
class Raw(Filter):
    """Hand-written SQL with its parameters (from :meth:`Filter.raw`)."""

    query: sql.Composable
    params: tuple[Any, ...]

    def __repr__(self) -> str:
        return f"Raw({self.query!r}, {self.params!r})"

    def compile(self, ctx: CompileContext) -> sql.Composable:
        """Return the SQL as given, in parentheses."""
        self.bind(ctx)
        return sql.SQL("({})").format(self.query)

    def bind(self, ctx: CompileContext) -> None:
        """Append the parameters as given."""
        ctx.params.extend(self.params)


def compile_filter(
    meta: TableMeta, table: str, f: Filter | None, resolve: Resolver | None = None
) -> tuple[sql.Composable | None, tuple[Any, ...]]:
    """Return the SQL of *f* (or None) and its parameters, checked against *meta*."""
    if f is None:
        return None, ()
    if not isa(f, Filter):
        msg = f"expected a Filter, got {type(f).__name__} {f!r}"
        raise QueryError(msg, table=table, value=f)
    ctx = CompileContext(meta=meta, table=table, resolve=resolve)
    # Joins and HAVING resolve names their own way: only plain model filters are reused.
    shape = f.shape() if resolve is None else None
    if shape is None:
        return f.compile(ctx), tuple(ctx.params)
    fragment = _FRAGMENTS.get((meta, shape))
    if fragment is None:
        fragment = _FRAGMENTS.put((meta, shape), f.compile(ctx))
    else:
        f.bind(ctx)
    return fragment, tuple(ctx.params)


# The compiled SQL of each filter shape seen, per model: a filter called again with new values
# skips composing its SQL, and returns the same object, which the statement built around it
# and the executor's rendering then reuse too.
_FRAGMENTS: Final[Memo[sql.Composable]] = Memo()


# --- sorting ----------------------------------------------------------------------------------


class SortOrder(enum.Enum):
    """A sort direction."""

    ASC = "asc"
    DESC = "desc"


Nulls = Literal["first", "last"]


@attrs.frozen
class Sort:
    """An ``ORDER BY`` term: a column, a direction and, optionally, where NULLs go.

    Without ``nulls``, PostgreSQL's default applies: NULLs sort as larger than every value
    (last ascending, first descending).
    """

    column: str
    order: SortOrder = SortOrder.ASC
    nulls: Nulls | None = None

    @classmethod
    def asc(cls, column: str, *, nulls: Nulls | None = None) -> Sort:
        """Sort by *column* ascending."""
        return cls(column, SortOrder.ASC, nulls)

    @classmethod
    def desc(cls, column: str, *, nulls: Nulls | None = None) -> Sort:
        """Sort by *column* descending."""
        return cls(column, SortOrder.DESC, nulls)

    @classmethod
    def new(cls, column: str, order: SortOrder) -> Sort:
        """Sort by *column* in *order* (orso's ``Sort::new``)."""
        return cls(column, order)

    @classmethod
    def new_bool(cls, column: str, ascending: bool) -> Sort:
        """Sort by *column*, ascending when *ascending* (orso's ``Sort::new_bool``)."""
        return cls(column, SortOrder.ASC if ascending else SortOrder.DESC)

    @property
    def ascending(self) -> bool:
        """Whether the direction is ascending."""
        return self.order is SortOrder.ASC

    @property
    def nulls_last(self) -> bool:
        """Whether NULLs come after every value under this sort."""
        if self.nulls is not None:
            return self.nulls == "last"
        return self.ascending

    def compile(self, ctx: CompileContext) -> sql.Composable:
        """Return this term as SQL."""
        expr, _ = ctx.column(self.column)
        if not isa(self.order, SortOrder):
            # Sort("price", "desc") would otherwise sort ascending without a word.
            msg = f"order must be SortOrder.ASC or SortOrder.DESC, not {self.order!r}"
            raise QueryError(msg, table=ctx.table, column=self.column, value=self.order)
        if self.nulls not in (None, "first", "last"):
            msg = f"nulls must be 'first', 'last' or None, not {self.nulls!r}"
            raise QueryError(msg, table=ctx.table, column=self.column)
        parts = [expr, sql.SQL(" ASC") if self.ascending else sql.SQL(" DESC")]
        if self.nulls is not None:
            parts.append(
                sql.SQL(" NULLS LAST") if self.nulls == "last" else sql.SQL(" NULLS FIRST")
            )
        return sql.Composed(parts)


def with_tiebreak(meta: TableMeta, sorts: Sequence[Sort]) -> tuple[Sort, ...]:
    """Return *sorts* ending with the primary key, so every row has one place in the order."""
    pk = meta.primary_key
    if pk is None or any(s.column == pk.name for s in sorts):
        return tuple(sorts)
    return (*sorts, Sort(pk.name))


def compile_sorts(ctx: CompileContext, sorts: Sequence[Sort]) -> sql.Composable | None:
    """Return the ``ORDER BY`` list of *sorts*, or None when there are none."""
    if not sorts:
        return None
    for s in sorts:
        if not isa(s, Sort):
            msg = f"expected a Sort, got {type(s).__name__} {s!r}"
            raise QueryError(msg, table=ctx.table, value=s)
    if ctx.resolve is None:  # joins and HAVING resolve names their own way: not reused
        key = (ctx.meta, *sorts)
        try:
            order = _ORDERS.get(key)
        except TypeError:  # a Sort holding something unhashable: compile it and let it fail
            pass
        else:
            return order if order is not None else _ORDERS.put(key, _order_by(ctx, sorts))
    return _order_by(ctx, sorts)


def _order_by(ctx: CompileContext, sorts: Sequence[Sort]) -> sql.Composable:
    return sql.SQL(", ").join(s.compile(ctx) for s in sorts)


# The ORDER BY list of each list of sorts seen, per model, reused like filter fragments.
_ORDERS: Final[Memo[sql.Composable]] = Memo()


# --- search -----------------------------------------------------------------------------------


def escape_like(text: str) -> str:
    r"""Return *text* with LIKE's wildcards escaped, so it matches literally.

    >>> escape_like("50%_off\\now")
    '50\\%\\_off\\\\now'
    """
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _column_names(columns: str | Iterable[str]) -> tuple[str, ...]:
    # One column given as a bare str means that column, not its letters.
    return (columns,) if isinstance(columns, str) else tuple(columns)


@attrs.frozen
class SearchFilter:
    """A text search across columns (orso's ``SearchFilter``).

    By default a row matches when any of *columns* contains *query* as a substring, ignoring
    case; ``%`` and ``_`` in the query are matched literally. ``exact_match`` compares whole
    values instead, and ``case_sensitive`` stops ignoring case.
    """

    query: str
    columns: tuple[str, ...] = attrs.field(converter=_column_names)
    case_sensitive: bool = False
    exact_match: bool = False

    @classmethod
    def new(cls, query: str, columns: Sequence[str]) -> SearchFilter:
        """Search *columns* for *query*."""
        return cls(query, tuple(columns))

    @classmethod
    def new_single_field(cls, query: str, column: str) -> SearchFilter:
        """Search one column for *query*."""
        return cls(query, (column,))

    def with_case_sensitive(self, value: bool = True) -> SearchFilter:
        """Return a copy matching case exactly when *value*."""
        return attrs.evolve(self, case_sensitive=value)

    def with_exact_match(self, value: bool = True) -> SearchFilter:
        """Return a copy comparing whole values when *value*."""
        return attrs.evolve(self, exact_match=value)

    def to_filter(self) -> Filter:
        """Return the equivalent filter (an OR over the columns)."""
        if not self.columns:
            msg = "a SearchFilter needs at least one column"
            raise QueryError(msg)
        if not isa(self.query, str):
            msg = f"a search query must be a str, not {type(self.query).__name__} {self.query!r}"
            raise QueryError(msg, value=self.query)
        parts: list[Filter] = []
        for name in self.columns:
            if self.exact_match:
                if self.case_sensitive:
                    parts.append(Filter.eq(name, self.query))
                else:
                    parts.append(Filter.ilike(name, escape_like(self.query)))
            else:
                pattern = f"%{escape_like(self.query)}%"
                parts.append(
                    Filter.like(name, pattern)
                    if self.case_sensitive
                    else Filter.ilike(name, pattern)
                )
        return parts[0] if len(parts) == 1 else Or(tuple(parts))


# --- aggregates -------------------------------------------------------------------------------


class Aggregate(enum.Enum):
    """An aggregate function (orso's ``Aggregate``)."""

    COUNT = "count"
    SUM = "sum"
    AVG = "avg"
    MIN = "min"
    MAX = "max"
    # The value of the first and last row of a group in a given order (TimescaleDB's first()
    # and last()); only QueryBuilder.aggregate(..., order_by=) takes them.
    FIRST = "first"
    LAST = "last"

    # orso's variant names, as aliases of the same members.
    Count = "count"  # noqa: PIE796
    Sum = "sum"  # noqa: PIE796
    Avg = "avg"  # noqa: PIE796
    Min = "min"  # noqa: PIE796
    Max = "max"  # noqa: PIE796

    def sql(self) -> sql.SQL:
        """Return the function name as SQL (FIRST and LAST have none: they need an order)."""
        found = _AGGREGATE_SQL.get(self.value)
        if found is None:
            msg = f"{self.name} needs an order: use QueryBuilder.aggregate(..., order_by=column)"
            raise QueryError(msg, value=self)
        return found


_AGGREGATE_SQL: Final = {
    "count": sql.SQL("count"),
    "sum": sql.SQL("sum"),
    "avg": sql.SQL("avg"),
    "min": sql.SQL("min"),
    "max": sql.SQL("max"),
}
