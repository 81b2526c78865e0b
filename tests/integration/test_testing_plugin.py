"""The pytest plugin as users run it: pytest in a subprocess, in a directory of its own.

The README example runs against each test server through ``ORSO_PG_TEST_DSN``; the xdist test
lets the plugin start its own embedded PostgreSQL, the path a new user takes.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import textwrap
import uuid
from pathlib import Path

import pytest

from orso_pg.testing import plugin
from tests.conftest import Server

README = Path(__file__).resolve().parents[2] / "README.md"
TIMEOUT = 300


def readme_example() -> str:
    """Return the python block of the README's "Testing your models" section."""
    text = README.read_text(encoding="utf-8")
    start = text.index("## Testing your models\n")
    match = re.compile(r"```python\n(.*?)```", re.DOTALL).search(text, start)
    assert match is not None
    return match.group(1)


def pytest_command(directory: Path, basetemp: Path, *args: str) -> list[str]:
    """Return the command running pytest on *directory* with the plugin and nothing of ours."""
    return [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "orso_pg.testing.plugin",
        "-p",
        "no:cacheprovider",
        "-q",
        f"--rootdir={directory}",
        f"--basetemp={basetemp}",
        *args,
    ]


def clean_env(**extra: str) -> dict[str, str]:
    """Return this environment without the settings of the outer test run."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ORSO_PG", "PYTEST_", "COV_", "COVERAGE_", "HYPOTHESIS"))
    }
    env.update(extra)
    return env


# Fewer examples than hypothesis' default 100: the example file itself stays as written.
FEWER_EXAMPLES = textwrap.dedent(
    """
    from hypothesis import settings

    settings.register_profile("readme", max_examples=25)
    settings.load_profile("readme")
    """
)


def test_the_package_loads_as_the_plugin_too(tmp_path: Path):
    """``-p orso_pg.testing`` brings the same fixtures as ``-p orso_pg.testing.plugin``."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "orso_pg.testing", "--fixtures", "-q"],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode in (0, 5), done.stdout + done.stderr  # 5: no tests collected
    for fixture in plugin.__all__:
        assert re.search(rf"^{fixture}\b", done.stdout, re.MULTILINE), done.stdout


@pytest.mark.slow
def test_the_readme_example_passes_in_a_fresh_project(tmp_path: Path, server: Server):
    """The README's property test passes as written, with only the plugin to help it."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "test_trades.py").write_text(readme_example(), encoding="utf-8")
    (project / "conftest.py").write_text(FEWER_EXAMPLES, encoding="utf-8")
    done = subprocess.run(  # noqa: S603 - this interpreter running pytest
        pytest_command(project, tmp_path / "basetemp", "test_trades.py"),
        cwd=project,
        env=clean_env(ORSO_PG_TEST_DSN=server.dsn),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout


WORKER_TESTS = textwrap.dedent(
    '''
    import os
    import time
    from pathlib import Path

    from orso_pg import Orso, column, table

    OUT = Path(os.environ["OUT"])
    WORKER = os.environ["PYTEST_XDIST_WORKER"]


    @table("notes")
    class Note(Orso):
        id: int | None = column(primary_key=True, default=None)
        body: str


    def test_workers_share_one_embedded_server(orso_server, orso_fresh):
        """Both workers reach the same postmaster, started once."""
        assert orso_server.embedded
        assert orso_server.version >= 15
        with orso_fresh() as db:
            row = db.connection.execute("SELECT pg_postmaster_start_time()::text").fetchone()
        (OUT / WORKER).write_text(row[0])
        other = OUT / ("gw1" if WORKER == "gw0" else "gw0")
        deadline = time.monotonic() + 120
        while not other.exists():
            assert time.monotonic() < deadline, "the other worker never started"
            time.sleep(0.05)
        time.sleep(0.2)
        assert other.read_text() == row[0]


    def test_orso_db_is_a_schema_of_this_worker(orso_db, orso_migrate):
        """orso_db works in a schema named after the worker; orso_migrate creates tables there."""
        assert orso_db.schema.startswith(f"orso_test_{WORKER}_")
        orso_migrate(Note)
        Note(body=WORKER).insert(orso_db)
        assert [n.body for n in Note.find_all(orso_db)] == [WORKER]


    def test_the_next_test_gets_an_empty_schema(orso_db, orso_migrate):
        """Nothing of the previous test's schema is left."""
        orso_migrate(Note)
        assert Note.count(orso_db) == 0


    def test_fresh_tables_are_undone(orso_fresh):
        """Rows written inside one orso_fresh block are gone in the next."""
        with orso_fresh(Note) as db:
            Note(body="x").insert(db)
            assert Note.count(db) == 1
        with orso_fresh(Note) as db:
            assert Note.count(db) == 0
    '''
)


@pytest.mark.slow
def test_xdist_workers_share_one_server_and_clean_it_up(tmp_path: Path):
    """Two workers of one run share the embedded server; the last one out deletes it."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "test_notes.py").write_text(WORKER_TESTS, encoding="utf-8")
    out = tmp_path / "out"
    out.mkdir()
    run = tmp_path / "run"  # what pytest-xdist gives: one base directory per worker below it
    run.mkdir()
    run_id = uuid.uuid4().hex
    workers = {
        name: subprocess.Popen(  # noqa: S603 - this interpreter running pytest
            pytest_command(project, run / f"popen-{name}", "test_notes.py"),
            cwd=project,
            env=clean_env(PYTEST_XDIST_WORKER=name, PYTEST_XDIST_TESTRUNUID=run_id, OUT=str(out)),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name in ("gw0", "gw1")
    }
    for name, proc in workers.items():
        output, _ = proc.communicate(timeout=TIMEOUT)
        assert proc.returncode == 0, f"{name}:\n{output}"
        assert "4 passed" in output
    assert (out / "gw0").read_text() == (out / "gw1").read_text()
    assert not (Path(tempfile.gettempdir()) / f"orso_pg_{run_id}").exists()


def test_data_dir_is_per_run_alone_and_shared_between_xdist_workers(
    monkeypatch: pytest.MonkeyPatch,
):
    """Alone, each session gets a new directory; the xdist workers of one run share one."""
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    alone, other = plugin._data_dir(), plugin._data_dir()
    try:
        assert alone.is_dir()
        assert alone != other
        assert alone.parent == Path(tempfile.gettempdir())
    finally:
        alone.rmdir()
        other.rmdir()
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw3")
    monkeypatch.setenv("PYTEST_XDIST_TESTRUNUID", "abc123")
    assert plugin._data_dir() == Path(tempfile.gettempdir()) / "orso_pg_abc123"
