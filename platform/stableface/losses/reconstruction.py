"""L_rec = mouth-weighted L1 + a perceptual term (VGG19 when its weights are configured,
discriminator feature matching otherwise)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from stableface.losses.adversarial import feature_matching_loss
from stableface.losses.config import LossConfig
from stableface.models.vgg import VGG19Features

logger = logging.getLogger(__name__)

VGG_SOURCE = "vgg19"
FEATURE_MATCHING_SOURCE = "feature_matching"


def mouth_weighted_l1(
    fake: torch.Tensor, real: torch.Tensor, mouth_mask: torch.Tensor, mouth_weight: float
) -> torch.Tensor:
    """(B, T, 3, H, W) frames, (B, T, 1, H, W) mask in {0, 1} -> mean of w * |fake - real|,
    w = mouth_weight inside the mask and 1 outside."""
    weights = 1.0 + (mouth_weight - 1.0) * mouth_mask  # (B, T, 1, H, W)
    return (weights * (fake - real).abs()).mean()


def image_gradients(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(..., H, W) -> horizontal (..., H, W-1) and vertical (..., H-1, W) neighbour differences."""
    return images[..., :, 1:] - images[..., :, :-1], images[..., 1:, :] - images[..., :-1, :]


def mouth_gradient_l1(fake: torch.Tensor, real: torch.Tensor, mouth_mask: torch.Tensor) -> torch.Tensor:
    """(B, T, 3, H, W) frames, (B, T, 1, H, W) mask in {0, 1} -> mean over all pixels of the L1
    difference of fake's and real's pixel differences where both neighbours are in the mask (the
    scale of :func:`mouth_weighted_l1`, so their weights compare)."""
    (fake_x, fake_y), (real_x, real_y) = image_gradients(fake), image_gradients(real)
    mask_x = mouth_mask[..., :, 1:] * mouth_mask[..., :, :-1]  # (B, T, 1, H, W-1)
    mask_y = mouth_mask[..., 1:, :] * mouth_mask[..., :-1, :]  # (B, T, 1, H-1, W)
    return (mask_x * (fake_x - real_x).abs()).mean() + (mask_y * (fake_y - real_y).abs()).mean()


def perceptual_loss(
    extractor: VGG19Features, fake: torch.Tensor, real: torch.Tensor, layer_weights: Sequence[float]
) -> torch.Tensor:
    """sum_i w_i * mean |phi_i(fake) - phi_i(real)| over (B, T, 3, H, W) frames; real is a fixed target."""
    fake_features = extractor(fake.flatten(0, 1))  # [(B*T, C_i, H_i, W_i)]
    with torch.no_grad():
        real_features = extractor(real.flatten(0, 1))
    terms = [w * F.l1_loss(f, r) for w, f, r in zip(layer_weights, fake_features, real_features, strict=True)]
    return torch.stack(terms).sum()


class ReconstructionLoss(nn.Module):
    def __init__(self, config: LossConfig, vgg: VGG19Features | None = None):
        super().__init__()
        if vgg is not None and len(config.vgg_layer_weights) != len(vgg.layer_names):
            raise ValueError(
                f"vgg_layer_weights: {len(config.vgg_layer_weights)} weights, {len(vgg.layer_names)} layers"
            )
        self.config = config
        self.vgg = vgg
        self.perceptual_source = VGG_SOURCE if vgg is not None else FEATURE_MATCHING_SOURCE
        if vgg is not None:
            logger.info(
                "perceptual term: VGG19 (%s), weight %s", config.vgg_weights, config.perceptual_weight
            )
        else:
            logger.info(
                "perceptual term: discriminator feature matching, weight %s (no VGG19 weights configured)",
                config.feature_matching_weight,
            )

    def forward(
        self,
        fake: torch.Tensor,
        real: torch.Tensor,
        mouth_mask: torch.Tensor,
        fake_features: Sequence[torch.Tensor] | None = None,
        real_features: Sequence[torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Named terms and their sum ``rec``; the discriminator features are needed without VGG."""
        terms = {"l1": mouth_weighted_l1(fake, real, mouth_mask, self.config.mouth_weight)}
        pixel = terms["l1"]
        if self.config.mouth_gradient_weight:
            terms["mouth_gradient"] = mouth_gradient_l1(fake, real, mouth_mask)
            pixel = pixel + self.config.mouth_gradient_weight * terms["mouth_gradient"]
        if self.vgg is not None:
            terms["perceptual"] = perceptual_loss(self.vgg, fake, real, self.config.vgg_layer_weights)
            terms["rec"] = pixel + self.config.perceptual_weight * terms["perceptual"]
        else:
            if fake_features is None or real_features is None:
                raise ValueError(
                    "reconstruction loss: feature matching is the perceptual term here (no VGG19 weights), "
                    "so pass the discriminator features of the fake and the real frames"
                )
            terms["feature_matching"] = feature_matching_loss(fake_features, real_features)
            terms["rec"] = pixel + self.config.feature_matching_weight * terms["feature_matching"]
        return terms
