"""The generator objective: total = rec_weight * L_rec + adv_weight * L_adv (paper: 20 and 1)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from stableface.io.storage import Storage
from stableface.losses.adversarial import generator_adversarial_loss, mouth_patch_weights
from stableface.losses.config import LossConfig
from stableface.losses.reconstruction import ReconstructionLoss
from stableface.models.vgg import load_vgg19


class GeneratorLoss(nn.Module):
    def __init__(self, config: LossConfig, reconstruction: ReconstructionLoss):
        super().__init__()
        self.config = config
        self.reconstruction = reconstruction

    @property
    def perceptual_source(self) -> str:
        return self.reconstruction.perceptual_source

    def patch_weights(self, mouth_mask: torch.Tensor, logits: torch.Tensor) -> torch.Tensor | None:
        """(B*T, 1, h, w) mouth weights of the PatchGAN logits with ``mouth_adversarial``, else None."""
        return mouth_patch_weights(mouth_mask, logits.shape[-2:]) if self.config.mouth_adversarial else None

    def forward(
        self,
        fake: torch.Tensor,
        real: torch.Tensor,
        mouth_mask: torch.Tensor,
        fake_logits: torch.Tensor,
        fake_features: Sequence[torch.Tensor] | None = None,
        real_features: Sequence[torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """(B, T, 3, H, W) fake and real frames, (B, T, 1, H, W) mouth mask, the discriminator's logits
        (and features) for the fake frames -> named terms, ``total`` to backpropagate."""
        terms = self.reconstruction(fake, real, mouth_mask, fake_features, real_features)
        terms["adv"] = generator_adversarial_loss(fake_logits, self.patch_weights(mouth_mask, fake_logits))
        terms["total"] = self.config.rec_weight * terms["rec"] + self.config.adv_weight * terms["adv"]
        return terms


def build_generator_loss(config: LossConfig, storage: Storage | None = None) -> GeneratorLoss:
    """The generator loss; loads VGG19 from ``config.vgg_weights`` when set (a missing file is an error)."""
    vgg = load_vgg19(config.vgg_weights, list(config.vgg_layers), storage) if config.vgg_weights else None
    return GeneratorLoss(config, ReconstructionLoss(config, vgg))
