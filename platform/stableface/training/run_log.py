"""What a training run leaves to look at: TensorBoard events, a metrics table, sample images.

```
<logs_uri>/                         local directory or s3:// prefix
  metrics.jsonl, metrics.csv        one row per logged step and attempt (a resumed run appends
                                    rows of its own attempt number, from its checkpoint's step on)
  tensorboard/events.out.tfevents.* scalars (tensorboardX)
  samples/<stage>-step<N>.png       eroded background | face shape | generated | real, per frame
  attempts.json                     one entry per (re)start of the workers: pid, start step
  workers/<stage>-rank<R>.json      the current worker process of each rank: pid, host
  sample_ids/<stage>-rank<R>-epoch<E>.json   with schedule.record_sample_ids
```

Writes go through :class:`Storage`, so the logs of a run on S3 land in S3. TensorBoard writes
event files locally; for an s3:// destination they are uploaded on :meth:`RunLogger.flush`.
"""

from __future__ import annotations

import io
import logging
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from stableface.io.storage import Storage, is_s3, join, local_dir

logger = logging.getLogger(__name__)

METRICS_JSONL = "metrics.jsonl"
METRICS_CSV = "metrics.csv"
ATTEMPTS = "attempts.json"
TENSORBOARD = "tensorboard"
SAMPLES = "samples"
SAMPLE_IDS = "sample_ids"
WORKERS = "workers"
FLUSH_INTERVAL_S = 30.0


def encode_png(image: np.ndarray) -> bytes:
    """RGB (H, W, 3) uint8 -> PNG bytes."""
    ok, data = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"could not encode a {image.shape} image as PNG")
    return data.tobytes()


def read_metrics(storage: Storage, logs_uri: str) -> list[dict[str, Any]]:
    """The rows of ``metrics.jsonl`` (empty when the run has logged nothing yet)."""
    import json

    uri = join(logs_uri, METRICS_JSONL)
    if not storage.exists(uri):
        return []
    return [json.loads(line) for line in storage.read_text(uri).splitlines() if line.strip()]


class RunLogger:
    """Rank 0's writer of metrics, TensorBoard scalars and sample images for one stage."""

    def __init__(self, logs_uri: str, storage: Storage, stage: str, start_step: int = 0, attempt: int = 0):
        from tensorboardX import SummaryWriter

        self.logs_uri = logs_uri
        self.storage = storage
        self.stage = stage
        self.attempt = attempt
        self.rows = read_metrics(storage, logs_uri)
        self._last_flush = time.monotonic()
        if is_s3(logs_uri):
            self._scratch = tempfile.TemporaryDirectory(prefix="stableface-tb-")
            tensorboard_dir = Path(self._scratch.name)
        else:
            self._scratch = None
            tensorboard_dir = local_dir(join(logs_uri, TENSORBOARD))
            tensorboard_dir.mkdir(parents=True, exist_ok=True)
        self.tensorboard_dir = tensorboard_dir
        self._uploaded: dict[str, int] = {}  # event file name -> size at its last upload
        # purge_step: on a resume, TensorBoard hides the events the killed attempt wrote after it.
        self.writer = SummaryWriter(
            str(tensorboard_dir),
            purge_step=start_step + 1 if start_step else None,
            filename_suffix=f".{stage}.attempt{attempt}",  # event files of each attempt stay apart
        )

    def log(self, step: int, metrics: dict[str, float]) -> None:
        self.rows.append(
            {"stage": self.stage, "attempt": self.attempt, "step": step, "time": time.time(), **metrics}
        )
        for name, value in metrics.items():
            self.writer.add_scalar(f"{self.stage}/{name}", value, step)
        if time.monotonic() - self._last_flush > FLUSH_INTERVAL_S:
            self.flush(tensorboard=False)

    def sample(self, step: int, image: np.ndarray) -> str:
        uri = join(self.logs_uri, SAMPLES, f"{self.stage}-step{step:07d}.png")
        self.storage.write_bytes(uri, encode_png(image))
        self.writer.add_image(f"{self.stage}/sample", image, step, dataformats="HWC")
        return uri

    def flush(self, tensorboard: bool = True) -> None:
        """Write the metrics table; with ``tensorboard`` also upload changed event files (s3://)."""
        import json

        self.writer.flush()
        self.storage.write_text(
            join(self.logs_uri, METRICS_JSONL), "".join(json.dumps(row) + "\n" for row in self.rows)
        )
        buffer = io.StringIO()
        pd.DataFrame(self.rows).to_csv(buffer, index=False)
        self.storage.write_text(join(self.logs_uri, METRICS_CSV), buffer.getvalue())
        if tensorboard and self._scratch is not None:
            for path in sorted(self.tensorboard_dir.iterdir()):
                size = path.stat().st_size
                if self._uploaded.get(path.name) != size:
                    self.storage.upload_file(path, join(self.logs_uri, TENSORBOARD, path.name))
                    self._uploaded[path.name] = size
        self._last_flush = time.monotonic()

    def close(self) -> None:
        self.flush()
        self.writer.close()
        if self._scratch is not None:
            self._scratch.cleanup()


def record_attempt(storage: Storage, logs_uri: str, stage: str, start_step: int, world_size: int) -> int:
    """Append this (re)start of the workers to ``attempts.json`` (the evidence of a resume); returns
    its index, which the metric rows of this attempt carry."""
    uri = join(logs_uri, ATTEMPTS)
    attempts = storage.read_json(uri) if storage.exists(uri) else []
    attempts.append(
        {
            "stage": stage,
            "start_step": start_step,
            "world_size": world_size,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "time": time.time(),
        }
    )
    storage.write_json(uri, attempts)
    return len(attempts) - 1


def record_worker(
    storage: Storage, logs_uri: str, stage: str, rank: int, start_step: int, node: str = "local"
) -> None:
    """``workers/<stage>-rank<R>.json``: this worker process (for operators, and the kill test)."""
    uri = join(logs_uri, WORKERS, f"{stage}-rank{rank}.json")
    record = {"pid": os.getpid(), "host": socket.gethostname(), "node": node, "rank": rank}
    storage.write_json(uri, {**record, "start_step": start_step})


def record_sample_ids(
    storage: Storage, logs_uri: str, stage: str, rank: int, epoch: int, sample_ids: list[str]
) -> None:
    uri = join(logs_uri, SAMPLE_IDS, f"{stage}-rank{rank}-epoch{epoch:04d}.json")
    storage.write_json(uri, sample_ids)
