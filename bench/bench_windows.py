"""Renderer window overlap: what a smaller overlap buys in speed and costs in the picture.

The renderer sees windows of T frames; consecutive windows share ``overlap`` frames that are
cross-faded (stableface.inference.timeline), so every output frame is rendered T / (T - overlap)
times: twice at the old default T // 2. This benchmark dubs one held-out GRID s1 clip with its own
audio through ``dub_files`` for each overlap in one run, back to back, and reports per overlap

- output frames/s and the renderer's ms per output frame (1 torch thread, the hardware's precision);
- PSNR of the dubbed region (pixels the dub changes beyond codec noise) against the T // 2 dub;
- temporal jitter: the absolute second difference over time in that region, in grey levels, mean
  and worst frame, next to the source's own (a seam between windows shows up as a jump at a join).

Needs a trained speaker model (untrained weights render noise, whose seams mean nothing):
``$STABLEFACE_BENCH_MODEL`` (a speaker model URI), else the demo's ``outputs/demo/models/grid_s1``.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import REPO_ROOT, grid_clips

logger = logging.getLogger("bench.windows")

DEMO_MODEL = REPO_ROOT / "outputs" / "demo" / "models" / "grid_s1"
MAX_PIXEL = 255.0
CHANGED_GREY_LEVELS = 3.0  # mean |dub - source| above x264 noise at the default CRF


def _model_uri() -> str:
    uri = os.environ.get("STABLEFACE_BENCH_MODEL") or (str(DEMO_MODEL) if DEMO_MODEL.is_dir() else "")
    if not uri:
        raise FileNotFoundError(
            "bench windows needs a trained speaker model: set STABLEFACE_BENCH_MODEL or run `make demo`"
        )
    return uri


def _dub_region(frames: np.ndarray, source: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels the dub changes by more than codec noise on average (the pasted mouth)."""
    difference = np.abs(frames.astype(np.int16) - source.astype(np.int16)).mean(axis=(0, 3))  # (H, W)
    return difference > CHANGED_GREY_LEVELS


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(MAX_PIXEL**2 / mse)


def jitter(frames: np.ndarray, region: np.ndarray) -> tuple[float, float]:
    """Mean and worst frame of |f[t+1] - 2 f[t] + f[t-1]| over ``region`` (H, W) of (N, H, W, 3) frames, grey levels."""
    grey = frames.astype(np.float64).mean(axis=3)[:, region]  # (N, P)
    per_frame = np.abs(np.diff(grey, n=2, axis=0)).mean(axis=1)  # (N - 2,)
    return float(per_frame.mean()), float(per_frame.max())


def run(quick: bool) -> dict:
    from stableface.inference import DubConfig, InferenceConfig, dub_files, load_speaker_model, prepare_source
    from stableface.io.video import read_frames

    model = load_speaker_model(_model_uri())
    length = model.networks.config.renderer.sequence_length
    overlaps = sorted({length // 2, max(1, length // 4), 1, 0}, reverse=True)
    clip = grid_clips(90)[-1]  # the demo holds the last clips out of training
    source_frames = read_frames(clip)
    figures: dict[str, Any] = {"model": _model_uri(), "clip": clip.name, "T": length}
    outputs: dict[int, np.ndarray] = {}
    with tempfile.TemporaryDirectory(prefix="bench-windows-") as tmp:
        base = DubConfig(inference=InferenceConfig(cpu_threads=1))
        source = prepare_source(clip, model, base.inference)
        for overlap in overlaps:
            config = DubConfig(inference=InferenceConfig(cpu_threads=1, window_overlap=overlap))
            output = Path(tmp) / f"overlap{overlap}.mp4"
            dub_files(model, clip, clip, Path(tmp) / "warm.mp4", config, source)  # imports, caches
            result = dub_files(model, clip, clip, output, config, source)
            outputs[overlap] = read_frames(output)
            name = f"overlap_{overlap}"
            figures[f"{name}.renders_per_frame"] = round(length / (length - overlap), 3)
            figures[f"{name}.output_frames_per_s"] = round(result.n_frames / result.seconds, 2)
            figures[f"{name}.render_ms_per_frame"] = round(
                1000 * result.stage_seconds.get("render", 0.0) / result.n_frames, 2
            )
            logger.info("overlap %d: %.1f frames/s", overlap, result.n_frames / result.seconds)
    reference = outputs[length // 2]
    region = _dub_region(reference, source_frames[: len(reference)])
    figures["dub_region_pixels"] = int(region.sum())
    mean, worst = jitter(source_frames[: len(reference)], region)
    figures["source.jitter (mean, worst frame)"] = f"{mean:.3f}, {worst:.3f}"
    for overlap, frames in outputs.items():
        name = f"overlap_{overlap}"
        figures[f"{name}.psnr_vs_overlap_{length // 2}_db"] = round(
            psnr(frames[:, region], reference[:, region]), 2
        )
        mean, worst = jitter(frames, region)
        figures[f"{name}.jitter (mean, worst frame)"] = f"{mean:.3f}, {worst:.3f}"
        figures[f"{name}.speedup_over_overlap_{length // 2}"] = round(
            figures[f"{name}.output_frames_per_s"] / figures[f"overlap_{length // 2}.output_frames_per_s"], 2
        )
    return figures
