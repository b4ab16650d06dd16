"""Dubbing speed and memory on this machine: output frames/s, real-time factor and time per stage for
the ``cpu`` and ``paper`` presets, and the peak memory of a 2-minute output.

Weights are untrained (freshly initialised, seed 0): the work per frame does not depend on them.
Each measurement runs in its own spawned process (clean peak RSS from ``resource.getrusage``) with
one dub as the job's actors run it: ``dub_files`` on local files with the default ``DubConfig``
(chunks of 32 frames, windows overlapping by T/4, x264 ``veryfast``) and 1 torch thread (one actor
per core) or 2 (a lone dub using both cores), each in fp32 and with ``amp`` (bf16 where the CPU
has it) one after the other. The machine's other load is recorded before each run. Sources are a
GRID clip at its own 360x288, the same speaker scaled up to 1280x720 (letterboxed) and the
1080x1920 ``hd/latentsync_demo1.mp4``, played back and forth to the length of the speech. Source preparation (face tracking, once per video and model, cached by the
job) is reported apart from the per-frame dubbing rate.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import grid_clips, shared_data

logger = logging.getLogger("bench.dub")

SPEECH_RATE = 16_000
FACE_MODEL_CLIPS = 4  # grid/s1 clips the benchmark's face model and identity are fitted on
HD_SIZE = (1280, 720)


def _speech(folder: Path, seconds: float) -> Path:
    """The bundled English and French speech, concatenated and repeated to ``seconds``."""
    from stableface.io.audio import read_audio, write_audio

    speech = shared_data() / "speech"
    parts = [
        read_audio(speech / name)
        for name in ("english_abstract_33s.mp3", "english_21s.wav", "macron_12s.wav")
    ]
    joined = np.concatenate(parts)
    samples = np.resize(joined, int(seconds * SPEECH_RATE))
    path = folder / f"speech_{int(seconds)}s.wav"
    write_audio(path, samples, SPEECH_RATE)
    return path


def _hd_source(folder: Path) -> Path:
    """A grid/s1 clip scaled up and letterboxed to 1280x720 (a lecture-sized frame)."""
    import cv2

    from stableface.io.audio import read_audio
    from stableface.io.video import VideoWriter, iter_frames

    clip = grid_clips(1)[0]
    width, height = HD_SIZE
    path = folder / "grid_720p.mp4"
    with VideoWriter(path, fps=25, width=width, height=height, audio=read_audio(clip), crf=16) as writer:
        for frame in iter_frames(clip):
            scaled = cv2.resize(
                frame,
                (round(frame.shape[1] * height / frame.shape[0]), height),
                interpolation=cv2.INTER_CUBIC,
            )
            canvas = np.zeros((height, width, 3), np.uint8)
            left = (width - scaled.shape[1]) // 2
            canvas[:, left : left + scaled.shape[1]] = scaled
            writer.write(canvas)
    return path


def _speaker_model(preset: str, folder: Path) -> str:
    """Untrained ``preset`` networks with a face model and identity fitted on grid/s1 (crop = image size)."""
    import torch

    from stableface.face.config import FaceConfig
    from stableface.face.face_model import FaceModel
    from stableface.face.landmarks import MediaPipeBackend, track_landmarks
    from stableface.face.tracking import crop_image, crop_points, stable_crop_box
    from stableface.face.warp import WarpTexture
    from stableface.io.video import iter_frames, read_frames
    from stableface.models import build_models, compose_model_config
    from stableface.speaker_model import SpeakerModel

    config = compose_model_config(preset, "full")
    face_config = FaceConfig(crop_size=config.renderer.image_size, min_fit_frames=100)
    base, backend, shapes = FaceModel.from_assets(face_config), MediaPipeBackend(), []
    texture = None  # a renderer with warped_texture warps the first clip's first crop
    for clip in grid_clips(FACE_MODEL_CLIPS):
        track = track_landmarks(iter_frames(clip), backend)
        box = stable_crop_box(track.mesh, track.present, face_config)
        mesh = crop_points(track.mesh, box)  # (T, 478, 3) crop pixels
        shapes.append(base.normalise(mesh)[0])
        if texture is None:
            crop = crop_image(read_frames(clip)[0], box.affines()[0], face_config.crop_size)
            texture = WarpTexture(crop, mesh[0, :, :2].astype(np.float32))
    backend.close()
    torch.manual_seed(0)
    speaker_shapes = np.concatenate(shapes)
    networks = build_models(config).eval()
    if config.renderer.warped_texture:
        networks.renderer.set_texture(texture)
    model = SpeakerModel(
        speaker="s1",
        networks=networks,
        face_model=base.fit([speaker_shapes]),
        identity=FaceModel.identity_of(speaker_shapes),
        crop_size=config.renderer.image_size,
        metadata={"model_version": f"bench-{preset}-untrained"},
    )
    uri = str(folder / f"model_{preset}")
    model.save(uri)
    return uri


def _measure_in_child(
    model_uri: str, video: str, speech: str, output: str, threads: int, amp: bool, background: bool, queue
) -> None:
    import resource

    from stableface.inference import DubConfig, InferenceConfig, dub_files, load_speaker_model, prepare_source
    from stableface.inference.config import EncodeConfig
    from stableface.utils.logging import configure_logging

    configure_logging("WARNING")
    kib = 1024
    model = load_speaker_model(model_uri)
    started = time.perf_counter()
    # The 1080x1920 clip is another person than the model's speaker: identity is not what is measured.
    config = DubConfig(
        inference=InferenceConfig(cpu_threads=threads, amp=amp, max_identity_distance=None),
        encode=EncodeConfig(background=background),
    )
    source = prepare_source(video, model, config.inference)
    prepare_s = time.perf_counter() - started
    warm = Path(output).with_suffix(".warm.mp4")
    dub_files(
        model, video, _short_speech(speech, warm.with_suffix(".wav")), warm, config, source
    )  # imports, caches
    setup_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / kib
    result = dub_files(model, video, speech, output, config, source)
    queue.put(
        {
            "frames": result.n_frames,
            "output_s": result.output_duration_s,
            "seconds": result.seconds,
            "stages": result.stage_seconds,
            "prepare_source_s": prepare_s,
            "source_frames": source.n_frames,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / kib,
            "rss_after_warmup_mib": setup_rss,
        }
    )


def _short_speech(speech: str, path: Path) -> Path:
    from stableface.io.audio import read_audio, write_audio

    write_audio(path, read_audio(speech)[:SPEECH_RATE], SPEECH_RATE)
    return path


def _measure(
    model_uri: str, video: Path, speech: Path, output: Path, threads: int, amp: bool, background: bool = True
) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    arguments = (model_uri, str(video), str(speech), str(output), threads, amp, background, queue)
    child = context.Process(target=_measure_in_child, args=arguments)
    child.start()
    result = queue.get()
    child.join()
    return result


def _figures(name: str, measured: dict[str, Any]) -> dict[str, Any]:
    frames, seconds = measured["frames"], measured["seconds"]
    figures = {
        f"{name}.load_average_1min_before": measured["load_before"],
        f"{name}.output_frames": frames,
        f"{name}.output_frames_per_s": round(frames / seconds, 2),
        f"{name}.realtime_factor (s per s of output)": round(seconds / measured["output_s"], 2),
        f"{name}.prepare_source_s ({measured['source_frames']} source frames, once per video)": round(
            measured["prepare_source_s"], 2
        ),
        f"{name}.peak_rss_mib": round(measured["peak_rss_mib"], 1),
        f"{name}.rss_after_warmup_mib": round(measured["rss_after_warmup_mib"], 1),
    }
    for stage, stage_seconds in sorted(measured["stages"].items(), key=lambda item: -item[1]):
        figures[f"{name}.ms_per_frame.{stage}"] = round(1000 * stage_seconds / frames, 2)
    logger.info("%s: %.1f frames/s, RTF %.2f, peak RSS %.0f MiB", name, frames / seconds,
                seconds / measured["output_s"], measured["peak_rss_mib"])  # fmt: skip
    return figures


def run(quick: bool) -> dict:
    from stableface.utils.precision import Precision

    figures: dict[str, Any] = {
        "weights": "untrained (speed does not depend on training)",
        "amp_precision": Precision("cpu", enabled=True).describe(),
    }
    with tempfile.TemporaryDirectory(prefix="bench-dub-") as tmp:
        folder = Path(tmp)
        grid = grid_clips(1)[0]
        models = {preset: _speaker_model(preset, folder) for preset in ("cpu", "paper")}
        hd = shared_data() / "hd" / "latentsync_demo1.mp4"  # 1080x1920 portrait, 10 s
        if quick:
            plan = [
                ("cpu.360p.8s.1thread", "cpu", grid, 8.0, 1),
                ("cpu.1080x1920.4s.1thread", "cpu", hd, 4.0, 1),
                ("paper.360p.2s.1thread", "paper", grid, 2.0, 1),
            ]
        else:
            hd720 = _hd_source(folder)
            plan = [
                ("cpu.360p.30s.1thread", "cpu", grid, 30.0, 1),  # one job actor per core
                ("cpu.360p.30s.2threads", "cpu", grid, 30.0, 2),  # a lone dub on both cores
                ("cpu.1080x1920.12s.1thread", "cpu", hd, 12.0, 1),
                ("cpu.720p.12s.1thread", "cpu", hd720, 12.0, 1),
                ("cpu.720p.120s.1thread", "cpu", hd720, 120.0, 1),  # the 2-minute output: peak memory
                ("paper.360p.4s.1thread", "paper", grid, 4.0, 1),
            ]
        for name, preset, video, seconds, threads in plan:
            speech = _speech(folder, seconds)
            # fp32 and the hardware's precision (bf16 where the CPU has it), and the latter with the
            # encoder in the dubbing thread, one after the other, so their ratios hold on a machine
            # whose other load changes; the long run only once.
            variants = {"amp": (True, True)}
            if seconds <= 60:
                variants = {"fp32": (False, True), **variants, "amp.encode_inline": (True, False)}
            rates = {}
            for label, (amp, background) in variants.items():
                load = os.getloadavg()[0]
                measured = _measure(
                    models[preset], video, speech, folder / f"{name}.mp4", threads, amp, background
                )
                figures.update(_figures(f"{name}.{label}", {**measured, "load_before": round(load, 2)}))
                rates[label] = measured["frames"] / measured["seconds"]
            if len(rates) > 1:
                figures[f"{name}.speedup_amp_over_fp32"] = round(rates["amp"] / rates["fp32"], 2)
                figures[f"{name}.speedup_encoder_thread"] = round(
                    rates["amp"] / rates["amp.encode_inline"], 2
                )
    return figures
