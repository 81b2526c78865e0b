"""Batches under failure: atomicity, a loader killed mid-COPY, chunked commits that resume."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from orso_pg import Database, Orso, UniqueViolationError, ValidationError, column, table
from tests.conftest import Server
from tests.helpers import create_tables


@table("bf_loads", unique=[("batch", "n")])
class Load(Orso):
    id: int | None = column(primary_key=True, default=None)
    batch: str = "a"
    n: int
    label: str


def loads(count: int, start: int = 0, batch: str = "a") -> Iterator[Load]:
    for n in range(start, start + count):
        yield Load(batch=batch, n=n, label=f"row {n}")


def _stats(raw: psycopg.Connection[Any]) -> tuple[int, int, int]:
    row = raw.execute("SELECT count(*), count(DISTINCT n), coalesce(max(n), -1) FROM bf_loads")
    found = row.fetchone()
    assert found is not None
    return found[0], found[1], found[2]


@pytest.mark.slow
def test_a_bad_last_row_of_100000_leaves_the_table_unchanged(
    db: Database, raw: psycopg.Connection[Any]
):
    """A bad row at position 99,999 of 100,000 fails the batch and writes nothing."""
    create_tables(db, Load)
    Load.batch_create(loads(10, batch="before"), db)

    def rows() -> Iterator[Load]:
        for obj in loads(100_000):
            if obj.n == 99_999:
                obj.label = "bad\x00"
            yield obj

    with pytest.raises(ValidationError) as info:
        Load.batch_create(rows(), db)
    assert info.value.position == 99_999
    assert info.value.column == "label"
    assert info.value.value == "bad\x00"
    assert _stats(raw) == (10, 10, 9)


def test_chunked_mode_resumes_after_a_failure_without_duplicates(
    db: Database, raw: psycopg.Connection[Any]
):
    """Chunks before a bad row stay committed; a rerun from `committed` completes the load."""
    create_tables(db, Load)

    def rows(*, broken: bool) -> Iterator[Load]:
        for obj in loads(2_600):
            if broken and obj.n == 1_234:
                obj.n = -1  # a duplicate key with the row holding n = -1 below
            yield obj

    Load.batch_create([Load(n=-1, label="seed")], db)
    seen: list[int] = []
    with pytest.raises(UniqueViolationError) as info:
        Load.batch_create(rows(broken=True), db, chunked=True, chunk_size=500, progress=seen.append)
    err = info.value
    assert err.position == 1_234
    assert err.committed == 1_000
    assert seen == [500, 1_000]
    assert _stats(raw) == (1_001, 1_001, 999)
    Load.batch_create(rows(broken=False), db, chunked=True, chunk_size=500, start=err.committed)
    assert _stats(raw) == (2_601, 2_601, 2_599)


def test_a_chunked_upsert_can_simply_be_rerun(db: Database, raw: psycopg.Connection[Any]):
    """Rerunning a failed chunked upsert from the start converges to the same table."""
    create_tables(db, Load)
    rows = list(loads(1_000))
    rows[777] = Load(n=777, label="x\x00")
    with pytest.raises(ValidationError) as info:
        Load.batch_upsert(rows, db, chunked=True, chunk_size=300)
    assert info.value.committed == 600
    assert _stats(raw) == (600, 600, 599)
    rows[777] = Load(n=777, label="fixed")
    result = Load.batch_upsert(rows, db, chunked=True, chunk_size=300)
    assert (result.inserted, result.updated) == (400, 600)
    assert _stats(raw) == (1_000, 1_000, 999)


def test_chunked_mode_inside_a_transaction_uses_savepoints(
    db: Database, raw: psycopg.Connection[Any]
):
    """In a transaction, chunks before a failure stay in it until the caller commits."""
    create_tables(db, Load)
    rows = list(loads(50))
    rows[42].label = "\x00"
    with db.transaction() as tx:
        with pytest.raises(ValidationError):
            Load.batch_create(rows, tx, chunked=True, chunk_size=20)
        assert _stats(raw) == (0, 0, -1)
        assert Load.count(tx) == 40
    assert _stats(raw) == (40, 40, 39)


CHILD = """
import sys
from orso_pg import Database, Orso, column, table

@table("bf_loads", unique=[("batch", "n")])
class Load(Orso):
    id: int | None = column(primary_key=True, default=None)
    batch: str = "a"
    n: int
    label: str

dsn, schema, app, chunked, total, chunk = sys.argv[1:]
rows = (Load(n=n, label=f"row {n}") for n in range(int(total)))
with Database(dsn, schema=schema, application_name=app) as db:
    Load.batch_create(rows, db, chunk_size=int(chunk), chunked=chunked == "1", progress=False)
"""


def _wait_for(check: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


@pytest.mark.slow
@pytest.mark.parametrize("chunked", [False, True], ids=["atomic", "chunked"])
def test_a_loader_killed_mid_copy_leaves_no_partial_rows(
    db: Database, raw: psycopg.Connection[Any], server: Server, schema: str, chunked: bool
):
    """SIGKILL during a COPY: nothing (atomic) or whole chunks only (chunked) are visible."""
    create_tables(db, Load)
    app = f"bf_{uuid.uuid4().hex[:10]}"
    total, chunk = 400_000, 50_000
    child = subprocess.Popen(  # noqa: S603 - our own interpreter and code
        [
            sys.executable,
            "-c",
            CHILD,
            server.dsn,
            schema,
            app,
            str(int(chunked)),
            str(total),
            str(chunk),
        ]
    )
    try:

        def copying() -> bool:
            assert child.poll() is None, "the loader finished before it could be killed"
            found = raw.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
                "AND state = 'active' AND query LIKE 'COPY%%'",
                (app,),
            ).fetchone()
            return found is not None and found[0] > 0

        if chunked:
            # Let two chunks commit, then kill the loader inside a later COPY.
            _wait_for(lambda: _stats(raw)[0] >= 2 * chunk and copying())
        else:
            _wait_for(copying)
        child.kill()
    finally:
        child.kill()
        child.wait()

    def gone() -> bool:
        found = raw.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (app,)
        ).fetchone()
        return found is not None and found[0] == 0

    _wait_for(gone, timeout=30.0)
    count, distinct, highest = _stats(raw)
    if not chunked:
        assert count == 0
    else:
        assert count % chunk == 0
        assert 2 * chunk <= count < total
        assert (distinct, highest) == (count, count - 1)
