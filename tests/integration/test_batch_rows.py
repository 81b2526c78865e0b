"""batch_create_rows: plain tuples and dicts through COPY, checked like instances."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from orso_pg import (
    Database,
    Orso,
    QueryError,
    UniqueViolationError,
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
        ({"venue": "X"}, "no value for fill_no"),
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
