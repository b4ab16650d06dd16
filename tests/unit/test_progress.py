"""Progress lines: rate, ETA, and a capped stage's ETA ending at its cap when that comes first."""

from __future__ import annotations

import re
import time

import pytest

from stableface.utils.progress import Progress


def _progress_after(seconds: float, done: int, **kwargs) -> Progress:
    progress = Progress("stage2", unit="steps", **kwargs)
    progress.started = time.monotonic() - seconds  # as if it had run that long
    progress.done = done
    return progress


def test_eta_is_the_count_left_at_the_rate():
    progress = _progress_after(10.0, 50, total=1000)  # 5 steps/s, 950 left
    assert progress.eta_s() == pytest.approx(190.0, rel=0.01)
    assert "50/1000 steps, 5.0 steps/s, ETA 3m10s" in progress.message()
    assert "time cap" not in progress.message()


def test_a_capped_stage_ends_at_its_cap_when_that_comes_first():
    capped = _progress_after(10.0, 50, total=1000, time_limit_s=300.0)  # the cap leaves 290 s, steps 190 s
    assert capped.eta_s() == pytest.approx(190.0, rel=0.01)
    tight = _progress_after(10.0, 50, total=1000, time_limit_s=70.0)  # the cap leaves 60 s
    assert tight.eta_s() == pytest.approx(60.0, abs=0.5)
    assert re.search(r"5\.0 steps/s, ETA (59\.\ds|60\.0s) \(time cap\)$", tight.message()), tight.message()
    spent = _progress_after(80.0, 400, total=1000, time_limit_s=70.0)
    assert spent.eta_s() == 0.0


def test_slow_work_reads_as_seconds_each():
    slow = _progress_after(120.0, 2, total=6)
    assert "2/6 steps, 60.0 s each, ETA 4m00s" in slow.message()
