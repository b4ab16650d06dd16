"""A run's logs: the metrics table, TensorBoard events and sample images, locally and on S3."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pandas as pd
import pytest

from stableface.io.storage import Storage, join
from stableface.training.run_log import (
    RunLogger,
    read_metrics,
    record_attempt,
    record_sample_ids,
    record_worker,
)


@pytest.fixture(params=["local", "s3"])
def logs(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "logs"), Storage()
    config = request.getfixturevalue("s3_storage_config")
    return f"{request.getfixturevalue('s3_bucket')}/run/logs", Storage(config)


def test_metrics_samples_and_events_are_written_and_a_resume_appends(logs):
    uri, storage = logs
    run_logger = RunLogger(uri, storage, "stage2", attempt=0)
    for step in (2, 4, 6):
        run_logger.log(step, {"loss/l1": 1.0 / step})
    image = np.zeros((8, 16, 3), np.uint8)
    image[:, 8:, 0] = 255  # right half red
    sample_uri = run_logger.sample(4, image)
    run_logger.close()
    resumed = RunLogger(uri, storage, "stage2", start_step=4, attempt=1)
    resumed.log(6, {"loss/l1": 0.1})
    resumed.close()

    rows = read_metrics(storage, uri)
    assert [(row["attempt"], row["step"]) for row in rows] == [(0, 2), (0, 4), (0, 6), (1, 6)]
    assert rows[0]["loss/l1"] == pytest.approx(0.5)
    table = pd.read_csv(io.StringIO(storage.read_text(join(uri, "metrics.csv"))))
    assert list(table["step"]) == [2, 4, 6, 6] and "loss/l1" in table.columns
    decoded = cv2.imdecode(np.frombuffer(storage.read_bytes(sample_uri), np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (8, 16, 3) and decoded[0, 12, 2] == 255 and decoded[0, 2, 2] == 0  # BGR: red
    events = storage.list(join(uri, "tensorboard"))
    assert len(events) == 2 and all(storage.size(event) > 0 for event in events)


def test_attempts_workers_and_sample_ids_are_recorded(tmp_path):
    storage, uri = Storage(), str(tmp_path / "logs")
    assert record_attempt(storage, uri, "stage1", start_step=0, world_size=2) == 0
    assert record_attempt(storage, uri, "stage1", start_step=40, world_size=2) == 1
    record_worker(storage, uri, "stage1", rank=1, start_step=40)
    record_sample_ids(storage, uri, "stage1", rank=1, epoch=3, sample_ids=["a@0", "b@8"])
    attempts = storage.read_json(join(uri, "attempts.json"))
    assert [a["start_step"] for a in attempts] == [0, 40]
    assert storage.read_json(join(uri, "workers", "stage1-rank1.json"))["start_step"] == 40
    assert storage.read_json(join(uri, "sample_ids", "stage1-rank1-epoch0003.json")) == ["a@0", "b@8"]
