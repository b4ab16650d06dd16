"""Losses against independent computations; VGG19 from a torchvision-format file."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from stableface.errors import InputError
from stableface.losses import (
    FEATURE_MATCHING_SOURCE,
    VGG_SOURCE,
    LossConfig,
    ReconstructionLoss,
    build_generator_loss,
    discriminator_adversarial_loss,
    feature_matching_loss,
    generator_adversarial_loss,
    mouth_weighted_l1,
)
from stableface.losses.adversarial import mouth_patch_weights
from stableface.losses.reconstruction import mouth_gradient_l1
from stableface.models.vgg import VGG19_RELU_INDEX

# torchvision.models.vgg19().features: (module index, in channels, out channels) of each 3x3 conv.
TORCHVISION_VGG19_CONVS = [
    (0, 3, 64), (2, 64, 64),
    (5, 64, 128), (7, 128, 128),
    (10, 128, 256), (12, 256, 256), (14, 256, 256), (16, 256, 256),
    (19, 256, 512), (21, 512, 512), (23, 512, 512), (25, 512, 512),
    (28, 512, 512), (30, 512, 512), (32, 512, 512), (34, 512, 512),
]  # fmt: skip


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory) -> tuple[str, dict[str, torch.Tensor]]:
    """A torchvision-format VGG19 state dict with random weights (and a classifier entry to ignore)."""
    generator = torch.Generator().manual_seed(0)
    state = {}
    for index, c_in, c_out in TORCHVISION_VGG19_CONVS:
        state[f"features.{index}.weight"] = (
            torch.randn(c_out, c_in, 3, 3, generator=generator) * (2 / (9 * c_in)) ** 0.5
        )
        state[f"features.{index}.bias"] = torch.randn(c_out, generator=generator) * 0.01
    state["classifier.6.bias"] = torch.zeros(1000)
    path = tmp_path_factory.mktemp("vgg") / "vgg19-random.pth"
    torch.save(state, path)
    return str(path), state


def _frames(seed=0, batch=1, frames=2, size=32):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, frames, 3, size, size, generator=generator) * 2 - 1


def test_mouth_weighted_l1_matches_numpy():
    fake, real = _frames(0), _frames(1)
    mask = torch.zeros(1, 2, 1, 32, 32)
    mask[..., 20:, 8:24] = 1
    diff = np.abs(fake.numpy() - real.numpy())
    weights = np.where(np.broadcast_to(mask.numpy(), diff.shape) > 0, 2.0, 1.0)
    expected = (weights * diff).mean()
    assert mouth_weighted_l1(fake, real, mask, 2.0).item() == pytest.approx(expected, rel=1e-6)
    # an error inside the mouth costs twice what the same error outside does
    inside, outside = real.clone(), real.clone()
    inside[0, 0, 0, 25, 10] += 1
    outside[0, 0, 0, 2, 2] += 1
    assert mouth_weighted_l1(inside, real, mask, 2.0) == pytest.approx(
        2 * mouth_weighted_l1(outside, real, mask, 2.0)
    )


def test_gan_losses_match_their_formulas():
    real_logits, fake_logits = torch.tensor([2.0, -1.0]), torch.tensor([0.5, -3.0])
    sigmoid = torch.sigmoid
    expected_d = -torch.log(sigmoid(real_logits)).mean() - torch.log(1 - sigmoid(fake_logits)).mean()
    expected_g = -torch.log(sigmoid(fake_logits)).mean()
    assert discriminator_adversarial_loss(real_logits, fake_logits).item() == pytest.approx(
        expected_d.item(), rel=1e-5
    )
    assert generator_adversarial_loss(fake_logits).item() == pytest.approx(expected_g.item(), rel=1e-5)


def test_feature_matching_averages_layer_l1_and_treats_real_as_target():
    fake = [torch.ones(2, 3, 4, 4, requires_grad=True), torch.zeros(2, 5, 2, 2, requires_grad=True)]
    real = [torch.zeros(2, 3, 4, 4, requires_grad=True), torch.full((2, 5, 2, 2), 3.0, requires_grad=True)]
    loss = feature_matching_loss(fake, real)
    assert loss.item() == pytest.approx((1.0 + 3.0) / 2)
    loss.backward()
    assert fake[0].grad is not None and real[0].grad is None
    with pytest.raises(ValueError, match="equally many"):
        feature_matching_loss(fake, real[:1])


def test_vgg19_loads_a_torchvision_format_file_and_is_the_logged_perceptual_term(vgg_file, caplog):
    path, state = vgg_file
    with caplog.at_level(logging.INFO, logger="stableface"):
        loss_fn = build_generator_loss(LossConfig(vgg_weights=path))
    assert loss_fn.perceptual_source == VGG_SOURCE
    assert "perceptual term: VGG19" in caplog.text
    vgg = loss_fn.reconstruction.vgg
    for index, _, _ in TORCHVISION_VGG19_CONVS:
        assert torch.equal(vgg.features[index].weight, state[f"features.{index}.weight"])
    assert not any(p.requires_grad for p in vgg.parameters())
    # relu1_1 computed by hand from the file's weights
    images = _frames(4)[0]  # (2, 3, 32, 32)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    expected = F.relu(
        F.conv2d(
            ((images + 1) / 2 - mean) / std, state["features.0.weight"], state["features.0.bias"], padding=1
        )
    )
    torch.testing.assert_close(vgg(images)[0], expected)
    assert [f.shape[1] for f in vgg(images)] == [64, 128, 256, 512, 512]
    assert VGG19_RELU_INDEX["relu5_1"] == 29 and VGG19_RELU_INDEX["relu5_4"] == 35


def test_perceptual_loss_is_zero_for_identical_frames_and_drives_gradients(vgg_file):
    loss_fn = build_generator_loss(LossConfig(vgg_weights=vgg_file[0]))
    real = _frames(0)
    mask = torch.zeros(1, 2, 1, 32, 32)
    logits = torch.zeros(2, 1, 2, 2)
    same = loss_fn(real.clone(), real, mask, logits)
    assert same["perceptual"].item() == 0 and same["l1"].item() == 0
    fake = _frames(1).requires_grad_(True)
    terms = loss_fn(fake, real, mask, logits)
    assert terms["perceptual"] > 0
    assert terms["total"].item() == pytest.approx(
        20 * (terms["l1"].item() + terms["perceptual"].item()) + terms["adv"].item(), rel=1e-5
    )
    terms["total"].backward()
    assert fake.grad.abs().sum() > 0


def test_without_vgg_feature_matching_is_the_logged_perceptual_term(caplog):
    with caplog.at_level(logging.INFO, logger="stableface"):
        loss_fn = build_generator_loss(LossConfig(feature_matching_weight=0.5))
    assert loss_fn.perceptual_source == FEATURE_MATCHING_SOURCE
    assert "perceptual term: discriminator feature matching" in caplog.text
    fake, real = _frames(1), _frames(0)
    mask = torch.ones(1, 2, 1, 32, 32)
    fake_features, real_features = [torch.ones(2, 4, 3, 3)], [torch.zeros(2, 4, 3, 3)]
    logits = torch.full((2, 1, 2, 2), 1.5)
    terms = loss_fn(fake, real, mask, logits, fake_features, real_features)
    rec = 2 * (fake - real).abs().mean() + 0.5 * 1.0  # every pixel is in the mouth mask
    adv = F.softplus(torch.tensor(-1.5))
    assert terms["rec"].item() == pytest.approx(rec.item(), rel=1e-5)
    assert terms["total"].item() == pytest.approx(20 * rec.item() + adv.item(), rel=1e-5)
    with pytest.raises(ValueError, match="pass the discriminator features"):
        loss_fn(fake, real, mask, logits)


def test_a_configured_vgg_file_that_is_wrong_is_an_error_not_a_silent_fallback(tmp_path, vgg_file):
    with pytest.raises(InputError, match=r"nowhere\.pth"):
        build_generator_loss(LossConfig(vgg_weights=str(tmp_path / "nowhere.pth")))
    _, state = vgg_file
    partial = {k: v for k, v in state.items() if k != "features.34.weight"}
    torch.save(partial, tmp_path / "partial.pth")
    with pytest.raises(
        InputError, match=r"partial.pth: not a torchvision VGG19 state dict: missing features.34"
    ):
        build_generator_loss(LossConfig(vgg_weights=str(tmp_path / "partial.pth")))


def test_mouth_gradient_term_matches_numpy_and_is_in_rec_only_when_switched_on():
    generator = torch.Generator().manual_seed(0)
    fake = torch.rand(1, 2, 3, 8, 8, generator=generator)
    real = torch.rand(1, 2, 3, 8, 8, generator=generator)
    mask = torch.zeros(1, 2, 1, 8, 8)
    mask[..., 4:, 2:6] = 1.0
    f, r, m = fake.numpy(), real.numpy(), mask.numpy()
    dx = np.abs(np.diff(f, axis=-1) - np.diff(r, axis=-1)) * (m[..., :, 1:] * m[..., :, :-1])
    dy = np.abs(np.diff(f, axis=-2) - np.diff(r, axis=-2)) * (m[..., 1:, :] * m[..., :-1, :])
    expected = dx.mean() + dy.mean()
    assert mouth_gradient_l1(fake, real, mask).item() == pytest.approx(expected, rel=1e-5)
    assert mouth_gradient_l1(real, real, mask).item() == 0.0
    # A blurred mouth (same mean, weaker edges) pays for it; the same blur outside the mask does not.
    blurred = real.clone()
    blurred[..., 4:, 2:6] = real[..., 4:, 2:6].mean()
    assert mouth_gradient_l1(blurred, real, mask) > 0.01
    outside = real.clone()
    outside[..., :3, :] = real[..., :3, :].mean()
    assert mouth_gradient_l1(outside, real, mask).item() == 0.0

    features = [torch.rand(2, 4, 4, 4, generator=generator)]
    off = ReconstructionLoss(LossConfig())(fake, real, mask, features, features)
    on = ReconstructionLoss(LossConfig(mouth_gradient_weight=3.0))(fake, real, mask, features, features)
    assert "mouth_gradient" not in off
    assert on["rec"].item() == pytest.approx(off["rec"].item() + 3.0 * expected, rel=1e-5)


def test_mouth_adversarial_losses_average_only_the_mouth_patches():
    generator = torch.Generator().manual_seed(0)
    mask = torch.zeros(1, 2, 1, 16, 16)
    mask[..., 8:, 4:12] = 1.0  # the lower middle: patches (2..3, 1..2) of a 4x4 logit grid
    real_logits, fake_logits = torch.randn(2, 2, 1, 4, 4, generator=generator)
    weights = mouth_patch_weights(mask, (4, 4))
    assert weights.shape == (2, 1, 4, 4) and weights.sum() == 2 * 4  # 4 whole mouth cells per frame
    inside = weights.bool()
    expected_g = F.softplus(-fake_logits[inside]).mean()
    expected_d = F.softplus(-real_logits[inside]).mean() + F.softplus(fake_logits[inside]).mean()
    assert generator_adversarial_loss(fake_logits, weights).item() == pytest.approx(
        expected_g.item(), rel=1e-5
    )
    assert discriminator_adversarial_loss(real_logits, fake_logits, weights).item() == pytest.approx(
        expected_d.item(), rel=1e-5
    )
    changed = fake_logits.clone()
    changed[~inside] += 5.0  # patches away from the mouth: no say with the switch, a say without it
    assert generator_adversarial_loss(changed, weights).item() == pytest.approx(expected_g.item(), rel=1e-5)
    assert generator_adversarial_loss(changed).item() != pytest.approx(
        generator_adversarial_loss(fake_logits).item()
    )

    fake, real = torch.rand(2, 1, 2, 3, 16, 16, generator=generator)
    features = [torch.rand(2, 4, 4, 4, generator=generator)]
    on = build_generator_loss(LossConfig(mouth_adversarial=True))(
        fake, real, mask, changed, features, features
    )
    off = build_generator_loss(LossConfig())(fake, real, mask, changed, features, features)
    assert on["adv"].item() == pytest.approx(expected_g.item(), rel=1e-5)
    assert off["adv"].item() == pytest.approx(F.softplus(-changed).mean().item(), rel=1e-5)
