"""Preparing a source video once: face track -> stable crop box, pose and expression per frame.

The same geometry preprocessing measures (:mod:`stableface.data.extract`): MediaPipe meshes, a
stable crop box (:func:`stableface.face.tracking.stable_crop_box` with the face model's crop
settings at the model's crop size), the similarity pose from the rigid vertices and the expression
on the speaker model's basis relative to its identity. It is computed in one streaming pass that
reduces each frame's mesh to its box extent, pose and expression at once, so memory stays at a
few hundred bytes per frame for any video length; the pose in crop pixels follows from the frame
pose and the box (a similarity, so the fit commutes with it). Every face on screen gets its own
track and reduction (:mod:`stableface.face.face_tracks`); the one dubbed is chosen at the end
(:mod:`stableface.inference.face_choice`), and only its frames are the source's face frames.

The result, :class:`SourceTrack`, is small and serialisable (npz through Storage): a server or a
batch job prepares a source once per speaker model and reuses it for every new audio.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from stableface.errors import InputError, errors_naming
from stableface.face.face_model import N_SURFACE, Pose, normalise
from stableface.face.face_tracks import Box, FaceSelection, TrackLinker
from stableface.face.landmarks import LandmarkBackend, bridge_gaps, make_backend
from stableface.face.segments import colour_signature, shot_cuts
from stableface.face.tracking import crop_affines, require_faces, stable_crop_box
from stableface.inference.config import InferenceConfig
from stableface.inference.face_choice import TrackSummary, choose_face
from stableface.io.storage import Storage
from stableface.io.video import iter_frames, probe_video
from stableface.speaker_model import SpeakerModel

logger = logging.getLogger(__name__)

SOURCE_FORMAT = "stableface-dub-source/1"
REDUCE_BATCH = 128  # meshes held before they are reduced to pose + expression together


@dataclass
class SourceTrack:
    """A source video's per-frame geometry for one speaker model (T frames, E expression coefficients)."""

    source: str  # the video's URI, for messages
    fps: Fraction
    width: int  # decoded frame size (after display rotation)
    height: int
    centres: np.ndarray  # (T, 2) float32 smoothed crop-box centres, frame pixels
    side: float  # crop-box side, frame pixels
    crop_size: int  # the speaker model's dataset crop size (crops are taken at it, then resized)
    present: np.ndarray  # (T,) bool, frames where a face was detected (the others are bridged)
    cuts: np.ndarray  # (T,) bool, frames that start a new shot (frame 0 never does)
    pose: Pose  # (T) canonical -> frame pixels
    expression: np.ndarray  # (T, E) float32 on the model's basis, mouth coefficients first
    identity_distance: float  # RMS vertex distance of the video's mean face from the model identity
    model_key: str  # which speaker model (basis + identity) the expression is relative to

    @property
    def n_frames(self) -> int:
        return int(self.present.shape[0])

    @property
    def duration_s(self) -> float:
        return self.n_frames / float(self.fps)

    def crop_affines(self, indices: np.ndarray, size: int) -> np.ndarray:
        """(n, 2, 3) frame -> crop affines of frames ``indices`` for a ``size``-pixel crop of the box."""
        return crop_affines(self.centres[np.asarray(indices)], self.side, size)

    def crop_pose(self, indices: np.ndarray, size: int) -> Pose:
        """The pose of frames ``indices`` in ``size``-pixel crop coordinates (canonical -> crop)."""
        indices = np.asarray(indices)
        scale = size / self.side  # crop pixels per frame pixel
        translation = self.pose.translation[indices] * scale  # (n, 3): z scales like x, never shifts
        translation[:, :2] += (size - 1) / 2.0 - scale * self.centres[indices]
        return Pose(
            (self.pose.scale[indices] * scale).astype(np.float32),
            self.pose.rotation[indices],
            translation.astype(np.float32),
        )

    # ----------------------------------------------------------------- persistence
    def save(self, uri: str, storage: Storage | None = None) -> None:
        buffer = io.BytesIO()
        np.savez_compressed(
            buffer,
            format=np.array(SOURCE_FORMAT),
            source=np.array(self.source),
            fps=np.array([self.fps.numerator, self.fps.denominator], dtype=np.int64),
            size=np.array([self.width, self.height], dtype=np.int64),
            centres=self.centres,
            side=np.array(self.side),
            crop_size=np.array(self.crop_size),
            present=self.present,
            cuts=self.cuts,
            pose=self.pose.to_array(),
            expression=self.expression,
            identity_distance=np.array(self.identity_distance),
            model_key=np.array(self.model_key),
        )
        (storage or Storage()).write_bytes(uri, buffer.getvalue())

    @classmethod
    def load(cls, uri: str, storage: Storage | None = None) -> SourceTrack:
        raw = (storage or Storage()).read_bytes(uri)
        try:
            with np.load(io.BytesIO(raw), allow_pickle=False) as data:
                arrays = {key: data[key] for key in data.files}
        except (ValueError, OSError) as error:
            raise InputError(uri, f"not a prepared source file ({error})") from error
        if str(arrays.get("format", "")) != SOURCE_FORMAT:
            raise InputError(uri, f"not a prepared source file (expected format {SOURCE_FORMAT})")
        fps, size = arrays["fps"], arrays["size"]
        return cls(
            source=str(arrays["source"]),
            fps=Fraction(int(fps[0]), int(fps[1])),
            width=int(size[0]),
            height=int(size[1]),
            centres=arrays["centres"],
            side=float(arrays["side"]),
            crop_size=int(arrays["crop_size"]),
            present=arrays["present"].astype(bool),
            # Files prepared before shots were detected: no cuts, segments split at long gaps only.
            cuts=arrays["cuts"].astype(bool) if "cuts" in arrays else np.zeros(len(arrays["present"]), bool),
            pose=Pose.from_array(arrays["pose"]),
            expression=arrays["expression"].astype(np.float32),
            identity_distance=float(arrays["identity_distance"]),
            model_key=str(arrays["model_key"]),
        )

    def check_model(self, model: SpeakerModel, model_uri: str = "speaker model") -> None:
        """Raise :class:`InputError` when this track was prepared for a different speaker model."""
        expected = model_key(model)
        if self.model_key != expected:
            raise InputError(
                self.source,
                f"was prepared for speaker model {self.model_key}, not {model_uri} ({expected}); prepare it again",
            )


def model_key(model: SpeakerModel) -> str:
    """``<speaker>:<hash>`` of what a prepared source depends on: basis, identity and crop settings."""
    digest = hashlib.sha256()
    face = model.face_model
    for array in (face.mouth_basis, face.upper_basis, model.identity):
        digest.update(np.ascontiguousarray(array, dtype=np.float32).tobytes())
    digest.update(f"{model.crop_size}:{face.config.crop_scale}:{face.config.box_smoothing_frames}".encode())
    return f"{model.speaker}:{digest.hexdigest()[:16]}"


class _GeometryAccumulator:
    """Reduces detected meshes to box extents, pose and expression in batches (bounded memory)."""

    def __init__(self, model: SpeakerModel):
        self.model = model
        self.pending: list[tuple[int, np.ndarray]] = []
        self.rows: dict[str, list[np.ndarray]] = {"index": [], "extent": [], "pose": [], "expression": []}
        self.shape_sum = np.zeros((model.identity.shape[0], 3), np.float64)
        self.n_faces = 0

    def add(self, index: int, mesh: np.ndarray) -> None:
        self.pending.append((index, mesh))
        if len(self.pending) >= REDUCE_BATCH:
            self.reduce()

    def reduce(self) -> None:
        if not self.pending:
            return
        indices = np.array([index for index, _ in self.pending])
        meshes = np.stack([mesh for _, mesh in self.pending])  # (B, 478, 3) frame pixels
        self.pending = []
        face = self.model.face_model
        pose = face.pose(meshes)  # (B) canonical -> frame pixels
        normalised = normalise(meshes, pose)  # (B, 478, 3) canonical frame
        xy = meshes[..., :2]
        self.rows["index"].append(indices)
        self.rows["extent"].append(np.stack([xy.min(axis=1), xy.max(axis=1)], axis=1))  # (B, 2 corners, 2)
        self.rows["pose"].append(pose.to_array())  # (B, 13)
        self.rows["expression"].append(face.encode(normalised, self.model.identity))  # (B, E)
        self.shape_sum += normalised.sum(axis=0, dtype=np.float64)
        self.n_faces += len(indices)

    def frames(self) -> np.ndarray:
        """(n,) the frames this track has a face in, in order."""
        return np.concatenate(self.rows["index"])

    def summary(self, track_id: int) -> TrackSummary:
        extent = np.concatenate(self.rows["extent"]).mean(axis=0)  # (2 corners, 2): the average box
        return TrackSummary(
            track_id=track_id,
            frames=self.frames(),
            box=Box(*(float(v) for v in extent.reshape(-1))),
            distance=identity_distance(self.shape_sum / self.n_faces, self.model.identity),
        )


def per_frame(tracks: list[_GeometryAccumulator], name: str, n_frames: int) -> np.ndarray:
    """(T, ...) rows of ``name`` of ``tracks`` (never two in one frame), zeros where none has a face."""
    rows = np.concatenate([row for track in tracks for row in track.rows[name]])
    out = np.zeros((n_frames, *rows.shape[1:]), dtype=np.float32)
    out[np.concatenate([track.frames() for track in tracks])] = rows
    return out


def identity_distance(mean_shape: np.ndarray, identity: np.ndarray) -> float:
    """RMS distance over the surface vertices between two (478, 3) canonical shapes (1 = eye-corner distance)."""
    difference = np.asarray(mean_shape, np.float64)[:N_SURFACE] - np.asarray(identity, np.float64)[:N_SURFACE]
    return float(np.sqrt(np.mean(np.sum(difference**2, axis=1))))


def identity_warning(source: SourceTrack, config: InferenceConfig) -> str:
    """Non-empty when ``source`` had too few face frames for the identity check."""
    n_faces = int(source.present.sum())
    if config.max_identity_distance is None or n_faces >= config.min_identity_frames:
        return ""
    return (
        f"too few face frames ({n_faces} < {config.min_identity_frames}) to verify the face is the speaker's"
    )


def prepare_source(
    path: str | Path,
    model: SpeakerModel,
    config: InferenceConfig | None = None,
    source: str | None = None,
    backend: LandmarkBackend | None = None,
    face: FaceSelection | None = None,
) -> SourceTrack:
    """Track a local video file once and measure everything dubbing needs from it.

    Every face is tracked (up to ``config.max_faces`` at once, :mod:`stableface.face.face_tracks`)
    and the track of ``face`` (default: the one that matches the model,
    :func:`~stableface.inference.face_choice.choose_face`) is the one measured, so the dub paints
    that face only. ``source`` (default: the path) names the video in errors:
    :class:`~stableface.errors.NoFaceFound` when too few frames show a face, :class:`InputError`
    when no face (or not the selected one) is the model's speaker.
    """
    config = config or InferenceConfig()
    source = source or str(path)
    with errors_naming(source, path):
        info = probe_video(path)
    face_config = dataclasses.replace(model.face_model.config, crop_size=model.crop_size)
    own_backend = backend is None
    backend = backend or make_backend(config.landmark_backend, max_faces=config.max_faces)
    if not backend.provides_mesh:
        raise InputError(source, f"landmark backend '{backend.name}' gives no 3D mesh; use 'mediapipe'")
    linker = TrackLinker()
    tracks: list[_GeometryAccumulator] = []  # per track id
    n_frames = 0
    signatures = []  # (T, B) colour histograms for shot cuts, 96 bytes a frame
    try:
        backend.reset()
        with errors_naming(source, path):
            for frame in iter_frames(path):
                signatures.append(colour_signature(frame))
                found = backend.detect_all(frame)
                for track_id, face_found in zip(
                    linker.assign([Box.of_points(f.mesh) for f in found]), found, strict=True
                ):
                    while len(tracks) <= track_id:
                        tracks.append(_GeometryAccumulator(model))
                    tracks[track_id].add(n_frames, face_found.mesh)
                n_frames += 1
    finally:
        backend.reset()
        if own_backend:
            backend.close()
    for track in tracks:
        track.reduce()
    any_face = np.zeros(n_frames, dtype=bool)
    for track in tracks:
        any_face[track.frames()] = True
    require_faces(
        any_face, dataclasses.replace(face_config, min_face_fraction=config.min_face_fraction), source
    )
    choice = choose_face(
        [track.summary(track_id) for track_id, track in enumerate(tracks)],
        face or FaceSelection(), model.speaker, config, source,
    )  # fmt: skip
    chosen = [tracks[track_id] for track_id in choice.track_ids]
    present = np.zeros(n_frames, dtype=bool)
    present[np.concatenate([track.frames() for track in chosen])] = True

    extent = bridge_gaps(per_frame(chosen, "extent", n_frames), present)  # (T, 2, 2)
    box = stable_crop_box(extent, present, face_config, source)
    pose = Pose.from_array(bridge_gaps(per_frame(chosen, "pose", n_frames), present))
    expression = bridge_gaps(per_frame(chosen, "expression", n_frames), present)  # (T, E)
    distance = choice.distance
    logger.info(
        "prepared %s: %d frames (%d without the face), %d face tracks, crop side %.0f px, identity distance %.3f",
        source, n_frames, int((~present).sum()), len(tracks), box.side, distance,
    )  # fmt: skip
    return SourceTrack(
        source=source,
        fps=info.fps,
        width=info.width,
        height=info.height,
        centres=box.centres,
        side=float(box.side),
        crop_size=int(model.crop_size),
        present=present,
        cuts=shot_cuts(np.stack(signatures), config.shot_cut_threshold),
        pose=pose,
        expression=expression.astype(np.float32),
        identity_distance=distance,
        model_key=model_key(model),
    )
