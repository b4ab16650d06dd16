"""Building every network from a ModelConfig, and the generator path that chains them."""

from __future__ import annotations

from collections.abc import Iterable

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
    """The four networks of one speaker model; stage 1 trains audio2expression, stage 2 the rest.

    ``components`` builds only some of them (the others are None): a serving stage that runs one
    network holds no weights of the others."""

    audio2expression: Audio2Expression | None
    smoothing: TemporalSmoothing | None
    renderer: Renderer | None
    discriminator: PatchDiscriminator | None

    def __init__(self, config: ModelConfig, components: Iterable[str] = COMPONENTS):
        super().__init__()
        self.config = config
        chosen = set(components)
        unknown = chosen - set(COMPONENTS)
        if unknown:
            raise KeyError(f"unknown model components {sorted(unknown)}; known: {', '.join(COMPONENTS)}")
        for name in COMPONENTS:
            setattr(self, name, BUILDERS[name](config) if name in chosen else None)

    @property
    def components(self) -> tuple[str, ...]:
        """The networks this instance holds, in :data:`COMPONENTS` order."""
        return tuple(name for name in COMPONENTS if getattr(self, name) is not None)

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
