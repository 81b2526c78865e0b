"""Columnar input to batch_create_rows and batch_upsert_rows: DataFrames, Arrow, dicts of arrays.

The oracle is the tuple path: the same values given as tuples must store exactly the same rows
(compared as PostgreSQL prints them), and every missing value is NULL in a nullable column or
refused naming the row in a NOT NULL one.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import numpy as np
import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg import sql

from orso_pg import (
    Database,
    Filter,
    Migrations,
    Orso,
    UpsertResult,
    ValidationError,
    column,
    migration,
    table,
    table_of,
)
from orso_pg.testing import batches
from tests.helpers import create_tables
from tests.models import Narrowed, Nullable, Scalars

pd = pytest.importorskip("pandas")
pa = pytest.importorskip("pyarrow")

UTC = dt.UTC
T0 = dt.datetime(2024, 3, 1, 14, 30, tzinfo=UTC)
NATIVE = (int, float, bool, dt.datetime, dt.date)


@table("ci_ticks")
class Tick(Orso):
    id: int | None = column(primary_key=True, default=None)
    symbol: str
    ts: dt.datetime
    price: float
    qty: int
    live: bool
    size: int | None = None
    bid: float | None = None
    seen: dt.datetime | None = None
    day: dt.date | None = None
    flag: bool | None = None
    note: str | None = None


def frame(n: int = 4) -> Any:
    return pd.DataFrame(
        {
            "symbol": [f"S{i}" for i in range(n)],
            "ts": pd.date_range(T0, periods=n, freq="s"),
            "price": np.arange(n) / 4,
            "qty": np.arange(n, dtype=np.int64) * 10,
            "live": np.arange(n) % 2 == 0,
        }
    )


@pytest.fixture
def ticks(db: Database) -> Database:
    create_tables(db, Tick)
    return db


def stored(db: Database) -> list[Tick]:
    return sorted(Tick.find_all(db), key=lambda t: t.id or 0)


# --- the three inputs -------------------------------------------------------------------------


def test_a_dataframe_loads(ticks: Database):
    """A DataFrame's columns are matched to the model by name, in any order."""
    df = frame()[["qty", "live", "price", "ts", "symbol"]]
    assert Tick.batch_create_rows(df, ticks) == 4
    rows = stored(ticks)
    assert [(t.symbol, t.ts, t.price, t.qty, t.live) for t in rows] == [
        (f"S{i}", T0 + dt.timedelta(seconds=i), i / 4, i * 10, i % 2 == 0) for i in range(4)
    ]
    assert all(t.size is None and t.note is None for t in rows)


def test_an_arrow_table_and_a_record_batch_load(ticks: Database):
    """A pyarrow Table and a RecordBatch load the same rows as the DataFrame they come from."""
    tbl = pa.Table.from_pandas(frame(), preserve_index=False)
    assert Tick.batch_create_rows(tbl, ticks) == 4
    assert Tick.batch_create_rows(tbl.to_batches()[0], ticks) == 4
    rows = stored(ticks)
    assert [t.ts for t in rows[:4]] == [t.ts for t in rows[4:]]
    assert rows[3].ts == T0 + dt.timedelta(seconds=3)


def test_a_dict_of_arrays_and_lists_loads(ticks: Database):
    """numpy arrays (datetime64 read as UTC, as fetch_arrays gives it) and plain lists."""
    n = 3
    stamps = ["2024-03-01T14:30:00", "2024-03-01T14:30:01", "2024-03-01T14:30:02"]
    data: dict[str, Any] = {
        "symbol": ["A", "B", "C"],
        "ts": np.array(stamps, "datetime64[us]"),
        "price": np.array([1.5, np.nan, 2.5]),
        "qty": np.arange(n, dtype=np.int32),
        "live": np.array([True, False, True]),
        "size": np.ma.masked_array([1, 2, 3], mask=[False, True, False]),
        "day": np.array(["2024-03-01", "NaT", "2024-03-03"], "datetime64[D]"),
    }
    assert Tick.batch_create_rows(data, ticks) == n
    rows = stored(ticks)
    assert [t.ts for t in rows] == [T0 + dt.timedelta(seconds=i) for i in range(n)]
    assert math.isnan(rows[1].price)  # NaN in a float column is a value, as everywhere
    assert [t.size for t in rows] == [1, None, 3]
    assert [t.day for t in rows] == [dt.date(2024, 3, 1), None, dt.date(2024, 3, 3)]


def test_fetch_arrays_output_loads_back(ticks: Database):
    """fetch_arrays' own result (read-only buffers included) is accepted as input."""
    from orso_pg import QueryBuilder, Sort

    data = frame(5)
    data["size"] = pd.array([1, None, 3, None, 5], dtype="Int64")
    data["flag"] = pd.array([True, None, False, None, True], dtype="boolean")
    data["seen"] = pd.Series([T0, None, T0, None, T0], dtype="datetime64[us, UTC]")
    data["day"] = [dt.date(2024, 1, 1), None, dt.date(2024, 1, 3), None, dt.date(2024, 1, 5)]
    Tick.batch_create_rows(data, ticks)
    names = ["symbol", "ts", "price", "qty", "live", "size", "flag", "seen", "day"]
    q = QueryBuilder(Tick).select(*names).order_by(Sort.asc("id"))
    first = q.fetch(ticks)
    for reader in (q.fetch_arrays, q.fetch_df, q.fetch_arrow):
        result = reader(ticks)
        Tick.delete_where(Filter.is_not_null("id"), ticks)
        assert Tick.batch_create_rows(result, ticks) == 5
        assert q.fetch(ticks) == first


def test_upsert_from_a_dataframe(ticks: Database):
    """batch_upsert_rows takes a DataFrame too: existing keys updated, new ones inserted."""
    Tick.batch_create_rows(frame(3), ticks)
    ids = [t.id for t in stored(ticks)]
    df = pd.DataFrame(
        {
            "id": pd.array([ids[0], ids[2], 1_000], dtype="Int64"),
            "symbol": ["X", "Y", "Z"],
            "ts": pd.Series([T0] * 3, dtype="datetime64[ns, UTC]"),
            "price": [9.0, 8.0, 7.0],
            "qty": [1, 2, 3],
            "live": [True, True, False],
        }
    )
    result = Tick.batch_upsert_rows(df, ticks, key=["id"])
    assert result == UpsertResult(inserted=1, updated=2, skipped=0)
    assert {t.id: t.symbol for t in stored(ticks)} == {
        ids[0]: "X",
        ids[1]: "S1",
        ids[2]: "Y",
        1_000: "Z",
    }


def test_an_empty_frame_writes_nothing(ticks: Database):
    assert Tick.batch_create_rows(frame(0), ticks) == 0
    assert Tick.count(ticks) == 0


def test_a_large_frame_streams_in_chunks(ticks: Database):
    """Slices of the columns are converted as the COPY goes; chunk_size still applies."""
    n = 30_000
    df = pd.DataFrame(
        {
            "symbol": np.array(["BTC", "ETH"] * (n // 2), dtype=object),
            "ts": pd.date_range(T0, periods=n, freq="ms"),
            "price": np.arange(n) / 8,
            "qty": np.arange(n) % 1000,
            "live": np.arange(n) % 3 == 0,
        }
    )
    assert Tick.batch_create_rows(df, ticks, chunk_size=10_000, progress=False) == n
    assert Tick.count(ticks) == n
    last = Tick.find_by_field("qty", 999, ticks)[-1]
    assert last.ts == T0 + dt.timedelta(milliseconds=29_999)


# --- missing values ----------------------------------------------------------------------------


MISSING_NULL = [
    ("Int64 pd.NA", "size", lambda: pd.array([1, None, 3], dtype="Int64")),
    ("Float64 pd.NA", "bid", lambda: pd.array([1.5, None, 3.5], dtype="Float64")),
    ("boolean pd.NA", "flag", lambda: pd.array([True, None, False], dtype="boolean")),
    ("NaT aware", "seen", lambda: pd.Series([T0, pd.NaT, T0], dtype="datetime64[ns, UTC]")),
    ("NaT numpy", "seen", lambda: np.array(["2024-01-01", "NaT", "2024-01-01"], "M8[us]")),
    ("NaT date", "day", lambda: np.array(["2024-01-01", "NaT", "2024-01-01"], "M8[D]")),
    ("NaT naive all", "seen", lambda: pd.Series([pd.NaT] * 3)),
    ("None text", "note", lambda: ["a", None, "c"]),
    ("pd.NA text", "note", lambda: pd.array(["a", None, "c"], dtype="string")),
    ("NaN text", "note", lambda: pd.Series(["a", np.nan, "c"], dtype=object)),
    ("masked int", "size", lambda: np.ma.masked_array([1, 2, 3], mask=[False, True, False])),
    ("masked float", "bid", lambda: np.ma.masked_array([1.0, 2.0, 3.0], mask=[False, True, False])),
    ("arrow null int", "size", lambda: pa.array([1, None, 3])),
    ("arrow null ts", "seen", lambda: pa.array([T0, None, T0], pa.timestamp("us", tz="UTC"))),
    ("arrow null text", "note", lambda: pa.array(["a", None, "c"])),
]


def base(n: int = 3) -> dict[str, Any]:
    df = frame(n)
    return {c: df[c] for c in df.columns}


@pytest.mark.parametrize(("case", "name", "make"), MISSING_NULL, ids=[c[0] for c in MISSING_NULL])
def test_missing_values_are_null_in_nullable_columns(ticks: Database, case: str, name: str, make):
    """NaT, pd.NA, None, NaN outside float columns, masks and Arrow nulls become NULL."""
    del case
    data = base()
    data[name] = make()
    assert Tick.batch_create_rows(data, ticks) == 3
    assert [getattr(t, name) for t in stored(ticks)][1] is None


def test_nan_in_a_float_column_is_a_value(ticks: Database):
    """NaN in a float column is stored as NaN (the README's rule); pd.NA or a mask is NULL."""
    data = base()
    data["bid"] = np.array([1.0, np.nan, np.inf])
    Tick.batch_create_rows(data, ticks)
    data["bid"] = pa.array([1.0, float("nan"), None])
    Tick.batch_create_rows(data, ticks)
    bids: list[Any] = [t.bid for t in stored(ticks)]
    assert bids[0] == 1.0
    assert math.isnan(bids[1])
    assert bids[2] == math.inf
    assert math.isnan(bids[4])
    assert bids[5] is None


MISSING_REFUSED = [
    ("Int64 pd.NA", "qty", lambda: pd.array([1, None, 3], dtype="Int64"), pd.NA),
    ("boolean pd.NA", "live", lambda: pd.array([True, None, False], dtype="boolean"), pd.NA),
    ("NaT", "ts", lambda: pd.Series([T0, pd.NaT, T0], dtype="datetime64[ns, UTC]"), pd.NaT),
    ("NaT numpy", "ts", lambda: np.array(["2024-01-01", "NaT", "2024-01-01"], "M8[us]"), None),
    (
        "masked",
        "qty",
        lambda: np.ma.masked_array([1, 2, 3], mask=[False, True, False]),
        np.ma.masked,
    ),
    (
        "masked float",
        "price",
        lambda: np.ma.masked_array([1.0, 2, 3], mask=[False, True, False]),
        None,
    ),
    ("arrow null", "qty", lambda: pa.array([1, None, 3]), None),
    ("arrow null ts", "ts", lambda: pa.array([T0, None, T0], pa.timestamp("us", tz="UTC")), None),
    ("None text", "symbol", lambda: ["a", None, "c"], None),
    ("pd.NA text", "symbol", lambda: pd.array(["a", None, "c"], dtype="string"), pd.NA),
    ("NaN text", "symbol", lambda: pd.Series(["a", np.nan, "c"], dtype=object), None),
]


@pytest.mark.parametrize(
    ("case", "name", "make", "marker"), MISSING_REFUSED, ids=[c[0] for c in MISSING_REFUSED]
)
def test_missing_values_in_not_null_columns_are_refused(
    ticks: Database, case: str, name: str, make, marker: Any
):
    """A missing value in a NOT NULL column fails the batch naming row 1; nothing is written."""
    del case
    data = base()
    data[name] = make()
    with pytest.raises(ValidationError, match=rf"row 1 of the batch: .*{name}") as info:
        Tick.batch_create_rows(data, ticks)
    assert info.value.column == name
    assert info.value.position == 1
    if marker is not None:
        assert info.value.value is marker
    assert Tick.count(ticks) == 0


def test_a_missing_value_in_a_server_filled_column_is_refused(ticks: Database):
    data = base()
    data["id"] = pd.array([1, None, 3], dtype="Int64")
    with pytest.raises(
        ValidationError, match=r"row 1 of the batch: .*filled by the server only when left out"
    ):
        Tick.batch_create_rows(data, ticks)


# --- refusals before anything runs -----------------------------------------------------------


def test_unknown_and_left_out_columns_are_named(ticks: Database):
    df = frame()
    df["venue"] = "X"
    df["colour"] = 1
    with pytest.raises(ValidationError, match=r"\['venue', 'colour'\].*Tick does not have"):
        Tick.batch_create_rows(df, ticks)
    with pytest.raises(ValidationError, match=r"no column for \['price', 'qty'\]"):
        Tick.batch_create_rows(frame().drop(columns=["price", "qty"]), ticks)
    with pytest.raises(ValidationError, match=r"columns \['nope'\] are not in the input"):
        Tick.batch_create_rows(frame(), ticks, columns=["nope"])
    assert Tick.batch_create_rows(df, ticks, columns=list(frame().columns)) == 4


@pytest.mark.parametrize(
    ("name", "values", "message"),
    [
        ("qty", np.array([1.0, 2.0, np.nan]), "float64 column cannot be written to an int column"),
        ("qty", np.array([True, False, True]), "bool column cannot be written to an int"),
        ("qty", np.array([1, 2, 2**64 - 1], dtype=np.uint64), "row 2 of the batch.*BIGINT"),
        ("price", np.array([True, False, True]), "cannot be written to a float column"),
        ("live", np.array([1, 0, 1]), "cannot be written to a bool column"),
        ("ts", pd.Series(pd.date_range("2024-01-01", periods=3)), "has no time zone"),
        ("ts", pa.array([T0.replace(tzinfo=None)] * 3), "has no time zone"),
        ("ts", np.array([1, 2, 3]), "cannot be written to a datetime column"),
        (
            "ts",
            pd.Series(pd.date_range(T0, periods=3, freq="1ns")),
            "row 1 of the batch: .*nanoseconds",
        ),
        ("day", np.array(["2024-01-01T10:00"] * 3, "M8[m]"), "row 0 .*whole days"),
        ("day", np.array([1, 2, 3]), "cannot be written to a date column"),
    ],
)
def test_dtypes_are_checked_per_column(ticks: Database, name: str, values: Any, message: str):
    """A dtype the column cannot take is refused for the whole column, before anything runs."""
    data = base()
    data[name] = values
    with pytest.raises(ValidationError, match=message) as info:
        Tick.batch_create_rows(data, ticks)
    assert info.value.column == name
    assert Tick.count(ticks) == 0


def test_object_columns_take_the_per_value_check(ticks: Database):
    """A list of values goes through the tuple path's own check, which names the row."""
    data = base()
    data["symbol"] = ["a", "b", 3]
    with pytest.raises(ValidationError, match=r"row 2 of the batch.*symbol"):
        Tick.batch_create_rows(data, ticks)


def test_shapes_that_are_not_columns_are_refused(ticks: Database):
    data = base()
    data["qty"] = np.zeros((3, 2, 2))
    with pytest.raises(ValidationError, match="3 dimensions"):
        Tick.batch_create_rows(data, ticks)
    data = base()
    data["qty"] = 5
    with pytest.raises(ValidationError, match="got int"):
        Tick.batch_create_rows(data, ticks)
    data = base()
    data["qty"] = [1, 2]
    with pytest.raises(ValidationError, match="different lengths"):
        Tick.batch_create_rows(data, ticks)
    with pytest.raises(ValidationError, match="must be str"):
        Tick.batch_create_rows({1: [1, 2, 3]}, ticks)  # type: ignore[dict-item]
    df = frame().set_index("symbol")
    with pytest.raises(ValidationError, match=r"index \['symbol'\] is not written"):
        Tick.batch_create_rows(df, ticks)
    twice = pd.concat([frame(), frame()[["qty"]]], axis=1)
    with pytest.raises(ValidationError, match="more than once"):
        Tick.batch_create_rows(twice, ticks)


def test_a_server_refusal_names_the_row_with_its_aware_value(ticks: Database):
    """A row PostgreSQL refuses (NUL in text) is named, its timestamp shown as given."""
    data = base()
    data["note"] = ["ok", "bad\x00", "ok"]
    with pytest.raises(ValidationError, match=r"row 1 of the batch") as info:
        Tick.batch_create_rows(data, ticks)
    assert info.value.column == "note"
    assert Tick.count(ticks) == 0


# --- mixing tuples and dicts ------------------------------------------------------------------


NAMES = ["symbol", "ts", "price", "qty", "live"]


def test_mixed_tuples_and_dicts_are_refused_naming_the_row(ticks: Database):
    """A dict among tuples (or the reverse) is a ValidationError naming its position."""
    row = ("A", T0, 1.0, 1, True)
    mixed: list[Any] = [row, row, dict(zip(NAMES, row, strict=True))]
    keyed = [(i, *r) if isinstance(r, tuple) else {"id": i, **r} for i, r in enumerate(mixed, 1)]
    calls: list[tuple[Any, list[Any], dict[str, Any]]] = [
        (Tick.batch_create_rows, mixed, {"columns": NAMES}),
        (Tick.batch_upsert_rows, keyed, {"columns": ["id", *NAMES], "key": ["id"]}),
    ]
    for call, rows, extra in calls:
        with pytest.raises(ValidationError, match=r"row 2 of the batch: .*same way") as info:
            call(rows, ticks, **extra)
        assert info.value.position == 2
        with pytest.raises(ValidationError, match=r"row 1 of the batch: .*batch of mappings"):
            call([rows[2], rows[0]], ticks, **extra)
    with pytest.raises(ValidationError, match=r"row 0 of the batch: .*str"):
        Tick.batch_create_rows(["abcde"], ticks)
    assert Tick.count(ticks) == 0


# --- the oracle: the tuple path ----------------------------------------------------------------


def _to_dict(meta: Any, names: list[str], rows: list[tuple[Any, ...]]) -> dict[str, Any]:
    """Columns as a numpy user would hold them: native dtypes with masks, lists otherwise."""
    out: dict[str, Any] = {}
    for i, name in enumerate(names):
        values = [r[i] for r in rows]
        python = meta.by_name[name].type.python
        missing = [v is None for v in values]
        if python in (int, bool, float) and not meta.by_name[name].type.compressed:
            dtype = {int: np.int64, bool: np.bool_, float: np.float64}[python]
            filled = [python() if v is None else v for v in values]
            out[name] = np.ma.masked_array(np.array(filled, dtype=dtype), mask=missing)
        elif python is dt.datetime:
            out[name] = np.array(
                [
                    np.datetime64("NaT")
                    if v is None
                    else np.datetime64(v.astimezone(UTC).replace(tzinfo=None), "us")
                    for v in values
                ],
                dtype="M8[us]",
            )
        elif python is dt.date:
            out[name] = np.array(
                [np.datetime64("NaT") if v is None else np.datetime64(v, "D") for v in values],
                dtype="M8[D]",
            )
        else:
            out[name] = values
    return out


def _to_frame(meta: Any, names: list[str], rows: list[tuple[Any, ...]]) -> Any:
    out: dict[str, Any] = {}
    for i, name in enumerate(names):
        values = [r[i] for r in rows]
        python = meta.by_name[name].type.python
        mask = np.array([v is None for v in values], dtype=bool)
        if python is int:
            out[name] = pd.array([pd.NA if v is None else v for v in values], dtype="Int64")
        elif python is bool:
            out[name] = pd.array([pd.NA if v is None else v for v in values], dtype="boolean")
        elif python is float:
            data = np.array([0.0 if v is None else v for v in values], dtype=np.float64)
            out[name] = pd.arrays.FloatingArray(data, mask)
        elif python is dt.datetime:
            out[name] = pd.Series(
                [pd.NaT if v is None else pd.Timestamp(v) for v in values],
                dtype="datetime64[us, UTC]",
            )
        else:
            out[name] = pd.Series(values, dtype=object)
    return pd.DataFrame(out)


def _to_arrow(meta: Any, names: list[str], rows: list[tuple[Any, ...]]) -> Any:
    fields = []
    arrays = []
    for i, name in enumerate(names):
        values = [r[i] for r in rows]
        python = meta.by_name[name].type.python
        kind = {
            int: pa.int64(),
            float: pa.float64(),
            bool: pa.bool_(),
            dt.datetime: pa.timestamp("us", tz="UTC"),
            dt.date: pa.date32(),
            str: pa.string(),
            bytes: pa.binary(),
            dt.time: pa.time64("us"),
        }.get(python)
        if kind is None:
            continue
        arrays.append(pa.array(values, type=kind))
        fields.append(name)
    return pa.table(dict(zip(fields, arrays, strict=True))), fields


def _printed(raw: psycopg.Connection[Any], name: str, names: list[str]) -> list[str]:
    cols = sql.SQL(", ").join(map(sql.Identifier, names))
    query = sql.SQL("SELECT ({})::text FROM {} ORDER BY ctid").format(cols, sql.Identifier(name))
    return [r[0] for r in raw.execute(query).fetchall()]


@pytest.fixture
def twins(db: Database) -> Database:
    models = [Scalars, Nullable, Narrowed]
    Migrations.init(
        db,
        [
            m
            for model in models
            for m in (migration(model), migration(model, f"{table_of(model).name}_twin"))
        ],
    )
    return db


@pytest.mark.parametrize("model", [Scalars, Nullable, Narrowed], ids=lambda m: m.__name__)
@pytest.mark.parametrize("kind", ["dict", "pandas", "arrow"])
@given(data=st.data())
@settings(max_examples=8)
def test_columnar_input_stores_what_tuples_store(
    twins: Database, raw: psycopg.Connection[Any], model: type[Any], kind: str, data: st.DataObject
):
    """Every column type, NULLs included: the columnar path stores the tuple path's rows."""
    meta = table_of(model)
    twin = f"{meta.name}_twin"
    raw.execute(sql.SQL("TRUNCATE {}, {}").format(sql.Identifier(meta.name), sql.Identifier(twin)))
    instances = data.draw(batches(model, 0, 6))
    names = [c.name for c in meta.columns if not c.generated]
    rows = [tuple(getattr(o, n) for n in names) for o in instances]
    if kind == "dict":
        columnar: Any = _to_dict(meta, names, rows)
    elif kind == "pandas":
        columnar = _to_frame(meta, names, rows)
    else:
        if model is not Nullable:
            return  # Arrow has no type for enums, JSON or UUIDs: the nullable model leaves them out
        columnar, names = _to_arrow(meta, names, rows)
        rows = [tuple(getattr(o, n) for n in names) for o in instances]
    model.batch_create_rows(rows, twins, columns=names)
    model.batch_create_rows_with_table(columnar, twins, twin)
    assert _printed(raw, twin, names) == _printed(raw, meta.name, names)


@table("ci_series")
class Series(Orso):
    id: int | None = column(primary_key=True, default=None)
    points: np.ndarray = column(compress=True)
    span: dt.timedelta | None = None
    at: dt.datetime | None = column(sql_type="timestamp(3) with time zone", default=None)


def test_arrays_intervals_and_declared_timestamps(db: Database):
    """A 2-D array is a column of rows; timedelta64 and sql_type timestamps take the slow path."""
    create_tables(db, Series)
    data = {
        "points": np.arange(6, dtype=np.int64).reshape(3, 2),
        "span": np.array([1, 2_000, 3], dtype="m8[ns]") * 1000,
        "at": np.array(["2024-01-01T00:00:00.001", "NaT", "2024-01-01"], "M8[ms]"),
    }
    assert Series.batch_create_rows(data, db) == 3
    rows = sorted(Series.find_all(db), key=lambda s: s.id or 0)
    assert [r.points.tolist() for r in rows] == [[0, 1], [2, 3], [4, 5]]
    assert rows[1].span == dt.timedelta(milliseconds=2)
    assert rows[0].at == dt.datetime(2024, 1, 1, 0, 0, 0, 1000, tzinfo=UTC)
    assert rows[1].at is None
    data["span"] = np.array([1, 2, 3], dtype="m8[ns]")
    with pytest.raises(ValidationError, match=r"row 0 of the batch: .*nanoseconds"):
        Series.batch_create_rows(data, db)
    data["span"] = np.array([1, 2, 3], dtype="m8[us]")
    data["at"] = np.array(["2024-01-01", "NaT", "2024-01-01T00:00:00.000500"], "M8[us]")
    with pytest.raises(ValidationError, match=r"row 2 of the batch: .*more than 3 fractional"):
        Series.batch_create_rows(data, db)  # timestamp(3) would round it
    assert Series.count(db) == 3


def test_more_refusals(ticks: Database):
    """Far timestamps, duplicate Arrow names and a str for columns= are refused clearly."""
    data = base()
    data["seen"] = np.array(["2024-01-01", "10000-01-01", "2024-01-01"], "M8[us]")
    with pytest.raises(ValidationError, match=r"row 1 of the batch: .*years 1-9999"):
        Tick.batch_create_rows(data, ticks)
    tbl = pa.Table.from_pandas(frame(), preserve_index=False)
    twice = pa.Table.from_arrays([*tbl.columns, tbl.column("qty")], [*tbl.column_names, "qty"])
    with pytest.raises(ValidationError, match="more than once"):
        Tick.batch_create_rows(twice, ticks)
    with pytest.raises(ValidationError, match="not the str"):
        Tick.batch_create_rows(frame(), ticks, columns="qty")
    assert Tick.count(ticks) == 0


def test_readme_columnar_input_runs(server: Any, schema: str, monkeypatch: pytest.MonkeyPatch):
    """The README's columnar input example runs unchanged and its own asserts hold."""
    from tests.readme_run import run_section

    namespace = run_section("Columnar input", server, schema, monkeypatch)
    assert namespace["Quote"].__name__ == "Quote"


def test_upsert_keeps_the_last_row_of_a_key(ticks: Database):
    """Duplicate keys in a columnar upsert: the last row wins, as for tuples."""
    df = frame(3)
    df.insert(0, "id", [7, 7, 8])
    result = Tick.batch_upsert_rows(df, ticks, key=["id"])
    assert result == UpsertResult(inserted=2, updated=0, skipped=1)
    assert {t.id: t.symbol for t in stored(ticks)} == {7: "S1", 8: "S2"}
    assert stored(ticks)[0].ts == T0 + dt.timedelta(seconds=1)


def test_chunked_and_start_work_on_columns(ticks: Database):
    """chunked=True and start= count rows of the columnar input like rows of tuples."""
    df = frame(10)
    df.loc[7, "symbol"] = None
    with pytest.raises(ValidationError, match="row 7 of the batch") as info:
        Tick.batch_create_rows(df, ticks, chunked=True, chunk_size=3)
    assert info.value.committed == 6
    assert Tick.count(ticks) == 6
    df.loc[7, "symbol"] = "S7"
    assert Tick.batch_create_rows(df, ticks, start=6) == 4
    assert [t.symbol for t in stored(ticks)] == [f"S{i}" for i in range(10)]


@table("ci_fills")
class Fill(Orso):
    id: int = column(primary_key=True)
    tick_id: int = column(ref="ci_ticks")
    at: dt.datetime


def test_a_row_postgresql_refuses_is_named(ticks: Database):
    """A foreign key refused at the end of the COPY, or of the upsert, names the row."""
    from orso_pg import ForeignKeyViolationError

    create_tables(ticks, Fill)
    Tick.batch_create_rows(frame(1), ticks)
    tick = stored(ticks)[0].id
    df = pd.DataFrame(
        {"id": [1, 2, 3], "tick_id": [tick, 999, tick], "at": pd.date_range(T0, periods=3)}
    )
    with pytest.raises(ForeignKeyViolationError) as info:
        Fill.batch_create_rows(df, ticks)
    assert info.value.position == 1
    with pytest.raises(ForeignKeyViolationError) as info:
        Fill.batch_upsert_rows(df, ticks, key=["id"])
    assert info.value.position == 1
    assert "999" in str(info.value)
    assert Fill.count(ticks) == 0
