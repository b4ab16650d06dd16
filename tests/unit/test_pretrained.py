"""The pretrained stage 1 shipped in the package: it loads, it is what the cpu preset builds, it is small."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stableface.config import to_dict
from stableface.errors import InputError
from stableface.face.config import FaceConfig
from stableface.face.face_model import FaceModel
from stableface.io.storage import Storage
from stableface.models.config import compose_model_config
from stableface.pretrained import MODEL_CARD_FILE, packaged_dir, packaged_face_model_uri, packaged_stage1_uri
from stableface.training.config import Stage1Init
from stableface.training.pretrained import initial_audio2expression, read_packaged_stage1

MAX_BYTES = 20 * 1024 * 1024


def test_shipped_stage1_loads_and_matches_the_cpu_preset():
    assert Path(packaged_stage1_uri()).stat().st_size <= MAX_BYTES
    checkpoint = read_packaged_stage1()
    cpu = compose_model_config("cpu")
    assert to_dict(checkpoint.config.audio2expression) == to_dict(cpu.audio2expression)
    assert to_dict(checkpoint.config.audio_encoder) == to_dict(cpu.audio_encoder)
    assert checkpoint.config.audio2expression.utterance_norm
    face_model = FaceModel.load(packaged_face_model_uri(), Storage())
    assert face_model.n_mouth == checkpoint.config.audio2expression.mouth_dim
    assert checkpoint.extra["steps"] > 0 and "heldout_speakers" in checkpoint.extra["heldout"]
    assert "## Held-out figures" in (packaged_dir() / MODEL_CARD_FILE).read_text()
    network = initial_audio2expression(Stage1Init.reuse, cpu, face_model)
    for name, value in network.state_dict().items():
        assert np.array_equal(value.numpy(), checkpoint.state_dicts["audio2expression"][name].numpy()), name


def test_pretrained_weights_refuse_another_basis_or_size():
    packaged = FaceModel.load(packaged_face_model_uri(), Storage())
    rng = np.random.default_rng(0)
    base = FaceModel.from_assets(FaceConfig(min_fit_frames=50))
    other = base.fit([base.canonical + 0.02 * rng.standard_normal((60, 478, 3)).astype(np.float32)])
    with pytest.raises(InputError, match="expression basis"):
        initial_audio2expression(Stage1Init.finetune, compose_model_config("cpu"), other)
    with pytest.raises(InputError, match="init=scratch"):
        initial_audio2expression(Stage1Init.finetune, compose_model_config("tiny"), packaged)
    initial_audio2expression(Stage1Init.scratch, compose_model_config("tiny"), other)  # scratch needs neither


def test_preprocess_codes_new_datasets_in_the_packaged_basis(tmp_path):
    from stableface.config import compose
    from stableface.data.layout import DatasetLayout
    from stableface.data.speakers import fit_or_load_face_model

    storage = Storage()
    layout = DatasetLayout(str(tmp_path / "packaged"))
    cfg = compose("preprocess", ["catalog=unused", f"dataset_uri={layout.root}"])
    assert fit_or_load_face_model([], cfg, storage, layout) == (layout.face_model, "")
    assert Path(layout.face_model).read_bytes() == Path(packaged_face_model_uri()).read_bytes()
    fit_layout = DatasetLayout(str(tmp_path / "fit"))
    fit_cfg = compose(
        "preprocess", ["catalog=unused", f"dataset_uri={fit_layout.root}", "expression_basis=fit"]
    )
    uri, reason = fit_or_load_face_model([], fit_cfg, storage, fit_layout)  # no speakers to fit on
    assert uri is None and "could not be fitted" in reason
    other = DatasetLayout(str(tmp_path / "other"))
    other_cfg = compose(
        "preprocess", ["catalog=unused", f"dataset_uri={other.root}", "face.n_mouth_components=16"]
    )
    with pytest.raises(InputError, match="packaged basis"):
        fit_or_load_face_model([], other_cfg, storage, other)
