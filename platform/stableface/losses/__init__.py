"""StableFace losses: mouth-weighted L1 + perceptual (VGG19 or feature matching), non-saturating GAN."""

from stableface.losses.adversarial import (
    discriminator_adversarial_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)
from stableface.losses.config import LossConfig
from stableface.losses.generator import GeneratorLoss, build_generator_loss
from stableface.losses.reconstruction import (
    FEATURE_MATCHING_SOURCE,
    VGG_SOURCE,
    ReconstructionLoss,
    mouth_weighted_l1,
    perceptual_loss,
)

__all__ = [
    "FEATURE_MATCHING_SOURCE",
    "VGG_SOURCE",
    "GeneratorLoss",
    "LossConfig",
    "ReconstructionLoss",
    "build_generator_loss",
    "discriminator_adversarial_loss",
    "feature_matching_loss",
    "generator_adversarial_loss",
    "mouth_weighted_l1",
    "perceptual_loss",
]
