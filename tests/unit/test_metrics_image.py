"""SSIM against scikit-image, CPBD against blur, NLMD against hand-computed distances."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage.metrics import structural_similarity

from stableface.face.ibug import LIPS, N_IBUG
from stableface.io.video import read_frames
from stableface.metrics.cpbd import cpbd, edge_widths
from stableface.metrics.nlmd import nlmd
from stableface.metrics.ssim import ssim, video_ssim


@pytest.fixture(scope="module")
def grid_frames(grid_clips) -> np.ndarray:
    return read_frames(grid_clips[0], max_frames=12)  # (12, 288, 360, 3)


@pytest.fixture(scope="module")
def vox_frame(shared_data) -> np.ndarray:
    return read_frames(shared_data / "voxceleb2" / "zip_Input_00002.mp4", max_frames=1)[0]  # (224, 224, 3)


def skimage_ssim(a, b, channel_axis=None):
    return structural_similarity(
        a,
        b,
        data_range=255,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        channel_axis=channel_axis,
    )


def test_ssim_matches_scikit_image_on_real_frames(grid_frames):
    rng = np.random.default_rng(0)
    sharp = grid_frames[0]
    noisy = np.clip(sharp + rng.normal(0, 12, sharp.shape), 0, 255).astype(np.uint8)
    pairs = [(sharp, grid_frames[11]), (sharp, cv2.GaussianBlur(sharp, (0, 0), 2.0)), (sharp, noisy)]
    values = []
    for a, b in pairs:
        ours = ssim(a, b)
        assert ours == pytest.approx(skimage_ssim(a, b, channel_axis=2), abs=1e-3)
        grey_a, grey_b = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY), cv2.cvtColor(b, cv2.COLOR_RGB2GRAY)
        assert ssim(grey_a, grey_b) == pytest.approx(skimage_ssim(grey_a, grey_b), abs=1e-3)
        values.append(ours)
    assert ssim(sharp, sharp) == pytest.approx(1.0)
    assert all(0.0 < v < 0.999 for v in values)


def test_video_ssim_averages_frames_and_checks_inputs(grid_frames):
    expected = np.mean([ssim(a, b) for a, b in zip(grid_frames[:4], grid_frames[4:8], strict=True)])
    assert video_ssim(grid_frames[:4], grid_frames[4:8]) == pytest.approx(expected)
    with pytest.raises(ValueError, match="differ in shape"):
        ssim(grid_frames[0], grid_frames[0][:100])
    with pytest.raises(ValueError, match="equal, non-zero frame counts"):
        video_ssim(grid_frames[:3], grid_frames[:4])


def test_edge_width_of_a_ramp_is_its_length():
    ramp_px = 6
    row = np.concatenate([np.zeros(20), np.linspace(0, 200, ramp_px + 1), np.full(20, 200.0)])
    grey = np.tile(row, (5, 1))  # (5, 47)
    edges = np.zeros_like(grey, bool)
    edges[:, 23] = True  # inside the ramp
    gx, gy = np.ones_like(grey), np.zeros_like(grey)
    widths = edge_widths(grey, edges, gx, gy)
    assert np.all(widths[:, 23] == ramp_px) and widths.sum() == 5 * ramp_px
    # The same ramp falling, measured with a negative gradient.
    falling = edge_widths(grey[:, ::-1], edges[:, ::-1], -gx, gy)
    assert np.all(falling[:, 47 - 1 - 23] == ramp_px)


def test_cpbd_of_sharp_steps_is_one_and_of_blurred_steps_zero():
    checkerboard = ((np.indices((256, 256)) // 32).sum(axis=0) % 2 * 200 + 20).astype(np.uint8)
    assert cpbd(checkerboard) == pytest.approx(1.0)
    assert cpbd(cv2.GaussianBlur(checkerboard, (0, 0), 4.0)) == pytest.approx(0.0)


@pytest.mark.parametrize("which", ["grid", "voxceleb"])
def test_cpbd_ranks_a_sharp_frame_above_its_blurred_copies(which, grid_frames, vox_frame):
    frame = grid_frames[0] if which == "grid" else vox_frame
    scores = [cpbd(frame)] + [
        cpbd(cv2.GaussianBlur(frame, (0, 0), sigma)) for sigma in (0.5, 1.0, 1.5, 2.0, 3.0)
    ]
    assert 0.0 < scores[0] <= 1.0
    assert scores[0] > scores[1] > scores[2]  # strictly while blur is still measurable
    assert all(later <= scores[2] for later in scores[3:])  # and never back up once everything is blurred
    assert all(later < 0.5 * scores[0] for later in scores[2:])


def test_cpbd_rejects_images_smaller_than_a_block():
    with pytest.raises(ValueError, match="smaller than one 64x64 block"):
        cpbd(np.zeros((32, 200), np.uint8))


def lip_track(mouth_width: float, frames: int = 10) -> np.ndarray:
    track = np.zeros((frames, N_IBUG, 2))
    angles = np.linspace(0, 2 * np.pi, 20, endpoint=False)
    track[:, LIPS] = np.stack([np.cos(angles) * mouth_width / 2, np.sin(angles) * 8], axis=1) + 100.0
    track[:, 48], track[:, 54] = (100 - mouth_width / 2, 100.0), (100 + mouth_width / 2, 100.0)
    track[:, :17] = np.linspace(20, 180, 17)[:, None]
    return track


def test_nlmd_is_the_lip_distance_in_crop_pixels_over_256():
    truth = lip_track(64.0)  # 64 px mouth: crop pixels == frame pixels
    assert nlmd(truth, truth) == 0.0
    shifted = truth.copy()
    shifted[:, LIPS] += (3.0, 4.0)  # 5 px from the truth at every lip point
    assert nlmd(shifted, truth) == pytest.approx(5.0 / 256)
    shifted[:, :17] += 50.0  # the jaw does not count
    assert nlmd(shifted, truth) == pytest.approx(5.0 / 256)
    small_truth = lip_track(32.0)  # half-size face: 5 frame px are 10 crop px
    small = small_truth.copy()
    small[:, LIPS] += (3.0, 4.0)
    assert nlmd(small, small_truth) == pytest.approx(10.0 / 256)
    with pytest.raises(ValueError, match="equal shape"):
        nlmd(truth[:5], truth)
