"""Dub quality of a model/schedule preset on GRID s1: train, evaluate the held-out clips, picture them.

The ``train`` job's own code path (Ray Train on the embedded local Ray) on all 90 grid/s1 clips
preprocessed at crop 128 (cached in ``outputs/bench/quality/dataset``), with the schedule's split:
the same 4 held-out clips (``schedule.holdout=4``, seed 0) for every variant, all 4 evaluated.
Stage 1 (audio2expression) is trained once per model/schedule pair and shared by the variants, so
two variants differ only in their renderer, its inputs and its losses.

``--quick`` trains with the ``demo`` schedule (the ``make demo`` model: minutes on 2 cores);
without it, the preset's own schedule (``cpu``: under an hour). A variant is a set of train-job
overrides (``--set model.renderer.x=y``, repeatable) and a ``--label``; ``--steps N`` trains the
renderer exactly N steps instead of to the schedule's time cap, so that two variants measured under
different machine load train alike. Each writes, under
``outputs/bench/quality/<label>/``:

- ``table.json`` / ``table.md``: the held-out means of the evaluation (face-crop SSIM, NLMD, mouth
  opening correlation and amplitude ratio, mouth sharpness ratio, per mode) and the training steps;
- ``<clip>-mouths.png`` per held-out clip: mouth-centred crops, every 4th frame left to right,
  rows real | reconstruction (renderer driven by the tracked expression) | audio-driven (the whole
  pipeline), and below them the vertical slice through the mouth over time, rows audio-driven |
  reconstruction | real.

``outputs/bench/quality/variants.md`` collects the tables of every label run so far, side by side.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import cv2
import numpy as np

from bench.common import shared_data
from stableface.errors import InputError

logger = logging.getLogger(__name__)

ROOT = Path("outputs") / "bench" / "quality"
DATASET_DIR = ROOT / "dataset"
SPEAKER = "s1"
CROP = 128
HOLDOUT = 4
QUICK_SCHEDULE = "demo"
GAP_PX = 6  # black rows between the mouth strip and the slice
SLICE_ZOOM = 1  # the slice keeps its height (a 128-px column per row) and is stretched in time only
# The columns of the table, in order (held-out means from the training summary).
COLUMNS = (
    "reconstruction_ssim",
    "audio_ssim",
    "reconstruction_open_corr",
    "reconstruction_open_amp",
    "reconstruction_sharpness",
    "audio_nlmd",
    "audio_open_corr",
    "audio_open_amp",
    "audio_sharpness",
    "mesh_open_corr",
    "mesh_open_amp",
)


def _dataset() -> str:
    """All grid/s1 clips preprocessed at crop 128 (the preprocess job), cached."""
    from stableface.config import compose
    from stableface.ray_jobs.preprocess import run

    folder = DATASET_DIR / "grid_s1"
    if not (folder / "manifest.json").exists():
        folder.mkdir(parents=True, exist_ok=True)
        catalog = shared_data() / "grid" / SPEAKER
        run(compose("preprocess", [f"catalog={catalog}", f"dataset_uri={folder.resolve()}",
                                   f"face.crop_size={CROP}", "ray.num_cpus=2"]))  # fmt: skip
    return str(folder.resolve())


def _train_overrides(dataset: str, model: str, schedule: str) -> list[str]:
    return [f"dataset_uri={dataset}", f"speaker={SPEAKER}", f"model={model}", f"schedule={schedule}",
            f"schedule.holdout={HOLDOUT}", "schedule.eval_videos=null", "scaling.num_workers=1",
            "ray.num_cpus=2"]  # fmt: skip


def _stage1(dataset: str, model: str, schedule: str) -> str:
    """audio2expression of the model/schedule pair, trained once and reused by every variant."""
    from stableface.config import compose
    from stableface.ray_jobs.train import run

    folder = (ROOT / f"stage1-{model}-{schedule}").resolve()
    uri = folder / "_training" / "audio2expression.pt"
    if not uri.exists():
        run(compose("train", [*_train_overrides(dataset, model, schedule), "stage=1",
                              f"output_uri={folder}", "overwrite=true"]))  # fmt: skip
    return str(uri)


def _picture(eval_dir: Path, video_id: str) -> np.ndarray:
    """The clip's mouth strip above its mouth slice stretched to the strip's width, one RGB image."""
    mouths, strip = (
        cv2.cvtColor(cv2.imread(str(eval_dir / f"{video_id}-{name}.png")), cv2.COLOR_BGR2RGB)
        for name in ("mouths", "slice")
    )
    width = mouths.shape[1]
    strip = cv2.resize(strip, (width, strip.shape[0] * SLICE_ZOOM), interpolation=cv2.INTER_NEAREST)
    gap = np.zeros((GAP_PX, width, 3), np.uint8)
    return np.concatenate([mouths, gap, strip], axis=0)


def write_pictures(out: Path, video_ids: list[str]) -> list[str]:
    """``<clip>-mouths.png`` under ``out`` for each held-out clip, from the run's evaluation images."""
    eval_dir = out / "_training" / f"stage2-{SPEAKER}" / "logs" / "eval"
    pictures = []
    for video_id in video_ids:
        png = out / f"{video_id}-mouths.png"
        cv2.imwrite(str(png), cv2.cvtColor(_picture(eval_dir, video_id), cv2.COLOR_RGB2BGR))
        pictures.append(str(png))
    return pictures


def _markdown(rows: dict[str, dict]) -> str:
    header = ["label", "steps", *COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, row in rows.items():
        cells = [label, str(row["steps"])] + [
            f"{row['heldout'][c]:.3f}" if c in row["heldout"] else "-" for c in COLUMNS
        ]
        lines.append("| " + " | ".join(cells) + " |")
    settings = [f"- `{label}`: {row['command']}" for label, row in rows.items()]
    return "\n".join([*lines, "", *settings, ""])


def run(
    quick: bool,
    model: str = "cpu",
    label: str | None = None,
    overrides: list[str] | None = None,
    steps: int | None = None,
) -> dict:
    import ray

    from stableface.config import compose
    from stableface.ray_jobs.train import run as train

    overrides = list(overrides or [])
    if steps is not None:
        if steps <= 0:
            raise InputError("--steps", f"{steps} renderer steps: needs at least 1")
        # A step count, not the time cap: the same training whatever the machine's load.
        overrides += [f"schedule.stage2.max_steps={steps}", "schedule.stage2.max_minutes=null"]
    schedule = QUICK_SCHEDULE if quick else model
    label = label or f"{model}-{schedule}"
    out = (ROOT / label).resolve()
    dataset = _dataset()
    try:
        audio2expression = _stage1(dataset, model, schedule)
        result = train(compose("train", [*_train_overrides(dataset, model, schedule), "stage=2",
                                         f"audio2expression_uri={audio2expression}", f"output_uri={out}",
                                         "overwrite=true", *overrides]))  # fmt: skip
    finally:
        ray.shutdown()
    summary = json.loads((Path(result.models[SPEAKER].model_uri) / "summary.json").read_text())
    heldout = summary["heldout"]
    step_flags = [f"schedule.stage2.max_steps={steps}", "schedule.stage2.max_minutes=null"] if steps else []
    flags = "".join(f" --set {o}" for o in overrides if o not in step_flags)
    flags += f" --steps {steps}" if steps else ""
    command = f"`python -m bench quality{' --quick' if quick else ''} --model {model} --label {label}{flags}`"
    row = {
        "model": model,
        "schedule": schedule,
        "overrides": overrides,
        "command": command,
        "steps": summary["stage2"]["steps"],
        "stage2_seconds": summary["seconds"].get("stage2"),
        "heldout_videos": summary["heldout_videos"],
        "heldout": {k: heldout[k] for k in COLUMNS if k in heldout},
    }
    (out / "table.json").write_text(json.dumps(row, indent=2))
    (out / "table.md").write_text(_markdown({label: row}))
    pictures = write_pictures(out, summary["heldout_videos"])
    eval_dir = out / "_training" / f"stage2-{SPEAKER}" / "logs" / "eval"
    shutil.copy(eval_dir / "summary.json", out / "eval_summary.json")
    variants_json = ROOT / "variants.json"
    variants = json.loads(variants_json.read_text()) if variants_json.exists() else {}
    variants[label] = row
    variants_json.write_text(json.dumps(variants, indent=2))
    (ROOT / "variants.md").write_text(_markdown(variants))
    return {"label": label, "steps": row["steps"], **{k: round(v, 4) for k, v in row["heldout"].items()},
            "table": str(out / "table.md"), "pictures": pictures}  # fmt: skip
