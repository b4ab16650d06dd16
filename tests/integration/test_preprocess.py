"""The preprocessing job on Ray Data: real clips, every kind of broken input, S3, re-runs, resume."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from stableface.config import compose
from stableface.data.layout import CROPS, FACE, TRACK, VIDEO_META, DatasetLayout
from stableface.data.records import VideoFace, VideoTrack
from stableface.face.face_model import FaceModel
from stableface.io.storage import Storage
from stableface.io.video import probe_video, read_frames
from stableface.ray_jobs.preprocess import run

pytestmark = pytest.mark.integration
CROP = 128  # smaller crops keep the test quick; the job's default is 256


def _catalog(path: Path, rows: list[tuple[str, str]]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["video_uri", "speaker"])
        writer.writerows(rows)
    return path


def _config(catalog: Path | str, dataset_uri: str, *extra: str):
    return compose(
        "preprocess",
        [
            f"catalog={catalog}",
            f"dataset_uri={dataset_uri}",
            f"face.crop_size={CROP}",
            "face.min_fit_frames=100",
            *extra,
        ],
    )


@pytest.fixture(scope="module")
def mixed_catalog(tmp_path_factory, grid_clips, shared_data, bad_videos) -> Path:
    good = [(str(clip), "s1") for clip in grid_clips[:3]]
    good += [(str(shared_data / "voxceleb2" / "zip_Input_00002.mp4"), "vox00002")]
    bad = [(str(path), f"bad_{name}") for name, path in bad_videos.items()]
    bad += [(str(grid_clips[3]), "../../etc")]  # an unusable speaker id: one failed row, not an abort
    return _catalog(tmp_path_factory.mktemp("catalog") / "catalog.csv", good + bad)


@pytest.fixture(scope="module")
def mixed_dataset(ray_local, mixed_catalog, tmp_path_factory) -> tuple[str, dict]:
    dataset = str(tmp_path_factory.mktemp("dataset") / "ds")
    summary = run(_config(mixed_catalog, dataset))
    return dataset, summary


def test_good_videos_processed_and_each_bad_input_is_a_failed_row_with_its_reason(mixed_dataset):
    dataset, summary = mixed_dataset
    manifest = Storage().read_json(DatasetLayout(dataset).manifest_json)
    rows = {row["speaker"]: row for row in manifest["videos"] if row["speaker"] != "s1"}
    assert summary["videos_ok"] == 4 and summary["videos_failed"] == 7
    assert [r["status"] for r in manifest["videos"] if r["speaker"] == "s1"] == ["ok"] * 3
    assert rows["vox00002"]["status"] == "ok"
    expected_reasons = {
        "bad_text": "not a readable media file",
        "bad_empty": "empty file (0 bytes)",
        "bad_no_audio": "no audio stream",
        "bad_truncated": "truncated.mp4",
        "bad_no_face": "a face was found in 0 of",
        "bad_missing": "no such file",
        "../../etc": "invalid speaker id",
    }
    for speaker, reason in expected_reasons.items():
        assert rows[speaker]["status"] == "failed", speaker
        assert reason in rows[speaker]["reason"], (speaker, rows[speaker]["reason"])
    with open(DatasetLayout(dataset).manifest_csv) as handle:
        csv_rows = list(csv.DictReader(handle))
    assert len(csv_rows) == 11 and {r["status"] for r in csv_rows} == {"ok", "failed"}


def test_dataset_files_are_complete_and_consistent(mixed_dataset, grid_clips):
    dataset, _ = mixed_dataset
    storage, layout = Storage(), DatasetLayout(dataset)
    model = FaceModel.load(layout.face_model)
    assert model.is_fitted and model.expression_dim == 53
    video_id = grid_clips[0].stem
    track = VideoTrack.load(storage, layout.video_file("s1", video_id, TRACK))
    face = VideoFace.load(storage, layout.video_file("s1", video_id, FACE))
    crops = read_frames(layout.video_file("s1", video_id, CROPS))
    n_frames = 75
    assert crops.shape == (n_frames, CROP, CROP, 3)
    assert track.mesh.shape == (n_frames, 478, 3) and track.audio.shape == (n_frames, 16, 80)
    assert track.present.all() and track.ibug68.shape == (n_frames, 68, 2)
    assert face.expression.shape == (n_frames, 53) and face.masks().shape == (n_frames, CROP, CROP)
    # The mesh lands on the face in the crop: lips (mesh vertex 13) are darker/redder than the crop's mean.
    assert 0.2 * CROP < track.mesh[:, 13, 1].mean() < 0.9 * CROP
    meta = storage.read_json(layout.video_file("s1", video_id, VIDEO_META))
    assert meta["status"] == "ok" and meta["n_frames"] == n_frames
    speaker = storage.read_json(layout.speaker_manifest("s1"))
    assert speaker["status"] == "ok" and speaker["n_ok"] == 3 and speaker["n_frames"] == 3 * n_frames
    # The mouth mask sits where the mouth is: it contains the projected inner-lip midpoint.
    masks = face.masks()
    x, y = np.round(track.mesh[:, 13, :2]).astype(int).T
    assert masks[np.arange(n_frames), y, x].mean() > 0.95


def test_rerun_skips_finished_speakers(mixed_dataset, mixed_catalog):
    dataset, _ = mixed_dataset
    layout = DatasetLayout(dataset)
    meta = Path(layout.video_file("s1", "bbas2p", VIDEO_META))
    before = meta.stat().st_mtime_ns
    summary = run(_config(mixed_catalog, dataset))
    assert summary["speakers_skipped"] == 2  # s1 and vox00002; the failed speakers are retried
    assert meta.stat().st_mtime_ns == before
    assert summary["videos_ok"] == 4 and summary["videos_failed"] == 7


def test_dataset_on_s3_is_written_and_readable_back(
    ray_local, grid_clips, s3_bucket, s3_storage_config, tmp_path
):
    catalog = _catalog(tmp_path / "c.csv", [(str(c), "s1") for c in grid_clips[3:5]])
    dataset = f"{s3_bucket}/datasets/grid"
    summary = run(_config(catalog, dataset, f"storage.endpoint_url={s3_storage_config.endpoint_url}",
                          "face.min_fit_frames=100"))  # fmt: skip
    assert summary["videos_ok"] == 2
    storage, layout = Storage(s3_storage_config), DatasetLayout(dataset)
    track = VideoTrack.load(storage, layout.video_file("s1", grid_clips[3].stem, TRACK))
    assert track.mesh.shape == (75, 478, 3)
    with storage.local_copy(layout.video_file("s1", grid_clips[3].stem, CROPS)) as local:
        assert probe_video(local).width == CROP
    assert FaceModel.load(layout.face_model, storage).is_fitted
    assert storage.read_json(layout.manifest_json)["counts"]["ok"] == 2


def test_killed_run_resumes_where_it_stopped(grid_clips, tmp_path):
    """Kill the whole job (driver and its embedded Ray) after the first video; the re-run reuses it."""
    catalog = _catalog(tmp_path / "c.csv", [(str(c), "s1") for c in grid_clips[5:11]])
    dataset = tmp_path / "ds"
    command = [sys.executable, "-m", "stableface.cli", "preprocess", f"catalog={catalog}", f"dataset_uri={dataset}",
               f"face.crop_size={CROP}", "ray.num_cpus=1", "face.min_fit_frames=100"]  # fmt: skip
    process = subprocess.Popen(
        command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 240
        while not list(dataset.glob("speakers/s1/videos/*/meta.json")):
            assert process.poll() is None, "the job ended before it could be killed"
            assert time.monotonic() < deadline, "no video finished within 240 s"
            time.sleep(0.2)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    finished_before = {p.parent.name for p in dataset.glob("speakers/s1/videos/*/meta.json")}
    assert finished_before and not (dataset / "speakers" / "s1" / "speaker.json").exists()
    summary = run(_config(catalog, str(dataset), "ray.num_cpus=1"))
    assert summary["videos_ok"] == 6
    rows = Storage().read_json(str(dataset / "manifest.json"))["videos"]
    resumed = {r["video_id"] for r in rows if r.get("resumed")}
    assert finished_before <= resumed and len(resumed) < 6
