"""The client objects each implementation works through, opened once per workload.

Owns a raw psycopg connection (implicit transactions, JSONB dumpers for dict, as the reference
harness set it up), raw psycopg_pool pools, orso_pg ``Database`` objects and a SQLAlchemy engine
on the run's schema, and putting them back to idle between repetitions so a reset never waits
on a lock. It must not time or verify anything.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import Any

import psycopg
import psycopg_pool
from psycopg.types.json import JsonbBinaryDumper, JsonbDumper
from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker

from bench.env import Env
from orso_pg import Database, Transaction


class Clients:
    """Lazily opened clients of every implementation, closed together.

    Args:
        env: The run's server and schema.
        pool_size: Connections of the pools (W7 uses four threads on four connections).
    """

    def __init__(self, env: Env, pool_size: int = 4) -> None:
        self.env = env
        self.pool_size = pool_size
        self._closers: list[Any] = []

    @functools.cached_property
    def raw(self) -> psycopg.Connection[Any]:
        """A plain psycopg connection in psycopg's default (implicit transaction) mode."""
        conn = self.env.connect()
        conn.adapters.register_dumper(dict, JsonbDumper)
        conn.adapters.register_dumper(dict, JsonbBinaryDumper)
        self._closers.append(conn.close)
        return conn

    @functools.cached_property
    def raw_pool(self) -> psycopg_pool.ConnectionPool[psycopg.Connection[Any]]:
        """A psycopg_pool pool of autocommit connections (a checkout per call)."""
        pool: psycopg_pool.ConnectionPool[psycopg.Connection[Any]] = psycopg_pool.ConnectionPool(
            self.env.dsn,
            min_size=self.pool_size,
            max_size=self.pool_size,
            kwargs={"autocommit": True},
            open=False,
        )
        pool.open(wait=True)
        self._closers.append(pool.close)
        return pool

    @functools.cached_property
    def db(self) -> Database:
        """An orso_pg Database on the run's schema, pooled like the raw pool."""
        database = Database(
            self.env.base_dsn,
            schema=self.env.schema,
            min_size=self.pool_size,
            max_size=self.pool_size,
        )
        self._closers.append(database.close)
        return database

    def transaction(self) -> tuple[Transaction, Callable[[], object]]:
        """Open a transaction on :attr:`db`; return it and what commits and releases it.

        For per-call variants, whose ``finish`` commits inside the timed region and whose
        ``close`` releases the connection when a call failed (a second call does nothing).
        """
        stack = contextlib.ExitStack()
        return stack.enter_context(self.db.transaction()), stack.close

    @functools.cached_property
    def engine(self) -> Engine:
        """A SQLAlchemy engine on the psycopg 3 dialect, pooled like the others."""
        dsn = self.env.dsn
        engine = create_engine(
            "postgresql+psycopg://",
            creator=lambda: psycopg.connect(dsn),
            pool_size=self.pool_size,
            max_overflow=0,
        )
        self._closers.append(engine.dispose)
        return engine

    @functools.cached_property
    def sessions(self) -> sessionmaker[Session]:
        """SQLAlchemy ORM sessions on :attr:`engine`."""
        return sessionmaker(self.engine)

    def idle(self) -> None:
        """End any transaction a failed variant left open on the raw connection."""
        if "raw" in self.__dict__:
            with contextlib.suppress(psycopg.Error):
                self.raw.rollback()

    def close(self) -> None:
        """Close everything that was opened, newest first."""
        for close in reversed(self._closers):
            with contextlib.suppress(Exception):
                close()
        self._closers.clear()
