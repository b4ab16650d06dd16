"""MSI against an independent, loop-by-loop computation on synthetic landmark tracks."""

from __future__ import annotations

import statistics

import numpy as np
import pytest

from stableface.face.ibug import JAW, LIPS, N_IBUG
from stableface.metrics.msi import (
    CROP_SIZE,
    EPSILON,
    MAX_MSI,
    crop_box,
    landmark_variance,
    motion_stability,
    to_crop,
)

MOUTH_WIDTH_PX = 64.0  # a 64 px mouth makes the crop 256 px: crop pixels == frame pixels


def face_template(mouth_width: float = MOUTH_WIDTH_PX, centre=(200.0, 150.0)) -> np.ndarray:
    """A static (68, 2) face: points on an ellipse, mouth corners 48 and 54 ``mouth_width`` apart."""
    angles = np.linspace(0, 2 * np.pi, N_IBUG, endpoint=False)
    points = np.stack([np.cos(angles) * 80, np.sin(angles) * 100], axis=1) + np.asarray(centre)
    lips = np.linspace(0, 2 * np.pi, 20, endpoint=False)
    points[LIPS] = np.stack([np.cos(lips) * mouth_width / 2, np.sin(lips) * 10], axis=1) + np.asarray(centre)
    points[48] = np.asarray(centre) + np.array([-mouth_width / 2, 0.0])
    points[54] = np.asarray(centre) + np.array([mouth_width / 2, 0.0])
    return points


def reference_msi(track: np.ndarray, points: range) -> float:
    """MSI written out per landmark and coordinate with the standard library, as DESIGN.md states it."""
    width = statistics.fmean(float(np.linalg.norm(track[t, 54] - track[t, 48])) for t in range(5))
    scale = 256.0 / (width / 0.25)
    inverses = []
    for i in points:
        sigma = 0.0
        for axis in (0, 1):
            z = [float(track[t, i, axis]) * scale for t in range(len(track))]
            v = [z[t + 1] - z[t] for t in range(len(z) - 1)]
            a = (
                [0.0] + [v[t] - v[t - 1] for t in range(1, len(v))] + [0.0]
            )  # no acceleration at the end frames
            sigma += statistics.variance(a)  # sample variance, ddof = 1
        inverses.append(1.0 / (sigma + 1e-5))
    return statistics.fmean(inverses)


def test_still_track_scores_the_maximum():
    track = np.repeat(face_template()[None], 50, axis=0)
    result = motion_stability(track)
    assert result.lip == pytest.approx(MAX_MSI) and result.jaw == pytest.approx(MAX_MSI)
    assert result.per_landmark.shape == (N_IBUG,)
    np.testing.assert_allclose(result.per_landmark, 1e5)


def test_constant_velocity_has_zero_acceleration_variance_so_msi_is_the_maximum():
    frames, step = 60, np.array([0.7, -0.4])
    track = face_template()[None] + np.arange(frames)[:, None, None] * step  # (T, 68, 2)
    np.testing.assert_allclose(landmark_variance(to_crop(track, crop_box(track))), 0.0, atol=1e-18)
    result = motion_stability(track)
    assert result.lip == pytest.approx(1e5) and result.jaw == pytest.approx(1e5)
    assert result.lip == pytest.approx(reference_msi(track, range(48, 68)), rel=1e-9)


def test_a_single_jolt_gives_the_exact_variance():
    frames = 41
    track = np.repeat(face_template()[None], frames, axis=0)
    track[20:, :, 0] += 2.0  # every point steps 2 px right at frame 20: accelerations +2, -2 on x
    # a = (0, ..., +2, -2, ..., 0): mean 0, sample variance (4 + 4) / (T - 1), y adds nothing.
    result = motion_stability(track)
    assert result.lip == pytest.approx(1.0 / (8.0 / (frames - 1) + EPSILON), rel=1e-9)
    assert result.lip == pytest.approx(reference_msi(track, range(48, 68)), rel=1e-9)


@pytest.mark.parametrize("noise_px", [0.25, 0.5, 1.0])
def test_white_noise_gives_the_expected_variance(noise_px):
    frames = 4000
    rng = np.random.default_rng(7)
    track = face_template()[None] + rng.normal(0.0, noise_px, size=(frames, N_IBUG, 2))
    # Interior a_t = z_{t+1} - 2 z_t + z_{t-1}: variance 6 s^2 per axis, T - 2 of them; the two padded
    # end values are 0. Their mean is O(1/T), so E[sample variance] ~ (T - 2) 6 s^2 / (T - 1), times 2 axes.
    # Crop scale is ~1 (the 64 px mouth is measured on noisy frames, a 0.1-1% effect).
    sigma = 2 * (frames - 2) * 6 * noise_px**2 / (frames - 1)
    expected = 1.0 / (sigma + EPSILON)
    result = motion_stability(track)
    assert result.lip == pytest.approx(expected, rel=0.05)  # 4000 frames: sampling error about 1-2 %
    assert result.jaw == pytest.approx(expected, rel=0.05)
    assert result.lip == pytest.approx(reference_msi(track, range(48, 68)), rel=1e-9)
    assert result.jaw == pytest.approx(reference_msi(track, range(0, 17)), rel=1e-9)


def test_lip_and_jaw_are_measured_separately():
    rng = np.random.default_rng(3)
    track = np.repeat(face_template()[None], 200, axis=0)
    track[:, JAW] += rng.normal(0.0, 1.0, size=(200, 17, 2))  # only the jaw jitters
    result = motion_stability(track)
    assert result.lip == pytest.approx(MAX_MSI)
    assert result.jaw < 0.2
    assert result.jaw == pytest.approx(float(np.mean(result.per_landmark[JAW])))


def test_msi_is_in_crop_units_so_resolution_and_position_do_not_matter():
    rng = np.random.default_rng(11)
    base = face_template()[None] + rng.normal(0.0, 0.5, size=(300, N_IBUG, 2))
    moved = base + np.array([123.0, -45.0])
    doubled = base * 2.0  # the same video at twice the resolution: twice the pixel jitter, twice the mouth
    reference = motion_stability(base)
    for other in (moved, doubled):
        result = motion_stability(other)
        assert result.lip == pytest.approx(reference.lip, rel=1e-9)
        assert result.jaw == pytest.approx(reference.jaw, rel=1e-9)


def test_halving_the_mouth_doubles_the_crop_scale_and_quarters_msi():
    rng = np.random.default_rng(5)
    noise = rng.normal(0.0, 0.5, size=(300, N_IBUG, 2))
    noise[:5] = 0.0  # clean reference frames: the crop scale is exactly 256 / (4 x mouth width)
    wide = motion_stability(face_template(64.0)[None] + noise)
    narrow = motion_stability(face_template(32.0)[None] + noise)  # same pixel noise, half-size face
    assert wide.crop.scale == pytest.approx(1.0) and narrow.crop.scale == pytest.approx(2.0)
    assert narrow.lip == pytest.approx(wide.lip / 4, rel=1e-3)  # eps is the only difference


def test_crop_box_is_centred_on_the_mouth_and_four_mouths_wide():
    track = np.repeat(face_template(40.0, centre=(100.0, 80.0))[None], 8, axis=0)
    box = crop_box(track)
    assert box.size == pytest.approx(160.0)
    assert box.scale == pytest.approx(CROP_SIZE / 160.0)
    centre = to_crop(track, box)[0, LIPS].mean(axis=0)
    np.testing.assert_allclose(centre, [128.0, 128.0], atol=1e-9)
    # Only the first five frames fix the crop: later motion does not move it.
    track[5:] += 30.0
    assert crop_box(track) == box


def test_bad_tracks_are_rejected_with_the_problem_named():
    with pytest.raises(ValueError, match=r"expected shape \(T, 68, 2\)"):
        motion_stability(np.zeros((10, 67, 2)))
    track = np.repeat(face_template()[None], 10, axis=0)
    track[3, 5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        motion_stability(track)
    with pytest.raises(ValueError, match="too few"):
        motion_stability(np.repeat(face_template()[None], 2, axis=0))
    collapsed = np.repeat(face_template(0.0)[None], 10, axis=0)
    with pytest.raises(ValueError, match="mouth width is zero"):
        motion_stability(collapsed)
