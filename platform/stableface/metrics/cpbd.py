"""Cumulative probability of blur detection (CPBD), Narvekar and Karam, IEEE TIP 2011 / QoMEX 2009.

A no-reference sharpness score in [0, 1] (higher is sharper):

1. edges: Canny with MATLAB-style automatic thresholds, then the edge pixels whose gradient is
   closer to horizontal (their width is measured along the row, as in Marziliano et al. 2002);
2. edge width: distance between the local intensity extrema on either side of the edge pixel;
3. the image is cut into 64x64 blocks; a block with more than 0.2% edge pixels is an edge block,
   and its contrast picks the just-noticeable blur width (5 px at contrast <= 50, else 3 px);
4. each edge's probability of blur detection is 1 - exp(-(w / w_JNB)^3.6); CPBD is the fraction
   of edges in edge blocks whose probability does not exceed the just-noticeable 63%.
"""

from __future__ import annotations

import numpy as np

BLOCK = 64
EDGE_BLOCK_FRACTION = 0.002
BETA = 3.6
P_JNB = 0.63
LOW_CONTRAST = 50  # grey levels
WIDTH_JNB_LOW_CONTRAST = 5.0
WIDTH_JNB_HIGH_CONTRAST = 3.0
CANNY_SIGMA = np.sqrt(2.0)
CANNY_NON_EDGE_FRACTION = 0.7  # MATLAB: the high threshold leaves 70% of pixels below it
CANNY_LOW_RATIO = 0.4


def to_grey(image: np.ndarray) -> np.ndarray:
    """RGB uint8 (H, W, 3) or grey (H, W) -> float64 luma (H, W) in 0..255 (BT.601 weights)."""
    image = np.asarray(image)
    if image.ndim == 3:
        return image[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    if image.ndim == 2:
        return image.astype(np.float64)
    raise ValueError(f"cpbd: expected an (H, W) or (H, W, 3) image, got shape {image.shape}")


def canny_edges(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Canny edges with automatic thresholds; also the Sobel gradients (gx, gy) of the smoothed image."""
    import cv2

    smooth = cv2.GaussianBlur(grey, (0, 0), CANNY_SIGMA)
    gx = cv2.Sobel(smooth, cv2.CV_64F, 1, 0, ksize=3)
    gy = cv2.Sobel(smooth, cv2.CV_64F, 0, 1, ksize=3)
    magnitude = np.hypot(gx, gy)
    high = float(np.quantile(magnitude, CANNY_NON_EDGE_FRACTION))
    if high <= 0:
        return np.zeros(grey.shape, bool), gx, gy
    # Canny on our own derivatives, so its thresholds are on the magnitude measured above.
    edges = cv2.Canny(
        np.clip(np.rint(gx), -32768, 32767).astype(np.int16),
        np.clip(np.rint(gy), -32768, 32767).astype(np.int16),
        CANNY_LOW_RATIO * high,
        high,
        L2gradient=True,
    )
    return edges > 0, gx, gy


def _run_bounds(grey: np.ndarray, rising: bool) -> tuple[np.ndarray, np.ndarray]:
    """For every pixel, the first and last column of the strictly monotone run through it along its row."""
    height, width = grey.shape
    step = np.diff(grey, axis=1)  # (H, W-1): step[:, m] = g[m+1] - g[m]
    breaks = step <= 0 if rising else step >= 0
    columns = np.broadcast_to(np.arange(width), (height, width))
    # A run reaching left to column m needs g[m-1] -> g[m] to continue it; where it does not, m starts a run.
    starts = np.ones((height, width), bool)
    starts[:, 1:] = breaks
    left = np.maximum.accumulate(np.where(starts, columns, 0), axis=1)
    ends = np.ones((height, width), bool)
    ends[:, :-1] = breaks
    right_reversed = np.minimum.accumulate(np.where(ends, columns, width - 1)[:, ::-1], axis=1)
    return left, right_reversed[:, ::-1]


def edge_widths(grey: np.ndarray, edges: np.ndarray, gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """Marziliano widths (H, W) at horizontal-gradient edge pixels; 0 elsewhere."""
    measured = edges & (np.abs(gx) >= np.abs(gy)) & (gx != 0)
    left_up, right_up = _run_bounds(grey, rising=True)
    left_down, right_down = _run_bounds(grey, rising=False)
    widths = np.where(gx > 0, right_up - left_up, right_down - left_down).astype(np.float64)
    return np.where(measured, widths, 0.0)


def cpbd(image: np.ndarray) -> float:
    """CPBD sharpness of one image (RGB or grey); NaN when the image has no edge block."""
    grey = to_grey(image)
    if min(grey.shape) < BLOCK:
        raise ValueError(f"cpbd: image {grey.shape} is smaller than one {BLOCK}x{BLOCK} block")
    edges, gx, gy = canny_edges(grey)
    widths = edge_widths(grey, edges, gx, gy)
    sharp, total = 0, 0
    threshold = EDGE_BLOCK_FRACTION * BLOCK * BLOCK
    for top in range(0, grey.shape[0] - BLOCK + 1, BLOCK):
        for left in range(0, grey.shape[1] - BLOCK + 1, BLOCK):
            window = np.s_[top : top + BLOCK, left : left + BLOCK]
            if edges[window].sum() <= threshold:
                continue
            block_widths = widths[window][widths[window] > 0]
            if block_widths.size == 0:
                continue
            contrast = grey[window].max() - grey[window].min()
            width_jnb = WIDTH_JNB_LOW_CONTRAST if contrast <= LOW_CONTRAST else WIDTH_JNB_HIGH_CONTRAST
            p_blur = 1.0 - np.exp(-np.power(block_widths / width_jnb, BETA))
            sharp += int((p_blur <= P_JNB).sum())
            total += int(block_widths.size)
    return sharp / total if total else float("nan")
