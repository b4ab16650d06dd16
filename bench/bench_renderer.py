"""Renderer forward throughput (frames/s) and FLOPs per frame for the ``paper`` and ``cpu`` presets,
and the frames/s of one full stage-2 training step, each in fp32 and bf16 side by side.

bf16 (autocast, :mod:`stableface.utils.precision`) is measured where the CPU has native bf16
kernels (AMX or AVX512-BF16); the two precisions take turns in one run, so the ratio holds on a
loaded machine even when the absolute figures do not. Measured with 1 torch thread, batch 1, one
sequence of the preset's T frames, full model (every ablation switch on). FLOPs come from
``torch.utils.flop_counter.FlopCounterMode`` (convolutions and matrix products; norms and
activations are not counted), so a GPU figure can be predicted as FLOPs / achieved FLOP rate.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from stableface.config import compose
from stableface.losses import LossConfig, build_generator_loss
from stableface.models import build_models, compose_model_config, count_parameters
from stableface.training.loop import WorkerContext
from stableface.training.stage2 import Stage2Trainer
from stableface.utils.precision import Precision, cpu_bf16_kernels

logger = logging.getLogger(__name__)

PRESETS = ("cpu", "paper")
# One thread: what a dub actor or a training worker per core uses. On a machine other work shares,
# two threads mostly measure OpenMP waiting for a busy core (fp32 and bf16 alike ~4 frames/s).
THREADS = 1
CPU = torch.device("cpu")
BATCH = 1
STAGES = ("encoder", "audio_encoder", "fusion", "res_blocks", "dependency", "decoder")
GIGA = 1e9


def _inputs(config) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    frames, size = config.renderer.sequence_length, config.renderer.image_size
    window, mels = config.audio_encoder.window, config.audio_encoder.n_mels
    generator = torch.Generator().manual_seed(0)
    background = torch.rand(BATCH, frames, 3, size, size, generator=generator) * 2 - 1
    shape = torch.rand(BATCH, frames, 1, size, size, generator=generator)
    audio = torch.randn(BATCH, frames, window, mels, generator=generator)
    warped = None  # the warped-texture input of a preset that has one
    if config.renderer.warped_texture:
        warped = torch.rand(BATCH, frames, 3, size, size, generator=generator) * 2 - 1
    return background, shape, audio, warped


def _interleaved(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Fastest seconds of each named run, the runs taking turns each repeat (after one warm-up
    each), so a change of load on a shared machine hits all of them alike."""
    for run_once in runs.values():
        run_once()
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run_once in runs.items():
            started = time.perf_counter()
            run_once()
            seconds[name].append(time.perf_counter() - started)
    return {name: min(values) for name, values in seconds.items()}


def _measure(preset: str, precisions: dict[str, Precision], repeats: int) -> dict[str, float]:
    config = compose_model_config(preset, "full")
    models = build_models(config).eval()
    renderer = models.renderer
    background, shape, audio, warped = _inputs(config)
    frames = BATCH * config.renderer.sequence_length

    def forward(precision: Precision) -> torch.Tensor:
        with torch.no_grad(), precision.autocast():
            return renderer(background, shape, audio, warped).float()  # (B, T, 3, S, S)

    with torch.no_grad():
        counter = FlopCounterMode(display=False)
        with counter:
            renderer(background, shape, audio, warped)
        per_module = counter.get_flop_counts()
    total = counter.get_total_flops()
    seconds = _interleaved({name: functools.partial(forward, p) for name, p in precisions.items()}, repeats)
    figures = {
        f"{preset}.image_size": config.renderer.image_size,
        f"{preset}.frames_per_sequence": config.renderer.sequence_length,
        f"{preset}.gflops_per_frame": round(total / frames / GIGA, 2),
    }
    for name, value in seconds.items():
        figures[f"{preset}.forward_frames_per_s.{name}"] = round(frames / value, 2)
    if len(precisions) > 1:
        figures[f"{preset}.forward_speedup_bf16"] = round(seconds["fp32"] / seconds["bf16"], 2)
        difference = (forward(precisions["bf16"]) - forward(precisions["fp32"])).abs()
        figures[f"{preset}.bf16_output_abs_difference_mean"] = round(float(difference.mean()), 5)
        figures[f"{preset}.bf16_output_abs_difference_max"] = round(float(difference.max()), 4)
    for stage in STAGES:
        key = next((name for name in per_module if name.endswith(f".{stage}") and name.count(".") == 1), None)
        if key is not None:
            figures[f"{preset}.gflops_per_frame.{stage}"] = round(
                sum(per_module[key].values()) / frames / GIGA, 3
            )
    for name in ("renderer", "audio2expression", "smoothing", "discriminator"):
        figures[f"{preset}.params.{name}"] = count_parameters(getattr(models, name))
    logger.info("%s forward: %s frames/s", preset, {k: round(frames / v, 2) for k, v in seconds.items()})
    return figures


def _train_step_rates(preset: str, precisions: dict[str, Precision], repeats: int) -> dict[str, float]:
    """Frames/s of the real stage-2 step (:meth:`Stage2Trainer.train_step`: discriminator step,
    then renderer with 20 L_rec + L_adv), joint phase (the smoothing trains too), per precision."""
    config = compose_model_config(preset, "full")
    schedule = compose("train", ["dataset_uri=unused", f"model={preset}", "schedule=cpu"]).schedule
    background, shape, audio = _inputs(config)
    generator = torch.Generator().manual_seed(1)
    mask = torch.zeros_like(shape)
    size = config.renderer.image_size
    mask[..., size // 2 :, size // 4 : 3 * size // 4] = 1.0  # a lower-face box
    batch = {
        "background": background * (1 - mask),
        "target": background,
        "mask": mask,
        "shape": shape,
        "audio": audio,
        "expression": torch.randn(
            BATCH, config.renderer.sequence_length, config.smoothing.expression_dim, generator=generator
        ),
    }
    trainers = {}
    for name, precision in precisions.items():
        torch.manual_seed(0)
        models = build_models(config)
        trainers[name] = Stage2Trainer(
            models.renderer, models.smoothing, models.discriminator, build_generator_loss(LossConfig()),
            schedule.stage2, WorkerContext(), amp=precision.enabled,
        )  # fmt: skip
    seconds = _interleaved(
        {name: functools.partial(trainer.train_step, batch) for name, trainer in trainers.items()}, repeats
    )
    frames = BATCH * config.renderer.sequence_length
    figures = {
        f"{preset}.train_step_frames_per_s.{name}": round(frames / value, 2)
        for name, value in seconds.items()
    }
    if len(precisions) > 1:
        figures[f"{preset}.train_step_speedup_bf16"] = round(seconds["fp32"] / seconds["bf16"], 2)
    logger.info(
        "%s training step: %s frames/s", preset, {k: round(frames / v, 2) for k, v in seconds.items()}
    )
    return figures


def run(quick: bool = False) -> dict:
    before = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        # Other work on the machine slows every figure down: the load average says how busy it was.
        precisions = {"fp32": Precision(CPU, enabled=False)}
        if cpu_bf16_kernels() is not None:
            precisions["bf16"] = Precision(CPU, enabled=True)
        figures: dict = {
            "torch_threads": THREADS,
            "batch": BATCH,
            "cpu_bf16_kernels": cpu_bf16_kernels() or "none (bf16 not measured)",
            "load_average_1min_before": os.getloadavg()[0],
        }
        for preset in PRESETS:
            figures.update(_measure(preset, precisions, repeats=1 if quick else 3))
        for preset in PRESETS:
            # The paper preset's step takes about a minute in fp32 on 2 cores: one timed step each.
            repeats = 1 if quick or preset == "paper" else 3
            figures.update(_train_step_rates(preset, precisions, repeats))
        figures["load_average_1min_after"] = os.getloadavg()[0]
        return figures
    finally:
        torch.set_num_threads(before)
