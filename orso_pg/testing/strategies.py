"""Hypothesis strategies of valid orso_pg model instances, derived from their columns.

Owns what a storable value of each mapped column type is: text without NUL or lone surrogates,
integers within BIGINT (or the declared ``sql_type``), aware datetimes PostgreSQL and Python
both represent, the JSON JSONB gives back unchanged, arrays for compressed columns, and so on;
which columns are left to the server (generated keys, timestamps); and which values count as
the same for a unique key, the way PostgreSQL compares them. It must not touch a database.

Everything drawn for the mapped types passes the column's own ``dump`` check and reads back
equal (in the sense of :func:`orso_pg.testing.differences`) from PostgreSQL 15 and later; the
project's round-trip tests hold it to that.
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
import json
import math
import re
import typing
import uuid
from collections.abc import Callable, Hashable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Final, TypeVar

import attrs
import numpy as np
from hypothesis import strategies as st
from psycopg.types.json import Jsonb

from orso_pg import _schema, _types
from orso_pg._schema import Column, TableMeta, table_of
from orso_pg.testing import arrays

__all__ = ["batches", "strategies_for", "strategy", "unique_keys"]

M = TypeVar("M")
Key = str | Sequence[str] | Callable[[Any], Hashable]

INT8: Final = (_types.INT8_MIN, _types.INT8_MAX)
INT4: Final = (-(2**31), 2**31 - 1)
INT2: Final = (-(2**15), 2**15 - 1)

# PostgreSQL keeps timestamps from 4713 BC, Python from year 1: stay a day inside Python's range
# so a value with any UTC offset still converts to a UTC datetime when it is read back.
_FIRST_INSTANT: Final = dt.datetime(1, 1, 2)  # noqa: DTZ001 - bounds of naive wall times
_LAST_INSTANT: Final = dt.datetime(9999, 12, 30)  # noqa: DTZ001

# Fixed offsets only: a zoneinfo time in a DST fold never compares equal across zones (PEP 495),
# which would make equal round trips look different to a user's ``==``.
_ZONES: Final = st.one_of(
    st.just(dt.UTC),
    st.integers(-14 * 60, 14 * 60).map(lambda m: dt.timezone(dt.timedelta(minutes=m))),
)

_CHARS: Final = st.characters(codec="utf-8", exclude_characters="\x00")
_TEXT: Final = st.text(_CHARS)

# JSONB stores numbers as NUMERIC and prints them back without an exponent: 1e300 would come
# back as a 301-digit int. Below 1e15 a float's repr has no exponent, so it reads back the same.
_JSON_FLOAT_LIMIT: Final = 1e15
_JSON_FLOATS: Final = st.floats(-_JSON_FLOAT_LIMIT, _JSON_FLOAT_LIMIT)
_JSON_TEXT: Final = st.text(_CHARS, max_size=20)
_JSON_SCALARS: Final = st.one_of(st.none(), st.booleans(), st.integers(), _JSON_FLOATS, _JSON_TEXT)
_JSON: Final = st.recursive(
    _JSON_SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(_JSON_TEXT, inner, max_size=4)
    ),
    max_leaves=8,
)
# Values inside a typed container (the Any of ``list[dict[str, Any]]``): two levels are plenty.
_JSON_INNER: Final = st.one_of(
    _JSON_SCALARS,
    st.lists(_JSON_SCALARS, max_size=3),
    st.dictionaries(_JSON_TEXT, _JSON_SCALARS, max_size=3),
)
# At the top, None would be SQL NULL, not JSON null: a NOT NULL column must get something else.
_JSON_DOCUMENT: Final = st.one_of(
    st.booleans(),
    st.integers(),
    _JSON_FLOATS,
    _JSON_TEXT,
    st.lists(_JSON, max_size=4),
    st.dictionaries(_JSON_TEXT, _JSON, max_size=4),
)

_DECIMAL_SPECIALS: Final = st.sampled_from(
    (Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity"))
)

_SQL_TYPE: Final = re.compile(
    r"^\s*(?P<name>[a-z_][a-z0-9_ .]*?)\s*(?:\(\s*(?P<args>[-\d\s,]*)\))?"
    r"\s*(?:with(?:out)?\s+time\s+zone)?\s*(?:\[\s*\])*\s*$",
    re.IGNORECASE,
)


# --- public surface ---------------------------------------------------------------------------


def strategy(model: type[M], **overrides: Any) -> st.SearchStrategy[M]:
    """Return a strategy of valid, not yet inserted instances of *model*.

    Every column gets a strategy from its type and options (see :func:`strategies_for`);
    *overrides* replace some of them by field name, each a strategy or a plain value.

    ``strategy(Trade, symbol=st.sampled_from(["BTC", "ETH"]), qty=1)`` draws trades of two
    symbols and a quantity of one.

    Raises:
        QueryError: an override names a field the model does not have.
    """
    meta = table_of(model)
    fields = strategies_for(model)
    for name, value in overrides.items():
        meta.column(name)  # raises QueryError listing the model's columns
        fields[name] = value if isinstance(value, st.SearchStrategy) else st.just(value)
    aliases = _init_aliases(meta)
    kwargs = {aliases[name]: fields[name] for name in fields if name in aliases}
    return st.builds(model, **kwargs)


def strategies_for(model: type) -> dict[str, st.SearchStrategy[Any]]:
    """Return a strategy per field of *model*, in column order (a new dict on every call).

    Generated keys, ``created_at`` and ``updated_at`` are ``None`` (the server fills them);
    nullable columns are sometimes ``None``; a nullable foreign key is always ``None`` so a row
    inserts on its own (override it to reference rows you inserted); a column with a server
    default is sometimes ``None`` (the default applies).
    """
    return dict(_strategies(table_of(model)))


def batches(
    model: type[M],
    min_size: int = 0,
    max_size: int = 20,
    *,
    unique_by: Key | Sequence[Key] = (),
    **overrides: Any,
) -> st.SearchStrategy[list[M]]:
    """Return a strategy of lists of *model* instances that insert together without conflict.

    Within one list, every unique key of the model (the primary key when it is not generated,
    ``unique=True`` columns, composite ``@table(unique=...)`` keys and unique indexes) holds
    distinct values, compared as PostgreSQL compares them (NaN equals NaN, NULLs never clash).
    Uniqueness is per drawn list: a test that inserts two lists must keep them apart itself.

    Args:
        model: The model class.
        min_size: The fewest instances in a list.
        max_size: The most instances in a list.
        unique_by: More keys to keep distinct: a field name, a tuple of field names, a
            function of an instance, or a list of those.
        overrides: Per-field strategies or values, as for :func:`strategy`.
    """
    meta = table_of(model)
    keys = [_key_function(meta, key) for key in unique_keys(meta)]
    keys.extend(_user_key(meta, key) for key in _user_keys(unique_by))
    instances = strategy(model, **overrides)
    if not keys:
        return st.lists(instances, min_size=min_size, max_size=max_size)
    return st.lists(instances, min_size=min_size, max_size=max_size, unique_by=tuple(keys))


def unique_keys(meta: TableMeta) -> list[tuple[str, ...]]:
    """Return every key of *meta* whose values must be distinct across rows."""
    keys: list[tuple[str, ...]] = []
    if meta.key:
        keys.append(meta.key_names)  # a composite key is unique as a whole
    keys.extend(meta.unique_keys)
    keys.extend(index.columns for index in meta.indexes if index.unique)
    return list(dict.fromkeys(keys))


# --- per column -------------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _strategies(meta: TableMeta) -> Mapping[str, st.SearchStrategy[Any]]:
    hints = _schema._hints(meta.cls)
    return {c.name: _for_column(c, hints.get(c.name)) for c in meta.columns}


def _init_aliases(meta: TableMeta) -> dict[str, str]:
    """Map field names to the ``__init__`` argument names attrs gives them (``_x`` is ``x``)."""
    return {f.name: f.alias for f in attrs.fields(meta.cls) if f.init}


def _for_column(column: Column, annotation: Any) -> st.SearchStrategy[Any]:
    opts = column.options
    if column.generated and (opts.primary_key or opts.created_at or opts.updated_at):
        return st.none()
    if column.ref_table is not None and column.nullable:
        return st.none()
    inner, _ = _types.unwrap_optional(annotation)
    values = _values(column, inner, _SqlType.parse(opts.sql_type))
    if column.nullable or column.generated:
        return st.one_of(st.none(), values)
    return values


@attrs.frozen
class _SqlType:
    """What a ``column(sql_type=...)`` narrows: the type name and its modifiers.

    For an array type (``varchar(5)[]``) they apply to the elements.
    """

    name: str = ""
    args: tuple[int, ...] = ()

    @classmethod
    def parse(cls, text: str | None) -> _SqlType:
        match = _SQL_TYPE.match(text or "")
        if text is None or match is None:
            return cls()
        args = tuple(int(a) for a in match["args"].split(",") if a.strip()) if match["args"] else ()
        return cls(" ".join(match["name"].lower().split()).rsplit(".", 1)[-1], args)


def _values(column: Column, annotation: Any, sql_type: _SqlType) -> st.SearchStrategy[Any]:
    ctype = column.type
    opts = column.options
    if opts.vector is not None:
        return _vectors(column, annotation)
    if ctype.compressed:
        if annotation is np.ndarray:
            return arrays.compressed_arrays(opts.decimals)
        if typing.get_origin(annotation) is np.ndarray:
            return arrays.compressed_arrays(opts.decimals, _types._ndarray_dtype(annotation))
        (element,) = typing.get_args(annotation)
        return arrays.compressed_lists(element, opts.decimals)
    if ctype.python is np.ndarray:
        return arrays.native_arrays(_dtype_of(annotation))
    origin = typing.get_origin(annotation)
    if ctype.copy_name == "jsonb" or sql_type.name in ("json", "jsonb"):
        return _json_for(annotation)
    if origin is list:
        (element,) = typing.get_args(annotation)
        inner, nullable = _types.unwrap_optional(element)
        items = _scalar(inner, sql_type)
        if nullable:
            items = st.one_of(st.none(), items)
        return st.lists(items, max_size=10)
    return _scalar(annotation, sql_type)


def _vectors(column: Column, annotation: Any) -> st.SearchStrategy[Any]:
    """Vectors of the column's dimensions that its kind stores exactly.

    pgvector refuses NaN and infinity; ``vector`` and ``sparsevec`` keep float32 and ``halfvec``
    float16, so the elements are drawn at that width and read back equal.
    """
    opts = column.options
    dims = opts.vector
    assert dims is not None  # noqa: S101 - only called for vector columns
    if opts.half:
        floats = st.floats(width=16, allow_nan=False, allow_infinity=False)
    else:
        floats = st.floats(width=32, allow_nan=False, allow_infinity=False)
    if opts.sparse:
        # Zeros are not stored in a sparsevec: the dict holds the non-zero elements only.
        nonzero = floats.filter(bool)
        return st.dictionaries(st.integers(0, dims - 1), nonzero, max_size=min(dims, 16))
    dense = st.lists(floats, min_size=dims, max_size=dims)
    if column.type.python is np.ndarray:
        dtype = _vector_dtype(annotation)
        return dense.map(lambda values: np.array(values, dtype=dtype))
    return dense


def _vector_dtype(annotation: Any) -> np.dtype[Any]:
    found = _types._ndarray_dtype(annotation)
    return found if found is not None else np.dtype(np.float32)


def _dtype_of(annotation: Any) -> np.dtype[Any]:
    dtype = _types._ndarray_dtype(annotation)
    assert dtype is not None  # noqa: S101 - the column type was resolved from this annotation
    return dtype


def _scalar(annotation: Any, sql_type: _SqlType) -> st.SearchStrategy[Any]:
    name, args = sql_type.name, sql_type.args
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return st.sampled_from(list(annotation))
    if annotation is bool:
        return st.booleans()
    if annotation is int:
        low, high = _int_range(name, args)
        return st.integers(low, high)
    if annotation is float:
        single = name in ("real", "float4") or (name == "float" and args and args[0] <= 24)  # noqa: PLR2004
        return st.floats(width=32 if single else 64)
    if annotation is str:
        return _text(name, args)
    if annotation is Decimal:
        return _decimals(name, args)
    unit = _fraction_unit(name, args)
    if annotation is dt.datetime:
        moments = st.datetimes(_FIRST_INSTANT, _LAST_INSTANT, timezones=_ZONES)
        return moments.map(lambda v: v.replace(microsecond=v.microsecond - v.microsecond % unit))
    if annotation is dt.date:
        return st.dates()
    if annotation is dt.time:
        return st.times().map(lambda v: v.replace(microsecond=v.microsecond - v.microsecond % unit))
    if annotation is dt.timedelta:
        return st.timedeltas().map(lambda v: v - dt.timedelta(microseconds=v.microseconds % unit))
    if annotation is uuid.UUID:
        return st.uuids()
    if annotation is bytes:
        return st.binary()
    msg = f"no strategy for {annotation!r}; pass one as an override"
    raise TypeError(msg)


def _fraction_unit(name: str, args: tuple[int, ...]) -> int:
    """Return the microseconds a ``timestamp(p)``, ``time(p)`` or ``interval(p)`` counts in."""
    if name in ("timestamp", "timestamptz", "time", "timetz", "interval") and args:
        return int(10 ** (6 - min(args[0], 6)))
    return 1


def _int_range(name: str, args: tuple[int, ...]) -> tuple[int, int]:
    if name in ("integer", "int", "int4", "serial", "serial4"):
        return INT4
    if name in ("smallint", "int2", "smallserial", "serial2"):
        return INT2
    if name in ("numeric", "decimal") and args:
        precision, scale = args[0], (args[1] if len(args) > 1 else 0)
        top = 10 ** max(precision - scale, 0) - 1
        return max(-top, INT8[0]), min(top, INT8[1])
    return INT8


def _text(name: str, args: tuple[int, ...]) -> st.SearchStrategy[str]:
    if name == "uuid":
        return st.uuids().map(str)
    if name in ("varchar", "character varying") and args:
        return st.text(_CHARS, max_size=args[0])
    if name in ("char", "character") or (name == "bpchar" and args):
        # char(n) pads to n characters when read back: only strings of exactly n round-trip.
        size = args[0] if args else 1
        return st.text(_CHARS, min_size=size, max_size=size)
    return _TEXT


def _decimals(name: str, args: tuple[int, ...]) -> st.SearchStrategy[Decimal]:
    if name in ("numeric", "decimal") and args:
        precision, scale = args[0], (args[1] if len(args) > 1 else 0)
        top = Decimal(10) ** (precision - scale) - Decimal(10) ** -scale
        return st.decimals(-top, top, places=scale)
    finite = st.decimals(allow_nan=False, allow_infinity=False)
    # One draw in ten is NaN or an infinity; written as a choice on a counter so that a
    # failing example shrinks to a finite number whenever the special value is not the cause.
    return st.tuples(st.integers(0, 9), finite, _DECIMAL_SPECIALS).map(
        lambda t: t[2] if t[0] == 9 else t[1]  # noqa: PLR2004
    )


def _json_for(annotation: Any, *, nested: bool = False) -> st.SearchStrategy[Any]:
    """JSON values that fit *annotation* (``dict[str, int]``, ``list[dict]``, ``Any``...)."""
    inner, nullable = _types.unwrap_optional(annotation)
    origin = typing.get_origin(inner)
    args = typing.get_args(inner)
    found: st.SearchStrategy[Any]
    if inner is dict or origin is dict:
        values = _json_for(args[1], nested=True) if len(args) == 2 else _JSON  # noqa: PLR2004
        found = st.dictionaries(_JSON_TEXT, values, max_size=3 if nested else 6)
    elif inner is list or origin is list:
        items = _json_for(args[0], nested=True) if args else _JSON
        found = st.lists(items, max_size=3 if nested else 6)
    elif inner is bool:
        found = st.booleans()
    elif inner is int:
        found = st.integers()
    elif inner is float:
        found = _JSON_FLOATS
    elif inner is str:
        found = _JSON_TEXT
    else:
        found = _JSON_INNER if nested else _JSON_DOCUMENT
    return st.one_of(st.none(), found) if nullable else found


# --- unique keys ------------------------------------------------------------------------------


def _user_keys(unique_by: Key | Sequence[Key]) -> list[Key]:
    if isinstance(unique_by, str) or callable(unique_by):
        return [unique_by]
    return list(unique_by)


def _user_key(meta: TableMeta, key: Key) -> Callable[[Any], Hashable]:
    if callable(key):
        return key
    names = (key,) if isinstance(key, str) else tuple(key)
    return _key_function(meta, names)


def _key_function(meta: TableMeta, names: tuple[str, ...]) -> Callable[[Any], Hashable]:
    columns = [meta.column(name) for name in names]

    def key(instance: Any) -> Hashable:
        parts = []
        for col in columns:
            value = getattr(instance, col.name)
            if value is None:
                # NULLs never clash in a unique key; a fresh object equals nothing else.
                return object()
            parts.append(_canonical(col, value))
        return tuple(parts)

    return key


def _canonical(column: Column, value: Any) -> Hashable:
    """Return a hashable form of *value* that is equal exactly when PostgreSQL finds it equal."""
    dumped = column.type.dump(value)  # what is bound is what the unique index compares
    if isinstance(dumped, Jsonb):
        return _plain(json.loads(dumped.obj))
    return _plain(dumped)


_NAN: Final = ("NaN",)
_NULL: Final = ("NULL",)


def _plain(value: Any) -> Hashable:
    if value is None:
        return _NULL  # a NULL element inside an array does equal another one
    if isinstance(value, bool):
        return ("bool", value)  # JSON true is not the number 1
    if isinstance(value, float):
        return _NAN if math.isnan(value) else value
    if isinstance(value, Decimal):
        return _NAN if value.is_nan() else value
    if isinstance(value, (list, tuple)):
        return tuple(_plain(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _plain(v)) for k, v in value.items()))
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    return typing.cast("Hashable", value)
