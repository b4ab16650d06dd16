"""The neural stages on arrays: adaptive smoothing of face shapes, and the renderer over windows.

Smoothing of a chunk is computed with :func:`stableface.models.smoothing.receptive_radius` frames
of real context on each side (the caller slices them from the whole sequence), so the chunked
result equals smoothing the whole sequence at once; replicate padding happens only at the true
sequence ends, where the network's own padding puts it.
"""

from __future__ import annotations

import numpy as np
import torch

from stableface.data.sequences import PIXEL_SCALE
from stableface.models.renderer import Renderer
from stableface.models.smoothing import TemporalSmoothing


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; anything else as torch spells it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def smooth_shapes(
    smoothing: TemporalSmoothing, shapes: np.ndarray, expression: np.ndarray, device: torch.device
) -> np.ndarray:
    """Face-shape images (L, S, S) and expression (L, E) of consecutive frames -> smoothed images (L, S, S)."""
    with torch.inference_mode():
        shape_tensor = torch.from_numpy(np.ascontiguousarray(shapes, np.float32)).to(device)[None, :, None]
        expression_tensor = torch.from_numpy(np.ascontiguousarray(expression, np.float32)).to(device)[None]
        smoothed, _ = smoothing(shape_tensor, expression_tensor)  # (1, L, 1, S, S)
        return smoothed[0, :, 0].float().cpu().numpy()


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
) -> np.ndarray:
    """B windows of L frames: background (B, L, 3, S, S) in [-1, 1], smoothed shape (B, L, S, S) in [0, 1],
    audio windows (B, L, W, M) or None -> generated frames (B, L, 3, S, S) float32 in [-1, 1]."""
    with torch.inference_mode():
        background_tensor = torch.from_numpy(background).to(device)
        shape_tensor = torch.from_numpy(np.ascontiguousarray(shape, np.float32)).to(device)[:, :, None]
        audio_tensor = None
        if audio is not None and renderer.fusion is not None:
            audio_tensor = torch.from_numpy(np.ascontiguousarray(audio, np.float32)).to(device)
        frames = renderer(background_tensor, shape_tensor, audio_tensor)  # (B, L, 3, S, S)
        return frames.float().cpu().numpy()
