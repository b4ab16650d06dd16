"""The one training driver: a job config -> stage 1, stage 2 per speaker, exported speaker models.

:func:`train` owns the orchestration (the plan, the resume guard and ``overwrite``, the stage-1
result and its held-out evaluation, the export of each speaker model, the timings); how a stage's
per-worker body actually runs is the ``run_stage`` strategy it is given: :class:`InProcess` runs it
in this process, the Ray job (:mod:`stableface.ray_jobs.train`) fits it on a Ray Train
TorchTrainer. Both therefore resume, refuse and lay out a run the same way.

A stage run lives in ``plan.run_dir(stage, speaker)``; its checkpoints are ``state.pt`` files
anywhere below it (``checkpoint/state.pt`` in process, ``checkpoint_<time>/state.pt`` from Ray Train).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from stableface.config.jobs import TrainJobConfig
from stableface.errors import InputError, StorageNotFound
from stableface.io.storage import Storage, join
from stableface.training.callbacks import LocalCallbacks, RunCallbacks
from stableface.training.checkpointing import STATE_FILE, TrainingState, load_state
from stableface.training.config import Stage1Init, TrainStage
from stableface.training.loop import WorkerContext
from stableface.training.pipeline import (
    CallbackFactory,
    Prepare,
    RunPlan,
    evaluate_stage1_result,
    export_model,
    load_audio2expression,
    plan_run,
    reuse_stage1_result,
    run_stage1,
    run_stage2,
    save_stage1_result,
)
from stableface.utils.serialise import to_dict

logger = logging.getLogger(__name__)

LOCAL_CHECKPOINT_DIR = "checkpoint"


@dataclass(frozen=True)
class StageFit:
    """One stage to fit: stage 1 (all of ``plan.stage1_speakers``) or stage 2 of one speaker."""

    stage: TrainStage
    speaker: str | None = None


@dataclass(frozen=True)
class TrainedModel:
    """One exported speaker model of a run."""

    model_uri: str
    heldout: dict[str, Any]  # its held-out figures (training/evaluate.py), {} when nothing is held out


@dataclass(frozen=True)
class TrainResult:
    """What a train job made: where its run and stage-1 result are, and each speaker model."""

    run_uri: str
    audio2expression_uri: str
    stage1_heldout: dict[str, Any]  # per group (all, held-out speakers, each speaker); {} if not trained
    models: dict[str, TrainedModel]  # by speaker; {} when only stage 1 ran
    seconds: float


# Runs a stage to its end, resuming from the checkpoints under ``plan.run_dir`` (already checked
# against the plan), and returns the final training state.
StageRunner = Callable[[TrainJobConfig, RunPlan, StageFit], TrainingState]


def run_stage(
    cfg: TrainJobConfig,
    plan: RunPlan,
    fit: StageFit,
    context: WorkerContext,
    prepare: Prepare,
    make_callbacks: CallbackFactory,
    state: TrainingState | None,
) -> dict[str, Any]:
    """The per-worker body of ``fit``; returns its final metrics."""
    if fit.stage is TrainStage.STAGE1:
        return run_stage1(cfg, plan, context, prepare, make_callbacks, state)
    return run_stage2(cfg, plan, fit.speaker, context, prepare, make_callbacks, state)


# --------------------------------------------------------------------------------------- resume guard
def config_differences(previous: Any, current: Any, prefix: str = "model") -> list[str]:
    """Dotted keys where two config dicts differ, each with both values."""
    if isinstance(previous, dict) and isinstance(current, dict):
        return [
            difference
            for key in sorted(set(previous) | set(current), key=str)
            for difference in config_differences(
                previous.get(key, "<absent>"), current.get(key, "<absent>"), f"{prefix}.{key}"
            )
        ]
    return [] if previous == current else [f"{prefix}: {previous!r} in the run, {current!r} now"]


def latest_state(storage: Storage, run_dir: str) -> TrainingState | None:
    """The newest checkpoint under ``run_dir`` (checkpoint directories are named by time), if any."""
    try:
        states = [uri for uri in storage.list(run_dir) if uri.endswith("/" + STATE_FILE)]
    except StorageNotFound:
        return None
    return load_state(max(states), storage) if states else None


def check_previous_run(storage: Storage, run_dir: str, plan: RunPlan) -> None:
    """Refuse to resume a run at ``run_dir`` made with another model config, naming what differs."""
    latest = latest_state(storage, run_dir)
    if latest is None:
        return
    differences = config_differences(latest.model_config, to_dict(plan.model_config))
    if differences:
        raise InputError(
            run_dir,
            f"holds a run of a different model config ({'; '.join(differences)}); "
            "use overwrite=true or another run_uri",
        )
    logger.info("resuming the run in %s from step %d", run_dir, latest.step)


def prepare_run_dir(cfg: TrainJobConfig, plan: RunPlan, storage: Storage, run_dir: str) -> None:
    if cfg.overwrite:
        removed = storage.delete_prefix(run_dir)
        logger.info("overwrite: removed %d files of the previous run in %s", removed, run_dir)
    else:
        check_previous_run(storage, run_dir, plan)


# --------------------------------------------------------------------------------------- driver
def train(cfg: TrainJobConfig, run_stage: StageRunner) -> TrainResult:
    """Train ``cfg``'s stages, each fitted by ``run_stage``."""
    started = time.monotonic()
    storage = Storage(cfg.storage)
    plan = plan_run(cfg, storage)
    if TrainStage.STAGE1 not in plan.stages:
        load_audio2expression(plan.audio2expression_uri, plan.model_config, storage)  # fail before training
    logger.info(
        "train %s: %s, speakers %s, runs in %s", cfg.dataset_uri, " and ".join(plan.stages), ", ".join(plan.speakers),
        plan.run_uri,
    )  # fmt: skip

    def fit(stage_fit: StageFit) -> TrainingState:
        prepare_run_dir(cfg, plan, storage, plan.run_dir(stage_fit.stage, stage_fit.speaker))
        return run_stage(cfg, plan, stage_fit)

    timings: dict[str, float] = {}
    stage1_heldout: dict[str, Any] = {}
    if TrainStage.STAGE1 in plan.stages:
        stage_started = time.monotonic()
        if Stage1Init(cfg.schedule.stage1.init) is Stage1Init.reuse:
            reuse_stage1_result(cfg, plan, storage)
        else:
            state = fit(StageFit(TrainStage.STAGE1))
            save_stage1_result(state, plan, storage)
        stage1_heldout = evaluate_stage1_result(cfg, plan, storage).get("groups", {})
        timings["stage1"] = round(time.monotonic() - stage_started, 1)
    models: dict[str, TrainedModel] = {}
    if TrainStage.STAGE2 in plan.stages:
        for speaker in plan.speakers:
            stage_started = time.monotonic()
            state = fit(StageFit(TrainStage.STAGE2, speaker))
            summary = export_model(
                cfg, plan, speaker, state, {**timings, "stage2": round(time.monotonic() - stage_started, 1)}
            )
            models[speaker] = TrainedModel(plan.model_uri(speaker), summary["heldout"])
    result = TrainResult(
        run_uri=plan.run_uri,
        audio2expression_uri=plan.audio2expression_uri,
        stage1_heldout=stage1_heldout,
        models=models,
        seconds=round(time.monotonic() - started, 1),
    )
    logger.info("train finished: %s", result)
    return result


# --------------------------------------------------------------------------------------- in process
@dataclass(frozen=True)
class InProcess:
    """A stage in this process (no Ray, no DDP), checkpointed to ``<run_dir>/checkpoint/state.pt``."""

    device: str | None = None  # default: cuda where available

    def __call__(self, cfg: TrainJobConfig, plan: RunPlan, fit: StageFit) -> TrainingState:
        storage = Storage(cfg.storage)
        device = torch.device(self.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        checkpoint_dir = join(plan.run_dir(fit.stage, fit.speaker), LOCAL_CHECKPOINT_DIR)
        state_uri = join(checkpoint_dir, STATE_FILE)

        def prepare(module: nn.Module) -> nn.Module:
            return module.to(device)

        def make_callbacks(**kwargs) -> RunCallbacks:
            return LocalCallbacks(checkpoint_dir=checkpoint_dir, **kwargs)

        resumed = load_state(state_uri, storage) if storage.exists(state_uri) else None
        threads = torch.get_num_threads()
        if cfg.schedule.torch_threads:
            torch.set_num_threads(cfg.schedule.torch_threads)
        try:
            run_stage(cfg, plan, fit, WorkerContext(device=device), prepare, make_callbacks, resumed)
        finally:
            torch.set_num_threads(threads)
        return load_state(state_uri, storage)
