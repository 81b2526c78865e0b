"""Turning measurements into results: ratios, target checks, markdown, JSON and the chart.

Owns the arithmetic of the report (the raw baseline of a workload is its fastest raw psycopg
variant that is not a reference; every ratio is a median rate over that baseline's median rate
from the same run), the target checks of issue 8 and the three files under ``bench/results/``.
It must not measure anything.
"""

from __future__ import annotations

import json
import math
import textwrap
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from bench.harness import IMPLS, Measurement, Target

ARRAY_TIME_GOAL = 1 / 1.3
ARRAY_BYTES_GOAL = 3.0
_CHART_LIMIT = 1.6


def summarize(measurements: Iterable[Measurement]) -> list[dict[str, Any]]:
    """Return one plain dict per variant, with its ratio to the workload's raw baseline."""
    rows: list[dict[str, Any]] = [
        {
            "workload": m.workload,
            "impl": m.impl,
            "variant": m.variant,
            "unit": m.unit,
            "units": m.units,
            "ref": m.ref,
            "status": m.status if m.status != "ok" or m.times else "failed: no repetition",
            "reps": len(m.times),
            "capped": m.capped,
            "times": m.times,
            "median_seconds": m.median_seconds,
            "rate": m.rate,
            "p50_us": m.percentile_us(0.5),
            "p99_us": m.percentile_us(0.99),
            "extra": m.extra,
            "ratio": None,
        }
        for m in measurements
    ]
    for key in dict.fromkeys(str(r["workload"]) for r in rows):
        base = baseline(rows, key)
        for r in rows:
            if r["workload"] == key and r["rate"] and base:
                r["ratio"] = r["rate"] / base
    return rows


def baseline(rows: Sequence[dict[str, Any]], workload: str) -> float | None:
    """Return the best median rate of *workload*'s raw variants that are not references."""
    rates = [
        r["rate"]
        for r in rows
        if r["workload"] == workload and r["impl"] == "raw" and not r["ref"] and r["rate"]
    ]
    return max(rates) if rates else None


def best(rows: Sequence[dict[str, Any]], workload: str, impl: str) -> dict[str, Any] | None:
    """Return *impl*'s fastest measured variant of *workload* that is not a reference."""
    mine = [
        r
        for r in rows
        if r["workload"] == workload and r["impl"] == impl and r["rate"] and not r["ref"]
    ]
    return max(mine, key=lambda r: r["rate"]) if mine else None


def check_targets(
    rows: Sequence[dict[str, Any]], workloads: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Return issue 8's targets with what was measured and whether each is met."""
    out: list[dict[str, Any]] = []
    for w in workloads:
        target: Target | None = w["target"]
        mine = best(rows, w["key"], "orso_pg")
        if target is not None:
            out.append(
                _target(
                    target.text,
                    w["key"],
                    mine["ratio"] if mine else None,
                    target.ratio,
                    f"x raw ({mine['variant']})" if mine else "",
                )
            )
        orm = best(rows, w["key"], "sqlalchemy_orm")
        if orm is not None:
            value = mine["rate"] / orm["rate"] if mine else None
            out.append(_target("ahead of SQLAlchemy ORM", w["key"], value, 1.0, "x its best"))
    out.extend(_array_targets(rows))
    out.extend(_routing_targets(rows))
    return out


def _target(
    text: str, workload: str, value: float | None, goal: float, unit: str
) -> dict[str, Any]:
    return {
        "target": text,
        "workload": workload,
        "value": value,
        "goal": goal,
        "unit": unit,
        "met": None if value is None else value >= goal,
    }


#: The most a read may lose at p50 by going through the replica router (issue 16), in µs.
ROUTING_GOAL_US = 5.0


def _routing_targets(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """R1: the p50 of routed lookups minus that of a plain Database, at most 5 µs."""
    p50 = {
        r["variant"]: r["p50_us"]
        for r in rows
        if r["workload"] == "R1" and r["impl"] == "orso_pg" and r["p50_us"] is not None
    }
    plain, routed = p50.get("find_by_id (Database)"), p50.get("find_by_id (routed to a replica)")
    if plain is None or routed is None:
        return []
    extra = routed - plain
    return [
        {
            "target": "replica routing adds <= 5 µs per call at p50",
            "workload": "R1",
            "value": extra,
            "goal": ROUTING_GOAL_US,
            "unit": "µs more at p50",
            "met": extra <= ROUTING_GOAL_US,
        }
    ]


def _array_targets(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    native = next(
        (r for r in rows if r["workload"] == "ARR" and r["impl"] == "raw" and not r["ref"]), None
    )
    packed = next(
        (r for r in rows if r["workload"] == "ARR" and r["variant"].startswith("compressed")),
        None,
    )
    if native is None or packed is None:
        return []
    time_ratio = packed["ratio"]
    native_bytes = native["extra"].get("stored_bytes")
    packed_bytes = packed["extra"].get("stored_bytes")
    bytes_ratio = native_bytes / packed_bytes if native_bytes and packed_bytes else None
    return [
        _target(
            "compressed arrays: insert+read time <= 1.3x native int8[]",
            "ARR",
            time_ratio,
            ARRAY_TIME_GOAL,
            "x native speed",
        ),
        _target(
            "compressed arrays: >= 3x fewer stored bytes than native int8[]",
            "ARR",
            bytes_ratio,
            ARRAY_BYTES_GOAL,
            "x fewer bytes",
        ),
    ]


# --- markdown ---------------------------------------------------------------------------------


def _num(value: float | None, digits: int = 0) -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"{value:,.{digits}f}"


def _mib(value: float | None) -> str:
    return "-" if value is None else f"{value / 2**20:,.1f} MiB"


def _status(r: dict[str, Any]) -> str:
    if r["status"] != "ok":
        return str(r["status"])
    reps = str(r["reps"])
    return f"{reps} (capped)" if r["capped"] else reps


def header_lines(meta: dict[str, Any]) -> list[str]:
    """Return the lines describing machine, versions and server (printed first, and in the file)."""
    m, pg, v = meta["machine"], meta["postgres"], meta["versions"]
    memory = f", {m['memory_bytes'] / 2**30:.0f} GiB RAM" if m.get("memory_bytes") else ""
    libs = ", ".join(f"{k} {v[k]}" for k in v)
    settings = ", ".join(f"{k}={val}" for k, val in pg["settings"].items())
    load = f"; load average {m['load_average_at_start']:.1f} at the start"
    if "load_average_at_end" in m:
        load += f", {m['load_average_at_end']:.1f} at the end"
    lines = [
        f"- Machine: {m['cpu']}, {m['cpus']} CPUs{memory}; {m['system']}{load}",
        f"- Python {m['python']}; libpq {m['libpq']} ({m['psycopg_impl']} psycopg); {libs}",
        f"- PostgreSQL {pg['version']} ({pg['server']}, {pg['transport']}); {settings}",
        f"- CPU placement: {meta['placement']}",
        f"- Mode: {meta['mode']}; sizes: "
        + ", ".join(f"{k}={val:,}" for k, val in meta["sizes"].items()),
    ]
    if "elapsed_seconds" in meta:
        lines.append(
            f"- WAL warm-up: {meta['wal_warmup_bytes'] / 1e6:,.0f} MB; "
            f"run took {meta['elapsed_seconds'] / 60:.1f} min; started {meta['started']}"
        )
    return lines


def markdown(payload: dict[str, Any]) -> str:
    """Return the whole report as markdown."""
    meta, rows = payload["meta"], payload["results"]
    lines = ["# orso_pg benchmark", "", *header_lines(meta), ""]
    lines += [
        "Ratios are medians of the same run: a variant's median rate over the best median rate of",
        "raw psycopg's non-reference variants of the workload (1.00 = as fast as raw psycopg).",
        "Variants marked (ref) do different or less work: they are shown for insight, but are",
        "never the baseline and never count for a target.",
        "",
        "## Targets (issue 8)",
        "",
        "| target | workload | measured | goal | met |",
        "|---|---|---:|---:|---|",
    ]
    for t in payload["targets"]:
        met = "n/a" if t["met"] is None else ("yes" if t["met"] else "**missed**")
        value = "n/a" if t["value"] is None else f"{t['value']:.2f} {t['unit']}"
        lines.append(f"| {t['target']} | {t['workload']} | {value} | {t['goal']:.2f} | {met} |")
    lines += ["", "## Summary: best variant of each library", ""]
    lines += summary_table(rows, payload["workloads"])
    lines += ["", "## Results: every variant", ""]
    lines += results_table(rows, payload["workloads"])
    notes = [w for w in payload["workloads"] if w["note"]]
    if notes:
        lines += ["", "Notes:", ""]
        lines += [f"- {w['key']}: {w['note']}" for w in notes]
    lines += ["", *array_lines(rows), "", *codec_lines(payload["codec"]), ""]
    lines += memory_lines(payload["memory"])
    return "\n".join(lines) + "\n"


def summary_table(rows: Sequence[dict[str, Any]], workloads: Sequence[dict[str, Any]]) -> list[str]:
    """Return one line per workload: raw psycopg's floor and each library's best ratio to it."""
    lines = [
        "| workload | raw psycopg 3 | orso_pg | SQLAlchemy Core | SQLAlchemy ORM | target |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for w in workloads:
        base = baseline(rows, w["key"])
        if base is None:
            continue
        cells = []
        for impl in ("orso_pg", "sqlalchemy_core", "sqlalchemy_orm"):
            found = best(rows, w["key"], impl)
            cells.append(f"{found['ratio']:.2f}x" if found and found["ratio"] else "n/a")
        target: Target | None = w["target"]
        goal = f">= {target.ratio:.2f}x" if target is not None else w.get("goal", "")
        unit = w["unit"]
        lines.append(
            f"| {w['key']} {w['title']} | {base:,.0f} {unit} | "
            + " | ".join(cells)
            + f" | {goal} |"
        )
    return lines


def results_table(rows: Sequence[dict[str, Any]], workloads: Sequence[dict[str, Any]]) -> list[str]:
    """Return the per-variant table."""
    titles = {w["key"]: w["title"] for w in workloads}
    lines = [
        "| workload | implementation | variant | median | unit | vs raw | p50 / p99 µs | reps |",
        "|---|---|---|---:|---|---:|---:|---|",
    ]
    for r in rows:
        name = r["variant"] + (" (ref)" if r["ref"] else "")
        latency = f"{_num(r['p50_us'])} / {_num(r['p99_us'])}" if r["p50_us"] is not None else "-"
        ratio = f"{r['ratio']:.2f}" if r["ratio"] is not None else "-"
        median = _num(r["rate"]) if r["rate"] else "n/a"
        lines.append(
            f"| {r['workload']} {titles.get(r['workload'], '')} | {r['impl']} | {name} | "
            f"{median} | {r['unit']} | {ratio} | {latency} | {_status(r)} |"
        )
    return lines


def array_lines(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Return the stored-bytes table of the array workload."""
    mine = [r for r in rows if r["workload"] == "ARR" and r["extra"].get("stored_bytes")]
    if not mine:
        return []
    native = next((r for r in mine if r["impl"] == "raw" and not r["ref"]), mine[0])
    lines = [
        "## Array columns: stored bytes (pg_total_relation_size after the insert)",
        "",
        "| implementation | variant | stored | bytes per element | native / this |",
        "|---|---|---:|---:|---:|",
    ]
    for r in mine:
        stored, raw = r["extra"]["stored_bytes"], r["extra"]["array_bytes"]
        lines.append(
            f"| {r['impl']} | {r['variant']} | {_mib(stored)} | {stored / (raw / 8):.2f} | "
            f"{native['extra']['stored_bytes'] / stored:.2f} |"
        )
    return lines


def codec_lines(codec: dict[str, Any]) -> list[str]:
    """Return the codec comparison (from ``bench.codec_bench``)."""
    lines = ["## Codec: orso_pg.codec against pcodec and numcodecs (bench/codec_bench.py)", ""]
    if codec["status"] != "ok":
        return [*lines, f"n/a ({codec['status']})"]
    found = codec["rows"]
    lines += [
        "| codec | n | geomean ratio | enc MB/s | dec MB/s | exact |",
        "|---|---:|---:|---:|---:|---|",
    ]
    lines += [
        f"| {r['codec']} | {r['n']:,} | {r['geomean_ratio']:.2f} | "
        f"{r['median_encode_mbs']:,.0f} | {r['median_decode_mbs']:,.0f} | "
        f"{'yes' if r['all_exact'] else 'NO'} |"
        for r in found
        if r["kind"] == "summary"
    ]
    from bench.codec_bench import many_markdown, real_markdown, walk_markdown

    if any(r["kind"] == "real" for r in found):
        lines += ["", *real_markdown(found)]
    if any(r["kind"] == "many" for r in found):
        lines += ["", *many_markdown(found)]
    lines += walk_markdown(found)
    checks = [r for r in found if r["kind"] == "target"]
    if checks:
        lines += ["", "| codec target (issues 3, 21) | value | goal | met |", "|---|---:|---:|---|"]
        lines += [
            f"| {r['target']} | {r['value']:.2f} | {r['goal']} | "
            f"{'yes' if r['met'] else '**missed**'} |"
            for r in checks
        ]
    return lines


def memory_lines(memory: Sequence[dict[str, Any]]) -> list[str]:
    """Return the memory probe's table."""
    lines = [
        "## Memory: bulk-loading generated rows (a fresh process per line, peak RSS)",
        "",
        "| implementation | rows | RSS before | peak RSS | growth | seconds | status |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    lines += [
        f"| {p['impl']} | {p['rows']:,} | {_mib(p.get('rss_before_bytes'))} | "
        f"{_mib(p.get('rss_peak_bytes'))} | {_mib(p.get('rss_growth_bytes'))} | "
        f"{_num(p.get('seconds'), 1)} | {p['status']} |"
        for p in memory
    ]
    return lines


# --- files ------------------------------------------------------------------------------------


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write *payload* to *path* atomically (a ``.json.tmp`` file renamed into place)."""
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=1, default=str) + "\n")
    tmp.replace(path)


def write_chart(
    path: Path, rows: Sequence[dict[str, Any]], workloads: Sequence[dict[str, Any]]
) -> None:
    """Draw each library's best ratio to raw psycopg per workload (horizontal bars, Agg)."""
    import matplotlib as mpl

    mpl.use("Agg")
    import matplotlib.pyplot as plt

    keys = [w["key"] for w in workloads if baseline(rows, w["key"])]
    impls = [i for i in IMPLS if i != "raw"]
    colours = {"orso_pg": "#1f77b4", "sqlalchemy_core": "#ff7f0e", "sqlalchemy_orm": "#d62728"}
    height = 0.8 / len(impls)
    fig, ax = plt.subplots(figsize=(9, 0.6 * len(keys) + 1.5), dpi=110)
    for j, impl in enumerate(impls):
        values = []
        for key in keys:
            found = best(rows, key, impl)
            values.append(found["ratio"] if found and found["ratio"] else 0.0)
        ys = [i + (j - (len(impls) - 1) / 2) * height for i in range(len(keys))]
        # Clipped at the right edge so one very fast workload does not flatten all the others.
        shown = [min(value, _CHART_LIMIT) for value in values]
        ax.barh(ys, shown, height=height, label=impl, color=colours[impl])
        for y, value in zip(ys, values, strict=True):
            if value > _CHART_LIMIT:
                ax.text(
                    _CHART_LIMIT - 0.01,
                    y,
                    f"{value:.2f} >",
                    va="center",
                    ha="right",
                    fontsize=7,
                    color="white",
                )
            elif value:
                ax.text(value + 0.01, y, f"{value:.2f}", va="center", fontsize=7)
    targets = {w["key"]: w["target"] for w in workloads if w["target"] is not None}
    for i, key in enumerate(keys):
        if key in targets:
            ax.plot([targets[key].ratio] * 2, [i - 0.45, i + 0.45], color="black", ls=":", lw=1)
    ax.axvline(1.0, color="grey", lw=1)
    titles = {w["key"]: w["title"] for w in workloads}
    labels = [textwrap.fill(f"{k} {titles[k]}", 34) for k in keys]
    ax.set_yticks(range(len(keys)), labels, fontsize=7)
    ax.set_xlim(0, _CHART_LIMIT)
    ax.invert_yaxis()
    ax.set_xlabel("median rate / raw psycopg 3 (1.0 = raw; dotted: orso_pg target)")
    ax.set_title("orso_pg and SQLAlchemy 2 against raw psycopg 3 (best variant of each)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
