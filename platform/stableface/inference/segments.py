"""Which frames a dub paints: the speaker's face segments of the source, eased in and out.

The source's face track (:class:`~stableface.inference.source.SourceTrack`: per-frame presence and
shot cuts) is split into face segments by :func:`stableface.face.segments.face_segments`: gaps of at
most ``inference.max_bridge_frames`` are bridged, longer ones (cutaways, the speaker turned away)
and the frames around them keep the source's own pixels. Within a shot the dub eases in and out
over ``inference.fade_frames``; at a shot cut it starts and stops at once.
"""

from __future__ import annotations

import numpy as np

from stableface.face.segments import SegmentSummary, face_segments, fade_weights
from stableface.inference.config import InferenceConfig


def source_segments(source, config: InferenceConfig) -> SegmentSummary:
    """The face segments of a prepared source (frames of the source, not of the output)."""
    return face_segments(source.present, config.max_bridge_frames, source.cuts)


def source_dub_weights(source, config: InferenceConfig) -> np.ndarray:
    """(T,) float32 in [0, 1] per source frame: the dub's share of the picture, 0 outside face segments."""
    return fade_weights(source_segments(source, config), config.fade_frames, source.cuts)


def count_runs(mask: np.ndarray) -> int:
    """Number of runs of True in a (N,) bool array."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.size:
        return 0
    return int(mask[0]) + int((mask[1:] & ~mask[:-1]).sum())
