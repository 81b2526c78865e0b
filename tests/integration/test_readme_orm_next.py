"""The README sections on expressions, row locks, related rows and raw SQL run as written."""

from __future__ import annotations

import pytest

from tests.conftest import Server
from tests.readme_run import run_section


@pytest.mark.parametrize(
    "section", ["Expressions in updates", "Row locks", "Related rows", "Raw SQL"]
)
def test_readme_block_runs(
    section: str, server: Server, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each block runs unchanged against each server and its own asserts hold."""
    run_section(section, server, schema, monkeypatch)
