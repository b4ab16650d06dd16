"""Augmented erosion (DESIGN step 5): the mouth region of the background image is blanked.

The renderer gets the source crop with the mouth region blanked out plus the face-shape image;
it must draw the mouth from the shape image. If the blanked region were exactly the mouth-region
hull of the current frame, its outline alone would tell the renderer how far the jaw is open, so
during training the mask is randomised:

(a) noise is added to the mouth expression coefficients before the mask is made
    (decode -> pose -> hull), so the outline no longer matches the true mouth shape;
(b) the mask is randomly eroded or dilated, shifted and rotated about its centroid.

With ``enabled=False`` the mask is the plain mouth mask of the frame, still blanked (otherwise the
renderer could copy the mouth), so the ablation differs only in the augmentation. Every random
draw comes from the caller's ``numpy.random.Generator``, in a fixed order: same seed, same masks.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from stableface.face.face_model import FaceModel, Pose, apply_pose
from stableface.face.raster import mouth_masks

REFERENCE_CROP_SIZE = 256  # the pixel figures in ErosionConfig are for this crop size and scale with it


@dataclass
class ErosionConfig:
    """Augmented-erosion settings; pixel figures are for a 256-px crop."""

    enabled: bool = True
    # Std of the Gaussian noise added to each mouth coefficient, as a fraction of that component's
    # std over the catalog (FaceModel.mouth_variance): 0.5 changes the outline clearly, not wildly.
    expression_noise: float = 0.5
    # Morphology radius drawn uniformly from [-max_erode_px, max_dilate_px]; negative erodes.
    # Eroding is kept small so the lips (about 16 px below the mask's top edge at 256 px) stay covered.
    max_erode_px: int = 3
    max_dilate_px: int = 10
    # Uniform shift in [-max_shift_px, max_shift_px] along x and y, and rotation about the
    # mask's centroid in [-max_rotation_deg, max_rotation_deg].
    max_shift_px: float = 6.0
    max_rotation_deg: float = 5.0


def _pixels(value: float, crop_size: int) -> float:
    return value * crop_size / REFERENCE_CROP_SIZE


def _jitter_mask(mask: np.ndarray, radius: int, angle_deg: float, shift: np.ndarray) -> np.ndarray:
    """Erode (radius < 0) or dilate (radius > 0), then rotate about the centroid and shift; (S, S) bool."""
    image = mask.astype(np.uint8)
    if radius != 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * abs(radius) + 1,) * 2)
        image = cv2.dilate(image, kernel) if radius > 0 else cv2.erode(image, kernel)
    ys, xs = np.nonzero(image)
    if xs.size == 0:
        return image.astype(bool)
    centre = (float(xs.mean()), float(ys.mean()))
    affine = cv2.getRotationMatrix2D(centre, float(angle_deg), 1.0)  # (2, 3)
    affine[:, 2] += shift
    size = (mask.shape[1], mask.shape[0])
    return cv2.warpAffine(image, affine, size, flags=cv2.INTER_NEAREST, borderValue=0).astype(bool)


def erosion_masks(
    model: FaceModel,
    identity: np.ndarray,
    expression: np.ndarray,
    pose: Pose,
    crop_size: int,
    config: ErosionConfig,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Masks (T, S, S) bool of the region to blank, from the face model and a crop-pixel pose.

    ``identity`` (478, 3), ``expression`` (T, n_mouth + n_upper) and ``pose`` (T frames, mapping
    canonical -> crop pixels) describe the frames; ``rng`` is required when ``config.enabled``.
    """
    expression = np.asarray(expression, dtype=np.float32).reshape(len(pose), -1)  # (T, E)
    if not config.enabled:
        posed = apply_pose(model.decode(identity, expression), pose)  # (T, 478, 3)
        return mouth_masks(posed, model.mouth_vertices, crop_size)
    if rng is None:
        raise ValueError("erosion_masks: augmented erosion needs a numpy.random.Generator (rng)")
    n_frames = expression.shape[0]
    # Draw everything up front in a fixed order so results depend only on the seed.
    noise = rng.standard_normal((n_frames, model.n_mouth)).astype(np.float32)  # (T, n_mouth)
    radii = rng.integers(-config.max_erode_px, config.max_dilate_px + 1, size=n_frames)  # (T,)
    angles = rng.uniform(-config.max_rotation_deg, config.max_rotation_deg, size=n_frames)  # (T,)
    shifts = rng.uniform(-config.max_shift_px, config.max_shift_px, size=(n_frames, 2))  # (T, 2)

    noisy = expression.copy()
    noisy[:, model.mouth_slice] += config.expression_noise * np.sqrt(model.mouth_variance) * noise
    masks = mouth_masks(apply_pose(model.decode(identity, noisy), pose), model.mouth_vertices, crop_size)
    return np.stack(
        [
            _jitter_mask(
                mask,
                round(_pixels(radius, crop_size)),
                float(angle),
                _pixels(1.0, crop_size) * shift,
            )
            for mask, radius, angle, shift in zip(masks, radii, angles, shifts, strict=True)
        ]
    )


def blank_masked(crops: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """A copy of crops (T, S, S, C) set to 0 where masks (T, S, S) are True."""
    blanked = np.array(crops, copy=True)
    blanked[np.asarray(masks, dtype=bool)] = 0
    return blanked


def augmented_erosion(
    crops: np.ndarray,
    model: FaceModel,
    identity: np.ndarray,
    expression: np.ndarray,
    pose: Pose,
    config: ErosionConfig,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The eroded background crops (T, S, S, C) and the masks (T, S, S) bool that blanked them."""
    crop_size = int(crops.shape[1])
    masks = erosion_masks(model, identity, expression, pose, crop_size, config, rng)
    return blank_masked(crops, masks), masks
