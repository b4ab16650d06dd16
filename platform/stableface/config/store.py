"""Registering the schemas with Hydra's ConfigStore and composing job configs."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, TypeVar

from omegaconf import OmegaConf

T = TypeVar("T")
CONF_MODULE = "stableface.conf"
HYDRA_VERSION_BASE = "1.3"


def register_configs() -> None:
    """Store every job schema as ``<job>_schema`` so the YAML files can extend it."""
    from hydra.core.config_store import ConfigStore

    # Imported here: job schemas import model and training modules that use to_dict/from_dict.
    from stableface.config.jobs import JOB_CONFIGS

    store = ConfigStore.instance()
    for job_name, schema in JOB_CONFIGS.items():
        store.store(name=f"{job_name}_schema", node=schema)


def compose(job_name: str, overrides: Sequence[str] = ()) -> Any:
    """The typed config object (a dataclass instance) for ``job_name`` with Hydra ``overrides``."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    from stableface.config.jobs import JOB_CONFIGS

    if job_name not in JOB_CONFIGS:
        raise KeyError(f"unknown job config '{job_name}'; known: {sorted(JOB_CONFIGS)}")
    register_configs()
    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    with initialize_config_module(config_module=CONF_MODULE, version_base=HYDRA_VERSION_BASE):
        cfg = hydra_compose(config_name=job_name, overrides=list(overrides))
    return OmegaConf.to_object(cfg)


URI_FIELDS = ("catalog", "compare_with")  # besides every field whose name ends in _uri


def with_absolute_uris(config: T) -> T:
    """A copy of a job config whose local paths in URI fields (``*_uri``, ``catalog``, ``compare_with``)
    are absolute.

    Jobs call it where they start: their Ray workers may run in another directory (Ray Train moves
    each worker into its run's folder), where a relative path would name another file.
    """
    from stableface.io.storage import absolute_uri

    changes = {
        field.name: absolute_uri(value)
        for field in dataclasses.fields(config)  # type: ignore[arg-type]
        if (field.name.endswith("_uri") or field.name in URI_FIELDS)
        and isinstance(value := getattr(config, field.name), str)
        and value
    }
    return dataclasses.replace(config, **changes)  # type: ignore[type-var]


def to_dict(config: Any) -> dict[str, Any]:
    """A plain, JSON/YAML-serialisable dict of a config dataclass."""
    return OmegaConf.to_container(OmegaConf.structured(config), resolve=True)  # type: ignore[return-value]


def from_dict(schema: type[T], data: dict[str, Any]) -> T:
    """Rebuild a config dataclass from :func:`to_dict` output, validating against the schema."""
    if not dataclasses.is_dataclass(schema):
        raise TypeError(f"{schema} is not a dataclass")
    merged = OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.create(data))
    return OmegaConf.to_object(merged)  # type: ignore[return-value]


def to_yaml(config: Any) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(config))
