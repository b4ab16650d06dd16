"""One row contract: every status a job writes into a manifest is a RowStatus, and plain() is JSON-safe.

The rows come from the functions the preprocess, dub and audit jobs call per item (no Ray), on real
videos, good and broken; the manifests are the job's own writers, read back from disk.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from stableface.config import compose
from stableface.data.extract import extract_video_row
from stableface.data.layout import DatasetLayout
from stableface.data.manifest import write_dataset_manifest
from stableface.data.results import write_results
from stableface.face.landmarks import make_backend
from stableface.inference import DubConfig
from stableface.inference.batch import (
    ModelCache,
    OutputScore,
    SourceCache,
    dub_entry,
    read_dub_catalog,
    record_uri,
)
from stableface.io.audio import read_audio, write_audio
from stableface.io.storage import Storage
from stableface.io.video import VideoWriter, iter_frames
from stableface.metrics.config import MetricsConfig
from stableface.metrics.video import score_video
from stableface.status import RowStatus
from stableface.utils.serialise import plain

STATUS_VALUES = {"ok", "no_score", "failed"}  # what manifests have always held, spelled out


@pytest.fixture(scope="module")
def backend():
    mesh = make_backend("mediapipe")
    yield mesh
    mesh.close()


def _table_statuses(output_uri: str, name: str) -> tuple[list[str], list[str]]:
    csv = pd.read_csv(f"{output_uri}/{name}.csv")["status"].tolist()
    parquet = pd.read_parquet(f"{output_uri}/{name}.parquet")["status"].tolist()
    return csv, parquet


def test_the_enum_keeps_the_manifest_values_and_compares_equal_to_them():
    assert {status.value for status in RowStatus} == STATUS_VALUES
    assert RowStatus("no_score") is RowStatus.NO_SCORE and RowStatus.OK == "ok"
    assert json.dumps({"status": RowStatus.FAILED}) == '{"status": "failed"}'


def test_audit_rows_are_row_statuses_and_their_tables_hold_the_values(
    grid_clips, bad_videos, backend, tmp_path
):
    short = tmp_path / "short.mp4"
    frames = list(iter_frames(grid_clips[0], max_frames=MetricsConfig().min_frames - 2))  # too short to score
    with VideoWriter(short, fps=25, width=frames[0].shape[1], height=frames[0].shape[0]) as writer:
        for frame in frames:
            writer.write(frame)
    videos = [grid_clips[0], short, bad_videos["text"], bad_videos["no_face"]]
    config = MetricsConfig(slice_image=False)
    scores = [score_video(video, config, backend=backend) for video in videos]
    assert [score.status for score in scores] == [
        RowStatus.OK, RowStatus.NO_SCORE, RowStatus.FAILED, RowStatus.NO_SCORE
    ]  # fmt: skip
    assert all(type(score.status) is RowStatus for score in scores)
    output_uri = str(tmp_path / "audit")
    write_results(Storage(), output_uri, "audit", [plain(score.to_row()) for score in scores], ("status",))
    csv, parquet = _table_statuses(output_uri, "audit")
    assert csv == parquet == ["ok", "no_score", "failed", "no_score"]


@pytest.fixture(scope="module")
def speech(shared_data, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("contract_speech") / "fr.wav"
    write_audio(path, read_audio(shared_data / "speech" / "macron_12s.wav")[: 2 * 16_000], 16_000)
    return str(path)


def test_dub_rows_records_and_manifest_hold_row_statuses(
    untrained_speaker_model, grid_clips, bad_videos, speech, tmp_path
):
    storage = Storage()
    shutil.copytree(untrained_speaker_model, tmp_path / "models" / "s1")
    catalog = tmp_path / "catalog.csv"
    catalog.write_text(
        "job_id,speaker,video_uri,audio_uri\n"
        f"good,s1,{grid_clips[5]},{speech}\n"
        f"notes,s1,{bad_videos['text']},{speech}\n"
        f"nobody,s9,{grid_clips[5]},{speech}\n"
    )
    output_uri = str(tmp_path / "dub")
    entries = read_dub_catalog(str(catalog), str(tmp_path / "models"), output_uri, storage)
    models, sources = ModelCache(storage), SourceCache(storage, None)
    rows = [
        dub_entry(entry, DubConfig(), output_uri, storage, models, sources,
                  scorer=lambda path, name, face: OutputScore(0.5, 0.7, RowStatus.OK))
        for entry in entries
    ]  # fmt: skip
    assert [row["status"] for row in rows] == [RowStatus.OK, RowStatus.FAILED, RowStatus.FAILED], rows
    assert all(type(row["status"]) is RowStatus for row in rows)
    # What the dub job does with a row: through its Ray Data envelope (JSON), then into the manifest.
    enveloped = [json.loads(json.dumps(plain(row))) for row in rows]
    write_results(storage, output_uri, "manifest", enveloped, ("job_id", "status"))
    csv, parquet = _table_statuses(output_uri, "manifest")
    assert csv == parquet == ["ok", "failed", "failed"]
    assert storage.read_json(record_uri(output_uri, "good"))["status"] == "ok"


def test_preprocess_rows_and_the_dataset_manifest_hold_row_statuses(
    grid_clips, bad_videos, backend, tmp_path
):
    dataset = str(tmp_path / "dataset")
    cfg = compose("preprocess", [f"catalog={tmp_path}", f"dataset_uri={dataset}", "max_frames_per_video=20"])
    storage, layout = Storage(), DatasetLayout(dataset)
    entries = [
        {"speaker": "s1", "video_id": "good", "video_uri": str(grid_clips[0])},
        {"speaker": "s1", "video_id": "notes", "video_uri": str(bad_videos["text"])},
    ]
    rows = [extract_video_row(entry, cfg, storage, layout, backend) for entry in entries]
    assert [row["status"] for row in rows] == [RowStatus.OK, RowStatus.FAILED], rows
    assert storage.read_json(layout.video_file("s1", "good", "meta.json"))["status"] == "ok"
    # A speaker that was never processed: its summary is a failed row too, not a third vocabulary.
    manifest = write_dataset_manifest(storage, layout, ["s1"], cfg)
    on_disk = storage.read_json(layout.manifest_json)
    assert manifest["speakers"]["s1"]["status"] == RowStatus.FAILED
    assert on_disk["speakers"]["s1"] == {"status": "failed", "reason": "speaker was not processed"}


def test_plain_makes_result_values_json_safe_and_round_trips():
    value = {
        "status": RowStatus.NO_SCORE,
        "msi": np.float32(0.25),
        "frames": np.int64(75),
        "flag": np.bool_(True),
        "missing": float("nan"),
        "per_landmark": np.array([[1.5, np.nan], [2.0, 3.0]]),
        "box": (np.int32(1), 2, np.float64(np.nan)),
        "nested": {"values": [np.float16(0.5), {"deep": np.array([np.int8(-1)])}]},
        "text": "kept",
        "nothing": None,
    }
    expected = {
        "status": "no_score",
        "msi": 0.25,
        "frames": 75,
        "flag": True,
        "missing": None,
        "per_landmark": [[1.5, None], [2.0, 3.0]],
        "box": [1, 2, None],
        "nested": {"values": [0.5, {"deep": [-1]}]},
        "text": "kept",
        "nothing": None,
    }
    result = plain(value)
    assert result == expected
    assert type(result["status"]) is str and type(result["frames"]) is int and type(result["flag"]) is bool
    assert json.loads(json.dumps(result, allow_nan=False)) == expected  # no NaN, no numpy left
    assert plain(result) == result  # already plain: unchanged
    assert type(plain(np.float64(1.0))) is float


def test_plain_leaves_what_json_cannot_write_for_json_to_refuse():
    with pytest.raises(TypeError, match="not JSON serializable"):
        json.dumps(plain({"when": object()}))
