"""Golden frames: bytes written by each codec format version must decode forever.

``tests/golden/codec/v<N>/`` holds, per case, the input array (``<case>.npy``) and the frame that
format version N wrote for it (``<case>.bin``), plus ``cases.json`` with each case's encode
options. The tests decode every frame and compare it with its array, and check that today's
encoder still writes the same bytes. New cases are written by running this module (never by
the tests)::

    python -m tests.unit.test_codec_golden --write

which only adds cases whose files are missing, into the directory of the current
``FORMAT_VERSION``; it never overwrites a frame. See the README.md next to the files.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from orso_pg import codec

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "codec"
VERSIONS = sorted(path for path in GOLDEN.glob("v*") if path.is_dir())


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng([3, seed])


def _specials() -> np.ndarray:
    bits = np.array(
        [0x7FF8000000000000, 0x7FF8000000000001, 0xFFF0000000000ABC, 0x7FF0000000000001], np.uint64
    )
    info = np.finfo(np.float64)
    edges = [0.0, -0.0, np.inf, -np.inf, info.smallest_subnormal, -info.tiny, info.max, info.min]
    return np.concatenate([bits.view(np.float64), np.array(edges), np.linspace(-1, 1, 28)])


def _ema(values: np.ndarray) -> np.ndarray:
    out = np.empty_like(values)
    level = float(values[0])
    for i, value in enumerate(values.tolist()):
        level += (value - level) / 10.5
        out[i] = level
    return out


# name -> (make the input array, encode options, what it covers)
CASES: dict[str, tuple[Callable[[], np.ndarray], dict[str, Any], str]] = {
    "int64_raw_random": (
        lambda: _rng(1).integers(-(2**63), 2**63 - 1, 64, dtype=np.int64, endpoint=True),
        {},
        "incompressible values: the raw layout",
    ),
    "int64_constant_step": (
        lambda: np.arange(1_700_000_000_000, 1_700_000_000_000 + 60_000 * 1000, 60_000),
        {},
        "a constant delta: order 1, width 0, no payload",
    ),
    "int64_ticks_order1": (
        lambda: (3_000_000 + np.cumsum(_rng(2).integers(-400, 401, 1000))) * 1_000_000,
        {},
        "fixed-point prices: order 1, divisor 1e6, two byte planes",
    ),
    "int64_small_order0": (
        lambda: _rng(3).integers(0, 100, 1000),
        {},
        "uniform small integers: order 0, one byte plane",
    ),
    "int64_trade_steps_4bit": (
        lambda: np.cumsum(np.where(_rng(4).random(1000) < 0.6, 0, _rng(5).integers(-3, 4, 1000))),
        {},
        "tick steps of -3..3: 4-bit packing",
    ),
    "int64_sorted_ids_mask": (
        lambda: 5_000_000_000 + np.cumsum(_rng(6).geometric(0.8, 2000)),
        {},
        "sorted ids: 4-bit packing behind a zero mask",
    ),
    "int64_trade_times_mask": (
        lambda: (
            1_700_000_000_000_000
            + np.cumsum(np.where(_rng(7).random(2000) < 0.4, 0, _rng(8).integers(1, 90_000, 2000)))
        ),
        {},
        "trade times with repeats: three byte planes behind a zero mask",
    ),
    "float64_prices_decimals": (
        lambda: (3_000_000 + np.cumsum(_rng(9).integers(-400, 401, 1000))) / 100,
        {},
        "two-decimal float prices: decimals 2",
    ),
    "float64_ema_order2": (
        lambda: _ema((3_000_000 + np.cumsum(_rng(10).integers(-400, 401, 1000))) / 100),
        {},
        "a smooth full-precision float: order 2 on the float bits",
    ),
    "float64_specials": (
        _specials,
        {},
        "NaN payloads, signed zeros, infinities, subnormals and extremes",
    ),
    "float64_lossy_3": (
        lambda: np.round(_rng(11).normal(0, 10, 500).cumsum(), 3),
        {"decimals": 3},
        "the opt-in lossy mode at 3 decimals",
    ),
    "float64_level19": (
        lambda: _rng(12).integers(0, 20, 1000) * 0.5,
        {"level": 19},
        "a frame written at zstd level 19",
    ),
    "float32_decimals_2d": (
        lambda: (np.round(_rng(13).uniform(1, 500, (10, 50)), 2)).astype(np.float32),
        {},
        "float32 prices, two dimensions: decimals 2",
    ),
    "float16_walk": (
        lambda: np.cumsum(_rng(14).normal(0, 0.1, 700)).astype(np.float16),
        {},
        "float16 bits",
    ),
    "int8_wrapping": (
        lambda: (np.arange(1000) * 37 % 256 - 128).astype(np.int8),
        {},
        "int8 with wrapping differences",
    ),
    "int16_grid_2d": (
        lambda: (np.arange(600).reshape(20, 30) * 3 - 900).astype(np.int16),
        {},
        "a two-dimensional int16 grid",
    ),
    "int32_fortran": (
        lambda: np.asfortranarray(_rng(15).integers(-(10**6), 10**6, (30, 20)).astype(np.int32)),
        {},
        "a Fortran-ordered int32 array",
    ),
    "uint8_1bit": (
        lambda: _rng(16).integers(0, 2, 999).astype(np.uint8),
        {},
        "0/1 values: 1-bit packing",
    ),
    "uint16_2bit": (
        lambda: _rng(17).integers(0, 4, 1001).astype(np.uint16),
        {},
        "values 0..3: 2-bit packing",
    ),
    "uint32_big_endian": (
        lambda: np.cumsum(_rng(18).integers(0, 3000, 800)).astype(">u4"),
        {},
        "big-endian input, decoded in native order",
    ),
    "uint64_extremes": (
        lambda: np.array([0, 1, 2**63 - 1, 2**63, 2**64 - 1] * 40, np.uint64),
        {},
        "uint64 extremes around the sign bit",
    ),
    "bool_3d": (
        lambda: _rng(19).random((4, 5, 6)) < 0.3,
        {},
        "a three-dimensional bool array",
    ),
    "float64_empty_0x3": (
        lambda: np.zeros((0, 3)),
        {},
        "an empty two-dimensional array",
    ),
    "int64_scalar": (
        lambda: np.array(-42),
        {},
        "a zero-dimensional array",
    ),
    # Cases added with format 2, for its models.
    "float64_near_decimals": (
        lambda: _one_ulp_off(np.round(100 + np.cumsum(_rng(20).normal(0, 0.5, 1000)), 2), 21),
        {},
        "2-decimal prices with a fifth one ulp off: decimals with a corrections stream",
    ),
    "float32_near_decimals": (
        lambda: _one_ulp_off(np.round(_rng(22).uniform(10, 20, 600), 3).astype(np.float32), 23),
        {},
        "float32 3-decimal values, some one ulp off: float32 corrections",
    ),
    "float64_float32_bits": (
        lambda: _with_tenth(np.cumsum(_rng(24).normal(0, 1, 800)).astype(np.float32)),
        {},
        "float32 values stored as float64 but one: the float32 model and a correction",
    ),
    "float64_float32_decimals": (
        lambda: _with_nan(
            np.round(50 + np.cumsum(_rng(25).normal(0, 0.2, 900)), 2).astype(np.float32)
        ).astype(np.float64),
        {},
        "float32-rounded 2-decimal prices as float64, one NaN: float32 decimals and corrections",
    ),
    "int64_jittered_grid": (
        lambda: 1_700_000_000_000 + 1000 * np.arange(2000) + _rng(26).integers(-30, 31, 2000),
        {},
        "a 1 s clock in ms with jitter: the grid model, quotients and remainders",
    ),
    "int64_walk_outlier": (
        lambda: (
            np.cumsum(_rng(27).integers(-2, 3, 500)) + np.where(np.arange(500) == 250, -(10**9), 0)
        ),
        {},
        "a small-step walk with one large outlier: a compact header, order 1 despite it",
    ),
    # Cases added with the split layout (stream layout 3) of format 2.
    "int64_walk_dense3": (
        lambda: 10**9 + np.cumsum(_rng(28).integers(-3, 4, 500)),
        {},
        "a walk of steps -3..3: the split layout, dense 3-bit values and no high bytes",
    ),
    "int16_dense5_order0": (
        lambda: _rng(29).integers(-16, 16, 333).astype(np.int16),
        {},
        "uniform 5-bit values: dense 5-bit fields, delta order 0",
    ),
    "int64_dense7_order2": (
        lambda: np.cumsum(np.cumsum(_rng(30).integers(-60, 60, 300))),
        {},
        "a smooth curve with random second differences: dense 7 bits, delta order 2",
    ),
    "float64_split_zstd_high": (
        lambda: np.round(500 + np.cumsum(_rng(31).laplace(0, 8, 2000)), 2),
        {},
        "2-decimal prices with wide steps: low bits dense, the high byte through zstd",
    ),
    "int64_split_raw_high": (
        lambda: _rng(32).integers(0, 4096, 40) * 3,
        {},
        "a few 12-bit values with a divisor: low bits dense, the high bytes as they are",
    ),
    "uint8_dense6_mixed": (
        lambda: _rng(33).integers(0, 64, 100).astype(np.uint8),
        {},
        "uniform 6-bit bytes: dense 6-bit fields of two values",
    ),
}


def _one_ulp_off(values: np.ndarray, seed: int) -> np.ndarray:
    off = _rng(seed).random(values.size) < 0.2
    return np.where(off, np.nextafter(values, np.inf), values).astype(values.dtype)


def _with_tenth(values: np.ndarray) -> np.ndarray:
    wide = values.astype(np.float64)
    wide[7] = 0.1
    return wide


def _with_nan(values: np.ndarray) -> np.ndarray:
    values = values.copy()
    values[values.size // 2] = np.nan
    return values


def _cases(version: Path) -> dict[str, dict[str, Any]]:
    return json.loads((version / "cases.json").read_text())  # type: ignore[no-any-return]


GOLDEN_CASES = [
    pytest.param(version, name, id=f"{version.name}-{name}")
    for version in VERSIONS
    for name in _cases(version)
]


@pytest.mark.parametrize(("version", "name"), GOLDEN_CASES)
def test_golden_frame_decodes(version, name):
    """A frame written by an earlier version decodes to exactly the array it was made from."""
    expected = np.load(version / f"{name}.npy", allow_pickle=False)
    out = codec.decode((version / f"{name}.bin").read_bytes())
    assert out.dtype == expected.dtype.newbyteorder("=")
    assert out.shape == expected.shape
    assert out.tobytes() == expected.astype(out.dtype).tobytes()


@pytest.mark.parametrize(("version", "name"), GOLDEN_CASES)
def test_encoder_still_writes_golden_frame(version, name):
    """Today's encoder writes the frozen bytes of the current version again."""
    if version.name != f"v{codec.FORMAT_VERSION}":
        pytest.skip("older format versions and superseded frames are only decoded")
    values = np.load(version / f"{name}.npy", allow_pickle=False)
    options = _cases(version)[name]["options"]
    frozen = (version / f"{name}.bin").read_bytes()
    assert codec.encode(values, **options) == frozen


def test_current_version_has_every_case():
    """Every case defined here is frozen in the current version's directory."""
    current = GOLDEN / f"v{codec.FORMAT_VERSION}"
    assert sorted(_cases(current)) == sorted(CASES)
    for name in CASES:
        assert (current / f"{name}.npy").is_file()
        assert (current / f"{name}.bin").is_file()


def test_golden_frames_cover_every_path():
    """The frozen frames include every dtype, layout, delta order and packing of each version."""
    frames = {
        version.name: [(version / f"{name}.bin").read_bytes() for name in _cases(version)]
        for version in VERSIONS
    }
    first = frames["v1"]
    assert {frame[5] for frame in first} == set(range(1, 13))  # dtypes
    assert {frame[6] for frame in first} == {0, 1, 2}  # raw, packed, zstd
    assert {frame[8] for frame in first} >= {0, 1, 2}  # delta orders
    assert {frame[9] for frame in first} >= {0, 1, 2, 4, 8, 16, 24, 40, 64}  # widths
    assert any(frame[10] != 255 for frame in first)  # decimals
    assert any(frame[11] for frame in first)  # a zero mask
    assert {frame[7] for frame in first} >= {0, 1, 2, 3}  # ndim

    second = frames["v2"]
    assert {frame[5] & 15 for frame in second} == set(range(1, 13))  # dtypes
    assert {frame[5] >> 4 for frame in second} == set(range(6))  # every model
    assert {frame[6] & 63 for frame in second} >= {0, 1, 2, 3}  # ndim
    assert any(frame[6] & 64 for frame in second)  # a corrections stream
    streams = [codec._parse2(frame).packings for frame in second]
    flat = [packing for packings in streams for packing in packings]
    assert {packing.layout for packing in flat} == {1, 2, 3}
    split = {packing.width for packing in flat if packing.layout == 3}
    assert {width & 15 for width in split} >= {3, 5, 6, 7}  # dense field sizes
    assert {width >> 4 for width in split} == {0, 1, 2}  # no high bytes, as is, zstd
    assert {packing.order for packing in flat} == {0, 1, 2}
    assert {packing.width for packing in flat} >= {0, 1, 2, 4, 8, 16, 24, 40, 64}
    assert any(packing.flags for packing in flat)  # a zero mask
    assert any(packing.divisor != 1 for packing in flat)


def write_missing(directory: Path) -> list[str]:
    """Freeze every case that has no files yet in *directory*; never touch existing ones."""
    directory.mkdir(parents=True, exist_ok=True)
    manifest = directory / "cases.json"
    cases = _cases(directory) if manifest.exists() else {}
    written = []
    for name, (make, options, about) in CASES.items():
        npy, frame = directory / f"{name}.npy", directory / f"{name}.bin"
        if name in cases or npy.exists() or frame.exists():
            continue
        values = make()
        np.save(npy, values, allow_pickle=False)
        frame.write_bytes(codec.encode(values, **options))
        cases[name] = {"options": options, "about": about}
        written.append(name)
    manifest.write_text(json.dumps(cases, indent=2, sort_keys=True) + "\n")
    return written


def main(argv: list[str] | None = None) -> int:
    """Write the missing golden cases of the current format version."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--write", action="store_true", help="write missing cases")
    args = parser.parse_args(argv)
    if not args.write:
        parser.print_help()
        return 2
    directory = GOLDEN / f"v{codec.FORMAT_VERSION}"
    written = write_missing(directory)
    print(f"{directory}: wrote {len(written)} new case(s): {', '.join(written) or 'none'}")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
