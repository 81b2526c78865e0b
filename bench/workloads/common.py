"""What the trades workloads share: sizes, cached inputs, loading and checking the table.

Owns the sizes of a full and a quick run, the per-run cache of generated trade rows, reloading
the table for workloads that change it and the checks of the table's count, ``sum(qty)`` and
non-NULL ``meta`` count. It must not time anything.
"""

from __future__ import annotations

import functools

import attrs

from bench import data, env
from bench.harness import Workload, expect


@attrs.frozen
class Sizes:
    """How big a run is.

    Attributes:
        rows: Rows of the trades table, and N of the bulk workloads (W1, W2, W6).
        lookups: Calls of the per-call workloads (W3, W5, W7).
        warm: Untimed warm-up calls before each per-call repetition.
        reads: Repetitions of the range read inside one timed repetition (W4).
        batches: Calls of ``find_by_ids`` (100 ids each) and of the aggregates.
        series_rows: Rows of the compressed-array workload (1,000 elements each).
        wal_mb: Megabytes of WAL written before the first workload.
        memory_rows: Rows the memory probe loads from a generator.
    """

    rows: int
    lookups: int
    warm: int
    reads: int
    batches: int
    series_rows: int
    wal_mb: int
    memory_rows: int


FULL = Sizes(
    rows=100_000,
    lookups=10_000,
    warm=200,
    reads=10,
    batches=500,
    series_rows=10_000,
    wal_mb=230,
    memory_rows=1_000_000,
)
QUICK = Sizes(
    rows=10_000,
    lookups=600,
    warm=50,
    reads=5,
    batches=60,
    series_rows=500,
    wal_mb=48,
    memory_rows=200_000,
)


def sizes(quick: bool) -> Sizes:
    """Return the sizes of a quick or a full run."""
    return QUICK if quick else FULL


@functools.cache
def new_qty(i: int) -> int:
    """The qty the update workloads give row *i*: 1 to 1,000, spread over the ids."""
    return (i * 7919) % 1000 + 1


def trade_data(n: int) -> data.TradeData:
    """Return the trade rows of a run (generated once per size)."""
    return data.trades(n)


class TradesWorkload(Workload):
    """A workload on the trades table of ``sizes(quick).rows`` rows.

    One whose repetitions change the table sets :attr:`changes_table`: every row is then loaded
    afresh before each repetition, and the next workload knows nothing of what is left.
    """

    changes_table = False

    def setup(self) -> None:
        self.size = sizes(self.quick)
        self.data = trade_data(self.size.rows)

    def reset(self) -> None:
        if self.changes_table:
            self.load(force=True)

    def teardown(self) -> None:
        super().teardown()
        if self.changes_table:
            self.env.loaded = None

    def load(self, *, force: bool = False) -> None:
        """Load every row (ids 1..n) unless the table already holds exactly them, unchanged."""
        if force or self.env.loaded != self.data.n:
            env.load_trades(self.env, self.data.with_ids(), self.data.n)

    def check_table(self, count: int, qty: int, meta: int | None = None) -> None:
        """Check the table's row count, ``sum(qty)`` and (when given) non-NULL ``meta`` count."""
        row = self.env.admin.execute(
            "SELECT count(*), coalesce(sum(qty), 0), count(meta) FROM trades"
        ).fetchone()
        assert row is not None
        expect("row count", row[0], count)
        expect("sum(qty)", int(row[1]), qty)
        if meta is not None:
            expect("non-NULL meta", row[2], meta)

    def expect_new_qty(self, ids: list[int]) -> None:
        """Note the table's ``sum(qty)`` once the rows *ids* hold :func:`new_qty`."""
        self.qty_after = self.data.qty_total - self.data.qty_sum(ids) + sum(map(new_qty, ids))

    def check_new_qty(self) -> None:
        """Check every row is there, with the ``sum(qty)`` :meth:`expect_new_qty` noted."""
        self.check_table(self.data.n, self.qty_after, self.data.meta_count())

    def check_every_row(self) -> None:
        """Check that the table holds every generated row (count, ``sum(qty)``, non-NULL meta)."""
        self.check_table(self.data.n, self.data.qty_total, self.data.meta_count())
