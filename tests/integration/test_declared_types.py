"""Columns whose ``sql_type`` differs from their annotation: keys, reads and type checks.

A ``str`` key stored as ``uuid`` or ``char(n)`` comes back from the server in another form than
it was given (a UUID object, a padded string); every path must still match and load it.
"""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg import sql

from orso_pg import Database, Orso, column, table
from tests.helpers import create_tables


@table("dt_tokens")
class Token(Orso):
    id: str | None = column(
        primary_key=True, sql_type="uuid", server_default=sql.SQL("gen_random_uuid()"), default=None
    )
    label: str = ""


@table("dt_codes")
class Code(Orso):
    code: str = column(primary_key=True, sql_type="char(6)")
    label: str = ""


def test_find_by_ids_matches_str_keys_stored_as_uuid(db: Database):
    """Keys asked in any spelling of a UUID find their rows, in the order asked."""
    create_tables(db, Token)
    made = [Token(label=f"t{i}").insert(db) for i in range(3)]
    keys = [t.id for t in made]
    assert all(isinstance(k, str) for k in keys)
    asked = [keys[2].upper(), keys[0], "{" + keys[1] + "}", keys[0]]
    found = Token.find_by_ids(asked, db)
    assert [t.label for t in found] == ["t2", "t0", "t1"]
    assert [t.id for t in found] == [keys[2], keys[0], keys[1]]
    assert Token.find_by_ids([str(uuid.uuid4())], db) == []


@settings(max_examples=25, deadline=None)
@given(
    stored=st.sets(st.text(alphabet="abcXYZ", min_size=1, max_size=6), max_size=6),
    asked=st.lists(st.text(alphabet="abcXYZ", min_size=1, max_size=6), max_size=8),
)
def test_find_by_ids_on_char_keys_matches_a_dict(db: Database, stored: set[str], asked: list[str]):
    """char(n) keys (padded by the server) are found as a dict lookup in asked order says."""
    create_tables(db, Code)
    Code.delete_where(None, db)
    for code in stored:
        Code(code=code, label=code).insert(db)
    expected: list[str] = []
    for key in asked:
        if key in stored and key not in expected:
            expected.append(key)
    found = Code.find_by_ids(asked, db)
    assert [c.label for c in found] == expected
    assert [c.code for c in found] == [k.ljust(6) for k in expected]


def test_batch_create_returns_str_keys_drawn_as_uuid(db: Database):
    """Keys drawn from the server for a str key stored as uuid are str, on rows and returned."""
    create_tables(db, Token)
    rows = [Token(label="a"), Token(id=str(uuid.uuid4()), label="b"), Token(label="c")]
    keys = Token.batch_create(rows, db, returning="keys")
    assert all(isinstance(k, str) for k in keys)
    assert keys == [r.id for r in rows]
    assert [t.label for t in Token.find_by_ids(keys, db)] == ["a", "b", "c"]
    uuid.UUID(keys[0])  # a real UUID in canonical form


@pytest.mark.parametrize("given_as", [bytes, bytearray])
def test_find_by_ids_on_bytea_keys(db: Database, given_as: type):
    """bytea keys given as bytes or bytearray are matched (bytearray is not hashable)."""

    @table("dt_blobs")
    class Blob(Orso):
        key: bytes = column(primary_key=True)
        n: int = 0

    create_tables(db, Blob)
    Blob(key=b"\x01", n=1).insert(db)
    Blob(key=b"\x02", n=2).insert(db)
    found = Blob.find_by_ids([given_as(b"\x02"), given_as(b"\x01"), given_as(b"\x03")], db)
    assert [b.n for b in found] == [2, 1]
