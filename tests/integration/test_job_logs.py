"""What a user reads while a job runs: the job's own progress, not MediaPipe's or Ray Data's."""

from __future__ import annotations

import csv
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration

# Lines of MediaPipe's C++ graph (absl, TFLite) and of Ray Data's own progress tables and plans.
NOISE = re.compile(
    r"absl|TensorFlow Lite|Feedback manager|NORM_RECT|^[IW]\d{4} |logging_progress|Running Dataset"
    r"|Execution plan of Dataset|Started a local Ray instance",
    re.MULTILINE,
)
JOB_TIMEOUT_S = 600


def test_preprocess_log_is_the_jobs_progress_without_native_or_ray_noise(grid_clips, tmp_path):
    catalog = tmp_path / "catalog.csv"
    with open(catalog, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["video_uri", "speaker"])
        writer.writerows([(str(clip), "s1") for clip in grid_clips[:2]])
    command = [
        sys.executable, "-m", "stableface.cli", "preprocess", f"catalog={catalog}",
        f"dataset_uri={tmp_path / 'ds'}", "face.crop_size=128", "face.min_fit_frames=100", "ray.num_cpus=1",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=JOB_TIMEOUT_S)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log
    assert NOISE.search(log) is None, f"noise in the job's log: {NOISE.search(log)!r}\n{log}"
    # The job's own lines: what it does, its progress with rate and ETA, its summary.
    assert "extracting 2 videos with 1 workers" in log
    assert re.search(r"preprocess: extract: 2/2 videos, .*, ETA .*, done in ", log), log
    assert re.search(r"preprocess: encode: 2/2 videos, .*done in ", log), log
    assert "preprocess finished: {" in log
    assert len(log.splitlines()) < 20, log
