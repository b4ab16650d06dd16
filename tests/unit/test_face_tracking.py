"""Stable crop boxes on real GRID clips, and the frame <-> crop affines for points and images."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from stableface.errors import NoFaceFound
from stableface.face.config import FaceConfig
from stableface.face.landmarks import LandmarkTrack, MediaPipeBackend, track_landmarks
from stableface.face.tracking import (
    CropBox,
    crop_affines,
    crop_image,
    crop_points,
    crop_video,
    face_extent,
    feathered_mask,
    invert_affines,
    paste_crop,
    require_faces,
    stable_crop_box,
    uncrop_points,
)
from stableface.io.video import read_frames

CONFIG = FaceConfig()
CLIP_INDICES = (0, 30, 60)


@pytest.fixture(scope="module")
def tracked(grid_clips) -> list[tuple[np.ndarray, LandmarkTrack]]:
    """Frames and MediaPipe tracks of three GRID s1 clips (computed once for this module)."""
    backend = MediaPipeBackend()
    videos = []
    for index in CLIP_INDICES:
        frames = read_frames(grid_clips[index])
        videos.append((frames, track_landmarks(frames, backend)))
    backend.close()
    return videos


def _mean_step(centres: np.ndarray) -> float:
    """Mean frame-to-frame displacement of (T, 2) centres, in pixels."""
    return float(np.linalg.norm(np.diff(centres, axis=0), axis=1).mean())


def test_crop_box_moves_less_than_the_raw_detections(tracked):
    for _frames, track in tracked:
        raw_centres, raw_sizes = face_extent(track.mesh)
        box = stable_crop_box(track.mesh, track.present, CONFIG)
        raw_step, box_step = _mean_step(raw_centres), _mean_step(box.centres)
        # Bound: the smoothed centre moves at most half as much per frame as the raw box centre.
        assert box_step < 0.5 * raw_step, (box_step, raw_step)
        # One side per video: crop_scale x the median face size.
        assert box.side == pytest.approx(CONFIG.crop_scale * np.median(raw_sizes), rel=1e-6)
        # It still follows the face: never more than 3 px (at 360x288) from the raw centre.
        assert np.abs(box.centres - raw_centres).max() < 3.0


def test_crop_video_centres_the_face_at_the_configured_scale(tracked):
    frames, track = tracked[0]
    cropped = crop_video(frames, track, CONFIG, source="bbas2p")
    size = CONFIG.crop_size
    assert cropped.crops.shape == (75, size, size, 3) and cropped.crops.dtype == np.uint8
    assert cropped.mesh.shape == (75, 478, 3) and cropped.ibug68.shape == (75, 68, 2)
    centres, sizes = face_extent(cropped.mesh)
    assert np.abs(centres - (size - 1) / 2).max() < 0.03 * size
    assert np.median(sizes) == pytest.approx(size / CONFIG.crop_scale, rel=1e-3)
    # z keeps the pixel scale of x: the mesh depth range grows with the crop scale like x does.
    depth_ratio = np.ptp(cropped.mesh[..., 2], axis=1) / np.ptp(track.mesh[..., 2], axis=1)
    np.testing.assert_allclose(depth_ratio, cropped.box.scale, rtol=1e-4)


def test_crop_pixels_agree_with_crop_points(tracked):
    """A landmark's pixel neighbourhood in the frame is found at its crop-point position in the crop."""
    frames, track = tracked[1]
    box = stable_crop_box(track.mesh, track.present, CONFIG)
    frame_index = 40
    frame = frames[frame_index].astype(np.float32)
    # Mark a known sub-pixel spot with a bright Gaussian blob and locate it in the crop.
    spot = track.mesh[frame_index, 1, :2]  # the nose tip, frame pixels
    ys, xs = np.mgrid[: frame.shape[0], : frame.shape[1]]
    blob = np.exp(-((xs - spot[0]) ** 2 + (ys - spot[1]) ** 2) / (2 * 2.0**2))
    marked = np.zeros(frame.shape[:2], np.float32) + blob.astype(np.float32)
    crop = crop_image(marked, box.affines()[frame_index], box.crop_size)
    weights = np.clip(crop, 0, None)
    cy, cx = np.mgrid[: crop.shape[0], : crop.shape[1]]
    found = np.array([(weights * cx).sum(), (weights * cy).sum()]) / weights.sum()
    expected = crop_points(track.mesh[frame_index : frame_index + 1, 1:2, :2], box[frame_index])[0, 0]
    assert np.linalg.norm(found - expected) < 0.05


def test_shrinking_crop_is_antialiased_and_aligned():
    """A 4x larger frame gives (nearly) the same crop as the small one: supersampling, same geometry."""
    rng = np.random.default_rng(3)
    small = cv2.GaussianBlur(rng.uniform(0, 255, (120, 160)).astype(np.float32), (0, 0), 3)
    big = cv2.resize(small, (640, 480), interpolation=cv2.INTER_CUBIC)  # (480, 640), 4 px per small px
    centre, side = np.array([[80.3, 60.7]]), 64.0
    small_crop = crop_image(small, crop_affines(centre, side, 96)[0], 96)  # upscaling 1.5x
    # The same box in big-frame pixels (pixel centres: big = 4 * small + 1.5).
    big_affine = crop_affines(4 * centre + 1.5, 4 * side, 96)[0]  # shrinking 2.67x
    big_crop = crop_image(big, big_affine, 96)
    assert np.abs(big_crop - small_crop)[8:-8, 8:-8].mean() < 1.0  # grey levels out of 255


def test_points_round_trip_and_inverse_affine():
    rng = np.random.default_rng(0)
    box = CropBox(centres=rng.uniform(50, 300, (5, 2)).astype(np.float32), side=180.0, crop_size=256)
    points = rng.uniform(0, 360, (5, 20, 3)).astype(np.float32)
    np.testing.assert_allclose(uncrop_points(crop_points(points, box), box), points, atol=2e-3)
    affines = box.affines()  # (5, 2, 3)
    bottom_row = np.tile([[[0.0, 0.0, 1.0]]], (5, 1, 1))
    forward = np.concatenate([affines, bottom_row], axis=1)  # (5, 3, 3)
    backward = np.concatenate([invert_affines(affines), bottom_row], axis=1)
    np.testing.assert_allclose(backward @ forward, np.tile(np.eye(3), (5, 1, 1)), atol=1e-4)
    # The box centre lands on the crop centre and the box edge on the crop edge.
    centre_in_crop = crop_points(box.centres[:, None, :], box)[:, 0]
    np.testing.assert_allclose(centre_in_crop, (256 - 1) / 2, atol=1e-4)


def test_box_leaving_the_frame_replicates_the_border():
    frame = np.tile(np.arange(100, dtype=np.uint8)[None, :, None], (80, 1, 3))  # x gradient, (80, 100, 3)
    # Scale 1, centred half a pixel right of the first column: crop column i samples frame x = i - 19.
    affine = crop_affines(np.array([[0.5, 40.0]]), 40.0, 40)[0]
    crop = crop_image(frame, affine, 40)
    assert (crop[:, :20] == 0).all()  # x <= 0: the first column (value 0) repeated
    np.testing.assert_array_equal(crop[:, 19:, 0], np.tile(np.arange(21), (40, 1)))  # inside: the gradient


def test_paste_crop_restores_the_frame(tracked):
    frames, track = tracked[2]
    box = stable_crop_box(track.mesh, track.present, CONFIG)
    frame, affine = frames[10], box.affines()[10]
    crop = crop_image(frame, affine, box.crop_size)
    weight = feathered_mask(box.crop_size, feather_px=8)
    pasted = paste_crop(frame, crop, affine, weight)
    assert pasted.dtype == np.uint8 and pasted.shape == frame.shape
    error = np.abs(pasted.astype(int) - frame.astype(int))
    # Upsampling then resampling back loses only a little detail (mean under 2 grey levels).
    assert error.mean() < 2.0
    # A replaced crop shows inside the box and not outside it.
    grey = np.full_like(crop, 128)
    replaced = paste_crop(frame, grey, affine, weight)
    corners = np.round(box.centres[10] + np.array([[-1, -1], [1, 1]]) * box.side / 2).astype(int)
    inner = replaced[corners[0, 1] + 10 : corners[1, 1] - 10, corners[0, 0] + 10 : corners[1, 0] - 10]
    assert np.abs(inner.astype(int) - 128).max() <= 1
    outside = np.ones(frame.shape[:2], bool)
    outside[max(corners[0, 1] - 1, 0) : corners[1, 1] + 2, max(corners[0, 0] - 1, 0) : corners[1, 0] + 2] = (
        False
    )
    assert (replaced[outside] == frame[outside]).all()


def test_missing_faces_are_bridged_or_rejected(tracked):
    _frames, track = tracked[0]
    present = track.present.copy()
    present[20:30] = False
    box = stable_crop_box(track.mesh, present, CONFIG)
    assert np.isfinite(box.centres).all()
    with pytest.raises(NoFaceFound, match=r"clip\.mp4: no frame has a detectable face"):
        stable_crop_box(track.mesh, np.zeros(75, bool), CONFIG, source="clip.mp4")
    few = np.zeros(75, bool)
    few[:30] = True
    with pytest.raises(NoFaceFound, match=r"clip\.mp4: a face was found in 30 of 75 frames \(40% < 50%\)"):
        require_faces(few, CONFIG, source="clip.mp4")
    require_faces(present, CONFIG)  # 65 of 75: accepted
