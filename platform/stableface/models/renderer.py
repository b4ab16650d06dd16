"""The neural renderer: (eroded background, smoothed face shape[, audio]) -> frames.

encoder    conv 7x7 s1, conv 4x4 s2, conv 4x4 s2, each instance norm + leaky ReLU
           (256 px input -> 64x64x256 features)
fusion     audio features modulate the image features            (switch: audio_fusion)
res blocks 8 x (conv 3x3, IN, leaky ReLU, conv 3x3, IN) + skip
dependency transformer over the T*p*p patches of a sequence        (switch: dependency)
decoder    two transposed conv 4x4 s2 (IN + leaky ReLU), conv 7x7, tanh
           (with warped_texture one more channel: a per-pixel blend of the warped texture)
composite  prediction inside the blanked region, the background elsewhere (switch: composite_background)
Every stage but the dependency module sees one frame at a time. With ``reference_frames`` = R > 0,
R fixed frames of the speaker (a buffer set by :meth:`Renderer.set_references` before training,
saved with the weights) are 3R more input channels of every frame. With ``warped_texture``, one
texture frame of the speaker and its mesh (buffers set by :meth:`Renderer.set_texture`, saved with
the weights) are warped to every frame's face shape outside the network
(:func:`stableface.face.warp.warp_texture`, see :meth:`Renderer.warp_source`), and the warped
texture is 3 more input channels, and a 4th decoder channel is a per-pixel blend weight between
the warped texture and the network's own colours: where the warp has the speaker's pixels the
network may pass them through instead of having to learn to reproduce them.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from stableface.face.face_model import N_VERTICES
from stableface.face.warp import IMAGE_DIMS, WarpTexture
from stableface.models.audio_encoder import AudioEncoder
from stableface.models.checks import TensorShapeError, check_shape
from stableface.models.config import AudioEncoderConfig, RendererConfig
from stableface.models.dependency import DependencyModule
from stableface.models.fusion import AudioFusion

BACKGROUND_CHANNELS = 3
REFERENCE_CHANNELS = 3  # each reference frame is an RGB crop
WARPED_CHANNELS = 3  # the warped texture is an RGB crop
OUTPUT_CHANNELS = 3
BLEND_CHANNELS = 1  # with warped_texture: the weight of the warped texture per output pixel
STEM_KERNEL = 7  # the first encoder conv and the last decoder conv
DOWN_KERNEL = 4  # stride-2 convs and transposed convs
RES_KERNEL = 3
# The eroded background's blanked pixels are 0 in every channel (stableface.face.erosion.blank_masked),
# -1 in the model's [-1, 1] range; a source pixel that is exactly black is re-predicted too, harmlessly.
BLANK_VALUE = -1.0
BLANK_TOLERANCE = 1e-4


def blanked_region(background: torch.Tensor) -> torch.Tensor:
    """(N, 1, S, S) {0, 1} float mask of the pixels blanked in every channel of (N, 3, S, S) backgrounds."""
    return (background <= BLANK_VALUE + BLANK_TOLERANCE).all(dim=1, keepdim=True).to(background.dtype)


def conv_norm_act(in_ch: int, out_ch: int, kernel: int, stride: int, slope: float) -> nn.Sequential:
    padding = (kernel - stride + 1) // 2  # 3 for 7x7 s1, 1 for 4x4 s2: exact halving
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=padding),
        nn.InstanceNorm2d(out_ch, affine=True),
        nn.LeakyReLU(slope),
    )


def upconv_norm_act(in_ch: int, out_ch: int, slope: float) -> nn.Sequential:
    return nn.Sequential(
        nn.ConvTranspose2d(in_ch, out_ch, DOWN_KERNEL, stride=2, padding=1),  # exact doubling
        nn.InstanceNorm2d(out_ch, affine=True),
        nn.LeakyReLU(slope),
    )


class ResidualBlock(nn.Module):
    def __init__(self, channels: int, slope: float):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, RES_KERNEL, padding=RES_KERNEL // 2),
            nn.InstanceNorm2d(channels, affine=True),
            nn.LeakyReLU(slope),
            nn.Conv2d(channels, channels, RES_KERNEL, padding=RES_KERNEL // 2),
            nn.InstanceNorm2d(channels, affine=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)  # (N, C, h, w)


class Renderer(nn.Module):
    def __init__(self, config: RendererConfig, audio: AudioEncoderConfig):
        super().__init__()
        self.config = config
        self.audio_config = audio
        c1, c2, c3 = config.channels
        slope = config.leaky_slope
        in_channels = (
            BACKGROUND_CHANNELS
            + config.shape_channels
            + REFERENCE_CHANNELS * config.reference_frames
            + WARPED_CHANNELS * config.warped_texture
        )
        size = config.image_size
        references = torch.zeros(config.reference_frames, REFERENCE_CHANNELS, size, size)  # (R, 3, S, S)
        self.register_buffer("references", references if config.reference_frames else None)
        # The texture frame stays uint8 (exact whatever the model's dtype), its mesh in crop pixels.
        texture = torch.zeros(size, size, WARPED_CHANNELS, dtype=torch.uint8)  # (S, S, 3)
        texture_vertices = torch.zeros(N_VERTICES, IMAGE_DIMS)  # (N, 2)
        self.register_buffer("texture", texture if config.warped_texture else None)
        self.register_buffer("texture_vertices", texture_vertices if config.warped_texture else None)
        self.encoder = nn.Sequential(
            conv_norm_act(in_channels, c1, STEM_KERNEL, 1, slope),  # (N, c1, S, S)
            conv_norm_act(c1, c2, DOWN_KERNEL, 2, slope),  # (N, c2, S/2, S/2)
            conv_norm_act(c2, c3, DOWN_KERNEL, 2, slope),  # (N, c3, S/4, S/4)
        )
        self.audio_encoder: AudioEncoder | None = None
        self.fusion: AudioFusion | None = None
        if config.audio_fusion:
            self.audio_encoder = AudioEncoder(audio)
            self.fusion = AudioFusion(c3, audio.out_dim, config.fusion_hidden, slope)
        self.res_blocks = nn.Sequential(*(ResidualBlock(c3, slope) for _ in range(config.n_res_blocks)))
        self.dependency: DependencyModule | None = None
        if config.dependency:
            self.dependency = DependencyModule(
                channels=c3,
                feature_size=config.feature_size,
                patch_grid=config.patch_grid,
                d_model=config.d_model,
                n_layers=config.n_layers,
                n_heads=config.n_heads,
                ff_mult=config.ff_mult,
                dropout=config.dropout,
                max_frames=config.sequence_length,
            )
        decoded = OUTPUT_CHANNELS + BLEND_CHANNELS * config.warped_texture
        self.decoder = nn.Sequential(
            upconv_norm_act(c3, c2, slope),  # (N, c2, S/2, S/2)
            upconv_norm_act(c2, c1, slope),  # (N, c1, S, S)
            nn.Conv2d(c1, decoded, STEM_KERNEL, padding=STEM_KERNEL // 2),  # (N, 3 [+ 1], S, S)
        )

    def set_references(self, frames: torch.Tensor) -> None:
        """The speaker's (R, 3, S, S) reference frames in [-1, 1] (R = ``config.reference_frames``)."""
        size = self.config.image_size
        check_shape(
            "reference frames", frames, (self.config.reference_frames, REFERENCE_CHANNELS, size, size)
        )
        if self.references is None:
            raise TensorShapeError("reference frames", "the renderer was built with reference_frames = 0")
        self.references.copy_(frames)

    def set_texture(self, texture: WarpTexture) -> None:
        """The speaker's texture frame and its mesh, which :meth:`warp_source` gives back."""
        size = self.config.image_size
        if self.texture is None:
            raise TensorShapeError("texture frame", "the renderer was built with warped_texture = false")
        check_shape("texture frame", torch.from_numpy(texture.image), (size, size, WARPED_CHANNELS))
        check_shape("texture mesh", torch.from_numpy(texture.vertices), (N_VERTICES, IMAGE_DIMS))
        self.texture.copy_(torch.from_numpy(texture.image))
        self.texture_vertices.copy_(torch.from_numpy(np.asarray(texture.vertices, np.float32)))

    def warp_source(self) -> WarpTexture | None:
        """The texture frame to warp to each frame's face shape (None without ``warped_texture``)."""
        if self.texture is None:
            return None
        if not self.texture_vertices.any():
            raise TensorShapeError(
                "texture frame", "the renderer has warped_texture but no texture (set_texture)"
            )
        return WarpTexture(
            image=self.texture.cpu().numpy(), vertices=self.texture_vertices.cpu().numpy().astype(np.float32)
        )

    def forward(
        self,
        background: torch.Tensor,
        shape: torch.Tensor,
        audio: torch.Tensor | None = None,
        warped: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(B, T, 3, S, S) eroded background in [-1, 1], (B, T, 1, S, S) smoothed face shape in [0, 1],
        (B, T, W, M) log-mel windows (used only with audio fusion), (B, T, 3, S, S) texture warped to
        each frame's mesh in [-1, 1] (only with ``warped_texture``) -> (B, T, 3, S, S) frames in [-1, 1]."""
        size = self.config.image_size
        check_shape("eroded background", background, ("B", "T", BACKGROUND_CHANNELS, size, size))
        batch, frames = background.shape[:2]
        check_shape("face shape", shape, (batch, frames, self.config.shape_channels, size, size))
        inputs = [background, shape]
        if self.config.warped_texture:
            if warped is None:
                raise TensorShapeError(
                    "warped texture", "the renderer was built with warped_texture and needs it"
                )
            check_shape("warped texture", warped, (batch, frames, WARPED_CHANNELS, size, size))
            inputs.append(warped.to(background.dtype))
        flat_background = background.flatten(0, 1)  # (B*T, 3, S, S)
        x = torch.cat(inputs, dim=2).flatten(0, 1)  # (B*T, 4 [+ 3], S, S)
        if self.references is not None:
            references = self.references.flatten(0, 1).to(x.dtype)  # (3R, S, S)
            x = torch.cat([x, references.expand(len(x), -1, -1, -1)], dim=1)  # (B*T, 4 [+ 3] + 3R, S, S)
        x = self.encoder(x)  # (B*T, C, S/4, S/4)
        if self.fusion is not None:
            if audio is None:
                raise TensorShapeError(
                    "audio windows", "the renderer was built with audio fusion and needs audio"
                )
            if audio.shape[:2] != (batch, frames):
                raise TensorShapeError(
                    "audio windows", f"expected {batch} x {frames} frames, got {tuple(audio.shape)}"
                )
            audio_features = self.audio_encoder(audio).flatten(0, 1)  # (B*T, A)
            x = self.fusion(x, audio_features)  # (B*T, C, S/4, S/4)
        x = self.res_blocks(x)  # (B*T, C, S/4, S/4)
        if self.dependency is not None:
            x = self.dependency(x, frames)  # (B*T, C, S/4, S/4)
        decoded = self.decoder(x)  # (B*T, 3 [+ 1], S, S)
        frames_out = torch.tanh(decoded[:, :OUTPUT_CHANNELS])  # (B*T, 3, S, S)
        if self.config.warped_texture:
            flat_warped = warped.flatten(0, 1).to(frames_out.dtype)  # (B*T, 3, S, S)
            # The warp has no pixels outside the target mesh (0 there: blanked, see blanked_region).
            has_warp = 1.0 - blanked_region(flat_warped)  # (B*T, 1, S, S)
            blend = torch.sigmoid(decoded[:, OUTPUT_CHANNELS:]) * has_warp  # (B*T, 1, S, S)
            frames_out = blend * flat_warped + (1.0 - blend) * frames_out  # (B*T, 3, S, S)
        if self.config.composite_background:
            region = blanked_region(flat_background)  # (B*T, 1, S, S)
            frames_out = region * frames_out + (1.0 - region) * flat_background.to(frames_out.dtype)
        return frames_out.view(batch, frames, OUTPUT_CHANNELS, size, size)  # (B, T, 3, S, S)
