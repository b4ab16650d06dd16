"""Asynchronous dubs: one job = the bulk dubbing's per-item work on one row, status in the job store.

:func:`run_job` is plain Python (a test calls it without Ray); :func:`submit_job` runs it as a Ray
task with retries. It is idempotent: a job whose video exists is done, and the video is published
atomically (:func:`stableface.inference.dub` writes through ``Storage.writable_local``), so a task
retried after a crash never leaves half a video behind.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from serve.callbacks import notify_job_end
from serve.settings import from_payload
from serve.stores import JobState, JobStore, ModelStore, SourceStore
from serve.validation import ApiError, error_for
from stableface.errors import InputError, StorageUnavailable
from stableface.face.face_tracks import FaceSelection
from stableface.inference import dub, load_speaker_model
from stableface.io.storage import Storage

logger = logging.getLogger(__name__)

JOB_TASK_RETRIES = 2  # re-runs of a job whose worker process died (not of jobs that failed cleanly)


def run_job(payload: dict[str, Any], job_id: str) -> dict[str, Any]:
    """Dub job ``job_id`` of the job store; returns its final record (status ``done`` or ``failed``).

    A job with a ``callback_url`` calls it once it has ended (:mod:`serve.callbacks`), a job that
    failed on a bug included; one stopped by a store outage has not ended and calls nothing yet.
    """
    config = from_payload(payload)
    jobs = JobStore(config.jobs_uri, Storage(config.storage))
    try:
        record = _dub_job(config, jobs, job_id)
    except StorageUnavailable:
        raise
    except Exception:
        _call_back(jobs, jobs.read(job_id), config)
        raise
    return _call_back(jobs, record, config)


def _call_back(jobs: JobStore, record: dict[str, Any], config) -> dict[str, Any]:
    delivery = notify_job_end(record, config.callbacks)
    if delivery is None:
        return record
    return jobs.update(record["job_id"], callback=delivery.to_record())


def _dub_job(config, jobs: JobStore, job_id: str) -> dict[str, Any]:
    storage = jobs.storage
    record = jobs.read(job_id)
    output_uri = jobs.video_uri(job_id)
    if record.get("status") == JobState.DONE and storage.exists(output_uri):
        return record
    if record.get("status") == JobState.CANCELLED:
        return record
    attempts = int(record.get("attempts", 0))
    if attempts >= config.max_job_attempts:
        reason = f"job '{job_id}': gave up after {attempts} attempts that did not finish"
        logger.warning(reason)
        return jobs.update(job_id, status=JobState.FAILED, error=reason, finished_at=time.time())
    record = jobs.update(job_id, status=JobState.RUNNING, started_at=time.time(), attempts=attempts + 1)
    try:
        model_uri = ModelStore(config.models_uri, storage).require(record["speaker"])
        model = load_speaker_model(model_uri, storage)
        sources = SourceStore(config.sources_uri, storage, config.cache_uri, config.dub.inference)
        ref = sources.find(record["speaker"], record.get("source"))
        track = sources.prepared(
            ref, model, FaceSelection.parse(record.get("face", ""), f"job '{job_id}' face")
        )
        result = dub(
            model, ref.uri, record["audio_uri"], output_uri, config.dub,
            source=track, storage=storage, model_uri=model_uri,
        )  # fmt: skip
    except StorageUnavailable as outage:
        # Not the job's fault, and its record cannot be written now: it stays queued/running, and
        # the job runner starts it again once the store answers (JobResubmitter).
        logger.warning("job %s stopped by a store outage, to be resubmitted: %s", job_id, outage)
        raise
    except (InputError, ApiError) as error:
        reason = error_for(error).message
        logger.warning("job %s failed: %s", job_id, reason)
        return jobs.update(job_id, status=JobState.FAILED, error=reason, finished_at=time.time())
    except Exception as error:  # a bug, not bad input: record it for the client, then let Ray see it
        jobs.update(job_id, status=JobState.FAILED, error=error_for(error).message, finished_at=time.time())
        raise
    return jobs.update(
        job_id,
        status=JobState.DONE,
        finished_at=time.time(),
        output_seconds=round(result.output_duration_s, 3),
        model_version=result.model_version,
        frames_dubbed=result.frames_dubbed,
        frames_passed_through=result.frames_passed_through,
        segments=result.segments,
        warning=result.warning,
    )


class JobResubmitter:
    """Keeps every queued or running job of the store started: at start-up, and again after a store
    outage (a job stopped by one is still queued or running in the store, with no task behind it).

    ``start(job_id)`` starts a job unless it already runs; a pass during an outage starts nothing
    and says so, and the next pass after the store is back picks the jobs up."""

    def __init__(self, jobs: JobStore, start: Callable[[str], bool]):
        self.jobs, self.start = jobs, start

    def run_once(self) -> list[str]:
        """Start the unfinished jobs that have no task; returns their ids."""
        try:
            unfinished = self.jobs.unfinished()
        except StorageUnavailable as outage:
            logger.warning("cannot look for unfinished jobs, will retry: %s", outage)
            return []
        started = [job_id for job_id in unfinished if self.start(job_id)]
        for job_id in started:
            logger.info("resubmitted unfinished job %s", job_id)
        return started


def submit_job(payload: dict[str, Any], job_id: str, num_cpus: float):
    """Start :func:`run_job` as a Ray task; returns its ObjectRef."""
    import ray

    task = ray.remote(run_job).options(
        num_cpus=num_cpus, max_retries=JOB_TASK_RETRIES, name=f"stableface-job-{job_id}"
    )
    return task.remote(payload, job_id)
