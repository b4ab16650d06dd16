"""The inner-lip gaps of the face mesh: how far the mouth is open, as vertex pairs of the topology."""

from __future__ import annotations

import numpy as np

# MediaPipe (upper, lower) inner-lip vertices: iBUG 61/67, 62/66 (the middles), 63/65.
INNER_LIP_PAIRS = ((81, 178), (13, 14), (311, 402))
UPPER_INNER_LIP = [upper for upper, _ in INNER_LIP_PAIRS]
LOWER_INNER_LIP = [lower for _, lower in INNER_LIP_PAIRS]


def rest_gaps(identity: np.ndarray) -> np.ndarray:
    """(P, 3) float32 lower - upper inner-lip vertex of a speaker's identity (478, 3) (their mean shape)."""
    return (identity[LOWER_INNER_LIP] - identity[UPPER_INNER_LIP]).astype(np.float32)


def mesh_gaps(meshes: np.ndarray) -> np.ndarray:
    """(T, 478, 3) meshes -> (T, P) inner-lip distances, in the meshes' units."""
    return np.linalg.norm(meshes[:, LOWER_INNER_LIP] - meshes[:, UPPER_INNER_LIP], axis=-1)
