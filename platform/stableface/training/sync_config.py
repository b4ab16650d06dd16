"""Settings of the lip-sync expert's training (``stableface train-sync``); no torch import here."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SyncScheduleConfig:
    """How the expert trains; the shipped weights came from these defaults (see the model card)."""

    batch_size: int = 32  # samples per step
    centre: int = 6  # lip spans per sample that are scored
    max_shift: int = 10  # time-shifted negatives reach this many frames either side
    stride: int = 3  # frames between sample starts in a video
    lr: float = 1e-3
    weight_decay: float = 1e-2
    grad_clip: float | None = 1.0
    max_steps: int = 4000
    max_minutes: float | None = 12.0  # training time cap (the CPU here is shared and slow)
    log_every: int = 50
    seed: int = 0
    # Augmentation of the lip features: dubs move their mouths less widely, trackers jitter.
    amplitude_min: float = 0.6  # the lip motion is scaled by a factor drawn from [min, max]
    amplitude_max: float = 1.4
    landmark_noise: float = 0.02  # std of Gaussian noise added to the features (~0.3 % of the crop)
    # With a few in-the-wild clips the expert otherwise learns the clips, not sync (held-out
    # confidence on unseen speakers fell to a fifth of the training clips'): mirror the lips, stretch
    # and tilt them, change the loudness and mask mel bands.
    mirror_probability: float = 0.5
    stretch: float = 0.15  # x and y of the lip shape scaled by independent factors in 1 +- stretch
    tilt_degrees: float = 5.0
    gain: float = 0.5  # normalised log-mel offset drawn from +-gain (+-10 dB)
    mel_mask_bands: int = 12  # up to this many adjacent mel bands set to the sample's mean
    mel_noise: float = 0.1


@dataclass
class SyncHoldout:
    """Which clips the expert never trains on: whole unseen speakers plus some clips of big speakers."""

    unseen_speakers: int = 8  # speakers with fewer than split_min_videos clips, held out entirely
    per_speaker: int = 8  # clips held out of each speaker with at least split_min_videos clips
    split_min_videos: int = 10
    seed: int = 0
    speakers: list[str] = field(default_factory=list)  # explicit unseen speakers (overrides the draw)
