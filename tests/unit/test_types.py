"""The type mapping: which values each column type accepts, and what it binds."""

from __future__ import annotations

import datetime as dt
import decimal
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


# --- missing values, declared sizes, array dtypes (issue 12) -----------------------------------


@pytest.mark.parametrize(
    ("value", "annotation", "marker"),
    [
        (float("nan"), int, "NaN"),
        (float("nan"), str, "NaN"),
        (float("nan"), float, None),
        (np.float64("nan"), Decimal, "NaN"),
        (np.float32("nan"), float, None),
        (np.datetime64("NaT"), dt.datetime, "NaT"),
        (np.timedelta64("NaT"), dt.timedelta, "NaT"),
        (np.datetime64("2024-01-01"), dt.datetime, None),
        (np.int64(3), int, None),
        (Decimal("NaN"), Decimal, None),
        (0.5, int, None),
        ("NaN", str, None),
        pytest.param(type("F", (float,), {})("nan"), int, "NaN", id="float-subclass"),
    ],
)
def test_missing_markers_are_told_from_values(value: Any, annotation: Any, marker: str | None):
    """NaN is missing except in a float column; NaT always; everything else is a value."""
    assert types.missing(value, resolve_type(annotation)) == marker


def test_pandas_markers_are_missing_once_pandas_is_imported():
    """pd.NaT and pd.NA are found by identity, without orso_pg importing pandas."""
    pd = pytest.importorskip("pandas")
    assert types.missing(pd.NaT, types.TIMESTAMPTZ) == "NaT"
    assert types.missing(pd.NA, types.BIGINT) == "pd.NA"
    assert types.missing(pd.Timestamp("2024-01-01", tz="UTC"), types.TIMESTAMPTZ) is None


@pytest.mark.parametrize(
    ("sql_type", "annotation", "value", "reason"),
    [
        ("varchar(3)", str, "abcd", "4 characters do not fit varchar"),
        ("char(2)", str, "abc", "do not fit char"),
        ("numeric(5, 2)", Decimal, Decimal("1.234"), "more than 2 decimal places"),
        ("numeric(5, 2)", Decimal, Decimal(1000), "does not fit numeric"),
        ("numeric(5, 2)", Decimal, Decimal("999.995"), "does not fit numeric"),
        ("numeric(5, 2)", Decimal, Decimal("-Infinity"), "infinite"),
        ("numeric(5)", int, 123456, "does not fit numeric"),
        ("numeric(5, 2)", float, 0.125, "more than 2 decimal places"),
        ("numeric(2, -3)", Decimal, Decimal(100000), "does not fit numeric"),
        ("numeric(2, -3)", Decimal, Decimal(1500), "more than -3 decimal places"),
        ("integer", int, 2**31, "outside the integer range"),
        ("smallint", int, -(2**15) - 1, "outside the smallint range"),
        ("real", float, 1e39, "outside the range of real"),
        ("real", float, 0.1, "not exactly a real"),
        ("float(24)", float, 0.1, "not exactly a real"),
        ("float4", float, 1e-50, "too small for real"),
        ("real[]", list[float], [0.5, 0.1], "element 1: 0.1 is not exactly a real"),
        ("timestamptz(3)", dt.datetime, dt.datetime(2024, 1, 1, 0, 0, 0, 1500, dt.UTC), "3 frac"),
        (
            "timestamp(0) with time zone",
            dt.datetime,
            dt.datetime(2024, 1, 1, 0, 0, 0, 1, dt.UTC),
            "0",
        ),
        ("time(2)", dt.time, dt.time(1, 2, 3, 4), "more than 2 fractional digits"),
        ("interval(5)", dt.timedelta, dt.timedelta(microseconds=-1), "more than 5 fractional"),
        ("varchar(2)[]", list[str | None], ["ab", None, "abc"], "element 2: 3 characters"),
    ],
)
def test_declared_types_refuse_what_they_cannot_hold(
    sql_type: str, annotation: Any, value: Any, reason: str
):
    """A write is checked against the declared type; filters (dump) are not."""
    ctype = type_from_sql(sql_type, resolve_type(annotation))
    ctype.dump(value)
    with pytest.raises(Refused, match=reason):
        ctype.store(value)


@pytest.mark.parametrize(
    ("sql_type", "annotation", "value", "stored"),
    [
        ("numeric(5, 2)", Decimal, Decimal("1.500000"), Decimal("1.500000")),
        ("numeric(5, 2)", Decimal, Decimal("-999.99"), Decimal("-999.99")),
        ("numeric(5, 2)", Decimal, Decimal("NaN"), Decimal("NaN")),
        ("numeric(5, 2)", float, 0.25, 0.25),
        ("numeric(2, -3)", Decimal, Decimal(99000), Decimal(99000)),
        ("numeric(5)", int, 99999, 99999),
        ("integer", int, -(2**31), -(2**31)),
        ("real", float, math.inf, math.inf),
        ("real", float, 0.1875, 0.1875),
        ("float(25)", float, 0.1, 0.1),  # double precision from 25 bits on
        ("timestamptz(3)", dt.datetime, dt.datetime(2024, 1, 1, 0, 0, 0, 1000, dt.UTC), None),
        ("time(0)", dt.time, dt.time(23, 59, 59), dt.time(23, 59, 59)),
        ("interval(6)", dt.timedelta, dt.timedelta(microseconds=1), dt.timedelta(microseconds=1)),
        ("timestamp", dt.datetime, dt.datetime(2024, 1, 1, 0, 0, 0, 1, dt.UTC), None),
        ("varchar(2)", str, "ab", "ab"),
        ("text", str, "x" * 10, "x" * 10),
    ],
)
def test_declared_types_store_what_fits_unchanged(
    sql_type: str, annotation: Any, value: Any, stored: Any
):
    """A value that fits is bound as given (None: as its column's dump binds it)."""
    ctype = type_from_sql(sql_type, resolve_type(annotation))
    expected = ctype.dump(value) if stored is None else stored
    # Compared as text: Decimal NaN is not equal to itself.
    assert str(ctype.store(value)) == str(expected)


@pytest.mark.parametrize(
    ("sql_type", "annotation", "value", "stored"),
    [
        ("real", float, 0.1, float(np.float32(0.1))),
        # Just past the largest float4, which it rounds to: no overflow.
        ("real", float, math.nextafter(3.4028234663852886e38, math.inf), 3.4028234663852886e38),
        # Half away from PostgreSQL's epoch, 2000-01-01: up after it, down before it.
        (
            "timestamptz(0)",
            dt.datetime,
            dt.datetime(2024, 1, 1, 0, 0, 0, 500_000, dt.UTC),
            dt.datetime(2024, 1, 1, 0, 0, 1, tzinfo=dt.UTC),
        ),
        (
            "timestamptz(0)",
            dt.datetime,
            dt.datetime(1999, 1, 1, 0, 0, 0, 500_000, dt.UTC),
            dt.datetime(1999, 1, 1, tzinfo=dt.UTC),
        ),
        (
            "timestamptz(1)",
            dt.datetime,
            dt.datetime(1999, 1, 1, 0, 0, 0, 149_999, dt.timezone(dt.timedelta(hours=5))),
            dt.datetime(1999, 1, 1, 0, 0, 0, 100_000, dt.timezone(dt.timedelta(hours=5))),
        ),
        # An offset holding fractions of a second: the instant is rounded, the zone kept.
        (
            "timestamptz(0)",
            dt.datetime,
            dt.datetime(2024, 1, 1, 0, 0, 0, 0, dt.timezone(dt.timedelta(microseconds=300_000))),
            dt.datetime(2024, 1, 1, tzinfo=dt.UTC),  # from 23:59:59.7 UTC
        ),
        ("time(3)", dt.time, dt.time(1, 59, 59, 999_500), dt.time(2)),
        (
            "interval(0)",
            dt.timedelta,
            dt.timedelta(days=-1, microseconds=500_000),
            dt.timedelta(-1, 1),
        ),
    ],
)
def test_round_true_rounds_as_postgresql(sql_type: str, annotation: Any, value: Any, stored: Any):
    """round=True binds what the server would round the value to."""
    ctype = type_from_sql(sql_type, resolve_type(annotation), round_to_scale=True)
    rounded = ctype.store(value)
    assert rounded == stored
    if isinstance(value, dt.datetime):
        assert rounded.tzinfo is value.tzinfo


@pytest.mark.parametrize(
    ("sql_type", "annotation", "value", "reason"),
    [
        ("time(0)", dt.time, dt.time(23, 59, 59, 500_000), "rounds to 24:00:00"),
        ("timestamptz(0)", dt.datetime, dt.datetime.max.replace(tzinfo=dt.UTC), "rounds past"),
        ("real", float, 1e-300, "too small for real"),
        ("real", float, -1e39, "outside the range of real"),
    ],
)
def test_round_true_refuses_what_python_or_postgresql_cannot_hold(
    sql_type: str, annotation: Any, value: Any, reason: str
):
    ctype = type_from_sql(sql_type, resolve_type(annotation), round_to_scale=True)
    with pytest.raises(Refused, match=reason):
        ctype.store(value)


@given(st.decimals(allow_nan=False, allow_infinity=False), st.integers(1, 12), st.integers(0, 6))
def test_numeric_fit_agrees_with_exact_arithmetic(value: Decimal, precision: int, scale: int):
    """store() accepts exactly the values numeric(p, s) holds unchanged; round=True rounds."""
    scale = min(scale, precision)
    ctype = type_from_sql(f"numeric({precision}, {scale})", types.NUMERIC)
    exact = value * 10**scale == int(value * 10**scale) and abs(value) < Decimal(10) ** (
        precision - scale
    )
    try:
        stored = ctype.store(value)
    except Refused:
        assert not exact
    else:
        assert exact
        assert stored == value
    rounding = type_from_sql(f"numeric({precision}, {scale})", types.NUMERIC, round_to_scale=True)
    # The oracle needs room for every digit: quantize in the default 28-digit context raises
    # InvalidOperation on the large values hypothesis draws.
    with decimal.localcontext() as wide:
        wide.prec = 2000
        quantized = value.quantize(Decimal(1).scaleb(-scale), rounding="ROUND_HALF_UP")
        fits = abs(quantized) < Decimal(10) ** (precision - scale)
    if not fits:
        with pytest.raises(Refused, match="does not fit"):
            rounding.store(value)
        return
    rounded = rounding.store(value)
    assert abs(rounded - value) <= Decimal(1).scaleb(-scale) / 2


def test_round_needs_numeric_with_modifiers():
    """round_to_scale on any other declared type is refused when the model is defined."""
    for text in ("numeric", "varchar(3)", "integer", "timestamptz(6)", "interval", "float(25)"):
        with pytest.raises(ValueError, match="round=True needs"):
            type_from_sql(text, types.NUMERIC, round_to_scale=True)


def test_timestamp_columns_store_the_utc_wall_time():
    """sql_type='timestamp' binds the UTC time of an aware datetime, and loads it as UTC."""
    ctype = type_from_sql("timestamp", types.TIMESTAMPTZ)
    plus2 = dt.timezone(dt.timedelta(hours=2))
    assert ctype.dump(dt.datetime(2024, 1, 1, 12, tzinfo=plus2)) == dt.datetime(2024, 1, 1, 10)  # noqa: DTZ001
    assert ctype.load is not None
    assert ctype.load(dt.datetime(2024, 1, 1, 10)) == dt.datetime(2024, 1, 1, 10, tzinfo=dt.UTC)  # noqa: DTZ001
    with pytest.raises(Refused, match="naive datetime"):
        ctype.dump(dt.datetime(2024, 1, 1, 12))  # noqa: DTZ001
    with_tz = type_from_sql("timestamp with time zone", types.TIMESTAMPTZ)
    assert with_tz.dump is types.TIMESTAMPTZ.dump


@pytest.mark.parametrize(
    ("given", "dtype", "ok"),
    [
        (np.array([1, 2], dtype=np.int64), np.float64, True),
        (np.array([2**53 + 1], dtype=np.int64), np.float64, False),
        (np.array([1.0, -2.0]), np.int32, True),
        (np.array([0.5]), np.int64, False),
        (np.array([np.nan]), np.int64, False),
        (np.array([np.nan, 1.0]), np.float32, True),
        (np.array([0.1]), np.float32, False),
        (np.array([True, False]), np.int16, True),
        (np.array([2], dtype=np.int64), np.bool_, False),
        (np.array(["1"]), np.float64, False),
        (np.zeros((2, 2), dtype=np.int32), np.int64, True),
    ],
)
def test_arrays_are_cast_only_without_loss(given: Any, dtype: Any, ok: bool):
    """The one dtype rule of array columns: a cast that changes no value, or a refusal."""
    if not ok:
        with pytest.raises(Refused, match="cannot be stored as"):
            types.cast_array(given, np.dtype(dtype))
        return
    cast = types.cast_array(given, np.dtype(dtype))
    assert cast.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(cast.astype(given.dtype), given)


def test_compressed_columns_keep_their_declared_dtype():
    """NDArray[np.float64] with compress=True casts int arrays and reads float64 back."""
    ctype = resolve_type(npt.NDArray[np.float64], compress=True)
    assert ctype.label == "bytea (compressed ndarray float64)"
    assert ctype.load is not None
    back = ctype.load(ctype.dump(np.arange(4)))
    assert back.dtype == np.float64
    assert back.tolist() == [0.0, 1.0, 2.0, 3.0]
    with pytest.raises(Refused, match="without loss"):
        ctype.dump(np.array([2**60 + 1]))


def test_oversized_values_are_refused_without_reading_them():
    """bytes, text and JSON over the field limit are refused by their size alone."""
    huge: Any = np.zeros(types.FIELD_LIMIT + 1, dtype=np.uint8).data
    with pytest.raises(Refused, match="over the"):
        types.BYTEA.dump(huge)
    assert types.BYTEA.dump(b"x") == b"x"


def test_text_and_json_sizes_are_measured_in_utf8(monkeypatch: pytest.MonkeyPatch):
    """The limit counts UTF-8 bytes: 60 two-byte characters are over a 100-byte limit."""
    monkeypatch.setattr(types, "FIELD_LIMIT", 100)
    monkeypatch.setattr(types, "_SIZE_STEP", 7)
    assert types.TEXT.dump("a" * 100) == "a" * 100
    with pytest.raises(Refused, match="120 bytes is over the 100-byte limit"):
        types.TEXT.dump("é" * 60)
    assert types.utf8_size("é€" * 9) == len(("é€" * 9).encode())
    with pytest.raises(Refused, match="over the 100-byte limit"):
        types.JSONB.dump({"k": "é" * 60})
    with pytest.raises(Refused, match="over the 100-byte limit"):
        types.BYTEA.dump(b"x" * 101)
