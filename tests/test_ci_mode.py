"""Under CI=true a test server that does not answer fails the run instead of being skipped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEAD = "host=127.0.0.1 port=1 connect_timeout=1"


def collect(ci: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CI": ci, "ORSO_PG_TEST_DSN": DEAD}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "tests/unit/test_errors.py"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_dead_test_server_fails_under_ci():
    """With CI=true, an ORSO_PG_TEST_DSN that does not answer stops the run with a usage error."""
    result = collect("true")
    assert result.returncode != 0
    assert "ORSO_PG_TEST_DSN does not answer" in result.stdout + result.stderr


def test_a_dead_test_server_is_skipped_locally():
    """Without CI, the same setting only drops that server from the run."""
    assert collect("").returncode == 0


RM_RF_PLUGIN = """
import warnings

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session):
    # What pytest's own clean-up of old temporary directories warns when another pytest
    # process removed them first.
    warnings.warn(pytest.PytestWarning("(rm_rf) error removing pytest-of-x/y: busy"))
"""


def test_a_temp_directory_clean_up_warning_cannot_hide_the_failures(tmp_path: Path):
    """With the project's settings (warnings are errors), the failure summary still prints."""
    (tmp_path / "rm_rf_plugin.py").write_text(RM_RF_PLUGIN)
    (tmp_path / "test_fails.py").write_text("def test_fails():\n    assert 1 == 2\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    args = ["-c", str(ROOT / "pyproject.toml"), f"--rootdir={ROOT}", "-p", "rm_rf_plugin"]
    result = subprocess.run(  # noqa: S603 - this interpreter running pytest
        [sys.executable, "-m", "pytest", *args, str(tmp_path / "test_fails.py")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert "short test summary info" in result.stdout
    assert "FAILED" in result.stdout
    assert "test_fails" in result.stdout
    assert "INTERNALERROR" not in result.stdout + result.stderr
