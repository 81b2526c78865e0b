"""The statements of batch operations, compiled without a database, and the COPY row shapes."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import pytest

from orso_pg import Orso, ValidationError, column, table
from orso_pg._schema import table_of
from orso_pg.batch import _rows as batch_rows
from orso_pg.batch import _sql as batch_sql
from tests.helpers import assert_sql


@table("bs_quotes", unique=[("venue", "seq")])
class Quote(Orso):
    id: int | None = column(primary_key=True, default=None)
    venue: str
    seq: int
    price: float
    created_at: dt.datetime | None = column(created_at=True, default=None)
    updated_at: dt.datetime | None = column(updated_at=True, default=None)


@table("bs_docs")
class Doc(Orso):
    id: uuid.UUID | None = column(primary_key=True, default=None)
    body: dict[str, Any]
    code: str = column(sql_type="varchar(4)")
    amount: Decimal = column(sql_type="numeric(6, 2)")


@table("bs_odd")
class Odd(Orso):
    id: int | None = column(primary_key=True, default=None)
    small: int = column(sql_type="integer")
    hours: list[int] = column(sql_type="bigint[]")
    embedding: list[float] = column(vector=3)


META = table_of(Quote)
NAMES = ("venue", "seq", "price")


def test_copy_into_the_table_or_the_stage():
    """COPY names the columns, the target and the format."""
    stmt = batch_sql.copy(META, None, NAMES, binary=True, stage=False)
    assert stmt.as_string() == (
        'COPY "bs_quotes" ("venue", "seq", "price") FROM STDIN (FORMAT BINARY)'
    )
    staged = batch_sql.copy(META, "other", ("id", *NAMES), binary=False, stage=True)
    assert staged.as_string() == (
        'COPY "orso_pg_stage" ("id", "venue", "seq", "price") FROM STDIN (FORMAT TEXT)'
    )
    assert batch_sql.copy(META, None, NAMES, binary=True, stage=False) is stmt


def test_stage_statements():
    """The stage copies the live column types and is dropped at commit at the latest."""
    assert_sql(
        batch_sql.create_stage(META, "quotes_2024"),
        'CREATE TEMP TABLE "orso_pg_stage" ON COMMIT DROP AS SELECT "id", "venue", "seq", '
        '"price", "created_at", "updated_at" FROM "quotes_2024" WITH NO DATA',
        (),
    )
    assert_sql(batch_sql.truncate_stage(), 'TRUNCATE "orso_pg_stage"')
    assert_sql(batch_sql.drop_stage(), 'DROP TABLE "orso_pg_stage"')


def test_staged_upsert_keeps_keys_and_timestamps():
    """ON CONFLICT overwrites the data columns, keeps the keys and sets updated_at."""
    assert_sql(
        batch_sql.upsert_from_stage(META, None, ("id", *NAMES), ("venue", "seq")),
        'WITH ins AS (INSERT INTO "bs_quotes" ("id", "venue", "seq", "price") SELECT "id", '
        '"venue", "seq", "price" FROM "orso_pg_stage" ON CONFLICT ("venue", "seq") DO UPDATE '
        'SET "price" = EXCLUDED."price", "updated_at" = now() RETURNING xmax = 0 AS inserted) '
        "SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM ins",
        (),
    )
    nothing = batch_sql.upsert_from_stage(META, None, NAMES, ("venue", "seq"), do_nothing=True)
    assert nothing.as_string().endswith(
        'ON CONFLICT ("venue", "seq") DO NOTHING RETURNING 1) SELECT count(*), 0 FROM ins'
    )
    chosen = batch_sql.upsert_from_stage(META, None, NAMES, ("venue", "seq"), update=("seq",))
    assert 'DO UPDATE SET "updated_at" = now() RETURNING' in chosen.as_string()


def test_staged_update_and_delete():
    """UPDATE ... FROM joins on the primary key; DELETE binds every key as one array."""
    assert_sql(
        batch_sql.update_from_stage(META, None, ("id", "price", "created_at")),
        'UPDATE "bs_quotes" AS t SET "price" = s."price", "updated_at" = now() '
        'FROM "orso_pg_stage" AS s WHERE t."id" = s."id"',
        (),
    )
    assert_sql(
        batch_sql.delete_any(META, None, (1, 2, 3)),
        'DELETE FROM "bs_quotes" WHERE "id" = ANY(%b::BIGINT[])',
        ([1, 2, 3],),
    )
    assert_sql(batch_sql.key_condition(META, [4]), '"id" = ANY(%b::BIGINT[])', ([4],))


def test_key_allocation_uses_the_column_default():
    """Identity keys come from their sequence, UUID keys from gen_random_uuid()."""
    assert_sql(
        batch_sql.allocate_keys(META, None, 5),
        "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
        ('"bs_quotes"', "id", 5),
    )
    assert_sql(
        batch_sql.allocate_keys(table_of(Doc), None, 2),
        "SELECT gen_random_uuid() FROM generate_series(1, %s)",
        (2,),
    )


def test_copy_types_follow_the_declared_sql_type():
    """Binary COPY is kept only when the declared type has the mapped type's wire format."""
    doc = table_of(Doc)
    assert batch_rows.copy_type(doc.column("body")) == ("jsonb", True)
    assert batch_rows.copy_type(doc.column("code")) == ("text", True)
    assert batch_rows.copy_type(doc.column("amount")) == ("numeric", True)
    assert batch_rows.shape(doc, ("body", "code", "amount")).binary
    odd = table_of(Odd)
    assert batch_rows.copy_type(odd.column("small")) == ("int8", False)
    assert batch_rows.copy_type(odd.column("hours")) == ("int8[]", True)
    assert batch_rows.copy_type(odd.column("embedding")) == ("vector", True)
    assert not batch_rows.shape(odd, ("small", "hours")).binary


def test_feeder_passes_exact_values_and_checks_the_rest():
    """Values of the exact type pass as they are; others take the column's check."""
    feed = batch_rows.feeder(META, NAMES)
    quote = Quote(venue="X", seq=1, price=2.5)
    read: list[Any] = []
    assert list(feed([quote], read)) == [("X", 1, 2.5)]
    assert read == [quote]
    quote.price = 3  # an int converted to float by the column's check
    assert list(feed([quote], [])) == [("X", 1, 3.0)]
    object.__setattr__(quote, "seq", True)
    with pytest.raises(ValueError, match="expected int"):
        list(feed([quote], []))
    with pytest.raises(TypeError, match="not a model instance"):
        list(feed([object()], []))


def test_feeder_defers_rows_whose_server_filled_columns_differ():
    """Rows leaving None where the first row has a value (or the reverse) are deferred."""
    feed = batch_rows.feeder(META, ("id", *NAMES), ("id", "created_at"))
    rows = [
        Quote(id=1, venue="X", seq=1, price=1.0),
        Quote(venue="X", seq=2, price=2.0),
        Quote(id=3, venue="X", seq=3, price=3.0, created_at=dt.datetime(2024, 1, 1, tzinfo=dt.UTC)),
        Quote(id=4, venue="X", seq=4, price=4.0),
    ]
    read: list[Any] = []
    deferred: list[int] = []
    assert list(feed(rows, read, deferred.append)) == [(1, "X", 1, 1.0), (4, "X", 4, 4.0)]
    assert (read, deferred) == (rows, [1, 2])


@pytest.mark.parametrize("mapping", [False, True], ids=["tuples", "mappings"])
def test_row_feeder_checks_plain_rows_like_instances(mapping: bool):
    """Plain rows are read by position or by name and take the same checks as instances."""
    feed = batch_rows.row_feeder(META, NAMES, mapping=mapping)

    def row(*values: Any) -> Any:
        return dict(zip(NAMES, values, strict=True)) if mapping else values

    rows = [row("X", 1, 2.5), row("Y", 2, 3)]
    read: list[Any] = []
    assert list(feed(rows, read)) == [("X", 1, 2.5), ("Y", 2, 3.0)]
    assert read == rows
    with pytest.raises(ValueError, match="expected int"):
        list(feed([row("X", 1.5, 1.0)], []))


def test_diagnose_names_the_first_bad_column():
    """diagnose runs every check and reports the first refused value, or None."""
    quote = Quote(venue="X", seq=1, price=1.0)
    assert batch_rows.diagnose(META, "bs_quotes", quote) is None
    object.__setattr__(quote, "venue", None)
    err = batch_rows.diagnose(META, "bs_quotes", quote)
    assert isinstance(err, ValidationError)
    assert err.column == "venue"
    assert "NOT NULL" in str(err)
    assert batch_rows.diagnose(META, "bs_quotes", quote, ("seq",)) is None


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (True, "t"),
        (False, "f"),
        (5, "5"),
        ("a b", "a b"),
        (uuid.UUID(int=1), str(uuid.UUID(int=1))),
    ],
)
def test_key_text_matches_postgresql_output(value: object, text: str):
    """Keys are printed as PostgreSQL prints them in a Key (...)=(...) detail."""
    assert batch_rows.key_text(value) == text
