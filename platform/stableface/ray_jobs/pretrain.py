"""``stableface pretrain``: regenerate the package's pretrained stage 1 (``stableface/pretrained/``).

Runs the train job (:func:`stableface.ray_jobs.train.run`, stage 1 only, the ``pretrain``
schedule) on a many-speaker dataset, then publishes three files: the audio2expression checkpoint
(with its held-out figures in ``extra``), the dataset's expression basis (``face_model.npz``: the
basis the weights predict in, which ``preprocess`` copies into every new dataset) and
``MODEL_CARD.md``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stableface.config import to_dict
from stableface.config.jobs import PretrainJobConfig
from stableface.data.layout import DatasetLayout
from stableface.errors import InputError
from stableface.io.storage import Storage, join
from stableface.models.checkpoint import read_checkpoint, save_checkpoint
from stableface.models.networks import build_audio2expression
from stableface.pretrained import FACE_MODEL_FILE, MODEL_CARD_FILE, STAGE1_FILE, packaged_dir
from stableface.ray_jobs import train
from stableface.status import RowStatus
from stableface.training.config import StageSelection, TrainStage
from stableface.training.driver import TrainResult
from stableface.training.pipeline import EVAL_DIR, EVAL_SUMMARY

logger = logging.getLogger(__name__)

CARD_METRICS = ("clips", "mesh_open_corr", "mesh_open_amp", "mesh_nlmd", "mesh_lip_msi", "real_lip_msi",
                "lip_msi_ratio")  # fmt: skip


def model_card(cfg: PretrainJobConfig, manifest: dict[str, Any], checkpoint_extra: dict[str, Any],
               heldout: dict[str, Any], size_bytes: int) -> str:  # fmt: skip
    """The model card's Markdown: data, training, held-out figures, licences, how to regenerate."""
    stage1 = cfg.schedule.stage1
    speakers = manifest.get("speakers", {})
    heldout_speakers = set(stage1.heldout_speakers)
    trained = sorted(
        s for s, row in speakers.items() if row.get("status") == RowStatus.OK and s not in heldout_speakers
    )
    frames = sum(int(speakers[s].get("n_frames") or 0) for s in trained)
    lines = [
        "# Pretrained stage 1 (audio2expression)",
        "",
        f"`{STAGE1_FILE}` ({size_bytes / 1e6:.1f} MB) maps per-utterance normalised log-mel windows to the",
        f"{cfg.model.audio2expression.mouth_dim} mouth coefficients of the expression basis in `{FACE_MODEL_FILE}`",
        "(fitted over every speaker of the dataset below). `stableface preprocess` encodes new speakers in",
        "that basis by default (`expression_basis=packaged`) and `stableface train` starts stage 1",
        "from these weights (`schedule.stage1.init=finetune`; `reuse` keeps them as they are).",
        "",
        "## Data",
        "",
        f"- dataset: `{cfg.dataset_uri}` ({len(speakers)} speakers), of which {len(trained)} speakers and",
        f"  {frames} frames (at most, before the held-out clips) trained stage 1;",
        f"- held out entirely (leave-speakers-out validation): {', '.join(sorted(heldout_speakers))};",
        f"- and {cfg.schedule.holdout} clips of every speaker with more than {cfg.schedule.holdout} clips "
        f"(split seed {cfg.schedule.seed}).",
        f"- licences: {cfg.data_licences}",
        "",
        "## Training",
        "",
        f"- model preset: audio2expression {json.dumps(to_dict(cfg.model.audio2expression))},",
        f"  audio encoder {json.dumps(to_dict(cfg.model.audio_encoder))};",
        f"- {checkpoint_extra.get('steps')} steps, batch {stage1.batch_size} sequences of {stage1.sequence_length} frames, "
        f"lr {stage1.lr}, at most {stage1.max_minutes} minutes;",
        f"- loss: L1 + {stage1.velocity_weight} velocity + {stage1.acceleration_weight} acceleration + "
        f"{stage1.opening_weight} inner-lip opening + {stage1.amplitude_weight} opening amplitude + "
        f"{stage1.lip_motion_weight} lip motion (stableface.training.stage1_losses).",
        "",
        "## Expression basis and identity",
        "",
        "A speaker's identity is the mean of their pose-normalised meshes over all their clips",
        "(`stableface preprocess`, per speaker); a frame's expression is its displacement from that",
        "mean projected on the shared basis. `docs/stage1/basis_check.py` refits the basis without the",
        "held-out speakers and measures how much of their mouth motion it keeps.",
        "",
        "## Held-out figures (predicted vs tracked mesh, stableface.training.evaluate_stage1)",
        "",
        "| group | " + " | ".join(CARD_METRICS) + " |",
        "|---|" + "---|" * len(CARD_METRICS),
    ]
    for group, means in heldout.get("groups", {}).items():
        cells = [f"{means[k]:.3f}" if k in means else "-" for k in CARD_METRICS]
        lines.append(f"| {group} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "MSI columns are geometric means over clips; `lip_msi_ratio` = predicted / real (1 = moves like",
        "real speech, above 1 = less motion).",
        "",
        "## Regenerate",
        "",
        "```bash",
        "# the dataset: every speech-with-face clip of ../shared/data at crop 128",
        "stableface preprocess catalog=examples/catalogs/all_speech_with_faces.csv "
        f"dataset_uri={cfg.dataset_uri} face.crop_size=128",
        f"stableface pretrain dataset_uri={cfg.dataset_uri}",
        "```",
        "",
    ]
    return "\n".join(lines)


@dataclass(frozen=True)
class PublishedStage1:
    """A pretrain run and the files it published."""

    training: TrainResult
    publish_dir: str
    size_bytes: int  # of the audio2expression checkpoint
    heldout: dict[str, Any]  # the held-out figures per group, as in the model card


def publish(cfg: PretrainJobConfig, storage: Storage, result: TrainResult) -> PublishedStage1:
    """Write the checkpoint (with the held-out figures), the basis and the card into ``publish_dir``."""
    target = Path(cfg.publish_dir) if cfg.publish_dir else packaged_dir()
    target.mkdir(parents=True, exist_ok=True)
    layout = DatasetLayout(cfg.dataset_uri)
    checkpoint = read_checkpoint(result.audio2expression_uri, storage)
    network = build_audio2expression(checkpoint.config)
    network.load_state_dict(checkpoint.state_dicts["audio2expression"])
    heldout_uri = join(result.run_uri, TrainStage.STAGE1, "logs", EVAL_DIR, EVAL_SUMMARY)
    heldout = storage.read_json(heldout_uri) if storage.exists(heldout_uri) else {}
    extra = {**checkpoint.extra, "heldout": heldout.get("groups", {}), "dataset_uri": cfg.dataset_uri}
    # Half precision would halve the file; the weights stay fp32 so fine-tuning starts exactly here.
    save_checkpoint(str(target / STAGE1_FILE), checkpoint.config, {"audio2expression": network}, extra)
    (target / FACE_MODEL_FILE).write_bytes(storage.read_bytes(layout.face_model))
    manifest = storage.read_json(layout.manifest_json)
    size = (target / STAGE1_FILE).stat().st_size
    (target / MODEL_CARD_FILE).write_text(model_card(cfg, manifest, checkpoint.extra, heldout, size), "utf-8")
    logger.info("published the pretrained stage 1 to %s (%.1f MB)", target, size / 1e6)
    return PublishedStage1(result, str(target), size, heldout.get("groups", {}))


def run(cfg: PretrainJobConfig) -> PublishedStage1:
    if StageSelection.parse(cfg.stage) is not StageSelection.STAGE1:
        raise InputError("stage", f"pretrain trains stage 1 only, got stage={cfg.stage}")
    return publish(cfg, Storage(cfg.storage), train.run(cfg))
