"""Recorded schemas: defaults rebuilt without pasting SQL, renames read back, types checked."""

from __future__ import annotations

from decimal import Decimal

import pytest
from psycopg import sql

from orso_pg import MigrationError
from orso_pg.migrate._snapshot import _default, meta_from_snapshot, renames_of


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, None),
        ("now()", "now()"),
        ("(gen_random_uuid())::text", "gen_random_uuid()::text"),
        ("true", "true"),
        ("'XNAS'::text", "'XNAS'"),
        ("'it''s'::character varying", "'it''s'"),
        ("42", "42"),
        ("'-1.5'::numeric", "'-1.5'"),
        ("(-3)", " -3"),
        ("1.25", "1.25"),
        ("nextval('s'::regclass)", None),
    ],
)
def test_defaults_orso_pg_writes_and_constants_are_rebuilt(text, expected):
    """Known functions and constants come back as SQL; any other expression is not pasted."""
    found = _default(text)
    assert (None if found is None else found.as_string(None)) == expected


def test_a_decimal_constant_stays_a_decimal():
    found = _default("0.10")
    assert isinstance(found, sql.Literal)
    assert found.as_string(None) == "0.10"
    assert isinstance(found._obj, Decimal)


def test_renames_come_from_the_record_or_from_older_step_descriptions():
    """Records with schemas list their renames; older ones are read from the steps."""
    assert renames_of({"renamed": {"a": "b"}}, []) == {"a": "b"}
    steps = [{"description": "rename column a to b"}, {"description": "add column c text"}]
    assert renames_of(None, steps) == {"a": "b"}
    assert renames_of({"columns": []}, steps) == {"a": "b"}


def recorded(**column: object) -> dict[str, object]:
    base = {"name": "c", "type": "text", "not_null": False, "default": None, "identity": ""}
    return {
        "format": 1,
        "schema": "public",
        "table": "t",
        "columns": [{**base, **column}],
        "primary_key": [],
        "unique": [],
        "indexes": [],
        "foreign_keys": [],
    }


def test_a_type_that_cannot_be_written_again_is_a_migration_error():
    with pytest.raises(MigrationError, match='cannot restore column c of recorded type "char"'):
        meta_from_snapshot(recorded(type='"char"'), record_id=1, current={})


def test_a_default_that_is_not_rebuilt_is_said():
    meta, notes = meta_from_snapshot(
        recorded(default="nextval('s'::regclass)"), record_id=3, current={"c": "d"}
    )
    assert notes == ["the recorded default nextval('s'::regclass) of column c is not restored"]
    assert meta.columns[0].options.renamed_from == ("d",)
    assert meta.cls.__qualname__ == "record 3"
