"""Shape checks whose errors name the tensor and the problem."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from stableface.errors import InputError


class TensorShapeError(InputError, ValueError):
    """A tensor handed to a model does not have the shape the model was built for."""


def check_shape(name: str, tensor: torch.Tensor, expected: Sequence[int | str]) -> None:
    """Raise unless ``tensor.shape`` matches ``expected``; a str entry (``"B"``) matches any size."""
    actual = tuple(tensor.shape)
    wanted = tuple(expected)
    fits = len(actual) == len(wanted) and all(
        isinstance(want, str) or want == have for have, want in zip(actual, wanted, strict=True)
    )
    if not fits:
        pretty = ", ".join(str(dim) for dim in wanted)
        raise TensorShapeError(name, f"expected shape ({pretty}), got {actual}")
