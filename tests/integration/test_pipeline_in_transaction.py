"""Pipelines opened in a transaction, and pipelines that do not wait for the WAL flush."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from orso_pg import (
    ConfigError,
    Database,
    Filter,
    NotFoundError,
    Orso,
    Pending,
    Pipeline,
    PipelineAbortedError,
    QueryError,
    RowLock,
    UniqueViolationError,
    column,
    table,
)
from tests.conftest import Server
from tests.helpers import assert_pool_clean, create_tables
from tests.partition_models import PTrade


@table("pt_items")
class Item(Orso):
    id: int | None = column(primary_key=True, default=None)
    name: str = column(unique=True)
    qty: int = 0


@table("pt_setting")
class Setting(Orso):
    """A view of the session's synchronous_commit, read through the pipeline's connection."""

    id: int = column(primary_key=True)
    mode: str


def _names(db: Database) -> list[str]:
    return sorted(i.name for i in Item.find_all(db))


def _idle(db: Database) -> None:
    assert_pool_clean(db)
    with db.connection() as conn:
        assert conn.execute("SHOW synchronous_commit").fetchone() == ("on",)


def test_a_pipeline_runs_inside_the_transaction(db: Database):
    """It sees the transaction's writes, the transaction sees its own, and both commit together."""
    create_tables(db, Item)
    with db.transaction() as tx:
        Item(name="before", qty=1).insert(tx)
        with tx.pipeline() as p:
            assert isinstance(p, Pipeline)
            assert "savepoint" in repr(p)
            seen = Item.find_one(Filter.eq("name", "before"), p)
            added = [Item(name=f"n{i}", qty=i).insert(p) for i in range(5)]
            locked = Item.find_by_id(1, p, lock=RowLock.update())
            total = Item.count(p)
            assert isinstance(total, Pending)
        assert seen.result() == Item(id=1, name="before", qty=1)
        assert [h.result().id for h in added] == [2, 3, 4, 5, 6]
        assert locked.result() is not None
        assert total.result() == 6
        assert Item.count(tx) == 6  # usable again once the block ended
    assert Item.count(db) == 6
    _idle(db)


def test_rolling_back_the_transaction_undoes_the_pipeline(db: Database):
    create_tables(db, Item)
    with pytest.raises(RuntimeError), db.transaction() as tx:
        with tx.pipeline() as p:
            Item(name="a").insert(p)
        raise RuntimeError
    assert Item.count(db) == 0
    _idle(db)


def test_a_failure_rolls_back_the_pipeline_only(db: Database):
    """The failing handle raises, later ones are aborted; the transaction goes on and commits."""
    create_tables(db, Item)
    Item(name="taken").insert(db)
    with db.transaction() as tx:
        Item(name="kept").insert(tx)
        with pytest.raises(UniqueViolationError) as raised, tx.pipeline(max_pending=2) as p:
            first = Item(name="gone").insert(p)
            dup = Item(name="taken").insert(p)
            later = Item.find_by_id(1, p)
            p.sync()
            after_sync = Item(name="never").insert(p)
        assert "pt_items" in str(raised.value)
        assert first.result().name == "gone"  # it ran, then was rolled back with the savepoint
        with pytest.raises(UniqueViolationError):
            dup.result()
        with pytest.raises(PipelineAbortedError, match=r"operation 2.*savepoint is rolled back"):
            later.result()
        assert after_sync.failed()
        # The transaction is usable: its own write is there, the pipeline's are not.
        assert sorted(i.name for i in Item.find_all(tx)) == ["kept", "taken"]
        Item(name="after").insert(tx)
    assert _names(db) == ["after", "kept", "taken"]
    _idle(db)


def test_a_missing_row_rolls_back_the_pipeline_too(db: Database):
    """A failure found when reading a result (update of no row) undoes what ran after it."""
    create_tables(db, Item)
    with db.transaction() as tx:
        with pytest.raises(NotFoundError), tx.pipeline() as p:
            Item(name="a").insert(p)
            Item(id=99, name="b").update(p)
            late = Item(name="c").insert(p)
        with pytest.raises(PipelineAbortedError):
            late.result()
        assert Item.count(tx) == 0
        Item(name="d").insert(tx)
    assert _names(db) == ["d"]
    _idle(db)


def test_a_block_that_raises_rolls_back_to_the_savepoint(db: Database):
    """Even with a server error among the operations still queued when the block raised."""
    create_tables(db, Item)
    Item(name="taken").insert(db)
    with db.transaction() as tx:
        with pytest.raises(RuntimeError), tx.pipeline() as p:
            gone = Item(name="gone").insert(p)
            Item(name="taken").insert(p)  # fails on the server, never synced by the block
            raise RuntimeError
        with pytest.raises(PipelineAbortedError, match="savepoint was rolled back"):
            gone.result()
        Item(name="after").insert(tx)
    assert _names(db) == ["after", "taken"]
    _idle(db)


def test_the_transaction_refuses_calls_while_its_pipeline_is_open(db: Database):
    create_tables(db, Item)
    with db.transaction() as tx, tx.pipeline() as p:
        Item(name="a").insert(p)
        with pytest.raises(QueryError, match="pipeline is open on this transaction"):
            Item.count(tx)
        with pytest.raises(QueryError, match="pipeline is open"):
            Item(name="b").insert(tx)
        with pytest.raises(QueryError, match="pipeline is open"), tx.transaction():
            pass  # pragma: no cover - refused before the block
        with pytest.raises(QueryError, match="pipeline is open"), tx.pipeline():
            pass  # pragma: no cover - refused before the block
        with pytest.raises(QueryError, match="pipeline is open"):
            list(Item.stream_where(None, tx))
    assert _names(db) == ["a"]


def test_a_pipeline_in_a_nested_transaction(db: Database):
    create_tables(db, Item)
    with db.transaction() as tx:
        with tx.transaction() as inner, inner.pipeline() as p:
            Item(name="a").insert(p)
        with pytest.raises(RuntimeError), tx.transaction() as inner, inner.pipeline() as p:
            Item(name="b").insert(p)
            p.sync()
            raise RuntimeError
    assert _names(db) == ["a"]
    _idle(db)


def test_partitions_are_made_on_the_transactions_own_connection(db: Database):
    """A row's partition is made in the transaction: rolled back with it, no lock wait."""
    create_tables(db, PTrade)
    t0 = datetime(2024, 3, 1, tzinfo=UTC)
    with db.transaction() as tx:
        with tx.pipeline() as p:
            first = PTrade(symbol="BTC", ts=t0, price=1.0).insert(p)
            rows = [
                PTrade(symbol="BTC", ts=t0 + timedelta(days=d), price=float(d)).insert(p)
                for d in range(1, 3)
            ]
        assert first.result().price == 1.0
        assert [r.result().price for r in rows] == [1.0, 2.0]
        assert PTrade.count(tx) == 3
    assert PTrade.count(db) == 3
    with pytest.raises(UniqueViolationError), db.transaction() as tx:
        with pytest.raises(UniqueViolationError), tx.pipeline() as p:
            PTrade(symbol="BTC", ts=t0, price=1.0).insert(p)  # taken: fails
            late = PTrade(symbol="BTC", ts=t0 + timedelta(days=30), price=3.0).insert(p)
            later = PTrade(symbol="BTC", ts=t0 + timedelta(days=60), price=3.0).insert(p)
        assert late.failed()
        assert later.failed()
        PTrade(symbol="BTC", ts=t0, price=1.0).insert(tx)  # the transaction still runs
    assert PTrade.count(db) == 3
    _idle(db)


# --- synchronous_commit -------------------------------------------------------------------------


def _setting_view(raw: psycopg.Connection[Any]) -> None:
    raw.execute(
        "CREATE VIEW pt_setting AS SELECT 1 AS id, current_setting('synchronous_commit') AS mode"
    )


@pytest.mark.parametrize("transaction", [False, True], ids=["autocommit", "transaction"])
def test_synchronous_commit_off_for_the_block_only(
    db: Database, raw: psycopg.Connection[Any], transaction: bool
):
    """The pipeline's connection commits without waiting for the flush; the pool's do not."""
    create_tables(db, Item)
    _setting_view(raw)
    with db.pipeline(transaction=transaction, synchronous_commit=False) as p:
        written = [Item(name=f"n{i}").insert(p) for i in range(10)]
        mode = Setting.find_by_id(1, p)
    assert mode.result() == Setting(id=1, mode="off")
    assert [h.result().id for h in written] == list(range(1, 11))
    assert Item.count(db) == 10
    with db.pipeline() as p:
        assert Setting.find_by_id(1, p).result() == Setting(id=1, mode="on")
    _idle(db)


def test_synchronous_commit_is_put_back_after_a_failure(db: Database, raw: psycopg.Connection[Any]):
    create_tables(db, Item)
    _setting_view(raw)
    with pytest.raises(UniqueViolationError), db.pipeline(synchronous_commit=False) as p:
        Item(name="a").insert(p)
        Item(name="a").insert(p)
    with pytest.raises(RuntimeError), db.pipeline(transaction=True, synchronous_commit=False):
        raise RuntimeError
    assert _names(db) == ["a"]
    _idle(db)


def test_synchronous_commit_must_be_a_bool(db: Database):
    with (
        pytest.raises(ConfigError, match="synchronous_commit"),
        db.pipeline(
            synchronous_commit="off"  # type: ignore[arg-type]
        ),
    ):
        pass  # pragma: no cover - refused before the block


def test_the_readme_section_runs(
    server: Server, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's example runs unchanged and its asserts hold."""
    from tests.readme_run import run_section

    ns = run_section("Pipelines in a transaction", server, schema, monkeypatch)
    assert ns["refused"] is True
    assert all(handle.done() for handle in ns["made"])
