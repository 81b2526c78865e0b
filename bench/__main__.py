"""``python -m bench [--quick]``: run every workload, the codec comparison and the memory probe.

Owns the order of a run: start (or join) the server, pin client and server to different CPUs,
print machine, versions and server first, warm the WAL, run the workloads, the codec comparison
and the memory probe, then write ``bench/results/latest.{md,json,png}`` (the previous JSON is
kept as ``previous.json`` for ``python -m bench.compare``). Progress goes to stderr, the report to
stdout. It must not measure or format anything itself.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path
from typing import Any

import attrs

from bench import env, memory, report
from bench.harness import Measurement, run
from bench.workloads import WORKLOADS
from bench.workloads.common import sizes, trade_data

RESULTS = Path(__file__).parent / "results"


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, for CI (< 2 min)")
    parser.add_argument(
        "--only", default="", help="comma-separated workload keys, e.g. W1,W3 (default: all)"
    )
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default per workload)")
    parser.add_argument(
        "--cap",
        type=float,
        default=None,
        help="seconds after which a variant is not repeated (default 3, quick 1.5)",
    )
    parser.add_argument(
        "--pin", choices=("split", "same", "none"), default="split", help="CPU placement"
    )
    parser.add_argument("--no-codec", action="store_true", help="skip the codec comparison")
    parser.add_argument(
        "--codec-only",
        action="store_true",
        help="run only the codec comparison (no workloads, WAL warm-up or memory probe)",
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the memory probe")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where latest.{md,json,png} go")
    return parser.parse_args(argv)


def _codec(quick: bool, e: env.Env) -> dict[str, Any]:
    try:
        from bench import codec_bench
    except ImportError as exc:
        return {"status": f"not available: {exc}", "rows": []}
    _log("== CODEC: orso_pg.codec against pcodec and numcodecs")
    try:
        rows = codec_bench.run(quick, conn=e.admin)
    except Exception as exc:  # the codec comparison must not sink the whole run
        return {"status": f"failed: {type(exc).__name__}: {exc}", "rows": []}
    return {"status": "ok", "rows": rows}


def _memory(e: env.Env, rows: int) -> list[dict[str, Any]]:
    _log("== MEM: peak RSS of bulk-loading rows from a generator (subprocess)")
    out = []
    for impl in memory.IMPLS:
        for n in (rows // 10, rows):
            found = memory.probe(e, impl, n)
            growth = found.get("rss_growth_bytes")
            shown = f"{growth / 2**20:,.1f} MiB growth" if growth is not None else ""
            _log(f"   {impl:<10} {n:>9,} rows: {found['status']} {shown}")
            out.append(found)
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return the exit status."""
    args = _parse(argv)
    quick = args.quick
    cap = args.cap if args.cap is not None else (1.5 if quick else 3.0)
    only = {k.strip().upper() for k in args.only.split(",") if k.strip()}
    chosen = [w for w in WORKLOADS if not only or w.key.upper() in only]
    if args.codec_only:
        chosen = []
    size = sizes(quick)
    started = time.perf_counter()
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    measurements: list[Measurement] = []
    with env.server() as (dsn, pid), env.environment(dsn, pid) as e:
        placement = env.pin(e, args.pin)
        meta = env.describe(e, placement)
        meta |= {
            "mode": "quick" if quick else "full",
            "sizes": attrs.asdict(size),
            "started": stamp,
            "cap_seconds": cap,
        }
        print("\n".join(report.header_lines(meta)), flush=True)
        meta["wal_warmup_bytes"] = 0
        if chosen:
            _log(f"== WAL warm-up ({size.wal_mb} MB)")
            rows = list(trade_data(size.rows).with_ids())
            meta["wal_warmup_bytes"] = env.warm_wal(e, rows, size.wal_mb)
        for cls in chosen:
            workload = cls(e, quick=quick)
            if args.reps is not None:
                workload.reps = args.reps
            measurements += run(workload, cap=cap, log=_log)
        codec = {"status": "skipped (--no-codec)", "rows": []}
        if args.codec_only or (not args.no_codec and not only):
            codec = _codec(quick, e)
        skip_memory = args.no_memory or only or args.codec_only
        probes = [] if skip_memory else _memory(e, size.memory_rows)
    meta["elapsed_seconds"] = time.perf_counter() - started
    meta["machine"]["load_average_at_end"] = os.getloadavg()[0]
    results = report.summarize(measurements)
    workloads: list[dict[str, Any]] = [
        {
            "key": w.key,
            "title": w.title,
            "unit": w.unit,
            "target": w.target,
            "goal": w.goal,
            "note": w.note,
        }
        for w in chosen
    ]
    payload = {
        "meta": meta,
        "workloads": workloads,
        "results": results,
        "targets": report.check_targets(results, workloads),
        "codec": codec,
        "memory": probes,
    }
    text = report.markdown(payload)
    args.out.mkdir(parents=True, exist_ok=True)
    latest = args.out / "latest.json"
    if latest.exists():
        latest.replace(args.out / "previous.json")
    report.write_json(
        latest,
        {
            **payload,
            "workloads": [
                {**w, "target": attrs.asdict(w["target"]) if w["target"] else None}
                for w in workloads
            ],
        },
    )
    (args.out / "latest.md").write_text(text)
    report.write_chart(args.out / "latest.png", results, workloads)
    print(text)
    _log(
        f"wrote {args.out / 'latest.md'}, latest.json and latest.png "
        f"in {meta['elapsed_seconds'] / 60:.1f} min"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
