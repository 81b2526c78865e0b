"""orso_pg.testing.differences: what counts as the same value after a round trip."""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given, settings

from orso_pg.testing import differences, same_value, strategy
from tests.models import Compressed, Keyed, Order

UTC = dt.UTC


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (math.nan, float("nan")),
        (Decimal("NaN"), Decimal("-NaN")),
        (Decimal("1.0"), Decimal("1.00")),
        (
            dt.datetime(2024, 1, 1, 12, tzinfo=UTC),
            dt.datetime(2024, 1, 1, 13, tzinfo=dt.timezone(dt.timedelta(hours=1))),
        ),
        # 01:30 on this day happens twice in New York; fold=1 is the second, 06:30 UTC.
        (
            dt.datetime(2024, 11, 3, 1, 30, fold=1, tzinfo=ZoneInfo("America/New_York")),
            dt.datetime(2024, 11, 3, 6, 30, tzinfo=UTC),
        ),
        (np.array([1.0, np.nan]), np.array([1.0, np.nan])),
        ([1, [2.0, math.nan]], (1, (2.0, math.nan))),
        ({"a": [math.nan]}, {"a": [math.nan]}),
        (b"ab", memoryview(b"ab")),
        (None, None),
    ],
    ids=[
        "nan",
        "decimal-nan",
        "decimal-scale",
        "offsets",
        "fold",
        "array-nan",
        "nested",
        "dict",
        "bytes",
        "none",
    ],
)
def test_values_a_round_trip_may_produce_are_the_same(a: object, b: object):
    """NaN, Decimal scale, time zones, folds, arrays, containers and buffers compare as the same."""
    assert same_value(a, b)
    assert same_value(b, a)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (1.0, 2.0),
        (None, 0),
        (True, 1),
        (np.array([1, 2], dtype=np.int64), np.array([1, 2], dtype=np.int32)),
        (np.array([[1, 2]]), np.array([1, 2])),
        (np.array([1, 2]), [1, 2]),
        ([1, 2], [1, 2, 3]),
        ({"a": 1}, {"b": 1}),
        (dt.datetime(2024, 1, 1, tzinfo=UTC), dt.datetime(2024, 1, 1)),  # noqa: DTZ001
        (b"a", "a"),
    ],
    ids=[
        "float",
        "none",
        "bool-int",
        "dtype",
        "shape",
        "array-list",
        "length",
        "keys",
        "naive",
        "bytes-str",
    ],
)
def test_values_that_differ_are_not_the_same(a: object, b: object):
    """Different values, dtypes, shapes, lengths, keys and kinds are told apart."""
    assert not same_value(a, b)


def test_differences_names_each_differing_field():
    """Each differing field gets a line naming the model, the field and both values."""
    a = Keyed(symbol="BTC", venue="XN", seq=1, ratio=0.5)
    b = Keyed(symbol="BTC", venue="XL", seq=2, ratio=0.5)
    found = differences(a, b)
    assert found == [
        "Keyed.venue: expected 'XN', got 'XL'",
        "Keyed.seq: expected 1, got 2",
    ]
    assert differences(a, b, ignore=["venue", "seq"]) == []


def test_differences_compares_lists_position_by_position():
    """Lists are compared row by row, and a length mismatch is reported."""
    rows = [Keyed(symbol=s, venue="XN", seq=1) for s in ("A", "B")]
    other = [Keyed(symbol="A", venue="XN", seq=1), Keyed(symbol="C", venue="XN", seq=1)]
    assert differences(rows, other) == ["[1] Keyed.symbol: expected 'B', got 'C'"]
    assert differences(rows, rows[:1]) == ["expected 2 rows, got 1"]


def test_differences_reports_a_different_kind_of_value():
    """A model compared with another model or with a list gets one line saying so."""
    keyed = Keyed(symbol="A", venue="XN", seq=1)
    assert differences(keyed, Order(qty=1)) == [
        "expected a Keyed, got Order Order(id=None, symbol=None, qty=1)"
    ]
    assert differences([keyed], keyed)[0].startswith("expected [Keyed(")


@settings(max_examples=25, deadline=None)
@given(strategy(Compressed))
def test_an_instance_has_no_differences_from_a_copy_of_itself(row: Compressed):
    """Whatever is drawn, an instance matches a copy of its own values, NaN and arrays included."""
    copied = Compressed(
        values=row.values.copy(),
        ticks=list(row.ticks),
        prices=list(row.prices),
        cents=row.cents.copy(),
        rounded=list(row.rounded),
        spare=None if row.spare is None else row.spare.copy(),
    )
    assert differences(row, copied) == []
