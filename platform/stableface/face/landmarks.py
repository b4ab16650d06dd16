"""Landmark backends behind one interface.

- ``mediapipe`` (default, offline): the MediaPipe face mesh, 478 3D points, in tracking mode so
  landmarks are temporally coherent within a video; the model ships inside the wheel.
- ``fan``: face-alignment's FAN (68 points, iBUG order) with the S3FD detector, used only where
  its weights are already in the torch hub cache (they cannot be downloaded here).

Both give the iBUG-68 view that MSI and NLMD need; only MediaPipe gives the 3D mesh the face model
is built on. A backend keeps per-video tracking state: call :meth:`reset` between videos.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from stableface.errors import BackendUnavailable
from stableface.face.ibug import N_IBUG, mediapipe_to_ibug68
from stableface.utils.logging import native_noise_filtered

logger = logging.getLogger(__name__)

N_MESH = 478  # MediaPipe face mesh with refined lips, eyes and irises
FAN_WEIGHT_FILES = {
    "detector": ("s3fd-619a316812.pth",),
    "landmarks": ("2DFAN4-11f355bf06.pth.tar", "2DFAN4-cd938726ad.zip"),
}


@dataclass
class FaceLandmarks:
    """One face in one frame, in pixel coordinates of that frame."""

    ibug68: np.ndarray  # (68, 2) float32 x, y
    mesh: np.ndarray | None = None  # (478, 3) float32 x, y, z (z in the same pixel scale as x; None for FAN)
    score: float = 1.0


class LandmarkBackend(Protocol):
    name: str
    provides_mesh: bool

    def detect(self, frame: np.ndarray) -> FaceLandmarks | None:
        """Landmarks of the most prominent face in an RGB uint8 frame (H, W, 3), or None."""

    def detect_all(self, frame: np.ndarray) -> list[FaceLandmarks]:
        """Landmarks of every face found in an RGB uint8 frame (H, W, 3), most prominent first."""

    def reset(self) -> None:
        """Forget tracking state (call before each new video)."""

    def close(self) -> None: ...


class MediaPipeBackend:
    """MediaPipe face mesh (478 points) from the mediapipe 0.10.21 wheel.

    ``max_faces`` faces are tracked at once. With one face on screen the landmarks are the same for
    any ``max_faces`` (measured bit for bit on grid/s1), so a single-speaker video gives the same
    track whichever is set.
    """

    name = "mediapipe"
    provides_mesh = True

    def __init__(
        self,
        static_image_mode: bool = False,
        min_detection_confidence: float = 0.5,
        min_tracking_confidence: float = 0.5,
        max_faces: int = 1,
    ):
        if max_faces < 1:
            raise ValueError(f"max_faces must be >= 1, got {max_faces}")
        self.max_faces = int(max_faces)
        self.static_image_mode = static_image_mode
        self.min_detection_confidence = min_detection_confidence
        self.min_tracking_confidence = min_tracking_confidence
        self._mesh = None

    def _graph(self):
        if self._mesh is None:
            from mediapipe.python.solutions.face_mesh import FaceMesh

            self._mesh = FaceMesh(
                static_image_mode=self.static_image_mode,
                max_num_faces=self.max_faces,
                refine_landmarks=True,
                min_detection_confidence=self.min_detection_confidence,
                min_tracking_confidence=self.min_tracking_confidence,
            )
        return self._mesh

    def detect(self, frame: np.ndarray) -> FaceLandmarks | None:
        faces = self.detect_all(frame)
        return faces[0] if faces else None

    def detect_all(self, frame: np.ndarray) -> list[FaceLandmarks]:
        height, width = frame.shape[:2]
        if self._mesh is None:  # a new graph logs its set-up on its first frame
            with native_noise_filtered():
                result = self._graph().process(np.ascontiguousarray(frame))
        else:
            result = self._mesh.process(np.ascontiguousarray(frame))
        faces = []
        for landmarks in result.multi_face_landmarks or ():
            mesh = np.array(
                [(p.x * width, p.y * height, p.z * width) for p in landmarks.landmark], dtype=np.float32
            )  # (478, 3)
            faces.append(FaceLandmarks(ibug68=mediapipe_to_ibug68(mesh).astype(np.float32), mesh=mesh))
        return faces

    def reset(self) -> None:
        self.close()

    def close(self) -> None:
        if self._mesh is not None:
            self._mesh.close()
            self._mesh = None


def fan_weights_dir() -> Path:
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def missing_fan_weights(weights_dir: Path | None = None) -> list[str]:
    """Which FAN weight files are absent from the torch hub cache (empty when usable)."""
    weights_dir = weights_dir or fan_weights_dir()
    missing = []
    for role, names in FAN_WEIGHT_FILES.items():
        if not any((weights_dir / name).is_file() for name in names):
            missing.append(f"{role}: one of {', '.join(names)}")
    return missing


class FanBackend:
    """face-alignment's 2D FAN with S3FD, CPU-safe (``compile=False``); needs cached weights."""

    name = "fan"
    provides_mesh = False

    def __init__(self, device: str = "cpu", max_faces: int = 1):
        self.max_faces = int(max_faces)
        missing = missing_fan_weights()
        if missing:
            raise BackendUnavailable(
                f"face-alignment weights not found at {fan_weights_dir()} ({'; '.join(missing)}); "
                "copy them there or use the 'mediapipe' backend"
            )
        import face_alignment

        self._model = face_alignment.FaceAlignment(
            face_alignment.LandmarksType.TWO_D, device=device, flip_input=False, compile=False
        )

    def detect(self, frame: np.ndarray) -> FaceLandmarks | None:
        faces = self.detect_all(frame)
        return faces[0] if faces else None

    def detect_all(self, frame: np.ndarray) -> list[FaceLandmarks]:
        found = self._model.get_landmarks_from_image(frame, return_landmark_score=True)
        landmarks, scores = found[0], found[1]
        faces = []
        for points, score in zip(landmarks or (), scores or (), strict=True):
            points = np.asarray(points, dtype=np.float32)[:, :2]  # (68, 2)
            assert points.shape == (N_IBUG, 2)
            faces.append(FaceLandmarks(ibug68=points, score=float(np.mean(score))))
        return sorted(faces, key=lambda face: -face.score)[: self.max_faces]

    def reset(self) -> None:
        """FAN detects every frame independently: no state."""

    def close(self) -> None:
        self._model = None


BACKENDS = {"mediapipe": MediaPipeBackend, "fan": FanBackend}


def make_backend(name: str, **kwargs) -> LandmarkBackend:
    """A landmark backend by name (``mediapipe`` or ``fan``)."""
    if name not in BACKENDS:
        raise ValueError(f"unknown landmark backend '{name}'; choose one of {sorted(BACKENDS)}")
    return BACKENDS[name](**kwargs)


@dataclass
class LandmarkTrack:
    """Per-frame landmarks of one video; frames without a face are bridged by interpolation."""

    ibug68: np.ndarray  # (T, 68, 2) float32
    mesh: np.ndarray | None  # (T, 478, 3) float32, None for backends without a mesh
    present: np.ndarray  # (T,) bool, False where the detector found no face (values there are bridged)

    @property
    def n_frames(self) -> int:
        return int(self.present.shape[0])

    @property
    def n_missing(self) -> int:
        return int((~self.present).sum())


def bridge_gaps(values: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Fill frames where ``present`` is False: linear between found neighbours, nearest at the ends.

    ``values`` is (T, ...); the result has the same shape. Needs at least one present frame.
    """
    if present.all():
        return values
    found = np.flatnonzero(present)
    if found.size == 0:
        raise ValueError("no frame has a face to bridge from")
    flat = values.reshape(values.shape[0], -1)
    times = np.arange(values.shape[0])
    bridged = np.empty_like(flat)
    for column in range(flat.shape[1]):
        bridged[:, column] = np.interp(times, found, flat[found, column])
    return bridged.reshape(values.shape)


def track_landmarks(frames: Iterable[np.ndarray], backend: LandmarkBackend) -> LandmarkTrack:
    """Run ``backend`` over a video's frames; returns the bridged track (needs one face frame)."""
    backend.reset()
    ibug_rows: list[np.ndarray | None] = []
    mesh_rows: list[np.ndarray | None] = []
    for frame in frames:
        found = backend.detect(frame)
        ibug_rows.append(None if found is None else found.ibug68)
        mesh_rows.append(None if found is None else found.mesh)
    backend.reset()
    present = np.array([row is not None for row in ibug_rows], dtype=bool)
    if not present.any():
        return LandmarkTrack(
            ibug68=np.full((len(ibug_rows), N_IBUG, 2), np.nan, np.float32),
            mesh=np.full((len(ibug_rows), N_MESH, 3), np.nan, np.float32) if backend.provides_mesh else None,
            present=present,
        )
    ibug = np.stack([row if row is not None else np.zeros((N_IBUG, 2), np.float32) for row in ibug_rows])
    mesh = None
    if backend.provides_mesh:
        mesh = np.stack([row if row is not None else np.zeros((N_MESH, 3), np.float32) for row in mesh_rows])
        mesh = bridge_gaps(mesh, present).astype(np.float32)
    return LandmarkTrack(ibug68=bridge_gaps(ibug, present).astype(np.float32), mesh=mesh, present=present)
