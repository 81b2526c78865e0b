"""Read replicas against a real hot standby: routing, read-your-writes, lag and failover.

The standby (the session fixture ``standby``) streams from the session's embedded server; each
test works in a schema of its own, created on the primary and waited for on the standby.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from orso_pg import (
    ConfigError,
    Database,
    Filter,
    Orso,
    Pagination,
    PrimarySession,
    QueryBuilder,
    ReplicaStatus,
    Sort,
    column,
    table,
)
from orso_pg._compiler import Statement
from orso_pg.session import _replicas
from orso_pg.testing.standby import Standby, hot_standby
from tests.conftest import Server
from tests.helpers import create_tables
from tests.readme_run import run_section
from tests.throwaway import free_port

pytestmark = pytest.mark.own_server

IN_RECOVERY = Statement(sql.SQL("SELECT pg_is_in_recovery()"))


@table("replica_items")
class Item(Orso):
    id: int | None = column(primary_key=True, default=None)
    name: str
    n: int = 0


class Log:
    """A listener that records which server ran each statement."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def __call__(self, text: str, params: tuple[Any, ...], server: str) -> None:
        del params
        self.seen.append((server, text))

    def servers(self, verb: str = "SELECT") -> list[str]:
        return [server for server, text in self.seen if text.lstrip().startswith(verb)]


Opener = Callable[..., tuple[Database, Log]]


@pytest.fixture
def replicated(standby: Standby) -> Iterator[Opener]:
    """Open Databases on a schema of this test's own, with the standby as their replica."""
    if not standby.running():
        standby.start()  # a failed failover test left it stopped
    name = f"r_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(standby.primary_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    with Database(standby.primary_dsn, schema=name) as admin:
        create_tables(admin, Item)
    standby.wait_caught_up()
    opened: list[Database] = []

    def open_db(**options: Any) -> tuple[Database, Log]:
        options.setdefault("replicas", [standby.dsn])
        options.setdefault("max_size", 4)
        db = Database(standby.primary_dsn, schema=name, **options)
        opened.append(db)
        log = Log()
        db.add_listener(log)
        return db, log

    try:
        yield open_db
    finally:
        for db in opened:
            db.close()
        with psycopg.connect(standby.primary_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


def _name_of(db: Database, dsn: str) -> str:
    with Database(dsn, min_size=1, max_size=1) as other:
        return other.server


def _until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("the condition did not hold in time")
        time.sleep(0.02)


def test_reads_go_to_the_standby_and_writes_to_the_primary(replicated: Opener, standby: Standby):
    """Finders, counts, pages, streams and builder fetches run on the standby; inserts do not."""
    db, log = replicated()
    replica = _name_of(db, standby.dsn)
    assert replica != db.server
    items = [Item(name=f"i{i}", n=i).insert(db) for i in range(5)]
    assert set(log.servers("INSERT")) == {db.server}
    standby.wait_caught_up()
    log.seen.clear()
    assert db._read(lambda ex: ex.scalar(IN_RECOVERY)) is True
    assert Item.find_by_id(items[0].id, db) == items[0]
    assert Item.count(db) == 5
    assert [i.n for i in Item.find_all(db)] == [0, 1, 2, 3, 4]
    assert Item.find_paginated(Pagination(1, 2), db).total == 5
    assert [i.n for i in Item.stream_where(None, db, batch_size=2)] == [0, 1, 2, 3, 4]
    assert len(log.seen) >= 5
    assert {server for server, _ in log.seen} == {replica}


def test_a_transaction_reads_its_own_writes(replicated: Opener):
    """Inside db.transaction() everything runs on the primary, reads included."""
    db, log = replicated()
    with db.transaction() as tx:
        item = Item(name="mine").insert(tx)
        assert Item.find_by_id(item.id, tx) == item
        assert tx._read(lambda ex: ex.scalar(IN_RECOVERY)) is False
    assert {server for server, _ in log.seen} == {db.server}


def test_a_held_connection_reads_its_own_writes(replicated: Opener, standby: Standby):
    """In db.hold() every read runs on the primary, streams included, even with the standby."""
    db, log = replicated()
    standby.pause_replay()  # the standby cannot have the block's writes
    try:
        with db.hold() as h:
            item = Item(name="held", n=7).insert(h)
            assert Item.find_by_id(item.id, h) == item
            assert [i.name for i in Item.stream_where(Filter.eq("n", 7), h)] == ["held"]
            assert Item.count_where(Filter.eq("n", 7), h) == 1
    finally:
        standby.resume_replay()
    assert {server for server, _ in log.seen} == {db.server}


def test_the_primary_session_reads_from_the_primary(replicated: Opener):
    """db.primary() is a session whose reads, writes and transactions go to the primary."""
    db, log = replicated()
    main = db.primary()
    assert isinstance(main, PrimarySession)
    assert main.primary() is main
    assert "PrimarySession" in repr(main)
    for i in range(20):
        item = Item(name=f"p{i}").insert(main)
        assert Item.find_by_id(item.id, main) == item
    with main.transaction() as tx:
        Item(name="in tx").insert(tx)
    assert [i.name for i in Item.stream_where(None, main)][-1] == "in tx"
    assert main.fetch(sql.SQL("SELECT 1")) == [(1,)]
    assert main._read(lambda ex: ex.scalar(IN_RECOVERY)) is False
    assert {server for server, _ in log.seen} == {db.server}


def test_read_your_writes_never_misses(replicated: Opener, standby: Standby):
    """With read_your_writes, a row is found right after its insert, 1,000 times in a row."""
    db, log = replicated(read_your_writes=True)
    misses = 0
    for i in range(1000):
        item = Item(name=f"c{i}", n=i).insert(db)
        if Item.find_by_id(item.id, db) is None:
            misses += 1
    assert misses == 0
    # Once the standby has replayed the writes, reads go back to it.
    replica = _name_of(db, standby.dsn)
    standby.wait_caught_up()
    log.seen.clear()
    _until(lambda: Item.count(db) == 1000 and log.servers()[-1] == replica)


def test_read_your_writes_after_a_transaction_and_a_lent_connection(replicated: Opener):
    """Committing a transaction or returning a raw connection also counts as a write."""
    db, _ = replicated(read_your_writes=True)
    for i in range(20):
        with db.transaction() as tx:
            item = Item(name=f"t{i}").insert(tx)
        assert Item.find_by_id(item.id, db) is not None
        with db.connection() as conn:
            conn.execute("INSERT INTO replica_items (name, n) VALUES ('raw', %s)", (i,))
        assert Item.count_where(Filter.eq("n", i), db) >= 1


def test_read_your_writes_after_a_pipeline_and_a_held_connection(
    replicated: Opener, standby: Standby
):
    """A pipeline and a db.hold() block run on the primary and count as writes."""
    db, log = replicated(read_your_writes=True)
    standby.pause_replay()  # the standby cannot have these rows
    try:
        with db.pipeline() as p:
            piped = Item(name="piped").insert(p)
        with db.hold() as h:
            held = Item(name="held").insert(h)
        assert Item.find_by_id(piped.result().id, db) is not None
        assert Item.find_by_id(held.id, db) is not None
    finally:
        standby.resume_replay()
    assert {server for server, _ in log.seen} == {db.server}


def test_a_lagging_standby_is_skipped(replicated: Opener, standby: Standby):
    """A standby whose replay is paused beyond max_replica_lag serves no reads until it resumes."""
    db, log = replicated(max_replica_lag=0.3)
    replica = _name_of(db, standby.dsn)
    standby.pause_replay()
    try:
        item = Item(name="late").insert(db)
        _until(lambda: db.replica_status()[0].state == "lagging")
        status = db.replica_status()[0]
        assert status.paused
        assert status.lag is not None
        assert status.lag > 0.3
        log.seen.clear()
        assert Item.find_by_id(item.id, db) == item
        assert log.servers() == [db.server]
    finally:
        standby.resume_replay()
    _until(lambda: db.replica_status()[0].state == "up")
    log.seen.clear()
    assert Item.find_by_id(item.id, db) == item
    assert log.servers() == [replica]


def test_failover_to_the_primary_and_back(replicated: Opener, standby: Standby):
    """A stopped standby sends reads to the primary at once, without errors; back when it is."""
    db, log = replicated()
    replica = _name_of(db, standby.dsn)
    items = [Item(name=f"f{i}").insert(db) for i in range(3)]
    standby.wait_caught_up()
    assert Item.count(db) == 3
    assert log.servers()[-1] == replica
    standby.stop()
    try:
        stopped = time.monotonic()
        slowest = 0.0
        for _ in range(20):
            began = time.monotonic()
            assert [i.n for i in Item.stream_where(None, db)] == [0, 0, 0]
            assert Item.find_by_id(items[1].id, db) == items[1]
            slowest = max(slowest, time.monotonic() - began)
        assert slowest < 2.0
        assert time.monotonic() - stopped < 10.0
        assert log.servers()[-1] == db.server
        status = db.replica_status()[0]
        assert status.state == "down"
        assert status.reason
        assert status.lag is None
    finally:
        standby.start()
    _until(lambda: db.replica_status()[0].state == "up")
    log.seen.clear()
    assert Item.count(db) == 3
    assert log.servers() == [replica]


def test_a_read_cancelled_by_a_replication_conflict_runs_on_the_primary(
    replicated: Opener, standby: Standby
):
    """A hot-standby conflict (40001) cancels the read on the standby; it runs again elsewhere."""
    db, log = replicated()
    replica = _name_of(db, standby.dsn)
    Item(name="x").insert(db)
    standby.wait_caught_up()
    slow = Statement(sql.SQL("SELECT count(*) FROM replica_items, pg_sleep(1)"))
    result: list[int] = []
    reader = threading.Thread(target=lambda: result.append(db._read(lambda ex: ex.scalar(slow))))
    reader.start()
    running = sql.SQL(
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE {}"
    ).format(sql.Literal("%pg_sleep(1)%"))
    with psycopg.connect(standby.dsn, autocommit=True) as watch:
        _until(lambda: (watch.execute(running).fetchone() or (0,))[0] > 1)
    with db.transaction() as tx:
        tx.fetch(sql.SQL("LOCK TABLE replica_items IN ACCESS EXCLUSIVE MODE"))
    reader.join(timeout=30)
    assert result == [1]
    assert [s for s, t in log.seen if "pg_sleep" in t] == [replica, db.server]
    assert db.replica_status()[0].state == "up"  # a conflict is no failure of the server


def test_round_robin_over_the_replicas(replicated: Opener, standby: Standby):
    """Reads alternate between the listed replicas (here the standby and the primary itself)."""
    db, log = replicated(replicas=[standby.dsn, standby.primary_dsn])
    replica = _name_of(db, standby.dsn)
    for _ in range(6):
        Item.count(db)
    servers = log.servers()
    assert set(servers) == {replica, db.server}
    assert all(a != b for a, b in itertools.pairwise(servers))
    by_server = {s.server: s for s in db.replica_status()}
    assert by_server[db.server].in_recovery is False
    assert by_server[db.server].replay_lsn is None
    assert by_server[replica].in_recovery is True


def test_replica_status_reports_each_server(replicated: Opener, standby: Standby):
    """replica_status() gives one ReplicaStatus per replica: name, state, lag and position."""
    db, _ = replicated()
    (status,) = db.replica_status()
    assert isinstance(status, ReplicaStatus)
    assert status.server == _name_of(db, standby.dsn)
    assert status.state == "up"
    assert status.in_recovery is True
    assert status.lag is not None
    assert status.replay_lsn is not None
    assert "/" in status.replay_lsn
    assert status.reason is None


def test_a_replica_down_at_start_is_skipped(replicated: Opener):
    """A replica that refuses connections does not stop the Database from opening."""
    nowhere = f"host=127.0.0.1 port={free_port()} user=postgres dbname=postgres connect_timeout=2"
    db, log = replicated(replicas=[nowhere])
    (status,) = db.replica_status()
    assert status.state == "down"
    assert status.reason
    assert Item.count(db) == 0
    assert log.servers() == [db.server]


def test_listeners_without_a_server_argument_still_work(replicated: Opener, standby: Standby):
    """Two-argument listeners are called as before; a server-aware one can be removed."""
    db, log = replicated()
    seen: list[str] = []
    db.add_listener(lambda text, _params: seen.append(text))
    Item.count(db)
    db.remove_listener(log)
    Item.count(db)
    assert len(seen) == 2
    assert len(log.servers()) == 1


def test_replicas_from_the_environment(
    replicated: Opener, standby: Standby, monkeypatch: pytest.MonkeyPatch
):
    """$ORSO_PG_REPLICA_DSNS lists the replicas of the server $ORSO_PG_DSN names."""
    monkeypatch.setenv("ORSO_PG_DSN", standby.primary_dsn)
    monkeypatch.setenv("ORSO_PG_REPLICA_DSNS", f"{standby.dsn}; {standby.dsn}")
    with Database() as db:
        assert [s.state for s in db.replica_status()] == ["up", "up"]
        assert db._read(lambda ex: ex.scalar(IN_RECOVERY)) is True
    # A Database on another server does not take them.
    with Database(standby.dsn) as other:
        assert other.replica_status() == []
        assert other.primary() is other


def test_bad_replica_settings_are_refused(standby: Standby, embedded_dir: Any):
    """Invalid replica DSNs, replicas of the embedded server and bad lag limits are errors."""
    primary = standby.primary_dsn
    with pytest.raises(ConfigError, match="replica 0 is 'embedded'"):
        Database(primary, replicas=["embedded"])
    with pytest.raises(ConfigError, match="invalid connection string for replica 0"):
        Database(primary, replicas=["host='unclosed"])
    with pytest.raises(ConfigError, match="list of DSNs"):
        Database(primary, replicas=standby.dsn)
    with pytest.raises(ConfigError, match="max_replica_lag"):
        Database(primary, replicas=[standby.dsn], max_replica_lag=0)
    with pytest.raises(ConfigError, match="require_tls"):
        Database(primary, replicas=["host=db.example.com sslmode=disable"], require_tls=True)
    with pytest.raises(ConfigError, match="embedded PostgreSQL has none"):
        Database(data_dir=embedded_dir, replicas=[standby.dsn])


def test_busy_replicas_send_the_read_to_the_primary(replicated: Opener, standby: Standby):
    """A read that gets no connection on any replica within the timeout runs on the primary."""
    db, log = replicated(replicas=[standby.dsn, standby.dsn], max_size=1, timeout=0.3)
    replica = _name_of(db, standby.dsn)
    slow = Statement(sql.SQL("SELECT count(*) FROM pg_sleep(1.5)"))
    holders = [threading.Thread(target=lambda: db._read(lambda ex: ex.scalar(slow))) for _ in "ab"]
    for holder in holders:
        holder.start()
    running = sql.SQL(
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE {}"
    ).format(sql.Literal("%pg_sleep(1.5)%"))
    with psycopg.connect(standby.dsn, autocommit=True) as watch:
        _until(lambda: (watch.execute(running).fetchone() or (0,))[0] > 2)
    assert Item.count(db) == 0  # tried on both replicas, then run on the primary
    assert log.servers()[-1] == db.server
    assert log.servers().count(replica) == 2
    assert [s.state for s in db.replica_status()] == ["up", "up"]  # they answer probes
    assert list(Item.stream_where(None, db)) == []  # no connection on its replica either
    assert log.servers()[-1] == db.server
    for holder in holders:
        holder.join()
    assert [s.state for s in db.replica_status()] == ["up", "up"]  # probed again on demand


def test_the_primary_session_runs_batches_and_columnar_reads(replicated: Opener):
    """Batches (several statements) and numpy results through db.primary() use the primary."""
    db, log = replicated()
    main = db.primary()
    Item.batch_insert([Item(name="a", n=1), Item(name="b", n=2)], main)
    arrays = QueryBuilder(Item).select("n").order_by(Sort.asc("n")).fetch_arrays(main)
    assert arrays["n"].tolist() == [1, 2]
    assert {server for server, _ in log.seen} == {db.server}


def test_columnar_reads_run_on_the_standby_and_fail_over(replicated: Opener, standby: Standby):
    """fetch_arrays reads from the standby's own connections; with it gone, from the primary."""
    db, _ = replicated()
    Item.batch_insert([Item(name="a", n=1), Item(name="b", n=2)], db)
    standby.wait_caught_up()
    query = QueryBuilder(Item).select("n").order_by(Sort.asc("n"))
    standby.pause_replay()
    try:
        Item(name="c", n=3).insert(db)  # replayed nowhere yet: only the primary has it
        assert query.fetch_arrays(db)["n"].tolist() == [1, 2]
        assert query.fetch_arrays(db.primary())["n"].tolist() == [1, 2, 3]
    finally:
        standby.resume_replay()
    standby.stop()
    try:
        assert query.fetch_arrays(db)["n"].tolist() == [1, 2, 3]
        assert db.replica_status()[0].state == "down"
    finally:
        standby.start()


def test_the_readme_section_runs_with_a_standby(
    replicated: Opener,
    standby: Standby,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
):
    """The README's replica block, with ORSO_PG_REPLICA_DSNS naming the standby, runs as is."""
    db, _ = replicated()  # makes the schema, on the standby too
    schema = db.schema
    assert schema is not None
    options = f"-c search_path={schema}"
    monkeypatch.setenv("ORSO_PG_REPLICA_DSNS", make_conninfo(standby.dsn, options=options))
    primary = Server("primary", standby.primary_dsn, 18)
    for _ in range(2):
        run_section("Read replicas", primary, schema, monkeypatch)
    printed = capsys.readouterr().out
    replica = _name_of(db, standby.dsn)
    assert f"{replica} up" in printed
    assert f"{db.server}: INSERT" in printed


def test_hot_standby_makes_and_removes_a_standby(standby: Standby):
    """hot_standby() yields a running standby in recovery and removes it with its slot."""
    with hot_standby(standby.primary_dsn) as other:
        assert other.running()
        with psycopg.connect(other.dsn, autocommit=True) as conn:
            assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
        path, slot = other.path, other.slot
    assert not path.exists()
    with psycopg.connect(standby.primary_dsn, autocommit=True) as conn:
        found = conn.execute(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s", (slot,)
        ).fetchone()
    assert found == (0,)


def test_a_standby_of_no_server_is_a_config_error(standby: Standby):
    """pg_basebackup failing raises ConfigError with its output; nothing is left behind."""
    del standby  # only the binaries are needed, which the fixture proved present
    nowhere = f"host=127.0.0.1 port={free_port()} user=postgres connect_timeout=2"
    with pytest.raises(ConfigError, match="pg_basebackup failed"):
        Standby(nowhere)


def test_a_read_finds_the_standby_gone_before_the_monitor_does(
    replicated: Opener, standby: Standby, monkeypatch: pytest.MonkeyPatch
):
    """With no check in between, the read itself meets the dead standby and is served anyway."""
    monkeypatch.setattr(_replicas, "CHECK_INTERVAL", 3600.0)  # the monitor stays asleep
    db, log = replicated()
    replica = _name_of(db, standby.dsn)
    item = Item(name="here").insert(db)
    standby.wait_caught_up()
    assert Item.find_by_id(item.id, db) == item
    assert log.servers()[-1] == replica
    standby.stop()
    try:
        began = time.monotonic()
        assert Item.find_by_id(item.id, db) == item
        assert time.monotonic() - began < 2.0
        assert log.servers()[-2:] == [replica, db.server]  # tried there, then the primary
        assert Item.count(db) == 1  # skipped now: straight to the primary
        assert log.servers()[-1] == db.server
    finally:
        standby.start()
    assert db.replica_status()[0].state == "up"  # checked on demand
    assert Item.count(db) == 1
    assert log.servers()[-1] == replica  # its dead pooled connections were dropped
