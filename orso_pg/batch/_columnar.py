"""Columnar input for the plain-row batches: a DataFrame, an Arrow table or a dict of arrays.

Owns turning a pandas ``DataFrame``, a pyarrow ``Table`` or ``RecordBatch``, or a dict of numpy
arrays (masked arrays included), pandas Series or lists into the COPY rows the plain-row batches
send: matching the input's columns to the model (an unknown column, or a NOT NULL column the
server does not fill left out, is refused naming them), checking each column's dtype once for
the whole column, finding missing values with one vectorised mask per column (NULL in a nullable
column, refused naming the row in a NOT NULL one), and converting slices of columns to the
Python values psycopg's dumpers send as they are. Columns of other types (text, JSON, Decimal,
enums, arrays...) become Python values and take the per-value check of the plain-row path, so
every value is stored or refused exactly as a tuple holding it would be.

It must not touch a connection nor build SQL. pandas and pyarrow are never imported: an input
of theirs can only exist once the user imported them (found through ``sys.modules``).
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Final

import attrs
import numpy as np

from orso_pg import _types
from orso_pg._schema import Column, TableMeta
from orso_pg.batch import _rows as batch_rows
from orso_pg.errors import ValidationError, describe_value

__all__ = ["Columns", "Wire", "is_columnar", "prepare"]

# Rows converted to Python values at a time: large enough that numpy's per-call cost vanishes,
# small enough that the slice's Python objects stay a few megabytes.
_SLICE: Final = 8_192
_UTC: Final = dt.UTC
# The datetimes Python can hold, in microseconds since the epoch (numpy's tolist() gives a bare
# int outside of them).
_MIN_US: Final = int(np.datetime64("0001-01-01", "us").astype(np.int64))
_MAX_US: Final = int(np.datetime64("9999-12-31T23:59:59.999999", "us").astype(np.int64))


def is_columnar(rows: object) -> bool:
    """Whether *rows* is columnar input: a DataFrame, an Arrow table or batch, or a mapping."""
    if isinstance(rows, Mapping):
        return True
    return _frame_kind(rows) is not None


def _frame_kind(rows: object) -> str | None:
    pd = sys.modules.get("pandas")
    if pd is not None and isinstance(rows, pd.DataFrame):
        return "pandas"
    pa = sys.modules.get("pyarrow")
    if pa is not None and isinstance(rows, (pa.Table, pa.RecordBatch)):
        return "arrow"
    return None


@attrs.frozen(eq=False)
class Wire:
    """How the rows of a columnar input travel, where that differs from plain rows.

    Attributes:
        types: The COPY type of each column: a timestamp column given as naive datetimes in UTC
            is sent as ``timestamp``, whose binary format is the same as ``timestamptz``'s.
        restore: Return a sent row as the user gave it (aware datetimes), to name what is wrong.
    """

    types: tuple[str, ...] | None
    restore: Callable[[Any], Any]


def _same(row: Any) -> Any:
    return row


@attrs.frozen(eq=False)
class _Column:
    """One input column checked against its model column, ready to be sliced."""

    name: str
    kind: str  # "native" (numpy array), "ts" (int64 us since epoch), "object" (list-like)
    values: Any
    mask: np.ndarray | None
    naive: bool = False  # "ts": give naive datetimes in UTC (sent as ``timestamp``)

    def slice(self, start: int, stop: int) -> list[Any]:
        """Return rows *start* to *stop* of the column as Python values (None where missing)."""
        part = self.values[start:stop]
        if self.kind == "object":
            out = part.tolist() if isinstance(part, np.ndarray) else list(part)
        elif self.kind == "ts":
            out = part.view("datetime64[us]").tolist()
            if not self.naive:
                out = [v.replace(tzinfo=_UTC) for v in out]
        else:
            out = part.tolist()
        if self.mask is not None:
            for i in np.flatnonzero(self.mask[start:stop]).tolist():
                out[i] = None
        return out


@attrs.frozen(eq=False)
class Columns:
    """A columnar input matched to a model: sized and iterable as row tuples of ``names``."""

    names: tuple[str, ...]
    length: int
    columns: tuple[_Column, ...]
    wire: Wire

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        columns = self.columns
        for start in range(0, self.length, _SLICE):
            stop = min(start + _SLICE, self.length)
            yield from zip(*[c.slice(start, stop) for c in columns], strict=True)


# --- reading the input's columns ----------------------------------------------------------------


@attrs.frozen(eq=False)
class _Raw:
    """An input column before the model is consulted: its values, missing mask and source."""

    values: Any  # a numpy array, or a list of Python values
    mask: np.ndarray | None
    aware: bool | None  # datetime64 values: True in UTC, False naive, None when numpy's own
    source: str  # the input's dtype, for messages
    marker: Any = None  # the missing value the input holds where the mask is set


def _raw_from_pandas(series: Any) -> _Raw:
    pd = sys.modules["pandas"]
    dtype = series.dtype
    name = str(dtype)
    if isinstance(dtype, pd.DatetimeTZDtype):
        utc = series.dt.tz_convert("UTC").dt.tz_localize(None)
        values = utc.to_numpy()
        return _Raw(values, None, aware=True, source=name, marker=pd.NaT)
    if isinstance(dtype, np.dtype) and dtype.kind != "O":
        values = series.to_numpy()
        aware = False if dtype.kind == "M" else None
        return _Raw(values, None, aware, name, pd.NaT)
    if isinstance(dtype, pd.api.extensions.ExtensionDtype) and dtype.kind in "iufb":
        mask = series.isna().to_numpy()
        numpy_dtype = getattr(dtype, "numpy_dtype", None) or np.dtype(dtype.kind + "8")
        values = series.to_numpy(dtype=numpy_dtype, na_value=False if dtype.kind == "b" else 0)
        return _Raw(values, mask if mask.any() else None, None, name, pd.NA)
    # object, string, categorical...: the Python values, pandas' missing markers included.
    return _Raw(series.to_numpy(dtype=object), None, None, name)


def _raw_from_arrow(array: Any) -> _Raw:
    pa = sys.modules["pyarrow"]
    types = pa.types
    kind = array.type
    name = str(kind)
    mask = array.is_null().to_numpy(zero_copy_only=False) if array.null_count else None
    if types.is_timestamp(kind):
        filled = array.fill_null(0) if mask is not None else array
        ticks = filled.cast(pa.int64()).to_numpy(zero_copy_only=False)
        values = ticks.view(f"datetime64[{kind.unit}]")
        return _Raw(values, mask, kind.tz is not None, name)
    if types.is_date32(kind) or types.is_date64(kind):
        filled = array.fill_null(0) if mask is not None else array
        days = filled.cast(pa.date32()).cast(pa.int32()).to_numpy(zero_copy_only=False)
        return _Raw(days.astype("datetime64[D]"), mask, None, name)
    if types.is_integer(kind) or types.is_floating(kind) or types.is_boolean(kind):
        filled = (
            array.fill_null(False if types.is_boolean(kind) else 0) if mask is not None else array
        )
        return _Raw(np.asarray(filled.to_numpy(zero_copy_only=False)), mask, None, name)
    if types.is_string(kind) or types.is_large_string(kind) or types.is_binary(kind):
        # An object array of str (bytes), None where null: faster than to_pylist().
        return _Raw(array.to_numpy(zero_copy_only=False), None, None, name)
    return _Raw(array.to_pylist(), None, None, name)


def _raw_from_value(value: Any) -> _Raw | None:
    """A dict's column: a numpy (masked) array, a Series, an Arrow array, or a list."""
    if isinstance(value, np.ma.MaskedArray):
        mask = np.ma.getmaskarray(value)
        data = np.asarray(value.data)
        return _Raw(data, mask if mask.any() else None, None, str(value.dtype), np.ma.masked)
    if isinstance(value, np.ndarray):
        if value.ndim == 2:  # noqa: PLR2004 - a column of 1-D arrays (vectors, series)
            return _Raw(list(value), None, None, f"{value.dtype} rows")
        if value.ndim != 1:
            return None
        nat = np.datetime64("NaT") if value.dtype.kind == "M" else None
        return _Raw(value, None, None, str(value.dtype), nat)
    pd = sys.modules.get("pandas")
    if pd is not None and isinstance(
        value, (pd.Series, pd.Index, pd.api.extensions.ExtensionArray)
    ):
        return _raw_from_pandas(pd.Series(value))
    pa = sys.modules.get("pyarrow")
    if pa is not None and isinstance(value, (pa.Array, pa.ChunkedArray)):
        return _raw_from_arrow(value)
    if isinstance(value, (list, tuple)):
        return _Raw(value, None, None, type(value).__name__)
    return None


def _raw_columns(label: str, data: Any) -> tuple[dict[str, _Raw], int]:
    """Return the input's columns by name and its row count."""
    kind = _frame_kind(data)
    raws: dict[str, _Raw] = {}
    if kind == "pandas":
        _refuse_index(label, data)
        names = list(data.columns)
        _names_are_text(label, names)
        if len(set(names)) != len(names):
            dupes = sorted({n for n in names if names.count(n) > 1})
            msg = f"{label}: the DataFrame has the column(s) {dupes} more than once"
            raise ValidationError(msg, table=label, value=dupes)
        for name in names:
            raws[name] = _raw_from_pandas(data[name])
        return raws, len(data)
    if kind == "arrow":
        names = list(data.schema.names)
        if len(set(names)) != len(names):
            dupes = sorted({n for n in names if names.count(n) > 1})
            msg = f"{label}: the Arrow table has the column(s) {dupes} more than once"
            raise ValidationError(msg, table=label, value=dupes)
        for i, name in enumerate(names):
            raws[name] = _raw_from_arrow(data.column(i))
        return raws, data.num_rows
    _names_are_text(label, list(data))
    lengths: dict[str, int] = {}
    for name, value in data.items():
        raw = _raw_from_value(value)
        if raw is None:
            msg = (
                f"{label}.{name}: a column must be a 1-D numpy array (masked arrays too), a "
                f"pandas Series, a pyarrow array or a list; got {type(value).__name__}"
            )
            if isinstance(value, np.ndarray):
                msg += f" of {value.ndim} dimensions"
            raise ValidationError(msg, table=label, column=name, value=value)
        raws[name] = raw
        lengths[name] = len(raw.values)
    if len(set(lengths.values())) > 1:
        msg = f"{label}: the columns have different lengths: {lengths}"
        raise ValidationError(msg, table=label, value=lengths)
    return raws, next(iter(lengths.values()), 0)


def _names_are_text(label: str, names: list[Any]) -> None:
    bad = [n for n in names if not isinstance(n, str)]
    if bad:
        msg = f"{label}: column names must be str; got {bad[:5]}"
        raise ValidationError(msg, table=label, value=bad)


def _refuse_index(label: str, frame: Any) -> None:
    # The index is not written; one named after a model column would be lost without a word.
    named = [n for n in frame.index.names if isinstance(n, str) and n not in frame.columns]
    if named:
        msg = (
            f"{label}: the DataFrame's index {named} is not written; "
            "call reset_index() to write it as a column, or drop its name"
        )
        raise ValidationError(msg, table=label, value=named)


# --- checking a column against the model ------------------------------------------------------


def _refused(
    label: str, col: Column, raw: _Raw, reason: str, row: int | None = None, value: Any = None
) -> ValidationError:
    where = f"row {row} of the batch: " if row is not None else ""
    msg = f"{where}{label}.{col.name}: a {raw.source} column {reason}"
    err = ValidationError(msg, table=label, column=col.name, value=value)
    err.position = row
    return err


def _first(mask: np.ndarray) -> int:
    return int(np.argmax(mask))


def _native(python: Any) -> bool:
    return python in (int, float, bool, dt.datetime, dt.date)


def _check(label: str, col: Column, raw: _Raw, *, fast_ts: bool) -> _Column:
    """Return *raw* as the column *col* takes it, or raise naming the column (and the row)."""
    values = raw.values
    python = None if col.type.compressed else col.type.python
    if not isinstance(values, np.ndarray) or values.dtype.kind == "O" or not _native(python):
        return _objects(label, col, raw)
    kind = values.dtype.kind
    mask = raw.mask
    if python is int:
        if kind not in "iu":
            hint = (
                " (a pandas column of integers with missing values is float64: give the "
                "nullable Int64 dtype, astype('Int64'), or a masked array)"
                if kind == "f"
                else ""
            )
            raise _refused(label, col, raw, f"cannot be written to an int column{hint}")
        if kind == "u" and values.size and int(values.max()) > _types.INT8_MAX:
            i = _first(values > _types.INT8_MAX)
            reason = "holds a value outside the BIGINT range"
            raise _refused(label, col, raw, reason, i, values[i].item())
        out = values.astype(np.int64, copy=False)
    elif python is float:
        if kind not in "iuf":
            raise _refused(label, col, raw, "cannot be written to a float column")
        out = values.astype(np.float64, copy=False)
    elif python is bool:
        if kind != "b":
            raise _refused(label, col, raw, "cannot be written to a bool column")
        out = values
    elif python is dt.date:
        out, mask = _dates(label, col, raw, mask)
    else:
        return _timestamps(label, col, raw, mask, fast_ts=fast_ts)
    return _missing(label, col, raw, _Column(col.name, "native", out, mask))


def _union(mask: np.ndarray | None, more: np.ndarray) -> np.ndarray | None:
    if not more.any():
        return mask
    return more if mask is None else mask | more


def _dates(
    label: str, col: Column, raw: _Raw, mask: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None]:
    values = raw.values
    if values.dtype.kind != "M" or raw.aware:
        reason = "cannot be written to a date column (give datetime64[D] or datetime.date)"
        raise _refused(label, col, raw, reason)
    mask = _union(mask, np.isnat(values))
    days = values.astype("datetime64[D]")
    cut = days != values
    if mask is not None:
        cut &= ~mask
    if cut.any():
        i = _first(cut)
        reason = "holds a time of day; a date column takes whole days"
        raise _refused(label, col, raw, reason, i, values[i])
    return days, mask


def _micros(label: str, col: Column, raw: _Raw, values: np.ndarray) -> np.ndarray:
    """Return datetime64/timedelta64 *values* in microseconds, refusing any finer part."""
    kind = values.dtype.kind
    unit = np.datetime_data(values.dtype)[0]
    if unit not in ("ns", "ps", "fs", "as"):
        return values.astype(f"{kind}8[us]")
    micros = values.astype(f"{kind}8[us]")
    cut = (micros != values) & ~np.isnat(values)
    if cut.any():
        i = _first(cut)
        reason = "holds nanoseconds; PostgreSQL keeps microseconds (floor them)"
        raise _refused(label, col, raw, reason, i, values[i])
    return micros


def _timestamps(
    label: str, col: Column, raw: _Raw, mask: np.ndarray | None, *, fast_ts: bool
) -> _Column:
    values = raw.values
    if values.dtype.kind != "M":
        raise _refused(label, col, raw, "cannot be written to a datetime column")
    if raw.aware is False and not np.isnat(values).all():  # all NaT: no time to misread
        reason = (
            "has no time zone; give an aware one (e.g. Series.dt.tz_localize('UTC')) for a "
            "TIMESTAMPTZ column"
        )
        raise _refused(label, col, raw, reason)
    mask = _union(mask, np.isnat(values))
    micros = _micros(label, col, raw, values).view(np.int64)
    if mask is not None:
        micros = np.where(mask, 0, micros)
    out_of_range = (micros < _MIN_US) | (micros > _MAX_US)
    if out_of_range.any():
        i = _first(out_of_range)
        raise _refused(label, col, raw, "holds a date outside years 1-9999", i, values[i])
    naive = fast_ts and col.options.sql_type is None and col.type is _types.TIMESTAMPTZ
    return _missing(label, col, raw, _Column(col.name, "ts", micros, mask, naive))


def _missing(label: str, col: Column, raw: _Raw, out: _Column) -> _Column:
    if out.mask is not None and col.not_null:
        i = _first(out.mask)
        marker = raw.marker
        what = "filled by the server only when left out" if col.generated else "NOT NULL"
        msg = (
            f"row {i} of the batch: {label}.{col.name} is {what}; a missing value "
            f"({describe_value(marker)}) given"
        )
        err = ValidationError(msg, table=label, column=col.name, value=marker)
        err.position = i
        raise err
    return out


def _objects(label: str, col: Column, raw: _Raw) -> _Column:
    values = raw.values
    if isinstance(values, np.ndarray) and values.dtype.kind in "mM":
        # numpy's tolist() gives bare ints below microseconds: keep what datetime can hold.
        values = _micros(label, col, raw, values)
    return _Column(col.name, "object", values, raw.mask)


def prepare(meta: TableMeta, label: str, data: Any, columns: Sequence[str] | None) -> Columns:
    """Match the columnar *data* to *meta* and check every column once.

    Args:
        meta: The model's table.
        label: The table's name for messages.
        data: A DataFrame, an Arrow table or record batch, or a mapping of column arrays.
        columns: Write only these of the input's columns (all of them by default).

    Raises:
        ValidationError: An unknown column, a NOT NULL column left out, a dtype the column
            cannot take, or a missing value in a NOT NULL column (naming the row).
    """
    raws, length = _raw_columns(label, data)
    if columns is not None:
        if isinstance(columns, str):
            msg = f"columns must be a sequence of column names, not the str {columns!r}"
            raise ValidationError(msg, table=label, value=columns)
        absent = [c for c in columns if c not in raws]
        if absent:
            msg = f"{label}: columns {absent} are not in the input (it has {list(raws)})"
            raise ValidationError(msg, table=label, value=absent)
        raws = {c: raws[c] for c in columns}
    unknown = [n for n in raws if n not in meta.by_name]
    if unknown:
        msg = (
            f"{label}: the input has column(s) {unknown} that {meta.cls.__name__} does not "
            f"have (its columns: {', '.join(meta.column_names)})"
        )
        raise ValidationError(msg, table=label, value=unknown)
    left_out = [
        c.name for c in meta.columns if c.not_null and not c.generated and c.name not in raws
    ]
    if left_out:
        msg = (
            f"{label}: the input has no column for {left_out}, NOT NULL and not filled by "
            "the server"
        )
        raise ValidationError(msg, table=label, value=left_out)
    names = tuple(c.name for c in meta.columns if c.name in raws)
    shape = batch_rows.shape(meta, names)
    checked = tuple(_check(label, meta.by_name[n], raws[n], fast_ts=shape.binary) for n in names)
    naive = [i for i, c in enumerate(checked) if c.naive]
    if not naive:
        return Columns(names, length, checked, Wire(None, _same))
    types = list(shape.types)
    for i in naive:
        types[i] = "timestamp"

    def restore(row: Any) -> Any:
        values = list(row)
        for i in naive:
            if values[i] is not None:
                values[i] = values[i].replace(tzinfo=_UTC)
        return tuple(values)

    return Columns(names, length, checked, Wire(tuple(types), restore))
