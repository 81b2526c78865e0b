"""Progress reporting of long batches: a callback, or a tqdm bar on a terminal.

Owns the choice of how a batch reports the rows it has done: a caller's function, a tqdm bar
(imported lazily; tqdm comes with the ``progress`` extra), or nothing. It must not know what the
batch does nor touch a database.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeAlias

from orso_pg.errors import ConfigError

__all__ = ["ProgressOption", "Reporter", "reporter"]

ProgressOption: TypeAlias = bool | Callable[[int], object] | None
"""``None``: a bar when stderr is a terminal and tqdm is installed; ``False``: nothing; ``True``:
always a bar; a function: called with the number of rows done after every chunk."""

# An automatic bar appears only for batches that run longer than this, so short batches in
# interactive sessions print nothing.
_AUTO_DELAY_SECONDS = 1.0


class Reporter:
    """Reports rows done to a callback and/or a tqdm bar."""

    __slots__ = ("_bar", "_callback", "_shown")

    def __init__(self, callback: Callable[[int], object] | None, bar: Any) -> None:
        self._callback = callback
        self._bar = bar
        self._shown = 0

    def update(self, done: int) -> None:
        """Record that *done* rows (in all) are done."""
        if self._callback is not None:
            self._callback(done)
        if self._bar is not None:
            self._bar.update(done - self._shown)
            self._shown = done

    def close(self) -> None:
        """Close the bar, if there is one."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _tqdm(total: int | None, label: str, *, delay: float) -> Any:
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=label, unit=" rows", unit_scale=True, delay=delay, leave=False)


def reporter(option: ProgressOption, total: int | None, label: str) -> Reporter:
    """Return the :class:`Reporter` for a batch's ``progress=`` option.

    Args:
        option: What the caller asked for (see :data:`ProgressOption`).
        total: The number of rows, when the input has a length.
        label: Shown before the bar (the table name).

    Raises:
        ConfigError: ``progress=True`` but tqdm is not installed.
    """
    if option is None:
        attached = getattr(sys.stderr, "isatty", None)
        if attached is not None and attached():
            return Reporter(None, _tqdm(total, label, delay=_AUTO_DELAY_SECONDS))
        return Reporter(None, None)
    if option is False:
        return Reporter(None, None)
    if option is True:
        bar = _tqdm(total, label, delay=0.0)
        if bar is None:
            msg = "progress=True needs tqdm: install orso_pg[progress]"
            raise ConfigError(msg)
        return Reporter(None, bar)
    return Reporter(option, None)
