"""Databases and transactions: where a connection comes from and how long it is held.

Owns :class:`Database` (a psycopg_pool ``ConnectionPool`` plus, when no DSN is configured, the
embedded PostgreSQL), :class:`Transaction` and :class:`DatabaseConfig`. It decides which
connection an operation runs on and inside which transaction; it must not build SQL or run
statements itself beyond session housekeeping: every statement goes through
:class:`~orso_pg._executor.Executor`.

Both :class:`Database` and :class:`Transaction` are *sessions*: every ``Orso`` method accepts
either as its ``db`` argument. Through a ``Database`` each operation borrows a pooled connection
in autocommit mode (one round trip for a single statement; operations of several statements
open their own transaction). Through a ``Transaction`` every operation runs on the
transaction's connection and is undone if the ``with`` block is left by an exception.
"""

from __future__ import annotations

import contextlib
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Self, TypeVar

import attrs
import numpy as np
import psycopg
import psycopg_pool
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from orso_pg._compiler import Statement
from orso_pg._executor import Executor, Listener, translate
from orso_pg.errors import (
    ConfigError,
    ConnectionLostError,
    OrsoError,
    SerializationError,
)
from orso_pg.query import _columns
from orso_pg.query._results import builder_loaders, check_batch_size, convert_row
from orso_pg.session import _embedded
from orso_pg.session._adbc import AdbcConnections, adbc_available

if TYPE_CHECKING:
    from orso_pg.query._builder import QueryBuilder

__all__ = ["Database", "DatabaseConfig", "Session", "Transaction"]

T = TypeVar("T")
Isolation = Literal["read committed", "repeatable read", "serializable"]

_ISOLATION = {
    "read committed": psycopg.IsolationLevel.READ_COMMITTED,
    "repeatable read": psycopg.IsolationLevel.REPEATABLE_READ,
    "serializable": psycopg.IsolationLevel.SERIALIZABLE,
}


@attrs.frozen
class DatabaseConfig:
    """orso's connection settings: a connection string and a pool size.

    Attributes:
        connection_string: A libpq connection string or URI.
        max_pool_size: The largest number of pooled connections (orso's default, 16).
    """

    connection_string: str
    max_pool_size: int = 16

    @classmethod
    def new(cls, connection_string: str) -> Self:
        """Return a config for *connection_string* with the default pool size."""
        return cls(connection_string)

    @classmethod
    def postgres(cls, connection_string: str) -> Self:
        """Return a config for *connection_string* (orso's alias of :meth:`new`)."""
        return cls(connection_string)

    def with_pool_size(self, size: int) -> Self:
        """Return a copy with *size* as the largest pool size."""
        return attrs.evolve(self, max_pool_size=size)


class Session:
    """What ``Database`` and ``Transaction`` share: running work on a connection.

    The three entry points are for orso_pg's own operations: ``_read`` for statements that only
    read (retried once on a fresh connection if the pooled one turned out to be dead),
    ``_write`` for a single statement, ``_atomic`` for several statements that must succeed or
    fail together.
    """

    _listeners: tuple[Listener, ...]

    def _read(self, work: Callable[[Executor], T]) -> T:
        raise NotImplementedError

    def _write(self, work: Callable[[Executor], T]) -> T:
        raise NotImplementedError

    def _atomic(self, work: Callable[[Executor], T]) -> T:
        raise NotImplementedError

    def _iterate(self, stmt: Statement, batch_size: int, table: str | None) -> Iterator[Any]:
        raise NotImplementedError

    # A QueryBuilder is a pure description; it hands itself to the session to run, so that the
    # query layer never imports the layers that execute.

    def _fetch_builder(self, builder: QueryBuilder) -> list[tuple[Any, ...]]:
        stmt = builder.build()
        loaders = builder_loaders(builder)
        rows = self._read(lambda ex: ex.fetch_all(stmt, table=builder.base_name))
        if not any(loaders):
            return rows
        return [convert_row(loaders, r) for r in rows]

    def _stream_builder(self, builder: QueryBuilder, batch_size: int) -> Iterator[tuple[Any, ...]]:
        check_batch_size(batch_size, builder.base_name)
        stmt = builder.build()
        loaders = builder_loaders(builder)
        rows = self._iterate(stmt, batch_size, builder.base_name)
        if not any(loaders):
            return rows
        return (convert_row(loaders, row) for row in rows)

    def _count_builder(self, builder: QueryBuilder) -> int:
        stmt = builder.build_count()
        return int(self._read(lambda ex: ex.scalar(stmt, table=builder.base_name)))

    def _columnar_reader(self) -> AdbcConnections | None:
        # Only a Database may read through ADBC's own connections: a transaction's uncommitted
        # writes are visible on its connection alone.
        return None

    def _fetch_columns(self, builder: QueryBuilder) -> dict[str, np.ndarray]:
        specs = builder.output_columns()
        loaders = builder_loaders(builder)
        stmt = builder.build()
        label = builder.base_name
        reader = self._columnar_reader()
        if reader is not None and _columns.adbc_can_read(specs):
            query = self._read(lambda ex: ex.bind(stmt, table=label))
            columns: list[Any] = reader.read(query, label).columns
            return _columns.arrays_from_arrow(columns, specs, loaders, label)
        rows = self._read(lambda ex: ex.fetch_all(stmt, table=label))
        return _columns.arrays_from_rows(rows, specs, loaders)

    def _copy_builder(
        self, builder: QueryBuilder, write: Callable[[bytes], object], binary: bool
    ) -> int:
        stmt = builder.build()
        return self._read(
            lambda ex: ex.copy_out(stmt, write, binary=binary, table=builder.base_name)
        )


class Database(Session):
    """A pool of connections to one PostgreSQL database.

    Args:
        dsn: A libpq connection string or URI. When None, ``$ORSO_PG_DSN`` is used, and when
            that is unset too, an embedded PostgreSQL is started (or joined) in
            ``$ORSO_PG_DATA`` or a per-user data directory.
        min_size: Connections kept open.
        max_size: The most connections opened at once.
        timeout: Seconds to wait for a free connection before :class:`PoolTimeoutError`.
        connect_timeout: Seconds to wait for the server when connecting.
        statement_timeout: Milliseconds after which the server cancels a statement (None: the
            server's setting).
        schema: Put this schema first on the ``search_path`` of every connection (it must exist).
        timezone: The session time zone; timestamps are returned in it (default UTC).
        application_name: Reported in ``pg_stat_activity``.
        prepare_threshold: Executions before psycopg prepares a statement; None disables
            prepared statements (needed behind PgBouncer in transaction mode before 1.21).
        data_dir: The embedded server's data directory when no DSN is given.
        max_idle: Seconds an idle connection above ``min_size`` is kept.
        max_lifetime: Seconds before a connection is replaced.

    Raises:
        ConfigError: the DSN is invalid or the server cannot be reached.
    """

    def __init__(
        self,
        dsn: str | None = None,
        *,
        min_size: int = 1,
        max_size: int = 16,
        timeout: float = 30.0,
        connect_timeout: int = 10,
        statement_timeout: int | None = None,
        schema: str | None = None,
        timezone: str | None = "UTC",
        application_name: str = "orso_pg",
        prepare_threshold: int | None = 5,
        data_dir: str | os.PathLike[str] | None = None,
        max_idle: float = 600.0,
        max_lifetime: float = 3600.0,
    ) -> None:
        self._listeners = ()
        self._dirty: set[int] = set()
        self._dirty_lock = threading.Lock()
        self._embedded: Path | None = None
        if dsn is None:
            dsn = os.environ.get("ORSO_PG_DSN") or None
        if dsn is None:
            self._embedded, dsn = _embedded.acquire(Path(data_dir) if data_dir else None)
        try:
            self.conninfo = _conninfo(
                dsn,
                connect_timeout=connect_timeout,
                statement_timeout=statement_timeout,
                schema=schema,
                timezone=timezone,
                application_name=application_name,
            )
        except psycopg.ProgrammingError as exc:
            self._release_embedded()
            msg = f"invalid connection string: {exc}"
            raise ConfigError(msg) from exc
        self.schema = schema
        self._adbc: AdbcConnections | None = None
        self._adbc_lock = threading.Lock()
        self._pool: psycopg_pool.ConnectionPool[psycopg.Connection[Any]] = (
            psycopg_pool.ConnectionPool(
                self.conninfo,
                min_size=min_size,
                max_size=max_size,
                timeout=timeout,
                max_idle=max_idle,
                max_lifetime=max_lifetime,
                kwargs={"autocommit": True, "prepare_threshold": prepare_threshold},
                name="orso_pg",
                open=False,
            )
        )
        try:
            self._pool.open(wait=True, timeout=float(connect_timeout) + 1.0)
        except psycopg_pool.PoolTimeout as exc:
            self._pool.close()
            self._release_embedded()
            raise ConfigError(_why_unreachable(self.conninfo)) from exc

    @classmethod
    def init(cls, config: DatabaseConfig) -> Self:
        """Open a database from an orso :class:`DatabaseConfig`."""
        return cls(config.connection_string, max_size=config.max_pool_size)

    # --- lifecycle ----------------------------------------------------------------------------

    def close(self) -> None:
        """Close every connection; stop the embedded server if this process started it."""
        self._pool.close()
        if self._adbc is not None:
            self._adbc.close()
        self._release_embedded()

    def _release_embedded(self) -> None:
        if self._embedded is not None:
            path, self._embedded = self._embedded, None
            _embedded.release(path)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._pool.closed

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        params = conninfo_to_dict(self.conninfo)
        where = params.get("host") or "localhost"
        return f"<Database {params.get('dbname', '')!s}@{where!s} pool={self._pool.max_size}>"

    def _columnar_reader(self) -> AdbcConnections | None:
        if self._adbc is None and adbc_available():
            with self._adbc_lock:
                if self._adbc is None:
                    self._adbc = AdbcConnections(self.conninfo)
        return self._adbc

    # --- listeners ----------------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        """Call *listener(text, params)* before every statement orso_pg runs."""
        self._listeners = (*self._listeners, listener)

    def remove_listener(self, listener: Listener) -> None:
        """Stop calling *listener*."""
        self._listeners = tuple(x for x in self._listeners if x is not listener)

    # --- connections --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _borrow(self) -> Iterator[psycopg.Connection[Any]]:
        try:
            with self._pool.connection() as conn:
                yield conn
        except (psycopg_pool.PoolTimeout, psycopg_pool.PoolClosed) as exc:
            raise translate(exc) from exc

    def _read(self, work: Callable[[Executor], T]) -> T:
        try:
            with self._borrow() as conn:
                return work(Executor(conn, self._listeners))
        except ConnectionLostError:
            # One dead connection usually means the server restarted and every idle one is
            # dead too: sweep them all at once, then retry this read on a fresh connection.
            self._pool.check()
            with self._borrow() as conn:
                return work(Executor(conn, self._listeners))

    def _write(self, work: Callable[[Executor], T]) -> T:
        with self._borrow() as conn:
            try:
                return work(Executor(conn, self._listeners))
            except ConnectionLostError:
                self._pool.check()
                raise

    def _atomic(self, work: Callable[[Executor], T]) -> T:
        with self._borrow() as conn:
            try:
                # _translated covers the COMMIT too, so a connection lost there also sweeps.
                with _translated(), conn.transaction():
                    return work(Executor(conn, self._listeners))
            except ConnectionLostError:
                self._pool.check()
                raise

    def _iterate(self, stmt: Statement, batch_size: int, table: str | None) -> Iterator[Any]:
        # A server-side cursor lives in a transaction; the connection is held until the
        # iteration ends or the generator is closed.
        with self._borrow() as conn, _translated(), conn.transaction():
            yield from Executor(conn, self._listeners).stream(
                stmt, batch_size=batch_size, table=table
            )

    @contextlib.contextmanager
    def transaction(
        self, *, isolation: Isolation | None = None, read_only: bool = False
    ) -> Iterator[Transaction]:
        """Open a transaction on one pooled connection.

        Every orso_pg operation given the yielded :class:`Transaction` runs on that connection.
        Leaving the block normally commits; leaving it by an exception rolls everything back.

        Args:
            isolation: ``"read committed"`` (the server default), ``"repeatable read"`` or
                ``"serializable"``.
            read_only: Start a read-only transaction.
        """
        with self._borrow() as conn:
            conn.isolation_level = _ISOLATION[isolation] if isolation else None
            conn.read_only = read_only or None
            try:
                with _translated(), conn.transaction():
                    yield Transaction(self, conn)
            finally:
                if conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
                    conn.isolation_level = None
                    conn.read_only = None
                    self._reset(conn)

    def run_transaction(
        self,
        work: Callable[[Transaction], T],
        *,
        isolation: Isolation = "serializable",
        read_only: bool = False,
        attempts: int = 5,
        initial_delay: float = 0.01,
        max_delay: float = 1.0,
    ) -> T:
        """Run ``work(tx)`` in a transaction, retrying it when PostgreSQL asks for a retry.

        A :class:`SerializationError` (SQLSTATE 40001 or 40P01, raised by a statement or by the
        commit) rolls the attempt back; *work* then runs again in a fresh transaction after a
        random pause of up to ``initial_delay * 2**attempt`` seconds (at most *max_delay*), up
        to *attempts* times. Nothing else is retried: a connection lost during the commit
        leaves the outcome unknown, so it is raised, never repeated. *work* must have no side
        effects outside the transaction, since it may run more than once.

        Returns:
            What the successful run of *work* returned.

        Raises:
            SerializationError: every attempt conflicted.
        """
        if attempts < 1:
            msg = f"attempts must be at least 1, not {attempts}"
            raise ConfigError(msg, value=attempts)
        for attempt in range(attempts):
            try:
                with self.transaction(isolation=isolation, read_only=read_only) as tx:
                    return work(tx)
            except SerializationError:
                if attempt + 1 == attempts:
                    raise
                # Full jitter keeps conflicting workers from retrying in lockstep.
                time.sleep(random.uniform(0, min(max_delay, initial_delay * 2**attempt)))  # noqa: S311
        raise AssertionError  # pragma: no cover - the loop returns or raises

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """Borrow a raw psycopg connection (autocommit) for work orso_pg does not cover.

        Session settings changed on it (``SET``, temporary tables, advisory locks) are reset
        before the connection is handed to anyone else.
        """
        with self._borrow() as conn:
            self._mark_dirty(conn)
            try:
                yield conn
            finally:
                self._reset(conn)

    def _mark_dirty(self, conn: psycopg.Connection[Any]) -> None:
        with self._dirty_lock:
            self._dirty.add(id(conn))

    def _reset(self, conn: psycopg.Connection[Any]) -> None:
        """Undo what a borrower of a raw connection may have changed, before it goes back.

        Only connections handed out raw are reset, here rather than in a pool ``reset``
        callback: orso_pg's own operations change no session state, and psycopg_pool hands a
        connection with a reset callback back through a worker thread, which costs tens of
        microseconds on every checkout.
        """
        with self._dirty_lock:
            if id(conn) not in self._dirty:
                return
            self._dirty.discard(id(conn))
        status = conn.info.transaction_status
        if status == psycopg.pq.TransactionStatus.UNKNOWN:
            return  # broken: the pool discards it
        if status != psycopg.pq.TransactionStatus.IDLE:
            conn.rollback()
        conn.autocommit = True
        conn.isolation_level = None
        conn.read_only = None
        conn.deferrable = None
        conn.execute("RESET ALL")
        conn.execute("SELECT pg_advisory_unlock_all()")
        conn.execute("DISCARD TEMP")

    def pool_stats(self) -> dict[str, int]:
        """Return psycopg_pool's counters (connections, requests, errors...)."""
        return self._pool.get_stats()


class Transaction(Session):
    """An open transaction; pass it as ``db`` to run orso_pg operations inside it.

    Obtained from :meth:`Database.transaction`. Not thread-safe: one transaction belongs to one
    thread at a time.
    """

    def __init__(self, db: Database, conn: psycopg.Connection[Any]) -> None:
        self._db = db
        self._conn = conn
        self._listeners = db._listeners

    @property
    def connection(self) -> psycopg.Connection[Any]:
        """The raw psycopg connection of this transaction (for work orso_pg does not cover)."""
        self._db._mark_dirty(self._conn)
        return self._conn

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """Open a nested transaction (a savepoint); an exception rolls back only its work."""
        with _translated(), self._conn.transaction():
            yield Transaction(self._db, self._conn)

    def _executor(self) -> Executor:
        return Executor(self._conn, self._db._listeners)

    def _read(self, work: Callable[[Executor], T]) -> T:
        return work(self._executor())

    def _write(self, work: Callable[[Executor], T]) -> T:
        return work(self._executor())

    def _atomic(self, work: Callable[[Executor], T]) -> T:
        # A savepoint, so a failed operation can be caught without poisoning the transaction.
        with _translated(), self._conn.transaction():
            return work(self._executor())

    def _iterate(self, stmt: Statement, batch_size: int, table: str | None) -> Iterator[Any]:
        return self._executor().stream(stmt, batch_size=batch_size, table=table)


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except OrsoError:
        raise
    except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
        raise translate(exc) from exc


def _escape_option(value: str) -> str:
    return value.replace("\\", "\\\\").replace(" ", "\\ ")


def _conninfo(
    dsn: str,
    *,
    connect_timeout: int,
    statement_timeout: int | None,
    schema: str | None,
    timezone: str | None,
    application_name: str,
) -> str:
    given = conninfo_to_dict(dsn)
    defaults: dict[str, Any] = {
        "application_name": application_name,
        "connect_timeout": connect_timeout,
        # Keepalives turn a silently dropped network path into an error in seconds, not hours.
        "keepalives": 1,
        "keepalives_idle": 30,
        "keepalives_interval": 10,
        "keepalives_count": 3,
    }
    extra = {k: v for k, v in defaults.items() if k not in given}
    options = [str(given["options"])] if given.get("options") else []
    # Statements are rendered once without a connection, which assumes UTF-8.
    options.append("-c client_encoding=UTF8")
    if timezone is not None:
        options.append(f"-c TimeZone={_escape_option(timezone)}")
    if statement_timeout is not None:
        options.append(f"-c statement_timeout={int(statement_timeout)}")
    if schema is not None:
        path = sql.Identifier(schema).as_string(None)
        options.append(f"-c search_path={_escape_option(path)},public")
    extra["options"] = " ".join(options)
    return make_conninfo(dsn, **extra)


def _why_unreachable(conninfo: str) -> str:
    params = conninfo_to_dict(conninfo)
    where = f"{params.get('host', 'localhost')}:{params.get('port', 5432)}"
    try:
        with psycopg.connect(conninfo, connect_timeout=5):
            pass
    except psycopg.Error as exc:
        return f"cannot connect to PostgreSQL at {where}: {str(exc).strip()}"
    return f"cannot open a connection pool to PostgreSQL at {where} in time"
