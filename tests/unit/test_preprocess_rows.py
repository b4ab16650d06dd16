"""Preprocess catalogs with unusable ids: failed rows with their reason, never an aborted run."""

from __future__ import annotations

import pytest

from stableface.config import compose
from stableface.data.catalog import list_video_catalog
from stableface.data.layout import DatasetLayout
from stableface.errors import InputError
from stableface.io.storage import Storage
from stableface.ray_jobs.preprocess import run


def _catalog(path, rows):
    path.write_text("video_uri,speaker\n" + "".join(f"{video},{speaker}\n" for video, speaker in rows))
    return path


def test_a_bad_speaker_id_is_recorded_not_raised(grid_clips, tmp_path):
    catalog = _catalog(tmp_path / "c.csv", [(grid_clips[0], "s1"), (grid_clips[1], "../../etc")])
    with pytest.raises(InputError, match="invalid speaker id"):  # the strict default (audit tables)
        list_video_catalog(str(catalog), Storage())
    good, bad = list_video_catalog(str(catalog), Storage(), record_bad_ids=True)
    assert not good.get("reason") and good["video_id"] == grid_clips[0].stem
    assert bad["reason"].startswith(f"{grid_clips[1]}: ../../etc: invalid speaker id")


def test_preprocess_turns_bad_ids_into_failed_rows_and_goes_on(grid_clips, tmp_path):
    # Only bad rows: nothing reaches Ray, and main aborted here with a traceback.
    catalog = _catalog(tmp_path / "c.csv", [(grid_clips[0], "../../etc"), (grid_clips[1], "a/b")])
    dataset = str(tmp_path / "ds")
    summary = run(compose("preprocess", [f"catalog={catalog}", f"dataset_uri={dataset}"]))
    assert (summary["videos_ok"], summary["videos_failed"]) == (0, 2)
    rows = Storage().read_json(DatasetLayout(dataset).manifest_json)["videos"]
    assert [row["status"] for row in rows] == ["failed", "failed"]
    assert "../../etc: invalid speaker id" in rows[0]["reason"] and str(grid_clips[0]) in rows[0]["reason"]
    assert "a/b: invalid speaker id" in rows[1]["reason"]
