"""Temporal smoothing of the face-shape images: s~_t = sum_k W_t,k s_(t+k), k = -K//2 .. K//2.

Three ways to get the weights W (paper Fig. 9), each normalised to sum to 1 per frame:
- ``adaptive`` (Table I): a small conv net predicts K weights per frame from the expression sequence;
- ``gaussian``: one fixed Gaussian kernel;
- ``global``: one learnable kernel shared by all frames (initialised to the Gaussian);
plus ``none`` (no smoothing; weight 1 on the frame itself) for the Table V ablation.
The sequence ends are replicate-padded.

The adaptive network starts out predicting the Gaussian of ``sigma`` for every frame, not the
uniform K-tap average a fresh sigmoid head gives: a 5-frame box filter has its first zero at
5 Hz at 25 fps, the syllable rate, so an untrained (or briefly trained) network removed speech.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stableface.models.checks import TensorShapeError, check_shape
from stableface.models.config import SmoothingConfig

INITIAL_CENTRE_PROBABILITY = 0.5  # the centre tap's sigmoid output at init: where its gradient is largest
INITIAL_HEAD_GAIN = 0.01  # shrinks the head's weights so the initial kernel barely depends on the input


def gaussian_kernel(kernel_size: int, sigma: float) -> torch.Tensor:
    """(K,) normalised Gaussian weights centred on the middle tap."""
    offsets = torch.arange(kernel_size, dtype=torch.float64) - kernel_size // 2  # (K,)
    weights = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return (weights / weights.sum()).float()


def apply_temporal_kernel(sequence: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(B, T, ...) sequence, (B, T, K) per-frame weights -> (B, T, ...) weighted sums of K neighbours."""
    batch, frames = sequence.shape[:2]
    kernel_size = weights.shape[-1]
    radius = kernel_size // 2
    flat = sequence.reshape(batch, frames, -1)  # (B, T, D)
    # replicate-pad along time: F.pad pads the last dim, so move time there and back
    padded = F.pad(flat.transpose(1, 2), (radius, radius), mode="replicate").transpose(1, 2)  # (B, T+K-1, D)
    smoothed = torch.zeros_like(flat)  # (B, T, D)
    for tap in range(kernel_size):
        smoothed = smoothed + weights[:, :, tap, None] * padded[:, tap : tap + frames]  # (B, T, D)
    return smoothed.view_as(sequence)


@torch.no_grad()
def initialise_head(head: nn.Conv1d, kernel: torch.Tensor) -> None:
    """Set the sigmoid head so that its normalised outputs start as ``kernel`` (K,) for any input:
    biases = logit(p) with p proportional to the kernel (normalisation keeps only the ratios)."""
    probabilities = INITIAL_CENTRE_PROBABILITY * kernel / kernel.max()  # (K,) in (0, 0.5]
    head.bias.copy_(torch.logit(probabilities.double()).float())
    head.weight.mul_(INITIAL_HEAD_GAIN)


class AdaptiveWeights(nn.Module):
    """Table I: Conv1D-BN-ReLU (k3) x4 with 32, 32, 16, 16 channels, then Conv1D-Sigmoid (k3) to K."""

    def __init__(self, config: SmoothingConfig):
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = config.expression_dim
        padding = config.conv_kernel // 2
        for out_channels in config.channels:
            layers += [
                nn.Conv1d(
                    in_channels, out_channels, config.conv_kernel, padding=padding, padding_mode="replicate"
                ),
                nn.BatchNorm1d(out_channels),
                nn.ReLU(),
            ]
            in_channels = out_channels
        layers += [
            nn.Conv1d(
                in_channels, config.kernel_size, config.conv_kernel, padding=padding, padding_mode="replicate"
            ),
            nn.Sigmoid(),
        ]
        self.net = nn.Sequential(*layers)
        initialise_head(self.head, gaussian_kernel(config.kernel_size, config.sigma))

    @property
    def head(self) -> nn.Conv1d:
        """The last convolution, whose K outputs go through the sigmoid."""
        return self.net[-2]

    def forward(self, expression: torch.Tensor) -> torch.Tensor:
        """(B, T, E) expression -> (B, T, K) positive weights, each row summing to 1."""
        raw = self.net(expression.transpose(1, 2)).transpose(1, 2)  # (B, T, K) in (0, 1)
        return raw / raw.sum(dim=-1, keepdim=True)


class TemporalSmoothing(nn.Module):
    def __init__(self, config: SmoothingConfig):
        super().__init__()
        self.config = config
        self.adaptive: AdaptiveWeights | None = None
        self.kernel_logits: nn.Parameter | None = None
        if config.mode == "adaptive":
            self.adaptive = AdaptiveWeights(config)
        elif config.mode == "gaussian":
            self.register_buffer("kernel", gaussian_kernel(config.kernel_size, config.sigma))  # (K,)
        elif config.mode == "global":
            # softmax(log g) = g: training starts from the Gaussian kernel
            self.kernel_logits = nn.Parameter(gaussian_kernel(config.kernel_size, config.sigma).log())  # (K,)
        else:  # none
            identity = torch.zeros(config.kernel_size)
            identity[config.kernel_size // 2] = 1.0
            self.register_buffer("kernel", identity)  # (K,)

    def weights(self, expression: torch.Tensor) -> torch.Tensor:
        """(B, T, E) expression sequence -> (B, T, K) smoothing weights (rows sum to 1)."""
        check_shape("expression", expression, ("B", "T", self.config.expression_dim))
        batch, frames = expression.shape[:2]
        if self.adaptive is not None:
            return self.adaptive(expression)  # (B, T, K)
        kernel = self.kernel_logits.softmax(0) if self.kernel_logits is not None else self.kernel  # (K,)
        return kernel.to(expression.dtype).expand(batch, frames, -1)  # (B, T, K)

    def forward(self, shapes: torch.Tensor, expression: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, C, H, W) face-shape images (or any (B, T, ...)), (B, T, E) expression ->
        ((B, T, C, H, W) smoothed images, (B, T, K) weights)."""
        if shapes.shape[:2] != expression.shape[:2]:
            raise TensorShapeError(
                "face shapes",
                f"batch and frames {tuple(shapes.shape[:2])} differ from the expression's "
                f"{tuple(expression.shape[:2])}",
            )
        weights = self.weights(expression)  # (B, T, K)
        if self.is_identity:
            return shapes, weights
        return apply_temporal_kernel(shapes, weights), weights

    @property
    def is_identity(self) -> bool:
        return self.config.mode == "none"


def kernel_radius(config: SmoothingConfig) -> int:
    """Neighbours each side that one smoothed face-shape image sums over (the K taps)."""
    return config.kernel_size // 2


def weight_radius(config: SmoothingConfig) -> int:
    """Frames each side of the expression sequence that one frame's adaptive weights depend on."""
    return (len(config.channels) + 1) * (config.conv_kernel // 2)  # the conv stack over expressions
