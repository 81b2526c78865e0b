"""Deterministic inputs for the workloads: trade rows, lookup ids, per-row updates, array series.

Owns what every implementation is handed, prebuilt and identical (orm-peers.md §3.1): trade rows
as tuples and as dicts, seeded (42), five symbols, ``ts`` uniform over 30 days, a small ``meta``
object on every fifth row and SQL NULL elsewhere. It must not talk to a database; the expected
sums used to verify each repetition are computed here from the same data.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from typing import Any

import attrs
import numpy as np

SEED = 42
SYMBOLS = ("AAPL", "MSFT", "GOOG", "AMZN", "NVDA")
START = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
SPAN_SECONDS = 30 * 24 * 3600

Row = tuple[Any, ...]


@attrs.frozen
class TradeData:
    """The trade rows of one run; ``rows[i]`` is the row whose id is ``i + 1``.

    Attributes:
        rows: ``(symbol, ts, price, qty, side, meta)`` tuples, without the id.
        dicts: The same rows as dicts keyed by column name, with ``id``.
    """

    rows: list[Row]
    dicts: list[dict[str, Any]]

    @property
    def n(self) -> int:
        """The number of rows."""
        return len(self.rows)

    def with_ids(self, start: int = 1) -> Iterator[Row]:
        """Yield ``(id, symbol, ...)`` tuples, ids counting from *start*."""
        for i, row in enumerate(self.rows, start):
            yield (i, *row)

    @property
    def qty_total(self) -> int:
        """The sum of ``qty`` over every row."""
        return sum(r[3] for r in self.rows)

    def qty_sum(self, ids: list[int]) -> int:
        """Return the sum of ``qty`` over the rows with *ids*."""
        rows = self.rows
        return sum(rows[i - 1][3] for i in ids)

    def meta_count(self) -> int:
        """Return how many rows have a non-NULL ``meta``."""
        return sum(1 for r in self.rows if r[5] is not None)


def trade_row(i: int, rnd: random.Random) -> Row:
    """Return the data of trade number *i* (counting from 0), drawn from *rnd*."""
    ts = START + dt.timedelta(seconds=rnd.random() * SPAN_SECONDS)
    meta = {"venue": rnd.choice(("XNAS", "XNYS", "BATS")), "seq": i} if i % 5 == 0 else None
    return (
        rnd.choice(SYMBOLS),
        ts,
        round(100.0 + rnd.random() * 400.0, 2),
        rnd.randint(1, 1000),
        rnd.choice(("B", "S")),
        meta,
    )


def trades(n: int) -> TradeData:
    """Return *n* deterministic trade rows (the same for every implementation and every run)."""
    rnd = random.Random(SEED)
    rows = [trade_row(i, rnd) for i in range(n)]
    dicts = [
        {"id": i, "symbol": s, "ts": ts, "price": p, "qty": q, "side": side, "meta": m}
        for i, (s, ts, p, q, side, m) in enumerate(rows, 1)
    ]
    return TradeData(rows, dicts)


def generate_rows(n: int) -> Iterator[Row]:
    """Yield *n* trade rows lazily (the memory probe's generator)."""
    rnd = random.Random(SEED)
    for i in range(n):
        yield trade_row(i, rnd)


def sample_ids(n_rows: int, k: int, *, salt: int = 0) -> list[int]:
    """Return *k* distinct ids from ``1..n_rows`` in random order (seeded)."""
    return random.Random(SEED + 1 + salt).sample(range(1, n_rows + 1), k)


def new_values(ids: list[int], *, salt: int = 0) -> list[tuple[int, float, int]]:
    """Return ``(id, price, qty)`` for each id: the per-row values of the W6b update."""
    rnd = random.Random(SEED + 100 + salt)
    return [(i, round(50.0 + rnd.random() * 100.0, 2), rnd.randint(1, 1000)) for i in ids]


# --- integer series for the compressed-array workload -----------------------------------------

SERIES_LENGTH = 1_000


def series(n_rows: int, length: int = SERIES_LENGTH) -> list[np.ndarray]:
    """Return *n_rows* int64 market-data series of *length* elements each (seeded).

    Rows cycle through the integer sets of ``bench.datasets`` (timestamps, fixed-point prices,
    volumes, small integers, sorted ids), each row a consecutive window of its set, so the data
    is what orso_pg's users store rather than noise or constants.
    """
    from bench.datasets import synthetic

    names = [
        name
        for name, values in synthetic(2).items()
        if values.dtype == np.int64 and name != "rand_i64"  # the control is noise by design
    ]
    sets = synthetic(-(-n_rows // len(names)) * length)
    out = []
    for r in range(n_rows):
        values = sets[names[r % len(names)]]
        start = (r // len(names)) * length
        out.append(np.ascontiguousarray(values[start : start + length]))
    return out
