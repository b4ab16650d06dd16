"""Model presets and ablation switches: every YAML composes into a config that builds every network."""

from __future__ import annotations

import dataclasses
from importlib import resources

import pytest
import yaml

from stableface.errors import InputError
from stableface.models import (
    AblationConfig,
    ModelConfig,
    SmoothingConfig,
    available_presets,
    build_models,
    compose_model_config,
    count_parameters,
    load_ablation,
)
from stableface.utils.serialise import from_dict, to_dict

PRESETS = ["cpu", "paper", "tiny"]
ABLATIONS = [
    "baseline",
    "full",
    "no_adaptive_smoothing",
    "no_audio_fusion",
    "no_augmented_erosion",
    "no_dependency_modelling",
]


def _yaml(group: str, name: str) -> dict:
    return yaml.safe_load((resources.files("stableface.conf") / group / f"{name}.yaml").read_text())


def _field_names(schema) -> set[str]:
    return {f.name for f in dataclasses.fields(schema)}


def test_the_config_groups_hold_exactly_the_expected_files():
    assert available_presets("model") == PRESETS
    assert available_presets("ablation") == ABLATIONS


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_yaml_keys_are_dataclass_fields(preset):
    data = _yaml("model", preset)
    assert set(data) == _field_names(ModelConfig)
    for section, values in data.items():
        schema = type(getattr(ModelConfig(), section))
        assert set(values) <= _field_names(schema), (
            f"{preset}.{section}: {set(values) - _field_names(schema)}"
        )


@pytest.mark.parametrize("ablation", ABLATIONS)
def test_ablation_yaml_keys_are_the_four_switches(ablation):
    assert set(_yaml("ablation", ablation)) == _field_names(AblationConfig)


def test_tiny_preset_builds_under_every_ablation():
    for ablation in ABLATIONS:
        config = compose_model_config("tiny", ablation)
        switches = load_ablation(ablation)
        models = build_models(config)
        assert (models.renderer.fusion is not None) == switches.audio_fusion
        assert (models.renderer.audio_encoder is not None) == switches.audio_fusion
        assert (models.renderer.dependency is not None) == switches.dependency_modelling
        assert (models.smoothing.adaptive is not None) == switches.adaptive_smoothing
        assert models.smoothing.is_identity == (not switches.adaptive_smoothing)


@pytest.mark.parametrize("preset", ["cpu", "paper"])
def test_larger_presets_build_full_and_baseline(preset):
    full = build_models(compose_model_config(preset, "full"))
    baseline = build_models(compose_model_config(preset, "baseline"))
    assert count_parameters(baseline.renderer) < count_parameters(full.renderer)
    assert baseline.renderer.dependency is None and baseline.renderer.fusion is None


def test_paper_preset_has_the_papers_numbers():
    config = compose_model_config("paper", "full")
    assert config.renderer.image_size == 256 and config.renderer.sequence_length == 12
    assert config.renderer.channels[-1] == 256 and config.renderer.feature_size == 64
    assert config.renderer.n_res_blocks == 8
    assert (config.renderer.patch_grid, config.renderer.d_model, config.renderer.n_layers) == (4, 512, 4)
    assert config.smoothing.channels == [32, 32, 16, 16] and config.smoothing.expression_dim == 53
    assert config.audio_encoder.out_dim == 64 and config.audio2expression.mouth_dim == 32


def test_baseline_switches_everything_off():
    config = compose_model_config("tiny", "baseline")
    assert not config.renderer.audio_fusion and not config.renderer.dependency
    assert config.smoothing.mode == "none"
    assert load_ablation("baseline") == AblationConfig(False, False, False, False)
    assert load_ablation("no_augmented_erosion").augmented_erosion is False


def test_ablation_wins_over_overrides_and_keeps_a_chosen_smoothing_variant():
    gaussian = compose_model_config(
        "tiny", "full", ["smoothing.mode=gaussian", "renderer.audio_fusion=false"]
    )
    assert gaussian.smoothing.mode == "gaussian"  # the Fig. 9 variant survives "full"
    assert gaussian.renderer.audio_fusion is True  # the ablation decides the Table V switches
    assert (
        compose_model_config("tiny", "no_adaptive_smoothing", ["smoothing.mode=global"]).smoothing.mode
        == "none"
    )
    assert compose_model_config("tiny", "full", ["renderer.n_res_blocks=3"]).renderer.n_res_blocks == 3


def test_config_round_trips_through_a_plain_dict():
    config = compose_model_config("cpu", "no_dependency_modelling")
    assert from_dict(ModelConfig, to_dict(config)) == config


def test_unknown_names_and_bad_values_raise_errors_naming_them():
    with pytest.raises(InputError, match="model preset 'huge'"):
        compose_model_config("huge")
    with pytest.raises(InputError, match="ablation preset 'nothing'"):
        compose_model_config("tiny", "nothing")
    with pytest.raises(InputError, match=r"smoothing\.kernel_size: K must be odd"):
        SmoothingConfig(kernel_size=4)
    with pytest.raises(InputError, match=r"smoothing\.mode"):
        compose_model_config("tiny", "full", ["smoothing.mode=median"])
    with pytest.raises(InputError, match=r"renderer\.patch_grid"):
        compose_model_config("tiny", "full", ["renderer.patch_grid=3"])


def test_presets_compose_as_hydra_config_groups():
    """The train job will list ``model`` and ``ablation`` in its defaults; plain Hydra must read them."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from stableface.models import apply_ablation

    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module="stableface.conf", version_base="1.3"):
            cfg = compose(
                overrides=["+model=tiny", "+ablation=no_audio_fusion", "model.renderer.n_res_blocks=2"]
            )
    finally:
        GlobalHydra.instance().clear()
    model = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(ModelConfig), cfg.model))
    ablation = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(AblationConfig), cfg.ablation))
    config = apply_ablation(model, ablation)
    assert config.renderer.n_res_blocks == 2 and config.renderer.audio_fusion is False
    assert config == compose_model_config("tiny", "no_audio_fusion", ["renderer.n_res_blocks=2"])
