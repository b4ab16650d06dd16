"""Audit throughput: frames/s per core of scoring (decode + landmarks + MSI + slice) vs decoding alone.

Three figures on the same GRID clips:
- decode only: ``iter_frames`` over every clip, one process;
- scoring in-process: :func:`score_video` with one MediaPipe backend (the per-core cost of an actor);
- the Ray audit job end to end (``ray_jobs.audit.run``, local Ray on all cores), including Ray
  start-up, actor start-up and writing the report, so small inputs understate its steady rate.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

from bench.common import grid_clips
from stableface.face.landmarks import make_backend
from stableface.io.video import iter_frames
from stableface.metrics.config import MetricsConfig
from stableface.metrics.video import score_video

logger = logging.getLogger("bench.audit")


def _clips(quick: bool) -> list[Path]:
    return grid_clips(4 if quick else 30)


def _decode_rate(clips: list[Path]) -> tuple[int, float]:
    started = time.perf_counter()
    frames = sum(1 for clip in clips for _ in iter_frames(clip))
    return frames, frames / (time.perf_counter() - started)


def _score_rate(clips: list[Path]) -> tuple[int, float]:
    backend = make_backend("mediapipe")
    config = MetricsConfig()
    score_video(clips[0], config, backend=backend)  # warm-up: graph construction is a one-off per actor
    started = time.perf_counter()
    frames = sum(score_video(clip, config, backend=backend).n_frames for clip in clips)
    backend.close()
    return frames, frames / (time.perf_counter() - started)


def _job_rate(clips: list[Path]) -> dict:
    import ray

    from stableface.config import compose
    from stableface.ray_jobs.audit import run

    with tempfile.TemporaryDirectory(prefix="bench-audit-") as tmp:
        catalog = Path(tmp) / "clips" / "s1"
        catalog.mkdir(parents=True)
        for clip in clips:
            (catalog / clip.name).symlink_to(clip)
        cfg = compose("audit", [f"catalog={catalog.parent}", f"output_uri={Path(tmp) / 'out'}"])
        started = time.perf_counter()
        summary = run(cfg)
        seconds = time.perf_counter() - started
        cores = int(ray.cluster_resources().get("CPU", 1))
        ray.shutdown()
    return {"frames": summary["frames"], "seconds": seconds, "cores": cores}


def run(quick: bool = False) -> dict:
    clips = _clips(quick)
    decoded, decode_fps = _decode_rate(clips)
    _, score_fps = _score_rate(clips)
    job = _job_rate(clips)
    job_fps_per_core = job["frames"] / job["seconds"] / job["cores"]
    return {
        "clips": len(clips),
        "frames": decoded,
        "decode_only_fps_one_core": round(decode_fps, 1),
        "score_fps_one_core": round(score_fps, 1),
        "score_to_decode_ratio": round(score_fps / decode_fps, 4),
        "ray_job_cores": job["cores"],
        "ray_job_seconds_end_to_end": round(job["seconds"], 1),
        "ray_job_fps_per_core_end_to_end": round(job_fps_per_core, 1),
        "ray_job_to_decode_ratio": round(job_fps_per_core / decode_fps, 4),
    }
