"""Non-saturating GAN losses and discriminator feature matching."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

MIN_PATCH_WEIGHT = 1e-6  # a batch with no mouth patch at all averages to 0 instead of NaN


def patch_mean(values: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """The mean of (N, 1, h, w) per-patch values, weighted by (N, 1, h, w) ``weights`` when given."""
    if weights is None:
        return values.mean()
    return (values * weights).sum() / weights.sum().clamp_min(MIN_PATCH_WEIGHT)


def mouth_patch_weights(mouth_mask: torch.Tensor, patch_shape: tuple[int, int]) -> torch.Tensor:
    """(B, T, 1, S, S) mouth mask in {0, 1} -> (B*T, 1, h, w): the share of each PatchGAN logit's cell
    of the image that is mouth, so a mouth-focused adversarial loss averages the mouth's patches only
    (with the background composited in, every other patch is the source's own pixels either way)."""
    return F.adaptive_avg_pool2d(mouth_mask.flatten(0, 1).float(), patch_shape)


def generator_adversarial_loss(
    fake_logits: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Non-saturating generator loss: -log sigmoid(D(fake)), averaged over (weighted) patches."""
    return patch_mean(F.softplus(-fake_logits), weights)


def discriminator_adversarial_loss(
    real_logits: torch.Tensor, fake_logits: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """-log sigmoid(D(real)) - log(1 - sigmoid(D(fake))), averaged over (weighted) patches."""
    return patch_mean(F.softplus(-real_logits), weights) + patch_mean(F.softplus(fake_logits), weights)


def feature_matching_loss(
    fake_features: Sequence[torch.Tensor], real_features: Sequence[torch.Tensor]
) -> torch.Tensor:
    """Mean over discriminator layers of L1(features(fake), features(real)); the real side is a target."""
    if not fake_features or len(fake_features) != len(real_features):
        raise ValueError(
            f"feature matching: needs equally many fake and real layers, got {len(fake_features)} and "
            f"{len(real_features)}"
        )
    per_layer = [
        F.l1_loss(fake, real.detach()) for fake, real in zip(fake_features, real_features, strict=True)
    ]
    return torch.stack(per_layer).mean()
