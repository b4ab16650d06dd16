"""The HTTP ingress deployment and the job runner behind ``POST /v1/jobs``.

:class:`Ingress` serves :func:`serve.api.create_api` (built in each replica, so the API key is read
from the replica's config or environment) and is its backend: synchronous dubs go to the
:class:`~serve.compositor.Compositor` with the speaker as the multiplexed model id; jobs go to
:class:`JobRunner`. Serve's own overload signals become 503s with a JSON body.

:class:`JobRunner` is one long-lived replica that owns the job tasks. Ray ends a task when its
submitter dies, so jobs are not submitted from the autoscaled ingress (a scale-down would kill
them); a restarted runner submits every job the store still lists as queued or running.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import ray
from ray import serve
from ray.exceptions import RayTaskError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

from serve.api import create_api
from serve.async_jobs import JobResubmitter, submit_job
from serve.messages import DubRefused, DubReply, DubRequest
from serve.settings import from_payload, resolve_api_key
from serve.stores import JobStore
from serve.validation import ApiError, error_for
from stableface.errors import StorageUnavailable
from stableface.io.storage import Storage
from stableface.utils.logging import configure_logging

logger = logging.getLogger(__name__)


def service_error(error: Exception) -> ApiError:
    """The HTTP error a failed call to another deployment becomes."""
    cause = error.cause if isinstance(error, RayTaskError) and error.cause is not None else error
    if isinstance(cause, ApiError):
        return ApiError(cause.status, cause.message)
    if isinstance(cause, StorageUnavailable):
        return error_for(cause)
    if isinstance(cause, (BackPressureError, DeploymentUnavailableError)):
        return ApiError(503, "service: overloaded, try again shortly")
    logger.error("request failed: %r", error)
    return ApiError(500, "internal error: the dub failed on the server (see the service logs)")


@serve.deployment(
    name="JobRunner",
    max_ongoing_requests=64,
    autoscaling_config={"min_replicas": 1, "max_replicas": 1},
    ray_actor_options={"num_cpus": 0},
)
class JobRunner:
    """Starts each asynchronous job as a Ray task and keeps it alive (it owns the tasks)."""

    def __init__(self, payload: dict[str, Any]):
        configure_logging()
        self.payload = payload
        self.config = from_payload(payload)
        self.running: dict[str, ray.ObjectRef] = {}
        self._lock = threading.Lock()  # the resubmit thread and requests both start jobs
        self._stopped = threading.Event()
        resubmitter = JobResubmitter(
            JobStore(self.config.jobs_uri, Storage(self.config.storage)), self._start
        )
        self._resubmit_thread = threading.Thread(
            target=self._resubmit_forever, args=(resubmitter,), name="job-resubmitter", daemon=True
        )
        self._resubmit_thread.start()

    def _resubmit_forever(self, resubmitter: JobResubmitter) -> None:
        while not self._stopped.is_set():
            resubmitter.run_once()
            self._stopped.wait(self.config.job_resubmit_interval_s)

    def __del__(self):
        self._stopped.set()

    def _start(self, job_id: str) -> bool:
        """Start ``job_id`` unless a task of it is still running; True when started."""
        with self._lock:
            self._prune()
            if job_id in self.running:
                return False
            self.running[job_id] = submit_job(self.payload, job_id, self.config.job_num_cpus)
            return True

    def _prune(self) -> None:
        if self.running:
            finished, _ = ray.wait(list(self.running.values()), num_returns=len(self.running), timeout=0)
            done = set(finished)
            self.running = {job_id: ref for job_id, ref in self.running.items() if ref not in done}

    async def submit(self, job_id: str) -> None:
        self._start(job_id)

    async def cancel(self, job_id: str) -> None:
        """Stop the job's task if it runs (its record already says cancelled)."""
        with self._lock:
            ref = self.running.pop(job_id, None)
        if ref is not None:
            ray.cancel(ref)

    async def running_jobs(self) -> list[str]:
        with self._lock:
            self._prune()
            return sorted(self.running)


@serve.deployment(
    name="Ingress",
    max_ongoing_requests=16,
    max_queued_requests=32,  # the proxy answers 503 beyond this instead of queueing without bound
    autoscaling_config={
        "min_replicas": 1,
        "max_replicas": 2,
        "target_ongoing_requests": 8,
        "upscale_delay_s": 5.0,
        "downscale_delay_s": 30.0,
    },
    ray_actor_options={"num_cpus": 0.1},
)
@serve.ingress()
class Ingress:
    """FastAPI over the compositor (synchronous dubs) and the job runner (asynchronous ones)."""

    def __init__(self, payload: dict[str, Any], compositor, job_runner):
        configure_logging()
        self.config = from_payload(payload)
        self.compositor = compositor
        self.job_runner = job_runner

    def __serve_build_asgi_app__(self):
        return create_api(self.config, backend=self, api_key=resolve_api_key(self.config))

    async def dub(self, request: DubRequest) -> DubReply:
        response = self.compositor.options(multiplexed_model_id=request.speaker).dub.remote(request)
        try:
            reply = await response
        except Exception as error:  # every failure of the call becomes the right status code
            raise service_error(error) from error
        if isinstance(reply, DubRefused):
            raise ApiError(reply.status, reply.message)
        return reply

    async def submit_job(self, job_id: str) -> None:
        try:
            await self.job_runner.submit.remote(job_id)
        except Exception as error:  # every failure of the call becomes the right status code
            raise service_error(error) from error

    async def cancel_job(self, job_id: str) -> None:
        try:
            await self.job_runner.cancel.remote(job_id)
        except Exception as error:  # every failure of the call becomes the right status code
            raise service_error(error) from error
