"""The pieces of the training loop, against independent computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stableface.training.config import Stage1Config, Stage2Config
from stableface.training.evaluate import window_starts
from stableface.training.loop import (
    Callbacks,
    MetricMeter,
    ResumableSampler,
    WorkerContext,
    make_loader,
    steps_per_epoch,
)
from stableface.training.stage1 import mouth_loss
from stableface.training.stage2 import joint_start_step, tile_rows, to_uint8_frames


class _Numbers(torch.utils.data.Dataset):
    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> int:
        return index


def test_ranks_get_disjoint_shards_that_cover_the_dataset_and_reshuffle_per_epoch():
    dataset = _Numbers(10)
    samplers = [ResumableSampler(dataset, WorkerContext(rank=r, world_size=2), seed=3) for r in range(2)]
    for sampler in samplers:
        sampler.start_epoch(0)
    shards = [sampler.epoch_indices() for sampler in samplers]
    assert set(shards[0]).isdisjoint(shards[1])
    assert sorted(shards[0] + shards[1]) == list(range(10))
    samplers[0].start_epoch(1)
    assert samplers[0].epoch_indices() != shards[0]


def test_a_resumed_epoch_skips_exactly_the_samples_already_trained_on():
    sampler = ResumableSampler(_Numbers(9), WorkerContext(), seed=0)
    sampler.start_epoch(4)
    whole = list(sampler)
    sampler.start_epoch(4, skip=5)
    assert list(sampler) == whole[5:]
    assert len(sampler) == 4


def test_steps_per_epoch_counts_the_last_partial_batch_of_a_rank():
    loader = make_loader(_Numbers(11), batch_size=3, context=WorkerContext(rank=1, world_size=2), seed=0)
    assert steps_per_epoch(loader) == 2  # 6 samples per rank (one padded), batches of 3
    assert len(list(loader)) == 2


def test_metric_meter_averages_since_the_last_read():
    meter = MetricMeter(torch.device("cpu"))
    meter.add({"loss": 1.0, "other": 4.0})
    meter.add({"loss": 3.0, "other": 0.0})
    assert meter.average() == {"loss": 2.0, "other": 2.0}
    meter.add({"loss": 5.0})
    assert meter.average() == {"loss": 5.0}


def test_mouth_loss_matches_a_hand_computation():
    predicted = torch.tensor([[[0.0, 1.0], [2.0, 1.0], [2.0, 3.0]]])  # (1, 3, 2)
    target = torch.tensor([[[1.0, 1.0], [1.0, 1.0], [1.0, 1.0]]])
    terms = mouth_loss(predicted, target, Stage1Config(velocity_weight=0.5))
    # |errors| = 1, 0, 1, 0, 1, 2 -> 5/6; velocity errors: (2, 0), (0, 2) -> 4/4 = 1
    assert terms["l1"].item() == pytest.approx(5 / 6)
    assert terms["velocity"].item() == pytest.approx(1.0)
    assert terms["total"].item() == pytest.approx(5 / 6 + 0.5)


def test_joint_phase_starts_after_the_renderer_epochs_or_the_same_share_of_max_steps():
    assert joint_start_step(Stage2Config(renderer_epochs=100, joint_epochs=20), per_epoch=7) == 700
    capped = Stage2Config(renderer_epochs=100, joint_epochs=20, max_steps=60)
    assert joint_start_step(capped, per_epoch=7) == 50


@pytest.mark.parametrize(("frames", "window", "expected"), [(75, 8, [0, 8, 16, 24, 32, 40, 48, 56, 64, 67]),
                                                            (16, 8, [0, 8]), (5, 8, [0])])  # fmt: skip
def test_render_windows_cover_every_frame_and_stay_inside(frames, window, expected):
    starts = window_starts(frames, window)
    assert starts == expected
    covered = np.zeros(frames, bool)
    for start in starts:
        covered[start : start + window] = True
        assert start + min(window, frames) <= frames
    assert covered.all()


def test_sample_image_tiles_frames_in_time_order():
    frames = torch.linspace(-1, 1, 3).view(3, 1, 1, 1).expand(3, 3, 2, 2)  # (T=3, 3, 2, 2)
    shapes = torch.full((3, 1, 2, 2), 0.5)  # a face-shape image in [0, 1]
    image = tile_rows([to_uint8_frames(frames), to_uint8_frames(shapes)])
    assert image.shape == (4, 6, 3) and image.dtype == np.uint8
    assert image[0, 0, 0] == 0 and image[0, 2, 0] == 128 and image[0, 4, 0] == 255
    assert (image[2:] == 128).all()


class _RandomExpression(torch.utils.data.Dataset):
    """Stage-1 samples of random audio and mouth values (the loop's behaviour, not learning)."""

    def __len__(self) -> int:
        return 40

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        generator = torch.Generator().manual_seed(index)
        return {
            "audio": torch.randn(8, 16, 80, generator=generator),
            "mouth": torch.randn(8, 32, generator=generator),
        }


class _Checkpoints(Callbacks):
    def __init__(self):
        self.steps: list[tuple[int, bool]] = []

    def checkpoint(self, trainer, final: bool) -> None:
        self.steps.append((trainer.step, final))


def test_a_time_budget_ends_training_at_a_log_step_with_a_final_checkpoint():
    from stableface.config import compose
    from stableface.models import build_audio2expression, compose_model_config
    from stableface.training.stage1 import train_stage1

    schedule = compose("train", ["dataset_uri=x", "schedule=tiny", "schedule.stage1.max_minutes=1e-9",
                                 "schedule.log_every=3", "schedule.checkpoint_every=100"]).schedule  # fmt: skip
    checkpoints = _Checkpoints()
    trainer, final = train_stage1(
        build_audio2expression(compose_model_config("tiny")),
        _RandomExpression(),
        schedule,
        callbacks=checkpoints,
    )
    assert trainer.step == final["step"] == 3
    assert checkpoints.steps == [(3, True)]
    assert trainer.time_fraction >= 1.0 and trainer.state_dict()["elapsed_s"] == trainer.elapsed_s > 0


def test_the_joint_phase_follows_the_used_share_of_a_time_budget():
    from stableface.losses import LossConfig, build_generator_loss
    from stableface.models import build_models, compose_model_config
    from stableface.training.stage2 import Stage2Trainer

    networks = build_models(compose_model_config("tiny"))
    config = Stage2Config(renderer_epochs=3, joint_epochs=1, max_minutes=10)
    trainer = Stage2Trainer(
        networks.renderer, networks.smoothing, networks.discriminator, build_generator_loss(LossConfig()),
        config, WorkerContext(),
    )  # fmt: skip
    trainer.joint_from_step = 1000
    trainer.time_fraction = 0.74
    assert trainer.phase == "renderer" and not trainer.trains_smoothing
    trainer.time_fraction = 0.75
    assert trainer.phase == "joint" and trainer.trains_smoothing


def test_mouth_opening_correlation_follows_the_inner_lip_gap():
    from stableface.training.evaluate import mouth_opening, opening_correlation

    gap = np.array([1.0, 3.0, 2.0, 5.0, 1.0])  # the real mouth's inner lip gap over 5 frames
    real = np.zeros((5, 68, 2))
    real[:, 66, 1] = gap  # lower inner lip middle moves down; upper (62) stays at 0
    wide = real * 2.5  # the same motion, wider
    closed_when_open = np.zeros((5, 68, 2))
    closed_when_open[:, 66, 1] = 6.0 - gap
    assert np.allclose(mouth_opening(real), gap)
    assert opening_correlation(wide, real) == pytest.approx(1.0)
    assert opening_correlation(closed_when_open, real) == pytest.approx(-1.0)
    assert np.isnan(opening_correlation(np.zeros((5, 68, 2)), real))


def test_mouth_opening_amplitude_is_the_ratio_of_the_inner_lip_gap_stds():
    from stableface.training.evaluate import opening_amplitude_ratio

    gap = np.array([1.0, 3.0, 2.0, 5.0, 1.0])
    real = np.zeros((5, 68, 2))
    real[:, 66, 1] = gap
    barely = np.zeros((5, 68, 2))
    barely[:, 66, 1] = 2.0 + 0.2 * gap  # moves with the real mouth, a fifth as widely
    assert opening_amplitude_ratio(real, real) == pytest.approx(1.0)
    assert opening_amplitude_ratio(barely, real) == pytest.approx(0.2)
    assert opening_amplitude_ratio(real * 1.5, real) == pytest.approx(1.5)
    assert np.isnan(opening_amplitude_ratio(real, np.zeros((5, 68, 2))))


def test_mouth_sharpness_ratio_drops_for_a_blurred_mouth_and_ignores_pixels_outside_the_lips():
    import cv2

    from stableface.training.evaluate import lip_box, mouth_sharpness, sharpness_ratio

    rng = np.random.default_rng(0)
    size = 64
    real = rng.integers(0, 256, (3, size, size, 3), dtype=np.uint8)  # textured frames
    lips = np.zeros((3, 68, 2))
    lips[:, 48:68] = rng.uniform([24, 36], [40, 48], (3, 20, 2))  # lips in x 24..40, y 36..48
    x0, y0, x1, y1 = lip_box(lips, size)
    assert x0 < 24 and y0 < 36 and x1 > 40 and y1 > 48 and x1 <= size and y1 <= size
    blurred = real.copy()
    blurred[:, y0:y1, x0:x1] = np.stack([cv2.GaussianBlur(f, (0, 0), 2.0) for f in real])[:, y0:y1, x0:x1]
    assert sharpness_ratio(real, real, lips) == pytest.approx(1.0)
    assert sharpness_ratio(blurred, real, lips) < 0.2
    elsewhere = real.copy()
    elsewhere[:, :y0] = 0  # a change above the lip box does not count
    assert sharpness_ratio(elsewhere, real, lips) == pytest.approx(1.0)
    # Independently: the variance of a 4-neighbour Laplacian of the grey box.
    grey = cv2.cvtColor(real[0, y0:y1, x0:x1], cv2.COLOR_RGB2GRAY).astype(np.float64)
    padded = np.pad(grey, 1, mode="reflect")
    laplacian = padded[:-2, 1:-1] + padded[2:, 1:-1] + padded[1:-1, :-2] + padded[1:-1, 2:] - 4 * grey
    assert mouth_sharpness(real[:1], (x0, y0, x1, y1)) == pytest.approx(laplacian.var())
