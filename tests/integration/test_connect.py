"""The name a Database gives its server agrees with what libpq actually connected to."""

from __future__ import annotations

import pytest
from psycopg.conninfo import make_conninfo

from orso_pg import Database
from tests.conftest import Server


def test_the_server_name_is_where_libpq_connected(server: Server, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("PGUSER", raising=False)
    dsn = make_conninfo(server.dsn, password="not-shown-anywhere")  # noqa: S106 - trust: ignored
    with Database(dsn, min_size=1, max_size=1) as db, db.connection() as conn:
        info = conn.info
        expected = f"{info.user}@{info.host}:{info.port}/{info.dbname}"
        assert db.server == expected
        assert repr(db) == f"<Database {expected} pool=1>"
        assert "not-shown-anywhere" not in repr(db)
