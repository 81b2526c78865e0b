"""``python -m bench.compare [OLD.json NEW.json]``: what got faster or slower between two runs.

Owns reading two ``latest.json`` files and printing, per variant measured in both, the change of
its median rate and of its ratio to raw psycopg, flagging changes beyond a threshold, plus the
targets whose verdict changed. Without arguments it compares the previous run with the latest
(``bench/results/previous.json`` and ``latest.json``). Ratios come from one run each, so they are
steadier than rates across machines and load; both are shown. It must not measure anything.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def load(path: Path) -> dict[str, Any]:
    """Read one run's JSON."""
    payload: dict[str, Any] = json.loads(path.read_text())
    return payload


def _key(row: dict[str, Any]) -> tuple[str, str, str]:
    return row["workload"], row["impl"], row["variant"]


def changes(old: dict[str, Any], new: dict[str, Any], threshold: float) -> list[dict[str, Any]]:
    """Return one entry per variant measured in both runs, with its relative change."""
    before = {_key(r): r for r in old["results"] if r["rate"]}
    out = []
    for row in new["results"]:
        prev = before.get(_key(row))
        if prev is None or not row["rate"]:
            continue
        change = row["rate"] / prev["rate"] - 1.0
        verdict = "faster" if change > threshold else "slower" if change < -threshold else "same"
        out.append(
            {
                "key": _key(row),
                "unit": row["unit"],
                "old": prev["rate"],
                "new": row["rate"],
                "change": change,
                "old_ratio": prev["ratio"],
                "new_ratio": row["ratio"],
                "verdict": verdict,
            }
        )
    return out


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def report(old: dict[str, Any], new: dict[str, Any], threshold: float) -> str:
    """Return the comparison as markdown."""
    found = changes(old, new, threshold)
    lines = [
        (
            f"old: {old['meta']['started']} ({old['meta']['mode']}), "
            f"new: {new['meta']['started']} ({new['meta']['mode']})"
        ),
        f"threshold: {threshold:.0%} of the median rate",
        "",
        "| workload | implementation | variant | old | new | change | vs raw old -> new | |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    for c in found:
        workload, impl, variant = c["key"]
        mark = {"faster": "faster", "slower": "**slower**", "same": ""}[c["verdict"]]
        lines.append(
            f"| {workload} | {impl} | {variant} | {c['old']:,.0f} | {c['new']:,.0f} {c['unit']} | "
            f"{c['change']:+.1%} | {_ratio(c['old_ratio'])} -> {_ratio(c['new_ratio'])} | {mark} |"
        )
    faster = sum(c["verdict"] == "faster" for c in found)
    slower = sum(c["verdict"] == "slower" for c in found)
    lines += ["", f"{faster} faster, {slower} slower, {len(found) - faster - slower} within noise."]
    lines += _target_changes(old, new)
    return "\n".join(lines)


def _target_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    before = {(t["target"], t["workload"]): t for t in old.get("targets", [])}
    lines = []
    for t in new.get("targets", []):
        prev = before.get((t["target"], t["workload"]))
        if prev is not None and prev["met"] != t["met"]:
            lines.append(
                f"- {t['workload']} {t['target']}: {_verdict(prev['met'])} -> {_verdict(t['met'])}"
            )
    return ["", "Targets whose verdict changed:", "", *lines] if lines else []


def _verdict(met: bool | None) -> str:
    return "n/a" if met is None else "met" if met else "missed"


def main(argv: list[str] | None = None) -> int:
    """Compare two runs; return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__)
    parser.add_argument("old", nargs="?", type=Path, default=RESULTS / "previous.json")
    parser.add_argument("new", nargs="?", type=Path, default=RESULTS / "latest.json")
    parser.add_argument(
        "--threshold", type=float, default=0.10, help="relative change reported (default 0.10)"
    )
    args = parser.parse_args(argv)
    for path in (args.old, args.new):
        if not path.exists():
            print(
                f"{path} does not exist; run `make bench` (twice for a comparison)", file=sys.stderr
            )
            return 2
    print(report(load(args.old), load(args.new), args.threshold))
    return 0


if __name__ == "__main__":
    sys.exit(main())
