"""Model checkpoints that carry their own config: loading one needs no other file.

A checkpoint is one ``torch.save`` file (local path or any storage URI) holding
``{"format", "version", "config": ModelConfig as a dict, "state_dicts": {component: state},
"extra": {...}}``; ``extra`` is for the trainer (optimizer states, epoch, ...). Loading uses
``weights_only=True``: only tensors and plain containers are unpickled.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from stableface.errors import InputError
from stableface.io.storage import Storage
from stableface.models.config import ModelConfig
from stableface.models.networks import COMPONENTS, StableFaceModels, build_component
from stableface.utils.serialise import from_dict, to_dict

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "stableface-models"
CHECKPOINT_VERSION = 1


@dataclass
class Checkpoint:
    config: ModelConfig
    state_dicts: dict[str, dict[str, torch.Tensor]]
    extra: dict[str, Any] = field(default_factory=dict)


def save_checkpoint(
    uri: str,
    config: ModelConfig,
    modules: Mapping[str, nn.Module],
    extra: dict[str, Any] | None = None,
    storage: Storage | None = None,
) -> None:
    """Write ``config`` and the state dicts of ``modules`` (named after :data:`COMPONENTS`) to ``uri``."""
    unknown = sorted(set(modules) - set(COMPONENTS))
    if unknown:
        raise KeyError(f"unknown model components {unknown}; known: {', '.join(COMPONENTS)}")
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "config": to_dict(config),
        "state_dicts": {name: module.state_dict() for name, module in modules.items()},
        "extra": extra or {},
    }
    storage = storage or Storage()
    with storage.writable_local(uri, suffix=".pt") as path:
        torch.save(payload, path)
    logger.info("saved checkpoint %s (%s)", uri, ", ".join(modules))


def save_models(
    uri: str, models: StableFaceModels, extra: dict[str, Any] | None = None, storage: Storage | None = None
) -> None:
    save_checkpoint(uri, models.config, {name: getattr(models, name) for name in COMPONENTS}, extra, storage)


def read_payload(
    uri: str, format_name: str, version: int, what: str, storage: Storage | None = None
) -> dict[str, Any]:
    """A torch checkpoint's payload dict, checked to be ``format_name`` at ``version``.

    Unreadable files, other formats and other versions raise :class:`InputError` naming ``uri``;
    ``what`` names the kind of checkpoint in the message."""
    storage = storage or Storage()
    with storage.local_copy(uri) as path:
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except (RuntimeError, OSError, ValueError, EOFError, pickle.UnpicklingError) as error:
            raise InputError(uri, f"not a readable torch checkpoint ({error})") from error
    if not isinstance(payload, dict) or payload.get("format") != format_name:
        raise InputError(uri, f"not a {what} checkpoint (no format '{format_name}')")
    if payload.get("version") != version:
        raise InputError(uri, f"checkpoint version {payload.get('version')} is not {version}")
    return payload


def read_checkpoint(uri: str, storage: Storage | None = None) -> Checkpoint:
    payload = read_payload(uri, CHECKPOINT_FORMAT, CHECKPOINT_VERSION, "StableFace model", storage)
    config = from_dict(ModelConfig, payload["config"])
    return Checkpoint(config=config, state_dicts=payload["state_dicts"], extra=payload.get("extra", {}))


def _restore(checkpoint: Checkpoint, name: str, uri: str) -> nn.Module:
    if name not in checkpoint.state_dicts:
        raise InputError(
            uri, f"checkpoint has no '{name}' (it has {', '.join(checkpoint.state_dicts) or 'none'})"
        )
    module = build_component(checkpoint.config, name)
    module.load_state_dict(checkpoint.state_dicts[name])
    return module.eval()


def load_component(uri: str, name: str, storage: Storage | None = None) -> nn.Module:
    """One network rebuilt from the checkpoint's own config, weights loaded, in eval mode."""
    return _restore(read_checkpoint(uri, storage), name, uri)


def load_models(
    uri: str,
    storage: Storage | None = None,
    required: Iterable[str] = COMPONENTS,
    components: Iterable[str] = COMPONENTS,
) -> tuple[StableFaceModels, Checkpoint]:
    """The networks named in ``components`` (others are not built), in eval mode; those in
    ``required`` must be in the checkpoint, the others load when present and otherwise keep their
    fresh initialisation."""
    checkpoint = read_checkpoint(uri, storage)
    missing = [name for name in required if name not in checkpoint.state_dicts]
    if missing:
        raise InputError(uri, f"checkpoint lacks {', '.join(missing)}")
    models = StableFaceModels(checkpoint.config, components)
    for name in models.components:
        if name in checkpoint.state_dicts:
            getattr(models, name).load_state_dict(checkpoint.state_dicts[name])
    return models.eval(), checkpoint
