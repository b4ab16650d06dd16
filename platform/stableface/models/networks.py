"""Building every network from a ModelConfig, and the generator path that chains them."""

from __future__ import annotations

import torch
from torch import nn

from stableface.models.audio2expression import Audio2Expression
from stableface.models.config import ModelConfig
from stableface.models.discriminator import PatchDiscriminator
from stableface.models.renderer import Renderer
from stableface.models.smoothing import TemporalSmoothing

COMPONENTS = ("audio2expression", "smoothing", "renderer", "discriminator")


def build_audio2expression(config: ModelConfig) -> Audio2Expression:
    return Audio2Expression(config.audio2expression, config.audio_encoder)


def build_smoothing(config: ModelConfig) -> TemporalSmoothing:
    return TemporalSmoothing(config.smoothing)


def build_renderer(config: ModelConfig) -> Renderer:
    return Renderer(config.renderer, config.audio_encoder)


def build_discriminator(config: ModelConfig) -> PatchDiscriminator:
    return PatchDiscriminator(config.discriminator)


BUILDERS = {
    "audio2expression": build_audio2expression,
    "smoothing": build_smoothing,
    "renderer": build_renderer,
    "discriminator": build_discriminator,
}


def build_component(config: ModelConfig, name: str) -> nn.Module:
    if name not in BUILDERS:
        raise KeyError(f"unknown model component '{name}'; known: {', '.join(COMPONENTS)}")
    return BUILDERS[name](config)


class StableFaceModels(nn.Module):
    """The four networks of one speaker model; stage 1 trains audio2expression, stage 2 the rest."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.audio2expression = build_audio2expression(config)
        self.smoothing = build_smoothing(config)
        self.renderer = build_renderer(config)
        self.discriminator = build_discriminator(config)

    def generate(
        self,
        background: torch.Tensor,
        shape: torch.Tensor,
        expression: torch.Tensor,
        audio: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Smooth the face shapes, then render: (B, T, 3, S, S) background, (B, T, 1, S, S) shape,
        (B, T, E) expression, (B, T, W, M) audio -> ((B, T, 3, S, S) frames, (B, T, K) smoothing weights)."""
        smoothed, weights = self.smoothing(shape, expression)  # (B, T, 1, S, S), (B, T, K)
        return self.renderer(background, smoothed, audio), weights


def build_models(config: ModelConfig) -> StableFaceModels:
    return StableFaceModels(config)


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
