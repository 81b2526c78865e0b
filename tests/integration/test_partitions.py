"""Partitioned tables on every test server: loads, partitions on demand, retention, pruning.

Each row must land in the partition its range or value names (checked through ``tableoid``),
the counts and sums must equal the input, and no write may ever meet PostgreSQL's "no partition
of relation found for row".
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg import sql

from orso_pg import (
    Database,
    Filter,
    MigrationAction,
    MigrationError,
    Migrations,
    Orso,
    PartitionInfo,
    QueryError,
    Sort,
    UpsertResult,
    ValidationError,
    col,
    column,
    migration,
    partition,
    table,
)
from tests.helpers import count_statements, create_tables
from tests.partition_models import PBar, PFill, PlainTrade, PQuote, PSeq, PTrade, Venue

T0 = datetime(2024, 3, 1, tzinfo=UTC)
DAYS = 30


def trades(count: int, *, symbol: str = "BTC", start: datetime = T0) -> Iterator[PTrade]:
    """Yield *count* trades spread evenly over :data:`DAYS` days from *start*."""
    step = timedelta(days=DAYS) / count
    for i in range(count):
        yield PTrade(symbol=symbol, ts=start + i * step, price=100.0 + i % 97, qty=1 + i % 5)


def misplaced(raw: psycopg.Connection[Any], table: str = "pt_trades") -> int:
    """Count the rows whose partition is not the day their ts names."""
    query = sql.SQL(
        "SELECT count(*) FROM {t} AS r JOIN pg_class c ON c.oid = r.tableoid"
        " WHERE c.relname <> {p} || to_char(r.ts AT TIME ZONE 'UTC', 'YYYYMMDD')"
    ).format(t=sql.Identifier(table), p=sql.Literal(f"{table}_p"))
    row = raw.execute(query).fetchone()
    assert row is not None
    return int(row[0])


def partition_names(raw: psycopg.Connection[Any], table: str) -> list[str]:
    rows = raw.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = %s::regclass ORDER BY 1",
        (table,),
    ).fetchall()
    return [r[0] for r in rows]


def test_a_partitioned_table_is_created_partitioned_and_matches_on_the_second_run(
    db: Database, raw: psycopg.Connection[Any]
) -> None:
    """The migration makes a RANGE-partitioned parent with its index; the next run matches."""
    first = Migrations.init(db, [migration(PTrade)])[0]
    assert first.action is MigrationAction.TABLE_CREATED
    assert 'PARTITION BY RANGE ("ts")' in first.steps[0].sql
    kind = raw.execute("SELECT relkind FROM pg_class WHERE oid = 'pt_trades'::regclass").fetchone()
    assert kind == ("p",)
    assert Migrations.init(db, [migration(PTrade)])[0].action is MigrationAction.SCHEMA_MATCHED
    assert PTrade.partitions(db) == []


def test_thirty_days_through_every_write_path_land_in_their_partitions(
    db: Database, raw: psycopg.Connection[Any]
) -> None:
    """batch_insert, batch_upsert and single inserts make the 30 daily partitions they need."""
    create_tables(db, PTrade)
    loaded = list(trades(3000))
    assert PTrade.batch_insert((t for t in loaded[:1000]), db, chunk_size=256) == 1000
    result = PTrade.batch_upsert(loaded[500:2000], db, chunk_size=300)
    assert result == UpsertResult(inserted=1000, updated=500, skipped=0)
    for t in loaded[2000:2050]:
        t.insert(db)
    assert PTrade.batch_insert(loaded[2050:], db) == 950
    parts = PTrade.partitions(db)
    assert [p.name for p in parts] == [
        f"pt_trades_p{(T0 + timedelta(days=d)):%Y%m%d}" for d in range(DAYS)
    ]
    assert all(p.upper - p.lower == timedelta(days=1) for p in parts)
    assert misplaced(raw) == 0
    row = raw.execute("SELECT count(*), sum(price), sum(qty) FROM pt_trades").fetchone()
    assert row == (3000, sum(t.price for t in loaded), sum(t.qty for t in loaded))


def test_upsert_counts_are_exact_on_a_partitioned_table(db: Database) -> None:
    """RETURNING xmax is refused on a partitioned table: the counts come another way."""
    create_tables(db, PTrade)
    first = list(trades(400))
    assert PTrade.batch_upsert(first, db) == UpsertResult(400, 0, 0)
    again = [PTrade(symbol=t.symbol, ts=t.ts, price=t.price + 1) for t in first[::2]]
    fresh = list(trades(100, symbol="ETH"))
    assert PTrade.batch_upsert(again + fresh, db, chunk_size=64) == UpsertResult(100, 200, 0)
    same_twice = [*fresh[:3], *fresh[:3]]
    assert PTrade.batch_upsert(same_twice, db) == UpsertResult(0, 3, 3)
    assigned = PTrade.batch_upsert(fresh[:10], db, update_columns={"qty": col("qty") + 1})
    assert assigned == UpsertResult(0, 10, 0)
    skipped = PTrade.batch_upsert(
        fresh[:10] + list(trades(5, symbol="X")), db, on_conflict="nothing"
    )
    assert skipped == UpsertResult(5, 0, 10)
    rows = PTrade.batch_upsert_rows([("SOL", T0, 1.0, 1), ("BTC", first[0].ts, 5.0, 1)], db)
    assert rows == UpsertResult(1, 1, 0)
    assert PTrade.count(db) == 400 + 100 + 5 + 1


def test_single_row_writes_make_their_partition(db: Database, raw: psycopg.Connection[Any]) -> None:
    """insert, upsert, insert_or_update and an update that moves a row to a new day."""
    create_tables(db, PTrade)
    trade = PTrade(symbol="BTC", ts=T0, price=1.0).insert(db)
    PTrade(symbol="BTC", ts=T0 + timedelta(days=1), price=2.0).upsert(db)
    PTrade(symbol="BTC", ts=T0 + timedelta(days=1), price=3.0).insert_or_update(db)
    trade.price = 4.0
    trade.update(db)
    assert len(PTrade.partitions(db)) == 2
    with db.transaction() as tx:
        PTrade(symbol="ETH", ts=T0 + timedelta(days=5), price=5.0).insert(tx)
        PTrade(symbol="ETH", ts=T0 + timedelta(days=5, hours=1), price=5.0).insert(tx)
    assert len(PTrade.partitions(db)) == 3
    moved = PTrade.batch_update([PTrade(symbol="BTC", ts=T0, price=9.0)], db)
    assert moved == 1
    assert misplaced(raw) == 0
    found = PTrade.find_by_id(("BTC", T0 + timedelta(days=1)), db)
    assert found is not None
    assert found.price == 3.0


@pytest.mark.parametrize("transaction", [False, True], ids=["autocommit", "transaction"])
def test_pipelined_writes_make_their_partition(
    db: Database, raw: psycopg.Connection[Any], transaction: bool
) -> None:
    """A pipeline cannot ask before it syncs: each row's partition is made before it is queued."""
    create_tables(db, PTrade)
    with db.pipeline(transaction=transaction) as p:
        inserted = [
            PTrade(symbol="BTC", ts=T0 + timedelta(days=d), price=float(d)).insert(p)
            for d in range(4)
        ]
        upserted = PTrade(symbol="BTC", ts=T0 + timedelta(days=9), price=9.0).upsert(p)
        found = PTrade.find_by_id(("BTC", T0 + timedelta(days=2)), p)
    assert [t.result().price for t in inserted] == [0.0, 1.0, 2.0, 3.0]
    assert upserted.result().price == 9.0
    row = found.result()
    assert row is not None
    assert row.price == 2.0
    assert len(PTrade.partitions(db)) == 5
    assert PTrade.count(db) == 5
    assert misplaced(raw) == 0


def test_plain_rows_make_their_partitions(db: Database, raw: psycopg.Connection[Any]) -> None:
    """batch_create_rows with tuples and with dicts."""
    create_tables(db, PTrade)
    tuples = [("BTC", T0 + timedelta(days=d), 1.0, 1) for d in range(3)]
    assert PTrade.batch_create_rows(tuples, db, columns=["symbol", "ts", "price", "qty"]) == 3
    dicts = [
        {"symbol": "ETH", "ts": T0 + timedelta(days=d), "price": 2.0, "qty": 1} for d in range(4)
    ]
    assert PTrade.batch_create_rows(dicts, db, columns=["symbol", "ts", "price", "qty"]) == 4
    assert len(PTrade.partitions(db)) == 4
    assert misplaced(raw) == 0


def test_a_failed_batch_leaves_no_partition_behind(db: Database) -> None:
    """The partitions a batch made go with its transaction when a row fails."""
    create_tables(db, PTrade)
    good = list(trades(60))
    bad = PTrade(symbol="BTC", ts=T0 + timedelta(days=40), price="oops")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        PTrade.batch_insert([*good, bad], db)
    assert PTrade.partitions(db) == []
    # Nothing stale is remembered: the same rows load afterwards.
    assert PTrade.batch_insert(good, db) == 60
    PTrade(symbol="ETH", ts=T0 + timedelta(days=40), price=1.0).insert(db)
    assert len(PTrade.partitions(db)) == DAYS + 1


def test_retention_drops_exactly_the_partitions_before_the_cutoff(
    db: Database, raw: psycopg.Connection[Any]
) -> None:
    """A partition holding the cutoff is kept; the rows from the cutoff on are all there."""
    create_tables(db, PTrade)
    loaded = list(trades(600))
    PTrade.batch_insert(loaded, db)
    cutoff = T0 + timedelta(days=10, hours=12)
    dropped = PTrade.drop_partitions_before(cutoff, db)
    assert dropped == [f"pt_trades_p{(T0 + timedelta(days=d)):%Y%m%d}" for d in range(10)]
    kept = [t for t in loaded if t.ts >= T0 + timedelta(days=10)]
    assert PTrade.count(db) == len(kept)
    assert all(p.lower >= T0 + timedelta(days=10) for p in PTrade.partitions(db))
    assert PTrade.drop_partitions_before(cutoff, db) == []
    # A row for a dropped day gets its partition again (nothing stale is remembered).
    PTrade(symbol="OLD", ts=T0, price=1.0).insert(db)
    assert f"pt_trades_p{T0:%Y%m%d}" in partition_names(raw, "pt_trades")
    with pytest.raises(ValidationError, match="aware datetime"):
        PTrade.drop_partitions_before(date(2024, 1, 1), db)


def test_create_partitions_ahead(db: Database) -> None:
    """create_partitions makes every day of [start, end) and returns only what it made."""
    create_tables(db, PTrade)
    made = PTrade.create_partitions(T0, T0 + timedelta(days=3), db)
    assert made == [f"pt_trades_p{(T0 + timedelta(days=d)):%Y%m%d}" for d in range(3)]
    more = PTrade.create_partitions(T0 + timedelta(days=2), T0 + timedelta(days=4, hours=1), db)
    assert more == [f"pt_trades_p{(T0 + timedelta(days=d)):%Y%m%d}" for d in (3, 4)]
    with pytest.raises(ValidationError, match="not before"):
        PTrade.create_partitions(T0, T0, db)
    with pytest.raises(QueryError, match="list"):
        PQuote.create_partitions(T0, T0 + timedelta(days=1), db)
    with pytest.raises(QueryError, match="not partitioned"):
        PlainTrade.partitions(db)


def test_a_filter_on_the_partition_column_prunes(
    db: Database, raw: psycopg.Connection[Any]
) -> None:
    """EXPLAIN of a one-day read names one partition; keyset pages and streams cross them."""
    create_tables(db, PTrade)
    PTrade.batch_insert(trades(900), db)
    day = T0 + timedelta(days=7)
    where = Filter.ge("ts", day) & Filter.lt("ts", day + timedelta(days=1))
    with count_statements(db) as log:
        rows = PTrade.find_where(where, db)
    assert rows
    assert all(day <= r.ts < day + timedelta(days=1) for r in rows)
    text, params = log.statements[-1]
    plan = raw.execute(f"EXPLAIN (FORMAT JSON) {text}", params).fetchone()
    assert plan is not None
    scanned = set(_relations(plan[0]))
    assert scanned == {f"pt_trades_p{day:%Y%m%d}"}
    pages: list[PTrade] = []
    cursor = None
    while True:
        page = PTrade.find_keyset(
            None, [Sort.asc("ts"), Sort.asc("symbol")], db, after=cursor, limit=250
        )
        pages.extend(page.data)
        if not page.has_next():
            break
        cursor = page.next_cursor
    assert [t.ts for t in pages] == sorted(t.ts for t in trades(900))
    streamed = list(PTrade.stream_where(None, db, sorts=[Sort.desc("ts")], batch_size=100))
    assert len(streamed) == 900
    assert streamed[0].ts > streamed[-1].ts


def _relations(plan: Any) -> Iterator[str]:
    if isinstance(plan, dict):
        if "Relation Name" in plan:
            yield plan["Relation Name"]
        for value in plan.values():
            yield from _relations(value)
    elif isinstance(plan, list):
        for item in plan:
            yield from _relations(item)


def test_list_partitions_with_a_default(db: Database, raw: psycopg.Connection[Any]) -> None:
    """One partition per venue, made on demand; the DEFAULT partition made by the migration."""
    create_tables(db, PQuote)
    assert [p.default for p in PQuote.partitions(db)] == [True]
    quotes = [
        PQuote(venue=v, symbol="X", ts=T0 + timedelta(minutes=i), bid=1.0)
        for i in range(10)
        for v in Venue
    ]
    assert PQuote.batch_insert(quotes, db) == 20
    parts = PQuote.partitions(db)
    assert [(p.name, p.values, p.default) for p in parts] == [
        ("pt_quotes_plse", ("lse",), False),
        ("pt_quotes_pnyse", ("nyse",), False),
        ("pt_quotes_default", (), True),
    ]
    placed = raw.execute(
        "SELECT count(*) FROM pt_quotes q JOIN pg_class c ON c.oid = q.tableoid"
        " WHERE c.relname <> 'pt_quotes_p' || q.venue"
    ).fetchone()
    assert placed == (0,)
    with pytest.raises(QueryError, match="list"):
        PQuote.drop_partitions_before(T0, db)


def test_monthly_date_and_integer_ranges(db: Database, raw: psycopg.Connection[Any]) -> None:
    """A date column by month and an int column by width-1000 ranges."""
    create_tables(db, PBar, PSeq)
    bars = [
        PBar(symbol="X", day=date(2024, 1, 1) + timedelta(days=d), close=1.0) for d in range(70)
    ]
    assert PBar.batch_insert(bars, db) == 70
    parts = PBar.partitions(db)
    assert [(p.name, p.lower, p.upper) for p in parts] == [
        ("pt_bars_p202401", date(2024, 1, 1), date(2024, 2, 1)),
        ("pt_bars_p202402", date(2024, 2, 1), date(2024, 3, 1)),
        ("pt_bars_p202403", date(2024, 3, 1), date(2024, 4, 1)),
    ]
    assert PBar.drop_partitions_before(date(2024, 2, 15), db) == ["pt_bars_p202401"]
    PSeq.batch_insert([PSeq(seq=n) for n in (-5, 0, 999, 1000, 25_000)], db)
    assert [(p.lower, p.upper) for p in PSeq.partitions(db)] == [
        (-1000, 0),
        (0, 1000),
        (1000, 2000),
        (25_000, 26_000),
    ]
    assert PSeq.drop_partitions_before(1000, db) == ["pt_seq_pm1000", "pt_seq_p0"]
    assert PSeq.count(db) == 2
    assert all(isinstance(p, PartitionInfo) for p in PSeq.partitions(db))


# --- migrations ---------------------------------------------------------------------------------


def _mig_v1() -> Any:
    @table("pt_mig", primary_key=("symbol", "ts"), partition_by=partition.range("ts", "1 day"))
    class Mig(Orso):
        symbol: str
        ts: datetime
        qty: int

    return Mig


def test_migrations_reach_every_partition(db: Database, raw: psycopg.Connection[Any]) -> None:
    """Add, rename, index and a type change with rows apply to the parent and its partitions."""
    v1 = _mig_v1()
    create_tables(db, v1)
    v1.batch_insert([v1(symbol="A", ts=T0 + timedelta(days=d), qty=d) for d in range(3)], db)

    @table(
        "pt_mig",
        primary_key=("symbol", "ts"),
        partition_by=partition.range("ts", "1 day"),
        indexes=[("price",)],
    )
    class V2(Orso):
        symbol: str
        ts: datetime
        amount: float = column(renamed_from="qty")
        price: float = 0.0

    result = Migrations.init(db, [migration(V2)], concurrent_indexes=True)[0]
    assert result.action is MigrationAction.DATA_MIGRATED
    assert result.rows_migrated == 3
    words = " | ".join(result.schema_changes)
    assert "rename column qty to amount" in words
    assert "add column price" in words
    assert "change type of column amount" in words
    assert "create btree index" in words
    assert all(s.transactional for s in result.steps)
    for name in partition_names(raw, "pt_mig"):
        columns = raw.execute(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
            " WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            (name,),
        ).fetchall()
        assert ("amount", "double precision") in columns
        assert ("price", "double precision") in columns
        indexed = raw.execute(
            "SELECT count(*) FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid"
            " AND a.attnum = i.indkey[0] WHERE i.indrelid = %s::regclass AND a.attname = 'price'",
            (name,),
        ).fetchone()
        assert indexed == (1,)
    assert sorted(r.amount for r in V2.find_all(db)) == [0.0, 1.0, 2.0]
    assert Migrations.init(db, [migration(V2)])[0].action is MigrationAction.SCHEMA_MATCHED
    V2(symbol="B", ts=T0 + timedelta(days=9), amount=1.5).insert(db)
    assert len(V2.partitions(db)) == 4


def test_migrations_refuse_to_change_partitioning_in_place(db: Database) -> None:
    """Plain to partitioned, partitioned to plain and another key are refused, saying why."""
    create_tables(db, PlainTrade)

    @table(
        "pt_plain_trades",
        primary_key=("symbol", "ts"),
        partition_by=partition.range("ts", "1 day"),
    )
    class Partitioned(Orso):
        symbol: str
        ts: datetime
        price: float
        qty: int = 0

    with pytest.raises(MigrationError, match="cannot partition a table in place") as caught:
        Migrations.init(db, [migration(Partitioned)])
    assert "Partitioned.copy_and_swap(db)" in str(caught.value)
    with pytest.raises(QueryError, match="not a partitioned table"):
        Partitioned(symbol="A", ts=T0, price=1.0).insert(db)
    v1 = _mig_v1()
    create_tables(db, v1)

    @table("pt_mig", primary_key=("symbol", "ts"))
    class Plain(Orso):
        symbol: str
        ts: datetime
        qty: int

    with pytest.raises(MigrationError, match="declares no partition_by"):
        Migrations.init(db, [migration(Plain)])

    @table("pt_mig", primary_key=("symbol", "ts"), partition_by=partition.list("symbol"))
    class ByList(Orso):
        symbol: str
        ts: datetime
        qty: int

    with pytest.raises(MigrationError, match="cannot change a partition key"):
        Migrations.plan(db, [migration(ByList)])


def test_a_default_partition_is_added_to_an_existing_table(db: Database, schema: str) -> None:
    """Turning default=True on adds the DEFAULT partition as a planned step."""
    v1 = _mig_v1()
    create_tables(db, v1)

    @table(
        "pt_mig",
        primary_key=("symbol", "ts"),
        partition_by=partition.range("ts", "1 day", default=True),
    )
    class WithDefault(Orso):
        symbol: str
        ts: datetime
        qty: int

    plan = Migrations.plan(db, [migration(WithDefault)])[0]
    where = f'"{schema}".'
    assert [s.sql for s in plan.steps] == [
        f'CREATE TABLE IF NOT EXISTS {where}"pt_mig_default" PARTITION OF {where}"pt_mig" DEFAULT'
    ]
    Migrations.init(db, [migration(WithDefault)])
    assert [p.default for p in WithDefault.partitions(db)] == [True]


def test_citus_distribution_is_skipped_or_required_without_citus(db: Database) -> None:
    """Without the citus extension the plan says the distribution is skipped, or fails."""

    @table("pt_dist", primary_key=("symbol", "ts"), distribute_by="symbol")
    class Dist(Orso):
        symbol: str
        ts: datetime

    plan = Migrations.plan(db, [migration(Dist)])[0]
    assert plan.notes == (
        (
            "distribution skipped: the server has no citus extension (wanted: distributed by "
            "symbol (create_distributed_table))"
        ),
    )
    created = Migrations.init(db, [migration(Dist)])[0]
    assert created.notes == plan.notes
    again = Migrations.init(db, [migration(Dist)])[0]
    assert again.action is MigrationAction.SCHEMA_MATCHED
    assert any("distribution skipped" in n for n in again.notes)

    @table("pt_ref", reference=True, require_distribution=True)
    class Ref(Orso):
        id: int
        name: str

    with pytest.raises(MigrationError, match="require_distribution=True"):
        Migrations.init(db, [migration(Ref)])


# --- two loaders at once ------------------------------------------------------------------------

LOADER = Path(__file__).with_name("partition_loader.py")


def test_two_processes_creating_the_same_partitions_at_once(
    db: Database, server: Any, schema: str, raw: psycopg.Connection[Any]
) -> None:
    """Two loaders start together on the same new days; both finish, every row is placed."""
    create_tables(db, PTrade)
    gate = 7_700_001
    raw.execute("SELECT pg_advisory_lock(%s)", (gate,))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    procs = [
        subprocess.Popen(  # noqa: S603 - this interpreter running our own loader
            [sys.executable, str(LOADER), server.dsn, schema, symbol, str(gate)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for symbol in ("AAA", "BBB")
    ]
    # Both wait on the gate (a shared lock behind our exclusive one), then go at once.
    waiting = 0
    for _ in range(200):
        row = raw.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            " AND objid = %s",
            (gate,),
        ).fetchone()
        waiting = int(row[0]) if row else 0
        if waiting == 2:
            break
        raw.execute("SELECT pg_sleep(0.05)")
    assert waiting == 2
    raw.execute("SELECT pg_advisory_unlock(%s)", (gate,))
    outputs = [p.communicate(timeout=120) for p in procs]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
        assert json.loads(out) == {"inserted": 1500, "single": 10}
    assert PTrade.count(db) == 2 * 1510
    assert len(PTrade.partitions(db)) == DAYS
    assert misplaced(raw) == 0


def test_a_partition_dropped_behind_a_connections_back_is_made_again(
    server: Any, schema: str, raw: psycopg.Connection[Any]
) -> None:
    """A connection remembers the partitions it saw; another session's drop does not fool it."""
    with Database(server.dsn, schema=schema, min_size=1, max_size=1) as one:
        create_tables(one, PTrade)
        PTrade(symbol="A", ts=T0, price=1.0).insert(one)
        raw.execute(f"DROP TABLE pt_trades_p{T0:%Y%m%d}")
        PTrade(symbol="B", ts=T0, price=1.0).insert(one)
        assert PTrade.count(one) == 1
        with one.transaction() as tx:
            PTrade(symbol="C", ts=T0, price=1.0).insert(tx)
        assert PTrade.count(one) == 2


def test_copy_and_swap_partitions_an_existing_plain_table(
    db: Database, raw: psycopg.Connection[Any]
) -> None:
    """The refused in-place change done by copying: rows, names and partitions as they should be."""

    @table("pt_swap", primary_key=("symbol", "ts"))
    class Before(Orso):
        symbol: str
        ts: datetime
        qty: int

    create_tables(db, Before)
    Before.batch_insert(
        [Before(symbol="A", ts=T0 + timedelta(hours=7 * i), qty=i) for i in range(40)], db
    )

    @table(
        "pt_swap",
        primary_key=("symbol", "ts"),
        partition_by=partition.range("ts", every="1 day", default=True),
    )
    class After(Orso):
        symbol: str
        ts: datetime
        qty: int

    assert After.copy_and_swap(db, chunk_size=7) == "pt_swap_old"
    assert After.count(db) == 40
    assert sum(r.qty for r in After.find_all(db)) == sum(range(40))
    names = partition_names(raw, "pt_swap")
    assert "pt_swap_default" in names
    assert f"pt_swap_p{T0:%Y%m%d}" in names
    assert misplaced(raw, "pt_swap") == 0
    assert Migrations.init(db, [migration(After)])[0].action is MigrationAction.SCHEMA_MATCHED
    After(symbol="B", ts=T0 + timedelta(days=30), qty=1).insert(db)
    After(symbol="B", ts=T0, qty=1).insert(db)  # an existing day: no second partition for it
    assert len(partition_names(raw, "pt_swap")) == len(names) + 1
    with pytest.raises(MigrationError, match="pt_swap_old exists already"):
        After.copy_and_swap(db)


def test_a_generated_id_in_the_key_of_an_hourly_table(
    db: Database, raw: psycopg.Connection[Any]
) -> None:
    """The issue's (id, ts) key: ids from the identity, one partition per hour."""
    create_tables(db, PFill)
    first = PFill(ts=T0, qty=1).insert(db)
    assert first.id is not None
    fills = [PFill(ts=T0 + timedelta(minutes=25 * i), qty=i) for i in range(10)]
    assert PFill.batch_insert(fills, db) == 10
    assert [p.name for p in PFill.partitions(db)][:2] == [
        "pt_fills_p2024030100",
        "pt_fills_p2024030101",
    ]
    assert len(PFill.partitions(db)) == 4
    ids = raw.execute("SELECT count(DISTINCT id) FROM pt_fills").fetchone()
    assert ids == (11,)
    assert Migrations.init(db, [migration(PFill)])[0].action is MigrationAction.SCHEMA_MATCHED


def test_copy_and_swap_in_a_transaction_keeps_the_identity_going(db: Database) -> None:
    """Inside the caller's transaction, with a generated id: new rows get fresh ids after."""

    @table("pt_swap_ids", primary_key=("id", "ts"))
    class Plain(Orso):
        id: int | None = column(default=None)
        ts: datetime

    @table(
        "pt_swap_ids",
        primary_key=("id", "ts"),
        partition_by=partition.range("ts", every="1 month"),
    )
    class Parted(Orso):
        id: int | None = column(default=None)
        ts: datetime

    with pytest.raises(MigrationError, match="no table to copy"):
        Parted.copy_and_swap(db)
    create_tables(db, Plain)
    Plain.batch_insert([Plain(ts=T0 + timedelta(days=20 * i)) for i in range(5)], db)
    with db.transaction() as tx:
        assert Parted.copy_and_swap(tx, chunk_size=2) == "pt_swap_ids_old"
    fresh = Parted(ts=T0).insert(db)
    assert fresh.id == 6
    assert len(Parted.partitions(db)) == 3  # March, April, May


@settings(max_examples=12, deadline=None)
@given(
    existing=st.sets(st.integers(0, 60), max_size=30),
    upserted=st.lists(st.integers(0, 60), max_size=40),
)
def test_upsert_counts_match_an_oracle(
    db: Database, existing: set[int], upserted: list[int]
) -> None:
    """inserted = new keys, updated = distinct keys already there, skipped = repeats."""
    create_tables(db, PTrade)
    PTrade.delete_where(Filter.is_not_null("symbol"), db)
    at = [T0 + timedelta(hours=11 * k) for k in range(61)]
    PTrade.batch_insert([PTrade(symbol="K", ts=at[k], price=1.0) for k in existing], db)
    result = PTrade.batch_upsert([PTrade(symbol="K", ts=at[k], price=2.0) for k in upserted], db)
    distinct = set(upserted)
    assert result == UpsertResult(
        inserted=len(distinct - existing),
        updated=len(distinct & existing),
        skipped=len(upserted) - len(distinct),
    )
    assert PTrade.count(db) == len(existing | distinct)


def test_batches_in_memory_and_streamed_make_exactly_the_partitions_they_need(
    db: Database, raw: psycopg.Connection[Any]
) -> None:
    """An in-memory batch (from ``start``), a generator in chunks and mixed plain rows."""
    create_tables(db, PTrade)
    loaded = list(trades(600))
    # Rows before start are skipped: the first 10 days make no partition.
    assert PTrade.batch_insert(loaded, db, start=200) == 400
    assert len(PTrade.partitions(db)) == DAYS - 10
    # A generator, chunk after chunk in one transaction: earlier days exist, later ones are made.
    assert PTrade.batch_insert((t for t in loaded[:200]), db, chunk_size=7) == 200
    assert len(PTrade.partitions(db)) == DAYS
    later = T0 + timedelta(days=DAYS)
    columns = ["symbol", "ts", "price", "qty"]
    # Tuples and lists take the fast path; a dict among them fails the batch, which makes
    # nothing.
    mixed: list[Any] = [("BTC", later, 1.0, 1), ["SOL", later + timedelta(days=1), 3.0, 1]]
    with pytest.raises(ValidationError):
        PTrade.batch_create_rows([*mixed, {"symbol": "ETH", "ts": later}], db, columns=columns)
    assert len(PTrade.partitions(db)) == DAYS
    mixed.append(("ETH", later, 2.0, 1))
    assert PTrade.batch_create_rows(mixed, db, columns=columns) == 3
    with pytest.raises(ValidationError):
        PTrade.batch_create_rows([("BTC", later + timedelta(days=5), 1.0, 1), ("BTC",)], db)
    assert len(PTrade.partitions(db)) == DAYS + 2
    assert misplaced(raw) == 0
    assert raw.execute("SELECT count(*) FROM pt_trades").fetchone() == (603,)
