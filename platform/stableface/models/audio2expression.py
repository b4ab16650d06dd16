"""audio2expression (Transformer-S2A style): audio feature sequence -> mouth expression sequence."""

from __future__ import annotations

import torch
from torch import nn

from stableface.models.audio_encoder import AudioEncoder
from stableface.models.config import Audio2ExpressionConfig, AudioEncoderConfig
from stableface.models.transformer import TransformerBlock, band_mask, sinusoidal_positions


class Audio2Expression(nn.Module):
    """Encodes each frame's log-mel window, then stacked transformer layers over the sequence."""

    def __init__(self, config: Audio2ExpressionConfig, audio: AudioEncoderConfig):
        super().__init__()
        self.config = config
        self.audio_encoder = AudioEncoder(audio)
        self.input_proj = nn.Linear(audio.out_dim, config.d_model)
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(config.d_model, config.n_heads, config.ff_mult, config.dropout)
            for _ in range(config.n_layers)
        )
        self.ln_out = nn.LayerNorm(config.d_model)
        self.head = nn.Linear(config.d_model, config.mouth_dim)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        """(B, T, W, M) log-mel windows -> (B, T, mouth_dim) mouth expression coefficients."""
        features = self.audio_encoder(windows)  # (B, T, A)
        frames = features.shape[1]
        # Sinusoidal positions: inference sequences may be longer than training ones.
        x = self.input_proj(features) + sinusoidal_positions(
            frames, self.config.d_model, features.device
        )  # (B, T, d)
        x = self.dropout(x)
        mask = None
        if self.config.attention_window is not None:
            mask = band_mask(frames, self.config.attention_window, features.device)  # (T, T)
        for block in self.blocks:
            x = block(x, mask)  # (B, T, d)
        return self.head(self.ln_out(x))  # (B, T, mouth_dim)
