"""The command line: ``python -m orso_pg migrate MODULE [--dry-run] [--dsn ...]``."""

from __future__ import annotations

import datetime as dt
import io
import json
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
    sample = re.compile(
        r"```text\n\$ python -m orso_pg migrate \S+ --plan-only\n(.*?)```", re.DOTALL
    )
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


# --- tooling: dry runs, status, sql, history, rollback, server naming, imports ----------------

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> Any:
    """Run ``python -m orso_pg`` as a subprocess, importing this worktree's orso_pg."""
    import os

    environ = {k: v for k, v in os.environ.items() if k != "ORSO_PG_DSN"}
    environ["PYTHONPATH"] = str(ROOT)
    environ.update(env or {})
    return subprocess.run(  # noqa: S603 - our own interpreter and arguments
        [sys.executable, "-m", "orso_pg", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        cwd=cwd or ROOT,
        env=environ,
    )


LOSSY_V1 = """
@table("cli_lossy")
class Bar(Orso):
    id: int | None = column(primary_key=True, default=None)
    close: float
"""

LOSSY_V2 = """
@table("cli_lossy")
class Bar(Orso):
    id: int | None = column(primary_key=True, default=None)
    close: int
"""


def catalog_and_data(raw: Any) -> list[Any]:
    return [
        raw.execute(
            "SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace LEFT JOIN pg_attribute a"
            " ON a.attrelid = c.oid AND a.attnum > 0 WHERE n.nspname = current_schema()"
            " ORDER BY 1, 2"
        ).fetchall(),
        raw.execute(
            "SELECT md5(string_agg(row(id, close)::text, '|' ORDER BY id)) FROM cli_lossy"
        ).fetchone(),
        raw.execute(
            "SELECT id, table_name, action, steps FROM orso_pg_migrations ORDER BY id"
        ).fetchall(),
    ]


def test_a_dry_run_fails_exactly_as_the_real_run(server, schema, raw, tmp_path):
    """A subprocess dry run of a lossy change exits 1 with the real run's message; no change."""
    v1, v2 = write(tmp_path, "cli_lossy_v1", LOSSY_V1), write(tmp_path, "cli_lossy_v2", LOSSY_V2)
    common = ("--dsn", server.dsn, "--schema", schema)
    assert cli("migrate", v1, *common).returncode == 0
    raw.execute(
        "INSERT INTO cli_lossy (close) SELECT g + 0.5 * (g = 42)::int"
        " FROM generate_series(1, 100) g"
    )
    before = catalog_and_data(raw)
    dry = cli("migrate", v2, "--dry-run", *common)
    assert dry.returncode == 1
    assert catalog_and_data(raw) == before
    real = cli("migrate", v2, *common)
    assert real.returncode == 1
    assert catalog_and_data(raw) == before
    message = "orso-pg: cli_lossy: cannot change column close from double precision to bigint"
    dry_lines, real_lines = dry.stderr.splitlines(), real.stderr.splitlines()
    assert dry_lines[1] == real_lines[1]
    assert real_lines[1].startswith(message)
    assert "'42.5' would become" in real_lines[1]
    assert dry_lines[2] == "orso-pg: dry run: the real run would fail; nothing was changed"

    plan = cli("migrate", v2, "--plan-only", *common)  # the plan alone does not check values
    assert plan.returncode == 0
    assert "cli_lossy: would migrate (1 step)" in plan.stdout

    raw.execute("UPDATE cli_lossy SET close = 42 WHERE id = 42")
    dry = cli("migrate", v2, "--dry-run", *common)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.startswith("cli_lossy: would migrate (1 step), 100 rows kept\n")
    assert re.search(
        r"dry run: 1 of 1 table changed, 100 rows checked in [\d.]+ s; all", dry.stdout
    )
    done = cli("migrate", v2, *common)
    assert done.returncode == 0
    assert re.search(
        r"^done: 1 of 1 table changed, 100 rows kept, in [\d.]+ s$", done.stdout, re.MULTILINE
    )


def test_status_exits_0_when_the_tables_match_and_1_with_pending_steps(
    server, schema, raw, tmp_path
):
    """``orso-pg status`` is a CI check: 0 in line, 1 with the steps (or the refusal)."""
    v1, v2 = write(tmp_path, "cli_st_v1", LOSSY_V1), write(tmp_path, "cli_st_v2", LOSSY_V2)
    common = ("--dsn", server.dsn, "--schema", schema)
    missing = cli("status", v1, *common)
    assert missing.returncode == 1
    assert "cli_lossy: would create (1 step)" in missing.stdout
    assert "1 pending step in 1 table" in missing.stderr
    assert main(["migrate", v1, *common]) == 0
    assert cli("status", v1, *common).returncode == 0
    raw.execute("INSERT INTO cli_lossy (close) VALUES (1.5)")
    pending = cli("status", v2, *common)  # the plan: values are checked by --dry-run
    assert pending.returncode == 1
    assert "change type of column close from double precision to bigint" in pending.stdout
    v3 = write(tmp_path, "cli_st_v3", LOSSY_V1 + "    desk: str\n")
    refused = cli("status", v3, *common)
    assert refused.returncode == 1
    assert "cannot add NOT NULL column desk" in refused.stderr


def test_sql_prints_the_statements_for_review(server, schema, tmp_path, capsys):
    """``orso-pg sql`` prints each step's SQL under a comment; --offline needs no server."""
    v1, v2 = write(tmp_path, "cli_sql_v1", V1), write(tmp_path, "cli_sql_v2", V2)
    offline = cli("sql", v1, "--offline")
    assert offline.returncode == 0, offline.stderr
    assert offline.stdout.startswith("-- cli_trades: create table cli_trades\nCREATE TABLE")
    assert "no server" in offline.stderr
    assert run_command(server, schema, "migrate", v1) == 0
    capsys.readouterr()
    assert run_command(server, schema, "sql", v2) == 0
    out = capsys.readouterr().out
    assert '-- cli_trades: rename column symbol to ticker\nALTER TABLE "cli_trades" RENAME' in out
    assert "-- (orso_pg re-encodes the rows between COPY and ALTER)" in out
    assert run_command(server, schema, "sql", v1) == 0
    assert capsys.readouterr().out == "-- cli_trades: matches its model\n"


def run_command(server: Any, schema: str, *args: str) -> int:
    return main([*args, "--dsn", server.dsn, "--schema", schema])


def test_history_and_rollback_from_the_command_line(server, schema, raw, tmp_path, capsys):
    """history lists ISO 8601 times, steps and SQL; rollback undoes the last migration."""
    v1, v2 = write(tmp_path, "cli_h_v1", V1), write(tmp_path, "cli_h_v2", V2)
    assert run_command(server, schema, "history") == 0
    assert capsys.readouterr().out == "no migrations recorded\n"
    assert run_command(server, schema, "migrate", v1) == 0
    raw.execute("INSERT INTO cli_trades (symbol, prices) VALUES ('A', '{1.5}'), ('B', '{2}')")
    assert run_command(server, schema, "migrate", v2) == 0
    capsys.readouterr()
    assert run_command(server, schema, "history", "cli_trades") == 0
    lines = capsys.readouterr().out.splitlines()
    heads = [line for line in lines if not line.startswith(" ")]
    assert len(heads) == 2
    first_id, when, where, action, model = heads[0].split("  ")
    assert dt.datetime.fromisoformat(when).tzinfo is not None
    assert (where, action, model) == (f"{schema}.cli_trades", "table_created", "cli_h_v1.Trade")
    assert heads[1].split("  ")[3:] == ["data_migrated", "cli_h_v2.Trade"]
    assert "  1. rename column symbol to ticker" in lines
    assert '       ALTER TABLE "cli_trades" RENAME COLUMN "symbol" TO "ticker"' in lines

    assert run_command(server, schema, "history", "cli_trades", "--json") == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["action"] for r in records] == ["table_created", "data_migrated"]
    assert records[1]["schema_before"] == records[0]["schema_after"]
    assert records[1]["schema_after"]["renamed"] == {"symbol": "ticker"}
    assert dt.datetime.fromisoformat(records[1]["applied_at"]).tzinfo is not None
    assert run_command(server, schema, "status", v2, "--json") == 0
    (plan,) = json.loads(capsys.readouterr().out)
    assert (plan["table"], plan["action"], plan["steps"]) == ("cli_trades", "schema_matched", [])

    assert run_command(server, schema, "rollback", "cli_trades", "--dry-run") == 0
    out = capsys.readouterr().out
    assert out.startswith("cli_trades: would migrate (")
    assert "rename column ticker to symbol" in out
    assert "  kept: kept column venue (text)" in out
    assert run_command(server, schema, "rollback", "cli_trades") == 0
    out = capsys.readouterr().out
    assert "  note: back to the schema before record " in out
    assert raw.execute("SELECT symbol, prices FROM cli_trades ORDER BY id").fetchall() == [
        ("A", [1.5]),
        ("B", [2.0]),
    ]
    assert run_command(server, schema, "migrate", "--to", first_id, "--drop-columns") == 0
    assert "backup: cli_trades_backup_1" in capsys.readouterr().out
    assert run_command(server, schema, "status", v1) == 0
    assert run_command(server, schema, "rollback", "cli_nothing") == 1
    assert "no migration of this table is recorded" in capsys.readouterr().err
    assert run_command(server, schema, "migrate") == 2
    assert run_command(server, schema, "migrate", v1, "--to", first_id) == 2
    assert "takes no MODULE" in capsys.readouterr().err


def test_the_cli_names_its_server_and_refuses_without_one(server, schema, tmp_path):
    """Every command names the server on stderr; without a DSN it exits 2 saying how to choose."""
    v1 = write(tmp_path, "cli_named", V1)
    for command in (["status", v1], ["history"], ["sql", v1], ["rollback", "x"]):
        refused = cli(*command)
        assert refused.returncode == 2, command
        assert "no PostgreSQL server chosen" in refused.stderr
        assert "--embedded" in refused.stderr
    named = cli("history", env={"ORSO_PG_DSN": server.dsn})
    assert named.returncode == 0
    user, host = server.dsn and psycopg_info(server.dsn)
    assert named.stderr.startswith(f"orso-pg: server {user}@{host}")


def psycopg_info(dsn: str) -> tuple[str, str]:
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(dsn)
    return str(params.get("user")), str(params.get("host"))


def test_the_version(capsys):
    """``orso-pg --version`` prints the installed metadata's version, as orso_pg.__version__."""
    from importlib.metadata import version

    import orso_pg

    assert orso_pg.__version__ == version("orso_pg")
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = orso_pg.nope  # type: ignore[attr-defined]
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out == f"orso-pg {orso_pg.__version__}\n"
    assert cli("--version").stdout == f"orso-pg {orso_pg.__version__}\n"


SIBLING = """
from orso_pg import Orso, column, table
from cli_sibling_base import BASE_NAME
from cli_pkg.names import PACKAGED

@table(BASE_NAME + PACKAGED)
class Thing(Orso):
    id: int | None = column(primary_key=True, default=None)
"""


@pytest.fixture
def sibling_files(tmp_path, monkeypatch):
    """A models file importing a module beside it and a package under the current directory."""
    here = tmp_path / "work"
    (here / "app").mkdir(parents=True)
    (here / "app" / "cli_sibling_base.py").write_text("BASE_NAME = 'cli_sib'\n")
    (here / "cli_pkg").mkdir()
    (here / "cli_pkg" / "__init__.py").write_text("")
    (here / "cli_pkg" / "names.py").write_text("PACKAGED = '_things'\n")
    (here / "app" / "cli_sib_models.py").write_text(SIBLING)
    monkeypatch.setattr(sys, "path", list(sys.path))
    for name in ("cli_sibling_base", "cli_pkg", "cli_pkg.names", "cli_sib_models"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    return here


def test_the_script_imports_modules_beside_the_file_and_packages_here(
    server, schema, sibling_files, monkeypatch, capsys
):
    """``orso-pg migrate app/models.py`` (main(), as the script runs it) imports what -m does."""
    monkeypatch.chdir(sibling_files)
    cwd = str(sibling_files)
    # The console script's sys.path holds its bin directory, not the current one.
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".", cwd)])
    assert run_command(server, schema, "migrate", "app/cli_sib_models.py") == 0
    assert capsys.readouterr().out.startswith("cli_sib_things: created")
    done = cli(
        "migrate",
        "app/cli_sib_models.py",
        "--plan-only",
        "--dsn",
        server.dsn,
        "--schema",
        schema,
        cwd=sibling_files,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "cli_sib_things: matches its model\n"
    assert run_command(server, schema, "status", "cli_pkg.names") == 2
    assert "defines no @table models" in capsys.readouterr().err
    assert run_command(server, schema, "status", "app/missing.py") == 2
    assert "no Python file at app/missing.py" in capsys.readouterr().err


def test_the_commands_in_process(server, schema, raw, tmp_path, capsys):
    """status, sql --offline and a failing dry run, through main() as the script calls it."""
    v1, v2 = write(tmp_path, "cli_ip_v1", LOSSY_V1), write(tmp_path, "cli_ip_v2", LOSSY_V2)
    assert main(["sql", v1, "--offline"]) == 0
    assert capsys.readouterr().out.startswith("-- cli_lossy: create table cli_lossy\n")
    assert run_command(server, schema, "status", v1) == 1
    assert "1 pending step in 1 table" in capsys.readouterr().err
    assert run_command(server, schema, "migrate", v1) == 0
    raw.execute("INSERT INTO cli_lossy (close) VALUES (0.5), (1.5)")
    capsys.readouterr()
    assert run_command(server, schema, "status", v2) == 1
    assert "1 pending step in 1 table" in capsys.readouterr().err
    assert run_command(server, schema, "migrate", v2, "--dry-run") == 1
    err = capsys.readouterr().err.splitlines()
    assert "the value '0.5' would become" in err[1]
    assert err[2] == "orso-pg: dry run: the real run would fail; nothing was changed"
    raw.execute("UPDATE cli_lossy SET close = 1")
    indexed = write(
        tmp_path, "cli_ip_v3", LOSSY_V1.replace("close: float", "close: float = column(index=True)")
    )
    assert run_command(server, schema, "migrate", indexed, "--dry-run", "--concurrent-indexes") == 0
    assert (
        "  [dry run: built by a plain CREATE INDEX in its transaction]" in capsys.readouterr().out
    )
