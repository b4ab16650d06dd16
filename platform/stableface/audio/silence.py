"""The silence gate: frames whose audio is silent relative to the utterance close the mouth.

audio2expression learns closed mouths from the pauses of its training speakers, but a TTS voice,
a studio recording with digital silence or a noise floor it never heard can leave it half open.
The gate is an energy rule, not a learned model: a video frame is *silent* when the mean log-mel
level (dB, all bands) of the two mel frames at its centre lies more than ``threshold_db`` below the
utterance's loud level (its ``LOUD_PERCENTILE``-th percentile frame); runs shorter than
``min_frames`` are dropped (a stop consonant's closure is the network's job), and the 0/1 mask is
eased over ``ramp_frames`` each side so the mouth closes and opens without a jolt (a step would
cost lip MSI). :func:`gate_mouth` then blends the predicted mouth toward the closed pose.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stableface.audio.features import AudioFeatureConfig

LOUD_PERCENTILE = 95.0
CENTRE_MEL_FRAMES = 2  # mel frames at a window's centre that stand for its video frame


@dataclass
class SilenceGateConfig:
    enabled: bool = True
    threshold_db: float = 35.0  # silent = this far below the utterance's loud level
    min_frames: int = 5  # shorter silent runs are left to the network (0.2 s at 25 fps)
    ramp_frames: int = 2  # the gate eases in and out over this many frames each side


def frame_levels_db(windows: np.ndarray, config: AudioFeatureConfig) -> np.ndarray:
    """(T, W, M) fixed-normalised windows -> (T,) mean log-mel level in dB at each frame's centre."""
    centre = windows.shape[1] // 2
    middle = np.asarray(
        windows[:, centre - CENTRE_MEL_FRAMES // 2 : centre + CENTRE_MEL_FRAMES // 2], np.float32
    )
    return middle.mean(axis=(1, 2)) * config.db_scale + config.db_offset  # (T,)


def mel_levels_db(mel: np.ndarray, starts: np.ndarray, config: AudioFeatureConfig) -> np.ndarray:
    """The same levels (T,) from a log-mel (M, n_mels) and the frames' window starts (T,), without
    building the windows (streaming inference); padding past the audio's ends is silence, as there."""
    silence = np.full((1, mel.shape[1]), config.silence_value, np.float32)
    padded = np.concatenate([silence, mel, silence])  # (M + 2, n_mels)
    centre = config.frames_per_window // 2 - CENTRE_MEL_FRAMES // 2
    indices = np.asarray(starts)[:, None] + centre + np.arange(CENTRE_MEL_FRAMES)  # (T, 2)
    middle = padded[np.clip(indices + 1, 0, mel.shape[0] + 1)]  # (T, 2, n_mels)
    return middle.mean(axis=(1, 2)) * config.db_scale + config.db_offset


def _drop_short_runs(mask: np.ndarray, min_frames: int) -> np.ndarray:
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    kept = np.zeros_like(mask)
    for start, stop in zip(edges[::2], edges[1::2], strict=True):
        if stop - start >= min_frames:
            kept[start:stop] = True
    return kept


def silence_weights(levels_db: np.ndarray, config: SilenceGateConfig) -> np.ndarray:
    """(T,) frame levels (dB) -> (T,) gate weights in [0, 1]: 1 = silent (closed mouth), 0 = speech."""
    levels_db = np.asarray(levels_db, dtype=np.float64)
    if not config.enabled or levels_db.size == 0:
        return np.zeros(levels_db.shape, np.float32)
    loud = np.percentile(levels_db, LOUD_PERCENTILE)
    silent = _drop_short_runs(levels_db < loud - config.threshold_db, config.min_frames)
    if config.ramp_frames <= 0:
        return silent.astype(np.float32)
    # Erode by the ramp, then a moving average of 2 * ramp + 1 frames: full weight only inside a
    # silence, rising linearly to it over the ramp, never reaching into speech.
    inner = silent.copy()
    for shift in range(1, config.ramp_frames + 1):
        inner[shift:] &= silent[:-shift]
        inner[:-shift] &= silent[shift:]
    kernel = np.ones(2 * config.ramp_frames + 1) / (2 * config.ramp_frames + 1)
    eased = np.convolve(inner.astype(np.float64), kernel, mode="same")
    return np.clip(np.maximum(eased, inner), 0.0, 1.0).astype(np.float32)


def gate_mouth(mouth: np.ndarray, weights: np.ndarray, closed: np.ndarray) -> np.ndarray:
    """(T, n_mouth) predicted coefficients, (T,) gate weights, (n_mouth,) closed pose -> (T, n_mouth)."""
    weights = np.asarray(weights, dtype=np.float32)[:, None]
    return ((1.0 - weights) * mouth + weights * closed[None]).astype(np.float32)
