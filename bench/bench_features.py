"""Audio feature extraction for audio2expression, on one core (target: >= 20x real time).

What dubbing computes from new speech before the network runs: log-mel, the per-frame window
starts, the per-utterance statistics (:func:`utterance_statistics`), every window normalised
(built here in full, which streaming inference avoids) and the silence gate's levels. Real speech:
the English and French files of ``../shared/data/speech`` (and, with ``--quick``, one of them).
"""

from __future__ import annotations

import logging
import time

import numpy as np

from bench.common import pin_to_one_core, shared_data
from stableface.audio.features import (
    AudioFeatureConfig,
    frame_windows,
    log_mel,
    normalise_utterance,
    utterance_statistics,
    window_starts,
)
from stableface.audio.silence import SilenceGateConfig, mel_levels_db, silence_weights
from stableface.io.audio import read_audio

logger = logging.getLogger("bench.features")
FPS = 25
REPEATS = 3


def extract(samples: np.ndarray, config: AudioFeatureConfig) -> np.ndarray:
    """Everything audio2expression and the gate need from (S,) samples -> (T, W, M) windows."""
    n_frames = round(len(samples) / config.sample_rate * FPS)
    mel = log_mel(samples, config)
    starts = window_starts(n_frames, FPS, config)
    statistics = utterance_statistics(mel, starts, config)
    silence_weights(mel_levels_db(mel, starts, config), SilenceGateConfig())
    return normalise_utterance(frame_windows(mel, n_frames, FPS, config), statistics)


def run(quick: bool = False) -> dict:
    import torch

    core = pin_to_one_core()
    torch.set_num_threads(1)
    config = AudioFeatureConfig()
    files = sorted((shared_data() / "speech").glob("*.wav"))[: 1 if quick else None]
    if not files:
        raise FileNotFoundError(f"{shared_data() / 'speech'}: no .wav speech files")
    speech = [read_audio(str(path), config.sample_rate) for path in files]
    extract(speech[0][: config.sample_rate], config)  # warm librosa's caches
    audio_s = sum(len(s) for s in speech) / config.sample_rate
    timings = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        for samples in speech:
            extract(samples, config)
        timings.append(time.perf_counter() - started)
    best = min(timings)
    figures = {
        "core": core,
        "files": len(files),
        "audio_s": round(audio_s, 1),
        "extract_s": round(best, 3),
        "x_real_time": round(audio_s / best, 1),
        "target_x_real_time": 20,
    }
    logger.info("features: %s", figures)
    return figures
