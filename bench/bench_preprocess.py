"""Preprocessing throughput: frames/s per core on grid/s1, and its ratio to decoding the same files.

- decode alone: ``iter_frames`` over the clips, pinned to one core;
- decode + MediaPipe face mesh alone: the floor any extraction with per-frame landmarks has;
- extraction per core: ``extract_video`` (decode twice, landmarks, crop box, pose, audio
  features, crop encoding) in one process pinned to one core, after one warm-up clip (MediaPipe
  graph and librosa's JIT are one-offs per worker process);
- the Ray job end to end (local Ray, all cores): catalog -> per-video tasks -> speaker identity
  -> basis fit -> expression and masks -> manifest, including Ray and actor start-up.

The extraction figures run in a subprocess so the one-core pin does not limit the Ray job.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import grid_clips, pin_to_one_core

logger = logging.getLogger("bench.preprocess")
TARGET_FPS_PER_CORE = 100.0  # the targets
TARGET_RATIO_TO_DECODE = 4.0


def _single_core_rates(count: int) -> dict:
    """Decode-only and extraction frames/s on one core (runs inside the pinned subprocess)."""
    from stableface.audio.features import AudioFeatureConfig
    from stableface.data.extract import extract_video
    from stableface.face.config import FaceConfig
    from stableface.face.landmarks import make_backend, track_landmarks
    from stableface.io.video import iter_frames

    core = pin_to_one_core()
    clips = grid_clips(count + 1)
    warmup, clips = clips[0], clips[1:]
    started = time.perf_counter()
    decoded = sum(1 for clip in clips for _ in iter_frames(clip))
    decode_fps = decoded / (time.perf_counter() - started)

    face, audio, backend = FaceConfig(), AudioFeatureConfig(), make_backend("mediapipe")
    track_landmarks(iter_frames(warmup), backend)
    started = time.perf_counter()
    for clip in clips:
        track_landmarks(iter_frames(clip), backend)
    landmark_fps = decoded / (time.perf_counter() - started)  # decode + face mesh: the floor of extraction

    with tempfile.TemporaryDirectory(prefix="bench-preprocess-") as tmp:
        extract_video(warmup, str(warmup), face, audio, backend, Path(tmp) / "warmup.mp4")
        started = time.perf_counter()
        extracted = 0
        for index, clip in enumerate(clips):
            track, _ = extract_video(clip, str(clip), face, audio, backend, Path(tmp) / f"{index}.mp4")
            extracted += track.n_frames
        extract_fps = extracted / (time.perf_counter() - started)
    return {
        "core": core,
        "frames": decoded,
        "decode_fps": decode_fps,
        "landmark_fps": landmark_fps,
        "extract_fps": extract_fps,
    }


def _job_rate(count: int) -> dict:
    import ray

    from stableface.config import compose
    from stableface.ray_jobs.preprocess import run

    with tempfile.TemporaryDirectory(prefix="bench-preprocess-job-") as tmp:
        catalog = Path(tmp) / "catalog.csv"
        catalog.write_text("video_uri,speaker\n" + "".join(f"{clip},s1\n" for clip in grid_clips(count)))
        cfg = compose("preprocess", [f"catalog={catalog}", f"dataset_uri={Path(tmp) / 'ds'}"])
        started = time.perf_counter()
        summary = run(cfg)
        seconds = time.perf_counter() - started
        cores = int(ray.cluster_resources().get("CPU", 1))
        ray.shutdown()
    return {"frames": summary["frames"], "seconds": seconds, "cores": cores}


def run(quick: bool = False) -> dict:
    count = 4 if quick else 30
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import json, bench.bench_preprocess as b; print(json.dumps(b._single_core_rates({count})))",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    single = json.loads(result.stdout.strip().splitlines()[-1])
    job = _job_rate(count)
    job_fps_per_core = job["frames"] / job["seconds"] / job["cores"]
    ratio = single["decode_fps"] / single["extract_fps"]
    return {
        "clips": count,
        "frames": single["frames"],
        "decode_fps_one_core": round(single["decode_fps"], 1),
        "decode_plus_face_mesh_fps_one_core": round(single["landmark_fps"], 1),
        "extract_fps_one_core": round(single["extract_fps"], 1),
        "extract_time_over_decode_time": round(ratio, 2),
        "job_frames_per_s_per_core (incl. Ray start-up)": round(job_fps_per_core, 1),
        "job_seconds": round(job["seconds"], 1),
        "job_cores": job["cores"],
        "target_fps_per_core": TARGET_FPS_PER_CORE,
        "meets_fps_target": single["extract_fps"] >= TARGET_FPS_PER_CORE,
        "target_ratio_to_decode": TARGET_RATIO_TO_DECODE,
        "meets_ratio_target": ratio <= TARGET_RATIO_TO_DECODE,
    }
