"""A long source dubbed in one pass and in segments: wall time, the decoded difference, and a resume.

The source is grid/s1 clips concatenated (360x288, 25 fps; 2 minutes, ``--quick`` 30 s) and the
speech the bundled English and French repeated to its length; the model is ``tiny`` untrained
networks (seed 0: rendering is cheap, so the difference the segments make to the encoding, the
stores and the join shows). Dubs are fp32 (bit-reproducible frames) without the invisible watermark,
so the frames composited before encoding (``plan_dub(...).frames()``, streamed once more) are the
frames encoded: each output's PSNR to them is its codec error. Measured: the one-pass dub,
the segmented dub (``dub.segment_seconds``, 30 s; ``--quick`` 10 s), alternated twice (the fastest
of each), the segmented dub interrupted
after half its segments and its rerun (segments encoded by the rerun, its wall time), and the max
and mean absolute difference of the decoded segmented output against the one-pass output.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.bench_dub import _speaker_model, _speech
from bench.common import grid_clips

logger = logging.getLogger("bench.long")


class _Interrupted(Exception):
    pass


def _long_source(folder: Path, seconds: float) -> Path:
    from stableface.io.video import VideoWriter, iter_frames

    clips = grid_clips(int(seconds // 3))
    path = folder / f"lecture_{int(seconds)}s.mp4"
    with VideoWriter(path, fps=25, width=360, height=288, crf=16, preset="veryfast") as writer:
        for clip in clips:
            for frame in iter_frames(clip):
                writer.write(frame)
    return path


def _difference(a: Path, b: Path) -> tuple[int, float, int]:
    from stableface.io.video import iter_frames

    largest, total, frames = 0, 0.0, 0
    for x, y in zip(iter_frames(a), iter_frames(b), strict=True):
        difference = np.abs(x.astype(np.int16) - y.astype(np.int16))
        largest, total, frames = (
            max(largest, int(difference.max())),
            total + float(difference.mean()),
            frames + 1,
        )
    return largest, total / max(frames, 1), frames


def _psnr(path: Path, frames) -> float:
    from stableface.io.video import iter_frames

    squared, count = 0.0, 0
    for x, y in zip(iter_frames(path), frames, strict=True):
        squared += float(np.mean((x.astype(np.float64) - y) ** 2))
        count += 1
    return round(float(10 * np.log10(255.0**2 / (squared / count))), 2)


def run(quick: bool) -> dict:
    from stableface.inference import (
        DubConfig,
        InferenceConfig,
        ProvenanceConfig,
        dub_files,
        load_speaker_model,
        prepare_source,
    )
    from stableface.inference.pipeline import plan_dub
    from stableface.io.storage import Storage
    from stableface.provenance.config import WatermarkConfig

    def config(segment_seconds: float | None) -> DubConfig:
        return DubConfig(
            inference=InferenceConfig(amp=False),
            provenance=ProvenanceConfig(watermark=WatermarkConfig(enabled=False)),
            segment_seconds=segment_seconds,
        )

    seconds, segment_s = (30.0, 10.0) if quick else (120.0, 30.0)
    with tempfile.TemporaryDirectory(prefix="bench-long-") as tmp:
        folder = Path(tmp)
        model = load_speaker_model(_speaker_model("tiny", folder))
        video, speech = _long_source(folder, seconds), _speech(folder, seconds)
        started = time.perf_counter()
        source = prepare_source(video, model)
        prepare_s = time.perf_counter() - started

        def timed(name: str, segment_seconds: float | None, **options) -> tuple[float, object]:
            started = time.perf_counter()
            result = dub_files(model, video, speech, folder / f"{name}.mp4", config(segment_seconds), source,
                               storage=Storage(), **options)  # fmt: skip
            return time.perf_counter() - started, result

        # Alternated twice, the fastest of each: the first dub of a process also warms caches, and
        # other work on the machine comes and goes.
        one_pass_s, segmented_s = [], []
        for _ in range(2):
            one_pass_s.append(timed("one_pass", None)[0])
            Storage().delete_prefix(str(folder / "segmented.parts"))
            seconds_taken, segmented = timed("segmented", segment_s, parts=str(folder / "segmented.parts"))
            segmented_s.append(seconds_taken)
        one_pass_s, segmented_s = min(one_pass_s), min(segmented_s)
        half = segmented.encoded_segments // 2

        def die_at_half(index: int) -> None:
            if index + 1 == half:
                raise _Interrupted

        started = time.perf_counter()
        try:
            timed("resumed", segment_s, parts=str(folder / "resumed.parts"), on_segment=die_at_half)
        except _Interrupted:
            interrupted_s = time.perf_counter() - started
        rerun_s, resumed = timed("resumed", segment_s, parts=str(folder / "resumed.parts"))
        largest, mean, frames = _difference(folder / "one_pass.mp4", folder / "segmented.mp4")
        resumed_largest, _, _ = _difference(folder / "segmented.mp4", folder / "resumed.mp4")
        psnr = {
            name: _psnr(folder / f"{name}.mp4", plan_dub(model, video, speech, config(None), source).frames())
            for name in ("one_pass", "segmented", "resumed")
        }
    return {
        "source_s": seconds,
        "output_frames": frames,
        "segment_s": segment_s,
        "segments": segmented.encoded_segments,
        "prepare_source_s": round(prepare_s, 1),
        "one_pass_s": round(one_pass_s, 1),
        "segmented_s": round(segmented_s, 1),
        "segmented_over_one_pass": round(segmented_s / one_pass_s, 3),
        "segmented_vs_one_pass_max_abs": largest,
        "segmented_vs_one_pass_mean_abs": round(mean, 4),
        "interrupted_after_segments": half,
        "interrupted_run_s": round(interrupted_s, 1),
        "rerun_s": round(rerun_s, 1),
        "rerun_encoded_segments": resumed.encoded_segments,
        "rerun_resumed_segments": resumed.resumed_segments,
        "resumed_vs_segmented_max_abs": resumed_largest,
        "psnr_to_composited_db": psnr,
        "stage_seconds_segmented": segmented.stage_seconds,
    }
