"""PatchGAN discriminator (pix2pix, as used by Neural Voice Puppetry), applied frame by frame.

conv 4x4 s2 + leaky ReLU, then n_layers - 1 more stride-2 and one stride-1 conv 4x4 with
instance norm + leaky ReLU, then conv 4x4 s1 to one logit per patch (70x70 receptive field
at n_layers = 3). It returns every intermediate activation too, for feature matching.
"""

from __future__ import annotations

import torch
from torch import nn

from stableface.models.checks import TensorShapeError, check_shape
from stableface.models.config import DiscriminatorConfig

IMAGE_CHANNELS = 3
CONDITION_CHANNELS = 4  # the renderer input: eroded background (3) + face shape (1)
KERNEL = 4
PADDING = 1


class PatchDiscriminator(nn.Module):
    def __init__(self, config: DiscriminatorConfig):
        super().__init__()
        self.config = config
        slope = config.leaky_slope
        in_channels = IMAGE_CHANNELS + (CONDITION_CHANNELS if config.conditional else 0)
        width = config.base_channels
        stages: list[nn.Module] = [
            nn.Sequential(nn.Conv2d(in_channels, width, KERNEL, 2, PADDING), nn.LeakyReLU(slope))
        ]
        for index in range(1, config.n_layers + 1):
            stride = 2 if index < config.n_layers else 1
            next_width = min(width * 2, config.max_channels)
            stages.append(
                nn.Sequential(
                    nn.Conv2d(width, next_width, KERNEL, stride, PADDING),
                    nn.InstanceNorm2d(next_width, affine=True),
                    nn.LeakyReLU(slope),
                )
            )
            width = next_width
        stages.append(nn.Conv2d(width, 1, KERNEL, 1, PADDING))
        self.stages = nn.ModuleList(stages)

    def forward(
        self, frames: torch.Tensor, condition: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(B, T, 3, H, W) frames [, (B, T, 4, H, W) renderer input] ->
        ((B*T, 1, h, w) patch logits, [(B*T, C_i, h_i, w_i) activations of each hidden stage])."""
        check_shape("discriminator frames", frames, ("B", "T", IMAGE_CHANNELS, "H", "W"))
        x = frames
        if self.config.conditional:
            if condition is None:
                raise TensorShapeError(
                    "discriminator condition", "a conditional discriminator needs the renderer input"
                )
            check_shape(
                "discriminator condition",
                condition,
                (*frames.shape[:2], CONDITION_CHANNELS, *frames.shape[3:]),
            )
            x = torch.cat([frames, condition], dim=2)  # (B, T, 7, H, W)
        x = x.flatten(0, 1)  # (B*T, C_in, H, W)
        features = []
        for stage in self.stages[:-1]:
            x = stage(x)  # (B*T, C_i, h_i, w_i)
            features.append(x)
        return self.stages[-1](x), features  # (B*T, 1, h, w)
