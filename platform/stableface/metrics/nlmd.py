"""Normalised lip landmark distance (NLMD) between a generated video and its ground truth.

Both tracks go into the ground truth's MSI crop (256 px, mouth = a quarter of the width), so the
distance is independent of resolution; NLMD = mean Euclidean distance of the lip points over
frames, divided by the crop size (a fraction of the crop; x 256 gives crop pixels).
"""

from __future__ import annotations

import numpy as np

from stableface.face.ibug import LIPS, N_IBUG
from stableface.metrics.msi import CROP_SIZE, crop_box, to_crop


def nlmd(generated: np.ndarray, ground_truth: np.ndarray) -> float:
    """Mean lip landmark distance / 256 for two (T, 68, 2) frame-pixel tracks of the same video size."""
    generated = np.asarray(generated, dtype=np.float64)
    ground_truth = np.asarray(ground_truth, dtype=np.float64)
    if generated.shape != ground_truth.shape or generated.ndim != 3 or generated.shape[1:] != (N_IBUG, 2):
        raise ValueError(
            f"nlmd: expected two (T, {N_IBUG}, 2) tracks of equal shape, got {generated.shape} and {ground_truth.shape}"
        )
    box = crop_box(ground_truth)
    distance = np.linalg.norm(to_crop(generated, box)[:, LIPS] - to_crop(ground_truth, box)[:, LIPS], axis=-1)
    return float(distance.mean() / CROP_SIZE)  # distance: (T, 20) crop pixels
