"""Structural similarity (Wang, Bovik, Sheikh, Simoncelli 2004) with the paper's Gaussian window.

Local statistics use an 11x11 Gaussian window (sigma 1.5) evaluated only where the window fits
inside the image ("valid" filtering, as in the authors' reference code), with population
(co)variances; colour images average the per-channel SSIM.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import correlate1d

GAUSSIAN_SIGMA = 1.5
WINDOW_RADIUS = 5  # 11x11 window
K1 = 0.01
K2 = 0.03


def _gaussian_kernel(sigma: float = GAUSSIAN_SIGMA, radius: int = WINDOW_RADIUS) -> np.ndarray:
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    return kernel / kernel.sum()  # (2 * radius + 1,)


def _filter_valid(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Separable correlation of a 2-D image, keeping only positions where the window fits."""
    radius = kernel.size // 2
    rows = correlate1d(image, kernel, axis=0, mode="constant")
    both = correlate1d(rows, kernel, axis=1, mode="constant")
    return both[radius:-radius, radius:-radius]


def ssim_map(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> np.ndarray:
    """Per-pixel SSIM of two single-channel images (H, W) -> (H - 10, W - 10)."""
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    kernel = _gaussian_kernel()
    mu_x, mu_y = _filter_valid(x, kernel), _filter_valid(y, kernel)
    var_x = _filter_valid(x * x, kernel) - mu_x**2
    var_y = _filter_valid(y * y, kernel) - mu_y**2
    cov_xy = _filter_valid(x * y, kernel) - mu_x * mu_y
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    numerator = (2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)
    denominator = (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    return numerator / denominator


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    """Mean SSIM of two images (H, W) or (H, W, C) of equal shape; colour averages the channels."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"ssim: images differ in shape {a.shape} vs {b.shape}")
    if a.ndim not in (2, 3) or min(a.shape[:2]) <= 2 * WINDOW_RADIUS:
        raise ValueError(f"ssim: need (H, W) or (H, W, C) images larger than 11x11, got {a.shape}")
    if a.ndim == 2:
        return float(ssim_map(a, b, data_range).mean())
    return float(np.mean([ssim_map(a[..., c], b[..., c], data_range).mean() for c in range(a.shape[2])]))


def video_ssim(frames_a: np.ndarray, frames_b: np.ndarray, data_range: float = 255.0) -> float:
    """Mean SSIM over paired frames (T, H, W[, C])."""
    if len(frames_a) != len(frames_b) or len(frames_a) == 0:
        raise ValueError(
            f"video_ssim: need equal, non-zero frame counts, got {len(frames_a)} and {len(frames_b)}"
        )
    return float(np.mean([ssim(a, b, data_range) for a, b in zip(frames_a, frames_b, strict=True)]))
