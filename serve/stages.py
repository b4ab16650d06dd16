"""The neural stages as Serve deployments, one per network, each with per-speaker models.

A call carries its speaker as the multiplexed model id (``handle.options(multiplexed_model_id=S)``).
Each replica loads speaker models on demand from ``<models_uri>/<S>`` and keeps at most
``max_models_per_replica`` of them, evicting the least recently used (``serve.multiplexed``); Serve
routes a speaker's calls to replicas that already hold its model. The stages run the library's
array functions, the same ones :func:`stableface.inference.dub_files` runs in the bulk job:

- :class:`Audio2Expression` -> :func:`stableface.inference.predict_mouth`;
- :class:`Smoothing` -> :func:`stableface.inference.smoothing_weights` (the compositor applies them
  to its face-shape images, so no image crosses the wire for smoothing);
- :class:`Renderer` -> :func:`stableface.inference.render_windows`, with ``@serve.batch`` gathering
  the renderer windows of concurrent requests (of one speaker) into one forward pass.

Network calls run in a worker thread so a replica keeps answering health checks while it computes.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import numpy as np
from ray import serve

from serve.settings import from_payload
from serve.stores import ModelStore
from stableface.face.warp import WarpTexture
from stableface.inference import predict_mouth, render_windows, resolve_device, smoothing_weights
from stableface.io.storage import Storage
from stableface.models.networks import count_parameters
from stableface.speaker_model import SpeakerModel
from stableface.utils.logging import configure_logging
from stableface.utils.precision import Precision

logger = logging.getLogger(__name__)

RENDER_MAX_BATCH = 8  # renderer calls (each a few windows) gathered into one forward pass
RENDER_BATCH_WAIT_S = 0.01  # how long the first call of a batch waits for company
# Defaults for `serve run serve.app:app` and `stableface serve`, as in serve/config.yaml: CPU shares that
# fit every deployment and a job on a 2-core machine (serve/config.yaml or the RayService size them).
STAGE_CPUS = 0.1
RENDERER_CPUS = 0.3


def stage_autoscaling(max_replicas: int, target: float) -> dict[str, Any]:
    return {
        "min_replicas": 1,
        "max_replicas": max_replicas,
        "target_ongoing_requests": target,
        "upscale_delay_s": 5.0,
        "downscale_delay_s": 30.0,
    }


class ResidentModel:
    """A loaded speaker model; Serve calls ``__del__`` when it evicts it, which the replica counts."""

    def __init__(self, speaker: str, model: SpeakerModel, on_evict):
        self.speaker, self.model, self._on_evict = speaker, model, on_evict
        self._evicted = False

    def __del__(self):
        if not self._evicted:  # Serve calls it on eviction, the garbage collector may call it again
            self._evicted = True
            self._on_evict(self.speaker)


class SpeakerModels:
    """Mixin: per-speaker models of one replica through ``serve.multiplexed``, with load counters.

    Each deployment names the networks it runs in ``components`` and loads only those."""

    components: tuple[str, ...] = ()

    def setup_models(self, payload: dict[str, Any]) -> None:
        configure_logging()
        self.config = from_payload(payload)
        self.model_store = ModelStore(self.config.models_uri, Storage(self.config.storage))
        self.device = resolve_device(self.config.dub.inference.device)
        self.precision = Precision(self.device, self.config.dub.inference.amp).announce(type(self).__name__)
        self.resident: list[str] = []  # speakers whose models this replica holds, oldest use first
        self.loads = self.evictions = 0

        async def load(speaker: str) -> ResidentModel:
            return await self._load_model(speaker)

        # Built per replica (not as a class decorator) so the model limit comes from the config.
        self.multiplexed_model = serve.multiplexed(
            max_num_models_per_replica=self.config.max_models_per_replica
        )(load)

    async def _load_model(self, speaker: str) -> ResidentModel:
        model = await asyncio.to_thread(self.model_store.load, speaker, self.components)
        model.networks.to(self.device).eval()
        self.loads += 1
        self.resident.append(speaker)
        logger.info(
            "%s: loaded speaker model '%s' (%d resident)", type(self).__name__, speaker, len(self.resident)
        )
        return ResidentModel(speaker, model, self._evicted)

    def _evicted(self, speaker: str) -> None:
        if speaker in self.resident:
            self.resident.remove(speaker)
        self.evictions += 1
        logger.info("%s: evicted speaker model '%s'", type(self).__name__, speaker)

    async def speaker_model(self) -> SpeakerModel:
        """The model of the current request's speaker (its multiplexed model id)."""
        resident = await self.multiplexed_model(serve.get_multiplexed_model_id())
        if resident.speaker in self.resident:  # most recently used last, as Serve's own LRU orders them
            self.resident.remove(resident.speaker)
            self.resident.append(resident.speaker)
        return resident.model

    async def model_stats(self) -> dict[str, Any]:
        """Which speakers this replica holds, how often it loaded and evicted models, and the
        parameters per network it holds of the current request's speaker."""
        model = await self.speaker_model() if serve.get_multiplexed_model_id() else None
        parameters = (
            {name: count_parameters(getattr(model.networks, name)) for name in model.networks.components}
            if model is not None
            else {}
        )
        return {
            "resident": list(self.resident),
            "loads": self.loads,
            "evictions": self.evictions,
            "parameters": parameters,
        }


@serve.deployment(
    name="Audio2Expression",
    max_ongoing_requests=4,
    max_queued_requests=32,
    autoscaling_config=stage_autoscaling(2, 2),
    ray_actor_options={"num_cpus": STAGE_CPUS},
)
class Audio2Expression(SpeakerModels):
    """Speech features -> mouth expression per output frame."""

    components = ("audio2expression",)

    def __init__(self, payload: dict[str, Any]):
        self.setup_models(payload)

    async def predict(self, mel: np.ndarray, starts: np.ndarray) -> np.ndarray:
        """Log-mel (M_frames, n_mels) and window starts (N,) -> mouth expression (N, n_mouth)."""
        model = await self.speaker_model()
        return await asyncio.to_thread(
            predict_mouth,
            model.networks.audio2expression,
            mel,
            starts,
            model.audio,
            self.config.dub.inference,
            self.device,
            self.precision,
        )


@serve.deployment(
    name="Smoothing",
    max_ongoing_requests=4,
    max_queued_requests=32,
    autoscaling_config=stage_autoscaling(2, 2),
    ray_actor_options={"num_cpus": STAGE_CPUS},
)
class Smoothing(SpeakerModels):
    """Expression sequence -> the adaptive smoothing weights of its face-shape images."""

    components = ("smoothing",)

    def __init__(self, payload: dict[str, Any]):
        self.setup_models(payload)

    async def weights(self, expression: np.ndarray) -> np.ndarray:
        """Expression (N, E) of a whole output -> per-frame smoothing weights (N, K)."""
        model = await self.speaker_model()
        return await asyncio.to_thread(
            smoothing_weights,
            model.networks.smoothing,
            expression,
            self.config.dub.inference.expression_chunk_frames,
            self.device,
        )


def render_requests(
    renderer, requests: list[tuple], device, precision: Precision | None = None
) -> list[np.ndarray]:
    """Render several callers' windows in as few forward passes as their shapes allow.

    ``requests``: (background (B_i, L, 3, S, S), shape (B_i, L, S, S), audio (B_i, L, W, M) or None,
    warped texture (B_i, L, 3, S, S) or None). Windows of equal length and with the same audio and
    texture presence are stacked along B; each caller gets its own (B_i, L, 3, S, S) back, in order.
    """
    groups: dict[tuple, list[int]] = {}
    for index, (background, _, audio, warped) in enumerate(requests):
        groups.setdefault((background.shape[1:], audio is None, warped is None), []).append(index)
    outputs: list[np.ndarray | None] = [None] * len(requests)
    for members in groups.values():
        background = np.concatenate([requests[i][0] for i in members])  # (sum B_i, L, 3, S, S)
        shape = np.concatenate([requests[i][1] for i in members])  # (sum B_i, L, S, S)
        audio = None if requests[members[0]][2] is None else np.concatenate([requests[i][2] for i in members])
        warped = (
            None if requests[members[0]][3] is None else np.concatenate([requests[i][3] for i in members])
        )
        generated = render_windows(
            renderer, background, shape, audio, device, precision, warped
        )  # (sum B_i, L, 3, S, S)
        offsets = np.cumsum([0] + [len(requests[i][0]) for i in members])
        for position, index in enumerate(members):
            outputs[index] = generated[offsets[position] : offsets[position + 1]]
    return outputs  # type: ignore[return-value]


@serve.deployment(
    name="Renderer",
    max_ongoing_requests=16,  # a batch gathers up to RENDER_MAX_BATCH of these
    max_queued_requests=64,
    autoscaling_config=stage_autoscaling(2, 8),
    ray_actor_options={"num_cpus": RENDERER_CPUS},
)
class Renderer(SpeakerModels):
    """Eroded backgrounds + smoothed shapes (+ audio) -> generated face crops, batched across requests."""

    components = ("renderer",)

    def __init__(self, payload: dict[str, Any]):
        self.setup_models(payload)
        self.batches: list[int] = []  # calls per forward pass of recent batches, for tests and benchmarks

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """``user_config: {max_batch_size, batch_wait_timeout_s}`` from serve/config.yaml."""
        if "max_batch_size" in user_config:
            self.render.set_max_batch_size(int(user_config["max_batch_size"]))
        if "batch_wait_timeout_s" in user_config:
            self.render.set_batch_wait_timeout_s(float(user_config["batch_wait_timeout_s"]))

    @serve.batch(max_batch_size=RENDER_MAX_BATCH, batch_wait_timeout_s=RENDER_BATCH_WAIT_S)
    async def render(self, requests: list[tuple]) -> list[np.ndarray]:
        """Each call: (background, shape, audio, warped) of B_i windows -> generated (B_i, L, 3, S, S) in [-1, 1]."""
        model = await self.speaker_model()  # a batch holds one speaker's calls (Serve splits by model id)
        self.batches = [*self.batches[-99:], len(requests)]
        return await asyncio.to_thread(
            render_requests, model.networks.renderer, requests, self.device, self.precision
        )

    async def texture(self) -> WarpTexture | None:
        """The speaker's texture frame for the warped-texture input (None without ``warped_texture``)."""
        model = await self.speaker_model()
        return model.networks.renderer.warp_source()

    async def batch_sizes(self) -> list[int]:
        return list(self.batches)
