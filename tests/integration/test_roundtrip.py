"""Round trips of every supported type, drawn by orso_pg.testing's own strategies (dogfooding).

Each example gets empty tables from ``fresh_tables`` (a transaction rolled back at the end), so
examples never see each other's rows. Values are compared with ``differences`` (NaN equals NaN,
arrays by dtype, shape and values, datetimes by instant) and compressed arrays also byte for
byte, since the codec promises bit-exact round trips.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import psycopg
import pytest
from hypothesis import find, given, settings
from hypothesis import strategies as st

from orso_pg import CheckViolationError, Database, Filter, Orso, table_of
from orso_pg.testing import batches, differences, fresh_tables, strategy
from tests.models import EVERY_MODEL, Broken, Keyed, Order

ROUND_TRIP = settings(max_examples=20, deadline=None)
MODEL_IDS = [m.__name__ for m in EVERY_MODEL]


def server_filled(before: object) -> set[str]:
    """Return the columns *before* left to the server (generated keys, timestamps, defaults)."""
    meta = table_of(before)
    return {c.name for c in meta.columns if c.generated and getattr(before, c.name) is None}


def assert_stored(before: object, found: object | None, *, ignore: set[str] | None = None) -> None:
    """Assert *found* holds every value of *before* (compressed arrays byte for byte)."""
    assert found is not None
    skipped = server_filled(before) | (ignore or set())
    assert not differences(before, found, ignore=skipped)
    for col in table_of(before).columns:
        value = getattr(before, col.name)
        if col.type.compressed and isinstance(value, np.ndarray):
            stored = getattr(found, col.name)
            assert stored.dtype == value.dtype
            assert stored.shape == value.shape
            assert stored.tobytes() == np.ascontiguousarray(value).tobytes()


@pytest.mark.parametrize("model", EVERY_MODEL, ids=MODEL_IDS)
@ROUND_TRIP
@given(data=st.data())
def test_drawn_rows_insert_one_by_one_and_read_back_unchanged(
    db: Database, model: type[Orso], data: st.DataObject
):
    """Every instance of a drawn batch inserts without error and find_by_id returns its values."""
    rows = data.draw(batches(model, 1, 6), label="rows")
    before = [copy.copy(row) for row in rows]
    with fresh_tables(db, model) as tx:
        for row in rows:
            row.insert(tx)
        for drawn, row in zip(before, rows, strict=True):
            found = model.find_by_id(row.get_primary_key(), tx)
            assert_stored(drawn, found)
            assert not differences(row, found)  # insert wrote the stored row back
        assert model.count(tx) == len(rows)


@pytest.mark.parametrize("model", EVERY_MODEL, ids=MODEL_IDS)
@ROUND_TRIP
@given(data=st.data())
def test_drawn_batch_copies_in_and_reads_back_unchanged(
    db: Database, model: type[Orso], data: st.DataObject
):
    """A drawn batch goes in through batch_insert (COPY) and find_where returns every value."""
    rows = data.draw(batches(model, 1, 8), label="rows")
    before = [copy.copy(row) for row in rows]
    key = table_of(model).primary_key
    assert key is not None
    with fresh_tables(db, model) as tx:
        keys = model.batch_insert(rows, tx, returning="keys")
        stored = {
            row.get_primary_key(): row
            for row in model.find_where(Filter.in_values(key.name, keys), tx)
        }
        assert len(stored) == len(rows)
        for drawn, pk in zip(before, keys, strict=True):
            assert_stored(drawn, stored[pk])


@pytest.mark.parametrize("model", EVERY_MODEL, ids=MODEL_IDS)
@ROUND_TRIP
@given(data=st.data())
def test_drawn_values_survive_update(db: Database, model: type[Orso], data: st.DataObject):
    """A stored row updated with freshly drawn values reads back with exactly those values."""
    meta = table_of(model)
    first = data.draw(strategy(model), label="first")
    with fresh_tables(db, model) as tx:
        first.insert(tx)
        second = data.draw(strategy(model), label="second")
        for col in meta.columns:
            if col.primary_key or (col.generated and getattr(second, col.name) is None):
                object.__setattr__(second, col.name, getattr(first, col.name))
        before = copy.copy(second)
        second.update(tx)
        found = model.find_by_id(first.get_primary_key(), tx)
        updated = {meta.updated_at.name} if meta.updated_at else set()
        assert_stored(before, found, ignore=updated)
        assert not differences(second, found)


@ROUND_TRIP
@given(data=st.data())
def test_foreign_keys_are_left_unset_so_rows_insert_alone(db: Database, data: st.DataObject):
    """A drawn row with a nullable foreign key inserts without its parent; an override links it."""
    orders = data.draw(batches(Order, 1, 4))
    assert all(order.symbol is None for order in orders)
    with fresh_tables(db, Keyed, Order) as tx:
        parents = data.draw(batches(Keyed, 1, 3))
        for parent in parents:
            parent.insert(tx)
        symbols = st.sampled_from([p.symbol for p in parents])
        for order in [*orders, *data.draw(batches(Order, 1, 4, symbol=symbols))]:
            order.insert(tx)
        assert Order.count(tx) >= len(orders) + 1


# --- shrinking on a deliberately broken model ---------------------------------------------------


@pytest.fixture
def domains(db: Database, raw: psycopg.Connection[Any]) -> Database:
    """Create the CHECKed domains Broken is declared with, in the test's schema."""
    raw.execute("CREATE DOMAIN short_code AS text CHECK (length(VALUE) <= 3)")
    raw.execute("CREATE DOMAIN positive_qty AS bigint CHECK (VALUE > 0)")
    return db


def refused_by_server(db: Database, instance: Any) -> bool:
    """Return whether inserting *instance* breaks one of the domains' CHECKs."""
    with fresh_tables(db, Broken) as tx:
        try:
            copy.copy(instance).insert(tx)
        except CheckViolationError:
            return True
    return False


SHRINK = settings(max_examples=300, deadline=None, database=None)


def test_shrinking_finds_the_shortest_text_a_domain_refuses(domains: Database):
    """Hypothesis shrinks a text the domain refuses down to the boundary: four characters."""
    found = find(strategy(Broken, qty=1), lambda b: refused_by_server(domains, b), settings=SHRINK)
    assert found.code == "0000"
    assert found.qty == 1


def test_shrinking_finds_the_boundary_of_a_numeric_check(domains: Database):
    """Hypothesis shrinks a quantity the domain refuses down to zero, the smallest failure."""
    found = find(
        strategy(Broken, code="a"), lambda b: refused_by_server(domains, b), settings=SHRINK
    )
    assert found.qty == 0
