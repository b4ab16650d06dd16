"""Reference frames of a speaker for a renderer built with ``reference_frames`` = R > 0.

The renderer sees R fixed crops of the speaker's own training footage beside every frame, so it can
copy the texture of teeth, lips and skin instead of memorising it. The R frames are the widest-open
mouths (inner-lip gap of the tracked face-model mesh) of R different training videos: open mouths
show the teeth and the mouth interior that a blanked mouth region has to be filled with. They are
chosen once, before training, from the training videos only (never a held-out one), and live in
the renderer's state, so a speaker model carries them to dubbing and serving.

A renderer with ``warped_texture`` gets one texture frame the same way (the widest-open mouth of
the training videos) with its posed mesh, which is warped to every frame's face shape.
"""

from __future__ import annotations

import logging

import numpy as np

from stableface.data.sequences import RenderSequences, RenderVideo, to_unit_range
from stableface.errors import InputError
from stableface.face.face_model import FaceModel, apply_pose
from stableface.face.ibug import mediapipe_to_ibug68
from stableface.face.warp import IMAGE_DIMS, WarpTexture
from stableface.models.renderer import Renderer
from stableface.training.evaluate import mouth_opening

logger = logging.getLogger(__name__)


def widest_opening(video: RenderVideo, face_model: FaceModel, identity: np.ndarray) -> tuple[int, float]:
    """(frame index, inner-lip gap in pixels) of the video's widest-open mouth among its trainable frames."""
    mesh = apply_pose(face_model.decode(identity, video.expression), video.pose)  # (T, 478, 3)
    opening = mouth_opening(mediapipe_to_ibug68(mesh))  # (T,)
    opening = np.where(video.trainable, opening, -np.inf)
    frame = int(np.argmax(opening))
    return frame, float(opening[frame])


def choose_references(
    videos: list[RenderVideo], face_model: FaceModel, identity: np.ndarray, count: int
) -> tuple[np.ndarray, list[str]]:
    """The ``count`` widest-open mouths of distinct videos: (R, S, S, 3) uint8 crops and their
    ``<video_id>@<frame>`` names, widest first."""
    if count > len(videos):
        raise InputError(
            "renderer.reference_frames",
            f"{count} reference frames need as many training videos, got {len(videos)}",
        )
    widest = [(*widest_opening(video, face_model, identity), video) for video in videos]
    widest.sort(key=lambda item: (-item[1], item[2].video_id))
    chosen = widest[:count]
    frames = np.stack([video.frames[frame] for frame, _, video in chosen])  # (R, S, S, 3)
    return frames, [f"{video.video_id}@{frame}" for frame, _, video in chosen]


def set_speaker_references(renderer: Renderer, dataset: RenderSequences) -> list[str]:
    """Give a renderer with reference frames the speaker's own, from its training ``dataset``;
    returns their names."""
    frames, names = choose_references(
        dataset.videos, dataset.model, dataset.identity, renderer.config.reference_frames
    )
    renderer.set_references(to_unit_range(frames))  # (R, 3, S, S)
    logger.info("renderer reference frames: %s", ", ".join(names))
    return names


def choose_texture(
    videos: list[RenderVideo], face_model: FaceModel, identity: np.ndarray
) -> tuple[WarpTexture, str]:
    """The widest-open mouth of the training videos as a texture to warp, and its ``<video_id>@<frame>``."""
    widest = max(
        ((*widest_opening(video, face_model, identity), video) for video in videos),
        key=lambda item: (item[1], item[2].video_id),
    )
    frame, _, video = widest
    mesh = apply_pose(
        face_model.decode(identity, video.expression[frame : frame + 1]), video.pose[frame : frame + 1]
    )
    texture = WarpTexture(image=video.frames[frame], vertices=mesh[0, :, :IMAGE_DIMS].astype(np.float32))
    return texture, f"{video.video_id}@{frame}"


def set_speaker_texture(renderer: Renderer, dataset: RenderSequences) -> str:
    """Give a renderer with ``warped_texture`` the speaker's texture frame from its training
    ``dataset``, and the dataset the same frame to warp for training; returns its name."""
    texture, name = choose_texture(dataset.videos, dataset.model, dataset.identity)
    renderer.set_texture(texture)
    dataset.texture = texture
    logger.info("renderer texture frame: %s", name)
    return name
