"""The compositing/encoding deployment: one synchronous dub, with the networks in their own deployments.

It runs :func:`stableface.inference.dub_files`, the bulk job's streaming dub, with its three network
stages swapped for calls to the Audio2Expression, Smoothing and Renderer deployments
(:class:`~stableface.inference.NeuralStages`), so the service and the bulk job produce the same
video from the same inputs. What stays here is everything around the networks: the prepared
source (cached per replica, see :class:`serve.stores.SourceStore`), face shapes, masks and eroded
backgrounds, the cross-faded renderer windows, pasting the face back into the full frames, the
provenance mark and the H.264/AAC encoding.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from ray import serve

from serve.messages import DubRefused, DubReply, DubRequest
from serve.stages import SpeakerModels, stage_autoscaling
from serve.stores import SourceStore
from serve.validation import ApiError, error_for
from stableface.errors import InputError, StorageUnavailable
from stableface.inference import NeuralStages, dub_files
from stableface.io.storage import Storage
from stableface.speaker_model import SpeakerModel

logger = logging.getLogger(__name__)


def stage_seconds_header(stage_seconds: dict[str, float], source_s: float) -> str:
    """``stage=seconds`` pairs, slowest first, for the ``X-StableFace-Stage-Seconds`` header.

    The network stages' times include the hop to their deployment and back; ``source`` is finding
    and preparing the source video (face tracking on the first request, a cache hit after).
    """
    stages = {**stage_seconds, "source": source_s}
    return ",".join(f"{name}={seconds:.3f}" for name, seconds in sorted(stages.items(), key=lambda i: -i[1]))


def parse_stage_seconds(header: str) -> dict[str, float]:
    """The inverse of :func:`stage_seconds_header`."""
    pairs = (item.split("=", 1) for item in header.split(",") if item)
    return {name: float(seconds) for name, seconds in pairs}


SERVER_FAULT = 500
UNAVAILABLE = 503  # a store outage: expected, the client retries


class DubCancelled(Exception):
    """The client's request ended (timeout or disconnect): stop calling the stages."""


class RemoteStages:
    """The three network stages as blocking calls to their deployments, for one speaker's dub.

    Called from the dub's worker thread (never the replica's event loop), so ``.result()`` is fine.
    """

    def __init__(self, handles: tuple, speaker: str, cancelled: threading.Event, timeout_s: float):
        audio2expression, smoothing, renderer = (
            handle.options(multiplexed_model_id=speaker) for handle in handles
        )
        self.audio2expression, self.smoothing, self.renderer = audio2expression, smoothing, renderer
        self.cancelled, self.timeout_s = cancelled, timeout_s

    def _result(self, response) -> np.ndarray:
        if self.cancelled.is_set():
            response.cancel()
            raise DubCancelled("the request was cancelled")
        return response.result(timeout_s=self.timeout_s)

    def predict_mouth(self, mel: np.ndarray, starts: np.ndarray) -> np.ndarray:
        return self._result(self.audio2expression.predict.remote(mel, starts))

    def smoothing_weights(self, expression: np.ndarray) -> np.ndarray:
        return self._result(self.smoothing.weights.remote(expression))

    def render(
        self, background: np.ndarray, shape: np.ndarray, audio: np.ndarray | None, warped: np.ndarray | None
    ) -> np.ndarray:
        return self._result(self.renderer.render.remote((background, shape, audio, warped)))

    def as_stages(self) -> NeuralStages:
        return NeuralStages(
            predict_mouth=self.predict_mouth,
            smoothing_weights=self.smoothing_weights,
            render=self.render,
            texture=self._result(self.renderer.texture.remote()),
        )


@serve.deployment(
    name="Compositor",
    max_ongoing_requests=2,  # dubs at once per replica; each streams frames through the encoder
    max_queued_requests=8,  # beyond this the ingress answers 503 instead of queueing without bound
    autoscaling_config=stage_autoscaling(2, 1),
    ray_actor_options={"num_cpus": 0.4},
)
class Compositor(SpeakerModels):
    """Source preparation, renderer inputs, compositing and encoding; networks by DeploymentHandle."""

    def __init__(self, payload: dict[str, Any], audio2expression, smoothing, renderer):
        self.setup_models(payload)
        storage = Storage(self.config.storage)
        self.sources = SourceStore(
            self.config.sources_uri,
            storage,
            self.config.cache_uri,
            self.config.dub.inference,
            self.config.max_sources_per_replica,
        )
        self.handles = (audio2expression, smoothing, renderer)

    async def dub(self, request: DubRequest) -> DubReply | DubRefused:
        """The dubbed mp4 of one request, or why not: a refusal (4xx, 503) comes back as
        :class:`DubRefused` with one WARNING line; a server fault (500) is raised, with its traceback."""
        try:
            return await self._dub_or_raise(request)
        except ApiError as error:
            if error.status >= SERVER_FAULT and error.status != UNAVAILABLE:
                raise
            logger.warning(
                "refused %s/%s: %d %s", request.speaker, request.source, error.status, error.message
            )
            return DubRefused(error.status, error.message)

    async def _dub_or_raise(self, request: DubRequest) -> DubReply:
        try:
            model = await self.speaker_model()
        except (InputError, StorageUnavailable) as error:
            raise error_for(error) from None
        cancelled = threading.Event()
        try:
            return await asyncio.to_thread(self._dub, model, request, cancelled)
        except asyncio.CancelledError:
            cancelled.set()  # the thread stops at its next stage call
            raise

    def _dub(self, model: SpeakerModel, request: DubRequest, cancelled: threading.Event) -> DubReply:
        speaker = request.speaker
        started = time.perf_counter()
        try:
            ref = self.sources.find(speaker, request.source)
            try:
                track = self.sources.prepared(ref, model, request.face)
                source_s = time.perf_counter() - started
            except InputError as error:
                raise ApiError(422, f"source '{ref.source_id}': cannot be dubbed ({error.problem})") from None
            stages = RemoteStages(self.handles, speaker, cancelled, self.config.limits.request_timeout_s)
            with tempfile.TemporaryDirectory(prefix="stableface-dub-") as folder:
                audio_path = Path(folder) / f"audio{request.audio_suffix}"
                audio_path.write_bytes(request.audio)
                output = Path(folder) / "dub.mp4"
                result = dub_files(
                    model, self.sources.local_video(ref), audio_path, output, self.config.dub, source=track,
                    video_uri=ref.name, audio_uri="audio", model_uri=f"speaker '{speaker}'",
                    stages=stages.as_stages(),
                )  # fmt: skip
                video = output.read_bytes()
        except (InputError, StorageUnavailable) as error:
            raise error_for(error) from None
        facts = {
            "Model-Version": result.model_version,
            "Frames": result.n_frames,
            "Fps": f"{result.fps:.3f}",
            "Duration": f"{result.output_duration_s:.3f}",
            "Seconds": f"{result.seconds:.3f}",
            "Frames-Dubbed": result.frames_dubbed,
            "Frames-Passed-Through": result.frames_passed_through,
            "Segments": result.segments,
            "Stage-Seconds": stage_seconds_header(result.stage_seconds, source_s),
        }
        if result.warning:
            facts["Warning"] = result.warning
        logger.info("dubbed %s/%s: %d frames in %.2f s %s", speaker, ref.source_id, result.n_frames,
                    result.seconds, result.stage_seconds)  # fmt: skip
        return DubReply(video=video, facts={key: str(value) for key, value in facts.items()})

    async def source_stats(self) -> dict[str, int]:
        return {"prepared": self.sources.prepared_count}
