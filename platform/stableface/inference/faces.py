"""Per output frame, the renderer's inputs, drawn exactly as training draws them
(:class:`stableface.data.sequences.RenderSequences`):

- expression = [predicted mouth | the source frame's upper face];
- face-shape image = the posed mesh of that expression, rasterised at the model's image size S;
- background = the source crop (taken at the model's crop size, resized to S) blanked over a mask
  that covers the source's mouth region and the new one, so the old mouth never shows through.

The same mask, feathered outwards, is where the generated face replaces the source when it is
pasted back (:mod:`stableface.inference.composite`).
"""

from __future__ import annotations

import cv2
import numpy as np

from stableface.face.erosion import REFERENCE_CROP_SIZE, blank_masked
from stableface.face.face_model import Pose, apply_pose
from stableface.face.raster import mouth_masks, render_shapes
from stableface.face.tracking import crop_image, feathered_mask
from stableface.speaker_model import SpeakerModel


def crop_pixels(value: float, size: int) -> float:
    """A pixel figure given for a 256-px crop, at ``size`` px."""
    return value * size / REFERENCE_CROP_SIZE


def posed_meshes(model: SpeakerModel, expression: np.ndarray, pose: Pose) -> np.ndarray:
    """Expression (n, E) on the speaker's identity, posed by ``pose`` -> (n, 478, 3) crop pixels."""
    return apply_pose(model.face_model.decode(model.identity, expression), pose)


def shape_images(model: SpeakerModel, meshes: np.ndarray, size: int) -> np.ndarray:
    """Face-shape images (n, S, S) float32 in [0, 1] of posed meshes (n, 478, 3)."""
    return render_shapes(meshes, model.face_model.triangles, size)


def source_crops(frames: list[np.ndarray], affines: np.ndarray, crop_size: int, size: int) -> np.ndarray:
    """Crops (n, S, S, 3) uint8: each frame cut at the dataset crop size with its affine (n, 2, 3), then
    area-resized to S (how training turns dataset crops into renderer inputs)."""
    crops = []
    for frame, affine in zip(frames, affines, strict=True):
        crop = crop_image(frame, affine, crop_size)  # (C, C, 3)
        if crop_size != size:
            crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
        crops.append(crop)
    return np.stack(crops)


def mouth_region_masks(
    model: SpeakerModel, new_meshes: np.ndarray, source_meshes: np.ndarray, size: int, dilation_px: float
) -> np.ndarray:
    """(n, S, S) bool: the union of the new and the source mouth regions, grown by ``dilation_px`` (at 256 px)."""
    mouth = model.face_model.mouth_vertices
    masks = mouth_masks(new_meshes, mouth, size) | mouth_masks(source_meshes, mouth, size)  # (n, S, S)
    radius = round(crop_pixels(dilation_px, size))
    if radius <= 0:
        return masks
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1,) * 2)
    return np.stack([cv2.dilate(mask.astype(np.uint8), kernel).astype(bool) for mask in masks])


def backgrounds(crops: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Eroded backgrounds (n, S, S, 3) uint8: the crops with the masked region set to 0."""
    return blank_masked(crops, masks)


def paste_weights(masks: np.ndarray, feather_px: float) -> np.ndarray:
    """(n, S, S) float32 blend weights: 1 over each mask, ramping to 0 over ``feather_px`` (at 256 px) outside it."""
    size = masks.shape[-1]
    feather = max(crop_pixels(feather_px, size), 1.0)
    radius = int(np.ceil(feather))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1,) * 2)
    weights = []
    for mask in masks:
        grown = cv2.dilate(mask.astype(np.uint8), kernel)  # the ramp lies outside the mask
        weights.append(feathered_mask(size, feather, grown))
    return np.stack(weights)
