"""Typed configuration: dataclass schemas composed by Hydra with the YAML presets in ``stableface.conf``.

- :func:`compose` builds a job's config object from its name and ``key=value`` overrides
  (what the ``stableface`` CLI and the tests use);
- ``jobs/*.py`` (what ``ray job submit`` runs) call the CLI, so they take the same overrides;
- :func:`to_dict` / :func:`from_dict` round-trip configs through checkpoints and manifests;
- :func:`with_absolute_uris`: what every job does first, so its workers find the same local files.
"""

from stableface.config.jobs import JOB_CONFIGS
from stableface.config.store import compose, register_configs, show, with_absolute_uris
from stableface.utils.serialise import from_dict, to_dict, to_yaml

__all__ = [
    "JOB_CONFIGS",
    "compose",
    "from_dict",
    "register_configs",
    "show",
    "to_dict",
    "to_yaml",
    "with_absolute_uris",
]
