"""The motion filter: a predicted mouth no rougher than the real speech of the source it goes on.

audio2expression's mouth on speech unlike its training voices (another language, another speaker)
flickers from frame to frame: on the demo's French and English dubs of GRID s1 the predicted mesh
had a quarter of the real mesh's lip MSI before any smoothing, while on the clip's own audio it
had 0.7 (``docs/stage1/jitter_report.py``); the adaptive smoothing, trained to keep speech, and the
renderer changed that little. So the predicted trajectory is low-passed by as much as its *own*
roughness exceeds real speech's, and not at all when it is already as smooth.

Roughness is the energy of the accelerations over that of the velocities of the mouth coefficients
(an orthonormal basis of vertex displacements, so these are vertex energies). It does not depend on
how widely the mouth moves, only on how fast it changes direction: a sinusoid of frequency f at
``fps`` has roughness 4 sin^2(pi f / fps), so it reads as an *effective frequency* in Hz (real GRID
s1 speech tracked by MediaPipe: 5.0-5.6 Hz, the syllable rate; the French and English predictions:
6.6 Hz). The reference is the source's own tracked mouth over the frames the dub shows (so a steady
HD source asks for a steadier dub than a noisy one), capped at ``max_motion_hz``, which also stands
in when the source's mouth does not move. The filter is the Gaussian of the smallest sigma that
brings the trajectory down to the reference, found by bisection (roughness falls as sigma grows).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from stableface.errors import InputError

MIN_VELOCITY_ENERGY = 1e-12  # a trajectory that moves less than this has no roughness
BISECTION_STEPS = 24  # sigma to max_sigma / 2^24


@dataclass
class MotionFilterConfig:
    enabled: bool = True
    # The most an output's mouth may change direction, as an effective frequency (module docstring);
    # the reference when the source's mouth does not move, and the cap when it does.
    max_motion_hz: float = 5.6
    max_sigma: float = 3.0  # frames: the strongest filter, whatever the roughness

    def __post_init__(self) -> None:
        if self.max_motion_hz <= 0:
            raise InputError("motion_filter.max_motion_hz", f"must be positive, got {self.max_motion_hz}")
        if self.max_sigma <= 0:
            raise InputError("motion_filter.max_sigma", f"must be positive, got {self.max_sigma}")


def roughness(trajectory: np.ndarray) -> float:
    """(T, D) trajectory -> sum |a|^2 / sum |v|^2 over time (NaN if it barely moves or T < 3)."""
    trajectory = np.asarray(trajectory, np.float64)
    if len(trajectory) < 3:
        return math.nan
    velocity = np.diff(trajectory, axis=0)
    energy = float((velocity**2).sum())
    if energy < MIN_VELOCITY_ENERGY:
        return math.nan
    return float((np.diff(velocity, axis=0) ** 2).sum()) / energy


def roughness_of_frequency(hz: float, fps: float) -> float:
    """The roughness of a sinusoid of ``hz`` sampled at ``fps``: 4 sin^2(pi hz / fps)."""
    return 4.0 * math.sin(math.pi * min(hz / fps, 0.5)) ** 2


def effective_frequency(value: float, fps: float) -> float:
    """The inverse of :func:`roughness_of_frequency`: roughness -> Hz."""
    return fps / math.pi * math.asin(min(math.sqrt(value) / 2.0, 1.0))


def gaussian_smooth(trajectory: np.ndarray, sigma: float) -> np.ndarray:
    """(T, D) -> (T, D) Gaussian low-pass over time, ends replicated (sigma 0: unchanged)."""
    if sigma <= 0:
        return np.asarray(trajectory, np.float32).copy()
    return ndimage.gaussian_filter1d(
        np.asarray(trajectory, np.float64), sigma, axis=0, mode="nearest"
    ).astype(np.float32)


def matched_sigma(trajectory: np.ndarray, target: float, max_sigma: float) -> float:
    """The smallest Gaussian sigma (frames, at most ``max_sigma``) that brings ``trajectory``'s
    roughness to ``target`` or below; 0 when it is there already (or does not move)."""
    own = roughness(trajectory)
    if math.isnan(own) or own <= target:
        return 0.0
    low, high = 0.0, max_sigma
    if roughness(gaussian_smooth(trajectory, high)) > target:
        return max_sigma
    for _ in range(BISECTION_STEPS):
        middle = (low + high) / 2.0
        if roughness(gaussian_smooth(trajectory, middle)) > target:
            low = middle
        else:
            high = middle
    return high


def reference_roughness(source_mouth: np.ndarray, fps: float, config: MotionFilterConfig) -> float:
    """The roughness a dub's mouth may have: its source's tracked mouth's (T, n_mouth), capped at
    ``config.max_motion_hz``, which also stands in when the source's mouth does not move."""
    cap = roughness_of_frequency(config.max_motion_hz, fps)
    own = roughness(source_mouth)
    return cap if math.isnan(own) else min(own, cap)


def filter_mouth(
    mouth: np.ndarray, source_mouth: np.ndarray, fps: float, config: MotionFilterConfig
) -> tuple[np.ndarray, float]:
    """Predicted mouth (T, n_mouth) of one face segment, the source's tracked mouth over the frames
    it shows (S, n_mouth) -> (the mouth no rougher than the reference, the sigma used)."""
    if not config.enabled:
        return mouth, 0.0
    sigma = matched_sigma(mouth, reference_roughness(source_mouth, fps, config), config.max_sigma)
    return (gaussian_smooth(mouth, sigma) if sigma > 0 else mouth), sigma
