"""Which frames a dub paints: the speaker's face segments of the source, eased in and out.

The source's face track (:class:`~stableface.inference.source.SourceTrack`: per-frame presence and
shot cuts) is split into face segments by :func:`stableface.face.segments.face_segments`: gaps of at
most ``inference.max_bridge_frames`` are bridged, longer ones (cutaways, the speaker turned away)
and the frames around them keep the source's own pixels. Within a shot the dub eases in and out
over ``inference.fade_frames``; at a shot cut it starts and stops at once.

On the output timeline (source frames mapped by trim or ping-pong) the segments become *runs*:
consecutive output frames of one face segment, or of no segment. Nothing of a dub crosses a run
boundary: the smoothing weights come from each run's expression alone, the smoothing kernel and
the renderer's windows stay inside a run, so a cutaway's pixels never reach a dubbed face.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from stableface.face.segments import SegmentSummary, face_segments, fade_weights
from stableface.inference.config import InferenceConfig


def source_segments(source, config: InferenceConfig) -> SegmentSummary:
    """The face segments of a prepared source (frames of the source, not of the output)."""
    return face_segments(source.present, config.max_bridge_frames, source.cuts)


def source_dub_weights(source, config: InferenceConfig) -> np.ndarray:
    """(T,) float32 in [0, 1] per source frame: the dub's share of the picture, 0 outside face segments."""
    return fade_weights(source_segments(source, config), config.fade_frames, source.cuts)


@dataclass(frozen=True)
class OutputRuns:
    """The output frames' runs: ``boundaries`` (ascending first frames of every run but the first)."""

    n_frames: int
    boundaries: tuple[int, ...]
    dubbed: tuple[bool, ...]  # per run: a face segment (dubbed) or frames that keep the source's pixels

    def spans(self) -> list[tuple[int, int]]:
        """(start, stop) output frames of every run, in order."""
        edges = [0, *self.boundaries, self.n_frames]
        return list(pairwise(edges))

    @property
    def n_dubbed(self) -> int:
        return sum(self.dubbed)


def output_runs(source, config: InferenceConfig, source_index: np.ndarray) -> OutputRuns:
    """The runs of output frames showing source frames ``source_index`` (N,)."""
    labels = source_segments(source, config).labels()[source_index]  # (N,) -1 outside segments
    if not labels.size:
        return OutputRuns(0, (), ())
    starts = np.flatnonzero(np.diff(labels)) + 1
    first_frames = np.concatenate([[0], starts])
    return OutputRuns(
        n_frames=int(labels.size),
        boundaries=tuple(int(t) for t in starts),
        dubbed=tuple(bool(labels[t] >= 0) for t in first_frames),
    )
