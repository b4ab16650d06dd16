"""Which face track of a source a dub paints: the speaker model's, or the one the row selects.

Every track's identity distance is the check a single face always had (RMS distance of the track's
mean pose-normalised shape from the model's identity, :func:`stableface.inference.source.identity_distance`).
``auto`` takes the closest track within ``max_identity_distance``, plus any other track within it
that never shares a frame with the ones taken (the speaker back in another place after a cut). A
point takes the tracks whose average box contains it, an index the N-th track from the left; both
are then checked like ``auto``. A choice with fewer than ``min_identity_frames`` face frames cannot
be verified: it is kept, and the dub's row says so (:func:`stableface.inference.source.identity_warning`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stableface.errors import InputError
from stableface.face.face_tracks import Box, FaceSelection, SelectionKind
from stableface.inference.config import InferenceConfig


@dataclass(frozen=True)
class TrackSummary:
    """One face track of a source: where and when it is, and how far it is from the model's identity."""

    track_id: int
    frames: np.ndarray  # (n,) int, the source frames it has a face in
    box: Box  # its average box, frame pixels
    distance: float  # identity distance of its mean shape

    @property
    def n_frames(self) -> int:
        return int(self.frames.size)


@dataclass(frozen=True)
class FaceChoice:
    """The tracks a dub paints (never two in one frame) and their frame-weighted identity distance."""

    track_ids: tuple[int, ...]
    distance: float
    n_frames: int


def choose_face(
    tracks: list[TrackSummary],
    selection: FaceSelection,
    speaker: str,
    config: InferenceConfig,
    source: str,
) -> FaceChoice:
    """The tracks of ``selection`` among ``tracks`` (at least one), or :class:`InputError` naming ``source``."""
    limit = config.max_identity_distance
    if selection.kind is SelectionKind.auto:
        return _auto(tracks, speaker, config, source)
    if selection.kind is SelectionKind.index:
        ordered = sorted(tracks, key=lambda track: track.box.centre[0])
        if selection.index > len(ordered):
            raise InputError(
                source, f"face {selection.index} was selected but there are only {len(ordered)} faces"
            )
        picked = [ordered[selection.index - 1]]
    else:
        containing = [track for track in tracks if track.box.contains(selection.x, selection.y)]
        if not containing:
            places = ", ".join(
                track.box.describe() for track in sorted(tracks, key=lambda t: t.box.centre[0])
            )
            raise InputError(
                source, f"no face at ({selection.x:g}, {selection.y:g}); the faces are centred at {places}"
            )
        picked = _without_overlaps(sorted(containing, key=lambda track: track.distance))
    choice = _combined(picked)
    if limit is not None and choice.n_frames >= config.min_identity_frames and choice.distance > limit:
        raise InputError(
            source,
            f"{selection.describe()} does not match speaker model '{speaker}' (distance "
            f"{choice.distance:.3f} > {limit:.3f} over {choice.n_frames} face frames)",
        )
    return choice


def _auto(tracks: list[TrackSummary], speaker: str, config: InferenceConfig, source: str) -> FaceChoice:
    limit = config.max_identity_distance
    by_distance = sorted(tracks, key=lambda track: track.distance)
    matching = [track for track in by_distance if limit is None or track.distance <= limit]
    if matching:
        return _combined(_without_overlaps(matching))
    verifiable = [track for track in by_distance if track.n_frames >= config.min_identity_frames]
    if not verifiable:
        # Too few face frames to tell anyone apart (a one-frame clip): the closest face, unverified.
        return _combined([by_distance[0]])
    closest = verifiable[0]
    faces = f"{len(tracks)} faces" if len(tracks) != 1 else "1 face"
    raise InputError(
        source,
        f"no face matches speaker model '{speaker}' (closest {closest.distance:.3f} > {limit:.3f} over "
        f"{closest.n_frames} face frames; {faces} tracked); dub it with that person's model",
    )


def _without_overlaps(ranked: list[TrackSummary]) -> list[TrackSummary]:
    """The first track and each later one that shares no frame with those kept."""
    kept: list[TrackSummary] = []
    used = np.zeros(0, dtype=np.int64)
    for track in ranked:
        if not np.intersect1d(used, track.frames).size:
            kept.append(track)
            used = np.union1d(used, track.frames)
    return kept


def _combined(tracks: list[TrackSummary]) -> FaceChoice:
    n_frames = sum(track.n_frames for track in tracks)
    distance = sum(track.distance * track.n_frames for track in tracks) / max(n_frames, 1)
    return FaceChoice(tuple(track.track_id for track in tracks), float(distance), n_frames)
