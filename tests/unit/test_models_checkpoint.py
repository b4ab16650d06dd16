"""Checkpoints carry their own config: save -> load rebuilds identical networks, locally and on S3."""

from __future__ import annotations

import pytest
import torch

from stableface.errors import InputError
from stableface.io.storage import Storage
from stableface.models import (
    build_models,
    compose_model_config,
    load_component,
    load_models,
    read_checkpoint,
    save_checkpoint,
    save_models,
)


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _inputs(seed=3):
    generator = torch.Generator().manual_seed(seed)
    return {
        "background": torch.rand(1, 4, 3, 32, 32, generator=generator) * 2 - 1,
        "shape": torch.rand(1, 4, 1, 32, 32, generator=generator),
        "expression": torch.randn(1, 4, 53, generator=generator),
        "audio": torch.randn(1, 4, 16, 80, generator=generator),
    }


def _outputs(models, inputs):
    with torch.no_grad():
        frames, weights = models.generate(**inputs)
        return frames, weights, models.audio2expression(inputs["audio"])


def _trained_models(ablation="no_dependency_modelling"):
    """Tiny models whose weights and BN statistics differ from a fresh initialisation."""
    torch.manual_seed(0)
    models = build_models(compose_model_config("tiny", ablation, ["smoothing.kernel_size=3"]))
    models.train()
    models.generate(**_inputs(seed=9))  # moves the smoothing BN running statistics
    with torch.no_grad():
        for parameter in models.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    return models.eval()


@pytest.fixture(params=["local", "s3"])
def location(request, tmp_path) -> tuple[Storage, str]:
    if request.param == "local":
        return Storage(), str(tmp_path / "ckpt" / "model.pt")
    bucket = request.getfixturevalue("s3_bucket")
    return Storage(request.getfixturevalue("s3_storage_config")), f"{bucket}/speakers/s1/model.pt"


def test_round_trip_rebuilds_identical_models_from_the_checkpoint_alone(location):
    storage, uri = location
    models = _trained_models()
    save_models(uri, models, extra={"epoch": 7, "note": "stage 2"}, storage=storage)
    assert storage.exists(uri)
    torch.manual_seed(123)  # a different fresh initialisation must not leak into the loaded models
    loaded, checkpoint = load_models(uri, storage=storage)
    assert checkpoint.config == models.config
    assert checkpoint.config.renderer.dependency is False and checkpoint.config.smoothing.kernel_size == 3
    assert checkpoint.extra == {"epoch": 7, "note": "stage 2"}
    assert not loaded.training
    for before, after in zip(_outputs(models, _inputs()), _outputs(loaded, _inputs()), strict=True):
        assert torch.equal(before, after)


def test_single_components_load_on_their_own(tmp_path):
    models = _trained_models("full")
    uri = str(tmp_path / "renderer_only.pt")
    save_checkpoint(uri, models.config, {"renderer": models.renderer})
    renderer = load_component(uri, "renderer")
    inputs = _inputs()
    with torch.no_grad():
        expected = models.renderer(inputs["background"], inputs["shape"], inputs["audio"])
        assert torch.equal(renderer(inputs["background"], inputs["shape"], inputs["audio"]), expected)
    with pytest.raises(InputError, match="checkpoint has no 'smoothing'"):
        load_component(uri, "smoothing")
    with pytest.raises(InputError, match="checkpoint lacks audio2expression"):
        load_models(uri)
    partial, _ = load_models(uri, required=["renderer"])
    assert torch.equal(partial.renderer.decoder[-1].weight, models.renderer.decoder[-1].weight)
    alone, _ = load_models(uri, required=["renderer"], components=["renderer"])
    assert (
        alone.components == ("renderer",) and alone.audio2expression is None and alone.discriminator is None
    )
    assert sum(p.numel() for p in alone.parameters()) == sum(p.numel() for p in models.renderer.parameters())
    assert torch.equal(alone.renderer.decoder[-1].weight, models.renderer.decoder[-1].weight)


def test_files_that_are_not_checkpoints_raise_errors_naming_them(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(InputError, match=r"junk\.pt: not a readable torch checkpoint"):
        read_checkpoint(str(junk))
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(InputError, match=r"other\.pt: not a StableFace model checkpoint"):
        read_checkpoint(str(other))
    with pytest.raises(InputError, match=r"missing\.pt"):
        read_checkpoint(str(tmp_path / "missing.pt"))
