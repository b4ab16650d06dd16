"""The vertical-slice image of the StableFace paper (Figs. 1 and 7).

One pixel column through the mouth centre is taken from every frame and the columns are placed
side by side, so time runs left to right. Smooth lip motion draws smooth curves; jitter draws
saw-teeth. :func:`slice_roughness` puts a number on what the eye sees.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

DEFAULT_HEIGHT = 128  # rows of the slice image


def sample_column(
    frame: np.ndarray, x: float, top: float, size: float, height: int = DEFAULT_HEIGHT
) -> np.ndarray:
    """The column at ``x`` from ``top`` to ``top + size`` of an RGB frame (H, W, 3), resampled to (height, 3).

    Rows outside the frame are black.
    """
    frame_height, frame_width = frame.shape[:2]
    column_index = round(x)
    rows = top + (np.arange(height) + 0.5) * (size / height)  # (height,) frame y of each output row
    if not 0 <= column_index < frame_width:
        return np.zeros((height, 3), np.uint8)
    column = frame[:, column_index].astype(np.float32)  # (H, 3)
    inside = (rows >= 0) & (rows <= frame_height - 1)
    out = np.zeros((height, 3), np.float32)
    source_rows = np.arange(frame_height)
    for channel in range(3):
        out[inside, channel] = np.interp(rows[inside], source_rows, column[:, channel])
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def vertical_slice(
    frames: Iterable[np.ndarray], x: float, top: float, size: float, height: int = DEFAULT_HEIGHT
) -> np.ndarray:
    """Columns of all ``frames`` side by side: (height, T, 3) uint8."""
    columns = [sample_column(frame, x, top, size, height) for frame in frames]
    if not columns:
        raise ValueError("vertical_slice: no frames")
    return np.stack(columns, axis=1)


def slice_roughness(image: np.ndarray) -> float:
    """Mean absolute second difference along time of a slice image (grey levels per frame^2).

    Steady motion changes each row smoothly from frame to frame and scores low; per-frame jitter
    makes rows flicker and scores high.
    """
    grey = np.asarray(image, dtype=np.float64)
    if grey.ndim == 3:
        grey = grey.mean(axis=2)  # (height, T)
    if grey.shape[1] < 3:
        raise ValueError(f"slice_roughness: need at least 3 frames, got {grey.shape[1]}")
    return float(np.abs(np.diff(grey, n=2, axis=1)).mean())
