"""Arrays for the codec benchmark: synthetic sets (compression.md, section 2) and real series.

Every synthetic set is int64 or float64 and seeded; each random component draws from its own
generator, so ``synthetic(1_000)`` is an exact prefix of ``synthetic(1_000_000)``.

:func:`real` reads the CSV files that two PyPI packages ship inside their wheels (the
``[bench]`` extra installs them; nothing is downloaded at run time): ``backtesting`` (hourly
EUR/USD 2017-2018, daily GOOG 2004-2013, monthly BTC/USD) and ``vega_datasets`` (monthly closes
of five equities, Seattle daily weather, hourly San Francisco and Seattle temperatures, US
employment). They are read with pandas' default CSV parser, as most exports are, so some prices
come back one ulp away from their printed decimals.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

__all__ = ["SYNTHETIC", "TIMESTAMP", "real", "synthetic"]

TIMESTAMP = "_time_ms"
"""Suffix of the real series that are timestamps (left out of the real-data summaries)."""

SYNTHETIC = (
    "ts_1m_ms",
    "ts_1s_jit_ms",
    "ts_trade_us",
    "px_1m_fp8",
    "px_trade_fp8",
    "px_1m_f64",
    "ema_f64",
    "vol_fp8",
    "small_int",
    "rand_i64",
    "sorted_ids",
)
"""Names of the synthetic sets, in the reference's order; rand_i64 is the incompressible control."""

_START_MS = 1_700_000_000_000  # 2023-11-14, a plausible exchange timestamp
_FP8 = 10**8  # fixed point with 8 decimals, as exchanges store quantities and prices


def _rng(stream: int) -> np.random.Generator:
    return np.random.default_rng([20_240_601, stream])


def _candle_ticks(n: int) -> np.ndarray:
    """Return a BTC-like 1-minute close in 0.01 USD ticks: log-return sd 5e-4 from 30,000 USD."""
    log_price = np.log(30_000.0) + np.cumsum(_rng(4).normal(0.0, 5e-4, n))
    ticks: np.ndarray = np.rint(np.exp(log_price) * 100).astype(np.int64)
    return ticks


def _ema(values: np.ndarray, span: int) -> np.ndarray:
    alpha = 2.0 / (span + 1)
    out = np.empty_like(values)
    level = float(values[0]) if values.size else 0.0
    for i, value in enumerate(values.tolist()):
        level += alpha * (value - level)
        out[i] = level
    return out


def synthetic(n: int) -> dict[str, np.ndarray]:
    """Return the synthetic sets of compression.md section 2 with *n* elements each."""
    gap = _rng(1).random(n) < 5e-4
    candles = 1 + np.where(gap, _rng(2).integers(1, 61, n), 0)
    ts_1m_ms = _START_MS + 60_000 * (np.cumsum(candles) - candles[0])

    jump = _rng(3).random(n) < 1e-3
    seconds = 1 + np.where(jump, _rng(5).integers(1, 301, n), 0)
    ts_1s_jit_ms = _START_MS + 1000 * (np.cumsum(seconds) - seconds[0]) + _rng(6).integers(0, 25, n)

    repeat = _rng(7).random(n) < 0.3
    gaps_us = np.where(repeat, 0, np.rint(_rng(8).exponential(20_000.0, n)).astype(np.int64))
    ts_trade_us = _START_MS * 1000 + np.cumsum(gaps_us)

    ticks = _candle_ticks(n)
    step_size = _rng(9).integers(1, 4, n) * np.where(_rng(10).random(n) < 0.5, -1, 1)
    trade_steps = np.where(_rng(11).random(n) < 0.6, 0, step_size)
    trade_ticks = 3_000_000 + np.cumsum(trade_steps)

    close = ticks / 100.0  # what float(str) gives for a 2-decimal price
    lots = np.rint(_rng(12).lognormal(np.log(0.5), 1.5, n) / 1e-5).astype(np.int64)
    volume = np.where(_rng(13).random(n) < 0.05, 0, lots) * (_FP8 // 10**5)

    sets = {
        "ts_1m_ms": ts_1m_ms,
        "ts_1s_jit_ms": ts_1s_jit_ms,
        "ts_trade_us": ts_trade_us,
        "px_1m_fp8": ticks * (_FP8 // 100),
        "px_trade_fp8": trade_ticks * (_FP8 // 100),
        "px_1m_f64": close,
        "ema_f64": _ema(close, 20),
        "vol_fp8": volume,
        "small_int": _rng(14).integers(0, 100, n),
        "rand_i64": _rng(15).integers(-(2**63), 2**63 - 1, n, dtype=np.int64, endpoint=True),
        "sorted_ids": 5_000_000_000 + np.cumsum(_rng(16).geometric(0.8, n)),
    }
    out = {}
    for name in SYNTHETIC:
        values = sets[name]
        out[name] = values if values.dtype == np.float64 else values.astype(np.int64)
    return out


def _package_file(package: str, *parts: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations)), *parts)
    return path if path.is_file() else None


def _columns(prefix: str, frame: object, names: dict[str, str]) -> dict[str, np.ndarray]:
    """Return the named columns of a pandas frame as int64 (when integral) or float64."""
    out = {}
    for column, label in names.items():
        values = np.asarray(frame[column].dropna())  # type: ignore[index]
        if values.dtype.kind == "f" and np.array_equal(values, np.round(values)):
            values = values.astype(np.int64)
        out[f"{prefix}_{label}"] = values.astype(np.int64 if values.dtype.kind in "iu" else float)
    return out


def _times_ms(index: object) -> np.ndarray:
    import pandas as pd

    stamps = pd.DatetimeIndex(pd.to_datetime(index)).as_unit("ms")
    return np.asarray(stamps.asi8, dtype=np.int64)


def real() -> dict[str, np.ndarray]:
    """Return the real series the installed packages ship, by name (empty without them)."""
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas comes with the [bench] extra
        return {}
    out: dict[str, np.ndarray] = {}
    ohlcv = {"Open": "open", "High": "high", "Low": "low", "Close": "close", "Volume": "volume"}
    for name, prefix in (("EURUSD.csv", "eurusd_1h"), ("GOOG.csv", "goog_1d"),
                         ("BTCUSD.csv", "btcusd_1mo")):  # fmt: skip
        path = _package_file("backtesting", "test", name)
        if path is None:
            continue
        frame = pd.read_csv(path, index_col=0)
        out[prefix + TIMESTAMP] = _times_ms(frame.index)
        out.update(_columns(prefix, frame, ohlcv))
    path = _package_file("vega_datasets", "_data", "stocks.csv")
    if path is not None:
        stocks = pd.read_csv(path)
        for symbol, rows in stocks.groupby("symbol"):
            out[f"{str(symbol).lower()}_1mo_close"] = np.asarray(rows["price"], dtype=float)
    path = _package_file("vega_datasets", "_data", "seattle-weather.csv")
    if path is not None:
        weather = pd.read_csv(path)
        out["seattle_1d" + TIMESTAMP] = _times_ms(weather["date"])
        names = {"precipitation": "rain", "temp_max": "temp_max", "temp_min": "temp_min",
                 "wind": "wind"}  # fmt: skip
        out.update(_columns("seattle_1d", weather, names))
    for name, prefix, column in (("sf-temps.csv", "sf_1h", "temp"),
                                 ("seattle-temps.csv", "seattle_1h", "temp")):  # fmt: skip
        path = _package_file("vega_datasets", "_data", name)
        if path is not None:
            temps = pd.read_csv(path)
            out[prefix + TIMESTAMP] = _times_ms(temps["date"])
            out[f"{prefix}_temp"] = np.asarray(temps[column], dtype=float)
    path = _package_file("vega_datasets", "_data", "us-employment.csv")
    if path is not None:
        jobs = pd.read_csv(path)
        for column in ("nonfarm", "manufacturing", "construction"):
            out[f"us_jobs_{column}"] = np.asarray(jobs[column]).astype(np.int64)
    return out
