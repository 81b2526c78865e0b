"""Columnar results: fetch_arrays, fetch_arrow, fetch_df and copy_out against a real server.

The oracle is ``fetch()``: every columnar read must hold, value for value, what the row read
gives for the same query, whichever reader the session picked (ADBC through a ``Database``,
rows inside a transaction).
"""

from __future__ import annotations

import datetime as dt
import enum
import io
import math
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg import sql

from orso_pg import (
    Aggregate,
    ConfigError,
    ConnectionLostError,
    Database,
    DatabaseError,
    Filter,
    Orso,
    QueryBuilder,
    QueryError,
    Sort,
    ValidationError,
    column,
    table,
    table_of,
)
from orso_pg.query._columns import adbc_can_read
from tests.helpers import count_statements, create_tables
from tests.models import Compressed, Nullable, Scalars

pyarrow = pytest.importorskip("pyarrow")
pandas = pytest.importorskip("pandas")

UTC = dt.UTC
T0 = dt.datetime(2024, 3, 1, tzinfo=UTC)


class Venue(enum.Enum):
    NYSE = "nyse"
    LSE = "lse"


@table("col_ticks")
class Tick(Orso):
    id: int | None = column(primary_key=True, default=None)
    symbol: str
    ts: dt.datetime
    price: float
    qty: int
    live: bool
    day: dt.date
    venue: Venue
    bid: float | None = None
    size: int | None = None
    flag: bool | None = None
    seen: dt.datetime | None = None


def ticks(n: int, *, holes: bool = False) -> list[Tick]:
    out = []
    for i in range(n):
        hole = holes and i % 3 == 0
        out.append(
            Tick(
                symbol=("AAA", "BBB", "CCC")[i % 3],
                ts=T0 + dt.timedelta(seconds=i, microseconds=i * 7),
                price=100.0 + i / 8,
                qty=i * 10 - 5,
                live=i % 2 == 0,
                day=dt.date(2024, 3, 1) + dt.timedelta(days=i % 40),
                venue=Venue.NYSE if i % 2 else Venue.LSE,
                bid=None if hole else float(i),
                size=None if hole else i,
                flag=None if hole else i % 4 == 0,
                seen=None if hole else T0 - dt.timedelta(days=i),
            )
        )
    return out


def same(a: Any, b: Any) -> bool:
    """One cell of fetch_arrays against one value of fetch()."""
    if b is None:
        return (
            a is None
            or a is np.ma.masked
            or (isinstance(a, float) and math.isnan(a))
            or (isinstance(a, np.datetime64) and np.isnat(a))
        )
    if isinstance(b, float) and math.isnan(b):
        return math.isnan(a)
    if isinstance(b, Decimal) and b.is_nan():
        return isinstance(a, Decimal) and a.is_nan()
    if isinstance(b, dt.datetime):
        micros = (b - dt.datetime(1970, 1, 1, tzinfo=UTC)) // dt.timedelta(microseconds=1)
        return bool(a == np.datetime64(micros, "us"))
    if isinstance(b, dt.date):
        return bool(a == np.datetime64(b, "D"))
    if isinstance(b, np.ndarray):
        return (
            isinstance(a, np.ndarray)
            and a.dtype == b.dtype
            and np.array_equal(a, b, equal_nan=True)
        )
    if isinstance(b, list):
        return isinstance(a, list) and len(a) == len(b) and all(map(same, a, b))
    return bool(a == b) and type(a) is type(b) if not isinstance(a, np.generic) else a == b


def assert_matches(arrays: dict[str, np.ndarray], rows: list[tuple[Any, ...]], names: list[str]):
    assert list(arrays) == names
    for j, name in enumerate(names):
        col = arrays[name]
        assert len(col) == len(rows)
        for i, row in enumerate(rows):
            cell = col[i]
            assert same(cell, row[j]), f"{name}[{i}]: {cell!r} != {row[j]!r}"


# --- the documented dtypes ----------------------------------------------------------------------


def test_dtypes_and_nulls_as_documented(db: Database):
    create_tables(db, Tick)
    Tick.batch_insert(ticks(30, holes=True), db)
    q = QueryBuilder(Tick).order_by(Sort.asc("id"))
    arrays = q.fetch_arrays(db)
    assert arrays["id"].dtype == np.int64
    assert arrays["price"].dtype == np.float64
    assert arrays["live"].dtype == np.bool_
    assert arrays["ts"].dtype == np.dtype("datetime64[us]")
    assert arrays["day"].dtype == np.dtype("datetime64[D]")
    assert arrays["symbol"].dtype == object
    assert arrays["venue"][0] is Venue.LSE
    # No NULL: a plain array. NULLs: masked ints and bools, NaN floats, NaT timestamps.
    assert not isinstance(arrays["qty"], np.ma.MaskedArray)
    assert isinstance(arrays["size"], np.ma.MaskedArray)
    assert arrays["size"].mask.tolist() == [i % 3 == 0 for i in range(30)]
    assert arrays["size"].data[1] == 1
    assert isinstance(arrays["flag"], np.ma.MaskedArray)
    assert math.isnan(arrays["bid"][0])
    assert arrays["bid"][1] == 1.0
    assert np.isnat(arrays["seen"][0])
    assert arrays["ts"][1] == np.datetime64("2024-03-01T00:00:01.000007", "us")
    assert_matches(arrays, q.fetch(db), [c.name for c in table_of(Tick).columns])


def test_a_database_reads_through_adbc_and_a_transaction_through_its_connection(db: Database):
    create_tables(db, Tick)
    Tick.batch_insert(ticks(50), db)
    q = QueryBuilder(Tick).select("symbol", "price", "qty", "ts").order_by(Sort.asc("id"))
    through_db = q.fetch_arrays(db)
    reader = db._columnar_reader()
    assert reader is not None
    assert reader._idle, "the ADBC connection is kept for the next read"
    with db.transaction() as tx:
        Tick(
            symbol="ZZZ", ts=T0, price=1.0, qty=1, live=True, day=T0.date(), venue=Venue.LSE
        ).insert(tx)
        inside = q.fetch_arrays(tx)
        # The transaction's own write is visible to its own read, as with fetch().
        assert len(inside["symbol"]) == 51
        assert inside["symbol"][-1] == "ZZZ"
    for name in through_db:
        assert np.array_equal(through_db[name], inside[name][:50])


def test_a_dead_idle_columnar_connection_is_replaced(db: Database):
    """A kept ADBC connection whose backend was terminated is dropped and the read retried."""
    reader = db._columnar_reader()
    assert reader is not None
    first = reader.read("SELECT pg_backend_pid() AS pid", "t").column("pid")[0].as_py()
    assert reader._idle
    with db.connection() as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (first,))
    second = reader.read("SELECT pg_backend_pid() AS pid", "t").column("pid")[0].as_py()
    assert second != first
    # The kept connection is dead again; its replacement dies during the read itself, which
    # is not retried a second time: it surfaces as a lost connection.
    with db.connection() as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (second,))
    with pytest.raises(ConnectionLostError):
        reader.read("SELECT pg_terminate_backend(pg_backend_pid())", "t")


def test_the_columnar_read_is_logged_like_any_statement(db: Database):
    create_tables(db, Tick)
    Tick.batch_insert(ticks(5), db)
    with count_statements(db) as log:
        QueryBuilder(Tick).select("price").where(Filter.gt("qty", 0)).fetch_arrays(db)
    assert len(log) == 1
    assert 'SELECT "price" FROM "col_ticks" WHERE "qty" > %s' in log.texts()[0]


def test_filters_are_bound_not_formatted(db: Database):
    create_tables(db, Tick)
    Tick.batch_insert(ticks(9), db)
    evil = "AAA' OR '1'='1"
    q = QueryBuilder(Tick).select("qty").where(Filter.eq("symbol", evil))
    assert len(q.fetch_arrays(db)["qty"]) == 0
    q = QueryBuilder(Tick).select("qty").where(Filter.eq("symbol", "AAA"))
    assert sorted(q.fetch_arrays(db)["qty"].tolist()) == [-5, 25, 55]


@pytest.mark.parametrize("model", [Scalars, Nullable, Compressed], ids=lambda m: m.__name__)
@given(data=st.data())
@settings(max_examples=6)
def test_every_mapped_type_matches_fetch(db: Database, model: type[Any], data: st.DataObject):
    """Types ADBC cannot read exactly (numeric, uuid, json, time, interval) use the rows."""
    from orso_pg.testing import batches

    create_tables(db, model)
    model.delete_where(Filter.is_not_null("id"), db)
    model.batch_insert(data.draw(batches(model, 0, 8)), db)
    q = QueryBuilder(model).order_by(Sort.asc("id"))
    arrays = q.fetch_arrays(db)
    assert_matches(arrays, q.fetch(db), [c.name for c in table_of(model).columns])
    if model is Compressed and len(arrays["values"]):
        assert all(isinstance(v, np.ndarray) for v in arrays["values"])


def test_aggregates_and_groups(db: Database):
    create_tables(db, Tick)
    Tick.batch_insert(ticks(60, holes=True), db)
    q = (
        QueryBuilder(Tick)
        .select("symbol")
        .aggregate(Aggregate.COUNT, "*", "n")
        .aggregate(Aggregate.SUM, "qty", "volume")
        .aggregate(Aggregate.AVG, "price", "mean")
        .aggregate(Aggregate.MAX, "ts", "last")
        .group_by("symbol")
        .order_by(Sort.asc("symbol"))
    )
    arrays = q.fetch_arrays(db)
    assert arrays["n"].dtype == np.int64
    assert arrays["volume"].dtype == np.int64
    assert arrays["mean"].dtype == np.float64
    assert arrays["last"].dtype == np.dtype("datetime64[us]")
    assert_matches(arrays, q.fetch(db), ["symbol", "n", "volume", "mean", "last"])
    assert not adbc_can_read(q.output_columns())  # sum() arrives as numeric


@given(
    rows=st.lists(
        st.tuples(
            st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)),
            st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
            st.one_of(st.none(), st.booleans()),
            st.one_of(
                st.none(),
                st.datetimes(
                    min_value=dt.datetime(1, 1, 2),  # noqa: DTZ001 (hypothesis adds the zone)
                    max_value=dt.datetime(9999, 12, 30),  # noqa: DTZ001
                    timezones=st.just(UTC),
                ),
            ),
            st.one_of(
                st.none(), st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"))
            ),
        ),
        max_size=25,
    )
)
@settings(max_examples=25)
def test_columnar_equals_fetch_property(db: Database, rows: list[tuple[Any, ...]]):
    create_tables(db, Loose)
    Loose.delete_where(Filter.is_not_null("id"), db)
    Loose.batch_create_rows(rows, db, columns=["n", "x", "b", "t", "s"])
    q = QueryBuilder(Loose).select("n", "x", "b", "t", "s").order_by(Sort.asc("id"))
    fetched = q.fetch(db)
    assert_matches(q.fetch_arrays(db), fetched, ["n", "x", "b", "t", "s"])
    with db.transaction() as tx:
        assert_matches(q.fetch_arrays(tx), fetched, ["n", "x", "b", "t", "s"])


@table("col_loose")
class Loose(Orso):
    id: int | None = column(primary_key=True, default=None)
    n: int | None = None
    x: float | None = None
    b: bool | None = None
    t: dt.datetime | None = None
    s: str | None = None


# --- Arrow and pandas ---------------------------------------------------------------------------


def test_fetch_arrow(db: Database):
    create_tables(db, Tick)
    Tick.batch_insert(ticks(12, holes=True), db)
    q = QueryBuilder(Tick).select("qty", "size", "bid", "ts", "venue").order_by(Sort.asc("id"))
    tbl = q.fetch_arrow(db)
    assert tbl.schema.field("ts").type == pyarrow.timestamp("us", tz="UTC")
    assert tbl.schema.field("size").type == pyarrow.int64()
    assert tbl.column("size").null_count == 4
    assert tbl.column("venue").to_pylist()[:2] == ["lse", "nyse"]
    assert tbl.column("ts").to_pylist() == [r[3] for r in q.fetch(db)]


def test_fetch_df(db: Database):
    create_tables(db, Tick)
    Tick.batch_insert(ticks(12, holes=True), db)
    q = QueryBuilder(Tick).select("symbol", "size", "flag", "ts", "price").order_by(Sort.asc("id"))
    df = q.fetch_df(db)
    assert str(df["size"].dtype) == "Int64"
    assert str(df["flag"].dtype) == "boolean"
    assert str(df["ts"].dtype) == "datetime64[us, UTC]"
    assert df["size"].isna().sum() == 4
    rows = q.fetch(db)
    assert df["ts"].tolist() == [pandas.Timestamp(r[3]) for r in rows]
    assert df["price"].tolist() == [r[4] for r in rows]


def test_empty_result(db: Database):
    create_tables(db, Tick)
    q = QueryBuilder(Tick).select("qty", "ts")
    arrays = q.fetch_arrays(db)
    assert arrays["qty"].shape == (0,)
    assert arrays["ts"].dtype == np.dtype("datetime64[us]")
    assert len(q.fetch_df(db)) == 0


def test_a_missing_extra_is_named(db: Database, monkeypatch: pytest.MonkeyPatch):
    create_tables(db, Tick)
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ConfigError, match=r"orso_pg\[pandas\]"):
        QueryBuilder(Tick).fetch_df(db)
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(ConfigError, match=r"orso_pg\[arrow\]"):
        QueryBuilder(Tick).fetch_arrow(db)
    # Without the driver, fetch_arrays still works, through the rows.
    monkeypatch.setitem(sys.modules, "adbc_driver_postgresql.dbapi", None)
    fresh = Database(db.conninfo, schema=db.schema, max_size=1)
    try:
        assert fresh._columnar_reader() is None
        assert len(QueryBuilder(Tick).fetch_arrays(fresh)["id"]) == 0
    finally:
        fresh.close()


# --- export -------------------------------------------------------------------------------------


def test_copy_out_csv_to_a_path_round_trips(
    db: Database, raw: psycopg.Connection[Any], tmp_path: Path
):
    create_tables(db, Tick)
    Tick.batch_insert(ticks(40, holes=True), db)
    target = tmp_path / "ticks.csv"
    q = QueryBuilder(Tick).where(Filter.eq("symbol", "AAA")).order_by(Sort.asc("id"))
    assert q.copy_out(target, db) == 14
    lines = target.read_text().splitlines()
    assert lines[0].split(",")[:3] == ["id", "symbol", "ts"]
    assert len(lines) == 15
    raw.execute("CREATE TABLE back (LIKE col_ticks)")
    with raw.cursor().copy("COPY back FROM STDIN (FORMAT CSV, HEADER)") as copy:
        copy.write(target.read_bytes())
    same_rows = raw.execute(
        "SELECT count(*) FROM (SELECT * FROM back EXCEPT SELECT * FROM col_ticks) d"
    ).fetchone()
    assert same_rows == (0,)
    assert raw.execute("SELECT count(*) FROM back").fetchone() == (14,)


def test_copy_out_binary_to_a_file_round_trips(db: Database, raw: psycopg.Connection[Any]):
    create_tables(db, Tick)
    Tick.batch_insert(ticks(25, holes=True), db)
    buf = io.BytesIO()
    assert (
        Tick.copy_out(
            buf, db, filter=Filter.lt("qty", 100), columns=["id", "ts", "bid"], format="binary"
        )
        == 11
    )
    assert buf.getvalue().startswith(b"PGCOPY\n\xff\r\n\x00")
    raw.execute("CREATE TABLE back (id bigint, ts timestamptz, bid double precision)")
    with raw.cursor().copy("COPY back FROM STDIN (FORMAT BINARY)") as copy:
        copy.write(buf.getvalue())
    got = raw.execute("SELECT id, ts, bid FROM back ORDER BY id").fetchall()
    want = raw.execute("SELECT id, ts, bid FROM col_ticks WHERE qty < 100 ORDER BY id").fetchall()
    assert got == want


def test_copy_out_refuses_bad_arguments(db: Database):
    create_tables(db, Tick)
    with pytest.raises(QueryError, match="format must be"):
        QueryBuilder(Tick).copy_out(io.BytesIO(), db, format="parquet")
    with pytest.raises(ValidationError, match="target must be"):
        QueryBuilder(Tick).copy_out(42, db)


def test_model_shortcuts(db: Database):
    create_tables(db, Tick)
    Tick.batch_insert(ticks(30), db)
    arrays = Tick.find_where_arrays(Filter.eq("symbol", "BBB"), db, columns=["qty", "ts"])
    assert list(arrays) == ["qty", "ts"]
    assert arrays["qty"].tolist() == [5 + 30 * k for k in range(10)]
    df = Tick.find_where_df(None, db)
    assert len(df) == 30
    tbl = Tick.find_where_arrow(Filter.gt("qty", 200), db, sorts=[Sort.desc("qty")])
    assert tbl.column("qty").to_pylist() == sorted(
        (i * 10 - 5 for i in range(30) if i * 10 - 5 > 200), reverse=True
    )


def test_identifiers_are_checked(db: Database):
    create_tables(db, Tick)
    with pytest.raises(QueryError):
        Tick.find_where_arrays(None, db, columns=["qty; drop table x"])


def test_a_read_error_is_translated(db: Database):
    create_tables(db, Tick)
    with db.connection() as conn:
        conn.execute(sql.SQL("DROP TABLE col_ticks"))
    with pytest.raises(DatabaseError, match="col_ticks") as through_adbc:
        QueryBuilder(Tick).select("qty").fetch_arrays(db)
    with db.transaction() as tx, pytest.raises(DatabaseError) as through_rows:
        QueryBuilder(Tick).select("qty").fetch_arrays(tx)
    # Both readers raise the class a psycopg error of that SQLSTATE gets.
    assert type(through_adbc.value) is type(through_rows.value)
    assert through_adbc.value.sqlstate == "42P01"
