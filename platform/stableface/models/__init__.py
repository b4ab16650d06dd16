"""The StableFace networks: audio encoder, audio2expression, smoothing, renderer, discriminator, VGG19.

Build them from a :class:`ModelConfig` (``compose_model_config("cpu", "full")`` reads the YAML
presets); save and load them with configs inside the checkpoint (:mod:`.checkpoint`).
"""

from stableface.models.checkpoint import (
    Checkpoint,
    load_component,
    load_models,
    read_checkpoint,
    save_checkpoint,
    save_models,
)
from stableface.models.config import (
    AblationConfig,
    Audio2ExpressionConfig,
    AudioEncoderConfig,
    DiscriminatorConfig,
    ModelConfig,
    RendererConfig,
    SmoothingConfig,
    apply_ablation,
    available_presets,
    compose_model_config,
    load_ablation,
)
from stableface.models.networks import (
    COMPONENTS,
    StableFaceModels,
    build_audio2expression,
    build_component,
    build_discriminator,
    build_models,
    build_renderer,
    build_smoothing,
    count_parameters,
)

__all__ = [
    "COMPONENTS",
    "AblationConfig",
    "Audio2ExpressionConfig",
    "AudioEncoderConfig",
    "Checkpoint",
    "DiscriminatorConfig",
    "ModelConfig",
    "RendererConfig",
    "SmoothingConfig",
    "StableFaceModels",
    "apply_ablation",
    "available_presets",
    "build_audio2expression",
    "build_component",
    "build_discriminator",
    "build_models",
    "build_renderer",
    "build_smoothing",
    "compose_model_config",
    "count_parameters",
    "load_ablation",
    "load_component",
    "load_models",
    "read_checkpoint",
    "save_checkpoint",
    "save_models",
]
