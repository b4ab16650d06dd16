"""The pretrained stage 1 shipped in the package, and where a run's stage 1 starts from.

``stableface/pretrained/`` holds ``audio2expression.pt`` (a models checkpoint: weights, the
ModelConfig they were built with, the training figures), ``face_model.npz`` (the expression basis
its coefficients live in, fitted over every speaker of the shared data) and ``MODEL_CARD.md``.
``stableface pretrain`` regenerates all three (:mod:`stableface.ray_jobs.pretrain`).

A dataset preprocessed with ``face.expression_basis=packaged`` (the default) encodes every speaker's
expression in that basis, so the packaged weights predict coefficients the dataset understands;
stage 1 then starts from them (``schedule.stage1.init=finetune``) or uses them as they are
(``reuse``). A dataset with a basis of its own, or a model preset of other sizes, cannot use them:
that is an error naming the setting to change, never a silent fall-back.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch import nn

from stableface.config import to_dict
from stableface.errors import InputError
from stableface.face.face_model import FaceModel
from stableface.io.storage import Storage
from stableface.models.checkpoint import Checkpoint, read_checkpoint
from stableface.models.config import ModelConfig
from stableface.models.networks import build_audio2expression
from stableface.pretrained import packaged_face_model_uri, packaged_stage1_uri
from stableface.training.config import Stage1Init

BASIS_TOLERANCE = 1e-5  # max |difference| of basis entries that still counts as the same basis


def read_packaged_stage1() -> Checkpoint:
    uri = packaged_stage1_uri()
    if not Path(uri).exists():
        raise InputError(uri, "the package has no pretrained stage 1; run `stableface pretrain`")
    return read_checkpoint(uri, Storage())


def same_basis(a: FaceModel, b: FaceModel) -> bool:
    """Whether two face models code expressions identically (same regions and bases)."""
    return (
        np.array_equal(a.mouth_vertices, b.mouth_vertices)
        and a.mouth_basis.shape == b.mouth_basis.shape
        and float(np.abs(a.mouth_basis - b.mouth_basis).max()) <= BASIS_TOLERANCE
    )


def check_compatible(
    checkpoint: Checkpoint, model_config: ModelConfig, face_model: FaceModel, uri: str
) -> None:
    """Refuse pretrained weights a run cannot use: other network sizes or another expression basis."""
    for part in ("audio2expression", "audio_encoder"):
        if to_dict(getattr(checkpoint.config, part)) != to_dict(getattr(model_config, part)):
            raise InputError(
                uri,
                f"its {part} config differs from this run's model.{part} (pretrained for model=cpu); "
                "use schedule.stage1.init=scratch for other sizes",
            )
    packaged_basis = FaceModel.load(packaged_face_model_uri(), Storage())
    if not same_basis(packaged_basis, face_model):
        raise InputError(
            uri,
            "the dataset's expression basis is not the packaged one the weights predict in: preprocess "
            "with face.expression_basis=packaged (the default), or use schedule.stage1.init=scratch",
        )


def initial_audio2expression(init: Stage1Init, model_config: ModelConfig, face_model: FaceModel) -> nn.Module:
    """A fresh audio2expression for ``scratch``, the packaged weights (checked) otherwise."""
    network = build_audio2expression(model_config)
    if Stage1Init(init) is Stage1Init.scratch:
        return network
    checkpoint = read_packaged_stage1()
    check_compatible(checkpoint, model_config, face_model, packaged_stage1_uri())
    network.load_state_dict(checkpoint.state_dicts["audio2expression"])
    return network
