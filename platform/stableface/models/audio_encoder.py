"""Audio feature encoder: the log-mel window of one video frame -> one feature vector (64-d).

The paper takes 64-d features from a pretrained speech model; here a small learned
1-D conv net over the mel frames of the window (mel bands as channels) stands in for it.
The input should be standardised log-mel (about zero mean, unit variance per band).
"""

from __future__ import annotations

import torch
from torch import nn

from stableface.models.checks import check_shape
from stableface.models.config import AudioEncoderConfig

CONV_KERNEL = 3


class AudioEncoder(nn.Module):
    def __init__(self, config: AudioEncoderConfig):
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        in_channels = config.n_mels
        for index, out_channels in enumerate(config.channels):
            stride = 1 if index == 0 else 2  # the first layer mixes bands, the rest also halve W
            layers += [
                nn.Conv1d(in_channels, out_channels, CONV_KERNEL, stride=stride, padding=CONV_KERNEL // 2),
                nn.LeakyReLU(config.leaky_slope),
            ]
            in_channels = out_channels
        self.convs = nn.Sequential(*layers)
        out_length = config.window // 2 ** (len(config.channels) - 1)
        self.head = nn.Linear(in_channels * out_length, config.out_dim)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        """(B, T, W, M) log-mel windows -> (B, T, out_dim) features, frames independent of each other."""
        check_shape("audio windows", windows, ("B", "T", self.config.window, self.config.n_mels))
        batch, frames = windows.shape[:2]
        x = windows.reshape(batch * frames, self.config.window, self.config.n_mels)  # (B*T, W, M)
        x = self.convs(x.transpose(1, 2))  # (B*T, C, W / 2^(n-1))
        features = self.head(x.flatten(1))  # (B*T, out_dim)
        return features.view(batch, frames, -1)  # (B, T, out_dim)
