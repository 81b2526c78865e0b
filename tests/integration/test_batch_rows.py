"""batch_create_rows and batch_upsert_rows: plain tuples and dicts through COPY, checked like
instances."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from orso_pg import (
    Database,
    Filter,
    Orso,
    QueryError,
    UniqueViolationError,
    UpsertResult,
    ValidationError,
    column,
    table,
)
from tests.helpers import count_statements, create_tables

T0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


@table("fills", unique=[("venue", "fill_no")])
class Fill(Orso):
    id: int | None = column(primary_key=True, default=None)
    venue: str
    fill_no: int
    ts: dt.datetime
    price: float
    tags: list[str]
    meta: dict[str, Any] | None = None
    created_at: dt.datetime | None = column(created_at=True, default=None)


def _row(i: int) -> tuple[Any, ...]:
    return ("X", i, T0 + dt.timedelta(seconds=i), 100.0 + i, [f"t{i}"], {"i": i} if i % 2 else None)


@pytest.fixture
def fills(db: Database) -> Database:
    create_tables(db, Fill)
    return db


def test_tuples_and_dicts_round_trip(fills: Database):
    """Tuples in column order and dicts by name load, with server-filled columns filled."""
    assert Fill.batch_create_rows([_row(i) for i in range(5)], fills) == 5
    names = ["venue", "fill_no", "ts", "price", "tags", "meta"]
    dicts = [dict(zip(names, _row(i), strict=True)) for i in range(5, 8)]
    assert Fill.batch_create_rows(dicts, fills) == 3
    stored = sorted(Fill.find_all(fills), key=lambda f: f.fill_no)
    assert [f.fill_no for f in stored] == list(range(8))
    for f in stored:
        assert (f.venue, f.fill_no, f.ts, f.price, f.tags, f.meta) == _row(f.fill_no)
        assert f.id is not None
        assert f.created_at is not None


def test_a_generator_streams_in_chunks(fills: Database):
    """A generator of rows loads in chunks, one COPY each, in one transaction."""
    rows = (_row(i) for i in range(2_500))
    with count_statements(fills) as log:
        assert Fill.batch_create_rows(rows, fills, chunk_size=1_000, progress=False) == 2_500
    assert sum(text.startswith("COPY") for text in log.texts()) == 3
    assert Fill.count(fills) == 2_500


def test_columns_choose_what_the_rows_hold(fills: Database):
    """columns= names the values each row holds; the others take their defaults."""
    rows = [(7, "Y", T0, 1.0, []), (8, "Y", T0, 2.0, ["a"])]
    columns = ["fill_no", "venue", "ts", "price", "tags"]
    assert Fill.batch_create_rows(rows, fills, columns=columns) == 2
    stored = Fill.find_by_field("venue", "Y", fills)
    assert sorted((f.fill_no, f.meta) for f in stored) == [(7, None), (8, None)]
    with pytest.raises(QueryError, match="has no column 'nope'"):
        Fill.batch_create_rows(rows, fills, columns=["nope"])
    with pytest.raises(QueryError, match="twice"):
        Fill.batch_create_rows(rows, fills, columns=["venue", "venue"])
    with pytest.raises(QueryError, match="not the str"):
        Fill.batch_create_rows(rows, fills, columns="venue")


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (("X", 1, T0, "cheap", [], None), r"fills\.price = 'cheap'"),
        (("X", 1, T0.replace(tzinfo=None), 1.0, [], None), "naive datetime"),
        (("X\x00", 1, T0, 1.0, [], None), "NUL"),
        (("X", 2**63, T0, 1.0, [], None), "BIGINT"),
        (("X", 1, T0, 1.0, [None], None), r"fills\.tags"),
        (("X", 1, T0, 1.0, [], {"x": float("nan")}), "NaN"),
        (("X", 1, T0, 1.0), "expected 6 values"),
        (42, "expected a tuple, list or mapping"),
        ({"venue": "X"}, "a batch of tuples or lists; give every row the same way"),
    ],
)
def test_a_bad_row_fails_the_batch_naming_it(fills: Database, bad: Any, match: str):
    """A bad row anywhere fails the whole batch with its position and column; nothing is kept."""
    rows = [_row(i) for i in range(10, 60)]
    rows.insert(37, bad)
    with pytest.raises(ValidationError, match=match) as info:
        Fill.batch_create_rows(rows, fills)
    assert info.value.position == 37
    assert Fill.count(fills) == 0


def test_a_duplicate_key_is_located(fills: Database):
    """A row PostgreSQL refuses is named by its position, and the batch writes nothing."""
    rows = [_row(i) for i in range(20)]
    rows.append(_row(4))
    with pytest.raises(UniqueViolationError) as info:
        Fill.batch_create_rows(rows, fills)
    assert info.value.position == 20
    assert Fill.count(fills) == 0


def test_rows_into_another_table(fills: Database):
    """The _with_table twin loads the named table."""
    from orso_pg import Migrations, migration

    Migrations.init(fills, [migration(Fill, "fills_archive")])
    assert Fill.batch_create_rows_with_table([_row(1)], fills, "fills_archive") == 1
    assert (Fill.count(fills), Fill.count_with_table(fills, "fills_archive")) == (0, 1)


# --- batch_upsert_rows ------------------------------------------------------------------------

NAMES = ["venue", "fill_no", "ts", "price", "tags", "meta"]


def _moved(i: int) -> tuple[Any, ...]:
    """Row *i* with a new price and tags: what an upsert writes over it."""
    venue, fill_no, ts, price, _, meta = _row(i)
    return (venue, fill_no, ts, price + 0.5, ["moved"], meta)


def _stored(db: Database) -> dict[int, Fill]:
    return {f.fill_no: f for f in Fill.find_all(db)}


@pytest.mark.parametrize("shape", ["tuples", "dicts"])
def test_upsert_rows_inserts_new_keys_and_updates_existing_ones(fills: Database, shape: str):
    """Rows with a known key overwrite it (id and created_at kept); the others are inserted."""
    Fill.batch_create_rows([_row(i) for i in range(5)], fills)
    before = _stored(fills)
    rows: list[Any] = [_moved(i) for i in range(3, 8)]
    if shape == "dicts":
        rows = [dict(zip(NAMES, r, strict=True)) for r in rows]
    with count_statements(fills) as log:
        result = Fill.batch_upsert_rows(rows, fills)
    assert result == UpsertResult(inserted=3, updated=2, skipped=0)
    assert sum(text.startswith("COPY") for text in log.texts()) == 1
    after = _stored(fills)
    assert sorted(after) == list(range(8))
    for i, f in after.items():
        expected = _moved(i) if i >= 3 else _row(i)
        assert (f.venue, f.fill_no, f.ts, f.price, f.tags, f.meta) == expected
        if i in before:
            assert (f.id, f.created_at) == (before[i].id, before[i].created_at)


def test_upsert_rows_matches_batch_upsert_of_the_same_instances(fills: Database):
    """The same data upserted as rows or as instances leaves the same table and counts."""
    Fill.batch_create_rows([_row(i) for i in range(0, 40, 2)], fills)
    rows = [_moved(i) for i in range(0, 40, 3)] + [_moved(9)]  # one key twice: the last wins
    as_rows = Fill.batch_upsert_rows(rows, fills, chunk_size=5)
    by_rows = {i: (f.price, f.tags) for i, f in _stored(fills).items()}
    Fill.delete_where(Filter.is_not_null("id"), fills)
    Fill.batch_create_rows([_row(i) for i in range(0, 40, 2)], fills)
    models = [Fill(**dict(zip(NAMES, r, strict=True))) for r in rows]
    assert Fill.batch_upsert(models, fills, chunk_size=5) == as_rows
    assert {i: (f.price, f.tags) for i, f in _stored(fills).items()} == by_rows


def test_upsert_rows_keeps_the_last_row_of_a_repeated_key(fills: Database):
    """The same key twice in one chunk: the later row is written and the earlier skipped."""
    rows = [_row(1), _row(2), _moved(1), _row(3)]
    assert Fill.batch_upsert_rows(rows, fills) == UpsertResult(inserted=3, updated=0, skipped=1)
    assert _stored(fills)[1].tags == ["moved"]


def test_upsert_rows_writes_only_the_columns_the_rows_hold(fills: Database):
    """Leaving a nullable column out keeps its value on update, duplicates included."""
    Fill.batch_create_rows([_row(i) for i in range(3)], fills)
    columns = ["venue", "fill_no", "ts", "price", "tags"]
    rows = [
        ("X", 0, T0, 7.0, []),
        ("X", 1, T0, 8.0, []),
        ("X", 0, T0, 9.0, ["z"]),
        ("X", 5, T0, 1.0, []),
    ]
    result = Fill.batch_upsert_rows(rows, fills, columns=columns)
    assert result == UpsertResult(inserted=1, updated=2, skipped=1)
    stored = _stored(fills)
    assert {i: (f.price, f.tags, f.meta) for i, f in stored.items()} == {
        0: (9.0, ["z"], None),
        1: (8.0, [], {"i": 1}),
        2: (102.0, ["t2"], None),
        5: (1.0, [], None),
    }


def test_upsert_rows_on_conflict_nothing_skips_existing_keys(fills: Database):
    """on_conflict="nothing" inserts the new keys and leaves existing rows untouched."""
    Fill.batch_create_rows([_row(i) for i in range(3)], fills)
    result = Fill.batch_upsert_rows([_moved(i) for i in range(5)], fills, on_conflict="nothing")
    assert result == UpsertResult(inserted=2, updated=0, skipped=3)
    assert [f.tags for _, f in sorted(_stored(fills).items())] == [
        ["t0"],
        ["t1"],
        ["t2"],
        ["moved"],
        ["moved"],
    ]


def test_upsert_rows_checks_its_columns_before_anything_runs(fills: Database):
    """The rows must hold the key, and update_columns must be among what they hold."""
    with pytest.raises(QueryError, match=r"leave out the conflict key column\(s\) \['fill_no'\]"):
        Fill.batch_upsert_rows([("X", 1.0)], fills, columns=["venue", "price"])
    with pytest.raises(QueryError, match=r"update_columns \['meta'\] are not among"):
        Fill.batch_upsert_rows([_row(1)[:5]], fills, columns=NAMES[:5], update_columns=["meta"])
    with pytest.raises(QueryError, match=r"leave out the NOT NULL column\(s\) \['ts', 'tags'\]"):
        Fill.batch_upsert_rows([("X", 1, 1.0)], fills, columns=["venue", "fill_no", "price"])
    with pytest.raises(QueryError, match="not the primary key nor a declared unique key"):
        Fill.batch_upsert_rows([_row(1)], fills, key=["price"])
    assert Fill.count(fills) == 0


def test_a_bad_upsert_row_fails_the_batch_naming_it(fills: Database):
    """A value the column refuses, or a key that is taken, fails the batch; nothing is written."""
    Fill.batch_create_rows([_row(i) for i in range(3)], fills)
    rows = [_moved(i) for i in range(10)]
    rows[6] = ("X", 6, T0, "cheap", [], None)
    with pytest.raises(ValidationError, match=r"fills\.price = 'cheap'") as info:
        Fill.batch_upsert_rows(rows, fills)
    assert info.value.position == 6
    with pytest.raises(ValidationError, match=r"fills\.tags is NOT NULL") as missing:
        Fill.batch_upsert_rows([_moved(1), ("X", 2, T0, 1.0, None, None)], fills, chunk_size=1)
    assert missing.value.position == 1
    # A new key given the id of a row outside the batch: PostgreSQL refuses it, named.
    stored = _stored(fills)
    with_ids = [(stored[1].id, *_moved(1)), (stored[0].id, *_row(50)), (stored[2].id, *_moved(2))]
    with pytest.raises(UniqueViolationError) as refused:
        Fill.batch_upsert_rows(with_ids, fills, columns=["id", *NAMES])
    assert refused.value.position == 1
    assert refused.value.column == "id"
    assert [f.price for _, f in sorted(_stored(fills).items())] == [100.0, 101.0, 102.0]


def test_upsert_rows_into_another_table(fills: Database):
    """The _with_table twin upserts into the named table."""
    from orso_pg import Migrations, migration

    Migrations.init(fills, [migration(Fill, "fills_archive")])
    result = Fill.batch_upsert_rows_with_table([_row(1), _moved(1)], fills, "fills_archive")
    assert result == UpsertResult(inserted=1, updated=0, skipped=1)
    assert (Fill.count(fills), Fill.count_with_table(fills, "fills_archive")) == (0, 1)
