"""A held connection: Database semantics per call, without a pool checkout per call."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from orso_pg import (
    ConnectionLostError,
    Database,
    Filter,
    Held,
    Orso,
    QueryError,
    UniqueViolationError,
    column,
    table,
)
from tests.conftest import Server
from tests.helpers import assert_pool_clean, create_tables


@table("h_items")
class Item(Orso):
    id: int | None = column(primary_key=True, default=None)
    name: str = column(unique=True)
    qty: int = 0


def test_calls_on_a_held_connection_commit_one_by_one(db: Database, raw: psycopg.Connection[Any]):
    """Every call commits at once (seen from elsewhere); the pool is asked once."""
    create_tables(db, Item)
    requests = db.pool_stats().get("requests_num", 0)
    with db.hold() as h:
        assert isinstance(h, Held)
        assert "open" in repr(h)
        first = Item(name="a", qty=1).insert(h)
        assert raw.execute("SELECT count(*) FROM h_items").fetchone() == (1,)
        with pytest.raises(UniqueViolationError):
            Item(name="a").insert(h)
        Item(name="b", qty=2).insert(h)  # the failed call left nothing open
        assert Item.find_by_id(first.id, h) == first
        assert Item.count(h) == 2
        Item.batch_insert([Item(name=f"n{i}") for i in range(3)], h)  # several statements
        assert [i.name for i in Item.stream_where(Filter.eq("qty", 0), h)] == ["n0", "n1", "n2"]
        assert Item(id=first.id, name="a").delete_cascade(h)
    assert db.pool_stats().get("requests_num", 0) - requests <= 4  # hold, the stream, batch
    assert "closed" in repr(h)
    with pytest.raises(QueryError, match="given back"):
        Item.count(h)
    assert_pool_clean(db)


def test_a_held_connection_that_died_is_replaced(
    server: Server, schema: str, raw: psycopg.Connection[Any]
):
    """A read is retried on a live connection; a write says it failed, and the next call works."""
    name = f"orso_pg_held_{schema}"
    kill = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s"
    with Database(server.dsn, schema=schema, max_size=2, application_name=name) as db:
        create_tables(db, Item)
        with db.hold() as h:
            Item(name="a").insert(h)
            raw.execute(kill, (name,))
            assert Item.count(h) == 1  # retried
            raw.execute(kill, (name,))
            with pytest.raises(ConnectionLostError):
                Item(name="b").insert(h)
            assert Item(name="c").insert(h).id is not None
        assert sorted(i.name for i in Item.find_all(db)) == ["a", "c"]
