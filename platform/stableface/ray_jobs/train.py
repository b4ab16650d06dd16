"""``stableface train``: two-stage DDP training of speaker models on Ray Train.

Each stage is one :class:`~ray.train.torch.TorchTrainer` fit: ``scaling.num_workers`` workers
(gloo on CPU, NCCL on GPU; bf16 autocast where the hardware has it, see
:mod:`stableface.utils.precision`), each training on its own shard of the samples
(a DistributedSampler) with the networks wrapped in DDP. Rank 0 reports checkpoints (networks,
optimisers, counters, configs) to ``run_uri`` - a local directory or s3:// through the same
Storage settings as everything else - and a killed worker makes Ray Train restart the group,
which resumes from the last checkpoint (``FailureConfig(max_failures)``). Re-running a job with
the same ``run_uri`` resumes its runs too; ``overwrite=true`` starts over.

1. stage 1 (audio2expression) on every speaker in ``stage1_speakers``, once;
2. stage 2 per speaker (renderer, then renderer + adaptive smoothing), rank 0 then evaluates the
   held-out clips;
3. the driver exports each speaker model to ``<output_uri>/<speaker>``.

The per-worker bodies are the plain functions of :mod:`stableface.training.pipeline`.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from typing import Any

import torch

from stableface.config import to_dict, with_absolute_uris
from stableface.config.jobs import TrainJobConfig
from stableface.errors import InputError, StorageNotFound
from stableface.io.storage import Storage, join
from stableface.ray_jobs.runtime import ensure_ray, node_id
from stableface.training.callbacks import RunCallbacks
from stableface.training.checkpointing import STATE_FILE, TrainingState, load_state, write_state_dir
from stableface.training.config import Stage1Init
from stableface.training.loop import Trainer, WorkerContext
from stableface.training.pipeline import (
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
from stableface.utils.logging import configure_logging

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------- workers
class RayCallbacks(RunCallbacks):
    """Checkpoints go to Ray Train: rank 0 attaches the state, every rank reports (a barrier)."""

    def save(self, trainer: Trainer, state: TrainingState | None, final: bool) -> None:
        import ray.train

        metrics = {k: v for k, v in self.metrics.items() if isinstance(v, (int, float))}
        metrics.update(step=trainer.step, epoch=trainer.epoch, final=final)
        if state is None:
            ray.train.report(metrics)
            return
        with tempfile.TemporaryDirectory(prefix="stableface-ckpt-") as directory:
            write_state_dir(directory, state)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(directory))


def _worker_context(cfg: TrainJobConfig) -> WorkerContext:
    import ray.train
    import ray.train.torch

    context = ray.train.get_context()
    threads = cfg.schedule.torch_threads or max(1, int(cfg.scaling.cpus_per_worker))
    torch.set_num_threads(threads)
    return WorkerContext(
        context.get_world_rank(), context.get_world_size(), ray.train.torch.get_device(), node=node_id()
    )


def _resumed_state(plan: RunPlan) -> TrainingState | None:
    """The state of the latest reported checkpoint (after a failure or a re-run), checked against
    the model this run builds."""
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as directory:
        state = load_state(join(directory, STATE_FILE))
    if state.model_config != to_dict(plan.model_config):
        raise InputError(
            plan.run_uri, "holds a run of a different model config; use overwrite=true or another run_uri"
        )
    return state


def _prepare(module: torch.nn.Module) -> torch.nn.Module:
    import ray.train.torch

    return ray.train.torch.prepare_model(module)  # to the worker's device; DDP with > 1 worker


def stage1_worker(config: dict[str, Any]) -> None:
    configure_logging()
    cfg, plan = config["cfg"], config["plan"]
    run_stage1(cfg, plan, _worker_context(cfg), _prepare, RayCallbacks, _resumed_state(plan))


def stage2_worker(config: dict[str, Any]) -> None:
    configure_logging()
    cfg, plan = config["cfg"], config["plan"]
    run_stage2(
        cfg, plan, config["speaker"], _worker_context(cfg), _prepare, RayCallbacks, _resumed_state(plan)
    )


# --------------------------------------------------------------------------------------- driver
PLACEMENT_STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")


def scaling_config(cfg: TrainJobConfig):
    from ray.train import ScalingConfig

    if cfg.scaling.placement_strategy not in PLACEMENT_STRATEGIES:
        raise InputError(
            "scaling.placement_strategy",
            f"'{cfg.scaling.placement_strategy}' is not one of {', '.join(PLACEMENT_STRATEGIES)}",
        )
    resources = {"CPU": cfg.scaling.cpus_per_worker}
    if cfg.scaling.use_gpu:
        resources["GPU"] = cfg.scaling.gpus_per_worker
    return ScalingConfig(
        num_workers=cfg.scaling.num_workers,
        use_gpu=cfg.scaling.use_gpu,
        resources_per_worker=resources,
        accelerator_type=cfg.scaling.accelerator_type,
        placement_strategy=cfg.scaling.placement_strategy,
    )


def check_previous_run(storage: Storage, run_dir: str, plan: RunPlan) -> None:
    """A run found at ``run_dir`` is resumed by Ray Train: refuse one of another model config now,
    rather than in every worker of every retry."""
    try:
        states = [uri for uri in storage.list(run_dir) if uri.endswith("/" + STATE_FILE)]
    except StorageNotFound:
        return
    if not states:
        return
    latest = load_state(max(states), storage)  # checkpoint directories are named by time
    if latest.model_config != to_dict(plan.model_config):
        raise InputError(
            run_dir, "holds a run of a different model config; use overwrite=true or another run_uri"
        )
    logger.info("resuming the run in %s from step %d", run_dir, latest.step)


def fit_stage(
    worker: Callable[[dict[str, Any]], None], loop_config: dict[str, Any], run_name: str, cfg: TrainJobConfig,
    plan: RunPlan,
) -> TrainingState:  # fmt: skip
    """One TorchTrainer fit; returns the final training state (from its last checkpoint)."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig
    from ray.train.torch import TorchTrainer

    storage = Storage(cfg.storage)
    if cfg.overwrite:
        removed = storage.delete_prefix(join(plan.run_uri, run_name))
        logger.info("overwrite: removed %d files of the previous %s run", removed, run_name)
    else:
        check_previous_run(storage, join(plan.run_uri, run_name), plan)
    filesystem, path = storage.pyarrow_filesystem(plan.run_uri)
    trainer = TorchTrainer(
        worker,
        train_loop_config=loop_config,
        scaling_config=scaling_config(cfg),
        run_config=RunConfig(
            name=run_name,
            storage_path=path,
            storage_filesystem=filesystem,
            failure_config=FailureConfig(max_failures=cfg.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=cfg.schedule.keep_checkpoints),
        ),
    )
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(f"{run_name}: training finished without a checkpoint")
    with result.checkpoint.as_directory() as directory:
        return load_state(join(directory, STATE_FILE))


def run(cfg: TrainJobConfig) -> dict[str, Any]:
    cfg = with_absolute_uris(cfg)  # Ray Train runs each worker in its own folder
    started = time.monotonic()
    storage = Storage(cfg.storage)
    plan = plan_run(cfg, storage)
    stage = str(cfg.stage)
    if stage == "2":
        load_audio2expression(plan.audio2expression_uri, plan.model_config, storage)  # fail before Ray starts
    ensure_ray(cfg.ray)
    logger.info(
        "train %s: stage %s, speakers %s, %d %s workers, runs in %s", cfg.dataset_uri, stage,
        ", ".join(plan.speakers), cfg.scaling.num_workers, "GPU" if cfg.scaling.use_gpu else "CPU", plan.run_uri,
    )  # fmt: skip
    timings: dict[str, float] = {}
    if stage in ("1", "all"):
        stage_started = time.monotonic()
        if Stage1Init(cfg.schedule.stage1.init) is Stage1Init.reuse:
            reuse_stage1_result(cfg, plan, storage)
        else:
            state = fit_stage(stage1_worker, {"cfg": cfg, "plan": plan}, plan.run_name("stage1"), cfg, plan)
            save_stage1_result(state, plan, storage)
        result_stage1 = evaluate_stage1_result(cfg, plan, storage)
        timings["stage1"] = round(time.monotonic() - stage_started, 1)
    models: dict[str, Any] = {}
    if stage in ("2", "all"):
        for speaker in plan.speakers:
            stage_started = time.monotonic()
            state = fit_stage(
                stage2_worker, {"cfg": cfg, "plan": plan, "speaker": speaker}, plan.run_name("stage2", speaker),
                cfg, plan,
            )  # fmt: skip
            summary = export_model(
                cfg, plan, speaker, state, {**timings, "stage2": round(time.monotonic() - stage_started, 1)}
            )
            models[speaker] = {"model_uri": plan.model_uri(speaker), "heldout": summary["heldout"]}
    result = {
        "run_uri": plan.run_uri,
        "audio2expression_uri": plan.audio2expression_uri,
        "stage1_heldout": result_stage1.get("groups", {}) if stage in ("1", "all") else {},
        "models": models,
        "seconds": round(time.monotonic() - started, 1),
    }
    logger.info("train finished: %s", result)
    return result
