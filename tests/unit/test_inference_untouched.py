"""A dubbed frame changes only inside its paste region: every other pixel is the source's, bit for bit."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from stableface.face.tracking import transform_points
from stableface.inference import DubConfig, load_speaker_model, mark_box, prepare_source
from stableface.inference.faces import crop_pixels, mouth_region_masks, posed_meshes
from stableface.inference.pipeline import plan_dub
from stableface.io.audio import read_audio, write_audio
from stableface.io.video import read_frames

SOURCE_CLIP = 5  # a grid/s1 clip (75 frames, 360x288) the untrained model's identity did not see
# A frame pixel rounded to its nearest crop pixel (up to 0.7 px off) and the bilinear warp back (1 px).
ROUNDING_PX = 2.0


@pytest.fixture(scope="module", params=["untrained_speaker_model", "textured_speaker_model"])
def model(request):
    """The plain renderer and one with the warped-texture input."""
    return load_speaker_model(request.getfixturevalue(request.param))


@pytest.fixture(scope="module")
def speech(shared_data, tmp_path_factory) -> str:
    samples = read_audio(shared_data / "speech" / "macron_12s.wav", 16_000)[: 3 * 16_000]
    path = tmp_path_factory.mktemp("speech") / "fr_3s.wav"
    write_audio(path, samples, 16_000)
    return str(path)


def test_pixels_outside_the_paste_region_are_the_source_frames_bit_for_bit(model, grid_clips, speech):
    clip = grid_clips[SOURCE_CLIP]
    config = DubConfig()
    source = prepare_source(clip, model)
    plan = plan_dub(model, clip, speech, config, source)
    dubbed = np.stack(list(plan.frames()))  # (N, H, W, 3) composited, before encoding
    reference = read_frames(clip)
    height, width = reference.shape[1:3]
    outside_mark = np.ones((height, width), bool)
    x0, y0, x1, y1 = mark_box(height, width, config.provenance)
    outside_mark[max(y0, 0) : y1, max(x0, 0) : x1] = False

    # Independently of the compositing code: where each frame pixel lands in the renderer's crop, and
    # how far that is from the frame's mouth region (the union of the new and the source mouth).
    # The paste region: the mouth region grown by the feather, rounded up to whole crop pixels.
    size = model.image_size
    reach = np.ceil(max(crop_pixels(config.composite.feather_px, size), 1.0)) + ROUNDING_PX
    ys, xs = np.mgrid[0:height, 0:width]
    points = np.stack([xs.ravel(), ys.ravel()], axis=1)[None].astype(np.float32)  # (1, H*W, 2)
    index = plan.renderer.source_index  # (N,) source frame of each output frame
    changed_far, changed_near, far_share = 0, 0, []
    for frame in range(len(dubbed)):
        source_frame = np.array([index[frame]])
        pose = source.crop_pose(source_frame, size)
        mask = mouth_region_masks(
            model,
            posed_meshes(model, plan.renderer.expression[frame : frame + 1], pose),
            posed_meshes(model, source.expression[source_frame], pose),
            size,
            config.inference.mask_dilation_px,
        )[0]  # (S, S)
        distance = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, 5)  # crop px to the region
        affine = source.crop_affines(source_frame, size)[0]
        crop_xy = transform_points(points, affine[None])[0].reshape(height, width, 2)
        inside_crop = (crop_xy >= 0).all(axis=-1) & (crop_xy <= size - 1).all(axis=-1)
        cx = np.clip(np.round(crop_xy[..., 0]).astype(int), 0, size - 1)
        cy = np.clip(np.round(crop_xy[..., 1]).astype(int), 0, size - 1)
        far = (~inside_crop | (distance[cy, cx] > reach)) & outside_mark  # (H, W)
        differs = np.any(dubbed[frame] != reference[index[frame]], axis=-1)  # (H, W)
        changed_far += int(differs[far].sum())
        changed_near += int(differs[~far & outside_mark].sum())
        far_share.append(far.mean())
    assert changed_far == 0  # outside the paste region: the source's own pixels, bit for bit
    assert changed_near > 50 * len(dubbed)  # inside it the (untrained) renderer painted the mouth
    assert np.mean(far_share) > 0.75  # the paste region is a small part of the frame (coarse at 32 px)
