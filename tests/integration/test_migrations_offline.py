"""``orso-pg sql MODULE --from-schema FILE``: the SQL planned from a recorded schema, offline.

The offline SQL must equal what ``orso-pg sql`` prints against the live server for the same
change; the recorded schema comes from ``orso-pg schema`` or ``orso-pg history --json``.
Each offline plan starts a scratch embedded PostgreSQL (hence ``own_server``).
"""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from orso_pg.__main__ import EXIT_STATUSES, main
from orso_pg.errors import ValidationError
from orso_pg.migrate._offline import recorded_tables
from tests.integration.test_migrations_cli import cli

HEADER = """
from orso_pg import Orso, column, table
"""

BASE = """
@table("off_items")
class Item(Orso):
    id: int | None = column(primary_key=True, default=None)
    symbol: str = column(index=True)
    price: float
    qty: int | None = None
"""

# Each kind of change, as the next version of BASE.
CHANGES = {
    "add": BASE + '    venue: str = "XNAS"\n    note: str | None = None\n',
    "rename": BASE.replace(
        "symbol: str = column(index=True)",
        'ticker: str = column(index=True, renamed_from="symbol")',
    ),
    "type_change": BASE.replace("price: float", "price: str"),
    "index": BASE.replace("price: float", "price: float = column(index=True)").replace(
        "symbol: str = column(index=True)", "symbol: str"
    ),
    "not_null": BASE.replace("qty: int | None = None", "qty: int = 0"),
    "decompress": BASE + "    prices: list[float] = column(factory=list)\n",
}
# The version each change starts from (BASE unless named here).
BEFORE = {"decompress": BASE + "    prices: list[float] = column(factory=list, compress=True)\n"}


# A step each change's SQL must hold (so that the comparison is not of two empty plans).
EXPECTED = {
    "add": "-- off_items: add column venue text NOT NULL, existing rows set to the model default",
    "rename": 'ALTER TABLE "off_items" RENAME COLUMN "symbol" TO "ticker";',
    "type_change": "-- off_items: change type of column price from double precision to text",
    "index": "-- off_items: drop index off_items_symbol_idx (symbol)",
    "not_null": 'ALTER TABLE "off_items" ALTER COLUMN "qty" SET NOT NULL;',
    "decompress": "-- (orso_pg re-encodes the rows between COPY and ALTER)",
}


def write(folder: Path, name: str, body: str) -> str:
    path = folder / f"{name}.py"
    path.write_text(textwrap.dedent(HEADER + body))
    return str(path)


def run(capsys: Any, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.own_server
@pytest.mark.parametrize("kind", sorted(CHANGES))
def test_offline_sql_equals_the_online_sql(kind, server, schema, raw, tmp_path, capsys):
    """schema > FILE, then sql --from-schema FILE prints what sql prints against the server."""
    common = ("--dsn", server.dsn, "--schema", schema)
    before = write(tmp_path, f"off_{kind}_v1", BEFORE.get(kind, BASE))
    after = write(tmp_path, f"off_{kind}_v2", CHANGES[kind])
    assert run(capsys, "migrate", before, *common)[0] == 0
    rows = [("A", 1.0), ("B", 2.5)] if kind not in BEFORE else []  # frames need the model
    for symbol, price in rows:
        raw.execute(
            "INSERT INTO off_items (symbol, price, qty) VALUES (%s, %s, 1)", (symbol, price)
        )
    code, document, err = run(capsys, "schema", before, *common)
    assert code == 0, err
    assert err.startswith("orso-pg: server ")
    recorded = json.loads(document)
    assert (recorded["format"], recorded["server"]) == (1, err.split("server ", 1)[1].strip())
    (table,) = recorded["tables"]
    assert (table["schema"], table["table"]) == (schema, "off_items")
    assert table["owned"]["indexes"] == [
        {"columns": ["symbol"], "method": "btree", "unique": False}
    ]
    file = tmp_path / "schema.json"
    file.write_text(document)

    code, online, err = run(capsys, "sql", after, *common)
    assert code == 0, err
    assert EXPECTED[kind] in online
    code, offline, err = run(capsys, "sql", after, "--from-schema", str(file))
    assert code == 0, err
    assert offline == online
    assert "orso-pg: server" not in err
    assert f"recorded schema in {file} (1 table) in a scratch embedded server in " in err
    assert "orso-pg migrate --dry-run makes them" in err
    # Nothing was changed on the server by either.
    assert raw.execute("SELECT symbol, price FROM off_items ORDER BY id").fetchall() == rows


@pytest.mark.own_server
def test_offline_sql_from_the_history_as_a_subprocess(server, schema, tmp_path):
    """history --json (or stdin) is a recorded schema too; python -m orso_pg runs it all."""
    common = ("--dsn", server.dsn, "--schema", schema)
    before = write(tmp_path, "off_sub_v1", BASE)
    after = write(tmp_path, "off_sub_v2", CHANGES["rename"] + '    venue: str = "XNAS"\n')
    assert cli("migrate", before, *common).returncode == 0
    history = cli("history", "--json", *common)
    assert history.returncode == 0, history.stderr
    file = tmp_path / "history.json"
    file.write_text(history.stdout)
    online = cli("sql", after, *common)
    assert online.returncode == 0, online.stderr
    assert "rename column symbol to ticker" in online.stdout
    offline = cli("sql", after, "--from-schema", str(file))
    assert offline.returncode == 0, offline.stderr
    assert offline.stdout == online.stdout
    assert "scratch embedded server in " in offline.stderr

    schema_doc = cli("schema", before, *common)
    assert schema_doc.returncode == 0
    piped = tmp_path / "piped.json"
    piped.write_text(schema_doc.stdout)
    import subprocess
    import sys

    from tests.integration.test_migrations_cli import ROOT

    done = subprocess.run(  # noqa: S603 - our own interpreter and arguments
        [sys.executable, "-m", "orso_pg", "sql", after, "--from-schema", "-"],
        input=schema_doc.stdout,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        cwd=ROOT,
        env={**_environ(), "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == online.stdout


def _environ() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "ORSO_PG_DSN"}


@pytest.mark.own_server
def test_an_offline_plan_refuses_what_the_online_plan_refuses(server, schema, tmp_path, capsys):
    """A refusal the planner makes from the schema alone exits 1 offline too."""
    common = ("--dsn", server.dsn, "--schema", schema)
    before = write(tmp_path, "off_ref_v1", BASE)
    assert run(capsys, "migrate", before, *common)[0] == 0
    file = tmp_path / "schema.json"
    file.write_text(run(capsys, "schema", before, *common)[1])
    rekeyed = BASE.replace("column(primary_key=True, default=None)", "None").replace(
        "symbol: str = column(index=True)", "symbol: str = column(primary_key=True)"
    )
    keyless = write(tmp_path, "off_ref_v2", rekeyed)
    online = run(capsys, "sql", keyless, *common)
    offline = run(capsys, "sql", keyless, "--from-schema", str(file))
    assert online[0] == offline[0] == 1
    assert "changing a primary key is not done automatically" in online[2]
    assert online[2].splitlines()[-1] == offline[2].splitlines()[-1]


def test_bad_recorded_schemas_are_usage_errors(tmp_path, capsys):
    """A file that is missing, not JSON or not a recorded schema exits 2 naming it."""
    models = write(tmp_path, "off_bad", BASE)
    missing = str(tmp_path / "missing.json")
    code, out, err = run(capsys, "sql", models, "--from-schema", missing)
    assert (code, out) == (2, "")
    assert f"cannot read the recorded schema {missing}" in err
    for text, words in (
        ("{", "Expecting"),
        ('{"format": 9, "tables": []}', "unknown format 9"),
        ('[{"table": "x"}]', "not a recorded table schema"),
        ("3", "expected a JSON object or array"),
    ):
        file = tmp_path / "bad.json"
        file.write_text(text)
        code, _, err = run(capsys, "sql", models, "--from-schema", str(file))
        assert code == 2
        assert words in err
    code, _, err = run(capsys, "sql", models, "--from-schema", str(file), "--dsn", "x")
    assert code == 2
    assert "talks to no other" in err
    with pytest.raises(ValidationError, match=r"history\.json: not a recorded"):
        recorded_tables(
            [{"schema_after": None, "schema": "s", "table": "t"}, 1], source="history.json"
        )
    assert recorded_tables([{"schema_after": None, "schema": "s", "table": "t"}]) == []


def test_every_command_documents_its_exit_statuses(capsys):
    """--help of the tool and of every command ends with what 0, 1 and 2 mean."""
    commands = ["migrate", "status", "sql", "schema", "history", "rollback"]
    assert sorted(EXIT_STATUSES) == sorted(["orso-pg", *commands])
    for argv in ([], *([c] for c in commands)):
        with pytest.raises(SystemExit) as done:
            main([*argv, "--help"])
        assert done.value.code == 0
        text = capsys.readouterr().out
        assert "exit status:\n  0  " in text
        assert "\n  1  " in text
        assert "\n  2  usage or configuration error" in text


def test_configuration_errors_exit_2_naming_the_server(server, schema, tmp_path, capsys):
    """An unreachable server, a missing --schema or a bad --lock-timeout exit 2, not 1."""
    models = write(tmp_path, "off_cfg", BASE)
    code, _, err = run(capsys, "status", models, "--dsn", "host=127.0.0.1 port=1 user=nobody")
    assert code == 2
    assert "cannot connect to PostgreSQL at nobody@127.0.0.1:1/" in err
    code, _, err = run(capsys, "status", models, "--dsn", server.dsn, "--schema", "no_such_sch")
    assert code == 2
    assert err.splitlines()[-1].startswith("orso-pg: there is no schema no_such_sch on ")


def test_options_of_running_commands_are_refused_by_planning_ones(server, schema, tmp_path, capsys):
    """--dry-run and --lock-timeout belong to migrate and rollback: status refuses them (2)."""
    models = write(tmp_path, "off_opts", BASE)
    for command in ("status", "sql"):
        for option in (["--dry-run"], ["--lock-timeout", "1"]):
            with pytest.raises(SystemExit) as done:
                main([command, models, *option, "--dsn", server.dsn])
            assert done.value.code == 2
            assert f"unrecognized arguments: {' '.join(option)}" in capsys.readouterr().err
    code, _, err = run(capsys, "status", models, "--dsn", server.dsn, "--schema", schema)
    assert code == 1
    named = err.splitlines()[0].removeprefix("orso-pg: server ")
    assert err.splitlines()[-1] == (
        f"orso-pg: 2 pending steps in 1 table on {named}; run orso-pg migrate"
    )


@pytest.mark.own_server
def test_what_cannot_be_recreated_offline_is_said(server, schema, tmp_path, capsys):
    """A default not rebuilt is named; a type or reference the scratch lacks exits 1."""
    common = ("--dsn", server.dsn, "--schema", schema)
    models = write(tmp_path, "off_lost_v1", BASE)
    assert run(capsys, "migrate", models, *common)[0] == 0
    document = json.loads(run(capsys, "schema", models, *common)[1])
    table = document["tables"][0]
    qty = next(c for c in table["columns"] if c["name"] == "qty")
    qty["default"] = "(random() * 10)::integer"
    file = tmp_path / "lost.json"
    file.write_text(json.dumps(document))
    code, out, err = run(capsys, "sql", models, "--from-schema", str(file))
    assert code == 0, err
    assert "not recreated: off_items: the recorded default (random() * 10)::integer" in err
    assert out == "-- off_items: matches its model\n"

    code, _, err = run(capsys, "sql", models, "--from-schema", str(file), "--schema", "elsewhere")
    assert code == 2
    assert f"records tables of schema {schema}, not of --schema elsewhere" in err
    code, out, _ = run(capsys, "sql", models, "--from-schema", str(file), "--schema", schema)
    assert (code, out) == (0, "-- off_items: matches its model\n")

    qty["type"] = "no_such_type_here"
    file.write_text(json.dumps(document))
    code, out, err = run(capsys, "sql", models, "--from-schema", str(file))
    assert (code, out) == (1, "")
    assert "cannot recreate the recorded schema in the scratch server" in err
    assert 'type "no_such_type_here" does not exist' in err

    qty["type"] = "integer"
    table["foreign_keys"] = [
        {
            "columns": ["qty"],
            "ref_schema": schema,
            "ref_table": "off_absent",
            "ref_columns": ["id"],
            "on_delete": "NO ACTION",
        }
    ]
    file.write_text(json.dumps(document))
    code, out, err = run(capsys, "sql", models, "--from-schema", str(file))
    assert (code, out) == (1, "")
    assert "cannot recreate the recorded schema in the scratch server" in err


def test_recorded_schemas_are_read_from_every_documented_shape():
    """A schema document, one table, a list of tables, or history records (latest wins)."""
    one = {"format": 1, "schema": "s", "table": "t", "columns": [], "primary_key": []}
    newer = {**one, "columns": [{"name": "x"}]}
    assert recorded_tables({"format": 1, "tables": [one]}) == [one]
    assert recorded_tables(one) == [one]
    assert recorded_tables([one, newer]) == [one, newer]
    records = [
        {"schema": "s", "table": "t", "schema_after": one},
        {"schema": "s", "table": "t", "schema_after": newer},
    ]
    assert recorded_tables(records) == [newer]


def test_schema_of_missing_tables_and_modules(server, schema, tmp_path, capsys):
    """A table not created yet is left out of the document; a bad module exits 2."""
    models = write(tmp_path, "off_none", BASE)
    code, out, err = run(capsys, "schema", models, "--dsn", server.dsn, "--schema", schema)
    assert code == 0, err
    assert json.loads(out)["tables"] == []
    assert run(capsys, "schema", str(tmp_path / "nope.py"), "--dsn", server.dsn)[0] == 2
    assert run(capsys, "sql", str(tmp_path / "nope.py"), "--from-schema", "-")[0] == 2
    with pytest.raises(SystemExit) as done:
        main(["sql", models, "--offline", "--from-schema", "-"])
    assert done.value.code == 2
    assert "not allowed with argument --offline" in capsys.readouterr().err
    code, _, err = run(capsys, "schema", models)
    assert code == 2
    assert "no PostgreSQL server chosen" in err


@pytest.mark.parametrize("value", ["abc", "0", "-1"])
def test_lock_timeouts_must_be_positive_seconds(value, capsys):
    """--lock-timeout takes a positive number of seconds; anything else is a usage error."""
    with pytest.raises(SystemExit) as done:
        main(["rollback", "t", "--lock-timeout", value])
    assert done.value.code == 2
    assert f"expected a positive number of seconds, not '{value}'" in capsys.readouterr().err


def test_a_lock_timeout_reaches_the_dry_run(server, schema, raw, tmp_path, capsys):
    """A dry run waits --lock-timeout seconds for a table another session holds, then fails."""
    where = ["--dsn", server.dsn, "--schema", schema]
    assert run(capsys, "migrate", write(tmp_path, "off_lock_v1", BASE), *where)[0] == 0
    changed = write(tmp_path, "off_lock_v2", CHANGES["add"])
    with raw.transaction():
        raw.execute("LOCK TABLE off_items IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        code, _, err = run(capsys, "migrate", changed, "--dry-run", "--lock-timeout", "0.3", *where)
        waited = time.monotonic() - started
    assert code == 1
    assert "lock" in err.lower()
    assert waited < 5  # 0.3 s a try (the default, 5 s a try, would wait 20 s)
    code, out, _ = run(capsys, "migrate", changed, "--dry-run", "--lock-timeout", "0.3", *where)
    assert code == 0  # the lock released: the same dry run goes through
    assert out.startswith("off_items: would migrate")
