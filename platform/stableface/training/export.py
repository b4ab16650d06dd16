"""The end of a training run: one self-describing speaker model directory.

:class:`~stableface.speaker_model.SpeakerModel` holds the stage-1 and stage-2 networks (with their
config), the shared expression basis, the speaker's identity and the audio feature settings; its
``speaker.json`` carries the model version, the training summary (final losses, held-out metrics,
timings) and the training config. ``summary.json`` beside it repeats the summary for people and
dashboards. ``SpeakerModel.load(uri)`` is the one call that reads it back.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import torch

from stableface.audio.features import AudioFeatureConfig
from stableface.face.face_model import FaceModel
from stableface.io.storage import Storage, join
from stableface.models.config import ModelConfig
from stableface.models.networks import StableFaceModels
from stableface.speaker_model import SpeakerModel

logger = logging.getLogger(__name__)

SUMMARY_FILE = "summary.json"


def default_version(speaker: str) -> str:
    return f"{speaker}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"


def assemble_networks(config: ModelConfig, modules: dict[str, dict[str, torch.Tensor]]) -> StableFaceModels:
    """StableFaceModels with the given component state dicts loaded (missing ones stay fresh)."""
    networks = StableFaceModels(config)
    for name, state in modules.items():
        getattr(networks, name).load_state_dict(state)
    return networks.eval()


def export_speaker_model(
    uri: str,
    *,
    speaker: str,
    model_config: ModelConfig,
    modules: dict[str, dict[str, torch.Tensor]],
    face_model: FaceModel,
    identity: np.ndarray,
    audio: AudioFeatureConfig,
    crop_size: int,
    summary: dict[str, Any],
    train_config: dict[str, Any],
    version: str | None = None,
    storage: Storage | None = None,
) -> SpeakerModel:
    """Write the speaker model directory at ``uri`` (local or s3://) and its ``summary.json``."""
    storage = storage or Storage()
    version = version or default_version(speaker)
    summary = {"speaker": speaker, "model_version": version, "model_uri": uri, **summary}
    model = SpeakerModel(
        speaker=speaker,
        networks=assemble_networks(model_config, modules),
        face_model=face_model,
        identity=np.asarray(identity, np.float32),
        audio=audio,
        crop_size=int(crop_size),
        metadata={"model_version": version, "training_summary": summary, "train_config": train_config},
    )
    storage.write_json(join(uri, SUMMARY_FILE), summary)
    model.save(uri, storage)  # speaker.json last: it marks the directory complete
    logger.info("exported speaker model %s (version %s) to %s", speaker, version, uri)
    return model
