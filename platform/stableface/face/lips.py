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


def closed_mouth(face_model, identity: np.ndarray) -> np.ndarray:
    """(n_mouth,) float32 mouth coefficients that close the inner lips of ``identity``: the
    least-norm solution of rest gaps + opening basis @ c = 0 (lips touching, everything else
    moved as little as the basis allows)."""
    position = {int(v): i for i, v in enumerate(face_model.mouth_vertices)}
    basis = face_model.mouth_basis.reshape(face_model.n_mouth, -1, 3)  # (n_mouth, M, 3)
    opening = (
        basis[:, [position[v] for v in LOWER_INNER_LIP]] - basis[:, [position[v] for v in UPPER_INNER_LIP]]
    )
    system = opening.reshape(face_model.n_mouth, -1).T  # (3P, n_mouth)
    solution, *_ = np.linalg.lstsq(system, -rest_gaps(identity).reshape(-1), rcond=None)
    return solution.astype(np.float32)
