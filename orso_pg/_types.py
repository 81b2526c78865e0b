"""The mapping between Python types and PostgreSQL column types.

Owns the decision of how one annotated Python type is stored: its SQL type, how a Python value is
checked and turned into a bound parameter (``dump``), how a fetched value becomes the Python value
again (``load``), and the COPY type name. It must not talk to a database, build statements or know
about tables: :mod:`orso_pg._schema` attaches a :class:`ColumnType` to each column.

A ``dump`` function returns the parameter to bind or raises :class:`Refused` with a reason; the
caller turns that into a :class:`~orso_pg.errors.ValidationError` naming the table and column.
Writes go through :func:`ColumnType.store` (``dump`` plus the checks only a stored value needs:
the declared length, precision and scale), and every write path first asks :func:`missing`
whether a value is a pandas or numpy missing-value marker, so the rules are the same whichever
statement or COPY format carries the value.
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import json
import math
import re
import sys
import types
import typing
import uuid
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, Final

import attrs
import numpy as np
from psycopg import sql
from psycopg.types.json import Jsonb

from orso_pg.errors import describe_value

__all__ = [
    "FIELD_LIMIT",
    "ColumnType",
    "Refused",
    "Unloadable",
    "family",
    "missing",
    "resolve_type",
    "type_from_sql",
]

Dump = Callable[[Any], Any]
Load = Callable[[Any], Any]

INT8_MIN: Final = -(2**63)
INT8_MAX: Final = 2**63 - 1
FIELD_LIMIT: Final = 2**30 - 2**20
"""The largest value, in bytes as sent, a write accepts: PostgreSQL refuses a field of 1 GB or
more, and a Bind or COPY message past that size drops the connection, so values are checked
against this (1 GiB less 1 MiB of room for the rest of the message) before anything is sent."""


class Refused(ValueError):  # noqa: N818 - internal signal, never leaves the package
    """Raised by a dump function: the value cannot be stored in this column."""


class Unloadable(ValueError):  # noqa: N818 - internal signal, never leaves the package
    """Raised by a load function: a stored value has no Python value in this column's type.

    A value written by another tool (an enum member the model does not have) is the case;
    the reader turns it into a :class:`~orso_pg.errors.DataError` naming table, column, row
    key and value.
    """


@attrs.frozen(eq=False)
class ColumnType:
    """How values of one Python type are stored in one PostgreSQL type.

    Attributes:
        label: A short name for messages and plans, e.g. ``"bigint"`` or ``"text[]"``.
        ddl: The SQL type as it appears in ``CREATE TABLE``.
        copy_name: The type name psycopg's COPY ``set_types`` understands.
        python: The Python type values have once loaded.
        dump: Check a value and return the parameter to bind (raises :class:`Refused`).
        load: Turn a fetched value into the Python value, or ``None`` when psycopg's own
            loader already gives the right type.
        compressed: True when values are codec frames in a BYTEA column.
        load_many: Turn many fetched non-NULL values into Python values at once (compressed
            columns decode a batch of frames in one call), or ``None``.
        declared_family: The family of a type declared with ``sql_type=`` (see
            :func:`family`); empty for a type derived from the annotation alone.
        choices: The stored values an enum column allows (its CHECK constraint), else None.
        fit: Checks that only a stored value needs, run on what ``dump`` returned (the
            declared length, precision and scale; filters compare any value): returns the
            value to store or raises :class:`Refused`. None when ``dump`` is enough.
    """

    label: str
    ddl: sql.Composable
    copy_name: str
    python: Any
    dump: Dump
    load: Load | None = None
    compressed: bool = False
    load_many: Callable[[list[Any]], list[Any]] | None = None
    declared_family: str = ""
    choices: tuple[str, ...] | None = None
    fit: Dump | None = None

    def store(self, value: Any) -> Any:
        """Check *value* (not None, not missing) for a write; return the parameter to bind."""
        dumped = self.dump(value)
        return dumped if self.fit is None else self.fit(dumped)


# --- missing values ---------------------------------------------------------------------------

# Classes that are never a missing-value marker: the common case returns after one set lookup.
_NEVER_MISSING: Final = frozenset(
    {str, int, bool, bytes, Decimal, dt.datetime, dt.date, dt.time, uuid.UUID, dict, list}
)


#: The classes :func:`missing` never takes for a marker: a value of one needs no look (public
#: for the hot paths that skip the call).
PLAIN: Final = _NEVER_MISSING


def missing(value: object, ctype: ColumnType) -> str | None:
    """Return the name of the missing-value marker *value* is, or None when it is a value.

    The markers are pandas' ``NaT`` and ``NA``, numpy's ``NaT`` (``datetime64`` and
    ``timedelta64``), and a float NaN given to a column that is not a float column (in a float
    column NaN is a value PostgreSQL stores). ``None`` is not checked here: callers test it
    first. pandas is never imported: its markers can only exist once the user imported it.
    """
    cls = value.__class__
    if cls in _NEVER_MISSING:
        return None
    if cls is float:
        return "NaN" if value != value and ctype.python is not float else None  # noqa: PLR0124
    if isinstance(value, np.generic):
        if isinstance(value, (np.datetime64, np.timedelta64)):
            return "NaT" if np.isnat(value) else None
        if isinstance(value, np.floating) and ctype.python is not float and np.isnan(value):
            return "NaN"
        return None
    pandas = sys.modules.get("pandas")
    if pandas is not None:
        if value is pandas.NaT:
            return "NaT"
        if value is pandas.NA:
            return "pd.NA"
    if isinstance(value, float) and value != value and ctype.python is not float:  # noqa: PLR0124
        return "NaN"
    return None


def _refuse(reason: str) -> typing.NoReturn:
    raise Refused(reason)


# --- scalar checks ----------------------------------------------------------------------------


def _too_large(size: int) -> typing.NoReturn:
    _refuse(
        f"{size:,} bytes is over the {FIELD_LIMIT:,}-byte limit of a value "
        "(PostgreSQL refuses fields of 1 GB)"
    )


_SIZE_STEP: Final = 2**20


def utf8_size(text: str) -> int:
    """Return the size of *text* in UTF-8 (callers ask only for texts that may be too large).

    Measured a slice at a time, so a text near the limit is never copied whole.
    """
    if text.isascii():
        return len(text)
    step = _SIZE_STEP
    return sum(
        len(text[i : i + step].encode("utf-8", "surrogatepass")) for i in range(0, len(text), step)
    )


def _check_text_size(text: str) -> None:
    size = utf8_size(text)
    if size > FIELD_LIMIT:
        _too_large(size)


def _check_text(value: Any) -> str:
    if not isinstance(value, str):
        _refuse(f"expected str, got {type(value).__name__}")
    if len(value) > FIELD_LIMIT // 4:
        _check_text_size(value)
    if "\x00" in value:
        _refuse(f"NUL (0x00) at index {value.index(chr(0))} cannot be stored in PostgreSQL text")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            _refuse(f"lone surrogate at index {exc.start} is not valid UTF-8")
    return value


def _check_int(value: Any) -> int:
    number: int
    if type(value) is int:
        number = value
    elif isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        _refuse(f"expected int, got {type(value).__name__} {_short(value)}")
    else:
        number = int(value)
    if not INT8_MIN <= number <= INT8_MAX:
        _refuse(f"{number} is outside the BIGINT range [-2**63, 2**63-1]")
    return number


def _check_float(value: Any) -> float:
    if type(value) is float:
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        _refuse(f"expected float, got {type(value).__name__} {_short(value)}")
    try:
        return float(value)
    except OverflowError:
        _refuse(f"{value} does not fit in a double precision float")


def _check_bool(value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        _refuse(f"expected bool, got {type(value).__name__} {_short(value)}")
    return bool(value)


def _check_datetime(value: Any) -> dt.datetime:
    if not isinstance(value, dt.datetime):
        if isinstance(value, np.datetime64):
            _refuse(
                f"numpy datetime64 {_short(value)} has no time zone; give an aware datetime "
                "(e.g. pandas.Timestamp(value, tz='UTC'))"
            )
        _refuse(f"expected datetime, got {type(value).__name__} {_short(value)}")
    if value.tzinfo is None or value.utcoffset() is None:
        _refuse(
            f"naive datetime {value.isoformat()} given for a TIMESTAMPTZ column; "
            "attach a time zone (e.g. tzinfo=datetime.UTC)"
        )
    # pandas.Timestamp: PostgreSQL keeps microseconds, the nanoseconds would be cut off.
    nanoseconds: object = 0 if value.__class__ is dt.datetime else getattr(value, "nanosecond", 0)
    if nanoseconds:
        _refuse(f"{_short(value)} has nanoseconds; PostgreSQL keeps microseconds (floor it)")
    return value


def _check_date(value: Any) -> dt.date:
    if isinstance(value, dt.datetime) or not isinstance(value, dt.date):
        _refuse(f"expected date, got {type(value).__name__} {_short(value)}")
    return value


def _check_time(value: Any) -> dt.time:
    if not isinstance(value, dt.time):
        _refuse(f"expected time, got {type(value).__name__} {_short(value)}")
    return value


def _check_timedelta(value: Any) -> dt.timedelta:
    if not isinstance(value, dt.timedelta):
        _refuse(f"expected timedelta, got {type(value).__name__} {_short(value)}")
    return value


def _check_decimal(value: Any) -> Decimal:
    if isinstance(value, Decimal):
        if value.is_snan():
            _refuse("signalling NaN cannot be stored in NUMERIC")
        return value
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return Decimal(int(value))
    _refuse(f"expected Decimal, got {type(value).__name__} {_short(value)}")


def _check_uuid(value: Any) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            _refuse(f"{_short(value)} is not a UUID")
    _refuse(f"expected UUID, got {type(value).__name__} {_short(value)}")


def _check_bytes(value: Any) -> bytes | bytearray | memoryview:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        _refuse(f"expected bytes, got {type(value).__name__} {_short(value)}")
    size = value.nbytes if isinstance(value, memoryview) else len(value)
    if size > FIELD_LIMIT:
        _too_large(size)
    return value


_UNESCAPED_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def _identity(text: Any) -> Any:
    return text


# One encoder for every value: json.dumps with options builds a new one per call.
_JSON = json.JSONEncoder(allow_nan=False, ensure_ascii=False, separators=(",", ":"))


def _check_json(value: Any) -> Jsonb:
    try:
        text = _JSON.encode(value)
    except ValueError as exc:
        _refuse(f"NaN and Infinity are not valid JSON ({exc})")
    except TypeError as exc:
        _refuse(f"not JSON serialisable: {exc}")
    if len(text) > FIELD_LIMIT // 4:
        _check_text_size(text)
    if "\\u0000" in text and _UNESCAPED_NUL.search(text):
        _refuse("a JSON string contains NUL (\\u0000), which JSONB cannot store")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            _refuse(f"a JSON string contains a lone surrogate at offset {exc.start}")
    # Already serialised: hand psycopg the text with an identity dumps, not the object twice.
    return Jsonb(text, dumps=_identity)


def _short(value: object) -> str:
    return describe_value(value)


# --- containers -------------------------------------------------------------------------------


def _list_check(element: Dump, *, nullable_elements: bool) -> Dump:
    def check(value: Any) -> list[Any]:
        if isinstance(value, np.ndarray):
            if value.ndim != 1:
                _refuse(f"expected a 1-D array, got shape {value.shape}")
            value = value.tolist()
        elif not isinstance(value, (list, tuple)):
            _refuse(f"expected list, got {type(value).__name__} {_short(value)}")
        out: list[Any] = []
        for i, item in enumerate(value):
            if item is None:
                if not nullable_elements:
                    _refuse(f"None at index {i}; declare list[X | None] to allow NULL elements")
                out.append(None)
                continue
            try:
                out.append(element(item))
            except Refused as exc:
                _refuse(f"element {i}: {exc}")
        return out

    return check


def _enum_type(enum_cls: type[enum.Enum]) -> ColumnType:
    by_value = all(isinstance(m.value, str) for m in enum_cls)
    lookup: dict[str, enum.Enum] = {
        (m.value if by_value else m.name): m for m in enum_cls.__members__.values()
    }

    def dump(value: Any) -> str:
        if isinstance(value, enum_cls):
            return str(value.value) if by_value else value.name
        if isinstance(value, str) and value in lookup:
            return value
        _refuse(f"expected {enum_cls.__name__}, got {_short(value)}")

    def load(value: Any) -> enum.Enum:
        try:
            return lookup[value]
        except (KeyError, TypeError):
            known = ", ".join(repr(v) for v in lookup)
            msg = f"{_short(value)} is not a member of {enum_cls.__name__} ({known})"
            raise Unloadable(msg) from None

    return ColumnType(
        label=f"text ({enum_cls.__name__})",
        ddl=_TEXT,
        copy_name="text",
        python=enum_cls,
        dump=dump,
        load=load,
        choices=tuple(lookup),
    )


def cast_array(given: np.ndarray[Any, Any], dtype: np.dtype[Any]) -> np.ndarray[Any, Any]:
    """Return *given* as an array of the declared *dtype*, or refuse when a value would change.

    The one rule for array columns, native and compressed: an array of the declared dtype is
    stored as it is; a boolean, integer or float array of another dtype is cast when every
    value survives the cast exactly (int64 ``[1, 2]`` into float64, float64 ``[1.0]`` into
    int32), and refused otherwise (``0.5`` into an int column, ``2**53 + 1`` into float64,
    ``0.1`` into float32, NaN into an int column); any other dtype is refused.
    """
    if given.dtype == dtype:
        return given
    if given.dtype.kind not in "biuf" or dtype.kind not in "biuf":
        _refuse(f"array of {given.dtype} cannot be stored as {dtype}")
    with np.errstate(all="ignore"):
        arr = given.astype(dtype)
        back = arr.astype(given.dtype)
    if not np.array_equal(back, given, equal_nan=given.dtype.kind == "f" and dtype.kind == "f"):
        _refuse(f"array of {given.dtype} cannot be stored as {dtype} without loss")
    return arr


def _ndarray_check(dtype: np.dtype[Any]) -> Dump:
    def check(value: Any) -> list[Any]:
        given = np.asarray(value)
        if given.ndim != 1:
            _refuse(f"expected a 1-D array, got shape {given.shape}")
        # Lists arrive as int64/float64: accept them when every value survives the narrowing.
        return cast_array(given, dtype).tolist()  # type: ignore[no-any-return]

    return check


def _ndarray_load(dtype: np.dtype[Any]) -> Load:
    def load(value: Any) -> np.ndarray[Any, Any]:
        return np.array(value, dtype=dtype)

    return load


# --- SQL type texts ---------------------------------------------------------------------------

_TEXT = sql.SQL("TEXT")
_BIGINT = sql.SQL("BIGINT")
_FLOAT8 = sql.SQL("DOUBLE PRECISION")
_BOOL = sql.SQL("BOOLEAN")
_TIMESTAMPTZ = sql.SQL("TIMESTAMPTZ")
_DATE = sql.SQL("DATE")
_TIME = sql.SQL("TIME")
_INTERVAL = sql.SQL("INTERVAL")
_NUMERIC = sql.SQL("NUMERIC")
_UUID = sql.SQL("UUID")
_BYTEA = sql.SQL("BYTEA")
_JSONB = sql.SQL("JSONB")
_ARRAY = sql.SQL("[]")


def _scalar(label: str, ddl: sql.SQL, copy_name: str, python: Any, dump: Dump) -> ColumnType:
    return ColumnType(label=label, ddl=ddl, copy_name=copy_name, python=python, dump=dump)


TEXT: Final = _scalar("text", _TEXT, "text", str, _check_text)
BIGINT: Final = _scalar("bigint", _BIGINT, "int8", int, _check_int)
FLOAT8: Final = _scalar("double precision", _FLOAT8, "float8", float, _check_float)
BOOLEAN: Final = _scalar("boolean", _BOOL, "bool", bool, _check_bool)
TIMESTAMPTZ: Final = _scalar(
    "timestamptz", _TIMESTAMPTZ, "timestamptz", dt.datetime, _check_datetime
)
DATE: Final = _scalar("date", _DATE, "date", dt.date, _check_date)
TIME: Final = _scalar("time", _TIME, "time", dt.time, _check_time)
INTERVAL: Final = _scalar("interval", _INTERVAL, "interval", dt.timedelta, _check_timedelta)
NUMERIC: Final = _scalar("numeric", _NUMERIC, "numeric", Decimal, _check_decimal)
UUID: Final = _scalar("uuid", _UUID, "uuid", uuid.UUID, _check_uuid)
BYTEA: Final = _scalar("bytea", _BYTEA, "bytea", bytes, _check_bytes)
JSONB: Final = ColumnType(
    label="jsonb", ddl=_JSONB, copy_name="jsonb", python=dict, dump=_check_json
)

_SCALARS: Mapping[Any, ColumnType] = {
    str: TEXT,
    int: BIGINT,
    float: FLOAT8,
    bool: BOOLEAN,
    dt.datetime: TIMESTAMPTZ,
    dt.date: DATE,
    dt.time: TIME,
    dt.timedelta: INTERVAL,
    Decimal: NUMERIC,
    uuid.UUID: UUID,
    bytes: BYTEA,
    dict: JSONB,
}

_NUMPY_ELEMENT: Mapping[Any, tuple[str, sql.SQL, str]] = {
    np.dtype(np.int64): ("bigint[]", _BIGINT, "int8[]"),
    np.dtype(np.int32): ("integer[]", sql.SQL("INTEGER"), "int4[]"),
    np.dtype(np.int16): ("smallint[]", sql.SQL("SMALLINT"), "int2[]"),
    np.dtype(np.float64): ("double precision[]", _FLOAT8, "float8[]"),
    np.dtype(np.float32): ("real[]", sql.SQL("REAL"), "float4[]"),
    np.dtype(np.bool_): ("boolean[]", _BOOL, "bool[]"),
}


def array_of(element: ColumnType, *, nullable_elements: bool = False) -> ColumnType:
    """Return the native PostgreSQL array type whose elements are *element*."""
    return ColumnType(
        label=f"{element.label}[]",
        ddl=sql.Composed([element.ddl, _ARRAY]),
        copy_name=f"{element.copy_name}[]",
        python=list,
        dump=_list_check(element.dump, nullable_elements=nullable_elements),
        load=None,
    )


# --- compressed arrays ------------------------------------------------------------------------


def compressed(
    python: Any, *, decimals: int | None, dtype: np.dtype[Any] | None = None
) -> ColumnType:
    """Return the type of a ``compress=True`` column: a codec frame in BYTEA.

    *python* is ``np.ndarray``, ``list[int]`` or ``list[float]``; values read back as that type.
    With *dtype* (``NDArray[np.float64]``), arrays are cast to it by :func:`cast_array`'s rule
    before encoding, and frames of another dtype are cast the same way when read.
    """
    from orso_pg import codec
    from orso_pg.errors import CompressionError

    as_list = python is not np.ndarray
    list_dtype: np.dtype[Any] | None = None
    if python == list[int]:
        list_dtype = np.dtype(np.int64)
    elif python == list[float]:
        list_dtype = np.dtype(np.float64)

    def dump(value: Any) -> bytes:
        if isinstance(value, np.ndarray):
            arr = value
        elif isinstance(value, (list, tuple)):
            if list_dtype is None:
                _refuse("expected a numpy array")
            try:
                arr = np.asarray(value, dtype=list_dtype)
            except (TypeError, ValueError, OverflowError) as exc:
                _refuse(f"cannot be read as an array of {list_dtype}: {exc}")
            if list_dtype.kind == "i" and any(type(v) is not int for v in value):
                _refuse("expected a list of int")
        else:
            _refuse(f"expected an array, got {type(value).__name__} {_short(value)}")
        if dtype is not None:
            arr = cast_array(arr, dtype)
        try:
            frame: bytes = codec.encode(arr, decimals=decimals)
        except ValueError as exc:
            _refuse(str(exc))
        if len(frame) > FIELD_LIMIT:
            _too_large(len(frame))
        return frame

    def load(value: Any) -> Any:
        arr = codec.decode(bytes(value))
        if dtype is not None and arr.dtype != dtype:
            try:
                arr = cast_array(arr, dtype)
            except Refused as exc:
                # A frame written by another tool or before the dtype was declared.
                raise CompressionError(f"a stored frame: {exc}") from None
        return arr.tolist() if as_list else arr

    def load_many(values: list[Any]) -> list[Any]:
        arrays = codec.decode_many(values)
        return [arr.tolist() for arr in arrays] if as_list else arrays

    label = "bytea (compressed " + (
        ("ndarray" if dtype is None else f"ndarray {dtype}")
        if not as_list
        else typing.get_args(python)[0].__name__
    )
    return ColumnType(
        label=label + ")",
        ddl=_BYTEA,
        copy_name="bytea",
        python=python,
        dump=dump,
        load=load,
        compressed=True,
        load_many=load_many,
    )


# --- user-declared SQL types ------------------------------------------------------------------

_SQL_TYPE = re.compile(
    r"""^\s*
    (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\s+[A-Za-z_][A-Za-z0-9_]*)*?
        (?:\.[A-Za-z_][A-Za-z0-9_]*)?)
    \s*(?:\(\s*(?P<args>\d+(?:\s*,\s*-?\d+)?)\s*\))?
    (?P<tail>(?:\s+with(?:out)?\s+time\s+zone)?)
    \s*(?P<array>(?:\[\s*\])*)\s*$""",
    re.VERBOSE | re.IGNORECASE,
)

# Multi-word and keyword type names of the SQL standard, which cannot be written as identifiers.
_KEYWORD_TYPES: Mapping[str, sql.SQL] = {
    "double precision": _FLOAT8,
    "character varying": sql.SQL("CHARACTER VARYING"),
    "bit varying": sql.SQL("BIT VARYING"),
    "timestamp": sql.SQL("TIMESTAMP"),
    "timestamptz": _TIMESTAMPTZ,
    "time": _TIME,
    "timetz": sql.SQL("TIMETZ"),
    "interval": _INTERVAL,
    "character": sql.SQL("CHARACTER"),
    "char": sql.SQL("CHAR"),
    "varchar": sql.SQL("VARCHAR"),
    "numeric": _NUMERIC,
    "decimal": sql.SQL("DECIMAL"),
    "bit": sql.SQL("BIT"),
    "float": sql.SQL("FLOAT"),
    "int": sql.SQL("INTEGER"),
    "integer": sql.SQL("INTEGER"),
    "smallint": sql.SQL("SMALLINT"),
    "bigint": _BIGINT,
    "real": sql.SQL("REAL"),
    "boolean": _BOOL,
    "text": _TEXT,
    "bytea": _BYTEA,
    "jsonb": _JSONB,
    "json": sql.SQL("JSON"),
    "uuid": _UUID,
    "date": _DATE,
}
_TZ_TAIL: Mapping[str, sql.SQL] = {
    "with time zone": sql.SQL(" WITH TIME ZONE"),
    "without time zone": sql.SQL(" WITHOUT TIME ZONE"),
}


def _as_str(value: Any) -> str:
    return value if type(value) is str else str(value)


def _as_int(value: Any) -> int:
    return value if type(value) is int else int(value)


def _as_float(value: Any) -> float:
    return value if type(value) is float else float(value)


# psycopg loads a value by its SQL type: a str stored as uuid would come back a UUID, an int
# stored as numeric a Decimal. These give it back as the annotated type.
_AS_ANNOTATED: Mapping[Any, Load] = {str: _as_str, int: _as_int, float: _as_float}


def type_from_sql(text: str, base: ColumnType, *, round_to_scale: bool = False) -> ColumnType:
    """Return *base* stored as the user-declared SQL type *text* (``column(sql_type=...)``).

    The text is parsed, never pasted: a name (a standard type keyword or an identifier, optionally
    schema-qualified), optional numeric modifiers, an optional time-zone clause and ``[]``s.
    Writes are checked against what the declared type can hold (:func:`_fit_for`), so the
    server never truncates, rounds or refuses a value without the column being named; with
    *round_to_scale* a ``numeric(p, s)``, ``real`` or ``timestamp(p)`` (``time(p)``,
    ``interval(p)``) column rounds as the server would instead of refusing.

    Raises:
        ValueError: *text* is not a type name this parser accepts.
    """
    match = _SQL_TYPE.match(text)
    if match is None:
        msg = f"sql_type {text!r} is not a type name (letters, digits, _, (n[,m]) and [])"
        raise ValueError(msg)
    name = " ".join(match["name"].lower().split())
    parts: list[sql.Composable] = []
    keyword = _KEYWORD_TYPES.get(name)
    if keyword is not None:
        parts.append(keyword)
    elif " " in name:
        msg = f"sql_type {text!r}: unknown multi-word type {name!r}"
        raise ValueError(msg)
    else:
        parts.append(sql.Identifier(*name.split(".")))
    if match["args"]:
        numbers = [int(n) for n in match["args"].split(",")]
        parts.append(sql.SQL("({})").format(sql.SQL(", ").join(sql.Literal(n) for n in numbers)))
    tail = " ".join(match["tail"].lower().split())
    if tail:
        parts.append(_TZ_TAIL[tail])
    dims = match["array"].count("[")
    parts.extend([_ARRAY] * dims)
    label = " ".join(text.lower().split())
    load = base.load
    if load is None and not dims:
        load = _AS_ANNOTATED.get(base.python)
    declared = "array" if dims else _FAMILY_OF_NAME.get(name, "other")
    numbers = [int(n) for n in match["args"].split(",")] if match["args"] else []
    fit = _fit_for(name, numbers, rounding=round_to_scale)
    if round_to_scale and not _can_round(name, numbers):
        msg = (
            "round=True needs a sql_type that rounds: numeric(p, s), real, or timestamp, time "
            f"or interval with fewer than 6 fractional digits; not {text!r}"
        )
        raise ValueError(msg)
    if fit is not None and dims:
        fit = _each_element(fit)
    dump = base.dump
    if name == "timestamp" and tail != "with time zone" and not dims and base is TIMESTAMPTZ:
        dump, load = _dump_utc_wall_time, _load_utc_wall_time
    return attrs.evolve(
        base,
        label=label,
        ddl=sql.Composed(parts),
        dump=dump,
        load=load,
        fit=fit or base.fit,
        declared_family=declared,
    )


# --- type families -----------------------------------------------------------------------------

# What operators and aggregates a column allows depends on its SQL type, which a declared
# sql_type can change (a str stored as uuid has no LIKE). Types are grouped into families:
# "text", "number", "interval", "time", "bool", "uuid", "bytes", "json" (no equality),
# "jsonb", "array", "vector", or "other" for a type orso_pg does not know (a domain, an
# extension's type), on which the server decides.
_FAMILY_OF_NAME: Mapping[str, str] = {
    **dict.fromkeys(
        ("text", "varchar", "character varying", "char", "character", "bpchar", "citext", "name"),
        "text",
    ),
    **dict.fromkeys(
        (
            "smallint", "integer", "int", "bigint", "int2", "int4", "int8", "real", "float",
            "float4", "float8", "double precision", "numeric", "decimal", "money",
        ),
        "number",
    ),
    **dict.fromkeys(("timestamp", "timestamptz", "date", "time", "timetz"), "time"),
    "interval": "interval",
    "boolean": "bool",
    "bool": "bool",
    "uuid": "uuid",
    "bytea": "bytes",
    "json": "json",
    "jsonb": "jsonb",
    "vector": "vector",
}  # fmt: skip

_FAMILY_OF_PYTHON: Mapping[Any, str] = {
    str: "text",
    int: "number",
    float: "number",
    Decimal: "number",
    bool: "bool",
    dt.datetime: "time",
    dt.date: "time",
    dt.time: "time",
    dt.timedelta: "interval",
    uuid.UUID: "uuid",
    bytes: "bytes",
}


def family(column_type: ColumnType) -> str:
    """Return the SQL type family of *column_type*, from its declared ``sql_type`` if any."""
    if column_type.declared_family:
        return column_type.declared_family
    if column_type.compressed:
        return "bytes"
    if column_type.copy_name == "jsonb":
        return "jsonb"
    if column_type.copy_name.endswith("[]"):
        return "array"
    if column_type.label.startswith("vector("):
        return "vector"
    python = column_type.python
    if isinstance(python, type) and issubclass(python, enum.Enum):
        return "text"
    return _FAMILY_OF_PYTHON.get(python, "other")


# --- what a declared SQL type can hold --------------------------------------------------------

_NUMERIC_NAMES: Final = frozenset({"numeric", "decimal"})
_CHAR_NAMES: Final = frozenset(
    {"varchar", "character varying", "char", "character", "bpchar", "nchar"}
)
_INT_RANGES: Final[Mapping[str, tuple[str, int]]] = {
    "integer": ("integer", 2**31),
    "int": ("integer", 2**31),
    "int4": ("integer", 2**31),
    "smallint": ("smallint", 2**15),
    "int2": ("smallint", 2**15),
}
_FLOAT4_NAMES: Final = frozenset({"real", "float4"})
_FLOAT4_BITS: Final = 24  # float(p) is a real up to this many bits of precision
# Types whose optional precision is a number of fractional digits of a second (0 to 6).
_FRACTION_NAMES: Final = frozenset({"timestamp", "timestamptz", "time", "timetz", "interval"})
_MICRO_DIGITS: Final = 6
_EPOCH_2000: Final = dt.datetime(2000, 1, 1)  # noqa: DTZ001 - PostgreSQL's epoch, a wall time


def _fit_for(name: str, numbers: list[int], *, rounding: bool) -> Dump | None:
    """Return the write check of the declared type *name* with modifiers *numbers*, if any."""
    if name in _NUMERIC_NAMES and numbers:
        scale = numbers[1] if len(numbers) > 1 else 0
        return _numeric_fit(numbers[0], scale, rounding=rounding)
    if name in _CHAR_NAMES and numbers:
        return _length_fit(name, numbers[0])
    if name in _INT_RANGES:
        return _int_fit(*_INT_RANGES[name])
    if _is_float4(name, numbers):
        return _float4_fit(rounding=rounding)
    if name in _FRACTION_NAMES and numbers and numbers[0] < _MICRO_DIGITS:
        return _fraction_fit(name, numbers[0], rounding=rounding)
    return None


def _is_float4(name: str, numbers: list[int]) -> bool:
    return name in _FLOAT4_NAMES or (
        name == "float" and bool(numbers) and numbers[0] <= _FLOAT4_BITS
    )


def _can_round(name: str, numbers: list[int]) -> bool:
    """Whether ``round=True`` means something for the declared type *name* (numbers)."""
    if name in _NUMERIC_NAMES or name in _FRACTION_NAMES:
        return bool(numbers) and (name in _NUMERIC_NAMES or numbers[0] < _MICRO_DIGITS)
    return _is_float4(name, numbers)


def _each_element(fit: Dump) -> Dump:
    def check(value: Any) -> Any:
        if isinstance(value, list):
            out = []
            for i, item in enumerate(value):
                try:
                    out.append(None if item is None else check(item))
                except Refused as exc:
                    _refuse(f"element {i}: {exc}")
            return out
        return fit(value)

    return check


def _length_fit(name: str, length: int) -> Dump:
    def fit(value: Any) -> Any:
        # PostgreSQL refuses a longer value, except that it silently cuts trailing spaces off.
        if isinstance(value, str) and len(value) > length:
            _refuse(f"{len(value)} characters do not fit {name}({length})")
        return value

    return fit


def _int_fit(label: str, bound: int) -> Dump:
    def fit(value: Any) -> Any:
        if isinstance(value, int) and not -bound <= value < bound:
            _refuse(f"{value} is outside the {label} range [-{bound}, {bound - 1}]")
        return value

    return fit


def _float4_fit(*, rounding: bool) -> Dump:
    def fit(value: Any) -> Any:
        if not isinstance(value, float) or not math.isfinite(value):
            return value
        with np.errstate(over="ignore"):
            single = float(np.float32(value))  # the nearest float4, as PostgreSQL converts
        if math.isinf(single):
            _refuse(f"{value!r} is outside the range of real (float4)")
        if single == value:
            return value
        if not single:
            _refuse(f"{value!r} is too small for real (float4): PostgreSQL refuses its underflow")
        if not rounding:
            _refuse(
                f"{value!r} is not exactly a real (float4), which would store {single!r} "
                "(declare column(..., round=True) to round)"
            )
        return single

    return fit


def _fraction_fit(name: str, digits: int, *, rounding: bool) -> Dump:
    """Check the fractional seconds of a ``timestamp(p)``, ``time(p)`` or ``interval(p)``.

    PostgreSQL rounds what is finer than *digits* places: half away from zero, timestamps
    from its epoch (2000-01-01), the time part of an interval and a time of day upwards.
    Rounding here gives the value the server would store, so it is stored unchanged.
    """
    unit = 10 ** (_MICRO_DIGITS - digits)
    declared = f"{name}({digits})"

    def fit(value: Any) -> Any:
        if isinstance(value, dt.timedelta):
            part = value.seconds * 10**6 + value.microseconds  # never negative
            extra = part % unit
        elif isinstance(value, dt.datetime):
            instant = _as_utc(value)  # an offset may hold fractions of a second
            extra = instant.microsecond % unit
        elif isinstance(value, dt.time):
            extra = value.microsecond % unit
        else:
            return value
        if not extra:
            return value
        if not rounding:
            _refuse(
                f"{value} has more than {digits} fractional digits of a second; {declared} "
                "would round it (declare column(..., round=True) to round)"
            )
        # A time of day and an interval's time part are never negative: ties go up.
        before = isinstance(value, dt.datetime) and instant.replace(tzinfo=None) < _EPOCH_2000
        step = unit - extra if 2 * extra > unit or (2 * extra == unit and not before) else -extra
        if isinstance(value, dt.timedelta):
            return value + dt.timedelta(microseconds=step)
        if isinstance(value, dt.time):
            return _round_time(value, step, declared)
        try:
            rounded = instant + dt.timedelta(microseconds=step)
        except OverflowError:
            _refuse(f"{value} rounds past the last datetime Python holds ({declared})")
        return rounded if instant is value else rounded.astimezone(value.tzinfo)

    return fit


def _as_utc(value: dt.datetime) -> dt.datetime:
    """Return an aware *value* in UTC (the instant PostgreSQL stores), a naive one as it is."""
    if value.tzinfo is None or value.utcoffset() is None:
        return value
    return value.astimezone(dt.UTC)


def _round_time(value: dt.time, step: int, declared: str) -> dt.time:
    micros = (value.hour * 3600 + value.minute * 60 + value.second) * 10**6
    micros += value.microsecond + step
    if micros >= 86_400 * 10**6:
        _refuse(f"{value} rounds to 24:00:00 in {declared}, which datetime.time cannot hold")
    seconds, micro = divmod(micros, 10**6)
    return value.replace(
        hour=seconds // 3600, minute=seconds // 60 % 60, second=seconds % 60, microsecond=micro
    )


def _numeric_fit(precision: int, scale: int, *, rounding: bool) -> Dump:
    quantum = Decimal(1).scaleb(-scale)
    limit = Decimal(10) ** (precision - scale)
    # Enough digits for any value numeric(p, s) holds, so quantize never raises on a fit.
    context = decimal.Context(prec=max(precision, 28) + 10, rounding=decimal.ROUND_HALF_UP)
    declared = f"numeric({precision}, {scale})"

    def fit(value: Any) -> Any:
        if isinstance(value, Decimal):
            number = value
        elif isinstance(value, int):
            number = Decimal(value)
        elif isinstance(value, float):
            number = Decimal(repr(value))  # the shortest text that reads back as the float
        else:
            return value
        if number.is_nan():
            return value
        if number.is_infinite():
            _refuse(f"{declared} cannot hold an infinite value")
        too_large = f"{number} does not fit {declared}: its absolute value must be below {limit}"
        if number and number.adjusted() >= precision - scale:
            _refuse(too_large)
        rounded = number.quantize(quantum, context=context)
        if abs(rounded) >= limit:
            _refuse(too_large)
        if rounded != number:
            if not rounding:
                _refuse(
                    f"{number} has more than {scale} decimal places; {declared} would round it "
                    f"to {rounded} (declare column(..., round=True) to round)"
                )
            return rounded
        return value

    return fit


def _dump_utc_wall_time(value: Any) -> dt.datetime:
    # A timestamp without time zone holds a wall time; this column's is UTC, so the stored
    # value names the same instant whatever the session's time zone.
    if isinstance(value, dt.datetime) and (value.tzinfo is None or value.utcoffset() is None):
        _refuse(
            f"naive datetime {value.isoformat()} given for a timestamp column, which stores "
            "the UTC time of an aware datetime; attach a time zone (e.g. tzinfo=datetime.UTC)"
        )
    aware = _check_datetime(value)
    return aware.astimezone(dt.UTC).replace(tzinfo=None)


def _load_utc_wall_time(value: Any) -> dt.datetime:
    stamp: dt.datetime = value
    return stamp.replace(tzinfo=dt.UTC)


# --- resolution -------------------------------------------------------------------------------


def unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    """Split ``X | None`` into ``(X, True)``; anything else into ``(annotation, False)``."""
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        nullable = len(args) != len(typing.get_args(annotation))
        if len(args) == 1:
            return args[0], nullable
        return typing.Union[tuple(args)], nullable  # noqa: UP007 - rebuilding a runtime Union
    return annotation, False


def resolve_type(
    annotation: Any,
    *,
    compress: bool = False,
    decimals: int | None = None,
) -> ColumnType:
    """Return the :class:`ColumnType` for a (non-optional) Python annotation.

    Raises:
        TypeError: the annotation has no mapping; the message lists what is supported.
    """
    if compress:
        if annotation is np.ndarray:
            return compressed(np.ndarray, decimals=decimals)
        if typing.get_origin(annotation) is np.ndarray:
            declared = _ndarray_dtype(annotation)
            return compressed(np.ndarray, decimals=decimals, dtype=declared)
        if annotation in (list[int], list[float]):
            return compressed(annotation, decimals=decimals)
        msg = f"compress=True needs np.ndarray, list[int] or list[float], not {annotation!r}"
        raise TypeError(msg)
    if decimals is not None:
        msg = "decimals= only applies to compress=True columns"
        raise TypeError(msg)
    found = _SCALARS.get(annotation)
    if found is not None:
        return found
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return _enum_type(annotation)
    origin = typing.get_origin(annotation)
    if origin is dict or annotation is typing.Any:
        return JSONB
    if origin is list:
        (element_annotation,) = typing.get_args(annotation) or (typing.Any,)
        element, nullable_elements = unwrap_optional(element_annotation)
        if element in (str, int, float, bool, Decimal, uuid.UUID, dt.date, dt.datetime):
            return array_of(_SCALARS[element], nullable_elements=nullable_elements)
        if typing.get_origin(element) is dict or element is typing.Any:
            return attrs.evolve(JSONB, python=list)
    if origin is np.ndarray:
        dtype = _ndarray_dtype(annotation)
        if dtype is not None and dtype in _NUMPY_ELEMENT:
            label, ddl, copy_name = _NUMPY_ELEMENT[dtype]
            return ColumnType(
                label=label,
                ddl=sql.Composed([ddl, _ARRAY]),
                copy_name=copy_name,
                python=np.ndarray,
                dump=_ndarray_check(dtype),
                load=_ndarray_load(dtype),
            )
    if annotation is np.ndarray:
        msg = "np.ndarray needs compress=True or a dtype: numpy.typing.NDArray[np.int64]"
        raise TypeError(msg)
    msg = (
        f"no PostgreSQL mapping for {annotation!r}; supported: str, int, float, bool, datetime, "
        "date, time, timedelta, Decimal, UUID, bytes, dict (JSONB), Enum, list[X], "
        "NDArray[dtype], np.ndarray with compress=True, or any type with sql_type="
    )
    raise TypeError(msg)


def _ndarray_dtype(annotation: Any) -> np.dtype[Any] | None:
    args = typing.get_args(annotation)
    if len(args) != 2:  # noqa: PLR2004 - ndarray[shape, dtype[scalar]]
        return None
    scalar_args = typing.get_args(args[1])
    if not scalar_args:
        return None
    try:
        found: np.dtype[Any] = np.dtype(scalar_args[0])
    except TypeError:
        return None
    return found
