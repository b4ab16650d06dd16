"""The dub review page: links relative to the page, failed rows first, departures shown each way."""

from __future__ import annotations

import numpy as np

from stableface.metrics.msi import CropBox
from stableface.report.review import _stack, mouth_box, relative_link, render_review, slice_px_per_frame


def test_links_are_relative_within_one_store_and_absolute_across_stores():
    page = "/data/runs/course/review.html"
    assert relative_link("/data/runs/course/videos/a.mp4", page) == "videos/a.mp4"
    assert relative_link("/data/sources/s1/a.mpg", page) == "../../sources/s1/a.mpg"
    s3_page = "s3://bucket/runs/course/review.html"
    assert relative_link("s3://bucket/runs/course/videos/a.mp4", s3_page) == "videos/a.mp4"
    assert relative_link("s3://bucket/raw/a.mp4", s3_page) == "../../raw/a.mp4"
    assert relative_link("s3://other/raw/a.mp4", s3_page) == "s3://other/raw/a.mp4"
    assert relative_link("/local/a.mp4", s3_page) == "/local/a.mp4"


def test_stack_pads_the_shorter_picture_white_and_keeps_both():
    top = np.zeros((4, 6, 3), np.uint8)
    bottom = np.full((4, 3, 3), 7, np.uint8)
    stacked = _stack(top, bottom)
    assert stacked.shape == (4 + 4 + 4, 6, 3)
    assert (stacked[:4] == 0).all() and (stacked[4:8] == 255).all()
    assert (stacked[8:, :3] == 7).all() and (stacked[8:, 3:] == 255).all()


def test_slices_widen_short_videos_only_and_the_mouth_box_keeps_its_centre():
    assert slice_px_per_frame(75) == 8 and slice_px_per_frame(300) == 3 and slice_px_per_frame(5000) == 1
    box = mouth_box(CropBox(left=100.0, top=40.0, size=160.0))  # centre (180, 120)
    assert (box.left, box.top, box.size) == (140.0, 80.0, 80.0)


def _ok(job_id: str, departure: str, **extra) -> dict:
    return {
        "job_id": job_id, "status": "ok", "speaker": "s1", "video_uri": f"/d/src/{job_id}.mp4",
        "output_uri": f"/d/run/videos/{job_id}.mp4", "msi_lip": 3.0, "msi_jaw": 1.0, "source_msi_lip": 0.6,
        "source_msi_jaw": 1.0, "msi_lip_ratio": 5.0, "msi_jaw_ratio": 1.0, "departure_lip": departure,
        "departure_jaw": "within", "review_slices_uri": f"/d/run/review/{job_id}.slices.png", **extra,
    }  # fmt: skip


def test_failed_rows_lead_then_departing_dubs_with_which_way():
    rows = [
        _ok("calm", "within"),
        {"job_id": "broken", "status": "failed", "reason": "broken: /d/a.wav: no such file"},
        _ok("still", "too_still", sync_c=6.5),
    ]
    page = render_review(rows, "/d/run/review.html", "Dub review: run", 2.0)
    assert page.index("broken") < page.index('id="still"') < page.index('id="calm"')
    assert "/d/a.wav: no such file" in page
    assert "3 rows: 2 dubbed, 1 failed. Against their sources: 1 too still" in page
    assert "lips too still" in page
    assert 'src="videos/still.mp4"' in page and 'src="../src/still.mp4"' in page
    assert 'src="review/still.slices.png"' in page
    assert "sync_c 6.50" in page  # the lip-sync expert's confidence, where the row has it
    assert page.count("no lip-sync expert weights") == 1  # the calm row has none
