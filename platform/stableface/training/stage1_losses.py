"""Stage-1 loss terms, one function each, so a further term (a lip-sync expert's) slots in beside them.

Why more than L1 on the coefficients: a regression loss alone is minimised by the conditional mean,
and for speech the mean mouth is a half-open, barely moving one (the classic under-articulation of
audio-to-motion models: held-out opening amplitude 0.4x the real one). The terms here pay for what
the mean gives away:

- ``opening``: L1 on the inner-lip gaps of the decoded mesh (three vertical lip distances), the
  quantity a viewer reads off a mouth, in canonical units (1 = the outer eye-corner distance);
- ``amplitude``: per sequence and lip pair, |std over time of the predicted gap - the real one's|:
  a prediction that regresses to the mean has a small std and pays even when its mean is right;
- ``velocity`` / ``acceleration``: L1 on the first and second differences of the coefficients, so
  the predicted trajectory moves like real speech;
- ``lip_motion``: per sequence, lip landmark (iBUG 48-67 on the mesh) and axis, |std over time of
  the predicted acceleration - the real one's|: lip MSI is the reciprocal of exactly that variance,
  and a mean-regressed trajectory is far too smooth (MSI 2-3x the real one's) even when its
  per-frame accelerations are penalised.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from stableface.face.face_model import FaceModel
from stableface.face.ibug import LIPS, MEDIAPIPE_TO_IBUG68
from stableface.face.lips import LOWER_INNER_LIP, UPPER_INNER_LIP


@dataclass
class LipGeometry:
    """How mouth coefficients move the inner lips apart, in the face model's canonical frame."""

    opening_basis: torch.Tensor  # (n_mouth, P, 3): d(lower - upper vertex) / d(coefficient)
    lip_basis: torch.Tensor  # (n_mouth, 20, 3): d(lip landmark vertex) / d(coefficient), iBUG 48-67

    @classmethod
    def from_face_model(cls, face_model: FaceModel) -> LipGeometry:
        position = {int(v): i for i, v in enumerate(face_model.mouth_vertices)}
        lips = [int(v) for v in MEDIAPIPE_TO_IBUG68[LIPS]]
        missing = [v for v in UPPER_INNER_LIP + LOWER_INNER_LIP + lips if v not in position]
        if missing:
            raise ValueError(f"inner-lip vertices {missing} are not in the face model's mouth region")
        basis = face_model.mouth_basis.reshape(face_model.n_mouth, -1, 3)  # (n_mouth, M, 3)
        upper = [position[v] for v in UPPER_INNER_LIP]
        lower = [position[v] for v in LOWER_INNER_LIP]
        opening = basis[:, lower] - basis[:, upper]  # (n_mouth, P, 3)
        lip = basis[:, [position[v] for v in lips]]  # (n_mouth, 20, 3)
        return cls(
            torch.from_numpy(np.ascontiguousarray(opening, dtype=np.float32)),
            torch.from_numpy(np.ascontiguousarray(lip, dtype=np.float32)),
        )

    def to(self, device: torch.device) -> LipGeometry:
        return LipGeometry(self.opening_basis.to(device), self.lip_basis.to(device))


def lip_gaps(mouth: torch.Tensor, rest: torch.Tensor, geometry: LipGeometry) -> torch.Tensor:
    """(B, L, n_mouth) coefficients, (B, P, 3) identity gaps -> (B, L, P) inner-lip distances."""
    offsets = torch.einsum("bln,npc->blpc", mouth, geometry.opening_basis)  # (B, L, P, 3)
    return (rest[:, None] + offsets).norm(dim=-1)  # (B, L, P)


def coefficient_l1(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B, L, n) -> mean absolute coefficient error."""
    return (predicted - target).abs().mean()


def velocity_l1(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B, L, n) -> mean |first difference over time of predicted - of target|."""
    return (predicted.diff(dim=1) - target.diff(dim=1)).abs().mean()  # over (B, L-1, n)


def acceleration_l1(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B, L, n) -> mean |second difference over time of predicted - of target|."""
    return (predicted.diff(n=2, dim=1) - target.diff(n=2, dim=1)).abs().mean()  # over (B, L-2, n)


def opening_l1(predicted_gaps: torch.Tensor, real_gaps: torch.Tensor) -> torch.Tensor:
    """(B, L, P) inner-lip gaps -> mean absolute gap error."""
    return (predicted_gaps - real_gaps).abs().mean()


def amplitude_l1(predicted_gaps: torch.Tensor, real_gaps: torch.Tensor) -> torch.Tensor:
    """(B, L, P) gaps -> mean over sequences and lip pairs of |std_t(predicted) - std_t(real)|."""
    return (predicted_gaps.std(dim=1) - real_gaps.std(dim=1)).abs().mean()  # over (B, P)


def lip_motion_l1(predicted: torch.Tensor, target: torch.Tensor, geometry: LipGeometry) -> torch.Tensor:
    """(B, L, n_mouth) coefficients -> mean over sequences, lip landmarks and axes of
    |std_t(second difference of the predicted lip vertex) - the real one's| (identity drops out)."""
    predicted_lips = torch.einsum("bln,nvc->blvc", predicted, geometry.lip_basis)  # (B, L, 20, 3)
    real_lips = torch.einsum("bln,nvc->blvc", target, geometry.lip_basis)  # (B, L, 20, 3)
    predicted_std = predicted_lips.diff(n=2, dim=1).std(dim=1)  # (B, 20, 3)
    real_std = real_lips.diff(n=2, dim=1).std(dim=1)  # (B, 20, 3)
    return (predicted_std - real_std).abs().mean()
