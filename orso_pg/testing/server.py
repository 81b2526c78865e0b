"""The PostgreSQL server a test session uses, and a database of its own for each test.

Owns choosing the server (``$ORSO_PG_TEST_DSN``, or an embedded PostgreSQL started in a
directory the caller gives), reading its version, and :func:`isolated_database`: a
:class:`~orso_pg.Database` on a schema made for one test and dropped after it. It must not import
hypothesis or pytest, and runs its statements through sessions like the rest of orso_pg.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import attrs
from psycopg import sql

from orso_pg._compiler import Statement
from orso_pg.session import _embedded
from orso_pg.session._database import Database

__all__ = ["ENV_DSN", "PgServer", "embedded_server", "isolated_database", "session_server"]

#: The environment variable naming the server tests run against (else one is embedded).
ENV_DSN: Final = "ORSO_PG_TEST_DSN"

_VERSION = Statement(sql.SQL("SELECT current_setting('server_version_num')::int / 10000"))


@attrs.frozen
class PgServer:
    """The PostgreSQL server of a test session.

    Attributes:
        dsn: Its connection string.
        version: Its major version (15, 18...).
        embedded: Whether the session started it (and stops it at the end).
    """

    dsn: str
    version: int
    embedded: bool


@contextlib.contextmanager
def session_server(data_dir: Path) -> Iterator[PgServer]:
    """Yield the server named by ``$ORSO_PG_TEST_DSN``, else an embedded one in *data_dir*."""
    dsn = os.environ.get(ENV_DSN)
    if dsn:
        yield PgServer(dsn, _major_version(dsn), embedded=False)
        return
    with embedded_server(data_dir) as server:
        yield server


@contextlib.contextmanager
def embedded_server(data_dir: Path) -> Iterator[PgServer]:
    """Start (or join) the embedded PostgreSQL in *data_dir*; stop and delete it afterwards.

    Several processes may pass the same directory (pytest-xdist workers): the server starts
    once under a lock on the directory, the processes using it are listed in it, and the last
    live one to leave stops it and deletes the directory.

    Raises:
        ConfigError: the server cannot be started; the message says why.
    """
    path, dsn = _embedded.acquire(data_dir, delete_on_stop=True)
    try:
        yield PgServer(dsn, _major_version(dsn), embedded=True)
    finally:
        _embedded.release(path)


def _major_version(dsn: str) -> int:
    with Database(dsn, min_size=1, max_size=1) as db:
        return int(db._read(lambda ex: ex.scalar(_VERSION)))


@contextlib.contextmanager
def isolated_database(admin: Database, dsn: str, *, max_size: int = 4) -> Iterator[Database]:
    """Yield a :class:`Database` on a new, empty schema of its own; drop the schema afterwards.

    The schema comes first on the ``search_path`` of every connection, so unqualified tables
    are created and found there; other tests (and other pytest-xdist workers) each have their
    own. Unlike a rolled-back transaction, work is committed for real, so the code under test
    may open transactions, use several connections and see what it committed.

    Args:
        admin: A database on the same server, used to create and drop the schema.
        dsn: The server's connection string, for the new database's pool.
        max_size: The most connections the new database opens.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    name = f"orso_test_{worker}_{uuid.uuid4().hex[:12]}"
    ident = sql.Identifier(name)
    admin._write(lambda ex: ex.execute(Statement(sql.SQL("CREATE SCHEMA {}").format(ident))))
    try:
        with Database(dsn, schema=name, min_size=1, max_size=max_size) as db:
            yield db
    finally:
        drop = Statement(sql.SQL("DROP SCHEMA {} CASCADE").format(ident))
        admin._write(lambda ex: ex.execute(drop))
