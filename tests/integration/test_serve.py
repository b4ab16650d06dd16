"""The Serve application on the local Ray, over real HTTP on 127.0.0.1.

One app for the module: a tiny speaker model as two speakers (s1, s2) and a grid/s1 clip as each
one's source; one replica per deployment and one model per replica, so least-recently-used
eviction shows in the replicas' counters; a compositor that takes one dub at a time and queues one
more, so a burst of requests gets deliberate 503s.
"""

from __future__ import annotations

import shutil
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests

from serve.compositor import parse_stage_seconds
from stableface.inference import dub_files, load_speaker_model
from stableface.io.audio import read_audio, write_audio
from stableface.io.video import probe_video, read_frames

pytestmark = pytest.mark.integration

API_KEY = "integration-test-key"
APP_NAME = "stableface"
SOURCE_CLIP = 0  # grid/s1 clip used as both speakers' source video (3 s, 75 frames, 25 fps)
SYNC_SECONDS = 3.5  # the synchronous limit of the test app
MAX_UPLOAD = 400_000  # bytes
SPEECH_RATE = 16_000
ONE_REPLICA = {"min_replicas": 1, "max_replicas": 1}
STAGE_OPTIONS = {"autoscaling_config": ONE_REPLICA, "ray_actor_options": {"num_cpus": 0.1}}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def speech(shared_data, tmp_path_factory) -> dict[str, bytes]:
    """French speech (16 kHz wav) of 2 s, 3 s and 5 s, and a second of silence."""
    folder = tmp_path_factory.mktemp("serve_speech")
    samples = read_audio(shared_data / "speech" / "macron_12s.wav", SPEECH_RATE)
    clips = {}
    for name, seconds in [("2s", 2.0), ("3s", 3.0), ("5s", 5.0)]:
        write_audio(folder / f"{name}.wav", samples[: int(seconds * SPEECH_RATE)], SPEECH_RATE)
        clips[name] = (folder / f"{name}.wav").read_bytes()
    write_audio(folder / "silent.wav", np.zeros(SPEECH_RATE, np.float32), SPEECH_RATE)
    clips["silent"] = (folder / "silent.wav").read_bytes()
    return clips


@pytest.fixture(scope="module")
def stores(tiny_speaker_model, grid_clips, two_faces, tmp_path_factory) -> dict:
    """models/{s1,s2} (the tiny model, saved under two speaker ids) and sources/{s1,s2}/<clip>.mpg;
    sources/s1 also holds two_faces.mp4 (after the clip: not the default source)."""
    root = tmp_path_factory.mktemp("serve_stores")
    model = load_speaker_model(tiny_speaker_model)
    for speaker in ("s1", "s2"):
        model.speaker = speaker
        model.save(str(root / "models" / speaker))
        (root / "sources" / speaker).mkdir(parents=True)
        shutil.copy(grid_clips[SOURCE_CLIP], root / "sources" / speaker / grid_clips[SOURCE_CLIP].name)
    shutil.copy(two_faces["path"], root / "sources" / "s1" / "two_faces.mp4")
    return {
        "root": root,
        "models": str(root / "models"),
        "sources": str(root / "sources"),
        "source_id": grid_clips[SOURCE_CLIP].stem,
        "source_path": root / "sources" / "s1" / grid_clips[SOURCE_CLIP].name,
    }


@pytest.fixture(scope="module")
def service(ray_local, stores):
    """The app on a free port of 127.0.0.1; yields its base URL; Serve is shut down afterwards."""
    from ray import serve

    from serve.app import build_graph
    from serve.settings import load_settings

    config = load_settings(
        {
            "models_uri": stores["models"],
            "sources_uri": stores["sources"],
            "jobs_uri": str(stores["root"] / "jobs"),
            "cache_uri": str(stores["root"] / "cache"),
            "api_key": API_KEY,
            "max_models_per_replica": 1,
            "job_num_cpus": 0.25,
            "limits": {
                "max_upload_bytes": MAX_UPLOAD,
                "max_sync_seconds": SYNC_SECONDS,
                "max_async_seconds": 30,
                "request_timeout_s": 120,
            },
        }
    )
    options = {name: STAGE_OPTIONS for name in ("Audio2Expression", "Smoothing", "Renderer", "Ingress")}
    options["Compositor"] = {**STAGE_OPTIONS, "max_ongoing_requests": 1, "max_queued_requests": 1}
    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        serve.run(build_graph(config, options), name=APP_NAME, route_prefix="/")
        yield {"url": f"http://127.0.0.1:{port}", "config": config}
    finally:
        serve.shutdown()


def _post(service, path, audio, speaker="s1", source=None, content_type="audio/wav", key=API_KEY, face=None):
    data = {"speaker": speaker, **({} if source is None else {"source": source})}
    if face is not None:
        data["face"] = face
    headers = {} if key is None else {"Authorization": f"Bearer {key}"}
    return requests.post(
        service["url"] + path,
        data=data,
        files={"audio": ("speech.wav", audio, content_type)},
        headers=headers,
        timeout=300,
    )


def _get(service, path, key=API_KEY):
    return requests.get(service["url"] + path, headers={"Authorization": f"Bearer {key}"}, timeout=60)


def _stats(deployment: str, method: str = "model_stats"):
    from ray import serve

    return getattr(serve.get_deployment_handle(deployment, app_name=APP_NAME), method).remote().result()


def _check_mp4(path, audio_seconds: float, source_path) -> np.ndarray:
    info, source = probe_video(path), probe_video(source_path)
    assert info.fps == source.fps
    assert (info.width, info.height) == (source.width, source.height)
    assert info.has_audio
    frames = read_frames(path)
    assert frames.shape[1:] == (source.height, source.width, 3)
    assert abs(len(frames) / float(info.fps) - audio_seconds) <= 1.0 / float(info.fps) + 1e-6
    return frames


def test_health_and_docs(service):
    health = requests.get(service["url"] + "/healthz", timeout=30)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert requests.get(service["url"] + "/docs", timeout=30).status_code == 200


def test_sync_dub_returns_an_mp4_of_the_audio_length_equal_to_the_bulk_dub(service, speech, stores, tmp_path):
    response = _post(service, "/v1/dub", speech["2s"])
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "video/mp4"
    served = tmp_path / "served.mp4"
    served.write_bytes(response.content)
    frames = _check_mp4(served, 2.0, stores["source_path"])
    assert int(response.headers["X-StableFace-Frames"]) == len(frames)
    stages = parse_stage_seconds(response.headers["X-StableFace-Stage-Seconds"])
    assert {"audio2expression", "smoothing", "render", "encode", "source"} <= set(stages)
    assert all(seconds >= 0 for seconds in stages.values()) and stages["render"] > 0
    assert sum(stages.values()) <= float(response.headers["X-StableFace-Seconds"]) + stages["source"] + 0.01

    # The bulk path (dub_files with the networks in-process) on the same inputs gives the same video.
    (tmp_path / "speech.wav").write_bytes(speech["2s"])
    model = load_speaker_model(f"{stores['models']}/s1")
    config = service["config"].dub
    dub_files(model, stores["source_path"], tmp_path / "speech.wav", tmp_path / "bulk.mp4", config)
    bulk = read_frames(tmp_path / "bulk.mp4")
    assert bulk.shape == frames.shape
    difference = np.abs(bulk.astype(np.int16) - frames.astype(np.int16))
    assert difference.mean() < 0.5 and np.percentile(difference, 99.9) <= 8, (
        difference.mean(),
        difference.max(),
    )


def test_bad_requests_get_the_right_status(service, speech):
    cases = [
        (_post(service, "/v1/dub", speech["2s"], key=None), 401),
        (_post(service, "/v1/dub", speech["2s"], key="not-the-key"), 401),
        (_post(service, "/v1/dub", speech["2s"], content_type="text/plain"), 415),
        (_post(service, "/v1/dub", speech["2s"], speaker="nobody"), 404),
        (_post(service, "/v1/dub", speech["2s"], source="no_such_clip"), 404),
        (_post(service, "/v1/dub", speech["2s"], speaker="../models/s1"), 422),
        (_post(service, "/v1/dub", speech["2s"], source="../s2/clip"), 422),
        (_post(service, "/v1/jobs", speech["2s"], speaker="s1/.."), 422),
        (_get(service, "/v1/jobs/%2E%2E"), 422),
        (_get(service, "/v1/jobs/0123456789abcdef0123456789abcdef"), 404),
        (_post(service, "/v1/dub", speech["silent"]), 400),
        (_post(service, "/v1/dub", speech["5s"]), 413),  # longer than the synchronous limit
        (_post(service, "/v1/dub", b"\x00" * (MAX_UPLOAD + 1)), 413),  # larger than the upload limit
    ]
    for number, (response, status) in enumerate(cases):
        assert response.status_code == status, (number, response.status_code, response.text)
        assert response.json()["status"] == status, (number, response.text)  # our JSON errors, not Serve's


def test_a_refused_dub_comes_back_from_the_compositor_as_a_value(service, speech):
    """Expected refusals are returned, not raised: Ray Serve logs a raised one as an ERROR traceback."""
    from ray import serve

    from serve.messages import DubRefused, DubRequest

    handle = serve.get_deployment_handle("Compositor", app_name=APP_NAME)
    request = DubRequest(speaker="s1", source="no_such_clip", audio=speech["2s"], audio_suffix=".wav")
    reply = handle.options(multiplexed_model_id="s1").dub.remote(request).result(timeout_s=120)
    assert isinstance(reply, DubRefused), reply
    assert reply.status == 404 and "no_such_clip" in reply.message


def test_async_job_end_to_end(service, speech, stores, tmp_path):
    accepted = _post(service, "/v1/jobs", speech["5s"])  # too long for /v1/dub, fine for a job
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["job_id"]
    deadline = time.monotonic() + 240
    while True:
        # The video first, then the status: a job still running after the video was asked for was
        # running when it was asked for, so that answer must have been 409.
        early_video = _get(service, f"/v1/jobs/{job_id}/video")
        status = _get(service, f"/v1/jobs/{job_id}").json()
        if status["status"] in ("done", "failed") or time.monotonic() > deadline:
            break
        assert early_video.status_code == 409, early_video.text
        time.sleep(1.0)
    assert status["status"] == "done", status
    assert abs(status["output_seconds"] - 5.0) <= 0.04 + 1e-6
    video = _get(service, f"/v1/jobs/{job_id}/video")
    assert video.status_code == 200
    (tmp_path / "job.mp4").write_bytes(video.content)
    _check_mp4(tmp_path / "job.mp4", 5.0, stores["source_path"])


def test_speaker_models_are_multiplexed_with_lru_eviction(service, speech):
    for speaker in ("s1", "s2"):
        assert _post(service, "/v1/dub", speech["2s"], speaker=speaker).status_code == 200
    before = {name: _stats(name) for name in ("Compositor", "Audio2Expression", "Smoothing", "Renderer")}
    for name, stats in before.items():
        assert stats["resident"] == ["s2"], (name, stats)  # one model per replica: s1 was evicted
        assert stats["evictions"] >= 1, (name, stats)
    assert _post(service, "/v1/dub", speech["2s"], speaker="s1").status_code == 200
    for name, stats in before.items():
        after = _stats(name)
        assert after["resident"] == ["s1"], (name, after)
        assert after["loads"] == stats["loads"] + 1 and after["evictions"] == stats["evictions"] + 1, (
            name,
            after,
        )
    assert max(_stats("Renderer", "batch_sizes")) >= 1


def test_each_deployment_holds_only_the_network_it_runs(service, speech, tiny_speaker_model):
    from ray import serve

    from stableface.models.networks import count_parameters

    assert _post(service, "/v1/dub", speech["2s"], speaker="s1").status_code == 200
    full = load_speaker_model(tiny_speaker_model).networks
    expected = {
        "Compositor": {},
        "Audio2Expression": {"audio2expression": count_parameters(full.audio2expression)},
        "Smoothing": {"smoothing": count_parameters(full.smoothing)},
        "Renderer": {"renderer": count_parameters(full.renderer)},  # no discriminator, no audio2expression
    }
    for name, parameters in expected.items():
        handle = serve.get_deployment_handle(name, app_name=APP_NAME).options(multiplexed_model_id="s1")
        assert handle.model_stats.remote().result()["parameters"] == parameters, name


def test_a_burst_beyond_the_queue_gets_503_and_nothing_else_fails(service, speech):
    with ThreadPoolExecutor(max_workers=6) as pool:
        responses = list(pool.map(lambda _: _post(service, "/v1/dub", speech["3s"]), range(6)))
    codes = [response.status_code for response in responses]
    assert set(codes) <= {200, 503}, codes
    assert all("overloaded" in r.json()["error"] for r in responses if r.status_code == 503)
    assert codes.count(503) >= 1, codes  # one dub runs, one waits: the others are refused at once
    assert codes.count(200) >= 2, codes


def test_a_dub_of_the_second_face_over_http_leaves_the_other_face_as_it_was(
    service, speech, two_faces, tmp_path
):
    from stableface.inference import mark_box

    response = _post(service, "/v1/dub", speech["2s"], source="two_faces", face="2")
    assert response.status_code == 200, response.text
    served = tmp_path / "served.mp4"
    served.write_bytes(response.content)
    dubbed = read_frames(served).astype(np.int16)  # (N, H, W, 3)
    source = read_frames(two_faces["path"])[: len(dubbed)].astype(np.int16)
    height, width = source.shape[1:3]
    outside_mark = np.ones((height, width), bool)
    x0, y0, x1, y1 = mark_box(height, width, service["config"].dub.provenance)
    outside_mark[max(y0, 0) : y1, max(x0, 0) : x1] = False
    difference = np.abs(dubbed - source).mean(axis=(0, 3))  # (H, W) per pixel over frames and channels
    grid_x0 = two_faces["grid_x0"]
    other = difference[:, :grid_x0][outside_mark[:, :grid_x0]]  # the VoxCeleb2 person's half
    mouth = difference[190:236, grid_x0 + 135 : grid_x0 + 190]  # the GRID mouth (grid/s1 clip 5)
    print(f"other half {other.mean():.2f}, GRID mouth {mouth.mean():.2f} grey levels")
    # The other half differs by the watermark and the codec only; the dubbed mouth far more.
    assert other.mean() < 3.0 and np.percentile(other, 99) < 8
    assert mouth.mean() > 4 * other.mean()
