"""Temporally stable face crops, and the affines between frame and crop coordinates.

Frame and crop coordinates are both pixels with x right, y down and pixel centres at integer
coordinates (cv2's convention). A crop box is a square of ``side`` frame pixels around a centre;
the crop affine maps it onto a ``crop_size`` square:

    crop = scale * (frame - centre) + (crop_size - 1) / 2,    scale = crop_size / side

written as a (2, 3) matrix ``[[scale, 0, tx], [0, scale, ty]]`` per frame, the form cv2.warpAffine
takes. 3D points (the MediaPipe mesh) keep z in the same pixel scale as x, so z is multiplied by
``scale`` too. One side per video and a smoothed centre keep the crop from jittering; parts of a
box outside the frame are filled by replicating the border.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter1d

from stableface.errors import NoFaceFound
from stableface.face.config import FaceConfig
from stableface.face.landmarks import LandmarkTrack, bridge_gaps

INTERPOLATION = cv2.INTER_LINEAR
SUPERSAMPLE_ABOVE = 1.5  # frame px per crop px beyond which bilinear sampling would alias
DEFAULT_FEATHER_PX = 8  # width of the soft edge when pasting a crop back, in crop pixels


@dataclass
class CropBox:
    """One square crop per frame: a smoothed centre per frame and one side for the whole video."""

    centres: np.ndarray  # (T, 2) float32 frame pixels (x, y)
    side: float  # frame pixels
    crop_size: int  # crop pixels

    def __len__(self) -> int:
        return int(self.centres.shape[0])

    def __getitem__(self, index) -> CropBox:
        """The box of a frame or a slice of frames (always a CropBox over (T', 2) centres)."""
        return CropBox(self.centres[np.atleast_1d(np.arange(len(self))[index])], self.side, self.crop_size)

    @property
    def scale(self) -> float:
        """Crop pixels per frame pixel."""
        return self.crop_size / self.side

    def affines(self) -> np.ndarray:
        """(T, 2, 3) float32 frame -> crop affines."""
        return crop_affines(self.centres, self.side, self.crop_size)


def face_extent(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame bounding-box centre (T, 2) and larger side (T,) of landmarks (T, N, >=2)."""
    xy = np.asarray(points, dtype=np.float64)[..., :2]  # (T, N, 2)
    low, high = xy.min(axis=1), xy.max(axis=1)  # (T, 2) each
    return (low + high) / 2.0, (high - low).max(axis=1)


def stable_crop_box(
    points: np.ndarray, present: np.ndarray, config: FaceConfig, source: str = "video"
) -> CropBox:
    """A crop box per frame from landmarks (T, N, >=2): median face size, Gaussian-smoothed centre.

    ``present`` (T,) marks the frames where a face was detected; the others are bridged from their
    neighbours. ``source`` names the video in the error raised when no frame has a face.
    """
    present = np.asarray(present, dtype=bool)
    if not present.any():
        raise NoFaceFound(source, "no frame has a detectable face")
    centres, sizes = face_extent(points)
    side = float(config.crop_scale * np.median(sizes[present]))
    centres = bridge_gaps(centres, present)
    if config.box_smoothing_frames > 0 and len(centres) > 1:
        centres = gaussian_filter1d(centres, sigma=config.box_smoothing_frames, axis=0, mode="nearest")
    return CropBox(centres=centres.astype(np.float32), side=side, crop_size=int(config.crop_size))


def crop_affines(centres: np.ndarray, side: float, crop_size: int) -> np.ndarray:
    """Frame -> crop affines (T, 2, 3) for square boxes of ``side`` around ``centres`` (T, 2)."""
    centres = np.asarray(centres, dtype=np.float64).reshape(-1, 2)
    scale = crop_size / float(side)
    affines = np.zeros((centres.shape[0], 2, 3))
    affines[:, 0, 0] = affines[:, 1, 1] = scale
    affines[:, :, 2] = (crop_size - 1) / 2.0 - scale * centres
    return affines.astype(np.float32)


def invert_affines(affines: np.ndarray) -> np.ndarray:
    """Inverse of (..., 2, 3) affines, same shape (crop -> frame for a crop affine)."""
    affines = np.asarray(affines, dtype=np.float64)
    linear = np.linalg.inv(affines[..., :2])  # (..., 2, 2)
    offset = -np.einsum("...ij,...j->...i", linear, affines[..., 2])  # (..., 2)
    return np.concatenate([linear, offset[..., None]], axis=-1).astype(np.float32)


def affine_scale(affines: np.ndarray) -> np.ndarray:
    """The isotropic scale of (..., 2, 3) similarity affines, shape (...)."""
    return np.sqrt(np.abs(np.linalg.det(np.asarray(affines, dtype=np.float64)[..., :2])))


def transform_points(points: np.ndarray, affines: np.ndarray) -> np.ndarray:
    """Apply per-frame affines (T, 2, 3) to points (T, N, 2 or 3); z, if present, is scaled alike.

    Use a crop affine for frame -> crop and :func:`invert_affines` of it for crop -> frame.
    """
    points = np.asarray(points, dtype=np.float32)
    affines = np.asarray(affines, dtype=np.float32).reshape(-1, 2, 3)
    moved = points.copy()
    moved[..., :2] = np.einsum("tij,tnj->tni", affines[:, :, :2], points[..., :2]) + affines[:, None, :, 2]
    if points.shape[-1] == 3:
        moved[..., 2] = points[..., 2] * affine_scale(affines).astype(np.float32)[:, None]
    return moved


def crop_points(points: np.ndarray, box: CropBox) -> np.ndarray:
    """Frame-pixel points (T, N, 2|3) -> crop pixels."""
    return transform_points(points, box.affines())


def uncrop_points(points: np.ndarray, box: CropBox) -> np.ndarray:
    """Crop-pixel points (T, N, 2|3) -> frame pixels."""
    return transform_points(points, invert_affines(box.affines()))


def crop_image(frame: np.ndarray, affine: np.ndarray, crop_size: int) -> np.ndarray:
    """Warp one frame (H, W[, C]) to its (crop_size, crop_size[, C]) crop, replicating the frame border.

    Shrinking by more than SUPERSAMPLE_ABOVE first warps to an integer multiple of the crop size and then
    area-averages down, so a high-resolution face is not aliased.
    """
    affine = np.asarray(affine, dtype=np.float64)
    shrink = 1.0 / float(affine_scale(affine))
    if shrink <= SUPERSAMPLE_ABOVE:
        return cv2.warpAffine(
            frame, affine, (crop_size, crop_size), flags=INTERPOLATION, borderMode=cv2.BORDER_REPLICATE
        )
    factor = int(np.ceil(shrink))
    # Supersampled grid: crop pixel centre i maps to big pixels factor*i + (factor-1)/2.
    supersample = np.array([[factor, 0, (factor - 1) / 2], [0, factor, (factor - 1) / 2]]) @ np.vstack(
        [affine, [0, 0, 1]]
    )
    big = cv2.warpAffine(
        frame, supersample, (crop_size * factor,) * 2, flags=INTERPOLATION, borderMode=cv2.BORDER_REPLICATE
    )
    return cv2.resize(big, (crop_size, crop_size), interpolation=cv2.INTER_AREA)


def crop_frames(frames: np.ndarray, box: CropBox) -> np.ndarray:
    """Crop every frame (T, H, W, C) with its box -> (T, crop_size, crop_size, C)."""
    affines = box.affines()
    if len(frames) != len(affines):
        raise ValueError(f"frames: {len(frames)} frames but the crop box has {len(affines)}")
    return np.stack(
        [crop_image(frame, affine, box.crop_size) for frame, affine in zip(frames, affines, strict=True)]
    )


def uncrop_image(crop: np.ndarray, affine: np.ndarray, frame_hw: tuple[int, int]) -> np.ndarray:
    """Warp a crop (S, S[, C]) back to frame pixels (H, W[, C]); zero outside the box."""
    height, width = frame_hw
    return cv2.warpAffine(
        crop,
        invert_affines(affine),
        (int(width), int(height)),
        flags=INTERPOLATION,
        borderMode=cv2.BORDER_CONSTANT,
    )


def feathered_mask(
    crop_size: int, feather_px: float = DEFAULT_FEATHER_PX, mask: np.ndarray | None = None
) -> np.ndarray:
    """(S, S) float32 blend weight: ``mask`` (default: the whole crop), edges ramped over ``feather_px``."""
    inside = np.ones((crop_size, crop_size), np.uint8) if mask is None else np.asarray(mask).astype(np.uint8)
    inside[[0, -1], :] = 0  # the crop's own border always blends out
    inside[:, [0, -1]] = 0
    distance = cv2.distanceTransform(inside, cv2.DIST_L2, 5)  # (S, S) px to the nearest outside pixel
    return np.clip(distance / max(float(feather_px), 1e-6), 0.0, 1.0).astype(np.float32)


def paste_crop(frame: np.ndarray, crop: np.ndarray, affine: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Blend a crop (S, S, C) into its frame (H, W, C) with a crop-space weight (S, S) in [0, 1]."""
    height, width = frame.shape[:2]
    pasted = uncrop_image(crop.astype(np.float32), affine, (height, width))  # (H, W, C)
    alpha = uncrop_image(weight.astype(np.float32), affine, (height, width))[..., None]  # (H, W, 1)
    blended = frame.astype(np.float32) * (1.0 - alpha) + pasted * alpha
    if np.issubdtype(frame.dtype, np.integer):
        blended = np.clip(np.round(blended), 0, np.iinfo(frame.dtype).max)
    return blended.astype(frame.dtype)


@dataclass
class CroppedVideo:
    """A video's face crops and its landmarks in crop pixels."""

    box: CropBox
    crops: np.ndarray  # (T, S, S, 3) uint8
    ibug68: np.ndarray  # (T, 68, 2) float32 crop pixels
    mesh: np.ndarray | None  # (T, 478, 3) float32 crop pixels (z scaled like x), None without a mesh
    present: np.ndarray  # (T,) bool, frames where a face was detected (others bridged)


def require_faces(present: np.ndarray, config: FaceConfig, source: str = "video") -> None:
    """Raise :class:`NoFaceFound` when fewer than ``config.min_face_fraction`` of the frames have a face."""
    present = np.asarray(present, dtype=bool)
    fraction = float(present.mean()) if present.size else 0.0
    if fraction < config.min_face_fraction or not present.any():
        raise NoFaceFound(
            source,
            f"a face was found in {int(present.sum())} of {present.size} frames "
            f"({100 * fraction:.0f}% < {100 * config.min_face_fraction:.0f}%)",
        )


def crop_video(
    frames: np.ndarray, track: LandmarkTrack, config: FaceConfig, source: str = "video"
) -> CroppedVideo:
    """Stable crop box from the track, crops of every frame (T, H, W, 3) and landmarks moved into the crop."""
    require_faces(track.present, config, source)
    points = track.mesh if track.mesh is not None else track.ibug68
    box = stable_crop_box(points, track.present, config, source)
    return CroppedVideo(
        box=box,
        crops=crop_frames(frames, box),
        ibug68=crop_points(track.ibug68, box),
        mesh=None if track.mesh is None else crop_points(track.mesh, box),
        present=track.present.copy(),
    )
