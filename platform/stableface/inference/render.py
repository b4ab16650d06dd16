"""The neural stages on arrays: adaptive smoothing of face shapes, and the renderer over windows.

Smoothing is split in two so that streaming in chunks changes no output pixel: the per-frame weights
come from the whole output's expression sequence once (:func:`smoothing_weights`, in pieces whose
bounds depend only on the sequence length), and each chunk applies them to its face-shape images
with :func:`~stableface.models.smoothing.kernel_radius` frames of real context each side
(:func:`apply_smoothing`, element-wise, so exact whatever the chunk). Replicate padding happens only
at the true sequence ends, where the network's own padding puts it, and at the boundaries of face
segments (a dub's runs), which the kernel never reaches across.
"""

from __future__ import annotations

import numpy as np
import torch

from stableface.data.sequences import PIXEL_SCALE
from stableface.inference.timeline import run_in_pieces
from stableface.models.renderer import Renderer
from stableface.models.smoothing import TemporalSmoothing, weight_radius
from stableface.utils.precision import Precision


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; anything else as torch spells it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def smoothing_weights(
    smoothing: TemporalSmoothing, expression: np.ndarray, piece_frames: int, device: torch.device
) -> np.ndarray:
    """Expression (N, E) of a whole output -> smoothing weights (N, K) float32, rows summing to 1.

    Runs on pieces of ``piece_frames`` frames with :func:`weight_radius` frames of context each side
    (dropped afterwards), so memory stays flat for any length.
    """

    def weights(lo: int, hi: int) -> np.ndarray:
        piece = torch.from_numpy(np.ascontiguousarray(expression[lo:hi], np.float32)).to(device)
        return smoothing.weights(piece[None])[0].float().cpu().numpy()  # (hi - lo, K)

    with torch.inference_mode():
        return run_in_pieces(
            len(expression), piece_frames, weight_radius(smoothing.config), weights,
            empty=np.zeros((0, smoothing.config.kernel_size), np.float32),
        )  # fmt: skip


def apply_smoothing(shapes: np.ndarray, weights: np.ndarray, runs: np.ndarray | None = None) -> np.ndarray:
    """Face-shape images (L, S, S) of consecutive frames and their weights (L, K) -> smoothed (L, S, S).

    ``runs`` (L,) labels each frame's run (a face segment, or a stretch without a face; default: one
    run); the kernel never reaches across a run boundary: it replicate-pads there, as at either end of
    the frames given (pass K // 2 frames of context, or the true sequence ends).
    """
    frames, kernel_size = weights.shape
    runs = np.zeros(frames, np.int64) if runs is None else np.asarray(runs)
    position = np.arange(frames)
    changes = np.flatnonzero(np.diff(runs)) + 1  # first frame of every run but the first
    first = np.concatenate([[0], changes])[np.searchsorted(changes, position, side="right")]  # (L,)
    last = np.concatenate([changes - 1, [frames - 1]])[np.searchsorted(changes, position, side="right")]
    offsets = np.arange(kernel_size) - kernel_size // 2  # (K,)
    neighbours = np.clip(position[:, None] + offsets[None], first[:, None], last[:, None])  # (L, K)
    with torch.inference_mode():
        flat = torch.from_numpy(np.ascontiguousarray(shapes, np.float32)).reshape(frames, -1)  # (L, D)
        weight_tensor = torch.from_numpy(np.ascontiguousarray(weights, np.float32))  # (L, K)
        smoothed = torch.zeros_like(flat)
        for tap in range(kernel_size):  # the sums of models.smoothing.apply_temporal_kernel, in its order
            smoothed = smoothed + weight_tensor[:, tap, None] * flat[torch.from_numpy(neighbours[:, tap])]
        return smoothed.reshape(shapes.shape).numpy()


def to_model_range(images: np.ndarray) -> np.ndarray:
    """(n, S, S, 3) uint8 -> (n, 3, S, S) float32 in [-1, 1] (training's :func:`~stableface.data.sequences.to_unit_range`)."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2), np.float32) / PIXEL_SCALE - 1.0


def to_pixels(images: np.ndarray) -> np.ndarray:
    """(n, 3, S, S) float in [-1, 1] -> (n, S, S, 3) uint8."""
    return np.clip(np.round((images.transpose(0, 2, 3, 1) + 1.0) * PIXEL_SCALE), 0, 255).astype(np.uint8)


def render_windows(
    renderer: Renderer,
    background: np.ndarray,
    shape: np.ndarray,
    audio: np.ndarray | None,
    device: torch.device,
    precision: Precision | None = None,
    warped: np.ndarray | None = None,
) -> np.ndarray:
    """B windows of L frames: background (B, L, 3, S, S) in [-1, 1], smoothed shape (B, L, S, S) in [0, 1],
    audio windows (B, L, W, M) or None, warped texture (B, L, 3, S, S) in [-1, 1] or None (needed by
    a renderer with ``warped_texture``) -> generated frames (B, L, 3, S, S) float32 in [-1, 1].

    ``precision`` (None = fp32) may run the renderer in bf16; a window's output does not depend on
    the other windows of its batch (per-sample instance norms; checked by the tests).
    """
    with torch.inference_mode(), (precision or Precision(device, False)).autocast():
        background_tensor = torch.from_numpy(background).to(device)
        shape_tensor = torch.from_numpy(np.ascontiguousarray(shape, np.float32)).to(device)[:, :, None]
        audio_tensor = None
        if audio is not None and renderer.fusion is not None:
            audio_tensor = torch.from_numpy(np.ascontiguousarray(audio, np.float32)).to(device)
        warped_tensor = None if warped is None else torch.from_numpy(warped).to(device)  # (B, L, 3, S, S)
        frames = renderer(background_tensor, shape_tensor, audio_tensor, warped_tensor)  # (B, L, 3, S, S)
        return frames.float().cpu().numpy()
