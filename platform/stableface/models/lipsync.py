"""The lip-sync expert: a two-stream audio-visual embedding in the spirit of SyncNet.

Its sizes are :class:`stableface.models.config.LipSyncConfig` (beside the other networks' configs,
which job configs import without torch); a checkpoint carries that config.

Trained by the project (``stableface train-sync``, :mod:`stableface.training.sync`) because the
public SyncNet weights cannot be downloaded here. Both streams are fully convolutional over time:

- visual: per frame the 20 iBUG-68 lip points, normalised in the MSI crop
  (:func:`stableface.metrics.lipsync.lip_features`), a per-frame MLP, then temporal convolutions
  whose receptive field is ``window`` frames;
- audio: per frame the centre of its log-mel window
  (:class:`~stableface.models.audio_encoder.AudioEncoder`, the per-frame encoder audio2expression
  uses), then temporal convolutions over the same ``window`` frames.

Embedding ``i`` of either stream summarises frames ``i .. i + window - 1`` (valid convolutions:
T frames in, T - window + 1 embeddings out), is L2-normalised, and the two streams are compared
by Euclidean distance (in [0, 2]) or, equivalently, cosine similarity (1 - distance^2 / 2). One
pass embeds a whole video, so scoring every audio offset costs one distance matrix, not one network
call per offset.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from stableface.models.audio_encoder import AudioEncoder
from stableface.models.checks import check_shape
from stableface.models.config import LIPSYNC_TEMPORAL_KERNEL as TEMPORAL_KERNEL
from stableface.models.config import LipSyncConfig

MAX_LOGIT_SCALE = math.log(100.0)  # the similarity scale is capped at 100, as CLIP's


def similarity_scale(logit_scale: torch.Tensor) -> torch.Tensor:
    """The factor on cosine similarities before a softmax over audio candidates: the learned
    ``LipSyncNet.logit_scale`` exponentiated and capped. Training, the stage-1 sync loss and the
    confidence all use this one temperature, so a confidence reads in the units training fitted."""
    return logit_scale.clamp(max=MAX_LOGIT_SCALE).exp()


class TemporalHead(nn.Module):
    """(B, T, C) per-frame features -> (B, T - window + 1, D) unit embeddings of window-frame spans."""

    def __init__(self, in_dim: int, config: LipSyncConfig):
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_dim
        for _ in range(config.temporal_layers):
            layers += [
                nn.Conv1d(channels, config.hidden, TEMPORAL_KERNEL),
                nn.ReLU(),
                nn.Dropout(config.dropout),
            ]
            channels = config.hidden
        self.convs = nn.Sequential(*layers)
        self.project = nn.Conv1d(config.hidden, config.embedding_dim, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.convs(features.transpose(1, 2))  # (B, hidden, T - window + 1)
        embedding = self.project(x).transpose(1, 2)  # (B, T - window + 1, D)
        return F.normalize(embedding, dim=-1)


class VisualStream(nn.Module):
    def __init__(self, config: LipSyncConfig):
        super().__init__()
        self.config = config
        self.frame = nn.Sequential(
            nn.Linear(config.lip_dim, config.hidden),
            nn.ReLU(),
            nn.Linear(config.hidden, config.hidden),
            nn.ReLU(),
        )
        self.temporal = TemporalHead(config.hidden, config)

    def forward(self, lips: torch.Tensor) -> torch.Tensor:
        check_shape("lip features", lips, ("B", "T", self.config.lip_dim))
        return self.temporal(self.frame(lips))  # (B, T - window + 1, D)


class AudioStream(nn.Module):
    def __init__(self, config: LipSyncConfig):
        super().__init__()
        self.config = config
        self.frame = AudioEncoder(config.audio)
        self.temporal = TemporalHead(config.audio.out_dim, config)
        self.first_mel = (config.mel_window - config.audio.window) // 2

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        check_shape("audio windows", windows, ("B", "T", self.config.mel_window, self.config.audio.n_mels))
        central = windows[:, :, self.first_mel : self.first_mel + self.config.audio.window]  # (B, T, w, M)
        features = F.relu(self.frame(central))  # (B, T, A)
        return self.temporal(features)  # (B, T - window + 1, D)


class LipSyncNet(nn.Module):
    """Lip features (B, T, 40) and log-mel windows (B, T, W, M) -> two (B, T - window + 1, D) embeddings."""

    def __init__(self, config: LipSyncConfig):
        super().__init__()
        self.config = config
        self.visual = VisualStream(config)
        self.audio = AudioStream(config)
        # Scale of the cosine similarities in the contrastive loss (CLIP's learnable temperature,
        # started at 1 / 0.07, read through similarity_scale); the confidence uses it too.
        self.logit_scale = nn.Parameter(torch.tensor(2.659))

    def forward(self, lips: torch.Tensor, windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.visual(lips), self.audio(windows)


# ------------------------------------------------------------------------------------ checkpoint
CHECKPOINT_FORMAT = "stableface-lipsync"
CHECKPOINT_VERSION = 1


def save_lipsync(uri: str, model: LipSyncNet, extra: dict | None = None, storage=None) -> None:
    """One torch file: ``{"format", "version", "config", "state_dict", "extra"}`` (extra: how it was trained)."""
    from stableface.config import to_dict
    from stableface.io.storage import Storage

    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "config": to_dict(model.config),
        # fp16 halves the shipped file; the network runs in fp32 after loading.
        "state_dict": {name: tensor.detach().half() for name, tensor in model.state_dict().items()},
        "extra": extra or {},
    }
    storage = storage or Storage()
    with storage.writable_local(uri, suffix=".pt") as path:
        torch.save(payload, path)


def load_lipsync(uri: str, storage=None) -> tuple[LipSyncNet, dict]:
    """The network rebuilt from the checkpoint's own config, in eval mode, and the checkpoint's ``extra``."""
    from stableface.models.checkpoint import read_payload
    from stableface.utils.serialise import from_dict

    payload = read_payload(uri, CHECKPOINT_FORMAT, CHECKPOINT_VERSION, "lip-sync expert", storage)
    model = LipSyncNet(from_dict(LipSyncConfig, payload["config"]))
    model.load_state_dict({name: tensor.float() for name, tensor in payload["state_dict"].items()})
    return model.eval(), payload.get("extra", {})
