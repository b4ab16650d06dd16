"""Held-out metrics of a trained speaker: self-reenactment of clips neither stage trained on.

Two ways to drive each held-out clip:

- ``audio``: the whole pipeline - audio2expression predicts the mouth from the clip's speech, the
  clip's own upper-face expression and pose are kept (what dubbing does);
- ``reconstruction``: the clip's tracked expression drives the renderer (the renderer's quality
  alone, the upper bound of the audio-driven result).

Metrics against the real crops at the model's image size: L1 (mean absolute error, 0..1 scale),
SSIM (:func:`stableface.metrics.ssim.video_ssim`), NLMD (lip landmark distance /256 in the MSI
crop, :func:`stableface.metrics.nlmd.nlmd`) with MediaPipe run on generated and real frames
alike, and ``open_corr``: the correlation over time of the mouth opening (inner lip gap) with the
real one - whether the mouth opens and closes with the speech. ``open_amp``: how wide it opens,
the std over time of the inner lip gap, generated / real (1 = as much motion as the real mouth, a
blurred near-closed mouth gives far less). ``sharpness``: the variance of the Laplacian inside the
real lip box, generated / real (a blurred mouth scores well below 1). ``mesh_nlmd``,
``mesh_open_corr`` and ``mesh_open_amp`` compare the face-model meshes of the predicted and the
tracked expression: audio2expression's error before any rendering. Together the three modes say
where motion is lost: in audio2expression (mesh), in the renderer (reconstruction), or both (audio).
``lipsync_conf`` / ``lipsync_offset`` (also ``real_*``): the shipped lip-sync expert's confidence and
audio offset (:mod:`stableface.metrics.lipsync`) of the tracked lips of each mode's frames against
the clip's audio, next to the real clip's own.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from stableface.audio.features import AudioFeatureConfig, normalise_utterance
from stableface.audio.silence import SilenceGateConfig, frame_levels_db, gate_mouth, silence_weights
from stableface.data.sequences import PIXEL_SCALE, RenderVideo, to_unit_range
from stableface.errors import InputError
from stableface.face.erosion import blank_masked
from stableface.face.face_model import FaceModel, Pose, apply_pose
from stableface.face.ibug import mediapipe_to_ibug68
from stableface.face.landmarks import LandmarkBackend, track_landmarks
from stableface.face.lips import closed_mouth
from stableface.face.raster import mouth_masks, render_shapes
from stableface.face.warp import warp_texture
from stableface.metrics.lipsync import SyncExpert
from stableface.metrics.nlmd import nlmd
from stableface.metrics.slice import vertical_slice
from stableface.metrics.ssim import video_ssim

logger = logging.getLogger(__name__)

REFERENCE_SIZE = 256  # the pixel figures below are for a 256-px crop and scale with the image size
# Evaluation blanks the union of the clip's and the driving expression's mouth masks, dilated by
# about the mean dilation training's augmented erosion draws ([-3, 10] px, mean 3.5).
MASK_DILATE_PX = 4
STRIP_FRAMES = 12  # frames shown in the evaluation strip image
MODES = ("audio", "reconstruction")
INNER_LIP_MIDDLES = (62, 66)  # iBUG-68: middle of the inner upper lip, middle of the inner lower lip
LIPS = slice(48, 68)  # iBUG-68: outer and inner lip contours
LIP_BOX_MARGIN = 0.25  # the sharpness box extends the lip bounding box by this fraction of its size
MIN_STD = 1e-9  # below this an opening track or a sharpness figure counts as constant
MOUTH_CROP_FRACTION = 0.4  # the mouth strip's crops are this fraction of the face crop, mouth-centred
MOUTH_STRIP_EVERY = 4  # the mouth strip shows every 4th frame
MOUTH_STRIP_ZOOM = 2  # and enlarges the crops this much (nearest neighbour: no smoothing added)


@dataclass
class EvalNetworks:
    """The inference networks, plain (not DDP), on one device."""

    audio2expression: nn.Module
    smoothing: nn.Module
    renderer: nn.Module
    device: torch.device


@torch.no_grad()
def predict_mouth(audio2expression: nn.Module, audio: np.ndarray, device: torch.device) -> np.ndarray:
    """(T, W, M) audio windows (a whole clip, as datasets store them) -> (T, n_mouth) float32 mouth
    coefficients; per-utterance normalised first if the network takes them so."""
    audio2expression.eval()
    audio = np.asarray(audio, dtype=np.float32)
    if audio2expression.config.utterance_norm:
        audio = normalise_utterance(audio)
    windows = torch.from_numpy(audio)[None].to(device)  # (1, T, W, M)
    return audio2expression(windows)[0].float().cpu().numpy()


def gated_mouth(
    audio2expression: nn.Module,
    audio: np.ndarray,
    face_model: FaceModel,
    identity: np.ndarray,
    device: torch.device,
    gate: SilenceGateConfig | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """What dubbing drives the mouth with: the prediction from (T, W, M) stored windows, then the
    silence gate (stableface.audio.silence) -> ((T, n_mouth) coefficients, (T,) gate weights)."""
    mouth = predict_mouth(audio2expression, audio, device)  # (T, n_mouth)
    weights = silence_weights(frame_levels_db(audio, AudioFeatureConfig()), gate or SilenceGateConfig())
    return gate_mouth(mouth, weights, closed_mouth(face_model, identity)), weights


def posed_meshes(
    face_model: FaceModel, identity: np.ndarray, expression: np.ndarray, pose: Pose
) -> np.ndarray:
    """(T, E) expression -> (T, 478, 3) meshes in the pose's pixels."""
    return apply_pose(face_model.decode(identity, expression), pose)


def eval_masks(meshes: list[np.ndarray], face_model: FaceModel, size: int) -> np.ndarray:
    """(T, S, S) bool: the union of the mouth masks of several (T, 478, 3) meshes, dilated."""
    union = np.zeros((len(meshes[0]), size, size), bool)
    for mesh in meshes:
        union |= mouth_masks(mesh, face_model.mouth_vertices, size)
    radius = max(1, round(MASK_DILATE_PX * size / REFERENCE_SIZE))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1,) * 2)
    return np.stack([cv2.dilate(mask.astype(np.uint8), kernel).astype(bool) for mask in union])


def window_starts(n_frames: int, window: int) -> list[int]:
    """Starts of renderer windows covering ``n_frames``; the last one is aligned to the end."""
    if n_frames <= window:
        return [0]
    starts = list(range(0, n_frames - window + 1, window))
    if starts[-1] + window < n_frames:
        starts.append(n_frames - window)
    return starts


@torch.no_grad()
def render_frames(
    networks: EvalNetworks,
    background: np.ndarray,
    shapes: np.ndarray,
    expression: np.ndarray,
    audio: np.ndarray,
    window: int,
    warped: np.ndarray | None = None,
) -> np.ndarray:
    """(T, S, S, 3) uint8 eroded background, (T, S, S) float shapes, (T, E) expression, (T, W, M)
    audio[, (T, S, S, 3) uint8 warped texture] -> (T, S, S, 3) uint8 frames. Smoothing sees the
    whole clip; the renderer windows of T."""
    device = networks.device
    networks.smoothing.eval()
    networks.renderer.eval()
    n_frames = len(background)
    shape_t = torch.from_numpy(shapes.astype(np.float32))[None, :, None].to(device)  # (1, T, 1, S, S)
    expression_t = torch.from_numpy(expression.astype(np.float32))[None].to(device)  # (1, T, E)
    smoothed, _ = networks.smoothing(shape_t, expression_t)  # (1, T, 1, S, S)
    background_t = to_unit_range(background).to(device)  # (T, 3, S, S)
    audio_t = torch.from_numpy(np.asarray(audio, dtype=np.float32)).to(device)  # (T, W, M)
    length = min(window, n_frames)
    starts = window_starts(n_frames, length)
    spans = [slice(start, start + length) for start in starts]
    warped_windows = None
    if warped is not None:
        warped_t = to_unit_range(warped).to(device)  # (T, 3, S, S)
        warped_windows = torch.stack([warped_t[span] for span in spans])  # (N, L, 3, S, S)
    frames = networks.renderer(
        torch.stack([background_t[span] for span in spans]),  # (N, L, 3, S, S)
        torch.stack([smoothed[0, span] for span in spans]),  # (N, L, 1, S, S)
        torch.stack([audio_t[span] for span in spans]),  # (N, L, W, M)
        warped_windows,
    )  # (N, L, 3, S, S)
    out = torch.empty(n_frames, *frames.shape[2:], device=device)  # (T, 3, S, S)
    for span, window_frames in zip(spans, frames, strict=True):
        out[span] = window_frames  # overlapping windows: the later one wins
    pixels = ((out.float().clamp(-1, 1) + 1) * PIXEL_SCALE).round().to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).cpu().numpy()


def lip_landmarks(frames: np.ndarray, backend: LandmarkBackend) -> tuple[np.ndarray, float]:
    """(T, 68, 2) iBUG landmarks of frames (gaps bridged) and the fraction with a detected face."""
    track = track_landmarks(iter(frames), backend)
    return track.ibug68, float(track.present.mean())


def mouth_opening(ibug68: np.ndarray) -> np.ndarray:
    """(T,) distance between the middles of the inner upper and lower lip (iBUG 62 and 66)."""
    upper, lower = INNER_LIP_MIDDLES
    return np.linalg.norm(ibug68[:, upper] - ibug68[:, lower], axis=-1)


def opening_correlation(driven: np.ndarray, real: np.ndarray) -> float:
    """Pearson correlation over time of two (T, 68, 2) tracks' mouth openings: does the mouth open
    and close when the real one does (1), regardless of how wide (NaN if either never moves)."""
    a, b = mouth_opening(driven), mouth_opening(real)
    if a.std() < 1e-9 or b.std() < 1e-9:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def opening_amplitude_ratio(driven: np.ndarray, real: np.ndarray) -> float:
    """Std over time of the mouth opening of a (T, 68, 2) track over the real one's: 1 when the mouth
    opens as widely as the real one, well below 1 when it barely moves (NaN if the real one never moves)."""
    real_std = mouth_opening(real).std()
    if real_std < MIN_STD:
        return float("nan")
    return float(mouth_opening(driven).std() / real_std)


def lip_box(ibug68: np.ndarray, size: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) pixel box around the lips of a (T, 68, 2) track over all frames, with a margin,
    clipped to an S-pixel image."""
    lips = ibug68[:, LIPS].reshape(-1, 2)  # (T*20, 2)
    low, high = lips.min(axis=0), lips.max(axis=0)
    margin = LIP_BOX_MARGIN * (high - low)
    x0, y0 = np.clip(np.floor(low - margin).astype(int), 0, size - 1)
    x1, y1 = np.clip(np.ceil(high + margin).astype(int) + 1, 1, size)
    return int(x0), int(y0), int(x1), int(y1)


def mouth_sharpness(frames: np.ndarray, box: tuple[int, int, int, int]) -> float:
    """Mean over frames (T, S, S, 3) uint8 of the variance of the grey Laplacian inside ``box``."""
    x0, y0, x1, y1 = box
    values = [
        cv2.Laplacian(
            cv2.cvtColor(np.ascontiguousarray(frame[y0:y1, x0:x1]), cv2.COLOR_RGB2GRAY), cv2.CV_64F
        ).var()
        for frame in frames
    ]
    return float(np.mean(values))


def sharpness_ratio(generated: np.ndarray, real: np.ndarray, real_lips: np.ndarray) -> float:
    """Mouth sharpness of generated over real frames (T, S, S, 3), both in the real lips' box."""
    box = lip_box(real_lips, real.shape[1])
    real_sharpness = mouth_sharpness(real, box)
    if real_sharpness < MIN_STD:
        return float("nan")
    return mouth_sharpness(generated, box) / real_sharpness


@functools.cache
def shipped_sync_expert() -> SyncExpert | None:
    """The lip-sync expert shipped in the package, loaded once (None if it cannot be)."""
    try:
        return SyncExpert.load()
    except InputError as error:
        logger.warning("held-out lip-sync scores skipped: %s", error)
        return None


def sync_metrics(lips: np.ndarray, audio: np.ndarray, fps: float, prefix: str) -> dict[str, float]:
    """``<prefix>_lipsync_conf`` and ``<prefix>_lipsync_offset`` of a (T, 68, 2) track with (T, W, M) audio."""
    expert = shipped_sync_expert()
    if expert is None:
        return {}
    try:
        score = expert.score(lips, np.asarray(audio, np.float32), fps)
    except InputError:  # too short a clip for the offset search
        return {f"{prefix}_lipsync_conf": float("nan"), f"{prefix}_lipsync_offset": float("nan")}
    return {
        f"{prefix}_lipsync_conf": score.confidence,
        f"{prefix}_lipsync_offset": float(score.offset_frames),
    }


def frame_metrics(generated: np.ndarray, real: np.ndarray) -> dict[str, float]:
    """L1 (0..1 scale) and SSIM of two (T, S, S, 3) uint8 videos."""
    l1 = float(np.abs(generated.astype(np.float32) - real.astype(np.float32)).mean() / 255.0)
    return {"l1": l1, "ssim": video_ssim(generated, real)}


def evaluate_video(
    networks: EvalNetworks,
    video: RenderVideo,
    face_model: FaceModel,
    identity: np.ndarray,
    window: int,
    backend: LandmarkBackend,
    fps: float = 25.0,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Metrics of one held-out clip in both modes, and its frames per mode (plus ``real``)."""
    size = video.frames.shape[1]
    source = video.expression  # (T, E)
    mouth, _ = gated_mouth(networks.audio2expression, video.audio, face_model, identity, networks.device)
    driven = source.copy()
    driven[:, face_model.mouth_slice] = mouth
    real_mesh = posed_meshes(face_model, identity, source, video.pose)  # (T, 478, 3)
    driven_mesh = posed_meshes(face_model, identity, driven, video.pose)
    real_lips, real_found = lip_landmarks(video.frames, backend)
    row: dict[str, Any] = {
        "video_id": video.video_id,
        "frames": len(video.frames),
        "real_face_fraction": real_found,
        "mesh_nlmd": nlmd(mediapipe_to_ibug68(driven_mesh), mediapipe_to_ibug68(real_mesh)),
        "mesh_open_corr": opening_correlation(
            mediapipe_to_ibug68(driven_mesh), mediapipe_to_ibug68(real_mesh)
        ),
        "mesh_open_amp": opening_amplitude_ratio(
            mediapipe_to_ibug68(driven_mesh), mediapipe_to_ibug68(real_mesh)
        ),
    }
    row.update(sync_metrics(real_lips, video.audio, fps, "real"))
    outputs = {"real": video.frames}
    for mode, expression, mesh in (("audio", driven, driven_mesh), ("reconstruction", source, real_mesh)):
        masks = eval_masks([real_mesh, mesh], face_model, size)
        background = blank_masked(video.frames, masks)
        shapes = render_shapes(mesh, face_model.triangles, size)  # (T, S, S) float32
        texture = networks.renderer.warp_source()
        warped = None if texture is None else warp_texture(texture, mesh)  # (T, S, S, 3)
        generated = render_frames(networks, background, shapes, expression, video.audio, window, warped)
        lips, found = lip_landmarks(generated, backend)
        row.update({f"{mode}_{k}": v for k, v in frame_metrics(generated, video.frames).items()})
        row[f"{mode}_nlmd"] = nlmd(lips, real_lips) if found > 0 else float("nan")
        row[f"{mode}_open_corr"] = opening_correlation(lips, real_lips) if found > 0 else float("nan")
        row[f"{mode}_open_amp"] = opening_amplitude_ratio(lips, real_lips) if found > 0 else float("nan")
        row[f"{mode}_sharpness"] = (
            sharpness_ratio(generated, video.frames, real_lips) if real_found > 0 else float("nan")
        )
        row[f"{mode}_face_fraction"] = found
        if found > 0:
            row.update(sync_metrics(lips, video.audio, fps, mode))
        outputs[mode] = generated
    outputs["mouth_x"] = np.array(real_mesh[:, face_model.mouth_vertices, 0].mean())
    outputs["mouth_y"] = np.array(real_mesh[:, face_model.mouth_vertices, 1].mean())
    return row, outputs


def strip_image(outputs: dict[str, np.ndarray], n_frames: int = STRIP_FRAMES) -> np.ndarray:
    """Rows audio-driven | reconstruction | real, ``n_frames`` evenly spaced frames across."""
    total = len(outputs["real"])
    picks = np.linspace(0, total - 1, min(n_frames, total)).round().astype(int)
    rows = [
        np.concatenate(list(outputs[name][picks]), axis=1) for name in ("audio", "reconstruction", "real")
    ]
    return np.concatenate(rows, axis=0)


def mouth_strip_image(outputs: dict[str, np.ndarray], every: int = MOUTH_STRIP_EVERY) -> np.ndarray:
    """Rows real | reconstruction | audio-driven of mouth-centred crops, every ``every``-th frame left to
    right: where the real mouth opens and shows teeth, does the rendered one?"""
    size = outputs["real"].shape[1]
    side = round(size * MOUTH_CROP_FRACTION)
    x0 = int(np.clip(round(float(outputs["mouth_x"]) - side / 2), 0, size - side))
    y0 = int(np.clip(round(float(outputs["mouth_y"]) - side / 2), 0, size - side))
    picks = np.arange(0, len(outputs["real"]), every)
    rows = [
        np.concatenate(list(outputs[name][picks, y0 : y0 + side, x0 : x0 + side]), axis=1)
        for name in ("real", "reconstruction", "audio")
    ]
    strip = np.concatenate(rows, axis=0)  # (3 * side, n * side, 3)
    return np.repeat(np.repeat(strip, MOUTH_STRIP_ZOOM, axis=0), MOUTH_STRIP_ZOOM, axis=1)


def slice_image(outputs: dict[str, np.ndarray]) -> np.ndarray:
    """The paper's vertical slice through the mouth, time left to right: audio | reconstruction | real
    stacked top to bottom (the mouth opening and closing draws dark gaps along time)."""
    size = outputs["real"].shape[1]
    x, y = float(outputs["mouth_x"]), float(outputs["mouth_y"])
    top, extent = y - size * 0.25, size * 0.5
    slices = [vertical_slice(outputs[name], x, top, extent, height=size) for name in (*MODES, "real")]
    scale = max(2, round(3 * size / len(outputs["real"])))  # widen the columns so time is readable
    return np.concatenate([np.repeat(s, scale, axis=1) for s in slices], axis=0)


def summarise(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Means over held-out videos of every numeric column (NaNs skipped)."""
    keys = [k for k in rows[0] if k not in ("video_id",)] if rows else []
    means = {}
    for key in keys:
        values = [
            float(r[key]) for r in rows if isinstance(r.get(key), (int, float)) and not math.isnan(r[key])
        ]
        if values:
            means[key] = float(np.mean(values))
    return means
