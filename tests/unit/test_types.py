"""The type mapping: which values each column type accepts, and what it binds."""

from __future__ import annotations

import datetime as dt
import enum
import math
import uuid
from decimal import Decimal
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given
from hypothesis import strategies as st
from psycopg.types.json import Jsonb

from orso_pg import _types as types
from orso_pg._types import Refused, resolve_type, type_from_sql, unwrap_optional


class Side(enum.Enum):
    BUY = "buy"
    SELL = "sell"


class Level(enum.Enum):
    LOW = 1
    HIGH = 2


def dump(annotation: Any, value: Any) -> Any:
    return resolve_type(annotation).dump(value)


@pytest.mark.parametrize(
    ("annotation", "value", "reason"),
    [
        (str, "a\x00b", "NUL"),
        (str, "x\udcffy", "lone surrogate"),
        (str, 5, "expected str"),
        (int, 2**63, "outside the BIGINT range"),
        (int, -(2**63) - 1, "outside the BIGINT range"),
        (int, 1.5, "expected int"),
        (int, True, "expected int"),
        (int, float("nan"), "expected int"),
        (float, "1.0", "expected float"),
        (float, 10**400, "does not fit"),
        (bool, 1, "expected bool"),
        (dt.datetime, dt.datetime(2024, 1, 1), "naive datetime"),  # noqa: DTZ001
        (dt.datetime, dt.date(2024, 1, 1), "expected datetime"),
        (dt.date, dt.datetime(2024, 1, 1, tzinfo=dt.UTC), "expected date"),
        (Decimal, 1.5, "expected Decimal"),
        (Decimal, Decimal("sNaN"), "signalling NaN"),
        (uuid.UUID, "not-a-uuid", "is not a UUID"),
        (bytes, "text", "expected bytes"),
        (dict, {"x": float("nan")}, "NaN and Infinity"),
        (dict, {"x": "a\x00b"}, "NUL"),
        (dict, {"x": {1, 2}}, "not JSON serialisable"),
        (dict, {"x": "\ud800"}, "lone surrogate"),
        (list[int], [1, "2"], "element 1: expected int"),
        (list[int], [1, None], "None at index 1"),
        (list[int], "12", "expected list"),
        (Side, "purple", "expected Side"),
        (npt.NDArray[np.int64], np.zeros((2, 2), dtype=np.int64), "1-D array"),
        (npt.NDArray[np.int32], np.array([1.5]), "without loss"),
    ],
)
def test_bad_values_are_refused(annotation: Any, value: Any, reason: str):
    """Each bad value is refused with a reason, before any SQL is built."""
    with pytest.raises(Refused, match=reason):
        dump(annotation, value)


def test_good_values_bind_as_expected():
    """Accepted values are converted to what psycopg binds for the column."""
    aware = dt.datetime(2024, 1, 1, 12, tzinfo=dt.UTC)
    assert dump(str, "héllo") == "héllo"
    assert dump(int, np.int64(7)) == 7
    assert type(dump(int, np.int64(7))) is int
    assert dump(float, 3) == 3.0
    assert math.isnan(dump(float, float("nan")))
    assert dump(bool, np.bool_(1)) is True
    assert dump(dt.datetime, aware) == aware
    assert dump(Decimal, 3) == Decimal(3)
    assert dump(uuid.UUID, "12345678-1234-5678-1234-567812345678") == uuid.UUID(
        "12345678-1234-5678-1234-567812345678"
    )
    assert dump(list[int], (1, 2)) == [1, 2]
    assert dump(list[int | None], [1, None]) == [1, None]
    assert dump(list[float], np.array([1.0, 2.0])) == [1.0, 2.0]
    assert dump(npt.NDArray[np.int32], [1, 2]) == [1, 2]


def test_json_is_serialised_once_and_strictly():
    """JSONB values are serialised with allow_nan=False and bound as text already made."""
    bound = dump(dict, {"b": [1, 2.5, None], "a": "\\u0000 is fine escaped"})
    assert isinstance(bound, Jsonb)
    assert bound.obj == '{"b":[1,2.5,null],"a":"\\\\u0000 is fine escaped"}'


def test_enums_store_values_or_names():
    """An enum of str values stores the value; any other enum stores the member name."""
    side = resolve_type(Side)
    assert side.dump(Side.BUY) == "buy"
    assert side.dump("sell") == "sell"
    assert side.load is not None
    assert side.load("sell") is Side.SELL
    level = resolve_type(Level)
    assert level.dump(Level.HIGH) == "HIGH"
    assert level.load is not None
    assert level.load("LOW") is Level.LOW


def test_unwrap_optional():
    """``X | None`` and ``Optional[X]`` split into the type and nullability."""
    assert unwrap_optional(int | None) == (int, True)
    assert unwrap_optional(int) == (int, False)
    inner, nullable = unwrap_optional(int | str | None)
    assert nullable
    assert inner == int | str


@pytest.mark.parametrize(
    ("text", "rendered"),
    [
        ("varchar(20)", "VARCHAR(20)"),
        ("NUMERIC(10, 2)", "NUMERIC(10, 2)"),
        ("double precision[]", "DOUBLE PRECISION[]"),
        ("timestamp without time zone", "TIMESTAMP WITHOUT TIME ZONE"),
        ("citext", '"citext"'),
        ("public.my_type[][]", '"public"."my_type"[][]'),
        ("vector(3)", '"vector"(3)'),
    ],
)
def test_sql_types_render_safely(text: str, rendered: str):
    """Declared SQL types render as keywords or quoted identifiers with numeric modifiers."""
    assert type_from_sql(text, types.TEXT).ddl.as_string(None) == rendered


@pytest.mark.parametrize(
    "text", ["text; drop table x", "int) --", "varchar('x')", "multi word thing", ""]
)
def test_sql_types_reject_anything_else(text: str):
    """Text that is not a plain type name is refused."""
    with pytest.raises(ValueError, match="sql_type"):
        type_from_sql(text, types.TEXT)


def test_unmappable_annotations_list_what_is_supported():
    """An annotation with no mapping raises TypeError listing the supported types."""
    with pytest.raises(TypeError, match="supported: str, int"):
        resolve_type(complex)


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_every_bigint_is_accepted(value: int):
    """Every int in BIGINT's range passes unchanged."""
    assert dump(int, value) == value


@given(st.text())
def test_text_check_matches_postgres_rules(value: str):
    """Text is accepted exactly when it has no NUL and encodes as UTF-8."""
    try:
        value.encode("utf-8")
        storable = "\x00" not in value
    except UnicodeEncodeError:
        storable = False
    if storable:
        assert dump(str, value) == value
    else:
        with pytest.raises(Refused):
            dump(str, value)


def test_compressed_columns_take_strided_views():
    """A strided view (a column of an order book) is stored as the values it shows."""
    from orso_pg import codec

    book = np.random.default_rng(3).integers(-(2**62), 2**62, size=(64, 4))
    ctype = resolve_type(np.ndarray, compress=True)
    frame = ctype.dump(book[:, 1])
    assert codec.decode(frame).tobytes() == np.ascontiguousarray(book[:, 1]).tobytes()
    assert ctype.load is not None
    assert ctype.load(frame).tolist() == book[:, 1].tolist()
