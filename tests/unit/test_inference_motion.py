"""The motion filter: a predicted mouth is low-passed only by as much as it is rougher than real speech."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stableface.errors import InputError
from stableface.inference.motion import (
    MotionFilterConfig,
    effective_frequency,
    filter_mouth,
    roughness,
    roughness_of_frequency,
)

FPS = 25.0


def _speech_like(n_frames: int = 150, seed: int = 0) -> np.ndarray:
    """(T, 4) mouth coefficients: syllable-rate (4-5 Hz) sinusoids of different phases."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_frames) / FPS
    freqs, phases = rng.uniform(4.0, 5.0, 4), rng.uniform(0, 2 * np.pi, 4)
    return np.sin(2 * np.pi * freqs * t[:, None] + phases).astype(np.float32)


def test_roughness_of_a_sinusoid_matches_its_frequency():
    t = np.arange(500) / FPS
    for hz in (2.0, 5.0, 8.0):
        wave = np.sin(2 * np.pi * hz * t)[:, None]
        assert roughness(wave) == pytest.approx(4 * math.sin(math.pi * hz / FPS) ** 2, rel=0.02)
        assert effective_frequency(roughness_of_frequency(hz, FPS), FPS) == pytest.approx(hz)
    assert math.isnan(roughness(np.ones((30, 3))))  # a still mouth has no roughness


def test_a_jittered_prediction_is_smoothed_to_the_sources_roughness_and_keeps_its_amplitude():
    real = _speech_like(seed=1)
    jitter = np.random.default_rng(2).normal(0, 0.05, real.shape).astype(np.float32)
    predicted = real + jitter
    config = MotionFilterConfig()
    filtered, sigma = filter_mouth(predicted, real, FPS, config)

    assert sigma > 0
    target = min(roughness(real), roughness_of_frequency(config.max_motion_hz, FPS))
    assert roughness(filtered) <= target * 1.001 < roughness(predicted)
    # The filter is a plain Gaussian of that sigma, checked against a direct convolution.
    radius = int(4 * sigma + 0.5)
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(predicted.astype(np.float64), ((radius, radius), (0, 0)), mode="edge")
    direct = np.stack([np.convolve(padded[:, d], kernel, mode="valid") for d in range(predicted.shape[1])], 1)
    np.testing.assert_allclose(filtered, direct, atol=1e-4)
    # Speech survives: the opening's swing stays within 20% of the real one's (a Gaussian also damps
    # 4-5 Hz speech a little: sigma 0.5 frames passes 84% of it).
    assert 0.8 < filtered.std(axis=0).mean() / real.std(axis=0).mean() < 1.2
    assert np.corrcoef(filtered[:, 0], real[:, 0])[0, 1] > 0.9


def test_a_prediction_as_smooth_as_real_speech_is_left_alone():
    real = _speech_like(seed=3)
    t = np.arange(150) / FPS
    smooth_prediction = (0.8 * np.sin(2 * np.pi * 3.0 * t)[:, None] * np.ones((1, 4))).astype(
        np.float32
    )  # 3 Hz
    filtered, sigma = filter_mouth(smooth_prediction, real, FPS, MotionFilterConfig())
    assert sigma == 0.0
    np.testing.assert_array_equal(filtered, smooth_prediction)
    off, sigma = filter_mouth(real + 1.0, real, FPS, MotionFilterConfig(enabled=False))
    assert sigma == 0.0 and off is not None


def test_a_still_source_uses_the_cap_and_bad_settings_are_refused():
    predicted = _speech_like(seed=5) + np.random.default_rng(6).normal(0, 0.3, (150, 4)).astype(np.float32)
    config = MotionFilterConfig(max_motion_hz=5.0)
    filtered, sigma = filter_mouth(predicted, np.zeros((150, 4), np.float32), FPS, config)
    assert sigma > 0 and roughness(filtered) <= roughness_of_frequency(5.0, FPS) * 1.001
    with pytest.raises(InputError, match="max_motion_hz"):
        MotionFilterConfig(max_motion_hz=0)
