"""``stableface train-sync``: train the lip-sync expert on a preprocessed dataset, evaluate it held out.

Writes ``<output_uri>/lipsync.pt`` (config inside, fp16 weights) and ``<output_uri>/lipsync_eval.json``
(the held-out figures of the model card). The shipped weights were made with

    stableface train-sync dataset_uri=outputs/datasets/all output_uri=platform/stableface/models/weights

It runs in this process (one small network, minutes on a CPU): no Ray cluster is involved.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import numpy as np
import torch

from stableface.config import to_dict, with_absolute_uris
from stableface.data.layout import DatasetLayout
from stableface.io.storage import Storage, join
from stableface.metrics.lipsync import SyncExpert
from stableface.models.lipsync import LipSyncNet, save_lipsync
from stableface.training.config import TrainConfig
from stableface.training.data import dataset_speakers
from stableface.training.loop import Callbacks, WorkerContext, make_loader, run_epochs
from stableface.training.sync import SyncSequences, SyncTrainer, evaluate_sync, load_clip, split_dataset

logger = logging.getLogger(__name__)

WEIGHTS_NAME = "lipsync.pt"
EVAL_NAME = "lipsync_eval.json"
EPOCHS_UNBOUNDED = 10_000  # steps and minutes end training, not epochs


class LogCallbacks(Callbacks):
    def log(self, trainer, metrics: dict[str, float]) -> None:
        logger.info(
            "lipsync step %d: loss %.3f, accuracy %.3f, %.0f samples/s",
            trainer.step, metrics.get("loss/total", float("nan")), metrics.get("accuracy", float("nan")),
            metrics.get("samples_per_s", float("nan")),
        )  # fmt: skip


def _fps_of(storage: Storage, layout: DatasetLayout) -> dict[str, float]:
    manifest = storage.read_json(layout.manifest_json)
    return {
        f"{r['speaker']}/{r['video_id']}": float(r.get("fps") or 25.0) for r in manifest.get("videos", [])
    }


def run(cfg) -> dict[str, Any]:
    cfg = with_absolute_uris(cfg)
    started = time.monotonic()
    storage = Storage(cfg.storage)
    layout = DatasetLayout(cfg.dataset_uri)
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    torch.manual_seed(cfg.schedule.seed)
    speakers = list(cfg.speakers) or dataset_speakers(storage, layout)
    train_ids, held_ids = split_dataset(storage, layout, speakers, cfg.holdout)
    fps = _fps_of(storage, layout)

    def clips(ids):
        return [load_clip(storage, layout, s, v, fps.get(f"{s}/{v}", 25.0)) for s, v in ids]

    train_clips, held_clips = clips(train_ids), clips(held_ids)
    logger.info(
        "lip-sync expert: %d training clips (%d speakers), %d held out (%d speakers)",
        len(train_clips), len({s for s, _ in train_ids}), len(held_clips), len({s for s, _ in held_ids}),
    )  # fmt: skip
    model = LipSyncNet(cfg.model)
    dataset = SyncSequences(train_clips, cfg.model.window, cfg.schedule)
    context = WorkerContext()
    trainer = SyncTrainer(model, cfg.schedule, context)
    loader = make_loader(dataset, cfg.schedule.batch_size, context, seed=cfg.schedule.seed)
    loop_config = TrainConfig(log_every=cfg.schedule.log_every, sample_every=0, checkpoint_every=10**9)
    final = run_epochs(
        trainer, loader, EPOCHS_UNBOUNDED, loop_config, context, LogCallbacks(),
        max_steps=cfg.schedule.max_steps, max_minutes=cfg.schedule.max_minutes,
    )  # fmt: skip
    model.eval()
    evaluation = evaluate_sync(SyncExpert(model, cfg.max_offset), held_clips).summary()
    n_params = sum(p.numel() for p in model.parameters())
    training = {
        "dataset_uri": cfg.dataset_uri,
        "train_clips": len(train_clips),
        "train_speakers": len({s for s, _ in train_ids}),
        "train_windows": len(dataset),
        "steps": trainer.step,
        "epochs": round(trainer.step * cfg.schedule.batch_size / len(dataset), 2),
        "train_minutes": round(trainer.elapsed_s / 60.0, 2),
        "final_loss": final.get("loss/total"),
        "final_accuracy": final.get("accuracy"),
        "parameters": n_params,
        "config": to_dict(cfg),
    }
    weights_uri = join(cfg.output_uri, WEIGHTS_NAME)
    save_lipsync(weights_uri, model, {"training": training, "held_out": evaluation}, storage)
    eval_uri = join(cfg.output_uri, EVAL_NAME)
    storage.write_text(eval_uri, json.dumps({"training": training, "held_out": evaluation}, indent=1) + "\n")
    logger.info(
        "lip-sync expert: held-out offset within +-1 frame %.1f%%, AUC %.3f (%d clips); %s in %.1f min",
        100 * evaluation["offset_within_1_frame"], evaluation["auc_in_sync_vs_mismatched"],
        evaluation["clips"], weights_uri, (time.monotonic() - started) / 60,
    )  # fmt: skip
    return {
        "weights": weights_uri,
        "evaluation": eval_uri,
        "offset_within_1_frame": evaluation["offset_within_1_frame"],
        "auc": evaluation["auc_in_sync_vs_mismatched"],
        "median_confidence": float(np.round(evaluation["median_confidence_in_sync"], 4)),
    }
