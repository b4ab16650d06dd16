"""What the benchmarks share: the real data they run on and single-core pinning."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data() -> Path:
    """``$STABLEFACE_SHARED_DATA`` or ``../shared/data`` beside the repo."""
    root = Path(os.environ.get("STABLEFACE_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
    if not (root / "grid" / "s1").is_dir():
        raise FileNotFoundError(f"{root}: no GRID clips; set STABLEFACE_SHARED_DATA to ../shared/data")
    return root


def grid_clips(count: int) -> list[Path]:
    """The first ``count`` grid/s1 clips (75 frames, 360x288, 25 fps each)."""
    return sorted((shared_data() / "grid" / "s1").glob("*.mpg"))[:count]


def pin_to_one_core() -> int:
    """Restrict this process (and the threads libraries start later) to one core; returns it."""
    core = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})
    return core
