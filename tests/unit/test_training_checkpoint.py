"""Training state: a saved and restored trainer continues exactly like the one that never stopped.

Stage 2's state round-trips through a file (networks, three optimisers, counters, RNG); a stage-1
run resumed mid-epoch from a checkpoint ends with the same weights as an uninterrupted run, which
also proves the resumed sampler picks up where the killed run left off.
"""

from __future__ import annotations

import copy

import pytest
import torch

from stableface.config import compose, to_dict
from stableface.data.layout import DatasetLayout
from stableface.errors import InputError
from stableface.face.erosion import ErosionConfig
from stableface.io.storage import Storage
from stableface.losses import LossConfig, build_generator_loss
from stableface.models import (
    build_audio2expression,
    build_discriminator,
    build_renderer,
    build_smoothing,
    compose_model_config,
)
from stableface.training.checkpointing import TrainingState, load_state, save_state
from stableface.training.config import TrainStage
from stableface.training.data import load_face_model, stage1_dataset, stage2_dataset
from stableface.training.loop import Callbacks, WorkerContext
from stableface.training.stage1 import train_stage1
from stableface.training.stage2 import Stage2Trainer


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _job(*overrides: str):
    return compose("train", ["dataset_uri=unused", "model=tiny", "schedule=tiny", *overrides])


def _stage2_trainer(model_config, schedule, seed: int) -> Stage2Trainer:
    torch.manual_seed(seed)
    return Stage2Trainer(
        build_renderer(model_config),
        build_smoothing(model_config),
        build_discriminator(model_config),
        build_generator_loss(LossConfig()),
        schedule.stage2,
        WorkerContext(),
    )


def _assert_same_tensors(a, b, where: str = "") -> None:
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_same_tensors(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for index, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same_tensors(x, y, f"{where}[{index}]")
    else:
        assert a == b, where


def test_stage2_state_round_trips_and_training_continues_identically(grid_dataset, tmp_path):
    job = _job()
    model_config = compose_model_config("tiny", "full")
    storage, layout = Storage(), DatasetLayout(grid_dataset)
    dataset = stage2_dataset(
        storage,
        layout,
        "s1",
        job.schedule,
        model_config,
        ErosionConfig(),
        load_face_model(storage, layout, model_config),
    )
    batch = torch.utils.data.default_collate([dataset[0], dataset[1]])
    original = _stage2_trainer(model_config, job.schedule, seed=0)
    original.joint_from_step = 2  # the state must also carry the smoothing's optimiser
    for _ in range(3):
        original.train_step(batch)
        original.step += 1
    state = TrainingState(
        TrainStage.STAGE2, original.state_dict(), to_dict(model_config), to_dict(job), {"speaker": "s1"}
    )
    save_state(str(tmp_path / "state.pt"), state)

    loaded = load_state(str(tmp_path / "state.pt"))
    restored = _stage2_trainer(model_config, job.schedule, seed=1)  # different initial weights
    restored.joint_from_step = 2
    restored.load_state_dict(loaded.trainer)

    assert loaded.stage is TrainStage.STAGE2 and loaded.step == 3 and loaded.extra == {"speaker": "s1"}
    assert loaded.model_config == to_dict(model_config)
    _assert_same_tensors(restored.state_dict(), original.state_dict(), "state")
    expected, got = original.train_step(batch), restored.train_step(batch)
    assert got == expected
    _assert_same_tensors(restored.state_dict()["modules"], original.state_dict()["modules"], "after a step")


def test_a_file_that_is_not_a_training_state_is_refused(tmp_path):
    path = tmp_path / "state.pt"
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(InputError, match="not a StableFace training state"):
        load_state(str(path))
    path.write_bytes(b"not a torch file")
    with pytest.raises(InputError, match="not a readable training state"):
        load_state(str(path))


class _Recorder(Callbacks):
    """Keeps a deep copy of the trainer state at every checkpoint."""

    def __init__(self):
        self.states: dict[int, dict] = {}

    def checkpoint(self, trainer, final: bool) -> None:
        self.states[trainer.step] = copy.deepcopy(trainer.state_dict())


def test_stage1_resumed_mid_epoch_ends_like_an_uninterrupted_run(grid_dataset):
    job = _job("schedule.checkpoint_every=3", "schedule.stage1.epochs=3")
    model_config = compose_model_config("tiny", "full")
    dataset = stage1_dataset(Storage(), DatasetLayout(grid_dataset), ["s1"], job.schedule, model_config)
    per_epoch = -(-len(dataset) // job.schedule.stage1.batch_size)
    assert per_epoch % 3, "the checkpoint under test must fall inside an epoch"

    torch.manual_seed(0)
    recorder = _Recorder()
    full, _ = train_stage1(build_audio2expression(model_config), dataset, job.schedule, callbacks=recorder)
    resume_at = min(step for step in recorder.states if step > per_epoch)  # inside the second epoch
    torch.manual_seed(1)
    resumed, _ = train_stage1(
        build_audio2expression(model_config), dataset, job.schedule, state=recorder.states[resume_at]
    )

    assert full.step == resumed.step == 3 * per_epoch
    assert recorder.states[resume_at]["batch_in_epoch"] == resume_at - per_epoch
    _assert_same_tensors(resumed.state_dict()["modules"], full.state_dict()["modules"], "weights")


def test_a_previous_run_of_another_model_is_refused_naming_the_key_before_it_resumes(tmp_path):
    from stableface.training.driver import check_previous_run
    from stableface.training.pipeline import RunPlan

    tiny, cpu = compose_model_config("tiny", "full"), compose_model_config("cpu", "full")
    plan = RunPlan("ds", str(tmp_path), str(tmp_path), ["s1"], ["s1"], tiny, ErosionConfig(), "a2e.pt")
    run_dir = tmp_path / "stage1"
    check_previous_run(Storage(), str(run_dir), plan)  # nothing there yet
    for name, config in (
        ("checkpoint_2026-01-01_00-00-00.0", tiny),
        ("checkpoint_2026-01-02_00-00-00.0", cpu),
    ):
        save_state(
            str(run_dir / name / "state.pt"), TrainingState(TrainStage.STAGE1, {"step": 1}, to_dict(config))
        )
    with pytest.raises(InputError, match="different model config") as refused:
        check_previous_run(Storage(), str(run_dir), plan)
    assert "model.renderer.image_size: 128 in the run, 32 now" in str(refused.value)
    plan.model_config = cpu
    check_previous_run(Storage(), str(run_dir), plan)
