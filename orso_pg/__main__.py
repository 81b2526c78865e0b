"""The command line, ``orso-pg`` or ``python -m orso_pg``.

Commands: ``migrate MODULE`` (``--dry-run``, ``--plan-only``, ``--to ID``), ``status MODULE``,
``sql MODULE`` (``--offline``, ``--from-schema FILE``), ``schema MODULE``, ``history [TABLE]``,
``rollback TABLE``; and ``--version``. None of them prompts. Each names the server it talks to
(on stderr) and, like ``Database()``, refuses to run without one: ``--dsn``, ``$ORSO_PG_DSN``,
``--embedded`` or ``--data-dir``. ``sql --from-schema`` talks to no server of the user's: it
plans in a scratch embedded PostgreSQL started in a temporary directory and removed after.
Exit statuses: 0 done, 1 refused, failed or pending, 2 usage or configuration error.

Owns argument parsing, importing the module of the models (as ``python -m`` would: its
directory and the current one on the path), printing plans, results, SQL and history, and the
progress bar of long conversions (tqdm, when it is installed and stderr is a terminal). It must
not migrate anything itself: :class:`~orso_pg.migrate._migrations.Migrations` does.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any, TextIO

from psycopg import sql

import orso_pg
from orso_pg.errors import ConfigError, OrsoError, ValidationError
from orso_pg.migrate import _offline as offline
from orso_pg.migrate._apply import Progress
from orso_pg.migrate._history import MigrationRecord
from orso_pg.migrate._migrations import (
    MigrationAction,
    MigrationEntry,
    MigrationPlan,
    MigrationResult,
    Migrations,
    MigrationStep,
    migration,
)
from orso_pg.migrate._planner import plan_create
from orso_pg.migrate._steps import Convert
from orso_pg.session._connect import EMBEDDED, ENV_DSN
from orso_pg.session._database import Database

__all__ = [
    "EXIT_STATUSES",
    "format_history",
    "format_plans",
    "format_results",
    "format_sql",
    "history_json",
    "main",
    "plans_json",
    "summary",
]

_USAGE_ERROR = 2

_CODES = "exit status:\n  0  {ok}\n  1  {fail}\n  2  {usage}"
_USAGE = (
    "usage or configuration error: bad arguments, no server chosen or unreachable,\n"
    "     a module that does not import"
)
#: What each command's exit statuses mean (its --help ends with it; the README lists them).
EXIT_STATUSES: dict[str, str] = {
    "orso-pg": _CODES.format(
        ok="done", fail="refused, failed or (status) steps pending", usage=_USAGE
    ),
    "migrate": _CODES.format(
        ok="migrated (--dry-run: the real run would succeed; --plan-only: planned)",
        fail="refused or failed, that table unchanged (--dry-run: the real run would fail)",
        usage=_USAGE,
    ),
    "status": _CODES.format(
        ok="every table matches its model",
        fail="steps are pending, or the migration would be refused",
        usage=_USAGE,
    ),
    "sql": _CODES.format(
        ok="the SQL is printed", fail="the migration would be refused", usage=_USAGE
    ),
    "schema": _CODES.format(ok="the schemas are printed", fail="a database error", usage=_USAGE),
    "history": _CODES.format(ok="the records are printed", fail="a database error", usage=_USAGE),
    "rollback": _CODES.format(
        ok="rolled back (--dry-run: the real rollback would succeed)",
        fail="nothing to go back to, or refused or failed; nothing changed",
        usage=_USAGE,
    ),
}
NO_SERVER_CLI = (
    f"no PostgreSQL server chosen: pass --dsn or set {ENV_DSN}; for the embedded PostgreSQL "
    f"pass --embedded or --data-dir DIR (or set {ENV_DSN}=embedded)"
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status.

    0: done, 1: refused, failed or pending, 2: usage or configuration error; each command's
    own meanings are in :data:`EXIT_STATUSES` (printed at the end of its ``--help``).
    """
    parser = _parser()
    args = parser.parse_args(argv)
    command: Callable[[argparse.Namespace], int] = _COMMANDS[args.command]
    return command(args)


# --- commands ---------------------------------------------------------------------------------


def _migrate(args: argparse.Namespace) -> int:
    if args.to is not None:
        if args.module is not None or args.plan_only:
            print(
                "orso-pg: migrate --to ID takes no MODULE nor --plan-only: it goes back to the "
                "schema history record ID left (use --dry-run to see the steps)",
                file=sys.stderr,
            )
            return _USAGE_ERROR
        return _roll_back(args, table=None)
    if args.module is None:
        print("orso-pg: migrate needs MODULE (or --to ID)", file=sys.stderr)
        return _USAGE_ERROR
    entries = _entries(args.module)
    if isinstance(entries, int):
        return entries
    options = _options(args)
    started = time.monotonic()

    def work(db: Database) -> None:
        if args.plan_only:
            print(format_plans(Migrations.plan(db, entries, **options)))
            return
        run = Migrations.dry_run if args.dry_run else Migrations.init
        results = run(
            db,
            entries,
            **options,
            lock_timeout=args.lock_timeout,
            progress=progress_bar(sys.stderr),
        )
        print(format_results(results, dry_run=args.dry_run))
        print(summary(results, time.monotonic() - started, dry_run=args.dry_run))

    return _with_server(args, work, dry_run=args.dry_run)


def _status(args: argparse.Namespace) -> int:
    entries = _entries(args.module)
    if isinstance(entries, int):
        return entries
    pending: list[MigrationPlan] = []
    servers: list[str] = []

    def work(db: Database) -> None:
        servers.append(db.server)
        plans = Migrations.plan(db, entries, **_options(args))
        pending.extend(p for p in plans if p.steps)
        print(plans_json(plans) if args.json else format_plans(plans))

    status = _with_server(args, work)
    if status == 0 and pending:
        count = sum(len(p.steps) for p in pending)
        tables = len(pending)
        print(
            f"orso-pg: {count} pending step{'s' * (count != 1)} in {tables} "
            f"table{'s' * (tables != 1)} on {servers[0]}; run orso-pg migrate",
            file=sys.stderr,
        )
        return 1
    return status


def _sql(args: argparse.Namespace) -> int:
    entries = _entries(args.module)
    if isinstance(entries, int):
        return entries
    if args.from_schema is not None:
        return _sql_from_schema(args, entries)
    if args.offline:
        print(
            "orso-pg: offline, no server: the SQL that creates every table in an empty database",
            file=sys.stderr,
        )
        print(format_sql([_offline_plan(entry) for entry in entries]))
        return 0
    return _with_server(
        args, lambda db: print(format_sql(Migrations.plan(db, entries, **_options(args))))
    )


def _sql_from_schema(args: argparse.Namespace, entries: list[MigrationEntry]) -> int:
    """Plan against the schema recorded in ``--from-schema FILE``, in a scratch server."""
    if args.dsn is not None or args.embedded or args.data_dir is not None:
        print(
            "orso-pg: sql --from-schema plans in a scratch server of its own and talks to no "
            "other: leave out --dsn, --embedded and --data-dir",
            file=sys.stderr,
        )
        return _USAGE_ERROR
    source = args.from_schema
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
        tables = offline.recorded_tables(json.loads(text), source=source)
    except (OSError, ValueError) as exc:  # ValidationError and JSONDecodeError are ValueErrors
        print(f"orso-pg: cannot read the recorded schema {source}: {exc}", file=sys.stderr)
        return _USAGE_ERROR
    recorded = sorted({str(t["schema"]) for t in tables})
    if args.schema is not None and recorded and args.schema not in recorded:
        print(
            f"orso-pg: {source} records tables of schema {', '.join(recorded)}, not of "
            f"--schema {args.schema}: the plan would create every table",
            file=sys.stderr,
        )
        return _USAGE_ERROR
    schema = args.schema or (str(tables[0]["schema"]) if tables else None)
    count = len(tables)
    with tempfile.TemporaryDirectory(prefix="orso-pg-scratch-") as scratch:
        print(
            f"orso-pg: offline: planning against the recorded schema in {source} ({count} "
            f"table{'s' * (count != 1)}) in a scratch embedded server in {scratch}, removed "
            "afterwards; no other server is contacted",
            file=sys.stderr,
        )
        try:
            with Database(data_dir=scratch, min_size=1, max_size=2) as admin:
                offline.create_schemas(admin, tables)
                with Database(admin.conninfo, schema=schema, min_size=1, max_size=2) as db:
                    notes = offline.prepare(db, tables)
                    plans = Migrations.plan(db, entries, **_options(args))
        except OrsoError as exc:
            print(f"orso-pg: {exc}", file=sys.stderr)
            return _exit_status(exc)
    for note in notes:
        print(f"orso-pg: offline: not recreated: {note}", file=sys.stderr)
    print(
        "orso-pg: offline: checks on the rows (NULLs, values a type change would alter) are "
        "left to the real run; orso-pg migrate --dry-run makes them against the server",
        file=sys.stderr,
    )
    print(format_sql(plans))
    return 0


def _schema(args: argparse.Namespace) -> int:
    entries = _entries(args.module)
    if isinstance(entries, int):
        return entries

    def work(db: Database) -> None:
        tables = offline.record_schema(db, entries)
        document = {
            "format": offline.DOCUMENT_FORMAT,
            "server": db.server,
            "recorded_at": datetime.now(UTC).isoformat(),
            "tables": tables,
        }
        print(json.dumps(document, indent=2, sort_keys=True))

    return _with_server(args, work)


def _history(args: argparse.Namespace) -> int:
    def work(db: Database) -> None:
        records = Migrations.history(db, args.table)
        print(history_json(records) if args.json else format_history(records))

    return _with_server(args, work)


def _rollback(args: argparse.Namespace) -> int:
    return _roll_back(args, table=args.table)


def _roll_back(args: argparse.Namespace, table: str | None) -> int:
    started = time.monotonic()

    def work(db: Database) -> None:
        result = Migrations.rollback(
            db,
            table,
            to=args.to,
            dry_run=args.dry_run,
            drop_columns=args.drop_columns,
            allow_data_loss=args.allow_data_loss,
            concurrent_indexes=args.concurrent_indexes,
            lock_timeout=args.lock_timeout,
            progress=progress_bar(sys.stderr),
        )
        print(format_results([result], dry_run=args.dry_run))
        print(summary([result], time.monotonic() - started, dry_run=args.dry_run))

    return _with_server(args, work, dry_run=args.dry_run)


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "migrate": _migrate,
    "status": _status,
    "sql": _sql,
    "schema": _schema,
    "history": _history,
    "rollback": _rollback,
}


def _entries(module_name: str) -> list[MigrationEntry] | int:
    """Return the module's entries, or the exit status after saying why there are none."""
    try:
        module = _load(module_name)
    except (ImportError, OSError) as exc:
        print(f"orso-pg: cannot import {module_name}: {exc}", file=sys.stderr)
        return _USAGE_ERROR
    entries = entries_of(module)
    if not entries:
        print(f"orso-pg: {module_name} defines no @table models", file=sys.stderr)
        return _USAGE_ERROR
    return entries


def _options(args: argparse.Namespace) -> dict[str, bool]:
    return {
        "drop_columns": args.drop_columns,
        "allow_data_loss": args.allow_data_loss,
        "concurrent_indexes": args.concurrent_indexes,
    }


def _with_server(
    args: argparse.Namespace, work: Callable[[Database], object], *, dry_run: bool = False
) -> int:
    """Open the chosen server, name it on stderr, run *work*; return the exit status."""
    dsn = EMBEDDED if args.embedded else args.dsn
    if dsn is None and args.data_dir is None and not os.environ.get(ENV_DSN):
        # The same rule as Database(): a missing DSN is refused, never replaced by a guess.
        print(f"orso-pg: {NO_SERVER_CLI}", file=sys.stderr)
        return _USAGE_ERROR
    try:
        with Database(
            dsn,
            schema=args.schema,
            min_size=1,
            max_size=2,
            data_dir=args.data_dir,
            require_tls=args.require_tls,
        ) as db:
            print(f"orso-pg: server {db.server}", file=sys.stderr)
            if args.schema is not None and not db.fetch(_SCHEMA_EXISTS, (args.schema,)):
                # The search_path would silently skip it: every table would land elsewhere.
                print(f"orso-pg: there is no schema {args.schema} on {db.server}", file=sys.stderr)
                return _USAGE_ERROR
            work(db)
    except OrsoError as exc:
        print(f"orso-pg: {exc}", file=sys.stderr)
        status = _exit_status(exc)
        if dry_run and status == 1:
            print("orso-pg: dry run: the real run would fail; nothing was changed", file=sys.stderr)
        return status
    return 0


def _exit_status(exc: OrsoError) -> int:
    """2 when the server cannot be reached or an argument is wrong (fix the command), else 1."""
    return _USAGE_ERROR if isinstance(exc, (ConfigError, ValidationError)) else 1


_SCHEMA_EXISTS = sql.SQL("SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = %s")


def _offline_plan(entry: MigrationEntry) -> MigrationPlan:
    steps = plan_create(entry.meta, entry.table_name, entry.table, lambda _name: False).steps
    return MigrationPlan(entry.table, MigrationAction.TABLE_CREATED, steps)


# --- arguments --------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orso-pg",
        description="orso_pg tools: migrations, their status, SQL, history and rollback",
        epilog=EXIT_STATUSES["orso-pg"],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"orso-pg {orso_pg.__version__}")
    server = _server_options()
    changes = _change_options()
    running = _run_options()
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, **options: Any) -> argparse.ArgumentParser:
        """A subcommand whose --help ends with its exit statuses."""
        return commands.add_parser(
            name,
            epilog=EXIT_STATUSES[name],
            formatter_class=argparse.RawDescriptionHelpFormatter,
            **options,
        )

    migrate = command(
        "migrate",
        parents=[server, changes, running],
        help="bring the tables of a module's models in line with them",
        description=(
            "Import MODULE (a dotted name or a .py file), find its @table models (or its "
            "MIGRATIONS list of migration() entries) and migrate their tables. With --to ID, "
            "bring the table of history record ID back to the schema that record left."
        ),
    )
    migrate.add_argument(
        "module", nargs="?", help="a module name such as app.models, or a .py file"
    )
    migrate.add_argument(
        "--plan-only",
        action="store_true",
        help="print the plan with its SQL, without running it (fast; checks only the plan)",
    )
    migrate.add_argument(
        "--to", type=int, metavar="ID", help="go to the schema history record ID left"
    )
    status = command(
        "status",
        parents=[server, changes],
        help="exit 0 when every table matches its model, 1 with the pending steps",
    )
    status.add_argument("module", help="a module name such as app.models, or a .py file")
    status.add_argument("--json", action="store_true", help="print the plans as JSON")
    sql_command = command(
        "sql",
        parents=[server, changes],
        help="print the SQL a migration would run, for review",
    )
    sql_command.add_argument("module", help="a module name such as app.models, or a .py file")
    source = sql_command.add_mutually_exclusive_group()
    source.add_argument(
        "--offline",
        action="store_true",
        help="no server: print the SQL creating every table in an empty database",
    )
    source.add_argument(
        "--from-schema",
        metavar="FILE",
        help=(
            "no server of yours: plan against the schema recorded in FILE (by orso-pg schema, "
            "or orso-pg history --json; - reads stdin) in a scratch embedded PostgreSQL"
        ),
    )
    schema = command(
        "schema",
        parents=[server],
        help="print the tables' schemas as JSON, for sql --from-schema",
        description=(
            "Print, as JSON, the schema of each existing table of MODULE's models as the "
            "history records it, and what orso_pg owns there; sql --from-schema plans "
            "against it without this server."
        ),
    )
    schema.add_argument("module", help="a module name such as app.models, or a .py file")
    history = command(
        "history",
        parents=[server],
        help="list the migrations recorded in orso_pg_migrations, with their steps and SQL",
    )
    history.add_argument("table", nargs="?", help="only this table's migrations")
    history.add_argument(
        "--json", action="store_true", help="print the records as JSON, schemas included"
    )
    rollback = command(
        "rollback",
        parents=[server, changes, running],
        help="bring a table back to the schema before its last migration",
    )
    rollback.add_argument("table", help="the table")
    rollback.add_argument(
        "--to", type=int, metavar="ID", help="go to the schema history record ID left instead"
    )
    return parser


def _server_options() -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(add_help=False)
    server = options.add_mutually_exclusive_group()
    server.add_argument("--dsn", help="the database (default: $ORSO_PG_DSN)")
    server.add_argument(
        "--embedded",
        action="store_true",
        help="use the embedded PostgreSQL (in --data-dir, else $ORSO_PG_DATA or a default)",
    )
    options.add_argument(
        "--data-dir", help="the embedded PostgreSQL's data directory (chooses it, as --embedded)"
    )
    options.add_argument(
        "--require-tls",
        action="store_true",
        help="refuse a TCP connection without TLS and a verified server certificate",
    )
    options.add_argument("--schema", help="put this schema first on the search_path")
    return options


def _change_options() -> argparse.ArgumentParser:
    """The options that change a plan (every command that plans takes them)."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument(
        "--drop-columns",
        action="store_true",
        help="drop columns that left the models, after backing up their data",
    )
    options.add_argument(
        "--allow-data-loss",
        action="store_true",
        help="let type changes through even when they change values",
    )
    options.add_argument(
        "--concurrent-indexes",
        action="store_true",
        help="build new indexes with CREATE INDEX CONCURRENTLY after each table's transaction",
    )
    return options


def _run_options() -> argparse.ArgumentParser:
    """The options of the commands that run a migration (migrate, rollback)."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument(
        "--dry-run",
        action="store_true",
        help="run the migration in a transaction, checks included, then roll it back",
    )
    options.add_argument(
        "--lock-timeout",
        type=_seconds,
        default=5.0,
        metavar="SECONDS",
        help="seconds to wait for a table lock before retrying (default 5)",
    )
    return options


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        msg = f"expected a positive number of seconds, not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _load(name: str) -> ModuleType:
    """Import *name* as ``python -m orso_pg`` would, whichever way the command was started.

    The current directory is on the path (packages under it import), and a ``.py`` file's own
    directory too (so do modules beside it).
    """
    here = str(Path.cwd())
    if here not in sys.path:
        sys.path.insert(0, here)
    if name.endswith(".py") or "/" in name or os.sep in name:
        path = Path(name).resolve()
        if not path.is_file():
            msg = f"no Python file at {name}"
            raise ImportError(msg)
        folder = str(path.parent)
        if folder not in sys.path:
            sys.path.insert(0, folder)
        spec = importlib.util.spec_from_file_location(path.stem, path)
        if spec is None or spec.loader is None:  # pragma: no cover - a .py file always has one
            msg = f"no Python module at {name}"
            raise ImportError(msg)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        return module
    return importlib.import_module(name)


def entries_of(module: ModuleType) -> list[MigrationEntry]:
    """Return the module's ``MIGRATIONS`` list, else an entry for every model it defines."""
    declared = getattr(module, "MIGRATIONS", None)
    if declared is not None:
        return list(declared)
    seen: list[type] = []
    for value in vars(module).values():
        if isinstance(value, type) and "__orso_table__" in value.__dict__ and value not in seen:
            seen.append(value)
    # The registry keeps the latest class of each table name, as the module does.
    latest = {value.__orso_table__.name: value for value in seen}  # type: ignore[attr-defined]
    return [migration(cls) for cls in latest.values()]


def format_plans(plans: Sequence[MigrationPlan]) -> str:
    """Return the dry run as text: each table's steps with their SQL."""
    lines: list[str] = []
    for plan in plans:
        if plan.action is MigrationAction.SCHEMA_MATCHED:
            lines.append(f"{plan.table}: matches its model")
        else:
            verb = "create" if plan.action is MigrationAction.TABLE_CREATED else "migrate"
            count = len(plan.steps)
            lines.append(f"{plan.table}: would {verb} ({count} step{'s' * (count != 1)})")
        lines.extend(_steps(plan.steps))
        lines.extend(f"  kept: {note}" for note in plan.notes)
    return "\n".join(lines)


def format_results(results: Sequence[MigrationResult], *, dry_run: bool = False) -> str:
    """Return what a migration did (or, in a dry run, would do), as text."""
    lines: list[str] = []
    for result in results:
        count = len(result.steps)
        steps = f"({count} step{'s' * (count != 1)})"
        if result.action is MigrationAction.SCHEMA_MATCHED:
            lines.append(f"{result.table}: matches its model")
        elif result.action is MigrationAction.TABLE_CREATED:
            lines.append(
                f"{result.table}: would create {steps}" if dry_run else f"{result.table}: created"
            )
        elif dry_run:
            lines.append(f"{result.table}: would migrate {steps}, {result.rows_migrated} rows kept")
        else:
            lines.append(f"{result.table}: migrated, {result.rows_migrated} rows kept")
        if dry_run:
            lines.extend(_steps(result.steps, dry_run=True))
        else:
            lines.extend(f"  done: {step.description}" for step in result.steps)
        if result.backup_table:
            lines.append(f"  backup: {result.backup_table}")
        lines.extend(
            f"  {'kept' if note.startswith('kept') else 'note'}: {note}" for note in result.notes
        )
    return "\n".join(lines)


def summary(results: Sequence[MigrationResult], seconds: float, *, dry_run: bool = False) -> str:
    """Return the last line of a migration: the time it took and the rows it kept."""
    changed = [r for r in results if r.action is not MigrationAction.SCHEMA_MATCHED]
    rows = sum(r.rows_migrated or 0 for r in results)
    tables = f"{len(changed)} of {len(results)} table{'s' * (len(results) != 1)} changed"
    if dry_run:
        return f"dry run: {tables}, {rows} rows checked in {seconds:.2f} s; all rolled back"
    return f"done: {tables}, {rows} rows kept, in {seconds:.2f} s"


def format_sql(plans: Sequence[MigrationPlan]) -> str:
    """Return the SQL of *plans* as a script to review, each step under a comment."""
    lines: list[str] = []
    for plan in plans:
        if not plan.steps:
            lines.append(f"-- {plan.table}: matches its model")
            continue
        for step in plan.steps:
            lines.append(f"-- {plan.table}: {step.description}")
            if any(isinstance(a, Convert) for a in step.actions):
                lines.append("-- (orso_pg re-encodes the rows between COPY and ALTER)")
            lines.append(step.sql + ";")
        lines.extend(f"-- {plan.table}: kept: {note}" for note in plan.notes)
    return "\n".join(lines)


def plans_json(plans: Sequence[MigrationPlan]) -> str:
    """Return *plans* as a JSON array: table, action, steps (description, SQL), notes."""
    return json.dumps(
        [
            {
                "table": plan.table,
                "action": plan.action.value,
                "steps": [
                    {"description": s.description, "sql": s.sql, "rewrites": s.rewrites}
                    for s in plan.steps
                ],
                "notes": list(plan.notes),
            }
            for plan in plans
        ],
        indent=2,
    )


def history_json(records: Sequence[MigrationRecord]) -> str:
    """Return history records as a JSON array, times in ISO 8601 and schemas included."""
    return json.dumps(
        [
            {
                "id": r.id,
                "applied_at": r.applied_at.isoformat(),
                "schema": r.schema,
                "table": r.table,
                "model": r.model,
                "action": r.action,
                "steps": list(r.steps),
                "schema_before": r.schema_before,
                "schema_after": r.schema_after,
            }
            for r in records
        ],
        indent=2,
    )


def format_history(records: Sequence[MigrationRecord]) -> str:
    """Return history records as text: id, ISO 8601 time, table, action, model, steps, SQL."""
    if not records:
        return "no migrations recorded"
    lines: list[str] = []
    for record in records:
        lines.append(
            f"{record.id}  {record.applied_at.isoformat()}  {record.schema}.{record.table}  "
            f"{record.action}  {record.model}"
        )
        for number, step in enumerate(record.steps, 1):
            flag = "  [rewrites the table]" if step.get("rewrites") else ""
            lines.append(f"  {number}. {step.get('description', '')}{flag}")
            lines.extend(f"       {text}" for text in str(step.get("sql", "")).split("\n"))
    return "\n".join(lines)


def _steps(steps: Sequence[MigrationStep], *, dry_run: bool = False) -> list[str]:
    lines = []
    for number, step in enumerate(steps, 1):
        flag = "  [rewrites the table]" if step.rewrites else ""
        if dry_run and not step.transactional:
            flag = "  [dry run: built by a plain CREATE INDEX in its transaction]"
        lines.append(f"  {number}. {step.description}{flag}")
        lines.extend(f"       {text}" for text in step.sql.split("\n"))
    return lines


def progress_bar(stream: TextIO) -> Progress | None:
    """Return a progress callback drawing tqdm bars on *stream*, or None.

    None when *stream* is not a terminal or tqdm is not installed (the ``progress`` extra).
    """
    if not stream.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    bars: dict[str, Any] = {}

    def report(label: str, done: int, total: int) -> object:
        bar = bars.get(label)
        if bar is None:
            bar = bars[label] = tqdm(total=total, desc=label, unit=" rows", file=stream)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()
        return None

    return report


if __name__ == "__main__":
    raise SystemExit(main())
