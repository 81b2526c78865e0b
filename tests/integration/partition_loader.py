"""A loader process for the two-process partition test: waits at a gate, then loads.

Run as ``python partition_loader.py DSN SCHEMA SYMBOL GATE``: it waits for the advisory lock
GATE (held by the test) so that two loaders start together, then loads 1,500 trades of SYMBOL
over 30 days in one batch (in small chunks, so each needs new partitions mid-transaction) and
10 single inserts, and prints what it wrote as JSON.
"""

from __future__ import annotations

import json
import sys
from datetime import timedelta

import psycopg

from orso_pg import Database
from tests.integration.test_partitions import T0, trades
from tests.partition_models import PTrade


def main(dsn: str, schema: str, symbol: str, gate: int) -> None:
    """Wait at the gate, then load."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock_shared(%s)", (gate,))
        conn.execute("SELECT pg_advisory_unlock_shared(%s)", (gate,))
    with Database(dsn, schema=schema, min_size=1, max_size=2) as db:
        inserted = PTrade.batch_insert(trades(1500, symbol=symbol), db, chunk_size=100)
        for day in range(10):
            when = T0 + timedelta(days=3 * day, seconds=1)
            PTrade(symbol=symbol, ts=when, price=1.0).insert(db)
    sys.stdout.write(json.dumps({"inserted": inserted, "single": 10}) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
