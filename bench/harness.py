"""The measuring loop: variants of a workload, round-robin repetitions, timing and verification.

Owns :class:`Workload` (what a benchmark provides), :class:`Variant` (one implementation's way of
doing the work), :class:`Measurement` (what was measured) and :func:`run`, which repeats every
variant round-robin (repetition k of every variant before repetition k+1 of any), resets the
table before each repetition, times only the work, verifies every repetition and stops
repeating a peer's variant that is over the time cap (orm-peers.md §3.1; orso_pg's variants and
raw psycopg's non-reference variants, any of which may be the baseline, are always repeated,
since the ratios and targets are their medians). It must not know what a workload does nor
format results (:mod:`bench.report` does).
"""

from __future__ import annotations

import gc
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

import attrs

from bench.clients import Clients
from bench.env import Env

Kind = Literal["batch", "per_op", "threads"]
IMPLS = ("orso_pg", "raw", "sqlalchemy_core", "sqlalchemy_orm")


class MismatchError(Exception):
    """A repetition produced the wrong result; its time is thrown away."""


@attrs.frozen
class PerOp:
    """A per-call workload's prepared function (W3, W5, W7...).

    Attributes:
        call: Does one operation on one input; returns a number the harness sums for checking.
        finish: Runs after the last call, inside the timed region (a commit).
        close: Runs after the timed region (closing a session).
    """

    call: Callable[[Any], Any]
    finish: Callable[[], object] | None = None
    close: Callable[[], object] | None = None


@attrs.frozen
class Variant:
    """One implementation's way of doing a workload.

    Attributes:
        impl: ``orso_pg``, ``raw``, ``sqlalchemy_core`` or ``sqlalchemy_orm``.
        name: What distinguishes it from the implementation's other variants.
        fn: ``batch``: does the timed work and returns a value for verification. ``per_op`` and
            ``threads``: untimed set-up returning a :class:`PerOp`.
        kind: How it is timed.
        ref: Different semantics; shown with its ratio but never the raw baseline.
        prepare: ``batch`` only: untimed work before each repetition whose result is passed to
            ``fn`` (objects built outside the timed region, for reference variants).
    """

    impl: str
    name: str
    fn: Callable[..., Any]
    kind: Kind = "batch"
    ref: bool = False
    prepare: Callable[[], Any] | None = None

    @property
    def label(self) -> str:
        """``impl/name``."""
        return f"{self.impl}/{self.name}"


@attrs.frozen
class Target:
    """A goal from the issue: orso_pg's best ratio to the raw baseline must reach *ratio*."""

    ratio: float
    text: str


class NotApplicable(Exception):  # noqa: N818 - a verdict, not an error
    """Raised by a variant that cannot run in this environment; the message says why."""


@attrs.define
class Measurement:
    """Everything measured for one variant of one workload.

    Attributes:
        times: Seconds of each verified repetition.
        latencies: Per-call seconds of the median repetition (per-call kinds only).
        status: ``ok``, ``failed: ...``, or ``n/a: ...`` (the variant cannot run here).
        capped: A repetition took longer than the cap, so it was not repeated.
        extra: Workload-specific figures (stored bytes...).
    """

    workload: str
    impl: str
    variant: str
    unit: str
    units: int
    ref: bool
    times: list[float] = attrs.field(factory=list)
    latencies: list[list[float]] = attrs.field(factory=list)
    status: str = "ok"
    capped: bool = False
    extra: dict[str, Any] = attrs.field(factory=dict)

    @property
    def ok(self) -> bool:
        """Whether at least one verified repetition exists."""
        return self.status == "ok" and bool(self.times)

    @property
    def median_seconds(self) -> float | None:
        """The median time of a repetition."""
        return statistics.median(self.times) if self.times else None

    @property
    def rate(self) -> float | None:
        """Units per second at the median time."""
        median = self.median_seconds
        return None if not median else self.units / median

    def percentile_us(self, q: float) -> float | None:
        """The *q* quantile of per-call latency in the median repetition, in microseconds."""
        if not self.latencies:
            return None
        order = sorted(range(len(self.times)), key=self.times.__getitem__)
        calls = sorted(self.latencies[order[len(order) // 2]])
        if not calls:
            return None
        return calls[min(len(calls) - 1, int(q * len(calls)))] * 1e6


class Workload:
    """A benchmark: the same work done by several variants, reset and verified each time.

    Subclasses set the class attributes and override :meth:`setup`, :meth:`variants`,
    :meth:`reset`, :meth:`units` and :meth:`verify`; per-call workloads also :meth:`inputs`.
    """

    key = ""
    title = ""
    unit = "rows/s"
    reps = 3
    threads = 4
    target: Target | None = None
    goal = ""
    note = ""

    def __init__(self, env: Env, *, quick: bool) -> None:
        self.env = env
        self.quick = quick
        self.clients = Clients(env)

    def setup(self) -> None:
        """Prepare inputs and tables (untimed, once)."""

    def variants(self) -> list[Variant]:
        """Return every variant."""
        raise NotImplementedError

    def reset(self) -> None:
        """Put the tables into the workload's starting state (untimed, before every repetition)."""

    def units(self) -> int:
        """Return the rows or operations one repetition does."""
        raise NotImplementedError

    def inputs(self) -> Sequence[Any]:
        """Return the per-call inputs of a repetition (per-call kinds)."""
        return ()

    def warmup_inputs(self) -> Sequence[Any]:
        """Return inputs for untimed warm-up calls, disjoint from the timed ones."""
        return ()

    def verify(self, variant: Variant, result: Any) -> None:
        """Check the repetition's result and the tables; raise :class:`MismatchError`."""

    def figures(self, variant: Variant) -> dict[str, Any]:
        """Return workload-specific figures after a variant's first repetition (untimed)."""
        del variant
        return {}

    def teardown(self) -> None:
        """Close the clients."""
        self.clients.close()


def expect(what: str, got: object, want: object) -> None:
    """Raise :class:`MismatchError` unless *got* equals *want*."""
    if got != want:
        msg = f"{what}: got {got!r}, expected {want!r}"
        raise MismatchError(msg)


def _timed_batch(variant: Variant) -> tuple[float, Any, list[float]]:
    if variant.prepare is None:
        start = time.perf_counter()
        result = variant.fn()
    else:
        given = variant.prepare()
        start = time.perf_counter()
        result = variant.fn(given)
    return time.perf_counter() - start, result, []


def _loop(call: Callable[[Any], Any], inputs: Sequence[Any]) -> tuple[Any, list[float]]:
    clock = time.perf_counter
    latencies = []
    total: Any = 0
    for item in inputs:
        began = clock()
        total += call(item)
        latencies.append(clock() - began)
    return total, latencies


def _timed_per_op(workload: Workload, variant: Variant) -> tuple[float, Any, list[float]]:
    ops: PerOp = variant.fn()
    try:
        for item in workload.warmup_inputs():
            ops.call(item)
        inputs = workload.inputs()
        start = time.perf_counter()
        total, latencies = _loop(ops.call, inputs)
        if ops.finish is not None:
            ops.finish()
        elapsed = time.perf_counter() - start
    finally:
        if ops.close is not None:
            ops.close()
    return elapsed, total, latencies


def _timed_threads(workload: Workload, variant: Variant) -> tuple[float, Any, list[float]]:
    ops: PerOp = variant.fn()
    try:
        for item in workload.warmup_inputs():
            ops.call(item)
        inputs = list(workload.inputs())
        shares = [inputs[i :: workload.threads] for i in range(workload.threads)]
        results: list[tuple[Any, list[float]] | BaseException] = [0] * workload.threads  # type: ignore[list-item]
        barrier = threading.Barrier(workload.threads + 1)

        def worker(index: int) -> None:
            barrier.wait()
            try:
                results[index] = _loop(ops.call, shares[index])
            except BaseException as exc:
                results[index] = exc

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(workload.threads)]
        for thread in threads:
            thread.start()
        barrier.wait()
        start = time.perf_counter()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - start
    finally:
        if ops.close is not None:
            ops.close()
    total: Any = 0
    latencies: list[float] = []
    for outcome in results:
        if isinstance(outcome, BaseException):
            raise outcome
        total += outcome[0]
        latencies += outcome[1]
    return elapsed, total, latencies


def _timed(workload: Workload, variant: Variant) -> tuple[float, Any, list[float]]:
    if variant.kind == "per_op":
        return _timed_per_op(workload, variant)
    if variant.kind == "threads":
        return _timed_threads(workload, variant)
    return _timed_batch(variant)


def run(
    workload: Workload,
    *,
    cap: float,
    log: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
) -> list[Measurement]:
    """Measure every variant of *workload*; return one :class:`Measurement` per variant."""
    log(f"== {workload.key}: {workload.title}")
    began = time.perf_counter()
    try:
        workload.setup()
        variants = workload.variants()
        units = workload.units()
        found = {
            v.label: Measurement(workload.key, v.impl, v.name, workload.unit, units, v.ref)
            for v in variants
        }
        # Inputs and libraries are long-lived: freezing them keeps every collection (the one
        # before each repetition and any inside it) from walking them again and again.
        gc.collect()
        gc.freeze()
        for rep in range(workload.reps):
            # Rotating the order keeps any one variant from always following the same neighbour.
            shift = rep % len(variants)
            for variant in variants[shift:] + variants[:shift]:
                always = variant.impl == "orso_pg" or (variant.impl == "raw" and not variant.ref)
                limit = float("inf") if always else cap
                _repeat(workload, variant, found[variant.label], rep, limit, log)
        return list(found.values())
    finally:
        gc.unfreeze()
        workload.teardown()
        log(f"   ({time.perf_counter() - began:.1f} s)")


def _repeat(
    workload: Workload,
    variant: Variant,
    measurement: Measurement,
    rep: int,
    cap: float,
    log: Callable[[str], None],
) -> None:
    if measurement.status != "ok" or measurement.capped:
        return
    workload.reset()
    gc.collect()
    try:
        elapsed, result, latencies = _timed(workload, variant)
        workload.clients.idle()
        workload.verify(variant, result)
    except NotApplicable as exc:
        measurement.status = f"n/a: {' '.join(str(exc).split())[:160]}"
        log(f"   {variant.label:<42} n/a ({exc})")
        workload.clients.idle()
        return
    except Exception as exc:
        text = " ".join(f"{type(exc).__name__}: {exc}".split())
        measurement.status = f"failed: {text[:160]}"
        log(f"   {variant.label:<42} FAILED {text[:300]}")
        workload.clients.idle()
        return
    measurement.times.append(elapsed)
    if latencies:
        measurement.latencies.append(latencies)
    if rep == 0:
        measurement.extra = workload.figures(variant)
    if elapsed > cap:
        measurement.capped = True
    rate = measurement.units / elapsed
    unit = measurement.unit
    log(f"   {variant.label:<42} rep {rep + 1}: {rate:>12,.0f} {unit}  ({elapsed:.3f} s)")
