"""Training on a CUDA device: mixed precision in both stages, and a 1-GPU Ray Train run (NCCL)."""

from __future__ import annotations

import pytest
import torch

from stableface.config import compose
from stableface.speaker_model import SpeakerModel
from stableface.utils.precision import Precision, cpu_bf16_kernels

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_mixed_precision_on_cuda_and_on_cpus_with_bf16_kernels():
    cuda = Precision(torch.device("cuda"), enabled=True)
    assert cuda.enabled and cuda.dtype in (torch.bfloat16, torch.float16)
    assert cuda.needs_scaling == (cuda.dtype == torch.float16)
    assert Precision(torch.device("cpu"), enabled=True).enabled == (cpu_bf16_kernels() is not None)


def test_both_stages_train_with_amp_on_the_gpu(grid_dataset, tmp_path):
    from stableface.training.driver import InProcess, train

    cfg = compose("train", [f"dataset_uri={grid_dataset}", f"output_uri={tmp_path}", "speaker=s1",
                            "model=tiny", "schedule=tiny", "schedule.amp=true"])  # fmt: skip
    train(cfg, InProcess(device="cuda"))
    summary = SpeakerModel.load(str(tmp_path / "s1")).metadata["training_summary"]
    assert summary["stage2"]["final"]["loss/l1"] < 0.5
    assert summary["stage2"]["steps"] > 0


def test_a_one_gpu_ray_train_run_uses_nccl_and_finishes(ray_local, grid_dataset, tmp_path):
    import ray

    from stableface.ray_jobs.train import run

    if ray.cluster_resources().get("GPU", 0) < 1:
        pytest.skip("the local Ray sees no GPU")
    cfg = compose("train", [f"dataset_uri={grid_dataset}", f"output_uri={tmp_path}", "speaker=s1", "model=tiny",
                            "schedule=tiny", "scaling.num_workers=1", "scaling.use_gpu=true"])  # fmt: skip
    result = run(cfg)
    assert SpeakerModel.load(result.models["s1"].model_uri).speaker == "s1"
