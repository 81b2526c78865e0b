"""Which server a :class:`~orso_pg.Database` talks to, and over what: DSN and TLS rules.

Owns the choice of server (the ``dsn`` argument, else ``$ORSO_PG_DSN``, else the embedded
server when the code asks for it with ``data_dir=``; nothing at all is refused), the TLS
requirement (``require_tls=True``), and naming a server without its password. It must not open
connections or pools: the embedded server is started through
:mod:`orso_pg.session._embedded`, imported only when it is chosen (it is an extra).

The rules, in order:

1. ``dsn="embedded"`` (as the argument or as ``$ORSO_PG_DSN``) is the embedded server, in
   ``data_dir`` or ``$ORSO_PG_DATA`` or the default directory.
2. Any other ``dsn`` argument is used as given (with ``data_dir`` too, it is a ConfigError).
3. Else ``$ORSO_PG_DSN``, so a deployment can point code written with ``data_dir=`` at its
   server.
4. Else ``data_dir=`` in code chooses the embedded server in that directory.
5. Else nothing was chosen: a ConfigError says how to choose, so a deployment whose secret
   went missing fails at once instead of writing to a private cluster.
"""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import Final

import attrs
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from orso_pg.errors import ConfigError

__all__ = ["EMBEDDED", "ENV_DSN", "NO_SERVER", "Target", "choose", "describe", "secure"]

#: The DSN that chooses the embedded server.
EMBEDDED: Final = "embedded"
#: The environment variable naming the server when the code gives no DSN.
ENV_DSN: Final = "ORSO_PG_DSN"
#: Why no server was chosen, and how to choose one.
NO_SERVER: Final = (
    "no PostgreSQL server chosen: pass a DSN (Database('postgresql://user@host/dbname')) or "
    f"set {ENV_DSN} to one; for the embedded PostgreSQL set {ENV_DSN}=embedded or pass "
    "Database(data_dir=...)"
)
_VERIFIED: Final = ("verify-full", "verify-ca")


@attrs.frozen
class Target:
    """The chosen server: its DSN, and the embedded server's data directory when it is one."""

    dsn: str
    embedded: Path | None = None


def choose(dsn: str | None, data_dir: str | os.PathLike[str] | None) -> Target:
    """Return the server named by the rules above, starting the embedded one if chosen.

    Raises:
        ConfigError: no server was chosen, the choice contradicts itself, or the embedded
            server cannot start.
    """
    directory = Path(data_dir) if data_dir is not None else None
    if dsn is not None and dsn.strip() != EMBEDDED and directory is not None:
        msg = "give either a DSN or data_dir (the embedded server's directory), not both"
        raise ConfigError(msg, value=dsn)
    if dsn is None:
        dsn = os.environ.get(ENV_DSN) or None
    if dsn is not None and dsn.strip() != EMBEDDED:
        return Target(dsn)
    if dsn is None and directory is None:
        raise ConfigError(NO_SERVER)
    try:
        from orso_pg.session import _embedded
    except ImportError as exc:  # pragma: no cover - fcntl, pwd: not on Windows
        msg = f"the embedded PostgreSQL needs a POSIX system: {exc}"
        raise ConfigError(msg) from exc
    path, embedded_dsn = _embedded.acquire(directory)
    return Target(embedded_dsn, path)


def secure(dsn: str, *, require_tls: bool) -> str:
    """Apply ``require_tls`` to *dsn*: return it, with ``sslmode=verify-full`` if it had none.

    With ``require_tls=True`` every TCP connection must be TLS with a verified server
    certificate: a DSN without ``sslmode`` (and no ``$PGSSLMODE``) gets ``verify-full``; one
    that says ``verify-full`` or ``verify-ca`` is kept; any weaker mode is refused before any
    connection is tried. Unix-domain sockets never leave the machine and are left alone.

    Raises:
        ConfigError: TLS is required and the DSN asks for less.
    """
    if not require_tls:
        return dsn
    params = conninfo_to_dict(dsn)
    hosts = str(params.get("host") or os.environ.get("PGHOST") or "").split(",")
    over_tcp = bool(params.get("hostaddr")) or any(
        h and not h.startswith(("/", "@")) for h in hosts
    )
    if not over_tcp:
        return dsn
    mode = str(params.get("sslmode") or os.environ.get("PGSSLMODE") or "")
    if not mode:
        return make_conninfo(dsn, sslmode="verify-full")
    if mode in _VERIFIED:
        return make_conninfo(dsn, sslmode=mode)
    msg = (
        f"require_tls=True refuses sslmode={mode} for {describe(dsn)}: it does not verify who "
        "answers (or allows clear text); use sslmode=verify-full with sslrootcert=<the CA "
        "certificate>, or leave sslmode out and orso_pg sets verify-full"
    )
    raise ConfigError(msg, value=mode)


def describe(dsn: str, embedded: Path | None = None) -> str:
    """Name a server as ``user@host:port/dbname``, or ``embedded server in DIR``.

    Values missing from *dsn* come from libpq's environment variables, as libpq takes them.
    Never includes the password.
    """
    if embedded is not None:
        return f"embedded server in {embedded}"
    params = conninfo_to_dict(dsn)
    env = os.environ
    user = str(params.get("user") or env.get("PGUSER") or _os_user())
    host = str(params.get("host") or params.get("hostaddr") or env.get("PGHOST") or "")
    port = str(params.get("port") or env.get("PGPORT") or "5432")
    dbname = str(params.get("dbname") or env.get("PGDATABASE") or user)
    if not host:
        host = "(local socket)"
    elif ":" in host and "," not in host and not host.startswith("/"):
        host = f"[{host}]"  # an IPv6 address
    return f"{user}@{host}:{port}/{dbname}"


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # pragma: no cover - a uid with no passwd entry
        return "?"
