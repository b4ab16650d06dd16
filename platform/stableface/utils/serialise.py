"""Config dataclasses <-> plain dicts and YAML (checkpoints, manifests, run logs).

A leaf module (it imports nothing of stableface), so the model, training and job modules that
save their configs can import it without pulling in the job schemas of :mod:`stableface.config`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from omegaconf import OmegaConf

T = TypeVar("T")


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
