"""The audit finds synthetic videos: a watermarked, re-encoded and cropped copy among real clips."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from stableface.config import compose
from stableface.io.video import VideoWriter, read_frames
from stableface.provenance.config import WatermarkConfig
from stableface.provenance.payload import Payload
from stableface.provenance.watermark import Watermarker
from stableface.ray_jobs.audit import run

pytestmark = pytest.mark.integration


def test_audit_lists_the_watermarked_video_with_its_payload_and_no_real_one(ray_local, grid_clips, tmp_path):
    catalog = tmp_path / "catalog" / "s1"
    catalog.mkdir(parents=True)
    shutil.copy(grid_clips[2], catalog / "real_a.mpg")
    shutil.copy(grid_clips[3], catalog / "real_b.mpg")
    payload = Payload.for_dub("s1-v3", 0x0A17)
    marker = Watermarker(payload, WatermarkConfig())
    frames = read_frames(grid_clips[4])
    # Marked, then cropped to its top-left (the visible mark's corner gone) and re-encoded at CRF 30.
    with VideoWriter(catalog / "reposted.mp4", fps=25, width=260, height=230, crf=30) as writer:
        for frame in frames:
            writer.write(marker.mark(frame)[:230, :260].copy())
    out = tmp_path / "out"
    summary = run(compose("audit", [f"catalog={catalog.parent}", f"output_uri={out}", "concurrency=1"]))
    assert summary["synthetic"] == 1

    table = pd.read_parquet(out / "audit.parquet").set_index("video_id")
    reposted = table.loc["reposted"]
    assert reposted["synthetic"] and reposted["watermark"] == "present"
    assert reposted["watermark_payload"] == payload.describe() and reposted["credentials"] == "absent"
    for real in ("real_a", "real_b"):
        assert not table.loc[real, "synthetic"] and table.loc[real, "watermark"] == "absent"
        assert table.loc[real, "provenance_status"] == "ok"
    report = (out / "report.html").read_text()
    assert "Synthetic videos found (1)" in report and payload.describe() in report
    assert "Provenance of all videos (3)" in report
