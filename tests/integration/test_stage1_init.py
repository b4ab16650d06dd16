"""Where stage 1 starts: reuse keeps the packaged weights, finetune moves them, scratch ignores them."""

from __future__ import annotations

import numpy as np
import pytest

from stableface.config import compose
from stableface.models.checkpoint import read_checkpoint
from stableface.training.driver import InProcess, train
from stableface.training.pretrained import read_packaged_stage1

pytestmark = pytest.mark.integration


def _stage1(grid_dataset: str, output, init: str) -> dict[str, np.ndarray]:
    cfg = compose(
        "train",
        [f"dataset_uri={grid_dataset}", f"output_uri={output}", "model=cpu", "schedule=tiny", "stage=1",
         f"schedule.stage1.init={init}", "schedule.stage1.max_steps=3", "schedule.stage1.opening_weight=1",
         "schedule.stage1.lip_motion_weight=1"],
    )  # fmt: skip
    train(cfg, InProcess(device="cpu"))
    checkpoint = read_checkpoint(str(output / "_training" / "audio2expression.pt"))
    return {name: value.numpy() for name, value in checkpoint.state_dicts["audio2expression"].items()}


def test_init_modes_do_what_they_say(grid_dataset, tmp_path):
    packaged = {k: v.numpy() for k, v in read_packaged_stage1().state_dicts["audio2expression"].items()}
    reused = _stage1(grid_dataset, tmp_path / "reuse", "reuse")
    assert all(np.array_equal(reused[name], packaged[name]) for name in packaged)
    finetuned = _stage1(grid_dataset, tmp_path / "finetune", "finetune")
    changes = [float(np.abs(finetuned[name] - packaged[name]).max()) for name in packaged]
    assert max(changes) > 0  # trained
    assert max(changes) < 0.05  # three small steps from the packaged weights, not from random ones
    scratch = _stage1(grid_dataset, tmp_path / "scratch", "scratch")
    scratch_changes = [float(np.abs(scratch[name] - packaged[name]).mean()) for name in packaged]
    finetune_changes = [float(np.abs(finetuned[name] - packaged[name]).mean()) for name in packaged]
    assert np.mean(scratch_changes) > 10 * np.mean(finetune_changes)  # random weights, not the packaged ones
