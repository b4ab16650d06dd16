"""The epoch loop both stages share: sharded sampling, resumable epochs, logging, checkpoints.

Plain PyTorch: with ``torch.distributed`` initialised (Ray Train does that) each rank reads its own
shard and metrics are averaged over ranks; without it the same code runs in one process (unit
tests, the local trainer). What happens at log, sample and checkpoint time is up to the
:class:`Callbacks` the caller passes.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from stableface.training.config import TrainConfig
from stableface.utils.progress import Progress

logger = logging.getLogger(__name__)


@dataclass
class WorkerContext:
    """Where this copy of the training loop runs: its rank among ``world_size`` and its device."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    node: str = "local"  # the cluster node (Ray node id) it runs on, recorded in the run's logs

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def unwrap(module: nn.Module) -> nn.Module:
    """The network inside a DistributedDataParallel wrapper (or the module itself)."""
    return module.module if isinstance(module, DistributedDataParallel) else module


class ResumableSampler(DistributedSampler):
    """DistributedSampler (each rank its own shard, reshuffled per epoch) that can start an epoch
    part-way, so a resumed run trains on exactly the samples the killed run had not reached."""

    def __init__(self, dataset: Dataset, context: WorkerContext, seed: int, shuffle: bool = True):
        super().__init__(
            dataset, num_replicas=context.world_size, rank=context.rank, shuffle=shuffle, seed=seed
        )
        self.skip = 0

    def start_epoch(self, epoch: int, skip: int = 0) -> None:
        self.set_epoch(epoch)
        self.skip = skip

    def epoch_indices(self) -> list[int]:
        """This rank's whole shard for the current epoch, in order (skipped items included)."""
        return list(super().__iter__())

    def __iter__(self) -> Iterator[int]:
        return itertools.islice(super().__iter__(), self.skip, None)

    def __len__(self) -> int:
        return max(0, self.num_samples - self.skip)


def make_loader(dataset: Dataset, batch_size: int, context: WorkerContext, seed: int) -> DataLoader:
    """A loader over this rank's shard. Samples are sliced from memory, so no loader processes."""
    sampler = ResumableSampler(dataset, context, seed)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=0, drop_last=False)


def optimise(
    loss: torch.Tensor,
    optimizers: list[torch.optim.Optimizer],
    scaler: torch.amp.GradScaler,
    parameters: list[torch.nn.Parameter],
    max_norm: float | None,
) -> float:
    """Backward, optional clipping of ``parameters`` to ``max_norm``, then step ``optimizers``.

    Returns the gradient norm before clipping (NaN when not clipping)."""
    scaler.scale(loss).backward()
    norm = float("nan")
    if max_norm is not None:
        for optimizer in optimizers:
            scaler.unscale_(optimizer)
        norm = float(torch.nn.utils.clip_grad_norm_(parameters, max_norm))
    for optimizer in optimizers:
        scaler.step(optimizer)
    scaler.update()
    return norm


class Trainer(Protocol):
    """What the loop needs from a stage's trainer."""

    stage: str
    step: int
    epoch: int
    batch_in_epoch: int
    elapsed_s: float  # training time over all attempts (restored from checkpoints)
    time_fraction: float  # share of the time budget used, agreed over ranks at log steps

    def set_epoch(self, epoch: int) -> None: ...
    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]: ...
    def sample_image(self, batch: dict[str, torch.Tensor]) -> np.ndarray | None: ...


class NamedStateTrainer:
    """Checkpoint state of a stage trainer: its named networks, optimisers and grad scalers, the
    counters and the RNG. A subclass sets ``optimizers`` and ``scalers`` and names its networks."""

    optimizers: dict[str, torch.optim.Optimizer]
    scalers: dict[str, torch.amp.GradScaler]
    step: int
    epoch: int
    batch_in_epoch: int
    elapsed_s: float

    def networks(self) -> dict[str, nn.Module]:
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {
            "modules": {name: network.state_dict() for name, network in self.networks().items()},
            "optimizers": {name: optimizer.state_dict() for name, optimizer in self.optimizers.items()},
            "scalers": {name: scaler.state_dict() for name, scaler in self.scalers.items()},
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "elapsed_s": self.elapsed_s,
            "rng": torch.get_rng_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        for name, network in self.networks().items():
            network.load_state_dict(state["modules"][name])
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
        for name, scaler in self.scalers.items():
            scaler.load_state_dict(state["scalers"][name])
        self.step, self.epoch, self.batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        self.elapsed_s = float(state.get("elapsed_s", 0.0))
        torch.set_rng_state(state["rng"])


class Callbacks:
    """Hooks the loop calls; the base class does nothing. The Ray job and the local trainer
    subclass it to write metrics, samples and checkpoints."""

    def epoch_started(self, trainer: Trainer, sample_ids: list[int]) -> None:
        """Every rank: the dataset indices of its shard for this epoch."""

    def log(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        """Every rank, at the same steps: metrics averaged over the ranks since the last log."""

    def sample(self, trainer: Trainer, image: np.ndarray) -> None:
        """Rank 0 only: an RGB sample image (generated vs real)."""

    def checkpoint(self, trainer: Trainer, final: bool) -> None:
        """Every rank, at the same steps (Ray Train's report is a barrier)."""


class MetricMeter:
    """Running means of step metrics between two log lines, averaged over ranks when distributed."""

    def __init__(self, device: torch.device) -> None:
        self.device = device  # NCCL reduces only tensors on the GPU
        self.sums: dict[str, float] = {}
        self.count = 0

    def add(self, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            self.sums[key] = self.sums.get(key, 0.0) + float(value)
        self.count += 1

    def average(self) -> dict[str, float]:
        keys = sorted(self.sums)
        values = torch.tensor(
            [self.sums[k] / max(self.count, 1) for k in keys], dtype=torch.float64, device=self.device
        )
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(values)  # sum over ranks
            values /= dist.get_world_size()
        self.sums, self.count = {}, 0
        return {key: float(value) for key, value in zip(keys, values.tolist(), strict=True)}


def steps_per_epoch(loader: DataLoader) -> int:
    sampler = loader.sampler
    per_rank = sampler.num_samples if isinstance(sampler, DistributedSampler) else len(loader.dataset)
    return -(-per_rank // loader.batch_size)


def agreed_max(value: float, device: torch.device) -> float:
    """The largest ``value`` over all ranks (the value itself without torch.distributed): decisions
    that change what a step does must be the same on every rank, or DDP's collectives diverge."""
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return float(tensor.item())


def run_epochs(
    trainer: Trainer,
    loader: DataLoader,
    epochs: int,
    config: TrainConfig,
    context: WorkerContext,
    callbacks: Callbacks | None = None,
    max_steps: int | None = None,
    max_minutes: float | None = None,
) -> dict[str, Any]:
    """Train from the trainer's (epoch, batch_in_epoch, step) to ``epochs``, ``max_steps`` or
    ``max_minutes`` of training time (summed over attempts), whichever comes first.

    The time budget is checked at log steps, agreed over the ranks; ``trainer.time_fraction`` is
    the share of it used so far (0 without a budget). Returns the last logged metrics with
    ``step``, ``epoch`` and ``seconds``.
    """
    callbacks = callbacks or Callbacks()
    sampler: ResumableSampler = loader.sampler  # type: ignore[assignment]
    per_epoch = steps_per_epoch(loader)
    total = epochs * per_epoch if max_steps is None else min(max_steps, epochs * per_epoch)
    budget_s = None if max_minutes is None else 60.0 * max_minutes
    samples_per_step = loader.batch_size * context.world_size
    progress = Progress(
        f"{trainer.stage} (rank {context.rank})",
        total=max(total - trainer.step, 0),
        unit="steps",
        # A capped stage ends at its cap if that comes before its epochs: the ETA says which.
        time_limit_s=None if budget_s is None else max(budget_s - trainer.elapsed_s, 0.0),
    )
    meter = MetricMeter(context.device)
    last: dict[str, Any] = {}
    started = time.monotonic()
    elapsed_before = trainer.elapsed_s  # training time of earlier attempts
    window_start, window_steps = started, 0
    if trainer.step:
        logger.info("%s: resuming at step %d (epoch %d, batch %d)", trainer.stage, trainer.step,
                    trainer.epoch, trainer.batch_in_epoch)  # fmt: skip
    out_of_time = False
    while trainer.epoch < epochs and trainer.step < total and not out_of_time:
        trainer.set_epoch(trainer.epoch)
        sampler.start_epoch(trainer.epoch, skip=trainer.batch_in_epoch * loader.batch_size)
        if hasattr(loader.dataset, "set_epoch"):
            loader.dataset.set_epoch(trainer.epoch)
        callbacks.epoch_started(trainer, sampler.epoch_indices())
        for batch in loader:
            metrics = trainer.train_step(batch)
            trainer.step += 1
            trainer.batch_in_epoch += 1
            trainer.elapsed_s = elapsed_before + time.monotonic() - started
            meter.add(metrics)
            window_steps += 1
            progress.update(1)
            if trainer.step % config.log_every == 0 or trainer.step == total:
                now = time.monotonic()
                last = meter.average()
                last["samples_per_s"] = window_steps * samples_per_step / max(now - window_start, 1e-9)
                window_start, window_steps = now, 0
                if budget_s is not None:
                    trainer.time_fraction = agreed_max(trainer.elapsed_s / budget_s, context.device)
                    out_of_time = trainer.time_fraction >= 1.0
                callbacks.log(trainer, last)
            if context.is_main and config.sample_every and trainer.step % config.sample_every == 0:
                image = trainer.sample_image(batch)
                if image is not None:
                    callbacks.sample(trainer, image)
            if out_of_time:
                logger.info("%s: training time budget of %.0f min used up at step %d", trainer.stage,
                            max_minutes, trainer.step)  # fmt: skip
                break
            if trainer.step % config.checkpoint_every == 0 and trainer.step < total:
                callbacks.checkpoint(trainer, final=False)
            if trainer.step >= total:
                break
        else:
            trainer.epoch += 1
            trainer.batch_in_epoch = 0
    progress.close()
    callbacks.checkpoint(trainer, final=True)
    return {**last, "step": trainer.step, "epoch": trainer.epoch, "seconds": time.monotonic() - started}
