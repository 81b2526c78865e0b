"""Comparing model instances the way a round trip through PostgreSQL should preserve them.

Owns :func:`differences`: the field-by-field comparison a property test needs after writing rows
and reading them back, where ``==`` is the wrong tool (a NaN is not equal to itself, numpy arrays
compare element-wise, an aware datetime comes back in UTC). It must not touch a database or
import hypothesis.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Collection, Iterable, Sequence
from decimal import Decimal
from typing import Any

import numpy as np

from orso_pg._schema import table_of
from orso_pg.errors import describe_value

__all__ = ["differences", "same_value"]


def differences(expected: object, actual: object, *, ignore: Collection[str] = ()) -> list[str]:
    """Return how *actual* differs from *expected*, one line per differing field.

    Both are model instances, or sequences of them compared position by position. Values are
    the same when a round trip through PostgreSQL may have produced one from the other: NaN
    equals NaN, arrays are equal in dtype, shape and values, aware datetimes are the same
    instant in any time zone, ``Decimal("1.0")`` equals ``Decimal("1.00")``.

    Args:
        expected: A model instance or a sequence of them.
        actual: What was read back, in the same shape.
        ignore: Field names not to compare (for instance server-filled timestamps).

    Returns:
        An empty list when nothing differs, so ``assert not differences(a, b)`` reads well and
        shows every difference when it fails.
    """
    if _is_rows(expected) or _is_rows(actual):
        if not (_is_rows(expected) and _is_rows(actual)):
            return [f"expected {describe_value(expected)}, got {describe_value(actual)}"]
        return _row_differences(list(expected), list(actual), ignore)  # type: ignore[call-overload]
    return _model_differences(expected, actual, ignore, "")


def same_value(expected: object, actual: object) -> bool:
    """Return whether two column values are the same after a round trip (as :func:`differences`)."""
    if expected is None or actual is None:
        return expected is actual
    if isinstance(expected, np.ndarray) or isinstance(actual, np.ndarray):
        return _same_array(expected, actual)
    if isinstance(expected, float) and isinstance(actual, float):
        return expected == actual or (math.isnan(expected) and math.isnan(actual))
    if isinstance(expected, Decimal) and isinstance(actual, Decimal):
        return expected == actual or (expected.is_nan() and actual.is_nan())
    if isinstance(expected, dt.datetime) and isinstance(actual, dt.datetime):
        return _same_instant(expected, actual)
    if isinstance(expected, (list, tuple)) and isinstance(actual, (list, tuple)):
        return len(expected) == len(actual) and all(
            same_value(a, b) for a, b in zip(expected, actual, strict=True)
        )
    if isinstance(expected, dict) and isinstance(actual, dict):
        return expected.keys() == actual.keys() and all(
            same_value(v, actual[k]) for k, v in expected.items()
        )
    if isinstance(expected, bool) != isinstance(actual, bool):
        return False  # True == 1 in Python, but a JSON true is not the number 1
    if isinstance(expected, (bytes, bytearray, memoryview)):
        return isinstance(actual, (bytes, bytearray, memoryview)) and bytes(expected) == bytes(
            actual
        )
    return bool(expected == actual)


def _is_rows(value: object) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes))


def _row_differences(expected: list[Any], actual: list[Any], ignore: Collection[str]) -> list[str]:
    found: list[str] = []
    if len(expected) != len(actual):
        found.append(f"expected {len(expected)} rows, got {len(actual)}")
    for i, (a, b) in enumerate(zip(expected, actual, strict=False)):
        found.extend(_model_differences(a, b, ignore, f"[{i}] "))
    return found


def _model_differences(
    expected: object, actual: object, ignore: Collection[str], where: str
) -> list[str]:
    if type(expected) is not type(actual):
        got = f"{type(actual).__name__} {describe_value(actual)}"
        return [f"{where}expected a {type(expected).__name__}, got {got}"]
    meta = table_of(expected)
    found = []
    for name in _compared(meta.column_names, ignore):
        a, b = getattr(expected, name), getattr(actual, name)
        if not same_value(a, b):
            found.append(
                f"{where}{meta.cls.__name__}.{name}: expected {describe_value(a)}, "
                f"got {describe_value(b)}"
            )
    return found


def _compared(names: Iterable[str], ignore: Collection[str]) -> list[str]:
    return [n for n in names if n not in ignore]


def _same_instant(a: dt.datetime, b: dt.datetime) -> bool:
    if a.tzinfo is None or b.tzinfo is None:
        return a == b
    # Not a == b: inter-zone comparison of a time in a DST fold is always False (PEP 495).
    return a.astimezone(dt.UTC) == b.astimezone(dt.UTC)


def _same_array(a: object, b: object) -> bool:
    if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)):
        return False
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype.kind in "fc":
        return bool(np.array_equal(a, b, equal_nan=True))
    return bool(np.array_equal(a, b))
