"""Compositing: the generated face replaces only the mouth region; the provenance mark and tags."""

from __future__ import annotations

import av
import cv2
import numpy as np
import pytest

from stableface import __version__
from stableface.errors import InputError
from stableface.face.tracking import crop_affines, invert_affines, paste_crop, transform_points
from stableface.inference.composite import (
    composite_face,
    draw_mark,
    mark_box,
    provenance_tags,
    read_provenance,
)
from stableface.inference.config import CORNERS, ProvenanceConfig
from stableface.inference.faces import crop_pixels, paste_weights
from stableface.io.video import VideoWriter
from stableface.speaker_model import SpeakerModel

SIZE = 64  # crop pixels
FEATHER = 12.0  # at 256 px: 3 px at 64


def _disk(size: int, radius: float) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    return (xx - size / 2) ** 2 + (yy - size * 0.6) ** 2 <= radius**2  # (S, S) bool, a lower-face blob


def test_paste_weights_are_one_over_the_region_and_ramp_to_zero_just_outside():
    mask = _disk(SIZE, 12)
    weight = paste_weights(mask[None], FEATHER)[0]
    feather = crop_pixels(FEATHER, SIZE)
    distance_outside = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, 5)  # px to the region
    assert weight[mask].min() == pytest.approx(1.0)
    assert weight[distance_outside > feather + 1.5].max() == 0.0
    ramp = (distance_outside > 0) & (distance_outside <= feather)
    assert 0 < weight[ramp].mean() < 1


def test_only_pixels_near_the_mouth_region_change_when_pasting():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    centre, side = np.array([[90.0, 55.0]]), 80.0  # a face box partly off nothing: well inside the frame
    affine = crop_affines(centre, side, SIZE)[0]  # frame -> crop
    mask = _disk(SIZE, 12)
    generated = np.full((SIZE, SIZE, 3), 200, np.uint8)
    out = composite_face(frame, generated, affine, paste_weights(mask[None], FEATHER)[0])

    # Independently: where does each frame pixel land in the crop, and how far is it from the region?
    ys, xs = np.mgrid[0:120, 0:160]
    points = np.stack([xs.ravel(), ys.ravel()], axis=1)[None].astype(np.float32)  # (1, H*W, 2)
    crop_xy = transform_points(points, affine[None])[0].reshape(120, 160, 2)
    distance_outside = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, 5)
    cx = np.clip(np.round(crop_xy[..., 0]).astype(int), 0, SIZE - 1)
    cy = np.clip(np.round(crop_xy[..., 1]).astype(int), 0, SIZE - 1)
    inside_crop = (crop_xy >= 0).all(axis=-1) & (crop_xy <= SIZE - 1).all(axis=-1)
    far = ~inside_crop | (distance_outside[cy, cx] > crop_pixels(FEATHER, SIZE) + 2)
    deep = inside_crop & (cv2.erode(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)[cy, cx])
    # Blending only the face's rectangle gives the whole-frame blend (up to 1 level of warp rounding).
    whole_frame = paste_crop(frame, generated, affine, paste_weights(mask[None], FEATHER)[0])
    assert np.abs(out.astype(int) - whole_frame).max() <= 1
    np.testing.assert_array_equal(out[far], frame[far])  # bit-exact away from the face
    assert far.mean() > 0.9
    assert np.abs(out[deep].astype(int) - 200).max() <= 1  # fully replaced inside the region
    assert deep.sum() > 100
    # The crop box maps back where it came from: the inverse affine takes the crop centre to the box centre.
    np.testing.assert_allclose(
        transform_points(np.array([[[31.5, 31.5]]], np.float32), invert_affines(affine[None]))[0, 0],
        centre[0],
        atol=1e-3,
    )


@pytest.mark.parametrize("corner", CORNERS)
def test_the_mark_sits_in_its_corner_and_changes_nothing_else(corner):
    frame = np.full((288, 360, 3), 180, np.uint8)
    config = ProvenanceConfig(mark_corner=corner)
    marked = draw_mark(frame, config)
    x0, y0, x1, y1 = mark_box(288, 360, config)
    changed = np.any(marked != frame, axis=-1)
    ys, xs = np.nonzero(changed)
    assert xs.min() >= x0 and xs.max() < x1 and ys.min() >= y0 and ys.max() < y1
    assert (x0 < 180) == corner.endswith("left") and (y0 < 144) == corner.startswith("top")
    plate = marked[y0:y1, x0:x1]
    assert (plate.max(axis=-1) > 220).sum() > 50  # bright text strokes ...
    assert np.median(plate) < 120  # ... on a dark plate, readable on any background
    assert y1 - y0 >= config.mark_min_height_px


def test_the_mark_is_off_only_when_disabled_and_long_text_still_fits():
    frame = np.full((64, 96, 3), 90, np.uint8)
    np.testing.assert_array_equal(draw_mark(frame, ProvenanceConfig(visible_mark=False)), frame)
    assert mark_box(64, 96, ProvenanceConfig(visible_mark=False)) is None
    long_text = ProvenanceConfig(mark_text="SYNTHETIC - generated with StableFace")
    x0, y0, x1, y1 = mark_box(64, 96, long_text)
    assert 0 <= x0 < x1 <= 96 and 0 <= y0 < y1 <= 64
    assert np.any(draw_mark(frame, long_text) != frame)
    with pytest.raises(InputError, match=r"provenance\.mark_corner"):
        ProvenanceConfig(mark_corner="middle")
    with pytest.raises(InputError, match=r"provenance\.mark_text"):
        ProvenanceConfig(mark_text="  ")


def test_provenance_tags_survive_the_mp4_container(untrained_speaker_model, tmp_path):
    model = SpeakerModel.load(untrained_speaker_model)
    tags = provenance_tags(model, ProvenanceConfig())
    path = tmp_path / "tagged.mp4"
    with VideoWriter(path, fps=25, width=32, height=32, metadata=tags) as writer:
        for _ in range(3):
            writer.write(np.zeros((32, 32, 3), np.uint8))
    with av.open(str(path)) as container:
        stored = dict(container.metadata)
    facts = read_provenance(stored)
    assert facts == {
        "synthetic": True,
        "tool": "stableface",
        "stableface_version": __version__,
        "model_version": "s1-untrained-test",
        "speaker": "s1",
        "visible_mark": True,
    }
    assert "Synthetic video" in stored["comment"] and "'s1'" in stored["comment"]
    assert read_provenance({"description": "a holiday video"}) is None
