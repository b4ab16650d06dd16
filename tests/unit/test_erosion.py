"""Augmented erosion on a real GRID clip: determinism, coverage of the mouth, and the disabled ablation."""

from __future__ import annotations

import numpy as np
import pytest

from stableface.face.config import FaceConfig
from stableface.face.erosion import ErosionConfig, augmented_erosion, blank_masked, erosion_masks
from stableface.face.face_model import FaceModel, Pose, apply_pose
from stableface.face.ibug import LIPS
from stableface.face.landmarks import MediaPipeBackend, track_landmarks
from stableface.face.raster import mouth_masks
from stableface.face.tracking import crop_points, crop_video, stable_crop_box
from stableface.io.video import iter_frames, read_frames

CONFIG = FaceConfig()
SIZE = CONFIG.crop_size
N_FRAMES = 24  # a couple of training sequences' worth of frames keeps the test fast


@pytest.fixture(scope="module")
def clip(grid_clips, shared_data):
    """A model fitted on 4 clips, and a held-out clip's crops, landmarks, identity, expression, pose."""
    backend = MediaPipeBackend()

    def normalised_mesh(path, model):
        track = track_landmarks(iter_frames(path), backend)
        box = stable_crop_box(track.mesh, track.present, CONFIG)
        return model.normalise(crop_points(track.mesh, box))[0]

    base = FaceModel.from_assets(CONFIG)
    others = sorted((shared_data / "grid" / "speakers").glob("*.mpg"))
    s1 = np.concatenate([normalised_mesh(grid_clips[i], base) for i in (0, 1)])
    model = base.fit([s1, normalised_mesh(others[2], base), normalised_mesh(others[3], base)])
    frames = read_frames(grid_clips[70], max_frames=N_FRAMES)
    cropped = crop_video(frames, track_landmarks(frames, backend), CONFIG)
    backend.close()
    identity = model.identity_of(s1)
    normalised, pose = model.normalise(cropped.mesh)
    return {
        "model": model,
        "crops": cropped.crops,
        "lips": cropped.ibug68[:, LIPS],  # (T, 20, 2) detected lip landmarks, crop pixels
        "identity": identity,
        "expression": model.encode(normalised, identity),
        "pose": pose,
    }


def _erode(clip, config, seed):
    rng = None if seed is None else np.random.default_rng(seed)
    return augmented_erosion(
        clip["crops"], clip["model"], clip["identity"], clip["expression"], clip["pose"], config, rng
    )


def test_same_seed_same_output_different_seeds_differ(clip):
    config = ErosionConfig()
    eroded_a, masks_a = _erode(clip, config, seed=7)
    eroded_b, masks_b = _erode(clip, config, seed=7)
    np.testing.assert_array_equal(masks_a, masks_b)
    np.testing.assert_array_equal(eroded_a, eroded_b)
    _, masks_c = _erode(clip, config, seed=8)
    differing_frames = (masks_a != masks_c).any(axis=(1, 2))
    assert differing_frames.mean() > 0.9


def test_blanked_region_contains_the_mouth(clip):
    """Over 10 seeds and every frame, each detected lip landmark lies in the mask and is blanked."""
    config = ErosionConfig()
    lips = np.round(clip["lips"]).astype(int)  # (T, 20, 2)
    frames = np.arange(N_FRAMES)[:, None]
    for seed in range(10):
        eroded, masks = _erode(clip, config, seed)
        assert masks.shape == (N_FRAMES, SIZE, SIZE) and masks.dtype == bool
        assert masks[frames, lips[..., 1], lips[..., 0]].all()
        assert (eroded[frames, lips[..., 1], lips[..., 0]] == 0).all()
        # Outside the mask the background is untouched.
        np.testing.assert_array_equal(eroded[~masks], clip["crops"][~masks])


def test_augmentation_changes_the_mask_but_keeps_it_mouth_sized(clip):
    """Bounds: IoU with the plain mouth mask between 0.6 and 0.98 on average."""
    plain = mouth_masks(
        apply_pose(clip["model"].decode(clip["identity"], clip["expression"]), clip["pose"]),
        clip["model"].mouth_vertices,
        SIZE,
    )
    _, augmented = _erode(clip, ErosionConfig(), seed=0)
    iou = (plain & augmented).sum(axis=(1, 2)) / (plain | augmented).sum(axis=(1, 2))
    assert 0.6 < iou.mean() < 0.98
    # Expression noise alone (no morphology or motion) already changes the outline.
    noise_only = ErosionConfig(max_erode_px=0, max_dilate_px=0, max_shift_px=0.0, max_rotation_deg=0.0)
    _, noisy = _erode(clip, noise_only, seed=0)
    assert (noisy != plain).any(axis=(1, 2)).mean() > 0.9


def test_disabled_gives_the_plain_mouth_mask_still_blanked(clip):
    disabled = ErosionConfig(enabled=False)
    eroded, masks = _erode(clip, disabled, seed=None)  # no generator needed
    expected = mouth_masks(
        apply_pose(clip["model"].decode(clip["identity"], clip["expression"]), clip["pose"]),
        clip["model"].mouth_vertices,
        SIZE,
    )
    np.testing.assert_array_equal(masks, expected)
    assert (eroded[masks] == 0).all() and masks.any()
    np.testing.assert_array_equal(eroded[~masks], clip["crops"][~masks])
    # The generator, if given, is ignored: same output for any seed.
    np.testing.assert_array_equal(_erode(clip, disabled, seed=1)[1], masks)


def test_pixel_figures_scale_with_the_crop_size(clip):
    """At 128 px the masks are the 256-px masks at half resolution (within outline pixels)."""
    model, identity, expression = clip["model"], clip["identity"], clip["expression"]
    first = clip["pose"][:4]
    # The same faces in a 128-px crop.
    half_pose = Pose(first.scale / 2, first.rotation, first.translation / 2)
    config = ErosionConfig(expression_noise=0.0)
    full = erosion_masks(
        model, identity, expression[:4], clip["pose"][:4], SIZE, config, np.random.default_rng(3)
    )
    half = erosion_masks(
        model, identity, expression[:4], half_pose, SIZE // 2, config, np.random.default_rng(3)
    )
    downsampled = full.reshape(4, SIZE // 2, 2, SIZE // 2, 2).mean(axis=(2, 4)) > 0.5
    assert (downsampled != half).mean() < 0.01


def test_enabled_erosion_needs_a_generator_and_blank_masked_copies(clip):
    with pytest.raises(ValueError, match=r"needs a numpy\.random\.Generator"):
        _erode(clip, ErosionConfig(), seed=None)
    crops = clip["crops"][:2]
    masks = np.zeros(crops.shape[:3], bool)
    masks[:, 10:20, 30:40] = True
    blanked = blank_masked(crops, masks)
    assert (blanked[:, 10:20, 30:40] == 0).all() and crops[:, 10:20, 30:40].any()  # input untouched
