"""Config dataclasses <-> plain dicts and YAML (checkpoints, manifests, run logs), and result values
-> plain Python values (:func:`plain`).

A leaf module (it imports nothing of stableface), so the model, training and job modules that
save their configs can import it without pulling in the job schemas of :mod:`stableface.config`.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from typing import Any, TypeVar

import numpy as np
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


def plain(value: Any) -> Any:
    """``value`` with numpy, enum and NaN values made plain Python, all the way down.

    Arrays and tuples become lists, numpy scalars their Python value, enum members their value
    and NaN ``None`` (a missing float: JSON has no NaN, Arrow reads None as null); dict keys are
    kept. Anything else is returned as it is, so ``json.dumps`` still refuses what it cannot write.
    """
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, np.ndarray):
        return [plain(item) for item in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
