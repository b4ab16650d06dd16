"""A pre-norm transformer block (nanoGPT style), shared by audio2expression and the renderer."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class SelfAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, dropout: float):
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        batch, length, d_model = x.shape  # (B, L, d)
        q, k, v = self.qkv(x).split(d_model, dim=2)  # each (B, L, d)
        head_dim = d_model // self.n_heads
        q = q.view(batch, length, self.n_heads, head_dim).transpose(1, 2)  # (B, h, L, d/h)
        k = k.view(batch, length, self.n_heads, head_dim).transpose(1, 2)  # (B, h, L, d/h)
        v = v.view(batch, length, self.n_heads, head_dim).transpose(1, 2)  # (B, h, L, d/h)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
        )  # (B, h, L, d/h)
        y = y.transpose(1, 2).reshape(batch, length, d_model)  # (B, L, d)
        return self.proj(y)


class TransformerBlock(nn.Module):
    """x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, d_model: int, n_heads: int, ff_mult: int, dropout: float):
        super().__init__()
        self.ln_attn = nn.LayerNorm(d_model)
        self.attn = SelfAttention(d_model, n_heads, dropout)
        self.ln_mlp = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, ff_mult * d_model),
            nn.GELU(),
            nn.Linear(ff_mult * d_model, d_model),
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.dropout(self.attn(self.ln_attn(x), mask))  # (B, L, d)
        return x + self.dropout(self.mlp(self.ln_mlp(x)))  # (B, L, d)


def sinusoidal_positions(length: int, dim: int, device: torch.device | None = None) -> torch.Tensor:
    """(length, dim) fixed sine/cosine position codes (Vaswani et al.); any length works."""
    position = torch.arange(length, dtype=torch.float32, device=device)[:, None]  # (L, 1)
    frequency = torch.exp(
        torch.arange(0, dim, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / dim)
    )  # (ceil(dim/2),)
    codes = torch.zeros(length, dim, device=device)  # (L, dim)
    codes[:, 0::2] = torch.sin(position * frequency)
    codes[:, 1::2] = torch.cos(position * frequency[: dim // 2])
    return codes


def band_mask(length: int, radius: int, device: torch.device | None = None) -> torch.Tensor:
    """(L, L) bool, True where |i - j| <= radius: each position attends to its neighbourhood only."""
    index = torch.arange(length, device=device)
    return (index[:, None] - index[None, :]).abs() <= radius
