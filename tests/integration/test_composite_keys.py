"""Composite primary keys through every operation, on every test server.

The models are natural-key market data: ticks keyed by ``(symbol, ts)``, daily bars by
``(venue, symbol, day)``, and instruments, listings and fills linked by composite foreign keys.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orso_pg import (
    Database,
    ForeignKey,
    ForeignKeyViolationError,
    MigrationAction,
    MigrationError,
    Migrations,
    NotFoundError,
    Orso,
    Pagination,
    QueryError,
    Sort,
    UpsertResult,
    ValidationError,
    column,
    migration,
    table,
)
from orso_pg.testing import strategies
from tests.composite_models import Daily, Fill, Instrument, Listing, Tick
from tests.helpers import count_statements, create_tables

MISSING: Any = None  # a None where the annotation says a value must be
T0 = datetime(2024, 3, 1, 9, 30, tzinfo=UTC)
D0 = date(2024, 3, 1)


def ts(i: int) -> datetime:
    return T0 + timedelta(seconds=i)


@pytest.fixture
def market(db: Database) -> Database:
    create_tables(db, Tick, Daily, Instrument, Listing, Fill)
    return db


def _ticks(db: Database, table_name: str | None = None) -> dict[object, float]:
    rows = Tick.find_all(db) if table_name is None else Tick.find_all_with_table(db, table_name)
    return {t.get_primary_key(): t.price for t in rows}


def _truncate(db: Database, name: str) -> None:
    with db.connection() as conn:
        conn.execute(f"TRUNCATE {name} CASCADE")


# --- single rows ------------------------------------------------------------------------------


def test_single_row_operations_take_and_return_tuples(market: Database):
    db = market
    tick = Tick(symbol="BTC", ts=T0, price=100.0).insert(db)
    # RETURNING filled the server's columns in
    assert tick.created_at is not None
    assert tick.updated_at is not None
    assert tick.get_primary_key() == ("BTC", T0)
    found = Tick.find_by_id(("BTC", T0), db)
    assert found == tick
    assert Tick.find_by_id(["BTC", T0], db) == tick  # a list is a key too
    assert Tick.find_by_id(("BTC", ts(1)), db) is None
    assert Tick.find_by_id(("ETH", T0), db) is None

    tick.price = 101.0
    tick.update(db)
    assert Tick.find_by_id(("BTC", T0), db).price == 101.0  # type: ignore[union-attr]
    with pytest.raises(NotFoundError, match=r"no row with symbol = 'BTC' AND ts = .* to update"):
        Tick(symbol="BTC", ts=ts(9), price=1.0).update(db)

    again = Tick(symbol="BTC", ts=T0, price=102.0, qty=5).upsert(db)
    assert again.created_at == tick.created_at  # the stored row came back
    assert _ticks(db) == {("BTC", T0): 102.0}
    Tick(symbol="BTC", ts=ts(1), price=7.0).insert_or_update(db)
    Tick(symbol="BTC", ts=ts(1), price=8.0).insert_or_update(db)
    assert _ticks(db) == {("BTC", T0): 102.0, ("BTC", ts(1)): 8.0}

    assert Tick(symbol="BTC", ts=ts(1), price=0.0).delete(db) is True
    assert Tick(symbol="BTC", ts=ts(1), price=0.0).delete(db) is False
    assert _ticks(db) == {("BTC", T0): 102.0}


def test_three_column_keys(market: Database):
    db = market
    bars = [
        Daily(venue=v, symbol=s, day=D0 + timedelta(days=d), close=float(d), volume=d)
        for v in ("X", "Y")
        for s in ("BTC", "ETH")
        for d in range(3)
    ]
    assert Daily.batch_create(bars, db) == 12
    assert Daily.find_by_id(("Y", "ETH", D0 + timedelta(days=2)), db) == bars[-1]
    picked = Daily.find_by_ids([("Y", "BTC", D0), ("X", "ETH", D0 + timedelta(days=1))], db)
    assert [b.get_primary_key() for b in picked] == [
        ("Y", "BTC", D0),
        ("X", "ETH", D0 + timedelta(days=1)),
    ]
    assert Daily.batch_delete([("X", "BTC", D0), ("X", "BTC", D0 + timedelta(days=9))], db) == 1
    assert Daily.count(db) == 11


def test_find_by_ids_keeps_the_order_asked_and_drops_missing_and_repeated(market: Database):
    db = market
    Tick.batch_create(
        [Tick(symbol=s, ts=ts(i), price=float(i)) for s in "AB" for i in range(4)], db
    )
    asked = [("B", ts(2)), ("A", ts(0)), ("Z", ts(0)), ("B", ts(2)), ("A", ts(3))]
    with count_statements(db) as log:
        found = Tick.find_by_ids(asked, db)
    assert len(log) == 1
    assert [t.get_primary_key() for t in found] == [("B", ts(2)), ("A", ts(0)), ("A", ts(3))]
    assert Tick.find_by_ids([], db) == []


def test_bad_keys_fail_before_any_sql(market: Database):
    """Wrong arity or a wrong type raises ValidationError naming the table and the key."""
    db = market
    with count_statements(db) as log:
        with pytest.raises(ValidationError, match=r"cp_ticks: the primary key is \(symbol, ts\)"):
            Tick.find_by_id("BTC", db)
        with pytest.raises(ValidationError, match=r"cp_ticks\.ts = 'noon'") as info:
            Tick.find_by_ids([("BTC", T0), ("BTC", "noon")], db)
        assert info.value.position == 1
        with pytest.raises(ValidationError, match=r"row 1 of the batch: .*a tuple of 2 values"):
            Tick.batch_delete([("BTC", T0), ("BTC",)], db)
        with pytest.raises(ValidationError, match=r"cp_ticks\.symbol: None in the primary key"):
            Tick.batch_delete_cascade([(None, T0)], db)
        with pytest.raises(ValidationError, match=r"without its primary key \(ts is None\)"):
            Tick(symbol="BTC", ts=MISSING, price=1.0).delete(db)
        with pytest.raises(ValidationError, match=r"cp_other: the primary key"):
            Tick.find_by_id_with_table(("BTC",), db, "cp_other")
    assert len(log) == 0


# --- batches ----------------------------------------------------------------------------------


def test_batches_take_and_return_tuples(market: Database):
    db = market
    keys = Tick.batch_create(
        [Tick(symbol="ETH", ts=ts(i), price=float(i)) for i in range(5)], db, returning="keys"
    )
    assert keys == [("ETH", ts(i)) for i in range(5)]
    updated = Tick.batch_update(
        [Tick(symbol="ETH", ts=ts(i), price=10.0 + i) for i in (0, 1, 1, 9)], db
    )
    assert updated == 2  # (ETH, ts(9)) has no row; the repeated key is written once, last wins
    assert _ticks(db)[("ETH", ts(1))] == 11.0
    result = Tick.batch_upsert(
        [Tick(symbol="ETH", ts=ts(i), price=100.0 + i) for i in (3, 4, 5, 5)], db
    )
    assert result == UpsertResult(inserted=1, updated=2, skipped=1)
    assert Tick.batch_delete([("ETH", ts(0)), ("ETH", ts(5))], db) == 2
    assert _ticks(db) == {
        ("ETH", ts(1)): 11.0,
        ("ETH", ts(2)): 2.0,
        ("ETH", ts(3)): 103.0,
        ("ETH", ts(4)): 104.0,
    }
    with pytest.raises(ValidationError, match=r"row 1 of the batch: cp_ticks\.ts is None"):
        Tick.batch_update(
            [Tick(symbol="ETH", ts=ts(1), price=1.0), Tick(symbol="ETH", ts=MISSING, price=1.0)], db
        )


def test_batch_upsert_takes_the_key_or_a_declared_one(market: Database):
    db = market
    Daily.batch_upsert(
        [Daily(venue="X", symbol="BTC", day=D0, close=1.0)], db, key=("venue", "symbol", "day")
    )
    with pytest.raises(QueryError, match="is not the primary key nor a declared unique key"):
        Daily.batch_upsert(
            [Daily(venue="X", symbol="BTC", day=D0, close=1.0)], db, key=("venue", "symbol")
        )
    assert Daily.batch_upsert(
        [Daily(venue="X", symbol="BTC", day=D0, close=2.0, volume=9)], db, update_columns=["close"]
    ) == UpsertResult(updated=1)
    bar = Daily.find_by_id(("X", "BTC", D0), db)
    assert (bar.close, bar.volume) == (2.0, 0)  # type: ignore[union-attr]


def test_generated_parts_need_no_returned_keys(db: Database):
    """A partitioned-style key (identity id, ts) inserts; returning='keys' is refused clearly."""

    @table("cp_events", primary_key=("id", "ts"))
    class Event(Orso):
        id: int | None = column(default=None)
        ts: datetime
        kind: str

    create_tables(db, Event)
    event = Event(ts=T0, kind="open").insert(db)
    assert event.get_primary_key() == (1, T0)
    assert Event.find_by_id((1, T0), db) == event
    assert Event.batch_create([Event(ts=ts(1), kind="x"), Event(ts=ts(2), kind="y")], db) == 2
    with pytest.raises(QueryError, match=r"returning='keys' needs every part .*id is generated"):
        Event.batch_create([Event(ts=ts(3), kind="z")], db, returning="keys")
    inserted = Event(ts=ts(4), kind="z").insert_or_update(db)  # no id yet: an insert
    assert inserted.id is not None
    inserted.kind = "w"
    inserted.insert_or_update(db)
    assert Event.find_by_id((inserted.id, ts(4)), db).kind == "w"  # type: ignore[union-attr]


# --- pages ------------------------------------------------------------------------------------


def test_keyset_pages_end_with_the_key(market: Database):
    """Rows with equal sort values are told apart by the whole key: no row twice, none lost."""
    db = market
    rows = [
        Daily(venue=v, symbol=s, day=D0 + timedelta(days=d), close=float(d % 2))
        for v in ("X", "Y")
        for s in ("A", "B", "C")
        for d in range(3)
    ]
    Daily.batch_create(rows, db)
    seen = []
    cursor = None
    while True:
        page = Daily.find_keyset(None, [Sort.desc("close")], db, after=cursor, limit=4)
        seen.extend(page.data)
        cursor = page.next_cursor
        if cursor is None:
            break
    want = sorted(rows, key=lambda b: (-b.close, b.venue, b.symbol, b.day))
    assert [b.get_primary_key() for b in seen] == [b.get_primary_key() for b in want]
    offset_pages = [
        b.get_primary_key()
        for p in range(1, 6)
        for b in Daily.list([Sort.desc("close")], _page(p), db).data
    ]
    assert offset_pages == [b.get_primary_key() for b in want]


def _page(n: int) -> Pagination:
    return Pagination(n, 4)


# --- foreign keys -----------------------------------------------------------------------------


def _listed(db: Database) -> None:
    for venue in ("X", "Y"):
        Instrument(venue=venue, symbol="BTC", name="bitcoin").insert(db)
        for d in range(2):
            Listing(venue=venue, symbol="BTC", day=D0 + timedelta(days=d)).insert(db)
            Fill(venue=venue, symbol="BTC", day=D0 + timedelta(days=d), qty=d + 1).insert(db)


def test_composite_foreign_keys_are_enforced_and_followed(market: Database):
    db = market
    _listed(db)
    with pytest.raises(ForeignKeyViolationError):
        Listing(venue="Z", symbol="BTC", day=D0).insert(db)
    with count_statements(db) as log:
        assert Instrument(venue="X", symbol="BTC").delete_cascade(db) is True
    assert log  # it ran; what matters is what is left
    assert {(f.venue, f.day) for f in Fill.find_all(db)} == {
        ("Y", D0),
        ("Y", D0 + timedelta(days=1)),
    }
    assert [i.get_primary_key() for i in Instrument.find_all(db)] == [("Y", "BTC")]
    assert Listing.batch_delete_cascade([("Y", "BTC", D0)], db) == 1
    assert [f.day for f in Fill.find_all(db)] == [D0 + timedelta(days=1)]
    assert Listing.count(db) == 1


def test_with_table_twins(market: Database):
    db = market
    create_tables(db, Tick)  # the model's own table exists; another table of the same shape:
    Migrations.init(db, [migration(Tick, "cp_ticks_2024")])
    other = "cp_ticks_2024"
    tick = Tick(symbol="BTC", ts=T0, price=1.0).insert_with_table(db, other)
    assert Tick.find_by_id(("BTC", T0), db) is None
    assert Tick.find_by_id_with_table(("BTC", T0), db, other) == tick
    tick.price = 2.0
    tick.update_with_table(db, other)
    Tick(symbol="BTC", ts=ts(1), price=3.0).upsert_with_table(db, other)
    Tick.batch_create_with_table([Tick(symbol="ETH", ts=T0, price=4.0)], db, other)
    Tick.batch_update_with_table([Tick(symbol="ETH", ts=T0, price=5.0)], db, other)
    Tick.batch_upsert_with_table([Tick(symbol="ETH", ts=ts(1), price=6.0)], db, other)
    assert [t.get_primary_key() for t in Tick.find_by_ids_with_table([("ETH", T0)], db, other)] == [
        ("ETH", T0)
    ]
    assert _ticks(db, other) == {
        ("BTC", T0): 2.0,
        ("BTC", ts(1)): 3.0,
        ("ETH", T0): 5.0,
        ("ETH", ts(1)): 6.0,
    }
    assert Tick.batch_delete_with_table([("ETH", T0)], db, other) == 1
    assert Tick.batch_delete_cascade_with_table([("ETH", ts(1))], db, other) == 1
    assert tick.delete_cascade_with_table(db, other) is True
    assert Tick(symbol="BTC", ts=ts(1), price=0.0).delete_with_table(db, other) is True
    assert _ticks(db, other) == {}
    assert Tick.count(db) == 0


# --- migrations -------------------------------------------------------------------------------


def test_migrations_create_and_match_composite_keys(db: Database):
    models = [Tick, Daily, Instrument, Listing, Fill]
    first = Migrations.init(db, [migration(m) for m in reversed(models)])  # parents first anyway
    assert {r.action for r in first} == {MigrationAction.TABLE_CREATED}
    second = Migrations.init(db, [migration(m) for m in models])
    assert [r.action for r in second] == [MigrationAction.SCHEMA_MATCHED] * len(models)


def test_changing_a_primary_key_is_refused(db: Database):
    create_tables(db, Tick)

    @table("cp_ticks", primary_key=("ts", "symbol"))
    class Reordered(Orso):
        symbol: str
        ts: datetime
        price: float
        qty: int = 0
        created_at: datetime | None = column(created_at=True, default=None)
        updated_at: datetime | None = column(updated_at=True, default=None)

    with pytest.raises(
        MigrationError,
        match=r"the primary key is \(symbol, ts\) and the model's is \(ts, symbol\); "
        "changing a primary key is not done automatically",
    ):
        Migrations.init(db, [migration(Reordered)])


def test_a_composite_foreign_key_is_added_then_matched_then_dropped(db: Database):
    create_tables(db, Instrument)

    @table("cp_quotes", primary_key=("venue", "symbol", "ts"))
    class Plain(Orso):
        venue: str
        symbol: str
        ts: datetime

    @table(
        "cp_quotes",
        primary_key=("venue", "symbol", "ts"),
        foreign_keys=[ForeignKey(("venue", "symbol"), Instrument, on_delete="CASCADE")],
    )
    class Linked(Orso):
        venue: str
        symbol: str
        ts: datetime

    create_tables(db, Plain)
    (added,) = Migrations.init(db, [migration(Linked)])
    assert added.action is MigrationAction.DATA_MIGRATED
    assert added.schema_changes == (
        "add foreign key (venue, symbol) -> cp_instruments (venue, symbol)",
    )
    (matched,) = Migrations.init(db, [migration(Linked)])
    assert matched.action is MigrationAction.SCHEMA_MATCHED
    Instrument(venue="X", symbol="BTC").insert(db)
    Linked(venue="X", symbol="BTC", ts=T0).insert(db)
    Instrument(venue="X", symbol="BTC").delete(db)  # ON DELETE CASCADE took the quote
    assert Linked.count(db) == 0
    (dropped,) = Migrations.init(db, [migration(Plain)])
    assert len(dropped.schema_changes) == 1
    assert dropped.schema_changes[0].startswith("drop foreign key ")


# --- property: every batch operation against a dict keyed by the tuple ------------------------

symbols = st.sampled_from(["BTC", "ETH", "SOL"])
seconds = st.integers(min_value=0, max_value=5)
prices = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False).map(lambda p: round(p, 3))
ops_ = st.lists(
    st.tuples(
        st.sampled_from(["create", "upsert", "update", "delete", "find"]),
        st.lists(st.tuples(symbols, seconds, prices), max_size=8),
    ),
    max_size=6,
)


@settings(max_examples=30, deadline=None)
@given(steps=ops_, chunk=st.sampled_from([1, 3, 1000]))
def test_batches_match_a_dict_keyed_by_the_tuple(
    market: Database, steps: list[tuple[str, list[tuple[str, int, float]]]], chunk: int
):
    db = market
    _truncate(db, "cp_ticks")
    oracle: dict[object, float] = {}
    for op, rows in steps:
        ticks = [Tick(symbol=s, ts=ts(i), price=p) for s, i, p in rows]
        keys = [t.get_primary_key() for t in ticks]
        if op == "create":
            fresh = list(
                {k: t for k, t in zip(keys, ticks, strict=True) if k not in oracle}.values()
            )
            assert Tick.batch_create(fresh, db, chunk_size=chunk) == len(fresh)
            oracle.update({t.get_primary_key(): t.price for t in fresh})
        elif op == "upsert":
            result = Tick.batch_upsert(ticks, db, chunk_size=chunk)
            assert result.rows == len(ticks)
            oracle.update({t.get_primary_key(): t.price for t in ticks})
        elif op == "update":
            Tick.batch_update(ticks, db, chunk_size=chunk)
            for t in ticks:
                if t.get_primary_key() in oracle:
                    oracle[t.get_primary_key()] = t.price
        elif op == "delete":
            gone = Tick.batch_delete(keys, db)
            assert gone == len({k for k in keys if k in oracle})
            for k in keys:
                oracle.pop(k, None)
        else:
            found = Tick.find_by_ids(keys, db)
            want = [k for k in dict.fromkeys(keys) if k in oracle]
            assert [t.get_primary_key() for t in found] == want
            assert all(oracle[t.get_primary_key()] == t.price for t in found)
        assert _ticks(db) == oracle


@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_the_testing_kit_makes_batches_with_distinct_keys(market: Database, data: st.DataObject):
    """strategies.batches never repeats a composite key, so its batches always load."""
    bars = data.draw(strategies.batches(Daily, max_size=20))
    keys = [b.get_primary_key() for b in bars]
    assert len(set(keys)) == len(keys)
    _truncate(market, "cp_daily")
    assert Daily.batch_create(bars, market) == len(bars)
    assert {b.get_primary_key() for b in Daily.find_all(market)} == set(keys)


def test_keys_of_declared_sql_types_match_without_truncation(db: Database):
    """A varchar(3) key part is compared as it is stored: no cast truncates 'BTCX' to 'BTC'."""

    @table("cp_codes", primary_key=("code", "day"))
    class Code(Orso):
        code: str = column(sql_type="varchar(3)")
        day: date
        note: str = ""

    create_tables(db, Code)
    Code.batch_create([Code(code="BTC", day=D0), Code(code="ETH", day=D0)], db)
    assert [c.code for c in Code.find_by_ids([("BTCX", D0), ("ETH", D0)], db)] == ["ETH"]
    assert Code.batch_delete([("BTCX", D0)], db) == 0
    assert Code.batch_delete([("BTC", D0)], db) == 1
    assert Code.find_by_id(("ETH", D0), db) is not None


def test_plain_rows_upsert_on_the_composite_key(market: Database):
    db = market
    Daily(venue="X", symbol="BTC", day=D0, close=1.0).insert(db)
    result = Daily.batch_upsert_rows(
        [("X", "BTC", D0, 2.0, 5), ("X", "ETH", D0, 3.0, 1), ("X", "ETH", D0, 4.0, 1)],
        db,
    )
    assert result == UpsertResult(inserted=1, updated=1, skipped=1)
    assert {b.get_primary_key(): b.close for b in Daily.find_all(db)} == {
        ("X", "BTC", D0): 2.0,
        ("X", "ETH", D0): 4.0,
    }


def test_keys_are_matched_as_the_column_stores_them(db: Database):
    """A char(5) part pads on the way in; the asked key still finds its row, once, in order."""

    @table("cp_padded", primary_key=("code", "tags"))
    class Padded(Orso):
        code: str = column(sql_type="char(5)")
        tags: dict[str, int]
        note: str = ""

    create_tables(db, Padded)
    Padded.batch_create([Padded(code="BTC", tags={"a": 1}), Padded(code="ETH", tags={"b": 2})], db)
    found = Padded.find_by_ids(
        [("ETH", {"b": 2}), ("BTC", {"a": 1}), ("ETH", {"b": 2}), ("BTC", {"a": 2})], db
    )
    assert [(p.code.strip(), p.tags) for p in found] == [("ETH", {"b": 2}), ("BTC", {"a": 1})]


def test_a_composite_key_is_added_to_a_table_without_one(db: Database):
    @table("cp_prints")
    class Keyless(Orso):
        symbol: str
        ts: datetime

    @table("cp_prints", primary_key=("symbol", "ts"))
    class Keyed(Orso):
        symbol: str
        ts: datetime

    create_tables(db, Keyless)
    Keyless(symbol="BTC", ts=T0).insert(db)
    (added,) = Migrations.init(db, [migration(Keyed)])
    assert added.schema_changes == ("add primary key (symbol, ts)",)
    (matched,) = Migrations.init(db, [migration(Keyed)])
    assert matched.action is MigrationAction.SCHEMA_MATCHED
    assert Keyed.find_by_id(("BTC", T0), db) is not None
