"""The end product of training: a speaker model directory that loads with one call and says what it is."""

from __future__ import annotations

import numpy as np
import torch

from stableface.audio.features import AudioFeatureConfig
from stableface.data.layout import DatasetLayout
from stableface.face.face_model import FaceModel
from stableface.io.storage import Storage, join
from stableface.models import build_models, compose_model_config
from stableface.speaker_model import SpeakerModel
from stableface.training.export import SUMMARY_FILE, export_speaker_model


def test_exported_weights_and_summary_load_back_exactly(grid_dataset, tmp_path):
    storage, layout = Storage(), DatasetLayout(grid_dataset)
    config = compose_model_config("tiny", "full")
    torch.manual_seed(3)
    networks = build_models(config)
    modules = {
        name: getattr(networks, name).state_dict() for name in ("audio2expression", "smoothing", "renderer")
    }
    identity = np.random.default_rng(0).normal(size=(478, 3)).astype(np.float32)
    uri = str(tmp_path / "s1")
    export_speaker_model(
        uri, speaker="s1", model_config=config, modules=modules, face_model=FaceModel.load(layout.face_model),
        identity=identity, audio=AudioFeatureConfig(), crop_size=128, summary={"heldout": {"audio_l1": 0.1}},
        train_config={"schedule": "tiny"}, version="s1-v7", storage=storage,
    )  # fmt: skip

    model = SpeakerModel.load(uri)
    for name, state in modules.items():
        loaded = getattr(model.networks, name).state_dict()
        assert all(torch.equal(loaded[key], value) for key, value in state.items()), name
    assert model.version == "s1-v7" and model.crop_size == 128
    np.testing.assert_array_equal(model.identity, identity)
    summary = storage.read_json(join(uri, SUMMARY_FILE))
    assert summary == model.metadata["training_summary"]
    assert summary["heldout"] == {"audio_l1": 0.1} and summary["model_uri"] == uri
    assert model.metadata["train_config"] == {"schedule": "tiny"}


def test_tiny_speaker_model_fixture_is_a_trained_self_describing_model(tiny_speaker_model, grid_dataset):
    model = SpeakerModel.load(tiny_speaker_model)
    summary = model.metadata["training_summary"]
    assert model.speaker == "s1" and model.version == "s1-tiny-test"
    assert model.image_size == 32 and model.crop_size == 128
    assert summary["stage1"]["steps"] > 0 and summary["stage2"]["steps"] > 0
    assert summary["stage2"]["final"]["loss/l1"] < 0.5
    assert {"audio_l1", "audio_ssim", "mesh_nlmd"} <= set(summary["heldout"])
    assert len(summary["heldout_videos"]) == 2 and not set(summary["heldout_videos"]) & set(
        summary["train_videos"]
    )
    assert model.metadata["train_config"]["model"]["renderer"]["image_size"] == 32
    assert np.allclose(model.identity, np.load(DatasetLayout(grid_dataset).identity("s1")))
