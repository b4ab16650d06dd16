"""Shapes and behaviour of every network at tiny sizes (the paper size: test_models_paper.py)."""

from __future__ import annotations

import pytest
import torch

from stableface.losses import LossConfig, build_generator_loss, discriminator_adversarial_loss
from stableface.models import build_models, compose_model_config
from stableface.models.audio_encoder import AudioEncoder
from stableface.models.checks import TensorShapeError
from stableface.models.dependency import DependencyModule
from stableface.models.renderer import Renderer

WINDOW, MELS, EXPRESSION_DIM = 16, 80, 53


def _batch(config, batch=2, frames=None, seed=0) -> dict[str, torch.Tensor]:
    """A synthetic batch with the data pipeline's tensor contracts."""
    generator = torch.Generator().manual_seed(seed)
    frames = frames or config.renderer.sequence_length
    size = config.renderer.image_size
    mask = torch.zeros(batch, frames, 1, size, size)
    mask[..., size // 2 :, size // 4 : 3 * size // 4] = 1.0  # a lower-face box
    target = torch.rand(batch, frames, 3, size, size, generator=generator) * 2 - 1
    return {
        "audio": torch.randn(batch, frames, WINDOW, MELS, generator=generator),
        "expression": torch.randn(batch, frames, EXPRESSION_DIM, generator=generator),
        "shape": torch.rand(batch, frames, 1, size, size, generator=generator),
        "background": target * (1 - mask),
        "mouth_mask": mask,
        "target": target,
    }


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one thread avoids OpenMP spin-waits on the shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    return compose_model_config("tiny", "full")


def test_audio_encoder_maps_each_window_to_one_feature(tiny):
    encoder = AudioEncoder(tiny.audio_encoder)
    audio = _batch(tiny)["audio"]
    features = encoder(audio)
    assert features.shape == (2, 4, tiny.audio_encoder.out_dim)
    changed = audio.clone()
    changed[:, 1] += 1.0
    delta = (encoder(changed) - features).abs().sum(dim=(0, 2))  # per frame
    assert delta[1] > 0 and delta[[0, 2, 3]].sum() == 0  # frames are encoded independently
    with pytest.raises(TensorShapeError, match=r"audio windows: expected shape \(B, T, 16, 80\)"):
        encoder(audio[..., :40])


def test_audio2expression_predicts_the_mouth_sequence(tiny):
    model = build_models(tiny).audio2expression.eval()
    audio = torch.randn(3, 10, WINDOW, MELS)  # longer than any training sequence: sinusoidal positions
    assert model(audio).shape == (3, 10, 32)


def test_audio2expression_attention_window_limits_the_context():
    config = compose_model_config("tiny", "full", ["audio2expression.attention_window=1"])
    model = build_models(config).audio2expression.eval()
    audio = torch.randn(1, 8, WINDOW, MELS, requires_grad=True)
    model(audio)[0, 0].sum().backward()
    reach = audio.grad.abs().sum(dim=(0, 2, 3))  # per frame
    assert reach[:2].min() > 0 and reach[2:].sum() == 0  # one layer, radius 1: frames 0 and 1 only


def test_renderer_and_discriminator_shapes(tiny):
    models = build_models(tiny)
    batch = _batch(tiny)
    frames, weights = models.generate(
        batch["background"], batch["shape"], batch["expression"], batch["audio"]
    )
    assert frames.shape == (2, 4, 3, 32, 32) and weights.shape == (2, 4, 5)
    assert frames.abs().max() <= 1.0
    condition = torch.cat([batch["background"], batch["shape"]], dim=2)
    logits, features = models.discriminator(frames, condition)
    assert logits.shape == (8, 1, 6, 6)  # 32 -> 16 -> 8 -> 7 -> 6 patches
    assert [f.shape[1] for f in features] == [8, 16, 32]


def test_renderer_rejects_inputs_of_the_wrong_size(tiny):
    renderer = build_models(tiny).renderer
    batch = _batch(tiny)
    with pytest.raises(TensorShapeError, match=r"eroded background: expected shape \(B, T, 3, 32, 32\)"):
        renderer(batch["background"][..., :16, :16], batch["shape"], batch["audio"])
    with pytest.raises(TensorShapeError, match="audio windows: the renderer was built with audio fusion"):
        renderer(batch["background"], batch["shape"], None)
    long_background = torch.zeros(1, 5, 3, 32, 32)
    with pytest.raises(TensorShapeError, match="5 frames per sequence exceed the 4"):
        renderer(long_background, torch.zeros(1, 5, 1, 32, 32), torch.zeros(1, 5, WINDOW, MELS))


@pytest.mark.parametrize("dependency", [True, False])
def test_frame_t_depends_on_other_frames_only_with_the_dependency_module(dependency):
    config = compose_model_config("tiny", "full" if dependency else "no_dependency_modelling")
    torch.manual_seed(0)
    renderer = Renderer(config.renderer, config.audio_encoder).eval()
    batch = _batch(config, batch=1)
    background = batch["background"].requires_grad_(True)
    shape = batch["shape"].requires_grad_(True)
    renderer(background, shape, batch["audio"])[:, 1].sum().backward()
    per_frame = (background.grad.abs() + shape.grad.abs()).sum(dim=(0, 2, 3, 4))  # (T,)
    assert per_frame[1] > 0
    others = per_frame[[0, 2, 3]]
    if dependency:
        assert torch.all(others > 0)
    else:
        assert torch.all(others == 0)


@pytest.mark.parametrize("fusion", [True, False])
def test_renderer_output_depends_on_audio_only_with_fusion(fusion):
    config = compose_model_config("tiny", "full" if fusion else "no_audio_fusion")
    torch.manual_seed(0)
    renderer = Renderer(config.renderer, config.audio_encoder).eval()
    batch = _batch(config, batch=1)
    audio = batch["audio"].requires_grad_(True)
    out = renderer(batch["background"], batch["shape"], audio)
    other = renderer(batch["background"], batch["shape"], torch.randn_like(audio))
    if fusion:
        out.sum().backward()
        assert audio.grad.abs().sum() > 0
        assert (out - other).abs().max() > 1e-4
    else:
        assert not audio.requires_grad or audio.grad is None
        assert torch.equal(out, other)
        assert torch.equal(out, renderer(batch["background"], batch["shape"], None))


def test_dependency_module_patches_round_trip_exactly():
    torch.manual_seed(0)
    module = DependencyModule(
        channels=3,
        feature_size=8,
        patch_grid=4,
        d_model=8,
        n_layers=1,
        n_heads=2,
        ff_mult=2,
        dropout=0.0,
        max_frames=2,
    )
    with torch.no_grad():  # zero update: the module must reassemble the patches into the same map
        module.unembed.weight.zero_()
        module.unembed.bias.zero_()
    features = torch.randn(4, 3, 8, 8)  # (B*T, C, h, w) with B = 2, T = 2
    torch.testing.assert_close(module(features, frames=2), features)
    with torch.no_grad():  # a bias on one output unit moves exactly one (channel, row, col) per patch
        module.unembed.bias[0] = 1.0
    moved = (module(features, frames=2) - features).abs() > 0.5
    assert moved.sum() == 4 * 16
    assert torch.equal(moved[0, 0, ::2, ::2], torch.ones(4, 4, dtype=torch.bool))


def test_golden_outputs_under_a_fixed_seed(tiny):
    torch.manual_seed(1234)
    models = build_models(tiny).eval()
    batch = _batch(tiny, batch=1, seed=7)
    with torch.no_grad():
        frames, weights = models.generate(
            batch["background"], batch["shape"], batch["expression"], batch["audio"]
        )
        mouth = models.audio2expression(batch["audio"])
        logits, _ = models.discriminator(frames, torch.cat([batch["background"], batch["shape"]], dim=2))
    golden = {
        "frames_mean": frames.mean().item(),
        "frames_px": frames[0, 2, 1, 16, 16].item(),
        "weights_centre": weights[0, 0, 2].item(),
        "mouth_sum": mouth.sum().item(),
        "logit_mean": logits.mean().item(),
    }
    for key, value in GOLDEN.items():
        assert golden[key] == pytest.approx(value, abs=1e-4), key


# Recorded from this implementation (torch 2.13 CPU); a change means the networks changed.
GOLDEN = {
    "frames_mean": 0.046917,
    "frames_px": 0.893499,
    "weights_centre": 0.919167,  # the Gaussian of sigma 0.4 (models.smoothing)
    "mouth_sum": -12.393209,
    "logit_mean": -0.129349,
}


def test_one_training_step_drives_every_network_and_loss(tiny):
    """A plain step: G (smoothing + renderer) against L1 + feature matching + GAN, then D."""
    models = build_models(tiny).train()
    loss_fn = build_generator_loss(LossConfig())
    batch = _batch(tiny, batch=1)
    generator_params = [*models.smoothing.parameters(), *models.renderer.parameters()]
    g_opt = torch.optim.Adam(generator_params, lr=2e-3)
    d_opt = torch.optim.Adam(models.discriminator.parameters(), lr=2e-4)
    condition = torch.cat([batch["background"], batch["shape"]], dim=2)
    l1_history = []
    for step in range(15):
        fake, _ = models.generate(batch["background"], batch["shape"], batch["expression"], batch["audio"])
        fake_logits, fake_features = models.discriminator(fake, condition)
        _, real_features = models.discriminator(batch["target"], condition)
        terms = loss_fn(fake, batch["target"], batch["mouth_mask"], fake_logits, fake_features, real_features)
        g_opt.zero_grad()
        terms["total"].backward()
        if step == 0:
            silent = [
                n for n, p in models.renderer.named_parameters() if p.grad is None or p.grad.abs().sum() == 0
            ]
            assert not silent, f"renderer parameters without gradient: {silent}"
            assert all(p.grad.abs().sum() > 0 for p in models.smoothing.parameters() if p.ndim > 1)
        g_opt.step()
        real_logits, _ = models.discriminator(batch["target"], condition)
        fake_logits, _ = models.discriminator(fake.detach(), condition)
        d_loss = discriminator_adversarial_loss(real_logits, fake_logits)
        d_opt.zero_grad()
        d_loss.backward()
        d_opt.step()
        l1_history.append(terms["l1"].item())
    assert set(terms) == {"l1", "feature_matching", "rec", "adv", "total"}
    assert l1_history[-1] < 0.9 * l1_history[0], l1_history


def test_composite_renderer_keeps_the_background_outside_the_blanked_region_and_predicts_inside():
    config = compose_model_config("tiny", "full")
    config.renderer.composite_background = True
    torch.manual_seed(0)
    renderer = Renderer(config.renderer, config.audio_encoder).eval()
    batch = _batch(config, batch=1)
    mask = batch["mouth_mask"].bool().expand_as(batch["background"])  # (1, T, 3, S, S)
    background = torch.where(mask, torch.tensor(-1.0), batch["target"])  # blanked pixels: 0 -> -1
    out = renderer(background, batch["shape"], batch["audio"])
    assert torch.equal(out[~mask], background[~mask])  # the source's own values, exactly
    assert (out[mask] - background[mask]).abs().mean() > 1e-2  # predicted where blanked
    # Only the blanked region receives gradient from a loss on the output.
    background.requires_grad_(True)
    shape = batch["shape"].clone().requires_grad_(True)
    loss = renderer(background, shape, batch["audio"])[~mask].sum()
    loss.backward()
    assert shape.grad.abs().sum() == 0


def test_reference_frames_are_renderer_inputs_kept_in_its_state_and_only_repaint_the_blanked_region():
    config = compose_model_config("tiny", "full")
    config.renderer.composite_background = True
    config.renderer.reference_frames = 2
    size = config.renderer.image_size
    torch.manual_seed(0)
    renderer = Renderer(config.renderer, config.audio_encoder).eval()
    batch = _batch(config, batch=1)
    mask = batch["mouth_mask"].bool().expand_as(batch["background"])  # (1, T, 3, S, S)
    background = torch.where(mask, torch.tensor(-1.0), batch["target"])
    references = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(1)) * 2 - 1
    before = renderer(background, batch["shape"], batch["audio"])
    renderer.set_references(references)
    after = renderer(background, batch["shape"], batch["audio"])
    assert (after[mask] - before[mask]).abs().mean() > 1e-3  # the references change the mouth
    assert torch.equal(after[~mask], background[~mask])  # and nothing outside it
    # The speaker model carries them: a renderer rebuilt from the state dict draws the same frames.
    rebuilt = Renderer(config.renderer, config.audio_encoder).eval()
    rebuilt.load_state_dict(renderer.state_dict())
    assert torch.equal(rebuilt.references, references)
    assert torch.equal(rebuilt(background, batch["shape"], batch["audio"]), after)
    with pytest.raises(TensorShapeError, match="reference frames"):
        renderer.set_references(references[:1])
    plain = Renderer(compose_model_config("tiny", "full").renderer, config.audio_encoder)
    assert "references" not in plain.state_dict()  # off: the paper's renderer, unchanged checkpoints
    with pytest.raises(TensorShapeError, match="reference_frames = 0"):
        plain.set_references(torch.zeros(0, 3, size, size))
