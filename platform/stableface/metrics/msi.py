"""Motion Stability Index (MSI): how steadily facial landmarks move (Ling et al., StableFace).

Landmarks (iBUG-68 view) are mapped into one fixed 256x256 crop per video, taken from the first
frames and sized so the mouth spans a quarter of it; that makes MSI comparable across resolutions
and face sizes. Per landmark i, with velocities v_t = Z_{t+1} - Z_t and accelerations
a_t = v_t - v_{t-1}, sigma_i is the sample variance (ddof = 1) of a over time, summed over x and y;
MSI = mean_i 1 / (sigma_i + eps). Jitter raises sigma, lowering MSI.

The ends: the first and last frames have no acceleration (a velocity is missing on one side), and
DESIGN.md pads them with zero, so every frame contributes one value. The padding is applied to the
*accelerations* (equivalently: the missing velocities at the ends are taken equal to their
neighbours), so a landmark moving at constant velocity has zero acceleration everywhere and scores
the maximum 1 / eps, as the acceptance of the MSI issue requires. Padding the velocities themselves
with zero would instead turn a steady pan into two spurious jolts of size |v| at the ends.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stableface.face.ibug import JAW, LIPS, N_IBUG, mouth_width

CROP_SIZE = 256  # MSI is measured in pixels of this crop
MOUTH_WIDTH_FRACTION = 0.25  # mouth width / crop width
CROP_REFERENCE_FRAMES = 5  # the crop box comes from the first frames only
EPSILON = 1e-5
MAX_MSI = 1.0 / EPSILON  # the score of a still or uniformly moving track
MIN_FRAMES = 3  # fewer frames give no acceleration variance


@dataclass(frozen=True)
class CropBox:
    """A square box in frame pixels: top-left corner and side length."""

    left: float
    top: float
    size: float

    @property
    def scale(self) -> float:
        """Frame pixels -> crop pixels."""
        return CROP_SIZE / self.size


@dataclass
class MSIResult:
    """MSI of one track: lips and jaw, plus the per-landmark breakdown."""

    lip: float
    jaw: float
    per_landmark: np.ndarray  # (68,) 1 / (sigma_i + eps)
    variance: np.ndarray  # (68,) sigma_i in crop pixels^2 / frame^4
    crop: CropBox
    n_frames: int

    def to_dict(self) -> dict:
        return {
            "msi_lip": self.lip,
            "msi_jaw": self.jaw,
            "msi_per_landmark": self.per_landmark.tolist(),
            "crop": [self.crop.left, self.crop.top, self.crop.size],
            "n_frames": self.n_frames,
        }


def _check_track(ibug68: np.ndarray, name: str = "landmarks") -> np.ndarray:
    track = np.asarray(ibug68, dtype=np.float64)
    if track.ndim != 3 or track.shape[1:] != (N_IBUG, 2):
        raise ValueError(f"{name}: expected shape (T, {N_IBUG}, 2), got {track.shape}")
    if not np.isfinite(track).all():
        raise ValueError(f"{name}: contains NaN or infinite values (bridge missing frames first)")
    return track


def crop_box(ibug68: np.ndarray, reference_frames: int = CROP_REFERENCE_FRAMES) -> CropBox:
    """The fixed MSI crop: centred on the mouth, side = mean mouth width / 0.25 over the first frames."""
    track = _check_track(ibug68)
    reference = track[:reference_frames]  # (R, 68, 2)
    width = float(np.mean(mouth_width(reference)))
    if width <= 0:
        raise ValueError("landmarks: mouth width is zero in the reference frames; cannot size the crop")
    size = width / MOUTH_WIDTH_FRACTION
    centre = reference[:, LIPS].reshape(-1, 2).mean(axis=0)  # (2,) x, y
    return CropBox(left=float(centre[0] - size / 2), top=float(centre[1] - size / 2), size=size)


def to_crop(ibug68: np.ndarray, box: CropBox) -> np.ndarray:
    """Frame-pixel landmarks (T, 68, 2) -> crop-pixel landmarks in the 256x256 crop."""
    track = np.asarray(ibug68, dtype=np.float64)
    origin = np.array([box.left, box.top])
    return (track - origin) * box.scale


def accelerations(points: np.ndarray) -> np.ndarray:
    """(T, N, 2) positions -> (T, N, 2) accelerations: second differences, zero at both end frames."""
    velocity = np.diff(points, axis=0)  # (T-1, N, 2)
    interior = np.diff(velocity, axis=0)  # (T-2, N, 2): a_t for t = 1 .. T-2
    rest = np.zeros((1, *points.shape[1:]))
    return np.concatenate([rest, interior, rest], axis=0)  # (T, N, 2)


def landmark_variance(points: np.ndarray) -> np.ndarray:
    """(T, N, 2) crop-pixel positions -> (N,) acceleration variance, ddof = 1, summed over x and y."""
    if points.shape[0] < MIN_FRAMES:
        raise ValueError(f"landmarks: {points.shape[0]} frames are too few for an acceleration variance")
    return accelerations(points).var(axis=0, ddof=1).sum(axis=-1)  # (N,)


def msi_from_variance(variance: np.ndarray) -> float:
    return float(np.mean(1.0 / (np.asarray(variance) + EPSILON)))


def motion_stability(ibug68: np.ndarray) -> MSIResult:
    """MSI of a bridged iBUG-68 track (T, 68, 2) in frame pixels."""
    track = _check_track(ibug68)
    if track.shape[0] < MIN_FRAMES:
        raise ValueError(f"landmarks: {track.shape[0]} frames are too few for MSI (need {MIN_FRAMES})")
    box = crop_box(track)
    variance = landmark_variance(to_crop(track, box))  # (68,)
    return MSIResult(
        lip=msi_from_variance(variance[LIPS]),
        jaw=msi_from_variance(variance[JAW]),
        per_landmark=1.0 / (variance + EPSILON),
        variance=variance,
        crop=box,
        n_frames=int(track.shape[0]),
    )
