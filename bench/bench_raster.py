"""Face-shape raster speed (target: about 2 ms or less per 256x256 frame on one core), and a picture.

Real geometry: a face model fitted on four GRID clips reconstructs a held-out clip's posed mesh
in its 256-px crop; the figures time :func:`render_shape` and :func:`mouth_mask` on those frames,
single-threaded. Also writes ``outputs/face_overlay.png``: for a closed- and an open-mouth frame,
the crop, the raster, the raster blended over the crop with the mouth-mask outline (red) and the
augmented-eroded background.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import cv2
import numpy as np

from stableface.face.config import FaceConfig
from stableface.face.erosion import ErosionConfig, augmented_erosion
from stableface.face.face_model import FaceModel, apply_pose
from stableface.face.landmarks import MediaPipeBackend, track_landmarks
from stableface.face.raster import mouth_mask, render_shape
from stableface.face.tracking import crop_video
from stableface.io.video import read_frames

logger = logging.getLogger("bench.raster")
SHARED_DATA = Path(
    os.environ.get("STABLEFACE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)
OVERLAY_PATH = Path("outputs") / "face_overlay.png"
MASK_OUTLINE_RGB = (255, 0, 0)


def _posed_meshes(config: FaceConfig) -> tuple[FaceModel, dict]:
    """Fit on GRID s1 clips 0-1 (one speaker) and two other speakers; reconstruct s1 clip 50."""
    s1 = sorted((SHARED_DATA / "grid" / "s1").glob("*.mpg"))
    others = sorted((SHARED_DATA / "grid" / "speakers").glob("*.mpg"))
    if not s1 or not others:
        raise FileNotFoundError(f"{SHARED_DATA / 'grid'}: GRID clips not found; set STABLEFACE_SHARED_DATA")
    backend = MediaPipeBackend()
    base = FaceModel.from_assets(config)

    def cropped(path):
        frames = read_frames(path)
        return crop_video(frames, track_landmarks(frames, backend), config, source=str(path))

    s1_train = np.concatenate([base.normalise(cropped(s1[i]).mesh)[0] for i in (0, 1)])
    model = base.fit([s1_train] + [base.normalise(cropped(path).mesh)[0] for path in others[:2]])
    held_out = cropped(s1[50])
    backend.close()
    identity = model.identity_of(s1_train)
    normalised, pose = model.normalise(held_out.mesh)
    expression = model.encode(normalised, identity)
    posed = apply_pose(model.decode(identity, expression), pose)  # (T, 478, 3) crop pixels
    return model, {
        "video": held_out,
        "identity": identity,
        "expression": expression,
        "pose": pose,
        "posed": posed,
    }


def _time_per_frame_ms(function, frames: np.ndarray, repeats: int) -> tuple[float, float]:
    """Median and 95th-percentile wall time per call over ``repeats`` passes of ``frames``."""
    timings = []
    for _ in range(repeats):
        for frame in frames:
            started = time.perf_counter()
            function(frame)
            timings.append(time.perf_counter() - started)
    return 1e3 * float(np.median(timings)), 1e3 * float(np.percentile(timings, 95))


def _overlay(model: FaceModel, data: dict, config: FaceConfig) -> np.ndarray:
    video, posed = data["video"], data["posed"]
    gap = np.linalg.norm(video.mesh[:, 13, :2] - video.mesh[:, 14, :2], axis=-1)
    eroded, masks = augmented_erosion(
        video.crops,
        model,
        data["identity"],
        data["expression"],
        data["pose"],
        ErosionConfig(),
        np.random.default_rng(0),
    )
    rows = []
    for index in (int(gap.argmin()), int(gap.argmax())):
        crop = video.crops[index]
        shape = render_shape(posed[index], model.triangles, config.crop_size)  # (S, S) [0, 1]
        shape_rgb = np.repeat((255 * shape).astype(np.uint8)[..., None], 3, axis=2)
        blend = np.where(shape[..., None] > 0, (0.5 * crop + 0.5 * shape_rgb).astype(np.uint8), crop)
        mask = mouth_mask(posed[index], model.mouth_vertices, config.crop_size).astype(np.uint8)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(blend, contours, -1, MASK_OUTLINE_RGB, 1)
        rows.append(np.concatenate([crop, shape_rgb, blend, eroded[index]], axis=1))
    del masks
    return np.concatenate(rows, axis=0)


def run(quick: bool) -> dict:
    cv2.setNumThreads(1)  # one core, as the target states
    config = FaceConfig()
    model, data = _posed_meshes(config)
    posed = data["posed"]
    repeats = 2 if quick else 10
    raster_median, raster_p95 = _time_per_frame_ms(
        lambda mesh: render_shape(mesh, model.triangles, config.crop_size), posed, repeats
    )
    mask_median, mask_p95 = _time_per_frame_ms(
        lambda mesh: mouth_mask(mesh, model.mouth_vertices, config.crop_size), posed, repeats
    )
    OVERLAY_PATH.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(OVERLAY_PATH), cv2.cvtColor(_overlay(model, data, config), cv2.COLOR_RGB2BGR))
    logger.info("wrote %s", OVERLAY_PATH)
    return {
        "frames": int(len(posed) * repeats),
        "triangles": len(model.triangles),
        "render_shape_ms_per_frame_median": round(raster_median, 3),
        "render_shape_ms_per_frame_p95": round(raster_p95, 3),
        "mouth_mask_ms_per_frame_median": round(mask_median, 3),
        "mouth_mask_ms_per_frame_p95": round(mask_p95, 3),
        "overlay_png": str(OVERLAY_PATH),
    }
