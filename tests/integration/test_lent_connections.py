"""Lent connections come back clean, and per-transaction timeouts end with the transaction.

Each test leaves one kind of state on a connection lent by ``db.connection()`` (or by a
transaction's ``tx.connection``) and checks, on the same server session (a pool of one), that
the next borrower and orso_pg's own reads see none of it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.string import ByteaLoader

from orso_pg import (
    ConfigError,
    ConnectionLostError,
    Database,
    Filter,
    LockTimeoutError,
    Orso,
    QueryBuilder,
    QueryCanceledError,
    ValidationError,
    column,
    table,
)
from orso_pg._compiler import Statement
from tests.conftest import Server
from tests.helpers import create_tables

SLEEP = Statement(sql.SQL("SELECT pg_sleep(%s)"), (0.1,))


@table("lent_items")
class Item(Orso):
    id: int | None = column(primary_key=True, default=None)
    name: str


@pytest.fixture
def one(server: Server, schema: str) -> Iterator[Database]:
    """A Database of a single connection, so every borrower gets the same server session."""
    with Database(server.dsn, schema=schema, min_size=1, max_size=1) as db:
        create_tables(db, Item)
        Item(name="a").insert(db)
        yield db


@pytest.fixture
def role(server: Server) -> Iterator[str]:
    name = f"orso_lent_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def _one(conn: psycopg.Connection[Any], query: str) -> Any:
    row = conn.execute(query).fetchone()
    assert row is not None
    return row[0] if isinstance(row, tuple) else next(iter(row.values()))


def _same_session(db: Database, pid: int) -> psycopg.Connection[Any]:
    conn_cm = db.connection()
    conn = conn_cm.__enter__()
    assert _one(conn, "SELECT pg_backend_pid()") == pid
    conn_cm.__exit__(None, None, None)
    return conn


def test_set_role_and_session_authorization_are_reset(one: Database, role: str, schema: str):
    """SET ROLE and SET SESSION AUTHORIZATION do not reach the next borrower (nor orso_pg)."""
    for change in ("SET ROLE {}", "SET SESSION AUTHORIZATION {}"):
        with one.connection() as conn:
            pid = _one(conn, "SELECT pg_backend_pid()")
            original = _one(conn, "SELECT current_user")
            conn.execute(sql.SQL(change).format(sql.Identifier(role)))
            assert _one(conn, "SELECT current_user") == role
        with one.connection() as conn:
            assert _one(conn, "SELECT pg_backend_pid()") == pid
            assert _one(conn, "SELECT current_user") == original
            assert _one(conn, "SELECT session_user") == original
            assert _one(conn, "SHOW search_path") == f'"{schema}",public'
        assert Item.count(one) == 1  # the role has no rights on the table: it is gone


def test_listen_prepare_cursors_temp_tables_and_locks_are_cleared(one: Database):
    """LISTEN, PREPARE, WITH HOLD cursors, temporary tables and advisory locks are cleared."""
    with one.connection() as conn:
        pid = _one(conn, "SELECT pg_backend_pid()")
        conn.execute("LISTEN orso_channel")
        conn.execute("PREPARE orso_plan AS SELECT 1")
        conn.execute("DECLARE orso_held CURSOR WITH HOLD FOR SELECT 1")
        conn.execute("CREATE TEMP TABLE orso_scratch (x int)")
        conn.execute("SELECT pg_advisory_lock(4242)")
        conn.execute("SET work_mem = '7MB'")
    with one.connection() as conn:
        assert _one(conn, "SELECT pg_backend_pid()") == pid
        assert _one(conn, "SELECT count(*) FROM pg_listening_channels()") == 0
        assert _one(conn, "SELECT count(*) FROM pg_prepared_statements WHERE from_sql") == 0
        assert _one(conn, "SELECT count(*) FROM pg_cursors") == 0
        assert _one(conn, "SELECT to_regclass('pg_temp.orso_scratch') IS NULL") is True
        mine = "SELECT count(*) FROM pg_locks"
        mine += " WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
        assert _one(conn, mine) == 0
        assert _one(conn, "SHOW work_mem") != "7MB"
        assert _one(conn, "SHOW TimeZone") == "UTC"


def test_python_state_is_restored(one: Database):
    """row_factory, autocommit, prepare_threshold and an open transaction are undone."""
    with one.connection() as conn:
        pid = _one(conn, "SELECT pg_backend_pid()")
        threshold = conn.prepare_threshold
        conn.row_factory = dict_row
        conn.prepare_threshold = 0
        conn.autocommit = False
        conn.execute("INSERT INTO lent_items (name) VALUES ('uncommitted')")
    assert Item.count(one) == 1  # orso_pg's own reads work (tuples) and the insert is gone
    with one.connection() as conn:
        assert _one(conn, "SELECT pg_backend_pid()") == pid
        assert conn.row_factory is not dict_row
        assert conn.autocommit is True
        assert conn.prepare_threshold == threshold
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


@pytest.mark.parametrize(
    "change",
    [
        lambda c: c.adapters.register_loader("text", ByteaLoader),  # text read as bytes
        lambda c: c.add_notice_handler(lambda _diag: None),
        lambda c: c.add_notify_handler(lambda _notify: None),
    ],
    ids=["adapters", "notice handler", "notify handler"],
)
def test_changes_that_cannot_be_undone_discard_the_connection(
    one: Database, change: Callable[[psycopg.Connection[Any]], None]
):
    """Adapters or handlers registered on a lent connection: it is closed, never lent again."""
    with one.connection() as conn:
        pid = _one(conn, "SELECT pg_backend_pid()")
        change(conn)
    assert conn.closed
    with one.connection() as again:
        assert _one(again, "SELECT pg_backend_pid()") != pid
        assert _one(again, "SELECT 'text'::text") == "text"
    assert Item.count(one) == 1


def test_untouched_connections_are_kept(one: Database):
    """A borrower that changed nothing gets the same session back next time."""
    with one.connection() as conn:
        pid = _one(conn, "SELECT pg_backend_pid()")
    _same_session(one, pid)


def test_state_left_through_a_transaction_connection_is_reset(one: Database, role: str):
    """tx.connection is a lent connection too: its session state ends with the transaction."""
    with one.transaction() as tx:
        tx.connection.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
        tx.connection.execute("SET search_path = public")
        tx.connection.row_factory = dict_row
    assert Item.count(one) == 1
    with one.connection() as conn:
        assert _one(conn, "SELECT current_user") != role


def test_transaction_timeouts_apply_and_do_not_leak(one: Database, server: Server, schema: str):
    """statement_timeout and lock_timeout of a transaction end with it (SET LOCAL)."""
    with pytest.raises(QueryCanceledError), one.transaction(statement_timeout=100) as tx:
        tx.connection.execute("SELECT pg_sleep(2)")
    with psycopg.connect(server.dsn, autocommit=True) as holder, holder.transaction():
        holder.execute(sql.SQL("LOCK TABLE {}.lent_items").format(sql.Identifier(schema)))
        with pytest.raises(LockTimeoutError), one.transaction(lock_timeout=100) as tx:
            Item(name="b").insert(tx)
    with one.connection() as conn:
        assert _one(conn, "SHOW statement_timeout") == "0"
        assert _one(conn, "SHOW lock_timeout") == "0"
    assert one.run_transaction(Item.count, statement_timeout=5000, lock_timeout=5000) == 1
    with one.transaction(statement_timeout=1500, lock_timeout=700) as tx:
        assert _one(tx.connection, "SHOW statement_timeout") == "1500ms"
        assert _one(tx.connection, "SHOW lock_timeout") == "700ms"
    with one.connection() as conn:
        assert _one(conn, "SHOW statement_timeout") == "0"


@pytest.mark.parametrize("bad", [-1, True])
def test_bad_transaction_timeouts_are_refused(one: Database, bad: int):
    with pytest.raises(ConfigError, match="milliseconds"), one.transaction(statement_timeout=bad):
        pass


def test_slow_statements_are_logged(server: Server, schema: str, caplog: pytest.LogCaptureFixture):
    """A statement slower than slow_statement is logged at WARNING with its duration, server
    and shortened parameters; with DEBUG on, every statement is logged."""
    with Database(server.dsn, schema=schema, slow_statement=0.05, max_size=1) as db:
        create_tables(db, Item)
        with caplog.at_level(logging.WARNING, logger="orso_pg"):
            Item(name="x" * 500).insert(db)  # fast: not logged
            db._read(lambda ex: ex.fetch_all(SLEEP))
        slow = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(slow) == 1, [r.getMessage() for r in slow]
        message = slow[0].getMessage()
        assert message.startswith("slow statement, ")
        assert "pg_sleep" in message
        assert db.server in message
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger="orso_pg"):
            Item(name="y" * 500).insert(db)
        inserted = [r.getMessage() for r in caplog.records if "INSERT" in r.getMessage()]
        assert len(inserted) == 1
        assert "y" * 70 in inserted[0]
        assert "y" * 100 not in inserted[0]  # the long value is shortened
        assert " ms on " in inserted[0]


def _terminate(server: Server, pid: int) -> None:
    with psycopg.connect(server.dsn, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


def test_a_lent_connection_closed_by_its_borrower_is_replaced(one: Database):
    with one.connection() as conn:
        pid = _one(conn, "SELECT pg_backend_pid()")
        conn.close()
    assert Item.count(one) == 1
    with one.connection() as conn:
        assert _one(conn, "SELECT pg_backend_pid()") != pid


def test_a_write_on_a_dead_connection_fails_once_then_the_pool_is_swept(
    one: Database, server: Server
):
    """A write is never retried (it may have run), but the next call gets a live connection."""
    with one.connection() as conn:
        pid = _one(conn, "SELECT pg_backend_pid()")
    _terminate(server, pid)
    with pytest.raises(ConnectionLostError):
        Item(name="b").insert(one)
    Item(name="b").insert(one)
    assert Item.count(one) == 2


def test_a_connection_lost_inside_a_transaction_is_raised(one: Database, server: Server):
    """Lost in the middle of a transaction: raised, not retried; nothing of it was kept."""
    with pytest.raises(ConnectionLostError), one.transaction() as tx:
        Item(name="b").insert(tx)
        _terminate(server, _one(tx.connection, "SELECT pg_backend_pid()"))
    assert Item.count(one) == 1


def test_settings_the_server_refuses_are_a_config_error(server: Server):
    with pytest.raises(ConfigError, match="connection settings are refused"):
        Database(server.dsn, timezone="Mars/Olympus_Mons")


def test_without_settings_the_server_defaults_stand(server: Server):
    """timezone=None and no schema or timeout: nothing is set, the server's values stand."""
    with psycopg.connect(server.dsn) as conn:
        default = _one(conn, "SHOW TimeZone")
    with Database(server.dsn, timezone=None, max_size=1) as db, db.connection() as conn:
        assert _one(conn, "SHOW TimeZone") == default


SLOW_TRIGGER = """
CREATE FUNCTION slow_insert() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN PERFORM pg_sleep(0.5); RETURN NEW; END $$;
CREATE TRIGGER slow BEFORE INSERT ON lent_items FOR EACH ROW
WHEN (NEW.name = 'slow') EXECUTE FUNCTION slow_insert();
CREATE VIEW slow_items AS SELECT i.id, i.name FROM lent_items i, pg_sleep(0.5);
"""


def test_batch_and_stream_timeouts(one: Database):
    """timeout= on a batch or a stream cancels a slower statement and ends with the call."""
    with one.connection() as conn:
        conn.execute(SLOW_TRIGGER)
    with pytest.raises(QueryCanceledError):
        Item.batch_create([Item(name="fast"), Item(name="slow")], one, timeout=0.1)
    assert Item.count(one) == 1  # the batch changed nothing
    assert Item.batch_create([Item(name="fast")], one, timeout=5) == 1
    with pytest.raises(QueryCanceledError):
        list(Item.stream_where(None, one, table_name="slow_items", timeout=0.1))
    assert len(list(Item.stream_where(None, one, table_name="slow_items", timeout=5))) == 2
    with one.connection() as conn:
        assert _one(conn, "SHOW statement_timeout") == "0"

    with one.transaction(statement_timeout=4000) as tx:
        with pytest.raises(QueryCanceledError):
            Item.batch_create([Item(name="slow")], tx, timeout=0.1)
        assert _one(tx.connection, "SHOW statement_timeout") == "4s"
        assert Item.batch_create([Item(name="in tx")], tx, timeout=3) == 1
        assert _one(tx.connection, "SHOW statement_timeout") == "4s"  # the transaction's again
        assert len(list(Item.stream_where(None, tx, timeout=3))) == 3
    assert Item.count(one) == 3


def test_a_builder_stream_timeout(one: Database):
    """QueryBuilder.stream takes timeout= as stream_where does."""
    Item(name="streamed").insert(one)
    slow = QueryBuilder(Item).where(
        Filter.eq("name", "streamed") & Filter.raw(sql.SQL("pg_sleep(0.5) IS NOT NULL"))
    )
    with pytest.raises(QueryCanceledError):
        list(slow.stream(one, timeout=0.1))
    assert [row[1] for row in slow.stream(one, timeout=5)] == ["streamed"]
    with pytest.raises(ConfigError, match="timeout must be a positive number"):
        list(slow.stream(one, timeout=-1))


def test_bad_operation_timeouts_are_refused(one: Database):
    with pytest.raises(ValidationError, match="timeout must be a positive number"):
        Item.batch_create([Item(name="x")], one, timeout=0)
    with pytest.raises(ConfigError, match="timeout must be a positive number"):
        list(Item.stream_where(None, one, timeout=-1))
