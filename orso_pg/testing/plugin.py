"""The orso_pg pytest plugin: a PostgreSQL for the session and isolated databases for tests.

Load it with ``pytest -p orso_pg.testing.plugin`` (or ``-p orso_pg.testing``), or with
``pytest_plugins = ["orso_pg.testing.plugin"]`` in a root ``conftest.py``. It is not an entry
point on purpose: installing orso_pg does not add fixtures to every pytest run in the
environment. It provides these fixtures (all prefixed ``orso_``, so they do not
clash with a project's own ``db`` or ``server``):

``orso_server`` (session)
    The server: ``$ORSO_PG_TEST_DSN`` when set, else an embedded PostgreSQL started in a new
    directory under the system's temporary directory and deleted at the end (the plugin opts
    in to the embedded server; it needs ``orso_pg[embedded]``). Under pytest-xdist the workers
    of one run share one embedded server.
``orso_db`` (function)
    A :class:`~orso_pg.Database` on a fresh schema of this test's own, dropped afterwards.
    Work is committed for real, so transactions and several connections behave as in
    production. Pair it with ``orso_migrate`` to create tables.
``orso_migrate`` (function)
    ``orso_migrate(*models)`` creates the models' tables in ``orso_db``.
``orso_fresh`` (session)
    ``with orso_fresh(*models) as db:`` gives a transaction holding empty tables of the
    models, all rolled back at the end of the block. Made for hypothesis: being
    session-scoped, it does not trip hypothesis' function-scoped fixture health check, and
    each example opens its own block, so examples never see each other's rows.

It must not import hypothesis: it loads in any pytest run, with or without it.
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from orso_pg.migrate._migrations import MigrationResult
from orso_pg.session._database import Database, Transaction
from orso_pg.testing.server import PgServer, isolated_database, session_server
from orso_pg.testing.tables import fresh_tables, migrate

__all__ = ["orso_db", "orso_fresh", "orso_migrate", "orso_server"]


def _data_dir() -> Path:
    # Under the system's temporary directory rather than pytest's base directory: run as root,
    # the server runs as an unprivileged user, who cannot enter pytest's private directories
    # (and orso_pg never widens permissions outside the data directory).
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if os.environ.get("PYTEST_XDIST_WORKER") and run:
        # The workers of one run share one directory, named after the run, hence one server.
        return Path(tempfile.gettempdir()) / f"orso_pg_{run}"
    return Path(tempfile.mkdtemp(prefix="orso_pg_"))


@pytest.fixture(scope="session")
def orso_server() -> Iterator[PgServer]:
    """The PostgreSQL server of this session (``$ORSO_PG_TEST_DSN`` or an embedded one)."""
    with session_server(_data_dir()) as server:
        yield server


@pytest.fixture(scope="session")
def _orso_admin(orso_server: PgServer) -> Iterator[Database]:
    """A small pool on the server's default schema: creates test schemas, hosts fresh tables."""
    with Database(orso_server.dsn, min_size=1, max_size=4) as db:
        yield db


@pytest.fixture
def orso_db(orso_server: PgServer, _orso_admin: Database) -> Iterator[Database]:
    """A Database on a schema of this test's own, dropped when the test ends."""
    with isolated_database(_orso_admin, orso_server.dsn) as db:
        yield db


@pytest.fixture
def orso_migrate(orso_db: Database) -> Callable[..., list[MigrationResult]]:
    """Create the tables of the models given in ``orso_db``: ``orso_migrate(Trade, Order)``."""
    return functools.partial(migrate, orso_db)


@pytest.fixture(scope="session")
def orso_fresh(_orso_admin: Database) -> Callable[..., AbstractContextManager[Transaction]]:
    """Empty tables of the models given, in a transaction rolled back when the block ends."""
    return functools.partial(fresh_tables, _orso_admin)
