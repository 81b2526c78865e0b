"""Single-row operations against a real PostgreSQL: keys, timestamps, upserts, cascades, errors."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import psycopg
import pytest

from orso_pg import (
    Database,
    ForeignKeyViolationError,
    Migrations,
    NotFoundError,
    Orso,
    QueryError,
    UniqueViolationError,
    ValidationError,
    column,
    migration,
    table,
)
from tests.helpers import count_statements, create_tables


@table("accounts")
class Account(Orso):
    id: str | None = column(primary_key=True, default=None)
    email: str = column(unique=True)
    name: str
    balance: float = 0.0
    note: str | None = None
    created_at: dt.datetime | None = column(created_at=True, default=None)
    updated_at: dt.datetime | None = column(updated_at=True, default=None)


@table("orders")
class Order(Orso):
    id: int | None = column(primary_key=True, default=None)
    account: str = column(ref=Account)
    qty: int


@table("order_lines")
class OrderLine(Orso):
    id: uuid.UUID | None = column(primary_key=True, default=None)
    order: int = column(ref=Order)
    sku: str


@table("nodes")
class Node(Orso):
    id: int | None = column(primary_key=True, default=None)
    parent: int | None = column(ref="nodes", default=None)
    label: str = ""


@table("candles", unique=[("symbol", "ts")])
class Candle(Orso):
    id: int | None = column(primary_key=True, default=None)
    symbol: str
    ts: dt.datetime
    close: float
    created_at: dt.datetime | None = column(created_at=True, default=None)


@table("pairs")
class Pair(Orso):
    code: str = column(primary_key=True)
    base: str
    quote: str


T0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


@pytest.fixture
def tables(db: Database) -> Database:
    create_tables(db, Account, Order, OrderLine, Node, Candle, Pair)
    return db


def test_insert_fills_generated_key_and_timestamps(tables: Database):
    """An insert returns the server's key and timestamps into the instance in one statement."""
    acct = Account(email="a@x.io", name="A")
    with count_statements(tables) as log:
        same = acct.insert(tables)
    assert same is acct
    assert len(log) == 1
    assert acct.id is not None
    assert str(uuid.UUID(acct.id)) == acct.id
    assert acct.created_at is not None
    assert acct.created_at.tzinfo is not None
    assert acct.updated_at == acct.created_at
    order = Order(account=acct.id, qty=3).insert(tables)
    assert order.id == 1
    line = OrderLine(order=order.id, sku="s").insert(tables)
    assert isinstance(line.id, uuid.UUID)


def test_find_by_id_and_find_all(tables: Database):
    """Rows read back equal the inserted instances; missing keys give None."""
    a = Account(email="a@x.io", name="A").insert(tables)
    b = Account(email="b@x.io", name="B", note="vip").insert(tables)
    assert Account.find_by_id(a.id, tables) == a
    assert Account.find_by_id(str(uuid.uuid4()), tables) is None
    assert sorted(Account.find_all(tables), key=lambda x: x.email) == [a, b]


def test_update_sets_updated_at_and_keeps_created_at(tables: Database):
    """An update writes every column, moves updated_at and leaves created_at alone."""
    acct = Account(email="a@x.io", name="A").insert(tables)
    created = acct.created_at
    acct.name = "Renamed"
    acct.balance = 12.5
    acct.created_at = T0  # ignored: creation time is the server's
    acct.update(tables)
    stored = Account.find_by_id(acct.id, tables)
    assert stored is not None
    assert stored.name == "Renamed"
    assert stored.balance == 12.5
    assert stored.created_at == created
    assert acct.created_at == created
    assert stored.updated_at is not None
    assert created is not None
    assert stored.updated_at >= created


def test_update_of_missing_row_raises(tables: Database):
    """Updating a row that does not exist raises NotFoundError naming the key."""
    ghost = Account(id=str(uuid.uuid4()), email="g@x.io", name="G")
    with pytest.raises(NotFoundError, match="no row with id"):
        ghost.update(tables)
    with pytest.raises(ValidationError, match="without a primary key"):
        Account(email="n@x.io", name="N").update(tables)


def test_delete_reports_whether_a_row_went(tables: Database):
    """delete returns True when it removed the row and False when there was none."""
    acct = Account(email="a@x.io", name="A").insert(tables)
    assert acct.delete(tables) is True
    assert acct.delete(tables) is False
    assert Account.count(tables) == 0


def test_delete_cascade_removes_referencing_rows(tables: Database):
    """delete_cascade removes the row and every row referencing it, through two levels."""
    acct = Account(email="a@x.io", name="A").insert(tables)
    keep = Account(email="k@x.io", name="K").insert(tables)
    orders = [Order(account=acct.id, qty=i).insert(tables) for i in range(3)]  # type: ignore[arg-type]
    kept = Order(account=keep.id, qty=9).insert(tables)  # type: ignore[arg-type]
    for o in orders:
        OrderLine(order=o.id, sku="x").insert(tables)  # type: ignore[arg-type]
    OrderLine(order=kept.id, sku="y").insert(tables)  # type: ignore[arg-type]
    with pytest.raises(ForeignKeyViolationError):
        acct.delete(tables)
    assert acct.delete_cascade(tables) is True
    assert Account.count(tables) == 1
    assert [o.id for o in Order.find_all(tables)] == [kept.id]
    assert [line.sku for line in OrderLine.find_all(tables)] == ["y"]


def test_delete_cascade_follows_a_self_reference(tables: Database):
    """A tree stored with a self-referencing key is removed from the node down."""
    root = Node(label="root").insert(tables)
    child = Node(parent=root.id, label="child").insert(tables)
    Node(parent=child.id, label="grandchild").insert(tables)
    other = Node(label="other").insert(tables)
    assert root.delete_cascade(tables) is True
    assert [n.label for n in Node.find_all(tables)] == [other.label]


def test_delete_cascade_is_atomic(tables: Database, raw: psycopg.Connection[Any]):
    """If the cascade fails part way, nothing is deleted."""
    acct = Account(email="a@x.io", name="A").insert(tables)
    order = Order(account=acct.id, qty=1).insert(tables)  # type: ignore[arg-type]
    OrderLine(order=order.id, sku="x").insert(tables)  # type: ignore[arg-type]
    # A trigger that refuses to delete order lines makes the cascade fail at its first step.
    raw.execute(
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'refused'; END $$"
    )
    raw.execute(
        "CREATE TRIGGER no_delete BEFORE DELETE ON order_lines "
        "FOR EACH ROW EXECUTE FUNCTION refuse()"
    )
    with pytest.raises(Exception, match="refused"):
        acct.delete_cascade(tables)
    assert (Account.count(tables), Order.count(tables), OrderLine.count(tables)) == (1, 1, 1)


def test_upsert_returns_the_existing_key(tables: Database):
    """upsert on the unique key updates the stored row and hands back its key: one statement."""
    first = Account(email="a@x.io", name="A", balance=1).insert(tables)
    again = Account(email="a@x.io", name="A2", balance=2)
    with count_statements(tables) as log:
        again.upsert(tables)
    assert len(log) == 1
    assert again.id == first.id
    assert again.created_at == first.created_at
    stored = Account.find_by_id(first.id, tables)
    assert stored is not None
    assert (stored.name, stored.balance) == ("A2", 2)
    new = Account(email="b@x.io", name="B").upsert(tables)
    assert new.id not in (None, first.id)
    assert Account.count(tables) == 2


def test_upsert_on_a_composite_key(tables: Database):
    """A composite unique key is the conflict target of upsert."""
    Candle(symbol="BTC", ts=T0, close=1.0).insert(tables)
    updated = Candle(symbol="BTC", ts=T0, close=2.0).upsert(tables)
    assert updated.id == 1
    assert Candle.count(tables) == 1
    found = Candle.find_by_id(1, tables)
    assert found is not None
    assert found.close == 2.0


def test_upsert_needs_a_declared_key(tables: Database):
    """A model without a unique key refuses upsert before any SQL runs."""
    with pytest.raises(
        QueryError, match=r"has no unique key for upsert.*key=\[\.\.\.\].*upsert_key="
    ):
        Order(account="x", qty=1).upsert(tables)


def test_insert_or_update(tables: Database):
    """insert_or_update inserts without a key and updates by primary key with one."""
    pair = Pair(code="BTCUSD", base="BTC", quote="USD")
    pair.insert_or_update(tables)
    pair.quote = "USDT"
    pair.insert_or_update(tables)
    assert Pair.find_all(tables) == [Pair(code="BTCUSD", base="BTC", quote="USDT")]
    acct = Account(email="a@x.io", name="A").insert_or_update(tables)
    assert acct.id is not None
    acct.name = "B"
    acct.insert_or_update(tables)
    stored = Account.find_by_id(acct.id, tables)
    assert stored is not None
    assert stored.name == "B"


def test_unique_violation_names_column_and_value(tables: Database):
    """A duplicate unique value raises UniqueViolationError with the column and the value."""
    Account(email="a@x.io", name="A").insert(tables)
    with pytest.raises(UniqueViolationError) as info:
        Account(email="a@x.io", name="B").insert(tables)
    err = info.value
    assert err.sqlstate == "23505"
    assert err.column == "email"
    assert err.value == "a@x.io"
    assert err.table == "accounts"
    assert isinstance(err.__cause__, psycopg.errors.UniqueViolation)


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("name", "nul\x00here", "NUL"),
        ("name", 42, "expected str"),
        ("balance", "lots", "expected float"),
        ("note", "bad\udcff", "lone surrogate"),
        ("name", None, "NOT NULL; None given"),
    ],
)
def test_bad_values_write_nothing(tables: Database, field: str, value: Any, reason: str):
    """A bad value raises ValidationError naming table, column and value; nothing is written."""
    acct = Account(email="a@x.io", name="A")
    setattr(acct, field, value)
    with count_statements(tables) as log, pytest.raises(ValidationError, match=reason) as info:
        acct.insert(tables)
    assert len(log) == 0
    assert info.value.table == "accounts"
    assert info.value.column == field
    assert Account.count(tables) == 0


def test_naive_datetime_and_big_int_are_refused(tables: Database):
    """A naive datetime and an int beyond BIGINT are refused before any SQL runs."""
    with pytest.raises(ValidationError, match="naive datetime"):
        Candle(symbol="X", ts=dt.datetime(2024, 1, 1), close=1.0).insert(tables)  # noqa: DTZ001
    with pytest.raises(ValidationError, match="BIGINT"):
        Order(account="x", qty=2**63).insert(tables)
    assert (Candle.count(tables), Order.count(tables)) == (0, 0)


def test_with_table_twins_use_the_other_table(tables: Database):
    """The _with_table twins read and write a table of another name with the same model."""
    Migrations.init(tables, [migration(Account, "accounts_archive")])
    acct = Account(email="a@x.io", name="A").insert_with_table(tables, "accounts_archive")
    assert Account.count(tables) == 0
    assert Account.count_with_table(tables, "accounts_archive") == 1
    assert Account.exists_with_table(tables, "accounts_archive")
    assert not Account.exists(tables)
    assert Account.find_by_id_with_table(acct.id, tables, "accounts_archive") == acct
    acct.name = "B"
    acct.update_with_table(tables, "accounts_archive")
    acct.upsert_with_table(tables, "accounts_archive")
    acct.insert_or_update_with_table(tables, "accounts_archive")
    assert [a.name for a in Account.find_all_with_table(tables, "accounts_archive")] == ["B"]
    assert acct.delete_cascade_with_table(tables, "accounts_archive")
    assert not acct.delete_with_table(tables, "accounts_archive")


def test_bad_table_names_are_refused(tables: Database):
    """A table name that is not a PostgreSQL identifier is refused before any SQL runs."""
    for bad in ("", "x" * 64, "a\x00b"):
        with pytest.raises(ValidationError, match="table"):
            Account.count_with_table(tables, bad)


def test_db_must_be_a_session(tables: Database):
    """Passing something other than a Database or Transaction is a clear error."""
    with pytest.raises(ValidationError, match="db must be a Database or a Transaction"):
        Account.count("postgresql://")  # type: ignore[call-overload]


def test_metadata_helpers():
    """orso's generated metadata helpers answer from the model."""
    assert Account.table_name() == "accounts"
    assert Account.primary_key_field() == "id"
    assert Account.unique_fields() == ["email"]
    assert Account.created_at_field() == "created_at"
    assert Account.updated_at_field() == "updated_at"
    assert Order.created_at_field() is None
    assert Account.field_names()[:3] == ["id", "email", "name"]
    assert Pair(code="x", base="a", quote="b").get_primary_key() == "x"
    assert Account.orso_meta().name == "accounts"


@table("crud_symbols")
class Symbol(Orso):
    code: str = column(primary_key=True)
    name: str


def test_upsert_on_a_natural_primary_key(db: Database):
    """A model whose only key is a natural primary key upserts on it, singly and in batches."""
    create_tables(db, Symbol)
    Symbol(code="BTC", name="bitcoin").upsert(db)
    Symbol(code="BTC", name="Bitcoin").upsert(db)
    Symbol.batch_upsert([Symbol(code="BTC", name="BTC"), Symbol(code="ETH", name="ether")], db)
    assert [(s.code, s.name) for s in Symbol.find_all(db)] == [("BTC", "BTC"), ("ETH", "ether")]
