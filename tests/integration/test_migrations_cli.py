"""The command line: ``python -m orso_pg migrate MODULE [--dry-run] [--dsn ...]``."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import textwrap
import types
from pathlib import Path
from typing import Any

import pytest
from psycopg.conninfo import make_conninfo

from orso_pg import Migrations, migration
from orso_pg.__main__ import format_plans, main, progress_bar
from orso_pg.migrate._migrations import MigrationAction, MigrationPlan

HEADER = """
from orso_pg import Orso, column, migration, table
"""

V1 = """
@table("cli_trades")
class Trade(Orso):
    id: int | None = column(primary_key=True, default=None)
    symbol: str
    prices: list[float] = column(factory=list)
"""

V2 = """
@table("cli_trades")
class Trade(Orso):
    id: int | None = column(primary_key=True, default=None)
    ticker: str = column(renamed_from="symbol")
    prices: list[float] = column(factory=list, compress=True)
    venue: str = "XNAS"
"""

V3 = V2 + "    desk: str\n"  # a NOT NULL field without a default


def write(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(HEADER + body))
    return str(path)


def run(server: Any, schema: str, *args: str) -> int:
    return main(["migrate", *args, "--dsn", server.dsn, "--schema", schema])


def test_dry_run_then_apply_then_refuse(server, schema, raw, tmp_path, capsys):
    """A dry run changes nothing, the migration applies the printed steps, a refusal exits 1."""
    v1, v2, v3 = (write(tmp_path, f"cli_v{n}", body) for n, body in ((1, V1), (2, V2), (3, V3)))
    assert run(server, schema, v1, "--dry-run") == 0
    assert "cli_trades: would create (1 step)" in capsys.readouterr().out
    assert raw.execute("SELECT to_regclass('cli_trades')").fetchone() == (None,)

    assert run(server, schema, v1) == 0
    assert capsys.readouterr().out.startswith("cli_trades: created")
    raw.execute(
        "INSERT INTO cli_trades (symbol, prices) SELECT 'S' || g, ARRAY[g, g + 0.5]"
        " FROM generate_series(1, 3000) g"
    )

    assert run(server, schema, v2, "--dry-run") == 0
    out = capsys.readouterr().out
    assert "cli_trades: would migrate (3 steps)" in out
    assert 'RENAME COLUMN "symbol" TO "ticker"' in out
    assert "[rewrites the table]" in out
    assert raw.execute("SELECT count(*) FROM cli_trades WHERE symbol IS NOT NULL").fetchone() == (
        3000,
    )

    assert run(server, schema, v2) == 0
    out = capsys.readouterr().out
    assert "cli_trades: migrated, 3000 rows kept" in out
    assert "done: rename column symbol to ticker" in out
    assert run(server, schema, v2, "--dry-run") == 0
    assert capsys.readouterr().out.split("\n")[0] == "cli_trades: matches its model"
    assert run(server, schema, v2, "--plan-only") == 0
    assert capsys.readouterr().out.strip() == "cli_trades: matches its model"

    assert run(server, schema, v3) == 1
    assert "cannot add NOT NULL column desk" in capsys.readouterr().err


def test_a_migrations_list_names_custom_tables(server, schema, raw, tmp_path, capsys):
    """A module's MIGRATIONS list decides the entries, custom table names included."""
    body = V1 + '\nMIGRATIONS = [migration(Trade, "cli_trades_2024")]\n'
    assert run(server, schema, write(tmp_path, "cli_list", body)) == 0
    assert capsys.readouterr().out.startswith("cli_trades_2024: created")
    assert raw.execute("SELECT to_regclass('cli_trades')").fetchone() == (None,)


def test_modules_without_models_or_that_do_not_import_are_usage_errors(
    server, schema, tmp_path, capsys
):
    """No models, or no module at all, exits 2 with a message."""
    assert run(server, schema, write(tmp_path, "cli_empty", "X = 1\n")) == 2
    assert "defines no @table models" in capsys.readouterr().err
    assert run(server, schema, "no_such_module_for_orso") == 2
    assert "cannot import no_such_module_for_orso" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([])


def test_python_dash_m_runs_the_command_line(server, schema, tmp_path):
    """``python -m orso_pg migrate FILE --dry-run`` prints the plan and exits 0."""
    path = write(tmp_path, "cli_subprocess", V1)
    done = subprocess.run(  # noqa: S603 - our own interpreter and arguments
        [
            sys.executable,
            "-m",
            "orso_pg",
            "migrate",
            path,
            "--dry-run",
            "--dsn",
            server.dsn,
            "--schema",
            schema,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "cli_trades: would create" in done.stdout


class Terminal(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_the_progress_bar_draws_on_a_terminal_only():
    """tqdm bars appear on a terminal and close at the total; elsewhere there is no callback."""
    assert progress_bar(io.StringIO()) is None
    screen = Terminal()
    report = progress_bar(screen)
    assert report is not None
    report("assets.prices", 500, 1000)
    report("assets.prices", 1000, 1000)
    assert "assets.prices" in screen.getvalue()
    assert "1000/1000" in screen.getvalue()


def test_plans_print_their_kept_notes():
    """Notes of kept columns are printed under their table."""
    plan = MigrationPlan("t", MigrationAction.SCHEMA_MATCHED, notes=("kept column x",))
    assert format_plans([plan]) == "t: matches its model\n  kept: kept column x"


def test_the_readme_migrations_example_runs(server, schema, db, raw, monkeypatch, capsys):
    """The README's Migrations block runs as written, and its dry run prints what it shows."""
    from tests.test_readme import README, python_block

    monkeypatch.setenv("ORSO_PG_DSN", make_conninfo(server.dsn, options=f"-c search_path={schema}"))
    module = types.ModuleType("readme_migrations")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    code = compile(python_block("Migrations"), "README.md", "exec")
    exec(code, module.__dict__)  # noqa: S102 - the README's own example
    out = capsys.readouterr().out
    assert "rename column symbol to ticker" in out
    assert "[rewrites]" in out
    assert module.__dict__["result"].rows_migrated == 1000

    # The README's shell sample: the dry run from Candle to CandleV2, its SQL of step 3 cut.
    text = README.read_text(encoding="utf-8")
    sample = re.compile(r"```text\n\$ python -m orso_pg migrate \S+ --dry-run\n(.*?)```", re.DOTALL)
    found = sample.search(text, text.index("## Migrations\n"))
    assert found is not None
    shown = found.group(1).rstrip("\n").split("\n")
    raw.execute("DROP TABLE candles")
    Migrations.init(db, [migration(module.__dict__["Candle"])])
    printed = format_plans(Migrations.plan(db, [migration(module.__dict__["CandleV2"])]))
    cut = shown.index("       ...")
    lines = printed.split("\n")
    assert lines[:cut] == shown[:cut]
    assert lines[len(lines) - len(shown) + cut + 1 :] == shown[cut + 1 :]
