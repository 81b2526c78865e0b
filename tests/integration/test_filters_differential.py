"""Differential test: random filter trees select the same rows in PostgreSQL as in a Python model.

Random rows (NULLs everywhere; ints, NaN and infinite floats, text with wildcards, backslashes,
quotes and unicode, booleans, timestamps, int arrays, JSONB) go into a real table, and random
filter trees over every operator give exactly the ids ``tests.filter_eval`` predicts with SQL's
three-valued logic. The text column is ``COLLATE "C"`` so ordering is by code point, as Python's.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg import sql
from psycopg.types.json import Jsonb

from orso_pg import Database, Filter, Orso, column, table
from tests import filter_eval
from tests.helpers import create_tables


@table("diff_rows")
class DiffRow(Orso):
    id: int = column(primary_key=True)
    i: int | None = None
    f: float | None = None
    t: str | None = None
    b: bool | None = None
    ts: dt.datetime | None = None
    tags: list[int] | None = None
    doc: dict[str, Any] | None = None


COLUMNS = ("i", "f", "t", "b", "ts", "tags", "doc")

SCALARS: dict[str, st.SearchStrategy[Any]] = {
    "i": filter_eval.ints(),
    "f": filter_eval.floats(),
    "t": filter_eval.texts(),
    "b": st.booleans(),
    "ts": filter_eval.timestamps(),
}
ELEMENTS = st.integers(0, 4)
JSON_KEYS = st.sampled_from(["a", "b", "é"])
JSON_SCALARS = st.one_of(st.integers(-2, 2), st.booleans(), st.sampled_from(["x", "X", "", "1"]))

ROWS = st.lists(
    st.fixed_dictionaries(
        {
            **{name: filter_eval.nullable(s) for name, s in SCALARS.items()},
            "tags": filter_eval.nullable(st.lists(ELEMENTS, max_size=3)),
            "doc": filter_eval.nullable(st.dictionaries(JSON_KEYS, JSON_SCALARS, max_size=2)),
        }
    ),
    max_size=12,
)

LEAVES = st.one_of(
    filter_eval.leaves(SCALARS, text_columns=["t"]),
    filter_eval.leaves(SCALARS, text_columns=["t"]),
    st.builds(Filter.contains, st.just("tags"), st.lists(ELEMENTS, max_size=2)),
    st.builds(Filter.overlaps, st.just("tags"), st.lists(ELEMENTS, max_size=2)),
    st.builds(Filter.any, st.just("tags"), filter_eval.nullable(ELEMENTS)),
    st.builds(Filter.is_null, st.sampled_from(["tags", "doc"])),
    st.builds(Filter.has_key, st.just("doc"), JSON_KEYS),
    st.builds(Filter.json_eq, st.just("doc"), JSON_KEYS, JSON_SCALARS),
)
FILTERS = filter_eval.trees(LEAVES, max_leaves=10)


@pytest.fixture
def table_c(db: Database, raw: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    """The diff_rows table, its text column ordered by code point (COLLATE "C")."""
    create_tables(db, DiffRow)
    raw.execute('ALTER TABLE diff_rows ALTER COLUMN t TYPE text COLLATE "C"')
    # Test data need not survive a crash: not waiting for each commit's WAL flush keeps
    # hundreds of small writes cheap on a busy disk.
    raw.execute("SET synchronous_commit = off")
    return raw


def load(raw: psycopg.Connection[Any], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Replace the table's rows with *rows* (ids 1..n); return them with their ids."""
    numbered = [{"id": n, **row} for n, row in enumerate(rows, start=1)]
    with raw.transaction():
        raw.execute("DELETE FROM diff_rows")
        _insert(raw, numbered)
    return numbered


def _insert(raw: psycopg.Connection[Any], numbered: list[dict[str, Any]]) -> None:
    names = ("id", *COLUMNS)
    insert = sql.SQL("INSERT INTO diff_rows ({}) VALUES ({})").format(
        sql.SQL(", ").join(map(sql.Identifier, names)),
        sql.SQL(", ").join(sql.Placeholder() * len(names)),
    )
    with raw.cursor() as cur:
        cur.executemany(
            insert,
            [
                tuple(Jsonb(r[n]) if n == "doc" and r[n] is not None else r[n] for n in names)
                for r in numbered
            ],
        )


def expected(f: Filter, rows: list[dict[str, Any]]) -> set[int]:
    return {r["id"] for r in rows if filter_eval.evaluate(f, r) is True}


@settings(max_examples=75, deadline=None)
@given(rows=ROWS, filters=st.lists(FILTERS, min_size=1, max_size=4))
def test_filters_match_python_model(
    db: Database,
    table_c: psycopg.Connection[Any],
    rows: list[dict[str, Any]],
    filters: list[Filter],
) -> None:
    """Every random filter tree selects exactly the ids the three-valued Python model selects."""
    numbered = load(table_c, rows)
    for f in filters:
        want = expected(f, numbered)
        got = [r.id for r in DiffRow.find_where(f, db)]
        assert len(got) == len(set(got))
        assert set(got) == want, f
        assert {r.id for r in DiffRow.find_where(~f, db)} == expected(~f, numbered), ~f
        assert DiffRow.count_where(f, db) == len(want)
        assert DiffRow.exists_filter(f, db) == bool(want)


def test_model_agrees_with_postgres_on_edge_cases(db: Database, table_c: Any) -> None:
    """Hand-picked cases the model must get right: NaN, NULL in lists, empty lists, escapes."""
    nan = float("nan")
    rows = load(
        table_c,
        [
            {"i": 1, "f": nan, "t": "50%", "b": True, "ts": None, "tags": [], "doc": {}},
            {"i": None, "f": 1.0, "t": "a_b\\", "b": None, "ts": None, "tags": None, "doc": None},
            {"i": 2, "f": None, "t": "", "b": False, "ts": None, "tags": [1, 2], "doc": {"a": 1}},
            {"i": 3, "f": -0.0, "t": "Éa", "b": None, "ts": None, "tags": [3], "doc": {"a": True}},
        ],
    )
    cases = [
        Filter.eq("f", nan),
        Filter.gt("f", 1e308),
        Filter.in_values("i", []),
        Filter.not_in_values("i", []),
        Filter.not_in_values("i", [None, 5]),
        Filter.in_values("i", [None, 1]),
        ~Filter.in_values("i", [None, 1]),
        Filter.like("t", "50\\%"),
        Filter.like("t", "a\\_b\\\\"),
        Filter.ilike("t", "A_B%"),
        Filter.ilike("t", "éA"),
        Filter.eq("f", 0.0),
        Filter.json_eq("doc", "a", value=True),
        Filter.eq("t", ""),
        Filter.lt("i", None),
        ~Filter.lt("i", None),
        Filter.between("i", 2, 1),
        Filter.not_between("f", 0, 2),
        Filter.any("tags", None),
        Filter.contains("tags", []),
        Filter.overlaps("tags", []),
        Filter.json_eq("doc", "a", 1),
        Filter.has_key("doc", "a"),
        Filter.all_of(),
        Filter.any_of(),
        ~Filter.any_of(),
    ]
    for f in cases:
        got = {r.id for r in DiffRow.find_where(f, db)}
        assert got == expected(f, rows), f
