"""Output timelines: which source frame each output frame shows, and the renderer's windows.

The new audio sets the output length N. A source of S frames is trimmed when N <= S and otherwise
played back and forth (0, 1, ..., S-1, S-2, ..., 1, 0, 1, ...), so the picture never jumps.
Consecutive output frames then differ by at most one source frame, which keeps every chunk of
output frames a contiguous range of source frames (see :class:`stableface.io.frame_ranges.FrameSource`).

The renderer sees windows of at most T frames (its learned temporal positions). Windows overlap
by ``overlap`` frames and are cross-faded there with linear ramps, so no frame switches abruptly
from one window's rendering to the next one's. Windows never cross a run boundary (the start of a
face segment or of a stretch without one, :mod:`stableface.inference.segments`): the renderer's
attention over a window's frames never mixes a face with a cutaway or another shot.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from itertools import pairwise

import numpy as np

from stableface.errors import InputError


def source_index_map(n_output: int, n_source: int, start: int = 0, stop: int | None = None) -> np.ndarray:
    """Source frame index of output frames ``start .. stop-1`` (default all N), (n,) int64.

    Trimmed when ``n_output <= n_source``; ping-pong otherwise. Computed arithmetically, so any
    range costs only its own length.
    """
    if n_source < 1:
        raise InputError("source video", "has no frames")
    if n_output < 0:
        raise InputError("output length", f"must be >= 0 frames, got {n_output}")
    stop = n_output if stop is None else min(stop, n_output)
    frames = np.arange(max(start, 0), max(stop, 0), dtype=np.int64)  # (n,)
    if n_source == 1:
        return np.zeros_like(frames)
    period = 2 * (n_source - 1)
    phase = frames % period
    return np.where(phase < n_source, phase, period - phase)


def is_pingpong(n_output: int, n_source: int) -> bool:
    return n_output > n_source


@dataclass(frozen=True)
class WindowLayout:
    """Renderer windows over N output frames, laid out run by run: a run is ``[b_i, b_i+1)`` between
    consecutive ``boundaries`` (frames where a new face segment or stretch without one starts; none =
    one run of all N frames), and no window crosses a boundary, so a window never mixes two shots.

    Within a run of R frames windows start ``0, s, 2s, ...`` after its first frame (s = T - overlap),
    the last one moved back to end exactly at the run's end; a run shorter than T is one short window.
    """

    n_frames: int
    length: int  # T
    overlap: int
    boundaries: tuple[int, ...] = ()  # ascending frames in (0, N), each the first frame of a run

    def __post_init__(self) -> None:
        if self.length < 1:
            raise InputError("renderer window", f"length must be >= 1, got {self.length}")
        if not 0 <= self.overlap < self.length:
            raise InputError(
                "inference.window_overlap",
                f"must be in [0, {self.length - 1}] for T = {self.length}, got {self.overlap}",
            )
        if any(not 0 < b < self.n_frames for b in self.boundaries) or list(self.boundaries) != sorted(
            set(self.boundaries)
        ):
            raise ValueError(
                f"run boundaries must ascend strictly inside (0, {self.n_frames}): {self.boundaries}"
            )

    @property
    def stride(self) -> int:
        return self.length - self.overlap

    @cached_property
    def _windows(self) -> tuple[tuple[int, int, bool, bool], ...]:
        """(start, stop, first of its run, last of its run) of every window, ascending."""
        windows = []
        edges = [0, *self.boundaries, self.n_frames] if self.n_frames > 0 else []
        for run_start, run_stop in pairwise(edges):
            run = run_stop - run_start
            count = 1 if run <= self.length else -(-(run - self.length) // self.stride) + 1
            for index in range(count):
                start = run_start + min(index * self.stride, max(run - self.length, 0))
                windows.append((start, min(start + self.length, run_stop), index == 0, index == count - 1))
        return tuple(windows)

    @property
    def n_windows(self) -> int:
        return len(self._windows)

    def start(self, index: int) -> int:
        """First frame of window ``index``."""
        if not 0 <= index < self.n_windows:
            raise IndexError(f"window {index} of {self.n_windows}")
        return self._windows[index][0]

    def starts(self) -> np.ndarray:
        """(J,) int64 first frame of each window, ascending."""
        return np.array([window[0] for window in self._windows], dtype=np.int64)

    def window(self, index: int) -> tuple[int, int]:
        """(start, stop) frames of window ``index``."""
        start, stop, _, _ = self._windows[index]
        return start, stop

    def first_window_covering(self, frame: int) -> int:
        """The first window that covers ``frame`` (windows before it end at or before ``frame``)."""
        if not 0 <= frame < self.n_frames:
            raise IndexError(f"frame {frame} of {self.n_frames}")
        return next(index for index, window in enumerate(self._windows) if window[1] > frame)

    def run_labels(self, start: int, stop: int) -> np.ndarray:
        """(stop - start,) int64: the run of each frame ``start .. stop-1`` (0 for the first run)."""
        return np.searchsorted(np.asarray(self.boundaries, np.int64), np.arange(start, stop), side="right")

    def weights(self, index: int) -> np.ndarray:
        """(L,) float32 cross-fade weight of each frame of window ``index``, all > 0.

        Ramps of ``overlap`` frames, ``(i + 0.5) / overlap``, rise at the start (not for the first
        window of a run) and fall at the end (not for the last). Where two windows overlap by
        ``overlap`` frames their weights sum to 1 and the mix moves from one to the other by the
        same step every frame, so no frame changes more at a window boundary than inside the overlap.
        """
        start, stop, first, last = self._windows[index]
        position = np.arange(stop - start, dtype=np.float64)  # (L,)
        weight = np.ones_like(position)
        if self.overlap > 0:
            if not first:
                weight = np.minimum(weight, (position + 0.5) / self.overlap)
            if not last:
                weight = np.minimum(weight, (stop - start - position - 0.5) / self.overlap)
        return weight.astype(np.float32)


def blend_windows(layout: WindowLayout, outputs: list[np.ndarray]) -> np.ndarray:
    """All windows' outputs (each (L_j, ...)) -> the cross-faded sequence (N, ...); for tests and short clips."""
    blender = WindowBlender(layout)
    frames = []
    for index, output in enumerate(outputs):
        blender.add(index, output)
        frames.extend(blender.pop_ready())
    return np.stack(frames)


class WindowBlender:
    """Streaming cross-fade: add windows in order, take frames once no later window covers them.

    Holds only the frames of windows not yet final (at most about T of them). Started at window
    ``first_window`` > 0 (a resumed dub), the frames it hands out before the end of the window
    before that one lack that window's share: the caller drops them.
    """

    def __init__(self, layout: WindowLayout, first_window: int = 0):
        self.layout = layout
        self.next_window = first_window
        self.next_frame = layout.start(first_window) if first_window < layout.n_windows else layout.n_frames
        self._sums: dict[int, np.ndarray] = {}
        self._weights: dict[int, float] = {}

    def add(self, index: int, output: np.ndarray) -> None:
        """The renderer's output (L, ...) for window ``index`` (windows must come in order)."""
        if index != self.next_window:
            raise ValueError(f"window {index} added out of order (expected {self.next_window})")
        start, stop = self.layout.window(index)
        if len(output) != stop - start:
            raise ValueError(f"window {index} covers {stop - start} frames, got {len(output)}")
        weights = self.layout.weights(index)
        for offset, frame in enumerate(output):
            t = start + offset
            weighted = weights[offset] * frame.astype(np.float32)
            if t in self._sums:
                self._sums[t] += weighted
                self._weights[t] += float(weights[offset])
            else:
                self._sums[t] = weighted
                self._weights[t] = float(weights[offset])
        self.next_window += 1

    def final_until(self) -> int:
        """Frames before this index are complete (no window still to come covers them)."""
        if self.next_window >= self.layout.n_windows:
            return self.layout.n_frames
        return self.layout.start(self.next_window)

    def pop_ready(self) -> list[np.ndarray]:
        """The complete frames not handed out yet, in order, as float32 arrays."""
        ready = []
        for t in range(self.next_frame, self.final_until()):
            ready.append(self._sums.pop(t) / self._weights.pop(t))
        self.next_frame = max(self.next_frame, self.final_until())
        return ready


def chunk_windows(n_windows: int, windows_per_chunk: int) -> list[tuple[int, int]]:
    """Consecutive (first, stop) window ranges of ``windows_per_chunk`` windows."""
    per_chunk = max(1, int(windows_per_chunk))
    return [(first, min(first + per_chunk, n_windows)) for first in range(0, n_windows, per_chunk)]


def context_range(start: int, stop: int, radius: int, n_frames: int) -> tuple[int, int]:
    """``[start - radius, stop + radius)`` clipped to the sequence: the frames a chunk's smoothing needs."""
    return max(0, start - radius), min(n_frames, stop + radius)


def run_in_pieces(
    n_frames: int,
    piece_frames: int,
    context: int,
    compute: Callable[[int, int], np.ndarray],
    empty: np.ndarray,
) -> np.ndarray:
    """Per-frame rows (N, ...) of a sequence network, computed piece by piece so memory stays flat.

    ``compute(lo, hi)`` returns the rows of frames ``[lo, hi)``: a piece of ``piece_frames`` frames
    plus ``context`` frames each side (clipped to the sequence), which are dropped afterwards. The
    pieces depend on ``n_frames`` only. ``empty`` is the result for a sequence of no frames.
    """
    pieces = []
    for first in range(0, n_frames, piece_frames):
        stop = min(first + piece_frames, n_frames)
        lo, hi = context_range(first, stop, context, n_frames)
        pieces.append(compute(lo, hi)[first - lo : stop - lo])
    return np.concatenate(pieces) if pieces else empty
