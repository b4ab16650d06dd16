"""The Serve endpoint on this machine: warm latency, throughput at saturation, a bounded load test.

The whole application (serve/app.py) runs on a local Ray with 2 CPUs and is called over HTTP on
127.0.0.1, as a client would:

- warm latency: sequential ``POST /v1/dub`` of a 3 s clip after warm-up requests (p50 and mean);
- load test: 100 requests of ``LOAD_CLIP_S`` s clips at concurrency 8 (``--quick``: 24 at 4),
  bounded by a time budget (requests not started by then are counted as not sent). 100, not 200:
  on 2 shared cores a 1 s dub of the ``cpu`` preset costs a few CPU-seconds, and 200 of them would
  take most of 20 minutes: status
  counts, p50/p95 latency, throughput (requests/s and audio seconds dubbed per second) — the
  throughput at saturation, since 8 concurrent dubs keep both cores busy;
- autoscaling: every deployment's RUNNING replica count read from ``serve.status()`` once per
  second during the load and the cool-down after it (short up/down-scale delays, so both fit);
- overload: a burst of ``BURST`` simultaneous requests at the idle service: the bounded queues
  answer some with 503 at once.

Model: ``$STABLEFACE_BENCH_MODEL`` or ``outputs/models/grid_s1_cpu`` when present (a trained speaker
model), else freshly initialised ``cpu``-preset networks (same compute; untrained weights do not
change the speed) with a face model and identity fitted on two grid/s1 clips.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.common import REPO_ROOT, grid_clips, shared_data

logger = logging.getLogger("bench.serve")

APP = "stableface"
SPEAKER = "s1"
TRAINED_MODEL = REPO_ROOT / "outputs" / "models" / "grid_s1_cpu"
WARM_CLIP_S = 3.0
LOAD_CLIP_S = 1.0
WARMUP = 2


@dataclass(frozen=True)
class Plan:
    warm_repeats: int
    load_requests: int
    load_concurrency: int
    load_budget_s: float  # requests not started by then are not sent


FULL = Plan(warm_repeats=7, load_requests=100, load_concurrency=8, load_budget_s=600.0)
QUICK = Plan(warm_repeats=3, load_requests=24, load_concurrency=4, load_budget_s=120.0)
BURST = 24
COOLDOWN_S = 90.0  # at most this long after the load for the replicas to come back down
DEPLOYMENTS = ("Ingress", "Compositor", "Audio2Expression", "Smoothing", "Renderer")
REPLICA_CPUS = 0.1  # scheduling weight only: the replicas share the machine's 2 cores
AUTOSCALING = {"upscale_delay_s": 2.0, "downscale_delay_s": 10.0, "look_back_period_s": 11.0}
SCALING = {  # deployment -> (max replicas, target ongoing requests per replica)
    "Ingress": (2, 4),
    "Compositor": (3, 1),
    "Audio2Expression": (2, 1),
    "Smoothing": (2, 1),
    "Renderer": (2, 2),
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _untrained_model(uri: str) -> str:
    """``cpu``-preset networks (seed 0) with a face model and identity fitted on two grid/s1 clips."""
    import torch

    from stableface.face.config import FaceConfig
    from stableface.face.face_model import FaceModel
    from stableface.face.landmarks import MediaPipeBackend, track_landmarks
    from stableface.face.tracking import crop_points, stable_crop_box
    from stableface.io.video import iter_frames
    from stableface.models import build_models, compose_model_config
    from stableface.speaker_model import SpeakerModel

    face_config = FaceConfig(crop_size=128, min_fit_frames=100)
    base = FaceModel.from_assets(face_config)
    backend = MediaPipeBackend()
    shapes = []
    for clip in grid_clips(2):
        track = track_landmarks(iter_frames(clip), backend)
        box = stable_crop_box(track.mesh, track.present, face_config)
        shapes.append(base.normalise(crop_points(track.mesh, box))[0])
    backend.close()
    normalised = np.concatenate(shapes)  # (T, 478, 3)
    torch.manual_seed(0)
    SpeakerModel(
        speaker=SPEAKER,
        networks=build_models(compose_model_config("cpu", "full")).eval(),
        face_model=base.fit([normalised]),
        identity=FaceModel.identity_of(normalised),
        crop_size=128,
        metadata={"model_version": "bench-untrained-cpu"},
    ).save(uri)
    return "untrained cpu preset"


def _stores(folder: Path) -> tuple[dict, str]:
    """models/s1, sources/s1/<clip>.mpg and the speech clips; returns (paths, which model)."""
    models = folder / "models"
    chosen = os.environ.get("STABLEFACE_BENCH_MODEL") or (
        str(TRAINED_MODEL) if TRAINED_MODEL.exists() else ""
    )
    if chosen:
        shutil.copytree(chosen, models / SPEAKER)
        which = f"trained: {chosen}"
    else:
        which = _untrained_model(str(models / SPEAKER))
    (folder / "sources" / SPEAKER).mkdir(parents=True)
    clip = grid_clips(1)[0]
    shutil.copy(clip, folder / "sources" / SPEAKER / clip.name)
    from stableface.io.audio import read_audio, write_audio

    speech = read_audio(shared_data() / "speech" / "english_21s.wav", 16_000)
    clips = {}
    for name, seconds in (("warm", WARM_CLIP_S), ("load", LOAD_CLIP_S)):
        path = folder / f"{name}.wav"
        write_audio(path, speech[int(2.0 * 16_000) : int((2.0 + seconds) * 16_000)], 16_000)
        clips[name] = path.read_bytes()
    return {"models": str(models), "sources": str(folder / "sources"), "root": folder, "clips": clips}, which


def _options() -> dict:
    options = {}
    for name, (max_replicas, target) in SCALING.items():
        options[name] = {
            "autoscaling_config": {
                "min_replicas": 1,
                "max_replicas": max_replicas,
                "target_ongoing_requests": target,
                **AUTOSCALING,
            },
            "ray_actor_options": {"num_cpus": REPLICA_CPUS},
        }
    return options


def _replicas() -> dict[str, int]:
    from ray import serve

    application = serve.status().applications.get(APP)
    if application is None:
        return {}
    return {
        name: int(application.deployments[name].replica_states.get("RUNNING", 0))
        for name in DEPLOYMENTS
        if name in application.deployments
    }


class ReplicaSampler:
    """Samples replica counts once per second in a thread; keeps the moments they change."""

    def __init__(self, started: float):
        self.started, self.samples, self._stop = started, [], threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            counts = _replicas()
            if not self.samples or self.samples[-1][1] != counts:
                self.samples.append((round(time.monotonic() - self.started, 1), counts))
            self._stop.wait(1.0)

    def __enter__(self) -> ReplicaSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def _post_reply(url: str, audio: bytes):
    import requests

    started = time.perf_counter()
    response = requests.post(
        url + "/v1/dub",
        data={"speaker": SPEAKER},
        files={"audio": ("speech.wav", audio, "audio/wav")},
        timeout=600,
    )
    return response, time.perf_counter() - started


def _post(url: str, audio: bytes) -> tuple[int, float]:
    response, seconds = _post_reply(url, audio)
    return response.status_code, seconds


def _warm_stages(url: str, audio: bytes, repeats: int) -> dict[str, float]:
    """Median seconds per stage of warm requests, from the X-StableFace-Stage-Seconds header."""
    from serve.compositor import parse_stage_seconds

    per_request = []
    for _ in range(repeats):
        response, _ = _post_reply(url, audio)
        assert response.status_code == 200, response.status_code
        per_request.append(parse_stage_seconds(response.headers["X-StableFace-Stage-Seconds"]))
    names = sorted({name for stages in per_request for name in stages})
    return {
        f"warm.stage_s.{name}": round(float(np.median([s.get(name, 0.0) for s in per_request])), 3)
        for name in names
    }


def _load_test(url: str, audio: bytes, requests_n: int, concurrency: int, budget_s: float) -> dict:
    deadline = time.monotonic() + budget_s
    results: list[tuple[int, float] | None] = []

    def one(_: int) -> tuple[int, float] | None:
        return _post(url, audio) if time.monotonic() < deadline else None

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        results = list(pool.map(one, range(requests_n)))
    wall = time.perf_counter() - started
    sent = [result for result in results if result is not None]
    codes = [code for code, _ in sent]
    ok_latency = np.array([seconds for code, seconds in sent if code == 200])
    return {
        "load.requests": requests_n,
        "load.concurrency": concurrency,
        "load.clip_s": LOAD_CLIP_S,
        "load.sent": len(sent),
        "load.ok": codes.count(200),
        "load.503": codes.count(503),
        "load.errors": len(codes) - codes.count(200) - codes.count(503),
        "load.wall_s": round(wall, 1),
        "load.latency_p50_s": round(float(np.percentile(ok_latency, 50)), 3) if len(ok_latency) else None,
        "load.latency_p95_s": round(float(np.percentile(ok_latency, 95)), 3) if len(ok_latency) else None,
        "load.throughput_rps": round(codes.count(200) / wall, 3),
        "load.audio_s_per_s": round(codes.count(200) * LOAD_CLIP_S / wall, 3),
    }


def _wait_for_min_replicas(timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all(count <= 1 for count in _replicas().values()):
            return
        time.sleep(1.0)


def run(quick: bool) -> dict:
    import ray
    import requests
    from ray import serve

    from serve.app import build_graph
    from serve.settings import load_settings

    plan = QUICK if quick else FULL
    folder = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    started_ray = not ray.is_initialized()
    try:
        stores, which = _stores(folder)
        if started_ray:
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        config = load_settings(
            {
                "models_uri": stores["models"],
                "sources_uri": stores["sources"],
                "jobs_uri": str(folder / "jobs"),
                "cache_uri": str(folder / "cache"),
                "limits": {"request_timeout_s": 600},
            }
        )
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_graph(config, _options()), name=APP, route_prefix="/")
        assert requests.get(url + "/healthz", timeout=60).status_code == 200
        figures: dict = {"model": which, "load_average_1min_before": round(os.getloadavg()[0], 2)}

        first_code, first_s = _post(url, stores["clips"]["warm"])  # prepares the source (face tracking) once
        assert first_code == 200, first_code
        for _ in range(WARMUP - 1):
            _post(url, stores["clips"]["warm"])
        warm = [_post(url, stores["clips"]["warm"]) for _ in range(plan.warm_repeats)]
        assert all(code == 200 for code, _ in warm), warm
        seconds = np.array([s for _, s in warm])
        figures.update(
            {
                "first_request_s (cold source)": round(first_s, 3),
                "warm.clip_s": WARM_CLIP_S,
                "warm.repeats": plan.warm_repeats,
                "warm.latency_p50_s": round(float(np.median(seconds)), 3),
                "warm.latency_mean_s": round(float(seconds.mean()), 3),
                "warm.real_time_factor": round(float(np.median(seconds)) / WARM_CLIP_S, 3),
            }
        )
        figures.update(_warm_stages(url, stores["clips"]["warm"], plan.warm_repeats))

        clock = time.monotonic()
        with ReplicaSampler(clock) as sampler:
            figures.update(
                _load_test(
                    url,
                    stores["clips"]["load"],
                    plan.load_requests,
                    plan.load_concurrency,
                    plan.load_budget_s,
                )
            )
            load_end = round(time.monotonic() - clock, 1)
            _wait_for_min_replicas(COOLDOWN_S)
            time.sleep(1.5)  # one more sample at the bottom
        timeline = sampler.samples
        figures["replicas.load_ended_at_s"] = load_end
        for name in DEPLOYMENTS:
            counts = [counts.get(name, 0) for _, counts in timeline]
            figures[f"replicas.{name} (start/peak/end)"] = f"{counts[0]}/{max(counts)}/{counts[-1]}"
        figures["replicas.timeline (s: Ingress/Compositor/A2E/Smoothing/Renderer)"] = [
            f"{t}: " + "/".join(str(counts.get(name, 0)) for name in DEPLOYMENTS) for t, counts in timeline
        ]

        with ThreadPoolExecutor(max_workers=BURST) as pool:
            burst = list(pool.map(lambda _: _post(url, stores["clips"]["load"])[0], range(BURST)))
        figures.update(
            {
                "burst.requests": BURST,
                "burst.ok": burst.count(200),
                "burst.503": burst.count(503),
                "burst.other": BURST - burst.count(200) - burst.count(503),
            }
        )
        return figures
    finally:
        serve.shutdown()
        if started_ray:
            ray.shutdown()
        shutil.rmtree(folder, ignore_errors=True)
