"""A linear 3D face model on the MediaPipe 478-point mesh topology.

Coordinate frames (all right-handed: x right, y down, z away from the camera):

- *image* (or *crop*) frame: what :class:`~stableface.face.landmarks.MediaPipeBackend` returns,
  pixels of the frame (or of the crop, after :func:`stableface.face.tracking.crop_points`),
  z in the same pixel scale as x;
- *canonical* frame: the face upright and frontal, origin at the centroid of the 468 surface
  vertices, unit = the distance between the outer eye corners (``canonical_mesh.npy``).

A frame's mesh is explained as ``image = pose(identity + expression)``:

- pose: the similarity transform ``x_image = scale * R @ x_canonical + translation`` that best maps
  the canonical mesh onto the frame's mesh over the *rigid* vertices only (forehead, temples,
  nose bridge, eye corners), so speech does not move the pose;
- the pose-normalised mesh ``R.T @ (x_image - translation) / scale`` is the speaker's identity
  (their mean normalised shape) plus a displacement;
- the displacement is coded on two PCA bases fitted over a catalog of many speakers: MOUTH (the
  lower face: lips, chin, jaw line, lower cheeks) and UPPER (everything else). The expression
  vector is ``[mouth | upper]``; coefficients are in canonical units (not whitened).
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from importlib import resources

import numpy as np

from stableface.errors import InputError
from stableface.face.config import FaceConfig
from stableface.io.storage import Storage

logger = logging.getLogger(__name__)

N_VERTICES = 478  # MediaPipe mesh with refined irises
N_SURFACE = 468  # vertices 468-477 are the iris points, not part of the tessellated surface
ASSETS_PACKAGE = "stableface.face"
ASSETS_DIR = "assets"
CANONICAL_FILE = "canonical_mesh.npy"  # (478, 3) float32, canonical frame
TRIANGLES_FILE = "triangles.npy"  # (F, 3) int32, counter-clockwise seen from the camera
MOUTH_FILE = "mouth_vertices.npy"  # (M,) int32, the lower-face region
MODEL_FORMAT = "stableface-face-model/1"

# Vertices that move with the skull but not with speech or blinks: forehead, temples, nose
# bridge and inner/outer eye corners (MediaPipe indices). Not lips, jaw, cheeks, brows or lids.
# fmt: off
RIGID_VERTICES = np.array([
    10, 151, 9, 8, 109, 67, 338, 297, 108, 337,  # forehead (midline and sides, above the brows)
    21, 251, 162, 389, 127, 356,  # temples, down to the top of the ear line
    168, 6, 197, 195, 5, 4,  # nose bridge from the nasion to above the tip
    33, 133, 362, 263,  # eye corners (outer, inner, inner, outer)
], dtype=np.int64)
# fmt: on
EYE_CORNERS_OUTER = (33, 263)  # subject's right (image left), subject's left


@dataclass(frozen=True)
class FaceAssets:
    """The mesh topology shipped with the package (see ``build_assets``)."""

    canonical: np.ndarray  # (478, 3) float32 canonical mesh
    triangles: np.ndarray  # (F, 3) int32 vertex indices
    mouth_vertices: np.ndarray  # (M,) int64 lower-face vertex indices, sorted


@lru_cache(maxsize=1)
def load_assets() -> FaceAssets:
    """Read the canonical mesh, triangles and mouth region from the package (cached)."""
    folder = resources.files(ASSETS_PACKAGE) / ASSETS_DIR
    arrays = {}
    for name in (CANONICAL_FILE, TRIANGLES_FILE, MOUTH_FILE):
        with (folder / name).open("rb") as handle:
            arrays[name] = np.load(handle)
    return FaceAssets(
        canonical=arrays[CANONICAL_FILE].astype(np.float32),
        triangles=arrays[TRIANGLES_FILE].astype(np.int32),
        mouth_vertices=np.sort(arrays[MOUTH_FILE].astype(np.int64)),
    )


# --------------------------------------------------------------------------------------- pose
@dataclass
class Pose:
    """Per-frame similarity transforms canonical -> image: ``x = scale * R @ x_can + translation``."""

    scale: np.ndarray  # (T,) float32, image pixels per canonical unit
    rotation: np.ndarray  # (T, 3, 3) float32, proper rotations (det +1)
    translation: np.ndarray  # (T, 3) float32, image pixels

    def __len__(self) -> int:
        return int(self.scale.shape[0])

    def __getitem__(self, index) -> Pose:
        index = np.atleast_1d(np.arange(len(self))[index])
        return Pose(self.scale[index], self.rotation[index], self.translation[index])

    def to_array(self) -> np.ndarray:
        """(T, 13) float32 rows of [scale, R row-major (9), translation (3)], for datasets."""
        return np.concatenate(
            [self.scale[:, None], self.rotation.reshape(-1, 9), self.translation], axis=1
        ).astype(np.float32)

    @classmethod
    def from_array(cls, array: np.ndarray) -> Pose:
        array = np.asarray(array, dtype=np.float32).reshape(-1, 13)  # (T, 13)
        return cls(array[:, 0].copy(), array[:, 1:10].reshape(-1, 3, 3).copy(), array[:, 10:13].copy())


def _as_frames(mesh: np.ndarray, name: str) -> np.ndarray:
    mesh = np.asarray(mesh)
    if mesh.ndim == 2:
        mesh = mesh[None]
    if mesh.ndim != 3 or mesh.shape[1:] != (N_VERTICES, 3):
        raise InputError(
            name, f"expected a (T, {N_VERTICES}, 3) or ({N_VERTICES}, 3) mesh array, got {mesh.shape}"
        )
    if not np.isfinite(mesh).all():
        raise InputError(name, "mesh holds NaN or infinite values (bridge frames without a face first)")
    return mesh


def _as_identity(identity: np.ndarray) -> np.ndarray:
    identity = np.asarray(identity, dtype=np.float32)
    if identity.shape != (N_VERTICES, 3):
        raise InputError("identity", f"expected a ({N_VERTICES}, 3) mean shape, got {identity.shape}")
    return identity


def similarity_fit(source: np.ndarray, target: np.ndarray) -> Pose:
    """Least-squares similarity transforms mapping ``source`` points onto ``target`` (Umeyama 1991).

    ``source`` is (K, 3) or (T, K, 3), ``target`` (T, K, 3); returns the T poses with
    ``target ~ scale * R @ source + translation``, reflections excluded.
    """
    target = np.asarray(target, dtype=np.float64)  # (T, K, 3)
    source = np.broadcast_to(np.asarray(source, dtype=np.float64), target.shape)  # (T, K, 3)
    source_mean = source.mean(axis=1, keepdims=True)  # (T, 1, 3)
    target_mean = target.mean(axis=1, keepdims=True)  # (T, 1, 3)
    source_centred = source - source_mean
    target_centred = target - target_mean
    covariance = np.einsum("tki,tkj->tij", target_centred, source_centred) / source.shape[1]  # (T, 3, 3)
    u, singular, vt = np.linalg.svd(covariance)  # (T, 3, 3), (T, 3), (T, 3, 3)
    sign = np.sign(np.linalg.det(u) * np.linalg.det(vt))  # (T,) -1 where the best fit is a reflection
    sign[sign == 0] = 1.0
    correction = np.ones_like(singular)  # (T, 3)
    correction[:, 2] = sign
    rotation = np.einsum("tij,tj,tjk->tik", u, correction, vt)  # (T, 3, 3)
    source_variance = np.square(source_centred).sum(axis=(1, 2)) / source.shape[1]  # (T,)
    scale = (singular * correction).sum(axis=1) / source_variance  # (T,)
    translation = target_mean[:, 0] - scale[:, None] * np.einsum("tij,tj->ti", rotation, source_mean[:, 0])
    return Pose(scale.astype(np.float32), rotation.astype(np.float32), translation.astype(np.float32))


def estimate_pose(
    mesh: np.ndarray, canonical: np.ndarray | None = None, rigid: np.ndarray = RIGID_VERTICES
) -> Pose:
    """Pose of each frame's mesh (T, 478, 3) in image coordinates, from the rigid vertices only."""
    mesh = _as_frames(mesh, "mesh")
    canonical = load_assets().canonical if canonical is None else canonical
    return similarity_fit(canonical[rigid], mesh[:, rigid])


def normalise(mesh: np.ndarray, pose: Pose) -> np.ndarray:
    """Image-frame meshes (T, N, 3) -> canonical frame (T, N, 3) by inverting ``pose``."""
    mesh = np.asarray(mesh, dtype=np.float32)
    centred = mesh - pose.translation[:, None, :]  # (T, N, 3)
    # Row vectors: (R^T x)^T = x^T R.
    return (np.einsum("tni,tij->tnj", centred, pose.rotation) / pose.scale[:, None, None]).astype(np.float32)


def apply_pose(normalised: np.ndarray, pose: Pose) -> np.ndarray:
    """Canonical-frame meshes (T, N, 3) (or one (N, 3) for all frames) -> image frame (T, N, 3)."""
    normalised = np.asarray(normalised, dtype=np.float32)
    if normalised.ndim == 2:
        normalised = np.broadcast_to(normalised, (len(pose), *normalised.shape))
    rotated = np.einsum("tij,tnj->tni", pose.rotation, normalised)  # (T, N, 3)
    return (pose.scale[:, None, None] * rotated + pose.translation[:, None, :]).astype(np.float32)


# --------------------------------------------------------------------------------------- model
def upper_vertices_of(mouth_vertices: np.ndarray) -> np.ndarray:
    """All vertices outside the mouth region (including the irises), sorted."""
    return np.setdiff1d(np.arange(N_VERTICES), mouth_vertices)


def _principal_axes(second_moment: np.ndarray, n_components: int) -> tuple[np.ndarray, np.ndarray]:
    """Top eigenvectors (n, D) and eigenvalues (n,) of a symmetric (D, D) second-moment matrix."""
    eigenvalues, eigenvectors = np.linalg.eigh(second_moment)  # ascending
    order = np.argsort(eigenvalues)[::-1][:n_components]
    axes = eigenvectors[:, order].T  # (n, D)
    # Fix each axis's sign (largest-magnitude entry positive) so refits give identical bases.
    flip = np.sign(axes[np.arange(axes.shape[0]), np.abs(axes).argmax(axis=1)])
    return (axes * flip[:, None]).astype(np.float32), np.clip(eigenvalues[order], 0, None).astype(np.float32)


@dataclass
class FaceModel:
    """Canonical mesh + mouth/upper expression bases, shared by every speaker of a catalog."""

    canonical: np.ndarray  # (478, 3) float32
    triangles: np.ndarray  # (F, 3) int32
    mouth_vertices: np.ndarray  # (M,) int64
    rigid_vertices: np.ndarray = field(default_factory=lambda: RIGID_VERTICES.copy())  # (K,) int64
    mouth_basis: np.ndarray | None = None  # (n_mouth, 3M) float32, orthonormal rows
    upper_basis: np.ndarray | None = None  # (n_upper, 3U) float32, orthonormal rows
    mouth_variance: np.ndarray | None = None  # (n_mouth,) float32, canonical units^2 per component
    upper_variance: np.ndarray | None = None  # (n_upper,) float32
    config: FaceConfig = field(default_factory=FaceConfig)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_assets(cls, config: FaceConfig | None = None) -> FaceModel:
        """An unfitted model (pose only) on the packaged canonical mesh."""
        assets = load_assets()
        return cls(
            canonical=assets.canonical.copy(),
            triangles=assets.triangles.copy(),
            mouth_vertices=assets.mouth_vertices.copy(),
            config=config or FaceConfig(),
        )

    @property
    def upper_vertices(self) -> np.ndarray:
        return upper_vertices_of(self.mouth_vertices)  # (U,)

    @property
    def n_mouth(self) -> int:
        return self.config.n_mouth_components

    @property
    def n_upper(self) -> int:
        return self.config.n_upper_components

    @property
    def expression_dim(self) -> int:
        return self.n_mouth + self.n_upper

    @property
    def mouth_slice(self) -> slice:
        """Where the mouth coefficients sit in an expression vector."""
        return slice(0, self.n_mouth)

    @property
    def upper_slice(self) -> slice:
        return slice(self.n_mouth, self.expression_dim)

    @property
    def is_fitted(self) -> bool:
        return self.mouth_basis is not None and self.upper_basis is not None

    # ------------------------------------------------------------------ pose
    def pose(self, mesh: np.ndarray) -> Pose:
        """Per-frame pose of image-frame meshes (T, 478, 3)."""
        return estimate_pose(mesh, self.canonical, self.rigid_vertices)

    def normalise(self, mesh: np.ndarray, pose: Pose | None = None) -> tuple[np.ndarray, Pose]:
        """Image-frame meshes (T, 478, 3) -> (normalised meshes (T, 478, 3), their pose)."""
        mesh = _as_frames(mesh, "mesh")
        pose = self.pose(mesh) if pose is None else pose
        return normalise(mesh, pose), pose

    @staticmethod
    def apply_pose(normalised: np.ndarray, pose: Pose) -> np.ndarray:
        return apply_pose(normalised, pose)

    @staticmethod
    def identity_of(normalised: np.ndarray) -> np.ndarray:
        """A speaker's identity: the mean of their normalised meshes (T, 478, 3) -> (478, 3)."""
        normalised = _as_frames(normalised, "normalised meshes")
        return normalised.mean(axis=0, dtype=np.float64).astype(np.float32)

    # ------------------------------------------------------------------ fitting
    def fit(self, speakers: Iterable[np.ndarray]) -> FaceModel:
        """Fit the MOUTH and UPPER bases on normalised meshes, one (T_i, 478, 3) array per speaker.

        Each speaker's identity (their mean) is removed first, so the bases span expression only.
        Accumulates second moments speaker by speaker, so the catalog never sits in memory at once.
        Returns a new fitted model; ``self`` is unchanged.
        """
        mouth, upper = self.mouth_vertices, self.upper_vertices
        mouth_moment = np.zeros((3 * mouth.size, 3 * mouth.size))  # (3M, 3M) float64
        upper_moment = np.zeros((3 * upper.size, 3 * upper.size))  # (3U, 3U) float64
        n_frames = n_speakers = 0
        for index, normalised in enumerate(speakers):
            normalised = _as_frames(normalised, f"speaker {index}")
            if normalised.shape[0] < self.config.min_speaker_frames:
                logger.warning(
                    "face model fit: speaker %d has %d frames (< %d), skipped: its mean absorbs expression",
                    index,
                    normalised.shape[0],
                    self.config.min_speaker_frames,
                )
                continue
            displacement = (normalised - self.identity_of(normalised)).astype(np.float64)  # (T, 478, 3)
            mouth_rows = displacement[:, mouth].reshape(displacement.shape[0], -1)  # (T, 3M)
            upper_rows = displacement[:, upper].reshape(displacement.shape[0], -1)  # (T, 3U)
            mouth_moment += mouth_rows.T @ mouth_rows
            upper_moment += upper_rows.T @ upper_rows
            n_frames += displacement.shape[0]
            n_speakers += 1
        if n_frames < self.config.min_fit_frames:
            raise InputError(
                "face model fit",
                f"{n_frames} usable frames from {n_speakers} speakers, need {self.config.min_fit_frames}",
            )
        mouth_basis, mouth_variance = _principal_axes(mouth_moment / n_frames, self.n_mouth)
        upper_basis, upper_variance = _principal_axes(upper_moment / n_frames, self.n_upper)
        total = float(np.trace(mouth_moment) + np.trace(upper_moment)) / n_frames
        kept = float(mouth_variance.sum() + upper_variance.sum())
        logger.info(
            "face model fit on %d frames of %d speakers: %d+%d components keep %.1f%% of expression variance",
            n_frames,
            n_speakers,
            self.n_mouth,
            self.n_upper,
            100.0 * kept / max(total, 1e-12),
        )
        return FaceModel(
            canonical=self.canonical,
            triangles=self.triangles,
            mouth_vertices=self.mouth_vertices,
            rigid_vertices=self.rigid_vertices,
            mouth_basis=mouth_basis,
            upper_basis=upper_basis,
            mouth_variance=mouth_variance,
            upper_variance=upper_variance,
            config=self.config,
        )

    # ------------------------------------------------------------------ coding
    def _require_fit(self) -> None:
        if not self.is_fitted:
            raise RuntimeError("the face model has no expression bases yet: call fit() or load() first")

    def encode(self, normalised: np.ndarray, identity: np.ndarray) -> np.ndarray:
        """Normalised meshes (T, 478, 3) and identity (478, 3) -> coefficients (T, n_mouth + n_upper)."""
        self._require_fit()
        normalised = _as_frames(normalised, "normalised meshes")
        identity = _as_identity(identity)
        displacement = normalised - identity[None]  # (T, 478, 3)
        n_frames = displacement.shape[0]
        mouth_rows = displacement[:, self.mouth_vertices].reshape(n_frames, -1)  # (T, 3M)
        upper_rows = displacement[:, self.upper_vertices].reshape(n_frames, -1)  # (T, 3U)
        mouth = mouth_rows @ self.mouth_basis.T  # (T, n_mouth)
        upper = upper_rows @ self.upper_basis.T  # (T, n_upper)
        return np.concatenate([mouth, upper], axis=1).astype(np.float32)

    def decode(self, identity: np.ndarray, coefficients: np.ndarray) -> np.ndarray:
        """Identity (478, 3) or (T, 478, 3) + coefficients (T, n_mouth + n_upper) -> normalised meshes."""
        self._require_fit()
        coefficients = np.asarray(coefficients, dtype=np.float32)
        if coefficients.ndim == 1:
            coefficients = coefficients[None]
        if coefficients.shape[1] != self.expression_dim:
            raise InputError(
                "expression coefficients", f"expected (T, {self.expression_dim}), got {coefficients.shape}"
            )
        n_frames = coefficients.shape[0]
        identity = np.asarray(identity, dtype=np.float32)
        if identity.shape not in ((N_VERTICES, 3), (n_frames, N_VERTICES, 3)):
            raise InputError(
                "identity",
                f"expected ({N_VERTICES}, 3) or ({n_frames}, {N_VERTICES}, 3), got {identity.shape}",
            )
        mesh = np.broadcast_to(identity, (n_frames, N_VERTICES, 3)).copy()
        # einsum, not BLAS matmul: BLAS rounds a row differently depending on how many rows come
        # with it, and streaming inference decodes chunks of frames that must match the whole.
        mouth_offsets = np.einsum("te,ed->td", coefficients[:, self.mouth_slice], self.mouth_basis)  # (T, 3M)
        upper_offsets = np.einsum("te,ed->td", coefficients[:, self.upper_slice], self.upper_basis)  # (T, 3U)
        mesh[:, self.mouth_vertices] += mouth_offsets.reshape(n_frames, -1, 3)
        mesh[:, self.upper_vertices] += upper_offsets.reshape(n_frames, -1, 3)
        return mesh

    # ------------------------------------------------------------------ persistence
    def save(self, uri: str, storage: Storage | None = None) -> None:
        """Write the model as one ``.npz`` (arrays + config JSON) to a local path or s3:// URI."""
        self._require_fit()
        buffer = io.BytesIO()
        np.savez(
            buffer,
            format=np.array(MODEL_FORMAT),
            config=np.array(json.dumps(asdict(self.config), sort_keys=True)),
            canonical=self.canonical,
            triangles=self.triangles,
            mouth_vertices=self.mouth_vertices,
            rigid_vertices=self.rigid_vertices,
            mouth_basis=self.mouth_basis,
            upper_basis=self.upper_basis,
            mouth_variance=self.mouth_variance,
            upper_variance=self.upper_variance,
        )
        (storage or Storage()).write_bytes(uri, buffer.getvalue())

    @classmethod
    def load(cls, uri: str, storage: Storage | None = None) -> FaceModel:
        raw = (storage or Storage()).read_bytes(uri)
        try:
            with np.load(io.BytesIO(raw), allow_pickle=False) as data:
                arrays = {key: data[key] for key in data.files}
        except (ValueError, OSError) as error:
            raise InputError(uri, f"not a face model file ({error})") from error
        if str(arrays.get("format", "")) != MODEL_FORMAT:
            raise InputError(
                uri, f"not a face model file (format {arrays.get('format')!s}, expected {MODEL_FORMAT})"
            )
        try:
            config = FaceConfig(**json.loads(str(arrays["config"])))
        except (TypeError, ValueError) as error:
            raise InputError(
                uri, f"face model config does not match this version's FaceConfig ({error})"
            ) from error
        return cls(
            canonical=arrays["canonical"],
            triangles=arrays["triangles"],
            mouth_vertices=arrays["mouth_vertices"],
            rigid_vertices=arrays["rigid_vertices"],
            mouth_basis=arrays["mouth_basis"],
            upper_basis=arrays["upper_basis"],
            mouth_variance=arrays["mouth_variance"],
            upper_variance=arrays["upper_variance"],
            config=config,
        )
