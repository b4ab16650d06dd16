"""Loop callbacks that write a run's logs; subclasses decide where checkpoints go.

:class:`RunCallbacks` logs metrics, samples and sample ids (see :mod:`.run_log`) and builds the
:class:`TrainingState` at checkpoint steps; :class:`LocalCallbacks` saves it through Storage
(in-process training), the Ray job's subclass hands it to ``ray.train.report``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from stableface.io.storage import Storage, join
from stableface.training.checkpointing import STATE_FILE, TrainingState, save_state
from stableface.training.config import TrainConfig
from stableface.training.loop import Callbacks, Trainer, WorkerContext
from stableface.training.run_log import RunLogger, record_sample_ids

logger = logging.getLogger(__name__)

StateBuilder = Callable[[Trainer, dict[str, Any]], TrainingState]


class RunCallbacks(Callbacks):
    def __init__(
        self,
        logs_uri: str,
        storage: Storage,
        context: WorkerContext,
        schedule: TrainConfig,
        make_state: StateBuilder,
        item_id: Callable[[int], str],
        stage: str,
        start_step: int = 0,
        attempt: int = 0,
    ):
        self.logs_uri = logs_uri
        self.storage = storage
        self.context = context
        self.schedule = schedule
        self.make_state = make_state
        self.item_id = item_id
        self.metrics: dict[str, Any] = {}
        self.run_logger = (
            RunLogger(logs_uri, storage, stage, start_step, attempt) if context.is_main else None
        )

    def epoch_started(self, trainer: Trainer, sample_ids: list[int]) -> None:
        if self.schedule.record_sample_ids:
            ids = [self.item_id(index) for index in sample_ids]
            record_sample_ids(
                self.storage, self.logs_uri, trainer.stage, self.context.rank, trainer.epoch, ids
            )

    def log(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        self.metrics = {**metrics, "step": trainer.step, "epoch": trainer.epoch}
        if self.run_logger is not None:
            self.run_logger.log(trainer.step, metrics)
            losses = ", ".join(
                f"{k.removeprefix('loss/')} {v:.4f}" for k, v in metrics.items() if k.startswith("loss/")
            )
            logger.info("%s step %d (epoch %d): %s, %.1f samples/s", trainer.stage, trainer.step, trainer.epoch,
                        losses, metrics.get("samples_per_s", float("nan")))  # fmt: skip

    def sample(self, trainer: Trainer, image: np.ndarray) -> None:
        if self.run_logger is not None:
            self.run_logger.sample(trainer.step, image)

    def checkpoint(self, trainer: Trainer, final: bool) -> None:
        state = None
        if self.context.is_main:
            self.run_logger.flush()
            state = self.make_state(trainer, self.metrics)
        self.save(trainer, state, final)

    def save(self, trainer: Trainer, state: TrainingState | None, final: bool) -> None:
        """Persist ``state`` (built on rank 0 only; None elsewhere). Every rank calls this."""
        raise NotImplementedError

    def close(self) -> None:
        if self.run_logger is not None:
            self.run_logger.close()


class LocalCallbacks(RunCallbacks):
    """Single-process training: the state goes to ``<checkpoint_dir>/state.pt`` through Storage."""

    def __init__(self, checkpoint_dir: str, **kwargs):
        super().__init__(**kwargs)
        self.checkpoint_dir = checkpoint_dir

    def save(self, trainer: Trainer, state: TrainingState | None, final: bool) -> None:
        if state is not None:
            save_state(join(self.checkpoint_dir, STATE_FILE), state, self.storage)
