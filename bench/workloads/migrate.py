"""Migrating a populated table: add a nullable column and an index to the loaded trades table.

Owns the migration workload: raw psycopg runs the two DDL statements in one transaction under an
advisory lock (what a hand-written migration does); orso_pg runs ``Migrations.init`` with the next
version of the model, which must find the differences itself. The table is rebuilt and reloaded
before every repetition. SQLAlchemy has no migrations of its own (Alembic is a separate tool), so
it has no variant here. It must not format results.
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any

from bench import env
from bench.harness import Variant, expect
from bench.workloads.common import TradesWorkload
from orso_pg import Migrations, Orso, column, migration, table

_LOCK = 0x6F72736F_62656E63  # an arbitrary advisory lock id for the raw migration


@functools.cache
def trade_v2() -> type[Orso]:
    """Return the trades model one release later: a ``venue`` column and an index on ``qty``.

    Built on first use: declaring it registers the table name ``trades`` for this version, which
    must not happen before the other workloads have run.
    """

    @table("trades", indexes=[("symbol", "ts"), ("qty",)], upsert_key=("id",))
    class TradeV2(Orso):
        id: int | None = column(primary_key=True, default=None)
        symbol: str
        ts: dt.datetime
        price: float
        qty: int
        side: str
        meta: dict[str, Any] | None = None
        venue: str | None = None

    return TradeV2


class Migrate(TradesWorkload):
    """Add a nullable column and an index to the populated trades table."""

    key = "MIG"
    title = "migration of a populated table (add a column and an index)"
    reps = 5  # a repetition is a few short statements: more of them steady the median
    changes_table = True

    def units(self) -> int:
        return self.data.n

    def reset(self) -> None:
        env.create_trades(self.env)
        self.load(force=True)

    def teardown(self) -> None:
        super().teardown()
        env.create_trades(self.env)

    def verify(self, _variant: Variant, _result: Any) -> None:
        has_venue = self.env.scalar(
            "SELECT count(*) FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = 'trades' "
            "AND column_name = 'venue'"
        )
        expect("column venue", has_venue, 1)
        on_qty = self.env.scalar(
            "SELECT count(*) FROM pg_indexes WHERE schemaname = current_schema() "
            "AND tablename = 'trades' AND indexdef LIKE '%(qty)'"
        )
        expect("indexes on qty", on_qty, 1)
        self.check_every_row()

    def variants(self) -> list[Variant]:
        clients = self.clients

        def raw() -> None:
            conn = clients.raw
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
            conn.execute("ALTER TABLE trades ADD COLUMN venue text")
            conn.execute("CREATE INDEX ON trades (qty)")
            conn.commit()

        def orso_migrate() -> None:
            Migrations.init(clients.db, [migration(trade_v2())])

        return [
            Variant("raw", "alter_table_in_transaction", raw),
            Variant("orso_pg", "Migrations.init", orso_migrate),
        ]
