"""Log-mel features and their per-video-frame windows: alignment for any fps, fixed normalisation."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from stableface.audio.features import (
    AudioFeatureConfig,
    audio_features,
    frame_windows,
    frames_for_audio,
    log_mel,
)
from stableface.errors import InputError
from stableface.io.audio import read_audio
from stableface.io.video import VideoWriter, iter_frames, probe_video, read_frames

CONFIG = AudioFeatureConfig()
NTSC = Fraction(30000, 1001)


def test_grid_clip_gets_exactly_one_window_per_video_frame(grid_clips):
    clip = grid_clips[0]
    n_frames = sum(1 for _ in iter_frames(clip))
    info = probe_video(clip)
    samples = read_audio(clip)
    features = audio_features(samples, n_frames, info.fps)
    assert n_frames == 75
    assert features.shape == (75, CONFIG.frames_per_window, CONFIG.n_mels)
    assert features.dtype == np.float32 and np.isfinite(features).all()


def test_2997_fps_file_gets_exactly_one_window_per_video_frame(grid_clips, tmp_path):
    """A real 29.97 fps mp4 (GRID frames re-timed, GRID speech muxed) -> one row per decoded frame."""
    frames = read_frames(grid_clips[1])  # (75, 288, 360, 3)
    speech = read_audio(grid_clips[1])  # 3 s at 16 kHz: longer than 75 frames at 29.97 fps
    path = tmp_path / "ntsc.mp4"
    with VideoWriter(path, fps=NTSC, width=frames.shape[2], height=frames.shape[1], audio=speech) as writer:
        for frame in frames:
            writer.write(frame)
    info = probe_video(path)
    assert info.fps == NTSC
    n_decoded = sum(1 for _ in iter_frames(path))
    samples = read_audio(path)
    features = audio_features(samples, n_decoded, info.fps)
    assert n_decoded == 75
    assert features.shape == (75, CONFIG.frames_per_window, CONFIG.n_mels)
    # The muxed audio covers the video (75 / 29.97 = 2.50 s; AAC adds up to 1024 samples of priming).
    assert len(samples) / CONFIG.sample_rate == pytest.approx(75 / float(NTSC), abs=0.1)


@pytest.mark.parametrize("fps", [Fraction(25), NTSC, Fraction(30)])
def test_each_window_is_centred_on_its_video_frame(fps):
    """With mel row j holding the value j, a window's mean index is the frame centre in mel frames."""
    n_mel_frames = 400  # 4 s of 10 ms hops
    ramp = np.repeat(np.arange(n_mel_frames, dtype=np.float32)[:, None], CONFIG.n_mels, axis=1)  # (M, n_mels)
    n_frames = int(3.0 * float(fps))
    windows = frame_windows(ramp, n_frames, fps)  # (T, W, n_mels)
    assert windows.shape == (n_frames, CONFIG.frames_per_window, CONFIG.n_mels)
    inside = slice(5, None)  # the first frames' windows reach before t = 0 (padded, tested below)
    centre_mel = (np.arange(n_frames)[inside] + 0.5) / float(fps) / CONFIG.hop_s
    # Within half a mel frame (5 ms) of the exact centre, for every frame.
    assert np.abs(windows[inside, :, 0].mean(axis=1) - centre_mel).max() <= 0.5 + 1e-6
    # Consecutive mel frames inside every window.
    assert (np.diff(windows[inside, :, 0], axis=1) == 1).all()


@pytest.mark.parametrize("n_frames", [10, 75, 120])
def test_audio_shorter_or_longer_than_video_is_padded_or_ignored(n_frames):
    """2 s of audio, videos of 0.4 s, 3 s and 4.8 s at 25 fps: always n_frames rows; silence past the end."""
    rng = np.random.default_rng(0)
    samples = (0.1 * rng.standard_normal(2 * CONFIG.sample_rate)).astype(np.float32)
    features = audio_features(samples, n_frames, 25)
    assert features.shape == (n_frames, CONFIG.frames_per_window, CONFIG.n_mels)
    duration_s = len(samples) / CONFIG.sample_rate
    window_s = CONFIG.frames_per_window * CONFIG.hop_s
    window_start_s = (np.arange(n_frames) + 0.5) / 25 - window_s / 2  # (T,)
    beyond = window_start_s > duration_s + CONFIG.hop_s  # the whole window after the audio
    within = (window_start_s > CONFIG.hop_s) & (window_start_s + window_s < duration_s - CONFIG.hop_s)
    assert (features[beyond] == CONFIG.silence_value).all()
    assert (features[within].min(axis=(1, 2)) > CONFIG.silence_value + 1.0).all()
    assert beyond.sum() == {10: 0, 75: 23, 120: 68}[n_frames]  # frames 52+ start after 2.01 s
    # The very first window reaches before t=0 and is padded with silence there.
    assert (features[0, 0] == CONFIG.silence_value).all()


def test_normalisation_is_fixed_not_per_clip():
    """Scaling the audio by 0.1 (-20 dB) lowers every non-floor value by exactly 20 dB / db_scale."""
    noise = (0.3 * np.random.default_rng(0).standard_normal(CONFIG.sample_rate)).astype(np.float32)
    loud, quiet = log_mel(noise), log_mel(0.1 * noise)
    above_floor = quiet > CONFIG.silence_value + 0.1
    assert above_floor.mean() > 0.95
    np.testing.assert_allclose((loud - quiet)[above_floor], 20.0 / CONFIG.db_scale, atol=1e-3)
    assert (log_mel(np.zeros(CONFIG.sample_rate, np.float32)) == CONFIG.silence_value).all()


def test_a_tone_lands_in_the_mel_band_of_its_frequency():
    import librosa

    t = np.arange(CONFIG.sample_rate) / CONFIG.sample_rate
    for frequency in (300.0, 1000.0, 3000.0):
        mel = log_mel((0.5 * np.sin(2 * np.pi * frequency * t)).astype(np.float32))  # (M, n_mels)
        band_centres = librosa.mel_frequencies(CONFIG.n_mels + 2, fmin=CONFIG.fmin, fmax=CONFIG.fmax)[1:-1]
        loudest = int(mel[10:-10].mean(axis=0).argmax())
        assert abs(band_centres[loudest] - frequency) < 0.1 * frequency


def test_log_mel_frame_count_follows_the_hop():
    samples = np.zeros(CONFIG.sample_rate * 2, np.float32)
    assert log_mel(samples).shape == (2 * 100 + 1, CONFIG.n_mels)  # centred frames: S // hop + 1
    assert log_mel(np.zeros(0, np.float32)).shape == (0, CONFIG.n_mels)
    assert frame_windows(np.zeros((0, CONFIG.n_mels)), 5, 25).shape == (
        5,
        CONFIG.frames_per_window,
        CONFIG.n_mels,
    )


def test_audio_shorter_than_one_stft_window_still_gives_every_row():
    clip = np.full(100, 0.1, np.float32)  # 6 ms, under the 25 ms window
    assert log_mel(clip).shape == (1, CONFIG.n_mels)
    features = audio_features(clip, 4, 25)
    assert features.shape == (4, CONFIG.frames_per_window, CONFIG.n_mels)
    assert (features[2:] == CONFIG.silence_value).all()  # windows of frames 2+ start after mel frame 0


def test_frames_for_audio_duration():
    assert frames_for_audio(3 * 16_000, 25) == 75
    assert frames_for_audio(3 * 16_000, NTSC) == 90
    assert frames_for_audio(10, 25) == 1


def test_bad_inputs_raise_errors_that_name_the_input():
    with pytest.raises(InputError, match="audio samples: expected mono"):
        log_mel(np.zeros((2, 100), np.float32))
    with pytest.raises(InputError, match="fps: frame rate must be a positive"):
        audio_features(np.zeros(1600, np.float32), 3, 0)
    with pytest.raises(InputError, match="log-mel: expected"):
        frame_windows(np.zeros((10, 40)), 3, 25)


def test_utterance_statistics_equal_those_of_the_windows():
    """Streaming inference's statistics (from the log-mel) are exactly the stored windows' own."""
    from stableface.audio.features import normalise_utterance, utterance_statistics, window_starts

    rng = np.random.default_rng(3)
    config = AudioFeatureConfig()
    samples = (0.1 * rng.standard_normal(16_000 * 2)).astype(np.float32)
    samples[:4000] = 0.0  # digital silence: a band-wise constant stretch
    mel = log_mel(samples, config)
    n_frames = 53  # past the audio's end at 25 fps: padded windows count too
    windows = frame_windows(mel, n_frames, 25, config)  # (T, W, M)
    mean, std = utterance_statistics(mel, window_starts(n_frames, 25, config), config)
    flat = windows.reshape(-1, config.n_mels).astype(np.float64)
    np.testing.assert_allclose(mean, flat.mean(axis=0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(std, flat.std(axis=0), rtol=1e-4, atol=1e-5)
    normalised = normalise_utterance(windows)
    np.testing.assert_allclose(normalised, normalise_utterance(windows, (mean, std)), atol=1e-4)
    per_band = normalised.reshape(-1, config.n_mels)
    np.testing.assert_allclose(per_band.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(per_band.std(axis=0), 1.0, atol=1e-3)
    # A louder copy of the same speech gives the same normalised windows (up to the dB floor).
    louder = frame_windows(log_mel(samples * 4.0, config), n_frames, 25, config)
    assert np.abs(normalise_utterance(louder) - normalised).mean() < 0.05
