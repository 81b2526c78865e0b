"""The command line: ``python -m orso_pg migrate MODULE [--dry-run] [--dsn ...]`` (``orso-pg``).

It always names the server it talks to (on stderr) and, like ``Database()``, refuses to run
without one: ``--dsn``, ``$ORSO_PG_DSN`` or ``--embedded``.

Owns argument parsing, finding the models of a module, printing plans and results, and the
progress bar of long conversions (tqdm, when it is installed and stderr is a terminal). It must
not migrate anything itself: :class:`~orso_pg.migrate._migrations.Migrations` does.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, TextIO

from orso_pg.errors import OrsoError
from orso_pg.migrate._apply import Progress
from orso_pg.migrate._migrations import (
    MigrationAction,
    MigrationEntry,
    MigrationPlan,
    MigrationResult,
    Migrations,
    MigrationStep,
    migration,
)
from orso_pg.session._connect import EMBEDDED, ENV_DSN
from orso_pg.session._database import Database

__all__ = ["main"]

_USAGE_ERROR = 2
NO_SERVER_CLI = (
    f"no PostgreSQL server chosen: pass --dsn or set {ENV_DSN}; for the embedded PostgreSQL "
    f"pass --embedded or --data-dir DIR (or set {ENV_DSN}=embedded)"
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (0 done, 1 refused or failed, 2 usage)."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        module = _load(args.module)
    except (ImportError, OSError) as exc:
        print(f"orso-pg: cannot import {args.module}: {exc}", file=sys.stderr)
        return _USAGE_ERROR
    entries = entries_of(module)
    if not entries:
        print(f"orso-pg: {args.module} defines no @table models", file=sys.stderr)
        return _USAGE_ERROR
    options = {
        "drop_columns": args.drop_columns,
        "allow_data_loss": args.allow_data_loss,
        "concurrent_indexes": args.concurrent_indexes,
    }
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
            if args.dry_run:
                print(format_plans(Migrations.plan(db, entries, **options)))
            else:
                results = Migrations.init(
                    db,
                    entries,
                    **options,
                    lock_timeout=args.lock_timeout,
                    progress=progress_bar(sys.stderr),
                )
                print(format_results(results))
    except OrsoError as exc:
        print(f"orso-pg: {exc}", file=sys.stderr)
        return 1
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="orso-pg", description="orso_pg tools")
    commands = parser.add_subparsers(dest="command", required=True)
    migrate = commands.add_parser(
        "migrate",
        help="bring the tables of a module's models in line with them",
        description=(
            "Import MODULE (a dotted name or a .py file), find its @table models (or its "
            "MIGRATIONS list of migration() entries) and migrate their tables."
        ),
    )
    migrate.add_argument("module", help="a module name such as app.models, or a .py file")
    migrate.add_argument(
        "--dry-run", action="store_true", help="print the plan with its SQL; change nothing"
    )
    server = migrate.add_mutually_exclusive_group()
    server.add_argument("--dsn", help="the database (default: $ORSO_PG_DSN)")
    server.add_argument(
        "--embedded",
        action="store_true",
        help="use the embedded PostgreSQL (in --data-dir, else $ORSO_PG_DATA or a default)",
    )
    migrate.add_argument(
        "--data-dir", help="the embedded PostgreSQL's data directory (chooses it, as --embedded)"
    )
    migrate.add_argument(
        "--require-tls",
        action="store_true",
        help="refuse a TCP connection without TLS and a verified server certificate",
    )
    migrate.add_argument("--schema", help="put this schema first on the search_path")
    migrate.add_argument(
        "--drop-columns",
        action="store_true",
        help="drop columns that left the models, after backing up their data",
    )
    migrate.add_argument(
        "--allow-data-loss",
        action="store_true",
        help="let type changes through even when they change values",
    )
    migrate.add_argument(
        "--concurrent-indexes",
        action="store_true",
        help="build new indexes with CREATE INDEX CONCURRENTLY after each table's transaction",
    )
    migrate.add_argument(
        "--lock-timeout",
        type=float,
        default=5.0,
        help="seconds to wait for a table lock before retrying (default 5)",
    )
    return parser


def _load(name: str) -> ModuleType:
    if name.endswith(".py") or "/" in name:
        path = Path(name)
        spec = importlib.util.spec_from_file_location(path.stem, path)
        if spec is None or spec.loader is None:
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


def format_results(results: Sequence[MigrationResult]) -> str:
    """Return what a migration did, as text."""
    lines: list[str] = []
    for result in results:
        if result.action is MigrationAction.SCHEMA_MATCHED:
            lines.append(f"{result.table}: matches its model")
        elif result.action is MigrationAction.TABLE_CREATED:
            lines.append(f"{result.table}: created")
        else:
            lines.append(f"{result.table}: migrated, {result.rows_migrated} rows kept")
        lines.extend(f"  done: {step.description}" for step in result.steps)
        if result.backup_table:
            lines.append(f"  backup: {result.backup_table}")
        lines.extend(f"  kept: {note}" for note in result.notes)
    return "\n".join(lines)


def _steps(steps: Sequence[MigrationStep]) -> list[str]:
    lines = []
    for number, step in enumerate(steps, 1):
        flag = "  [rewrites the table]" if step.rewrites else ""
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
