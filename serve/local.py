"""``stableface serve [key=value ...]``: the application on the embedded local Ray (or ``ray.address``).

The deployments keep their decorator defaults (sized for a 2-core machine); for other sizes and
autoscaling use ``serve run serve/config.yaml``. Runs until Ctrl-C (SIGINT) or SIGTERM (what
Kubernetes and ``kill`` send), then shuts the application down, like ``serve run`` does, and exits 0.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from ray import serve

from serve.app import APP_NAME, build_graph
from serve.settings import check_settings
from stableface.config.jobs import ServeConfig
from stableface.ray_jobs.runtime import ensure_ray

logger = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def stop_requested() -> Iterator[threading.Event]:
    """An event set by the first SIGINT or SIGTERM while the block runs (a second one stops at once)."""
    stop = threading.Event()
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}

    def on_signal(number: int, _frame) -> None:
        if stop.is_set():
            raise KeyboardInterrupt  # the user insists: stop without waiting for the shutdown
        logger.info("%s received: shutting the application down", signal.Signals(number).name)
        stop.set()

    for sig in STOP_SIGNALS:
        signal.signal(sig, on_signal)
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run(config: ServeConfig) -> None:
    check_settings(config)
    with stop_requested() as stop:
        ensure_ray(config.ray)
        serve.start(http_options={"host": config.host, "port": config.port})
        try:
            serve.run(build_graph(config), name=APP_NAME, route_prefix="/")
            if not stop.is_set():
                logger.info(
                    "serving on http://%s:%d (API docs at /docs); Ctrl-C stops", config.host, config.port
                )
            while not stop.wait(timeout=1.0):  # a timed wait returns to the interpreter for signals
                pass
        finally:
            serve.shutdown()
    logger.info("stopped: the application and its replicas are shut down")
