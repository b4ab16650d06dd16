"""Model configs: one dataclass per network, the ablation switches, and preset composition.

Presets (``stableface/conf/model/<name>.yaml``) set sizes; ablations
(``stableface/conf/ablation/<name>.yaml``) switch the paper's Table V components on and off.
The YAML keys are exactly the dataclass fields, so the train job can plug both in as Hydra
config groups; :func:`compose_model_config` composes them with plain OmegaConf.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from omegaconf import OmegaConf

from stableface.errors import InputError

CONF_PACKAGE = "stableface.conf"
MODEL_GROUP = "model"
ABLATION_GROUP = "ablation"
SMOOTHING_MODES = ("adaptive", "gaussian", "global", "none")


@dataclass
class AudioEncoderConfig:
    """Log-mel window of one video frame -> one feature vector (paper: 64-d)."""

    n_mels: int = 80  # M, bands per mel frame (must match the dataset's audio features)
    window: int = 16  # W, mel frames per video frame
    channels: list[int] = field(
        default_factory=lambda: [128, 128, 128, 128]
    )  # Conv1d widths; all but the first halve W
    out_dim: int = 64
    leaky_slope: float = 0.2

    def __post_init__(self) -> None:
        _require(self.channels, "audio_encoder.channels", "needs at least one layer")
        stride_total = 2 ** (len(self.channels) - 1)
        if self.window % stride_total:
            raise InputError(
                "audio_encoder.window",
                f"{self.window} mel frames is not divisible by 2^(layers-1) = {stride_total}",
            )


@dataclass
class Audio2ExpressionConfig:
    """Transformer-S2A style: transformer layers over the audio feature sequence -> mouth expression."""

    d_model: int = 256
    n_layers: int = 4
    n_heads: int = 4
    ff_mult: int = 4
    dropout: float = 0.1
    mouth_dim: int = 32  # the mouth part of the expression vector (it comes first)
    # Frames each side a frame may attend to; None = the whole sequence. A window keeps long
    # inference sequences in the same regime as short training sequences.
    attention_window: int | None = None
    # Inputs are per-utterance normalised windows (stableface.audio.features.normalise_utterance),
    # not the fixed-constant ones datasets store and the renderer reads: a voice, microphone or
    # level the network never heard shifts its input less. Part of the network's contract, so it
    # lives here and travels in every checkpoint.
    utterance_norm: bool = False

    def __post_init__(self) -> None:
        _check_heads(self.d_model, self.n_heads, "audio2expression")


@dataclass
class SmoothingConfig:
    """Temporal smoothing of the face-shape images (paper Table I and Fig. 9)."""

    mode: str = (
        "adaptive"  # adaptive (Table I network) | gaussian (fixed) | global (one learnable kernel) | none
    )
    kernel_size: int = 5  # K, odd: frames t - K//2 .. t + K//2
    expression_dim: int = 53  # input of the adaptive weight network (32 mouth + 21 upper)
    channels: list[int] = field(default_factory=lambda: [32, 32, 16, 16])  # Conv1D-BN-ReLU widths
    conv_kernel: int = 3
    sigma: float = 1.0  # frames; the gaussian mode's kernel, the global and adaptive modes' initial one

    def __post_init__(self) -> None:
        if self.mode not in SMOOTHING_MODES:
            raise InputError("smoothing.mode", f"'{self.mode}' is not one of {', '.join(SMOOTHING_MODES)}")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise InputError("smoothing.kernel_size", f"K must be odd and positive, got {self.kernel_size}")
        if self.conv_kernel % 2 == 0:
            raise InputError(
                "smoothing.conv_kernel", f"must be odd to keep the length, got {self.conv_kernel}"
            )
        if self.sigma <= 0:
            raise InputError("smoothing.sigma", f"must be positive, got {self.sigma}")


@dataclass
class RendererConfig:
    """The neural renderer: encoder, audio fusion, residual blocks, dependency module, decoder."""

    image_size: int = 256
    shape_channels: int = 1  # the face-shape image; the eroded background adds 3
    channels: list[int] = field(
        default_factory=lambda: [64, 128, 256]
    )  # conv 7x7 s1, conv 4x4 s2, conv 4x4 s2
    n_res_blocks: int = 8
    leaky_slope: float = 0.2
    audio_fusion: bool = True  # Table V switch (set through the ablation config)
    fusion_hidden: int = 256  # width of the audio -> modulation MLP
    dependency: bool = True  # Table V switch (set through the ablation config)
    patch_grid: int = 4  # p: each feature map is split into p x p patches = tokens per frame
    d_model: int = 512
    n_layers: int = 4  # N transformer blocks
    n_heads: int = 8
    ff_mult: int = 4
    dropout: float = 0.0
    sequence_length: int = 12  # T: frames per training sequence = the temporal positions learned
    # Not in the paper: the output is the network's prediction only inside the eroded (blanked)
    # region and the input background elsewhere, so every pixel outside the mouth region is the
    # source's own and the network (and every loss on its output) spends its capacity on the mouth.
    composite_background: bool = False
    # Not in the paper: R frames of the speaker's own training footage (the widest-open mouths, so
    # teeth and lips show) are extra input channels of every frame, so the renderer can copy their
    # texture instead of memorising it (Wav2Lip, IP_LAP, MuseTalk). They are chosen once at
    # training and kept in the renderer's state (the speaker model carries them); 0 = off.
    reference_frames: int = 0
    # Not in the paper: one frame of the speaker's own training footage (the widest-open mouth) is
    # warped piecewise-affinely along the mesh correspondences to every frame's face shape and fed
    # as 3 more input channels, so the renderer gets lips, skin and teeth where the target mouth
    # needs them and predicts only what a warp cannot (stableface.face.warp). The frame and its
    # mesh are kept in the renderer's state.
    warped_texture: bool = False

    def __post_init__(self) -> None:
        if self.reference_frames < 0:
            raise InputError("renderer.reference_frames", f"{self.reference_frames} is negative")
        if len(self.channels) != 3:
            raise InputError(
                "renderer.channels", f"needs 3 widths (7x7 s1, 4x4 s2, 4x4 s2), got {self.channels}"
            )
        if self.image_size % 4:
            raise InputError(
                "renderer.image_size", f"{self.image_size} is not divisible by 4 (two stride-2 convs)"
            )
        if self.feature_size % self.patch_grid:
            raise InputError(
                "renderer.patch_grid",
                f"feature map side {self.feature_size} is not divisible by patch_grid {self.patch_grid}",
            )
        _check_heads(self.d_model, self.n_heads, "renderer")

    @property
    def feature_size(self) -> int:
        """Side of the bottleneck feature map (64 at 256 px)."""
        return self.image_size // 4


@dataclass
class DiscriminatorConfig:
    """PatchGAN (pix2pix / Neural Voice Puppetry), per frame, optionally conditioned on the renderer input."""

    base_channels: int = 64
    n_layers: int = 3  # stride-2 layers after the first; 3 gives the 70x70 receptive field
    max_channels: int = 512
    conditional: bool = True  # also sees the eroded background + face shape
    leaky_slope: float = 0.2


@dataclass
class AblationConfig:
    """The paper's Table V switches; ``baseline`` is all four off."""

    audio_fusion: bool = True
    adaptive_smoothing: bool = True
    augmented_erosion: bool = True  # read by the data transform (stableface.face.erosion), not the models
    dependency_modelling: bool = True


@dataclass
class ModelConfig:
    """Everything needed to rebuild every network; checkpoints store it."""

    audio_encoder: AudioEncoderConfig = field(default_factory=AudioEncoderConfig)
    audio2expression: Audio2ExpressionConfig = field(default_factory=Audio2ExpressionConfig)
    smoothing: SmoothingConfig = field(default_factory=SmoothingConfig)
    renderer: RendererConfig = field(default_factory=RendererConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)

    def __post_init__(self) -> None:
        mouth, expression = self.audio2expression.mouth_dim, self.smoothing.expression_dim
        if mouth > expression:
            raise InputError("audio2expression.mouth_dim", f"{mouth} > smoothing.expression_dim {expression}")


def apply_ablation(config: ModelConfig, ablation: AblationConfig) -> ModelConfig:
    """A copy of ``config`` with the model-side Table V switches set from ``ablation``.

    The ablation wins over the preset. With adaptive smoothing on, an explicitly chosen Fig. 9
    variant (gaussian or global) is kept; with it off there is no smoothing at all.
    """
    smoothing_mode = config.smoothing.mode
    if not ablation.adaptive_smoothing:
        smoothing_mode = "none"
    elif smoothing_mode == "none":
        smoothing_mode = "adaptive"
    return dataclasses.replace(
        config,
        smoothing=dataclasses.replace(config.smoothing, mode=smoothing_mode),
        renderer=dataclasses.replace(
            config.renderer, audio_fusion=ablation.audio_fusion, dependency=ablation.dependency_modelling
        ),
    )


def available_presets(group: str) -> list[str]:
    """Names of the YAML files in ``stableface/conf/<group>/``."""
    folder = resources.files(CONF_PACKAGE) / group
    return sorted(item.name.removesuffix(".yaml") for item in folder.iterdir() if item.name.endswith(".yaml"))


def _load_group(group: str, name: str) -> Any:
    known = available_presets(group)
    if name not in known:
        raise InputError(f"{group} preset '{name}'", f"unknown; known: {', '.join(known)}")
    text = (resources.files(CONF_PACKAGE) / group / f"{name}.yaml").read_text(encoding="utf-8")
    return OmegaConf.create(text)


def load_ablation(name: str = "full") -> AblationConfig:
    merged = OmegaConf.merge(OmegaConf.structured(AblationConfig), _load_group(ABLATION_GROUP, name))
    return OmegaConf.to_object(merged)  # type: ignore[return-value]


def compose_model_config(
    preset: str = "cpu", ablation: str = "full", overrides: Sequence[str] = ()
) -> ModelConfig:
    """Preset + ``key=value`` overrides (e.g. ``renderer.n_res_blocks=2``), then the ablation switches."""
    merged = OmegaConf.merge(
        OmegaConf.structured(ModelConfig),
        _load_group(MODEL_GROUP, preset),
        OmegaConf.from_dotlist(list(overrides)),
    )
    config: ModelConfig = OmegaConf.to_object(merged)  # type: ignore[assignment]
    return apply_ablation(config, load_ablation(ablation))


def _require(value: Sequence[Any], name: str, problem: str) -> None:
    if not value:
        raise InputError(name, problem)


def _check_heads(d_model: int, n_heads: int, owner: str) -> None:
    if n_heads < 1 or d_model % n_heads:
        raise InputError(f"{owner}.n_heads", f"d_model {d_model} is not divisible by {n_heads} heads")


N_LIP_POINTS = 20  # iBUG-68 points 48-67: outer and inner lip contours
LIPSYNC_TEMPORAL_KERNEL = 3


@dataclass
class LipSyncConfig:
    """Sizes of the sync expert; saved inside its checkpoint."""

    window: int = 5  # video frames one embedding covers (SyncNet: 5 frames, 0.2 s at 25 fps)
    lip_dim: int = 2 * N_LIP_POINTS  # visual input per frame: (x, y) of the 20 lip points
    hidden: int = 128  # width of both streams
    embedding_dim: int = 64
    dropout: float = 0.1
    mel_window: int = 16  # mel frames of each video frame's input window (the dataset's frames_per_window)
    # The audio stream reads the central audio.window mel frames of each (80 ms): the temporal
    # convolutions over `window` frames already see the neighbours' (SyncNet: 0.2 s of audio), and
    # the whole 160 ms window would cost twice as much for mostly repeated mel frames.
    audio: AudioEncoderConfig = field(
        default_factory=lambda: AudioEncoderConfig(window=8, channels=[64, 64, 64], out_dim=128)
    )

    def __post_init__(self) -> None:
        if self.window < LIPSYNC_TEMPORAL_KERNEL or (self.window - 1) % (LIPSYNC_TEMPORAL_KERNEL - 1):
            raise ValueError(f"lip-sync window must be 3, 5, 7, ... frames, got {self.window}")
        if not 0 < self.audio.window <= self.mel_window or (self.mel_window - self.audio.window) % 2:
            raise ValueError(
                f"lip-sync audio.window {self.audio.window} must be a centred part of mel_window {self.mel_window}"
            )

    @property
    def temporal_layers(self) -> int:
        """Valid k3 convolutions that give a receptive field of ``window`` frames."""
        return (self.window - 1) // (LIPSYNC_TEMPORAL_KERNEL - 1)
