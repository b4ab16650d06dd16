"""Every face of a video as its own landmark track, and which one a job without a speaker model takes.

:func:`track_faces` runs a backend over a video's frames once, links each frame's faces into tracks
(:class:`stableface.face.face_tracks.TrackLinker`) and keeps each track's landmarks. Preprocessing
(which builds the speaker model, so has none to compare with) and the audit (which scores every
face) use it; a dub chooses by identity instead (:mod:`stableface.inference.face_choice`).

:func:`pick_face` is preprocessing's choice: the selected face, or in ``auto`` the face that fills
the most of the video (frames x box area). When another face shares its frames and is nearly as
large (two people side by side), ``auto`` cannot tell whose training data this is and refuses,
naming the faces, rather than train one speaker on another's face.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from stableface.errors import InputError
from stableface.face.face_tracks import Box, FaceSelection, SelectionKind, TrackLinker
from stableface.face.ibug import N_IBUG
from stableface.face.landmarks import N_MESH, FaceLandmarks, LandmarkBackend, LandmarkTrack, bridge_gaps

# In auto, a face that shares frames with the largest and fills at least this fraction of its
# frames x area is a second candidate: the choice is ambiguous.
AMBIGUOUS_SHARE = 0.5


@dataclass
class FaceTrack:
    """One face through a video: the frames it was found in and its landmarks there (frame pixels)."""

    track_id: int
    frames: list[int] = field(default_factory=list)
    faces: list[FaceLandmarks] = field(default_factory=list)

    @property
    def n_frames(self) -> int:
        return len(self.frames)

    @property
    def box(self) -> Box:
        """Its average box over the frames it was found in."""
        corners = np.mean([_extent(face) for face in self.faces], axis=0)  # (4,)
        return Box(*(float(v) for v in corners))

    @property
    def weight(self) -> float:
        """How much of the video it fills: face frames x average box area."""
        return self.n_frames * self.box.area

    def landmark_track(self, n_frames: int, with_mesh: bool) -> LandmarkTrack:
        """Its landmarks over all ``n_frames`` frames, bridged where it was not found."""
        present = np.zeros(n_frames, dtype=bool)
        present[self.frames] = True
        ibug = np.zeros((n_frames, N_IBUG, 2), np.float32)
        ibug[self.frames] = np.stack([face.ibug68 for face in self.faces])
        mesh = None
        if with_mesh:
            mesh = np.zeros((n_frames, N_MESH, 3), np.float32)
            mesh[self.frames] = np.stack([face.mesh for face in self.faces])
            mesh = bridge_gaps(mesh, present).astype(np.float32)
        return LandmarkTrack(ibug68=bridge_gaps(ibug, present).astype(np.float32), mesh=mesh, present=present)


def _extent(face: FaceLandmarks) -> np.ndarray:
    points = face.mesh if face.mesh is not None else face.ibug68
    box = Box.of_points(points)
    return np.array([box.x0, box.y0, box.x1, box.y1])


@dataclass
class TrackedFaces:
    """A video's face tracks, ordered left to right by average position (face 1 is the leftmost)."""

    tracks: list[FaceTrack]
    n_frames: int

    def any_face(self) -> np.ndarray:
        """(T,) bool, frames where any face was found."""
        found = np.zeros(self.n_frames, dtype=bool)
        for track in self.tracks:
            found[track.frames] = True
        return found

    def describe(self) -> str:
        return ", ".join(
            f"face {number} at {track.box.describe()} in {track.n_frames} frames"
            for number, track in enumerate(self.tracks, start=1)
        )


def track_faces(frames: Iterable[np.ndarray], backend: LandmarkBackend) -> TrackedFaces:
    """Every face of ``frames`` (RGB uint8), linked into tracks; the backend is reset before and after."""
    linker = TrackLinker()
    by_id: dict[int, FaceTrack] = {}
    n_frames = 0
    backend.reset()
    try:
        for frame in frames:
            found = backend.detect_all(frame)
            boxes = [Box(*_extent(face)) for face in found]
            for track_id, face in zip(linker.assign(boxes), found, strict=True):
                track = by_id.setdefault(track_id, FaceTrack(track_id))
                track.frames.append(n_frames)
                track.faces.append(face)
            n_frames += 1
    finally:
        backend.reset()
    tracks = sorted(by_id.values(), key=lambda track: track.box.centre[0])
    return TrackedFaces(tracks, n_frames)


def pick_face(faces: TrackedFaces, selection: FaceSelection, source: str) -> FaceTrack:
    """The face ``selection`` names, as one track, or :class:`InputError` naming ``source``.

    ``auto``: the largest track, refused when another as large shares its frames; tracks that never
    share a frame with it join it (one face on screen at a time is the speaker's, as with a single
    face: after a cut to another framing the face starts a new track). A point takes the tracks
    whose average box contains it, most frames first, joined the same way.
    """
    tracks = faces.tracks
    if not tracks:
        raise InputError(source, "no frame has a detectable face")
    if selection.kind is SelectionKind.index:
        if selection.index > len(tracks):
            raise InputError(
                source, f"face {selection.index} was selected but there are only {len(tracks)} faces"
            )
        return tracks[selection.index - 1]
    if selection.kind is SelectionKind.point:
        containing = [track for track in tracks if track.box.contains(selection.x, selection.y)]
        if not containing:
            raise InputError(
                source, f"no face at ({selection.x:g}, {selection.y:g}); the faces are {faces.describe()}"
            )
        return _joined(sorted(containing, key=lambda track: -track.n_frames))
    by_weight = sorted(tracks, key=lambda track: -track.weight)
    largest = by_weight[0]
    rivals = [
        track
        for track in by_weight[1:]
        if track.weight >= AMBIGUOUS_SHARE * largest.weight and set(track.frames) & set(largest.frames)
    ]
    if rivals:
        raise InputError(
            source,
            f"{len(rivals) + 1} faces of similar size are on screen together ({faces.describe()}); "
            "choose the speaker's with the catalog's face column (a face number from the left or a point "
            "'x,y' in source pixels)",
        )
    return _joined([largest, *(track for track in by_weight[1:] if not _shares_frames(track, tracks))])


def _shares_frames(track: FaceTrack, tracks: list[FaceTrack]) -> bool:
    frames = set(track.frames)
    return any(frames & set(other.frames) for other in tracks if other is not track)


def _joined(ranked: list[FaceTrack]) -> FaceTrack:
    """The first track and each later one that shares no frame with those kept, as one track."""
    kept: list[FaceTrack] = []
    used: set[int] = set()
    for track in ranked:
        if not used & set(track.frames):
            kept.append(track)
            used |= set(track.frames)
    if len(kept) == 1:
        return kept[0]
    pairs = sorted(
        ((frame, face) for track in kept for frame, face in zip(track.frames, track.faces, strict=True)),
        key=lambda pair: pair[0],
    )
    return FaceTrack(kept[0].track_id, [frame for frame, _ in pairs], [face for _, face in pairs])
