"""Connecting to Ray: the embedded local Ray by default, a cluster when an address is given."""

from __future__ import annotations

import logging
import os

from stableface.config.jobs import RayConfig

logger = logging.getLogger(__name__)


def ensure_ray(config: RayConfig) -> None:
    """Start or join Ray once per process.

    Inside a running Ray job or test session Ray is already up and is reused. Otherwise
    ``config.address`` (or ``$RAY_ADDRESS``, as ``ray job submit`` sets it) joins a cluster, and
    with neither a local Ray is started with ``num_cpus``/``num_gpus``.
    """
    import ray

    if ray.is_initialized():
        return
    address = config.address or os.environ.get("RAY_ADDRESS")
    if address:
        logger.info("joining Ray cluster at %s", address)
        ray.init(address=address, namespace=config.namespace, log_to_driver=True)
        return
    logger.info("starting embedded local Ray (num_cpus=%s)", config.num_cpus or "all")
    ray.init(
        num_cpus=config.num_cpus,
        num_gpus=config.num_gpus,
        include_dashboard=config.include_dashboard,
        namespace=config.namespace,
        log_to_driver=True,
    )


def node_id() -> str:
    """The Ray node this code runs on ('local' outside Ray), recorded in manifests."""
    import ray

    if not ray.is_initialized():
        return "local"
    return ray.get_runtime_context().get_node_id()
