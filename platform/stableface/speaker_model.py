"""A trained speaker model: one self-describing directory (local or s3://), loaded by one call.

```
<model_uri>/
  model.pt          networks: config + state dicts (stableface.models.checkpoint format)
  face_model.npz    the shared expression basis the networks were trained in
  identity.npy      (478, 3) the speaker's mean pose-normalised shape
  speaker.json      speaker id, feature settings, provenance and the training summary
```

Training writes it (:meth:`SpeakerModel.save`); dubbing, serving and tests read it
(:meth:`SpeakerModel.load`) with no other file or config.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stableface import __version__
from stableface.audio.features import AudioFeatureConfig
from stableface.errors import InputError
from stableface.face.face_model import FaceModel
from stableface.io.storage import Storage, join
from stableface.models.checkpoint import load_models, save_checkpoint
from stableface.models.networks import StableFaceModels
from stableface.utils.serialise import from_dict, to_dict

logger = logging.getLogger(__name__)

MODEL_FILE = "model.pt"
FACE_MODEL_FILE = "face_model.npz"
IDENTITY_FILE = "identity.npy"
METADATA_FILE = "speaker.json"
FORMAT = "stableface-speaker-model/1"
INFERENCE_COMPONENTS = ("audio2expression", "smoothing", "renderer")


@dataclass
class SpeakerModel:
    """Everything inference needs for one speaker."""

    speaker: str
    networks: StableFaceModels
    face_model: FaceModel
    identity: np.ndarray  # (478, 3) float32
    audio: AudioFeatureConfig = field(default_factory=AudioFeatureConfig)
    crop_size: int = 256  # the dataset crop size the pose and landmarks were measured at
    metadata: dict[str, Any] = field(default_factory=dict)  # provenance, training summary

    @property
    def image_size(self) -> int:
        return int(self.networks.config.renderer.image_size)

    @property
    def version(self) -> str:
        return str(self.metadata.get("model_version", "unversioned"))

    def save(self, uri: str, storage: Storage | None = None, include_discriminator: bool = False) -> None:
        storage = storage or Storage()
        components = INFERENCE_COMPONENTS + (("discriminator",) if include_discriminator else ())
        absent = [name for name in components if getattr(self.networks, name) is None]
        if absent:
            raise ValueError(f"cannot save speaker model '{self.speaker}' without {', '.join(absent)}")
        save_checkpoint(
            join(uri, MODEL_FILE),
            self.networks.config,
            {name: getattr(self.networks, name) for name in components},
            storage=storage,
        )
        self.face_model.save(join(uri, FACE_MODEL_FILE), storage)
        buffer = io.BytesIO()
        np.save(buffer, np.asarray(self.identity, dtype=np.float32))
        storage.write_bytes(join(uri, IDENTITY_FILE), buffer.getvalue())
        # Written last: its presence marks a complete model directory.
        storage.write_json(
            join(uri, METADATA_FILE),
            {
                "format": FORMAT,
                "speaker": self.speaker,
                "audio": to_dict(self.audio),
                "crop_size": self.crop_size,
                "stableface_version": __version__,
                **self.metadata,
            },
        )
        logger.info("saved speaker model '%s' to %s", self.speaker, uri)

    @classmethod
    def load(
        cls, uri: str, storage: Storage | None = None, components: Iterable[str] = INFERENCE_COMPONENTS
    ) -> SpeakerModel:
        """The model at ``uri`` with the networks in ``components`` only (default: all that inference runs)."""
        storage = storage or Storage()
        components = tuple(components)
        metadata_uri = join(uri, METADATA_FILE)
        if not storage.exists(metadata_uri):
            raise InputError(uri, f"not a speaker model directory (no {METADATA_FILE})")
        metadata = storage.read_json(metadata_uri)
        if metadata.get("format") != FORMAT:
            raise InputError(
                uri, f"unsupported speaker model format {metadata.get('format')!r} (expected {FORMAT})"
            )
        networks, _ = load_models(join(uri, MODEL_FILE), storage, required=components, components=components)
        identity = np.load(io.BytesIO(storage.read_bytes(join(uri, IDENTITY_FILE))), allow_pickle=False)
        extra = {k: v for k, v in metadata.items() if k not in ("format", "speaker", "audio", "crop_size")}
        return cls(
            speaker=metadata["speaker"],
            networks=networks,
            face_model=FaceModel.load(join(uri, FACE_MODEL_FILE), storage),
            identity=identity.astype(np.float32),
            audio=from_dict(AudioFeatureConfig, metadata["audio"]),
            crop_size=int(metadata["crop_size"]),
            metadata=extra,
        )
