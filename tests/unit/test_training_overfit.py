"""Overfit one small real batch of grid/s1: each network must be able to learn it.

audio2expression (stage 1) and the renderer each cut their loss at least 10x within a test-sized
budget; the full stage-2 GAN step (renderer + discriminator, feature matching) must learn the batch
too. Plain PyTorch in this process: no Ray (the shared dataset fixture is built once per session).
"""

from __future__ import annotations

import pytest
import torch

from stableface.config import compose
from stableface.data.layout import DatasetLayout
from stableface.face.erosion import ErosionConfig
from stableface.io.storage import Storage
from stableface.losses import LossConfig, build_generator_loss, mouth_weighted_l1
from stableface.models import (
    build_audio2expression,
    build_discriminator,
    build_renderer,
    build_smoothing,
    compose_model_config,
)
from stableface.training.data import load_face_model, stage1_dataset, stage2_dataset
from stableface.training.loop import WorkerContext
from stableface.training.stage1 import Stage1Trainer, mouth_loss
from stableface.training.stage2 import Stage2Trainer

THREADS = 1  # one thread: on a shared, busy machine two OpenMP threads can run 10x slower
# The tiny preset's renderer with wider channels: 4 channels cannot carry the background through.
RENDERER_OVERRIDES = ["renderer.channels=[8,16,32]"]


@pytest.fixture(autouse=True)
def deterministic():
    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)


def _schedule(*overrides: str):
    return compose("train", ["dataset_uri=unused", "model=tiny", "schedule=tiny", *overrides]).schedule


def _tail_mean(values: list[float], n: int = 10) -> float:
    return sum(values[-n:]) / n


def test_audio2expression_overfits_a_real_batch(grid_dataset):
    schedule = _schedule("schedule.stage1.sequence_length=16", "schedule.stage1.lr=1e-2")
    model_config = compose_model_config("tiny", "full", ["audio2expression.dropout=0"])
    dataset = stage1_dataset(Storage(), DatasetLayout(grid_dataset), ["s1"], schedule, model_config)
    picks = range(0, len(dataset), len(dataset) // 4)
    batch = torch.utils.data.default_collate([dataset[i] for i in list(picks)[:4]])  # 4 x 16 real frames
    trainer = Stage1Trainer(build_audio2expression(model_config), schedule.stage1, WorkerContext())
    # Predicting each sequence's mean mouth: right scale, no frame-by-frame motion from the audio.
    sequence_mean = batch["mouth"].mean(dim=1, keepdim=True).expand_as(batch["mouth"])
    baseline = float(mouth_loss(sequence_mean, batch["mouth"], schedule.stage1)["total"])

    losses = [trainer.train_step(batch)["loss/total"] for _ in range(400)]

    assert _tail_mean(losses) <= losses[0] / 10, (losses[0], losses[-10:])
    assert _tail_mean(losses) < 0.8 * baseline, f"no better than the per-sequence mean: {baseline}"


@pytest.fixture(scope="module")
def render_batch(grid_dataset):
    storage, layout = Storage(), DatasetLayout(grid_dataset)
    model_config = compose_model_config("tiny", "full", RENDERER_OVERRIDES)
    face_model = load_face_model(storage, layout, model_config)
    dataset = stage2_dataset(storage, layout, "s1", _schedule(), model_config, ErosionConfig(), face_model)
    return model_config, torch.utils.data.default_collate([dataset[len(dataset) // 2]])  # 1 x 4 frames


def test_renderer_overfits_a_real_batch(render_batch):
    model_config, batch = render_batch
    renderer = build_renderer(model_config)
    optimizer = torch.optim.Adam(renderer.parameters(), lr=3e-3, betas=(0.5, 0.999))
    losses = []
    for _ in range(200):
        fake = renderer(batch["background"], batch["shape"], batch["audio"])  # (1, T, 3, S, S)
        loss = mouth_weighted_l1(fake, batch["target"], batch["mask"], LossConfig().mouth_weight)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert _tail_mean(losses) <= losses[0] / 10, (losses[0], losses[-10:])


def test_stage2_gan_step_learns_a_real_batch(render_batch):
    """The whole stage-2 step (D step, then G with 20 (L1 + feature matching) + adversarial): the
    adversarial terms keep the L1 noisier than plain regression, so the bar is 4x, not 10x."""
    model_config, batch = render_batch
    schedule = _schedule("schedule.stage2.lr_renderer=3e-3")
    trainer = Stage2Trainer(
        build_renderer(model_config),
        build_smoothing(model_config),
        build_discriminator(model_config),
        build_generator_loss(LossConfig()),
        schedule.stage2,
        WorkerContext(),
    )
    trainer.joint_from_step = 100  # the last 50 steps train the smoothing too
    steps = []
    for _ in range(150):
        steps.append(trainer.train_step(batch))
        trainer.step += 1  # the epoch loop counts steps; the phase follows them
    l1 = [m["loss/l1"] for m in steps]
    assert _tail_mean(l1) <= l1[0] / 4, (l1[0], l1[-10:])
    assert steps[0]["joint_phase"] == 0.0 and steps[-1]["joint_phase"] == 1.0
    assert all(torch.isfinite(torch.tensor(m["loss/discriminator"])) for m in steps)
    image = trainer.sample_image(batch)
    size = model_config.renderer.image_size
    assert image.shape == (4 * size, 4 * size, 3) and image.dtype.name == "uint8"
