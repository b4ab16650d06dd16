"""The audit job on local Ray: good and bad videos, local and S3 storage, a two-catalog comparison."""

from __future__ import annotations

import io
import re
import shutil

import numpy as np
import pandas as pd
import pytest

from stableface.config import compose
from stableface.io.storage import Storage, StorageConfig
from stableface.io.video import VideoWriter, read_frames
from stableface.ray_jobs.audit import run

pytestmark = pytest.mark.integration


def write_video(path, frames):
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = frames[0].shape[:2]
    with VideoWriter(path, fps=25, width=width, height=height) as writer:
        for frame in frames:
            writer.write(frame)
    return path


@pytest.fixture(scope="module")
def catalogs(grid_clips, tmp_path_factory):
    """sources/: two GRID clips, a garbage file and a faceless video; dubs/: the same ids, one shaken."""
    root = tmp_path_factory.mktemp("audit")
    sources = root / "sources" / "s1"
    sources.mkdir(parents=True)
    shutil.copy(grid_clips[0], sources / "clip_a.mpg")
    shutil.copy(grid_clips[1], sources / "clip_b.mpg")
    (sources / "broken.mp4").write_bytes(b"\x00not a video" * 64)
    ys, xs = np.mgrid[0:96, 0:128]
    write_video(
        sources / "scenery.mp4",
        [np.dstack([(xs + t) % 256, ys, xs * 0 + 60]).astype(np.uint8) for t in range(15)],
    )
    rng = np.random.default_rng(0)
    frames = read_frames(grid_clips[0])
    shaken = [np.roll(f, tuple(rng.integers(-2, 3, size=2)), axis=(0, 1)) for f in frames]
    write_video(root / "dubs" / "s1" / "clip_a.mp4", shaken)
    write_video(root / "dubs" / "s1" / "clip_b.mp4", list(read_frames(grid_clips[1])))
    return root


def audit_config(catalog, output_uri, *extra):
    return compose("audit", [f"catalog={catalog}", f"output_uri={output_uri}", "concurrency=2", *extra])


def test_audit_config_composes_with_overrides():
    cfg = compose("audit", ["catalog=/videos", "metrics.flag_lip_below=0.2", "compare_with=/dubs"])
    assert (cfg.catalog, cfg.metrics.flag_lip_below, cfg.compare_with) == ("/videos", 0.2, "/dubs")
    assert cfg.metrics.backend == "mediapipe" and cfg.output_uri == "outputs/audit"


def test_local_audit_scores_good_videos_and_explains_bad_ones(ray_local, catalogs, tmp_path):
    out = tmp_path / "out"
    summary = run(
        audit_config(catalogs / "sources", out, f"compare_with={catalogs / 'dubs'}", "compare_label=dubs")
    )
    assert (summary["videos"], summary["ok"], summary["no_score"], summary["failed"]) == (4, 2, 1, 1)
    assert summary["compare_videos"] == 2

    table = pd.read_parquet(out / "audit.parquet").set_index("video_id")
    assert set(table.index) == {"clip_a", "clip_b", "broken", "scenery"}
    assert (
        table.loc["broken", "status"] == "failed"
        and "not a readable media file" in table.loc["broken", "reason"]
    )
    assert table.loc["scenery", "status"] == "no_score"
    assert "a face was found in 0 of 15 frames" in table.loc["scenery", "reason"]
    for clip in ("clip_a", "clip_b"):
        row = table.loc[clip]
        assert row["status"] == "ok" and row["n_frames"] == 75 and row["n_missing_face"] == 0
        assert 0.3 < row["msi_lip"] < 1.05 and 0.4 < row["msi_jaw"] < 1.8
        assert len(row["msi_per_landmark"]) == 68 and row["node_id"]
        assert (out / "slices" / "catalog" / "s1" / f"{clip}.png").stat().st_size > 1000
    csv = pd.read_csv(out / "audit.csv").set_index("video_id")
    assert csv.loc["clip_a", "msi_lip"] == pytest.approx(table.loc["clip_a", "msi_lip"])

    dubs = pd.read_parquet(out / "compare.parquet").set_index("video_id")
    assert dubs.loc["clip_a", "msi_lip"] < 0.1 * table.loc["clip_a", "msi_lip"]  # the shaken copy

    report = (out / "report.html").read_text()
    assert (
        "broken" in report
        and "not a readable media file" in report
        and "a face was found in 0 of 15" in report
    )
    assert "Comparison: catalog vs dubs" in report and "Flagged videos (0)" in report
    assert len(re.findall(r"data:image/png;base64,", report)) >= 8  # 2 histograms, slices, comparison plots


@pytest.fixture(scope="module")
def departing_dubs(grid_clips, tmp_path_factory):
    """dubs/: a shaken copy (too jittery), a still picture (too still) and a plain re-encode of three
    GRID clips; sources/: the clips themselves, the reference of real speech."""
    root = tmp_path_factory.mktemp("departures")
    names = ("shaken", "still", "plain")
    for name, clip in zip(names, grid_clips[:3], strict=True):
        (root / "sources" / "s1").mkdir(parents=True, exist_ok=True)
        shutil.copy(clip, root / "sources" / "s1" / f"{name}.mpg")
    frames = read_frames(grid_clips[0])
    rng = np.random.default_rng(1)
    write_video(
        root / "dubs" / "s1" / "shaken.mp4",
        [np.roll(f, tuple(rng.integers(-2, 3, size=2)), axis=(0, 1)) for f in frames],
    )
    still = read_frames(grid_clips[1])
    write_video(root / "dubs" / "s1" / "still.mp4", [still[0]] * len(still))
    write_video(root / "dubs" / "s1" / "plain.mp4", list(read_frames(grid_clips[2])))
    return root


def test_comparison_flags_dubs_departing_from_their_sources_either_way(ray_local, departing_dubs, tmp_path):
    out = tmp_path / "out"
    summary = run(
        audit_config(
            departing_dubs / "dubs", out, f"compare_with={departing_dubs / 'sources'}",
            "label=dubs", "compare_label=sources", "metrics.departure_factor=2.5",
        )
    )  # fmt: skip
    assert (summary["ok"], summary["too_still"], summary["too_jittery"]) == (3, 1, 1)
    dubs = pd.read_parquet(out / "audit.parquet").set_index("video_id")
    sources = pd.read_parquet(out / "compare.parquet").set_index("video_id")
    for name in ("shaken", "still", "plain"):
        for part in ("lip", "jaw"):
            expected = dubs.loc[name, f"msi_{part}"] / sources.loc[name, f"msi_{part}"]
            assert dubs.loc[name, f"msi_{part}_ratio"] == pytest.approx(expected, rel=1e-3)
    assert dubs.loc["shaken", "departure_lip"] == "too_jittery" and dubs.loc["shaken", "msi_lip_ratio"] < 0.4
    assert dubs.loc["still", "departure_lip"] == "too_still" and dubs.loc["still", "msi_lip_ratio"] > 2.5
    assert (dubs.loc["plain", "departure_lip"], dubs.loc["plain", "departure_jaw"]) == ("within", "within")
    assert "departure_lip" not in sources.columns
    # The still picture never drops below the jitter thresholds: only the comparison finds it.
    assert summary["flagged"] == 1
    report = (out / "report.html").read_text()
    assert "Departures from sources (2)" in report
    assert "1 too still (lip or jaw MSI &gt; 2.5&times; the paired video's), 1 too jittery" in report
    assert "lips too still" in report and "lips too jittery" in report


def test_a_departure_factor_of_one_or_less_is_refused(tmp_path):
    from stableface.errors import InputError

    with pytest.raises(InputError, match=r"metrics\.departure_factor: must be > 1"):
        run(audit_config(tmp_path, tmp_path / "out", "metrics.departure_factor=0.5"))


def test_s3_audit_reads_and_writes_through_the_bucket(ray_local, catalogs, s3_bucket, s3_storage_config):
    storage = Storage(s3_storage_config)
    for name in ("clip_a.mpg", "broken.mp4"):
        storage.upload_file(catalogs / "sources" / "s1" / name, f"{s3_bucket}/videos/s1/{name}")
    overrides = [
        f"storage.endpoint_url={s3_storage_config.endpoint_url}",
        "storage.region=us-east-1",
        "save_slices=false",
        "metrics.extras=[sync]",  # SyncNet weights are absent: each row says so instead of a score
        "metrics.weights_dir=/nonexistent/weights",
    ]
    summary = run(audit_config(f"{s3_bucket}/videos", f"{s3_bucket}/audit", *overrides))
    assert (summary["ok"], summary["failed"]) == (1, 1)
    reader = Storage(StorageConfig(endpoint_url=s3_storage_config.endpoint_url, region="us-east-1"))
    table = pd.read_parquet(io.BytesIO(reader.read_bytes(f"{s3_bucket}/audit/audit.parquet"))).set_index(
        "video_id"
    )
    # Reasons name the object URI, not the temporary download that was scored.
    assert table.loc["broken", "reason"].startswith(f"{s3_bucket}/videos/s1/broken.mp4: ")
    assert table.loc["clip_a", "video_uri"] == f"{s3_bucket}/videos/s1/clip_a.mpg"
    assert table.loc["clip_a", "status"] == "ok"
    assert table.loc["clip_a", "sync_status"] == (
        "unavailable: weights not found at /nonexistent/weights/syncnet_v2.model"
    )
    report = reader.read_text(f"{s3_bucket}/audit/report.html")
    assert "broken" in report and "not a readable media file" in report
    assert "Failed and unscored videos (1)" in report
    assert reader.exists(f"{s3_bucket}/audit/audit.csv") and reader.exists(f"{s3_bucket}/audit/summary.json")


@pytest.mark.heavy
def test_full_data_audit(ray_local, shared_data, tmp_path):
    """Every clip in the shared data (GRID s1, other GRID speakers, VoxCeleb2)."""
    out = tmp_path / "full"
    summary = run(audit_config(shared_data, out, "concurrency=2", "title=Full shared-data audit"))
    table = pd.read_parquet(out / "audit.parquet")
    assert len(table) == summary["videos"] >= 90 + 11 + 13
    grid = table[table["speaker"] == "s1"]
    assert (grid["status"] == "ok").all()
    assert 0.3 <= grid["msi_lip"].median() <= 0.8 and 0.5 <= grid["msi_jaw"].median() <= 1.5
    assert (out / "report.html").stat().st_size > 10_000


def _remux_with_delay(source, path, delay_frames: int, fps: float = 25.0):
    """``source``'s frames and audio re-encoded to mp4, the sound moved ``delay_frames`` later
    (negative: earlier), as a drifting catalog video would have it."""
    from stableface.io.audio import read_audio

    samples = read_audio(source)  # (S,) 16 kHz
    shift = round(abs(delay_frames) / fps * 16_000)
    if delay_frames >= 0:
        moved = np.concatenate([np.zeros(shift, np.float32), samples])[: len(samples)]
    else:
        moved = np.concatenate([samples[shift:], np.zeros(shift, np.float32)])
    frames = read_frames(source)
    path.parent.mkdir(parents=True, exist_ok=True)
    with VideoWriter(path, fps=fps, width=frames.shape[2], height=frames.shape[1], audio=moved) as writer:
        for frame in frames:
            writer.write(frame)
    return path


def test_audit_flags_audio_drift_with_its_sign(ray_local, shared_data, tmp_path):
    """A real GRID clip the lip-sync expert never trained on, re-encoded in sync and with its audio
    8 frames late and 8 frames early: only the shifted copies are flagged, each with its sign."""
    from stableface.metrics.lipsync import default_weights
    from stableface.models.lipsync import load_lipsync

    _, extra = load_lipsync(str(default_weights()))
    clip = next(c for c in extra["held_out"]["held_out_clips"] if c.startswith("s1/")).split("/")[1]
    source = shared_data / "grid" / "s1" / f"{clip}.mpg"
    catalog = tmp_path / "catalog" / "s1"
    _remux_with_delay(source, catalog / "in_sync.mp4", 0)
    _remux_with_delay(source, catalog / "late.mp4", 8)
    _remux_with_delay(source, catalog / "early.mp4", -8)
    out = tmp_path / "out"
    summary = run(audit_config(catalog.parent, out))
    table = pd.read_parquet(out / "audit.parquet").set_index("video_id")
    assert (table["lipsync_status"] == "ok").all()
    assert abs(table.loc["in_sync", "lipsync_offset_frames"]) <= 1 and table.loc["in_sync", "flags"] == ""
    assert abs(table.loc["late", "lipsync_offset_frames"] - 8) <= 1
    assert abs(table.loc["early", "lipsync_offset_frames"] + 8) <= 1
    late, early = table.loc["late", "flags"], table.loc["early", "flags"]
    assert re.fullmatch(r"audio out of sync by \+[789] frames \(\+\d+ ms, sound late\)", late)
    assert re.fullmatch(r"audio out of sync by -[789] frames \(-\d+ ms, sound early\)", early)
    assert summary["out_of_sync"] == 2 and summary["flagged"] == 2
    report = (out / "report.html").read_text()
    assert "Flagged videos (2)" in report and late in report and early in report
    assert "sync confidence" in report and "audio offset" in report


def test_an_audit_scores_each_of_two_people_in_its_own_row(ray_local, two_faces, grid_clips, tmp_path):
    videos = tmp_path / "videos" / "lecture"
    videos.mkdir(parents=True)
    shutil.copy(two_faces["path"], videos / "two_faces.mp4")
    shutil.copy(grid_clips[0], videos / "alone.mpg")
    out = tmp_path / "out"
    summary = run(audit_config(tmp_path / "videos", out))
    assert (summary["videos"], summary["faces"], summary["ok"]) == (2, 3, 3)
    table = pd.read_parquet(out / "audit.parquet")
    pair = table[table["video_id"] == "two_faces"].set_index("face")
    assert list(pair.index) == ["1", "2"] and (pair["n_faces"] == 2).all()
    grid_x0 = two_faces["grid_x0"]
    assert pair.loc["1", "face_box"][2] < grid_x0 < pair.loc["2", "face_box"][0]
    assert pair.loc["1", "msi_lip"] != pytest.approx(pair.loc["2", "msi_lip"], rel=0.1)
    (alone,) = table[table["video_id"] == "alone"].to_dict(orient="records")
    assert (alone["face"], alone["n_faces"]) == ("1", 1)
    for name in ("two_faces-face1", "two_faces-face2", "alone"):
        assert (out / "slices" / "catalog" / "lecture" / f"{name}.png").stat().st_size > 1000
    report = (out / "report.html").read_text()
    assert "two_faces (face 1)" in report and "two_faces (face 2)" in report
