"""Loss weights and the perceptual-loss source (paper: total = 20 L_rec + 1 L_adv)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class LossConfig:
    rec_weight: float = 20.0  # L_rec's weight in the generator total
    adv_weight: float = 1.0  # L_adv's weight in the generator total
    mouth_weight: float = 2.0  # L1 weight inside the eroded (mouth) region; 1 elsewhere
    perceptual_weight: float = 1.0  # VGG19 term inside L_rec, when vgg_weights is set
    # torchvision-format VGG19 state dict (local path or URI, e.g. vgg19-dcbb9e9d.pth); None = use
    # discriminator feature matching as the perceptual term instead (VGG cannot be downloaded here).
    vgg_weights: str | None = None
    vgg_layers: list[str] = field(
        default_factory=lambda: ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
    )
    vgg_layer_weights: list[float] = field(default_factory=lambda: [1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0])
    feature_matching_weight: float = 1.0  # the discriminator feature-matching term inside L_rec, without VGG
    # Not in the paper: L1 between the horizontal and vertical pixel differences of fake and real
    # inside the mouth region, a term inside L_rec that an L1-blurred mouth (weak edges: lips, teeth)
    # pays for and that needs no pretrained weights. 0 = off.
    mouth_gradient_weight: float = 0.0
    # Not in the paper: both adversarial losses average the PatchGAN logits over the mouth's patches
    # only (weighted by the mouth share of each patch), so the discriminator judges mouths, not the
    # background that composite_background makes identical in real and generated frames.
    mouth_adversarial: bool = False
