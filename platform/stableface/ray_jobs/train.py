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

The orchestration, resume guard included, is :func:`stableface.training.driver.train`; this module
is only its Ray Train strategy for running a stage (:class:`RayTrain`).
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from typing import Any

import torch

from stableface.config import with_absolute_uris
from stableface.config.jobs import TrainJobConfig
from stableface.errors import InputError
from stableface.io.storage import Storage, join
from stableface.ray_jobs.runtime import ensure_ray, node_id
from stableface.training.callbacks import RunCallbacks
from stableface.training.checkpointing import STATE_FILE, TrainingState, load_state, write_state_dir
from stableface.training.driver import StageFit, TrainResult, run_stage, train
from stableface.training.loop import Trainer, WorkerContext
from stableface.training.pipeline import RunPlan
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


def _resumed_state() -> TrainingState | None:
    """The state of the latest reported checkpoint (after a failure or a re-run; the driver has
    checked the run's model config)."""
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as directory:
        return load_state(join(directory, STATE_FILE))


def _prepare(module: torch.nn.Module) -> torch.nn.Module:
    import ray.train.torch

    return ray.train.torch.prepare_model(module)  # to the worker's device; DDP with > 1 worker


def stage_worker(config: dict[str, Any]) -> None:
    configure_logging()
    cfg, plan, fit = config["cfg"], config["plan"], config["fit"]
    run_stage(cfg, plan, fit, _worker_context(cfg), _prepare, RayCallbacks, _resumed_state())


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


@dataclass(frozen=True)
class RayTrain:
    """A stage as one TorchTrainer fit of ``scaling.num_workers`` workers; Ray Train resumes it
    from the latest checkpoint it reported in the stage's run directory (after a failure or a re-run)."""

    def __call__(self, cfg: TrainJobConfig, plan: RunPlan, fit: StageFit) -> TrainingState:
        from ray.train import CheckpointConfig, FailureConfig, RunConfig
        from ray.train.torch import TorchTrainer

        ensure_ray(cfg.ray)
        run_name = plan.run_name(fit.stage, fit.speaker)
        logger.info(
            "%s: %d %s workers", run_name, cfg.scaling.num_workers, "GPU" if cfg.scaling.use_gpu else "CPU"
        )
        filesystem, path = Storage(cfg.storage).pyarrow_filesystem(plan.run_uri)
        trainer = TorchTrainer(
            stage_worker,
            train_loop_config={"cfg": cfg, "plan": plan, "fit": fit},
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


def run(cfg: TrainJobConfig) -> TrainResult:
    return train(
        with_absolute_uris(cfg), RayTrain()
    )  # absolute: Ray Train runs each worker in its own folder
