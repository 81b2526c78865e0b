"""Read replicas: which server a read through a :class:`~orso_pg.Database` runs on.

Owns the router of a ``Database`` given ``replicas=`` (or ``$ORSO_PG_REPLICA_DSNS``): one pool
per hot standby, opened with the primary's settings; the choice of a server for each read
(round robin over the replicas that are up and within ``max_replica_lag``; the primary when
none is); read-your-writes per thread; a monitor thread that measures every replica's replay
position and lag and probes the ones that are down; :meth:`Database.primary` and
:meth:`Database.replica_status`. It must not build SQL for a model nor know what an operation
means: operations call ``session._read`` and friends, and only ``Database`` calls the router.
Its own statements (replay positions) go through the executor, with no listeners.

Lag is measured without trusting clocks: every check samples the primary's WAL position; a
replica that has replayed position R lacks everything the primary wrote after the first sample
beyond R, so its lag is the time since that sample (0 when it has replayed the last one). It
is as precise as the check interval, :data:`CHECK_INTERVAL`.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar

import attrs
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from orso_pg._compiler import Statement
from orso_pg._executor import Executor, Listener
from orso_pg.errors import (
    ConfigError,
    ConnectionLostError,
    OrsoError,
    PoolTimeoutError,
    SerializationError,
)
from orso_pg.session import _connect
from orso_pg.session._database import Database, Session, Transaction

if TYPE_CHECKING:
    from orso_pg.session._adbc import AdbcConnections
    from orso_pg.session._database import Isolation

__all__ = [
    "BACKOFF",
    "CHECK_INTERVAL",
    "ENV_REPLICAS",
    "PrimarySession",
    "ReplicaStatus",
    "Router",
    "open_router",
]

logger = logging.getLogger("orso_pg")

T = TypeVar("T")

#: The environment variable listing the replicas of ``$ORSO_PG_DSN``'s server, separated by ``;``.
ENV_REPLICAS: Final = "ORSO_PG_REPLICA_DSNS"
#: Seconds between two checks of the replicas' replay positions.
CHECK_INTERVAL: Final = 0.1
#: Seconds a replica that failed is left alone before it is probed again.
BACKOFF: Final = 1.0
#: Seconds of the primary's WAL positions kept to measure lag (older lag is a lower bound).
_HISTORY: Final = 300.0

State = Literal["up", "lagging", "down"]

#: A read failing with these on a replica runs again elsewhere: the server is down, busy or
#: cancelled the read to replay WAL (a hot-standby conflict is SQLSTATE 40001 or 40P01).
_ELSEWHERE: Final = (ConnectionLostError, PoolTimeoutError, SerializationError)

_PRIMARY_LSN: Final = Statement(
    sql.SQL(
        "SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint, "
        "(pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint"
    )
)
_REPLAY_LSN: Final = Statement(
    sql.SQL(
        "SELECT pg_is_in_recovery(), (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint, "
        "CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() ELSE false END"
    )
)
#: The replay position of a server that is not a standby: it has everything.
_EVERYTHING: Final = sys.maxsize


@attrs.frozen
class ReplicaStatus:
    """One replica as the last check saw it (:meth:`Database.replica_status`).

    Attributes:
        server: The replica, named as ``user@host:port/dbname``.
        state: ``"up"`` (serving reads), ``"lagging"`` (further behind than
            ``max_replica_lag``, skipped) or ``"down"`` (unreachable, skipped for a while).
        lag: Seconds behind the primary (0.0 when it has replayed everything the primary had
            at the last check), None when unknown (down).
        replay_lsn: The last WAL position it replayed (``"0/3000148"``), None when unknown
            or when the server is not a standby.
        in_recovery: Whether it is a standby (``pg_is_in_recovery()``); None when unknown.
        paused: Whether its WAL replay is paused (``pg_wal_replay_pause()``).
        reason: Why it is down, else None.
    """

    server: str
    state: State
    lag: float | None
    replay_lsn: str | None
    in_recovery: bool | None
    paused: bool
    reason: str | None

    __module__ = "orso_pg"


def open_router(
    db: Database,
    target: _connect.Target,
    replicas: Sequence[str] | None,
    settings: dict[str, Any],
    read_your_writes: bool,
    max_replica_lag: float | None,
) -> Router | None:
    """Return the router of *db*, or None when it has no replicas.

    Raises:
        ConfigError: a replica DSN is invalid or refused by ``require_tls``, replicas are
            given for the embedded server, or ``max_replica_lag`` is not a positive number.
    """
    if max_replica_lag is not None and (
        isinstance(max_replica_lag, bool) or not max_replica_lag > 0
    ):
        msg = f"max_replica_lag must be a positive number of seconds, not {max_replica_lag!r}"
        raise ConfigError(msg, value=max_replica_lag)
    if isinstance(replicas, str):
        msg = "replicas must be a list of DSNs, not one string"
        raise ConfigError(msg, value=_connect.describe(replicas))
    dsns = list(replicas) if replicas is not None else _from_env(target)
    if not dsns:
        return None
    if target.embedded is not None:
        msg = (
            "replicas are hot standbys of a server you run; the embedded PostgreSQL has none "
            "(give the primary's DSN, or leave replicas out)"
        )
        raise ConfigError(msg)
    for index, dsn in enumerate(dsns):
        if dsn.strip() == _connect.EMBEDDED:
            msg = f"replica {index} is 'embedded': a replica must be a server's DSN"
            raise ConfigError(msg, value=dsn)
        try:
            conninfo_to_dict(dsn)
        except psycopg.ProgrammingError as exc:
            msg = f"invalid connection string for replica {index}: {exc}"
            raise ConfigError(msg) from exc
        _connect.secure(dsn, require_tls=bool(settings.get("require_tls")))
    return Router(db, dsns, settings, read_your_writes, max_replica_lag)


def _from_env(target: _connect.Target) -> list[str]:
    """Return ``$ORSO_PG_REPLICA_DSNS`` when the primary is the server ``$ORSO_PG_DSN`` names."""
    listed = os.environ.get(ENV_REPLICAS, "")
    if not listed.strip() or target.embedded is not None:
        return []
    if target.dsn != os.environ.get(_connect.ENV_DSN):
        return []  # the replicas listed there stream from another server
    return [part.strip() for part in listed.split(";") if part.strip()]


class _Member(Database):
    """One replica's pool: a Database of its own that runs reads, with its owner's listeners."""

    def __init__(self, owner: Database, dsn: str, settings: dict[str, Any]) -> None:
        self._owner = owner
        super().__init__(dsn, replicas=(), **settings)

    @property
    def _listeners(self) -> tuple[Listener, ...]:
        return self._owner._listeners

    @_listeners.setter
    def _listeners(self, value: tuple[Listener, ...]) -> None:
        pass  # Database.__init__ sets it; the owner's are used


@attrs.define(eq=False)
class _Replica:
    """What the router knows of one replica."""

    dsn: str
    name: str
    member: _Member | None = None
    probe: psycopg.Connection[Any] | None = None
    state: State = "down"
    down_until: float = 0.0
    reason: str | None = None
    in_recovery: bool | None = None
    paused: bool = False
    replayed: int | None = None
    lag: float | None = None

    def status(self) -> ReplicaStatus:
        lsn = None
        if self.replayed is not None and self.replayed != _EVERYTHING:
            lsn = f"{self.replayed >> 32:X}/{self.replayed & 0xFFFFFFFF:X}"
        return ReplicaStatus(
            self.name, self.state, self.lag, lsn, self.in_recovery, self.paused, self.reason
        )


class Router:
    """Chooses the server of each read of one :class:`Database` and watches its replicas.

    Reads go round robin over the replicas that are up and, with ``max_replica_lag``, close
    enough; with none such, to the primary. A read that fails on a replica because the server
    is gone, out of connections or cancelled it for a replication conflict runs once more on
    another replica, else on the primary; a server that failed is skipped for :data:`BACKOFF`
    seconds, then probed again by the monitor thread.
    """

    def __init__(
        self,
        db: Database,
        dsns: Sequence[str],
        settings: dict[str, Any],
        read_your_writes: bool,
        max_replica_lag: float | None,
    ) -> None:
        self._db = db
        self._ryw = read_your_writes
        self._max_lag = max_replica_lag
        # A replica that stops answering is given up on quickly: the primary can serve.
        self._settings = {
            **settings,
            "unavailable_timeout": min(float(settings["unavailable_timeout"]), BACKOFF),
        }
        self._connect_timeout = int(settings["connect_timeout"])
        self._servers = [_Replica(dsn, _connect.describe(dsn)) for dsn in dsns]
        self._ready: tuple[_Replica, ...] = ()
        self._turn = itertools.count()
        self._local = threading.local()
        #: (monotonic time before asking, write position, insert position) of the primary.
        self._samples: list[tuple[float, int, int]] = []
        self._primary_probe: psycopg.Connection[Any] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.primary = PrimarySession(db)
        self._thread = threading.Thread(target=self._watch, name="orso_pg-replicas", daemon=True)
        try:
            self._check()
        except BaseException:  # pragma: no cover - _check reports failures as states
            self.close()
            raise
        self._thread.start()

    # --- reads --------------------------------------------------------------------------------

    def on_server(self, call: Callable[[Session], T]) -> T:
        """Run *call* with a replica's session (the primary's if none is fit), failing over.

        For reads that do more than run statements on a pooled connection: a columnar read
        opens the chosen server's own ADBC connections; a replica it cannot connect to is one
        that is down.
        """
        failed: _Replica | None = None
        for _ in range(2):
            server = self._choose(failed)
            if server is None or server.member is None:
                break
            try:
                return call(server.member)
            except _ELSEWHERE as exc:
                self._failed(server, exc)
                failed = server
        return call(self.primary)

    def read(self, work: Callable[[Executor], T]) -> T:
        """Run *work* on a replica; on a failure there, once on another server."""
        return self.on_server(lambda session: session._read(work))

    def iterate(
        self, stmt: Statement, batch_size: int, table: str | None, timeout: float | None
    ) -> Iterator[Any]:
        """Stream *stmt* from one server; it stays there once its first row came."""
        server = self._choose(None)
        if server is None or server.member is None:
            return self._db._iterate_primary(stmt, batch_size, table, timeout)
        return self._stream(server, server.member, stmt, batch_size, table, timeout)

    def _stream(
        self,
        server: _Replica,
        member: _Member,
        stmt: Statement,
        batch_size: int,
        table: str | None,
        timeout: float | None,
    ) -> Iterator[Any]:
        started = False
        rows = member._iterate_primary(stmt, batch_size, table, timeout)
        try:
            for row in rows:
                started = True
                yield row
        except _ELSEWHERE as exc:
            if started:
                raise  # rows were seen: starting again elsewhere would repeat them
            self._failed(server, exc)
        else:
            return
        finally:
            # Left early (the caller stopped reading): the cursor's connection goes back now.
            close = getattr(rows, "close", None)
            if close is not None:
                close()
        yield from self._db._iterate_primary(stmt, batch_size, table, timeout)

    def _choose(self, failed: _Replica | None) -> _Replica | None:
        ready = self._ready
        if failed is not None:
            ready = tuple(s for s in ready if s is not failed)
        if not ready:
            return None
        if self._ryw:
            wrote: float | None = getattr(self._local, "wrote", None)
            if wrote is not None:
                ready = self._caught_up(ready, wrote)
                if not ready:
                    return None
        if len(ready) == 1:
            return ready[0]
        return ready[next(self._turn) % len(ready)]

    # --- read-your-writes ---------------------------------------------------------------------

    def wrote(self) -> None:
        """Note that this thread has just written through the primary."""
        if self._ryw:
            self._local.wrote = time.monotonic()
            self._local.need = None

    def _caught_up(self, ready: tuple[_Replica, ...], wrote: float) -> tuple[_Replica, ...]:
        """Return the replicas of *ready* that have replayed this thread's last write.

        The write's position is the primary's insert position at the first check that began
        after the write returned: at least the end of the write's commit record.
        """
        need: int | None = self._local.need
        if need is None:
            for started, _, inserted in reversed(self._samples):
                if started <= wrote:
                    break
                need = inserted
            if need is None:
                return ()  # not measured yet: the primary has it
            self._local.need = need
        caught = tuple(s for s in ready if (s.replayed or 0) >= need)
        if all((s.replayed or 0) >= need for s in self._servers):
            self._local.wrote = None  # every replica has it
        return caught

    # --- failures and checks ------------------------------------------------------------------

    def _failed(self, server: _Replica, exc: OrsoError) -> None:
        if isinstance(exc, SerializationError):
            logger.info("read cancelled on %s (%s); running it elsewhere", server.name, exc)
            return
        self._down(server, str(exc).strip() or type(exc).__name__)

    def _down(self, server: _Replica, reason: str) -> None:
        was = server.state
        server.state = "down"
        server.reason = reason
        server.lag = None
        server.down_until = time.monotonic() + BACKOFF
        self._ready = tuple(s for s in self._ready if s is not server)
        if was != "down":
            logger.warning("replica %s skipped: %s", server.name, reason)

    def _watch(self) -> None:
        while not self._stop.wait(CHECK_INTERVAL):
            try:
                self._check()
            except Exception:  # pragma: no cover - the monitor must outlive any surprise
                logger.exception("checking the replicas failed")

    def _check(self) -> None:
        """Sample the primary's WAL position, then every replica's replay position."""
        with self._lock:
            if self._stop.is_set():
                return
            self._sample_primary()
            now = time.monotonic()
            for server in self._servers:
                if server.state == "down" and now < server.down_until:
                    continue
                self._check_replica(server)
            self._ready = tuple(s for s in self._servers if s.state == "up")

    def _sample_primary(self) -> None:
        started = time.monotonic()
        try:
            self._primary_probe, row = self._ask(
                self._primary_probe, self._db.conninfo, _PRIMARY_LSN, self._db.server
            )
        except (OrsoError, psycopg.Error) as exc:
            logger.debug("cannot read the primary's WAL position: %s", exc)
            self._primary_probe = None
            return
        if row is None or row[0] is None:  # pragma: no cover - the primary is a standby
            return
        keep = started - _HISTORY
        samples = [s for s in self._samples[-4096:] if s[0] >= keep]
        samples.append((started, int(row[0]), int(row[1])))
        self._samples = samples

    def _check_replica(self, server: _Replica) -> None:
        try:
            if server.member is None:
                server.member = _Member(self._db, server.dsn, self._settings)
                server.name = server.member.server
            checked = time.monotonic()
            server.probe, row = self._ask(
                server.probe, server.member.conninfo, _REPLAY_LSN, server.name
            )
        except (OrsoError, psycopg.Error) as exc:
            server.probe = None
            self._down(server, str(exc).strip() or type(exc).__name__)
            return
        assert row is not None  # noqa: S101 - a SELECT without FROM has one row
        recovering, replayed, paused = bool(row[0]), row[1], bool(row[2])
        if server.state == "down" and server.reason is not None:
            logger.warning("replica %s is back", server.name)
            server.member._sweep()  # connections from before it went away are dead
        server.in_recovery = recovering
        server.paused = paused
        server.reason = None
        server.replayed = int(replayed) if recovering and replayed is not None else _EVERYTHING
        server.lag = self._lag(server.replayed, checked)
        limit = self._max_lag
        server.state = "up" if limit is None or (server.lag <= limit) else "lagging"

    def _lag(self, replayed: int, checked: float) -> float:
        """Seconds since the primary first wrote past *replayed* (0.0 if it never did)."""
        first = None
        for started, written, _ in reversed(self._samples):
            if written <= replayed:
                break
            first = started
        return 0.0 if first is None else max(0.0, checked - first)

    def _ask(
        self,
        probe: psycopg.Connection[Any] | None,
        conninfo: str,
        stmt: Statement,
        server: str,
    ) -> tuple[psycopg.Connection[Any], tuple[Any, ...] | None]:
        """Run *stmt* on *probe*; on a new connection if there is none or it turned out dead.

        Returns the connection to keep and the row. A server that restarted since the last
        check killed the old connection, so one failure there earns a second try on a new one.
        """
        if probe is not None:
            try:
                return probe, Executor(probe, server=server).fetch_one(stmt)
            except (OrsoError, psycopg.Error):
                _closed(probe)
        conn = self._connect(conninfo)
        try:
            return conn, Executor(conn, server=server).fetch_one(stmt)
        except BaseException:
            _closed(conn)
            raise

    def _connect(self, conninfo: str) -> psycopg.Connection[Any]:
        return psycopg.connect(
            conninfo,
            autocommit=True,
            prepare_threshold=None,
            connect_timeout=self._connect_timeout,
        )

    def status(self) -> list[ReplicaStatus]:
        """Check every replica now (one skipped after a failure is probed too)."""
        for server in self._servers:
            if server.state == "down":
                server.down_until = 0.0
        self._check()
        return [s.status() for s in self._servers]

    def close(self) -> None:
        """Stop the monitor; close every replica's pool and the probe connections."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=self._connect_timeout + 5.0)
        with self._lock:
            self._ready = ()
            self._primary_probe = _closed(self._primary_probe)
            for server in self._servers:
                server.probe = _closed(server.probe)
                if server.member is not None:
                    server.member.close()


def _closed(conn: psycopg.Connection[Any] | None) -> psycopg.Connection[Any] | None:
    """Close *conn* if there is one; return None (what the caller holds from now on)."""
    if conn is not None:
        with contextlib.suppress(psycopg.Error):
            conn.close()
    return None


class PrimarySession(Session):
    """The session of :meth:`Database.primary`: everything runs on the primary.

    Usable as ``db`` in every Orso method; reads see what was just written, as a transaction's
    do, without holding a connection between calls.
    """

    __module__ = "orso_pg"

    def __init__(self, db: Database) -> None:
        self._db = db
        #: The primary, named as ``user@host:port/dbname``.
        self.server = db.server

    def _read(self, work: Callable[[Executor], T]) -> T:
        return self._db._read_primary(work)

    def _write(self, work: Callable[[Executor], T]) -> T:
        return self._db._write(work)

    def _atomic(self, work: Callable[[Executor], T], *, timeout: float | None = None) -> T:
        return self._db._atomic(work, timeout=timeout)

    def _iterate(
        self, stmt: Statement, batch_size: int, table: str | None, timeout: float | None = None
    ) -> Iterator[Any]:
        return self._db._iterate_primary(stmt, batch_size, table, timeout)

    def _columnar_reader(self) -> AdbcConnections | None:
        return self._db._columnar_reader()

    def primary(self) -> PrimarySession:
        """Return this session."""
        return self

    @contextlib.contextmanager
    def transaction(
        self,
        *,
        isolation: Isolation | None = None,
        read_only: bool = False,
        statement_timeout: int | None = None,
        lock_timeout: int | None = None,
    ) -> Iterator[Transaction]:
        """Open a transaction on the primary, as :meth:`Database.transaction`."""
        with self._db.transaction(
            isolation=isolation,
            read_only=read_only,
            statement_timeout=statement_timeout,
            lock_timeout=lock_timeout,
        ) as tx:
            yield tx

    def __repr__(self) -> str:
        return f"<PrimarySession of {self._db!r}>"
