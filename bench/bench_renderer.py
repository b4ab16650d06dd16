"""Renderer forward throughput (frames/s) and FLOPs per frame for the ``paper`` and ``cpu`` presets.

Also: the frames/s of one full stage-2 training step of the ``cpu`` preset (G + D, batch 1).
Measured with 2 torch threads (the CPU machines have 2 cores), batch 1, one sequence of the
preset's T frames, full model (every ablation switch on). FLOPs come from
``torch.utils.flop_counter.FlopCounterMode`` (convolutions and matrix products; norms and
activations are not counted), so a GPU figure can be predicted as FLOPs / achieved FLOP rate.
"""

from __future__ import annotations

import logging
import os
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from stableface.losses import LossConfig, build_generator_loss, discriminator_adversarial_loss
from stableface.models import build_models, compose_model_config, count_parameters

logger = logging.getLogger(__name__)

PRESETS = ("cpu", "paper")
THREADS = 2
BATCH = 1
STAGES = ("encoder", "audio_encoder", "fusion", "res_blocks", "dependency", "decoder")
GIGA = 1e9


def _inputs(config) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    frames, size = config.renderer.sequence_length, config.renderer.image_size
    window, mels = config.audio_encoder.window, config.audio_encoder.n_mels
    generator = torch.Generator().manual_seed(0)
    background = torch.rand(BATCH, frames, 3, size, size, generator=generator) * 2 - 1
    shape = torch.rand(BATCH, frames, 1, size, size, generator=generator)
    audio = torch.randn(BATCH, frames, window, mels, generator=generator)
    return background, shape, audio


def _measure(preset: str, repeats: int) -> dict[str, float]:
    config = compose_model_config(preset, "full")
    models = build_models(config).eval()
    renderer = models.renderer
    background, shape, audio = _inputs(config)
    frames = BATCH * config.renderer.sequence_length
    with torch.no_grad():
        counter = FlopCounterMode(display=False)
        with counter:  # doubles as the warm-up run
            renderer(background, shape, audio)
        per_module = counter.get_flop_counts()
        seconds = []
        for _ in range(repeats):
            started = time.perf_counter()
            renderer(background, shape, audio)
            seconds.append(time.perf_counter() - started)
    total = counter.get_total_flops()
    figures = {
        f"{preset}.image_size": config.renderer.image_size,
        f"{preset}.frames_per_sequence": config.renderer.sequence_length,
        f"{preset}.forward_frames_per_s": round(frames / min(seconds), 2),
        f"{preset}.forward_s_per_sequence_median": round(sorted(seconds)[len(seconds) // 2], 2),
        f"{preset}.gflops_per_frame": round(total / frames / GIGA, 2),
    }
    for stage in STAGES:
        key = next((name for name in per_module if name.endswith(f".{stage}") and name.count(".") == 1), None)
        if key is not None:
            figures[f"{preset}.gflops_per_frame.{stage}"] = round(
                sum(per_module[key].values()) / frames / GIGA, 3
            )
    for name in ("renderer", "audio2expression", "smoothing", "discriminator"):
        figures[f"{preset}.params.{name}"] = count_parameters(getattr(models, name))
    logger.info("%s: %.2f frames/s, %.1f GFLOP/frame", preset, frames / min(seconds), total / frames / GIGA)
    return figures


def _train_step_rate(preset: str, steps: int) -> float:
    """Frames/s of a full stage-2 step: smoothing + renderer + discriminator, L1 + feature matching + GAN."""
    config = compose_model_config(preset, "full")
    models = build_models(config).train()
    loss_fn = build_generator_loss(LossConfig())
    background, shape, audio = _inputs(config)
    expression = torch.randn(BATCH, config.renderer.sequence_length, config.smoothing.expression_dim)
    target, mask = background.clone(), torch.zeros_like(shape)
    condition = torch.cat([background, shape], dim=2)
    g_opt = torch.optim.Adam([*models.renderer.parameters(), *models.smoothing.parameters()], lr=1e-4)
    d_opt = torch.optim.Adam(models.discriminator.parameters(), lr=1e-4)
    seconds = []
    for _ in range(steps + 1):  # the first step is a warm-up
        started = time.perf_counter()
        fake, _ = models.generate(background, shape, expression, audio)
        fake_logits, fake_features = models.discriminator(fake, condition)
        _, real_features = models.discriminator(target, condition)
        g_opt.zero_grad()
        loss_fn(fake, target, mask, fake_logits, fake_features, real_features)["total"].backward()
        g_opt.step()
        real_logits, _ = models.discriminator(target, condition)
        fake_logits, _ = models.discriminator(fake.detach(), condition)
        d_opt.zero_grad()
        discriminator_adversarial_loss(real_logits, fake_logits).backward()
        d_opt.step()
        seconds.append(time.perf_counter() - started)
    return BATCH * config.renderer.sequence_length / min(seconds[1:])


def run(quick: bool = False) -> dict:
    before = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        # Other work on the machine slows every figure down: the load average says how busy it was.
        figures: dict = {
            "torch_threads": THREADS,
            "batch": BATCH,
            "load_average_1min_before": os.getloadavg()[0],
        }
        for preset in PRESETS:
            figures.update(_measure(preset, repeats=1 if quick else 3))
        figures["cpu.train_step_frames_per_s"] = round(_train_step_rate("cpu", steps=1 if quick else 3), 2)
        figures["load_average_1min_after"] = os.getloadavg()[0]
        return figures
    finally:
        torch.set_num_threads(before)
