"""Score one video file: decode, track landmarks, MSI per face segment (short gaps bridged), extras.

The result always says what happened: ``ok`` with scores, ``no_score`` with the reason (too few
frames, too few faces) or ``failed`` with the input error (unreadable file, no video stream).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from stableface.errors import InputError, errors_naming
from stableface.face.face_tracks import Box, TrackLinker
from stableface.face.ibug import N_IBUG
from stableface.face.landmarks import FaceLandmarks, LandmarkBackend, bridge_gaps, make_backend
from stableface.face.segments import face_segments
from stableface.io.video import iter_frames, probe_video
from stableface.metrics.config import MetricsConfig
from stableface.metrics.msi import CROP_REFERENCE_FRAMES, MIN_FRAMES, CropBox, crop_box, motion_stability
from stableface.metrics.slice import sample_column, slice_roughness
from stableface.status import RowStatus

if TYPE_CHECKING:  # the expert imports torch; scoring without it must not
    from stableface.metrics.lipsync import SyncExpert

logger = logging.getLogger(__name__)

SLICE_BUFFER_FRAMES = 250  # frames held back while the slice column is not yet known


@dataclass
class VideoScore:
    """Everything an audit row says about one video."""

    source: str
    status: RowStatus
    reason: str = ""
    n_frames: int = 0
    n_face_frames: int = 0
    n_bridged: int = 0  # frames without a face inside face segments (short gaps, interpolated)
    n_skipped: int = 0  # frames without a face outside every segment (long gaps, ends): not scored
    n_segments: int = 0
    n_scored_segments: int = 0  # segments long enough for an MSI (config.min_frames)
    bridging: str = "none"
    fps: float | None = None
    duration_s: float | None = None
    width: int | None = None
    height: int | None = None
    msi_lip: float | None = None
    msi_jaw: float | None = None
    msi_per_landmark: list[float] | None = None
    slice_roughness: float | None = None
    cpbd: float | None = None
    lipsync_confidence: float | None = None  # the lip-sync expert's LSE-C style confidence
    lipsync_offset_frames: int | None = None  # > 0: the sound comes late (stableface.metrics.lipsync)
    lipsync_offset_ms: float | None = None
    lipsync_status: str = "not scored"  # RowStatus.OK or why there is no sync score
    extras: dict[str, Any] = field(default_factory=dict)
    slice_image: np.ndarray | None = None  # (slice_height, T, 3) uint8, kept out of tables
    ibug68: np.ndarray | None = None  # (T, 68, 2) bridged landmarks, kept out of tables

    @property
    def n_missing(self) -> int:
        return self.n_frames - self.n_face_frames

    def to_row(self) -> dict[str, Any]:
        """A flat, table-ready dict (no arrays except the per-landmark list)."""
        row = {
            "status": self.status,
            "reason": self.reason,
            "n_frames": self.n_frames,
            "n_face_frames": self.n_face_frames,
            "n_missing_face": self.n_missing,
            "n_bridged_frames": self.n_bridged,
            "n_skipped_frames": self.n_skipped,
            "n_segments": self.n_segments,
            "n_scored_segments": self.n_scored_segments,
            "bridging": self.bridging,
            "fps": self.fps,
            "duration_s": self.duration_s,
            "width": self.width,
            "height": self.height,
            "msi_lip": self.msi_lip,
            "msi_jaw": self.msi_jaw,
            "msi_per_landmark": self.msi_per_landmark,
            "slice_roughness": self.slice_roughness,
            "cpbd": self.cpbd,
            "lipsync_confidence": self.lipsync_confidence,
            "lipsync_offset_frames": self.lipsync_offset_frames,
            "lipsync_offset_ms": self.lipsync_offset_ms,
            "lipsync_status": self.lipsync_status,
        }
        row.update(self.extras)
        return row


class _SliceCollector:
    """Collects the mouth column of every frame; frames wait until the first faces fix the column."""

    def __init__(self, height: int):
        self.height = height
        self.box: CropBox | None = None
        self.column_x = 0.0
        self.pending: list[np.ndarray] = []
        self.face_points: list[np.ndarray] = []
        self.columns: list[np.ndarray] = []

    def add(self, frame: np.ndarray, ibug68: np.ndarray | None) -> None:
        if self.box is None:
            self.pending.append(frame)
            if ibug68 is not None:
                self.face_points.append(ibug68)
            if len(self.face_points) >= CROP_REFERENCE_FRAMES or len(self.pending) >= SLICE_BUFFER_FRAMES:
                self._fix_box(frame.shape)
            return
        self.columns.append(self._column(frame))

    def _fix_box(self, frame_shape: tuple[int, ...]) -> None:
        if self.face_points:
            box = crop_box(np.stack(self.face_points))
            self.column_x = box.left + box.size / 2
        else:  # no face yet: the centre column over the full height
            height, width = frame_shape[:2]
            box = CropBox(left=(width - height) / 2, top=0.0, size=float(height))
            self.column_x = width / 2
        self.box = box
        self.columns.extend(self._column(frame) for frame in self.pending)
        self.pending = []

    def _column(self, frame: np.ndarray) -> np.ndarray:
        assert self.box is not None
        return sample_column(frame, self.column_x, self.box.top, self.box.size, self.height)

    def image(self) -> np.ndarray | None:
        if self.box is None and self.pending:
            self._fix_box(self.pending[0].shape)
        if not self.columns:
            return None
        return np.stack(self.columns, axis=1)  # (height, T, 3)


def score_video(
    path: str | Path,
    config: MetricsConfig | None = None,
    backend: LandmarkBackend | None = None,
    keep_landmarks: bool = False,
    name: str | None = None,
    sync: SyncExpert | None = None,
    face: Box | None = None,
) -> VideoScore:
    """Score a local video file. Input problems become ``failed``/``no_score`` results, not exceptions.

    ``face``: where the face to score is (a dub's painted face, frame pixels); in a frame where the
    backend finds several faces, the one whose centre is nearest to its centre is scored. Without it,
    or with one face found, the most prominent face is.

    ``name`` (default: the path) is what reasons call the video, e.g. the URI a temporary copy came from.
    ``sync``: the lip-sync expert, which scores the file's own audio track against the tracked lips
    (a video without usable audio gets ``lipsync_status`` saying why, its MSI stays).
    """
    config = config or MetricsConfig()
    source = name or str(path)
    score = _probe(path, source)
    if score.status != RowStatus.OK:
        return score
    own_backend = backend is None
    backend = backend or make_backend(config.backend)
    slicer = _SliceCollector(config.slice_height) if config.slice_image else None
    rows: list[np.ndarray | None] = []
    cpbd_values: list[float] = []
    try:
        backend.reset()
        with errors_naming(source, path):
            for index, frame in enumerate(iter_frames(path, max_frames=config.max_frames)):
                found = backend.detect(frame) if face is None else _nearest(backend.detect_all(frame), face)
                points = None if found is None else found.ibug68  # (68, 2)
                rows.append(points)
                if slicer is not None:
                    slicer.add(frame, points)
                _sample_cpbd(frame, index, config, cpbd_values)
    except InputError as error:
        score.status, score.reason = RowStatus.FAILED, str(error)
        score.n_frames = len(rows)
        return score
    finally:
        backend.reset()
        if own_backend:
            backend.close()
    return _scored(score, rows, slicer, cpbd_values, config, keep_landmarks, sync, path)


def score_video_faces(
    path: str | Path,
    config: MetricsConfig | None = None,
    backend: LandmarkBackend | None = None,
    keep_landmarks: bool = False,
    name: str | None = None,
    sync: SyncExpert | None = None,
) -> list[VideoScore]:
    """Score every face of a local video file in one pass: a :class:`VideoScore` per face track.

    Faces are linked frame to frame into tracks (:class:`stableface.face.face_tracks.TrackLinker`),
    and each track with at least ``config.min_frames`` face frames is scored as :func:`score_video`
    scores a single face (its MSI over its own face segments; frames where it is not found are that
    face's missing frames). Scores are ordered left to right by the face's average box; each
    carries ``face`` (its number from the left, the form ``FaceSelection`` reads), ``face_box`` and
    ``n_faces`` in its extras. With one face on screen the one score equals :func:`score_video`'s.
    A video with no face at all gets one score saying so.
    """
    config = config or MetricsConfig()
    source = name or str(path)
    probed = _probe(path, source)
    if probed.status != RowStatus.OK:
        return [probed]
    own_backend = backend is None
    backend = backend or make_backend(config.backend)
    linker = TrackLinker()
    rows: dict[int, list[np.ndarray | None]] = {}  # per track id, its landmarks or None per frame
    slicers: dict[int, _SliceCollector] = {}  # the first face's from frame 0, later ones from theirs
    first_slicer = _SliceCollector(config.slice_height) if config.slice_image else None
    cpbd_values: list[float] = []
    n_frames = 0
    try:
        backend.reset()
        with errors_naming(source, path):
            for index, frame in enumerate(iter_frames(path, max_frames=config.max_frames)):
                found = backend.detect_all(frame)
                points = {
                    track_id: face.ibug68
                    for track_id, face in zip(
                        linker.assign([Box.of_points(face.ibug68) for face in found]), found, strict=True
                    )
                }
                for track_id in points:
                    if track_id not in rows:
                        rows[track_id] = [None] * index
                        if first_slicer is not None:
                            slicers[track_id] = (
                                first_slicer if not slicers else _SliceCollector(config.slice_height)
                            )
                for track_id, track_rows in rows.items():
                    track_rows.append(points.get(track_id))
                    if track_id in slicers:
                        slicers[track_id].add(frame, points.get(track_id))
                if not rows and first_slicer is not None:
                    first_slicer.add(frame, None)
                _sample_cpbd(frame, index, config, cpbd_values)
                n_frames = index + 1
    except InputError as error:
        probed.status, probed.reason, probed.n_frames = RowStatus.FAILED, str(error), n_frames
        return [probed]
    finally:
        backend.reset()
        if own_backend:
            backend.close()
    if not rows:
        return [
            _scored(probed, [None] * n_frames, first_slicer, cpbd_values, config, keep_landmarks, sync, path)
        ]
    counts = {track_id: sum(row is not None for row in track_rows) for track_id, track_rows in rows.items()}
    kept = [track_id for track_id in rows if counts[track_id] >= config.min_frames] or [
        max(counts, key=counts.get)
    ]
    boxes = {track_id: _average_box(rows[track_id]) for track_id in kept}
    scores = []
    for number, track_id in enumerate(sorted(kept, key=lambda t: boxes[t].centre[0]), start=1):
        score = dataclasses.replace(probed, extras={})
        _scored(score, rows[track_id], slicers.get(track_id), cpbd_values, config, keep_landmarks, sync, path)
        box = boxes[track_id]
        score.extras.update(
            face=str(number),
            face_box=[round(v, 1) for v in (box.x0, box.y0, box.x1, box.y1)],
            n_faces=len(kept),
        )
        scores.append(score)
    return scores


def _average_box(rows: list[np.ndarray | None]) -> Box:
    boxes = [Box.of_points(row) for row in rows if row is not None]
    return Box(*(float(np.mean([getattr(b, corner) for b in boxes])) for corner in ("x0", "y0", "x1", "y1")))


def _probe(path: str | Path, source: str) -> VideoScore:
    try:
        with errors_naming(source, path):
            info = probe_video(path)
    except InputError as error:
        return VideoScore(source=source, status=RowStatus.FAILED, reason=str(error))
    return VideoScore(
        source=source,
        status=RowStatus.OK,
        fps=info.fps_float,
        duration_s=info.duration_s,
        width=info.width,
        height=info.height,
    )


def _sample_cpbd(frame: np.ndarray, index: int, config: MetricsConfig, values: list[float]) -> None:
    if config.cpbd and index % max(config.cpbd_every, 1) == 0:
        from stableface.metrics.cpbd import cpbd

        values.append(cpbd(frame))


def _scored(
    score: VideoScore,
    rows: list[np.ndarray | None],
    slicer: _SliceCollector | None,
    cpbd_values: list[float],
    config: MetricsConfig,
    keep_landmarks: bool,
    sync: SyncExpert | None,
    path: str | Path,
) -> VideoScore:
    """``score`` completed from one face's landmarks per frame (None where it was not found)."""
    source = score.source
    present = np.array([row is not None for row in rows], dtype=bool)  # (T,)
    score.n_frames = int(present.size)
    score.n_face_frames = int(present.sum())
    segments = face_segments(present, config.max_bridge_frames)
    score.n_segments, score.n_bridged = len(segments.segments), segments.n_bridged
    score.n_skipped = score.n_frames - score.n_face_frames - segments.n_bridged
    score.bridging = segments.describe(config.max_bridge_frames)
    if cpbd_values:
        score.cpbd = float(np.mean(cpbd_values))
    if slicer is not None:
        score.slice_image = slicer.image()
        if score.slice_image is not None and score.slice_image.shape[1] >= 3:
            score.slice_roughness = slice_roughness(score.slice_image)

    face_fraction = score.n_face_frames / max(score.n_frames, 1)
    if score.n_frames < config.min_frames:
        score.status = RowStatus.NO_SCORE
        score.reason = f"{source}: only {score.n_frames} frames (MSI needs at least {config.min_frames})"
        return score
    if face_fraction < config.min_face_fraction:
        score.status = RowStatus.NO_SCORE
        score.reason = (
            f"{source}: a face was found in {score.n_face_frames} of {score.n_frames} frames "
            f"({face_fraction:.0%}); MSI needs at least {config.min_face_fraction:.0%}"
        )
        return score

    filled = np.stack([row if row is not None else np.zeros((N_IBUG, 2), np.float32) for row in rows])
    scored = [s for s in segments.segments if s.length >= max(config.min_frames, MIN_FRAMES)]
    score.n_scored_segments = len(scored)
    if not scored:
        score.status = RowStatus.NO_SCORE
        score.reason = (
            f"{source}: no face segment has {config.min_frames} frames for an MSI "
            f"({segments.describe(config.max_bridge_frames)})"
        )
        return score
    results = [
        motion_stability(bridge_gaps(filled[s.start : s.stop], present[s.start : s.stop])) for s in scored
    ]
    lengths = np.array([s.length for s in scored], np.float64)  # (G,) weights of the segments
    score.msi_lip = float(np.average([r.lip for r in results], weights=lengths))
    score.msi_jaw = float(np.average([r.jaw for r in results], weights=lengths))
    per_landmark = np.average(np.stack([r.per_landmark for r in results]), axis=0, weights=lengths)  # (68,)
    score.msi_per_landmark = [float(v) for v in per_landmark]
    bridged = bridge_gaps(filled, present).astype(np.float32)  # (T, 68, 2)
    if keep_landmarks:
        score.ibug68 = bridged
    if sync is not None:
        _score_sync(score, sync, path, bridged, segments.inside(), source)
    return score


def _nearest(faces: list[FaceLandmarks], box: Box) -> FaceLandmarks | None:
    if len(faces) <= 1:
        return faces[0] if faces else None
    x, y = box.centre
    return min(faces, key=lambda f: float(np.hypot(*(np.asarray(Box.of_points(f.ibug68).centre) - (x, y)))))


def load_sync_expert(config: MetricsConfig) -> tuple[SyncExpert | None, str]:
    """The lip-sync expert ``config`` asks for and ``""``, or ``(None, why not)`` (never raises)."""
    if not config.lipsync:
        return None, ""
    from stableface.metrics.lipsync import SyncExpert

    try:
        return SyncExpert.load(config.lipsync_weights, config.lipsync_max_offset), ""
    except InputError as error:
        logger.warning("lip-sync expert unavailable: %s", error)
        return None, f"unavailable: {error}"


def _score_sync(
    score: VideoScore, sync: SyncExpert, path: str | Path, ibug68: np.ndarray, inside: np.ndarray, source: str
) -> None:
    try:
        with errors_naming(source, path):
            result = sync.score_file(path, ibug68, score.fps or 25.0, inside)
    except InputError as error:
        score.lipsync_status = str(error)
        return
    score.lipsync_confidence = round(result.confidence, 4)
    score.lipsync_offset_frames = result.offset_frames
    score.lipsync_offset_ms = round(result.offset_ms, 1)
    score.lipsync_status = RowStatus.OK


def drift_message(offset_frames: int, fps: float) -> str:
    """The report's words for an audio offset: 'audio out of sync by +8 frames (+320 ms, sound late)'."""
    milliseconds = 1000.0 * offset_frames / fps
    direction = "sound late" if offset_frames > 0 else "sound early"
    return f"audio out of sync by {offset_frames:+d} frames ({milliseconds:+.0f} ms, {direction})"


def flag_reasons(
    row: dict[str, Any],
    lip_below: float,
    jaw_below: float,
    offset_frames: int | None = None,
    offset_min_confidence: float = 0.0,
) -> list[str]:
    """Why a scored audit row is flagged: low lip or jaw MSI, audio out of sync (empty: not flagged).

    ``offset_frames`` None turns the sync flag off; offsets of scores less confident than
    ``offset_min_confidence`` are not trusted enough to flag.
    """
    if row.get("status") != RowStatus.OK:
        return []
    reasons = []
    lip, jaw = row.get("msi_lip"), row.get("msi_jaw")
    if lip is not None and lip < lip_below:
        reasons.append(f"lip MSI {lip:.3f} < {lip_below:g}")
    if jaw is not None and jaw < jaw_below:
        reasons.append(f"jaw MSI {jaw:.3f} < {jaw_below:g}")
    offset, confidence = row.get("lipsync_offset_frames"), row.get("lipsync_confidence")
    if (
        offset_frames is not None
        and offset is not None
        and confidence is not None
        and abs(int(offset)) > offset_frames
        and confidence >= offset_min_confidence
    ):
        reasons.append(drift_message(int(offset), float(row.get("fps") or 25.0)))
    return reasons


def config_flag_reasons(score: VideoScore | dict[str, Any], config: MetricsConfig) -> list[str]:
    row = score.to_row() if isinstance(score, VideoScore) else score
    return flag_reasons(
        row,
        config.flag_lip_below,
        config.flag_jaw_below,
        config.flag_offset_frames if config.lipsync else None,
        config.flag_offset_min_confidence,
    )


def is_flagged(score: VideoScore | dict[str, Any], config: MetricsConfig) -> bool:
    """True when a scored video's lip or jaw MSI falls below the thresholds or its audio drifts."""
    return bool(config_flag_reasons(score, config))
