"""Face segments: the runs of frames where the speaker's face is on screen, with short gaps bridged.

A lecture cuts to slides and back, the lecturer turns away, the detector blinks for a frame. A
gap of at most ``max_gap`` frames without a face is a blink and is bridged (its geometry is
interpolated from the neighbours); a longer gap is a cutaway and is never bridged: it splits the
video into separate segments. Dubbing paints only inside segments, training windows and MSI stay
inside them. A shot cut (``cuts``) also ends a segment, even with a face on both sides.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_MAX_GAP_FRAMES = 5  # 0.2 s at 25 fps: a detector blink, never a cutaway


@dataclass(frozen=True)
class Segment:
    """Frames ``start .. stop-1``; ``bridged`` of them had no detected face (short gaps)."""

    start: int
    stop: int
    bridged: int = 0

    @property
    def length(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class SegmentSummary:
    """What a video's segmentation did with its frames (the counts add up to ``n_frames``)."""

    n_frames: int
    segments: tuple[Segment, ...]

    @property
    def n_segment_frames(self) -> int:
        return sum(segment.length for segment in self.segments)

    @property
    def n_bridged(self) -> int:
        """Frames without a face inside segments (short gaps, interpolated)."""
        return sum(segment.bridged for segment in self.segments)

    @property
    def n_skipped(self) -> int:
        """Frames outside every segment (long gaps, and the ends before the first / after the last face)."""
        return self.n_frames - self.n_segment_frames

    def inside(self) -> np.ndarray:
        """(T,) bool: frames inside a segment."""
        mask = np.zeros(self.n_frames, dtype=bool)
        for segment in self.segments:
            mask[segment.start : segment.stop] = True
        return mask

    def labels(self) -> np.ndarray:
        """(T,) int64: the index of each frame's segment, -1 outside every segment."""
        labels = np.full(self.n_frames, -1, dtype=np.int64)
        for index, segment in enumerate(self.segments):
            labels[segment.start : segment.stop] = index
        return labels

    def describe(self, max_gap: int) -> str:
        if not self.segments:
            return "not bridged (no face in any frame)"
        if not self.n_bridged and not self.n_skipped:
            return "none"
        parts = [f"{len(self.segments)} face segment{'s' if len(self.segments) != 1 else ''}"]
        if self.n_bridged:
            parts.append(f"{self.n_bridged} frames in gaps of <= {max_gap} bridged")
        if self.n_skipped:
            parts.append(f"{self.n_skipped} frames without a face skipped")
        return "; ".join(parts)


def face_segments(present: np.ndarray, max_gap: int, cuts: np.ndarray | None = None) -> SegmentSummary:
    """Segments of ``present`` (T,) bool: runs of face frames joined across gaps of <= ``max_gap`` frames.

    ``cuts`` (T,) bool marks frames that start a new shot; a segment never spans one. Segments start
    and end on face frames, so leading and trailing frames without a face are never in one.
    """
    present = np.asarray(present, dtype=bool)
    n_frames = int(present.shape[0])
    cut = np.zeros(n_frames, dtype=bool) if cuts is None else np.asarray(cuts, dtype=bool)
    segments: list[Segment] = []
    start = last = None  # first and latest face frame of the open segment
    for t in np.flatnonzero(present):
        t = int(t)
        joins = last is not None and t - last - 1 <= max_gap and not cut[last + 1 : t + 1].any()
        if not joins and start is not None:
            segments.append(_segment(present, start, last + 1))
            start = None
        if start is None:
            start = t
        last = t
    if start is not None:
        segments.append(_segment(present, start, last + 1))
    return SegmentSummary(n_frames=n_frames, segments=tuple(segments))


def _segment(present: np.ndarray, start: int, stop: int) -> Segment:
    return Segment(start, stop, int((~present[start:stop]).sum()))


def fade_weights(summary: SegmentSummary, fade_frames: int, cuts: np.ndarray | None = None) -> np.ndarray:
    """(T,) float32 in [0, 1]: how much of the dub each frame shows; 0 outside segments.

    Inside a segment the weight ramps up over its first ``fade_frames`` frames and down over its
    last ones, so the mouth eases in and out where the face comes and goes within a shot. At a
    shot cut, and at the video's first and last frame, the segment starts (or ends) at full weight:
    the cut hides the change.
    """
    cut = np.zeros(summary.n_frames, dtype=bool) if cuts is None else np.asarray(cuts, dtype=bool)
    weight = np.zeros(summary.n_frames, dtype=np.float32)
    for segment in summary.segments:
        position = np.arange(segment.length, dtype=np.float64)  # (L,)
        ramp = np.ones_like(position)
        if fade_frames > 0:
            if segment.start > 0 and not cut[segment.start]:
                ramp = np.minimum(ramp, (position + 1) / (fade_frames + 1))
            if segment.stop < summary.n_frames and not cut[segment.stop]:
                ramp = np.minimum(ramp, (segment.length - position) / (fade_frames + 1))
        weight[segment.start : segment.stop] = ramp
    return weight


def shot_cuts(signatures: np.ndarray, threshold: float) -> np.ndarray:
    """(T,) bool, True where frame t starts a new shot: its colour signature jumps from frame t-1's.

    ``signatures`` (T, B) are per-frame normalised colour histograms (:func:`colour_signature`); the
    jump is half the L1 distance (0 = same colours, 1 = disjoint), above ``threshold`` a cut.
    """
    signatures = np.asarray(signatures, dtype=np.float32)
    cuts = np.zeros(signatures.shape[0], dtype=bool)
    if signatures.shape[0] > 1:
        jump = 0.5 * np.abs(np.diff(signatures, axis=0)).sum(axis=1)  # (T-1,)
        cuts[1:] = jump > threshold
    return cuts


SIGNATURE_BINS = 8  # per channel: coarse enough to ignore motion and noise, fine enough to see a cut


def colour_signature(frame: np.ndarray) -> np.ndarray:
    """(3 * SIGNATURE_BINS,) float32: a frame's per-channel colour histograms, each summing to 1/3."""
    small = frame[::4, ::4].reshape(-1, 3)  # every 16th pixel is plenty for a histogram
    bins = (small.astype(np.int32) * SIGNATURE_BINS) >> 8  # (P, 3) in [0, BINS)
    counts = np.stack([np.bincount(bins[:, c], minlength=SIGNATURE_BINS) for c in range(3)])
    return (counts / (3.0 * small.shape[0])).reshape(-1).astype(np.float32)
