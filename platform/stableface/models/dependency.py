"""Dependency modelling: a transformer over all patches of all T frames of a sequence.

Each (C, h, w) feature map is cut into p x p patches; each patch is flattened, projected to
d, given a spatial and a temporal position, and N transformer blocks attend over all T*p*p
tokens; a linear layer maps tokens back to patches, which are reassembled and added to the
input (a residual update, so the module starts close to the identity of the conv path).
"""

from __future__ import annotations

import torch
from torch import nn

from stableface.models.checks import TensorShapeError
from stableface.models.transformer import TransformerBlock

POSITION_INIT_STD = 0.02


class DependencyModule(nn.Module):
    def __init__(
        self,
        channels: int,
        feature_size: int,
        patch_grid: int,
        d_model: int,
        n_layers: int,
        n_heads: int,
        ff_mult: int,
        dropout: float,
        max_frames: int,
    ):
        super().__init__()
        self.grid = patch_grid  # p
        self.patch = feature_size // patch_grid  # patch side, 16 at 64x64 features and p = 4
        self.channels = channels
        self.max_frames = max_frames
        patch_dim = channels * self.patch * self.patch  # 65,536 at the paper's sizes
        self.embed = nn.Linear(patch_dim, d_model)
        self.spatial_position = nn.Parameter(
            torch.randn(patch_grid * patch_grid, d_model) * POSITION_INIT_STD
        )
        self.temporal_position = nn.Parameter(torch.randn(max_frames, d_model) * POSITION_INIT_STD)
        self.blocks = nn.ModuleList(
            TransformerBlock(d_model, n_heads, ff_mult, dropout) for _ in range(n_layers)
        )
        self.ln_out = nn.LayerNorm(d_model)
        self.unembed = nn.Linear(d_model, patch_dim)

    def forward(self, features: torch.Tensor, frames: int) -> torch.Tensor:
        """(B*T, C, h, w) feature maps of B sequences of T frames -> (B*T, C, h, w)."""
        if frames > self.max_frames:
            raise TensorShapeError(
                "renderer input",
                f"{frames} frames per sequence exceed the {self.max_frames} the model was built for",
            )
        n, c, h, w = features.shape
        batch, p, s = n // frames, self.grid, self.patch
        patches = features.view(batch, frames, c, p, s, p, s)  # (B, T, C, p, s, p, s)
        patches = patches.permute(0, 1, 3, 5, 2, 4, 6)  # (B, T, p, p, C, s, s)
        patches = patches.reshape(batch, frames, p * p, c * s * s)  # (B, T, p*p, C*s*s)
        tokens = self.embed(patches)  # (B, T, p*p, d)
        tokens = tokens + self.spatial_position[None, None] + self.temporal_position[None, :frames, None]
        tokens = tokens.flatten(1, 2)  # (B, T*p*p, d)
        for block in self.blocks:
            tokens = block(tokens)  # (B, T*p*p, d)
        update = self.unembed(self.ln_out(tokens))  # (B, T*p*p, C*s*s)
        update = update.view(batch, frames, p, p, c, s, s).permute(
            0, 1, 4, 2, 5, 3, 6
        )  # (B, T, C, p, s, p, s)
        return features + update.reshape(n, c, h, w)  # (B*T, C, h, w)
