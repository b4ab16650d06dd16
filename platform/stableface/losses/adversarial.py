"""Non-saturating GAN losses and discriminator feature matching."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def generator_adversarial_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss: -log sigmoid(D(fake)), averaged over patches."""
    return F.softplus(-fake_logits).mean()


def discriminator_adversarial_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """-log sigmoid(D(real)) - log(1 - sigmoid(D(fake))), averaged over patches."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


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
