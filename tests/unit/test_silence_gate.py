"""The silence gate: silent stretches of the audio close the mouth, speech and short pauses do not."""

from __future__ import annotations

import numpy as np

from stableface.audio.features import AudioFeatureConfig, frame_windows, log_mel, window_starts
from stableface.audio.silence import (
    SilenceGateConfig,
    frame_levels_db,
    gate_mouth,
    mel_levels_db,
    silence_weights,
)
from stableface.face.config import FaceConfig
from stableface.face.face_model import FaceModel
from stableface.face.lips import closed_mouth, mesh_gaps

FPS = 25


def speech_with_pauses() -> np.ndarray:
    """1 s noise 'speech', 0.6 s digital silence, 0.04 s silence (one frame), 1 s speech at 16 kHz."""
    rng = np.random.default_rng(0)
    loud = lambda seconds: (0.2 * rng.standard_normal(int(16_000 * seconds))).astype(np.float32)  # noqa: E731
    quiet = lambda seconds: np.zeros(int(16_000 * seconds), np.float32)  # noqa: E731
    return np.concatenate([loud(1.0), quiet(0.6), loud(0.5), quiet(0.04), loud(0.5)])


def test_long_silence_is_gated_short_pause_and_speech_are_not():
    config = AudioFeatureConfig()
    samples = speech_with_pauses()
    n_frames = round(len(samples) / 16_000 * FPS)
    mel = log_mel(samples, config)
    starts = window_starts(n_frames, FPS, config)
    levels = frame_levels_db(frame_windows(mel, n_frames, FPS, config), config)
    np.testing.assert_allclose(levels, mel_levels_db(mel, starts, config), atol=1e-4)
    weights = silence_weights(levels, SilenceGateConfig(ramp_frames=2))
    assert weights[28:38].min() == 1.0  # inside the 0.6 s silence (frames 25-40)
    assert weights[:20].max() == 0.0 and weights[45:].max() == 0.0  # speech and the 1-frame pause
    ramp = weights[20:30]
    assert np.all(np.diff(ramp) >= 0) and 0 < ramp[ramp > 0].min() < 1  # eases in, no step
    assert silence_weights(levels, SilenceGateConfig(enabled=False)).max() == 0.0


def test_gate_closes_the_inner_lips():
    rng = np.random.default_rng(1)
    base = FaceModel.from_assets(FaceConfig(min_fit_frames=50))
    model = base.fit([base.canonical + 0.02 * rng.standard_normal((60, 478, 3)).astype(np.float32)])
    identity = base.canonical + 0.01 * rng.standard_normal((478, 3)).astype(np.float32)
    mouth = 0.05 * rng.standard_normal((4, model.n_mouth)).astype(np.float32)
    gated = gate_mouth(mouth, np.array([0.0, 0.5, 1.0, 1.0]), closed_mouth(model, identity))
    expression = np.zeros((4, model.expression_dim), np.float32)
    expression[:, model.mouth_slice] = gated
    gaps = mesh_gaps(model.decode(identity, expression))  # (4, P)
    np.testing.assert_allclose(gated[0], mouth[0])
    assert gaps[2:].max() < 1e-5  # fully gated frames: lips touching
    assert gaps[0].min() > 1e-4
