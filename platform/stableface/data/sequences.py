"""Training samples from a preprocessed dataset: windows of T consecutive frames as tensors.

- :class:`ExpressionSequences` (stage 1, any number of speakers): audio windows -> mouth expression.
- :class:`RenderSequences` (stage 2, one speaker): the renderer's inputs and targets at the
  model's image size: eroded background, face-shape image, expression, audio, mask, target frame.

A speaker's videos are loaded into memory once (crops decoded and resized, face-shape images
rasterised from the face model's reconstruction of each frame, exactly as inference will draw
them); __getitem__ only slices and applies the random augmented erosion.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from stableface.audio.features import normalise_utterance
from stableface.data.layout import CROPS, FACE, TRACK, DatasetLayout
from stableface.data.manifest import read_speaker_manifest
from stableface.data.records import VideoFace, VideoTrack
from stableface.data.speakers import load_identity, track_pose
from stableface.errors import InputError
from stableface.face.erosion import ErosionConfig, augmented_erosion
from stableface.face.face_model import FaceModel, Pose, apply_pose
from stableface.face.lips import rest_gaps
from stableface.face.raster import render_shapes
from stableface.face.warp import WarpTexture, warp_texture
from stableface.io.storage import Storage
from stableface.io.video import read_frames
from stableface.status import RowStatus

logger = logging.getLogger(__name__)

PIXEL_SCALE = 127.5  # uint8 [0, 255] <-> [-1, 1]


def to_unit_range(frames: np.ndarray) -> torch.Tensor:
    """(T, S, S, 3) uint8 -> (T, 3, S, S) float32 in [-1, 1]."""
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(PIXEL_SCALE).sub(1.0)


def rescale_pose(pose: Pose, factor: float) -> Pose:
    """The pose of a crop resized by ``factor`` (pixel centres at integer coordinates, as cv2)."""
    translation = pose.translation.copy()
    translation[:, :2] = (translation[:, :2] + 0.5) * factor - 0.5
    translation[:, 2] *= factor
    return Pose(pose.scale * factor, pose.rotation, translation.astype(np.float32))


def split_videos(video_ids: list[str], holdout: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """Deterministic (train, held-out) split: ``holdout`` videos drawn with ``seed``."""
    ordered = sorted(video_ids)
    if holdout <= 0:
        return ordered, []
    if holdout >= len(ordered):
        raise InputError("holdout", f"cannot hold out {holdout} of {len(ordered)} videos and still train")
    picked = set(np.random.default_rng(seed).choice(len(ordered), size=holdout, replace=False).tolist())
    return [v for i, v in enumerate(ordered) if i not in picked], [
        v for i, v in enumerate(ordered) if i in picked
    ]


def speaker_videos(storage: Storage, layout: DatasetLayout, speaker: str) -> list[str]:
    """The speaker's successfully preprocessed video ids."""
    manifest = read_speaker_manifest(storage, layout, speaker)
    if manifest is None or manifest.get("status") != RowStatus.OK:
        raise InputError(
            layout.speaker_manifest(speaker), f"speaker '{speaker}' is not a finished, usable speaker"
        )
    return sorted(row["video_id"] for row in manifest["videos"] if row.get("status") == RowStatus.OK)


def window_index(trainable: list[np.ndarray], length: int, stride: int) -> list[tuple[int, int]]:
    """(video index, start frame) of every full window of ``length`` frames, ``stride`` apart.

    ``trainable`` holds each video's (T,) bool frames a window may contain (inside a face segment,
    :meth:`VideoTrack.trainable`); windows are laid out run by run, so none spans a frame outside.
    """
    index = []
    for video, usable in enumerate(trainable):
        usable = np.asarray(usable, dtype=bool)
        edges = np.flatnonzero(np.diff(np.concatenate([[False], usable, [False]]).astype(np.int8)))
        for first, stop in zip(edges[::2], edges[1::2], strict=True):
            index.extend((video, int(start)) for start in range(first, stop - length + 1, max(1, stride)))
    return index


def balanced_index(index: list[tuple[int, int]], video_speakers: list[str]) -> list[tuple[int, int]]:
    """Each speaker's windows repeated round(sqrt(largest speaker's count / theirs)) times: a
    speaker with one 3 s clip weighs more against one with 90, without its few windows dominating."""
    counts: dict[str, int] = {}
    for video, _ in index:
        counts[video_speakers[video]] = counts.get(video_speakers[video], 0) + 1
    largest = max(counts.values())
    repeats = {speaker: max(1, round((largest / count) ** 0.5)) for speaker, count in counts.items()}
    return [item for item in index for _ in range(repeats[video_speakers[item[0]]])]


@dataclass
class ExpressionVideo:
    key: str  # "<speaker>/<video_id>"
    audio: np.ndarray  # (T, W, M) float16
    mouth: np.ndarray  # (T, n_mouth) float32
    trainable: np.ndarray  # (T,) bool, inside a face segment
    lip_rest: np.ndarray  # (P, 3) float32 the speaker's identity inner-lip gaps (stage1_losses.rest_gaps)


class ExpressionSequences(Dataset):
    """Stage-1 samples over many speakers: ``{"audio": (L, W, M), "mouth": (L, n_mouth),
    "lip_rest": (P, 3)}`` (the identity's inner-lip gaps, for the mesh loss terms).

    ``utterance_norm``: per-utterance normalised audio windows
    (:func:`stableface.audio.features.normalise_utterance`), computed over each whole video."""

    def __init__(
        self,
        storage: Storage,
        layout: DatasetLayout,
        videos: list[tuple[str, str]],
        n_mouth: int,
        length: int,
        stride: int,
        utterance_norm: bool = False,
        balance_speakers: bool = False,
    ):
        self.videos: list[ExpressionVideo] = []
        rest: dict[str, np.ndarray] = {}
        for speaker, video_id in videos:
            if speaker not in rest:
                rest[speaker] = rest_gaps(load_identity(storage, layout, speaker))
            track = VideoTrack.load(storage, layout.video_file(speaker, video_id, TRACK))
            face = VideoFace.load(storage, layout.video_file(speaker, video_id, FACE))
            mouth = face.expression[:, :n_mouth].astype(np.float32)
            audio = normalise_utterance(track.audio).astype(np.float16) if utterance_norm else track.audio
            self.videos.append(
                ExpressionVideo(f"{speaker}/{video_id}", audio, mouth, track.trainable(), rest[speaker])
            )
        self.length = length
        self.index = window_index([v.trainable for v in self.videos], length, stride)
        if not self.index:
            raise InputError(layout.root, f"no video has {length} frames for a stage-1 window")
        if balance_speakers:
            self.index = balanced_index(self.index, [speaker for speaker, _ in videos])

    def __len__(self) -> int:
        return len(self.index)

    def item_id(self, item: int) -> str:
        """``<speaker>/<video_id>@<start frame>``: which window an index is."""
        video, start = self.index[item]
        return f"{self.videos[video].key}@{start}"

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        video, start = self.index[item]
        window = slice(start, start + self.length)
        source = self.videos[video]
        return {
            "audio": torch.from_numpy(source.audio[window].astype(np.float32)),  # (L, W, M)
            "mouth": torch.from_numpy(source.mouth[window]),  # (L, n_mouth)
            "lip_rest": torch.from_numpy(source.lip_rest),  # (P, 3)
        }


@dataclass
class RenderVideo:
    """One video at the model's image size S, ready to slice."""

    video_id: str
    frames: np.ndarray  # (T, S, S, 3) uint8 crops
    shapes: np.ndarray  # (T, S, S) uint8 face-shape images x 255
    audio: np.ndarray  # (T, W, M) float16
    expression: np.ndarray  # (T, E) float32
    pose: Pose  # canonical -> S-pixel crop
    trainable: np.ndarray  # (T,) bool, inside a face segment


def load_render_video(
    storage: Storage, layout: DatasetLayout, speaker: str, video_id: str, model: FaceModel, identity: np.ndarray,
    image_size: int,
) -> RenderVideo:  # fmt: skip
    track = VideoTrack.load(storage, layout.video_file(speaker, video_id, TRACK))
    face = VideoFace.load(storage, layout.video_file(speaker, video_id, FACE))
    with storage.local_copy(layout.video_file(speaker, video_id, CROPS)) as local:
        frames = read_frames(local)  # (T, C, C, 3) at the dataset crop size
    if len(frames) != track.n_frames:
        raise InputError(video_id, f"crops hold {len(frames)} frames, the track {track.n_frames}")
    crop_size = frames.shape[1]
    if crop_size != image_size:
        frames = np.stack(
            [cv2.resize(f, (image_size, image_size), interpolation=cv2.INTER_AREA) for f in frames]
        )
    pose = rescale_pose(track_pose(track), image_size / crop_size)
    mesh = apply_pose(model.decode(identity, face.expression), pose)  # (T, 478, 3) model-size pixels
    shapes = render_shapes(mesh, model.triangles, image_size)  # (T, S, S) float32 [0, 1]
    return RenderVideo(
        video_id=video_id,
        frames=frames,
        shapes=np.round(shapes * 255).astype(np.uint8),
        audio=track.audio,
        expression=face.expression.astype(np.float32),
        pose=pose,
        trainable=track.trainable(),
    )


class RenderSequences(Dataset):
    """Stage-2 samples of one speaker; each item is a dict of (T, ...) tensors:

    ``background`` (T, 3, S, S) [-1, 1] eroded crop, ``shape`` (T, 1, S, S) [0, 1],
    ``expression`` (T, E), ``audio`` (T, W, M), ``mask`` (T, 1, S, S) {0, 1} (the blanked
    region), ``target`` (T, 3, S, S) [-1, 1]; with a ``texture`` (set for a renderer with
    ``warped_texture``, :func:`stableface.training.references.set_speaker_texture`) also
    ``warped`` (T, 3, S, S) [-1, 1], the texture warped to each frame's mesh.
    """

    def __init__(
        self,
        storage: Storage,
        layout: DatasetLayout,
        speaker: str,
        video_ids: list[str],
        model: FaceModel,
        image_size: int,
        length: int,
        stride: int,
        erosion: ErosionConfig,
        seed: int = 0,
    ):
        self.model = model
        self.identity = load_identity(storage, layout, speaker)
        self.videos = [
            load_render_video(storage, layout, speaker, video_id, model, self.identity, image_size)
            for video_id in video_ids
        ]
        self.length = length
        self.erosion = erosion
        self.seed = seed
        self.epoch = 0
        self.texture: WarpTexture | None = None
        self.index = window_index([v.trainable for v in self.videos], length, stride)
        if not self.index:
            raise InputError(speaker, f"no video of this speaker has {length} frames for one training window")
        logger.info("speaker %s: %d videos, %d windows of %d frames at %d px", speaker, len(self.videos),
                    len(self.index), length, image_size)  # fmt: skip

    def set_epoch(self, epoch: int) -> None:
        """Reseed the erosion augmentation (distinct masks every epoch, reproducible runs)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.index)

    def item_id(self, item: int) -> str:
        """``<video_id>@<start frame>``: which window an index is."""
        video_index, start = self.index[item]
        return f"{self.videos[video_index].video_id}@{start}"

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        video_index, start = self.index[item]
        video = self.videos[video_index]
        window = slice(start, start + self.length)
        rng = np.random.default_rng((self.seed, self.epoch, item))
        frames = video.frames[window]  # (T, S, S, 3) uint8
        expression = video.expression[window]  # (T, E)
        background, masks = augmented_erosion(
            frames, self.model, self.identity, expression, video.pose[window], self.erosion, rng
        )  # (T, S, S, 3) uint8, (T, S, S) bool
        item = {
            "background": to_unit_range(background),
            "shape": torch.from_numpy(video.shapes[window]).float().div(255.0).unsqueeze(1),
            "expression": torch.from_numpy(expression),
            "audio": torch.from_numpy(video.audio[window].astype(np.float32)),
            "mask": torch.from_numpy(masks).float().unsqueeze(1),
            "target": to_unit_range(frames),
        }
        if self.texture is not None:
            mesh = apply_pose(self.model.decode(self.identity, expression), video.pose[window])  # (T, 478, 3)
            item["warped"] = to_unit_range(warp_texture(self.texture, mesh))  # (T, 3, S, S)
        return item
