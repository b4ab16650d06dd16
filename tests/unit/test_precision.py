"""Precision that follows the hardware: which one is chosen, and how far bf16 is from fp32.

The bounds are on the ``cpu`` preset's networks (the sizes that run on CPUs), freshly initialised
with a fixed seed; one training step's losses on the ``tiny`` preset. On a CPU without AMX or
AVX512-BF16 the comparisons skip: bf16 never runs there, so there is nothing to bound.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from stableface.audio.features import AudioFeatureConfig
from stableface.config import compose
from stableface.inference.config import InferenceConfig
from stableface.inference.render import render_windows
from stableface.inference.speech import predict_mouth
from stableface.losses import LossConfig, build_generator_loss
from stableface.models import (
    build_audio2expression,
    build_discriminator,
    build_models,
    build_renderer,
    build_smoothing,
    compose_model_config,
)
from stableface.training.loop import WorkerContext
from stableface.training.stage1 import Stage1Trainer
from stableface.training.stage2 import Stage2Trainer
from stableface.utils import precision as precision_module
from stableface.utils.precision import CPU_BF16_FLAGS, Precision, cpu_bf16_kernels

CPU = torch.device("cpu")
needs_bf16 = pytest.mark.skipif(
    cpu_bf16_kernels() is None,
    reason="this CPU has neither AMX nor AVX512-BF16, so bf16 never runs here: nothing to compare",
)


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def cpu_preset():
    torch.manual_seed(0)
    config = compose_model_config("cpu", "full")
    return config, build_models(config).eval()


def _error(low: torch.Tensor | np.ndarray, full: torch.Tensor | np.ndarray) -> tuple[float, float]:
    difference = (torch.as_tensor(low).float() - torch.as_tensor(full).float()).abs()
    return float(difference.mean()), float(difference.max())


def test_bf16_runs_on_cpu_only_where_the_cpu_has_native_bf16_kernels():
    flags = precision_module._cpuinfo_flags()
    kernels = cpu_bf16_kernels()
    if kernels is not None:  # what torch's probe found, the kernel's flags confirm
        assert {name: flag for flag, name in CPU_BF16_FLAGS.items()}[kernels] in flags
    if not flags & set(CPU_BF16_FLAGS):
        assert kernels is None
    automatic = Precision(CPU, enabled=True)
    assert automatic.enabled == (kernels is not None)
    assert automatic.dtype == (torch.bfloat16 if kernels else torch.float32)
    assert not automatic.needs_scaling and not automatic.make_scaler().is_enabled()
    forced = Precision(CPU, enabled=False)
    assert not forced.enabled and forced.dtype == torch.float32
    assert "fp32" in forced.describe() and "amp=false" in forced.describe()
    with forced.autocast():
        assert not torch.is_autocast_enabled("cpu")


def test_the_choice_is_logged_once_per_process(caplog):
    with caplog.at_level(logging.INFO, logger="stableface.utils.precision"):
        for _ in range(3):
            Precision(CPU, enabled=True).announce("a test of announce")
    lines = [r.getMessage() for r in caplog.records if "a test of announce" in r.getMessage()]
    assert lines == [f"a test of announce: {Precision(CPU, enabled=True).describe()}"]


@needs_bf16
def test_renderer_bf16_output_stays_close_to_fp32_and_ignores_its_batch(cpu_preset):
    config, models = cpu_preset
    frames, size = config.renderer.sequence_length, config.renderer.image_size
    generator = torch.Generator().manual_seed(1)
    background = (torch.rand(2, frames, 3, size, size, generator=generator) * 2 - 1).numpy()
    shape = torch.rand(2, frames, size, size, generator=generator).numpy()
    audio = torch.randn(2, frames, config.audio_encoder.window, config.audio_encoder.n_mels,
                        generator=generator).numpy()  # fmt: skip
    warped = None  # the preset's warped-texture input, when it has one
    if config.renderer.warped_texture:
        warped = (torch.rand(2, frames, 3, size, size, generator=generator) * 2 - 1).numpy()
    bf16 = Precision(CPU, enabled=True)
    full = render_windows(models.renderer, background, shape, audio, CPU, warped=warped)
    low = render_windows(models.renderer, background, shape, audio, CPU, bf16, warped)
    assert low.dtype == np.float32 and low.shape == full.shape
    mean, largest = _error(low, full)
    assert 0 < mean < 0.01 and largest < 0.1, (mean, largest)  # on the [-1, 1] scale
    # A window's pixels do not depend on which windows share its forward pass: what keeps
    # streamed dubs identical whatever the chunk size.
    alone = render_windows(
        models.renderer,
        background[1:],
        shape[1:],
        audio[1:],
        CPU,
        bf16,
        None if warped is None else warped[1:],
    )
    np.testing.assert_array_equal(alone[0], low[1])


@needs_bf16
def test_audio2expression_and_discriminator_bf16_outputs_stay_close_to_fp32(cpu_preset):
    config, models = cpu_preset
    generator = torch.Generator().manual_seed(2)
    frames, size = config.renderer.sequence_length, config.renderer.image_size
    mel = torch.randn(400, config.audio_encoder.n_mels, generator=generator).numpy()
    starts = np.arange(0, 300, 4)  # (75,) output frames at 25 fps over 100 mel frames per second
    audio = AudioFeatureConfig(n_mels=config.audio_encoder.n_mels)
    inference = InferenceConfig()
    full = predict_mouth(models.audio2expression, mel, starts, audio, inference, CPU)
    low = predict_mouth(models.audio2expression, mel, starts, audio, inference, CPU, Precision(CPU, True))
    mean, largest = _error(low, full)
    scale = float(np.abs(full).mean())
    assert 0 < mean < 0.02 * scale and largest < 0.1 * scale, (mean, largest, scale)

    frames_in = torch.rand(2, frames, 3, size, size, generator=generator) * 2 - 1
    condition = torch.rand(2, frames, 4, size, size, generator=generator)
    with torch.no_grad():
        logits, features = models.discriminator(frames_in, condition)
        with Precision(CPU, True).autocast():
            low_logits, low_features = models.discriminator(frames_in, condition)
    for low_out, full_out in zip([low_logits, *low_features], [logits, *features], strict=True):
        mean, largest = _error(low_out, full_out)
        scale = float(full_out.abs().mean())
        assert mean < 0.03 * scale and largest < 0.5 * scale + 0.05, (mean, largest, scale)


@needs_bf16
def test_the_smoothing_weights_stay_fp32_inside_a_bf16_step(cpu_preset):
    config, models = cpu_preset
    generator = torch.Generator().manual_seed(3)
    frames, size = config.renderer.sequence_length, config.renderer.image_size
    shape = torch.rand(1, frames, 1, size, size, generator=generator)
    expression = torch.randn(1, frames, config.smoothing.expression_dim, generator=generator)
    precision = Precision(CPU, True)
    with torch.no_grad():
        full, full_weights = models.smoothing(shape, expression)
        with precision.autocast(), precision.full_precision():
            low, low_weights = models.smoothing(shape, expression)
    assert low.dtype == low_weights.dtype == torch.float32
    assert torch.equal(low, full) and torch.equal(low_weights, full_weights)


def _tiny_batch(config, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    frames, size = config.renderer.sequence_length, config.renderer.image_size
    mask = torch.zeros(2, frames, 1, size, size)
    mask[..., size // 2 :, size // 4 : 3 * size // 4] = 1.0
    target = torch.rand(2, frames, 3, size, size, generator=generator) * 2 - 1
    return {
        "audio": torch.randn(
            2, frames, config.audio_encoder.window, config.audio_encoder.n_mels, generator=generator
        ),
        "expression": torch.randn(2, frames, config.smoothing.expression_dim, generator=generator),
        "shape": torch.rand(2, frames, 1, size, size, generator=generator),
        "background": target * (1 - mask),
        "mask": mask,
        "target": target,
    }


def _stage2_step(config, schedule, batch, amp: bool) -> tuple[dict[str, float], Stage2Trainer]:
    torch.manual_seed(0)
    trainer = Stage2Trainer(
        build_renderer(config), build_smoothing(config), build_discriminator(config),
        build_generator_loss(LossConfig()), schedule.stage2, WorkerContext(), amp=amp,
    )  # fmt: skip
    return trainer.train_step(batch), trainer


@needs_bf16
def test_one_bf16_training_step_gives_the_fp32_losses_and_keeps_fp32_state():
    config = compose_model_config("tiny", "full")
    schedule = compose("train", ["dataset_uri=unused", "model=tiny", "schedule=tiny"]).schedule
    batch = _tiny_batch(config, seed=4)
    full, _ = _stage2_step(config, schedule, batch, amp=False)
    low, trainer = _stage2_step(config, schedule, batch, amp=True)
    assert trainer.precision.dtype == torch.bfloat16
    for name in ("loss/total", "loss/l1", "loss/discriminator"):
        assert low[name] == pytest.approx(full[name], rel=0.02), name
    for network in trainer.networks().values():
        assert all(p.dtype == torch.float32 for p in network.parameters())
    for optimizer in trainer.optimizers.values():
        for state in optimizer.state.values():
            assert all(v.dtype == torch.float32 for k, v in state.items() if k != "step")

    torch.manual_seed(0)
    windows = batch["audio"]  # (2, T, W, M): stage 1 on the same audio
    mouth = torch.randn(2, windows.shape[1], config.audio2expression.mouth_dim)
    losses = []
    for amp in (False, True):
        torch.manual_seed(0)
        stage1 = Stage1Trainer(build_audio2expression(config), schedule.stage1, WorkerContext(), amp=amp)
        losses.append(stage1.train_step({"audio": windows, "mouth": mouth})["loss/total"])
    assert losses[1] == pytest.approx(losses[0], rel=0.02)
