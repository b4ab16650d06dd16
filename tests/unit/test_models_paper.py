"""One forward pass of the renderer at the paper's size: 256x256, T = 12, batch 1, on CPU."""

from __future__ import annotations

import logging
import time

import torch

from stableface.models import compose_model_config, count_parameters
from stableface.models.renderer import Renderer

logger = logging.getLogger(__name__)


def test_paper_preset_forward_at_256px_12_frames_on_cpu():
    torch.manual_seed(0)
    config = compose_model_config("paper", "full")
    renderer = Renderer(config.renderer, config.audio_encoder).eval()
    assert 85e6 < count_parameters(renderer) < 95e6  # two 65,536 x 512 patch projections dominate
    assert renderer.dependency.embed.weight.shape == (512, 256 * 16 * 16)  # 4x4 patches of 16x16x256
    assert len(renderer.dependency.blocks) == 4 and len(renderer.res_blocks) == 8
    encoded = []
    renderer.encoder.register_forward_hook(lambda module, args, output: encoded.append(output.shape))
    generator = torch.Generator().manual_seed(0)
    background = torch.rand(1, 12, 3, 256, 256, generator=generator) * 2 - 1
    shape = torch.rand(1, 12, 1, 256, 256, generator=generator)
    audio = torch.randn(1, 12, 16, 80, generator=generator)
    started = time.perf_counter()
    with torch.no_grad():
        frames = renderer(background, shape, audio)
    elapsed = time.perf_counter() - started
    assert frames.shape == (1, 12, 3, 256, 256)
    assert encoded == [(12, 256, 64, 64)]  # the encoder's 64x64x256 features, one map per frame
    assert torch.isfinite(frames).all() and frames.abs().max() <= 1.0
    assert frames.std() > 0
    logger.info("paper preset forward: %.1f s for 12 frames", elapsed)
