"""The service's Ray-free pieces on real data: the job runner, the source cache, renderer batching, the YAML.

No Ray starts here: the job function is called directly (with its store on the moto S3 server), and
the serve config is validated with Serve's own schema and built into an application graph.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from serve.async_jobs import run_job
from serve.settings import load_settings, to_payload
from serve.stages import render_requests
from serve.stores import JobStore, SourceStore
from stableface.inference import load_speaker_model, render_windows
from stableface.io.audio import read_audio, write_audio
from stableface.io.storage import Storage, absolute_uri
from stableface.io.video import probe_video, read_frames
from stableface.models import build_renderer, compose_model_config

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVE_CONFIG = REPO_ROOT / "serve" / "config.yaml"
SOURCE_CLIP = 0


@pytest.fixture(scope="module")
def stores(untrained_speaker_model, grid_clips, shared_data, tmp_path_factory) -> dict:
    """models/s1, sources/s1/<clip>.mpg and 2 s of speech."""
    root = tmp_path_factory.mktemp("serve_pipeline")
    shutil.copytree(untrained_speaker_model, root / "models" / "s1")
    (root / "sources" / "s1").mkdir(parents=True)
    clip = grid_clips[SOURCE_CLIP]
    shutil.copy(clip, root / "sources" / "s1" / clip.name)
    speech = read_audio(shared_data / "speech" / "english_21s.wav", 16_000)
    write_audio(root / "speech.wav", speech[16_000:48_000], 16_000)
    return {"root": root, "models": str(root / "models"), "sources": str(root / "sources"), "clip": clip.stem}


def test_a_job_on_an_s3_job_store_dubs_once_and_records_failures(stores, s3_bucket, s3_storage_config):
    storage = Storage(s3_storage_config)
    config = load_settings(
        {
            "models_uri": stores["models"],
            "sources_uri": stores["sources"],
            "jobs_uri": f"{s3_bucket}/jobs",
            "cache_uri": str(stores["root"] / "cache"),
            "storage": {"endpoint_url": s3_storage_config.endpoint_url, "region": "us-east-1"},
        }
    )
    jobs = JobStore(config.jobs_uri, storage)
    audio = (stores["root"] / "speech.wav").read_bytes()
    good, bad = jobs.new_id(), jobs.new_id()
    jobs.create(good, audio, ".wav", {"speaker": "s1", "source": stores["clip"]})
    jobs.create(bad, audio, ".wav", {"speaker": "s1", "source": "gone"})

    record = run_job(to_payload(config), good)
    assert record["status"] == "done", record
    assert record["attempts"] == 1 and abs(record["output_seconds"] - 2.0) <= 0.04 + 1e-6
    local = stores["root"] / "job.mp4"
    storage.download_file(jobs.video_uri(good), local)
    info = probe_video(local)
    assert info.fps == 25 and info.has_audio and abs(info.n_frames - 50) <= 1
    again = run_job(to_payload(config), good)  # idempotent: a finished job is not dubbed again
    assert again["attempts"] == 1 and again["status"] == "done"

    failed = run_job(to_payload(config), bad)
    assert failed["status"] == "failed" and "gone" in failed["error"], failed
    assert not storage.exists(jobs.video_uri(bad))
    assert jobs.unfinished() == []


def test_a_lecture_job_passes_its_cutaway_through(stores, mixed_lecture, tmp_path):
    """The service's dub of the mixed lecture: the cutaway within codec noise of the source, counts recorded."""
    root = stores["root"]
    shutil.copy(mixed_lecture["path"], root / "sources" / "s1" / "lecture.mp4")
    config = load_settings(
        {"models_uri": stores["models"], "sources_uri": stores["sources"], "jobs_uri": str(tmp_path / "jobs"),
         "cache_uri": str(tmp_path / "cache")}
    )  # fmt: skip
    (_, a), (_, c), (_, end) = mixed_lecture["parts"]
    speech = read_audio(root / "speech.wav", 16_000)
    audio = tmp_path / "lecture.wav"
    write_audio(audio, np.tile(speech, 5)[: end * 640], 16_000)
    jobs = JobStore(config.jobs_uri, Storage())
    job = jobs.new_id()
    jobs.create(job, audio.read_bytes(), ".wav", {"speaker": "s1", "source": "lecture"})
    record = run_job(to_payload(config), job)
    assert record["status"] == "done", record
    assert record["segments"] == 2 and record["frames_passed_through"] >= c - a
    assert record["frames_dubbed"] + record["frames_passed_through"] == end and record["warning"] == ""
    local = tmp_path / "lecture_dub.mp4"
    Storage().download_file(jobs.video_uri(job), local)
    dubbed, source = read_frames(local), read_frames(mixed_lecture["path"])
    height = source.shape[1]
    above_mark = slice(0, int(0.85 * height))  # the mark sits in the bottom-right corner
    error = np.abs(dubbed[a:c, above_mark].astype(np.int16) - source[a:c, above_mark].astype(np.int16))
    assert error.mean() < 2.0
    changed = np.abs(dubbed[10 : a - 10, above_mark].astype(np.int16) - source[10 : a - 10, above_mark])
    assert changed.mean() > error.mean()  # the face segment is dubbed


def test_prepared_sources_are_cached_in_memory_and_as_npz(stores, tmp_path):
    model = load_speaker_model(f"{stores['models']}/s1")
    cache = str(tmp_path / "cache")
    first = SourceStore(stores["sources"], Storage(), cache, max_tracks=1)
    ref = first.find("s1")
    track = first.prepared(ref, model)
    assert first.prepared_count == 1 and track.n_frames == 75
    assert first.prepared(ref, model) is track  # memory
    assert Path(first.track_uri(ref, model)).is_file()
    second = SourceStore(stores["sources"], Storage(), cache)
    reloaded = second.prepared(second.find("s1", stores["clip"]), model)
    assert second.prepared_count == 0  # from the npz, no face tracking
    np.testing.assert_array_equal(reloaded.expression, track.expression)
    np.testing.assert_array_equal(reloaded.centres, track.centres)


def test_batched_renderer_calls_equal_separate_calls():
    torch.manual_seed(0)
    config = compose_model_config("tiny", "full")
    renderer = build_renderer(config).eval()
    size, window, mels = config.renderer.image_size, config.audio_encoder.window, config.audio_encoder.n_mels
    rng = np.random.default_rng(0)

    def call(windows: int, length: int, with_audio: bool = True) -> tuple:
        background = rng.uniform(-1, 1, (windows, length, 3, size, size)).astype(np.float32)
        shape = rng.uniform(0, 1, (windows, length, size, size)).astype(np.float32)
        audio = (
            rng.standard_normal((windows, length, window, mels)).astype(np.float32) if with_audio else None
        )
        return background, shape, audio, None  # the tiny renderer has no warped texture

    calls = [call(2, 4), call(1, 4), call(1, 3), call(2, 4)]  # two full-length groups and a short window
    batched = render_requests(renderer, calls, torch.device("cpu"))
    for request, output in zip(calls, batched, strict=True):
        background, shape, audio, warped = request
        alone = render_windows(
            renderer, background, shape, audio, torch.device("cpu"), warped=warped
        )  # (B_i, L, 3, S, S)
        assert output.shape == alone.shape
        np.testing.assert_allclose(output, alone, atol=1e-5)


def test_serve_config_yaml_passes_serves_schema_and_builds_the_graph():
    from ray.serve.config import AutoscalingConfig
    from ray.serve.schema import ServeDeploySchema

    from serve.app import DEPLOYMENTS, build_app

    config = yaml.safe_load(SERVE_CONFIG.read_text())
    ServeDeploySchema.model_validate(config)
    assert config["http_options"]["host"] == "127.0.0.1"
    (application,) = config["applications"]
    assert application["import_path"] == "serve.app:app"
    assert {deployment["name"] for deployment in application["deployments"]} == set(DEPLOYMENTS)
    for deployment in application["deployments"]:
        AutoscalingConfig.model_validate(deployment["autoscaling_config"])
        if deployment["name"] != "JobRunner":  # the job runner is one replica that owns the job tasks
            assert deployment["max_queued_requests"] > 0, deployment["name"]  # bounded: overload is 503
    built = build_app(application["args"])
    assert built._bound_deployment.name == "Ingress"
    settings = load_settings(application["args"])
    assert settings.models_uri == absolute_uri(application["args"]["models_uri"])  # resolved at build
