"""The memory probe: peak resident memory of bulk-loading rows from a generator, in a subprocess.

Owns both ends: :func:`probe` (the parent: empties the table, runs the child, checks the rows
arrived) and :func:`main` (the child: opens its client, notes its peak RSS, loads N generated
rows, notes the peak again and prints one JSON line). A fresh process per measurement keeps
the numbers free of whatever the benchmark itself allocated. It must not time anything else.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from psycopg import sql

from bench import data
from bench.env import Env, copy_new_rows, empty_trades

if TYPE_CHECKING:
    from orso_pg import Database


def _status_bytes(field: str) -> int | None:
    """Return a ``/proc/self/status`` memory field (``VmRSS``, ``VmHWM``) in bytes, if any."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _start_peak() -> int:
    """Reset the peak-RSS mark where Linux allows it; return the resident bytes now."""
    # Writing 5 to clear_refs resets VmHWM, so the peak read afterwards is the load's own.
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
    now = _status_bytes("VmRSS")
    return now if now is not None else _peak_rss()


def _peak_rss() -> int:
    """Return the peak resident bytes since the mark was last reset (or since start)."""
    peak = _status_bytes("VmHWM")
    # ru_maxrss is in KiB on Linux and never resets; it is the fallback only.
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


#: The probe's loaders: raw COPY, ``batch_insert`` into the plain trades table, and
#: ``batch_insert`` into a day-partitioned table whose partitions the load makes.
PARTITIONED = "orso_pg (partitioned)"
IMPLS = ("raw", "orso_pg", PARTITIONED)


def probe(env: Env, impl: str, rows: int) -> dict[str, Any]:
    """Load *rows* generated rows with *impl* in a child process; return what it measured."""
    empty_trades(env)
    child_env = {
        **os.environ,
        "ORSO_BENCH_DSN": env.dsn,
        "ORSO_BENCH_BASE_DSN": env.base_dsn,
        "ORSO_BENCH_SCHEMA": env.schema,
    }
    done = subprocess.run(
        [sys.executable, "-m", "bench.memory", "--impl", impl, "--rows", str(rows)],
        env=child_env,
        capture_output=True,
        text=True,
        check=False,
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = " ".join(done.stderr.strip().splitlines()[-1:])
        return {"impl": impl, "rows": rows, "status": f"failed: {tail[:200]}"}
    result: dict[str, Any] = json.loads(lines[-1])
    from bench.workloads.partitions import _PARTED

    partitioned = impl == PARTITIONED
    table = sql.Identifier(_PARTED if partitioned else "trades")
    loaded = env.scalar(sql.SQL("SELECT count(*) FROM {}").format(table))
    result["status"] = "ok" if loaded == rows else f"failed: {loaded} rows arrived, not {rows}"
    if partitioned:
        env.admin.execute(sql.SQL("DROP TABLE {}").format(table))
    empty_trades(env)
    return result


def _load_raw(rows: int) -> tuple[int, float]:
    import psycopg

    with psycopg.connect(os.environ["ORSO_BENCH_DSN"]) as conn:
        conn.execute("SELECT 1")
        before = _start_peak()
        start = time.perf_counter()
        copy_new_rows(conn, data.generate_rows(rows))
        conn.commit()
        return before, time.perf_counter() - start


def _database() -> Database:
    """The child's Database: one connection to the run's schema."""
    from orso_pg import Database

    return Database(
        os.environ["ORSO_BENCH_BASE_DSN"],
        schema=os.environ["ORSO_BENCH_SCHEMA"],
        min_size=1,
        max_size=1,
    )


def _load_orso(rows: int) -> tuple[int, float]:
    from bench.models import Trade

    with _database() as db:
        Trade.count(db)
        before = _start_peak()
        start = time.perf_counter()
        models = (
            Trade(symbol=s, ts=ts, price=p, qty=q, side=side, meta=m)
            for s, ts, p, q, side, m in data.generate_rows(rows)
        )
        Trade.batch_insert(models, db)
        return before, time.perf_counter() - start


def _load_partitioned(rows: int) -> tuple[int, float]:
    import datetime as dt

    from bench.workloads.partitions import _DAYS, _START, PartTrade
    from orso_pg import Migrations, migration

    with _database() as db:
        Migrations.init(db, [migration(PartTrade)])
        PartTrade.count(db)
        step = dt.timedelta(days=_DAYS) / rows
        before = _start_peak()
        start = time.perf_counter()
        # The same generated trades, over PT1's days: the partitions are made on the way.
        models = (
            PartTrade(symbol=s, ts=_START + i * step, price=p, qty=q)
            for i, (s, _, p, q, _, _) in enumerate(data.generate_rows(rows))
        )
        PartTrade.batch_insert(models, db)
        return before, time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    """Run one probe (the child process) and print its JSON line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--impl", choices=IMPLS, required=True)
    parser.add_argument("--rows", type=int, required=True)
    args = parser.parse_args(argv)
    load = {"raw": _load_raw, "orso_pg": _load_orso, PARTITIONED: _load_partitioned}[args.impl]
    before, seconds = load(args.rows)
    peak = _peak_rss()
    print(
        json.dumps(
            {
                "impl": args.impl,
                "rows": args.rows,
                "rss_before_bytes": before,
                "rss_peak_bytes": peak,
                "rss_growth_bytes": peak - before,
                "seconds": seconds,
            }
        )
    )


if __name__ == "__main__":
    main()
