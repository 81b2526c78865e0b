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
