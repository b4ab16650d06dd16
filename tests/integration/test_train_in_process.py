"""The in-process strategy of the one training driver keeps the Ray job's resume rules."""

from __future__ import annotations

import pytest

from stableface.config import compose
from stableface.errors import InputError
from stableface.training.checkpointing import load_state
from stableface.training.driver import InProcess, train

pytestmark = pytest.mark.integration


def _stage1(dataset: str, output, *overrides: str):
    return compose(
        "train",
        [f"dataset_uri={dataset}", f"output_uri={output}", "model=tiny", "schedule=tiny", "stage=1",
         "schedule.stage1.max_steps=2", *overrides],
    )  # fmt: skip


def test_a_run_of_another_model_config_is_refused_naming_the_switch_and_kept(grid_dataset, tmp_path):
    train(_stage1(grid_dataset, tmp_path), InProcess(device="cpu"))
    state_file = tmp_path / "_training" / "stage1" / "checkpoint" / "state.pt"
    trained = state_file.read_bytes()
    assert load_state(str(state_file)).step == 2

    with pytest.raises(InputError, match="different model config") as refused:
        train(_stage1(grid_dataset, tmp_path, "ablation.dependency_modelling=false"), InProcess(device="cpu"))
    assert "model.renderer.dependency: True in the run, False now" in str(refused.value)
    assert state_file.read_bytes() == trained  # refused before any training

    train(
        _stage1(grid_dataset, tmp_path, "ablation.dependency_modelling=false", "overwrite=true"),
        InProcess(device="cpu"),
    )
    restarted = load_state(str(state_file))
    assert restarted.step == 2 and restarted.model_config["renderer"]["dependency"] is False
