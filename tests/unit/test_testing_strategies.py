"""orso_pg.testing's strategies without a database: validity, keys, overrides, shapes."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from decimal import Decimal
from typing import Any

import numpy as np
import pytest
from hypothesis import Phase, find, given, settings
from hypothesis import strategies as st

from orso_pg import Orso, QueryError, codec, column, table, table_of
from orso_pg._operations import row_values
from orso_pg.testing import arrays, batches, strategies_for, strategy, unique_keys
from tests.models import EVERY_MODEL, Compressed, Keyed, Narrowed, Nullable, Order, Scalars

MODEL_IDS = [m.__name__ for m in EVERY_MODEL]
# Searching, not shrinking: these tests ask whether something is drawn at all.
SEARCH = settings(max_examples=5_000, database=None, phases=[Phase.generate])


@table("rt_vectors")
class Embedding(Orso):
    id: int | None = column(primary_key=True, default=None)
    vec: list[float] = column(vector=3)


@pytest.mark.parametrize("model", [*EVERY_MODEL, Order, Embedding], ids=lambda m: m.__name__)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_every_drawn_value_passes_its_column_check(model: type[Orso], data: st.DataObject):
    """Every drawn instance passes the checks insert runs before any SQL (no ValidationError)."""
    instance = data.draw(strategy(model))
    names, values = row_values(table_of(model), None, instance)
    assert len(names) == len(values)


@settings(max_examples=40, deadline=None)
@given(strategy(Scalars))
def test_generated_keys_and_timestamps_are_left_to_the_server(scalars: Scalars):
    """The identity key and both timestamps are drawn as None, for the server to fill."""
    assert scalars.id is None
    assert scalars.created_at is None
    assert scalars.updated_at is None
    assert scalars.at.tzinfo is not None


def test_nullable_columns_are_sometimes_none_and_sometimes_not():
    """A nullable column is drawn both as None and as a value."""
    drawn = strategy(Nullable)
    assert find(drawn, lambda n: n.amount is None, settings=SEARCH).amount is None
    assert find(drawn, lambda n: n.amount is not None, settings=SEARCH).amount is not None


def test_a_nullable_foreign_key_is_none_unless_overridden():
    """A drawn row does not reference rows that do not exist; an override sets the reference."""
    assert find(strategy(Order), lambda _: True, settings=SEARCH).symbol is None
    assert find(strategy(Order, symbol="BTC"), lambda _: True, settings=SEARCH).symbol == "BTC"


def canonical(value: Any) -> Any:
    """How PostgreSQL's unique index compares floats: NaN equals NaN, -0.0 equals 0.0."""
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    return value


@settings(max_examples=60, deadline=None)
@given(batches(Keyed, 0, 25))
def test_batches_keep_every_unique_key_distinct(rows: list[Keyed]):
    """Within a batch, the key, unique columns, composite keys and unique indexes never clash."""
    symbols = [r.symbol for r in rows]
    assert len(set(symbols)) == len(symbols)
    isins = [r.isin for r in rows if r.isin is not None]
    assert len(set(isins)) == len(isins)
    pairs = [(r.venue, r.seq) for r in rows]
    assert len(set(pairs)) == len(pairs)
    ratios = [canonical(r.ratio) for r in rows]
    assert len(set(ratios)) == len(ratios)


def test_unique_keys_lists_key_columns_composites_and_unique_indexes():
    """unique_keys names the primary key, unique columns, composite keys and unique indexes."""
    keys = unique_keys(table_of(Keyed))
    assert set(keys) == {("symbol",), ("isin",), ("venue", "seq"), ("ratio",)}


@settings(max_examples=40, deadline=None)
@given(batches(Scalars, 0, 8, unique_by=["number", ("side", "flag"), lambda s: s.blob[:1]]))
def test_unique_by_adds_keys_of_every_form(rows: list[Scalars]):
    """unique_by takes a field name, a tuple of names and a function, each kept distinct."""
    for key in (lambda s: s.number, lambda s: (s.side, s.flag), lambda s: s.blob[:1]):
        values = [key(r) for r in rows]
        assert len(set(values)) == len(values)  # (side, flag) has four values, so rows <= 4


@settings(max_examples=30, deadline=None)
@given(strategy(Keyed, venue="XN", seq=st.integers(1, 3)))
def test_overrides_take_values_and_strategies(keyed: Keyed):
    """An override may be a plain value or a strategy; both replace the derived one."""
    assert keyed.venue == "XN"
    assert keyed.seq in (1, 2, 3)


def test_an_override_of_an_unknown_field_names_the_columns():
    """Overriding a field the model lacks raises QueryError listing the real columns."""
    with pytest.raises(QueryError, match=r"no column 'sybmol'.*symbol"):
        strategy(Keyed, sybmol="x")


@settings(max_examples=20, deadline=None)
@given(strategy(Keyed).map(lambda k: (k.symbol, k)))
def test_map_works_as_on_any_strategy(pair: tuple[str, Keyed]):
    """strategy(Model).map(...) applies the function to each drawn instance."""
    symbol, keyed = pair
    assert symbol == keyed.symbol


def test_strategies_for_gives_a_fresh_dict_in_column_order():
    """strategies_for maps every column to a strategy, and changing the dict changes nothing."""
    fields = strategies_for(Keyed)
    assert list(fields) == [c.name for c in table_of(Keyed).columns]
    fields["symbol"] = st.just("X")
    assert find(strategies_for(Keyed)["symbol"], lambda s: s != "X", settings=SEARCH) != "X"


@settings(max_examples=60, deadline=None)
@given(strategy(Narrowed))
def test_sql_types_narrow_what_is_drawn(row: Narrowed):
    """varchar(n), char(n), numeric(p, s), smallint, integer, real and the fractional digits
    of timestamp(p), time(p) and interval(p) limit the drawn values."""
    assert len(row.code) <= 12
    assert len(row.iso) == 3
    assert all(len(tag) <= 5 for tag in row.tags)
    assert -(2**15) <= row.small < 2**15
    assert -(2**31) <= row.medium < 2**31
    assert abs(row.bounded) < 10**5
    assert row.money == row.money.quantize(Decimal("0.01"))
    assert abs(row.money) < Decimal(10) ** 10
    assert row.whole == row.whole.to_integral_value()
    assert math.isnan(row.single) or float(np.float32(row.single)) == row.single
    assert (
        row.moment.microsecond % 1000,
        row.clock.microsecond,
        row.span.microseconds % 10_000,
    ) == (
        0,
        0,
        0,
    )


@settings(max_examples=60, deadline=None)
@given(strategy(Compressed))
def test_lossy_columns_get_values_they_keep_exactly(row: Compressed):
    """A decimals=N column draws floats of N places, which its lossy codec returns unchanged."""
    cents = codec.decode(codec.encode(row.cents, decimals=2))
    assert cents.tobytes() == row.cents.tobytes()
    rounded = codec.decode(codec.encode(np.asarray(row.rounded, dtype=np.float64), decimals=4))
    assert rounded.tolist() == row.rounded


def is_sorted_timestamps(a: np.ndarray) -> bool:
    return (
        a.dtype == np.int64 and a.size >= 50 and bool(np.all(np.diff(a) >= 0)) and a.min() > 10**12
    )


def has_two_decimal_prices(a: np.ndarray) -> bool:
    if a.dtype != np.float64 or a.ndim != 1 or a.size < 50 or not np.all(np.isfinite(a)):
        return False
    with np.errstate(over="ignore"):  # rounding huge noise overflows; such arrays are no prices
        two_places = bool(np.all(np.round(a, 2) == a))
    return len(np.unique(a)) > 10 and two_places and a.min() > 0


def is_random_walk(a: np.ndarray) -> bool:
    if a.dtype != np.int64 or a.ndim != 1 or a.size < 50:
        return False
    steps = np.diff(a)
    return bool(np.any(steps > 0) and np.any(steps < 0) and np.abs(steps).max() <= 1_000)


@pytest.mark.parametrize(
    "shape",
    [is_sorted_timestamps, has_two_decimal_prices, is_random_walk],
    ids=["timestamps", "prices", "walk"],
)
def test_compressed_arrays_include_market_shapes(shape: Any):
    """Compressed ndarray columns draw sorted timestamps, two-decimal prices and random walks."""
    found = find(arrays.compressed_arrays(), shape, settings=SEARCH)
    assert shape(found)


def test_compressed_arrays_include_several_dimensions_and_every_dtype():
    """Besides series, white-noise arrays of every codec dtype and up to three dimensions appear."""
    drawn = arrays.compressed_arrays()
    assert find(drawn, lambda a: a.ndim == 3, settings=SEARCH).ndim == 3
    for dtype in arrays.CODEC_DTYPES:

        def of_dtype(a: np.ndarray, want: np.dtype[Any] = dtype) -> bool:
            return a.dtype == want

        assert find(drawn, of_dtype, settings=SEARCH).dtype == dtype


def test_importing_orso_pg_and_the_plugin_needs_no_hypothesis():
    """orso_pg, orso_pg.testing and its pytest plugin import where hypothesis is missing."""
    script = textwrap.dedent(
        """
        import sys

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name == "hypothesis" or name.startswith("hypothesis."):
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)

        sys.meta_path.insert(0, Block())
        import orso_pg
        import orso_pg.testing
        import orso_pg.testing.plugin
        from orso_pg.testing import differences, fresh_tables, migrate
        assert "hypothesis" not in sys.modules
        try:
            orso_pg.testing.strategy
        except ModuleNotFoundError as exc:
            print("strategy needs", exc.name)
        """
    )
    done = subprocess.run(  # noqa: S603 - this interpreter running the script above
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "strategy needs hypothesis"
