"""Hypothesis strategies of numeric arrays shaped like market data, for array columns.

Owns the arrays drawn for ``compress=True`` columns (``np.ndarray``, ``list[int]``,
``list[float]``) and for native ``NDArray[dtype]`` columns. White noise alone says little about
a delta codec, so besides hypothesis' own arrays (every dtype, edge values such as NaN, -0.0,
subnormals and integer extremes, several dimensions) it draws the series users store: random
walks, sorted timestamps, prices with two decimals, quantities in lots, constant runs, and
floats with missing values. It must not know about models or databases.

The market-like series are computed by numpy from a drawn seed and a few drawn parameters:
hypothesis still replays and shrinks them (towards shorter series and simpler parameters), and a
thousand-element series costs one draw instead of a thousand.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from orso_pg import codec

__all__ = [
    "CODEC_DTYPES",
    "compressed_arrays",
    "compressed_lists",
    "native_arrays",
    "series",
]

Array = np.ndarray[Any, Any]

#: Every dtype the codec stores, in native byte order (a big-endian array reads back native).
CODEC_DTYPES: Final = codec.SUPPORTED_DTYPES

_MAX_SERIES: Final = 400
# Hypothesis draws noise element by element: a few dozen values keep an example cheap.
_NOISE_SHAPES: Final = st.one_of(
    st.integers(0, 64).map(lambda n: (n,)),
    hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4),
)
# A decimals= column stores rint(x * 10**N) as int64; beyond 2**50 the product loses the units.
_MAX_SCALED: Final = 2**50
_EPOCH_MS: Final = (1_262_304_000_000, 1_893_456_000_000)  # 2010 .. 2030


@st.composite
def series(
    draw: st.DrawFn, dtype: np.dtype[Any] | type | str, max_size: int = _MAX_SERIES
) -> Array:
    """Draw a 1-D series of *dtype* shaped like market data (walks, timestamps, prices...)."""
    want = np.dtype(dtype)
    size = draw(st.integers(0, max_size))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if want.kind == "b":
        return rng.random(size) < draw(st.sampled_from((0.0, 0.05, 0.5, 1.0)))
    make: Callable[[st.DrawFn, np.random.Generator, int], Array]
    if want.kind in "iu":
        make = draw(st.sampled_from((_int_walk, _timestamps, _lots, _runs)))
        return make(draw, rng, size).astype(want)  # narrower dtypes wrap, as a counter would
    make = draw(st.sampled_from((_prices, _float_walk, _fractions, _with_gaps)))
    values = make(draw, rng, size)
    with np.errstate(over="ignore"):  # a price above 65504 is inf in float16, as it would be
        return values.astype(want)


def _int_walk(draw: st.DrawFn, rng: np.random.Generator, size: int) -> Array:
    start = draw(st.integers(-(10**12), 10**12))
    step = draw(st.sampled_from((1, 10, 1_000, 100_000)))
    return start + np.cumsum(rng.integers(-step, step + 1, size), dtype=np.int64)


def _timestamps(draw: st.DrawFn, rng: np.random.Generator, size: int) -> Array:
    start = draw(st.integers(*_EPOCH_MS))
    interval = draw(st.sampled_from((1, 1_000, 60_000, 86_400_000)))
    if draw(st.booleans()):  # bars on a fixed grid, a few missing
        grid = np.arange(size, dtype=np.int64) * interval
        missing = (rng.random(size) < 0.02).cumsum()  # noqa: PLR2004 - a few bars never traded
        shifted: Array = start + grid + interval * missing
        return shifted
    return start + np.cumsum(rng.integers(0, 2 * interval + 1, size), dtype=np.int64)


def _lots(draw: st.DrawFn, rng: np.random.Generator, size: int) -> Array:
    lot = draw(st.sampled_from((1, 100, 1_000)))
    return rng.integers(0, draw(st.sampled_from((10, 1_000, 10**6))), size) * lot


def _runs(draw: st.DrawFn, rng: np.random.Generator, size: int) -> Array:
    value = draw(st.integers(-(2**31), 2**31))
    flips = (rng.random(size) < draw(st.sampled_from((0.0, 0.01, 0.2)))).cumsum()
    return (value + flips % 2).astype(np.int64)


def _prices(draw: st.DrawFn, rng: np.random.Generator, size: int) -> Array:
    base = draw(st.floats(0.01, 100_000.0))
    vol = base * draw(st.sampled_from((0.0001, 0.001, 0.01)))
    return np.round(np.abs(base + np.cumsum(rng.normal(0.0, vol, size))), 2)


def _float_walk(draw: st.DrawFn, rng: np.random.Generator, size: int) -> Array:
    scale = draw(st.sampled_from((1e-6, 1.0, 1e6)))
    return np.cumsum(rng.standard_normal(size)) * scale


def _fractions(_draw: st.DrawFn, rng: np.random.Generator, size: int) -> Array:
    return rng.random(size)


def _with_gaps(draw: st.DrawFn, rng: np.random.Generator, size: int) -> Array:
    values = _prices(draw, rng, size)
    values[rng.random(size) < 0.05] = np.nan  # noqa: PLR2004 - missing quotes
    return values


def _noise(dtypes: st.SearchStrategy[np.dtype[Any]]) -> st.SearchStrategy[Array]:
    """Hypothesis' own arrays: edge values, any dtype, up to three dimensions."""
    return dtypes.flatmap(lambda dtype: hnp.arrays(dtype, _NOISE_SHAPES))


def _views(arrays: st.SearchStrategy[Array]) -> st.SearchStrategy[Array]:
    """Sometimes hand over a strided view instead of a contiguous array (what slicing gives)."""
    return st.tuples(arrays, st.sampled_from((False, False, False, True))).map(
        lambda pair: pair[0][::2] if pair[1] and pair[0].ndim == 1 else pair[0]
    )


def compressed_arrays(
    decimals: int | None = None, dtype: np.dtype[Any] | None = None
) -> st.SearchStrategy[Array]:
    """Arrays for an ``np.ndarray`` column with ``compress=True`` (and ``decimals=`` if set).

    With *dtype* (a column declared ``NDArray[dtype]``), every array has that dtype.
    """
    if decimals is not None:
        return _decimal_floats(decimals)
    dtypes = st.sampled_from(CODEC_DTYPES) if dtype is None else st.just(dtype)
    if dtype is not None:
        realistic = st.tuples(series(dtype), st.sampled_from((1, 1, 2, 10))).map(_levels)
        return _views(st.one_of(_noise(dtypes), realistic))
    # Market data is mostly int64 (times, sizes) and float64 (prices): those come first.
    kinds = st.one_of(series(np.int64), series(np.float64), dtypes.flatmap(series))
    realistic = st.tuples(kinds, st.sampled_from((1, 1, 2, 10))).map(_levels)
    return _views(st.one_of(_noise(dtypes), realistic))


def _levels(pair: tuple[Array, int]) -> Array:
    """Reshape a series into rows of *width* levels, as an order book snapshot is stored."""
    values, width = pair
    if width == 1:
        return values
    rows = len(values) // width
    return values[: rows * width].reshape(rows, width)


def compressed_lists(element: type, decimals: int | None = None) -> st.SearchStrategy[list[Any]]:
    """Lists for a ``list[int]`` or ``list[float]`` column with ``compress=True``."""
    if element is int:
        noise = st.lists(st.integers(-(2**63), 2**63 - 1))
        return st.one_of(noise, series(np.int64).map(lambda a: a.tolist()))
    if decimals is not None:
        return _decimal_floats(decimals).map(lambda a: a.tolist())
    noise_floats = st.lists(st.floats())
    return st.one_of(noise_floats, series(np.float64).map(lambda a: a.tolist()))


def _decimal_floats(decimals: int) -> st.SearchStrategy[Array]:
    """Float64 arrays whose values have at most *decimals* places: a lossy column keeps them."""
    scale = 10.0**decimals

    def from_units(units: Array) -> Array:
        return np.asarray(units, dtype=np.int64) / scale

    noise = st.lists(st.integers(-_MAX_SCALED, _MAX_SCALED)).map(np.array)
    walks = series(np.int64).map(lambda a: np.clip(a, -_MAX_SCALED, _MAX_SCALED))
    return st.one_of(noise, walks).map(from_units)


def native_arrays(dtype: np.dtype[Any], max_size: int = 24) -> st.SearchStrategy[Array]:
    """1-D arrays for a native ``NDArray[dtype]`` column (PostgreSQL arrays of that type)."""
    noise = hnp.arrays(dtype, st.integers(0, max_size))
    return st.one_of(noise, series(dtype, max_size=max_size))
