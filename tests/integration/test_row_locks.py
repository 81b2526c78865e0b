"""Row locks against a real PostgreSQL, with two connections: NOWAIT, SKIP LOCKED, a job queue."""

from __future__ import annotations

import io
import threading
from typing import Any

import pytest

from orso_pg import (
    Database,
    Filter,
    LockNotAvailableError,
    LockTimeoutError,
    Orso,
    QueryBuilder,
    QueryError,
    RowLock,
    Sort,
    column,
    table,
)
from tests.conftest import Server
from tests.helpers import count_statements, create_tables
from tests.readme_run import run_section


@table("l_slots")
class Slot(Orso):
    id: int | None = column(primary_key=True, default=None)
    name: str
    taken: bool = False


@table("l_holders")
class Holder(Orso):
    id: int | None = column(primary_key=True, default=None)
    slot: int = column(ref=Slot)
    who: str


def _ids(rows: list[Slot]) -> list[int]:
    return sorted(r.id for r in rows if r.id is not None)


def _slots(db: Database, n: int) -> list[Slot]:
    return [Slot(name=f"s{i}").insert(db) for i in range(n)]


def test_locks_are_refused_outside_a_transaction(db: Database):
    """Through a Database a lock would end with its statement: every locking read refuses."""
    create_tables(db, Slot)
    lock = RowLock.update()
    builder = QueryBuilder(Slot).for_update()
    with count_statements(db) as log:
        for call in (
            lambda: Slot.find_by_id(1, db, lock=lock),
            lambda: Slot.find_where(Filter.is_not_null("name"), db, lock=lock),
            lambda: Slot.find_one(Filter.is_not_null("name"), db, lock=lock),
            lambda: builder.fetch(db),
            lambda: builder.stream(db),
            lambda: Slot.query(builder, db),
            lambda: builder.fetch_models(db),
            lambda: builder.fetch_arrays(db),
            lambda: builder.copy_out(io.BytesIO(), db),
        ):
            with pytest.raises(QueryError, match=r"db.transaction"):
                call()
    assert len(log) == 0


def test_nowait_raises_on_a_row_another_transaction_holds(db: Database):
    """A second connection asking NOWAIT for a locked row gets LockNotAvailableError at once."""
    create_tables(db, Slot)
    first, second = _slots(db, 2)
    with db.transaction() as holder:
        held = Slot.find_by_id(first.id, holder, lock=RowLock.update())
        assert held == first
        with db.transaction() as other:
            with pytest.raises(LockNotAvailableError) as info:
                Slot.find_by_id(first.id, other, lock=RowLock.update(nowait=True))
            assert info.value.sqlstate == "55P03"
            assert isinstance(info.value, LockTimeoutError)  # what older code catches
            # The NOWAIT ran in a savepoint: the transaction goes on after the error.
            assert Slot.find_by_id(second.id, other) == second
        with db.transaction() as other:
            # Another row is free, and an unlocked read never waits.
            assert Slot.find_by_id(second.id, other, lock=RowLock.update(nowait=True)) == second
            assert Slot.find_by_id(first.id, other) == first
    with db.transaction() as later:  # the holder committed: the lock is gone
        assert Slot.find_by_id(first.id, later, lock=RowLock.update(nowait=True)) == first


def test_skip_locked_leaves_held_rows_out(db: Database):
    """SKIP LOCKED returns only the rows no other transaction holds, finders and builders alike."""
    create_tables(db, Slot)
    slots = _slots(db, 5)
    ids = [s.id for s in slots]
    with db.transaction() as holder:
        held = Slot.find_where(Filter.in_values("id", ids[:2]), holder, lock=RowLock.update())
        assert _ids(held) == ids[:2]
        with db.transaction() as other:
            skip = RowLock.update(skip_locked=True)
            free = Slot.find_where(Filter.is_not_null("id"), other, lock=skip)
            assert _ids(free) == ids[2:]
            assert Slot.find_one(Filter.is_not_null("id"), other, lock=skip) == slots[2]
        with db.transaction() as other:
            q = QueryBuilder(Slot).order_by(Sort.asc("id")).limit(2).for_update(skip_locked=True)
            assert [s.id for s in Slot.query(q, other)] == ids[2:4]
            # Its own locks do not hide rows from the transaction holding them.
            assert [r[0] for r in q.fetch(other)] == ids[2:4]
            with db.transaction() as third:
                assert [r[0] for r in q.fetch(third)] == ids[4:5]


def test_shared_locks_block_writers_only(db: Database):
    """Two FOR SHARE locks coexist; a FOR UPDATE NOWAIT on the same row fails."""
    create_tables(db, Slot)
    (slot,) = _slots(db, 1)
    with db.transaction() as a, db.transaction() as b:
        assert Slot.find_by_id(slot.id, a, lock=RowLock.share()) == slot
        assert Slot.find_one(Filter.eq("id", slot.id), b, lock=RowLock.share(nowait=True)) == slot
        with db.transaction() as c:
            with pytest.raises(LockNotAvailableError):
                Slot.find_by_id(slot.id, c, lock=RowLock.no_key_update(nowait=True))
            assert QueryBuilder(Slot).for_share(key=True, nowait=True).fetch(c)[0][0] == slot.id


def test_locked_columnar_reads_in_a_transaction(db: Database):
    """Inside a transaction, fetch_arrays and copy_out of a locking query lock the rows read."""
    create_tables(db, Slot)
    slots = _slots(db, 2)
    q = QueryBuilder(Slot).select("id").order_by(Sort.asc("id")).for_update()
    with db.transaction() as tx:
        assert q.fetch_arrays(tx)["id"].tolist() == [s.id for s in slots]
        with db.transaction() as other, pytest.raises(LockNotAvailableError):
            Slot.find_by_id(slots[0].id, other, lock=RowLock.update(nowait=True))
    with db.transaction() as tx:
        out = io.BytesIO()
        assert q.copy_out(out, tx) == 2


def test_lock_of_one_table_in_a_join(db: Database):
    """of= locks the named table of a join only: the other one stays free."""
    create_tables(db, Slot, Holder)
    (slot,) = _slots(db, 1)
    assert slot.id is not None
    holder_row = Holder(slot=slot.id, who="me").insert(db)
    q = QueryBuilder(Holder).join(Slot, ("slot", "id"), alias="s").for_update(of="l_holders")
    with db.transaction() as tx:
        assert Holder.query(q, tx) == [holder_row]
        with db.transaction() as other:
            assert Slot.find_by_id(slot.id, other, lock=RowLock.update(nowait=True)) == slot
            with pytest.raises(LockNotAvailableError):
                Holder.find_by_id(holder_row.id, other, lock=RowLock.update(nowait=True))
    with db.transaction() as tx:
        streamed = list(QueryBuilder(Slot).for_update(of=Slot).stream(tx))
        assert [r[0] for r in streamed] == [slot.id]


def test_job_queue_takes_each_job_once(
    server: Server, schema: str, monkeypatch: pytest.MonkeyPatch, db: Database
):
    """The README's job queue, run by 4 threads over 4,000 jobs, takes every job exactly once."""
    readme = run_section("Row locks", server, schema, monkeypatch)
    job_model: Any = readme["Job"]
    work = readme["work"]
    job_model.delete_where(Filter.is_not_null("id"), db)
    job_model.batch_insert([job_model(payload=f"job {n}") for n in range(4_000)], db)
    taken: list[list[int]] = [[] for _ in range(4)]
    failures: list[BaseException] = []

    def run(n: int) -> None:
        try:
            work(db, n, taken[n])
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    every = [i for part in taken for i in part]
    assert len(every) == len(set(every)) == 4_000
    assert sorted(every) == [job.id for job in job_model.find_all(db)]
    assert job_model.count_where(Filter.ne("attempts", 1), db) == 0
    by_worker = {n: set(part) for n, part in enumerate(taken)}
    for job in job_model.find_where(Filter.is_not_null("id"), db):
        assert job.id in by_worker[job.worker]  # the worker that recorded it did it
