"""Compressed array columns through every Orso method, stored as codec frames in BYTEA."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest

from orso_pg import (
    CompressionError,
    Database,
    Filter,
    Orso,
    Pagination,
    QueryBuilder,
    Sort,
    ValidationError,
    codec,
    column,
    table,
)
from orso_pg.testing import differences
from tests.helpers import create_tables

T0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


@table("series", unique=[("symbol", "day")])
class Series(Orso):
    id: int | None = column(primary_key=True, default=None)
    symbol: str
    day: dt.date
    closes: np.ndarray = column(compress=True)
    times: list[int] = column(compress=True, factory=list)
    weights: list[float] | None = column(compress=True, default=None)
    rounded: np.ndarray | None = column(compress=True, decimals=2, default=None)


def _series(i: int, n: int = 500) -> Series:
    rng = np.random.default_rng(i)
    closes = np.round(100 + np.cumsum(rng.normal(0, 0.1, n)), 2)
    times = (1_700_000_000_000 + 60_000 * np.arange(n)).tolist()
    return Series(
        symbol=f"S{i % 3}",
        day=(T0 + dt.timedelta(days=i)).date(),
        closes=closes,
        times=times,
        weights=rng.random(8).tolist() if i % 2 else None,
        rounded=closes + 0.001 if i % 3 == 0 else None,
    )


def assert_same(stored: Series, expected: Series, *, ignore: Collection[str] = ()) -> None:
    """Assert *stored* holds *expected*'s values, ``rounded`` to within its two decimals."""
    assert not differences(expected, stored, ignore={"rounded", *ignore})
    if expected.rounded is None:
        assert stored.rounded is None
    else:
        assert stored.rounded is not None
        assert np.allclose(stored.rounded, expected.rounded, atol=0.005 + 1e-9)


@pytest.fixture
def db_series(db: Database) -> Database:
    create_tables(db, Series)
    return db


def test_stored_value_is_a_codec_frame(db_series: Database, raw: psycopg.Connection[Any]):
    """The column is BYTEA holding a frame that codec.decode reads back bit for bit."""
    s = _series(1).insert(db_series)
    row = raw.cursor(binary=True).execute("SELECT closes, times FROM series").fetchone()
    assert row is not None
    closes, times = row
    assert bytes(closes[:4]) == codec.MAGIC
    assert codec.decode(bytes(closes)).tobytes() == s.closes.tobytes()
    assert codec.decode(bytes(times)).tolist() == s.times
    assert len(closes) < s.closes.nbytes / 2
    kinds = raw.execute(
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = 'series'::regclass AND attname IN ('closes', 'times')"
    ).fetchall()
    assert dict(kinds) == {"closes": "bytea", "times": "bytea"}


def test_single_row_methods(db_series: Database):
    """insert, find_by_id, update, upsert, insert_or_update and delete keep arrays intact."""
    s = _series(3).insert(db_series)
    found = Series.find_by_id(s.id, db_series)
    assert found is not None
    assert_same(found, s)
    assert isinstance(found.times, list)
    assert isinstance(found.closes, np.ndarray)
    s.closes = s.closes[::-1].copy()
    s.update(db_series)
    again = Series.find_by_id(s.id, db_series)
    assert again is not None
    assert_same(again, s)
    fresh = _series(3)
    fresh.times = [1, 2, 3]
    fresh.upsert(db_series)
    assert fresh.id == s.id
    stored = Series.find_by_id(s.id, db_series)
    assert stored is not None
    assert stored.times == [1, 2, 3]
    stored.weights = [0.5]
    stored.insert_or_update(db_series)
    final = Series.find_by_id(s.id, db_series)
    assert final is not None
    assert final.weights == [0.5]
    assert final.delete(db_series)


def test_reads_and_pages(db_series: Database):
    """Finders, pages, keyset pages, streams and builder queries load arrays back."""
    made = {s.day: s for s in (_series(i).insert(db_series) for i in range(12))}

    def check(rows: list[Series]) -> None:
        assert rows
        for r in rows:
            assert_same(r, made[r.day])

    check(Series.find_all(db_series))
    check(Series.find_where(Filter.is_null("weights"), db_series))
    check(Series.find_by_ids([3, 1, 2], db_series))
    check(
        Series.list_where(
            Filter.eq("symbol", "S1"), [Sort.desc("day")], Pagination(1, 2), db_series
        ).data
    )
    check(Series.find_keyset(None, [Sort.asc("day")], db_series, limit=5).data)
    check(list(Series.stream_where(Filter.is_not_null("rounded"), db_series, batch_size=2)))
    check(Series.query(QueryBuilder(Series).where(Filter.ge("day", T0.date())).limit(4), db_series))
    rows = QueryBuilder(Series).select("day", "closes").fetch(db_series)
    assert all(made[day].closes.tobytes() == closes.tobytes() for day, closes in rows)
    newest = Series.find_one(Filter.eq("symbol", "S2"), db_series)
    assert newest is not None
    check([newest])


def test_reads_decode_each_column_in_one_batch(db_series: Database, raw: psycopg.Connection[Any]):
    """Finders and streams decode a column's frames together: format-1 and format-2 frames,
    NULLs and many rows come back as stored; a damaged frame names its table, column and row."""
    made = [_series(i, n=200 + i).insert(db_series) for i in range(30)]
    golden = Path(__file__).resolve().parent.parent / "golden" / "codec" / "v1"
    legacy = (golden / "int64_ticks_order1.bin").read_bytes()  # written by format 1
    old = np.load(golden / "int64_ticks_order1.npy")
    raw.execute("UPDATE series SET closes = %s WHERE id = %s", (legacy, made[4].id))
    made[4].closes = old

    by_id = {s.id: s for s in made}
    for loaded in (
        Series.find_all(db_series),
        list(Series.stream_where(None, db_series, batch_size=7)),
        Series.find_by_ids([s.id for s in made[::-1]], db_series),
    ):
        assert len(loaded) == len(made)
        for s in loaded:
            assert_same(s, by_id[s.id])
            assert s.closes.dtype == by_id[s.id].closes.dtype

    raw.execute(
        "UPDATE series SET times = overlay(times placing '\\xff'::bytea from 20) WHERE id = %s",
        (made[6].id,),
    )
    with pytest.raises(CompressionError, match=r"series\.times, row 6 of the result") as caught:
        Series.find_all(db_series)
    assert (caught.value.table, caught.value.column, caught.value.position) == (
        "series",
        "times",
        6,
    )
    with pytest.raises(CompressionError, match="checksum"):
        list(Series.stream_where(None, db_series, batch_size=4))


def test_batch_methods(db_series: Database):
    """batch_create, batch_upsert and batch_update encode arrays on the way."""
    batch = [_series(i) for i in range(20)]
    assert Series.batch_create(batch, db_series) == 20
    fixes = [_series(i) for i in range(10, 30)]
    result = Series.batch_upsert(fixes, db_series)
    assert (result.inserted, result.updated) == (10, 10)
    stored = {s.day: s for s in Series.find_all(db_series)}
    for s in fixes:
        assert_same(stored[s.day], s, ignore={"id"})  # batch_upsert gives no keys back
    changed = list(stored.values())[:5]
    for s in changed:
        s.times = [7, 8, 9]
    assert Series.batch_update(changed, db_series, columns=["times"]) == 5
    assert all(s.times == [7, 8, 9] for s in Series.find_by_ids([c.id for c in changed], db_series))


def test_bad_arrays_are_refused(db_series: Database):
    """Values a compressed column cannot hold are refused before any SQL, naming the column."""
    bad = _series(1)
    bad.times = [1, "2"]  # type: ignore[list-item]
    with pytest.raises(ValidationError, match=r"series\.times"):
        bad.insert(db_series)
    lossy = _series(2)
    lossy.rounded = np.array([np.nan])
    with pytest.raises(ValidationError, match=r"series\.rounded"):
        lossy.insert(db_series)
    assert Series.count(db_series) == 0


def test_filters_other_than_null_tests_are_refused(db_series: Database):
    """A compressed column can only be tested for NULL; comparing frames is refused."""
    with pytest.raises(Exception, match="compressed"):
        Series.find_where(Filter.eq("times", [1, 2]), db_series)
