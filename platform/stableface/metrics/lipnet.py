"""Lip-reading word error rate with LipNet (Assael, Shillingford, Whiteson, de Freitas 2016).

LipNet reads 75-frame GRID-style mouth crops (100x50 px): three spatiotemporal conv blocks
(3x5x5/32, 3x5x5/64, 3x3x3/96, each with ReLU, spatial dropout and 1x2x2 max pooling), two
bidirectional GRUs of 256 units and a linear layer to characters plus the CTC blank. WER is the
word-level edit distance of the greedy CTC decode against the reference transcript, divided by the
reference word count. Weights (``lipnet.pt``, a state dict for :class:`LipNet`) cannot be
downloaded here: see :mod:`stableface.metrics.weights`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from stableface.face.ibug import LIPS, mouth_width
from stableface.metrics.weights import find_weights, load_state_dict

WEIGHTS_FILE = "lipnet.pt"
BLANK = 0  # CTC blank index; characters follow from 1
ALPHABET = " abcdefghijklmnopqrstuvwxyz"
MOUTH_HEIGHT, MOUTH_WIDTH = 50, 100  # LipNet's GRID mouth crop
MOUTH_CROP_RATIO = 2.0  # crop width / mouth width (GRID mouths span about half of LipNet's 100 px crop)


@dataclass
class LipNetConfig:
    """LipNet's sizes (Assael et al. 2016, Table 1)."""

    channels: tuple[int, int, int] = (32, 64, 96)
    gru_hidden: int = 256
    dropout: float = 0.5
    n_classes: int = len(ALPHABET) + 1  # characters + CTC blank
    height: int = MOUTH_HEIGHT
    width: int = MOUTH_WIDTH


class LipNet(nn.Module):
    def __init__(self, config: LipNetConfig | None = None):
        super().__init__()
        self.config = config = config or LipNetConfig()
        c1, c2, c3 = config.channels
        self.conv1 = nn.Conv3d(3, c1, kernel_size=(3, 5, 5), stride=(1, 2, 2), padding=(1, 2, 2))
        self.conv2 = nn.Conv3d(c1, c2, kernel_size=(3, 5, 5), stride=(1, 1, 1), padding=(1, 2, 2))
        self.conv3 = nn.Conv3d(c2, c3, kernel_size=(3, 3, 3), stride=(1, 1, 1), padding=(1, 1, 1))
        self.pool = nn.MaxPool3d(kernel_size=(1, 2, 2), stride=(1, 2, 2))
        self.dropout3d = nn.Dropout3d(config.dropout)
        self.dropout = nn.Dropout(config.dropout)
        feature_h = config.height // 2 // 2 // 2 // 2  # stride-2 conv1, then three pools
        feature_w = config.width // 2 // 2 // 2 // 2
        self.gru1 = nn.GRU(
            c3 * feature_h * feature_w, config.gru_hidden, batch_first=True, bidirectional=True
        )
        self.gru2 = nn.GRU(2 * config.gru_hidden, config.gru_hidden, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(2 * config.gru_hidden, config.n_classes)

    def forward(self, mouths: torch.Tensor) -> torch.Tensor:
        # mouths: (B, 3, T, 50, 100) RGB in [0, 1]
        x = self.pool(self.dropout3d(torch.relu(self.conv1(mouths))))  # (B, 32, T, 12, 25)
        x = self.pool(self.dropout3d(torch.relu(self.conv2(x))))  # (B, 64, T, 6, 12)
        x = self.pool(self.dropout3d(torch.relu(self.conv3(x))))  # (B, 96, T, 3, 6)
        x = x.permute(0, 2, 1, 3, 4).flatten(2)  # (B, T, 1728)
        x, _ = self.gru1(x)  # (B, T, 512)
        x = self.dropout(x)
        x, _ = self.gru2(x)  # (B, T, 512)
        x = self.dropout(x)
        return self.fc(x)  # (B, T, 28) logits


def load_lipnet(weights: str | Path | None = None) -> LipNet:
    """LipNet with ``lipnet.pt`` weights from ``weights`` (file or directory) or $STABLEFACE_WEIGHTS_DIR."""
    path = find_weights(WEIGHTS_FILE, weights)
    model = LipNet()
    model.load_state_dict(load_state_dict(path), strict=True)
    return model.eval()


def mouth_crops(frames: np.ndarray, ibug68: np.ndarray) -> np.ndarray:
    """Mouth-centred crops (T, 50, 100, 3) uint8: width = 2 mouth widths (mean over the clip)."""
    import cv2

    scale = MOUTH_WIDTH / (float(np.mean(mouth_width(ibug68))) * MOUTH_CROP_RATIO)  # output px per frame px
    crops = []
    for frame, points in zip(frames, ibug68, strict=True):
        centre_x, centre_y = points[LIPS].mean(axis=0)
        # An affine map from the crop window onto the output grid; outside the frame stays black.
        matrix = np.array(
            [[scale, 0, MOUTH_WIDTH / 2 - scale * centre_x], [0, scale, MOUTH_HEIGHT / 2 - scale * centre_y]]
        )
        crops.append(cv2.warpAffine(frame, matrix, (MOUTH_WIDTH, MOUTH_HEIGHT), flags=cv2.INTER_LINEAR))
    return np.stack(crops)


def greedy_ctc_decode(logits: np.ndarray | torch.Tensor, alphabet: str = ALPHABET, blank: int = BLANK) -> str:
    """Best path decoding of (T, C) scores: argmax per frame, merge repeats, drop blanks."""
    best = np.asarray(torch.as_tensor(logits).argmax(dim=-1)).reshape(-1)  # (T,)
    chars, previous = [], None
    for index in best:
        if index != previous and index != blank:
            chars.append(alphabet[index - 1 if blank == 0 else index])
        previous = index
    return " ".join("".join(chars).split())


def edit_distance(reference: Sequence, hypothesis: Sequence) -> int:
    """Levenshtein distance (substitutions, insertions, deletions all cost 1)."""
    previous = list(range(len(hypothesis) + 1))
    for i, ref_item in enumerate(reference, start=1):
        current = [i]
        for j, hyp_item in enumerate(hypothesis, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref_item != hyp_item)))
        previous = current
    return previous[-1]


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word edit distance / reference word count (case-insensitive, whitespace-split)."""
    ref_words = reference.lower().split()
    if not ref_words:
        raise ValueError("word_error_rate: empty reference transcript")
    return edit_distance(ref_words, hypothesis.lower().split()) / len(ref_words)


def character_error_rate(reference: str, hypothesis: str) -> float:
    ref = " ".join(reference.lower().split())
    if not ref:
        raise ValueError("character_error_rate: empty reference transcript")
    return edit_distance(ref, " ".join(hypothesis.lower().split())) / len(ref)


@torch.no_grad()
def lipnet_transcribe(model: LipNet, mouths: np.ndarray) -> str:
    """Greedy transcript of mouth crops (T, 50, 100, 3) uint8."""
    clip = torch.from_numpy(np.ascontiguousarray(mouths)).float().div(255.0)  # (T, 50, 100, 3)
    clip = clip.permute(3, 0, 1, 2)[None]  # (1, 3, T, 50, 100)
    return greedy_ctc_decode(model(clip)[0])


def wer_score_file(
    model: LipNet, path: str | Path, ibug68: np.ndarray, transcript: str
) -> dict[str, float | str]:
    """LipNet transcript, WER and CER of a local video file against ``transcript``."""
    from stableface.io.video import read_frames

    frames = read_frames(path)[: len(ibug68)]  # (T, H, W, 3)
    hypothesis = lipnet_transcribe(model, mouth_crops(frames, ibug68[: len(frames)]))
    return {
        "lipnet_text": hypothesis,
        "wer": word_error_rate(transcript, hypothesis),
        "cer": character_error_rate(transcript, hypothesis),
    }
