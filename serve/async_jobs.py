"""Asynchronous dubs: one job = the bulk dubbing's per-item work on one row, status in the job store.

:func:`run_job` is plain Python (a test calls it without Ray); :func:`submit_job` runs it as a Ray
task with retries. It is idempotent: a job whose video exists is done, and the video is published
atomically (:func:`stableface.inference.dub` writes through ``Storage.writable_local``), so a task
retried after a crash never leaves half a video behind.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from serve.settings import from_payload
from serve.stores import JobStore, ModelStore, SourceStore
from serve.validation import ApiError, error_for
from stableface.errors import InputError
from stableface.inference import dub, load_speaker_model
from stableface.io.storage import Storage

logger = logging.getLogger(__name__)

JOB_TASK_RETRIES = 2  # re-runs of a job whose worker process died (not of jobs that failed cleanly)


def run_job(payload: dict[str, Any], job_id: str) -> dict[str, Any]:
    """Dub job ``job_id`` of the job store; returns its final record (status ``done`` or ``failed``)."""
    config = from_payload(payload)
    storage = Storage(config.storage)
    jobs = JobStore(config.jobs_uri, storage)
    record = jobs.read(job_id)
    output_uri = jobs.video_uri(job_id)
    if record.get("status") == "done" and storage.exists(output_uri):
        return record
    record = jobs.update(
        job_id, status="running", started_at=time.time(), attempts=int(record.get("attempts", 0)) + 1
    )
    try:
        model_uri = ModelStore(config.models_uri, storage).require(record["speaker"])
        model = load_speaker_model(model_uri, storage)
        sources = SourceStore(config.sources_uri, storage, config.cache_uri, config.dub.inference)
        ref = sources.find(record["speaker"], record.get("source"))
        track = sources.prepared(ref, model)
        result = dub(
            model, ref.uri, record["audio_uri"], output_uri, config.dub,
            source=track, storage=storage, model_uri=model_uri,
        )  # fmt: skip
    except (InputError, ApiError) as error:
        reason = error_for(error).message
        logger.warning("job %s failed: %s", job_id, reason)
        return jobs.update(job_id, status="failed", error=reason, finished_at=time.time())
    except Exception as error:  # a bug, not bad input: record it for the client, then let Ray see it
        jobs.update(job_id, status="failed", error=error_for(error).message, finished_at=time.time())
        raise
    return jobs.update(
        job_id,
        status="done",
        finished_at=time.time(),
        output_seconds=round(result.output_duration_s, 3),
        model_version=result.model_version,
        frames_dubbed=result.frames_dubbed,
        frames_passed_through=result.frames_passed_through,
        segments=result.segments,
        warning=result.warning,
    )


def submit_job(payload: dict[str, Any], job_id: str, num_cpus: float):
    """Start :func:`run_job` as a Ray task; returns its ObjectRef."""
    import ray

    task = ray.remote(run_job).options(
        num_cpus=num_cpus, max_retries=JOB_TASK_RETRIES, name=f"stableface-job-{job_id}"
    )
    return task.remote(payload, job_id)
