"""Training and held-out evaluation of the lip-sync expert (:mod:`stableface.models.lipsync`).

Samples are runs of ``centre + 2 * max_shift + window - 1`` consecutive face frames of one video:
lip features of the middle ``centre + window - 1`` frames, audio windows of all of them. Every lip
span is scored against every audio span of the batch (cosine similarity x a learned scale,
softmax cross-entropy, both directions as CLIP): the one true partner, the same clip's audio up
to ``max_shift`` frames either side (time-shifted negatives, the hard ones that teach the offset)
and every other clip's audio (other-clip negatives), as SyncNet's training pairs do.

Held-out evaluation (:func:`evaluate_sync`) is what the model card reports: offsets recovered
from audio shifted by -10..+10 frames, and the ROC AUC of the confidence for in-sync audio against
the next held-out clip's speech (and against every other held-out clip's).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import Dataset

from stableface.audio.features import AudioFeatureConfig
from stableface.data.layout import TRACK, DatasetLayout
from stableface.data.records import VideoTrack
from stableface.data.sequences import speaker_videos, split_videos, window_index
from stableface.errors import InputError
from stableface.io.storage import Storage
from stableface.metrics.lipsync import SyncExpert, SyncScore, lip_features, shift_audio
from stableface.models.lipsync import LipSyncNet, similarity_scale
from stableface.training.loop import NamedStateTrainer, WorkerContext, optimise
from stableface.training.sync_config import SyncHoldout, SyncScheduleConfig

logger = logging.getLogger(__name__)

EVAL_SHIFTS = tuple(range(-10, 11))  # frames of audio delay the held-out evaluation applies
OFFSET_TOLERANCE = 1  # an estimate within +-1 frame of the true shift counts as right
WARMUP_FRACTION = 0.05  # of the run, learning rate rising linearly


@dataclass
class SyncClip:
    """One preprocessed video, ready to slice: lip features, audio windows, usable frames."""

    key: str  # "<speaker>/<video_id>"
    lips: np.ndarray  # (T, 40) float32
    audio: np.ndarray  # (T, W, M) float16
    trainable: np.ndarray  # (T,) bool, inside a face segment
    fps: float


def load_clip(storage: Storage, layout: DatasetLayout, speaker: str, video_id: str, fps: float) -> SyncClip:
    track = VideoTrack.load(storage, layout.video_file(speaker, video_id, TRACK))
    return SyncClip(f"{speaker}/{video_id}", lip_features(track.ibug68), track.audio, track.trainable(), fps)


def split_dataset(
    storage: Storage, layout: DatasetLayout, speakers: list[str], holdout: SyncHoldout
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(train, held-out) lists of (speaker, video_id), deterministic for a given holdout config."""
    videos = {speaker: speaker_videos(storage, layout, speaker) for speaker in speakers}
    small = sorted(s for s, ids in videos.items() if len(ids) < holdout.split_min_videos)
    if holdout.speakers:
        unknown = sorted(set(holdout.speakers) - set(speakers))
        if unknown:
            raise InputError("holdout.speakers", f"not in the dataset: {', '.join(unknown)}")
        unseen = set(holdout.speakers)
    else:
        count = min(holdout.unseen_speakers, len(small))
        pick = np.random.default_rng(holdout.seed).choice(len(small), size=count, replace=False)
        unseen = {small[i] for i in pick}
    train, held = [], []
    for speaker, ids in sorted(videos.items()):
        if speaker in unseen:
            held += [(speaker, v) for v in ids]
        elif len(ids) >= holdout.split_min_videos:
            kept, out = split_videos(ids, holdout.per_speaker, holdout.seed)
            train += [(speaker, v) for v in kept]
            held += [(speaker, v) for v in out]
        else:
            train += [(speaker, v) for v in ids]
    return train, held


class SyncSequences(Dataset):
    """``{"lips": (C + window - 1, 40), "audio": (C + 2K + window - 1, W, M)}`` samples (C centre spans)."""

    def __init__(self, clips: list[SyncClip], window: int, schedule: SyncScheduleConfig):
        self.clips = clips
        self.window = window
        self.schedule = schedule
        self.length = schedule.centre + 2 * schedule.max_shift + window - 1
        self.index = window_index([c.trainable for c in clips], self.length, schedule.stride)
        self.epoch = 0
        if not self.index:
            raise InputError("sync training clips", f"no clip has {self.length} consecutive face frames")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        clip_index, start = self.index[item]
        clip = self.clips[clip_index]
        shift = self.schedule.max_shift
        lips = clip.lips[
            start + shift : start + shift + self.schedule.centre + self.window - 1
        ]  # (C+w-1, 40)
        rng = np.random.default_rng((self.schedule.seed, self.epoch, item))
        audio = clip.audio[start : start + self.length].astype(np.float32)  # (C + 2K + w - 1, W, M)
        return {
            "lips": torch.from_numpy(augment_lips(lips, rng, self.schedule)),
            "audio": torch.from_numpy(augment_audio(audio, rng, self.schedule)),
        }


# iBUG-68 lips 48-67 mirrored left-right, as indices among the 20 lip points.
MIRRORED_LIPS = np.array([6, 5, 4, 3, 2, 1, 0, 11, 10, 9, 8, 7, 16, 15, 14, 13, 12, 19, 18, 17])


def augment_lips(lips: np.ndarray, rng: np.random.Generator, schedule: SyncScheduleConfig) -> np.ndarray:
    """(L, 40) lip features -> the same lips mirrored, stretched, tilted, scaled in motion, noisier."""
    shapes = lips.reshape(len(lips), -1, 2).astype(np.float64)  # (L, 20, 2)
    if rng.random() < schedule.mirror_probability:
        shapes = shapes[:, MIRRORED_LIPS] * np.array([-1.0, 1.0])
    angle = np.deg2rad(rng.uniform(-schedule.tilt_degrees, schedule.tilt_degrees))
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    stretch = 1.0 + rng.uniform(-schedule.stretch, schedule.stretch, size=2)  # (2,) x, y
    shapes = (shapes * stretch) @ rotation.T
    shapes *= rng.uniform(schedule.amplitude_min, schedule.amplitude_max)
    shapes += rng.normal(0.0, schedule.landmark_noise, shapes.shape)
    return shapes.reshape(len(lips), -1).astype(np.float32)


def augment_audio(audio: np.ndarray, rng: np.random.Generator, schedule: SyncScheduleConfig) -> np.ndarray:
    """(L, W, M) normalised log-mel windows -> louder or quieter, a band masked, noisier."""
    audio = audio + rng.uniform(-schedule.gain, schedule.gain)
    width = int(rng.integers(0, schedule.mel_mask_bands + 1))
    if width:
        first = int(rng.integers(0, audio.shape[-1] - width + 1))
        audio[..., first : first + width] = audio.mean()
    audio += rng.normal(0.0, schedule.mel_noise, audio.shape).astype(np.float32)
    return audio.astype(np.float32)


def contrastive_loss(
    visual: torch.Tensor, audio: torch.Tensor, max_shift: int, logit_scale: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Symmetric InfoNCE of (B, C, D) lip embeddings against the batch's (B, C + 2K, D) audio ones.

    Lip span c of sample b is partnered with audio span c + K of the same sample; every other
    audio span of the batch is a negative (shifted ones of the same clip, and other clips').
    """
    batch, centre, dim = visual.shape
    scale = similarity_scale(logit_scale)
    lips = visual.reshape(batch * centre, dim)  # (B*C, D)
    sound = audio.reshape(-1, dim)  # (B*(C+2K), D)
    span = audio.shape[1]
    target = (torch.arange(batch)[:, None] * span + max_shift + torch.arange(centre)[None, :]).reshape(-1)
    logits = scale * lips @ sound.T  # (B*C, B*(C+2K))
    lips_to_audio = F.cross_entropy(logits, target)
    # Audio -> lips over the partnered audio spans only (the others have no lip partner).
    audio_to_lips = F.cross_entropy(scale * sound[target] @ lips.T, torch.arange(batch * centre))
    accuracy = (logits.argmax(dim=1) == target).float().mean()
    return {
        "total": 0.5 * (lips_to_audio + audio_to_lips),
        "lips_to_audio": lips_to_audio,
        "audio_to_lips": audio_to_lips,
        "accuracy": accuracy,
    }


class SyncTrainer(NamedStateTrainer):
    """One optimiser step of the expert on a batch of :class:`SyncSequences` samples."""

    stage = "lipsync"

    def __init__(self, model: LipSyncNet, schedule: SyncScheduleConfig, context: WorkerContext):
        self.model = model
        self.schedule = schedule
        self.context = context
        self.optimizers = {
            "lipsync": torch.optim.AdamW(
                model.parameters(), lr=schedule.lr, weight_decay=schedule.weight_decay
            )
        }
        self.scalers = {"lipsync": torch.amp.GradScaler("cpu", enabled=False)}
        self.step = self.epoch = self.batch_in_epoch = 0
        self.elapsed_s = 0.0
        self.time_fraction = 0.0

    def networks(self) -> dict:
        return {"lipsync": self.model}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def learning_rate(self) -> float:
        """Linear warm-up, then cosine decay to zero over the run's progress: the larger of the
        share of steps and the share of the time budget used, so a run that a busy machine stops
        at its time cap has still annealed."""
        progress = max(self.step / self.schedule.max_steps, self.time_fraction)
        if progress < WARMUP_FRACTION:
            return self.schedule.lr * max(progress, 1e-3) / WARMUP_FRACTION
        decay = (progress - WARMUP_FRACTION) / (1.0 - WARMUP_FRACTION)
        return self.schedule.lr * 0.5 * (1.0 + math.cos(math.pi * min(decay, 1.0)))

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        self.model.train()
        lr = self.learning_rate()
        for group in self.optimizers["lipsync"].param_groups:
            group["lr"] = lr
        visual, audio = self.model(batch["lips"], batch["audio"])  # (B, C, D), (B, C + 2K, D)
        terms = contrastive_loss(visual, audio, self.schedule.max_shift, self.model.logit_scale)
        self.optimizers["lipsync"].zero_grad(set_to_none=True)
        optimise(
            terms["total"], [self.optimizers["lipsync"]], self.scalers["lipsync"],
            list(self.model.parameters()), self.schedule.grad_clip,
        )  # fmt: skip
        return {
            f"loss/{name}" if name != "accuracy" else name: float(v.detach()) for name, v in terms.items()
        }

    def sample_image(self, batch: dict[str, torch.Tensor]) -> np.ndarray | None:
        return None


# ----------------------------------------------------------------------------------- evaluation
def roc_auc(positives: np.ndarray, negatives: np.ndarray) -> float:
    """Area under the ROC curve: P(a positive scores above a negative), ties counting half."""
    positives, negatives = np.asarray(positives, float), np.asarray(negatives, float)
    greater = (positives[:, None] > negatives[None, :]).sum()
    ties = (positives[:, None] == negatives[None, :]).sum()
    return float((greater + 0.5 * ties) / (positives.size * negatives.size))


@dataclass
class SyncEvaluation:
    """Held-out figures of the expert (the model card's table)."""

    clips: list[str]
    shifts: list[int]
    estimates: np.ndarray  # (clips, shifts) estimated offset in frames
    in_sync: list[SyncScore]  # (clips,)
    mismatched: list[SyncScore]  # (clips,) the same lips with the next held-out clip's audio
    every_mismatch: list[SyncScore]  # (clips * (clips - 1),) the lips with every other clip's audio

    @property
    def within_tolerance(self) -> float:
        true = np.asarray(self.shifts)[None, :]
        return float((np.abs(self.estimates - true) <= OFFSET_TOLERANCE).mean())

    @property
    def auc(self) -> float:
        return roc_auc(_confidences(self.in_sync), _confidences(self.mismatched))

    def confusion(self) -> dict[int, dict[str, float]]:
        """Per true shift: the share within +-1 frame and how the estimates spread."""
        table = {}
        for column, shift in enumerate(self.shifts):
            estimates = self.estimates[:, column]
            values, counts = np.unique(estimates, return_counts=True)
            table[shift] = {
                "within_1": float((np.abs(estimates - shift) <= OFFSET_TOLERANCE).mean()),
                "estimates": {int(v): int(c) for v, c in zip(values, counts, strict=True)},
            }
        return table

    def summary(self) -> dict:
        in_sync, mismatched = _confidences(self.in_sync), _confidences(self.mismatched)
        margins = [np.array([s.margin for s in scores]) for scores in (self.in_sync, self.mismatched)]
        return {
            "clips": len(self.clips),
            "speakers": len({c.split("/")[0] for c in self.clips}),
            "offset_within_1_frame": round(self.within_tolerance, 4),
            "auc_in_sync_vs_mismatched": round(self.auc, 4),
            "auc_in_sync_vs_every_other_clip": round(roc_auc(in_sync, _confidences(self.every_mismatch)), 4),
            # The LSE-C margin (median minus minimum distance) that the confidence replaced.
            "auc_lse_c_margin": round(roc_auc(*margins), 4),
            "median_confidence_in_sync": round(float(np.median(in_sync)), 4),
            "median_confidence_mismatched": round(float(np.median(mismatched)), 4),
            "confusion_by_shift": {str(k): v for k, v in self.confusion().items()},
            "held_out_clips": self.clips,
        }


def _confidences(scores: list[SyncScore]) -> np.ndarray:
    return np.array([score.confidence for score in scores])


def evaluate_sync(
    expert: SyncExpert, clips: list[SyncClip], shifts: tuple[int, ...] = EVAL_SHIFTS
) -> SyncEvaluation:
    """Shifted-audio offsets and in-sync vs mismatched confidences over held-out ``clips``."""
    if len(clips) < 2:
        raise InputError("held-out clips", f"need at least 2 for mismatched pairs, got {len(clips)}")
    silence = AudioFeatureConfig().silence_value
    estimates = np.zeros((len(clips), len(shifts)), np.int64)
    in_sync, mismatched, every_mismatch = [], [], []
    for row, clip in enumerate(clips):
        audio = clip.audio.astype(np.float32)
        for column, shift in enumerate(shifts):
            delayed = shift_audio(audio, shift, silence)
            estimates[row, column] = expert.score_features(
                clip.lips, delayed, clip.fps, clip.trainable
            ).offset_frames
        in_sync.append(expert.score_features(clip.lips, audio, clip.fps, clip.trainable))
        for step in range(1, len(clips)):
            other = clips[(row + step) % len(clips)].audio.astype(np.float32)  # another clip's speech
            if len(other) < len(audio):  # too short: repeat it (silence would make it trivially wrong)
                other = np.concatenate([other] * (len(audio) // len(other) + 1))
            score = expert.score_features(clip.lips, other[: len(audio)], clip.fps, clip.trainable)
            every_mismatch.append(score)
            if step == 1:
                mismatched.append(score)
    return SyncEvaluation(
        [c.key for c in clips], list(shifts), estimates, in_sync, mismatched, every_mismatch
    )
