"""The training data of a run: which videos each stage trains on and which are held out.

Every speaker's videos are split the same way in both stages (:func:`split_videos` with the
schedule's seed), so the held-out clips of the stage-2 speaker are never seen by stage 1 either
and the held-out metrics measure the whole audio -> video pipeline on unseen speech.
"""

from __future__ import annotations

import logging

from stableface.data.layout import DatasetLayout
from stableface.data.sequences import ExpressionSequences, RenderSequences, speaker_videos, split_videos
from stableface.errors import InputError
from stableface.face.erosion import ErosionConfig
from stableface.face.face_model import FaceModel
from stableface.io.storage import Storage
from stableface.models.config import ModelConfig
from stableface.status import RowStatus
from stableface.training.config import TrainConfig, stage2_length

logger = logging.getLogger(__name__)


def dataset_speakers(storage: Storage, layout: DatasetLayout) -> list[str]:
    """The finished, usable speakers of a preprocessed dataset (from its manifest)."""
    if not storage.exists(layout.manifest_json):
        raise InputError(
            layout.root, "not a preprocessed dataset (no manifest.json); run `stableface preprocess`"
        )
    manifest = storage.read_json(layout.manifest_json)
    speakers = sorted(
        name for name, row in manifest.get("speakers", {}).items() if row.get("status") == RowStatus.OK
    )
    if not speakers:
        raise InputError(layout.manifest_json, "the dataset has no finished speaker")
    return speakers


def speaker_split(
    storage: Storage, layout: DatasetLayout, speaker: str, config: TrainConfig
) -> tuple[list[str], list[str]]:
    """(training, held-out) video ids of one speaker."""
    return split_videos(speaker_videos(storage, layout, speaker), config.holdout, config.seed)


def stage1_split(
    storage: Storage, layout: DatasetLayout, speaker: str, config: TrainConfig
) -> tuple[list[str], list[str]]:
    """(training, held-out) video ids of one stage-1 speaker: :func:`speaker_split`, except that a
    speaker with no more videos than ``holdout`` (one in-the-wild clip) trains on all of them;
    leave-speakers-out validation (``stage1.heldout_speakers``) covers such speakers."""
    videos = speaker_videos(storage, layout, speaker)
    if len(videos) <= config.holdout:
        return videos, []
    return split_videos(videos, config.holdout, config.seed)


def load_face_model(storage: Storage, layout: DatasetLayout, model_config: ModelConfig) -> FaceModel:
    face_model = FaceModel.load(layout.face_model, storage)
    if face_model.expression_dim != model_config.smoothing.expression_dim:
        raise InputError(
            layout.face_model,
            f"expression has {face_model.expression_dim} coefficients, the model expects "
            f"{model_config.smoothing.expression_dim} (model.smoothing.expression_dim)",
        )
    if face_model.n_mouth != model_config.audio2expression.mouth_dim:
        raise InputError(
            layout.face_model,
            f"{face_model.n_mouth} mouth coefficients, the model predicts "
            f"{model_config.audio2expression.mouth_dim} (model.audio2expression.mouth_dim)",
        )
    return face_model


def stage1_dataset(
    storage: Storage,
    layout: DatasetLayout,
    speakers: list[str],
    config: TrainConfig,
    model_config: ModelConfig,
) -> ExpressionSequences:
    """Audio -> mouth windows of every training video of ``speakers`` (held-out videos excluded)."""
    videos = []
    for speaker in speakers:
        train_ids, _ = stage1_split(storage, layout, speaker, config)
        videos.extend((speaker, video_id) for video_id in train_ids)
    dataset = ExpressionSequences(
        storage,
        layout,
        videos,
        n_mouth=model_config.audio2expression.mouth_dim,
        length=config.stage1.sequence_length,
        stride=config.stage1.stride,
        utterance_norm=model_config.audio2expression.utterance_norm,
        balance_speakers=config.stage1.balance_speakers,
    )
    logger.info("stage 1: %d videos of %d speakers, %d windows of %d frames", len(videos), len(speakers),
                len(dataset), config.stage1.sequence_length)  # fmt: skip
    return dataset


def stage2_dataset(
    storage: Storage,
    layout: DatasetLayout,
    speaker: str,
    config: TrainConfig,
    model_config: ModelConfig,
    erosion: ErosionConfig,
    face_model: FaceModel,
) -> RenderSequences:
    """The speaker's training windows of T frames at the renderer's image size."""
    train_ids, _ = speaker_split(storage, layout, speaker, config)
    return RenderSequences(
        storage,
        layout,
        speaker,
        train_ids,
        face_model,
        image_size=model_config.renderer.image_size,
        length=stage2_length(config, model_config.renderer.sequence_length),
        stride=config.stage2.stride,
        erosion=erosion,
        seed=config.seed,
    )
