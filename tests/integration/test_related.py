"""load_related: one statement per relation, and the same answer as the N+1 loop it replaces."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orso_pg import (
    Database,
    Filter,
    JoinType,
    Orso,
    QueryBuilder,
    QueryError,
    Sort,
    ValidationError,
    column,
    table,
)
from tests.conftest import Server, isolated_schema
from tests.helpers import count_statements, create_tables


@table("r_instruments")
class Instrument(Orso):
    id: int | None = column(primary_key=True, default=None)
    symbol: str = column(unique=True)


@table("r_instruments_by_symbol")
class Listing(Orso):
    symbol: str | None = column(primary_key=True, default=None)
    venue: str = "x"


@table("r_trades")
class Trade(Orso):
    id: int | None = column(primary_key=True, default=None)
    instrument: int | None = column(ref=Instrument, default=None)
    quote: str | None = column(ref="r_instruments_by_symbol", default=None)
    qty: int = 0


@table("r_transfers")
class Transfer(Orso):
    id: int | None = column(primary_key=True, default=None)
    source: int = column(ref=Instrument)
    target: int = column(ref="r_instruments")


@table("r_keyless")
class Keyless(Orso):
    instrument: int = column(ref=Instrument)


def _world(
    db: Database, links: list[int | None], n_instruments: int
) -> tuple[list[Any], list[Any]]:
    instruments = [Instrument(symbol=f"S{i}").insert(db) for i in range(n_instruments)]
    trades = [
        Trade(instrument=None if link is None else instruments[link].id, qty=q).insert(db)
        for q, link in enumerate(links)
    ]
    return instruments, trades


def test_parents_in_one_statement(db: Database):
    """Trade.load_related(trades, "instrument") is one SELECT and matches find_by_id per trade."""
    create_tables(db, Instrument, Listing, Trade)
    _, trades = _world(db, [0, 1, 0, None, 2], 3)
    with count_statements(db) as log:
        parents = Trade.load_related(trades, "instrument", db)
    assert len(log) == 1
    assert "= ANY(" in log.texts()[0]
    n_plus_one = {
        t.id: None if t.instrument is None else Instrument.find_by_id(t.instrument, db)
        for t in trades
    }
    assert parents == n_plus_one
    assert parents[trades[3].id] is None


def test_children_in_one_statement(db: Database):
    """Instrument.load_related(instruments, Trade) is one SELECT and matches find_by_field."""
    create_tables(db, Instrument, Listing, Trade)
    instruments, _ = _world(db, [0, 1, 0, None, 0], 4)
    with count_statements(db) as log:
        children = Instrument.load_related(instruments, Trade, db)
    assert len(log) == 1
    n_plus_one = {
        i.id: sorted(Trade.find_by_field("instrument", i.id, db), key=lambda t: t.id or 0)
        for i in instruments
    }
    assert children == n_plus_one
    assert [len(children[i.id]) for i in instruments] == [3, 1, 0, 0]


def test_nothing_to_load_runs_nothing(db: Database):
    """No instances, or none holding a reference, means no statement and empty answers."""
    create_tables(db, Instrument, Listing, Trade)
    orphan = Trade(qty=1).insert(db)
    with count_statements(db) as log:
        assert Trade.load_related([], "instrument", db) == {}
        assert Trade.load_related([orphan], "instrument", db) == {orphan.id: None}
        assert Instrument.load_related([], Trade, db) == {}
    assert len(log) == 0


def test_string_references_and_non_key_columns(db: Database):
    """A ref= by table name is followed through the registry, to whatever column it names."""
    create_tables(db, Instrument, Listing, Trade)
    btc = Listing(symbol="BTC", venue="a").insert(db)
    eth = Listing(symbol="ETH", venue="b").insert(db)
    trades = [Trade(quote="BTC").insert(db), Trade(quote="ETH").insert(db), Trade().insert(db)]
    parents = Trade.load_related(trades, "quote", db)
    assert [parents[t.id] for t in trades] == [btc, eth, None]
    children = Listing.load_related([btc, eth], Trade, db)
    assert {k: [t.id for t in v] for k, v in children.items()} == {
        "BTC": [trades[0].id],
        "ETH": [trades[1].id],
    }


def test_several_references_need_field(db: Database):
    """A child referencing the parent twice needs field=, which must be one of them."""
    create_tables(db, Instrument, Listing, Trade, Transfer)
    a, b = Instrument(symbol="A").insert(db), Instrument(symbol="B").insert(db)
    assert a.id is not None
    assert b.id is not None
    moves = [Transfer(source=a.id, target=b.id).insert(db), Transfer(source=a.id, target=a.id)]
    moves[1].insert(db)
    with pytest.raises(QueryError, match="several fields"):
        Instrument.load_related([a, b], Transfer, db)
    by_source = Instrument.load_related([a, b], Transfer, db, field="source")
    by_target = Instrument.load_related([a, b], Transfer, db, field="target")
    assert [len(by_source[a.id]), len(by_source[b.id])] == [2, 0]
    assert [len(by_target[a.id]), len(by_target[b.id])] == [1, 1]
    with pytest.raises(QueryError, match="does not reference"):
        Instrument.load_related([a], Trade, db, field="quote")


def test_bad_calls_are_refused(db: Database):
    """Wrong fields, models and instances are named in the error, before any statement."""
    create_tables(db, Instrument, Listing, Trade, Keyless)
    a = Instrument(symbol="A").insert(db)
    t = Trade(instrument=a.id).insert(db)
    with count_statements(db) as log:
        with pytest.raises(QueryError, match="holds no reference"):
            Trade.load_related([t], "qty", db)
        with pytest.raises(QueryError, match="nope"):
            Trade.load_related([t], "nope", db)
        with pytest.raises(QueryError, match="no field referencing"):
            Trade.load_related([t], Listing, db)
        with pytest.raises(QueryError, match="field= chooses"):
            Trade.load_related([t], "instrument", db, field="instrument")  # type: ignore[call-overload]
        with pytest.raises(QueryError, match="model class"):
            Trade.load_related([t], 3, db)  # type: ignore[call-overload]
        with pytest.raises(ValidationError, match="item 1 is a Instrument") as info:
            Trade.load_related([t, a], "instrument", db)  # type: ignore[list-item]
        assert info.value.position == 1
        with pytest.raises(ValidationError, match="iterable"):
            Trade.load_related("abc", "instrument", db)  # type: ignore[arg-type]
        with pytest.raises(QueryError, match="no primary key"):
            Keyless.load_related([Keyless(instrument=1)], "instrument", db)
        with pytest.raises(ValidationError, match="Database or a Transaction"):
            Trade.load_related([t], "instrument", object())  # type: ignore[call-overload]
    assert len(log) == 0


def test_inside_a_transaction(db: Database):
    """Related rows are read through the transaction, seeing its own writes."""
    create_tables(db, Instrument, Listing, Trade)
    with db.transaction() as tx:
        a = Instrument(symbol="A").insert(tx)
        t = Trade(instrument=a.id).insert(tx)
        assert Trade.load_related([t], "instrument", tx) == {t.id: a}
        assert Instrument.load_related([a], Trade, tx) == {a.id: [t]}


@given(
    links=st.lists(st.one_of(st.none(), st.integers(0, 4)), max_size=25),
    chosen=st.lists(st.integers(0, 4), max_size=8),
)
def test_related_rows_match_the_loop(server: Server, links: list[int | None], chosen: list[int]):
    """For any links and any (repeating) parents asked for, the answers equal the N+1 loops."""
    with isolated_schema(server) as name, Database(server.dsn, schema=name, max_size=2) as db:
        create_tables(db, Instrument, Listing, Trade)
        instruments, trades = _world(db, links, 5)
        with count_statements(db) as log:
            parents = Trade.load_related(trades, "instrument", db)
            asked = [instruments[i] for i in chosen]
            children = Instrument.load_related(asked, Trade, db)
        assert len(log) == int(any(t.instrument is not None for t in trades)) + int(bool(asked))
        assert parents == {
            t.id: None if t.instrument is None else Instrument.find_by_id(t.instrument, db)
            for t in trades
        }
        assert children == {
            i.id: sorted(Trade.find_by_field("instrument", i.id, db), key=lambda t: t.id or 0)
            for i in asked
        }


def test_join_returns_model_pairs(db: Database):
    """fetch_models: one statement, a (trade, instrument) pair per row; None for no match."""
    create_tables(db, Instrument, Listing, Trade)
    instruments, trades = _world(db, [0, None, 1], 2)
    q = (
        QueryBuilder(Trade)
        .join(Instrument, ("instrument", "id"), JoinType.LEFT, alias="i")
        .order_by(Sort.asc("id"))
    )
    with count_statements(db) as log:
        pairs = q.fetch_models(db)
    assert len(log) == 1
    assert pairs == [(trades[0], instruments[0]), (trades[1], None), (trades[2], instruments[1])]
    inner = (
        QueryBuilder(Trade)
        .join(Instrument, ("instrument", "id"))
        .where(Filter.eq("r_instruments.symbol", "S1"))
    )
    assert inner.fetch_models(db) == [(trades[2], instruments[1])]
    assert QueryBuilder(Instrument).order_by(Sort.asc("id")).fetch_models(db) == [
        (i,) for i in instruments
    ]
    with db.transaction() as tx:
        locked = q.for_update(of="r_trades").fetch_models(tx)
        assert [p[0] for p in locked] == trades
    with pytest.raises(QueryError, match="fetch_models loads whole rows"):
        QueryBuilder(Trade).select("qty").fetch_models(db)
    with pytest.raises(QueryError, match="transaction"):
        q.for_update().fetch_models(db)
