"""Model instances and plain rows to COPY rows: generated feeds, COPY types, bad-row diagnosis.

Owns how a batch turns instances into tuples for ``COPY ... FROM STDIN``. The fast path does not
run every column's full check: values of the exact Python type psycopg's dumpers handle
correctly go through untouched (PostgreSQL or the dumper refuses what is wrong, and the batch
then finds the row), and every other value takes the write check of the single-row operations
(a ``bool`` column given ``"false"``, a ``date`` column given a ``datetime``, an ``int`` column
given ``True`` or NaN, a naive ``datetime``, ``pd.NaT``, ``None`` inside a ``list[int]``...),
whether the COPY is binary or text. When a row fails, :func:`diagnose` runs the complete check
on it to name the column and the value. It must not touch a connection or build statements.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from decimal import Decimal
from typing import Any, Final, Protocol

import attrs
import numpy as np
from psycopg.postgres import types as _pg_types

from orso_pg import _operations as operations
from orso_pg import _types, _vector
from orso_pg._schema import Column, TableMeta
from orso_pg.errors import ValidationError, describe_value

__all__ = [
    "Feed",
    "Shape",
    "as_instance",
    "copy_type",
    "diagnose",
    "feeder",
    "key_text",
    "row_feeder",
    "shape",
]

# The exact classes whose values psycopg's binary dumper for the column's COPY type stores
# faithfully; anything else (subclasses, numpy scalars, strings for UUIDs) takes the slow path.
_EXACT: Final[dict[int, type]] = {
    id(_types.BIGINT): int,
    id(_types.FLOAT8): float,
    id(_types.BOOLEAN): bool,
    id(_types.DATE): dt.date,
    id(_types.TIME): dt.time,
    id(_types.INTERVAL): dt.timedelta,
    id(_types.UUID): uuid.UUID,
}
# Text and bytes of the exact class go through when they are surely under the size limit of a
# value as sent (the slow path measures the others); a datetime when it is aware, or in binary
# COPY, whose dumper refuses a naive one. None goes through too: PostgreSQL refuses it in a NOT
# NULL column and the batch finds the row.
_SIZED: Final[dict[int, type]] = {id(_types.TEXT): str, id(_types.BYTEA): bytes}
# The most characters a text can have and be under the limit in any encoding (4 bytes each),
# and the most bytes a bytea can have in binary and in text COPY (hex: 2 characters a byte).
_TEXT_FAST: Final = _types.FIELD_LIMIT // 4
_BYTES_FAST: Final = {True: _types.FIELD_LIMIT, False: (_types.FIELD_LIMIT - 3) // 2}
_COPY_ESCAPED: Final = ("\\", "\n", "\r", "\t", "\b", "\f", "\v")
# Element classes psycopg's array dumpers store faithfully, per array type; a list holding
# anything else (None, True in an int list...) takes the full check. Arrays of bool, date and
# datetime always do: their element dumpers would coerce.
_RAW_ELEMENTS: Final[dict[str, frozenset[type]]] = {
    "text[]": frozenset({str}),
    "int8[]": frozenset({int}),
    "float8[]": frozenset({float, int}),
    "numeric[]": frozenset({Decimal, int}),
    "uuid[]": frozenset({uuid.UUID}),
}
# Binary formats that are the same on the wire, so a column declared with sql_type= may take
# the base type's COPY type.
_SAME_WIRE: Final = {"varchar": "text", "bpchar": "text"}
_TYPE_NAME = re.compile(r"\(.*?\)|\[\s*\]")


@attrs.frozen(eq=False)
class Shape:
    """How the rows of one column set are sent.

    Attributes:
        types: The COPY type of each column (psycopg's ``set_types`` names).
        binary: Whether ``FORMAT BINARY`` can be used; text format otherwise.
    """

    types: tuple[str, ...]
    binary: bool


def _registry_name(text: str) -> str | None:
    base = " ".join(_TYPE_NAME.sub("", text).lower().split())
    info = _pg_types.get(base)
    if info is None:
        return None
    return _SAME_WIRE.get(info.name, info.name)


def copy_type(col: Column) -> tuple[str, bool]:
    """Return the COPY type of *col* and whether binary COPY sends it faithfully.

    A column declared with ``sql_type=`` keeps binary COPY only when the declared type has the
    same binary format as the mapped one (``numeric(10, 2)`` for ``Decimal``, ``varchar(n)`` for
    ``str``); otherwise values travel as text and the column's input function parses them.
    """
    name = col.type.copy_name
    if col.options.vector is not None:
        return name, True  # pgvector's binary dumpers, registered per connection
    if col.options.sql_type is None:
        return name, True
    dims = col.options.sql_type.count("[")
    declared = _registry_name(col.options.sql_type)
    mapped = _registry_name(name.removesuffix("[]"))
    same = declared is not None and declared == mapped and dims == name.count("[")
    return name, same


def text_copy_size(value: object) -> int:
    """Return how many bytes *value* (as dumped) takes in a text COPY row, for the size limit."""
    if isinstance(value, (bytes, bytearray)):
        return 2 * len(value) + 3  # \\x and two hex digits a byte
    if isinstance(value, memoryview):
        return 2 * value.nbytes + 3
    if isinstance(value, str):
        return _types.utf8_size(value) + sum(value.count(c) for c in _COPY_ESCAPED)
    return 0


def _text_copy_refusal(value: object) -> str | None:
    size = text_copy_size(value)
    if size <= _types.FIELD_LIMIT:
        return None
    return (
        f"{size:,} bytes in a text COPY row is over the {_types.FIELD_LIMIT:,}-byte limit of "
        "a value (PostgreSQL refuses fields of 1 GB)"
    )


def _slow(meta: TableMeta, col: Column, *, binary: bool) -> Callable[[Any], Any]:
    store = col.type.store
    ctype = col.type
    refuse_none = col.not_null and not col.generated
    missing = _types.missing

    def slow(value: Any) -> Any:
        # Refusals only stop the feed: diagnose() then runs the single-row check on the row,
        # which gives the message.
        if value is None:
            if refuse_none:
                msg = f"{meta.name}.{col.name} is NOT NULL; None given"
                raise _types.Refused(msg)
            return None
        if missing(value, ctype) is not None:
            if refuse_none or col.generated:
                msg = f"{meta.name}.{col.name}: a missing value where NULL is not allowed"
                raise _types.Refused(msg)
            return None
        dumped = store(value)
        if not binary:
            reason = _text_copy_refusal(dumped)
            if reason is not None:
                raise _types.Refused(reason)
        return dumped

    return slow


def _expression(
    i: int, col: Column, namespace: dict[str, Any], get: str, *, binary: bool
) -> tuple[str | None, str]:
    """Return an optional statement and the tuple item that reads column *i* as *get*."""
    ctype = col.type
    if col.options.sql_type is None and col.options.vector is None:
        read = None if get == f"v{i}" else f"v{i} = {get}"
        sized = _SIZED.get(id(ctype))
        if sized is not None:
            namespace[f"_t{i}"] = sized
            namespace[f"_n{i}"] = _TEXT_FAST if sized is str else _BYTES_FAST[binary]
            return read, (
                f"v{i} if v{i}.__class__ is _t{i} and len(v{i}) <= _n{i} or v{i} is None "
                f"else _s{i}(v{i})"
            )
        if ctype is _types.TIMESTAMPTZ:
            namespace[f"_t{i}"] = dt.datetime
            # psycopg's binary dumper refuses a naive datetime itself; its text dumper would
            # send it without an offset, for the server to read in the session's time zone.
            aware = "" if binary else f" and v{i}.tzinfo is not None"
            return read, f"v{i} if v{i}.__class__ is _t{i}{aware} or v{i} is None else _s{i}(v{i})"
        if ctype.copy_name == "jsonb":
            # psycopg serialises objects and arrays with the C encoder; what it cannot
            # serialise fails in the client, and NaN, NUL and lone surrogates are refused by
            # PostgreSQL with the line. Anything else (a bare NaN, pd.NA) takes the full check.
            namespace[f"_j{i}"] = (dict, list, type(None))
            return read, f"v{i} if v{i}.__class__ in _j{i} else _s{i}(v{i})"
        exact = _EXACT.get(id(ctype))
        if exact is not None:
            namespace[f"_t{i}"] = exact
            return read, f"v{i} if v{i}.__class__ is _t{i} else _s{i}(v{i})"
        elements = _RAW_ELEMENTS.get(ctype.copy_name)
        if ctype.python is list and elements is not None:
            # map(type, ...) and issuperset run in C: a few ns per element.
            namespace[f"_e{i}"] = elements
            return read, (
                f"v{i} if v{i}.__class__ is list and _e{i}.issuperset(map(type, v{i})) "
                f"else _s{i}(v{i})"
            )
    if _vector.kind_of(ctype) == "vector":
        # pgvector's binary COPY dumper takes a 1-D float32 array as it is, and the server
        # refuses NaN, infinity and a wrong length with the line, so the batch names the row.
        namespace["_nd"], namespace["_f32"] = np.ndarray, np.dtype(np.float32)
        read = None if get == f"v{i}" else f"v{i} = {get}"
        return read, (
            f"v{i} if v{i}.__class__ is _nd and v{i}.dtype == _f32 and v{i}.ndim == 1 "
            f"else _s{i}(v{i})"
        )
    return None, f"_s{i}({get})"


@functools.lru_cache(maxsize=1024)
def shape(meta: TableMeta, names: tuple[str, ...]) -> Shape:
    """Return the :class:`Shape` of the column set *names* of *meta* (cached)."""
    typed = [copy_type(meta.by_name[n]) for n in names]
    return Shape(
        types=tuple(t for t, _ in typed),
        binary=all(ok for _, ok in typed),
    )


def diagnose(
    meta: TableMeta, label: str, obj: object, names: tuple[str, ...] | None = None
) -> ValidationError | None:
    """Run the complete check of *obj* and return the error for its first bad value, or None.

    The check is the single-row operations' own, so the error is the one ``insert`` would raise.
    Only the columns *names* are checked when given (the ones the batch sends).
    """
    if not isinstance(obj, meta.cls):
        msg = (
            f"{label}: expected a {meta.cls.__name__} instance, got "
            f"{type(obj).__name__} {describe_value(obj)}"
        )
        return ValidationError(msg, table=label, value=obj)
    binary = names is None or shape(meta, names).binary
    for col in meta.columns:
        if names is None or col.name in names:
            value = getattr(obj, col.name)
            try:
                dumped = operations.dump_value(meta, label, col, value)
            except ValidationError as err:
                return err
            reason = None if binary else _text_copy_refusal(dumped)
            if reason is not None:
                msg = f"{label}.{col.name} = {describe_value(value)}: {reason}"
                return ValidationError(msg, table=label, column=col.name, value=value)
    return None


def key_text(value: object) -> str:
    """Return *value* as PostgreSQL prints it in an error's ``Key (...)=(...)`` detail."""
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, (Decimal, uuid.UUID, int, str)):
        return str(value)
    return repr(value)


class Feed(Protocol):
    """A generated generator function turning a source of rows into COPY rows."""

    def __call__(
        self,
        source: Iterable[Any],
        rows: list[Any],
        defer: Callable[[int], None] | None = None,
        /,
    ) -> Iterator[tuple[Any, ...]]:
        """Yield the COPY row of each row of *source*, recording what it read in *rows*."""
        ...


@functools.lru_cache(maxsize=1024)
def feeder(meta: TableMeta, names: tuple[str, ...], checked: tuple[str, ...] = ()) -> Feed:
    """Return a generator function streaming instances into COPY rows of the columns *names*.

    ``feed(source, rows, defer)`` appends every instance it reads to *rows* (so the caller can
    name a bad row afterwards) and yields its row tuple, except for instances whose server-filled
    columns among *checked* are not None exactly for those in *names*: their index in *rows* goes
    to *defer* instead, to be sent with the columns they do have. Building rows inside the COPY
    lets the client's work overlap the server's.
    """
    head = [
        "    for o in source:",
        "        append(o)",
        "        if o.__class__ is not _cls and not _isinstance(o, _cls):",
        "            raise TypeError('not a model instance')",
    ]
    mismatch = [f"o.{n} is None" if n in names else f"o.{n} is not None" for n in checked]
    if mismatch:
        head += [f"        if {' or '.join(mismatch)}:", "            defer(len(rows) - 1)"]
        head.append("            continue")
    namespace: dict[str, Any] = {"_cls": meta.cls, "_isinstance": isinstance}
    return _generate(meta, names, head, namespace, [f"o.{n}" for n in names])


@functools.lru_cache(maxsize=1024)
def row_feeder(meta: TableMeta, names: tuple[str, ...], *, mapping: bool) -> Feed:
    """Return a generator function streaming plain rows into COPY rows of the columns *names*.

    A row is a sequence of the values of *names*, in that order, or with *mapping* a mapping
    from column name to value. ``feed(source, rows)`` appends every row it reads to *rows* and
    yields it checked like an instance's values would be; no model instance is built.
    """
    head = ["    for r in source:", "        append(r)"]
    namespace: dict[str, Any] = {}
    if mapping:
        head += [f"        v{i} = r[{n!r}]" for i, n in enumerate(names)]
    else:
        # Unpacking a mapping or a text would give its keys or characters: refuse those rows
        # (the batch names the row); tuples and lists pass on one class check.
        namespace.update(_isinstance=isinstance, _not_row=(Mapping, str, bytes, bytearray))
        head += [
            (
                "        if r.__class__ is not tuple and r.__class__ is not list"
                " and _isinstance(r, _not_row):"
            ),
            "            raise TypeError('not a plain row')",
        ]
        if names:
            # Unpacking checks the row's length in C and names each value once.
            head.append(f"        {', '.join(f'v{i}' for i in range(len(names)))}, = r")
    return _generate(meta, names, head, namespace, [f"v{i}" for i in range(len(names))])


def _generate(
    meta: TableMeta,
    names: tuple[str, ...],
    head: list[str],
    namespace: dict[str, Any],
    reads: list[str],
) -> Feed:
    """Compile ``feed``: *head* opens the loop over ``source``, *reads* reads each column."""
    lines = ["def feed(source, rows, defer=None, /):", "    append = rows.append", *head]
    items: list[str] = []
    binary = shape(meta, names).binary
    for i, (name, get) in enumerate(zip(names, reads, strict=True)):
        col = meta.by_name[name]
        namespace[f"_s{i}"] = _slow(meta, col, binary=binary)
        statement, item = _expression(i, col, namespace, get, binary=binary)
        if statement is not None:
            lines.append("        " + statement)
        items.append(item)
    lines.append(f"        yield ({', '.join(items)},)" if items else "        yield ()")
    exec("\n".join(lines), namespace)  # noqa: S102 - generated from validated identifiers
    feed: Feed = namespace["feed"]
    return feed


def as_instance(meta: TableMeta, names: tuple[str, ...], row: object) -> object | str:
    """Return an instance holding *row*'s values (others None), or why *row* is not a row.

    Used only to name what is wrong with a plain row once a batch failed: the instance goes
    through the same diagnosis as a batch of instances.
    """
    if isinstance(row, Mapping):
        missing = [n for n in names if n not in row]
        if missing:
            return f"the row has no value for {', '.join(missing)}"
        values = [row[n] for n in names]
    elif isinstance(row, (tuple, list)):
        if len(row) != len(names):
            return f"expected {len(names)} values ({', '.join(names)}), got {len(row)}"
        values = list(row)
    else:
        return f"expected a tuple, list or mapping, got {type(row).__name__}"
    obj: object = object.__new__(meta.cls)
    given = dict(zip(names, values, strict=True))
    for col in meta.columns:
        object.__setattr__(obj, col.name, given.get(col.name))
    return obj
