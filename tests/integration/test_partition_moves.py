"""Rows that move between partitions: set-based updates and a DEFAULT partition's rows.

A set-based update that gives the partition column a value makes its partition first, in the
update's transaction; one that computes it on the server fails, when no partition holds the
result, with an error naming the table and how to make the partitions ahead. A new partition
whose rows a DEFAULT partition already holds takes them over in the transaction that makes it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg import sql

from orso_pg import (
    CheckViolationError,
    Database,
    Filter,
    Orso,
    QueryError,
    col,
    partition,
    table,
)
from tests.helpers import create_tables
from tests.partition_models import PQuote, PTrade, Venue

T0 = datetime(2024, 3, 1, tzinfo=UTC)
EVERY = Filter.is_not_null("symbol")
EVERY_ID = Filter.is_not_null("id")


@table(
    "pm_ticks",
    primary_key=("symbol", "ts"),
    partition_by=partition.range("ts", every="1 day", default=True),
    indexes=[("price",)],
)
class Tick(Orso):
    """A tick by UTC day, with a DEFAULT partition for days not made yet."""

    symbol: str
    ts: datetime
    price: float


def ticks(days: int, per_day: int = 4) -> Iterator[Tick]:
    for d in range(days):
        for i in range(per_day):
            yield Tick(symbol=f"S{i}", ts=T0 + timedelta(days=d, hours=i), price=float(d))


def placed(raw: psycopg.Connection[Any], table: str) -> dict[str, int]:
    """Return how many rows each partition of *table* holds."""
    query = sql.SQL(
        "SELECT c.relname, count(*) FROM {} r JOIN pg_class c ON c.oid = r.tableoid"
        " GROUP BY 1 ORDER BY 1"
    ).format(sql.Identifier(table))
    rows = raw.execute(query).fetchall()
    return {str(name): int(n) for name, n in rows}


def test_an_update_setting_the_partition_column_makes_its_partition(
    db: Database, raw: psycopg.Connection[Any]
) -> None:
    """update_where with a given ts: the partition it needs exists before the rows move."""
    create_tables(db, PTrade)
    PTrade.batch_insert([PTrade(symbol=s, ts=T0, price=1.0) for s in ("A", "B", "C")], db)
    later = T0 + timedelta(days=40)
    assert PTrade.update_where(Filter.eq("symbol", "A"), {"ts": later}, db) == 1
    with db.transaction() as tx:
        assert PTrade.update_where(Filter.eq("symbol", "B"), {"ts": later + timedelta(1)}, tx) == 1
    assert placed(raw, "pt_trades") == {
        "pt_trades_p20240301": 1,
        "pt_trades_p20240410": 1,
        "pt_trades_p20240411": 1,
    }
    # A failed transaction takes the partition it made with it.
    with pytest.raises(RuntimeError), db.transaction() as tx:
        PTrade.update_where(Filter.eq("symbol", "C"), {"ts": later + timedelta(2)}, tx)
        raise RuntimeError
    assert len(PTrade.partitions(db)) == 3
    # Through a pipeline the partition is made before the update is queued.
    with db.pipeline() as p:
        done = PTrade.update_where(Filter.eq("symbol", "C"), {"ts": later + timedelta(3)}, p)
    assert done.result() == 1
    assert "pt_trades_p20240413" in placed(raw, "pt_trades")
    # Partition and other columns together, and a value to an existing partition.
    changed = PTrade.update_where(EVERY, {"ts": T0 + timedelta(hours=1), "price": 2.0}, db)
    assert changed == 3
    assert placed(raw, "pt_trades") == {"pt_trades_p20240301": 3}


def test_an_update_into_a_partition_dropped_behind_its_back(
    server: Any, schema: str, raw: psycopg.Connection[Any]
) -> None:
    """A connection that remembers a partition another session dropped looks again."""
    with Database(server.dsn, schema=schema, min_size=1, max_size=1) as one:
        create_tables(one, PTrade)
        PTrade(symbol="A", ts=T0, price=1.0).insert(one)
        PTrade(symbol="A", ts=T0 + timedelta(days=1), price=1.0).insert(one)
        raw.execute(f"DROP TABLE pt_trades_p{T0:%Y%m%d}")
        moved = PTrade.update_where(EVERY, {"ts": T0 + timedelta(hours=2)}, one)
        assert moved == 1
        assert placed(raw, "pt_trades") == {"pt_trades_p20240301": 1}
        raw.execute("DROP TABLE pt_trades_p20240302")
        made = PTrade.create_partitions(T0 + timedelta(days=1), T0 + timedelta(days=2), one)
        assert made == ["pt_trades_p20240302"]


def test_an_update_computing_the_partition_column_says_how_to_make_partitions(
    db: Database, raw: psycopg.Connection[Any]
) -> None:
    """col("ts") + ... is the server's to compute: a clear error, then it works once made."""
    create_tables(db, PTrade)
    PTrade.batch_insert([PTrade(symbol=s, ts=T0, price=1.0) for s in ("A", "B")], db)
    shift = {"ts": col("ts") + timedelta(days=3)}
    with pytest.raises(CheckViolationError) as caught:
        PTrade.update_where(EVERY, shift, db)
    message = str(caught.value)
    assert message.startswith("pt_trades: an update moves rows to a ts that no partition")
    assert "PTrade.create_partitions(start, end, db)" in message
    assert "default=True" in message
    assert caught.value.table == "pt_trades"
    assert caught.value.column == "ts"
    assert isinstance(caught.value.__cause__, CheckViolationError)
    assert placed(raw, "pt_trades") == {"pt_trades_p20240301": 2}
    PTrade.create_partitions(T0 + timedelta(days=3), T0 + timedelta(days=4), db)
    assert PTrade.update_where(EVERY, shift, db) == 2
    assert placed(raw, "pt_trades") == {"pt_trades_p20240304": 2}
    # Inside a transaction the error is the same and the transaction goes on.
    with db.transaction() as tx:
        with pytest.raises(CheckViolationError, match="create_partitions"):
            PTrade.update_where(EVERY, shift, tx)
        assert PTrade.count(tx) == 2
    # Another check failing is left as PostgreSQL said it.
    raw.execute("ALTER TABLE pt_trades ADD CONSTRAINT positive CHECK (price > 0)")
    with pytest.raises(CheckViolationError, match="positive") as other:
        PTrade.update_where(EVERY, {"price": col("price") - 5, "ts": col("ts")}, db)
    assert "create_partitions" not in str(other.value)
    with pytest.raises(CheckViolationError, match="positive"):
        PTrade.update_where(EVERY, {"price": -1.0, "ts": T0 + timedelta(days=20)}, db)
    assert len(PTrade.partitions(db)) == 2  # the failed update's partition went with it


@table("pm_buckets", primary_key=("id", "bucket"), partition_by=partition.list("bucket"))
class Bucket(Orso):
    """A row in one of a few numbered buckets, one partition per bucket, no default."""

    id: int
    bucket: int


def test_a_computed_list_value_with_no_partition_says_to_write_one_first(db: Database) -> None:
    """List partitions have no range to pre-create: the message says what makes one."""
    create_tables(db, Bucket)
    Bucket(id=1, bucket=1).insert(db)
    with pytest.raises(CheckViolationError) as caught:
        Bucket.update_where(EVERY_ID, {"bucket": col("bucket") + 1}, db)
    assert "write one row with each new value of bucket first" in str(caught.value)
    assert "partition.list(..., default=True)" in str(caught.value)
    Bucket(id=2, bucket=2).insert(db)
    assert Bucket.update_where(Filter.eq("id", 1), {"bucket": col("bucket") + 1}, db) == 1


def test_a_list_update_makes_the_value_partition(
    db: Database, raw: psycopg.Connection[Any]
) -> None:
    """update_where setting a list partition's column to a given value makes that partition."""
    create_tables(db, PQuote)
    PQuote(venue=Venue.NYSE, symbol="X", ts=T0, bid=1.0).insert(db)
    assert PQuote.update_where(EVERY, {"venue": Venue.LSE}, db) == 1
    assert placed(raw, "pt_quotes") == {"pt_quotes_plse": 1}


def test_a_new_partition_takes_over_its_rows_from_the_default_partition(
    db: Database, raw: psycopg.Connection[Any]
) -> None:
    """Rows that went to DEFAULT move into the partition made later for their range."""
    create_tables(db, Tick)
    raw.execute(
        "INSERT INTO pm_ticks (symbol, ts, price) SELECT 'S' || i, %s::timestamptz"
        " + make_interval(hours => i), i FROM generate_series(0, 49) AS i",
        (T0,),
    )
    assert placed(raw, "pm_ticks") == {"pm_ticks_default": 50}
    made = Tick.create_partitions(T0, T0 + timedelta(days=1), db)
    assert made == ["pm_ticks_p20240301"]
    assert placed(raw, "pm_ticks") == {"pm_ticks_default": 26, "pm_ticks_p20240301": 24}
    # A write needing the next day's partition moves that day's rows with it.
    Tick(symbol="new", ts=T0 + timedelta(days=1, minutes=30), price=0.0).insert(db)
    assert placed(raw, "pm_ticks") == {
        "pm_ticks_default": 2,
        "pm_ticks_p20240301": 24,
        "pm_ticks_p20240302": 25,
    }
    # A batch, inside a transaction that fails, leaves the rows where they were.
    with pytest.raises(RuntimeError), db.transaction() as tx:
        Tick.batch_insert(list(ticks(3))[8:], tx)
        raise RuntimeError
    assert placed(raw, "pm_ticks")["pm_ticks_default"] == 2
    assert Tick.count(db) == 51
    # The moved rows keep their indexes: the key still refuses a duplicate.
    assert Tick.find_by_id(("S1", T0 + timedelta(hours=1)), db) is not None
    assert Tick.update_where(Filter.eq("symbol", "S49"), {"price": 7.0}, db) == 1
    # An update computing ts into a range only DEFAULT holds still succeeds there.
    assert Tick.update_where(Filter.eq("symbol", "new"), {"ts": col("ts") + timedelta(9)}, db) == 1
    assert placed(raw, "pm_ticks")["pm_ticks_default"] == 3


def test_rows_of_a_referenced_table_stay_in_default_with_a_clear_error(
    db: Database, raw: psycopg.Connection[Any]
) -> None:
    """Foreign keys reference the table: its DEFAULT rows are not moved behind their back."""
    create_tables(db, Tick)
    raw.execute(
        "CREATE TABLE pm_fills (symbol text, ts timestamptz,"
        " FOREIGN KEY (symbol, ts) REFERENCES pm_ticks ON DELETE CASCADE)"
    )
    raw.execute("INSERT INTO pm_ticks VALUES ('A', %s, 1.0)", (T0,))
    raw.execute("INSERT INTO pm_fills VALUES ('A', %s)", (T0,))
    with pytest.raises(QueryError) as caught:
        Tick.create_partitions(T0, T0 + timedelta(days=1), db)
    message = str(caught.value)
    assert "pm_ticks_default" in message
    assert "pm_ticks_p20240301" in message
    assert "foreign keys reference pm_ticks" in message
    assert placed(raw, "pm_ticks") == {"pm_ticks_default": 1}
    assert raw.execute("SELECT count(*) FROM pm_fills").fetchone() == (1,)
    # A range the DEFAULT partition holds no row of is made as usual.
    Tick(symbol="B", ts=T0 + timedelta(days=2), price=2.0).insert(db)
    assert placed(raw, "pm_ticks") == {"pm_ticks_default": 1, "pm_ticks_p20240303": 1}


def test_a_list_partition_takes_over_its_value_from_the_default_partition(
    db: Database, raw: psycopg.Connection[Any]
) -> None:
    """A value's rows written while it had no partition move into the one made for it."""
    create_tables(db, PQuote)
    raw.execute(
        "INSERT INTO pt_quotes VALUES ('lse', 'X', %s, 1.0), ('nyse', 'X', %s, 2.0)", (T0, T0)
    )
    assert placed(raw, "pt_quotes") == {"pt_quotes_default": 2}
    PQuote(venue=Venue.LSE, symbol="Y", ts=T0, bid=3.0).insert(db)
    assert placed(raw, "pt_quotes") == {"pt_quotes_default": 1, "pt_quotes_plse": 2}


@settings(max_examples=15, deadline=None)
@given(
    hours=st.lists(st.integers(min_value=-48, max_value=24 * 6), min_size=1, max_size=40),
    first=st.integers(min_value=-3, max_value=6),
    days=st.integers(min_value=1, max_value=4),
)
def test_made_partitions_hold_exactly_their_rows(
    db: Database, raw: psycopg.Connection[Any], hours: list[int], first: int, days: int
) -> None:
    """Whatever DEFAULT holds, making [start, end) leaves every row in its own range's place."""
    create_tables(db, Tick)
    Tick.drop_partitions_before(T0 + timedelta(days=30), db)
    raw.execute("TRUNCATE pm_ticks")
    with raw.cursor() as cur:
        cur.executemany(
            "INSERT INTO pm_ticks VALUES (%s, %s, 0)",
            [(f"s{i}", T0 + timedelta(hours=h)) for i, h in enumerate(hours)],
        )
    start = T0 + timedelta(days=first)
    Tick.create_partitions(start, start + timedelta(days=days), db)
    rows = raw.execute(
        "SELECT c.relname, r.ts FROM pm_ticks r JOIN pg_class c ON c.oid = r.tableoid"
    ).fetchall()
    assert len(rows) == len(hours)
    for name, ts in rows:
        day = (ts - T0) // timedelta(days=1)
        inside = first <= day < first + days
        assert name == (f"pm_ticks_p{ts.astimezone(UTC):%Y%m%d}" if inside else "pm_ticks_default")
