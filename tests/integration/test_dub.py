"""Dubbing acceptance: one clip end to end, a catalog with bad rows and re-runs, a killed actor."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stableface.config import compose
from stableface.inference import (
    ProvenanceConfig,
    dub,
    load_speaker_model,
    mark_box,
    prepare_source,
    source_index_map,
)
from stableface.io.audio import read_audio, write_audio
from stableface.io.video import probe_video, read_frames
from stableface.provenance.config import WatermarkConfig
from stableface.provenance.watermark import Watermarker
from stableface.ray_jobs.dub import run

pytestmark = pytest.mark.integration
CODEC_TOLERANCE = 3.0  # mean absolute pixel difference after MPEG-1 -> H.264 crf 18


@pytest.fixture(scope="module")
def models_root(tiny_speaker_model) -> str:
    """The models root the trained tiny model sits in as ``<root>/s1``, for rows that name a speaker."""
    assert Path(tiny_speaker_model).name == "s1"
    return str(Path(tiny_speaker_model).parent)


@pytest.fixture(scope="module")
def speech(shared_data, tmp_path_factory) -> dict[str, Path]:
    """New speech for the dubs: cuts of the French and English recordings (16 kHz wav)."""
    folder = tmp_path_factory.mktemp("dub_speech")
    french = read_audio(shared_data / "speech" / "macron_12s.wav")
    english = read_audio(shared_data / "speech" / "english_21s.wav")
    cuts = {
        "fr_a": (french, 0.5, 3.0),
        "fr_b": (french, 4.0, 6.8),
        "en_a": (english, 1.0, 3.4),
        "en_b": (english, 6.0, 9.5),
    }
    files = {}
    for name, (samples, start, stop) in cuts.items():
        files[name] = folder / f"{name}.wav"
        write_audio(files[name], samples[int(start * 16_000) : int(stop * 16_000)], 16_000)
    return files


def test_a_trained_tiny_model_dubs_a_grid_clip_with_new_speech(
    tiny_speaker_model, grid_clips, shared_data, tmp_path
):
    model = load_speaker_model(tiny_speaker_model)
    clip, speech = grid_clips[20], shared_data / "speech" / "macron_12s.wav"
    output = tmp_path / "dubbed.mp4"
    result = dub(model, str(clip), str(speech), str(output))

    info, source_info = probe_video(output), probe_video(clip)
    audio_seconds = len(read_audio(speech)) / 16_000
    assert abs(info.duration_s - audio_seconds) <= 1 / 25
    assert (info.width, info.height, info.fps) == (source_info.width, source_info.height, source_info.fps)
    assert info.has_audio and result.pingpong
    frames = read_frames(output)
    marker = Watermarker(result.watermark, WatermarkConfig())  # the invisible mark changes every pixel
    reference = np.stack([marker.mark(frame) for frame in read_frames(clip)])
    assert len(frames) == result.n_frames == round(audio_seconds * 25)
    # Pixels away from the face (outside its crop box) are the source's (watermarked), up to codec error.
    track = prepare_source(clip, model)
    index = source_index_map(len(frames), len(reference))
    ys, xs = np.mgrid[0 : info.height, 0 : info.width]
    centres = track.centres[index]
    half = 0.6 * track.side
    far = (np.abs(xs[None] - centres[:, 0, None, None]) > half) | (
        np.abs(ys[None] - centres[:, 1, None, None]) > half
    )
    x0, y0, x1, y1 = mark_box(info.height, info.width, ProvenanceConfig())
    far[:, y0:y1, x0:x1] = False
    difference = np.abs(frames.astype(float) - reference[index].astype(float)).mean(axis=-1)
    assert difference[far].mean() < CODEC_TOLERANCE


def _catalog_rows(grid_clips, speech, bad_videos, tiny_speaker_model) -> list[dict[str, str]]:
    good = [
        {
            "job_id": "fr-a",
            "speaker": "s1",
            "video_uri": str(grid_clips[10]),
            "audio_uri": str(speech["fr_a"]),
        },
        {
            "job_id": "fr-b",
            "speaker": "s1",
            "video_uri": str(grid_clips[11]),
            "audio_uri": str(speech["fr_b"]),
        },
        {
            "job_id": "en-a",
            "model_uri": tiny_speaker_model,
            "video_uri": str(grid_clips[10]),
            "audio_uri": str(speech["en_a"]),
        },
        {
            "job_id": "en-b",
            "model_uri": tiny_speaker_model,
            "video_uri": str(grid_clips[12]),
            "audio_uri": str(speech["en_b"]),
        },
    ]
    bad = [
        {
            "job_id": "no-audio",
            "speaker": "s1",
            "video_uri": str(grid_clips[10]),
            "audio_uri": str(speech["fr_a"].parent / "missing.wav"),
        },
        {
            "job_id": "no-face",
            "speaker": "s1",
            "video_uri": str(bad_videos["no_face"]),
            "audio_uri": str(speech["en_a"]),
        },
    ]
    return good + bad


def _outputs(folder: Path) -> dict[str, float]:
    """Visible output files and their modification times."""
    return {path.name: path.stat().st_mtime_ns for path in folder.glob("*.mp4")}


def test_a_catalog_with_bad_rows_gives_outputs_and_reasons_and_a_rerun_does_no_work(
    ray_local, grid_clips, speech, bad_videos, tiny_speaker_model, models_root, tmp_path
):
    catalog = tmp_path / "catalog.jsonl"
    rows = _catalog_rows(grid_clips, speech, bad_videos, tiny_speaker_model)
    catalog.write_text("".join(json.dumps(row) + "\n" for row in rows))
    output_uri = str(tmp_path / "job")
    cfg = compose(
        "dub",
        [f"catalog={catalog}", f"models_uri={models_root}", f"output_uri={output_uri}", "concurrency=2"],
    )

    summary = run(cfg)
    assert (summary["rows"], summary["ok"], summary["failed"], summary["dubbed"]) == (6, 4, 2, 4)
    videos = Path(output_uri) / "videos"
    assert sorted(_outputs(videos)) == ["en-a.mp4", "en-b.mp4", "fr-a.mp4", "fr-b.mp4"]
    manifest = pd.read_parquet(Path(output_uri) / "manifest.parquet").set_index("job_id")
    assert list(manifest.index) == [row["job_id"] for row in rows]  # catalog order, one row each
    assert (pd.read_csv(Path(output_uri) / "manifest.csv")["job_id"] == list(manifest.index)).all()
    for job_id in ("fr-a", "fr-b", "en-a", "en-b"):
        row = manifest.loc[job_id]
        info = probe_video(videos / f"{job_id}.mp4")
        assert row["status"] == "ok" and info.has_audio and (info.width, info.height) == (360, 288)
        assert abs(row["output_duration_s"] - row["audio_duration_s"]) <= 1 / 25
        assert abs(info.duration_s - row["audio_duration_s"]) <= 1 / 25
        assert row["video_duration_s"] == pytest.approx(3.0)
        assert row["msi_status"] == "ok" and row["msi_lip"] > 0 and row["msi_jaw"] > 0
        assert row["seconds"] > 0 and row["node_id"]
    assert manifest.loc["en-b", "pingpong"] and not manifest.loc["fr-a", "pingpong"]  # 3.5 s from 3 s
    assert manifest.loc["no-audio", "status"] == "failed"
    assert "missing.wav: no such file" in manifest.loc["no-audio", "reason"]
    assert manifest.loc["no-face", "status"] == "failed"
    assert "scenery.mp4: a face was found in 0 of 50 frames" in manifest.loc["no-face", "reason"]
    first = _outputs(videos)

    again = run(cfg)
    assert (again["ok"], again["failed"], again["dubbed"], again["resumed"]) == (4, 2, 0, 4)
    assert _outputs(videos) == first  # nothing was written again
    rerun = pd.read_parquet(Path(output_uri) / "manifest.parquet").set_index("job_id")
    assert rerun.loc[["fr-a", "fr-b", "en-a", "en-b"], "resumed"].all()
    np.testing.assert_allclose(rerun.loc["fr-b", "msi_lip"], manifest.loc["fr-b", "msi_lip"])


def _dub_actor_pids() -> list[int]:
    """PIDs of this session's dubbing actors: descendants of this process (the local Ray runs under it)
    whose process title Ray set to the actor class. (The state API would need the dashboard, which
    the shared local Ray runs without.)"""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended meanwhile
        parents[int(stat.parent.name)] = int(fields[1])
    ours, frontier = set(), {os.getpid()}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - ours
        ours |= frontier
    pids = []
    for pid in sorted(ours):
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "DubWorker" in title:
            pids.append(pid)
    return pids


def _kill_catalog(tmp_path, grid_clips, speech, model_uri, jobs) -> Path:
    catalog = tmp_path / "catalog.csv"
    lines = ["job_id,model_uri,video_uri,audio_uri"]
    for i, job_id in enumerate(jobs):
        lines.append(f"{job_id},{model_uri},{grid_clips[30 + i]},{speech[('fr_b', 'en_b')[i % 2]]}")
    catalog.write_text("\n".join(lines) + "\n")
    return catalog


def _run_and_kill_an_actor_mid_dub(cfg, videos: Path) -> tuple[dict, int, set[str]]:
    """Run the job in a thread; once an output is finished and the next one is being written, SIGKILL
    the dubbing actor. Returns (summary, killed pid, outputs finished before the kill)."""
    result: dict = {}
    job = threading.Thread(target=lambda: result.update(run(cfg)), daemon=True)
    job.start()
    killed, finished_before = None, set()
    deadline = time.monotonic() + 120
    while killed is None and time.monotonic() < deadline and job.is_alive():
        # Mid-dub: the actor is writing a (hidden, temporary) output file and has finished at least one.
        busy = list(videos.glob(".stableface-*.partial")) if videos.exists() else []
        if busy and len(_outputs(videos)) >= 1:
            pids = _dub_actor_pids()
            if pids:
                killed, finished_before = pids[0], set(_outputs(videos))
                os.kill(killed, signal.SIGKILL)
        time.sleep(0.05)
    job.join(timeout=300)
    assert killed is not None, "the job finished before an actor could be killed mid-dub"
    assert not job.is_alive() and result, "the job did not finish after its actor was killed"
    return result, killed, finished_before


def test_killing_a_dubbing_actor_mid_job_still_dubs_every_row_exactly_once(
    ray_local, grid_clips, speech, tiny_speaker_model, tmp_path
):
    jobs = [f"job-{i}" for i in range(4)]
    catalog = _kill_catalog(tmp_path, grid_clips, speech, tiny_speaker_model, jobs)
    output_uri = tmp_path / "job"
    videos = output_uri / "videos"
    options = [f"catalog={catalog}", f"output_uri={output_uri}", "concurrency=1", "cache_sources=false"]
    result, killed, finished_before = _run_and_kill_an_actor_mid_dub(compose("dub", options), videos)

    assert (result["ok"], result["failed"]) == (4, 0)
    manifest = pd.read_parquet(output_uri / "manifest.parquet")
    assert sorted(manifest["job_id"]) == jobs and (manifest["status"] == "ok").all()  # one ok row each
    assert sorted(_outputs(videos)) == [f"{job_id}.mp4" for job_id in jobs]  # each output exactly once
    for job_id in jobs:
        info = probe_video(videos / f"{job_id}.mp4")
        assert info.has_audio and info.n_frames > 60
    # The row in flight at the kill, and every later one, were dubbed by the restarted actor.
    redone = manifest[~manifest["job_id"].map(lambda job_id: f"{job_id}.mp4" in finished_before)]
    assert len(redone) >= 1 and killed not in set(redone["worker_pid"])


def test_a_row_whose_actor_dies_on_every_attempt_fails_and_the_job_goes_on(
    ray_local, grid_clips, speech, tiny_speaker_model, tmp_path
):
    jobs = [f"job-{i}" for i in range(4)]
    catalog = _kill_catalog(tmp_path, grid_clips, speech, tiny_speaker_model, jobs)
    output_uri = tmp_path / "job"
    videos = output_uri / "videos"
    options = [f"catalog={catalog}", f"output_uri={output_uri}", "concurrency=1", "max_task_retries=0"]
    result, _, finished_before = _run_and_kill_an_actor_mid_dub(compose("dub", options), videos)

    manifest = pd.read_parquet(output_uri / "manifest.parquet").set_index("job_id")
    failed = manifest[manifest["status"] == "failed"]
    assert sorted(manifest.index) == jobs and result["failed"] == len(failed) >= 1
    assert result["ok"] == 4 - len(failed) >= len(finished_before)
    for job_id, row in failed.iterrows():
        assert "the dubbing actor died on 1 attempt(s) at this row" in row["reason"]
        assert not (videos / f"{job_id}.mp4").exists()  # nothing half-written is visible
    for job_id in manifest.index.difference(failed.index):
        assert probe_video(videos / f"{job_id}.mp4").has_audio
