"""Registering the schemas with Hydra's ConfigStore and composing job configs."""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Sequence
from typing import Any, TypeVar

from omegaconf import OmegaConf

from stableface.errors import ConfigError

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
    """The typed config object (a dataclass instance) for ``job_name`` with Hydra ``overrides``.

    Raises :class:`~stableface.errors.ConfigError` naming the setting and what it expects.
    """
    from omegaconf.errors import MissingMandatoryValue

    node = _compose_node(job_name, overrides)
    missing = sorted(OmegaConf.missing_keys(node))
    if missing:
        raise _missing_settings(job_name, missing)
    try:
        return OmegaConf.to_object(node)
    except MissingMandatoryValue as error:  # a missing value inside a list or dict node
        raise _missing_settings(job_name, [str(error.full_key)]) from error


def show(job_name: str, overrides: Sequence[str] = ()) -> str:
    """The composed config of ``job_name`` as YAML, required settings not yet given shown as ``???``."""
    node = _compose_node(job_name, overrides)
    text = OmegaConf.to_yaml(node)
    missing = sorted(OmegaConf.missing_keys(node))
    if missing:
        text += f"# ??? = required: set {', '.join(f'{key}=...' for key in missing)}\n"
    return text


def _compose_node(job_name: str, overrides: Sequence[str]) -> Any:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from stableface.config.jobs import JOB_CONFIGS

    if job_name not in JOB_CONFIGS:
        raise ConfigError(job_name, f"no such job; known: {', '.join(sorted(JOB_CONFIGS))}")
    register_configs()
    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module=CONF_MODULE, version_base=HYDRA_VERSION_BASE):
            return hydra_compose(config_name=job_name, overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as error:
        raise _override_error(job_name, overrides, error) from error


def _missing_settings(job_name: str, keys: Sequence[str]) -> ConfigError:
    settings = " ".join(f"{key}=..." for key in keys)
    return ConfigError(
        f"stableface {job_name}",
        f"required setting{'s' if len(keys) > 1 else ''} missing: {', '.join(keys)} (give {settings};"
        f" `stableface show {job_name}` lists every setting)",
    )


def _override_error(job_name: str, overrides: Sequence[str], error: Exception) -> ConfigError:
    """One line for what Hydra and OmegaConf report as chained exceptions over several lines."""
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

    cause = error.__cause__ if error.__cause__ is not None else error
    key = str(getattr(cause, "full_key", "") or "")
    if isinstance(cause, (ConfigAttributeError, ConfigKeyError)) and key:
        return _unknown_setting(job_name, key)
    if isinstance(cause, ValidationError) and key:
        return ConfigError(key, str(cause).splitlines()[0])
    message = str(error).splitlines()[0]
    group = re.match(r"Could not override '([\w.]+)'\. No match in the defaults list", message)
    if group:
        return _unknown_setting(job_name, group[1])
    unknown_option = re.match(r"In '[\w/]+': Could not find '(\w+)/(\w+)'", message)
    if unknown_option:
        name, choice = unknown_option.groups()
        return ConfigError(f"{name}={choice}", f"no such preset; choices: {', '.join(_group_choices(name))}")
    parse = re.match(r"Error parsing override '(.*)'", message)
    if parse:
        return ConfigError(parse[1], "not an override; expected key=value")
    return ConfigError(f"stableface {job_name} {' '.join(overrides)}".strip(), message)


def _unknown_setting(job_name: str, key: str) -> ConfigError:
    parent, _, name = key.rpartition(".")
    siblings = _setting_names(job_name, parent)
    close = difflib.get_close_matches(name, siblings, n=1, cutoff=0.6)
    if close:
        hint = f"did you mean '{'.'.join(filter(None, (parent, close[0])))}'?"
    else:
        hint = f"settings here: {', '.join(siblings)}"
    return ConfigError(key, f"no such setting in the {job_name} config; {hint}")


def _setting_names(job_name: str, parent: str) -> list[str]:
    from stableface.config.jobs import JOB_CONFIGS

    node = OmegaConf.structured(JOB_CONFIGS[job_name])
    section = OmegaConf.select(node, parent, throw_on_missing=False) if parent else node
    return sorted(section.keys()) if OmegaConf.is_dict(section) else []


def _group_choices(group: str) -> list[str]:
    from importlib.resources import files

    folder = files(CONF_MODULE).joinpath(group)
    return sorted(item.name.removesuffix(".yaml") for item in folder.iterdir() if item.name.endswith(".yaml"))


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
    """A plain, JSON/YAML-serialisable dict of a config dataclass (enums as their names)."""
    return OmegaConf.to_container(OmegaConf.structured(config), resolve=True, enum_to_str=True)  # type: ignore[return-value]


def from_dict(schema: type[T], data: dict[str, Any]) -> T:
    """Rebuild a config dataclass from :func:`to_dict` output, validating against the schema."""
    if not dataclasses.is_dataclass(schema):
        raise TypeError(f"{schema} is not a dataclass")
    merged = OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.create(data))
    return OmegaConf.to_object(merged)  # type: ignore[return-value]


def to_yaml(config: Any) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(config))
