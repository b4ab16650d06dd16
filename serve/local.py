"""``stableface serve [key=value ...]``: the application on the embedded local Ray (or ``ray.address``).

The deployments keep their decorator defaults (sized for a 2-core machine); for other sizes and
autoscaling use ``serve run serve/config.yaml``. Blocks until interrupted (Ctrl-C).
"""

from __future__ import annotations

import logging

from ray import serve

from serve.app import APP_NAME, build_graph
from serve.settings import check_settings
from stableface.config.jobs import ServeConfig
from stableface.ray_jobs.runtime import ensure_ray

logger = logging.getLogger(__name__)


def run(config: ServeConfig) -> None:
    check_settings(config)
    ensure_ray(config.ray)
    serve.start(http_options={"host": config.host, "port": config.port})
    logger.info("serving on http://%s:%d (API docs at /docs)", config.host, config.port)
    serve.run(build_graph(config), name=APP_NAME, route_prefix="/", blocking=True)
