"""Training state that survives a killed worker: networks, optimisers, counters and the configs.

One ``torch.save`` file (``state.pt``) per checkpoint, written through :class:`Storage` (local path
or s3://) or into a directory that Ray Train uploads. Loading uses ``weights_only=True``, so a
checkpoint holds only tensors and plain containers, and the state carries its own configs:
resuming or exporting needs no other file.
"""

from __future__ import annotations

import logging
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from stableface.errors import InputError
from stableface.io.storage import Storage
from stableface.training.config import TrainStage

logger = logging.getLogger(__name__)

STATE_FILE = "state.pt"
STATE_FORMAT = "stableface-training-state"
STATE_VERSION = 1


@dataclass
class TrainingState:
    """What a trainer needs to continue exactly where it stopped."""

    stage: TrainStage
    trainer: dict[str, Any]  # Stage*Trainer.state_dict(): networks, optimisers, step, epoch, rng
    model_config: dict[str, Any]  # ModelConfig as a dict (stableface.config.to_dict)
    job_config: dict[str, Any] = field(default_factory=dict)  # the run's config, for provenance
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. the speaker, held-out metrics

    @property
    def step(self) -> int:
        return int(self.trainer["step"])

    def to_payload(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "stage": self.stage.value,  # a plain string: weights_only loading refuses enum objects
            "trainer": self.trainer,
            "model_config": self.model_config,
            "job_config": self.job_config,
            "extra": self.extra,
        }


def save_state(uri: str, state: TrainingState, storage: Storage | None = None) -> None:
    """Write ``state`` to ``uri`` atomically (local path or s3://)."""
    storage = storage or Storage()
    with storage.writable_local(uri, suffix=".pt") as path:
        torch.save(state.to_payload(), path)
    logger.info("saved %s training state at step %d to %s", state.stage, state.step, uri)


def load_state(uri: str, storage: Storage | None = None) -> TrainingState:
    storage = storage or Storage()
    with storage.local_copy(uri) as path:
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except (RuntimeError, OSError, ValueError, EOFError, pickle.UnpicklingError) as error:
            raise InputError(uri, f"not a readable training state ({error})") from error
    if not isinstance(payload, dict) or payload.get("format") != STATE_FORMAT:
        raise InputError(uri, f"not a StableFace training state (no format '{STATE_FORMAT}')")
    if payload.get("version") != STATE_VERSION:
        raise InputError(uri, f"training state version {payload.get('version')} is not {STATE_VERSION}")
    return TrainingState(
        stage=TrainStage(payload["stage"]),
        trainer=payload["trainer"],
        model_config=payload["model_config"],
        job_config=payload.get("job_config", {}),
        extra=payload.get("extra", {}),
    )


def write_state_dir(directory: str | Path, state: TrainingState) -> Path:
    """``<directory>/state.pt``: the layout of a Ray Train checkpoint directory."""
    path = Path(directory) / STATE_FILE
    save_state(str(path), state)
    return path
