"""The service's settings: the ``serve`` job config (``stableface show serve``) plus the app's ``args``.

``serve/config.yaml`` passes ``args`` (nested keys, or dotted ones as ``serve run serve.app:app
limits.max_sync_seconds=5`` gives them); they are merged over the composed ``serve`` config and
checked against its schema, so a misspelt key fails at deploy time, not on the first request.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from stableface.config import compose, from_dict, to_dict, with_absolute_uris
from stableface.config.jobs import ServeConfig
from stableface.errors import InputError


def load_settings(args: Mapping[str, Any] | None = None) -> ServeConfig:
    """The composed ``serve`` config with ``args`` merged over it (nested dicts or dotted keys).

    Local store paths come back absolute, resolved where the app is built (``serve run``'s folder,
    or the working_dir of ``serve deploy``), since replicas may run in other folders.
    """
    base = OmegaConf.structured(compose("serve"))
    nested = {key: value for key, value in (args or {}).items() if "." not in str(key)}
    dotted = [f"{key}={value}" for key, value in (args or {}).items() if "." in str(key)]
    try:
        merged = OmegaConf.merge(base, OmegaConf.create(nested), OmegaConf.from_dotlist(dotted))
    except (OmegaConfBaseException, ValueError) as error:
        raise InputError("serve args", str(error).splitlines()[0]) from error
    config: ServeConfig = OmegaConf.to_object(merged)  # type: ignore[assignment]
    check_settings(config)
    return with_absolute_uris(config)


def check_settings(config: ServeConfig) -> None:
    """Raise :class:`InputError` naming the key of the first value the service cannot run with."""
    limits = config.limits
    for name, value in (
        ("limits.max_upload_bytes", limits.max_upload_bytes),
        ("limits.max_sync_seconds", limits.max_sync_seconds),
        ("limits.max_async_seconds", limits.max_async_seconds),
        ("limits.request_timeout_s", limits.request_timeout_s),
        ("max_models_per_replica", config.max_models_per_replica),
        ("max_sources_per_replica", config.max_sources_per_replica),
        ("callbacks.attempts", config.callbacks.attempts),
        ("callbacks.timeout_s", config.callbacks.timeout_s),
    ):
        if value <= 0:
            raise InputError(name, f"must be > 0, got {value}")
    if config.callbacks.backoff_s < 0:
        raise InputError("callbacks.backoff_s", f"must be >= 0, got {config.callbacks.backoff_s}")
    if not limits.content_types:
        raise InputError("limits.content_types", "is empty: no upload could ever be accepted")
    for name in ("models_uri", "sources_uri", "jobs_uri"):
        if not str(getattr(config, name)).strip():
            raise InputError(name, "is empty")


def to_payload(config: ServeConfig) -> dict[str, Any]:
    """A plain dict that travels to the replicas as their constructor argument."""
    return to_dict(config)


def from_payload(payload: Mapping[str, Any]) -> ServeConfig:
    return from_dict(ServeConfig, dict(payload))


def resolve_api_key(config: ServeConfig, environ: Mapping[str, str] | None = None) -> str | None:
    """The bearer token requests must carry: ``api_key`` if set, else ``$<api_key_env>``; None = open."""
    environ = os.environ if environ is None else environ
    key = config.api_key if config.api_key else environ.get(config.api_key_env, "")
    return key.strip() or None
