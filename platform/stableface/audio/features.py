"""Log-mel features of 16 kHz mono speech, and per-video-frame windows aligned for any fps.

Time bases: mel frame ``j`` is centred at ``j * hop_s`` seconds (librosa ``center=True``); video
frame ``t`` at ``fps`` covers ``[t / fps, (t + 1) / fps)`` and is centred at ``(t + 0.5) / fps``.
Each video frame gets the ``frames_per_window`` mel frames whose centres lie closest around its
centre time, so audio and video stay aligned at 25, 29.97 (30000/1001) or 30 fps. Mel frames
before the start or after the end of the audio are the silence value.

Normalisation uses fixed constants (measured once on the bundled speech, see
:class:`AudioFeatureConfig`); that is what datasets store and the renderer's audio fusion reads.
A network can also take *per-utterance normalised* windows (:func:`normalise_utterance`): each
mel band minus its mean over the utterance, over its std, so a louder microphone, a different
channel or a different voice's spectral tilt moves every input less. The statistics are those of
all the utterance's windows (:func:`utterance_statistics` computes them from the log-mel without
building the windows, so streaming inference and training on stored windows agree exactly).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from stableface.errors import InputError


@dataclass
class AudioFeatureConfig:
    """Log-mel settings; every field is part of a trained model's contract with its input."""

    sample_rate: int = 16_000  # Hz, what stableface.io.audio.read_audio returns by default
    n_mels: int = 80
    window_s: float = 0.025  # STFT window (and FFT) length: 400 samples at 16 kHz
    hop_s: float = 0.010  # STFT hop: 160 samples, 100 mel frames per second
    fmin: float = 55.0  # Hz, below the lowest voice fundamentals
    fmax: float = 7_600.0  # Hz, just under Nyquist (8 kHz) where the resampler rolls off
    frames_per_window: int = 16  # mel frames per video frame: 160 ms of context (4 video frames at 25 fps)
    floor_db: float = -100.0  # power floor before the log (10 log10 of 1e-10): digital silence
    # (dB - db_offset) / db_scale; the mean and std of log-mel dB over the bundled speech
    # (GRID, VoxCeleb2, the speech/ files) were -40.2 and 19.7 dB.
    db_offset: float = -40.0
    db_scale: float = 20.0

    @property
    def n_fft(self) -> int:
        return round(self.window_s * self.sample_rate)

    @property
    def hop_length(self) -> int:
        return round(self.hop_s * self.sample_rate)

    @property
    def silence_value(self) -> float:
        """The normalised value of digital silence, used to pad windows past the audio's ends."""
        return (self.floor_db - self.db_offset) / self.db_scale


def log_mel(samples: np.ndarray, config: AudioFeatureConfig | None = None) -> np.ndarray:
    """Normalised log-mel spectrogram (M, n_mels) float32 of mono samples (S,) at ``config.sample_rate``."""
    import librosa

    config = config or AudioFeatureConfig()
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim != 1:
        raise InputError("audio samples", f"expected mono samples of shape (S,), got {samples.shape}")
    if samples.size == 0:
        return np.zeros((0, config.n_mels), np.float32)
    n_samples = samples.size
    if n_samples < config.n_fft:  # shorter than one window: zero-pad (silence), keep the frame count
        samples = np.pad(samples, (0, config.n_fft - n_samples))
    power = librosa.feature.melspectrogram(
        y=samples,
        sr=config.sample_rate,
        n_fft=config.n_fft,
        hop_length=config.hop_length,
        win_length=config.n_fft,
        window="hann",
        center=True,
        pad_mode="constant",
        power=2.0,
        n_mels=config.n_mels,
        fmin=config.fmin,
        fmax=config.fmax,
    )  # (n_mels, M)
    # Clip in dB (not in power) so digital silence lands exactly on floor_db, the padding value.
    decibels = np.maximum(10.0 * np.log10(np.maximum(power, np.finfo(np.float32).tiny)), config.floor_db)
    n_mel_frames = n_samples // config.hop_length + 1  # what center=True gives for the unpadded length
    normalised = (decibels.T[:n_mel_frames] - config.db_offset) / config.db_scale
    return normalised.astype(np.float32)  # (M, n_mels)


def _fps_value(fps: float | Fraction) -> float:
    value = float(fps)
    if not np.isfinite(value) or value <= 0:
        raise InputError("fps", f"frame rate must be a positive number, got {fps!r}")
    return value


def window_starts(n_frames: int, fps: float | Fraction, config: AudioFeatureConfig) -> np.ndarray:
    """Index of the first mel frame of each video frame's window, (T,) int64 (may be < 0 or past the end)."""
    centre_s = (np.arange(n_frames, dtype=np.float64) + 0.5) / _fps_value(fps)  # (T,)
    centre_mel = centre_s / config.hop_s  # fractional mel-frame index of each video frame's centre
    # The window's mean index (start + (W - 1) / 2) is the closest to the centre time.
    return np.floor(centre_mel - (config.frames_per_window - 1) / 2.0 + 0.5).astype(np.int64)


def frame_windows(
    mel: np.ndarray, n_frames: int, fps: float | Fraction, config: AudioFeatureConfig | None = None
) -> np.ndarray:
    """Per-video-frame windows (T, frames_per_window, n_mels) float32 of a log-mel (M, n_mels).

    Exactly ``n_frames`` rows whatever the audio length: windows reaching past either end of the
    audio are padded with the silence value.
    """
    config = config or AudioFeatureConfig()
    mel = np.asarray(mel, dtype=np.float32)
    if mel.ndim != 2 or mel.shape[1] != config.n_mels:
        raise InputError("log-mel", f"expected (M, {config.n_mels}), got {mel.shape}")
    if n_frames < 0:
        raise InputError("n_frames", f"must be >= 0, got {n_frames}")
    silence = np.full((1, config.n_mels), config.silence_value, np.float32)
    padded = np.concatenate([silence, mel, silence])  # (M + 2, n_mels): rows 0 and M + 1 are silence
    indices = window_starts(n_frames, fps, config)[:, None] + np.arange(config.frames_per_window)  # (T, W)
    return padded[np.clip(indices + 1, 0, mel.shape[0] + 1)]  # (T, W, n_mels)


MIN_BAND_STD = 1e-3  # normalised units; a band constant over the utterance (digital silence) stays finite


def utterance_statistics(
    mel: np.ndarray, starts: np.ndarray, config: AudioFeatureConfig | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-band mean and std (n_mels,) float32 over all windows of an utterance, from its log-mel
    (M, n_mels) and the windows' first mel indices ``starts`` (T,), exactly as
    ``frame_windows(mel, ...)`` would give them (padding included), without building the windows."""
    config = config or AudioFeatureConfig()
    mel = np.asarray(mel, dtype=np.float64)
    silence = np.full((1, mel.shape[1]), config.silence_value)
    padded = np.concatenate([silence, mel, silence])  # (M + 2, n_mels), as frame_windows pads
    indices = np.asarray(starts)[:, None] + np.arange(config.frames_per_window)  # (T, W)
    rows = np.clip(indices + 1, 0, mel.shape[0] + 1).ravel()  # (T*W,) padded-row index of each entry
    counts = np.bincount(rows, minlength=padded.shape[0]).astype(np.float64)  # (M + 2,) uses per row
    total = max(counts.sum(), 1.0)
    mean = counts @ padded / total  # (n_mels,)
    variance = np.maximum(counts @ np.square(padded) / total - np.square(mean), 0.0)
    return mean.astype(np.float32), np.maximum(np.sqrt(variance), MIN_BAND_STD).astype(np.float32)


def normalise_utterance(
    windows: np.ndarray, statistics: tuple[np.ndarray, np.ndarray] | None = None
) -> np.ndarray:
    """(T, W, M) windows -> per-utterance normalised (T, W, M) float32: each band minus its mean,
    over its std; the statistics default to these windows' own (the whole utterance's)."""
    windows = np.asarray(windows, dtype=np.float32)
    if statistics is None:
        flat = windows.reshape(-1, windows.shape[-1]).astype(np.float64)  # (T*W, M)
        mean = flat.mean(axis=0)
        std = np.maximum(flat.std(axis=0), MIN_BAND_STD)
    else:
        mean, std = statistics
    return ((windows - mean) / std).astype(np.float32)


def audio_features(
    samples: np.ndarray, n_frames: int, fps: float | Fraction, config: AudioFeatureConfig | None = None
) -> np.ndarray:
    """Mono samples (S,) -> (n_frames, frames_per_window, n_mels) windows, one per video frame."""
    config = config or AudioFeatureConfig()
    return frame_windows(log_mel(samples, config), n_frames, fps, config)


def frames_for_audio(n_samples: int, fps: float | Fraction, sample_rate: int = 16_000) -> int:
    """How many video frames cover ``n_samples`` of audio at ``fps`` (at least 1): for audio-only input."""
    return max(1, round(n_samples / sample_rate * _fps_value(fps)))
