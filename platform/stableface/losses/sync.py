"""A lip-sync loss for audio2expression: the frozen lip-sync expert judges the predicted mouth.

As Wav2Lip's expert discriminator, but on the face model's lips instead of pixels: the predicted
mouth coefficients decode linearly to the 20 iBUG-68 lip points of the canonical mesh
(``canonical + coefficients @ mouth basis``, no rendering), which become the expert's lip features
exactly as tracked landmarks do (:func:`stableface.metrics.lipsync.lip_features`: centred, in
MSI-crop units, the sequence median subtracted; the canonical frame has no head roll). The loss is
the cross-entropy of the expert's choice among the sequence's own audio at offsets -K..K: low when
the lips match their own audio better than the audio a few frames away, i.e. when they are in sync.

Switched on by ``schedule.stage1.sync_weight > 0`` (off by default and in the ``paper`` preset).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from stableface.face.face_model import FaceModel
from stableface.face.ibug import LIPS, MEDIAPIPE_TO_IBUG68, MOUTH_CORNERS
from stableface.metrics.lipsync import FEATURE_SCALE, LEFT_EYE, RIGHT_EYE
from stableface.metrics.msi import MOUTH_WIDTH_FRACTION
from stableface.models.lipsync import LipSyncNet, similarity_scale

DEFAULT_MAX_SHIFT = 6  # audio offsets either side the predicted lips must beat


class ExpressionSyncLoss(nn.Module):
    """Mouth coefficients (B, L, n_mouth) and their audio windows (B, L, W, M) -> a scalar loss."""

    def __init__(self, face_model: FaceModel, expert: LipSyncNet, max_shift: int = DEFAULT_MAX_SHIFT):
        super().__init__()
        lip_vertices = MEDIAPIPE_TO_IBUG68[LIPS]  # (20,) mesh vertex of each iBUG lip point
        where = {int(v): i for i, v in enumerate(face_model.mouth_vertices)}
        rows = np.array([where[int(v)] for v in lip_vertices])  # (20,) index among the mouth vertices
        basis = face_model.mouth_basis.reshape(face_model.n_mouth, -1, 3)[:, rows, :2]  # (n_mouth, 20, 2)
        canonical = face_model.canonical[lip_vertices, :2]  # (20, 2)
        # Level the canonical eye line, as lip_features does per tracked frame (a fixed ~0.3 degrees).
        eyes = face_model.canonical[MEDIAPIPE_TO_IBUG68, :2]  # (68, 2)
        eye_line = eyes[RIGHT_EYE].mean(axis=0) - eyes[LEFT_EYE].mean(axis=0)
        angle = -np.arctan2(eye_line[1], eye_line[0])
        level = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])  # (2, 2)
        canonical, basis = canonical @ level.T, basis @ level.T
        self.corners = tuple(c - LIPS.start for c in MOUTH_CORNERS)  # among the 20 lip points
        self.register_buffer("basis", torch.from_numpy(basis.astype(np.float32)))
        self.register_buffer("canonical", torch.from_numpy(canonical.astype(np.float32)))
        self.max_shift = max_shift
        self.expert = expert.eval()
        for parameter in self.expert.parameters():
            parameter.requires_grad_(False)

    def lip_features(self, mouth: torch.Tensor) -> torch.Tensor:
        """(B, L, n_mouth) -> (B, L, 40), as metrics.lipsync.lip_features does for tracked landmarks."""
        lips = self.canonical + torch.einsum("ble,epc->blpc", mouth, self.basis)  # (B, L, 20, 2)
        left, right = self.corners
        width = torch.linalg.vector_norm(lips[:, :, right] - lips[:, :, left], dim=-1)  # (B, L)
        crop_side = (
            torch.quantile(width, 0.5, dim=1)[:, None, None, None] / MOUTH_WIDTH_FRACTION
        )  # (B, 1, 1, 1)
        shapes = (lips - lips.mean(dim=2, keepdim=True)) / crop_side * FEATURE_SCALE  # (B, L, 20, 2)
        shapes = shapes - torch.quantile(
            shapes, 0.5, dim=1, keepdim=True
        )  # numpy's median (mean of the middle two)
        return shapes.flatten(2)  # (B, L, 40)

    def forward(self, mouth: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        self.expert.eval()  # dropout off: the expert is a fixed judge
        visual, sound = self.expert(self.lip_features(mouth), audio)  # (B, N, D) each, N = L - window + 1
        shift, spans = self.max_shift, visual.shape[1]
        if spans <= 2 * shift:
            raise ValueError(f"sync loss: {spans} spans per sequence, need more than {2 * shift}")
        centre = visual[:, shift : spans - shift]  # (B, C, D) spans with audio at every offset
        offsets = torch.arange(-shift, shift + 1, device=visual.device)  # (2K + 1,)
        index = torch.arange(shift, spans - shift, device=visual.device)[:, None] + offsets  # (C, 2K + 1)
        candidates = sound[:, index]  # (B, C, 2K + 1, D)
        scale = similarity_scale(self.expert.logit_scale)
        logits = scale * torch.einsum("bcd,bckd->bck", centre, candidates)  # (B, C, 2K + 1)
        target = torch.full(logits.shape[:2], shift, dtype=torch.long, device=visual.device)  # offset 0
        return F.cross_entropy(logits.flatten(0, 1), target.flatten())


def stage1_sync_loss(config, face_model: FaceModel) -> ExpressionSyncLoss | None:
    """The loss a :class:`~stableface.training.config.Stage1Config` asks for, or None when it is off."""
    if config.sync_weight <= 0:
        return None
    from stableface.metrics.lipsync import default_weights
    from stableface.models.lipsync import load_lipsync

    expert, _ = load_lipsync(str(config.sync_expert or default_weights()))
    return ExpressionSyncLoss(face_model, expert)
