"""Tests of orso_pg.codec: bit-exact round trips, the lossy mode, and refusal of bad frames."""

from __future__ import annotations

import doctest
import math
import random
import struct
import tracemalloc
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from orso_pg import CompressionError, codec

DTYPES: list[np.dtype[Any]] = list(codec.SUPPORTED_DTYPES)
FLOATS: list[np.dtype[Any]] = [dt for dt in DTYPES if dt.kind == "f"]
HEADER = 40  # the fixed part of a format-1 frame


def assert_round_trip(values: np.ndarray, *, decimals: int | None = None, level: int = 1) -> bytes:
    """Encode and decode *values*; check dtype, shape, bytes and the input; return the frame."""
    before = values.tobytes()
    frame = codec.encode(values, decimals=decimals, level=level)
    assert values.tobytes() == before  # encode never modifies its input
    out = codec.decode(frame)
    native = values.dtype.newbyteorder("=")
    assert out.dtype == native
    assert out.shape == values.shape
    assert out.tobytes() == values.astype(native).tobytes()
    assert out.flags.c_contiguous
    assert out.flags.writeable
    return frame


def resign(frame: bytes | bytearray) -> bytes:
    """Return *frame* with its CRC recomputed, so that only the edited fields are wrong."""
    crc = zlib.crc32(frame[HEADER:], zlib.crc32(frame[:36]))
    return bytes(frame[:36]) + struct.pack("<I", crc) + bytes(frame[HEADER:])


def build_frame(
    *,
    dtype: int = 5,
    layout: int = 1,
    shape: tuple[int, ...] = (4,),
    order: int = 0,
    width: int = 8,
    decimals: int = 255,
    flags: int = 0,
    reference: int = 0,
    divisor: int = 1,
    seeds: tuple[int, ...] = (),
    payload: bytes = b"\x00\x01\x02\x03",
    version: int = 1,
) -> bytes:
    """Build a frame from the module docstring's table, independently of the encoder."""
    head = struct.pack(
        "<4s8BQqQ",
        b"OPGA",
        version,
        dtype,
        layout,
        len(shape),
        order,
        width,
        decimals,
        flags,
        len(payload),
        reference,
        divisor,
    )
    tail = struct.pack(f"<{len(shape)}Q{len(seeds)}q", *shape, *seeds) + payload
    return resign(head + b"\0\0\0\0" + tail)


def build_frame2(
    *,
    dtype: int = 5,
    model: int = 0,
    shape: tuple[int, ...] = (4,),
    places: int = 0,
    step: int | None = None,
    streams: tuple[dict[str, Any], ...] = ({},),
    raw: bytes | None = None,
    corrections: bool = False,
    byte6: int = 0,
    byte7: int = 0,
    tail: bytes = b"",
) -> bytes:
    """Build a format-2 frame from the module docstring's tables, every sized field 8 bytes."""
    fields = list(shape) + ([] if step is None else [step])
    head = struct.pack(
        "<4s4B",
        b"OPGA",
        2,
        dtype | model << 4,
        len(shape) | (64 if corrections else 0) | byte6,
        3 | places << 2 | byte7,
    ) + struct.pack(f"<{len(fields)}Q", *fields)
    payloads = b""
    if raw is not None:
        payloads, streams = raw, ()
    for stream in streams:
        payload = stream.get("payload", b"\0\1\2\3")
        order = stream.get("order", 0)
        divisor = stream.get("divisor")
        flags = (
            stream.get("layout", 1)
            | stream.get("mask", 0) << 2
            | order << 3
            | (32 if divisor is not None else 0)
            | stream.get("reserved", 0)
        )
        seeds = stream.get("seeds", ())
        head += bytes((flags, stream.get("width", 8), 0xFF))
        head += struct.pack(
            f"<Qq{'Q' if divisor is not None else ''}{len(seeds)}q",
            len(payload),
            stream.get("reference", 0),
            *([] if divisor is None else [divisor]),
            *seeds,
        )
        payloads += payload
    body = head + payloads + tail
    return body + struct.pack("<I", zlib.crc32(body))


def model_of(frame: bytes) -> int:
    """Return the model code of a format-2 frame (byte 5, high bits)."""
    return frame[5] >> 4


def streams_of(frame: bytes) -> list[Any]:
    """Return the parsed stream descriptors of a format-2 frame."""
    return list(codec._parse2(frame).packings)


@st.composite
def any_bits(draw: st.DrawFn) -> np.ndarray:
    """Arrays of every dtype holding arbitrary bit patterns (NaN payloads, -0.0, extremes)."""
    dtype = draw(st.sampled_from(DTYPES))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=9))
    if dtype.kind == "b":
        values = draw(hnp.arrays(dtype, shape))
    else:
        values = draw(hnp.arrays(np.dtype(f"u{dtype.itemsize}"), shape)).view(dtype)
    if values.ndim and draw(st.booleans()):  # a strided or reversed view of the first axis
        values = values[:: draw(st.sampled_from([2, 3, -1, -2]))]
    return values


@st.composite
def structured(draw: st.DrawFn) -> np.ndarray:
    """1-D arrays shaped like real series, to reach every packing path of the encoder."""
    dtype = draw(st.sampled_from(DTYPES))
    n = draw(st.integers(0, 400))
    spread = draw(st.sampled_from([0, 1, 3, 9, 15, 200, 70_000, 2**40, 2**62]))
    steps = draw(hnp.arrays(np.int64, n, elements=st.integers(-spread, spread)))
    if draw(st.booleans()):
        steps[draw(hnp.arrays(np.bool_, n))] = 0
    steps *= draw(st.sampled_from([1, 2, 10, 1000, 60_000, 10**6]))
    for _ in range(draw(st.integers(0, 2))):
        steps = np.cumsum(steps)
    values = steps + draw(st.integers(-(2**62), 2**62))
    if dtype.kind == "b":
        return np.asarray(values % 2 == 1)
    if dtype.kind == "f" and draw(st.booleans()):
        places = draw(st.integers(0, 4))
        return np.asarray(values % 60_000 / 10**places, dtype)
    return values.view(np.uint64).astype(f"u{dtype.itemsize}").view(dtype)


# --- round trips -----------------------------------------------------------------------------


@given(any_bits())
def test_round_trip_any_bits(values):
    """Every bit pattern of every dtype and shape comes back exactly."""
    assert_round_trip(values)


@given(structured())
def test_round_trip_structured(values):
    """Series with deltas, divisors, zeros and decimals come back exactly."""
    assert_round_trip(values)


@given(any_bits() | structured())
def test_encoding_is_deterministic(values):
    """The same values give the same bytes, whatever their memory layout."""
    assert codec.encode(values) == codec.encode(values.copy())
    assert codec.encode(values) == codec.encode(np.asfortranarray(values).reshape(values.shape))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_integer_extremes(dtype):
    """The smallest and largest values of each dtype survive every delta order."""
    edges: list[object]
    if dtype.kind == "f":
        floats = np.finfo(dtype)
        edges = [floats.min, floats.max, floats.tiny, floats.smallest_subnormal, 0.0, -0.0]
    elif dtype.kind == "b":
        edges = [True, False]
    else:
        ints = np.iinfo(dtype)
        edges = [ints.min, ints.max, 0, 1, ints.max - 1, ints.min + 1]
    base = np.array(edges, dtype)
    for pattern in (base, np.tile(base, 50), np.repeat(base, 50), np.sort(np.tile(base, 50))):
        assert_round_trip(pattern)


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
def test_special_floats(dtype):
    """NaN payloads, signed zeros, infinities and subnormals come back bit for bit."""
    bits = np.dtype(f"u{dtype.itemsize}")
    exponent = np.finfo(dtype).nexp
    mantissa = np.finfo(dtype).nmant
    quiet = ((1 << exponent) - 1) << mantissa | 1 << (mantissa - 1)
    nans = np.array([quiet, quiet | 1, quiet | 0x155, (1 << exponent) - 1 << mantissa | 1], bits)
    specials = np.concatenate(
        [
            nans.view(dtype),
            (nans | 1 << (8 * dtype.itemsize - 1)).view(dtype),
            np.array([0.0, -0.0, np.inf, -np.inf, np.finfo(dtype).smallest_subnormal], dtype),
        ]
    )
    assert_round_trip(specials)
    assert_round_trip(np.tile(specials, 100))
    prices = np.round(np.linspace(1, 100, 500), 2).astype(dtype)
    prices[7] = -0.0
    prices[99] = np.nan
    assert_round_trip(prices)


@pytest.mark.parametrize(
    "shape", [(), (0,), (0, 3), (3, 0), (1,), (2, 3), (4, 5, 6), (1, 1, 1, 1)], ids=str
)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_shapes(shape, dtype):
    """Scalars, empty arrays and N-dimensional arrays keep their shape."""
    values = np.arange(math.prod(shape)).astype(dtype).reshape(shape)
    assert_round_trip(values)


def test_memory_layouts():
    """Fortran order, strided views, big-endian and read-only inputs all round-trip."""
    grid = np.arange(600, dtype=np.int64).reshape(20, 30) * 7
    noise = np.random.default_rng(0).integers(-(2**63), 2**63 - 1, (100, 3), dtype=np.int64)
    for view in (noise[::2, 0], noise[:, 1], noise[::-1, 2], grid[:, 3], grid[::-4, 0]):
        assert_round_trip(view)  # 1-D strided views, raw and packed
    assert_round_trip(np.asfortranarray(grid))
    assert_round_trip(grid[::3, ::-2])
    assert_round_trip(grid.T)
    assert_round_trip(grid.astype(">i8"))
    assert_round_trip(np.linspace(0, 1, 77).astype(">f4"))
    frozen = grid.copy()
    frozen.flags.writeable = False
    before = frozen.tobytes()
    assert_round_trip(frozen)
    assert frozen.tobytes() == before


class _Subclass(np.ndarray):
    """An ndarray subclass, standing in for np.matrix and np.memmap."""


def test_ndarray_subclasses_encode_as_plain_arrays():
    """A subclass of ndarray keeps its shape and decodes as a plain ndarray."""
    values = np.arange(6.0).reshape(2, 3).view(_Subclass)
    out = codec.decode(codec.encode(values))
    assert type(out) is np.ndarray
    assert out.shape == (2, 3)
    assert out.tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]


def test_bool_views_are_stored_as_zero_and_one():
    """A bool array viewed from other bytes stores its truth values, as numpy reads them."""
    odd = np.array([0, 1, 2, 255], np.uint8).view(bool)
    assert codec.decode(codec.encode(odd)).tolist() == [False, True, True, True]
    assert codec.decode(codec.encode(np.repeat(odd, 100))).view(np.uint8).max() == 1


def test_decode_accepts_any_contiguous_buffer_view():
    """Memoryviews of other item sizes decode; non-contiguous ones raise CompressionError."""
    values = next(
        values
        for values in (np.arange(0, 5 * k, 5) for k in (10, 1000, 100_000, 10**7))
        if len(codec.encode(values)) % 4 == 0
    )
    frame = codec.encode(values)
    assert (codec.decode(np.frombuffer(frame, np.uint32).data) == values).all()
    with pytest.raises(CompressionError, match="memoryview"):
        codec.decode(memoryview(frame + frame)[::2])


def test_decode_returns_a_fresh_array():
    """Decoding gives an array that owns writable memory, unrelated to the frame."""
    frame = codec.encode(np.arange(10_000, dtype=np.int64))
    out = codec.decode(bytearray(frame))
    out[:] = 0
    assert (codec.decode(memoryview(frame)) == np.arange(10_000)).all()


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 100, 5000, 70_000, 300_000])
def test_sizes_and_paths(n):
    """Arrays from one element to the large-array code paths round-trip."""
    rng = np.random.default_rng(n)
    walk = np.cumsum(rng.integers(-3, 4, n)) * 1_000_000
    assert_round_trip(walk)
    assert_round_trip(walk / 1e8)
    assert_round_trip(np.where(rng.random(n) < 0.7, 0, rng.integers(0, 2**20, n)))
    assert_round_trip(5_000_000_000 + np.cumsum(rng.geometric(0.8, n)))
    assert_round_trip(rng.standard_normal(n).cumsum())
    assert_round_trip(rng.integers(0, 2, n).astype(bool))


@pytest.mark.parametrize("level", [1, 3, 9, 19])
def test_levels(level):
    """Every zstd level decodes with the same decoder."""
    values = np.cumsum(np.random.default_rng(0).integers(0, 50, 20_000))
    assert_round_trip(values, level=level)


def test_regular_series_compress_to_the_header():
    """A constant step stores only the header, the length, the step and one seed."""
    minutes = np.arange(1_700_000_000_000, 1_700_000_000_000 + 60_000 * 10**5, 60_000)
    frame = codec.encode(minutes)
    # head 8, length 4, stream 3 + payload length 1 + reference 4 + seed 8, CRC 4
    assert len(frame) == 8 + 4 + 3 + 1 + 4 + 8 + 4
    hand_built = build_frame2(
        shape=(10**5,),
        streams=({"order": 1, "width": 0, "reference": 60_000, "seeds": (minutes[0],),
                  "payload": b""},),
    )  # fmt: skip
    assert (codec.decode(hand_built) == minutes).all()
    assert len(codec.encode(minutes[:500])) == 8 + 2 + 3 + 1 + 4 + 8 + 4


def test_decimal_prices_are_stored_as_integers():
    """Two-decimal float prices compress like integer ticks."""
    ticks = 3_000_000 + np.cumsum(np.random.default_rng(1).integers(-50, 51, 10_000))
    frame = codec.encode(ticks / 100)
    assert model_of(frame) == 1  # decimals
    assert frame[7] >> 2 == 2  # places
    assert len(frame) < len(codec.encode(ticks * 1.0000001))
    assert_round_trip(ticks / 100)


def test_floats_needing_ever_more_places_keep_their_bits():
    """Floats whose decimal places the samples keep underestimating are stored as float bits."""
    values = np.round(np.random.default_rng(4).uniform(0, 100, 10_000), 2)
    for places, block in enumerate(range(100, 500, 100), start=3):
        values[block : block + 100] = np.round(values[block : block + 100] + 0.1**places, places)
    values[::156] = 1.5  # what the first sample sees
    frame = assert_round_trip(values)
    assert model_of(frame) in {0, 1}  # float bits, or decimals with corrections
    assert len(frame) < len(codec.encode(values * 1.0000001))
    values[100:500] = 2.5
    exact = assert_round_trip(values)
    assert (model_of(exact), exact[7] >> 2, exact[6] & 64) == (1, 2, 0)


def test_common_divisor_found_beyond_the_sample():
    """A divisor the spread-out sample overestimates is corrected by the other values."""
    lots = np.random.default_rng(6).integers(0, 10**6, 10_000) * 1000
    lots[5] = 1_000_070  # not a sampled position: the whole array's divisor is 10
    out = codec.decode(frame := codec.encode(lots))
    assert (out == lots).all()
    assert streams_of(frame)[0].divisor == 10
    lots[5] = 1_000_007  # now nothing but 1 divides everything
    assert streams_of(assert_round_trip(lots))[0].divisor == 1


@pytest.mark.parametrize("order", [0, 1, 2])
def test_large_arrays_are_delta_coded_block_by_block(order):
    """Arrays longer than a block give the same residuals as one pass over the whole array."""
    rng = np.random.default_rng(order)
    steps = rng.integers(-3, 4, 100_000)
    values = (
        steps if order == 0 else np.cumsum(steps) if order == 1 else np.cumsum(np.cumsum(steps))
    )
    values = values * 12 + 5
    values[-1] += 4  # a residual the sample and the prefix miss: the divisor drops to 4
    stream = streams_of(assert_round_trip(values))[0]
    assert (stream.order, stream.divisor) == (order, 4)
    small = streams_of(assert_round_trip(values[-20_000:]))[0]  # one block, same residuals
    assert small.order == order


@pytest.mark.parametrize(("late", "divisor"), [(3, 3), (10, 5), (16, 1)])
def test_gcd_fallback_narrows_the_quotients(late, divisor):
    """A divisor refuted past the sample and prefix is brought down, quotients narrowed."""
    values = np.random.default_rng(9).integers(0, 3_000, 100_000) * 15
    values[-1] = late
    frame = assert_round_trip(values)
    assert streams_of(frame)[0].divisor == divisor


def test_decimals_missed_after_the_first_block():
    """Values that need more places late in a large array are found and sampled."""
    ticks = 3_000_000 + np.cumsum(np.random.default_rng(10).integers(-50, 51, 100_000))
    prices = ticks / 100
    prices[70_000:70_100] += 0.001  # three places, beyond the first block
    frame = assert_round_trip(prices)
    assert model_of(frame) == 1  # decimals: three places, or two with corrections
    prices[50_000::7] = np.pi  # more misses than a sample: not decimals at all
    assert_round_trip(prices)


def test_zero_mask_choice_on_large_arrays():
    """Large arrays pick the zero mask from a prefix, or from a full trial when it is tiny."""
    rng = np.random.default_rng(8)
    n = 300_000
    repeats = np.cumsum(np.where(rng.random(n) < 0.4, 0, rng.integers(1, 90_000, n)))
    assert streams_of(assert_round_trip(repeats))[0].flags == 1
    rare_gaps = np.cumsum(np.where(rng.random(n) < 0.9999, 60, 600))
    assert streams_of(assert_round_trip(rare_gaps))[0].flags in {0, 1}
    steps = np.cumsum(np.where(rng.random(n) < 0.6, 0, rng.integers(-3, 4, n)))
    assert streams_of(assert_round_trip(steps))[0].flags == 0


def test_incompressible_data_grows_by_the_header_at_most():
    """Random bytes never cost more than the header and the shape."""
    rng = np.random.default_rng(7)
    for dtype in DTYPES:
        for n in (0, 1, 2, 7, 100, 1000, 10_000):
            raw = rng.integers(0, 256, n * dtype.itemsize, dtype=np.uint8)
            values = raw.astype(bool) if dtype.kind == "b" else raw.view(dtype)
            assert len(assert_round_trip(values)) <= values.nbytes + HEADER + 8


# --- input handling --------------------------------------------------------------------------


def test_lists_of_ints_and_floats():
    """Python int lists become int64 and float lists float64."""
    ints = codec.decode(codec.encode([1, -2, 3, 2**62]))
    assert ints.dtype == np.int64
    assert ints.tolist() == [1, -2, 3, 2**62]
    floats = codec.decode(codec.encode([0.1, -0.0, float("inf"), 1e300]))
    assert floats.dtype == np.float64
    assert floats.tobytes() == np.array([0.1, -0.0, float("inf"), 1e300]).tobytes()
    assert codec.decode(codec.encode((1.5, 2))).tolist() == [1.5, 2.0]
    assert codec.decode(codec.encode([])).size == 0


@pytest.mark.parametrize(
    "value",
    [
        [True, False],
        ["a", "b"],
        [1, "a"],
        [2**64],
        [-1, 2**63],
        [[1, 2], [3, 4]],
        [[1], [1, 2]],
        [None],
        "123",
        b"123",
        {"a": 1},
        None,
        3,
        np.array(["x"]),
        np.array([1 + 2j]),
        np.array([1], dtype="datetime64[s]"),
        np.array([object()]),
        np.ma.masked_array([1, 2], mask=[False, True]),
        np.zeros((1,) * 33),
    ],
    ids=repr,
)
def test_unsupported_input_is_refused(value):
    """Anything but a numeric array or a flat int or float list raises CompressionError."""
    with pytest.raises(CompressionError):
        codec.encode(value)


def test_numpy_scalars_are_arrays_of_shape_empty():
    """A numpy scalar encodes as a 0-dimensional array."""
    out = codec.decode(codec.encode(np.float32(2.5)))
    assert out.shape == ()
    assert out.dtype == np.float32


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"level": 0}, "level"),
        ({"level": 23}, "level"),
        ({"level": True}, "level"),
        ({"level": 1.0}, "level"),
        ({"decimals": -1}, "decimals"),
        ({"decimals": 19}, "decimals"),
        ({"decimals": 2.0}, "decimals"),
    ],
    ids=repr,
)
def test_bad_options_are_refused(options, match):
    """Out-of-range levels and decimals raise CompressionError."""
    with pytest.raises(CompressionError, match=match):
        codec.encode(np.arange(3.0), **options)


# --- lossy mode ------------------------------------------------------------------------------


@st.composite
def rounded_input(draw: st.DrawFn) -> tuple[np.ndarray, int]:
    """Finite float arrays with a number of places they can be rounded to."""
    dtype = draw(st.sampled_from([dt for dt in FLOATS if dt.itemsize > 2]))
    places = draw(st.integers(0, 12))
    bound = 2.0 ** math.floor(math.log2(min(1e9, 2.0**52 / 10**places)))
    elements = st.floats(
        -bound, bound, allow_nan=False, allow_infinity=False, width=8 * dtype.itemsize
    )
    return draw(hnp.arrays(dtype, st.integers(0, 300), elements=elements)), places


@given(rounded_input())
def test_lossy_error_bound(case):
    """decimals=N stays within 0.5 * 10**-N plus two ulps of every value."""
    values, places = case
    out = codec.decode(codec.encode(values, decimals=places))
    assert out.dtype == values.dtype
    assert out.shape == values.shape
    wide, back = values.astype(np.float64), out.astype(np.float64)
    ulp = np.spacing(np.maximum(np.abs(values), np.abs(out))).astype(np.float64)
    assert (np.abs(wide - back) <= 0.5 * 10.0**-places + 2 * ulp).all()


def test_lossy_mode_rounds_and_compresses():
    """Rounding noisy floats to cents stores them as cents, and -0.0 becomes 0.0."""
    noisy = 100 + np.cumsum(np.random.default_rng(3).normal(0, 0.01, 10_000))
    frame = codec.encode(noisy, decimals=2)
    out = codec.decode(frame)
    assert (np.round(out, 2) == out).all()
    assert np.abs(out - noisy).max() <= 0.005 + 1e-12
    assert len(frame) < len(codec.encode(noisy)) / 2
    signed = codec.decode(codec.encode(np.array([-0.0, -0.001, 0.004]), decimals=2))
    assert signed.tobytes() == np.zeros(3).tobytes()


def test_lossy_mode_keeps_raw_fallback_rounded():
    """Rounded values stay rounded even when the frame falls back to raw storage."""
    wild = np.random.default_rng(5).uniform(-1e6, 1e6, 50).astype(np.float32)
    frame = codec.encode(wild, decimals=6)
    assert model_of(frame) == 5  # raw: five-byte integers do not beat four-byte floats
    out = codec.decode(frame)
    assert (out == (np.rint(wild.astype(np.float64) * 1e6) / 1e6).astype(np.float32)).all()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 2.0**60, 1e300])
def test_lossy_mode_refuses_values_it_cannot_round(bad):
    """NaN, infinities and values beyond 2**53 after scaling raise CompressionError."""
    values = np.array([1.0, 2.0, bad, 4.0])
    with pytest.raises(CompressionError, match="element 2"):
        codec.encode(values, decimals=2)
    assert_round_trip(values)


@pytest.mark.parametrize("dtype", ["int64", "float16", "bool"])
def test_lossy_mode_is_for_float32_and_float64(dtype):
    """decimals on other dtypes raises CompressionError."""
    with pytest.raises(CompressionError, match="decimals"):
        codec.encode(np.ones(3, dtype), decimals=2)


# --- refusing bad frames ---------------------------------------------------------------------


def small_frames() -> dict[str, bytes]:
    """Return one small frame of each layout and packing."""
    rng = np.random.default_rng(11)
    return {
        "raw": codec.encode(rng.integers(-(2**63), 2**63 - 1, 9, dtype=np.int64)),
        "empty": codec.encode(np.zeros((0, 3))),
        "constant": codec.encode(np.arange(0, 500, 5)),
        "bits": codec.encode(np.cumsum(rng.integers(-3, 4, 60))),
        "planes": codec.encode(np.cumsum(rng.integers(0, 70_000, 60))),
        "zstd": codec.encode(np.repeat(np.arange(30, dtype=np.int32), 9)),
        "decimals": codec.encode(np.round(rng.uniform(0, 100, 40), 2).astype(np.float32)),
        "mask": codec.encode(
            np.cumsum(np.where(rng.random(400) < 0.6, 0, rng.integers(1, 70_000, 400)))
        ),
        "float_bits": codec.encode(rng.standard_normal(30).cumsum().reshape(5, 6)),
        "bool": codec.encode(rng.random(64) < 0.5),
        **split_frames(),
        "v1_planes": build_frame(dtype=4, width=16, payload=bytes([1, 2, 3, 4, 0, 1, 0, 2])),
        **model_frames(200),
    }


def split_frames() -> dict[str, bytes]:
    """Return a small frame of each kind of split stream (layout 3)."""
    rng = np.random.default_rng(13)
    frames = {
        "split_dense": codec.encode(np.cumsum(rng.integers(-3, 4, 90))),
        "split_high_zstd": codec.encode(np.round(500 + np.cumsum(rng.laplace(0, 8, 400)), 2)),
        "split_high_raw": codec.encode(rng.integers(0, 4096, 40) * 3),
        "split_int8": codec.encode(rng.integers(-64, 64, 200).astype(np.int8)),
    }
    assert [(s.layout, s.width >> 4) for f in frames.values() for s in streams_of(f)] == [
        (3, 0), (3, 2), (3, 1), (3, 0)
    ]  # fmt: skip
    return frames


def model_frames(n: int) -> dict[str, bytes]:
    """Return a frame of each format-2 model that needs two streams or a float32 form."""
    rng = np.random.default_rng(n)
    prices = np.round(100 + np.cumsum(rng.normal(0, 0.5, n)), 2)
    near = np.where(rng.random(n) < 0.2, np.nextafter(prices, np.inf), prices)
    narrow = np.cumsum(rng.normal(0, 1, n)).astype(np.float32).astype(np.float64)
    narrow[3] = 0.1
    yahoo = prices.astype(np.float32).astype(np.float64)
    yahoo[5] = np.nan
    clock = 1_700_000_000_000 + 1000 * np.arange(n) + rng.integers(-20, 21, n)
    frames = {
        "near_decimals": codec.encode(near),
        "float32": codec.encode(narrow),
        "float32_decimals": codec.encode(yahoo),
        "grid": codec.encode(clock),
    }
    assert [model_of(frame) for frame in frames.values()] == [1, 2, 3, 4]
    assert all(frame[6] & 64 for frame in list(frames.values())[:3])  # corrections
    return frames


FRAMES = small_frames()


def test_small_frames_cover_every_layout():
    """The frames that the damage tests use include every model, layout and a zero mask."""
    current = [frame for name, frame in FRAMES.items() if not name.startswith("v1")]
    assert {model_of(frame) for frame in current} == set(range(6))
    assert {packing.layout for frame in current for packing in streams_of(frame)} == {1, 2, 3}
    assert streams_of(FRAMES["mask"])[0].flags == 1


@pytest.mark.parametrize("name", FRAMES)
def test_every_single_bit_flip_is_detected(name):
    """Flipping any one bit of a small frame raises CompressionError."""
    frame = FRAMES[name]
    for bit in range(8 * len(frame)):
        damaged = bytearray(frame)
        damaged[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(CompressionError):
            codec.decode(damaged)


@pytest.mark.parametrize(
    ("steps", "n", "layout"),
    [(300_000, 200_000, (2, 0)), (300, 200_000, (3, 2)), (3, 1000, (3, 0))],
    ids=["zstd planes", "split with zstd high bytes", "dense"],
)
def test_random_bit_flips_of_a_large_frame_never_decode(steps, n, layout):
    """2,000 random single-bit flips of a large frame of each layout all raise CompressionError."""
    rng = np.random.default_rng(2000)
    values = 3_000_000_000_000 + np.cumsum(rng.integers(-steps, steps + 1, n)) * 1_000_000
    frame = codec.encode(values)
    stream = streams_of(frame)[0]
    assert (stream.layout, stream.width >> 4 if stream.layout == 3 else 0) == layout
    flips = random.Random(2000)
    silent = 0
    for _ in range(2000):
        bit = flips.randrange(8 * len(frame))
        damaged = bytearray(frame)
        damaged[bit // 8] ^= 1 << (bit % 8)
        try:
            codec.decode(damaged)
        except CompressionError:
            continue
        silent += 1
    assert silent == 0


@pytest.mark.parametrize("name", FRAMES)
def test_every_truncation_is_detected(name):
    """Every proper prefix of a frame raises CompressionError."""
    frame = FRAMES[name]
    for length in range(len(frame)):
        with pytest.raises(CompressionError):
            codec.decode(frame[:length])


@pytest.mark.parametrize("name", FRAMES)
def test_padding_is_detected(name):
    """Bytes after the end of a frame raise CompressionError."""
    frame = FRAMES[name]
    for extra in (b"\0", b"\0" * 7, frame):
        with pytest.raises(CompressionError, match="padded"):
            codec.decode(frame + extra)


@pytest.mark.parametrize(
    ("blob", "match"),
    [
        (b"", "empty"),
        (b"O", "truncated"),
        (b"X", "not an orso_pg"),
        (b"OPG", "truncated"),
        (b"OPGA\x01" + b"\0" * 20, "truncated"),
        (b"CYDEC\x01\x01\x04" + struct.pack("<Q", 3) + b"\0" * 24, "cydec"),
        (b"ORSO" + b"\x01" * 60, "not an orso_pg"),
        (zstandard.ZstdCompressor().compress(np.arange(100).tobytes()), "zstd"),
        (np.arange(100).tobytes(), "not an orso_pg"),
    ],
    ids=[
        "empty",
        "one byte",
        "other byte",
        "magic prefix",
        "short header",
        "cydec",
        "orso",
        "zstd",
        "raw",
    ],
)
def test_foreign_blobs_are_refused(blob, match):
    """Empty, foreign and bare-zstd blobs raise CompressionError naming what they are."""
    with pytest.raises(CompressionError, match=match):
        codec.decode(blob)


def test_random_bytes_are_refused():
    """Random blobs of every length up to 300 bytes raise CompressionError."""
    rng = np.random.default_rng(99)
    for length in range(300):
        with pytest.raises(CompressionError):
            codec.decode(rng.integers(0, 256, length, dtype=np.uint8).tobytes())


@pytest.mark.parametrize("value", ["OPGA", 12, None, [1, 2], np.zeros(3)], ids=repr)
def test_non_bytes_are_refused(value):
    """Decoding something that is not bytes raises CompressionError."""
    with pytest.raises(CompressionError, match="cannot decode"):
        codec.decode(value)


@pytest.mark.parametrize("version", [0, 3, 255])
def test_other_versions_are_refused(version):
    """A frame with another format version raises CompressionError naming the version."""
    frame = bytearray(FRAMES["planes"])
    frame[4] = version
    with pytest.raises(CompressionError, match="version"):
        codec.decode(bytes(frame))
    with pytest.raises(CompressionError, match="version"):
        codec.decode(resign(frame))


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"dtype": 0}, "dtype"),
        ({"dtype": 13}, "dtype"),
        ({"layout": 3}, "layout"),
        ({"flags": 2}, "flags"),
        ({"width": 3}, "out of range"),
        ({"width": 72}, "out of range"),
        ({"dtype": 2, "width": 16, "payload": b"\0" * 8}, "out of range"),
        ({"divisor": 0}, "out of range"),
        ({"dtype": 3, "reference": 2**15}, "out of range"),
        ({"order": 2, "shape": (2,), "seeds": (1, 2)}, "out of range"),
        ({"order": 1, "seeds": (2**63 - 1,), "dtype": 4, "payload": b"\0" * 3}, "out of range"),
        ({"width": 0, "flags": 1, "payload": b""}, "out of range"),
        ({"decimals": 2}, "decimals"),
        ({"dtype": 10, "decimals": 2}, "decimals"),
        ({"dtype": 12, "decimals": 19}, "decimals"),
        ({"payload": b"\0" * 5}, "packed bytes"),
        ({"layout": 0, "width": 0}, "raw bytes"),
        ({"layout": 0}, "raw frame"),
        ({"layout": 0, "width": 0, "divisor": 2, "payload": b"\0" * 32}, "raw frame"),
        ({"layout": 2, "payload": b"\0" * 9}, "zstd"),
        ({"layout": 2, "payload": zstandard.ZstdCompressor().compress(b"\0" * 9)}, "zstd"),
        ({"layout": 2, "payload": zstandard.ZstdCompressor().compress(b"\0" * 3)}, "packed"),
        ({"flags": 1, "payload": b"\xff"}, "packed bytes"),
        ({"flags": 1, "shape": (9,), "payload": b"\xff"}, "mask"),
        ({"dtype": 1, "layout": 0, "width": 0, "payload": b"\0\1\2\0"}, "bool"),
        ({"dtype": 1, "width": 8, "payload": b"\0\1\2\0"}, "bool"),
        ({"shape": (2**40, 2**40, 0), "payload": b"", "layout": 0, "width": 0}, "shape"),
        ({"shape": (1,) * 33}, "ndim"),
        ({"order": 3}, "order"),
    ],
    ids=repr,
)
def test_inconsistent_fields_are_refused(fields, match):
    """A frame with a valid checksum but fields no encoder writes raises CompressionError."""
    with pytest.raises(CompressionError, match=match):
        codec.decode(build_frame(**fields))


def test_hand_built_frames_decode():
    """Frames built from the documented layout decode to the values they describe."""
    planes = build_frame(dtype=4, width=16, payload=bytes([1, 2, 3, 4, 0, 1, 0, 2]))
    assert codec.decode(planes).tolist() == [1, 258, 3, 516]
    bits = build_frame(dtype=3, width=4, order=1, seeds=(-5,), reference=-2, divisor=3,
                       shape=(5,), payload=bytes([0x12, 0x30]))  # fmt: skip
    assert codec.decode(bits).tolist() == [-5, -4, 0, 7, 5]
    mask = build_frame(dtype=6, width=8, flags=1, shape=(10,), payload=bytes([0x90, 0x40, 7, 9, 4]))
    assert codec.decode(mask).tolist() == [7, 0, 0, 9, 0, 0, 0, 0, 0, 4]
    cents = build_frame(dtype=12, width=8, decimals=2, payload=bytes([1, 5, 250, 100]))
    assert codec.decode(cents).tolist() == [0.01, 0.05, 2.5, 1.0]


# --- size cap --------------------------------------------------------------------------------


def test_decompression_bomb_is_refused_before_allocating():
    """A frame whose zstd content is larger than its declared shape fails before inflating."""
    bomb = zstandard.ZstdCompressor().compress(bytes(50_000_000))
    frame = build_frame(shape=(1000,), layout=2, payload=bomb)
    tracemalloc.start()
    try:
        with pytest.raises(CompressionError, match="zstd content"):
            codec.decode(frame)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000


def test_huge_declared_shapes_are_refused_before_allocating():
    """A frame declaring more than max_bytes raises CompressionError without allocating it."""
    frame = build_frame(shape=(2**40,), width=0, payload=b"")
    tracemalloc.start()
    try:
        with pytest.raises(CompressionError, match="max_bytes"):
            codec.decode(frame)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000


def test_a_large_zero_mask_needs_no_position_per_value():
    """A masked uint8 frame decodes within a few times its output, not 8 bytes per value."""
    n = 1_000_000
    frame = build_frame(dtype=6, flags=1, shape=(n,), payload=b"\xff" * (n // 8) + b"\x07" * n)
    tracemalloc.start()
    try:
        out = codec.decode(frame)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out.dtype == np.uint8
    assert (out == 7).all()
    assert peak < 4 * n  # a few buffers of one byte per value, not positions of eight


def test_max_bytes_per_call_and_globally():
    """The size cap applies per call, per ArrayCodec and module-wide."""
    values = np.arange(1000, dtype=np.int64)
    frame = codec.encode(values)
    with pytest.raises(CompressionError, match="max_bytes"):
        codec.decode(frame, max_bytes=7999)
    assert codec.decode(frame, max_bytes=8000).size == 1000
    assert codec.get_max_bytes() == codec.DEFAULT_MAX_BYTES
    previous = codec.set_max_bytes(4000)
    try:
        assert previous == codec.DEFAULT_MAX_BYTES
        with pytest.raises(CompressionError, match="max_bytes"):
            codec.decode(frame)
        with pytest.raises(CompressionError, match="max_bytes"):
            codec.encode(values)
        assert codec.ArrayCodec(max_bytes=8000).decode(frame).size == 1000
    finally:
        assert codec.set_max_bytes(None) == 4000
    assert codec.get_max_bytes() == codec.DEFAULT_MAX_BYTES
    with pytest.raises(CompressionError, match="max_bytes"):
        codec.ArrayCodec(max_bytes=100).encode(values)
    for bad in (-1, 1.5, True, "1"):
        with pytest.raises(CompressionError, match="max_bytes"):
            codec.set_max_bytes(bad)  # type: ignore[arg-type]
        with pytest.raises(CompressionError, match="max_bytes"):
            codec.decode(frame, max_bytes=bad)  # type: ignore[arg-type]


# --- the codec object and the module contract ------------------------------------------------


def test_array_codec_holds_settings():
    """ArrayCodec encodes with its level and decimals and refuses bad settings."""
    lossy = codec.ArrayCodec(decimals=1, level=3)
    out = lossy.decode(lossy.encode(np.array([1.04, 2.06])))
    assert out.tolist() == [1.0, 2.1]
    assert codec.ArrayCodec().encode([1, 2, 3]) == codec.encode([1, 2, 3])
    with pytest.raises(CompressionError):
        codec.ArrayCodec(level=99)
    with pytest.raises(CompressionError):
        codec.ArrayCodec(decimals=-3)
    with pytest.raises(CompressionError):
        codec.ArrayCodec(max_bytes=-3)


def test_constants():
    """The documented constants have their documented values."""
    assert codec.MAGIC == b"OPGA"
    assert codec.FORMAT_VERSION == 2
    assert codec.DEFAULT_MAX_BYTES == 256 * 2**20
    assert " ".join(dt.name for dt in codec.SUPPORTED_DTYPES) == (
        "bool int8 int16 int32 int64 uint8 uint16 uint32 uint64 float16 float32 float64"
    )
    assert codec.encode([1])[:5] == b"OPGA\x02"


def test_docstring_example():
    """The example in the module docstring runs as written."""
    result = doctest.testmod(codec, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


def test_errors_are_value_errors():
    """CompressionError is a ValueError, so generic handlers still catch it."""
    with pytest.raises(ValueError, match="checksum"):
        codec.decode(FRAMES["planes"][:-1] + bytes([FRAMES["planes"][-1] ^ 1]))


@settings(max_examples=30)
@given(any_bits())
def test_thread_safety(values):
    """Encoding and decoding from several threads gives the same bytes as one thread."""
    expected = codec.encode(values)
    with ThreadPoolExecutor(4) as pool:
        frames = list(pool.map(codec.encode, [values] * 8))
        decoded = list(pool.map(codec.decode, frames))
    assert all(frame == expected for frame in frames)
    assert all(
        out.tobytes() == values.astype(values.dtype.newbyteorder("=")).tobytes() for out in decoded
    )


# --- format 2 models --------------------------------------------------------------------------


@st.composite
def near_decimals(draw: st.DrawFn) -> np.ndarray:
    """Decimal prices (float32 or float64) with some values one or two ulps off."""
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    n = draw(st.integers(1, 300))
    places = draw(st.integers(0, 4 if dtype == np.float32 else 6))
    start = draw(st.integers(0, 10**6))
    steps = draw(hnp.arrays(np.int64, n, elements=st.integers(-500, 500)))
    prices = ((start + np.cumsum(steps)) / 10**places).astype(dtype)
    off = draw(hnp.arrays(np.int8, n, elements=st.sampled_from([0, 0, 0, 1, -1, 2])))
    bits = prices.view(f"i{prices.itemsize}") + off.astype(f"i{prices.itemsize}")
    near: np.ndarray = bits.view(dtype)
    return near


@st.composite
def jittered_grid(draw: st.DrawFn) -> np.ndarray:
    """int64 clocks on a round step with small jitter and occasional gaps."""
    n = draw(st.integers(1, 400))
    step = draw(st.sampled_from([10, 60, 1000, 60_000, 3_600_000, 86_400_000]))
    jitter = draw(st.integers(1, max(1, step // 10)))
    gaps = draw(hnp.arrays(np.int64, n, elements=st.sampled_from([1, 1, 1, 1, 2, 30])))
    noise = draw(hnp.arrays(np.int64, n, elements=st.integers(-jitter, jitter)))
    start = draw(st.integers(-(2**62), 2**62))
    clock: np.ndarray = start + step * np.cumsum(gaps) + noise
    return clock


@st.composite
def float32_rounded(draw: st.DrawFn) -> np.ndarray:
    """float64 values that are float32s (decimals or not), with a few that are not."""
    n = draw(st.integers(1, 300))
    places = draw(st.integers(0, 4))
    steps = draw(hnp.arrays(np.int64, n, elements=st.integers(-300, 300)))
    values = (draw(st.integers(0, 10**7)) + np.cumsum(steps)) / 10**places
    if draw(st.booleans()):
        values = values * draw(st.floats(0.1, 10))
    wide: np.ndarray = values.astype(np.float32).astype(np.float64)
    strays = draw(hnp.arrays(np.bool_, n)) & draw(hnp.arrays(np.bool_, n))
    specials = np.array([0.1, np.nan, -0.0, np.inf, 1e300])
    wide[strays] = specials[np.arange(int(strays.sum())) % specials.size]
    return wide


@st.composite
def with_outliers(draw: st.DrawFn) -> np.ndarray:
    """Small-step walks (int64 or 2-decimal floats) with a few huge outliers."""
    n = draw(st.integers(3, 400))
    walk = np.cumsum(draw(hnp.arrays(np.int64, n, elements=st.integers(-3, 3))))
    where = draw(hnp.arrays(np.int64, draw(st.integers(1, 3)), elements=st.integers(0, n - 1)))
    walk[where] = draw(st.sampled_from([-(2**62), 10**12, 2**62]))
    return walk / 100 if draw(st.booleans()) else walk


@given(near_decimals())
def test_round_trip_near_decimals(values):
    """Decimal prices with values a few ulps off come back bit for bit."""
    assert_round_trip(values)


@given(jittered_grid())
def test_round_trip_jittered_grid(values):
    """Clocks with jitter come back bit for bit."""
    assert_round_trip(values)


@given(float32_rounded())
def test_round_trip_float32_rounded(values):
    """float32-rounded float64 values (and strays) come back bit for bit."""
    assert_round_trip(values)


@given(with_outliers())
def test_round_trip_outliers(values):
    """Walks with huge outliers come back bit for bit."""
    assert_round_trip(values)


def test_models_are_chosen_for_their_data():
    """Each model is picked by the data it is made for, and beats the plain float bits."""
    rng = np.random.default_rng(31)
    prices = np.round(100 + np.cumsum(rng.normal(0, 0.5, 5000)), 2)
    near = np.where(rng.random(5000) < 0.2, np.nextafter(prices, np.inf), prices)
    frame = assert_round_trip(near)
    assert (model_of(frame), frame[7] >> 2, frame[6] & 64) == (1, 2, 64)
    assert len(frame) < len(codec.encode(prices)) * 1.5

    yahoo = prices.astype(np.float32).astype(np.float64)
    frame = assert_round_trip(yahoo)
    assert (model_of(frame), frame[7] >> 2) == (3, 2)
    assert len(frame) < len(codec.encode(prices)) * 1.2

    clock = 1_700_000_000_000 + 1000 * np.arange(5000) + rng.integers(0, 25, 5000)
    frame = assert_round_trip(clock)
    assert model_of(frame) == 4
    assert codec._parse2(frame).param == 1000

    outlier = np.cumsum(rng.integers(-2, 3, 5000))
    outlier[2500] = -(10**12)
    assert streams_of(assert_round_trip(outlier))[0].order == 1


@pytest.mark.parametrize(
    "name",
    ["near_decimals", "float32", "float32_decimals", "grid", *split_frames()],
)
def test_random_damage_to_every_model_never_decodes(name):
    """2,000 random flips of 1 to 3 bits in a frame of each model all raise CompressionError."""
    frame = {**model_frames(2000), **split_frames()}[name]
    flips = random.Random(name)
    for _ in range(2000):
        damaged = bytearray(frame)
        for _ in range(flips.randint(1, 3)):
            bit = flips.randrange(8 * len(frame))
            damaged[bit // 8] ^= 1 << (bit % 8)
        if damaged == frame:
            continue
        with pytest.raises(CompressionError):
            codec.decode(damaged)


def test_hand_built_format2_frames_decode():
    """Frames built from the documented format-2 tables decode to the values they describe."""
    planes = build_frame2(
        dtype=4, streams=({"width": 16, "payload": bytes([1, 2, 3, 4, 0, 1, 0, 2])},)
    )
    assert codec.decode(planes).tolist() == [1, 258, 3, 516]
    bits = build_frame2(
        dtype=3,
        shape=(5,),
        streams=({"width": 4, "order": 1, "seeds": (-5,), "reference": -2, "divisor": 3,
                  "payload": bytes([0x12, 0x30])},),
    )  # fmt: skip
    assert codec.decode(bits).tolist() == [-5, -4, 0, 7, 5]
    cents = build_frame2(
        dtype=12, model=1, places=2, streams=({"payload": bytes([1, 5, 250, 100])},)
    )
    assert codec.decode(cents).tolist() == [0.01, 0.05, 2.5, 1.0]
    # Corrections: +1 on the bits of the second value, -1 on the fourth.
    fixed = build_frame2(
        dtype=12, model=1, places=2, corrections=True,
        streams=({"payload": bytes([1, 5, 250, 100])},
                 {"reference": -1, "payload": bytes([1, 2, 1, 0])}),
    )  # fmt: skip
    expected = np.array([0.01, 0.05, 2.5, 1.0])
    expected[1], expected[3] = np.nextafter(0.05, 1), np.nextafter(1.0, 0)
    assert codec.decode(fixed).tobytes() == expected.tobytes()
    # float32 bits stored as int32 working integers, widened to float64.
    narrow = np.array([1.5, -2.25, 0.1, 7], np.float32)
    as_float32 = build_frame2(
        dtype=12, model=2,
        streams=({"width": 32, "reference": int(narrow.view(np.int32).min()),
                  "payload": (narrow.view(np.int32) - narrow.view(np.int32).min())
                  .astype("<u4").view(np.uint8).reshape(4, 4).T.tobytes()},),
    )  # fmt: skip
    assert codec.decode(as_float32).tolist() == narrow.astype(np.float64).tolist()
    yahoo = build_frame2(
        dtype=12, model=3, places=1, streams=({"payload": bytes([1, 5, 250, 100])},)
    )
    assert codec.decode(yahoo).tolist() == [float(np.float32(x)) for x in (0.1, 0.5, 25.0, 10.0)]
    grid = build_frame2(
        model=4, step=1000,
        streams=({"order": 1, "seeds": (7,), "width": 0, "reference": 1, "payload": b""},
                 {"reference": -3, "payload": bytes([0, 5, 3, 6])}),
    )  # fmt: skip
    assert codec.decode(grid).tolist() == [6997, 8002, 9000, 10003]
    raw = build_frame2(dtype=7, model=5, raw=struct.pack("<4H", 1, 2, 3, 65535))
    assert codec.decode(raw).tolist() == [1, 2, 3, 65535]
    # Split: 3-bit values 1, 6, 0, 5 as one little-endian bit stream (LSB first), 8 per 3 bytes.
    low = 1 | 6 << 3 | 0 << 6 | 5 << 9
    dense = build_frame2(
        streams=({"layout": 3, "width": 3, "reference": -3, "order": 1, "seeds": (100,),
                  "payload": low.to_bytes(3, "little")},),
        shape=(5,),
    )  # fmt: skip
    assert codec.decode(dense).tolist() == [100, 98, 101, 98, 100]
    # Split with high bytes as they are: value = high << 2 | low.
    high = build_frame2(
        dtype=4,
        streams=({"layout": 3, "width": 2 | 1 << 4, "reference": 10,
                  "payload": bytes([0b11_10_01_00, 0]) + bytes([0, 1, 2, 255])},),
    )  # fmt: skip
    assert codec.decode(high).tolist() == [10, 15, 20, 1033]
    # ... and through zstd.
    squeezed = build_frame2(
        dtype=4,
        streams=({"layout": 3, "width": 2 | 2 << 4, "reference": 10,
                  "payload": bytes([0b11_10_01_00, 0])
                  + zstandard.ZstdCompressor().compress(bytes([0, 1, 2, 255]))},),
    )  # fmt: skip
    assert codec.decode(squeezed).tolist() == [10, 15, 20, 1033]


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"dtype": 0}, "header"),
        ({"dtype": 13}, "header"),
        ({"model": 6}, "header"),
        ({"shape": (1,) * 33}, "header"),
        ({"byte6": 128}, "header"),
        ({"places": 19, "model": 1, "dtype": 12}, "header"),
        ({"places": 2}, "header"),
        ({"corrections": True, "streams": ({}, {})}, "header"),
        ({"model": 2, "dtype": 11}, "model 2"),
        ({"model": 3, "dtype": 11}, "model 3"),
        ({"model": 4, "dtype": 4, "step": 10, "streams": ({}, {})}, "model 4"),
        ({"model": 4, "step": 1, "streams": ({}, {})}, "grid step"),
        ({"model": 3, "dtype": 12, "places": 9}, "float32"),
        ({"streams": ({"divisor": 1},)}, "divisor of 1"),
        ({"streams": ({"reserved": 64},)}, "stream flags"),
        ({"streams": ({"layout": 0},)}, "stream flags"),
        ({"streams": ({"layout": 3, "width": 0},)}, "out of range"),
        ({"streams": ({"layout": 3, "width": 9},)}, "out of range"),
        ({"streams": ({"layout": 3, "width": 3 | 3 << 4},)}, "out of range"),
        ({"streams": ({"layout": 3, "width": 3, "mask": 1},)}, "out of range"),
        ({"dtype": 2, "streams": ({"layout": 3, "width": 8 | 1 << 4},)}, "out of range"),
        ({"streams": ({"layout": 3, "width": 3},)}, "split bytes"),
        ({"streams": ({"layout": 3, "width": 2 | 1 << 4},)}, "high bytes"),
        ({"streams": ({"layout": 3, "width": 2 | 2 << 4, "payload": b"\0" * 6},)}, "zstd"),
        ({"streams": ({"order": 3},)}, "stream flags"),
        ({"tail": b"\0"}, "after the payloads"),
        ({"streams": ({"payload": b"\0" * 3},)}, "packed bytes"),
        ({"streams": ({"width": 3},)}, "out of range"),
        ({"dtype": 3, "streams": ({"reference": 2**15},)}, "out of range"),
        ({"model": 5, "raw": b"\0" * 5}, "raw bytes"),
        ({"streams": ({"mask": 1},)}, "packed bytes"),
        ({"streams": ({"mask": 1, "payload": b""},)}, "cut short"),
        (
            {"streams": ({"mask": 1, "layout": 2, "payload": zstandard.compress(b"\xff" * 99)},)},
            "zstd content",
        ),
        ({"dtype": 1, "streams": ({"payload": b"\0\1\2\0"},)}, "bool"),
        ({"shape": (2**40, 2**40, 0), "model": 5, "raw": b""}, "shape"),
    ],
    ids=repr,
)
def test_inconsistent_format2_fields_are_refused(fields, match):
    """A format-2 frame with a valid checksum but fields no encoder writes is refused."""
    with pytest.raises(CompressionError, match=match):
        codec.decode(build_frame2(**fields))


def test_format2_header_running_past_the_end_is_refused():
    """A descriptor cut off by the frame's end raises CompressionError, not struct.error."""
    whole = build_frame2()
    body = whole[:12]  # the head and part of the length field
    with pytest.raises(CompressionError, match="past its end"):
        codec.decode(body + struct.pack("<I", zlib.crc32(body)))


# --- decode_many ----------------------------------------------------------------------------


@settings(max_examples=40)
@given(st.lists(st.one_of(structured(), near_decimals(), jittered_grid(), float32_rounded()),
                max_size=12), st.integers(1, 6))  # fmt: skip
def test_decode_many_equals_decode(arrays, copies):
    """decode_many gives, frame by frame, exactly what decode gives (groups of equal layout)."""
    frames = [codec.encode(values) for values in arrays] * copies
    many = codec.decode_many(frames)
    assert len(many) == len(frames)
    for frame, out in zip(frames, many, strict=True):
        single = codec.decode(frame)
        assert out.dtype == single.dtype
        assert out.shape == single.shape
        assert out.tobytes() == single.tobytes()
        assert out.flags.c_contiguous
        assert out.flags.writeable


def test_decode_many_rebuilds_groups_of_rows():
    """Rows of one column (same length and packing) decode together and independently."""
    rng = np.random.default_rng(41)
    walks = [np.cumsum(rng.integers(-3, 4, 1000)) + k * 10**9 for k in range(50)]
    prices = [np.round(100 + np.cumsum(rng.normal(0, 0.1, 300)), 2) for _ in range(20)]
    old = [build_frame(dtype=4, width=16, payload=bytes([1, 2, 3, 4, 0, 1, 0, 2]))] * 5
    frames = [codec.encode(w) for w in walks] + [codec.encode(p) for p in prices] + old
    out = codec.decode_many(frames)
    for values, got in zip([*walks, *prices], out, strict=False):
        assert got.tobytes() == values.tobytes()
    assert all(got.tolist() == [1, 258, 3, 516] for got in out[-5:])
    out[0][:] = 0  # rows share a block but not their values
    assert out[1].tobytes() == walks[1].tobytes()
    assert codec.decode_many([]) == []
    assert codec.decode_many(frames[:1])[0].tobytes() == walks[0].tobytes()


def test_decode_many_names_the_bad_frame():
    """A bad frame among many raises CompressionError naming its index."""
    rng = np.random.default_rng(43)
    frames = [codec.encode(np.cumsum(rng.integers(-3, 4, 500))) for _ in range(10)]
    v1 = [build_frame(dtype=4, width=16, payload=bytes([1, 2, 3, 4, 0, 1, 0, 2]))] * 6
    for bad, match in (
        (frames[3][:-1] + bytes([frames[3][-1] ^ 1]), "frame 3: checksum"),
        (b"", "frame 3: cannot decode an empty"),
        (b"junk" * 10, "frame 3: not an orso_pg"),
    ):
        with pytest.raises(CompressionError, match=match) as caught:
            codec.decode_many([*frames[:3], bad, *frames[4:]])
        assert caught.value.position == 3
    damaged = bytearray(v1[2])
    damaged[50] ^= 4
    with pytest.raises(CompressionError, match="frame 2: checksum"):
        codec.decode_many([*v1[:2], bytes(damaged), *v1[3:]])
    with pytest.raises(CompressionError, match="frame 1: cannot decode"):
        codec.decode_many([frames[0], "text"])  # type: ignore[list-item]
    with pytest.raises(CompressionError, match="sequence of frames"):
        codec.decode_many(frames[0])  # type: ignore[arg-type]
    with pytest.raises(CompressionError, match="max_bytes"):
        codec.decode_many(frames, max_bytes=100)


def test_decode_many_of_inconsistent_groups_falls_back_to_single_decodes():
    """Frames whose shared fields no encoder writes are refused one by one, with their index."""
    v1 = [build_frame(dtype=4, width=16, payload=bytes([1, 2, 3, 4, 0, 1, 0, 2]))] * 5
    bad = [build_frame(dtype=2, width=16, payload=b"\0" * 8)] * 5
    with pytest.raises(CompressionError, match="frame 5: corrupt"):
        codec.decode_many(v1 + bad)
    bools = [build_frame(dtype=1, width=8, payload=b"\0\1\2\0")] * 5
    with pytest.raises(CompressionError, match="frame 0: corrupt frame: bool"):
        codec.decode_many(bools)


def test_decode_many_groups_every_packing():
    """Groups of every width, with divisors, decimals, orders and both versions, decode exactly."""
    rng = np.random.default_rng(47)
    families: dict[str, list[np.ndarray]] = {
        "divisor": [np.cumsum(rng.integers(-9, 10, 300)) * 1000 for _ in range(6)],
        "one bit": [rng.integers(0, 2, 300).astype(np.uint8) for _ in range(6)],
        "two bits": [rng.integers(0, 4, 300).astype(np.int16) for _ in range(6)],
        "constant": [np.arange(k, k + 3000, 10) for k in range(6)],
        "planes": [rng.integers(0, 2**40, 300) for _ in range(6)],
        "order 2": [np.cumsum(np.cumsum(rng.integers(-2, 3, 300))) for _ in range(6)],
        "decimals": [np.round(rng.uniform(1, 9, 300), 2) for _ in range(6)],
        "bools": [rng.random(300) < 0.5 for _ in range(6)],
    }
    for name, arrays in families.items():
        frames = [codec.encode(a) for a in arrays]
        assert len({frame[5:8] for frame in frames}) == 1, name  # one group
        for values, out in zip(arrays, codec.decode_many(frames), strict=True):
            assert out.dtype == values.dtype, name
            assert out.tobytes() == values.tobytes(), name
    v1 = [build_frame(dtype=4, width=w, order=1, seeds=(k,), divisor=3, payload=p)
          for k in range(5) for w, p in ((16, bytes(range(6))),)]  # fmt: skip
    assert [out.tolist() for out in codec.decode_many(v1)] == [
        codec.decode(frame).tolist() for frame in v1
    ]


@st.composite
def small_alphabets(draw: st.DrawFn) -> np.ndarray:
    """Walks and levels whose residuals take few values: dense split streams, any dtype."""
    n = draw(st.integers(2, 700))
    spread = draw(st.sampled_from([1, 2, 3, 5, 7, 15, 31, 63, 127]))
    dtype = draw(st.sampled_from(["int8", "int16", "int32", "int64", "uint8", "uint64"]))
    steps = draw(hnp.arrays(np.int64, n, elements=st.integers(-spread, spread)))
    values = np.cumsum(steps) if draw(st.booleans()) else steps
    values = values * draw(st.sampled_from([1, 3, 1000])) + draw(st.integers(-(10**6), 10**6))
    return values.astype(dtype)  # wraps for narrow dtypes, as a column's values may


@st.composite
def skewed_wide(draw: st.DrawFn) -> np.ndarray:
    """Prices with wide, peaked steps: split streams with high bytes (raw or through zstd)."""
    n = draw(st.integers(8, 3000))
    scale = draw(st.sampled_from([2.0, 8.0, 40.0, 300.0]))
    seed = draw(st.integers(0, 2**32 - 1))
    steps = np.rint(np.random.default_rng(seed).laplace(0, scale, n)).astype(np.int64)
    cents = 10**6 + np.cumsum(steps)
    return cents / 100 if draw(st.booleans()) else cents


@given(small_alphabets())
def test_round_trip_small_alphabets(values):
    """Dense split streams of every field size give every value back."""
    assert_round_trip(values)


@given(skewed_wide())
def test_round_trip_skewed_wide(values):
    """Split streams with high bytes give every value back."""
    assert_round_trip(values)


def test_split_layout_is_chosen_where_it_is_smaller():
    """Small alphabets and skewed wide steps take the split layout; it beats byte planes."""
    rng = np.random.default_rng(71)
    walk = 10**9 + np.cumsum(rng.integers(-3, 4, 500))
    stream = streams_of(assert_round_trip(walk))[0]
    assert (stream.layout, stream.width) == (3, 3)  # three dense bits, no high bytes
    prices = np.round(500 + np.cumsum(rng.laplace(0, 8, 2000)), 2)
    frame = assert_round_trip(prices)
    stream = streams_of(frame)[0]
    assert stream.layout == 3
    assert stream.width >> 4 == 2  # the high byte through zstd
    assert len(frame) < 0.92 * len(_planes_frame(prices))


def _planes_frame(values: np.ndarray) -> bytes:
    """Return the frame the encoder would write without the split layout."""
    split = codec._split_stream
    try:
        codec._split_stream = lambda *_: None
        return codec.encode(values)
    finally:
        codec._split_stream = split


def test_decode_many_groups_split_streams():
    """Groups of split streams decode exactly: shared or differing references, high bytes."""
    rng = np.random.default_rng(73)
    families: dict[str, list[np.ndarray]] = {
        "dense, one reference": [
            10**9 * k + np.cumsum(rng.integers(-3, 4, 1000)) for k in range(7)
        ],
        "dense, references differ": [
            np.cumsum(rng.integers(-k, 8 - k, 400)) for k in (0, 1, 2, 3, 4, 5)
        ],
        "dense order 0": [rng.integers(-16, 16, 333).astype(np.int16) for _ in range(5)],
        "dense order 2": [np.cumsum(np.cumsum(rng.integers(-60, 60, 300))) for _ in range(5)],
        "dense divisor": [np.cumsum(rng.integers(-3, 4, 250)) * 1000 for _ in range(5)],
        "dense uint8": [rng.integers(0, 64, 100).astype(np.uint8) for _ in range(5)],
        "dense int8": [rng.integers(-64, 64, 200).astype(np.int8) for _ in range(5)],
        "dense decimals": [
            np.round(100 + np.cumsum(rng.integers(-3, 4, 300)) / 100, 2) for _ in range(5)
        ],
        "high zstd": [np.round(500 + np.cumsum(rng.laplace(0, 8, 1500)), 2) for _ in range(5)],
        "high raw": [rng.integers(0, 4096, 40) * 3 for _ in range(5)],
    }
    frames: list[bytes] = []
    arrays: list[np.ndarray] = []
    for name, family in families.items():
        encoded = [codec.encode(a) for a in family]
        assert all(streams_of(f)[0].layout == 3 for f in encoded), name
        frames += encoded
        arrays += family
    # Interleaved with other frames, so that no group's frames are evenly spaced.
    order = np.random.default_rng(5).permutation(len(frames))
    mixed = [frames[i] for i in order]
    for index, out in zip(order, codec.decode_many(mixed), strict=True):
        assert out.dtype == arrays[index].dtype
        assert out.tobytes() == arrays[index].tobytes()
        assert out.flags.c_contiguous
        assert out.flags.writeable
    for family in families.values():  # each family alone: evenly spaced rows
        alone = codec.decode_many([codec.encode(a) for a in family])
        assert [o.tobytes() for o in alone] == [a.tobytes() for a in family]


def test_decode_many_refuses_damaged_split_groups_by_index():
    """A split frame whose fields no encoder writes, among good ones, is named by index."""
    rng = np.random.default_rng(79)
    frames = [codec.encode(10**9 + np.cumsum(rng.integers(-3, 4, 500))) for _ in range(6)]
    bad = build_frame2(streams=({"layout": 3, "width": 3},))  # 4 payload bytes, 3 expected
    with pytest.raises(CompressionError, match="frame 2: corrupt frame: 4 split bytes"):
        codec.decode_many([*frames[:2], bad, *frames[2:]])
    odd = build_frame2(dtype=2, streams=({"layout": 3, "width": 8 | 1 << 4},))
    with pytest.raises(CompressionError, match="frame 0: corrupt frame: packing"):
        codec.decode_many([odd] * 5)


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"streams": ({"divisor": 1},)}, "divisor of 1"),
        ({"model": 1, "places": 2}, "model 1"),
        ({"dtype": 3, "streams": ({"reference": 2**15},)}, "out of range"),
        ({"dtype": 3, "streams": ({"order": 1, "seeds": (2**15,)},)}, "out of range"),
        ({"dtype": 3, "streams": ({"divisor": 2**16},)}, "out of range"),
        ({"streams": ({"divisor": 0},)}, "out of range"),
        ({"model": 5, "raw": b"\0" * 5}, "raw bytes"),
        ({"streams": ({"mask": 1},)}, "packed bytes"),
        ({"streams": ({"mask": 1, "payload": b""},)}, "cut short"),
        (
            {"streams": ({"mask": 1, "layout": 2, "payload": zstandard.compress(b"\xff" * 99)},)},
            "zstd content",
        ),
        ({"model": 5, "dtype": 1, "raw": b"\0\1\2\0"}, "bool"),
        ({"shape": (2**64 - 1,)}, "max_bytes"),
        ({"dtype": 1, "streams": ({"payload": b"\0\1\2\0"},)}, "bool"),
        ({"streams": ({"layout": 2, "width": 0, "payload": b""},)}, "zstd"),
        ({"streams": ({"layout": 2, "payload": b"\0" * 9},)}, "zstd"),
        ({"streams": ({"layout": 3, "width": 3 | 1 << 4, "payload": b"\0" * 9},)}, "high"),
        ({"streams": ({"layout": 3, "width": 3 | 2 << 4, "payload": b"\0" * 9},)}, "zstd"),
        ({"streams": ({"layout": 3, "width": 3 | 2 << 4, "payload": b"\0" * 3},)}, "zstd"),
        ({"shape": (0,), "streams": ({"width": 0, "payload": b""},)}, "out of range"),
    ],
    ids=repr,
)
def test_decode_many_refuses_groups_no_encoder_writes(fields, match):
    """Groups of frames whose shared fields no encoder writes are refused as decode refuses."""
    frame = build_frame2(**fields)
    with pytest.raises(CompressionError, match=match):
        codec.decode(frame)
    with pytest.raises(CompressionError, match=f"frame 0: .*{match}"):
        codec.decode_many([frame] * 6)


def test_decode_many_rebuilds_groups_with_differing_divisors_and_planes():
    """Groups whose divisors and references differ, and one-plane groups, decode exactly."""
    rng = np.random.default_rng(83)
    scaled = [np.cumsum(rng.integers(-k, 9 - k, 200)) * (k + 2) for k in range(6)]
    planes = [rng.integers(0, 256, 50).astype(np.uint8) for _ in range(5)]
    frames = [codec.encode(a) for a in scaled + planes]
    out = codec.decode_many(frames)
    assert [o.tobytes() for o in out] == [a.tobytes() for a in scaled + planes]
    raw = [rng.integers(-(2**63), 2**63 - 1, 30, dtype=np.int64, endpoint=True) for _ in range(5)]
    raw += [r.view(np.float64).astype(">f8") for r in raw]  # random bits, big-endian
    frames = [codec.encode(a) for a in raw]
    assert all(model_of(f) == 5 for f in frames)
    assert [o.tobytes() for o in codec.decode_many(frames)] == [
        a.astype(a.dtype.newbyteorder("=")).tobytes() for a in raw
    ]
    huge = build_frame2(streams=({"divisor": 2**64 - 1, "reference": -(2**63)},))  # wraps
    assert [o.tolist() for o in codec.decode_many([huge] * 5)] == [codec.decode(huge).tolist()] * 5


def test_large_arrays_choose_their_model_on_a_prefix():
    """Beyond twice the trial length, the model is chosen on a prefix; values come back exact."""
    rng = np.random.default_rng(89)
    n = 3 * codec._MODEL_TRIAL
    clock = 1_700_000_000_000 + 1000 * np.arange(n) + rng.integers(-20, 21, n)
    assert model_of(assert_round_trip(clock)) == 4  # grid
    prices = np.round(100 + np.cumsum(rng.normal(0, 0.5, n)), 2)
    near = np.where(rng.random(n) < 0.2, np.nextafter(prices, np.inf), prices)
    assert model_of(assert_round_trip(near)) == 1  # decimals with corrections
    noise = rng.standard_normal(n)
    assert model_of(assert_round_trip(noise)) in (0, 5)  # bits (or raw)


def test_decode_many_plan_cache_is_bounded():
    """Crafted frames with ever new header signatures cannot grow the plan cache for ever."""
    for signature in range(3 * codec._PLANS_MOST):
        codec._plan(signature << 24 | 0x01_01_05)
    assert len(codec._PLANS) <= codec._PLANS_MOST


def test_decode_many_groups_zero_masked_streams():
    """Zero-masked streams (non-zero values differ in number per frame) decode in groups."""
    rng = np.random.default_rng(97)

    def trades(width: int) -> np.ndarray:
        gaps = np.where(rng.random(600) < 0.4, 0, rng.integers(1, width, 600))
        return 10**15 + np.cumsum(gaps)

    families = {
        "planes": [trades(70_000) for _ in range(6)],
        "three planes": [trades(5_000_000) for _ in range(6)],
        "bits": [
            np.cumsum(np.where(rng.random(600) < 0.4, 0, rng.integers(1, 9, 600))) for _ in range(6)
        ],
        "as is": [
            np.where(rng.random(300) < 0.3, 0, rng.integers(1, 2**40, 300)) for _ in range(6)
        ],
    }
    frames, arrays = [], []
    for name, family in families.items():
        encoded = [codec.encode(a) for a in family]
        assert all(streams_of(f)[0].flags == 1 for f in encoded), name
        frames += encoded
        arrays += family
    out = codec.decode_many(frames)
    assert [o.tobytes() for o in out] == [a.tobytes() for a in arrays]
    assert {streams_of(f)[0].layout for f in frames} == {1, 2}


def _batch_frames() -> dict[str, bytes]:
    """Return one frame of each layout that decode_many rebuilds in groups."""
    rng = np.random.default_rng(101)
    trades = 10**15 + np.cumsum(np.where(rng.random(300) < 0.4, 0, rng.integers(1, 70_000, 300)))
    return {
        **split_frames(),
        "zstd planes": codec.encode(np.cumsum(rng.integers(-300_000, 300_000, 400))),
        "packed": codec.encode(np.cumsum(rng.integers(-1, 2, 64))),
        "mask": codec.encode(trades),
        "divisor": codec.encode(np.cumsum(rng.integers(-9, 10, 300)) * 1000),
        "decimals": codec.encode(np.round(rng.uniform(1, 9, 200), 2)),
        "raw": codec.encode(rng.integers(-(2**63), 2**63 - 1, 20, dtype=np.int64, endpoint=True)),
        "order 2": codec.encode(np.cumsum(np.cumsum(rng.integers(-2, 3, 200)))),
    }


@pytest.mark.parametrize("name", _batch_frames())
def test_decode_many_never_decodes_a_damaged_frame(name):
    """2,000 single-bit flips of a frame among good copies: decode_many always refuses it."""
    frame = _batch_frames()[name]
    flips = random.Random(name)
    for _ in range(2000):
        bit = flips.randrange(8 * len(frame))
        damaged = bytearray(frame)
        damaged[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(CompressionError, match="frame 2: "):
            codec.decode_many([frame, frame, bytes(damaged), frame, frame, frame])


@pytest.mark.parametrize("name", _batch_frames())
def test_decode_many_agrees_with_decode_on_resigned_damage(name):
    """Damage with a valid checksum (as a forger could make): decode_many does what decode does.

    Either both refuse the frame with CompressionError, or both return the same array: the
    grouped path never accepts what the single path refuses, nor raises anything else.
    """
    frame = _batch_frames()[name]
    flips = random.Random(name)
    refused = 0
    for _ in range(500):
        damaged = bytearray(frame)
        for _ in range(flips.randint(1, 2)):
            bit = flips.randrange(8 * (len(frame) - 4))
            damaged[bit // 8] ^= 1 << (bit % 8)
        body = bytes(damaged[:-4])
        forged = body + struct.pack("<I", zlib.crc32(body))
        try:
            single = codec.decode(forged)
        except CompressionError:
            single = None
        try:
            many = codec.decode_many([forged] * 5)
        except CompressionError:
            assert single is None
            refused += 1
            continue
        assert single is not None
        for out in many:
            assert out.dtype == single.dtype
            assert out.shape == single.shape
            assert out.tobytes() == single.tobytes()
    assert 0 < refused < 500  # damage both refused and (where the fields allow) decoded


@pytest.mark.parametrize("odd", [math.nan, math.inf, -math.inf, 1e300, -1e300, 2.0**63, -(2.0**63)])
def test_decimals_beyond_int64_are_missed_not_stored(odd):
    prices = np.round(np.linspace(10.0, 20.0, 5000), 2)
    prices[1234] = odd  # its x * 10**k has no int64 q: a correction, never a wrong integer
    frame = codec.encode(prices)
    assert codec.decode(frame).tobytes() == prices.tobytes()
    for width in (np.int64, np.int32):  # int32 too: a miss, not a retry in int64
        missed = codec._round_exactly(prices, 2, np.empty(prices.size, width))
        assert missed is not None
        assert missed is not codec._TOO_WIDE
        assert missed.view(np.int64).tolist() == prices[1234:1235].view(np.int64).tolist()


# --- the encoder's fast paths give the general path's frames ------------------------------


def general_path_frame(values: np.ndarray) -> bytes:
    """Return *values*' frame with the one-pass reduction and int32 decimals turned off."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(codec, "_reduce_in_one_pass", lambda *_: None)
        patch.setattr(codec, "_NARROW_Q", 0.0)
        return codec.encode(values)


@st.composite
def large_series(draw: st.DrawFn) -> np.ndarray:
    """Arrays over a block long: walks with divisors, outliers and late surprises."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32)))
    n = draw(st.sampled_from([codec._BLOCK + 1, 50_000, 100_003]))
    spread = draw(st.sampled_from([1, 3, 100, 40_000, 2**31, 2**60]))
    steps = rng.integers(-spread, spread, n, endpoint=True)
    if draw(st.booleans()):
        steps[rng.random(n) < draw(st.sampled_from([0.3, 0.99]))] = 0
    steps *= draw(st.sampled_from([1, 2, 12, 1000, 60_000, 3 * 2**40]))
    for _ in range(draw(st.integers(0, 2))):
        steps = np.cumsum(steps)
    where = draw(st.sampled_from([0, codec._BLOCK - 1, codec._BLOCK, n - 1]))
    steps[where : where + 1] += draw(st.sampled_from([0, 1, 7, -(10**9), 2**62]))  # wraps
    values = steps + draw(st.integers(-(2**62), 2**62))
    dtype = draw(st.sampled_from(["int64", "int32", "int16", "uint32", "float64"]))
    if dtype == "float64":
        return np.asarray(values % 10**8 / 100)  # prices with two decimals, or a few more
    return values.astype(dtype)


@settings(max_examples=60, deadline=None)
@given(large_series())
def test_one_pass_reduction_writes_the_general_paths_frame(values):
    """The one-pass reduction and int32 decimals change the speed of encoding, never a byte."""
    assert assert_round_trip(values) == general_path_frame(values)


def spy_one_pass(patch: pytest.MonkeyPatch) -> list[bool]:
    """Record, per call of the one-pass reduction, whether it took the array."""
    taken: list[bool] = []
    real = codec._reduce_in_one_pass

    def spy(work: np.ndarray, order: int) -> Any:
        found = real(work, order)
        taken.append(found is not None)
        return found

    patch.setattr(codec, "_reduce_in_one_pass", spy)
    return taken


def walk(n: int = 100_000, seed: int = 3) -> np.ndarray:
    return 3_000_000 + np.cumsum(np.random.default_rng(seed).integers(-50, 51, n))


@pytest.mark.parametrize(
    ("case", "taken"),
    [
        ("walk", True),
        ("walk times a divisor", True),
        ("walk of even multiples", True),
        ("late outlier", False),  # beyond the room the first block left
        ("late non-multiple", False),  # the sample's divisor does not divide it
        ("late odd value among evens", False),
        ("constant sample", False),  # proposes no divisor
        ("random bits", False),
    ],
)
def test_one_pass_reduction_takes_or_leaves_an_array(monkeypatch, case, taken):
    values = {
        "walk": walk(),
        "walk times a divisor": walk() * 1_000_000,
        "walk of even multiples": walk() * 2**20,
        "late outlier": np.concatenate((walk(), [10**12])),
        "late non-multiple": np.concatenate((walk() * 15, [7])),
        "late odd value among evens": np.concatenate((walk() * 2**20, [3])),
        "constant sample": np.concatenate((np.zeros(99_999, np.int64), [5])),
        "random bits": np.random.default_rng(4).integers(-(2**63), 2**63 - 1, 100_000),
    }[case]
    calls = spy_one_pass(monkeypatch)
    frame = assert_round_trip(values)
    assert calls == [taken]
    assert frame == general_path_frame(values)


def test_decimals_round_to_int32_when_every_value_fits(monkeypatch):
    """Prices round to int32 integers; a value past int32's safe range sends them to int64."""
    prices = walk() / 100
    widths = []
    real = codec._round_exactly

    def spy(flat: np.ndarray, decimals: int, q: np.ndarray) -> Any:
        widths.append(q.dtype.itemsize)
        return real(flat, decimals, q)

    monkeypatch.setattr(codec, "_round_exactly", spy)
    frame = assert_round_trip(prices)
    assert widths == [4]
    assert frame == general_path_frame(prices)
    widths.clear()
    prices[77_777] = 9_000_000.01  # 900,000,001 hundredths: not a sampled position
    frame = assert_round_trip(prices)
    assert widths == [4, 8]  # rounded again into int64 from the block that overflowed
    assert frame == general_path_frame(prices)


def test_frame_checksum_is_zlibs_crc32():
    """The frame checksum is zlib's CRC-32, whichever library computes it."""
    for values in (walk(), walk() / 100, np.arange(10), np.zeros(0)):
        frame = codec.encode(values)
        assert struct.unpack("<I", frame[-4:])[0] == zlib.crc32(frame[:-4])
