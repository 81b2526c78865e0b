"""Two migrations at once: the migration lock never deadlocks with CREATE INDEX CONCURRENTLY.

A backend waiting in ``pg_advisory_lock`` holds a snapshot, and ``CREATE INDEX CONCURRENTLY``
waits for every older snapshot: the migrator holding the lock and building an index
concurrently would wait for the one waiting for the lock. The lock is polled instead.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from orso_pg import Database, MigrationAction, Migrations, Orso, column, migration, table


@table("locked")
class Plain(Orso):
    id: int | None = column(primary_key=True, default=None)
    symbol: str


@table("locked")
class WithIndex(Orso):
    id: int | None = column(primary_key=True, default=None)
    symbol: str = column(index=True)


def test_two_concurrent_migrations_with_a_concurrent_index_both_finish(
    server, schema, db, raw, caplog
):
    """The second migrator waits for the lock while the first builds its index concurrently."""
    caplog.set_level(logging.INFO, logger="orso_pg")
    Migrations.init(db, [migration(Plain)])
    raw.execute("INSERT INTO locked (symbol) SELECT 'S' || g FROM generate_series(1, 2000) g")
    second = Database(server.dsn, schema=schema, application_name="orso_lock_second", max_size=2)
    results: dict[str, Any] = {}
    waited = threading.Event()

    def let_the_second_wait_first(text: str, _params: object) -> None:
        if not text.startswith("CREATE INDEX CONCURRENTLY") or waited.is_set():
            return
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            (count,) = raw.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                "'orso_lock_second' AND query LIKE '%advisory_lock%'"
            ).fetchone() or (0,)
            if count:
                break
            time.sleep(0.01)
        time.sleep(0.05)  # the second is now waiting for the lock, between polls or in one
        waited.set()

    def run(name: str, database: Database) -> None:
        try:
            results[name] = Migrations.init(
                database, [migration(WithIndex)], concurrent_indexes=True, lock_timeout=20
            )[0]
        except Exception as exc:  # noqa: BLE001 - reported by the assertions below
            results[name] = exc

    db.add_listener(let_the_second_wait_first)
    first = threading.Thread(target=run, args=("first", db))
    other = threading.Thread(target=run, args=("second", second))
    try:
        first.start()
        deadline = time.monotonic() + 30
        while not results and time.monotonic() < deadline:
            (locked,) = raw.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
            ).fetchone() or (0,)
            if locked:
                break
            time.sleep(0.01)
        other.start()
        first.join(60)
        other.join(60)
    finally:
        second.close()
    assert waited.is_set()
    assert "another migration holds the migration lock" in caplog.text
    assert not isinstance(results["first"], Exception), results["first"]
    assert not isinstance(results["second"], Exception), results["second"]
    assert results["first"].action is MigrationAction.DATA_MIGRATED
    assert results["second"].action is MigrationAction.SCHEMA_MATCHED
    valid = raw.execute(
        "SELECT indisvalid FROM pg_index WHERE indexrelid = 'locked_symbol_idx'::regclass"
    ).fetchone()
    assert valid == (True,)
