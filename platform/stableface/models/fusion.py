"""Audio fusion: inject each frame's audio feature into that frame's image features.

The audio feature predicts a per-channel scale and shift of the instance-normalised features
(AdaIN-like modulation); a 3x3 conv turns the modulated map into a residual update, so the
image path is kept and the audio steers it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

FUSION_KERNEL = 3


class AudioFusion(nn.Module):
    def __init__(self, channels: int, audio_dim: int, hidden: int, leaky_slope: float):
        super().__init__()
        self.to_modulation = nn.Sequential(
            nn.Linear(audio_dim, hidden),
            nn.LeakyReLU(leaky_slope),
            nn.Linear(hidden, 2 * channels),
        )
        self.conv = nn.Conv2d(channels, channels, FUSION_KERNEL, padding=FUSION_KERNEL // 2)
        self.leaky_slope = leaky_slope

    def forward(self, features: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """(N, C, h, w) image features, (N, A) audio features of the same N frames -> (N, C, h, w)."""
        scale, shift = self.to_modulation(audio).chunk(2, dim=1)  # each (N, C)
        modulated = (
            F.instance_norm(features) * (1 + scale[:, :, None, None]) + shift[:, :, None, None]
        )  # (N, C, h, w)
        return features + self.conv(F.leaky_relu(modulated, self.leaky_slope))  # (N, C, h, w)
