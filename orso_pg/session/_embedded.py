"""The embedded PostgreSQL: one server per data directory, stopped by its last live user.

Owns the default data directory, the reference count inside this process and the list of
processes using a data directory's server, kept in the data directory itself under a lock on
that directory. Processes that died without letting go (SIGKILL, SIGTERM, a crash) are pruned
from the list whenever another process joins or leaves, so the last live user stops the server.
It must not open connections or pools (it only hands back a DSN), and it runs the server only
through :class:`~orso_pg.session._cluster.Cluster`.

Chosen only explicitly (``ORSO_PG_DSN=embedded`` or ``Database(data_dir=...)``): see
:mod:`orso_pg.session._connect`.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import threading
from pathlib import Path
from typing import Final

import attrs

from orso_pg.errors import ConfigError
from orso_pg.session._cluster import Cluster, Postmaster, locked

__all__ = ["ENV_DATA", "acquire", "default_data_dir", "release", "users"]

#: Names the embedded server's data directory (else :func:`default_data_dir` picks one).
ENV_DATA: Final = "ORSO_PG_DATA"
_USERS: Final = "orso_pg_users.json"
# Two readings of one process's start time differ by rounding only.
_SAME_START = 1.0

_lock = threading.Lock()


@attrs.define
class _Held:
    count: int
    delete_on_stop: bool


_servers: dict[Path, _Held] = {}


def default_data_dir() -> Path:
    """Return ``$ORSO_PG_DATA``, else a per-user directory the server's user can reach.

    ``$XDG_DATA_HOME/orso_pg/pgdata`` (``~/.local/share/orso_pg/pgdata``); as root,
    ``/var/lib/orso_pg/pgdata``, since root's home is closed to the unprivileged user who runs
    the server and orso_pg does not open it.
    """
    configured = os.environ.get(ENV_DATA)
    if configured:
        return Path(configured).expanduser()
    if os.geteuid() == 0:
        return Path("/var/lib/orso_pg/pgdata")
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "orso_pg" / "pgdata"


def acquire(data_dir: Path | None = None, *, delete_on_stop: bool = False) -> tuple[Path, str]:
    """Start (or join) the embedded server in *data_dir*; return the directory and its DSN.

    Args:
        data_dir: The data directory (default :func:`default_data_dir`); created if missing.
        delete_on_stop: Delete the directory when the last user stops the server (tests).

    Raises:
        ConfigError: the server cannot be started; the message says why and what to do.
    """
    path = (data_dir or default_data_dir()).expanduser().resolve()
    with _lock:
        held = _servers.get(path)
        running = Postmaster.read(path) if held is not None else None
        if held is not None and running is not None:
            held.count += 1
            return path, running.dsn()
        try:
            Cluster.check(path)  # before the lock, which creates the directory
            with locked(path):
                cluster = Cluster.prepare(path)
                server = Postmaster.read(path)
                if server is None:
                    if not cluster.initialized():
                        cluster.init(durable=not delete_on_stop)
                    server = cluster.start()
                _write_users(path, [*_live(path), _me()])
        except OSError as exc:
            msg = f"cannot start the embedded PostgreSQL in {path}: {exc}"
            raise ConfigError(msg, value=str(path)) from exc
        count = held.count + 1 if held is not None else 1
        _servers[path] = _Held(count, delete_on_stop)
        return path, server.dsn()


def release(path: Path) -> None:
    """Drop one reference to the server in *path*; stop it when no live process uses it."""
    with _lock:
        held = _servers.get(path)
        if held is None:
            return
        if held.count > 1:
            held.count -= 1
            return
        del _servers[path]
        _leave(path, delete=held.delete_on_stop)


def _leave(path: Path, *, delete: bool) -> None:
    if not path.is_dir():
        return
    with locked(path):
        me = _me()
        others = [u for u in _live(path) if u[0] != me[0]]
        if others:
            _write_users(path, others)
            return
        Cluster(path, None).stop()
        if delete:
            shutil.rmtree(path, ignore_errors=True)
        else:
            (path / _USERS).unlink(missing_ok=True)


def users(path: Path) -> list[int]:
    """Return the pids of the live processes using the server in *path*."""
    return [pid for pid, _ in _live(path)]


def _me() -> tuple[int, float]:
    return os.getpid(), _started(os.getpid()) or 0.0


def _started(pid: int) -> float | None:
    """Return when process *pid* started, or None when there is no such process."""
    import psutil

    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return float(process.create_time())
    except psutil.Error:
        return None


def _live(path: Path) -> list[tuple[int, float]]:
    """Return the users listed in *path* whose process still runs (a pid reused since fails)."""
    try:
        listed = json.loads((path / _USERS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    live = []
    for pid, started in listed:
        now = _started(int(pid))
        if now is not None and abs(now - float(started)) < _SAME_START:
            live.append((int(pid), float(started)))
    return live


def _write_users(path: Path, entries: list[tuple[int, float]]) -> None:
    temporary = path / f"{_USERS}.tmp"
    temporary.write_text(json.dumps(entries), encoding="utf-8")
    temporary.replace(path / _USERS)


@atexit.register
def _release_all() -> None:
    """Let go of every server this process still holds (a Database never closed)."""
    for path in list(_servers):
        held = _servers.get(path)
        if held is not None:
            held.count = 1
            release(path)
