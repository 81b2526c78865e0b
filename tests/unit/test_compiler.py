"""The SQL text and parameters of row statements and table definitions, without a database."""

from __future__ import annotations

import datetime as dt
import uuid

from psycopg import sql

from orso_pg import Index, column, table, table_of
from orso_pg import _compiler as c
from orso_pg.migrate import _ddl as ddl
from tests.helpers import assert_sql


@table("users", schema=None)
class User:
    id: str | None = column(primary_key=True, default=None)
    email: str = column(unique=True)
    age: int | None = None
    created_at: dt.datetime | None = column(created_at=True, default=None)
    updated_at: dt.datetime | None = column(updated_at=True, default=None)


@table("posts", indexes=[Index(("author", "at"), "btree"), Index(("at",), "brin")])
class Post:
    id: int | None = column(primary_key=True, default=None)
    author: str = column(ref=User, on_delete="CASCADE")
    at: dt.datetime = column(index="brin")
    score: int = column(server_default=0)
    ref: uuid.UUID | None = column(server_default=sql.SQL("gen_random_uuid()"), default=None)


@table("ledger", schema="accounts", unique=[("book", "line")])
class Ledger:
    book: str
    line: int
    amount: float


@table("books", schema="accounts")
class Book:
    id: int | None = column(primary_key=True, default=None)


@table("entries")
class Entry:
    id: int | None = column(primary_key=True, default=None)
    book: int = column(ref=Book)


USER = table_of(User)
POST = table_of(Post)
LEDGER = table_of(Ledger)
COLS = '"id", "email", "age", "created_at", "updated_at"'


def test_insert_returns_every_column():
    """An insert names the columns it sends and returns every column of the row."""
    stmt = c.insert(USER, None, ("email", "age"), ("a@b", 3))
    assert_sql(
        stmt,
        f'INSERT INTO "users" ("email", "age") VALUES (%s, %s) RETURNING {COLS}',
        ("a@b", 3),
    )


def test_insert_of_nothing_uses_defaults():
    """An insert with no column to send uses DEFAULT VALUES."""
    assert_sql(
        c.insert(USER, "users_2024", (), ()),
        f'INSERT INTO "users_2024" DEFAULT VALUES RETURNING {COLS}',
        (),
    )


def test_same_shape_gives_the_same_query_object():
    """Compiled shapes are cached, so psycopg sees identical text and can prepare it."""
    first = c.insert(USER, None, ("email",), ("x",))
    second = c.insert(USER, None, ("email",), ("y",))
    assert first.query is second.query
    assert c.select_by_key(USER, None, "a").query is c.select_by_key(USER, None, "b").query


def test_select_update_delete_by_key():
    """Key statements compare the primary key to one bound value."""
    assert_sql(
        c.select_by_key(USER, None, "k"), f'SELECT {COLS} FROM "users" WHERE "id" = %s', ("k",)
    )
    assert_sql(
        c.update_by_key(USER, None, ("email", "age"), ("e", 1), "k"),
        'UPDATE "users" SET "email" = %s, "age" = %s, "updated_at" = now() '
        f'WHERE "id" = %s RETURNING {COLS}',
        ("e", 1, "k"),
    )
    assert_sql(c.delete_by_key(USER, None, "k"), 'DELETE FROM "users" WHERE "id" = %s', ("k",))
    assert_sql(c.select_all(USER, None), f'SELECT {COLS} FROM "users" ORDER BY "id"')


def test_upsert_keeps_key_and_creation_time():
    """An upsert overwrites the other columns and leaves the key and created_at alone."""
    stmt = c.upsert(USER, None, ("id", "email", "age"), ("i", "e", 2), ("email",))
    assert_sql(
        stmt,
        'INSERT INTO "users" ("id", "email", "age") VALUES (%s, %s, %s) '
        'ON CONFLICT ("email") DO UPDATE SET "age" = EXCLUDED."age", "updated_at" = now() '
        f"RETURNING {COLS}",
        ("i", "e", 2),
    )


def test_upsert_with_nothing_to_change_still_returns_the_row():
    """When every column is part of the key, the upsert does a no-op update to return the row."""
    stmt = c.upsert(LEDGER, None, ("book", "line"), ("b", 1), ("book", "line"))
    text = stmt.as_string()
    assert 'ON CONFLICT ("book", "line") DO UPDATE SET "book" = EXCLUDED."book"' in text
    assert text.startswith('INSERT INTO "accounts"."ledger"')


def test_count_and_exists():
    """Counting and existence tests read the table, optionally filtered."""
    where = c.Statement(sql.SQL('"age" > %s'), (3,))
    assert_sql(c.count(USER, None), 'SELECT count(*) FROM "users"', ())
    assert_sql(c.count(USER, "u2", where), 'SELECT count(*) FROM "u2" WHERE "age" > %s', (3,))
    assert_sql(c.exists(USER, None), 'SELECT EXISTS (SELECT 1 FROM "users")', ())
    assert_sql(
        c.exists(USER, None, where),
        'SELECT EXISTS (SELECT 1 FROM "users" WHERE "age" > %s)',
        (3,),
    )


def test_hostile_table_names_are_quoted():
    """A table name given at run time is always one quoted identifier."""
    stmt = c.delete_by_key(USER, 'x"; DROP TABLE users; --', 1)
    assert stmt.as_string() == 'DELETE FROM "x""; DROP TABLE users; --" WHERE "id" = %s'


def test_create_table_with_every_constraint():
    """CREATE TABLE carries defaults, keys, foreign keys with ON DELETE, and unique keys."""
    assert (
        ddl.create_table(USER).as_string() == 'CREATE TABLE "users" ('
        '"id" TEXT DEFAULT gen_random_uuid()::text PRIMARY KEY, '
        '"email" TEXT NOT NULL, "age" BIGINT, '
        '"created_at" TIMESTAMPTZ DEFAULT now() NOT NULL, '
        '"updated_at" TIMESTAMPTZ DEFAULT now() NOT NULL, '
        'UNIQUE ("email"))'
    )
    assert ddl.create_table(POST).as_string() == (
        'CREATE TABLE "posts" ('
        '"id" BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, '
        '"author" TEXT NOT NULL REFERENCES "users" ("id") ON DELETE CASCADE, '
        '"at" TIMESTAMPTZ NOT NULL, '
        '"score" BIGINT DEFAULT 0 NOT NULL, '
        '"ref" UUID DEFAULT gen_random_uuid() NOT NULL)'
    )
    entry = table_of(Entry).column("book")
    assert ddl.column_definition(entry).as_string().endswith('REFERENCES "accounts"."books" ("id")')
    assert ddl.create_table(LEDGER, "ledger_2024").as_string() == (
        'CREATE TABLE "ledger_2024" ("book" TEXT NOT NULL, "line" BIGINT NOT NULL, '
        '"amount" DOUBLE PRECISION NOT NULL, UNIQUE ("book", "line"))'
    )


def test_create_indexes():
    """Each declared index is one CREATE INDEX with its access method."""
    texts = [s.as_string() for s in ddl.create_indexes(POST)]
    assert texts == [
        'CREATE INDEX ON "posts" USING brin ("at")',
        'CREATE INDEX ON "posts" USING btree ("author", "at")',
        'CREATE INDEX ON "posts" USING brin ("at")',
    ]
    assert (
        ddl.create_indexes(POST, "posts_old")[0]
        .as_string()
        .endswith('"posts_old" USING brin ("at")')
    )
