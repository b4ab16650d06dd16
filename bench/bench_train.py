"""Training throughput (samples/s) of Ray Train runs with 1 and 2 workers, and the scaling efficiency.

The ``train`` job's own code path (TorchTrainer on the embedded local Ray, gloo DDP, rank-0
checkpoints) on grid/s1 clips preprocessed at crop 128 (cached in ``outputs/bench/train_dataset``),
``model=cpu``, one torch thread per worker:

- stage 2 (renderer + smoothing + discriminator, 128 px, T = 8, batch 2 per worker): the cost of
  a speaker model; also 1 worker with 2 threads, the single-process alternative on 2 cores;
- stage 1 (audio2expression, 32-frame sequences, batch 16 per worker).

A sample is one training sequence. The rate is the median of the logged ``samples_per_s`` windows
after the first (warm-up) one; wall time includes Ray Train's worker start. Scaling efficiency =
rate(2 workers) / (2 x rate(1 worker)). The machine is shared: figures vary with other load.
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import grid_clips

logger = logging.getLogger(__name__)

DATASET_DIR = Path("outputs") / "bench" / "train_dataset"
CROP = 128
CLIPS = 8
LOG_EVERY = 5


def _dataset(clips: int) -> str:
    """A preprocessed dataset of the first ``clips`` grid/s1 clips (the preprocess job), cached."""
    from stableface.config import compose
    from stableface.ray_jobs.preprocess import run

    folder = DATASET_DIR / f"s1x{clips}"
    if (folder / "manifest.json").exists():
        return str(folder.resolve())
    folder.mkdir(parents=True, exist_ok=True)
    catalog = folder.parent / f"catalog_s1x{clips}.csv"
    catalog.write_text("video_uri,speaker\n" + "".join(f"{clip},s1\n" for clip in grid_clips(clips)))
    run(compose("preprocess", [f"catalog={catalog}", f"dataset_uri={folder}", f"face.crop_size={CROP}",
                               "face.min_fit_frames=100"]))  # fmt: skip
    return str(folder.resolve())


def _untrained_audio2expression(root: str) -> str:
    """Stage 2 alone needs stage-1 weights; their values do not matter for speed."""
    from stableface.models import build_audio2expression, compose_model_config, save_checkpoint

    uri = f"{root}/audio2expression.pt"
    config = compose_model_config("cpu", "full")
    save_checkpoint(uri, config, {"audio2expression": build_audio2expression(config)})
    return uri


def _measure(dataset: str, stage: str, workers: int, threads: int, steps: int, root: str) -> dict[str, float]:
    from stableface.config import compose
    from stableface.io.storage import Storage
    from stableface.ray_jobs.train import run
    from stableface.training.run_log import read_metrics

    name = f"stage{stage}_{workers}w{threads}t"
    steps_key = f"schedule.stage{stage}.max_steps={steps}"
    cfg = compose(
        "train",
        [f"dataset_uri={dataset}", f"output_uri={root}/{name}", "speaker=s1", "model=cpu", "schedule=cpu",
         f"stage={stage}", steps_key, "schedule.holdout=0", f"schedule.log_every={LOG_EVERY}",
         "schedule.sample_every=0", f"schedule.checkpoint_every={steps}", f"schedule.torch_threads={threads}",
         f"scaling.num_workers={workers}", f"scaling.cpus_per_worker={threads}", "overwrite=true",
         f"audio2expression_uri={root}/audio2expression.pt"],
    )  # fmt: skip
    started = time.monotonic()
    run(cfg)
    wall = time.monotonic() - started
    run_name = "stage1" if stage == "1" else "stage2-s1"
    rows = read_metrics(Storage(), f"{root}/{name}/_training/{run_name}/logs")
    rates = [row["samples_per_s"] for row in rows[1:]] or [row["samples_per_s"] for row in rows]
    return {f"{name}.samples_per_s": round(statistics.median(rates), 2), f"{name}.wall_s": round(wall, 1)}


def run(quick: bool) -> dict:
    import ray

    from stableface.ray_jobs.runtime import ensure_ray

    dataset = _dataset(CLIPS)
    stage2_steps, stage1_steps = (15, 30) if quick else (40, 120)
    figures: dict[str, float] = {"clips": CLIPS, "stage2_steps": stage2_steps, "stage1_steps": stage1_steps}
    from stableface.config.jobs import RayConfig

    ensure_ray(RayConfig(num_cpus=2))
    try:
        with tempfile.TemporaryDirectory(prefix="bench-train-") as root:
            _untrained_audio2expression(root)
            for stage, steps, setups in (
                ("2", stage2_steps, ((1, 1), (2, 1), (1, 2))),
                ("1", stage1_steps, ((1, 1), (2, 1))),
            ):
                for workers, threads in setups:
                    figures.update(_measure(dataset, stage, workers, threads, steps, root))
                one = figures[f"stage{stage}_1w1t.samples_per_s"]
                two = figures[f"stage{stage}_2w1t.samples_per_s"]
                figures[f"stage{stage}.scaling_efficiency"] = round(two / (2 * one), 3)
    finally:
        ray.shutdown()
    return figures
