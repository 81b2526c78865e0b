"""Hostile strings as values, search text, column names and table names never change a statement.

A canary table sits beside the model's table. Every call with a hostile string either works
with the string as a literal value (or a literal table name) or raises an OrsoError before any
SQL runs; afterwards the canary and the model's rows are still there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg.types.json import Jsonb

from orso_pg import (
    Aggregate,
    Database,
    Filter,
    Migrations,
    Orso,
    OrsoError,
    Pagination,
    QueryBuilder,
    QueryError,
    SearchFilter,
    Sort,
    ValidationError,
    column,
    migration,
    table,
)
from tests.filter_eval import fold_ascii
from tests.helpers import count_statements, create_tables


@table("inj_items")
class Item(Orso):
    id: int | None = column(primary_key=True, default=None)
    name: str
    note: str | None = None
    meta: dict[str, Any] | None = None


HOSTILE = [
    "'",
    "''",
    "'; DROP TABLE canary; --",
    "' OR '1'='1",
    '"',
    '"; DROP TABLE canary; --',
    'x"; DELETE FROM inj_items; --',
    ";",
    "--",
    "/* */",
    "%",
    "%s",
    "%(name)s",
    "%%",
    "\\",
    "\\'",
    "'\\",
    "$1",
    "?",
    "{}",
    "{0}",
    "_",
    "",
    " ",
    "\n\t",
    "é漢字🚀",
    "\u202e",
    "a\x00b",
    "\x00",
]
STORABLE = [s for s in HOSTILE if "\x00" not in s]


@pytest.fixture
def items(db: Database, raw: psycopg.Connection[Any]) -> Database:
    """inj_items with one row per storable hostile string, and the canary table."""
    create_tables(db, Item)
    # Test data need not survive a crash: skip waiting for the WAL flush of each commit.
    raw.execute("SET synchronous_commit = off")
    with raw.transaction(), raw.cursor() as cur:
        cur.execute("CREATE TABLE canary (id int)")
        cur.execute("INSERT INTO canary VALUES (42)")
        cur.executemany(
            "INSERT INTO inj_items (name, note, meta) VALUES (%s, %s, %s)",
            [(s, s, Jsonb({s: s})) for s in STORABLE],
        )
    return db


def survived(raw: psycopg.Connection[Any], db: Database) -> None:
    assert raw.execute("SELECT id FROM canary").fetchall() == [(42,)]
    assert Item.count(db) == len(STORABLE)


def refused_before_sql(db: Database, error: type[OrsoError], call: Callable[[], object]) -> None:
    with count_statements(db) as log, pytest.raises(error):
        call()
    assert len(log) == 0


def test_hostile_values(items: Database, raw: psycopg.Connection[Any]) -> None:
    """A hostile value is matched literally, or refused (NUL) before any SQL runs."""
    for s in HOSTILE:
        check_value(items, s)
    survived(raw, items)


def check_value(db: Database, s: str) -> None:
    if "\x00" in s:
        filters = [
            Filter.eq("name", s),
            Filter.in_values("name", [s]),
            Filter.like("name", s),
            Filter.has_key("meta", s),
            Filter.json_eq("meta", s, s),
        ]
        for f in filters:
            refused_before_sql(db, ValidationError, lambda f=f: Item.find_where(f, db))  # type: ignore[misc]
        refused_before_sql(db, ValidationError, lambda: Item.find_by_field("name", s, db))
        refused_before_sql(db, ValidationError, lambda: Item(name=s).insert(db))
    else:
        expected = [s]
        assert [i.name for i in Item.find_by_field("name", s, db)] == expected
        assert [
            i.name for i in Item.find_where(Filter.in_values("note", [s, "zz"]), db)
        ] == expected
        assert [i.name for i in Item.find_where(Filter.has_key("meta", s), db)] == expected
        assert [i.name for i in Item.find_where(Filter.json_eq("meta", s, s), db)] == expected
        assert Item.count_where(Filter.ne("name", s), db) == len(STORABLE) - 1
        assert Item.update_where(Filter.eq("name", s), {"note": s + s}, db) == 1
        assert [i.note for i in Item.find_by_field("name", s, db)] == [s + s]
        assert Item.update_where(Filter.eq("name", s), {"note": s}, db) == 1


def test_hostile_search_text(items: Database, raw: psycopg.Connection[Any]) -> None:
    """Search text is a literal substring, never a pattern or SQL; NUL is refused first."""
    for s in HOSTILE:
        check_search(items, s)
    survived(raw, items)


def check_search(db: Database, s: str) -> None:
    search = SearchFilter.new(s, ["name", "note"])
    if "\x00" in s:
        refused_before_sql(db, ValidationError, lambda: Item.search(search, None, db))
    else:
        page = Item.search(search, Pagination(1, 100), db)
        want = {x for x in STORABLE if fold_ascii(s) in fold_ascii(x)}
        assert {i.name for i in page} == want
        assert page.total == len(want)
        exact = Item.search(search.with_exact_match().with_case_sensitive(), None, db)
        assert [i.name for i in exact] == [s]


def test_hostile_column_names(items: Database, raw: psycopg.Connection[Any]) -> None:
    """A hostile column name is a QueryError listing the columns, before any SQL runs."""
    for s in HOSTILE:
        check_column_name(items, s)
    survived(raw, items)


def check_column_name(db: Database, s: str) -> None:
    calls: list[Callable[[], object]] = [
        lambda: Item.find_where(Filter.eq(s, 1), db),
        lambda: Item.find_where(Filter.is_null(s), db),
        lambda: Item.find_by_field(s, 1, db),
        lambda: Item.find_by_field_in(s, [1], db),
        lambda: Item.list(sorts=[Sort.asc(s)], pagination=None, db=db),
        lambda: Item.find_keyset(None, [Sort.desc(s)], db),
        lambda: Item.aggregate(Aggregate.MAX, s, None, db),
        lambda: Item.update_where(Filter.all_of(), {s: 1}, db),
        lambda: Item.search(SearchFilter.new("x", [s]), None, db),
        lambda: Item.stream_where(None, db, sorts=[Sort.asc(s)]),
        lambda: QueryBuilder(Item).select(s).fetch(db),
        lambda: QueryBuilder(Item).select("name").group_by(s).fetch(db),
        lambda: QueryBuilder(Item).where(Filter.eq(f"inj_items.{s}", 1)).fetch(db),
    ]
    for call in calls:
        with count_statements(db) as log, pytest.raises(QueryError) as e:
            call()
        assert len(log) == 0
        assert "columns are: id, name, note, meta" in str(e.value)


VALID_TABLES = [s for s in STORABLE if s and "%" not in s]


def test_hostile_table_names(items: Database, raw: psycopg.Connection[Any]) -> None:
    """A hostile table name is one quoted identifier: a table of that very name is used."""
    Migrations.init(items, [migration(Item, s) for s in VALID_TABLES])
    for s in VALID_TABLES:
        check_table(items, s)
    survived(raw, items)


def check_table(db: Database, s: str) -> None:
    Item(name="inside", note=s).insert_with_table(db, s)
    assert [i.note for i in Item.find_where_with_table(Filter.eq("name", "inside"), db, s)] == [s]
    assert Item.count_where_with_table(Filter.all_of(), db, s) == 1
    page = Item.search_with_table(SearchFilter.new("insi", ["name"]), None, db, s)
    assert page.total == 1
    assert Item.aggregate_with_table(Aggregate.COUNT, "*", None, db, s) == 1
    assert [r.name for r in Item.query_with_table(QueryBuilder(Item), db, s)] == ["inside"]
    assert QueryBuilder(Item, s).select("note").fetch(db) == [(s,)]
    assert Item.delete_where_with_table(Filter.all_of(), db, s) == 1


IMPOSSIBLE_TABLES = ["", "\x00", "a\x00b", "x" * 64, "é" * 32, "%", "%s", "50%"]


def test_impossible_table_names(items: Database, raw: psycopg.Connection[Any]) -> None:
    """A table name PostgreSQL cannot take verbatim is refused before any SQL runs."""
    for s in IMPOSSIBLE_TABLES:
        check_impossible_table(items, s)
    survived(raw, items)


def check_impossible_table(db: Database, s: str) -> None:
    calls: list[Callable[[], object]] = [
        lambda: Item.find_where_with_table(Filter.all_of(), db, s),
        lambda: Item.count_where_with_table(Filter.all_of(), db, s),
        lambda: Item.delete_where_with_table(Filter.all_of(), db, s),
        lambda: Item.search_with_table(SearchFilter.new("x", ["name"]), None, db, s),
        lambda: Item.query_with_table(QueryBuilder(Item), db, s),
        lambda: QueryBuilder(Item, s),
    ]
    for call in calls:
        refused_before_sql(db, ValidationError, call)


def test_hostile_aliases(items: Database, raw: psycopg.Connection[Any]) -> None:
    """Aggregate and join aliases are identifiers: a hostile one is quoted, never run."""
    db = items
    evil = 'n"; DROP TABLE canary; --'
    q = QueryBuilder(Item).select_count(evil).join(Item, ("id", "id"), alias=evil + "2")
    assert q.fetch_dicts(db) == [{evil: len(STORABLE)}]
    for bad in ("50%", "a\x00", "x" * 64):
        with pytest.raises(ValidationError):
            QueryBuilder(Item).select_count(bad)
        with pytest.raises(ValidationError):
            QueryBuilder(Item).join(Item, ("id", "id"), alias=bad)
    survived(raw, db)


def test_raw_filter_takes_only_sql_objects(items: Database, raw: psycopg.Connection[Any]) -> None:
    """The raw escape hatch refuses plain strings, and binds its parameters."""
    db = items
    with pytest.raises(QueryError):
        Filter.raw("1=1; DROP TABLE canary")  # type: ignore[arg-type]
    evil = "'; DROP TABLE canary; --"
    f = Filter.raw(psycopg.sql.SQL("{} = %s").format(psycopg.sql.Identifier("name")), [evil])
    assert [i.name for i in Item.find_where(f, db)] == [evil]
    survived(raw, db)


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=12))
def test_random_text_as_value_and_search(
    items: Database, raw: psycopg.Connection[Any], s: str
) -> None:
    """Any text is matched literally as a value and as search text, or refused (NUL)."""
    db = items
    if "\x00" in s:
        refused_before_sql(db, ValidationError, lambda: Item.find_by_field("name", s, db))
        return
    assert [i.name for i in Item.find_by_field("name", s, db)] == ([s] if s in STORABLE else [])
    page = Item.search(SearchFilter.new(s, ["name"]), Pagination(1, 100), db)
    assert {i.name for i in page} == {x for x in STORABLE if fold_ascii(s) in fold_ascii(x)}
    survived(raw, db)
