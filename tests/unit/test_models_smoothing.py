"""Temporal smoothing (paper Table I, Fig. 9) against independent computations."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy import ndimage

from stableface.models import SmoothingConfig, count_parameters
from stableface.models.checks import TensorShapeError
from stableface.models.smoothing import TemporalSmoothing, gaussian_kernel, kernel_radius, weight_radius

EXPRESSION_DIM = 53


def _sequence(batch=2, frames=9, seed=0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    shapes = torch.rand(batch, frames, 1, 6, 5, generator=generator)  # (B, T, 1, H, W)
    expression = torch.randn(batch, frames, EXPRESSION_DIM, generator=generator)  # (B, T, E)
    return shapes, expression


def test_adaptive_network_has_about_11k_parameters_at_53d_input():
    module = TemporalSmoothing(SmoothingConfig(mode="adaptive", kernel_size=5, expression_dim=53))
    # independent count: conv (in*out*3 + out) + BN (2*out) per layer, then conv to K
    widths = [53, 32, 32, 16, 16]
    expected = sum(a * b * 3 + b + 2 * b for a, b in itertools.pairwise(widths)) + 16 * 5 * 3 + 5
    assert count_parameters(module) == expected == 10_997
    assert 10_000 <= count_parameters(module) <= 12_000


@pytest.mark.parametrize(("kernel_size", "sigma"), [(5, 1.0), (7, 1.5), (3, 0.8)])
def test_gaussian_variant_equals_scipy_gaussian_filter(kernel_size, sigma):
    shapes, expression = _sequence()
    module = TemporalSmoothing(SmoothingConfig(mode="gaussian", kernel_size=kernel_size, sigma=sigma))
    smoothed, weights = module(shapes, expression)
    reference = ndimage.gaussian_filter1d(
        shapes.double().numpy(), sigma, axis=1, mode="nearest", radius=kernel_size // 2
    )
    np.testing.assert_allclose(smoothed.numpy(), reference, atol=1e-6)
    assert weights.shape == (2, 9, kernel_size)


def test_adaptive_weights_are_normalised_and_applied_as_the_formula_says():
    shapes, expression = _sequence(frames=7)
    torch.manual_seed(0)
    module = TemporalSmoothing(SmoothingConfig(mode="adaptive", kernel_size=5)).eval()
    smoothed, weights = module(shapes, expression)
    assert weights.shape == (2, 7, 5)
    assert torch.all(weights > 0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 7))
    assert weights.std(dim=1).mean() > 0  # frame-dependent, unlike a fixed kernel
    # s~_t = sum_k W_t,k s_(t+k-2), the sequence replicate-padded, computed independently with numpy
    w, s = weights.detach().numpy(), shapes.numpy()
    padded = np.concatenate([s[:, :1], s[:, :1], s, s[:, -1:], s[:, -1:]], axis=1)
    expected = np.zeros_like(s)
    for t in range(7):
        for k in range(5):
            expected[:, t] += w[:, t, k, None, None, None] * padded[:, t + k]
    np.testing.assert_allclose(smoothed.detach().numpy(), expected, atol=1e-6)


def test_global_kernel_starts_gaussian_and_learns():
    shapes, expression = _sequence()
    learned = TemporalSmoothing(SmoothingConfig(mode="global", kernel_size=5, sigma=1.0))
    fixed = TemporalSmoothing(SmoothingConfig(mode="gaussian", kernel_size=5, sigma=1.0))
    out, weights = learned(shapes, expression)
    torch.testing.assert_close(out, fixed(shapes, expression)[0])
    assert count_parameters(learned) == 5 and count_parameters(fixed) == 0
    assert torch.equal(weights[0, 0], weights[1, -1])  # one kernel for every frame
    (out * torch.linspace(0, 1, 9)[None, :, None, None, None]).sum().backward()
    assert learned.kernel_logits.grad.abs().sum() > 0


def test_none_mode_is_the_identity():
    shapes, expression = _sequence()
    module = TemporalSmoothing(SmoothingConfig(mode="none"))
    smoothed, weights = module(shapes, expression)
    assert torch.equal(smoothed, shapes)
    assert torch.equal(weights[..., 2], torch.ones(2, 9))


def test_shape_errors_name_the_input():
    shapes, expression = _sequence()
    module = TemporalSmoothing(SmoothingConfig())
    with pytest.raises(TensorShapeError, match=r"expression: expected shape \(B, T, 53\)"):
        module(shapes, expression[..., :50])
    with pytest.raises(TensorShapeError, match="face shapes"):
        module(shapes[:, :5], expression)


@pytest.mark.parametrize("mode", ["adaptive", "gaussian"])
def test_kernel_and_weight_radii_are_how_far_one_smoothed_frame_reaches(mode):
    config = SmoothingConfig(mode=mode, kernel_size=5)
    torch.manual_seed(0)
    module = TemporalSmoothing(config).eval()
    shapes, expression = _sequence(batch=1, frames=15)
    shapes.requires_grad_(True)
    expression.requires_grad_(True)
    module(shapes, expression)[0][:, 7].sum().backward()
    shape_reach = torch.nonzero(shapes.grad.abs().sum(dim=(0, 2, 3, 4))).flatten()  # frames of face shapes
    assert kernel_radius(config) == 2
    assert shape_reach.min() == 7 - kernel_radius(config) and shape_reach.max() == 7 + kernel_radius(config)
    if mode == "adaptive":  # the weights come from the expression; fixed kernels ignore it
        expression_reach = torch.nonzero(expression.grad.abs().sum(dim=(0, 2))).flatten()
        assert weight_radius(config) == 5
        assert expression_reach.min() == 7 - weight_radius(config)
        assert expression_reach.max() == 7 + weight_radius(config)
    else:
        assert expression.grad is None or not expression.grad.any()


@pytest.mark.parametrize("sigma", [0.4, 1.0])
def test_untrained_adaptive_weights_start_as_the_gaussian_of_sigma(sigma):
    """A fresh sigmoid head would give the uniform K-tap average (a box filter, which removes speech
    at 5 Hz); the head is initialised so every frame starts with the Gaussian kernel instead."""
    torch.manual_seed(0)
    config = SmoothingConfig(mode="adaptive", kernel_size=5, sigma=sigma)
    smoothing = TemporalSmoothing(config).eval()
    expression = 3.0 * torch.randn(2, 40, config.expression_dim)  # (B, T, E), far from zero
    weights = smoothing.weights(expression)  # (B, T, K)
    expected = gaussian_kernel(5, sigma).expand_as(weights)
    torch.testing.assert_close(weights, expected, atol=0.02, rtol=0.0)
    uniform = torch.full_like(weights, 1.0 / 5)
    assert (weights - uniform).abs().max() > 0.1
