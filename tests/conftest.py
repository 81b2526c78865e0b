"""Test configuration: PostgreSQL servers, isolated databases, markers, hypothesis profiles.

Integration tests run against every server in ``SERVERS``: an embedded PostgreSQL 18 started
once per session in a temporary directory, plus the server named by ``--test-dsn`` /
``ORSO_PG_TEST_DSN``, or else a server answering on 127.0.0.1:5432 (user postgres, database
test) when there is one. Each test gets its own schema, dropped afterwards. Under ``CI=true`` a
server that cannot be reached fails the run instead of skipping it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import psycopg
import pytest
from hypothesis import HealthCheck, settings
from psycopg import sql

from orso_pg import Database
from orso_pg.session import _embedded
from orso_pg.session._cluster import Cluster

settings.register_profile(
    "default",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "ci",
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile("ci" if os.environ.get("CI") else "default")

LOCAL_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test connect_timeout=2"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@attrs.frozen
class Server:
    """A PostgreSQL server the integration tests run against."""

    id: str
    dsn: str
    version: int


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--test-dsn",
        default=os.environ.get("ORSO_PG_TEST_DSN"),
        help="an extra PostgreSQL server for the integration tests (default $ORSO_PG_TEST_DSN)",
    )
    parser.addoption(
        "--no-local-pg",
        action="store_true",
        help="do not probe 127.0.0.1:5432 for a second server",
    )
    parser.addoption(
        "--embedded-only",
        action="store_true",
        help="run the integration tests against the embedded server only",
    )


def _version(dsn: str) -> int:
    with psycopg.connect(dsn, connect_timeout=3) as conn:
        return int(conn.info.server_version) // 10000


def _extra_servers(config: pytest.Config) -> list[Server]:
    if config.getoption("--embedded-only"):
        return []
    dsn = config.getoption("--test-dsn")
    if dsn:
        try:
            version = _version(dsn)
            return [Server(f"pg{version}x", dsn, version)]
        except psycopg.Error as exc:
            if IN_CI:
                msg = f"ORSO_PG_TEST_DSN does not answer: {exc}"
                raise pytest.UsageError(msg) from exc
            return []
    if config.getoption("--no-local-pg"):
        return []
    try:
        version = _version(LOCAL_DSN)
    except psycopg.Error:
        return []
    return [Server(f"pg{version}", LOCAL_DSN, version)]


_EMBEDDED: dict[str, Any] = {}


def _start_embedded() -> Server:
    """Start the session's embedded PostgreSQL (once) and return it."""
    if "server" in _EMBEDDED:
        return _EMBEDDED["server"]  # type: ignore[no-any-return]
    # The new directory is the data directory itself: as root, the server runs as another
    # user, who can enter /tmp but not a directory that mkdtemp made private to root.
    base = Path(tempfile.mkdtemp(prefix="orso_pg_test_"))
    path, dsn = _embedded.acquire(base, delete_on_stop=True)
    version = _version(dsn)
    server = Server(f"pg{version}", dsn, version)
    _EMBEDDED.update(server=server, path=path, base=base)
    return server


def pytest_configure(config: pytest.Config) -> None:
    config._orso_extra = _extra_servers(config)  # type: ignore[attr-defined]


def pytest_unconfigure(config: pytest.Config) -> None:
    for made in (_TEMPLATE.pop("path", None), _TEMPLATE.pop("binaries", None)):
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)
    path = _EMBEDDED.pop("path", None)
    if path is not None:
        _embedded.release(path)
    base = _EMBEDDED.pop("base", None)
    if base is not None:
        shutil.rmtree(base, ignore_errors=True)


def _server_params(config: pytest.Config) -> list[str]:
    extra: list[Server] = config._orso_extra  # type: ignore[attr-defined]
    return ["embedded", *(s.id for s in extra)]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "server" in metafunc.fixturenames:
        metafunc.parametrize(
            "server", _server_params(metafunc.config), indirect=True, scope="session"
        )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.db)


@pytest.fixture(scope="session")
def server(request: pytest.FixtureRequest) -> Server:
    """The PostgreSQL server this test runs against (parametrised over every server)."""
    if request.param == "embedded":
        return _start_embedded()
    extra: list[Server] = request.config._orso_extra  # type: ignore[attr-defined]
    return next(s for s in extra if s.id == request.param)


@contextlib.contextmanager
def isolated_schema(server: Server) -> Iterator[str]:
    """Create a fresh schema on *server*; drop it with everything in it afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture
def schema(server: Server) -> Iterator[str]:
    """A schema of this test's own on the server."""
    with isolated_schema(server) as name:
        yield name


@pytest.fixture
def db(server: Server, schema: str) -> Iterator[Database]:
    """A Database whose connections put this test's own schema first on the search_path."""
    database = Database(server.dsn, schema=schema, min_size=1, max_size=4)
    try:
        yield database
    finally:
        database.close()


@pytest.fixture
def raw(server: Server, schema: str) -> Iterator[psycopg.Connection[Any]]:
    """A plain psycopg connection to the test's schema, for checking what orso_pg wrote."""
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        yield conn


_TEMPLATE: dict[str, Path] = {}


def clone_cluster(path: Path) -> None:
    """Fill the empty directory *path* with a fresh, stopped cluster (a copy of a template).

    ``initdb`` runs once per session, without fsync; a copy takes a fraction of its time.
    """
    if "path" not in _TEMPLATE:
        template = Path(tempfile.mkdtemp(prefix="orso_pg_template_"))
        cluster = Cluster.prepare(template)
        cluster.init(durable=False)
        _TEMPLATE["path"] = template
        if cluster._copy is not None:  # binaries copied for the server's user: never started
            _TEMPLATE["binaries"] = cluster._copy
    # cp -a keeps the owner (the server's user when run as root) and the modes.
    subprocess.run(  # noqa: S603 - cp with paths made here
        ["cp", "-a", f"{_TEMPLATE['path']}/.", str(path)],  # noqa: S607
        check=True,
    )


@pytest.fixture
def empty_embedded_dir() -> Iterator[Path]:
    """A new, empty directory for an embedded server, removed (server stopped) afterwards.

    Made directly under the system's temporary directory: run as root, the server runs as
    another user, who cannot enter pytest's private ``tmp_path``.
    """
    path = Path(tempfile.mkdtemp(prefix="orso_pg_data_"))
    try:
        yield path
    finally:
        Cluster(path, None).stop()  # a server a failed test left running
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def embedded_dir(empty_embedded_dir: Path) -> Path:
    """Like ``empty_embedded_dir``, holding a cluster that initdb made, not yet started."""
    clone_cluster(empty_embedded_dir)
    return empty_embedded_dir


@pytest.fixture(scope="session")
def standby() -> Iterator[Any]:
    """A hot standby of the session's embedded server, made with ``pg_basebackup -R``.

    It runs on a port of its own with the same binaries. When it cannot be made, the tests
    using it are skipped with the reason, except under ``CI=true``, where they fail.
    """
    from orso_pg.testing.standby import Standby

    try:
        made = Standby(_start_embedded().dsn)
    except Exception as exc:  # noqa: BLE001 - any reason is reported
        if IN_CI:
            pytest.fail(f"the hot standby did not start: {exc}")
        pytest.skip(f"no hot standby could be made from the embedded server: {exc}")
    try:
        yield made
    finally:
        made.close()
