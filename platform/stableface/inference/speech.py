"""The new speech -> per-output-frame audio windows -> the predicted mouth expression.

Log-mel features and frame alignment are the training ones (:mod:`stableface.audio.features`);
windows are gathered per range of output frames, so a chunk never builds the whole
(N, W, M) window array. audio2expression runs on pieces of ``expression_chunk_frames`` frames with
``expression_context_frames`` of audio on each side (dropped afterwards), keeping memory flat and
every piece as long as the sequences the network trained on, or longer.
"""

from __future__ import annotations

import numpy as np
import torch

from stableface.audio.features import AudioFeatureConfig, normalise_utterance, utterance_statistics
from stableface.inference.config import InferenceConfig
from stableface.inference.timeline import run_in_pieces
from stableface.models.audio2expression import Audio2Expression
from stableface.utils.precision import Precision


def audio_windows(mel: np.ndarray, starts: np.ndarray, config: AudioFeatureConfig) -> np.ndarray:
    """Windows (n, W, M) float32 of a log-mel (M_frames, M) for frames whose first mel index is ``starts``.

    ``starts`` is a slice of :func:`stableface.audio.features.window_starts`; windows reaching past
    either end of the audio hold the silence value, as in :func:`~stableface.audio.features.frame_windows`.
    """
    silence = np.full((1, mel.shape[1]), config.silence_value, np.float32)
    padded = np.concatenate([silence, mel, silence])  # (M_frames + 2, M): rows 0 and M_frames + 1 are silence
    indices = np.asarray(starts)[:, None] + np.arange(config.frames_per_window)  # (n, W)
    return padded[np.clip(indices + 1, 0, mel.shape[0] + 1)]  # (n, W, M)


def predict_mouth(
    network: Audio2Expression,
    mel: np.ndarray,
    starts: np.ndarray,
    audio_config: AudioFeatureConfig,
    config: InferenceConfig,
    device: torch.device,
    precision: Precision | None = None,
) -> np.ndarray:
    """Mouth expression (N, n_mouth) float32 for the N output frames whose windows start at ``starts`` (N,).

    ``precision``: the autocast to run the network in (None = fp32)."""

    statistics = utterance_statistics(mel, starts, audio_config) if network.config.utterance_norm else None

    def mouth(lo: int, hi: int) -> np.ndarray:
        windows = audio_windows(mel, starts[lo:hi], audio_config)  # (L, W, M)
        if statistics is not None:  # the whole utterance's statistics, whichever piece this is
            windows = normalise_utterance(windows, statistics)
        windows = torch.from_numpy(windows).to(device)  # (L, W, M)
        return network(windows[None])[0].float().cpu().numpy()  # (L, n_mouth)

    with torch.inference_mode(), (precision or Precision(device, False)).autocast():
        return run_in_pieces(
            len(starts), config.expression_chunk_frames, config.expression_context_frames, mouth,
            empty=np.zeros((0, network.config.mouth_dim), np.float32),
        )  # fmt: skip
