"""Lip-sync scoring speed on one core, given the landmarks (the audit and the dub track them anyway).

On GRID clips, tracked once with MediaPipe beforehand (not timed):
- ``expert_fps``: the shipped expert alone on landmarks + log-mel windows (two network passes and
  the distance curve over +-15 offsets);
- ``with_audio_fps``: what the audit adds per video: decode the audio track, log-mel, the expert;
- the audit's own per-video scoring (decode + MediaPipe + MSI + slice) with and without the sync
  score, and the share of time the sync score adds. Target: >= 200 frames/s per core given landmarks.
"""

from __future__ import annotations

import time

import torch

from bench.common import grid_clips, pin_to_one_core
from stableface.audio.features import audio_features
from stableface.face.landmarks import make_backend
from stableface.io.audio import read_audio
from stableface.metrics.config import MetricsConfig
from stableface.metrics.lipsync import SyncExpert
from stableface.metrics.video import score_video

FPS = 25.0
REPEATS = 3  # passes over the clips for the expert-only figures


def _rate(frames: int, seconds: float) -> float:
    return round(frames / seconds, 1)


def run(quick: bool = False) -> dict:
    pin_to_one_core()
    torch.set_num_threads(1)
    clips = grid_clips(4 if quick else 20)
    expert = SyncExpert.load()
    config = MetricsConfig(slice_image=True)
    backend = make_backend("mediapipe")
    try:
        tracks = [score_video(c, config, backend=backend, keep_landmarks=True).ibug68 for c in clips]
        windows = [
            audio_features(read_audio(c), len(t), FPS, expert.audio_config)
            for c, t in zip(clips, tracks, strict=True)
        ]
        frames = sum(len(t) for t in tracks)
        expert.score(tracks[0], windows[0], FPS)  # warm-up
        started = time.perf_counter()
        for _ in range(REPEATS):
            for track, window in zip(tracks, windows, strict=True):
                expert.score(track, window, FPS)
        expert_fps = _rate(REPEATS * frames, time.perf_counter() - started)
        started = time.perf_counter()
        for clip, track in zip(clips, tracks, strict=True):
            expert.score_file(clip, track, FPS)
        with_audio_fps = _rate(frames, time.perf_counter() - started)
        started = time.perf_counter()
        for clip in clips:
            score_video(clip, config, backend=backend)
        audit_plain = time.perf_counter() - started
        started = time.perf_counter()
        for clip in clips:
            score_video(clip, config, backend=backend, sync=expert)
        audit_sync = time.perf_counter() - started
    finally:
        backend.close()
    return {
        "clips": len(clips),
        "frames": frames,
        "expert_fps_one_core": expert_fps,
        "with_audio_decode_and_logmel_fps_one_core": with_audio_fps,
        "audit_scoring_fps_one_core_without_sync": _rate(frames, audit_plain),
        "audit_scoring_fps_one_core_with_sync": _rate(frames, audit_sync),
        "audit_time_added_by_sync": f"{100 * (audit_sync - audit_plain) / audit_plain:.1f} %",
        "target_fps_given_landmarks": 200,
    }
