"""Lossless compression of numeric numpy arrays into self-describing frames.

This module owns the bytes that compressed array columns store in ``BYTEA``. It is pure: numpy,
zstandard, isal (for the CRC-32) and the standard library only, no database and no other
orso_pg module but :mod:`orso_pg.errors`. The design and the measurements behind it are in
``reference/compression.md`` (section 5, "orso-auto").

Contract
========

:func:`encode` accepts a numpy array of any shape, memory order and byte order, or a list of
Python ints (stored as int64) or floats (float64). The dtypes are bool, int8, int16, int32,
int64, uint8, uint16, uint32, uint64, float16, float32 and float64. It is deterministic (the same
values, dtype and shape give the same bytes) and never modifies its input.

:func:`decode` returns a new, writable, C-ordered array in native byte order with the dtype and
shape that were encoded and, by default, the very same bytes: every value comes back bit for
bit, including -0.0, NaN payloads, infinities, subnormals and integer extremes.

Anything that is not a frame this module wrote, or one that was damaged since, raises
:class:`~orso_pg.errors.CompressionError` (a ``ValueError``) whose message names the problem:
empty, truncated or padded input, a foreign blob (cydec, a bare zstd frame, random bytes), a
newer format version, a checksum mismatch, a field out of range, or a frame declaring more than
``max_bytes`` of output; never a numpy, zstd or struct exception. A CRC-32 covers every other
byte of the frame, so every single flipped bit is detected, and other random damage slips
through with odds of about one in four billion (the CRC guards integrity; it is not an
authentication). The declared size is checked against ``max_bytes`` before anything is
allocated, and no buffer is ever larger than twice the declared output (the working integers
of float32 decimals are 8 bytes wide); a frame holds at most two streams.

Lossy mode (opt-in)
-------------------

``encode(values, decimals=N)`` (float32 and float64, ``0 <= N <= 18``) stores
``q = rint(x * 10**N)`` and decodes ``q / 10**N`` in the array's float type. For every element::

    |x - decoded| <= 0.5 * 10**-N + 2 * ulp(x)

where ulp is in the array's dtype (the two ulps cover the rounding of the product, the quotient
and the final cast). -0.0 decodes as 0.0. NaN, infinities and values with
``|x| * 10**N > 2**53`` have no exact rounded form and raise ``CompressionError`` rather than be
stored as something else.

Pipeline
========

1. A model turns the values into the working integers of one or two streams, and the encoder
   keeps the model whose frame is smallest. Every model gives every value back bit for bit:

   - *bits*: integers as they are, floats as the signed integer with the same bits, bool as
     int8.
   - *decimals*: floats that are decimals with at most 12 places (8 for float32) become int64
     ``q = rint(x * 10**k)``, decoded as ``q / 10**k`` in the float type. When a few values
     miss (a price one ulp off, a NaN), the difference between their bits and what ``q``
     gives back is a second stream of *corrections*, zero elsewhere.
   - *float32*: float64 values that are float32s are stored as the float32 bits (with
     corrections for the values that are not).
   - *float32 decimals*: float64 values that are float32 roundings of decimals, stored as
     ``q`` and decoded as ``float64(float32(q / 10**k))``, with corrections.
   - *grid*: int64 values near a round step, such as clocks with jitter, become quotients
     ``q = (x + shift) // step`` and remainders ``r = x - q * step``, two streams.
2. Each stream: delta of order 0, 1 or 2 (wrapping differences), the order whose residuals'
   bit lengths, counted from their 1st percentile, are fewest on a prefix sample.
3. Frame of reference: the minimum residual is subtracted, leaving unsigned values.
4. Common divisor: the values are divided by their gcd (ticks, lots, fixed intervals).
5. Packing: values below 16 are bit-packed at 1, 2 or 4 bits; wider values keep their
   significant low bytes, split into byte planes. When zeros are common, a bitmap of the
   non-zero values followed by those values alone is tried as well.
6. zstd (level 1 by default). The stream is stored as it is when zstd does not shrink it, and
   the raw values are stored when packing does not save 1%, so a frame is never larger than the
   raw bytes plus the header.
7. Split: values of at most 16 bits are also considered split in two: their low ``b`` bits
   (1 to 8) packed densely, ``b`` bits each, and stored as they are (near-random bits that
   zstd cannot shrink), and the high bits left, one byte per value, through zstd alone. ``b``
   is chosen from the entropy of the high part on a sample, and the split is kept when it
   is smaller than step 5 and 6's stream. It wins where zstd's single Huffman table would
   mix a random low byte plane with a skewed high one (a few thousand prices), and where
   an alphabet of a few values costs a nibble or a byte per value (500 steps of -3..3 take
   3 bits each, no high part at all).

Frame, version 2 (written)
==========================

All integers are little endian. A *sized* integer takes 1, 2, 4 or 8 bytes, as a 2-bit size
code ``c`` says (``2**c`` bytes); it is signed where the table says so.

======= ======= ==========================================================================
offset  size    field
======= ======= ==========================================================================
0       4       magic ``b"OPGA"``
4       1       format version, ``2``
5       1       bits 0-3 dtype (codes as in version 1); bits 4-7 model: 0 bits, 1 decimals,
                2 float32, 3 float32 decimals, 4 grid, 5 raw
6       1       bits 0-5 ndim (0..32); bit 6 set when a corrections stream follows (models
                1 to 3 only); bit 7 is 0
7       1       bits 0-1 the size code of the frame fields; bits 2-6 the decimal places
                ``k`` (models 1 and 3; 0 otherwise); bit 7 is 0
8       ..      frame fields, unsigned, sized: the shape (the length for ndim 1, nothing for
                ndim 0), then for the grid model the step (>= 2)
..      ..      one stream descriptor per stream: none for raw; two for grid (quotients,
                remainders) and with corrections (values, corrections); one otherwise
..      ..      the payloads of the streams, in the same order; for raw, the values' bytes
-4      4       CRC-32 (zlib) of every byte before it
======= ======= ==========================================================================

A stream descriptor is three bytes, then sized fields:

- byte 0: bits 0-1 layout (1 packed stream as is, 2 packed stream in one zstd frame that
  declares its content size, 3 split stream); bit 2 zero mask (never with layout 3); bits
  3-4 delta order (0..2, also the number of seeds); bit 5 set when a divisor is written
  (otherwise it is 1); bits 6-7 are 0.
- byte 1: for layouts 1 and 2, the width, bits per packed value: 0 (all residuals equal,
  empty payload), 1, 2, 4, or 8..64 by 8. For layout 3, bits 0-3 the low bits ``b`` (1..8)
  and bits 4-5 how the high bytes are stored: 0 none (every value is below ``2**b``), 1 as
  they are, 2 in one zstd frame that declares its content size; with high bytes, ``b`` is
  less than the item's bits.
- byte 2: size codes: bits 0-1 payload length, 2-3 reference, 4-5 divisor, 6-7 seeds.
- fields: payload length (unsigned), frame of reference (signed), the divisor (unsigned, when
  bit 5 is set; never 1), the seeds (signed; the first value, then for order 2 the first
  difference).

A split stream's payload holds the ``m`` reduced values (``m = n - order``, each stored as
``(residual - reference) / divisor`` as in version 1) as ``ceil(m / 8) * b`` bytes of their
low bits: one little-endian bit stream in which value ``i`` holds bits ``i * b`` to
``i * b + b - 1`` (a byte's least significant bit first; eight values fill ``b`` bytes, the
last ones padded with zero bits). With high bytes, ``m`` bytes follow (or the zstd frame of
them), ``value >> b`` for each value in order; the value is then ``high << b | low``.

Every stream describes all ``n`` values of the array and is decoded as a version-1 packed
stream (below; split streams as just described) whose working integers are, per model:
*bits*, as wide as the item (bool: 1 byte); *decimals* and *float32 decimals*, int64 ``q``;
*float32*, int32 float32 bits; *grid*, int64 quotients and int64 remainders,
``x = q * step + r`` (wrapping); corrections are as wide as the float and added, wrapping, to
the bits of the decoded floats. Decimals are decoded as version 1 decodes them; float32
decimals as float32 ``q / 10**k`` (computed in float64 and rounded to float32), then widened.

Frame, version 1 (read, no longer written)
==========================================

All integers are little endian.

====== ======= ============================================================================
offset size    field
====== ======= ============================================================================
0      4       magic ``b"OPGA"``
4      1       format version, ``1``
5      1       dtype: 1 bool, 2 int8, 3 int16, 4 int32, 5 int64, 6 uint8, 7 uint16,
               8 uint32, 9 uint64, 10 float16, 11 float32, 12 float64
6      1       layout: 0 raw values, 1 packed stream as is, 2 packed stream in one zstd frame
               that declares its content size
7      1       ndim, 0..32
8      1       delta order, 0..2 (also the number of seeds)
9      1       width: bits per packed value, 0 (all residuals equal), 1, 2, 4, or 8..64 by 8
10     1       decimals: 255 when the working integers are the values themselves (or the
               bits of floats); 0..18 when floats were stored as ``q`` with
               ``x = q / 10**decimals``
11     1       flags: bit 0 set when the stream starts with a zero mask; other bits are 0
12     8       payload length in bytes (u64)
20     8       frame of reference: the minimum residual (i64)
28     8       common divisor (u64, >= 1)
36     4       CRC-32 (zlib) of every byte of the frame but these four
40     8*ndim  shape (u64 each)
..     8*order seeds (i64): the first value, then for order 2 the first difference
..     ...     payload
====== ======= ============================================================================

The working integers are signed and as wide as the item (bool: 1 byte), or int64 when
``decimals`` is not 255; all arithmetic on them wraps. With ``n`` values, the packed stream
describes the ``m = n - order`` residuals, each stored as ``(residual - reference) / divisor``:
bit-packed with the first value in the most significant bits (as ``numpy.packbits``) for widths
1, 2 and 4, or as ``width / 8`` byte planes of ``m`` bytes each, least significant plane first.
With a zero mask, the stream starts with ``ceil(m / 8)`` bytes of ``m`` bits (packbits order)
set for the non-zero values, and only those values follow, packed the same way.

A raw frame (layout 0) has order, width and flags 0, decimals 255, reference 0 and divisor 1,
and holds the values' own little-endian bytes (for a lossy encode, the rounded values). An empty
array is a raw frame with an empty payload.

Example:
    >>> import numpy as np
    >>> from orso_pg import codec
    >>> minutes = np.arange(1_700_000_000_000, 1_700_060_000_000, 60_000)
    >>> frame = codec.encode(minutes)
    >>> len(frame), minutes.nbytes
    (30, 8000)
    >>> bool((codec.decode(frame) == minutes).all())
    True
"""

from __future__ import annotations

import functools
import math
import struct
import sys
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, NamedTuple

import numpy as np
import zstandard
from isal.isal_zlib import crc32 as _crc32  # zlib's CRC-32, an order of magnitude faster

from orso_pg.errors import CompressionError

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    import numpy.typing as npt

__all__ = [
    "DEFAULT_MAX_BYTES",
    "FORMAT_VERSION",
    "MAGIC",
    "SUPPORTED_DTYPES",
    "ArrayCodec",
    "decode",
    "decode_many",
    "encode",
    "get_max_bytes",
    "set_max_bytes",
]

if sys.byteorder != "little":  # pragma: no cover - no big-endian machine to test on
    # Byte planes and bit packing are built on little-endian views of the working integers.
    raise ImportError("orso_pg.codec needs a little-endian host")

MAGIC: Final = b"OPGA"
"""The first four bytes of every frame."""

FORMAT_VERSION: Final = 2
"""The frame version this module writes; it decodes every version up to this one."""

DEFAULT_MAX_BYTES: Final = 256 * 2**20
"""The default cap on the decoded size of one array (256 MiB), well under PostgreSQL's 1 GB."""

_RAW, _PACKED, _ZSTD, _SPLIT = 0, 1, 2, 3
_ZERO_MASK = 1
_NO_DECIMALS = 255
_MAX_DECIMALS = 18
_MAX_NDIM = 32
_MAX_LEVEL = 22

# magic, version, dtype, layout, ndim, order, width, decimals, flags, payload, reference, gcd
_HEAD: Final = struct.Struct("<4s8BQqQ")
_CRC: Final = struct.Struct("<I")
_FIXED_SIZE: Final = _HEAD.size + _CRC.size

# Frame dtype codes: the index in this tuple (0 is no dtype).
_DTYPES: Final = tuple(
    np.dtype(name)
    for name in (
        "V1",
        "bool",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "float16",
        "float32",
        "float64",
    )
)
_BOOL_CODE: Final = 1

#: Every dtype a frame can hold (in native byte order; big-endian input reads back native).
SUPPORTED_DTYPES: Final = _DTYPES[1:]
_CODE_OF: Final = {(dt.kind, dt.itemsize): code for code, dt in enumerate(_DTYPES) if code}
_SIGNED: Final = {size: np.dtype(f"i{size}") for size in (1, 2, 4, 8)}
_UNSIGNED: Final = {size: np.dtype(f"u{size}") for size in (1, 2, 4, 8)}
# Bytes per value of the integer that holds a given number of byte planes.
_CONTAINER: Final = (0, 1, 2, 4, 4, 8, 8, 8, 8)
_WIDTHS: Final = frozenset((0, 1, 2, 4, 8, 16, 24, 32, 40, 48, 56, 64))

# int -> float conversion is correctly rounded, so these are the exact powers of ten.
_POW10: Final = tuple(float(10**k) for k in range(_MAX_DECIMALS + 1))
_POW10_COLUMN: Final = np.array(_POW10)[:, None]
_FIND_DECIMALS: Final = {4: 8, 8: 12}  # the most places looked for, by float width
_EXACT_INT: Final = 2.0**53
_INT64_END: Final = 2.0**63  # the first float beyond int64's range
_NARROW_Q: Final = 2.0**28  # decimals below this are rounded to int32 (see _find_decimals)
_TOO_WIDE: Final = np.empty(0)  # _round_exactly's answer when int32 cannot hold the integers

_ORDER_SAMPLE = 4096  # prefix length on which the delta order is chosen
_FLOOR_SAMPLE = 256  # spread-out residuals whose 1st percentile is the order cost's floor
_GCD_SAMPLE = 256  # evenly spread values whose gcd proposes the divisor
_DECIMAL_SAMPLE = 64  # evenly spread values that propose the decimal places
_SPARSE_SHARE = 32  # try a zero mask when at least 1/32 of the values are zero
_MODEL_TRIAL = 16384  # larger arrays choose their model on a prefix this long
_MASK_TRIAL = 65536  # larger arrays choose between mask and planes on a prefix this long
_TINY_SHARE = 64  # ... unless the prefix compresses to less than 1/64 of its packed size
_RAW_SHARE = 100  # packing must save 1/100 of the raw bytes to be kept
_MASK_BLOCK = 65536  # a decoded zero mask is expanded this many values at a time
_SPLIT_SAMPLE = 4096  # values whose high part's entropy chooses the split
_DENSE_MOST = 8  # the most low bits a split stream packs densely
_ZSTD_SLACK = 1.04  # zstd's Huffman coding of a byte stream, over its entropy ...
_ZSTD_OVERHEAD = 24  # ... plus its frame and table, in bytes
_FEW = 4096  # up to this many values, a transposing copy splits bytes faster than shifts
_WIDE_PLANES = 5  # ... and so it does for this many planes or more, at any count
_BLOCK = 1 << 15  # residuals delta-coded at a time (256 KiB of int64, in the CPU's cache)
_least, _greatest = np.minimum.reduce, np.maximum.reduce  # per block: no method wrapper

# Unpacking tables, byte -> its 2- or 4-bit values as one little-endian word.
_SHIFTS2 = np.array([6, 4, 2, 0], dtype=np.uint8)
_SHIFTS4 = np.array([4, 0], dtype=np.uint8)
_BYTES = np.arange(256, dtype=np.uint8)[:, None]
_UNPACK2: Final = ((_BYTES >> _SHIFTS2) & 3).astype(np.uint8).view("<u4").ravel()
_UNPACK4: Final = ((_BYTES >> _SHIFTS4) & 15).astype(np.uint8).view("<u2").ravel()

# Dense packing: eight values of b bits in b bytes, the first value in the low bits. A decoder
# reads a chunk as one 64-bit word and looks its fields of k values (k * b <= 12 bits) up in a
# table of 2 ** (k * b) rows.
_DENSE_SHIFTS: Final = {b: np.arange(0, 8 * b, b, dtype=np.uint64) for b in range(1, 9)}
_DENSE_K: Final = {1: 8, 2: 4, 3: 4, 4: 2, 5: 2, 6: 2, 7: 1, 8: 1}
_FIELD_SHIFTS: Final = {b: np.arange(0, 8 * b, k * b, dtype=np.uint64) for b, k in _DENSE_K.items()}
_DENSE_TABLES: Final = {
    b: (np.arange(1 << (k * b), dtype=np.uint64)[:, None] >> np.arange(0, k * b, b, dtype=np.uint64)
        & np.uint64((1 << b) - 1)).astype(np.uint8)
    for b, k in _DENSE_K.items()
}  # fmt: skip

_COUNTS = np.arange(_SPLIT_SAMPLE + 1, dtype=np.float64)
_XLOGX: Final = _COUNTS * np.log2(np.maximum(_COUNTS, 1))  # n * log2(n), 0 for 0

_max_bytes = DEFAULT_MAX_BYTES
_local = threading.local()


def get_max_bytes() -> int:
    """Return the module-wide cap on the decoded size of one array, in bytes."""
    return _max_bytes


def set_max_bytes(limit: int | None) -> int:
    """Set the module-wide cap on the decoded size of one array.

    Args:
        limit: The new cap in bytes, or ``None`` to restore :data:`DEFAULT_MAX_BYTES`.

    Returns:
        The cap that was in force before the call.
    """
    global _max_bytes  # noqa: PLW0603 - one process-wide setting, like numpy's print options
    previous = _max_bytes
    _max_bytes = DEFAULT_MAX_BYTES if limit is None else _check_max_bytes(limit)
    return previous


def encode(array: npt.ArrayLike, *, decimals: int | None = None, level: int = 1) -> bytes:
    """Compress a numeric array into a self-describing frame.

    Args:
        array: A numpy array of a supported dtype (any shape, memory order or byte order), or a
            list of Python ints (stored as int64) or floats (float64).
        decimals: Opt-in lossy mode for floats: round every value to this many decimal places
            (the module docstring gives the error bound). ``None`` keeps every bit.
        level: The zstd level, 1 (fast, the default) to 22.

    Returns:
        The frame; :func:`decode` gives the array back.

    Raises:
        CompressionError: The input is not a supported array, is larger than the decode cap
            (:func:`get_max_bytes`), or cannot be rounded to ``decimals`` places.
    """
    return _encode(array, _check_decimals(decimals), _check_level(level), _max_bytes)


def decode(data: bytes | bytearray | memoryview, *, max_bytes: int | None = None) -> np.ndarray:
    """Decompress a frame made by :func:`encode`.

    Args:
        data: The frame.
        max_bytes: Refuse frames that would decode to more bytes than this; ``None`` uses the
            module-wide cap (:func:`get_max_bytes`, 256 MiB unless changed).

    Returns:
        A new, writable, C-ordered array in native byte order, with the encoded dtype and shape.

    Raises:
        CompressionError: The frame is empty, truncated, padded, foreign, from a newer
            version, corrupt, or larger than ``max_bytes``.
    """
    return _decode(data, _max_bytes if max_bytes is None else _check_max_bytes(max_bytes))


def decode_many(
    frames: Sequence[bytes | bytearray | memoryview], *, max_bytes: int | None = None
) -> list[np.ndarray]:
    """Decompress many frames at once; the same result as :func:`decode` on each, faster.

    Frames that share their layout (as the rows of one column mostly do) are rebuilt together:
    the frames are joined into one buffer, their headers read with numpy a field at a time,
    and each later step is one numpy operation for the whole group (dense split streams are
    unpacked by table lookups that give several values, scaled and offset, at once); zstd
    payloads share one context. The only call made per frame is its checksum. Arrays decoded
    together are rows of one 2-D block, so each is C-ordered and writable, but keeping any of
    them keeps the block's memory.

    Args:
        frames: The frames, in any order.
        max_bytes: As for :func:`decode`, applied to each frame.

    Returns:
        The arrays, in the order of *frames*.

    Raises:
        CompressionError: A frame is not a valid frame (as for :func:`decode`); the message
            starts with ``frame <index>:`` and the error's ``position`` is that index.
    """
    cap = _max_bytes if max_bytes is None else _check_max_bytes(max_bytes)
    if isinstance(frames, (bytes, bytearray, memoryview, str)):
        raise CompressionError("decode_many takes a sequence of frames; use decode for one")
    return _decode_many(list(frames), cap)


@dataclass(frozen=True, slots=True)
class ArrayCodec:
    """Encode and decode settings that a column holds.

    Attributes:
        level: The zstd level, 1 to 22.
        decimals: Round floats to this many decimal places (lossy); ``None`` is lossless.
        max_bytes: The cap on one decoded array; ``None`` follows :func:`get_max_bytes`.
    """

    level: int = 1
    decimals: int | None = None
    max_bytes: int | None = None

    def __post_init__(self) -> None:
        _check_level(self.level)
        _check_decimals(self.decimals)
        if self.max_bytes is not None:
            _check_max_bytes(self.max_bytes)

    def encode(self, array: npt.ArrayLike) -> bytes:
        """Compress *array* with these settings (see :func:`encode`)."""
        cap = _max_bytes if self.max_bytes is None else self.max_bytes
        return _encode(array, self.decimals, self.level, cap)

    def decode(self, data: bytes | bytearray | memoryview) -> np.ndarray:
        """Decompress a frame under this codec's size cap (see :func:`decode`)."""
        return _decode(data, _max_bytes if self.max_bytes is None else self.max_bytes)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_level(level: int) -> int:
    if not _is_int(level) or not 1 <= level <= _MAX_LEVEL:
        raise CompressionError(f"level must be an int from 1 to 22, got {level!r}")
    return level


def _check_decimals(decimals: int | None) -> int | None:
    if decimals is not None and (not _is_int(decimals) or not 0 <= decimals <= _MAX_DECIMALS):
        raise CompressionError(f"decimals must be None or an int from 0 to 18, got {decimals!r}")
    return decimals


def _check_max_bytes(limit: int) -> int:
    if not _is_int(limit) or limit < 0:
        raise CompressionError(f"max_bytes must be a non-negative int, got {limit!r}")
    return limit


# --- encoding ------------------------------------------------------------------------------


class _Packing(NamedTuple):
    """How a packed frame stores its working integers: the header fields and the payload."""

    order: int
    seeds: tuple[int, ...]
    reference: int
    divisor: int
    width: int
    flags: int
    layout: int
    payload: bytes | memoryview


def _encode(array: npt.ArrayLike, decimals: int | None, level: int, max_bytes: int) -> bytes:
    values = _as_array(array)
    code = _CODE_OF[values.dtype.kind, values.dtype.itemsize]
    if values.nbytes > max_bytes:
        raise CompressionError(
            f"array of {values.nbytes} bytes exceeds max_bytes={max_bytes}, so it could not be "
            "decoded; raise the cap with codec.set_max_bytes() or ArrayCodec(max_bytes=...)"
        )
    if not values.dtype.isnative:
        values = values.astype(values.dtype.newbyteorder("="))
    flat = np.ascontiguousarray(values).reshape(-1)  # copies only strided or Fortran arrays
    if code == _BOOL_CODE:
        flat = flat.view(np.uint8) != 0  # views can put any byte in a bool; numpy reads it as 1
    if flat.size == 0:
        return _frame2(code, values.shape, _Model(_RAW_MODEL, 0, ()), [], flat.data)

    if decimals is not None:
        if values.dtype.kind != "f" or values.dtype.itemsize < 4:  # noqa: PLR2004
            raise CompressionError(f"decimals applies to float32 and float64, not {values.dtype}")
        work = _round_to_decimals(flat, decimals)
        models = [_Model(_DECIMALS, decimals, (work,))]
        raw = _from_decimals(work, decimals, flat.dtype)  # what decode must return
    else:
        models = _models(flat)
        raw = flat
    if len(models) > 1 and flat.size > 2 * _MODEL_TRIAL:
        # Large arrays choose their model on a prefix, then pack that model alone.
        models = [min(models, key=lambda model: _trial_size(model, level))]
    best: tuple[int, _Model, list[_Packing]] | None = None
    for model in models:
        packings = [_pack(stream, level) for stream in model.streams]
        size = sum(len(packing.payload) + 8 * (2 + packing.order) for packing in packings)
        if best is None or size < best[0]:
            best = (size, model, packings)
    assert best is not None  # noqa: S101 - _models always proposes the values' own bits
    size, model, packings = best
    if size >= flat.nbytes * (1 - 1 / _RAW_SHARE):
        return _frame2(code, values.shape, _Model(_RAW_MODEL, 0, ()), [], raw.data)
    return _frame2(code, values.shape, model, packings, b"")


def _trial_size(model: _Model, level: int) -> int:
    """Return the packed size of a model's streams over their first values."""
    return sum(len(_pack(stream[:_MODEL_TRIAL], level).payload) for stream in model.streams)


def _as_array(array: object) -> np.ndarray:
    """Return *array* as an ndarray of a supported dtype, refusing anything else clearly."""
    if isinstance(array, np.ma.MaskedArray):
        raise CompressionError("cannot encode a masked array: its mask would be lost")
    if isinstance(array, (np.ndarray, np.generic)):
        values = np.asarray(array)  # a plain ndarray view of subclasses such as np.matrix
    elif isinstance(array, (list, tuple)):
        values = _list_to_array(array)
    else:
        raise CompressionError(
            f"cannot encode {type(array).__name__}: expected a numpy array or a list of numbers"
        )
    if (values.dtype.kind, values.dtype.itemsize) not in _CODE_OF:
        raise CompressionError(
            f"cannot encode dtype {values.dtype}: the codec takes bool, int8..int64, "
            "uint8..uint64, float16, float32 and float64"
        )
    if values.ndim > _MAX_NDIM:
        raise CompressionError(f"cannot encode {values.ndim} dimensions, at most 32")
    return values


def _list_to_array(items: Sequence[object]) -> np.ndarray:
    try:
        values = np.asarray(items)
    except (ValueError, TypeError, OverflowError) as exc:
        raise CompressionError(f"cannot encode this list as a numeric array: {exc}") from exc
    if values.ndim != 1:
        raise CompressionError("cannot encode a nested list; pass a numpy array for N dimensions")
    if values.dtype not in {np.dtype(np.int64), np.dtype(np.float64)} or (
        # numpy turns ints beyond int64 into floats when some are negative; only a list with a
        # float in it may become float64 (the scan stops at the first float).
        values.dtype == np.float64 and len(items) and not any(isinstance(x, float) for x in items)
    ):
        raise CompressionError(
            "a list must hold Python ints within int64, or floats; "
            f"numpy reads this one as {values.dtype}"
        )
    return values


def _round_to_decimals(flat: np.ndarray, decimals: int) -> np.ndarray:
    """Return int64 ``rint(x * 10**decimals)``, refusing values that have no such form."""
    with np.errstate(over="ignore"):
        scaled: np.ndarray = np.multiply(flat, _POW10[decimals], dtype=np.float64)
    bad = ~(np.abs(scaled) <= _EXACT_INT)  # NaN compares false, so it is caught too
    if bad.any():
        index = int(np.argmax(bad))
        value = float(flat[index])
        raise CompressionError(
            f"cannot round element {index} ({value!r}) to {decimals} decimals: NaN, infinity "
            "and |x| * 10**decimals > 2**53 have no exact rounded form; encode losslessly",
            value=value,
        )
    np.rint(scaled, out=scaled)
    scaled += 0.0  # turns the -0.0 that rint gives small negative values into 0.0
    return scaled.astype(np.int64)


def _from_decimals(
    q: np.ndarray, decimals: int, dtype: np.dtype, out: np.ndarray | None = None
) -> np.ndarray:
    """Return ``q / 10**decimals`` as *dtype*; both directions use exactly this formula.

    *out*, when given, is a buffer of *dtype* and *q*'s shape to write into.
    """
    if out is None:
        out = np.empty(q.shape, dtype)
    np.divide(q, _POW10[decimals], out=out, casting="same_kind")
    return out


def _find_decimals(flat: np.ndarray) -> tuple[int, np.ndarray] | None:
    """Return the fewest decimal places that store every float exactly, and the integers.

    A few spread-out values propose the places; the whole array must then come back bit for
    bit through :func:`_from_decimals`, or the floats keep their bits (``None``).
    """
    most = _FIND_DECIMALS.get(flat.itemsize)
    if most is None:
        return None
    step = max(1, flat.size // _DECIMAL_SAMPLE)
    sample = flat[::step][:_DECIMAL_SAMPLE]
    decimals = _sample_decimals(sample, most)
    for _ in range(3):  # the sample may have missed values that need more places
        if decimals is None:
            return None
        # Integers well within int32 take half the memory traffic in every later pass, and
        # pack to the same frame: their residuals cannot wrap in either width.
        small = float(np.abs(sample).max()) * _POW10[decimals] < _NARROW_Q / 4
        q = np.empty(flat.size, np.int32 if small else np.int64)
        missed = _round_exactly(flat, decimals, q)
        if missed is _TOO_WIDE:
            q = np.empty(flat.size, np.int64)
            missed = _round_exactly(flat, decimals, q)
        if missed is None:
            return decimals, q
        more = _sample_decimals(missed, most)
        decimals = more if more is not None and more > decimals else None
    return None


def _round_exactly(flat: np.ndarray, decimals: int, q: np.ndarray) -> np.ndarray | None:
    """Write ``rint(x * 10**decimals)`` into *q*; return the first values it misses, if any.

    A value is missed when :func:`_from_decimals` does not give its bits back. The work goes
    a cache-sized block at a time, and stops once it has :data:`_DECIMAL_SAMPLE` misses
    (*q* is then incomplete). The check divides the rounded floats themselves: within
    int64's range they are integers that convert exactly, so they give what ``q`` gives,
    without converting ``q`` back; values beyond that range (and NaN) have no ``q`` and miss.
    An int32 *q* takes integers below :data:`_NARROW_Q` only: at the first block holding an
    int64 beyond, the result is :data:`_TOO_WIDE` (and *q* incomplete).
    """
    limit = _INT64_END if q.itemsize == 8 else _NARROW_Q  # noqa: PLR2004
    bits = flat.view(_SIGNED[flat.itemsize])
    size = min(flat.size, _BLOCK)
    scaled = np.empty(size, np.float64)
    back = np.empty(size, flat.dtype)
    power = _POW10[decimals]
    missed: list[np.ndarray] = []
    found = 0
    for start in range(0, flat.size, _BLOCK):
        stop = min(flat.size, start + _BLOCK)
        size = stop - start
        block = scaled[:size]
        with np.errstate(over="ignore", invalid="ignore"):  # such values fail the check below
            np.multiply(flat[start:stop], power, out=block, dtype=np.float64)
            np.rint(block, out=block)
            np.divide(block, power, out=back[:size], casting="same_kind")
            np.copyto(q[start:stop], block, casting="unsafe")
        wrong = back[:size].view(bits.dtype) != bits[start:stop]
        if not -limit <= float(_least(block)) <= float(_greatest(block)) < limit:
            outside = ~((block >= -limit) & (block < limit))  # NaN compares false
            if limit != _INT64_END and (outside & (np.abs(block) < _INT64_END)).any():
                return _TOO_WIDE  # an int64, not an int32: rounded again into int64
            wrong |= outside  # NaN, infinity and beyond int64 have no integer: they miss
        if wrong.any():
            missed.append(flat[start:stop][wrong])
            found += missed[-1].size
            if found >= _DECIMAL_SAMPLE:
                break
    return np.concatenate(missed)[:_DECIMAL_SAMPLE] if missed else None


def _sample_decimals(sample: np.ndarray, most: int) -> int | None:
    """Return the fewest places, up to *most*, that give every value of *sample* back."""
    with np.errstate(over="ignore", invalid="ignore"):  # huge values and NaN simply fail
        scaled = np.rint(sample.astype(np.float64) * _POW10_COLUMN[: most + 1])
        back = (scaled / _POW10_COLUMN[: most + 1]).astype(sample.dtype)
    signed = _SIGNED[sample.itemsize]
    exact = (back.view(signed) == sample.view(signed)) & (np.abs(scaled) <= _EXACT_INT)
    fits = exact.all(axis=1)
    return int(np.argmax(fits)) if fits.any() else None


def _pack(work: np.ndarray, level: int) -> _Packing:
    """Delta-code, reduce, pack and compress the working integers (steps 2 to 6).

    Large arrays are delta-coded a block at a time, so that the full-width residuals are
    never written to memory and read back: in one pass when the first block's proposal fits
    them all (:func:`_reduce_in_one_pass`), else twice, once for the residuals' range and
    once to write them reduced and narrowed.
    """
    order = _choose_order(work)
    count = work.size - order
    seeds = _seeds(work, order)
    if count > _BLOCK and (one_pass := _reduce_in_one_pass(work, order)) is not None:
        low, span, divisor, reduced = one_pass
        width, flags, layout, payload = _pack_stream(reduced, span // divisor, level)
        return _Packing(order, seeds, low, divisor, width, flags, layout, payload)
    residuals = _residual_block(work, order, 0, count) if count <= _BLOCK else None
    if residuals is not None:
        low, high = int(residuals.min()), int(residuals.max())
    else:
        lows, highs = [], []
        for start in range(0, count, _BLOCK):
            block = _residual_block(work, order, start, min(count, start + _BLOCK))
            lows.append(int(block.min()))
            highs.append(int(block.max()))
        low, high = min(lows), max(highs)
    span = high - low
    if span == 0:
        return _Packing(order, seeds, low, 1, 0, 0, _PACKED, b"")
    unsigned = _UNSIGNED[work.itemsize]
    offset = unsigned.type(low % 2 ** (8 * work.itemsize))
    narrow = _narrowest(span)  # holds every reduced value
    step = max(1, count // _GCD_SAMPLE)
    sample = _residual_sample(work, order, step, residuals).view(unsigned)
    divisor = math.gcd(int(np.gcd.reduce(sample - offset)), span) if span > 1 else 1
    if divisor > 1 and count > _ORDER_SAMPLE:
        # A sample of mostly zeros proposes the span itself; a prefix cheaply brings it down.
        prefix = np.subtract(_residual_block(work, order, 0, _ORDER_SAMPLE).view(unsigned), offset)
        divisor = int(np.gcd.reduce(prefix, initial=unsigned.type(divisor)))
    if residuals is None:
        # One pass per block both reduces and narrows the values.
        reduced = np.empty(count, narrow)
        buffer = np.empty(_BLOCK, work.dtype)
        for start in range(0, count, _BLOCK):
            stop = min(count, start + _BLOCK)
            block = _residual_block(work, order, start, stop, buffer[: stop - start])
            np.subtract(block.view(unsigned), offset, out=reduced[start:stop], casting="unsafe")
    elif narrow.itemsize < work.itemsize:
        # One pass both reduces and narrows the values: the later steps read fewer bytes.
        wide = residuals.view(unsigned)
        reduced = np.subtract(wide, offset, out=np.empty(count, narrow), casting="unsafe")
    else:
        # Wrapping, in place unless that would write into the input.
        wide = residuals.view(unsigned)
        reduced = np.subtract(wide, offset, out=None if order == 0 else wide)
    if divisor > 1:
        reduced, divisor = _divide_by_gcd(reduced, divisor, span)
    width, flags, layout, payload = _pack_stream(reduced, span // divisor, level)
    return _Packing(order, seeds, low, divisor, width, flags, layout, payload)


def _pack_stream(
    reduced: np.ndarray, top: int, level: int
) -> tuple[int, int, int, bytes | memoryview]:
    """Pack and compress the reduced values; return the width, flags, layout and payload.

    Zeros cost a byte in every byte plane; when they are common, a bitmap that marks the
    non-zero values, followed by those values alone, is often smaller. Large arrays make that
    choice on a prefix and then pack the whole array one way only, unless the prefix shrinks so
    much that trying both ways on everything is cheap (and the prefix's fixed costs would
    mislead the choice).
    """
    count = reduced.size
    try_mask = (count - int(np.count_nonzero(reduced))) * _SPARSE_SHARE >= count
    if try_mask and count > 2 * _MASK_TRIAL:
        prefix = reduced[:_MASK_TRIAL]
        stream = _pack_values(prefix, top)[1]
        plain = _compress(stream, level)[1]
        if len(plain) * _TINY_SHARE >= stream.size:
            masked = _compress(_masked_stream(prefix, top), level)[1]
            if len(masked) < len(plain):
                layout, payload = _compress(_masked_stream(reduced, top), level)
                return _pack_width(top), _ZERO_MASK, layout, payload
            try_mask = False
    width, stream = _pack_values(reduced, top)
    layout, payload = _compress(stream, level)
    flags = 0
    if try_mask:
        masked_layout, masked_payload = _compress(_masked_stream(reduced, top), level)
        if len(masked_payload) < len(payload):
            flags, layout, payload = _ZERO_MASK, masked_layout, masked_payload
    split = _split_stream(reduced, top, level, len(payload))
    if split is not None:
        return split
    return width, flags, layout, payload


def _split_stream(
    reduced: np.ndarray, top: int, level: int, budget: int
) -> tuple[int, int, int, bytes] | None:
    """Return the split layout of the values when it is smaller than *budget* bytes, or None.

    The low ``b`` bits of every value are packed densely, eight values in ``b`` bytes, and
    stored as they are (they are close to random, so zstd cannot shrink them); the high bits
    that remain, at most 8, are one byte per value that zstd codes alone. zstd's entropy
    coder then sees only the skewed high part, where byte planes would share one Huffman
    table between a random low plane and a skewed high one, and small alphabets (a walk's
    steps of -3..3) cost their bits instead of a byte or a nibble each. ``b`` is chosen by the
    entropy of the high part on a sample; the trial packing must then beat *budget*.
    """
    bits = top.bit_length()
    count = reduced.size
    if not 0 < bits <= 2 * _DENSE_MOST:
        return None
    chunks = -(-count // 8)
    step = max(1, count // _SPLIT_SAMPLE)
    sample = reduced[::step][:_SPLIT_SAMPLE]
    lows, ends, starts, segments = _split_plan(bits)
    # Per candidate number of low bits, the entropy of the high part from one histogram of
    # the values' top bits (at most 256 bins: the high part of the fewest low bits).
    shift = lows[0]
    bins = 1 << (bits - shift)
    running = np.zeros(bins + 1, np.int64)
    top_bits = np.right_shift(sample, sample.dtype.type(shift)).astype(np.intp)
    np.cumsum(np.bincount(top_bits, minlength=bins), out=running[1:])
    sums = np.add.reduceat(_XLOGX[running[ends] - running[starts]], segments).tolist()
    whole = float(_XLOGX[sample.size])
    best = (math.inf, 0)
    for low, spent in zip(lows, sums, strict=True):  # a few candidates: plain floats
        entropy = (whole - spent) / sample.size
        high = min(count, count * entropy / 8 * _ZSTD_SLACK + _ZSTD_OVERHEAD) if low < bits else 0
        best = min(best, (chunks * low + high, low))
    if best[0] >= budget:
        return None
    low = best[1]
    parts = [_dense(reduced, low)]
    high_layout = 0
    if low < bits:
        high = np.right_shift(reduced, reduced.dtype.type(low)).astype(np.uint8)
        high_layout, payload = _compress(high, level)
        parts.append(bytes(payload))
    packed = b"".join(parts)
    if len(packed) >= budget:
        return None
    return low | high_layout << 4, 0, _SPLIT, packed


@functools.cache
def _split_plan(bits: int) -> tuple[list[int], np.ndarray, np.ndarray, np.ndarray]:
    """Return the candidate low bit counts for values of *bits* bits, and their bins.

    The histogram counts ``value >> lows[0]``. For candidate ``low``, each value of the high
    part ``value >> low`` is the sum of ``2 ** (low - lows[0])`` of its bins: the groups' ends
    and starts in a running sum (all candidates one after the other), and where each
    candidate's groups begin.
    """
    lows = list(range(max(1, bits - 8), min(_DENSE_MOST, bits) + 1))
    groups = [1 << (low - lows[0]) for low in lows]  # bins of value >> lows[0] per group
    bins = 1 << (bits - lows[0])
    ends = [np.arange(group, bins + 1, group) for group in groups]
    segments = np.cumsum([0] + [part.size for part in ends[:-1]])
    joined = np.concatenate(ends)
    widths = np.repeat(groups, [part.size for part in ends])
    return lows, joined, joined - widths, segments


def _dense(values: np.ndarray, low: int) -> bytes:
    """Return the low *low* bits of every value, eight values per *low* bytes, LSB first.

    That is one little-endian bit stream: value ``i`` holds bits ``i * low`` on, and the
    last chunk is padded with zero bits to eight values.
    """
    count = values.size
    chunks = -(-count // 8)
    # Each chunk of eight values becomes one 64-bit word, value j in bits j * low on; the
    # word's low bytes are the chunk's bytes.
    flat = np.zeros(chunks * 8, np.uint64)
    np.bitwise_and(values, values.dtype.type((1 << low) - 1), out=flat[:count], casting="unsafe")
    words = flat.reshape(chunks, 8)
    words <<= _DENSE_SHIFTS[low]
    packed: np.ndarray = np.bitwise_or.reduce(words, axis=1)
    chunk_bytes: bytes = packed.view(np.uint8).reshape(chunks, 8)[:, :low].tobytes()
    return chunk_bytes


def _masked_stream(reduced: np.ndarray, top: int) -> np.ndarray:
    """Return a bitmap of the non-zero values followed by those values, packed.

    The non-zero values include the maximum, so they pack at the same width as all of them.
    """
    nonzero = reduced != 0
    mask = np.packbits(nonzero)
    kept = np.compress(nonzero, reduced)
    width = _pack_width(top)
    if width < 8 or kept.size <= _FEW:  # noqa: PLR2004
        return np.concatenate((mask, _pack_values(kept, top)[1]))
    # The byte planes are written in place behind the bitmap, not joined to it.
    stream = np.empty(mask.size + width // 8 * kept.size, np.uint8)
    stream[: mask.size] = mask
    _byte_planes(kept, width // 8, out=stream[mask.size :])
    return stream


def _choose_order(work: np.ndarray) -> int:
    """Return the delta order (0, 1 or 2) with the fewest estimated bits on a prefix.

    The estimate sums, per order, the bit lengths of the residuals' distances from their
    1st percentile: one low outlier then costs its own bits only, where a distance from the
    minimum (the frame of reference) would charge its size to every value. It picks the order
    that trial compression picks nearly always, at a fraction of the cost.
    """
    n = work.size
    if n < 3:  # noqa: PLR2004
        return 0
    sample = work[: _ORDER_SAMPLE + 2]
    length = sample.size - 2
    candidates = np.empty((3, length), work.dtype)
    candidates[0] = sample[2:]
    first = np.subtract(sample[1:], sample[:-1])
    candidates[1] = first[1:]
    np.subtract(first[1:], first[:-1], out=candidates[2])
    spread = candidates[:, :: max(1, length // _FLOOR_SAMPLE)]  # the floor from a few values
    low = spread.shape[1] // 100
    floor = np.partition(spread, low, axis=1)[:, low : low + 1]
    candidates -= floor  # wraps like the residuals themselves
    # A float's exponent is its magnitude's, so the sign needs no clearing.
    bits = np.frexp(candidates.astype(np.float64))[1]
    per_value = (bits.sum(axis=1) / length).tolist()
    costs = [per_value[k] * (n - k) + 64 * k for k in range(3)]
    return costs.index(min(costs))


def _seeds(work: np.ndarray, order: int) -> tuple[int, ...]:
    """Return the values the residuals of *order* start from (wrapping like them)."""
    if order == 0:
        return ()
    if order == 1:
        return (int(work[0]),)
    return int(work[0]), int(np.subtract(work[1:2], work[:1])[0])


def _residual_block(
    work: np.ndarray, order: int, start: int, stop: int, out: np.ndarray | None = None
) -> np.ndarray:
    """Return residuals *start* to *stop* of *order* (wrapping); order 0 is a view of *work*."""
    if order == 0:
        return work[start:stop]
    if order == 1:
        block: np.ndarray = np.subtract(work[start + 1 : stop + 1], work[start:stop], out=out)
        return block
    first = np.subtract(work[start + 1 : stop + 2], work[start : stop + 1])
    second: np.ndarray = np.subtract(first[1:], first[:-1], out=out)
    return second


def _residual_sample(
    work: np.ndarray, order: int, step: int, residuals: np.ndarray | None
) -> np.ndarray:
    """Return every *step*-th residual, the first :data:`_GCD_SAMPLE` of them."""
    if residuals is not None:
        return residuals[::step][:_GCD_SAMPLE]
    index = np.arange(0, step * _GCD_SAMPLE, step)
    if order == 0:
        return work[index]
    if order == 1:
        sample: np.ndarray = np.subtract(work[index + 1], work[index])
        return sample
    later: np.ndarray = np.subtract(work[index + 2], work[index + 1])
    later -= np.subtract(work[index + 1], work[index])  # wraps like the residuals
    return later


def _reduce_in_one_pass(work: np.ndarray, order: int) -> tuple[int, int, int, np.ndarray] | None:
    """Return the low, span, divisor and reduced residuals of a large array, or None.

    The general path reads the working integers twice: once for the residuals' range, once
    to reduce them by its minimum. This pass reads them once. The first block proposes a
    reference residual ``p`` (its least), the divisor (the gcd of the distances from ``p``
    on a prefix and on a sample spread over the array) and the narrowest container with room
    for half the first block's spread again on either side. Each block is then delta-coded,
    checked to fit, biased to ``(r - p) / divisor + half`` (``half``: the room below) and
    divided as :func:`_divide_by_gcd` does, in the cache; the true minimum comes off the
    narrow values at the end. The result is the general path's: every distance being a
    multiple of the proposed divisor, that divisor is the residuals' gcd. The answer is
    None, and the caller takes the general path, when a value does not fit or is not a
    multiple of the divisor.
    """
    unsigned = _UNSIGNED[work.itemsize]
    kind = unsigned.type
    bits = 8 * work.itemsize
    count = work.size - order
    first = _residual_block(work, order, 0, _BLOCK)
    reference, most = int(first.min()), int(first.max())  # a residual: see the divisor
    sample = _residual_sample(work, order, max(1, count // _GCD_SAMPLE), None)
    distances = np.subtract(np.concatenate((first[:_ORDER_SAMPLE], sample)), reference)
    # Wrapped distances would propose a wrong divisor, but only for values that do not fit.
    divisor = int(np.gcd.reduce(np.abs(distances)))
    if divisor <= 0:  # a constant sample proposes nothing; the general path looks at all
        return None
    spread = (most - reference) // divisor
    size = next((c for c in (1, 2, 4) if 1 << (8 * c) > 2 * spread), 8)
    half = ((1 << (8 * size)) - spread) // 2  # room on either side of the first block's range
    # Every biased distance that fits is below 2**(bits - 1): it neither wraps nor aliases.
    if size > work.itemsize or divisor << (8 * size) > 1 << (bits - 1):
        return None
    floor, ceiling = reference - half * divisor, reference + ((1 << (8 * size)) - half) * divisor
    twos, odd, inverse, most_product, low_bits = _split_divisor(divisor, unsigned)
    bias = kind(floor % (1 << bits))
    out = np.empty(count, _UNSIGNED[size])
    buffer = np.empty(_BLOCK, unsigned)
    low, high = reference, most
    for start in range(0, count, _BLOCK):
        stop = min(count, start + _BLOCK)
        block = buffer[: stop - start]
        residuals = _residual_block(work, order, start, stop, block.view(work.dtype))
        least, greatest = int(_least(residuals)), int(_greatest(residuals))
        if least < floor or greatest >= ceiling:
            return None
        low, high = min(low, least), max(high, greatest)
        if divisor == 1:
            np.subtract(residuals.view(unsigned), bias, out=out[start:stop], casting="unsafe")
            continue
        np.subtract(residuals.view(unsigned), bias, out=block)
        if odd > 1:
            np.multiply(block, inverse, out=block)  # wraps
            if int(_greatest(block)) > most_product:
                return None
        if twos and int(np.bitwise_or.reduce(block)) & low_bits:
            return None
        np.right_shift(block, kind(twos), out=out[start:stop], casting="unsafe")
    span = high - low
    out -= out.dtype.type((low - floor) // divisor)
    narrow = _narrowest(span // divisor)
    return low, span, divisor, out if narrow.itemsize == size else out.astype(narrow)


class _Split(NamedTuple):
    """A divisor as the exact division of :func:`_divide_by_gcd` uses it, in *kind* words."""

    twos: int  # its factors of two: the quotient's final right shift
    odd: int  # the rest
    inverse: np.unsignedinteger  # odd's inverse modulo the word size
    most: int  # the largest product of a multiple of odd by the inverse
    low_bits: int  # a multiple of 2**twos has none of these set


def _split_divisor(divisor: int, kind: np.dtype) -> _Split:
    twos = (divisor & -divisor).bit_length() - 1
    odd = divisor >> twos
    modulus = 1 << (8 * kind.itemsize)
    return _Split(
        twos, odd, kind.type(pow(odd, -1, modulus)), (modulus - 1) // odd, (1 << twos) - 1
    )


def _divide_by_gcd(reduced: np.ndarray, divisor: int, span: int) -> tuple[np.ndarray, int]:
    """Divide the values by their greatest common divisor; return them and the divisor.

    *reduced* is the caller's own array and may be divided in place; *divisor* is a multiple
    of the gcd (proposed by a sample and a prefix) and *span* the largest value.
    Multiplying by the inverse of the divisor's odd part (modulo the word size) gives every
    multiple its exact quotient and every other value a quotient beyond the largest possible
    one, so one multiplication and two reductions both divide and check. The values that are
    not multiples, if any, bring the divisor down to the gcd of the whole array, and one more
    multiplication divides by that. The final shift by the divisor's factors of two writes
    the quotients in the narrowest type that holds them.
    """
    kind = reduced.dtype.type
    modulus = 1 << (8 * reduced.itemsize)
    twos, odd, inverse, most, low_bits = _split_divisor(divisor, reduced.dtype)
    if odd > 1:
        np.multiply(reduced, inverse, out=reduced)  # wraps
    if (odd > 1 and int(_greatest(reduced)) > most) or (
        twos and int(np.bitwise_or.reduce(reduced)) & low_bits
    ):
        # Some values are not multiples: they alone bring the divisor down to the gcd.
        missed = np.greater(reduced, kind(most))
        if twos:
            missed |= np.bitwise_and(reduced, kind(low_bits)).astype(bool)
        values = np.multiply(reduced[missed], kind(odd))  # those values again, exactly
        divisor = math.gcd(divisor, int(np.gcd.reduce(values)))
        shrunk_twos = (divisor & -divisor).bit_length() - 1
        shrunk_odd = divisor >> shrunk_twos
        # Back to the values (times odd), then on to the quotients by the new odd part.
        factor = odd * pow(shrunk_odd, -1, modulus) % modulus
        if factor != 1:
            np.multiply(reduced, kind(factor), out=reduced)
        twos = shrunk_twos
        if divisor == 1:
            return reduced, 1
    narrow = _narrowest(span // divisor)
    out = np.empty(reduced.size, narrow) if narrow.itemsize < reduced.itemsize else reduced
    if twos:
        np.right_shift(reduced, kind(twos), out=out, casting="unsafe")
    elif out is not reduced:
        np.copyto(out, reduced, casting="unsafe")
    return out, divisor


def _narrowest(top: int) -> np.dtype:
    """Return the narrowest unsigned container (1, 2, 4 or 8 bytes) of values up to *top*."""
    return _UNSIGNED[_CONTAINER[-(-top.bit_length() // 8)]]


def _pack_width(top: int) -> int:
    """Return the bits per value that hold values up to *top*: 0, 1, 2, 4 or 8..64 by 8."""
    bits = top.bit_length()
    if bits > 4:  # noqa: PLR2004
        return 8 * ((bits + 7) // 8)
    return 4 if bits == 3 else bits  # noqa: PLR2004


def _pack_values(values: np.ndarray, top: int) -> tuple[int, np.ndarray]:
    """Pack unsigned values no larger than *top*; return the width in bits and the stream."""
    width = _pack_width(top)
    if width >= 8:  # noqa: PLR2004
        return width, _byte_planes(values, width // 8)
    return width, _pack_bits(values.astype(np.uint8, copy=False), width)


def _pack_bits(values: np.ndarray, width: int) -> np.ndarray:
    """Pack uint8 values below ``2**width``, the first value in the most significant bits."""
    if width == 1:
        return np.packbits(values)
    per_byte = 8 // width
    if values.size % per_byte:
        values = np.concatenate((values, np.zeros(per_byte - values.size % per_byte, np.uint8)))
    if width == 2:  # noqa: PLR2004
        # Four values are one little-endian uint32: a0 | a1 << 8 | a2 << 16 | a3 << 24.
        word = values.view("<u4")
        packed = (word << 6) | (word >> 4) | (word >> 14) | (word >> 24)
    else:
        pair = values.view("<u2")
        packed = (pair << 4) | (pair >> 8)
    return packed.astype(np.uint8)


def _byte_planes(values: np.ndarray, planes: int, out: np.ndarray | None = None) -> np.ndarray:
    """Return the low *planes* bytes of every value, all first bytes first.

    *out*, when given, is the uint8 buffer of ``planes * values.size`` bytes to write into.
    """
    values = values.astype(_UNSIGNED[_CONTAINER[planes]], copy=False)
    count = values.size
    if planes == 1:
        if out is None:
            return values
        out[...] = values
        return out
    stream = np.empty(planes * count, np.uint8) if out is None else out
    if count <= _FEW or planes >= _WIDE_PLANES:
        as_bytes = values.view(np.uint8).reshape(count, -1)
        stream.reshape(planes, count)[...] = as_bytes[:, :planes].T
        return stream
    for plane in range(planes):
        chunk = stream[plane * count : (plane + 1) * count]
        np.right_shift(values, 8 * plane, out=chunk, casting="unsafe")  # keeps the low byte
    return stream


def _compressor(level: int) -> zstandard.ZstdCompressor:
    # A zstandard context must not be shared between threads; one per thread and level saves
    # setting it up again for every small array.
    cache: dict[int, zstandard.ZstdCompressor] | None = getattr(_local, "compressors", None)
    if cache is None:
        cache = _local.compressors = {}
    compressor = cache.get(level)
    if compressor is None:
        compressor = cache[level] = zstandard.ZstdCompressor(level=level)
    return compressor


def _decompressor() -> zstandard.ZstdDecompressor:
    decompressor: zstandard.ZstdDecompressor | None = getattr(_local, "decompressor", None)
    if decompressor is None:
        decompressor = _local.decompressor = zstandard.ZstdDecompressor()
    return decompressor


def _compress(stream: np.ndarray, level: int) -> tuple[int, bytes | memoryview]:
    view = stream.data
    compressed = _compressor(level).compress(view)
    if len(compressed) < stream.size:
        return _ZSTD, compressed
    return _PACKED, view


# --- format 2: models --------------------------------------------------------------------

_BITS, _DECIMALS, _FLOAT32, _FLOAT32_DECIMALS, _GRID, _RAW_MODEL = range(6)
_FLOAT_MODELS: Final = frozenset((_DECIMALS, _FLOAT32, _FLOAT32_DECIMALS))
_EXCEPTIONS = 0x40  # byte 6 of a format-2 frame: a stream of corrections follows
_HEAD2: Final = struct.Struct("<4s4B")
_HEAD2_SIZE: Final = _HEAD2.size
_UNSIGNED_LETTER: Final = "BHIQ"
_SIGNED_LETTER: Final = "bhiq"
_SHARE_EXACT = 0.5  # a model is tried when this share of a sample needs no correction
_GRID_SPREAD = 8  # a grid's remainders must spread over less than 1/8 of its step
_GRID_SMALLEST = 8  # the smallest median step looked at as a grid


class _Model(NamedTuple):
    """How the values become the working integers of one or two packed streams.

    ``kind`` is a model code; ``param`` the decimal places or the grid step; ``streams`` the
    working integers of each stream (for float models, an optional second stream holds the
    corrections of the values' bits).
    """

    kind: int
    param: int
    streams: tuple[np.ndarray, ...]


def _models(flat: np.ndarray) -> list[_Model]:
    """Return the models worth packing for these values; the smallest frame wins.

    Every model gives every value back bit for bit by construction: its corrections are the
    difference between the values and what the decoder's own formula rebuilds.
    """
    plain = _Model(_BITS, 0, (flat.view(_SIGNED[flat.itemsize]),))
    if flat.dtype.kind == "f" and flat.itemsize >= 4:  # noqa: PLR2004
        exact = _find_decimals(flat)
        most = _FIND_DECIMALS[flat.itemsize]
        near = _near_decimals(flat, _DECIMALS, most, below=None if exact is None else exact[0])
        if exact is not None:
            # Exact with more places than most values need (a few one ulp off): compare.
            models = [_Model(_DECIMALS, exact[0], (exact[1],))]
            return models if near is None else [*models, near]
        models = [plain]
        if near is not None:
            models.append(near)
        if flat.itemsize == 8 and _sample_share(flat, _is_float32) >= _SHARE_EXACT:  # noqa: PLR2004
            models += _float32_models(flat)
        return models
    if flat.dtype == np.int64 and (grid := _find_grid(flat)) is not None:
        return [plain, grid]
    return [plain]


def _sample(flat: np.ndarray) -> np.ndarray:
    return flat[:: max(1, flat.size // _DECIMAL_SAMPLE)][:_DECIMAL_SAMPLE]


def _sample_share(flat: np.ndarray, test: object) -> float:
    sample = _sample(flat)
    return float(np.mean(test(sample)))  # type: ignore[operator]


def _is_float32(values: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):
        back = values.astype(np.float32).astype(np.float64)
    same: np.ndarray = back.view(np.int64) == values.view(np.int64)
    return same


def _approximate(q: np.ndarray, kind: int, places: int, dtype: np.dtype) -> np.ndarray:
    """Return what the decoder rebuilds from *q* before corrections: both sides call this."""
    with np.errstate(over="ignore"):  # beyond float32's range is inf: a correction fixes it
        if kind == _FLOAT32_DECIMALS:
            wide: np.ndarray = _from_decimals(q, places, np.dtype(np.float32)).astype(np.float64)
            return wide
        return _from_decimals(q, places, dtype)


def _corrections(flat: np.ndarray, approx: np.ndarray) -> np.ndarray:
    signed = _SIGNED[flat.itemsize]
    difference: np.ndarray = np.subtract(flat.view(signed), approx.view(signed))  # wraps
    return difference


def _scaled(flat: np.ndarray, places: int) -> np.ndarray:
    """Return int64 ``rint(x * 10**places)``, 0 where that has no exact integer."""
    with np.errstate(over="ignore", invalid="ignore"):
        scaled = np.multiply(flat, _POW10[places], dtype=np.float64)
        bad = ~(np.abs(scaled) <= _EXACT_INT)
        np.rint(scaled, out=scaled)
    if bad.any():
        scaled[bad] = 0.0
    q: np.ndarray = scaled.astype(np.int64)
    return q


def _near_decimals(
    flat: np.ndarray, kind: int, most: int, *, below: int | None = None
) -> _Model | None:
    """Return decimals with exceptions: places that most sampled values have exactly.

    The places are the fewest that give back (nearly) as many sampled values as any number
    of places does; the values they miss, such as prices one ulp off, become corrections.
    With *below*, places as many or more are not worth building (None).
    """
    sample = _sample(flat)
    with np.errstate(over="ignore", invalid="ignore"):
        scaled = np.rint(sample.astype(np.float64) * _POW10_COLUMN[: most + 1])
        back = scaled / _POW10_COLUMN[: most + 1]
        back = (
            back.astype(np.float32).astype(np.float64)
            if kind == _FLOAT32_DECIMALS
            else back.astype(sample.dtype)
        )
    signed = _SIGNED[sample.itemsize]
    exact = (back.view(signed) == sample.view(signed)) & (np.abs(scaled) <= _EXACT_INT)
    shares = exact.mean(axis=1)
    best = float(shares.max())
    if best < _SHARE_EXACT:
        return None
    places = int(np.argmax(shares >= best - 1 / 16))
    if below is not None and places >= below:
        return None
    q = _scaled(flat, places)
    corrections = _corrections(flat, _approximate(q, kind, places, flat.dtype))
    if not corrections.any():
        return _Model(kind, places, (q,))
    return _Model(kind, places, (q, corrections))


def _float32_models(flat: np.ndarray) -> list[_Model]:
    """Return float64 values that are mostly float32s: as float32 bits, and as decimals."""
    with np.errstate(over="ignore", invalid="ignore"):
        narrow = flat.astype(np.float32)
    corrections = _corrections(flat, narrow.astype(np.float64))
    streams = (narrow.view(np.int32),) + ((corrections,) if corrections.any() else ())
    models = [_Model(_FLOAT32, 0, streams)]
    decimals = _near_decimals(flat, _FLOAT32_DECIMALS, _FIND_DECIMALS[4])
    return models if decimals is None else [*models, decimals]


def _find_grid(flat: np.ndarray) -> _Model | None:
    """Return int64 values on a round step plus small remainders, such as jittered clocks.

    The step is the median difference of a short prefix, rounded to one or two significant digits;
    it is kept when the remainders, shifted so that their median sits mid-step, spread over a
    small part of it. ``q = (x + shift) // step`` and ``r = x - q * step`` are then packed
    apart: the quotients step by small integers, the remainders stay in a narrow band.
    """
    if flat.size < 2 * _GRID_SMALLEST:
        return None
    steps = np.diff(flat[: _FLOOR_SAMPLE + 1])
    median = int(np.partition(steps, steps.size // 2)[steps.size // 2])
    if median < _GRID_SMALLEST:
        return None
    prefix = flat[: _ORDER_SAMPLE + 1]
    best: tuple[int, int, int] | None = None  # spread, step, shift
    digits = len(str(median))
    for significant in (1, 2):
        unit = 10 ** max(0, digits - significant)
        step = round(median / unit) * unit
        remainders = np.remainder(prefix, step)
        shift = (step // 2 - _int_median(remainders)) % step
        centred = np.remainder(remainders + shift, step)
        spread = int(centred.max()) - int(centred.min())
        if 0 < spread * _GRID_SPREAD < step and (best is None or spread < best[0]):
            best = (spread, step, shift)
    if best is None or int(flat.max()) + best[2] >= 2**63:
        return None
    _, step, shift = best
    quotients = np.add(flat, shift)
    np.floor_divide(quotients, step, out=quotients)
    remainders = np.multiply(quotients, step)
    np.subtract(flat, remainders, out=remainders)
    return _Model(_GRID, step, (quotients, remainders))


def _int_median(values: np.ndarray) -> int:
    """Return ``int(numpy.median(values))`` of integers, by one partition and no more.

    As numpy does, the middle value or the mean of the middle two is taken in float64.
    """
    half = values.size // 2
    if values.size % 2:
        return int(float(np.partition(values, half)[half]))
    part = np.partition(values, (half - 1, half))
    return int((float(part[half - 1]) + float(part[half])) / 2)


def _size_code(values: Sequence[int], *, signed: bool) -> int:
    """Return 0..3 for the fewest bytes (1, 2, 4 or 8) that hold every value."""
    if not values:
        return 0
    # bit_length grows with a value and with the complement of a negative one.
    most, least = max(values), min(values)
    bits = max(most.bit_length() if most >= 0 else 0, (~least).bit_length() if least < 0 else 0)
    bits += signed
    return 0 if bits <= 8 else 1 if bits <= 16 else 2 if bits <= 32 else 3  # noqa: PLR2004


def _frame2(
    code: int, shape: tuple[int, ...], model: _Model, packings: list[_Packing], raw: object
) -> bytes:
    """Return a format-2 frame; *raw* is the payload of a raw frame (no packings)."""
    ndim = len(shape)
    fields = list(shape) if ndim != 1 else [shape[0]]
    if model.kind == _GRID:
        fields.append(model.param)
    sizes = _size_code(fields, signed=False)
    places = model.param if model.kind in (_DECIMALS, _FLOAT32_DECIMALS) else 0
    exceptions = _EXCEPTIONS if model.kind in _FLOAT_MODELS and len(packings) == 2 else 0  # noqa: PLR2004
    parts: list[bytes | memoryview] = [
        _HEAD2.pack(MAGIC, FORMAT_VERSION, code | model.kind << 4, ndim | exceptions,
                    sizes | places << 2),
        struct.pack("<" + _UNSIGNED_LETTER[sizes] * len(fields), *fields),
    ]  # fmt: skip
    parts += [_describe_stream(packing) for packing in packings]
    parts += [packing.payload for packing in packings] if packings else [raw]  # type: ignore[list-item]
    crc = 0
    for part in parts:
        crc = _crc32(part, crc)
    return b"".join((*parts, _CRC.pack(crc)))


def _describe_stream(packing: _Packing) -> bytes:
    """Return a stream's descriptor: three bytes, then its fields at their sizes."""
    length = (
        len(packing.payload)
        if not isinstance(packing.payload, memoryview)
        else (packing.payload.nbytes)
    )
    has_divisor = packing.divisor != 1
    codes = (
        _size_code([length], signed=False),
        _size_code([packing.reference], signed=True),
        _size_code([packing.divisor], signed=False) if has_divisor else 0,
        _size_code(packing.seeds, signed=True),
    )
    letters = (
        _UNSIGNED_LETTER[codes[0]]
        + _SIGNED_LETTER[codes[1]]
        + (_UNSIGNED_LETTER[codes[2]] if has_divisor else "")
        + _SIGNED_LETTER[codes[3]] * packing.order
    )
    values = (length, packing.reference, *((packing.divisor,) if has_divisor else ()),
              *packing.seeds)  # fmt: skip
    flags = packing.layout | packing.flags << 2 | packing.order << 3 | has_divisor << 5
    sizes = codes[0] | codes[1] << 2 | codes[2] << 4 | codes[3] << 6
    return bytes((flags, packing.width, sizes)) + struct.pack("<" + letters, *values)


# --- decoding ------------------------------------------------------------------------------


def _decode(data: bytes | bytearray | memoryview, max_bytes: int) -> np.ndarray:
    frame = _as_bytes(data)
    if len(frame) < _HEAD2_SIZE + _CRC.size or bytes(frame[:4]) != MAGIC:
        if len(frame) < _FIXED_SIZE:
            _refuse_short(frame)
        raise CompressionError(f"not an orso_pg array frame: {_describe_foreign(frame)}")
    version = frame[4]
    if version == FORMAT_VERSION:
        parsed = _parse2(frame)
        return _rebuild2(parsed, max_bytes)
    if version != 1:
        raise CompressionError(
            f"frame format version {version} is not supported: this orso_pg reads versions 1 "
            f"to {FORMAT_VERSION}; a newer orso_pg wrote it, or it is corrupt"
        )
    return _decode1(frame, max_bytes)


def _decode1(frame: memoryview, max_bytes: int) -> np.ndarray:
    """Decode a format-1 frame (still read, no longer written)."""
    size = len(frame)
    if size < _FIXED_SIZE:
        _refuse_short(frame)
    (_, _, code, layout, ndim, order, width, decimals, flags, payload_size,
     reference, divisor) = _HEAD.unpack_from(frame)  # fmt: skip
    if ndim > _MAX_NDIM or order > 2:  # noqa: PLR2004
        raise CompressionError(f"corrupt frame header: ndim {ndim}, delta order {order}")
    start = _FIXED_SIZE + 8 * (ndim + order)
    if size != start + payload_size:
        what = "truncated" if size < start + payload_size else "padded"
        raise CompressionError(
            f"{what} frame: {size} bytes where the header declares {start + payload_size}"
        )
    (crc,) = _CRC.unpack_from(frame, _HEAD.size)
    if _crc32(frame[_FIXED_SIZE:], _crc32(frame[: _HEAD.size])) != crc:
        raise CompressionError("checksum mismatch: the frame is corrupted")

    # The checksum holds, so these fields are as written; still refuse what no encoder writes.
    if not 0 < code < len(_DTYPES) or layout > _ZSTD or flags & ~_ZERO_MASK:
        raise CompressionError(f"corrupt frame: dtype {code}, layout {layout}, flags {flags}")
    dtype = _DTYPES[code]
    shape = struct.unpack_from(f"<{ndim}Q", frame, _FIXED_SIZE)
    count = math.prod(shape)
    if count * dtype.itemsize > max_bytes:
        raise CompressionError(
            f"frame declares {count * dtype.itemsize} bytes of {dtype}, more than max_bytes="
            f"{max_bytes}; pass a larger max_bytes to decode() if the frame is trusted"
        )
    payload = frame[start:]
    if layout == _RAW:
        if (order, width, decimals, flags, reference, divisor) != (0, 0, _NO_DECIMALS, 0, 0, 1):
            raise CompressionError("corrupt frame: a raw frame with packing parameters")
        if payload_size != count * dtype.itemsize:
            raise CompressionError(
                f"corrupt frame: {payload_size} raw bytes for {count} values of {dtype}"
            )
        values = np.frombuffer(payload, dtype.newbyteorder("<")).astype(dtype)
    else:
        packing = _Packing(
            order,
            struct.unpack_from(f"<{order}q", frame, _FIXED_SIZE + 8 * ndim),
            reference,
            divisor,
            width,
            flags,
            layout,
            payload,
        )
        values = _unpack(packing, dtype, decimals, count)
    if code == _BOOL_CODE and values.view(np.uint8).max(initial=0) > 1:
        raise CompressionError("corrupt frame: bool values other than 0 and 1")
    try:
        return values.reshape(shape)
    except ValueError as exc:  # numpy refuses zero-sized shapes whose other sides are huge
        raise CompressionError(f"corrupt frame: unusable shape {shape}") from exc


class _Parsed(NamedTuple):
    """The fields of a format-2 frame whose checksum holds."""

    code: int
    kind: int
    shape: tuple[int, ...]
    total: int
    param: int
    packings: list[_Packing]
    raw: memoryview | None


_STREAM_FORMATS: dict[tuple[int, int], struct.Struct] = {}


def _stream_format(flags: int, sizes: int) -> struct.Struct:
    """Return (cached) the struct of the fields that follow a stream descriptor."""
    key = (flags, sizes)
    found = _STREAM_FORMATS.get(key)
    if found is None:
        order, has_divisor = flags >> 3 & 3, flags >> 5 & 1
        letters = (
            _UNSIGNED_LETTER[sizes & 3]
            + _SIGNED_LETTER[sizes >> 2 & 3]
            + (_UNSIGNED_LETTER[sizes >> 4 & 3] if has_divisor else "")
            + _SIGNED_LETTER[sizes >> 6 & 3] * order
        )
        found = _STREAM_FORMATS[key] = struct.Struct("<" + letters)
    return found


def _parse2(frame: memoryview | bytes) -> _Parsed:
    """Check a format-2 frame's checksum and layout; return its fields."""
    size = len(frame)
    if size < _HEAD2_SIZE + _CRC.size:
        raise CompressionError(f"truncated frame: {size} bytes, shorter than a header")
    (crc,) = _CRC.unpack_from(frame, size - _CRC.size)
    if _crc32(frame[: size - _CRC.size]) != crc:
        raise CompressionError("checksum mismatch: the frame is corrupted, truncated or padded")
    # The checksum holds, so the fields are as written; still refuse what no encoder writes.
    _, _, typed, shaped, sized = _HEAD2.unpack_from(frame)
    code, kind, ndim, sizes, places = typed & 15, typed >> 4, shaped & 63, sized & 3, sized >> 2
    exceptions = bool(shaped & _EXCEPTIONS)
    if (
        not 0 < code < len(_DTYPES)
        or kind > _RAW_MODEL
        or ndim > _MAX_NDIM
        or shaped & 0x80
        or places > _MAX_DECIMALS
        or (places and kind not in (_DECIMALS, _FLOAT32_DECIMALS))
        or (exceptions and kind not in _FLOAT_MODELS)
    ):
        raise CompressionError(
            f"corrupt frame header: dtype {code}, model {kind}, ndim {ndim}, decimals {places}"
        )
    dtype = _DTYPES[code]
    if (
        (kind in (_FLOAT32, _FLOAT32_DECIMALS) and dtype != np.float64)
        or (kind == _GRID and dtype != np.int64)
        or (kind == _DECIMALS and (dtype.kind != "f" or dtype.itemsize < 4))  # noqa: PLR2004
    ):
        raise CompressionError(f"corrupt frame: model {kind} for {dtype}")
    fields = ndim + (kind == _GRID)
    try:
        values = struct.unpack_from("<" + _UNSIGNED_LETTER[sizes] * fields, frame, _HEAD2_SIZE)
        at = _HEAD2_SIZE + fields * (1 << sizes)
        shape = tuple(values[:ndim])
        param = values[-1] if kind == _GRID else places
        streams = 0 if kind == _RAW_MODEL else 2 if kind == _GRID or exceptions else 1
        described = []
        for _ in range(streams):
            flags, width, stream_sizes = frame[at], frame[at + 1], frame[at + 2]
            layout = flags & 3
            if flags & 0xC0 or not _PACKED <= layout <= _SPLIT or (flags >> 3 & 3) > 2:  # noqa: PLR2004
                raise CompressionError(f"corrupt frame: stream flags {flags}")
            layout_format = _stream_format(flags, stream_sizes)
            described.append((flags, width, layout_format.unpack_from(frame, at + 3)))
            at += 3 + layout_format.size
    except (struct.error, IndexError) as exc:
        raise CompressionError("corrupt frame: its header runs past its end") from exc
    packings = []
    for flags, width, (length, reference, *rest) in described:
        order = flags >> 3 & 3
        divisor = rest[0] if flags >> 5 & 1 else 1
        if flags >> 5 & 1 and divisor == 1:
            raise CompressionError("corrupt frame: a divisor of 1 written out")
        seeds = tuple(rest[-order:]) if order else ()
        payload = frame[at : at + length]
        at += length
        packings.append(
            _Packing(order, seeds, reference, divisor, width, flags >> 2 & 1, flags & 3, payload)
        )
    if at != size - _CRC.size and kind != _RAW_MODEL:
        raise CompressionError(f"corrupt frame: {size - _CRC.size - at} bytes after the payloads")
    count = math.prod(shape) if ndim != 1 else shape[0]
    raw = frame[at : size - _CRC.size] if kind == _RAW_MODEL else None
    return _Parsed(code, kind, shape, count, param, packings, raw)  # type: ignore[arg-type]


def _rebuild2(parsed: _Parsed, max_bytes: int) -> np.ndarray:
    """Rebuild the array of a parsed format-2 frame."""
    code, kind, shape, count, param, packings, raw = parsed
    dtype = _DTYPES[code]
    if count * dtype.itemsize > max_bytes:
        raise CompressionError(
            f"frame declares {count * dtype.itemsize} bytes of {dtype}, more than max_bytes="
            f"{max_bytes}; pass a larger max_bytes to decode() if the frame is trusted"
        )
    if raw is not None:
        if len(raw) != count * dtype.itemsize:
            raise CompressionError(
                f"corrupt frame: {len(raw)} raw bytes for {count} values of {dtype}"
            )
        values = np.frombuffer(raw, dtype.newbyteorder("<")).astype(dtype)
    elif kind == _BITS:
        values = _unpack(packings[0], dtype, _NO_DECIMALS, count)
    elif kind == _GRID:
        if param < 2:  # noqa: PLR2004
            raise CompressionError(f"corrupt frame: grid step {param}")
        quotients = _unpack(packings[0], np.dtype(np.uint64), _NO_DECIMALS, count)
        remainders = _unpack(packings[1], np.dtype(np.uint64), _NO_DECIMALS, count)
        np.multiply(quotients, np.uint64(param), out=quotients)
        values = np.add(quotients, remainders, out=quotients).view(dtype)
    else:
        if kind == _FLOAT32:
            values = _unpack(packings[0], np.dtype(np.float32), _NO_DECIMALS, count)
            values = values.astype(np.float64)
        else:
            if kind == _FLOAT32_DECIMALS and param > _FIND_DECIMALS[4]:
                raise CompressionError(f"corrupt frame: {param} decimals of float32")
            q = _unpack(packings[0], np.dtype(np.int64), _NO_DECIMALS, count)
            values = _approximate(q, kind, param, dtype)
        if len(packings) == 2:  # noqa: PLR2004
            signed = _SIGNED[dtype.itemsize]
            corrections = _unpack(packings[1], signed, _NO_DECIMALS, count)
            bits = values.view(signed)
            np.add(bits, corrections, out=bits)
    if code == _BOOL_CODE and values.view(np.uint8).max(initial=0) > 1:
        raise CompressionError("corrupt frame: bool values other than 0 and 1")
    try:
        return values.reshape(shape)
    except ValueError as exc:  # numpy refuses zero-sized shapes whose other sides are huge
        raise CompressionError(f"corrupt frame: unusable shape {shape}") from exc


def _as_bytes(data: object) -> memoryview:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CompressionError(
            f"cannot decode {type(data).__name__}: expected bytes, bytearray or memoryview"
        )
    view = memoryview(data)
    if view.ndim != 1 or view.itemsize != 1 or not view.c_contiguous:
        try:
            view = view.cast("B")
        except TypeError as exc:
            raise CompressionError(f"cannot decode this memoryview: {exc}") from exc
    return view


def _refuse_short(frame: memoryview) -> None:
    if len(frame) == 0:
        raise CompressionError("cannot decode an empty value: not an orso_pg array frame")
    if bytes(frame[:4]) == MAGIC[: len(frame)]:
        raise CompressionError(f"truncated frame: {len(frame)} bytes, shorter than a header")
    raise CompressionError(f"not an orso_pg array frame: {_describe_foreign(frame)}")


def _describe_foreign(frame: memoryview) -> str:
    start = bytes(frame[:8])
    if start.startswith(b"CYDEC"):
        return "it is a cydec blob (orso's Rust codec); decode it with cydec and encode again"
    if start.startswith(b"\x28\xb5\x2f\xfd"):
        return "it is a bare zstd frame without an orso_pg header"
    return f"it starts with {start[:4]!r} instead of {MAGIC!r}"


def _unpack(packing: _Packing, dtype: np.dtype, decimals: int, count: int) -> np.ndarray:
    """Rebuild the values of a packed frame: the inverse of :func:`_pack` and step 1."""
    order, seeds, reference, divisor, width, flags, layout, payload = packing
    if decimals != _NO_DECIMALS and (
        dtype.kind != "f" or dtype.itemsize < 4 or decimals > _MAX_DECIMALS  # noqa: PLR2004
    ):
        raise CompressionError(f"corrupt frame: decimals {decimals} for {dtype}")
    item = dtype.itemsize if decimals == _NO_DECIMALS else 8
    modulus = 2 ** (8 * item)
    if (
        count <= order
        or not (_split_fits(width, item) if layout == _SPLIT else width in _WIDTHS)
        or (layout != _SPLIT and width > 8 * item)
        or (width == 0 and flags)
        or (layout == _SPLIT and flags)
        or not 0 < divisor < modulus
        or not all(-modulus // 2 <= value < modulus // 2 for value in (reference, *seeds))
    ):
        raise CompressionError("corrupt frame: packing parameters out of range")

    residuals = count - order
    mask_size = (residuals + 7) // 8 if flags else 0
    reduced: np.ndarray | None
    if layout == _SPLIT:
        reduced = _unsplit(payload, width, residuals)
    else:
        limit = mask_size + _stream_size(width, residuals)
        stream = payload if layout == _PACKED else _decompress(payload, limit)
        if flags:
            reduced = _unmask(stream, mask_size, width, residuals)
        elif len(stream) != limit:
            raise CompressionError(f"corrupt frame: {len(stream)} packed bytes, expected {limit}")
        else:
            reduced = _unpack_values(np.frombuffer(stream, np.uint8), width, residuals)

    signed, unsigned = _SIGNED[item], _UNSIGNED[item]
    work = np.empty(count, signed)
    body = work[order:].view(unsigned)
    offset = unsigned.type(reference % modulus)
    if reduced is None:
        body.fill(offset)
    elif divisor == 1:
        np.add(reduced, offset, out=body)
    else:
        np.multiply(reduced, unsigned.type(divisor), out=body)
        np.add(body, offset, out=body)
    if order:
        work[:order] = seeds
        if order == 2:  # noqa: PLR2004
            np.add.accumulate(work[1:], out=work[1:])
        np.add.accumulate(work, out=work)
    if decimals != _NO_DECIMALS:
        return _from_decimals(work, decimals, dtype)
    return work.view(dtype)


def _split_fits(width: int, item: int) -> bool:
    """Whether a split stream's width byte is one an encoder writes for items of *item* bytes."""
    low, high_layout = width & 15, width >> 4
    return 0 < low <= _DENSE_MOST and high_layout <= _ZSTD and low + bool(high_layout) <= 8 * item


def _unsplit(payload: bytes | memoryview, width: int, count: int) -> np.ndarray:
    """Return the *count* values of a split stream: dense low bits, then the high bytes."""
    low, high_layout = width & 15, width >> 4
    size = -(-count // 8) * low
    data = np.frombuffer(payload, np.uint8)
    if data.size < size or (not high_layout and data.size != size):
        raise CompressionError(f"corrupt frame: {data.size} split bytes for {count} values")
    values: np.ndarray
    if low in (1, 2, 4, 8):  # whole bytes of 8 // low values: one table lookup
        values = np.take(_DENSE_TABLES[low], data[:size], axis=0).reshape(-1)[:count]
    else:  # each chunk of eight values is one unaligned 64-bit word of a padded copy
        padded = np.zeros(size + 8, np.uint8)
        padded[:size] = data[:size]
        words = np.ndarray((size // low, 1), np.uint64, buffer=padded, strides=(low, 8))
        shifted = np.right_shift(words, _DENSE_SHIFTS[low])
        shifted &= np.uint64((1 << low) - 1)
        values = shifted.astype(np.uint8).reshape(-1)[:count]
    if not high_layout:
        return values
    rest = payload[size:]
    high = rest if high_layout == _PACKED else _decompress(rest, count)
    if len(high) != count:
        raise CompressionError(f"corrupt frame: {len(high)} high bytes for {count} values")
    wide = np.frombuffer(high, np.uint8).astype(np.uint16)
    np.left_shift(wide, low, out=wide)
    np.bitwise_or(wide, values, out=wide)
    return wide


def _dense_fields(data: np.ndarray, low: int) -> np.ndarray:
    """Return the table indices of dense streams, one stream of *low*-bit values per row.

    Each chunk of eight values (*low* bytes) is read as one unaligned 64-bit word, from a copy
    of the rows with eight bytes of padding, and cut into fields of ``k`` values.
    """
    rows, size = data.shape
    if low in (1, 2, 4, 8):  # fields of whole bytes
        return data.astype(np.intp)
    if low in (3, 6):  # two 12-bit fields in every three bytes
        triples = data.reshape(rows, size // 3, 3)
        fields = np.empty((rows, size // 3, 2), np.intp)
        np.bitwise_and(triples[:, :, 1], 15, out=fields[:, :, 0])
        fields[:, :, 0] <<= 8
        fields[:, :, 0] |= triples[:, :, 0]
        np.left_shift(triples[:, :, 2], 4, out=fields[:, :, 1], dtype=np.intp)
        fields[:, :, 1] |= triples[:, :, 1] >> 4
        return fields.reshape(rows, -1)
    padded = np.empty((rows, size + 8), np.uint8)
    padded[:, :size] = data
    padded[:, size:] = 0
    words = np.ndarray((rows, size // low, 1), np.uint64, buffer=padded, strides=(size + 8, low, 8))
    fields = np.right_shift(words, _FIELD_SHIFTS[low])
    fields &= np.uint64((1 << _DENSE_K[low] * low) - 1)
    indices: np.ndarray = fields.reshape(rows, -1).view(np.intp)
    return indices


def _undense_rows(data: np.ndarray, low: int, count: int, table: np.ndarray) -> np.ndarray:
    """Return the rows of *count* values packed densely at *low* bits, mapped by *table*.

    *data* holds one packed stream per row; *table* has one row per field of ``k`` values
    (:data:`_DENSE_TABLES`, or one whose entries are already scaled and offset).
    """
    rows = data.shape[0]
    values = np.take(table, _dense_fields(data, low), axis=0, mode="clip")
    return values.reshape(rows, -1)[:, :count]


def _stream_size(width: int, count: int) -> int:
    return width // 8 * count if width >= 8 else (width * count + 7) // 8  # noqa: PLR2004


def _decompress(payload: bytes | memoryview, limit: int) -> bytes:
    try:
        declared = zstandard.frame_content_size(payload)
        if not 0 <= declared <= limit:
            raise CompressionError(
                f"corrupt frame: zstd content of {declared} bytes where at most {limit} fit"
            )
        return _decompressor().decompress(payload, max_output_size=declared)
    except zstandard.ZstdError as exc:
        raise CompressionError(f"corrupt frame: zstd cannot decompress it ({exc})") from exc


def _unmask(stream: bytes | memoryview, mask_size: int, width: int, count: int) -> np.ndarray:
    """Return the values of a zero-masked stream: a bitmap, then the non-zero values."""
    data = np.frombuffer(stream, np.uint8)
    if data.size < mask_size:
        raise CompressionError("corrupt frame: the zero mask is cut short")
    nonzero = np.unpackbits(data[:mask_size], count=count).view(bool)
    # The positions of the non-zero values take 8 bytes each, 8 times the output of a uint8
    # frame: a large mask is expanded a block at a time (a boolean-mask assignment would need
    # no positions, but it is several times slower).
    positions = np.flatnonzero(nonzero) if count <= _MASK_BLOCK else None
    present = int(np.count_nonzero(nonzero)) if positions is None else positions.size
    expected = mask_size + _stream_size(width, present)
    if data.size != expected:
        raise CompressionError(f"corrupt frame: {data.size} packed bytes, expected {expected}")
    rest = _unpack_values(data[mask_size:], width, present)
    if rest is None:  # pragma: no cover - width 0 never carries a mask (checked before)
        raise CompressionError("corrupt frame: a zero mask without values")
    values = np.zeros(count, rest.dtype)
    if positions is not None:
        values[positions] = rest
        return values
    done = 0
    for start in range(0, count, _MASK_BLOCK):
        block = np.flatnonzero(nonzero[start : start + _MASK_BLOCK])
        values[start : start + _MASK_BLOCK][block] = rest[done : done + block.size]
        done += block.size
    return values


def _unpack_values(data: np.ndarray, width: int, count: int) -> np.ndarray | None:
    """Return *count* values packed at *width* bits (None for width 0: all zero)."""
    if width == 0:
        return None
    if width == 1:
        return np.unpackbits(data, count=count)
    if width == 2:  # noqa: PLR2004
        return np.take(_UNPACK2, data).view(np.uint8)[:count]
    if width == 4:  # noqa: PLR2004
        return np.take(_UNPACK4, data).view(np.uint8)[:count]
    return _join_planes(data, width // 8, count)


def _join_planes(data: np.ndarray, planes: int, count: int) -> np.ndarray:
    """Return the integers whose low bytes are the *planes* byte planes in *data*."""
    size = _CONTAINER[planes]
    if size == 1:
        return data[:count]
    if count <= _FEW:
        as_bytes = np.zeros((count, size), np.uint8)
        as_bytes[:, :planes] = data[: planes * count].reshape(planes, count).T
        return as_bytes.view(_UNSIGNED[size]).reshape(-1)
    if size == 8:  # noqa: PLR2004
        # Two 4-byte halves, written into alternate words, beat eight shifted 8-byte passes.
        values = np.empty(count, np.uint64)
        halves = values.view(np.uint32).reshape(count, 2)
        halves[:, 0] = _join_planes(data, 4, count)
        halves[:, 1] = _join_planes(data[4 * count :], planes - 4, count)
        return values
    container = _UNSIGNED[size]
    values = data[:count].astype(container)
    shifted = np.empty(count, container)
    for plane in range(1, planes):
        chunk = data[plane * count : (plane + 1) * count]
        np.left_shift(chunk, 8 * plane, out=shifted, dtype=container)
        values |= shifted
    return values


# --- decoding many frames ------------------------------------------------------------------

_GROUP_MIN = 4  # frames that share a layout are decoded together from this many on
_GROUP_BLOCK = 1 << 18  # values rebuilt per numpy pass over a group
_CRC_RESIDUE = 0x2144DF1C  # zlib.crc32 of any bytes followed by their own CRC-32, little endian
_SHORTEST = 16  # no packed format-2 frame with one stream is shorter


class _Plan(NamedTuple):
    """Where the fields of the format-2 frames that share a header signature are.

    ``fields`` lists, per field after the three header bytes (count, then the stream
    descriptor's payload length, reference, divisor and seeds), its offset, size and sign.
    """

    code: int
    places: int
    order: int
    width: int
    layout: int
    fields: tuple[tuple[int, int, bool], ...]
    has_divisor: bool
    header: int
    masked: bool = False


_PLANS: dict[int, _Plan | None] = {}
_PLANS_MOST = 4096


def _plan(signature: int) -> _Plan | None:
    """Return the plan of a signature (header bytes 5-7, stream bytes 0-2), or None.

    None means: not a one-dimensional raw, bits or decimals frame with one stream (the
    corrections, float32 and grid models have two streams or a conversion), or a field no
    encoder writes; such frames are decoded alone, by :func:`_parse2`.
    """
    if signature in _PLANS:
        return _PLANS[signature]
    typed, shaped, sized, flags, width, sizes = signature.to_bytes(6, "little")
    code, kind, places, layout = typed & 15, typed >> 4, sized >> 2, flags & 3
    order = flags >> 3 & 3
    plan = None
    if kind == _RAW_MODEL and 0 < code < len(_DTYPES) and shaped == 1 and not sized & 0xFC:
        size = 1 << (sized & 3)
        fields = [(_HEAD2_SIZE, size, False)]
        plan = _Plan(
            code,
            _NO_DECIMALS,
            0,
            0,
            _RAW,
            tuple(fields),
            has_divisor=False,
            header=_HEAD2_SIZE + size,
        )
    elif (
        0 < code < len(_DTYPES)
        and kind in (_BITS, _DECIMALS)
        and shaped == 1
        and not sized & 0x80
        and places <= _MAX_DECIMALS
        and (not places or kind == _DECIMALS)
        and not flags & 0xC0
        and layout != _RAW
        and not (flags & 4 and (layout == _SPLIT or width == 0))
        and order <= 2  # noqa: PLR2004
    ):
        has_divisor = bool(flags & 32)
        at = _HEAD2_SIZE
        fields = [(at, 1 << (sized & 3), False)]
        at += fields[0][1] + 3
        for code_bits, signed, present in (
            (sizes & 3, False, True),
            (sizes >> 2 & 3, True, True),
            (sizes >> 4 & 3, False, has_divisor),
            *[(sizes >> 6 & 3, True, True)] * order,
        ):
            if present:
                fields.append((at, 1 << code_bits, signed))
                at += 1 << code_bits
        places = places if kind == _DECIMALS else _NO_DECIMALS
        plan = _Plan(
            code, places, order, width, layout, tuple(fields), has_divisor, at, bool(flags & 4)
        )
    if len(_PLANS) >= _PLANS_MOST:  # crafted frames could make many
        _PLANS.clear()
    _PLANS[signature] = plan
    return plan


def _decode_many(frames: Sequence[object], max_bytes: int) -> list[np.ndarray]:
    """Decode *frames*; the frames whose layout matches are rebuilt together, as 2-D arrays.

    The frames are joined into one buffer and their headers read with numpy, a field at a
    time for all frames: a checksum per frame (the CRC-32 of a frame and its own checksum is a
    constant) is the only call made per frame, with a zstd call per compressed payload.
    One-dimensional raw, bits and decimals frames of one stream that share dtype, length and
    packing form a group that every later step treats as one 2-D array. The other frames (the
    models with corrections, float32 and grid), and any frame of a group that fails a check,
    are decoded one by one by :func:`_decode`, which names the fault.
    """
    count = len(frames)
    blobs: list[bytes] = []
    for index, data in enumerate(frames):
        if type(data) is bytes:
            blobs.append(data)
            continue
        try:
            blobs.append(bytes(_as_bytes(data)))
        except CompressionError as exc:
            raise _at(index, exc) from exc
    out: list[np.ndarray | None] = [None] * count
    lengths = np.fromiter(map(len, blobs), np.int64, count)
    crcs = np.fromiter(map(_crc32, blobs), np.int64, count)
    joined = np.frombuffer(b"".join(blobs), np.uint8)
    starts = np.zeros(count, np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    alone = np.ones(count, bool)
    chosen = np.flatnonzero((lengths >= _SHORTEST) & (crcs == _CRC_RESIDUE))
    if chosen.size:
        first = starts[chosen]
        head = joined[first[:, None] + np.arange(8)]
        second = (head[:, :5] == np.frombuffer(MAGIC + b"\2", np.uint8)).all(axis=1)
        chosen, head = chosen[second], head[second]
    if chosen.size:
        stream_at = _HEAD2_SIZE + (1 << (head[:, 7] & 3).astype(np.int64))
        inside = lengths[chosen] >= stream_at + 3 + _CRC.size
        chosen, head, stream_at = chosen[inside], head[inside], stream_at[inside]
        descriptor = joined[(starts[chosen] + stream_at)[:, None] + np.arange(3)]
        descriptor[head[:, 5] >> 4 == _RAW_MODEL] = 0  # raw frames have no descriptor
        signature = np.zeros(chosen.size, np.int64)
        for shift, column in enumerate((*head[:, 5:8].T, *descriptor.T)):
            signature |= column.astype(np.int64) << (8 * shift)
        kinds, which = np.unique(signature, return_inverse=True)
        for number, value in enumerate(kinds.tolist()):
            plan = _plan(value)
            if plan is None:
                continue
            members = chosen[which == number]
            for group, fields in _read_plan(plan, members, starts, lengths, joined):
                try:
                    rebuilt = _rebuild_group(plan, fields, group, starts, joined, max_bytes)
                except CompressionError:
                    continue  # decoded one by one below, which names the frame at fault
                for index, values in zip(group.tolist(), rebuilt, strict=True):
                    out[index] = values
                alone[group] = False
    for index in np.flatnonzero(alone).tolist():
        try:
            out[index] = _decode(blobs[index], max_bytes)
        except CompressionError as exc:
            raise _at(index, exc) from exc
    return out  # type: ignore[return-value]  # every slot was filled above


def _read_plan(
    plan: _Plan, members: np.ndarray, starts: np.ndarray, lengths: np.ndarray, joined: np.ndarray
) -> list[tuple[np.ndarray, list[np.ndarray]]]:
    """Read the fields of the frames that share *plan*; return them by group of equal length.

    Frames whose sizes disagree with their fields, or that write a divisor of 1, are left out
    (decoded alone). Groups smaller than :data:`_GROUP_MIN` are left out as well.
    """
    fits = lengths[members] >= plan.header + _CRC.size
    members = members[fits]
    first = starts[members]
    fields = [
        _read_ints(joined, first + at, size, signed=signed) for at, size, signed in plan.fields
    ]
    if plan.layout == _RAW:
        counts = fields[0]
        fits = (counts >= 0) & (counts <= lengths[members])  # no overflow below
        size = counts * _DTYPES[plan.code].itemsize
        good = fits & (plan.header + size + _CRC.size == lengths[members])
        fields.append(size)
    else:
        good = plan.header + fields[1] + _CRC.size == lengths[members]
    if plan.has_divisor:
        good &= fields[3] != 1
    groups = []
    counts = fields[0]
    for value in np.unique(counts[good]).tolist():
        mine = good & (counts == value)
        if np.count_nonzero(mine) >= _GROUP_MIN:
            groups.append((members[mine], [field[mine] for field in fields]))
    return groups


def _read_ints(joined: np.ndarray, at: np.ndarray, size: int, *, signed: bool) -> np.ndarray:
    """Return the little-endian integers of *size* bytes at offsets *at*, as int64."""
    padded = np.zeros((at.size, 8), np.uint8)
    padded[:, :size] = joined[at[:, None] + np.arange(size)]
    values = padded.view(np.int64)[:, 0]
    if signed and size < 8:  # noqa: PLR2004
        sign = np.int64(1 << (8 * size - 1))
        values = (values ^ sign) - sign
    return values


def _at(index: int, exc: CompressionError) -> CompressionError:
    """Return *exc* for the frame at *index* of a batch: named in the message and position."""
    error = CompressionError(f"frame {index}: {exc}")
    error.position = index
    return error


def _rebuild_group(
    plan: _Plan,
    fields: list[np.ndarray],
    group: np.ndarray,
    starts: np.ndarray,
    joined: np.ndarray,
    max_bytes: int,
) -> list[np.ndarray]:
    """Rebuild a group of frames that share every field but reference, divisor and seeds."""
    dtype = _DTYPES[plan.code]
    count = int(fields[0][0])
    order, width, layout, places = plan.order, plan.width, plan.layout, plan.places
    if count * dtype.itemsize > max_bytes:
        raise CompressionError("frame too large")  # the single decode names the size
    if layout == _RAW:
        raw = _rows_at(joined, starts[group] + plan.header, count * dtype.itemsize)
        values = raw.view(dtype.newbyteorder("<")).astype(dtype)
        if plan.code == _BOOL_CODE and values.view(np.uint8).max(initial=0) > 1:
            raise CompressionError("corrupt bool values")
        return list(values)
    if places != _NO_DECIMALS and (dtype.kind != "f" or dtype.itemsize < 4):  # noqa: PLR2004
        raise CompressionError("corrupt decimals")
    item = dtype.itemsize if places == _NO_DECIMALS else 8
    if count <= order or not (
        _split_fits(width, item) if layout == _SPLIT else width in _WIDTHS and width <= 8 * item
    ):
        raise CompressionError("corrupt packing")
    references, divisors = fields[2], fields[3] if plan.has_divisor else None
    seeds = np.stack(fields[len(fields) - order :], axis=1) if order else None
    if item < 8:  # noqa: PLR2004 - eight-byte fields are in range by construction
        half = 1 << (8 * item - 1)
        for values in (references, *([] if seeds is None else [seeds])):
            if values.min() < -half or values.max() >= half:
                raise CompressionError("corrupt packing")
    if divisors is not None and (
        (divisors == 0).any() or (divisors.view(np.uint64) >= 1 << (8 * item)).any()
    ):
        raise CompressionError("corrupt packing")
    residuals = count - order
    payload_at = starts[group] + plan.header
    rows = group.size
    signed, unsigned = _SIGNED[item], _UNSIGNED[item]
    step = max(1, _GROUP_BLOCK // count)
    streams: tuple[np.ndarray | None, np.ndarray | None]
    if plan.masked:
        streams = _masked_group(plan, residuals, fields[1], payload_at, joined), None
    else:
        streams = _group_streams(plan, residuals, fields[1], payload_at, joined)
    if (
        layout == _SPLIT
        and not width >> 4
        and bool((references == references[0]).all())
        and (divisors is None or bool((divisors == divisors[0]).all()))
    ):
        assert streams[0] is not None  # noqa: S101 - a split stream has its low bits
        blocks = _dense_group(
            streams[0],
            width,
            (int(references[0]), 1 if divisors is None else int(divisors[0])),
            seeds,
            unsigned,
        )
    else:
        blocks = (
            _integrate(
                _scaled_block(streams, plan, block, residuals, references, divisors, unsigned),
                order,
                None if seeds is None else seeds[block],
            )
            for block in (slice(first, first + step) for first in range(0, rows, step))
        )
    out: list[np.ndarray] = []
    for block_values in blocks:
        values = block_values.view(signed)[:, :count]
        if places != _NO_DECIMALS:
            values = _from_decimals(values, places, dtype)
        else:
            values = values.view(dtype)
        if plan.code == _BOOL_CODE and values.view(np.uint8).max(initial=0) > 1:
            raise CompressionError("corrupt bool values")
        out += list(values)
    return out


def _scaled_block(
    streams: tuple[np.ndarray | None, np.ndarray | None],
    plan: _Plan,
    block: slice,
    residuals: int,
    references: np.ndarray,
    divisors: np.ndarray | None,
    unsigned: np.dtype,
) -> np.ndarray:
    """Return a block of rows' residuals, scaled by their divisors and offset by references."""
    rows = len(references[block])
    if plan.masked:
        assert streams[0] is not None  # noqa: S101 - the masked values of every row
        reduced = streams[0][block]
    else:
        reduced = _unpack_block(streams, block, plan, rows, residuals)
    deltas = np.empty((rows, residuals), unsigned)
    if divisors is not None:
        np.multiply(reduced, divisors[block, None].astype(unsigned), out=deltas)
        deltas += references[block, None].astype(unsigned)
    else:
        np.add(reduced, references[block, None].astype(unsigned), out=deltas)
    return deltas


def _dense_group(
    data: np.ndarray, low: int, scale: tuple[int, int], seeds: np.ndarray | None, unsigned: np.dtype
) -> Iterator[np.ndarray]:
    """Yield blocks of rows of dense streams that share their reference and divisor.

    One table lookup gives ``k`` values at a time, already scaled and offset, into a buffer
    that every block reuses; the running sums then go straight into the rows returned.
    """
    reference, divisor = scale
    modulus = 1 << (8 * unsigned.itemsize)
    table = _DENSE_TABLES[low].astype(unsigned)
    table *= unsigned.type(divisor % modulus)
    table += unsigned.type(reference % modulus)
    rows, size = data.shape
    per_field = _DENSE_K[low]
    fields_per_row = size // low * 8 // per_field
    width = fields_per_row * per_field
    order = 0 if seeds is None else seeds.shape[1]
    step = max(1, _GROUP_BLOCK // width)
    lookup = np.empty((min(step, rows), fields_per_row, per_field), unsigned)
    for first in range(0, rows, step):
        block = data[first : first + step]
        count = block.shape[0]
        looked = np.take(table, _dense_fields(block, low), axis=0, out=lookup[:count], mode="clip")
        deltas = looked.reshape(count, width)
        if not order:
            yield deltas.copy()
            continue
        assert seeds is not None  # noqa: S101 - order > 0 has seeds
        yield _integrate(deltas, order, seeds[first : first + step])


def _integrate(deltas: np.ndarray, order: int, seeds: np.ndarray | None) -> np.ndarray:
    """Return the rows whose residuals of delta order *order* are *deltas* (overwritten).

    *deltas* is unsigned; the sums wrap, as the encoder's differences did.
    """
    rows, residuals = deltas.shape
    if seeds is None:
        return deltas
    unsigned = deltas.dtype
    mine = seeds.astype(unsigned)
    work = np.empty((rows, residuals + order), unsigned)
    work[:, :order] = mine
    deltas[:, 0] += mine[:, order - 1]
    np.add.accumulate(deltas, axis=1, out=work[:, order:])
    if order == 2:  # noqa: PLR2004
        np.add.accumulate(work, axis=1, out=work)
    return work


def _group_streams(
    plan: _Plan, residuals: int, sizes: np.ndarray, payload_at: np.ndarray, joined: np.ndarray
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Return a group's packed streams, one row each, and for split streams the high bytes."""
    layout, width = plan.layout, plan.width
    if layout == _SPLIT:
        fixed = -(-residuals // 8) * (width & 15)
        high_layout = width >> 4
        if (sizes != fixed).any() if not high_layout else (sizes <= fixed).any():
            raise CompressionError("corrupt payload")
        high = None
        if high_layout == _PACKED:
            if (sizes != fixed + residuals).any():
                raise CompressionError("corrupt payload")
            high = _rows_at(joined, payload_at + fixed, residuals)
        elif high_layout == _ZSTD:
            high = _decompress_rows(joined, payload_at + fixed, sizes - fixed, residuals)
        return _rows_at(joined, payload_at, fixed), high
    if layout == _PACKED:
        fixed = _stream_size(width, residuals)
        if (sizes != fixed).any():
            raise CompressionError("corrupt payload")
        return (None if width == 0 else _rows_at(joined, payload_at, fixed)), None
    if width == 0:
        raise CompressionError("corrupt payload")
    return _decompress_rows(joined, payload_at, sizes, _stream_size(width, residuals)), None


def _masked_group(
    plan: _Plan, residuals: int, sizes: np.ndarray, payload_at: np.ndarray, joined: np.ndarray
) -> np.ndarray:
    """Return the reduced values of a group of zero-masked streams, one row per frame.

    Each stream is a bitmap of the non-zero values, then those values packed; their number
    differs from frame to frame. The values of all frames are unpacked together, and one
    boolean-mask assignment puts them in place (row after row, as they were concatenated).
    """
    width = plan.width
    mask_size = (residuals + 7) // 8
    limit = mask_size + _stream_size(width, residuals)
    data = joined.data
    if plan.layout == _PACKED:
        places = zip(payload_at.tolist(), sizes.tolist(), strict=True)
        streams: list[bytes | memoryview] = [data[at : at + size] for at, size in places]
    else:
        streams = list(_decompress_each(joined, payload_at, sizes, limit))
    stream_sizes = np.fromiter(map(len, streams), np.int64, len(streams))
    if (stream_sizes < mask_size).any():
        raise CompressionError("corrupt payload")
    buffer = np.frombuffer(b"".join(streams), np.uint8)
    starts = np.zeros(len(streams), np.int64)
    np.cumsum(stream_sizes[:-1], out=starts[1:])
    nonzero = np.unpackbits(
        buffer[starts[:, None] + np.arange(mask_size)], axis=1, count=residuals
    ).view(bool)
    present = np.count_nonzero(nonzero, axis=1)
    value_sizes = (
        present * (width // 8) if width >= 8 else (present * width + 7) // 8  # noqa: PLR2004
    )
    if (stream_sizes != mask_size + value_sizes).any():
        raise CompressionError("corrupt payload")
    total = int(present.sum())
    # Every value's position among its frame's packed values (local), and where they begin.
    before = np.zeros(len(streams), np.int64)
    np.cumsum(present[:-1], out=before[1:])
    if width >= 8:  # noqa: PLR2004
        planes = width // 8
        size = _CONTAINER[planes]
        as_bytes = np.zeros((total, size), np.uint8)
        index = np.repeat(starts + mask_size - before, present)
        index += np.arange(total)  # the first plane's byte of each value
        stride = np.repeat(present, present)  # from one plane to the next
        for plane in range(planes):
            if plane:
                index += stride
            as_bytes[:, plane] = buffer[index]
        values = as_bytes.view(_UNSIGNED[size]).reshape(total)
    else:
        per_byte = 8 // width
        local = np.arange(total) - np.repeat(before, present)
        index = np.repeat(starts + mask_size, present) + local // per_byte
        shift = (per_byte - 1 - local % per_byte) * width  # the first value in the high bits
        values = (buffer[index] >> shift.astype(np.uint8)) & ((1 << width) - 1)
    out = np.zeros((len(streams), residuals), values.dtype)
    out[nonzero] = values
    return out


def _decompress_each(
    joined: np.ndarray, at: np.ndarray, sizes: np.ndarray, limit: int
) -> list[bytes]:
    """Decompress the zstd payloads at *at*, each declaring at most *limit* bytes."""
    decompress = _decompressor().decompress
    content_size = zstandard.frame_content_size
    data = joined.data
    streams = []
    try:
        for at_, length in zip(at.tolist(), sizes.tolist(), strict=True):
            payload = data[at_ : at_ + length]
            declared = content_size(payload)
            if not 0 <= declared <= limit:
                raise CompressionError("corrupt payload")
            streams.append(decompress(payload, max_output_size=declared))
    except zstandard.ZstdError as exc:
        raise CompressionError("corrupt payload") from exc
    return streams


def _decompress_rows(
    joined: np.ndarray, at: np.ndarray, sizes: np.ndarray, size: int
) -> np.ndarray:
    """Decompress the zstd payloads at *at*, each of exactly *size* bytes, into rows."""
    streams = _decompress_each(joined, at, sizes, size)
    if any(len(stream) != size for stream in streams):
        raise CompressionError("corrupt payload")
    return np.frombuffer(b"".join(streams), np.uint8).reshape(len(streams), size)


def _rows_at(joined: np.ndarray, at: np.ndarray, size: int) -> np.ndarray:
    """Return the rows of *size* bytes at offsets *at*: a strided view when evenly spaced."""
    if size == 0:
        return np.zeros((at.size, 0), np.uint8)
    gaps = np.diff(at)
    if at.size > 1 and (gaps == gaps[0]).all() and gaps[0] >= size:
        return np.lib.stride_tricks.as_strided(
            joined[int(at[0]) :], shape=(at.size, size), strides=(int(gaps[0]), 1), writeable=False
        )
    return joined[at[:, None] + np.arange(size)]


def _unpack_block(
    streams: tuple[np.ndarray | None, np.ndarray | None],
    block: slice,
    plan: _Plan,
    rows: int,
    residuals: int,
) -> np.ndarray:
    """Return the reduced values of a block of a group's rows (dense-only split streams aside)."""
    packed, high = streams
    if packed is None:  # width 0: every residual is the reference
        return np.zeros((rows, residuals), np.uint8)
    if plan.layout != _SPLIT:
        return _unpack_rows(packed[block], plan.width, residuals)
    low = plan.width & 15
    values = _undense_rows(packed[block], low, residuals, _DENSE_TABLES[low])
    if high is None:
        return values
    wide = high[block].astype(np.uint16)
    np.left_shift(wide, low, out=wide)
    np.bitwise_or(wide, values, out=wide)
    return wide


def _unpack_rows(data: np.ndarray, width: int, count: int) -> np.ndarray:
    """Return the rows of *count* values packed at *width* bits, one packed stream per row."""
    rows = data.shape[0]
    if width == 1:
        return np.unpackbits(data, axis=1, count=count)
    if width in (2, 4):
        table = _UNPACK2 if width == 2 else _UNPACK4  # noqa: PLR2004
        return np.take(table, data).view(np.uint8).reshape(rows, -1)[:, :count]
    planes = width // 8
    size = _CONTAINER[planes]
    if size == 1:
        return data
    as_bytes = np.zeros((rows, count, size), np.uint8)
    as_bytes[:, :, :planes] = data.reshape(rows, planes, count).transpose(0, 2, 1)
    return as_bytes.view(_UNSIGNED[size]).reshape(rows, count)
