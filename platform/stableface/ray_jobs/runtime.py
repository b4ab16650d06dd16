"""Connecting to Ray: the embedded local Ray by default, a cluster when an address is given."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

from stableface.config.jobs import RayConfig
from stableface.errors import StorageUnavailable
from stableface.utils.logging import ray_log_level

logger = logging.getLogger(__name__)

# Ray Data fails a whole dataset at the first actor that dies before initialising (its default
# budget is 0). An actor process can die in its constructor for passing reasons (an OOM kill while
# it loads a model on a busy node): up to this many in a row are replaced; a constructor that
# always fails still fails the job.
ACTOR_INIT_DEATH_BUDGET = 4


def ensure_ray(config: RayConfig) -> None:
    """Start or join Ray once per process.

    Inside a running Ray job or test session Ray is already up and is reused. Otherwise
    ``config.address`` (or ``$RAY_ADDRESS``, as ``ray job submit`` sets it) joins a cluster, and
    with neither a local Ray is started with ``num_cpus``/``num_gpus``.
    """
    import ray
    from ray.data import DataContext

    if not ray.is_initialized():
        _init(config)
    context = DataContext.get_current()
    context.max_consecutive_actor_init_deaths = ACTOR_INIT_DEATH_BUDGET
    # A UDF's own exception, not a UserCodeException wrapping it: the wrapper's cause does not
    # survive pickling, and a StorageUnavailable must reach the driver as itself (outages_surface).
    context.raise_original_map_exception = True


def _init(config: RayConfig) -> None:
    import ray

    address = config.address or os.environ.get("RAY_ADDRESS")
    if address:
        logger.info("joining Ray cluster at %s", address)
        ray.init(
            address=address, namespace=config.namespace, log_to_driver=True, logging_level=ray_log_level()
        )
        return
    logger.info("starting embedded local Ray (num_cpus=%s)", config.num_cpus or "all")
    ray.init(
        num_cpus=config.num_cpus,
        num_gpus=config.num_gpus,
        include_dashboard=config.include_dashboard,
        namespace=config.namespace,
        log_to_driver=True,
        # Ray core's start-up lines (the local instance, its dashboard) only with --verbose.
        logging_level=ray_log_level(),
    )


def node_id() -> str:
    """The Ray node this code runs on ('local' outside Ray), recorded in manifests."""
    import ray

    if not ray.is_initialized():
        return "local"
    return ray.get_runtime_context().get_node_id()


def find_outage(error: BaseException) -> StorageUnavailable | None:
    """The :class:`StorageUnavailable` behind an error Ray raised (a task's or an actor's), if any."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, StorageUnavailable):
            return StorageUnavailable(current.uri, current.problem)
        pending.extend([getattr(current, "cause", None), current.__cause__, current.__context__])
    return None


@contextlib.contextmanager
def outages_surface() -> Iterator[None]:
    """Re-raise a store outage that Ray wrapped in its own errors as the plain StorageUnavailable."""
    try:
        yield
    except StorageUnavailable:
        raise
    except Exception as error:
        outage = find_outage(error)
        if outage is None:
            raise
        raise outage from error
