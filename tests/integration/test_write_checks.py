"""Every write path applies the same value checks (issue 12, items 1, 6, 7, 11 and 12).

Missing-value markers from pandas and numpy, numpy scalars, array dtypes, numeric precision,
naive and aware datetimes and oversized values give the same result through ``insert``,
``update``, ``upsert``, ``update_where`` and every batch path, binary or text COPY: what the
README's "Values" section says is stored, or a ``ValidationError`` naming table, row, column
and value, with nothing written.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray
from psycopg import sql

from orso_pg import (
    Aggregate,
    Database,
    DataError,
    DefinitionError,
    Filter,
    Orso,
    Pagination,
    ValidationError,
    column,
    table,
)
from orso_pg._types import (
    FIELD_LIMIT,
    FLOAT8,
    INTERVAL,
    TIME,
    TIMESTAMPTZ,
    Refused,
    type_from_sql,
)
from tests.conftest import Server
from tests.helpers import count_statements, create_tables

UTC = dt.UTC
T0 = dt.datetime(2024, 1, 2, 3, 4, 5, 678_000, tzinfo=UTC)


@table("wc_gaps")
class Gap(Orso):
    id: int | None = column(primary_key=True, default=None)
    code: str = column(unique=True)
    at: dt.datetime | None = None
    n: int | None = None
    x: float | None = None
    amount: Decimal | None = None
    label: str | None = None
    day: dt.date | None = None
    flag: bool | None = None


VALUES = ("at", "n", "x", "amount", "label", "day", "flag")
WRITTEN = ("code", *VALUES)


@table("wc_strict")
class Strict(Orso):
    id: int | None = column(primary_key=True, default=None)
    code: str = column(unique=True)
    at: dt.datetime
    n: int


def _filled(cls: type[Any], code: str) -> Any:
    """An instance holding a real value in every column."""
    if cls is Strict:
        return Strict(code=code, at=T0, n=1)
    return Gap(
        code=code,
        at=T0,
        n=1,
        x=1.5,
        amount=Decimal("2.5"),
        label="x",
        day=dt.date(2024, 1, 1),
        flag=False,
    )


def _columns(cls: type[Any]) -> tuple[str, ...]:
    return WRITTEN if cls is Gap else ("code", "at", "n")


def _prepare(cls: type[Any], rows: Sequence[Any], db: Database) -> None:
    """For the update paths: store a filled row per code and give *rows* their keys."""
    cls.batch_insert([_filled(cls, r.code) for r in rows], db)
    ids = {r.code: r.id for r in cls.find_all(db)}
    for r in rows:
        object.__setattr__(r, "id", ids[r.code])


def _tuples(cls: type[Any], rows: Sequence[Any]) -> list[tuple[Any, ...]]:
    return [tuple(getattr(r, c) for c in _columns(cls)) for r in rows]


def _update_where(cls: type[Any], rows: Sequence[Any], db: Database) -> None:
    for r in rows:
        values = {c: getattr(r, c) for c in _columns(cls) if c != "code"}
        cls.update_where(Filter.eq("code", r.code), values, db)


WRITES: dict[str, Callable[[type[Any], Sequence[Any], Database], object]] = {
    "insert": lambda _cls, rows, db: [r.insert(db) for r in rows],
    "upsert": lambda _cls, rows, db: [r.upsert(db) for r in rows],
    "batch_insert": lambda cls, rows, db: cls.batch_insert(rows, db),
    "batch_create_rows": lambda cls, rows, db: cls.batch_create_rows(
        _tuples(cls, rows), db, columns=_columns(cls)
    ),
    "batch_upsert": lambda cls, rows, db: cls.batch_upsert(rows, db),
    "batch_upsert_rows": lambda cls, rows, db: cls.batch_upsert_rows(
        _tuples(cls, rows), db, columns=_columns(cls)
    ),
    "update": lambda _cls, rows, db: [r.update(db) for r in rows],
    "batch_update": lambda cls, rows, db: cls.batch_update(rows, db),
    "update_where": _update_where,
}
UPDATES = frozenset({"update", "batch_update", "update_where"})
BATCHES = frozenset(
    {"batch_insert", "batch_create_rows", "batch_upsert", "batch_upsert_rows", "batch_update"}
)


def write(path: str, cls: type[Any], rows: Sequence[Any], db: Database) -> None:
    """Write *rows* through the write path called *path* (update paths store rows first)."""
    if path in UPDATES:
        _prepare(cls, rows, db)
    WRITES[path](cls, rows, db)


def write_columns(
    path: str,
    cls: type[Any],
    cols: tuple[str, ...],
    rows: Sequence[Any],
    db: Database,
    blank: Callable[[str], Any],
) -> None:
    """Write *rows* of *cls* (a ``code`` column first in *cols*) through the path *path*.

    The update paths first store ``blank(code)`` for each row and give *rows* their keys; the
    row-tuple paths and ``update_where`` write the columns *cols*.
    """
    if path in UPDATES:
        cls.batch_insert([blank(r.code) for r in rows], db)
        ids = {r.code: r.id for r in cls.find_all(db)}
        for r in rows:
            object.__setattr__(r, "id", ids[r.code])
    if path in ("batch_create_rows", "batch_upsert_rows"):
        getattr(cls, path)([tuple(getattr(r, c) for c in cols) for r in rows], db, columns=cols)
    elif path == "update_where":
        for r in rows:
            cls.update_where(Filter.eq("code", r.code), {c: getattr(r, c) for c in cols[1:]}, db)
    else:
        WRITES[path](cls, rows, db)


def _missing(value: object, *, float_column: bool) -> bool:
    """The README rule: which given values are stored as NULL."""
    if value is None or value is pd.NaT or value is pd.NA:
        return True
    if isinstance(value, (np.datetime64, np.timedelta64)):
        return bool(np.isnat(value))
    return isinstance(value, float) and math.isnan(value) and not float_column


def _same(stored: object, given: object, *, float_column: bool) -> bool:
    if _missing(given, float_column=float_column):
        return stored is None
    if isinstance(given, float) and math.isnan(given):
        return isinstance(stored, float) and math.isnan(stored)
    return stored == given and (stored is not None)


@pytest.fixture
def gaps(db: Database) -> Database:
    create_tables(db, Gap, Strict)
    return db


# --- item 1: missing values ---------------------------------------------------------------------

MARKERS = [
    pytest.param(pd.NaT, id="pd.NaT"),
    pytest.param(np.datetime64("NaT"), id="np.datetime64-NaT"),
    pytest.param(pd.NA, id="pd.NA"),
    pytest.param(float("nan"), id="nan"),
    pytest.param(np.float64("nan"), id="np.nan"),
]


@pytest.mark.parametrize("path", list(WRITES))
@pytest.mark.parametrize("marker", MARKERS)
def test_missing_markers_are_null_in_a_nullable_column(gaps: Database, path: str, marker: Any):
    """NaT, NA and NaN (outside float columns) are stored as NULL by every write path."""
    rows = [Gap(code="a", at=marker, n=marker, amount=marker, label=marker, day=marker)]
    rows.append(Gap(code="b", at=T0, n=marker, flag=marker))
    write(path, Gap, rows, gaps)
    stored = {r.code: r for r in Gap.find_all(gaps)}  # no year-48113 timestamp to choke on
    assert [stored["a"].at, stored["a"].n, stored["a"].amount] == [None, None, None]
    assert [stored["a"].label, stored["a"].day, stored["b"].n, stored["b"].flag] == [None] * 4
    assert stored["b"].at == T0


@pytest.mark.parametrize("path", list(WRITES))
@pytest.mark.parametrize("marker", MARKERS[:3])
def test_missing_marker_in_a_not_null_column_is_refused(
    gaps: Database, raw: psycopg.Connection[Any], path: str, marker: Any
):
    """A missing value where NULL is not allowed names table, row, column and value."""
    rows = [_filled(Strict, "a"), _filled(Strict, "b"), Strict(code="c", at=marker, n=1)]
    if path in UPDATES:
        _prepare(Strict, rows, gaps)
    before = raw.execute("SELECT code, at, n FROM wc_strict ORDER BY code").fetchall()
    with pytest.raises(ValidationError, match="NOT NULL; the missing value") as info:
        WRITES[path](Strict, rows, gaps)
    err = info.value
    assert (err.table, err.column) == ("wc_strict", "at")
    assert err.value is marker
    if path in BATCHES:
        assert err.position == 2
    after = raw.execute("SELECT code, at, n FROM wc_strict ORDER BY code").fetchall()
    if path in BATCHES or path in UPDATES:
        assert after == before  # the single-row paths wrote a and b, one statement each
    else:
        assert [r[0] for r in after] == ["a", "b"]


@pytest.mark.parametrize("path", list(WRITES))
def test_float_nan_is_a_value_in_a_float_column(gaps: Database, path: str):
    """In a float column NaN is a value, stored and read back as NaN; pd.NA is NULL."""
    write(path, Gap, [Gap(code="a", x=float("nan")), Gap(code="b", x=pd.NA)], gaps)
    stored = {r.code: r.x for r in Gap.find_all(gaps)}
    assert stored["a"] is not None
    assert math.isnan(stored["a"])
    assert stored["b"] is None


@pytest.mark.parametrize("path", list(WRITES))
def test_numpy_scalars_are_stored_as_their_values(gaps: Database, path: str):
    """numpy integers, floats, bools and strings are stored as the Python values they hold."""
    scalars: dict[str, Any] = {
        "n": np.int32(7),
        "x": np.float32(0.5),
        "amount": np.int64(12),
        "label": np.str_("ab"),
        "flag": np.bool_(True),  # noqa: FBT003
        "at": pd.Timestamp("2024-05-06 07:08:09", tz="UTC"),
    }
    rows = [Gap(code="a", **scalars)]
    write(path, Gap, rows, gaps)
    (got,) = Gap.find_all(gaps)
    assert (got.n, got.x, got.amount, got.label, got.flag) == (7, 0.5, Decimal(12), "ab", True)
    assert got.at == dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)


@pytest.mark.parametrize("path", list(WRITES))
def test_numpy_datetime64_and_nanoseconds_are_refused(gaps: Database, path: str):
    """A numpy datetime64 has no time zone and nanoseconds would be cut: both are refused."""
    for value, reason in [
        (np.datetime64("2024-01-01T00:00:00"), "has no time zone"),
        (pd.Timestamp("2024-01-01 00:00:00.000000001", tz="UTC"), "nanoseconds"),
    ]:
        with pytest.raises(ValidationError, match=reason) as info:
            write(path, Gap, [Gap(code="a", at=value)], gaps)
        assert info.value.column == "at"
        Gap.delete_where(Filter.is_not_null("id"), gaps)


# --- the hypothesis test: random batches with missing values of every kind ---------------------

_MARKERS = st.sampled_from([None, pd.NaT, np.datetime64("NaT"), pd.NA, float("nan"), np.nan])
_REAL: dict[str, st.SearchStrategy[Any]] = {
    "at": st.datetimes(
        min_value=dt.datetime(1900, 1, 1),  # noqa: DTZ001 - hypothesis bounds are naive
        max_value=dt.datetime(2200, 1, 1),  # noqa: DTZ001
        timezones=st.just(UTC),
    ),
    "n": st.integers(-(2**63), 2**63 - 1),
    "x": st.floats(allow_nan=False, allow_infinity=True),
    "amount": st.decimals(allow_nan=False, allow_infinity=False, places=4, max_value=10**9),
    "label": st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=8),
    "day": st.dates(),
    "flag": st.booleans(),
}


@st.composite
def _gap_rows(draw: st.DrawFn) -> list[Gap]:
    count = draw(st.integers(1, 6))
    rows = []
    for i in range(count):
        values = {name: draw(st.one_of(_MARKERS, strategy)) for name, strategy in _REAL.items()}
        rows.append(Gap(code=f"r{i}", **values))
    return rows


@settings(max_examples=40)
@given(path=st.sampled_from(list(WRITES)), rows=_gap_rows())
def test_random_batches_with_missing_values_read_back_per_the_rule(
    gaps: Database, raw: psycopg.Connection[Any], path: str, rows: list[Gap]
):
    """Whatever mix of None, NaN, NaT and pd.NA a batch holds, what reads back is the rule's."""
    raw.execute("TRUNCATE wc_gaps")
    write(path, Gap, rows, gaps)
    stored = {r.code: r for r in Gap.find_all(gaps)}
    assert set(stored) == {r.code for r in rows}
    for row in rows:
        for name in VALUES:
            given_value = getattr(row, name)
            got = getattr(stored[row.code], name)
            assert _same(got, given_value, float_column=name == "x"), (path, name, given_value, got)


# --- item 6: array dtypes -----------------------------------------------------------------------


@table("wc_arrays")
class Arrays(Orso):
    id: int | None = column(primary_key=True, default=None)
    packed: NDArray[np.float64] = column(compress=True)
    native: NDArray[np.float64]
    packed32: NDArray[np.int32] | None = column(compress=True, default=None)


ARRAY_PATHS = ["insert", "batch_insert", "batch_create_rows"]


def _write_arrays(path: str, rows: list[Arrays], db: Database) -> None:
    if path == "insert":
        for r in rows:
            r.insert(db)
    elif path == "batch_insert":
        Arrays.batch_insert(rows, db)
    else:
        cols = ("packed", "native", "packed32")
        Arrays.batch_create_rows(
            [tuple(getattr(r, c) for c in cols) for r in rows], db, columns=cols
        )


@pytest.mark.parametrize("path", ARRAY_PATHS)
def test_array_columns_cast_to_their_declared_dtype_without_loss(db: Database, path: str):
    """An int64 array in a float64 column, compressed or native, is stored and read as float64."""
    create_tables(db, Arrays)
    given: Any = np.array([1, 2, -(2**53)], dtype=np.int64)
    rows = [Arrays(packed=given, native=given, packed32=np.array([3.0, -4.0]))]
    _write_arrays(path, rows, db)
    (got,) = Arrays.find_all(db)
    for arr in (got.packed, got.native):
        assert arr.dtype == np.float64
        assert arr.tolist() == [1.0, 2.0, -(2.0**53)]
    assert got.packed32 is not None
    assert got.packed32.dtype == np.int32
    assert got.packed32.tolist() == [3, -4]


@pytest.mark.parametrize("path", ARRAY_PATHS)
@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("packed", np.array([2**53 + 1], dtype=np.int64)),
        ("native", np.array([2**53 + 1], dtype=np.int64)),
        ("packed32", np.array([1.5])),
        ("packed32", np.array([2.0**40])),
        ("packed", np.array(["1.0"])),
    ],
)
def test_array_values_a_cast_would_change_are_refused(
    db: Database, path: str, name: str, value: Any
):
    """A cast that would change a value (or a dtype that is not numeric) is refused."""
    create_tables(db, Arrays)
    ok = np.array([1.0])
    row = Arrays(packed=ok, native=ok)
    object.__setattr__(row, name, value)
    with pytest.raises(ValidationError, match="cannot be stored as") as info:
        _write_arrays(path, [Arrays(packed=ok, native=ok), row], db)
    assert info.value.column == name
    assert Arrays.count(db) == (1 if path == "insert" else 0)


def test_a_compressed_frame_of_another_dtype_reads_as_the_declared_one(
    db: Database, raw: psycopg.Connection[Any]
):
    """A frame written before the dtype was declared is cast on read, or refused when lossy."""
    from orso_pg import codec
    from orso_pg.errors import CompressionError

    create_tables(db, Arrays)
    frame = codec.encode(np.array([1, 2], dtype=np.int16))
    raw.execute("INSERT INTO wc_arrays (packed, native) VALUES (%s, '{1}')", (frame,))
    (got,) = Arrays.find_all(db)
    assert got.packed.dtype == np.float64
    assert got.packed.tolist() == [1.0, 2.0]
    lossy = codec.encode(np.array([0.5], dtype=np.float64))
    raw.execute("UPDATE wc_arrays SET packed32 = %s", (lossy,))
    with pytest.raises(CompressionError, match="without loss"):
        Arrays.find_all(db)


# --- item 7: numeric precision and scale --------------------------------------------------------


@table("wc_money")
class Money(Orso):
    id: int | None = column(primary_key=True, default=None)
    code: str = column(unique=True)
    exact: Decimal = column(sql_type="numeric(18, 8)")
    rounded: Decimal | None = column(sql_type="numeric(6, 2)", round=True, default=None)
    whole: int | None = column(sql_type="numeric(4)", default=None)


def _money_write(path: str, rows: list[Money], db: Database) -> None:
    cols = ("code", "exact", "rounded", "whole")
    write_columns(path, Money, cols, rows, db, lambda code: Money(code=code, exact=Decimal(0)))


@pytest.mark.parametrize("path", list(WRITES))
@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("exact", Decimal("0.000000001"), "more than 8 decimal places"),
        ("exact", Decimal("1e10"), "does not fit numeric"),
        ("exact", Decimal("Infinity"), "infinite"),
        ("rounded", Decimal("9999.995"), "does not fit numeric"),
        ("whole", 12345, "does not fit numeric"),
    ],
)
def test_numeric_values_that_do_not_fit_are_refused(
    db: Database, path: str, name: str, value: Any, reason: str
):
    """A value numeric(p, s) would round or cannot hold is refused, never rounded silently."""
    create_tables(db, Money)
    row = Money(code="a", exact=Decimal(1))
    object.__setattr__(row, name, value)
    with pytest.raises(ValidationError, match=reason) as info:
        _money_write(path, [Money(code="b", exact=Decimal(1)), row], db)
    assert (info.value.column, info.value.value) == (name, value)
    if path not in UPDATES:
        assert Money.find_one(Filter.eq("code", "a"), db) is None


@pytest.mark.parametrize("path", list(WRITES))
def test_numeric_values_that_fit_are_stored_exactly(db: Database, path: str):
    """Trailing zeros past the scale are not a change; round=True rounds half away from zero."""
    create_tables(db, Money)
    rows = [
        Money(code="a", exact=Decimal("0.123456780"), rounded=Decimal("1.005"), whole=9999),
        Money(code="b", exact=Decimal("-9999999999.99999999"), rounded=Decimal("-1.005")),
    ]
    _money_write(path, rows, db)
    got = {m.code: m for m in Money.find_all(db)}
    assert (got["a"].exact, got["a"].rounded, got["a"].whole) == (
        Decimal("0.12345678"),
        Decimal("1.01"),
        9999,
    )
    assert (got["b"].exact, got["b"].rounded) == (Decimal("-9999999999.99999999"), Decimal("-1.01"))


def test_round_needs_a_numeric_type_with_a_scale():
    """round=True anywhere but on a numeric(p, s) column is a definition error."""
    with pytest.raises(DefinitionError, match="round=True needs"):

        @table("wc_bad_round")
        class BadRound(Orso):
            id: int | None = column(primary_key=True, default=None)
            amount: Decimal = column(round=True)

    with pytest.raises(DefinitionError, match="round=True needs"):

        @table("wc_bad_round")
        class BadRound2(Orso):
            id: int | None = column(primary_key=True, default=None)
            amount: Decimal = column(sql_type="numeric", round=True)


# --- real and fractional seconds: what the declared precision holds --------------------------


@table("wc_precise")
class Precise(Orso):
    id: int | None = column(primary_key=True, default=None)
    code: str = column(unique=True)
    single: float = column(sql_type="real", default=0.5)
    moment: dt.datetime = column(sql_type="timestamptz(3)", default=T0)
    clock: dt.time = column(sql_type="time(0)", default=dt.time(12))
    span: dt.timedelta = column(sql_type="interval(2)", default=dt.timedelta(0))
    near: float | None = column(sql_type="real", round=True, default=None)
    stamp: dt.datetime | None = column(sql_type="timestamp(0)", round=True, default=None)
    tick: dt.time | None = column(sql_type="time(3)", round=True, default=None)
    lag: dt.timedelta | None = column(sql_type="interval(1)", round=True, default=None)


PRECISE = ("code", "single", "moment", "clock", "span", "near", "stamp", "tick", "lag")


def _precise_write(path: str, rows: list[Precise], db: Database) -> None:
    write_columns(path, Precise, PRECISE, rows, db, lambda code: Precise(code=code))


@pytest.mark.parametrize("path", list(WRITES))
@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("single", 0.1, "not exactly a real"),
        ("single", 2.0**24 + 1, "not exactly a real"),
        ("moment", T0.replace(microsecond=678_900), "more than 3 fractional digits"),
        ("clock", dt.time(12, 0, 0, 1), "more than 0 fractional digits"),
        ("span", dt.timedelta(days=-1, microseconds=5), "more than 2 fractional digits"),
    ],
)
def test_values_finer_than_the_declared_precision_are_refused(
    db: Database, path: str, name: str, value: Any, reason: str
):
    """real, timestamp(p), time(p) and interval(p) would round these: refused, naming them."""
    create_tables(db, Precise)
    row = Precise(code="a")
    object.__setattr__(row, name, value)
    with pytest.raises(ValidationError, match=reason) as info:
        _precise_write(path, [Precise(code="b"), row], db)
    assert (info.value.column, info.value.value) == (name, value)
    if path not in UPDATES:
        assert Precise.find_one(Filter.eq("code", "a"), db) is None


def _server_rounds(raw: psycopg.Connection[Any], value: Any, sql_type: str) -> Any:
    """What PostgreSQL stores for *value* in a column of *sql_type* (the test's oracle)."""
    cast = sql.SQL("SELECT %s::{}").format(sql.SQL(sql_type))  # the test's own type names
    (stored,) = raw.execute(cast, (value,), binary=True).fetchone() or (None,)  # a real exactly
    return stored


@pytest.mark.parametrize("path", list(WRITES))
def test_round_true_stores_what_the_server_would_round_to(
    db: Database, raw: psycopg.Connection[Any], path: str
):
    """round=True rounds real, timestamp(0), time(3) and interval(1) as PostgreSQL does."""
    create_tables(db, Precise)
    before = dt.datetime(1999, 12, 31, 23, 59, 58, 500_000, tzinfo=UTC)  # a tie, before 2000
    given = {
        "a": (
            0.1,
            T0.replace(microsecond=500_000),
            dt.time(1, 2, 3, 4500),
            dt.timedelta(0, 1, 50_000),
        ),
        "b": (1 / 3, before, dt.time(23, 59, 59, 999_400), dt.timedelta(-2, 5, 949_999)),
    }
    rows = [Precise(code=c, near=n, stamp=s, tick=t, lag=g) for c, (n, s, t, g) in given.items()]
    _precise_write(path, rows, db)
    stored = {r.code: r for r in Precise.find_all(db)}
    for code, (near, stamp, tick, lag) in given.items():
        got = stored[code]
        assert got.near == _server_rounds(raw, near, "float8::real")
        assert got.stamp == _server_rounds(raw, stamp, "timestamptz(0)")
        assert got.tick == _server_rounds(raw, tick, "time(3)")
        assert got.lag == _server_rounds(raw, lag, "interval(1)")
    assert stored["a"].stamp == T0.replace(microsecond=0) + dt.timedelta(seconds=1)
    assert stored["b"].stamp == before.replace(microsecond=0)  # half away from 2000-01-01


@settings(max_examples=200)
@given(
    moment=st.datetimes(dt.datetime(1, 1, 2), dt.datetime(9999, 12, 30), timezones=st.just(UTC)),  # noqa: DTZ001
    clock=st.times(),
    span=st.timedeltas(),
    number=st.floats(-(2.0**100), 2.0**100, allow_nan=False),
    digits=st.integers(0, 5),
)
def test_rounding_matches_postgresql(
    raw: psycopg.Connection[Any],
    moment: dt.datetime,
    clock: dt.time,
    span: dt.timedelta,
    number: float,
    digits: int,
):
    """The rounding round=True applies is the server's own, value for value."""
    cases = [
        (f"timestamptz({digits})", TIMESTAMPTZ, moment),
        (f"time({digits})", TIME, clock),
        (f"interval({digits})", INTERVAL, span),
        ("real", FLOAT8, number),
    ]
    for sql_type, base, value in cases:
        ctype = type_from_sql(sql_type, base, round_to_scale=True)
        oracle = "float8::real" if base is FLOAT8 else sql_type
        try:
            ours = ctype.store(value)
        except Refused:  # 24:00:00, past year 9999, a real's underflow: no Python value holds
            with pytest.raises(psycopg.Error):
                _server_rounds(raw, value, oracle)
            continue
        assert ours == _server_rounds(raw, value, oracle)


# --- item 11: the same datetime checks whatever the COPY format --------------------------------


@table("wc_clock")
class Clock(Orso):
    id: int | None = column(primary_key=True, default=None)
    code: str = column(unique=True)
    small: int = column(sql_type="integer")  # another wire type: batches use text COPY
    at: dt.datetime
    wall: dt.datetime | None = column(sql_type="timestamp", default=None)


@pytest.fixture
def new_york(server: Server, schema: str) -> Iterator[Database]:
    """A Database whose sessions run in New York time."""
    database = Database(
        server.dsn, schema=schema, timezone="America/New_York", min_size=1, max_size=2
    )
    try:
        create_tables(database, Clock)
        yield database
    finally:
        database.close()


def _clock_write(path: str, rows: list[Clock], db: Database) -> None:
    cols = ("code", "small", "at", "wall")
    write_columns(path, Clock, cols, rows, db, lambda code: Clock(code=code, small=0, at=T0))


@pytest.mark.parametrize("path", list(WRITES))
def test_naive_datetimes_are_refused_by_text_copy_too(new_york: Database, path: str):
    """A naive datetime is refused by every path, also when the batch travels as text COPY."""
    naive = dt.datetime(2024, 1, 1, 12)  # noqa: DTZ001 - the value under test
    rows = [Clock(code="a", small=1, at=T0), Clock(code="b", small=2, at=naive)]
    refused = pytest.raises(ValidationError, match="naive datetime")
    with count_statements(new_york) as log, refused as info:
        _clock_write(path, rows, new_york)
    assert (info.value.column, info.value.value) == ("at", naive)
    if path in ("batch_insert", "batch_create_rows"):
        assert any(t.endswith("(FORMAT TEXT)") for t in log.texts())
    stored = {c.code: c.at for c in Clock.find_all(new_york)}
    assert naive not in stored.values()
    assert stored.get("b") in (None, T0)


@pytest.mark.parametrize("path", list(WRITES))
def test_aware_datetimes_into_a_timestamp_column_keep_their_instant(
    new_york: Database, raw: psycopg.Connection[Any], path: str
):
    """sql_type="timestamp" stores the UTC time of an aware datetime and reads it back as UTC."""
    plus5 = dt.timezone(dt.timedelta(hours=5))
    given = dt.datetime(2024, 1, 1, 12, tzinfo=plus5)
    _clock_write(path, [Clock(code="a", small=1, at=given, wall=given)], new_york)
    (got,) = Clock.find_all(new_york)
    assert got.wall == given
    assert got.wall.utcoffset() == dt.timedelta(0)
    assert got.at == given
    text = raw.execute("SELECT wall::text FROM wc_clock").fetchone()
    assert text == ("2024-01-01 07:00:00",)
    assert Clock.find_one(Filter.eq("wall", given), new_york) is not None


@pytest.mark.parametrize("path", list(WRITES))
def test_naive_datetimes_into_a_timestamp_column_are_refused(new_york: Database, path: str):
    """A naive datetime has no instant to store, in a timestamp column too."""
    naive = dt.datetime(2024, 1, 1, 12)  # noqa: DTZ001 - the value under test
    with pytest.raises(ValidationError, match="naive datetime") as info:
        _clock_write(path, [Clock(code="a", small=1, at=T0, wall=naive)], new_york)
    assert info.value.column == "wall"


# --- item 12: errors name the column; unreadable values; the 1 GB limit ------------------------


@table("wc_narrow")
class Narrow(Orso):
    id: int | None = column(primary_key=True, default=None)
    code: str | None = column(sql_type="varchar(5)", default=None)
    amount: Decimal | None = column(sql_type="numeric(10, 2)", default=None)
    small: int | None = column(sql_type="smallint", default=None)
    tags: list[str] | None = column(sql_type="varchar(3)[]", default=None)
    at: dt.datetime | None = None
    blob: bytes | None = None


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("code", "abcdefgh", "8 characters do not fit varchar"),
        ("amount", Decimal("1e20"), "does not fit numeric"),
        ("small", 40_000, "outside the smallint range"),
        ("tags", ["ab", "abcd"], "element 1: 4 characters do not fit varchar"),
    ],
)
@pytest.mark.parametrize("path", ["insert", "update", "update_where"])
def test_single_row_writes_name_the_column_and_the_value(
    db: Database, path: str, name: str, value: Any, reason: str
):
    """A value the declared type cannot hold is refused naming the column, before any SQL."""
    create_tables(db, Narrow)
    target = Narrow().insert(db)
    row = Narrow(id=target.id)
    object.__setattr__(row, name, value)
    with count_statements(db) as log, pytest.raises(ValidationError, match=reason) as info:
        if path == "insert":
            row.insert(db)
        elif path == "update":
            row.update(db)
        else:
            Narrow.update_where(Filter.eq("id", target.id), {name: value}, db)
    assert (info.value.table, info.value.column, info.value.value) == ("wc_narrow", name, value)
    assert len(log) == 0


@pytest.mark.parametrize("stored", ["infinity", "-infinity", "20000-01-01 00:00:00+00"])
def test_unreadable_timestamps_name_table_column_and_row(
    db: Database, raw: psycopg.Connection[Any], stored: str
):
    """A timestamp Python cannot hold raises a DataError naming table, column and row key."""
    create_tables(db, Narrow)
    Narrow(code="ok", at=T0).insert(db)
    key = raw.execute(
        "INSERT INTO wc_narrow (code, at) VALUES ('bad', %s::timestamptz) RETURNING id", (stored,)
    ).fetchone()
    assert key is not None
    reads: list[Callable[[], object]] = [
        lambda: Narrow.find_all(db),
        lambda: Narrow.find_by_id(key[0], db),
        lambda: Narrow.find_paginated(Pagination(1, 10), db),
        lambda: list(Narrow.stream_where(None, db)),
    ]
    for read in reads:
        with pytest.raises(DataError, match=rf"column 'at', row with id = {key[0]}\]") as info:
            read()
        assert (info.value.table, info.value.column) == ("wc_narrow", "at")
    # An aggregate's column comes from no table: the row is named by its place in the result.
    low = stored.startswith("-")
    name = "min" if low else "max"
    with pytest.raises(DataError, match=rf"column '{name}', row 0 of the result\]"):
        Narrow.aggregate(Aggregate.MIN if low else Aggregate.MAX, "at", None, db)
    assert Narrow.count(db) == 2  # the connection and the table are fine


def test_values_over_the_field_limit_are_refused_before_sending(db: Database):
    """A value over PostgreSQL's 1 GB field limit is refused naming the column, sending nothing."""
    create_tables(db, Narrow, Clock)
    # calloc'd zeros: the pages are never touched, so the test needs no gigabyte of memory.
    huge: Any = np.zeros(FIELD_LIMIT + 1, dtype=np.uint8).data
    with count_statements(db) as log:
        with pytest.raises(ValidationError, match=r"over the .*-byte limit") as info:
            Narrow(blob=huge).insert(db)
        assert info.value.column == "blob"
        with pytest.raises(ValidationError, match=r"over the .*-byte limit") as info:
            Narrow.batch_insert([Narrow(), Narrow(blob=huge)], db)
        assert (info.value.column, info.value.position) == ("blob", 1)
    assert not any("INSERT" in t for t in log.texts())


@table("wc_text_copy")
class TextCopy(Orso):
    id: int | None = column(primary_key=True, default=None)
    small: int = column(sql_type="integer")  # makes batches use text COPY
    blob: bytes | None = None


def test_text_copy_refuses_a_value_its_hex_form_would_make_too_large(db: Database):
    """In text COPY a bytea is sent as hex, twice its size: the limit applies to that form."""
    create_tables(db, TextCopy)
    half: Any = np.zeros((FIELD_LIMIT - 3) // 2 + 1, dtype=np.uint8).data
    with pytest.raises(ValidationError, match="in a text COPY row is over") as info:
        TextCopy.batch_insert([TextCopy(small=1), TextCopy(small=2, blob=half)], db)
    assert (info.value.column, info.value.position) == ("blob", 1)
    assert TextCopy.count(db) == 0
    # The same value in binary COPY and in a single insert fits.
    assert len(half) < FIELD_LIMIT


def test_pandas_is_not_imported_by_orso_pg():
    """orso_pg detects pandas' markers without importing pandas itself."""
    import subprocess
    import sys

    code = "import sys, orso_pg, orso_pg.batch; print('pandas' in sys.modules)"
    command = [sys.executable, "-c", code]
    out = subprocess.run(command, capture_output=True, text=True, check=True)  # noqa: S603
    assert out.stdout.strip() == "False"
