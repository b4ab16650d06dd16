"""The train job's config groups: every schedule x model x ablation composes and builds."""

from __future__ import annotations

import itertools

import pytest
import torch

from stableface.config import compose
from stableface.errors import InputError
from stableface.models import available_presets, build_models, count_parameters
from stableface.training.config import TrainStage, stage2_length
from stableface.training.pipeline import erosion_of, model_config_of, plan_run

SCHEDULES = available_presets("schedule")
MODELS = available_presets("model")
ABLATIONS = available_presets("ablation")


def test_the_presets_the_job_promises_exist():
    assert {"paper", "cpu", "demo", "tiny"} <= set(SCHEDULES)
    assert {"paper", "cpu", "tiny"} <= set(MODELS)
    assert {"full", "baseline"} <= set(ABLATIONS)


@pytest.mark.parametrize(("model", "ablation"), list(itertools.product(MODELS, ABLATIONS)))
def test_every_combination_composes_and_builds(model, ablation):
    built = None
    for schedule in SCHEDULES:
        cfg = compose(
            "train", ["dataset_uri=unused", f"model={model}", f"ablation={ablation}", f"schedule={schedule}"]
        )
        config = model_config_of(cfg)
        assert stage2_length(cfg.schedule, config.renderer.sequence_length) >= 2
        assert erosion_of(cfg).enabled == cfg.ablation.augmented_erosion
        assert (config.smoothing.mode == "none") == (not cfg.ablation.adaptive_smoothing)
        assert config.renderer.audio_fusion == cfg.ablation.audio_fusion
        assert config.renderer.dependency == cfg.ablation.dependency_modelling
        if built is None:
            with torch.device("meta"):  # shapes and parameter counts without allocating the paper model
                built = build_models(config)
    assert count_parameters(built.renderer) > 0 and count_parameters(built.audio2expression) > 0


def test_the_paper_schedule_is_the_papers():
    cfg = compose("train", ["dataset_uri=unused", "model=paper", "schedule=paper"])
    stage2 = cfg.schedule.stage2
    assert (stage2.renderer_epochs, stage2.joint_epochs) == (100, 20)
    assert (stage2.lr_renderer, stage2.lr_smoothing) == (1e-4, 1e-6)
    assert stage2_length(cfg.schedule, cfg.model.renderer.sequence_length) == 12
    assert (cfg.loss.rec_weight, cfg.loss.adv_weight) == (20.0, 1.0)


def test_cluster_style_overrides_compose():
    cfg = compose("train", ["dataset_uri=s3://b/ds", "output_uri=s3://b/models", "scaling.num_workers=4",
                            "scaling.use_gpu=true", "stage=2"])  # fmt: skip
    assert (cfg.scaling.num_workers, cfg.scaling.use_gpu, cfg.stage) == (4, True, "2")


def test_a_sequence_longer_than_the_renderer_learned_is_refused():
    cfg = compose("train", ["dataset_uri=unused", "model=tiny", "schedule.stage2.sequence_length=12"])
    with pytest.raises(InputError, match=r"schedule\.stage2\.sequence_length"):
        stage2_length(cfg.schedule, cfg.model.renderer.sequence_length)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["stage=3"], "is not one of"),
        (["speaker=s9"], "not among the dataset's speakers"),
        (["stage1_speakers=[s1,s2]"], "not among the dataset's speakers"),
        (["model=paper", "model.smoothing.expression_dim=60"], "expression has 53 coefficients"),
        (["model_name=../elsewhere"], "invalid model name"),
    ],
)
def test_a_run_that_cannot_work_is_refused_before_training(grid_dataset, overrides, message):
    from stableface.io.storage import Storage

    cfg = compose("train", [f"dataset_uri={grid_dataset}", "model=tiny", *overrides])
    with pytest.raises(InputError, match=message):
        plan_run(cfg, Storage())


@pytest.mark.parametrize(
    ("stage", "stages"),
    [
        ("1", (TrainStage.STAGE1,)),
        ("2", (TrainStage.STAGE2,)),
        ("all", (TrainStage.STAGE1, TrainStage.STAGE2)),
    ],
)
def test_the_stage_selection_plans_those_stages_in_running_order(grid_dataset, stage, stages):
    from stableface.io.storage import Storage

    plan = plan_run(
        compose("train", [f"dataset_uri={grid_dataset}", "model=tiny", f"stage={stage}"]), Storage()
    )
    assert plan.stages == stages
    assert plan.run_dir(TrainStage.STAGE2, "s1").endswith("/stage2-s1") and plan.run_dir(
        TrainStage.STAGE1
    ).endswith("/stage1")


def test_a_folder_that_is_not_a_dataset_is_refused(tmp_path):
    from stableface.io.storage import Storage

    cfg = compose("train", [f"dataset_uri={tmp_path}", "model=tiny"])
    with pytest.raises(InputError, match="not a preprocessed dataset"):
        plan_run(cfg, Storage())
