"""Migration safety: all or nothing, one migrator at a time, killed backends, lock timeouts.

The table is the populated ``assets`` of :mod:`tests.migration_helpers` (100,000 rows with child
rows pointing at it).
"""

from __future__ import annotations

import datetime as dt
import enum
import threading
import time
import uuid
from decimal import Decimal
from typing import Any

import numpy as np
import psycopg
import pytest
from psycopg import sql

from orso_pg import (
    ConnectionLostError,
    Database,
    Index,
    LockTimeoutError,
    MigrationAction,
    MigrationError,
    Migrations,
    Orso,
    ValidationError,
    column,
    migration,
    table,
)
from orso_pg.migrate._history import HISTORY_TABLE
from tests.migration_helpers import (
    ROWS,
    Asset,
    AssetCompressed,
    AssetRenamed,
    columns_of,
    digest,
    history,
    populate,
    survivors,
)

ALL_COLUMNS = ["id", "symbol", "price", "qty", "note", "prices", "ticks"]


@table("assets")
class AssetLastStepFails(Orso):
    id: int | None = column(primary_key=True, default=None)
    ticker: str = column(renamed_from="symbol", unique=True)
    price: float | None
    qty: Decimal
    note: str | None = None
    prices: list[float] = column(factory=list)
    ticks: list[int] = column(factory=list)
    venue: str = "XNAS"


@table("assets")
class AssetManySteps(Orso):
    id: int | None = column(primary_key=True, default=None)
    ticker: str = column(renamed_from="symbol")
    price: float | None = column(index=True)
    qty: Decimal
    note: str | None = None
    prices: list[float] = column(factory=list)
    ticks: list[int] = column(factory=list)
    venue: str = "XNAS"


@table("assets", indexes=[Index(("qty",), unique=True)])
class AssetUniqueQty(Asset):
    venue: str = "XNAS"


class Side(enum.Enum):
    BUY = "buy"
    SELL = "sell"


@table("orders", unique=[("venue", "ref")], indexes=[("placed_at",)])
class Order(Orso):
    id: uuid.UUID | None = column(primary_key=True, default=None)
    venue: str = column(sql_type="varchar(12)")
    ref: str
    side: Side
    price: Decimal | None = column(server_default=Decimal("0.5"), default=None)
    sizes: np.ndarray = column(compress=True)
    tags: list[str] = column(factory=list)
    meta: dict[str, Any] = column(factory=dict)
    placed_at: dt.datetime | None = column(created_at=True, default=None)
    touched_at: dt.datetime | None = column(updated_at=True, default=None)


@table("order_notes")
class OrderNote(Orso):
    id: str | None = column(primary_key=True, default=None)
    order_id: uuid.UUID = column(ref=Order, on_delete="CASCADE", index=True)
    body: str = column(index="hash")


def state(raw: psycopg.Connection[Any]) -> dict[str, Any]:
    """Everything a failed migration must leave exactly as it was."""
    return {
        "columns": columns_of(raw),
        "survivors": survivors(raw),
        "constraints": raw.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid = 'assets'::regclass ORDER BY conname"
        ).fetchall(),
        "indexes": raw.execute(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema()"
            " AND tablename = 'assets' ORDER BY indexdef"
        ).fetchall(),
        "data": digest(raw, "assets", ALL_COLUMNS),
        "history": raw.execute(
            sql.SQL("SELECT * FROM {} ORDER BY id").format(sql.Identifier(HISTORY_TABLE))
        ).fetchall(),
    }


def test_a_failure_at_the_last_step_leaves_schema_data_and_history_as_they_were(db, raw):
    """Rename, add, retype, drop NOT NULL all run, then ADD UNIQUE fails: nothing stays."""
    populate(db, raw)
    raw.execute("UPDATE assets SET symbol = 'S1' WHERE id = 50000")
    before = state(raw)
    planned = Migrations.plan(db, [migration(AssetLastStepFails)])[0]
    assert planned.steps[-1].description == "add unique constraint (ticker)"
    assert len(planned.steps) >= 4
    with pytest.raises(MigrationError, match="add unique constraint") as info:
        Migrations.init(db, [migration(AssetLastStepFails)])
    assert "S1" in str(info.value)
    assert state(raw) == before


def test_two_concurrent_migrators_exactly_one_applies(server, schema, db, raw):
    """Two processes migrate at once: the second waits for the first, then finds nothing to do."""
    populate(db, raw)
    history_before = len(history(raw))
    second = Database(server.dsn, schema=schema, application_name="orso_second", max_size=2)
    started = threading.Event()
    results: dict[str, Any] = {}

    def hold_until_the_second_waits(text: str, _params: tuple[Any, ...]) -> None:
        if not text.startswith("LOCK TABLE") or started.is_set():
            return
        started.set()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            # The second polls the lock (pg_try_advisory_lock) between short sleeps.
            waiting = raw.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE application_name = 'orso_second' AND query LIKE '%try_advisory_lock%'"
            ).fetchone()
            if waiting == (1,):
                return
            time.sleep(0.01)

    def run(name: str, database: Database) -> None:
        try:
            results[name] = Migrations.init(database, [migration(AssetRenamed)])[0]
        except Exception as exc:  # noqa: BLE001 - reported by the assertions below
            results[name] = exc

    def run_second() -> None:
        started.wait(30)
        run("second", second)

    db.add_listener(hold_until_the_second_waits)
    threads = [
        threading.Thread(target=run, args=("first", db)),
        threading.Thread(target=run_second),
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        second.close()
    assert results["first"].action is MigrationAction.DATA_MIGRATED
    assert results["second"].action is MigrationAction.SCHEMA_MATCHED
    assert len(history(raw)) == history_before + 1
    assert "ticker" in columns_of(raw)


def test_a_backend_killed_at_each_step_never_half_applies_and_a_rerun_completes(
    server, schema, db, raw
):
    """The backend is terminated before each step in turn: the table stays as it was each time."""
    populate(db, raw)
    before = state(raw)
    kept = digest(raw, "assets", ["id", "symbol", "prices"])
    planned = Migrations.plan(db, [migration(AssetManySteps)])[0]
    assert len(planned.steps) >= 5
    markers = [
        "LOCK TABLE",
        *(step.sql.split(";\n")[0] for step in planned.steps),
        f"INSERT INTO {HISTORY_TABLE}",
    ]
    for number, marker in enumerate(markers):
        app = f"orso_victim_{number}"
        victim = Database(server.dsn, schema=schema, application_name=app, max_size=1)

        def kill(text: str, _params: tuple[Any, ...], marker: str = marker, app: str = app) -> None:
            if text.startswith(marker):
                raw.execute(
                    "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
                    " WHERE application_name = %s",
                    (app,),
                )

        victim.add_listener(kill)
        try:
            with pytest.raises(ConnectionLostError):
                Migrations.init(victim, [migration(AssetManySteps)])
        finally:
            victim.close()
        assert state(raw) == before, f"half-applied after a kill at {marker!r}"
    (result,) = Migrations.init(db, [migration(AssetManySteps)])
    assert result.steps == planned.steps
    assert result.rows_migrated == ROWS
    assert digest(raw, "assets", ["id", "ticker", "prices"]) == kept


def test_lock_timeout_gives_up_cleanly_then_retries_until_the_reader_leaves(
    server, schema, db, raw
):
    """A reader holding the table makes the migration time out; retries succeed once it leaves."""
    populate(db, raw)
    before = columns_of(raw)
    with psycopg.connect(server.dsn) as reader:
        reader.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        reader.execute("SELECT 1 FROM assets LIMIT 1")  # holds ACCESS SHARE until commit
        with pytest.raises(MigrationError, match="could not lock") as info:
            Migrations.init(db, [migration(AssetRenamed)], lock_timeout=0.1, lock_retries=1)
        assert isinstance(info.value.__cause__, LockTimeoutError)
        assert columns_of(raw) == before

        attempts: list[str] = []

        def leave_after_the_first_timeout(text: str, _params: tuple[Any, ...]) -> None:
            if "set_config('lock_timeout'" in text:
                attempts.append(text)
                if len(attempts) == 2:
                    reader.commit()

        db.add_listener(leave_after_the_first_timeout)
        (result,) = Migrations.init(db, [migration(AssetRenamed)], lock_timeout=0.1, lock_retries=5)
    assert result.action is MigrationAction.DATA_MIGRATED
    assert len(attempts) == 2
    assert "ticker" in columns_of(raw)


def _index_valid(raw: psycopg.Connection[Any], name: str) -> bool | None:
    row = raw.execute(
        "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)", (name,)
    ).fetchone()
    return None if row is None else bool(row[0])


def test_a_failed_concurrent_index_build_drops_its_invalid_index(db, raw):
    """CREATE UNIQUE INDEX CONCURRENTLY fails on duplicates: the invalid index is dropped."""
    populate(db, raw)
    raw.execute("UPDATE assets SET qty = 1 WHERE id = 2")
    plan = Migrations.plan(db, [migration(AssetUniqueQty)], concurrent_indexes=True)[0]
    assert [s.transactional for s in plan.steps] == [True, False]
    with pytest.raises(MigrationError, match=r"could not build index assets_qty_idx.*dropped"):
        Migrations.init(db, [migration(AssetUniqueQty)], concurrent_indexes=True)
    assert _index_valid(raw, "assets_qty_idx") is None
    assert columns_of(raw)["venue"] == ("text", True, None)
    raw.execute("UPDATE assets SET qty = 2 WHERE id = 2")
    (result,) = Migrations.init(db, [migration(AssetUniqueQty)], concurrent_indexes=True)
    assert [s.sql for s in result.steps] == [
        'CREATE UNIQUE INDEX CONCURRENTLY "assets_qty_idx" ON "assets" USING btree ("qty")'
    ]
    assert _index_valid(raw, "assets_qty_idx") is True
    steps = raw.execute(
        sql.SQL("SELECT steps FROM {} ORDER BY id DESC LIMIT 1").format(
            sql.Identifier(HISTORY_TABLE)
        )
    ).fetchone()
    assert steps is not None
    assert "CONCURRENTLY" in steps[0][0]["sql"]


def test_an_invalid_index_left_by_an_interrupted_build_is_dropped_and_rebuilt(db, raw):
    """An INVALID index of the model's is detected, dropped and built again."""
    populate(db, raw)
    raw.execute("UPDATE assets SET qty = 1 WHERE id = 2")
    with pytest.raises(psycopg.errors.UniqueViolation):
        raw.execute("CREATE UNIQUE INDEX CONCURRENTLY assets_qty_idx ON assets (qty)")
    assert _index_valid(raw, "assets_qty_idx") is False
    raw.execute("UPDATE assets SET qty = 2 WHERE id = 2")
    planned = Migrations.plan(db, [migration(AssetUniqueQty)])[0]
    assert planned.steps[0].description.startswith("drop invalid index assets_qty_idx")
    (result,) = Migrations.init(db, [migration(AssetUniqueQty)])
    assert result.steps == planned.steps
    assert _index_valid(raw, "assets_qty_idx") is True


def test_a_migration_inside_a_transaction_rolls_back_with_it(db, raw):
    """Given a Transaction, the migration is part of it: an exception undoes it too."""
    populate(db, raw)
    before = state(raw)
    with pytest.raises(RuntimeError), db.transaction() as tx:
        Migrations.init(tx, [migration(AssetRenamed)])
        raise RuntimeError
    assert state(raw) == before
    with db.transaction() as tx:
        (result,) = Migrations.init(tx, [migration(AssetRenamed)])
    assert result.action is MigrationAction.DATA_MIGRATED
    assert "ticker" in columns_of(raw)


def test_a_dry_run_changes_nothing(db, raw):
    """plan() on a new schema creates neither tables nor the history; on a table, nothing moves."""
    plans = Migrations.plan(db, [migration(OrderNote), migration(Order)])
    assert [p.action for p in plans] == [MigrationAction.TABLE_CREATED] * 2
    assert plans[0].steps[0].description == "create table order_notes"
    tables = raw.execute(
        "SELECT count(*) FROM pg_class WHERE relnamespace = current_schema()::regnamespace"
    ).fetchone()
    assert tables == (0,)
    populate(db, raw)
    before = state(raw)
    assert Migrations.plan(db, [migration(AssetManySteps)])[0].steps
    assert state(raw) == before


def test_created_tables_match_their_models_and_a_rerun_records_nothing(db, raw):
    """Every mapped type, default, key and index reads back as the model: no step, no record."""
    first = Migrations.init(db, [migration(OrderNote), migration(Order)])
    assert [r.action for r in first] == [MigrationAction.TABLE_CREATED] * 2
    history_rows = len(history(raw))
    again = Migrations.init(db, [migration(Order), migration(OrderNote)])
    assert [r.action for r in again] == [MigrationAction.SCHEMA_MATCHED] * 2
    assert [r.steps for r in again] == [(), ()]
    assert len(history(raw)) == history_rows == 2
    order = Order(venue="XNAS", ref="a1", side=Side.BUY, sizes=np.arange(5)).insert(db)
    OrderNote(order_id=order.id, body="hello").insert(db)


def test_bad_arguments_are_refused_before_anything_runs(db):
    """Entries must be migration() values, timeouts positive, concurrency outside transactions."""
    with pytest.raises(ValidationError, match="migration"):
        Migrations.init(db, [AssetRenamed])  # type: ignore[list-item]
    with pytest.raises(ValidationError, match="lock_timeout"):
        Migrations.init(db, [migration(AssetRenamed)], lock_timeout=0)
    with db.transaction() as tx, pytest.raises(ValidationError, match="concurrent"):
        Migrations.init(tx, [migration(AssetRenamed)], concurrent_indexes=True)


@table("assets")
class AssetJsonQty(Orso):
    id: int | None = column(primary_key=True, default=None)
    symbol: str
    price: float
    qty: dict[str, Any] = column(factory=dict)
    note: str | None = None
    prices: list[float] = column(factory=list)
    ticks: list[int] = column(factory=list)


def test_a_type_without_a_cast_is_refused_naming_both_types(db, raw):
    """bigint has no cast to jsonb: the migration stops with both types named, nothing changes."""
    Migrations.init(db, [migration(Asset, "tiny")])
    raw.execute(
        "INSERT INTO tiny (symbol, price, qty, prices, ticks)"
        " SELECT 'S' || g, g, g, '{}', '{}' FROM generate_series(1, 50) g"
    )
    before = columns_of(raw, "tiny")
    with pytest.raises(MigrationError, match="from bigint to jsonb") as info:
        Migrations.init(db, [migration(AssetJsonQty, "tiny")])
    assert info.value.column == "qty"
    assert columns_of(raw, "tiny") == before


def test_a_corrupt_frame_stops_decompression_naming_the_row(db, raw):
    """A frame that does not decode is named by row and column; the arrays stay compressed."""
    Migrations.init(db, [migration(AssetCompressed, "tiny")])
    AssetCompressed.batch_insert_with_table(
        [AssetCompressed(symbol=f"S{i}", price=i, qty=i, prices=[i, i + 0.5]) for i in range(50)],
        db,
        "tiny",
    )
    raw.execute("UPDATE tiny SET prices = 'not a frame' WHERE id = 7")
    with pytest.raises(
        MigrationError, match=r"cannot convert column prices of the row at \("
    ) as info:
        Migrations.init(db, [migration(Asset, "tiny")])
    assert info.value.column == "prices"
    assert columns_of(raw, "tiny")["prices"][0] == "bytea"


def test_long_arrays_are_converted_a_few_rows_at_a_time(db, raw):
    """Rows of 300,000-element arrays go a few per COPY, so memory stays bounded; values survive."""
    Migrations.init(db, [migration(Asset, "wide")])
    raw.execute(
        "INSERT INTO wide (symbol, price, qty, prices, ticks)"
        " SELECT 'S' || g, g, g, array_agg(g + i * 0.25), '{}'"
        " FROM generate_series(1, 4) g, generate_series(1, 300000) i GROUP BY g"
    )
    before = raw.execute("SELECT id, prices FROM wide ORDER BY id").fetchall()
    copies: list[str] = []

    def count(text: str, _params: tuple[Any, ...]) -> None:
        if text.startswith("COPY"):
            copies.append(text)

    db.add_listener(count)
    (result,) = Migrations.init(db, [migration(AssetCompressed, "wide")])
    assert result.rows_migrated == 4
    assert len(copies) > 1  # 4 short rows would go in one COPY
    stored = {a.id: a.prices for a in AssetCompressed.find_all_with_table(db, "wide")}
    assert [(key, stored[key]) for key, _ in before] == before
