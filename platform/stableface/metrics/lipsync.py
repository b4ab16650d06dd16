"""Audio-visual sync of a video by the project's own lip-sync expert: confidence and audio offset.

The expert (:mod:`stableface.models.lipsync`, weights shipped in the package, model card
``stableface/models/weights/lipsync.md``) embeds every 5-frame span of the lips and of the audio.
For each audio offset k in [-K, K] frames, d_t(k) = the distance between the lips at t and the
audio at t + k, over the frames t where every offset has audio; D(k) = mean_t d_t(k).

- ``offset_frames`` = argmin_k D(k). **Sign: positive = the sound comes late** (what the lips do at
  frame t is heard at frame t + k; a track delayed by 8 frames gives +8), negative = early.
- ``confidence`` (nats): how much better than chance each frame's lips pick out the audio at that
  offset among the 2K + 1 candidates, averaged over frames. Per frame, p_t(k) = softmax over k of
  s * cos_t(k), with s the similarity scale the expert was trained with (``similarity_scale``), and
  confidence = mean_t log p_t(offset) + log(2K + 1), over the frames whose audio at that offset
  lies inside the track (the silence padded beyond its ends is no evidence either way). 0 = chance;
  log(31) = 3.43 at most; speech that is not the lips' (another clip's) scores below 0, since its
  frames prefer scattered offsets.
  It is log(2K + 1) minus the cross-entropy the expert was trained to minimise, so it is on the
  same scale for every clip, where the LSE-C margin median_k D(k) - min_k D(k) (kept as
  ``margin``) is not: a speaker the expert has not seen gives a shallow but consistent curve.

Only frames inside face segments are scored (short detector gaps bridged, cutaways skipped).
The visual input is the lip landmarks the audit and the dub already track, so scoring adds
two small network passes per video (``python -m bench sync``).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from stableface.audio.features import AudioFeatureConfig, audio_features
from stableface.errors import InputError
from stableface.face.ibug import LIPS, N_IBUG, mouth_width
from stableface.metrics.msi import MOUTH_WIDTH_FRACTION
from stableface.models.lipsync import LipSyncNet, load_lipsync, similarity_scale

WEIGHTS_PACKAGE = "stableface.models"
WEIGHTS_FILE = "weights/lipsync.pt"
MAX_OFFSET = 15  # frames searched either way (SyncNet's +-15)
MIN_SCORED_FRAMES = 10  # fewer frames with audio at every offset give no score
# Lip offsets from their centre, in MSI-crop widths, are within about +-0.15; x8 brings them to +-1.
FEATURE_SCALE = 8.0
LEFT_EYE, RIGHT_EYE = slice(36, 42), slice(42, 48)  # iBUG-68 (image left / right)


def default_weights() -> Path:
    """The weights shipped in the package."""
    return Path(str(resources.files(WEIGHTS_PACKAGE).joinpath(WEIGHTS_FILE)))


# ------------------------------------------------------------------------------------ features
def lip_features(ibug68: np.ndarray) -> np.ndarray:
    """Bridged iBUG-68 landmarks (T, 68, 2) in frame pixels -> (T, 40) normalised lip shapes.

    Per frame the 20 lip points are centred on their mean and rotated so the eye line is level
    (head translation and roll removed); lengths are in units of the video's MSI crop (median
    mouth width / 0.25, so face size and resolution drop out); then the video's median lip shape
    is subtracted, which removes most of the speaker's identity and leaves the motion.
    """
    track = np.asarray(ibug68, dtype=np.float64)
    if track.ndim != 3 or track.shape[1:] != (N_IBUG, 2) or track.shape[0] == 0:
        raise InputError("landmarks", f"expected shape (T, {N_IBUG}, 2) with T > 0, got {track.shape}")
    if not np.isfinite(track).all():
        raise InputError("landmarks", "contain NaN or infinite values (bridge missing frames first)")
    eye_line = track[:, RIGHT_EYE].mean(axis=1) - track[:, LEFT_EYE].mean(axis=1)  # (T, 2)
    angle = np.arctan2(eye_line[:, 1], eye_line[:, 0])  # (T,) head roll in the image
    cos, sin = np.cos(-angle), np.sin(-angle)
    rotation = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)  # (T, 2, 2)
    lips = track[:, LIPS]  # (T, 20, 2)
    centred = lips - lips.mean(axis=1, keepdims=True)  # (T, 20, 2)
    level = np.einsum("tij,tpj->tpi", rotation, centred)  # (T, 20, 2)
    crop_side = float(np.median(mouth_width(track))) / MOUTH_WIDTH_FRACTION
    if crop_side <= 0:
        raise InputError("landmarks", "mouth width is zero: cannot size the MSI crop")
    shapes = level / crop_side * FEATURE_SCALE  # (T, 20, 2)
    shapes -= np.median(shapes, axis=0, keepdims=True)
    return shapes.reshape(len(track), -1).astype(np.float32)  # (T, 40)


def shift_audio(windows: np.ndarray, frames: int, silence: float) -> np.ndarray:
    """Per-frame audio windows (T, W, M) delayed by ``frames`` (negative: advanced), silence filling in."""
    shifted = np.full_like(windows, silence)
    if frames >= 0:
        shifted[frames:] = windows[: len(windows) - frames]
    else:
        shifted[:frames] = windows[-frames:]
    return shifted


# ------------------------------------------------------------------------------------ the score
@dataclass
class SyncScore:
    """The expert's verdict on one video (sign convention and units in the module docstring)."""

    confidence: float  # nats above chance that the lips pick the audio at offset_frames
    offset_frames: int  # > 0: the sound comes late
    margin: float  # LSE-C: median_k D(k) - min_k D(k)
    min_distance: float
    n_frames: int  # video frames that entered the distance curve
    fps: float
    distances: np.ndarray  # (2K + 1,) mean distance at offsets -K .. K

    @property
    def offset_ms(self) -> float:
        return 1000.0 * self.offset_frames / self.fps

    def to_row(self) -> dict:
        return {
            "lipsync_confidence": round(self.confidence, 4),
            "lipsync_offset_frames": self.offset_frames,
            "lipsync_offset_ms": round(self.offset_ms, 1),
        }


def distance_matrix(
    visual: torch.Tensor, audio: torch.Tensor, scored: np.ndarray, max_offset: int
) -> np.ndarray:
    """Lips-to-audio distances at offsets -K..K of each of the ``scored`` lip spans.

    ``visual`` (N, D) embeds N lip spans; ``audio`` (N + 2K, D) the audio spans from K before the
    first to K after the last (audio span ``t + K`` is the one under lip span ``t``); ``scored`` (N,)
    bool marks the lip spans to use, the same for every offset. Returns (F, 2K + 1), F scored spans.
    """
    if audio.shape[0] != visual.shape[0] + 2 * max_offset:
        raise ValueError(
            f"audio embeddings: expected {visual.shape[0] + 2 * max_offset}, got {audio.shape[0]}"
        )
    index = np.flatnonzero(scored)  # (F,)
    offsets = np.arange(-max_offset, max_offset + 1)  # (2K + 1,)
    lips = visual[torch.from_numpy(index)]  # (F, D)
    sound = audio[torch.from_numpy(index[:, None] + max_offset + offsets[None, :])]  # (F, 2K + 1, D)
    return torch.linalg.vector_norm(sound - lips[:, None, :], dim=-1).double().numpy()  # (F, 2K + 1)


def score_from_distances(distances: np.ndarray, has_audio: np.ndarray, scale: float, fps: float) -> SyncScore:
    """Offset, confidence and margin of (F, 2K + 1) unit-embedding distances (formulas in the
    module docstring). ``has_audio`` (F, 2K + 1) bool: that candidate's audio lies inside the track;
    ``scale``: the expert's similarity scale."""
    if distances.ndim != 2 or distances.shape[0] == 0 or distances.shape[1] % 2 == 0:
        raise ValueError(f"distances: expected (F > 0, 2K + 1), got {distances.shape}")
    if has_audio.shape != distances.shape:
        raise ValueError(f"has_audio: expected {distances.shape}, got {has_audio.shape}")
    curve = distances.mean(axis=0)  # (2K + 1,)
    best = int(np.argmin(curve))
    logits = scale * (1.0 - 0.5 * distances**2)  # (F, 2K + 1) scaled cosine similarities
    log_p = logits[:, best] - np.logaddexp.reduce(logits, axis=1)  # (F,)
    # A clip shorter than the offset has no frame with audio there: then every frame counts.
    judged = has_audio[:, best] if has_audio[:, best].any() else np.ones(len(log_p), bool)
    return SyncScore(
        confidence=float(log_p[judged].mean() + np.log(distances.shape[1])),
        offset_frames=best - distances.shape[1] // 2,
        margin=float(np.median(curve) - curve[best]),
        min_distance=float(curve[best]),
        n_frames=len(distances),
        fps=float(fps),
        distances=curve,
    )


class SyncExpert:
    """The loaded expert and how it scores: one instance per actor or process, reused for every video."""

    def __init__(self, model: LipSyncNet, max_offset: int = MAX_OFFSET, source: str = ""):
        self.model = model.eval()
        self.max_offset = max_offset
        self.source = source
        self.scale = float(similarity_scale(model.logit_scale.detach()))
        self.audio_config = AudioFeatureConfig(
            n_mels=model.config.audio.n_mels, frames_per_window=model.config.mel_window
        )

    @classmethod
    def load(cls, weights: str | None = None, max_offset: int = MAX_OFFSET) -> SyncExpert:
        """From ``weights`` (a checkpoint URI), else the weights shipped in the package."""
        uri = str(weights or default_weights())
        model, _ = load_lipsync(uri)
        return cls(model, max_offset, uri)

    @torch.no_grad()
    def embed(self, lips: np.ndarray, windows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(T, 40) lip features and (T', W, M) audio windows -> (T - window + 1, D), (T' - window + 1, D)."""
        visual = self.model.visual(torch.from_numpy(np.ascontiguousarray(lips, np.float32))[None])
        audio = self.model.audio(torch.from_numpy(np.ascontiguousarray(windows, np.float32))[None])
        return visual[0], audio[0]

    def score(
        self, ibug68: np.ndarray, windows: np.ndarray, fps: float, in_segment: np.ndarray | None = None
    ) -> SyncScore:
        """Sync of bridged landmarks (T, 68, 2) with per-frame audio windows (T, W, M) at ``fps``.

        ``in_segment`` (T,) bool: frames inside face segments (None: all); a span is scored only
        when all its frames are inside one.
        """
        return self.score_features(lip_features(ibug68), windows, fps, in_segment)

    def score_features(
        self, lips: np.ndarray, windows: np.ndarray, fps: float, in_segment: np.ndarray | None = None
    ) -> SyncScore:
        span, shift = self.model.config.window, self.max_offset
        n_frames = min(len(lips), len(windows))
        if n_frames < span + MIN_SCORED_FRAMES - 1:
            raise InputError(
                "video",
                f"{n_frames} frames are too few for a sync score (need {span + MIN_SCORED_FRAMES - 1})",
            )
        inside = np.ones(n_frames, bool) if in_segment is None else np.asarray(in_segment[:n_frames], bool)
        # Before the first and after the last frame there is no sound: silence, as a delayed track
        # has it, so every lip span is compared at every offset.
        silence = np.full((shift, *windows.shape[1:]), self.audio_config.silence_value, np.float32)
        padded = np.concatenate([silence, windows[:n_frames], silence])  # (T + 2K, W, M)
        visual, audio = self.embed(lips[:n_frames], padded)  # (N, D), (N + 2K, D); N = T - span + 1
        # A span is scored when every one of its frames lies inside a face segment.
        spans_inside = np.lib.stride_tricks.sliding_window_view(inside, span).all(axis=1)  # (N,)
        used = int(spans_inside.sum())
        if used < MIN_SCORED_FRAMES:
            raise InputError(
                "video", f"only {used} face frames can be scored (a sync score needs {MIN_SCORED_FRAMES})"
            )
        partners = np.flatnonzero(spans_inside)[:, None] + np.arange(-shift, shift + 1)  # (F, 2K + 1)
        has_audio = (partners >= 0) & (partners < len(visual))
        distances = distance_matrix(visual, audio, spans_inside, shift)
        return score_from_distances(distances, has_audio, self.scale, fps)

    def score_file(
        self,
        path: str | Path,
        ibug68: np.ndarray,
        fps: float | Fraction,
        in_segment: np.ndarray | None = None,
    ) -> SyncScore:
        """Sync of a local video file's own audio track with its tracked, bridged landmarks."""
        from stableface.io.audio import read_audio

        samples = read_audio(path, self.audio_config.sample_rate)
        windows = audio_features(samples, len(ibug68), fps, self.audio_config)  # (T, W, M)
        return self.score(ibug68, windows, float(fps), in_segment)
