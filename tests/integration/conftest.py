"""One local Ray runtime shared by the integration tests of a session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def ray_local():
    """The embedded local Ray (2 CPUs), started once; jobs' ``ensure_ray`` reuses it."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, namespace="stableface-tests", log_to_driver=False)
    yield ray
    ray.shutdown()
