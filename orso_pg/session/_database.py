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
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, Self, TypeVar

import attrs
import numpy as np
import psycopg
import psycopg_pool
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from orso_pg import _adapters as _vector_adapters
from orso_pg._compiler import Statement
from orso_pg._executor import Executor, Listener, ServerListener, loader, translate
from orso_pg.errors import (
    ConfigError,
    ConnectionLostError,
    OrsoError,
    QueryError,
    SerializationError,
    ServerUnavailableError,
)
from orso_pg.query import _columns
from orso_pg.query._raw import raw_statement
from orso_pg.query._results import builder_loaders, check_batch_size, convert_row, loaded
from orso_pg.session import _connect, _pool
from orso_pg.session._adbc import AdbcConnections, adbc_available

if TYPE_CHECKING:
    from orso_pg.query._builder import QueryBuilder
    from orso_pg.session._held import Held
    from orso_pg.session._pipeline import Pipeline
    from orso_pg.session._replicas import PrimarySession, ReplicaStatus, Router

__all__ = ["Database", "DatabaseConfig", "Session", "Transaction"]

logger = logging.getLogger("orso_pg")

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

    def _read(self, work: Callable[[Executor], T]) -> T:
        raise NotImplementedError

    def _write(self, work: Callable[[Executor], T]) -> T:
        raise NotImplementedError

    def _atomic(self, work: Callable[[Executor], T], *, timeout: float | None = None) -> T:
        raise NotImplementedError

    def _iterate(
        self, stmt: Statement, batch_size: int, table: str | None, timeout: float | None = None
    ) -> Iterator[Any]:
        raise NotImplementedError

    def _check_lock(self, lock: object, table: str | None) -> None:
        """Refuse a row lock outside a transaction, where it would be released at once."""
        if lock is not None and not isinstance(self, Transaction):
            msg = (
                "a row lock lasts until its transaction ends, and through a Database every "
                "read is a transaction of its own, so the lock would protect nothing: "
                "read inside `with db.transaction() as tx:` and pass tx"
            )
            raise QueryError(msg, table=table, value=lock)

    def _read_locked(self, lock: object, work: Callable[[Executor], T]) -> T:
        """Run a read that may lock rows: a NOWAIT lock runs in a savepoint of its own.

        A NOWAIT that finds a row taken fails its statement, and a failed statement aborts the
        whole transaction; inside a savepoint only the savepoint is rolled back, so the caller
        can catch ``LockNotAvailableError`` and go on in the same transaction.
        """
        if getattr(lock, "nowait", False):
            return self._atomic(work)
        return self._read(work)

    # --- hand-written SQL ---------------------------------------------------------------------

    def fetch(self, query: sql.Composable, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a hand-written query and return its rows as tuples.

        *query* must be a :mod:`psycopg.sql` object (``sql.SQL("... %s ...")``); a plain str
        is a :class:`QueryError`. It runs through orso_pg's executor, so listeners see it and
        driver errors come back as :mod:`orso_pg.errors`. It is never retried, since it may
        write; a statement without a result returns ``[]``.
        """
        stmt = raw_statement(query, params, "fetch")
        return self._write(lambda ex: ex.fetch_described(stmt))[1]

    def fetch_dicts(
        self, query: sql.Composable, params: Sequence[Any] = ()
    ) -> list[dict[str, Any]]:
        """Run a hand-written query (as :meth:`fetch`); return one dict per row by column name.

        Raises:
            QueryError: two result columns share a name (a dict would keep only one).
        """
        stmt = raw_statement(query, params, "fetch_dicts")
        columns, rows = self._write(lambda ex: ex.fetch_described(stmt))
        names = [name for name, _ in columns]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            msg = f"the query returns several columns named {', '.join(twice)}; alias them"
            raise QueryError(msg, value=twice)
        return [dict(zip(names, row, strict=True)) for row in rows]

    # A QueryBuilder is a pure description; it hands itself to the session to run, so that the
    # query layer never imports the layers that execute.

    def _fetch_builder(self, builder: QueryBuilder) -> list[tuple[Any, ...]]:
        self._check_lock(builder.row_lock, builder.base_name)
        stmt = builder.build()
        loaders = builder_loaders(builder)
        rows = self._read_locked(
            builder.row_lock, lambda ex: ex.fetch_all(stmt, table=builder.base_name)
        )
        if not any(loaders):
            return rows
        return [convert_row(loaders, r) for r in rows]

    def _fetch_models(self, builder: QueryBuilder) -> list[tuple[Any, ...]]:
        self._check_lock(builder.row_lock, builder.base_name)
        stmt = builder.build(models=True)
        rows = self._read_locked(
            builder.row_lock, lambda ex: ex.fetch_all(stmt, table=builder.base_name)
        )
        metas = [builder.meta, *(j.meta for j in builder.joins)]
        parts = []
        start = 0
        for meta in metas:
            end = start + len(meta.columns)
            key = None if meta.primary_key is None else meta.columns.index(meta.primary_key)
            parts.append((start, end, key, loader(meta)))
            start = end
        return [tuple(_model_part(row, *part) for part in parts) for row in rows]

    def _stream_builder(
        self, builder: QueryBuilder, batch_size: int, timeout: float | None = None
    ) -> Iterator[tuple[Any, ...]]:
        check_batch_size(batch_size, builder.base_name)
        self._check_lock(builder.row_lock, builder.base_name)
        stmt = builder.build()
        loaders = builder_loaders(builder)
        rows = self._iterate(stmt, batch_size, builder.base_name, timeout)
        if not any(loaders):
            return rows
        return loaded(rows, lambda row: convert_row(loaders, row))

    def _count_builder(self, builder: QueryBuilder) -> int:
        stmt = builder.build_count()
        return int(self._read(lambda ex: ex.scalar(stmt, table=builder.base_name)))

    def _columnar_reader(self) -> AdbcConnections | None:
        # Only a Database may read through ADBC's own connections: a transaction's uncommitted
        # writes are visible on its connection alone.
        return None

    def _fetch_columns(self, builder: QueryBuilder) -> dict[str, np.ndarray]:
        self._check_lock(builder.row_lock, builder.base_name)
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
        self._check_lock(builder.row_lock, builder.base_name)
        stmt = builder.build()
        return self._read(
            lambda ex: ex.copy_out(stmt, write, binary=binary, table=builder.base_name)
        )


class Database(Session):
    """A pool of connections to one PostgreSQL database.

    Args:
        dsn: A libpq connection string or URI, or ``"embedded"`` for the embedded
            PostgreSQL. When None, ``$ORSO_PG_DSN`` is used (which may say ``embedded`` too),
            else the embedded server in ``data_dir`` when given; with none of them, a
            :class:`ConfigError` says how to choose a server.
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
            prepared statements.
        prepare: False disables prepared statements (as ``prepare_threshold=None``), which
            PgBouncer before 1.21 in transaction mode needs; such a pooler is also detected
            when the database opens, and prepared statements are then turned off by themselves.
        unavailable_timeout: Seconds a call waits for a connection while the server cannot be
            reached before :class:`ServerUnavailableError` (with libpq's reason) is raised.
        deadline: Seconds any one statement may wait for the server's reply before its
            connection is shut and :class:`ServerUnavailableError` raised: the bound on a
            server that went silent. None: ``statement_timeout`` plus 5 s when that is set,
            else no client-side limit.
        slow_statement: Statements taking at least this many seconds are logged at WARNING on
            the ``orso_pg`` logger (None: never).
        data_dir: The embedded server's data directory; giving it chooses the embedded
            server unless ``$ORSO_PG_DSN`` names another.
        require_tls: Refuse any TCP connection that is not TLS with a verified server
            certificate (``sslmode=verify-full`` is set when the DSN has no ``sslmode``).
        max_idle: Seconds an idle connection above ``min_size`` is kept.
        max_lifetime: Seconds before a connection is replaced.
        replicas: DSNs of hot standbys of this server; reads through the Database go to them
            (see :mod:`orso_pg.session._replicas`). None: ``$ORSO_PG_REPLICA_DSNS`` when the
            server itself comes from ``$ORSO_PG_DSN``, else none.
        read_your_writes: After a write through the Database, reads from the same thread go
            to the primary until a replica has replayed past it.
        max_replica_lag: Seconds a replica may be behind the primary and still serve reads
            (None: no limit).

    Raises:
        ConfigError: the DSN is invalid, or the server refuses the connection (unreachable,
            unknown database or role, failed authentication, bad TLS); the message is libpq's.
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
        prepare: bool = True,
        unavailable_timeout: float = 5.0,
        deadline: float | None = None,
        slow_statement: float | None = 1.0,
        data_dir: str | os.PathLike[str] | None = None,
        max_idle: float = 600.0,
        max_lifetime: float = 3600.0,
        require_tls: bool = False,
        replicas: Sequence[str] | None = None,
        read_your_writes: bool = False,
        max_replica_lag: float | None = None,
    ) -> None:
        shared = {k: v for k, v in locals().items() if k not in _NOT_SHARED}
        self._router: Router | None = None
        self._listeners: tuple[Listener, ...] = ()
        self._lent: dict[int, _PythonState] = {}
        self._lent_lock = threading.Lock()
        target = _connect.choose(dsn, data_dir)
        self._embedded: Path | None = target.embedded
        try:
            self.conninfo = _conninfo(
                _connect.secure(target.dsn, require_tls=require_tls),
                connect_timeout=connect_timeout,
                application_name=application_name,
            )
        except psycopg.ProgrammingError as exc:
            self._release_embedded()
            msg = f"invalid connection string: {exc}"
            raise ConfigError(msg) from exc
        self.schema = schema
        #: The server, named as ``user@host:port/dbname`` or ``embedded server in DIR``.
        self.server = _connect.describe(self.conninfo, self._embedded)
        self._adbc: AdbcConnections | None = None
        self._adbc_lock = threading.Lock()
        self.unavailable_timeout = float(unavailable_timeout)
        self.deadline = _default_deadline(deadline, statement_timeout)
        self.slow_statement = slow_statement
        self._timeout = float(timeout)
        self._settings = _settings(statement_timeout, schema, timezone)
        self._prepare_threshold = prepare_threshold if prepare else None
        try:
            self.behind_pooler = self._probe(connect_timeout)
        except BaseException:
            self._release_embedded()
            raise
        if self.behind_pooler:
            self._prepare_threshold = None
        self._pool = _pool.Pool(
            self.conninfo,
            min_size=min_size,
            max_size=max_size,
            timeout=timeout,
            max_idle=max_idle,
            max_lifetime=max_lifetime,
            kwargs={"autocommit": True, "prepare_threshold": self._prepare_threshold},
            configure=self._configure,
            name="orso_pg",
            open=False,
        )
        try:
            self._pool.open(wait=True, timeout=float(connect_timeout) + 1.0)
        except psycopg_pool.PoolTimeout as exc:
            self._pool.close()
            self._release_embedded()
            reason = self._pool.outage.reason or "no connection in time"
            msg = f"cannot connect to PostgreSQL at {self.server}: {reason}"
            raise ConfigError(msg) from exc
        from orso_pg.session import _replicas  # it imports this module

        try:
            self._router = _replicas.open_router(
                self, target, replicas, shared, read_your_writes, max_replica_lag
            )
        except BaseException:
            self.close()
            raise

    def _probe(self, connect_timeout: int) -> bool:
        """Connect once, so that a wrong DSN fails now with libpq's reason.

        Returns whether a pooler in transaction mode sits in front of the server.
        """
        try:
            conn = psycopg.connect(self.conninfo, autocommit=True, prepare_threshold=None)
        except psycopg.Error as exc:
            reason = str(exc).strip() or type(exc).__name__
            msg = f"cannot connect to PostgreSQL at {self.server}: {reason}"
            raise ConfigError(msg) from exc
        with conn:
            try:
                self._configure(conn)
            except psycopg.Error as exc:
                msg = f"the connection settings are refused by {self.server}: {exc}"
                raise ConfigError(msg) from exc
            pooled = _shares_sessions(conn, self.conninfo, connect_timeout)
        if pooled and self._settings.lost_by_poolers:
            names = ", ".join(self._settings.lost_by_poolers)
            msg = (
                f"{self.server} is a pooler in transaction mode (two clients were served by one "
                f"server session), which drops session settings between transactions: {names} "
                "would be lost. Set them on the server instead (ALTER ROLE ... SET ...) and "
                "leave them out here, or connect through a session-mode pool"
            )
            raise ConfigError(msg)
        if pooled:
            logger.info("%s is a pooler in transaction mode: prepared statements off", self.server)
        return pooled

    def _configure(self, conn: psycopg.Connection[Any]) -> None:
        """Apply orso_pg's session settings to a new connection (one round trip).

        With ``SET`` rather than the ``options`` startup parameter, which poolers refuse.
        """
        if self._settings.statement is not None:
            conn.execute(self._settings.statement, self._settings.values)
        _vector_adapters.configure(conn)

    @classmethod
    def init(cls, config: DatabaseConfig) -> Self:
        """Open a database from an orso :class:`DatabaseConfig`."""
        return cls(config.connection_string, max_size=config.max_pool_size)

    # --- lifecycle ----------------------------------------------------------------------------

    def close(self) -> None:
        """Close every connection; stop the embedded server if this process started it."""
        if self._router is not None:
            self._router.close()
        self._pool.close()
        if self._adbc is not None:
            self._adbc.close()
        self._release_embedded()

    def _release_embedded(self) -> None:
        if self._embedded is not None:
            path, self._embedded = self._embedded, None
            from orso_pg.session import _embedded

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
        return f"<Database {self.server} pool={self._pool.max_size}>"

    def _fetch_columns(self, builder: QueryBuilder) -> dict[str, np.ndarray]:
        if self._router is not None:
            # The chosen server reads through its own ADBC connections, not the primary's.
            return self._router.on_server(lambda session: session._fetch_columns(builder))
        return super()._fetch_columns(builder)

    def _columnar_reader(self) -> AdbcConnections | None:
        if self._adbc is None and adbc_available():
            with self._adbc_lock:
                if self._adbc is None:
                    # ADBC's own connections get the settings as startup options (they
                    # have no configure step; poolers refusing ``options`` are rare there).
                    self._adbc = AdbcConnections(self._settings.conninfo(self.conninfo))
        return self._adbc

    # --- listeners ----------------------------------------------------------------------------

    def add_listener(self, listener: Listener | Callable[..., object]) -> None:
        """Call *listener(text, params)* before every statement orso_pg runs.

        A listener that takes a ``server`` argument is called as ``listener(text, params,
        server=name)``, *name* being the server the statement runs on (see
        :attr:`server`; a replica's name when the read went to one).
        """
        if ServerListener.wanted(listener):
            listener = ServerListener(listener)
        self._listeners = (*self._listeners, listener)  # type: ignore[arg-type]

    def remove_listener(self, listener: Listener | Callable[..., object]) -> None:
        """Stop calling *listener*."""
        self._listeners = tuple(
            x
            for x in self._listeners
            if x is not listener and getattr(x, "listener", None) is not listener
        )

    # --- replicas -----------------------------------------------------------------------------

    def primary(self) -> Database | PrimarySession:
        """Return a session whose reads go to the primary (this Database without replicas).

        Usable as ``db`` in every Orso method: what the script just wrote is read back.
        """
        return self if self._router is None else self._router.primary

    def replica_status(self) -> list[ReplicaStatus]:
        """Check each replica now; return its state, lag and replay position (one per DSN)."""
        return [] if self._router is None else self._router.status()

    def _wrote(self) -> None:
        if self._router is not None:
            self._router.wrote()

    # --- connections --------------------------------------------------------------------------

    def _executor(self, conn: psycopg.Connection[Any], deadline: float | None = None) -> Executor:
        return Executor(
            conn,
            self._listeners,
            deadline=deadline if deadline is not None else self.deadline,
            server=self.server,
            slow=self.slow_statement,
        )

    def _getconn(self) -> psycopg.Connection[Any]:
        """Take a pooled connection.

        While the server cannot be reached, wait at most ``unavailable_timeout``, then say why.
        """
        pool = self._pool
        outage = pool.outage
        start = time.monotonic()
        limit = start + self._timeout
        while True:
            since = outage.since
            if since is not None:
                limit = min(limit, max(start, since) + self.unavailable_timeout)
            wait = max(0.0, limit - time.monotonic())
            if since is None:
                # Waits of at most a second, so that a call which began before an outage was
                # noticed is bounded by unavailable_timeout too (each wait queues anew, so
                # they are not shorter).
                wait = min(wait, 1.0)
            try:
                return pool.getconn(timeout=wait)
            except psycopg_pool.PoolTimeout as exc:
                if time.monotonic() < limit:
                    continue
                reason = outage.reason if outage.since is not None else None
                if reason is None:
                    raise translate(exc) from exc
                waited = time.monotonic() - start
                msg = (
                    f"PostgreSQL at {self.server} is unavailable (waited {waited:.1f} s): {reason}"
                )
                raise ServerUnavailableError(msg) from exc
            except psycopg_pool.PoolClosed as exc:
                raise translate(exc) from exc

    @contextlib.contextmanager
    def _borrow(self) -> Iterator[psycopg.Connection[Any]]:
        conn = self._getconn()
        try:
            yield conn
        finally:
            # The pool rolls back a transaction left open and drops a broken connection.
            self._pool.putconn(conn)

    def _sweep(self) -> None:
        """Drop every dead idle connection at once, after one turned out dead.

        A restart kills them all, and finding them one call at a time fails up to
        ``max_size`` calls.
        """
        self._pool.check()

    def _read(self, work: Callable[[Executor], T]) -> T:
        if self._router is not None:
            return self._router.read(work)
        return self._read_primary(work)

    def _read_primary(self, work: Callable[[Executor], T]) -> T:
        try:
            with self._borrow() as conn:
                return work(self._executor(conn))
        except ServerUnavailableError:
            raise  # a silent or absent server: retrying would wait all over again
        except ConnectionLostError:
            self._sweep()
            with self._borrow() as conn:
                return work(self._executor(conn))

    def _write(self, work: Callable[[Executor], T]) -> T:
        with self._borrow() as conn:
            try:
                return work(self._executor(conn))
            except ServerUnavailableError:
                raise
            except ConnectionLostError:
                self._sweep()
                raise
            finally:
                self._wrote()

    def _atomic(self, work: Callable[[Executor], T], *, timeout: float | None = None) -> T:
        local, deadline = _call_timeout(timeout)
        try:
            with self._begun(local=local) as conn:
                return work(self._executor(conn, deadline))
        finally:
            self._wrote()

    def _iterate(
        self, stmt: Statement, batch_size: int, table: str | None, timeout: float | None = None
    ) -> Iterator[Any]:
        if self._router is not None:
            return self._router.iterate(stmt, batch_size, table, timeout)
        return self._iterate_primary(stmt, batch_size, table, timeout)

    def _iterate_primary(
        self, stmt: Statement, batch_size: int, table: str | None, timeout: float | None = None
    ) -> Iterator[Any]:
        # A server-side cursor lives in a transaction; the connection is held until the
        # iteration ends or the generator is closed. A stream that fails before its first
        # row (the pooled connection was dead) is started once more: nothing was seen yet.
        local, deadline = _call_timeout(timeout)
        for attempt in range(2):
            started = False
            try:
                with self._begun(local=local) as conn:
                    for row in self._executor(conn, deadline).stream(
                        stmt, batch_size=batch_size, table=table
                    ):
                        started = True
                        yield row
            except ServerUnavailableError:
                raise
            except ConnectionLostError:
                if started or attempt:
                    raise
                self._sweep()
            else:
                return

    @contextlib.contextmanager
    def _begun(
        self,
        *,
        isolation: Isolation | None = None,
        read_only: bool = False,
        local: _Local | None = None,
    ) -> Iterator[psycopg.Connection[Any]]:
        """Borrow a connection with a transaction open on it; commit when the block ends.

        A dead pooled connection shows when ``BEGIN`` fails; nothing of the caller's was sent
        yet, so the pool is swept and the transaction begins again on a live connection.
        """
        for attempt in range(2):
            with self._borrow() as conn:
                conn.isolation_level = _ISOLATION[isolation] if isolation else None
                conn.read_only = read_only or None
                tx = conn.transaction()
                try:
                    with _translated():
                        tx.__enter__()
                        if local is not None:
                            conn.execute(local.statement, local.values)
                except ServerUnavailableError:
                    raise
                except ConnectionLostError:
                    if attempt:
                        raise
                    retry = True
                else:
                    retry = False
                    try:
                        with _translated():
                            try:
                                yield conn
                            except BaseException as exc:
                                if not tx.__exit__(type(exc), exc, exc.__traceback__):
                                    raise
                            else:
                                tx.__exit__(None, None, None)
                    except ConnectionLostError:
                        # _translated covers the COMMIT too, so a connection lost there
                        # also sweeps.
                        self._sweep()
                        raise
                    finally:
                        if conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
                            conn.isolation_level = None
                            conn.read_only = None
                            self._give_back(conn)
            if not retry:
                return
            self._sweep()

    @contextlib.contextmanager
    def transaction(
        self,
        *,
        isolation: Isolation | None = None,
        read_only: bool = False,
        statement_timeout: int | None = None,
        lock_timeout: int | None = None,
    ) -> Iterator[Transaction]:
        """Open a transaction on one pooled connection.

        Every orso_pg operation given the yielded :class:`Transaction` runs on that connection.
        Leaving the block normally commits; leaving it by an exception rolls everything back.
        A dead pooled connection (after a server restart) is found when the transaction begins,
        before anything of yours was sent, so the transaction begins again on a live one.

        Args:
            isolation: ``"read committed"`` (the server default), ``"repeatable read"`` or
                ``"serializable"``.
            read_only: Start a read-only transaction.
            statement_timeout: Milliseconds after which the server cancels a statement of this
                transaction (``SET LOCAL``: it ends with the transaction). The client-side
                deadline of its statements becomes this plus 5 s.
            lock_timeout: Milliseconds a statement of this transaction waits for a lock
                before :class:`LockTimeoutError` (``SET LOCAL``).
        """
        local = _local(statement_timeout, lock_timeout)
        deadline = None
        if statement_timeout is not None:
            deadline = statement_timeout / 1000.0 + _DEADLINE_GRACE
        try:
            with self._begun(isolation=isolation, read_only=read_only, local=local) as conn:
                yield Transaction(self, conn, deadline)
        finally:
            if not read_only:
                self._wrote()

    def run_transaction(
        self,
        work: Callable[[Transaction], T],
        *,
        isolation: Isolation = "serializable",
        read_only: bool = False,
        attempts: int = 5,
        initial_delay: float = 0.01,
        max_delay: float = 1.0,
        statement_timeout: int | None = None,
        lock_timeout: int | None = None,
    ) -> T:
        """Run ``work(tx)`` in a transaction, retrying it when PostgreSQL asks for a retry.

        A :class:`SerializationError` (SQLSTATE 40001 or 40P01, raised by a statement or by the
        commit) rolls the attempt back; *work* then runs again in a fresh transaction after a
        random pause of up to ``initial_delay * 2**attempt`` seconds (at most *max_delay*), up
        to *attempts* times. Nothing else is retried: a connection lost during the commit
        leaves the outcome unknown, so it is raised, never repeated (a connection found dead
        before the transaction began is replaced, as in :meth:`transaction`). *work* must have
        no side effects outside the transaction, since it may run more than once.
        ``statement_timeout`` and ``lock_timeout`` are as in :meth:`transaction`.

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
                with self.transaction(
                    isolation=isolation,
                    read_only=read_only,
                    statement_timeout=statement_timeout,
                    lock_timeout=lock_timeout,
                ) as tx:
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

        Whatever the borrower leaves behind is undone before the connection is handed to
        anyone else: an open transaction is rolled back; settings, ``SET ROLE`` / ``SET SESSION
        AUTHORIZATION``, ``LISTEN``, cursors, temporary tables and advisory locks are reset as
        ``DISCARD ALL`` does, statements ``PREPARE``d in SQL are deallocated (psycopg's own
        stay), and orso_pg's own settings are applied again. The psycopg side
        (``row_factory``, ``autocommit``, ``prepare_threshold``, cursor factories) is
        restored; a connection whose adapters or notice/notify handlers were changed is closed
        instead, and the pool opens a fresh one.
        """
        with self._borrow() as conn:
            self._lend(conn)
            try:
                yield conn
            finally:
                self._give_back(conn)
                self._wrote()

    def _lend(self, conn: psycopg.Connection[Any]) -> None:
        with self._lent_lock:
            if id(conn) not in self._lent:
                self._lent[id(conn)] = _PythonState.of(conn)

    def _give_back(self, conn: psycopg.Connection[Any]) -> None:
        """Undo what a borrower of a raw connection may have changed, before it goes back.

        Only connections handed out raw are reset, here rather than in a pool ``reset``
        callback: orso_pg's own operations change no session state, and psycopg_pool hands a
        connection with a reset callback back through a worker thread, which costs tens of
        microseconds on every checkout.
        """
        with self._lent_lock:
            state = self._lent.pop(id(conn), None)
        if state is None:
            return
        if conn.closed or conn.info.transaction_status == psycopg.pq.TransactionStatus.UNKNOWN:
            return  # broken: the pool discards it
        try:
            if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                conn.rollback()
            if not state.restore(conn):
                conn.close()  # the pool sees it closed and opens another
                return
            # DISCARD ALL without its DEALLOCATE ALL, which would drop the statements psycopg
            # prepared and still believes it has; those PREPAREd in SQL go by name.
            names = conn.execute(_SQL_PREPARED).fetchall()
            conn.execute(_DISCARD)
            for (name,) in names:
                conn.execute(sql.SQL("DEALLOCATE {}").format(sql.Identifier(name)))
            self._configure(conn)
        except psycopg.Error:
            conn.close()

    def pool_stats(self) -> dict[str, int]:
        """Return psycopg_pool's counters (connections, requests, errors...)."""
        return self._pool.get_stats()

    @contextlib.contextmanager
    def hold(self) -> Iterator[Held]:
        """Hold one pooled connection for the block: calls on it skip the pool's checkout.

        Each operation given the yielded :class:`~orso_pg.Held` still commits on its own, as
        on the ``Database``; the connection goes back to the pool when the block ends. For a
        thread making many small calls in a row; not thread-safe.
        """
        from orso_pg.session._held import held

        try:
            with held(self) as session:
                yield session
        finally:
            self._wrote()  # calls on the held connection may have written: read them back

    @contextlib.contextmanager
    def pipeline(
        self,
        *,
        transaction: bool = False,
        max_pending: int = 1000,
        max_bytes: int = 4 << 20,
        synchronous_commit: bool = True,
    ) -> Iterator[Pipeline]:
        """Send Orso operations without waiting for each other, on one pooled connection.

        Operations given the yielded :class:`~orso_pg.Pipeline` return a
        :class:`~orso_pg.Pending` handle at once; results arrive when the pipeline syncs (on
        ``p.sync()``, on a handle's ``result()``, every *max_pending* operations or
        *max_bytes* of parameters, and when the block ends).

        Args:
            transaction: Run every operation in one transaction, committed when the block ends
                (the first failure aborts the rest and rolls it back). By default each
                operation commits on its own and a failure fails its own handle only.
            max_pending: Operations sent before the pipeline syncs by itself.
            max_bytes: Bytes of parameters sent before the pipeline syncs by itself.
            synchronous_commit: ``False`` lets each commit return before its WAL is flushed
                to disk (PostgreSQL's ``synchronous_commit = off`` on this connection, for
                the block only): a server crash may lose the last few hundred milliseconds
                of commits, never leave one half-applied. Much faster in autocommit, where
                every operation is a commit.

        Raises:
            OrsoError: when the block ends, the first error no handle's ``result()`` raised
                (in a transaction, the error that rolled it back).
        """
        from orso_pg.session._pipeline import pipelined

        try:
            with (
                self._borrow() as conn,
                pipelined(
                    self._executor(conn),
                    transaction=transaction,
                    max_pending=max_pending,
                    max_bytes=max_bytes,
                    side=self._write,
                    synchronous_commit=synchronous_commit,
                ) as p,
            ):
                yield p
        except ServerUnavailableError:
            raise
        except ConnectionLostError:
            self._sweep()
            raise
        finally:
            self._wrote()  # the pipeline may have written: later reads must see it


class Transaction(Session):
    """An open transaction; pass it as ``db`` to run orso_pg operations inside it.

    Obtained from :meth:`Database.transaction`. Not thread-safe: one transaction belongs to one
    thread at a time.
    """

    def __init__(
        self, db: Database, conn: psycopg.Connection[Any], deadline: float | None = None
    ) -> None:
        self._db = db
        self._conn = conn
        self._deadline = deadline
        self._piped = False  # a pipeline is open on the connection

    @property
    def connection(self) -> psycopg.Connection[Any]:
        """The raw psycopg connection of this transaction (for work orso_pg does not cover).

        Whatever is changed on it is undone when the transaction ends, as for
        :meth:`Database.connection`.
        """
        self._db._lend(self._conn)
        return self._conn

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """Open a nested transaction (a savepoint); an exception rolls back only its work."""
        self._ready()
        with _translated(), self._conn.transaction():
            yield Transaction(self._db, self._conn, self._deadline)

    @contextlib.contextmanager
    def pipeline(self, *, max_pending: int = 1000, max_bytes: int = 4 << 20) -> Iterator[Pipeline]:
        """Send Orso operations without waiting for each other, inside this transaction.

        The yielded :class:`~orso_pg.Pipeline` works as ``db.pipeline(transaction=True)``
        does, in a savepoint of this transaction: when an operation fails, its handle raises
        its error, the later ones raise :class:`PipelineAbortedError`, the pipeline's work
        (and only it) is rolled back to the savepoint, and the error is raised when the block
        ends. Catch it and this transaction goes on, as after a failed nested
        ``tx.transaction()``. Until the block ends, operations must go through the pipeline,
        not this transaction (they raise :class:`QueryError`).

        Args:
            max_pending: Operations sent before the pipeline syncs by itself.
            max_bytes: Bytes of parameters sent before the pipeline syncs by itself.
        """
        from orso_pg.session._pipeline import pipelined

        self._ready()
        self._piped = True
        try:
            with pipelined(
                self._executor(),
                transaction=True,
                savepoint=True,
                max_pending=max_pending,
                max_bytes=max_bytes,
                side=self._inline,
            ) as p:
                yield p
        finally:
            self._piped = False

    def _inline(self, work: Callable[[Executor], T]) -> T:
        """Run preparatory *work* for the pipeline open on this transaction (it paused)."""
        self._piped = False
        try:
            return self._atomic(work)
        finally:
            self._piped = True

    def _ready(self) -> None:
        if self._piped:
            msg = (
                "a pipeline is open on this transaction: send operations through it (or end "
                "its block first)"
            )
            raise QueryError(msg)

    def _executor(self) -> Executor:
        return self._db._executor(self._conn, self._deadline)

    def _read(self, work: Callable[[Executor], T]) -> T:
        if self._piped:
            self._ready()
        return work(self._executor())

    def _write(self, work: Callable[[Executor], T]) -> T:
        if self._piped:
            self._ready()
        return work(self._executor())

    def _atomic(self, work: Callable[[Executor], T], *, timeout: float | None = None) -> T:
        self._ready()
        local, deadline = _call_timeout(timeout)
        ex = self._db._executor(self._conn, deadline or self._deadline)
        # A savepoint, so a failed operation can be caught without poisoning the transaction.
        with _translated(), self._conn.transaction():
            if local is None:
                return work(ex)
            # SET LOCAL inside the savepoint: undone with it on failure; on success the
            # transaction's own value is put back before the savepoint is released.
            before = self._conn.execute(_CURRENT_TIMEOUT).fetchone()
            self._conn.execute(local.statement, local.values)
            result = work(ex)
            self._conn.execute(_RESTORE_TIMEOUT, (before[0] if before else "0",))
            return result

    def _iterate(
        self, stmt: Statement, batch_size: int, table: str | None, timeout: float | None = None
    ) -> Iterator[Any]:
        # Only the client-side deadline: a SET LOCAL here would outlive the stream in the
        # transaction (give the transaction its statement_timeout instead).
        self._ready()
        _, deadline = _call_timeout(timeout)
        ex = self._db._executor(self._conn, deadline or self._deadline)
        return ex.stream(stmt, batch_size=batch_size, table=table)


def _model_part(
    row: tuple[Any, ...], start: int, end: int, key: int | None, load: Callable[[Any], Any]
) -> Any:
    """Return the instance in ``row[start:end]``, or None where an outer join found no row."""
    values = row[start:end]
    if (values[key] is None) if key is not None else all(v is None for v in values):
        return None
    return load(values)


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except OrsoError:
        raise
    except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
        raise translate(exc) from exc


#: The arguments of ``Database`` a replica's pool does not share with the primary's.
_NOT_SHARED: Final = frozenset(
    {"self", "dsn", "data_dir", "replicas", "read_your_writes", "max_replica_lag"}
)

#: Seconds added to a statement timeout to make the client-side deadline: the server cancels
#: the statement first, and the deadline only ends a wait for a server that went silent.
_DEADLINE_GRACE: Final = 5.0


def _default_deadline(deadline: float | None, statement_timeout: int | None) -> float | None:
    if deadline is not None:
        if deadline <= 0:
            msg = f"deadline must be a positive number of seconds, not {deadline!r}"
            raise ConfigError(msg, value=deadline)
        return float(deadline)
    if statement_timeout:
        return statement_timeout / 1000.0 + _DEADLINE_GRACE
    return None


_SQL_PREPARED: Final = sql.SQL("SELECT name FROM pg_prepared_statements WHERE from_sql")
_DISCARD: Final = sql.SQL(
    "CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; UNLISTEN *; "
    "SELECT pg_advisory_unlock_all(); DISCARD PLANS; DISCARD TEMP; DISCARD SEQUENCES"
)
_CURRENT_TIMEOUT: Final = sql.SQL("SELECT current_setting('statement_timeout')")
_RESTORE_TIMEOUT: Final = sql.SQL("SELECT set_config('statement_timeout', %s, true)")


def _call_timeout(timeout: float | None) -> tuple[_Local | None, float | None]:
    """Return the ``SET LOCAL`` and the client-side deadline of an operation's *timeout*."""
    if timeout is None:
        return None, None
    if type(timeout) not in (int, float) or not timeout > 0:
        msg = f"timeout must be a positive number of seconds, not {timeout!r}"
        raise ConfigError(msg, value=timeout)
    return _local(max(1, round(timeout * 1000)), None), timeout + _DEADLINE_GRACE


@attrs.frozen
class _Local:
    """Per-transaction settings, applied with ``set_config(..., true)`` (``SET LOCAL``)."""

    statement: sql.Composed
    values: tuple[str, ...]


def _local(statement_timeout: int | None, lock_timeout: int | None) -> _Local | None:
    given = [
        (name, value)
        for name, value in (
            ("statement_timeout", statement_timeout),
            ("lock_timeout", lock_timeout),
        )
        if value is not None
    ]
    if not given:
        return None
    for name, value in given:
        if isinstance(value, bool) or value < 0:
            msg = f"{name} must be a number of milliseconds (an int >= 0), not {value!r}"
            raise ConfigError(msg, value=value)
    calls = sql.SQL(", ").join(
        sql.SQL("set_config({}, %s, true)").format(sql.Literal(name)) for name, _ in given
    )
    return _Local(sql.SQL("SELECT ") + calls, tuple(f"{int(v)}ms" for _, v in given))


@attrs.frozen
class _Settings:
    """orso_pg's session settings, as one ``SELECT set_config(...)`` statement."""

    statement: sql.Composed | None
    values: tuple[str, ...]
    lost_by_poolers: tuple[str, ...]
    names: tuple[str, ...] = ()

    def conninfo(self, conninfo: str) -> str:
        """Return *conninfo* with these settings in its ``options`` startup parameter."""
        given = conninfo_to_dict(conninfo).get("options")
        options = [str(given)] if given else []
        for name, value in zip(self.names, self.values, strict=True):
            escaped = value.replace("\\", "\\\\").replace(" ", "\\ ")
            options.append(f"-c {name}={escaped}")
        return make_conninfo(conninfo, options=" ".join(options)) if options else conninfo


def _settings(statement_timeout: int | None, schema: str | None, timezone: str | None) -> _Settings:
    pairs: list[tuple[str, str]] = []
    lost: list[str] = []
    if timezone is not None:
        # TimeZone is reported to the client, so PgBouncer carries it between server sessions.
        pairs.append(("TimeZone", timezone))
    if statement_timeout is not None:
        pairs.append(("statement_timeout", f"{int(statement_timeout)}ms"))
        lost.append("statement_timeout")
    if schema is not None:
        pairs.append(("search_path", f"{sql.Identifier(schema).as_string(None)},public"))
        lost.append("schema")
    if not pairs:
        return _Settings(None, (), ())
    calls = sql.SQL(", ").join(
        sql.SQL("set_config({}, %s, false)").format(sql.Literal(name)) for name, _ in pairs
    )
    return _Settings(
        sql.SQL("SELECT ") + calls,
        tuple(v for _, v in pairs),
        tuple(lost),
        tuple(n for n, _ in pairs),
    )


@attrs.frozen
class _PythonState:
    """What a borrower may change on a lent connection on the psycopg side."""

    row_factory: Any
    cursor_factory: Any
    server_cursor_factory: Any
    prepare_threshold: int | None
    prepared_max: int | None
    handlers: tuple[int, int]
    adapters: object

    @classmethod
    def of(cls, conn: psycopg.Connection[Any]) -> _PythonState:
        return cls(
            conn.row_factory,
            conn.cursor_factory,
            conn.server_cursor_factory,
            conn.prepare_threshold,
            conn.prepared_max,
            _handlers(conn),
            _adapters(conn),
        )

    def restore(self, conn: psycopg.Connection[Any]) -> bool:
        """Put the state back; False when it cannot be (the connection must then go)."""
        if _handlers(conn) != self.handlers or _adapters(conn) != self.adapters:
            return False
        conn.row_factory = self.row_factory
        conn.cursor_factory = self.cursor_factory
        conn.server_cursor_factory = self.server_cursor_factory
        conn.prepare_threshold = self.prepare_threshold
        conn.prepared_max = self.prepared_max
        conn.autocommit = True
        conn.isolation_level = None
        conn.read_only = None
        conn.deferrable = None
        return True


def _handlers(conn: psycopg.Connection[Any]) -> tuple[int, int]:
    return (
        len(getattr(conn, "_notice_handlers", ())),
        len(getattr(conn, "_notify_handlers", ())),
    )


def _adapters(conn: psycopg.Connection[Any]) -> object:
    """Return what adapters and types *conn* has, to tell whether a borrower changed them.

    psycopg registers adapters in per-connection maps (copied from the global ones on the first
    change); the snapshot is their contents. Unknown internals give a value equal to nothing,
    so the connection is replaced rather than lent on with foreign adapters.
    """
    adapters = conn.adapters
    try:
        return (
            tuple(tuple(d.items()) for d in adapters._dumpers.values()),
            tuple(tuple(d.items()) for d in adapters._dumpers_by_oid),
            tuple(tuple(d.items()) for d in adapters._loaders),
            tuple(adapters.types._registry.items()),
        )
    except AttributeError:  # pragma: no cover - a psycopg with other internals
        return object()


_BACKEND_PID: Final = sql.SQL("SELECT pg_backend_pid()")


def _shares_sessions(conn: psycopg.Connection[Any], conninfo: str, connect_timeout: int) -> bool:
    """Whether a pooler in transaction mode serves two clients from one server session.

    A second client holds a transaction open; if it is given the server session the first
    client just used, or the first client's next statement runs in another session, session
    state does not follow the client. A pool that is busy elsewhere may hide it: then False.
    """

    def pid(c: psycopg.Connection[Any]) -> int:
        row = c.execute(_BACKEND_PID).fetchone()
        return int(row[0]) if row else 0

    mine = pid(conn)
    try:
        other = psycopg.connect(
            conninfo, autocommit=True, prepare_threshold=None, connect_timeout=connect_timeout
        )
    except psycopg.Error:
        return False  # e.g. no connection slot left: nothing can be told
    with other, other.transaction():
        if pid(other) == mine:
            return True
        return pid(conn) != mine


def _conninfo(dsn: str, *, connect_timeout: int, application_name: str) -> str:
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
    # Statements are rendered once without a connection, which assumes UTF-8. A startup
    # parameter every pooler accepts, unlike ``options``.
    extra["client_encoding"] = "UTF8"
    return make_conninfo(dsn, **extra)
