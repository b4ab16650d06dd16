"""Planning a large dub catalog against an S3 API server: ``python -m bench dub_plan [--quick]``.

A catalog of 10,000 rows (1,000 with ``--quick``), all but 10 recorded as finished by an earlier
run, on a moto S3 server on 127.0.0.1. Measures what the driver does before any row reaches an
actor (:func:`stableface.ray_jobs.dub.plan_dub`: read the catalog, list the recorded rows) and how
many S3 requests that took. Target: under 10 s on 2 cores, O(1) requests per row.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from stableface.config import compose
from stableface.io.storage import Storage, StorageConfig, join
from stableface.ray_jobs.dub import plan_dub
from stableface.status import RowStatus

ROWS, QUICK_ROWS = 10_000, 1_000
UNFINISHED = 10
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def _moto() -> tuple[subprocess.Popen, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **CREDENTIALS},
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return process, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("moto server did not start")


class _RequestCounter:
    def __init__(self, storage: Storage):
        self.count = 0
        storage.s3.meta.events.register("before-send.s3.*", self._count)

    def _count(self, **_) -> None:
        self.count += 1


def run(quick: bool = False) -> dict:
    os.environ.update(CREDENTIALS)
    n_rows = QUICK_ROWS if quick else ROWS
    process, endpoint = _moto()
    try:
        storage = Storage(StorageConfig(endpoint_url=endpoint, region="us-east-1"))
        storage.s3.create_bucket(Bucket="bench")
        output_uri = "s3://bench/dubs"
        lines = ["job_id,model_uri,video_uri,audio_uri"] + [
            f"row-{i:05d},s3://bench/models/s1,s3://bench/videos/v{i % 90}.mp4,s3://bench/speech/a{i}.wav"
            for i in range(n_rows)
        ]
        storage.write_text("s3://bench/catalog.csv", "\n".join(lines) + "\n")
        with ThreadPoolExecutor(16) as pool:  # the earlier run's records and outputs
            list(pool.map(
                lambda i: (
                    storage.write_json(join(output_uri, "items", f"row-{i:05d}.json"), {"status": RowStatus.OK}),
                    storage.write_bytes(join(output_uri, "videos", f"row-{i:05d}.mp4"), b"mp4"),
                ),
                range(n_rows - UNFINISHED),
            ))  # fmt: skip
        cfg = compose(
            "dub",
            [
                "catalog=s3://bench/catalog.csv",
                f"output_uri={output_uri}",
                f"storage.endpoint_url={endpoint}",
            ],
        )
        planning = Storage(cfg.storage)
        counter = _RequestCounter(planning)
        started = time.perf_counter()
        plan = plan_dub(cfg, planning)
        seconds = time.perf_counter() - started
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert len(plan.todo) == UNFINISHED and len(plan.quick) == n_rows - UNFINISHED
    return {
        "catalog_rows": n_rows,
        "rows_to_dub": len(plan.todo),
        "plan_seconds": round(seconds, 2),
        "s3_requests": counter.count,
        "s3_requests_per_1000_rows": round(1000 * counter.count / n_rows, 2),
        "target_met": seconds < 10.0,
    }
