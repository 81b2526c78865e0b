"""Columnar results: a query's columns as numpy arrays, an Arrow table or a pandas DataFrame.

Owns the rule that turns one output column of a query into a typed array (the dtypes the README
documents), from Python rows or from an Arrow table read by ADBC, and the conversions to Arrow
and pandas. Pure: it is handed values and never runs a query (the session does, choosing the
reader). pyarrow and pandas are optional: nothing here imports them until a conversion asks for
them, and a missing one is a :class:`ConfigError` naming the extra that installs it.
"""

from __future__ import annotations

import datetime as dt
import enum
import importlib
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from orso_pg._schema import Column
from orso_pg.errors import ConfigError, DataError
from orso_pg.query._filters import Aggregate

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

__all__ = [
    "adbc_can_read",
    "arrays_from_arrow",
    "arrays_from_rows",
    "kinds",
    "require",
    "to_arrow",
    "to_pandas",
]

Kind = Literal["int", "float", "bool", "datetime", "date", "object"]
Spec = tuple[str, Column | None, Aggregate | None]
Loader = Callable[[Any], Any]

_UTC = dt.UTC
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=_UTC)
# Types ADBC reads into Arrow exactly as psycopg reads them into Python; a query with any other
# column (numeric, uuid, json, arrays, intervals, vectors...) is read through the executor.
_ADBC_SAFE = (int, float, bool, dt.datetime, dt.date, str, bytes)


def require(module: str, extra: str) -> Any:
    """Import *module* or raise a :class:`ConfigError` naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        msg = f"this needs {module.split('.', maxsplit=1)[0]}: pip install 'orso_pg[{extra}]'"
        raise ConfigError(msg) from exc


def _python_of(col: Column | None, function: Aggregate | None) -> Any:
    """The Python type a value of this output column has once loaded (None: unknown)."""
    if function is Aggregate.COUNT:
        return int
    if col is None:
        return None
    if col.type.compressed:
        return object
    python = col.type.python
    if function in (Aggregate.SUM, Aggregate.AVG):
        if python is int and function is Aggregate.SUM:
            return int
        return float if python in (int, float) else python
    return python


def kinds(specs: Sequence[Spec]) -> list[Kind]:
    """Return the array kind of each output column."""
    out: list[Kind] = []
    for _, col, function in specs:
        python = _python_of(col, function)
        if python is bool:
            out.append("bool")
        elif python is int:
            out.append("int")
        elif python is float:
            out.append("float")
        elif python is dt.datetime:
            out.append("datetime")
        elif python is dt.date:
            out.append("date")
        else:
            out.append("object")
    return out


def _is_enum(python: Any) -> bool:
    return isinstance(python, type) and issubclass(python, enum.Enum)


def adbc_can_read(specs: Sequence[Spec]) -> bool:
    """Whether every output column is of a type ADBC reads exactly (see ``_ADBC_SAFE``)."""
    for _, col, function in specs:
        if function is Aggregate.COUNT:
            continue
        if col is None or function in (Aggregate.SUM, Aggregate.AVG):
            # sum() and avg() come back as numeric, which ADBC leaves as text.
            return False
        if col.type.compressed or _is_enum(col.type.python):
            continue
        if col.type.python not in _ADBC_SAFE or col.type.load is not None:
            return False
    return True


# --- conversion from Python values --------------------------------------------------------------


def _masked(values: list[Any], dtype: Any) -> np.ndarray:
    mask = np.fromiter((v is None for v in values), dtype=bool, count=len(values))
    if not mask.any():
        return np.array(values, dtype=dtype)
    filled = [0 if v is None else v for v in values]
    return np.ma.masked_array(np.array(filled, dtype=dtype), mask=mask)


def _datetimes(values: list[Any]) -> np.ndarray:
    out = np.empty(len(values), dtype="datetime64[us]")
    for i, v in enumerate(values):
        if v is None:
            out[i] = np.datetime64("NaT")
        else:
            # Whole microseconds since the epoch: exact, whatever the session time zone.
            delta = v - _EPOCH
            micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
            out[i] = np.datetime64(micros, "us")
    return out


def _dates(values: list[Any]) -> np.ndarray:
    return np.array(
        [np.datetime64("NaT") if v is None else np.datetime64(v, "D") for v in values],
        dtype="datetime64[D]",
    )


def _objects(values: Iterable[Any], n: int) -> np.ndarray:
    out = np.empty(n, dtype=object)
    for i, v in enumerate(values):
        out[i] = v
    return out


def column_array(kind: Kind, values: list[Any]) -> np.ndarray:
    """Return one column of loaded Python values as the array its kind documents."""
    if kind == "int":
        return _masked(values, np.int64)
    if kind == "bool":
        return _masked(values, np.bool_)
    if kind == "float":
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    if kind == "datetime":
        return _datetimes(values)
    if kind == "date":
        return _dates(values)
    return _objects(values, len(values))


def arrays_from_rows(
    rows: Sequence[Sequence[Any]], specs: Sequence[Spec], loaders: Sequence[Loader | None]
) -> dict[str, np.ndarray]:
    """Return the columns of *rows* (as psycopg fetched them) as arrays, loaders applied."""
    out: dict[str, np.ndarray] = {}
    columns: list[Sequence[Any]] = list(zip(*rows, strict=True)) if rows else [() for _ in specs]
    for (name, _, _), kind, load, values in zip(specs, kinds(specs), loaders, columns, strict=True):
        loaded = list(values) if load is None else [None if v is None else load(v) for v in values]
        out[name] = column_array(kind, loaded)
    return out


# --- conversion from Arrow --------------------------------------------------------------------


def _arrow_masked(chunked: pa.ChunkedArray, dtype: Any) -> np.ndarray:
    pc = importlib.import_module("pyarrow.compute")
    data = chunked.to_numpy(zero_copy_only=False) if chunked.null_count == 0 else None
    if data is not None:
        return np.asarray(data, dtype=dtype)
    filled = pc.fill_null(chunked, False if dtype is np.bool_ else 0)
    mask = pc.is_null(chunked).to_numpy(zero_copy_only=False)
    return np.ma.masked_array(np.asarray(filled.to_numpy(zero_copy_only=False), dtype), mask=mask)


def arrays_from_arrow(
    columns: list[pa.ChunkedArray | None],
    specs: Sequence[Spec],
    loaders: Sequence[Loader | None],
    label: str,
) -> dict[str, np.ndarray]:
    """Return the Arrow *columns* read by ADBC as the documented arrays.

    Each Arrow column is dropped from *columns* once converted, so that at the peak only one
    column exists twice (the reader's batches are joined into one numpy buffer per column).
    """
    pa = importlib.import_module("pyarrow")
    out: dict[str, np.ndarray] = {}
    for i, ((name, col, _), kind, load) in enumerate(
        zip(specs, kinds(specs), loaders, strict=True)
    ):
        chunked: Any = columns[i]
        columns[i] = None
        if kind == "int":
            out[name] = _arrow_masked(chunked, np.int64)
        elif kind == "bool":
            out[name] = _arrow_masked(chunked, np.bool_)
        elif kind == "float":
            out[name] = np.asarray(chunked.to_numpy(zero_copy_only=False), dtype=np.float64)
        elif kind == "datetime":
            ts = chunked.cast(pa.timestamp("us", tz="UTC"))
            out[name] = np.asarray(ts.to_numpy(zero_copy_only=False), dtype="datetime64[us]")
        elif kind == "date":
            out[name] = np.asarray(chunked.to_numpy(zero_copy_only=False), dtype="datetime64[D]")
        else:
            values = chunked.to_pylist()
            if load is not None:
                try:
                    values = [None if v is None else load(v) for v in values]
                except (ValueError, KeyError) as exc:
                    msg = f"cannot load a value of column {name!r}: {exc}"
                    raise DataError(msg, table=label, column=col.name if col else name) from exc
            out[name] = _objects(values, len(values))
    return out


# --- Arrow and pandas from arrays -------------------------------------------------------------


def to_arrow(arrays: dict[str, np.ndarray]) -> pa.Table:
    """Return *arrays* as a ``pyarrow.Table`` (masks become nulls, timestamps UTC)."""
    pa = require("pyarrow", "arrow")
    columns: dict[str, Any] = {}
    for name, arr in arrays.items():
        if isinstance(arr, np.ma.MaskedArray):
            columns[name] = pa.array(arr.data, mask=np.ma.getmaskarray(arr))
        elif arr.dtype == np.dtype("datetime64[us]"):
            columns[name] = pa.array(arr, type=pa.timestamp("us", tz="UTC"))
        elif arr.dtype == object:
            columns[name] = pa.array(_arrow_values(arr), from_pandas=True)
        else:
            columns[name] = pa.array(arr)
    return pa.table(columns)


def _arrow_values(arr: np.ndarray) -> list[Any]:
    # Arrow has no type for an enum member or a numpy array inside a cell: store the member's
    # value and the array's elements.
    out: list[Any] = []
    for v in arr:
        if isinstance(v, np.ndarray):
            out.append(v.tolist())
        elif isinstance(v, enum.Enum):
            out.append(v.value)
        else:
            out.append(v)
    return out


def to_pandas(arrays: dict[str, np.ndarray]) -> pd.DataFrame:
    """Return *arrays* as a DataFrame: nullable ints and bools, timestamps aware in UTC."""
    pd = require("pandas", "pandas")
    columns: dict[str, Any] = {}
    for name, arr in arrays.items():
        if isinstance(arr, np.ma.MaskedArray):
            dtype = "boolean" if arr.dtype == np.bool_ else "Int64"
            columns[name] = pd.array(arr.data, dtype=dtype)
            columns[name][np.ma.getmaskarray(arr)] = pd.NA
        elif arr.dtype == np.dtype("datetime64[us]"):
            columns[name] = pd.DatetimeIndex(arr).tz_localize("UTC")
        else:
            columns[name] = arr
    return pd.DataFrame(columns, index=pd.RangeIndex(len(next(iter(arrays.values()), ()))))
