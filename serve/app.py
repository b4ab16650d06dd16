"""The StableFace Serve application: the deployment graph behind the HTTP ingress.

```
HTTP -> Ingress (FastAPI) -> Compositor --(speaker = multiplexed model id)--> Audio2Expression
             |                    (source, compositing,      \\-----------------> Smoothing
             |                     mp4 encoding)              \\----------------> Renderer (@serve.batch)
             \\-> JobRunner -> Ray tasks: the bulk dub of one job (status + video in the job store)
```

- ``serve run serve/config.yaml`` (or ``serve deploy``): deployment sizes and autoscaling from the
  YAML, the service settings from its ``args`` (keys of ``stableface show serve``);
- ``serve run serve.app:app [key=value ...]``: the decorators' defaults;
- ``stableface serve [key=value ...]``: the same app on an embedded local Ray.

``app`` is the application builder (Serve calls it with the ``args``); tests and benchmarks call
:func:`build_graph` with a config object and per-deployment option overrides.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ray.serve import Application

from serve.compositor import Compositor
from serve.ingress import Ingress, JobRunner
from serve.settings import load_settings, to_payload
from serve.stages import Audio2Expression, Renderer, Smoothing
from stableface.config.jobs import ServeConfig

APP_NAME = "stableface"
DEPLOYMENTS = {
    "Ingress": Ingress,
    "Compositor": Compositor,
    "Audio2Expression": Audio2Expression,
    "Smoothing": Smoothing,
    "Renderer": Renderer,
    "JobRunner": JobRunner,
}


def build_graph(config: ServeConfig, options: Mapping[str, Mapping[str, Any]] | None = None) -> Application:
    """The bound application; ``options`` maps a deployment name to ``Deployment.options`` overrides."""
    options = options or {}
    unknown = sorted(set(options) - set(DEPLOYMENTS))
    if unknown:
        raise KeyError(f"unknown deployments {unknown}; known: {sorted(DEPLOYMENTS)}")

    def deployment(name: str):
        return DEPLOYMENTS[name].options(**options[name]) if name in options else DEPLOYMENTS[name]

    payload = to_payload(config)
    compositor = deployment("Compositor").bind(
        payload,
        deployment("Audio2Expression").bind(payload),
        deployment("Smoothing").bind(payload),
        deployment("Renderer").bind(payload),
    )
    return deployment("Ingress").bind(payload, compositor, deployment("JobRunner").bind(payload))


def build_app(args: dict[str, Any]) -> Application:
    """Serve's application builder: ``args`` (from the config file or the command line) over the ``serve`` config."""
    return build_graph(load_settings(args))


app = build_app  # `serve.app:app`, the import path serve/config.yaml and the RayService use
