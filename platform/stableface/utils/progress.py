"""Progress for long work as periodic log lines with rate and ETA.

Log lines (rather than a terminal progress bar) survive Ray workers, job logs and CI output.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

DEFAULT_INTERVAL_S = 10.0


def format_duration(seconds: float) -> str:
    """Render seconds as ``1h02m03s`` / ``2m03s`` / ``3.4s``."""
    if seconds != seconds or seconds == float("inf"):
        return "?"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


class Progress:
    """Counts units of work and logs ``done/total, rate, ETA`` at most every ``interval_s``.

    >>> progress = Progress("decode", total=300, unit="frames")
    >>> for frame in frames: progress.update(1)
    >>> progress.close()
    """

    def __init__(
        self,
        description: str,
        total: int | None = None,
        unit: str = "items",
        interval_s: float = DEFAULT_INTERVAL_S,
        logger: logging.Logger | None = None,
        time_limit_s: float | None = None,
    ):
        self.description = description
        self.total = total
        # Work that also stops at a time limit (a capped training stage) ends at whichever comes first.
        self.time_limit_s = time_limit_s
        self.unit = unit
        self.interval_s = interval_s
        self.logger = logger or logging.getLogger("stableface.progress")
        self.done = 0
        self.started = time.monotonic()
        self._last_log = self.started

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    @property
    def rate(self) -> float:
        elapsed = self.elapsed_s
        return self.done / elapsed if elapsed > 0 else 0.0

    def _eta_by_count(self) -> float:
        if self.total is None or self.rate == 0:
            return float("inf")
        return max(self.total - self.done, 0) / self.rate

    def eta_s(self) -> float:
        """Seconds left: by the count and the rate, or to the time limit if that comes first."""
        by_count = self._eta_by_count()
        if self.time_limit_s is None:
            return by_count if by_count != float("inf") else float("nan")
        return min(by_count, max(self.time_limit_s - self.elapsed_s, 0.0))

    def message(self) -> str:
        count = f"{self.done}/{self.total}" if self.total is not None else f"{self.done}"
        rate = self.rate
        # Slow work (a video a minute) reads better as seconds per item than as "0.0 videos/s".
        pace = f"{rate:.1f} {self.unit}/s" if rate >= 1 or rate == 0 else f"{1 / rate:.1f} s each"
        text = f"{self.description}: {count} {self.unit}, {pace}"
        if self.total is not None or self.time_limit_s is not None:
            text += f", ETA {format_duration(self.eta_s())}"
            if self.time_limit_s is not None and self.eta_s() < self._eta_by_count():  # the cap decides
                text += " (time cap)"
        return text

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now - self._last_log >= self.interval_s:
            self._last_log = now
            self.logger.info(self.message())

    def close(self) -> None:
        self.logger.info(self.message() + f", done in {format_duration(self.elapsed_s)}")


def track(items: Iterable[T], description: str, total: int | None = None, **kwargs) -> Iterator[T]:
    """Iterate ``items`` while logging progress."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    progress = Progress(description, total=total, **kwargs)
    for item in items:
        yield item
        progress.update(1)
    progress.close()
