"""The README's Migration tooling section runs as written: its python block and its commands."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from orso_pg.__main__ import main
from tests.conftest import Server
from tests.readme_run import run_section
from tests.test_readme import README, python_block

SECTION = "Migration tooling"


def commands() -> list[list[str]]:
    """Return the ``$ orso-pg ...`` lines of the section's shell block, as argument lists."""
    text = README.read_text(encoding="utf-8")
    start = text.index(f"## {SECTION}\n")
    block = re.compile(r"```text\n(.*?)```", re.DOTALL).search(text, start)
    assert block is not None
    lines = [line for line in block.group(1).splitlines() if line.startswith("$ orso-pg ")]
    return [line.removeprefix("$ orso-pg ").split() for line in lines]


def test_the_python_block_runs_twice(
    server: Server, schema: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    """The dry run names the lossy value, the history shows the steps, the rollback says where."""
    for _ in range(2):
        run_section(SECTION, server, schema, monkeypatch)
        printed = capsys.readouterr().out.splitlines()
        assert printed[0].startswith(
            "quotes: cannot change column bid from double precision to bigint: "
            "the value '189.25' would become '189'"
        )
        record, when, steps = printed[1].split(" ", 2)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+\+00:00", when)
        assert steps.startswith("['rename column symbol to ticker'")
        assert printed[2] == f"back to the schema before record {record}"


def test_the_ci_commands_run_in_order(
    server: Server,
    schema: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
):
    """Each command of the shell block runs against the block's models, with its exit status."""
    run_section(SECTION, server, schema, monkeypatch)  # quotes exists, at Quote's schema
    source = python_block(SECTION)
    model = source[source.index('@table("quotes")\nclass QuoteV2') :]
    model = model[: model.index("\n\n\n")]
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "models.py").write_text(
        "from orso_pg import Orso, column, table\n\n" + textwrap.dedent(model) + "\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ORSO_PG_DSN")
    capsys.readouterr()
    statuses = [main([*args, "--dsn", server.dsn, "--schema", schema]) for args in commands()]
    out = capsys.readouterr().out
    assert statuses == [1, 0, 0, 0, 0, 0, 0, 0]
    assert '-- quotes: rename column symbol to ticker\nALTER TABLE "quotes"' in out
    assert "quotes: would migrate (3 steps), 2 rows kept" in out
    assert "quotes: migrated, 2 rows kept" in out
