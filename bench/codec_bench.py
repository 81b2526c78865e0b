"""orso_pg.codec against pcodec, numcodecs Delta+Zstd and plain zstd, side by side in one run.

``run()`` returns plain dicts for the ``make bench`` harness; ``python -m bench.codec_bench``
prints them as markdown. Ratios are raw bytes over compressed bytes; speeds are millions of raw
bytes per second, the median of repeated wall-clock timings on one thread, with the codecs
interleaved round by round. CPU time per call is recorded beside it: when the two differ much,
other processes were competing for the CPU. Summaries follow compression.md: the
geometric-mean ratio over the synthetic sets without the rand_i64 control, and the median speed
over those sets.
"""

from __future__ import annotations

import argparse
import functools
import math
import statistics
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import zstandard

from bench.datasets import TIMESTAMP, real, synthetic
from orso_pg import codec

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "TARGETS",
    "codecs",
    "format_markdown",
    "many_markdown",
    "real_markdown",
    "run",
    "walk_column_rows",
    "walk_markdown",
]

Encoder = Callable[[np.ndarray], Any]
Decoder = Callable[[Any], np.ndarray]

CONTROL = "rand_i64"
FULL_SIZES = (1_000, 100_000, 1_000_000)
_MIN_ROUNDS, _MAX_ROUNDS = 5, 25
QUICK_SIZES = (1_000, 100_000)

TARGETS = {
    "ratio_vs_pcodec_1m": 0.92,
    "ratio_vs_numcodecs_1m": 1.6,
    "ratio_vs_pcodec_1k": 1.0,
    "control_ratio_min": 0.99,
    "encode_mbs_1m": 1200.0,
    "decode_mbs_1m": 2000.0,
    "encode_speedup_vs_pcodec_1m": 3.0,
    "encode_us_1k": 65.0,
    "decode_us_1k": 20.0,
    # issue 21
    "real_ratio_vs_pcodec": 1.0,
    "real_price_ratio_vs_pcodec_min": 0.95,
    "real_ratio_vs_numcodecs": 1.5,
    "many_decode_speedup_vs_numcodecs": 2.0,
    "many_decode_speedup_vs_pcodec": 0.8,
    "small_walk_column_vs_native": 3.0,
}
"""Issues 3 and 21's targets, checked by :func:`run` (``kind == "target"`` rows)."""

PRICE_PARTS = ("_open", "_high", "_low", "_close")
"""Real series whose name ends so are float prices (each must reach 0.95x pcodec)."""
MANY_FRAMES, MANY_VALUES = 10_000, 1_000
WALK_ROWS, WALK_VALUES = 2_000, 500
"""The small-walk column: rows of 500-value walks of steps -3..3, compressed and native."""


def codecs() -> dict[str, tuple[Encoder, Decoder]]:
    """Return the codecs under test: name -> (encode, decode)."""
    from numcodecs import Delta, Zstd
    from pcodec import ChunkConfig, standalone

    delta, zstd3 = Delta("<i8"), Zstd(level=3)
    plain = zstandard.ZstdCompressor(level=3)
    unplain = zstandard.ZstdDecompressor()

    def nc_encode(values: np.ndarray) -> bytes:
        # Delta on the int64 bit view keeps float64 lossless, as in the reference.
        frame: bytes = zstd3.encode(delta.encode(values.view(np.int64)))
        return frame

    def nc_decode(data: bytes) -> np.ndarray:
        values: np.ndarray = np.asarray(delta.decode(zstd3.decode(data)))
        return values

    return {
        "orso_pg": (codec.encode, codec.decode),
        "pcodec": (
            lambda values: standalone.simple_compress(values, ChunkConfig()),
            standalone.simple_decompress,
        ),
        "nc:Delta+Zstd3": (nc_encode, nc_decode),
        "zstd3": (plain.compress, lambda data: np.frombuffer(unplain.decompress(data), np.uint8)),
    }


def _batch(call: Callable[[], object]) -> int:
    """Return how many calls make a sample of about 2 ms, so the clock can resolve them."""
    start = time.perf_counter()
    call()
    once = max(time.perf_counter() - start, 1e-7)
    return max(1, int(2e-3 / once))


def _measure_set(
    peers: dict[str, tuple[Encoder, Decoder]], dataset: str, values: np.ndarray, budget: float
) -> list[dict[str, Any]]:
    """Time every codec on one array, interleaving them round by round.

    Each round times every codec's encode and decode once, so a burst of load from other
    processes lands on all of them alike; the result per codec is the median over the rounds.
    """
    frames = {name: encoder(values) for name, (encoder, _) in peers.items()}
    calls: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {
        name: (functools.partial(encoder, values), functools.partial(decoder, frames[name]))
        for name, (encoder, decoder) in peers.items()
    }
    batches = {name: (_batch(enc), _batch(dec)) for name, (enc, dec) in calls.items()}
    start = time.perf_counter()
    # Per codec: encode wall, decode wall, encode CPU, decode CPU seconds per call.
    samples: dict[str, tuple[list[float], ...]] = {name: ([], [], [], []) for name in peers}
    rounds = 0
    while rounds < _MIN_ROUNDS or (
        rounds < _MAX_ROUNDS and time.perf_counter() - start < budget * len(peers)
    ):
        rounds += 1
        for name, pair in calls.items():
            for side, (call, batch) in enumerate(zip(pair, batches[name], strict=True)):
                begin, begin_cpu = time.perf_counter(), time.thread_time()
                for _ in range(batch):
                    call()
                samples[name][side + 2].append((time.thread_time() - begin_cpu) / batch)
                samples[name][side].append((time.perf_counter() - begin) / batch)
    rows = []
    for name, times in samples.items():
        frame = frames[name]
        encode_s, decode_s, encode_cpu, decode_cpu = map(statistics.median, times)
        rows.append(
            {
                "kind": "measure",
                "codec": name,
                "dataset": dataset,
                "n": values.size,
                "raw_bytes": values.nbytes,
                "compressed_bytes": len(frame),
                "ratio": values.nbytes / len(frame),
                "exact": peers[name][1](frame).tobytes() == values.tobytes(),
                "encode_mbs": values.nbytes / encode_s / 1e6,
                "decode_mbs": values.nbytes / decode_s / 1e6,
                "encode_us": encode_s * 1e6,
                "decode_us": decode_s * 1e6,
                "encode_cpu_us": encode_cpu * 1e6,
                "decode_cpu_us": decode_cpu * 1e6,
                "rounds": rounds,
            }
        )
    return rows


def _summaries(rows: list[dict[str, Any]], sizes: tuple[int, ...]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for n in sizes:
        by_codec: dict[str, dict[str, Any]] = {}
        for name in dict.fromkeys(row["codec"] for row in rows):
            mine = [r for r in rows if r["codec"] == name and r["n"] == n]
            sets = [r for r in mine if r["dataset"] != CONTROL]
            control = [r["ratio"] for r in mine if r["dataset"] == CONTROL]
            summary = {
                "kind": "summary",
                "codec": name,
                "n": n,
                "geomean_ratio": math.exp(statistics.fmean(math.log(r["ratio"]) for r in sets)),
                "control_ratio": control[0] if control else float("nan"),
                "median_encode_mbs": statistics.median(r["encode_mbs"] for r in sets),
                "median_decode_mbs": statistics.median(r["decode_mbs"] for r in sets),
                "median_encode_us": statistics.median(r["encode_us"] for r in sets),
                "median_decode_us": statistics.median(r["decode_us"] for r in sets),
                "median_encode_cpu_us": statistics.median(r["encode_cpu_us"] for r in sets),
                "median_decode_cpu_us": statistics.median(r["decode_cpu_us"] for r in sets),
                "all_exact": all(r["exact"] for r in mine),
            }
            by_codec[name] = summary
            out.append(summary)
        ours = by_codec["orso_pg"]
        for name, theirs in by_codec.items():
            if name == "orso_pg":
                continue
            out.append(
                {
                    "kind": "versus",
                    "n": n,
                    "baseline": name,
                    "ratio": ours["geomean_ratio"] / theirs["geomean_ratio"],
                    "encode_speedup": ours["median_encode_mbs"] / theirs["median_encode_mbs"],
                    "decode_speedup": ours["median_decode_mbs"] / theirs["median_decode_mbs"],
                }
            )
    return out


def _targets(summaries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def find(kind: str, n: int, key: str, value: str) -> dict[str, Any] | None:
        for row in summaries:
            if row["kind"] == kind and row["n"] == n and row[key] == value:
                return row
        return None

    checks: list[tuple[str, dict[str, Any] | None, str, bool]] = [
        ("ratio_vs_pcodec_1m", find("versus", 1_000_000, "baseline", "pcodec"), "ratio", True),
        (
            "ratio_vs_numcodecs_1m",
            find("versus", 1_000_000, "baseline", "nc:Delta+Zstd3"),
            "ratio",
            True,
        ),
        ("ratio_vs_pcodec_1k", find("versus", 1_000, "baseline", "pcodec"), "ratio", True),
        ("control_ratio_min", find("summary", 1_000, "codec", "orso_pg"), "control_ratio", True),
        (
            "encode_mbs_1m",
            find("summary", 1_000_000, "codec", "orso_pg"),
            "median_encode_mbs",
            True,
        ),
        (
            "decode_mbs_1m",
            find("summary", 1_000_000, "codec", "orso_pg"),
            "median_decode_mbs",
            True,
        ),
        (
            "encode_speedup_vs_pcodec_1m",
            find("versus", 1_000_000, "baseline", "pcodec"),
            "encode_speedup",
            True,
        ),
        ("encode_us_1k", find("summary", 1_000, "codec", "orso_pg"), "median_encode_us", False),
        ("decode_us_1k", find("summary", 1_000, "codec", "orso_pg"), "median_decode_us", False),
    ]
    out = []
    for target, row, key, at_least in checks:
        if row is None:
            continue
        value, goal = row[key], TARGETS[target]
        out.append(
            {
                "kind": "target",
                "target": target,
                "value": value,
                "goal": goal,
                "met": value >= goal if at_least else value <= goal,
            }
        )
    return out


def _real_rows(peers: dict[str, tuple[Encoder, Decoder]]) -> list[dict[str, Any]]:
    """Ratios of every codec on the real series, a summary and issue 21's ratio targets."""
    rows: list[dict[str, Any]] = []
    for dataset, values in real().items():
        flat = np.ascontiguousarray(values)
        for name, (encoder, decoder) in peers.items():
            frame = encoder(flat)
            rows.append(
                {
                    "kind": "real",
                    "codec": name,
                    "dataset": dataset,
                    "dtype": str(flat.dtype),
                    "n": flat.size,
                    "ratio": flat.nbytes / len(frame),
                    "exact": decoder(frame).tobytes() == flat.tobytes(),
                }
            )
    if not rows:
        return rows

    def geomean(name: str) -> float:
        mine = [r["ratio"] for r in rows if r["codec"] == name and TIMESTAMP not in r["dataset"]]
        return math.exp(statistics.fmean(math.log(x) for x in mine))

    ours = geomean("orso_pg")
    by_set = {(r["codec"], r["dataset"]): r["ratio"] for r in rows}
    prices = [
        by_set["orso_pg", d] / by_set["pcodec", d]
        for (c, d) in by_set
        if c == "orso_pg" and d.endswith(PRICE_PARTS) and by_set.get(("pcodec", d))
    ]
    summary = {
        "kind": "real_summary",
        "sets": len({r["dataset"] for r in rows}),
        "geomean": {name: geomean(name) for name in peers},
        "worst_price_vs_pcodec": min(prices) if prices else float("nan"),
        "all_exact": all(r["exact"] for r in rows if r["codec"] == "orso_pg"),
    }
    targets: list[tuple[str, float]] = [
        ("real_ratio_vs_pcodec", ours / geomean("pcodec")),
        ("real_price_ratio_vs_pcodec_min", min(prices) if prices else float("nan")),
        ("real_ratio_vs_numcodecs", ours / geomean("nc:Delta+Zstd3")),
    ]
    return [*rows, summary] + [
        {"kind": "target", "target": t, "value": v, "goal": TARGETS[t], "met": v >= TARGETS[t]}
        for t, v in targets
    ]


def _many_rows(peers: dict[str, tuple[Encoder, Decoder]]) -> list[dict[str, Any]]:
    """Decode 10,000 frames of 1,000 values: decode_many against each peer's per-frame decode.

    The frames are the rows of a column of small-step walks (as a compressed column holds),
    timed by CPU time, best of three rounds.
    """
    rng = np.random.default_rng(21)
    start = rng.integers(0, 10**9, MANY_FRAMES)[:, None]
    arrays = list(start + np.cumsum(rng.integers(-3, 4, (MANY_FRAMES, MANY_VALUES)), axis=1))
    calls: dict[str, Callable[[], object]] = {}
    sizes: dict[str, int] = {}
    for name, (encoder, decoder) in peers.items():
        if name == "zstd3":
            continue
        frames = [encoder(a) for a in arrays]
        sizes[name] = sum(len(f) for f in frames)
        calls[name] = functools.partial(lambda fs, dec: [dec(f) for f in fs], frames, decoder)
        if name == "orso_pg":
            assert all(
                out.tobytes() == a.tobytes()
                for out, a in zip(codec.decode_many(frames), arrays, strict=True)
            )
            calls["orso_pg decode_many"] = functools.partial(codec.decode_many, frames)
            sizes["orso_pg decode_many"] = sizes[name]
    best = dict.fromkeys(calls, math.inf)
    for _ in range(3):
        for name, call in calls.items():
            begin = time.thread_time()
            call()
            best[name] = min(best[name], time.thread_time() - begin)
    rows: list[dict[str, Any]] = [
        {
            "kind": "many",
            "codec": name,
            "frames": MANY_FRAMES,
            "values": MANY_VALUES,
            "us_per_frame": seconds / MANY_FRAMES * 1e6,
            "bytes_per_frame": sizes[name] / MANY_FRAMES,
        }
        for name, seconds in best.items()
    ]
    many = best["orso_pg decode_many"]
    for target, peer in (
        ("many_decode_speedup_vs_numcodecs", "nc:Delta+Zstd3"),
        ("many_decode_speedup_vs_pcodec", "pcodec"),
    ):
        value = best[peer] / many
        goal = TARGETS[target]
        rows.append(
            {"kind": "target", "target": target, "value": value, "goal": goal, "met": value >= goal}
        )
    return rows


def _walks(rows: int, values: int) -> list[np.ndarray]:
    """Return *rows* int64 walks of *values* steps of -3..3 from random starts (seeded)."""
    rng = np.random.default_rng(500)
    start = rng.integers(0, 10**9, rows)[:, None]
    return list(start + np.cumsum(rng.integers(-3, 4, (rows, values)), axis=1))


def walk_column_rows(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    """Store 500-value small-step walks as ``bigint[]`` and as codec ``bytea``; compare sizes.

    Both columns live in one temporary table with the server's default storage (so the native
    array is pglz-compressed where PostgreSQL finds it worth it); the sizes are
    ``sum(pg_column_size(...))`` over the rows.
    """
    walks = _walks(WALK_ROWS, WALK_VALUES)
    with conn.transaction():
        conn.execute("CREATE TEMP TABLE codec_walks (native bigint[], packed bytea) ON COMMIT DROP")
        with conn.cursor().copy("COPY codec_walks (native, packed) FROM STDIN") as copy:
            for walk in walks:
                copy.write_row((walk.tolist(), codec.encode(walk)))
        row = conn.execute(
            "SELECT sum(pg_column_size(native)), sum(pg_column_size(packed)) FROM codec_walks"
        ).fetchone()
    assert row is not None
    native, packed = int(row[0]), int(row[1])
    ratio = native / packed
    goal = TARGETS["small_walk_column_vs_native"]
    return [
        {
            "kind": "walk_column",
            "rows": WALK_ROWS,
            "values": WALK_VALUES,
            "native_bytes_per_row": native / WALK_ROWS,
            "codec_bytes_per_row": packed / WALK_ROWS,
            "raw_bytes_per_row": 8 * WALK_VALUES,
            "server": conn.info.server_version,
        },
        {
            "kind": "target",
            "target": "small_walk_column_vs_native",
            "value": ratio,
            "goal": goal,
            "met": ratio >= goal,
        },
    ]


def run(
    quick: bool = False,
    sizes: tuple[int, ...] | None = None,
    conn: psycopg.Connection[Any] | None = None,
) -> list[dict[str, Any]]:
    """Measure every codec on every synthetic set at each size.

    Args:
        quick: Only 1,000 and 100,000 elements, with shorter timing.
        sizes: Explicit sizes, overriding *quick*'s choice.
        conn: An autocommit connection for the small-walk column sizes (skipped without).

    Returns:
        ``kind == "measure"`` rows (one per codec, set and size), then ``"summary"`` rows (per
        codec and size), ``"versus"`` rows (orso_pg over each other codec) and ``"target"``
        rows (issue 3's targets that these sizes can check).
    """
    sizes = sizes or (QUICK_SIZES if quick else FULL_SIZES)
    budget = 0.05 if quick else 0.25
    data = synthetic(max(sizes))
    peers = codecs()
    rows: list[dict[str, Any]] = []
    for n in sizes:
        for dataset, full in data.items():
            rows += _measure_set(peers, dataset, full[:n].copy(), budget)
    summaries = _summaries(rows, sizes)
    walk = [] if conn is None else walk_column_rows(conn)
    return rows + summaries + _targets(summaries) + _real_rows(peers) + _many_rows(peers) + walk


def _fmt(value: float) -> str:
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:.0f}"
    return f"{value:.2f}"


def format_markdown(rows: list[dict[str, Any]]) -> str:
    """Return *rows* from :func:`run` as markdown tables."""
    measures = [r for r in rows if r["kind"] == "measure"]
    names = list(dict.fromkeys(r["codec"] for r in measures))
    lines: list[str] = real_markdown(rows) + many_markdown(rows) + walk_markdown(rows)
    for n in dict.fromkeys(r["n"] for r in measures):
        lines += [
            f"### n = {n:,}: ratio (encode / decode MB/s)",
            "",
            "| data set | " + " | ".join(names) + " |",
            "|---|" + "---:|" * len(names),
        ]
        for dataset in dict.fromkeys(r["dataset"] for r in measures):
            cells = []
            for name in names:
                (r,) = (
                    r
                    for r in measures
                    if r["n"] == n and r["dataset"] == dataset and r["codec"] == name
                )
                star = "" if r["exact"] else "*"
                cells.append(
                    f"{_fmt(r['ratio'])}{star} ({r['encode_mbs']:.0f} / {r['decode_mbs']:.0f})"
                )
            lines.append(f"| {dataset} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += [
        "### Summary (synthetic sets without rand_i64)",
        "",
        (
            "| codec | n | geomean ratio | rand_i64 ratio | enc MB/s | dec MB/s | enc us "
            "| dec us | enc CPU us | dec CPU us |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['codec']} | {r['n']:,} | {r['geomean_ratio']:.2f} | {r['control_ratio']:.3f} | "
        f"{r['median_encode_mbs']:.0f} | {r['median_decode_mbs']:.0f} | "
        f"{r['median_encode_us']:.1f} | {r['median_decode_us']:.1f} | "
        f"{r['median_encode_cpu_us']:.1f} | {r['median_decode_cpu_us']:.1f} |"
        for r in rows
        if r["kind"] == "summary"
    ]
    lines += ["", "### orso_pg over each peer", ""]
    lines += [
        f"- n = {r['n']:,}, vs {r['baseline']}: ratio {r['ratio']:.3f}x, "
        f"encode speed {r['encode_speedup']:.2f}x, decode speed {r['decode_speedup']:.2f}x"
        for r in rows
        if r["kind"] == "versus"
    ]
    lines += [
        "",
        "### Targets (issues 3 and 21)",
        "",
        "| target | value | goal | met |",
        "|---|---:|---:|---|",
    ]
    lines += [
        f"| {r['target']} | {r['value']:.3f} | {r['goal']} | {'yes' if r['met'] else 'NO'} |"
        for r in rows
        if r["kind"] == "target"
    ]
    return "\n".join(lines)


def real_markdown(rows: list[dict[str, Any]]) -> list[str]:
    """Return the real-series table of *rows* from :func:`run`."""
    real_rows = [r for r in rows if r["kind"] == "real"]
    if not real_rows:
        return ["### Real series: none (install the [bench] extra)", ""]
    names = list(dict.fromkeys(r["codec"] for r in real_rows))
    lines = [
        "### Real series (backtesting and vega_datasets CSV files): ratio",
        "",
        "| data set | dtype | n | " + " | ".join(names) + " | orso_pg / pcodec |",
        "|---|---|---:|" + "---:|" * (len(names) + 1),
    ]
    by = {(r["codec"], r["dataset"]): r for r in real_rows}
    for dataset in dict.fromkeys(r["dataset"] for r in real_rows):
        first = by[names[0], dataset]
        cells = [
            f"{_fmt(by[n, dataset]['ratio'])}{'' if by[n, dataset]['exact'] else '*'}"
            for n in names
        ]
        versus = by["orso_pg", dataset]["ratio"] / by["pcodec", dataset]["ratio"]
        lines.append(
            f"| {dataset} | {first['dtype']} | {first['n']:,} | {' | '.join(cells)} | "
            f"{versus:.3f} |"
        )
    (summary,) = (r for r in rows if r["kind"] == "real_summary")
    means = ", ".join(f"{n} {v:.2f}" for n, v in summary["geomean"].items())
    lines += [
        "",
        (
            f"Geometric means over {summary['sets']} sets, timestamps left out: {means}; "
            f"worst float price vs pcodec {summary['worst_price_vs_pcodec']:.3f}."
        ),
        "",
    ]
    return lines


def walk_markdown(rows: list[dict[str, Any]]) -> list[str]:
    """Return the small-walk column table of *rows* from :func:`run` (empty without a server)."""
    found = [r for r in rows if r["kind"] == "walk_column"]
    if not found:
        return []
    (r,) = found
    native, ours = r["native_bytes_per_row"], r["codec_bytes_per_row"]
    return [
        (
            f"### Column of {r['rows']:,} walks of {r['values']} steps of -3..3 "
            f"(pg_column_size per row, PostgreSQL {r['server'] // 10000}.{r['server'] % 10000})"
        ),
        "",
        "| column | bytes per row | vs native |",
        "|---|---:|---:|",
        f"| raw int64 values | {r['raw_bytes_per_row']:.0f} | |",
        f"| native bigint[] | {native:.1f} | 1.00x |",
        f"| orso_pg codec bytea | {ours:.1f} | {native / ours:.2f}x |",
        "",
    ]


def many_markdown(rows: list[dict[str, Any]]) -> list[str]:
    """Return the decode-many table of *rows* from :func:`run`."""
    many = [r for r in rows if r["kind"] == "many"]
    lines = [
        f"### Decoding {MANY_FRAMES:,} frames of {MANY_VALUES:,} values (CPU time, best of 3)",
        "",
        "| codec | us per frame | bytes per frame |",
        "|---|---:|---:|",
    ]
    lines += [
        f"| {r['codec']} | {r['us_per_frame']:.1f} | {r['bytes_per_frame']:.0f} |" for r in many
    ]
    return [*lines, ""]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 and 100,000 elements only")
    parser.add_argument("--sizes", help="comma-separated sizes, e.g. 1000,1000000")
    args = parser.parse_args()
    chosen = tuple(int(s) for s in args.sizes.split(",")) if args.sizes else None
    started = time.perf_counter()
    result = run(quick=args.quick, sizes=chosen)
    print(format_markdown(result))
    print(f"\n(total {time.perf_counter() - started:.0f} s)")
