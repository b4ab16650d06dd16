"""The parts of a training run: the plan, the per-stage bodies, evaluation and export.

:mod:`.driver` puts them together; the same bodies run inside Ray Train workers
(:mod:`stableface.ray_jobs.train` passes a DDP-wrapping ``prepare`` and callbacks that report to
Ray) and in one plain process (:class:`.driver.InProcess`): plain functions, plain objects.

Run layout under ``run_uri`` (default ``<output_uri>/_training``)::

    audio2expression.pt          stage 1's result (a models checkpoint), read by stage 2 and export
    stage1/                      stage 1's run: its checkpoints (see driver.py), logs/ (see run_log.py)
    stage2-<model name>/         one per speaker model, with logs/ and logs/eval/
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from stableface.audio.features import AudioFeatureConfig
from stableface.config.jobs import TrainJobConfig
from stableface.data.catalog import validate_id
from stableface.data.layout import VIDEO_META, DatasetLayout
from stableface.data.sequences import load_render_video, speaker_videos
from stableface.data.speakers import load_identity
from stableface.errors import InputError
from stableface.face.erosion import ErosionConfig
from stableface.face.landmarks import MediaPipeBackend
from stableface.io.storage import Storage, join
from stableface.losses.generator import build_generator_loss
from stableface.losses.sync import stage1_sync_loss
from stableface.models.checkpoint import read_checkpoint, save_checkpoint
from stableface.models.config import ModelConfig, apply_ablation
from stableface.models.networks import (
    build_audio2expression,
    build_discriminator,
    build_renderer,
    build_smoothing,
)
from stableface.speaker_model import MODEL_FILE
from stableface.training.callbacks import RunCallbacks
from stableface.training.checkpointing import TrainingState
from stableface.training.config import Stage1Init, StageSelection, TrainStage, stage2_length
from stableface.training.data import (
    dataset_speakers,
    load_face_model,
    speaker_split,
    stage1_dataset,
    stage1_split,
    stage2_dataset,
)
from stableface.training.evaluate import (
    EvalNetworks,
    evaluate_video,
    mouth_strip_image,
    slice_image,
    strip_image,
    summarise,
)
from stableface.training.evaluate_stage1 import HeldoutClip, evaluate_stage1
from stableface.training.export import export_speaker_model
from stableface.training.loop import WorkerContext, unwrap
from stableface.training.pretrained import initial_audio2expression
from stableface.training.references import set_speaker_references, set_speaker_texture
from stableface.training.run_log import encode_png, record_attempt, record_worker
from stableface.training.stage1 import train_stage1
from stableface.training.stage1_losses import LipGeometry
from stableface.training.stage2 import has_parameters, train_stage2
from stableface.utils.serialise import from_dict, to_dict

logger = logging.getLogger(__name__)

AUDIO2EXPRESSION_FILE = "audio2expression.pt"
EVAL_DIR = "eval"
EVAL_SUMMARY = "summary.json"

Prepare = Callable[[nn.Module], nn.Module]  # to the device, DDP-wrapped under Ray Train
CallbackFactory = Callable[..., RunCallbacks]


@dataclass
class RunPlan:
    """What a job config resolves to, checked against the dataset before any worker starts."""

    dataset_uri: str
    run_uri: str
    output_uri: str
    speakers: list[str]  # stage-2 speakers, one model each
    stage1_speakers: list[str]
    model_config: ModelConfig  # the preset with the ablation switches applied
    erosion: ErosionConfig  # enabled = ablation.augmented_erosion
    audio2expression_uri: str
    model_name: str | None = None
    stages: tuple[TrainStage, ...] = StageSelection.ALL.stages  # the job's ``stage``, in running order

    def model_dir_name(self, speaker: str) -> str:
        return self.model_name or speaker

    def model_uri(self, speaker: str) -> str:
        return join(self.output_uri, self.model_dir_name(speaker))

    def run_name(self, stage: TrainStage, speaker: str | None = None) -> str:
        if stage is TrainStage.STAGE1:
            return TrainStage.STAGE1.value
        return f"{TrainStage.STAGE2.value}-{self.model_dir_name(speaker)}"

    def run_dir(self, stage: TrainStage, speaker: str | None = None) -> str:
        return join(self.run_uri, self.run_name(stage, speaker))

    def logs_uri(self, stage: TrainStage, speaker: str | None = None) -> str:
        return join(self.run_dir(stage, speaker), "logs")


def model_config_of(cfg: TrainJobConfig) -> ModelConfig:
    """The networks to build: the ``model`` preset with the ``ablation`` switches applied."""
    return apply_ablation(cfg.model, cfg.ablation)


def erosion_of(cfg: TrainJobConfig) -> ErosionConfig:
    """The dataset's augmented erosion, switched by the ablation (Table V), not by ``erosion.enabled``."""
    return dataclasses.replace(cfg.erosion, enabled=cfg.ablation.augmented_erosion)


def plan_run(cfg: TrainJobConfig, storage: Storage) -> RunPlan:
    stages = StageSelection.parse(cfg.stage).stages
    layout = DatasetLayout(cfg.dataset_uri)
    available = dataset_speakers(storage, layout)
    speakers = [cfg.speaker] if cfg.speaker else available
    heldout_speakers = list(cfg.schedule.stage1.heldout_speakers)
    stage1_speakers = [s for s in (list(cfg.stage1_speakers) or available) if s not in heldout_speakers]
    for name, chosen in (
        ("speaker", speakers),
        ("stage1_speakers", stage1_speakers),
        ("schedule.stage1.heldout_speakers", heldout_speakers),
    ):
        unknown = sorted(set(chosen) - set(available))
        if unknown:
            raise InputError(
                name, f"{', '.join(unknown)} not among the dataset's speakers ({', '.join(available)})"
            )
    if cfg.model_name and len(speakers) > 1:
        raise InputError("model_name", f"names one model, but {len(speakers)} speakers are to be trained")
    if cfg.model_name:
        validate_id(cfg.model_name, "model name")
    model_config = model_config_of(cfg)
    stage2_length(cfg.schedule, model_config.renderer.sequence_length)  # fail before any worker starts
    load_face_model(storage, layout, model_config)
    run_uri = cfg.run_uri or join(cfg.output_uri, "_training")
    return RunPlan(
        dataset_uri=cfg.dataset_uri,
        run_uri=run_uri,
        output_uri=cfg.output_uri,
        speakers=speakers,
        stage1_speakers=stage1_speakers,
        stages=stages,
        model_config=model_config,
        erosion=erosion_of(cfg),
        audio2expression_uri=cfg.audio2expression_uri or join(run_uri, AUDIO2EXPRESSION_FILE),
        model_name=cfg.model_name,
    )


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)


def _state_builder(stage: TrainStage, plan: RunPlan, cfg: TrainJobConfig, extra: dict[str, Any]):
    def make_state(trainer, metrics: dict[str, Any]) -> TrainingState:
        return TrainingState(
            stage=stage,
            trainer=trainer.state_dict(),
            model_config=to_dict(plan.model_config),
            job_config=to_dict(cfg),
            extra={**extra, "metrics": metrics},
        )

    return make_state


def _announce(
    storage: Storage, logs_uri: str, stage: TrainStage, context: WorkerContext, start_step: int
) -> int:
    """Record this worker (and, on rank 0, this attempt); returns the attempt index (0 off rank 0)."""
    record_worker(storage, logs_uri, stage, context.rank, start_step, context.node)
    if context.is_main:
        return record_attempt(storage, logs_uri, stage, start_step, context.world_size)
    return 0


# --------------------------------------------------------------------------------------- stage 1
def run_stage1(
    cfg: TrainJobConfig,
    plan: RunPlan,
    context: WorkerContext,
    prepare: Prepare,
    make_callbacks: CallbackFactory,
    state: TrainingState | None = None,
) -> dict[str, Any]:
    """Stage 1 on this worker: returns the final metrics."""
    storage, layout = Storage(cfg.storage), DatasetLayout(cfg.dataset_uri)
    seed_everything(cfg.schedule.seed)
    dataset = stage1_dataset(storage, layout, plan.stage1_speakers, cfg.schedule, plan.model_config)
    face_model = load_face_model(storage, layout, plan.model_config)
    model = prepare(initial_audio2expression(cfg.schedule.stage1.init, plan.model_config, face_model))
    start_step = state.step if state else 0
    logs_uri = plan.logs_uri(TrainStage.STAGE1)
    attempt = _announce(storage, logs_uri, TrainStage.STAGE1, context, start_step)
    callbacks = make_callbacks(
        logs_uri=logs_uri,
        storage=storage,
        context=context,
        schedule=cfg.schedule,
        make_state=_state_builder(TrainStage.STAGE1, plan, cfg, {"speakers": plan.stage1_speakers}),
        item_id=dataset.item_id,
        stage=TrainStage.STAGE1,
        start_step=start_step,
        attempt=attempt,
    )
    try:
        sync_loss = stage1_sync_loss(cfg.schedule.stage1, load_face_model(storage, layout, plan.model_config))
        _, final = train_stage1(
            model, dataset, cfg.schedule, context, callbacks, state.trainer if state else None,
            sync_loss=sync_loss.to(context.device) if sync_loss is not None else None,
            geometry=LipGeometry.from_face_model(face_model),
        )  # fmt: skip
    finally:
        callbacks.close()
    return final


def save_stage1_result(state: TrainingState, plan: RunPlan, storage: Storage) -> str:
    """Stage 1's audio2expression as a models checkpoint at ``plan.audio2expression_uri``."""
    config = from_dict(ModelConfig, state.model_config)
    network = build_audio2expression(config)
    network.load_state_dict(state.trainer["modules"]["audio2expression"])
    extra = {"stage1_metrics": state.extra.get("metrics", {}), "steps": state.step}
    save_checkpoint(plan.audio2expression_uri, config, {"audio2expression": network}, extra, storage)
    return plan.audio2expression_uri


def reuse_stage1_result(cfg: TrainJobConfig, plan: RunPlan, storage: Storage) -> str:
    """``schedule.stage1.init=reuse``: the packaged weights (checked) become this run's stage-1 result."""
    face_model = load_face_model(storage, DatasetLayout(cfg.dataset_uri), plan.model_config)
    network = initial_audio2expression(Stage1Init.reuse, plan.model_config, face_model)
    extra = {"stage1_metrics": {}, "steps": 0, "init": Stage1Init.reuse.value}
    save_checkpoint(
        plan.audio2expression_uri, plan.model_config, {"audio2expression": network}, extra, storage
    )
    logger.info(
        "stage 1: reusing the packaged pretrained weights as they are -> %s", plan.audio2expression_uri
    )
    return plan.audio2expression_uri


def stage1_heldout_clips(cfg: TrainJobConfig, plan: RunPlan, storage: Storage) -> list[HeldoutClip]:
    """Clips stage 1 never trained on: every clip of the held-out speakers, and the held-out clips
    of the training speakers (grouped by speaker, held-out speakers under "heldout_speakers")."""
    layout = DatasetLayout(cfg.dataset_uri)
    clips = [
        HeldoutClip("heldout_speakers", speaker, video_id)
        for speaker in cfg.schedule.stage1.heldout_speakers
        for video_id in speaker_videos(storage, layout, speaker)
    ]
    for speaker in plan.stage1_speakers:
        _, heldout = stage1_split(storage, layout, speaker, cfg.schedule)
        clips.extend(HeldoutClip(speaker, speaker, video_id) for video_id in heldout)
    return clips


def evaluate_stage1_result(cfg: TrainJobConfig, plan: RunPlan, storage: Storage) -> dict[str, Any]:
    """Held-out mesh metrics of the stage-1 result (:mod:`.evaluate_stage1`), written to
    ``<run>/stage1/logs/eval/summary.json``; empty when nothing is held out."""
    clips = stage1_heldout_clips(cfg, plan, storage)
    if not clips:
        return {}
    started = time.monotonic()
    layout = DatasetLayout(cfg.dataset_uri)
    network, _ = load_audio2expression(plan.audio2expression_uri, plan.model_config, storage)
    face_model = load_face_model(storage, layout, plan.model_config)
    summary, _ = evaluate_stage1(network, clips, face_model, storage, layout)
    summary["seconds"] = round(time.monotonic() - started, 1)
    storage.write_json(join(plan.logs_uri(TrainStage.STAGE1), EVAL_DIR, EVAL_SUMMARY), summary)
    for group, means in summary["groups"].items():
        logger.info("stage 1 held-out %s: %s", group, {k: round(v, 3) for k, v in means.items()})
    return summary


def load_audio2expression(uri: str, model_config: ModelConfig, storage: Storage) -> tuple[nn.Module, dict]:
    """Stage-1 weights from a models checkpoint or a speaker model directory, checked against the
    config stage 2 trains with; returns the network (eval mode) and the checkpoint's extra."""
    if not uri.endswith(".pt"):
        uri = join(uri, MODEL_FILE)
    if not storage.exists(uri):
        raise InputError(
            uri, "no stage-1 result here: run stage 1 first (stage=1 or all) or set audio2expression_uri"
        )
    checkpoint = read_checkpoint(uri, storage)
    if "audio2expression" not in checkpoint.state_dicts:
        raise InputError(uri, "the checkpoint has no audio2expression network")
    for part in ("audio2expression", "audio_encoder"):
        if to_dict(getattr(checkpoint.config, part)) != to_dict(getattr(model_config, part)):
            raise InputError(uri, f"its {part} config differs from this run's model.{part}: retrain stage 1")
    network = build_audio2expression(model_config)
    network.load_state_dict(checkpoint.state_dicts["audio2expression"])
    return network.eval(), checkpoint.extra


# --------------------------------------------------------------------------------------- stage 2
def run_stage2(
    cfg: TrainJobConfig,
    plan: RunPlan,
    speaker: str,
    context: WorkerContext,
    prepare: Prepare,
    make_callbacks: CallbackFactory,
    state: TrainingState | None = None,
) -> dict[str, Any]:
    """Stage 2 of one speaker on this worker, then (rank 0) the held-out evaluation.

    Returns the final metrics (with the evaluation summary on rank 0)."""
    storage, layout = Storage(cfg.storage), DatasetLayout(cfg.dataset_uri)
    seed_everything(cfg.schedule.seed)
    face_model = load_face_model(storage, layout, plan.model_config)
    dataset = stage2_dataset(
        storage, layout, speaker, cfg.schedule, plan.model_config, plan.erosion, face_model
    )
    renderer = build_renderer(plan.model_config)
    if plan.model_config.renderer.reference_frames:
        set_speaker_references(renderer, dataset)
    if plan.model_config.renderer.warped_texture:
        set_speaker_texture(renderer, dataset)
    renderer = prepare(renderer)
    smoothing = build_smoothing(plan.model_config)
    smoothing = prepare(smoothing) if has_parameters(smoothing) else smoothing.to(context.device)
    discriminator = prepare(build_discriminator(plan.model_config))
    generator_loss = build_generator_loss(cfg.loss, storage)
    start_step = state.step if state else 0
    logs_uri = plan.logs_uri(TrainStage.STAGE2, speaker)
    attempt = _announce(storage, logs_uri, TrainStage.STAGE2, context, start_step)
    extra = {"speaker": speaker, "perceptual": generator_loss.perceptual_source}
    callbacks = make_callbacks(
        logs_uri=logs_uri,
        storage=storage,
        context=context,
        schedule=cfg.schedule,
        make_state=_state_builder(TrainStage.STAGE2, plan, cfg, extra),
        item_id=dataset.item_id,
        stage=TrainStage.STAGE2,
        start_step=start_step,
        attempt=attempt,
    )
    try:
        trainer, final = train_stage2(
            renderer, smoothing, discriminator, generator_loss, dataset, cfg.schedule, context, callbacks,
            state.trainer if state else None,
        )  # fmt: skip
    finally:
        callbacks.close()
    if context.is_main:
        networks = trainer.networks()
        final["eval"] = evaluate_heldout(
            cfg, plan, speaker, networks["smoothing"], networks["renderer"], context
        )
    return final


def evaluate_heldout(
    cfg: TrainJobConfig,
    plan: RunPlan,
    speaker: str,
    smoothing: nn.Module,
    renderer: nn.Module,
    context: WorkerContext,
) -> dict[str, Any]:
    """Held-out metrics of the trained speaker; writes ``logs/eval/`` (summary.json, frame strips,
    mouth crop strips and mouth slices per clip). Empty when nothing is held out."""
    storage, layout = Storage(cfg.storage), DatasetLayout(cfg.dataset_uri)
    _, heldout = speaker_split(storage, layout, speaker, cfg.schedule)
    heldout = heldout[: cfg.schedule.eval_videos] if cfg.schedule.eval_videos is not None else heldout
    if not heldout:
        return {}
    started = time.monotonic()
    face_model = load_face_model(storage, layout, plan.model_config)
    identity = load_identity(storage, layout, speaker)
    audio2expression, _ = load_audio2expression(plan.audio2expression_uri, plan.model_config, storage)
    networks = EvalNetworks(
        audio2expression.to(context.device), unwrap(smoothing), unwrap(renderer), context.device
    )
    window = stage2_length(cfg.schedule, plan.model_config.renderer.sequence_length)
    eval_uri = join(plan.logs_uri(TrainStage.STAGE2, speaker), EVAL_DIR)
    backend = MediaPipeBackend()
    rows = []
    try:
        for video_id in heldout:
            video = load_render_video(
                storage,
                layout,
                speaker,
                video_id,
                face_model,
                identity,
                plan.model_config.renderer.image_size,
            )
            meta = storage.read_json(layout.video_file(speaker, video_id, VIDEO_META))
            row, outputs = evaluate_video(
                networks, video, face_model, identity, window, backend, float(meta.get("fps") or 25.0)
            )
            rows.append(row)
            storage.write_bytes(join(eval_uri, f"{video_id}-frames.png"), encode_png(strip_image(outputs)))
            storage.write_bytes(join(eval_uri, f"{video_id}-slice.png"), encode_png(slice_image(outputs)))
            storage.write_bytes(
                join(eval_uri, f"{video_id}-mouths.png"), encode_png(mouth_strip_image(outputs))
            )
    finally:
        backend.close()
    summary = {
        "videos": heldout,
        "mean": summarise(rows),
        "per_video": rows,
        "seconds": round(time.monotonic() - started, 1),
    }
    storage.write_json(join(eval_uri, EVAL_SUMMARY), summary)
    logger.info("held-out %s: %s", speaker, {k: round(v, 4) for k, v in summary["mean"].items()})
    return summary


# --------------------------------------------------------------------------------------- export
def dataset_settings(storage: Storage, layout: DatasetLayout) -> tuple[AudioFeatureConfig, int]:
    """The audio feature settings and crop size the dataset was preprocessed with."""
    config = storage.read_json(layout.manifest_json).get("config", {})
    audio = from_dict(AudioFeatureConfig, config.get("audio", {}))
    crop_size = int(config.get("face", {}).get("crop_size", 256))
    return audio, crop_size


def export_model(
    cfg: TrainJobConfig, plan: RunPlan, speaker: str, state: TrainingState, timings: dict[str, float]
) -> dict[str, Any]:
    """The speaker model directory from the final stage-2 state and the stage-1 result."""
    storage, layout = Storage(cfg.storage), DatasetLayout(cfg.dataset_uri)
    audio2expression, stage1_extra = load_audio2expression(
        plan.audio2expression_uri, plan.model_config, storage
    )
    modules = {"audio2expression": audio2expression.state_dict(), **state.trainer["modules"]}
    eval_uri = join(plan.logs_uri(TrainStage.STAGE2, speaker), EVAL_DIR, EVAL_SUMMARY)
    evaluation = storage.read_json(eval_uri) if storage.exists(eval_uri) else {}
    train_ids, heldout = speaker_split(storage, layout, speaker, cfg.schedule)
    audio, crop_size = dataset_settings(storage, layout)
    summary = {
        "dataset_uri": cfg.dataset_uri,
        "run_uri": plan.run_uri,
        "stage1": {"steps": stage1_extra.get("steps"), "final": stage1_extra.get("stage1_metrics", {})},
        "stage2": {"steps": state.step, "final": state.extra.get("metrics", {})},
        "perceptual_loss": state.extra.get("perceptual"),
        "train_videos": train_ids,
        "heldout_videos": heldout,
        "heldout": evaluation.get("mean", {}),
        "heldout_per_video": evaluation.get("per_video", []),
        "seconds": timings,
    }
    export_speaker_model(
        plan.model_uri(speaker),
        speaker=speaker,
        model_config=plan.model_config,
        modules=modules,
        face_model=load_face_model(storage, layout, plan.model_config),
        identity=load_identity(storage, layout, speaker),
        audio=audio,
        crop_size=crop_size,
        summary=summary,
        train_config=to_dict(cfg),
        version=cfg.model_version,
        storage=storage,
    )
    return summary
