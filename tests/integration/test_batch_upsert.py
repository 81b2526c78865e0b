"""batch_upsert against a real PostgreSQL, checked against a Python model of the table."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orso_pg import (
    Database,
    Orso,
    QueryError,
    UniqueViolationError,
    UpsertResult,
    ValidationError,
    column,
    table,
)
from tests.helpers import count_statements, create_tables

Key = tuple[str, int]


@table("bu_quotes", unique=[("venue", "seq")])
class Quote(Orso):
    id: int | None = column(primary_key=True, default=None)
    venue: str
    seq: int
    price: float
    size: int = 0
    created_at: dt.datetime | None = column(created_at=True, default=None)
    updated_at: dt.datetime | None = column(updated_at=True, default=None)


@table("bu_listings", unique=[("venue", "code")])
class Listing(Orso):
    id: int | None = column(primary_key=True, default=None)
    isin: str = column(unique=True)
    venue: str
    code: str
    name: str = ""


@table("bu_instruments")
class Instrument(Orso):
    symbol: str = column(primary_key=True)
    name: str = ""
    lot: int = 1


def _clear(db: Database, name: str) -> None:
    with db.connection() as conn:
        conn.execute(f"TRUNCATE {name}")
        conn.execute(f"ALTER TABLE {name} ALTER COLUMN id RESTART")


def _table(db: Database) -> dict[Key, tuple[float, int]]:
    return {(q.venue, q.seq): (q.price, q.size) for q in Quote.find_all(db)}


def _expected(
    existing: dict[Key, tuple[float, int]],
    batch: list[tuple[str, int, float, int]],
    chunk: int,
    *,
    do_nothing: bool,
) -> tuple[dict[Key, tuple[float, int]], UpsertResult]:
    """Replay the batch chunk by chunk on a dict: the table and counts PostgreSQL must reach."""
    table_now = dict(existing)
    inserted = updated = 0
    for start in range(0, len(batch), chunk):
        part = batch[start : start + chunk]
        if do_nothing:
            for venue, seq, price, size in part:
                if (venue, seq) not in table_now:
                    table_now[venue, seq] = (price, size)
                    inserted += 1
            continue
        last = {(venue, seq): (price, size) for venue, seq, price, size in part}
        for key, value in last.items():
            if key in table_now:
                updated += 1
            else:
                inserted += 1
            table_now[key] = value
    return table_now, UpsertResult(inserted, updated, len(batch) - inserted - updated)


venues = st.sampled_from(["XNAS", "XLON"])
seqs = st.integers(min_value=0, max_value=5)
prices = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
sizes = st.integers(min_value=0, max_value=10**6)


@pytest.fixture
def quotes(db: Database) -> Database:
    create_tables(db, Quote)
    return db


@settings(max_examples=40, deadline=None)
@given(
    existing=st.dictionaries(st.tuples(venues, seqs), st.tuples(prices, sizes), max_size=8),
    batch=st.lists(st.tuples(venues, seqs, prices, sizes), max_size=30),
    chunk=st.sampled_from([1, 4, 100]),
    do_nothing=st.booleans(),
    shape=st.sampled_from(["instances", "tuples", "dicts"]),
)
def test_upsert_matches_a_python_model(
    quotes: Database,
    existing: dict[Key, tuple[float, int]],
    batch: list[tuple[str, int, float, int]],
    chunk: int,
    do_nothing: bool,
    shape: str,
):
    """Duplicates, existing rows and a composite key give the table and counts of the model,
    whether the batch comes as instances (batch_upsert) or plain rows (batch_upsert_rows)."""
    db = quotes
    _clear(db, "bu_quotes")
    Quote.batch_create(
        [Quote(venue=v, seq=s, price=p, size=z) for (v, s), (p, z) in existing.items()], db
    )
    ids_before = {(q.venue, q.seq): (q.id, q.created_at) for q in Quote.find_all(db)}
    mode: Literal["update", "nothing"] = "nothing" if do_nothing else "update"
    if shape == "instances":
        rows = [Quote(venue=v, seq=s, price=p, size=z) for v, s, p, z in batch]
        result = Quote.batch_upsert(rows, db, chunk_size=chunk, on_conflict=mode)
    else:
        names = ("venue", "seq", "price", "size")
        plain: list[Any] = list(batch)
        if shape == "dicts":
            plain = [dict(zip(names, r, strict=True)) for r in batch]
        result = Quote.batch_upsert_rows(plain, db, chunk_size=chunk, on_conflict=mode)
    want_table, want_result = _expected(existing, batch, chunk, do_nothing=do_nothing)
    assert _table(db) == want_table
    assert result == want_result
    assert result.rows == len(batch)
    after = {(q.venue, q.seq): (q.id, q.created_at) for q in Quote.find_all(db)}
    assert all(after[key] == kept for key, kept in ids_before.items())


def test_duplicates_across_and_within_chunks_last_wins(db: Database):
    """The same key in one chunk and in a later one: the last row's values are stored."""
    create_tables(db, Quote)
    rows = [Quote(venue="X", seq=1, price=float(i), size=i) for i in range(7)]
    result = Quote.batch_upsert(rows, db, chunk_size=3)
    assert result == UpsertResult(inserted=1, updated=2, skipped=4)
    (stored,) = Quote.find_all(db)
    assert (stored.price, stored.size) == (6.0, 6)


def test_update_keeps_key_and_created_at_and_bumps_updated_at(db: Database):
    """An upsert that updates keeps the row's id and created_at and sets updated_at."""
    create_tables(db, Quote)
    Quote.batch_create([Quote(venue="X", seq=i, price=1.0) for i in range(3)], db)
    before = {q.seq: q for q in Quote.find_all(db)}
    Quote.batch_upsert([Quote(venue="X", seq=i, price=2.0) for i in range(3)], db)
    for q in Quote.find_all(db):
        assert q.id == before[q.seq].id
        assert q.created_at == before[q.seq].created_at
        assert q.updated_at > before[q.seq].updated_at  # type: ignore[operator]
        assert q.price == 2.0


def test_update_columns_limits_what_existing_rows_get(db: Database):
    """update_columns overwrites only those columns; new rows get every value."""
    create_tables(db, Quote)
    Quote.batch_create([Quote(venue="X", seq=1, price=1.0, size=10)], db)
    result = Quote.batch_upsert_with_table(
        [Quote(venue="X", seq=1, price=2.0, size=20), Quote(venue="X", seq=2, price=3.0, size=30)],
        db,
        "bu_quotes",
        update_columns=["price"],
    )
    assert result == UpsertResult(inserted=1, updated=1)
    assert _table(db) == {("X", 1): (2.0, 10), ("X", 2): (3.0, 30)}


def test_upsert_on_a_natural_primary_key(db: Database):
    """A model whose only key is its natural primary key upserts on it by default."""
    create_tables(db, Instrument)
    Instrument.batch_create([Instrument(symbol="A", name="a", lot=1)], db)
    result = Instrument.batch_upsert(
        [Instrument(symbol="A", name="aa", lot=5), Instrument(symbol="B", name="b")],
        db,
        key=["symbol"],
    )
    assert result == UpsertResult(inserted=1, updated=1)
    assert [(i.symbol, i.name, i.lot) for i in Instrument.find_all(db)] == [
        ("A", "aa", 5),
        ("B", "b", 1),
    ]


def test_an_ambiguous_or_undeclared_key_fails_before_any_statement(db: Database):
    """Two unique keys need a choice, and the choice must be a declared key."""
    create_tables(db, Listing)
    rows = [Listing(isin="US1", venue="X", code="A")]
    with count_statements(db) as log:
        with pytest.raises(
            QueryError,
            match=r"several keys an upsert could conflict on.*key=\[\.\.\.\].*upsert_key=",
        ):
            Listing.batch_upsert(rows, db)
        with pytest.raises(QueryError, match="not the primary key nor a declared unique key"):
            Listing.batch_upsert(rows, db, key=["code"])
        with pytest.raises(QueryError, match="no column 'nope'"):
            Listing.batch_upsert(rows, db, key=["nope"])
        with pytest.raises(QueryError, match="sequence of column names"):
            Listing.batch_upsert(rows, db, key="isin")
        with pytest.raises(ValidationError, match="on_conflict"):
            Listing.batch_upsert(rows, db, key=["isin"], on_conflict="ignore")  # type: ignore[arg-type]
    assert len(log) == 0
    assert Listing.batch_upsert(rows, db, key=["isin"]) == UpsertResult(inserted=1)
    assert Listing.batch_upsert(rows, db, key=("venue", "code")) == UpsertResult(updated=1)


def test_a_clash_on_another_unique_key_names_the_row(db: Database):
    """A row that violates a unique key other than the conflict key fails with its position."""
    create_tables(db, Listing)
    Listing.batch_create([Listing(isin="US0", venue="X", code="A")], db)
    rows = [Listing(isin=f"US{i}", venue="Y", code=str(i)) for i in range(1, 40)]
    rows[22].isin = "US0"
    with pytest.raises(UniqueViolationError) as info:
        Listing.batch_upsert(rows, db, key=["venue", "code"], chunk_size=15)
    assert info.value.position == 22
    assert info.value.value == "US0"
    assert Listing.count(db) == 1


def test_a_bad_value_fails_the_whole_upsert(db: Database):
    """A value the column refuses fails the upsert with its position; nothing changes."""
    create_tables(db, Quote)
    Quote.batch_create([Quote(venue="X", seq=0, price=1.0)], db)
    rows = [Quote(venue="X", seq=i, price=5.0) for i in range(30)]
    object.__setattr__(rows[25], "size", "many")
    with pytest.raises(ValidationError) as info:
        Quote.batch_upsert(rows, db, chunk_size=10)
    assert info.value.position == 25
    assert info.value.column == "size"
    assert _table(db) == {("X", 0): (1.0, 0)}


def test_upsert_runs_a_few_statements_per_chunk(db: Database):
    """Per chunk: one COPY into the stage and one INSERT ... ON CONFLICT (plus a TRUNCATE)."""
    create_tables(db, Quote)
    rows = [Quote(venue="X", seq=i, price=1.0) for i in range(25)]
    with count_statements(db) as log:
        Quote.batch_upsert(rows, db, chunk_size=10)
    kinds = [text.split()[0] for text in log.texts()]
    assert kinds == ["CREATE", "COPY", "WITH"] + ["TRUNCATE", "COPY", "WITH"] * 2 + ["DROP"]


def test_two_upserts_in_one_transaction(db: Database):
    """The staging table is dropped after each batch, so a transaction can run several."""
    create_tables(db, Quote)
    with db.transaction() as tx:
        first = Quote.batch_upsert([Quote(venue="X", seq=1, price=1.0)], tx)
        second = Quote.batch_upsert([Quote(venue="X", seq=1, price=2.0)], tx)
    assert (first, second) == (UpsertResult(inserted=1), UpsertResult(updated=1))
    assert _table(db) == {("X", 1): (2.0, 0)}


@table("bu_baskets")
class Basket(Orso):
    id: int | None = column(primary_key=True, default=None)
    legs: list[int] = column(unique=True)
    weight: float = 0.0


@pytest.mark.parametrize("shape", ["instances", "tuples"])
def test_a_key_on_an_array_column_keeps_the_last_row(db: Database, shape: str):
    """An array key repeated in a batch is compared by value: the last row wins, no TypeError."""
    create_tables(db, Basket)
    Basket.batch_create([Basket(legs=[1, 2], weight=1.0)], db)
    batch = [([1, 2], 2.0), ([3], 3.0), ([1, 2], 4.0), ([2, 1], 5.0)]
    if shape == "instances":
        models = [Basket(legs=legs, weight=w) for legs, w in batch]
        result = Basket.batch_upsert(models, db, key=["legs"])
    else:
        result = Basket.batch_upsert_rows(batch, db, key=["legs"])
    assert result == UpsertResult(inserted=2, updated=1, skipped=1)
    stored = {tuple(b.legs): b.weight for b in Basket.find_all(db)}
    assert stored == {(1, 2): 4.0, (3,): 3.0, (2, 1): 5.0}


@table("bu_specs")
class Spec(Orso):
    id: int | None = column(primary_key=True, default=None)
    spec: dict[str, Any] = column(unique=True)
    rank: int = 0


def test_a_key_on_a_jsonb_column_compares_as_postgresql_does(db: Database):
    """JSON objects are equal whatever their key order; JSON's true is not 1."""
    create_tables(db, Spec)
    rows = [({"a": True, "b": [1]}, 1), ({"a": 1, "b": [1]}, 2), ({"b": [1], "a": True}, 3)]
    result = Spec.batch_upsert_rows(rows, db, key=["spec"])
    assert result == UpsertResult(inserted=2, updated=0, skipped=1)
    stored = sorted((s.rank, s.spec) for s in Spec.find_all(db))
    assert stored == [(2, {"a": 1, "b": [1]}), (3, {"a": True, "b": [1]})]


@table("bu_blobs")
class Blob(Orso):
    id: int | None = column(primary_key=True, default=None)
    digest: bytes = column(unique=True)
    seen: int = 0


def test_a_bytea_key_given_as_bytearray_keeps_the_last_row(db: Database):
    """A bytea key held in bytearrays is compared by its bytes, as PostgreSQL compares it."""
    create_tables(db, Blob)
    rows = [(bytearray(b"ab"), 1), (bytearray(b"cd"), 2), (bytearray(b"ab"), 3)]
    result = Blob.batch_upsert_rows(rows, db, key=["digest"])
    assert result == UpsertResult(inserted=2, updated=0, skipped=1)
    assert sorted((b.digest, b.seen) for b in Blob.find_all(db)) == [(b"ab", 3), (b"cd", 2)]
