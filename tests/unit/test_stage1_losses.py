"""Stage-1 articulation terms against an independent numpy computation on decoded meshes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stableface.face.config import FaceConfig
from stableface.face.face_model import FaceModel
from stableface.face.ibug import MEDIAPIPE_TO_IBUG68
from stableface.face.lips import LOWER_INNER_LIP, UPPER_INNER_LIP, rest_gaps
from stableface.training.config import Stage1Config
from stableface.training.stage1 import mouth_loss
from stableface.training.stage1_losses import LipGeometry, lip_gaps

B, L = 3, 10


@pytest.fixture(scope="module")
def face_model() -> FaceModel:
    """A basis fitted for real on synthetic speakers: canonical mesh + random displacements."""
    rng = np.random.default_rng(0)
    base = FaceModel.from_assets(FaceConfig(min_fit_frames=50))
    speakers = [
        base.canonical + 0.02 * rng.standard_normal((60, 478, 3)).astype(np.float32) for _ in range(2)
    ]
    return base.fit(speakers)


def decoded(face_model: FaceModel, identity: np.ndarray, mouth: np.ndarray) -> np.ndarray:
    """(L, n_mouth) -> (L, 478, 3) meshes (upper expression zero)."""
    expression = np.zeros((len(mouth), face_model.expression_dim), np.float32)
    expression[:, face_model.mouth_slice] = mouth
    return face_model.decode(identity, expression)


def numpy_gaps(face_model: FaceModel, identity: np.ndarray, mouth: np.ndarray) -> np.ndarray:
    """(L, n_mouth) -> (L, P) inner-lip distances of the decoded meshes."""
    mesh = decoded(face_model, identity, mouth)  # (L, 478, 3)
    return np.linalg.norm(mesh[:, LOWER_INNER_LIP] - mesh[:, UPPER_INNER_LIP], axis=-1)


def numpy_lip_acceleration_std(face_model: FaceModel, identity: np.ndarray, mouth: np.ndarray) -> np.ndarray:
    """(L, n_mouth) -> (20, 3) std over time of the iBUG 48-67 lip vertices' second differences."""
    lips = decoded(face_model, identity, mouth)[:, MEDIAPIPE_TO_IBUG68[48:68]]  # (L, 20, 3)
    return np.diff(lips, n=2, axis=0).std(axis=0, ddof=1)


def test_terms_match_numpy_on_decoded_meshes(face_model):
    rng = np.random.default_rng(1)
    identities = [
        face_model.canonical + 0.01 * rng.standard_normal((478, 3)).astype(np.float32) for _ in range(B)
    ]
    predicted = (0.05 * rng.standard_normal((B, L, face_model.n_mouth))).astype(np.float32)
    target = (0.05 * rng.standard_normal((B, L, face_model.n_mouth))).astype(np.float32)
    config = Stage1Config(
        velocity_weight=0.5,
        acceleration_weight=2.0,
        opening_weight=3.0,
        amplitude_weight=4.0,
        lip_motion_weight=5.0,
    )
    rest = torch.from_numpy(np.stack([rest_gaps(i) for i in identities]))  # (B, P, 3)
    terms = mouth_loss(
        torch.from_numpy(predicted),
        torch.from_numpy(target),
        config,
        LipGeometry.from_face_model(face_model),
        rest,
    )

    pred_gaps = np.stack([numpy_gaps(face_model, i, p) for i, p in zip(identities, predicted, strict=True)])
    real_gaps = np.stack([numpy_gaps(face_model, i, t) for i, t in zip(identities, target, strict=True)])
    expected = {
        "l1": np.abs(predicted - target).mean(),
        "velocity": np.abs(np.diff(predicted, axis=1) - np.diff(target, axis=1)).mean(),
        "acceleration": np.abs(np.diff(predicted, n=2, axis=1) - np.diff(target, n=2, axis=1)).mean(),
        "opening": np.abs(pred_gaps - real_gaps).mean(),
        "amplitude": np.abs(pred_gaps.std(axis=1, ddof=1) - real_gaps.std(axis=1, ddof=1)).mean(),
        "lip_motion": np.mean(
            [
                np.abs(
                    numpy_lip_acceleration_std(face_model, i, p)
                    - numpy_lip_acceleration_std(face_model, i, t)
                )
                for i, p, t in zip(identities, predicted, target, strict=True)
            ]
        ),
    }
    for name, value in expected.items():
        assert float(terms[name]) == pytest.approx(float(value), rel=1e-4, abs=1e-7), name
    total = expected["l1"] + 0.5 * expected["velocity"] + 2 * expected["acceleration"]
    total += 3 * expected["opening"] + 4 * expected["amplitude"] + 5 * expected["lip_motion"]
    assert float(terms["total"]) == pytest.approx(float(total), rel=1e-4)


def test_switched_off_terms_are_absent_and_mesh_terms_need_geometry(face_model):
    predicted, target = torch.zeros(B, L, face_model.n_mouth), torch.ones(B, L, face_model.n_mouth)
    terms = mouth_loss(predicted, target, Stage1Config())
    assert set(terms) == {"l1", "velocity", "total"}
    assert float(terms["total"]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="lip geometry"):
        mouth_loss(predicted, target, Stage1Config(lip_motion_weight=1.0))


def test_amplitude_term_pays_for_a_mean_regressed_mouth(face_model):
    """A prediction with the right mean gap but no motion pays the amplitude term; the real one does not."""
    geometry = LipGeometry.from_face_model(face_model)
    rest = torch.from_numpy(rest_gaps(face_model.canonical))[None]  # (1, P, 3)
    direction = geometry.opening_basis[:, 1, 1]  # (n_mouth,) how each coefficient opens the middle pair
    moving = torch.sin(torch.linspace(0, 6, L))[None, :, None] * direction / direction.norm() * 0.05
    still = moving.mean(dim=1, keepdim=True).expand_as(moving)
    config = Stage1Config(opening_weight=1.0, amplitude_weight=1.0)
    assert float(mouth_loss(moving, moving, config, geometry, rest)["amplitude"]) == pytest.approx(
        0.0, abs=1e-7
    )
    assert float(mouth_loss(still, moving, config, geometry, rest)["amplitude"]) > 1e-3
    gaps = lip_gaps(moving, rest, geometry)  # (1, L, P)
    assert float(gaps[0, :, 1].std()) > 1e-3
