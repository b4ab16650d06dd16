"""The three network calls of a dub as plain array functions, so a server can swap in remote ones.

:func:`stableface.inference.dub_files` calls only these for the networks; everything else (source
frames, face shapes, masks, backgrounds, cross-fading, compositing, encoding) is local. The bulk job
uses :meth:`NeuralStages.local`; the Serve application passes calls to its deployments instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from stableface.face.warp import WarpTexture
from stableface.inference.config import InferenceConfig
from stableface.inference.render import render_windows, smoothing_weights
from stableface.inference.speech import predict_mouth
from stableface.speaker_model import SpeakerModel
from stableface.utils.precision import Precision


@dataclass
class NeuralStages:
    """audio2expression, smoothing and renderer as functions on numpy arrays."""

    # log-mel (M_frames, n_mels), window starts (N,) -> mouth expression (N, n_mouth)
    predict_mouth: Callable[[np.ndarray, np.ndarray], np.ndarray]
    # expression (N, E) of the whole output -> per-frame smoothing weights (N, K) for the face shapes
    smoothing_weights: Callable[[np.ndarray], np.ndarray]
    # background (B, L, 3, S, S), smoothed shape (B, L, S, S), audio (B, L, W, M) or None, warped
    # texture (B, L, 3, S, S) or None -> (B, L, 3, S, S)
    render: Callable[[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None], np.ndarray]
    # the renderer's texture frame, warped to each frame's shape for its input (None without
    # ``warped_texture``); it comes with the renderer, so a server fetches it from that deployment
    texture: WarpTexture | None = None

    @classmethod
    def local(cls, model: SpeakerModel, config: InferenceConfig, device: torch.device) -> NeuralStages:
        """The speaker model's own networks on ``device`` (moved there, in eval mode).

        On CPU, ``config.cpu_threads`` (when set) becomes torch's intra-op thread count;
        ``config.amp`` runs audio2expression and the renderer in bf16 where the hardware has it.
        """
        if (
            device.type == "cpu"
            and config.cpu_threads is not None
            and torch.get_num_threads() != config.cpu_threads
        ):
            torch.set_num_threads(config.cpu_threads)
        networks = model.networks.to(device).eval()
        precision = Precision(device, config.amp).announce("dub networks")
        return cls(
            predict_mouth=lambda mel, starts: predict_mouth(
                networks.audio2expression, mel, starts, model.audio, config, device, precision
            ),
            smoothing_weights=lambda expression: smoothing_weights(
                networks.smoothing, expression, config.expression_chunk_frames, device
            ),
            render=lambda background, shape, audio, warped: render_windows(
                networks.renderer, background, shape, audio, device, precision, warped
            ),
            texture=networks.renderer.warp_source(),
        )
