"""Batch inserts, updates and deletes against a real PostgreSQL: round trips, errors, counts."""

from __future__ import annotations

import datetime as dt
import enum
import math
import sys
import uuid
from decimal import Decimal
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orso_pg import (
    ConfigError,
    DatabaseError,
    ForeignKeyViolationError,
    Migrations,
    Orso,
    QueryError,
    UniqueViolationError,
    UpsertResult,
    ValidationError,
    column,
    migration,
    table,
)
from orso_pg.batch import _progress as progress
from orso_pg.session._database import Database
from tests.helpers import count_statements, create_tables

UTC = dt.UTC


class Side(enum.Enum):
    BUY = "buy"
    SELL = "sell"


@table("bt_ticks")
class Tick(Orso):
    id: int | None = column(primary_key=True, default=None)
    symbol: str
    ts: dt.datetime
    price: float
    qty: int = 0
    side: Side = Side.BUY
    meta: dict[str, Any] | None = None
    created_at: dt.datetime | None = column(created_at=True, default=None)
    updated_at: dt.datetime | None = column(updated_at=True, default=None)


@table("bt_everything")
class Everything(Orso):
    id: uuid.UUID | None = column(primary_key=True, default=None)
    text: str
    number: int
    real: float
    flag: bool
    at: dt.datetime
    day: dt.date
    clock: dt.time
    span: dt.timedelta
    amount: Decimal
    ident: uuid.UUID
    blob: bytes
    doc: dict[str, Any]
    side: Side
    ints: list[int]
    floats: list[float]
    texts: list[str]
    flags: list[bool]
    days: list[dt.date]
    holes: list[int | None]
    i64: npt.NDArray[np.int64]
    f32: npt.NDArray[np.float32]
    maybe: str | None = None
    maybe_at: dt.datetime | None = None


@table("bt_packed")
class Packed(Orso):
    id: int | None = column(primary_key=True, default=None)
    prices: np.ndarray = column(compress=True, eq=False)
    ticks: list[int] = column(compress=True)
    sizes: list[float] = column(compress=True)
    spare: np.ndarray | None = column(compress=True, default=None, eq=False)


@table("bt_narrow")
class Narrow(Orso):
    id: int | None = column(primary_key=True, default=None)
    code: str = column(sql_type="varchar(5)")
    small: int = column(sql_type="integer")
    single: float = column(sql_type="real")
    plain: dict[str, Any] = column(sql_type="json")
    money: Decimal = column(sql_type="numeric(8, 2)")


@table("bt_parents")
class Parent(Orso):
    id: str | None = column(primary_key=True, default=None)
    name: str = column(unique=True)


@table("bt_children")
class Child(Orso):
    id: int | None = column(primary_key=True, default=None)
    parent: str = column(ref=Parent)
    note: str = ""


@table("bt_defaults")
class WithDefault(Orso):
    id: int | None = column(primary_key=True, default=None)
    label: str
    status: str | None = column(server_default="new", default=None)


T0 = dt.datetime(2024, 1, 1, tzinfo=UTC)


def ticks(n: int, symbol: str = "AAA", start: int = 0) -> list[Tick]:
    return [
        Tick(
            symbol=symbol,
            ts=T0 + dt.timedelta(seconds=start + i),
            price=100.0 + (start + i) * 0.25,
            qty=start + i,
            side=Side.SELL if i % 2 else Side.BUY,
            meta={"i": start + i} if i % 3 == 0 else None,
        )
        for i in range(n)
    ]


@pytest.fixture
def tick_db(db: Database) -> Database:
    create_tables(db, Tick)
    return db


# --- inserts -------------------------------------------------------------------------------------


def test_batch_create_inserts_every_row_with_server_filled_columns(tick_db: Database):
    """batch_create returns the row count; keys and timestamps come from the server."""
    rows = ticks(2_500)
    assert Tick.batch_create(rows, tick_db) == 2_500
    back = Tick.find_all(tick_db)
    assert [r.id for r in back] == list(range(1, 2_501))
    assert all(r.created_at is not None and r.created_at == r.updated_at for r in back)
    for given_row, read in zip(rows, back, strict=True):
        assert (read.symbol, read.ts, read.price, read.qty, read.side, read.meta) == (
            given_row.symbol,
            given_row.ts,
            given_row.price,
            given_row.qty,
            given_row.side,
            given_row.meta,
        )
    assert all(r.id is None for r in rows), "without returning, instances are left as given"


def test_batch_insert_and_twins_write_to_named_tables(tick_db: Database):
    """batch_insert is batch_create; the _with_table twins write to the table named."""
    Migrations.init(tick_db, [migration(Tick, "bt_ticks_2023"), migration(Tick, "bt_ticks_2022")])
    assert Tick.batch_insert(ticks(3), tick_db) == 3
    assert Tick.batch_insert_with_table(ticks(4), tick_db, "bt_ticks_2023") == 4
    assert Tick.batch_create_with_table(ticks(5), tick_db, "bt_ticks_2022") == 5
    assert Tick.count(tick_db) == 3
    assert Tick.count_with_table(tick_db, "bt_ticks_2023") == 4
    assert Tick.count_with_table(tick_db, "bt_ticks_2022") == 5


def test_a_generator_streams_in_one_copy_per_chunk(tick_db: Database):
    """A generator is read chunk by chunk: one COPY statement per chunk and nothing else."""

    def produce() -> Any:
        yield from ticks(2_345)

    with count_statements(tick_db) as log:
        assert Tick.batch_create(produce(), tick_db, chunk_size=1_000) == 2_345
    assert len(log) == 3
    assert all(text.startswith('COPY "bt_ticks"') for text in log.texts())
    assert all(params == () for _, params in log.statements)
    assert Tick.count(tick_db) == 2_345


def test_empty_batches_run_no_statement(tick_db: Database):
    """An empty input returns zero without touching the database."""
    with count_statements(tick_db) as log:
        assert Tick.batch_create([], tick_db) == 0
        assert Tick.batch_create(iter(list[Tick]()), tick_db, returning="keys") == []
        assert Tick.batch_update([], tick_db) == 0
        assert Tick.batch_delete([], tick_db) == 0
        assert Tick.batch_upsert([], tick_db, key=["id"]).rows == 0
    assert len(log) == 0


def test_returning_keys_gives_keys_in_input_order(tick_db: Database):
    """returning='keys' draws identity keys in order, sets them and returns them."""
    Tick.batch_create(ticks(3), tick_db)
    rows = ticks(25, symbol="BBB")
    rows[7].id = 1_000
    keys = Tick.batch_create(rows, tick_db, returning="keys", chunk_size=10)
    assert keys == [r.id for r in rows]
    assert keys[7] == 1_000
    drawn = keys[:7] + keys[8:]
    assert drawn == sorted(drawn)
    assert len(set(drawn)) == 24
    assert min(drawn) > 3
    for key, row in zip(keys, rows, strict=True):
        found = Tick.find_by_id(key, tick_db)
        assert found is not None
        assert found.qty == row.qty
        assert found.symbol == "BBB"


def test_returning_keys_with_uuid_and_text_keys(db: Database):
    """UUID and text keys are drawn from their server defaults."""
    create_tables(db, Everything, Parent)
    parents = [Parent(name=f"p{i}") for i in range(4)]
    keys = Parent.batch_create(parents, db, returning="keys")
    assert all(isinstance(k, str) and uuid.UUID(k) for k in keys)
    assert sorted(p.name for p in Parent.find_all(db)) == ["p0", "p1", "p2", "p3"]
    assert {Parent.find_by_id(k, db).name for k in keys} == {"p0", "p1", "p2", "p3"}  # type: ignore[union-attr]


def test_failed_batch_takes_drawn_keys_back(tick_db: Database):
    """Keys set on instances for a batch that failed are reset to None."""
    rows = ticks(20)
    rows[15].symbol = "bad\x00"
    with pytest.raises(ValidationError):
        Tick.batch_create(rows, tick_db, returning="keys")
    assert all(r.id is None for r in rows)
    assert Tick.count(tick_db) == 0


def test_rows_mixing_supplied_and_generated_values(db: Database):
    """Rows that supply a server-filled column keep it; the others get the server's value."""
    create_tables(db, Tick, WithDefault)
    rows = ticks(6)
    rows[1].id = 500
    rows[4].id = 501
    stamp = dt.datetime(2020, 5, 5, tzinfo=UTC)
    rows[2].created_at = stamp
    assert Tick.batch_create(rows, db) == 6
    back = {r.qty: r for r in Tick.find_all(db)}
    assert back[1].id == 500
    assert back[4].id == 501
    assert back[2].created_at == stamp
    assert back[3].created_at != stamp
    labelled = [
        WithDefault(label="a"),
        WithDefault(label="b", status="done"),
        WithDefault(label="c"),
    ]
    assert WithDefault.batch_create(labelled, db) == 3
    assert {r.label: r.status for r in WithDefault.find_all(db)} == {
        "a": "new",
        "b": "done",
        "c": "new",
    }


def _same(expected: Any, actual: Any) -> bool:
    if isinstance(expected, np.ndarray):
        return (
            isinstance(actual, np.ndarray)
            and expected.dtype == actual.dtype
            and np.array_equal(expected, actual, equal_nan=expected.dtype.kind == "f")
        )
    if isinstance(expected, float) and math.isnan(expected):
        return isinstance(actual, float) and math.isnan(actual)
    return bool(expected == actual)


def _assert_round_trip(model: type[Orso], given_rows: list[Any], db: Database, **kw: Any) -> None:
    keys = model.batch_create(given_rows, db, returning="keys", **kw)
    assert len(keys) == len(given_rows)
    for key, expected in zip(keys, given_rows, strict=True):
        actual = model.find_by_id(key, db)
        assert actual is not None
        for name in model.field_names():
            assert _same(getattr(expected, name), getattr(actual, name)), name


texts = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
# JSONB keeps numbers as NUMERIC: a float beyond 2**53 may read back as an int.
json_floats = st.floats(min_value=-1e15, max_value=1e15)
aware = st.datetimes(
    min_value=dt.datetime(1900, 1, 1),  # noqa: DTZ001 - hypothesis bounds are naive
    max_value=dt.datetime(2200, 1, 1),  # noqa: DTZ001
    timezones=st.just(UTC),
)
dates = st.dates(min_value=dt.date(1, 1, 1), max_value=dt.date(9999, 12, 31))
int8 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | json_floats | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=6,
)
everything = st.builds(
    Everything,
    text=texts,
    number=int8,
    real=st.floats(width=64),
    flag=st.booleans(),
    at=aware,
    day=dates,
    clock=st.times(),
    span=st.timedeltas(min_value=dt.timedelta(days=-9999), max_value=dt.timedelta(days=9999)),
    amount=st.decimals(allow_nan=False, allow_infinity=False, places=4, max_value=10**12),
    ident=st.uuids(),
    blob=st.binary(max_size=20),
    doc=st.dictionaries(texts, json_values, max_size=3),
    side=st.sampled_from(Side),
    ints=st.lists(int8, max_size=4),
    floats=st.lists(finite, max_size=4),
    texts=st.lists(texts, max_size=4),
    flags=st.lists(st.booleans(), max_size=4),
    days=st.lists(dates, max_size=3),
    holes=st.lists(st.none() | int8, max_size=4),
    i64=st.lists(int8, max_size=5).map(lambda v: np.array(v, dtype=np.int64)),
    f32=st.lists(st.floats(width=32), max_size=5).map(lambda v: np.array(v, dtype=np.float32)),
    maybe=st.none() | texts,
    maybe_at=st.none() | aware,
)


@pytest.fixture
def everything_db(db: Database) -> Database:
    create_tables(db, Everything)
    return db


@settings(max_examples=25, deadline=None)
@given(rows=st.lists(everything, min_size=1, max_size=12))
def test_round_trip_of_every_column_type(everything_db: Database, rows: list[Everything]):
    """Every mapped column type survives batch_create and reads back equal."""
    _assert_round_trip(Everything, rows, everything_db, chunk_size=5)


def test_round_trip_of_compressed_arrays(db: Database):
    """Compressed columns are encoded on the way in and decode to the same arrays and lists."""
    create_tables(db, Packed)
    rng = np.random.default_rng(7)
    rows = [
        Packed(
            prices=np.cumsum(rng.normal(0, 1, size=n)).astype(np.float64),
            ticks=[int(v) for v in rng.integers(-(2**40), 2**40, size=n)],
            sizes=[round(float(v), 2) for v in rng.random(n)],
            spare=None if n % 2 else np.arange(n, dtype=np.int32),
        )
        for n in (0, 1, 7, 500)
    ]
    _assert_round_trip(Packed, rows, db)


def test_declared_sql_types_travel_as_text(db: Database):
    """Columns declared with sql_type= of another wire format are sent in text COPY."""
    create_tables(db, Narrow)
    rows = [
        Narrow(code="ab", small=7, single=1.5, plain={"a": [1, 2]}, money=Decimal("12.34")),
        Narrow(code="abcde", small=-(2**31), single=-0.25, plain={}, money=Decimal("-0.5")),
    ]
    with count_statements(db) as log:
        _assert_round_trip(Narrow, rows, db)
    assert any(t.endswith("(FORMAT TEXT)") for t in log.texts())
    rows = [Narrow(code="x", small=1, single=0.0, plain={}, money=Decimal(1)) for _ in range(3)]
    rows[2].code = "toolong"
    # Refused before it is sent, as insert() refuses it, rather than cut or refused by the server.
    with pytest.raises(ValidationError, match="do not fit varchar") as info:
        Narrow.batch_create(rows, db)
    assert info.value.position == 2
    assert info.value.column == "code"
    assert info.value.value == "toolong"
    assert Narrow.count(db) == 2


# --- bad rows ---------------------------------------------------------------------------------


def _bad(name: str, value: Any) -> list[Tick]:
    rows = ticks(300)
    object.__setattr__(rows[217], name, value)
    return rows


BAD_VALUES = [
    pytest.param("price", "12.5", "expected float", id="str-in-float"),
    pytest.param("qty", 2**63, "BIGINT range", id="int-out-of-range"),
    pytest.param("qty", True, "expected int", id="bool-in-int"),
    pytest.param("qty", 1.5, "expected int", id="float-in-int"),
    pytest.param("ts", dt.datetime(2024, 1, 1), "naive", id="naive-datetime"),  # noqa: DTZ001
    pytest.param("ts", dt.date(2024, 1, 1), "expected datetime", id="date-in-datetime"),
    pytest.param("symbol", "a\x00b", "NUL", id="nul-in-text"),
    pytest.param("symbol", "x\udcffy", "surrogate", id="lone-surrogate"),
    pytest.param("symbol", 5, "expected str", id="int-in-text"),
    pytest.param("meta", {"x": float("nan")}, "NaN", id="nan-in-json"),
    pytest.param("meta", {"x": "a\x00"}, "NUL", id="nul-in-json"),
    pytest.param("side", "sideways", "expected Side", id="bad-enum"),
    pytest.param("symbol", None, "NOT NULL", id="none-in-not-null"),
]


@pytest.mark.parametrize(("name", "value", "reason"), BAD_VALUES)
def test_a_bad_value_fails_the_batch_naming_row_column_and_value(
    tick_db: Database, name: str, value: Any, reason: str
):
    """A bad value fails the whole batch with its position, column and value; nothing is written."""
    Tick.batch_create(ticks(5, symbol="OLD"), tick_db)
    with pytest.raises(ValidationError, match=reason) as info:
        Tick.batch_create(_bad(name, value), tick_db, chunk_size=100)
    err = info.value
    assert err.position == 217
    assert err.committed == 0
    assert err.column == name
    assert err.has_value
    assert err.value == value or (name == "meta" and err.value is value)
    assert "row 217" in str(err)
    assert Tick.count(tick_db) == 5


@pytest.mark.parametrize("returning", [None, "keys"], ids=["count", "keys"])
@pytest.mark.parametrize(
    ("name", "value"),
    [("price", "12.5"), ("symbol", "a\x00b")],
    ids=["refused-by-the-client", "refused-by-the-server"],
)
def test_a_bad_row_sent_in_a_group_of_its_own_is_named(
    tick_db: Database, returning: Any, name: str, value: Any
):
    """A bad row is named by its input position when it is sent apart from its chunk's first."""
    rows = _bad(name, value)
    for i in (205, 217, 250):
        rows[i].id = 10_000 + i  # supplied keys: sent in a COPY of their own (drawn ones too)
    with pytest.raises(ValidationError) as info:
        Tick.batch_create(rows, tick_db, chunk_size=100, returning=returning)
    assert (info.value.position, info.value.column) == (217, name)
    assert Tick.count(tick_db) == 0


@table("bt_flags")
class Flags(Orso):
    id: int | None = column(primary_key=True, default=None)
    flag: bool
    day: dt.date
    span: dt.timedelta
    ints: list[int]
    ident: uuid.UUID


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("flag", "false"),
        ("flag", 0),
        ("day", dt.datetime(2024, 1, 1, 12, tzinfo=UTC)),
        ("span", 5),
        ("ints", [1, None]),
        ("ints", [1, True]),
        ("ident", "not-a-uuid"),
    ],
)
def test_values_binary_copy_would_coerce_are_refused(db: Database, name: str, value: Any):
    """Values psycopg's binary dumpers would silently coerce are refused, not stored wrongly."""
    create_tables(db, Flags)

    def row() -> Flags:
        return Flags(
            flag=True,
            day=dt.date(2024, 1, 1),
            span=dt.timedelta(1),
            ints=[1],
            ident=uuid.UUID(int=1),
        )

    rows = [row() for _ in range(4)]
    setattr(rows[3], name, value)
    with pytest.raises(ValidationError) as info:
        Flags.batch_create(rows, db)
    assert info.value.position == 3
    assert info.value.column == name
    assert Flags.count(db) == 0


def test_numpy_scalars_and_uuid_strings_are_converted(db: Database):
    """Values the column's check converts (numpy scalars, UUID text) are stored, not refused."""
    create_tables(db, Flags)
    rows = [
        Flags(
            flag=np.True_,  # type: ignore[arg-type]
            day=dt.date(2024, 1, 2),
            span=dt.timedelta(2),
            ints=np.array([4, 5]),  # type: ignore[arg-type]
            ident=str(uuid.UUID(int=9)),  # type: ignore[arg-type]
        )
    ]
    Flags.batch_create(rows, db)
    (back,) = Flags.find_all(db)
    assert back.flag is True
    assert back.ints == [4, 5]
    assert back.ident == uuid.UUID(int=9)


def test_a_row_of_another_type_is_refused(tick_db: Database):
    """Something that is not an instance of the model fails with its position."""
    rows: list[Any] = ticks(10)
    rows[6] = {"symbol": "AAA"}
    with pytest.raises(ValidationError, match="expected a Tick instance") as info:
        Tick.batch_create(rows, tick_db)
    assert info.value.position == 6
    assert Tick.count(tick_db) == 0


def test_constraint_violations_name_the_row(db: Database):
    """A duplicate key and a dangling foreign key fail with the row's position and value."""
    create_tables(db, Parent, Child)
    Parent.batch_create([Parent(id="a", name="A"), Parent(id="b", name="B")], db)
    parents = [Parent(id=f"x{i}", name=f"X{i}") for i in range(50)]
    parents[31].name = "B"
    with pytest.raises(UniqueViolationError) as dup:
        Parent.batch_create(parents, db)
    assert dup.value.position == 31
    assert dup.value.column == "name"
    assert dup.value.value == "B"
    kids = [Child(parent="a") for _ in range(40)]
    kids[12].parent = "zz"
    with pytest.raises(ForeignKeyViolationError) as fk:
        Child.batch_create(kids, db)
    assert fk.value.position == 12
    assert fk.value.value == "zz"
    assert Parent.count(db) == 2
    assert Child.count(db) == 0


def test_a_failed_batch_inside_a_transaction_rolls_back_only_itself(tick_db: Database):
    """Inside a transaction a batch is a savepoint: earlier work survives its failure."""
    with tick_db.transaction() as tx:
        Tick.batch_create(ticks(3), tx)
        with pytest.raises(ValidationError):
            Tick.batch_create(_bad("price", "x"), tx)
        assert Tick.count(tx) == 3
        Tick.batch_create(ticks(2, start=10), tx)
    assert Tick.count(tick_db) == 5


def test_options_are_checked(tick_db: Database):
    """A bad option value or an unknown option is refused before any statement."""
    with count_statements(tick_db) as log:
        with pytest.raises(ValidationError, match="chunk_size"):
            Tick.batch_create(ticks(2), tick_db, chunk_size=0)
        with pytest.raises(ValidationError, match="start"):
            Tick.batch_create(ticks(2), tick_db, start=-1)
        with pytest.raises(ValidationError, match="unknown batch option"):
            Tick.batch_create(ticks(2), tick_db, chunksize=5)  # type: ignore[call-overload]
        with pytest.raises(ValidationError, match="returning"):
            Tick.batch_create(ticks(2), tick_db, returning="rows")  # type: ignore[call-overload]
        with pytest.raises(ValidationError, match="db must be"):
            Tick.batch_create(ticks(2), "not a db")  # type: ignore[call-overload]
    assert len(log) == 0


def test_wide_and_long_batches_need_no_parameters(db: Database):
    """40,000 rows of 7 columns and 5,000 of 23 load without any bound parameter (B6)."""
    create_tables(db, Tick, Everything)
    with count_statements(db) as log:
        assert Tick.batch_create(ticks(40_000), db, chunk_size=40_000) == 40_000
    assert [len(p) for _, p in log.statements] == [0]
    wide = [Everything_like(i) for i in range(5_000)]
    with count_statements(db) as log:
        assert Everything.batch_create(wide, db) == 5_000
    assert all(len(p) == 0 for _, p in log.statements)
    assert Everything.count(db) == 5_000


def Everything_like(i: int) -> Everything:  # noqa: N802 - reads as a constructor
    return Everything(
        text=f"t{i}",
        number=i,
        real=i / 3,
        flag=bool(i % 2),
        at=T0,
        day=dt.date(2024, 1, 1),
        clock=dt.time(1, 2),
        span=dt.timedelta(seconds=i),
        amount=Decimal(i),
        ident=uuid.UUID(int=i),
        blob=b"x",
        doc={"i": i},
        side=Side.BUY,
        ints=[i],
        floats=[0.5],
        texts=["a"],
        flags=[True],
        days=[dt.date(2024, 1, 1)],
        holes=[None, i],
        i64=np.arange(3, dtype=np.int64),
        f32=np.ones(2, dtype=np.float32),
    )


def test_progress_callback_and_bar(tick_db: Database, capsys: pytest.CaptureFixture[str]):
    """A progress callback hears the rows done after each chunk; progress=True draws a bar."""
    seen: list[int] = []
    Tick.batch_create(ticks(2_500), tick_db, chunk_size=1_000, progress=seen.append)
    assert seen == [1_000, 2_000, 2_500]
    Tick.batch_create(ticks(300, symbol="B"), tick_db, chunk_size=100, progress=True)
    assert "rows" in capsys.readouterr().err


# --- updates ----------------------------------------------------------------------------------


def test_batch_update_writes_rows_by_key(tick_db: Database):
    """batch_update writes each row by its key, bumps updated_at, skips unknown keys."""
    Tick.batch_create(ticks(30), tick_db)
    rows = Tick.find_all(tick_db)
    for r in rows:
        r.price = -r.price
        r.qty += 1_000
    ghost = Tick(id=999_999, symbol="G", ts=T0, price=1.0)
    with count_statements(tick_db) as log:
        assert Tick.batch_update([*rows, ghost], tick_db, chunk_size=20) == 30
    assert len(log) == 7  # create stage, 2 x (copy, update), truncate, drop
    back = Tick.find_all(tick_db)
    assert [b.price for b in back] == [r.price for r in rows]
    assert [b.qty for b in back] == [r.qty for r in rows]
    assert all(b.updated_at > r.updated_at for b, r in zip(back, rows, strict=True))  # type: ignore[operator]
    assert all(b.created_at == r.created_at for b, r in zip(back, rows, strict=True))


def test_batch_update_of_chosen_columns_with_duplicates(tick_db: Database):
    """Only the chosen columns are written, and the last row with a key wins."""
    Tick.batch_create(ticks(4), tick_db)
    first, second = Tick.find_all(tick_db)[:2]
    first.qty, first.price = 7, -1.0
    later = Tick.find_by_id(first.id, tick_db)
    assert later is not None
    later.qty = 8
    second.qty = 9
    assert (
        Tick.batch_update_with_table([first, second, later], tick_db, "bt_ticks", columns=["qty"])
        == 2
    )
    back = {b.id: b for b in Tick.find_all(tick_db)}
    assert back[first.id].qty == 8
    assert back[first.id].price == 100.0
    assert back[second.id].qty == 9
    with pytest.raises(QueryError, match="no column 'nope'"):
        Tick.batch_update([first], tick_db, columns=["nope"])


def test_batch_update_refuses_rows_without_a_key(tick_db: Database):
    """A row without its primary key, generated or natural, fails the update with its position."""
    Tick.batch_create(ticks(3), tick_db)
    rows = Tick.find_all(tick_db)
    rows[1].id = None
    with pytest.raises(ValidationError, match="without a primary key") as info:
        Tick.batch_update(rows, tick_db)
    assert info.value.position == 1
    create_tables(tick_db, Symbol)
    Symbol.batch_create([Symbol(code="A"), Symbol(code="B")], tick_db)
    symbols = [Symbol(code="A", name="a"), Symbol(code=None, name="b")]  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="without a primary key") as info:
        Symbol.batch_update(symbols, tick_db)
    assert info.value.position == 1
    assert [s.name for s in Symbol.find_all(tick_db)] == ["", ""]


def test_batch_update_names_a_row_the_server_refuses(tick_db: Database):
    """A NOT NULL violation found by the UPDATE is traced back to the row."""
    Tick.batch_create(ticks(5), tick_db)
    rows = Tick.find_all(tick_db)
    object.__setattr__(rows[3], "symbol", None)
    with pytest.raises(ValidationError, match="NOT NULL") as info:
        Tick.batch_update(rows, tick_db)
    # Reported as the single-row check would, with the server's refusal as the cause.
    assert isinstance(info.value.__cause__, psycopg.errors.NotNullViolation)
    assert info.value.position == 3
    assert info.value.column == "symbol"


# --- deletes ----------------------------------------------------------------------------------


def test_batch_delete_in_one_statement(tick_db: Database):
    """batch_delete removes every given key with one statement and returns the count."""
    Tick.batch_create(ticks(100), tick_db)
    ids = [t.id for t in Tick.find_all(tick_db)]
    with count_statements(tick_db) as log:
        assert Tick.batch_delete([*ids[:70], 10_000], tick_db) == 70
    assert len(log) == 1
    assert "= ANY(" in log.texts()[0]
    assert (
        Tick.batch_delete_with_table(ids[70:], tick_db, "bt_ticks", chunked=True, chunk_size=7)
        == 30
    )
    assert Tick.count(tick_db) == 0


def test_batch_delete_checks_each_key(tick_db: Database):
    """A key of the wrong type fails the delete with its position."""
    with pytest.raises(ValidationError) as info:
        Tick.batch_delete([1, 2, "three"], tick_db)
    assert info.value.position == 2


def test_batch_delete_cascade_follows_foreign_keys(db: Database):
    """batch_delete_cascade deletes the referencing rows first, all in one transaction."""
    create_tables(db, Parent, Child)
    Parent.batch_create([Parent(id=k, name=k.upper()) for k in "abc"], db)
    Child.batch_create([Child(parent=k) for k in "aabbc"], db)
    with pytest.raises(ForeignKeyViolationError):
        Parent.batch_delete(["a"], db)
    assert Parent.batch_delete_cascade(["a", "b"], db) == 2
    assert [c.parent for c in Child.find_all(db)] == ["c"]
    assert Parent.batch_delete_cascade_with_table(["c"], db, "bt_parents") == 1
    assert Child.count(db) == 0


# --- odd inputs ----------------------------------------------------------------------------------


@table("bt_refs")
class External(Orso):
    id: int | None = column(primary_key=True, default=None)
    ref: uuid.UUID | None = column(unique=True, default=None)
    note: str = ""


def test_keys_equal_only_to_postgresql_fail_with_an_explanation(db: Database):
    """A UUID key given once as text and once as UUID is a clear error, not a bare 21000."""
    create_tables(db, External)
    ref = uuid.UUID(int=5)
    rows = [External(ref=ref), External(ref=str(ref))]  # type: ignore[arg-type]
    with pytest.raises(DatabaseError, match="keys PostgreSQL finds equal") as info:
        External.batch_upsert(rows, db)
    assert info.value.sqlstate == "21000"
    assert External.count(db) == 0


def test_rows_with_a_null_key_are_each_inserted(db: Database):
    """NULL keys never conflict, so every row holding one is its own row."""
    create_tables(db, External)
    ref = uuid.UUID(int=1)
    rows = [External(note="a"), External(ref=ref, note="b"), External(note="c")]
    rows.append(External(ref=ref, note="d"))
    assert External.batch_upsert(rows, db) == UpsertResult(inserted=3, skipped=1)
    assert sorted(e.note for e in External.find_all(db)) == ["a", "c", "d"]


def test_an_exception_from_the_input_rolls_the_batch_back(tick_db: Database):
    """An error raised by the caller's generator propagates and nothing is written."""

    def produce() -> Any:
        yield from ticks(1_500)
        msg = "feed broke"
        raise RuntimeError(msg)

    rows = ticks(5)
    rows[2].id = 77

    with pytest.raises(RuntimeError, match="feed broke"):
        Tick.batch_create(produce(), tick_db, chunk_size=1_000, returning="keys")
    with pytest.raises(RuntimeError, match="feed broke"):
        Tick.batch_create(produce(), tick_db, chunk_size=1_000)
    with pytest.raises(RuntimeError, match="feed broke"):
        Tick.batch_upsert(produce(), tick_db, key=["id"], chunk_size=1_000)
    assert Tick.count(tick_db) == 0
    assert Tick.batch_create(rows[2:3], tick_db, returning="keys") == [77]


def test_progress_options(monkeypatch: pytest.MonkeyPatch):
    """A bar only when asked or on a terminal; progress=True without tqdm is a clear error."""
    assert progress.reporter(option=False, total=10, label="t")._bar is None
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    assert progress.reporter(option=None, total=10, label="t")._bar is None
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    auto = progress.reporter(option=None, total=10, label="t")
    assert auto._bar is not None
    assert auto._bar.delay == 1.0  # shown only once the batch has run for a second
    auto.update(10)
    auto.close()
    monkeypatch.setitem(sys.modules, "tqdm", None)
    assert progress.reporter(option=None, total=None, label="t")._bar is None
    with pytest.raises(ConfigError, match="tqdm"):
        progress.reporter(option=True, total=10, label="t")


@table("bt_symbols")
class Symbol(Orso):
    code: str = column(primary_key=True)
    name: str = ""


def test_returning_natural_keys(db: Database):
    """A natural key is returned as given; a row without one is refused with its position."""
    create_tables(db, Symbol)
    assert Symbol.batch_create([Symbol(code="B"), Symbol(code="A")], db, returning="keys") == [
        "B",
        "A",
    ]
    rows = [Symbol(code="C"), Symbol(code=None)]  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="NOT NULL") as info:
        Symbol.batch_create(rows, db, returning="keys")
    assert info.value.position == 1
    assert info.value.column == "code"


def test_staged_rows_mixing_supplied_and_server_filled_values(db: Database):
    """Upserts and updates send rows that leave a server-filled column None separately."""
    create_tables(db, WithDefault)
    WithDefault.batch_create([WithDefault(label=k) for k in "abc"], db)
    rows = WithDefault.find_all(db)
    rows[0].status, rows[1].status, rows[2].status = "x", None, "z"
    assert WithDefault.batch_update(rows, db) == 3
    assert [r.status for r in WithDefault.find_all(db)] == ["x", "new", "z"]
    fresh = [WithDefault(label="d"), WithDefault(id=rows[0].id, label="A", status="y")]
    result = WithDefault.batch_upsert(fresh, db, key=["id"])
    assert result == UpsertResult(inserted=1, updated=1)
    assert {r.label: r.status for r in WithDefault.find_all(db)} == {
        "A": "y",
        "b": "new",
        "c": "z",
        "d": "new",
    }


def test_chosen_columns_hold_for_rows_sent_in_a_group_of_their_own(db: Database):
    """columns= limits the update of rows whose server-filled values differ from the first's."""
    create_tables(db, WithDefault)
    WithDefault.batch_create([WithDefault(label=k) for k in "abc"], db)
    rows = WithDefault.find_all(db)
    rows[0].status, rows[1].status, rows[2].status = "x", None, "z"
    for row in rows:
        row.label = row.label.upper()
    assert WithDefault.batch_update(rows, db, columns=["status"]) == 3
    assert [(r.label, r.status) for r in WithDefault.find_all(db)] == [
        ("a", "x"),
        ("b", "new"),
        ("c", "z"),
    ]


def test_the_cyclic_gc_is_paused_only_while_a_generator_streams(tick_db: Database):
    """A generator batch pauses the cyclic GC and restores it, even when the batch fails."""
    import gc

    states: list[bool] = []

    def produce() -> Any:
        for row in ticks(3):
            states.append(gc.isenabled())
            yield row

    Tick.batch_create(produce(), tick_db)
    assert states[1:] == [False, False]  # the first row is read before the batch starts
    assert gc.isenabled()
    rows = ticks(3)
    rows[1].symbol = "\x00"
    with pytest.raises(ValidationError):
        Tick.batch_create(iter(rows), tick_db)
    assert gc.isenabled()
    gc.disable()
    try:
        Tick.batch_create(iter(ticks(2)), tick_db)
        assert not gc.isenabled()
    finally:
        gc.enable()
