"""The neural stages on arrays: seamless renderer windows, chunked smoothing, audio windows, audio2expression."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from stableface.audio.features import AudioFeatureConfig, frame_windows, log_mel, window_starts
from stableface.inference.config import InferenceConfig
from stableface.inference.render import apply_smoothing, render_windows, smoothing_weights
from stableface.inference.speech import audio_windows, predict_mouth
from stableface.inference.timeline import WindowBlender, WindowLayout, context_range
from stableface.io.audio import read_audio
from stableface.models import build_models, compose_model_config
from stableface.models.smoothing import INITIAL_HEAD_GAIN, apply_temporal_kernel, kernel_radius

CPU = torch.device("cpu")


class WindowContextRenderer(nn.Module):
    """A stand-in renderer whose output depends on its whole window, like the dependency module:
    each frame's background plus the window's mean shape, so two windows render a frame differently."""

    fusion = None

    def forward(self, background, shape, audio=None, warped=None):  # (B, L, 3, S, S), (B, L, 1, S, S)
        return background + shape.mean(dim=(1, 2, 3, 4), keepdim=True)  # (B, L, 3, S, S)


def _render_sequence(renderer, background, shape, layout) -> np.ndarray:
    blender, frames = WindowBlender(layout), []
    for index in range(layout.n_windows):
        start, stop = layout.window(index)
        output = render_windows(renderer, background[None, start:stop], shape[None, start:stop], None, CPU)[0]
        blender.add(index, output)
        frames.extend(blender.pop_ready())
    return np.stack(frames)  # (N, 3, S, S)


def _boundary_and_interior_steps(frames: np.ndarray, layout: WindowLayout) -> tuple[float, float]:
    """Largest mean absolute frame-to-frame change where a window starts or ends, and elsewhere."""
    steps = np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2, 3))  # (N-1,) step t -> t+1
    edges = {layout.window(j)[0] for j in range(layout.n_windows)} | {
        layout.window(j)[1] for j in range(layout.n_windows)
    }
    boundary = [t for t in range(len(steps)) if t + 1 in edges]
    interior = [t for t in range(len(steps)) if t + 1 not in edges]
    return float(steps[boundary].max()), float(steps[interior].max())


@pytest.mark.parametrize("overlap", [None, 4], ids=["default-T/4", "T/2"])
def test_crossfaded_windows_leave_no_seam_where_hard_cuts_do(overlap):
    n_frames, length, size = 64, 8, 8
    time = np.arange(n_frames, dtype=np.float32)
    # A slowly changing scene: a drifting background level and a face shape growing and shrinking.
    background = np.broadcast_to((0.3 * np.sin(0.05 * time))[:, None, None, None], (n_frames, 3, size, size))
    shape = np.broadcast_to((0.5 + 0.4 * np.sin(0.15 * time))[:, None, None], (n_frames, size, size))
    background, shape = np.ascontiguousarray(background, np.float32), np.ascontiguousarray(shape, np.float32)
    renderer = WindowContextRenderer()

    hard = WindowLayout(n_frames, length, overlap=0)
    boundary, interior = _boundary_and_interior_steps(
        _render_sequence(renderer, background, shape, hard), hard
    )
    assert boundary > 3 * interior  # the measurement sees a seam when there is one

    faded = WindowLayout(
        n_frames, length, overlap=InferenceConfig(window_overlap=overlap).overlap_for(length)
    )
    assert faded.overlap == (2 if overlap is None else overlap)
    boundary, interior = _boundary_and_interior_steps(
        _render_sequence(renderer, background, shape, faded), faded
    )
    assert boundary <= 1.02 * interior


@pytest.fixture(scope="module")
def networks():
    torch.manual_seed(0)
    models = build_models(compose_model_config("tiny", "full"))
    # Non-trivial BatchNorm statistics, as a trained smoothing network has.
    for module in models.smoothing.modules():
        if isinstance(module, nn.BatchNorm1d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return models.eval()


def _smooth_whole(networks, shapes, expression) -> np.ndarray:
    """The training-time smoothing of the whole sequence at once (the module's own forward)."""
    with torch.inference_mode():
        smoothed, _ = networks.smoothing(torch.from_numpy(shapes)[None], torch.from_numpy(expression)[None])
    return smoothed[0].numpy()  # (N, S, S)


def input_dependent(smoothing):
    """A copy whose weights depend on the expressions as a trained one's do: the fresh head is
    initialised to (nearly) the same Gaussian for every input."""
    smoothing = copy.deepcopy(smoothing)
    with torch.no_grad():
        smoothing.adaptive.head.weight.div_(INITIAL_HEAD_GAIN)
    return smoothing


def test_weights_by_pieces_equal_the_weights_of_the_whole_sequence(networks):
    smoothing = input_dependent(networks.smoothing)
    rng = np.random.default_rng(0)
    n_frames = 50
    expression = rng.standard_normal((n_frames, networks.config.smoothing.expression_dim)).astype(np.float32)
    with torch.inference_mode():
        whole = smoothing.weights(torch.from_numpy(expression)[None])[0].numpy()  # (N, K)
    for piece in (7, 16, 50, 1000):
        weights = smoothing_weights(smoothing, expression, piece, CPU)
        assert weights.shape == (n_frames, networks.config.smoothing.kernel_size)
        np.testing.assert_allclose(weights, whole, atol=1e-6)
    # Pieces without their context would replicate-pad inside the sequence: the context matters.
    with torch.inference_mode():
        naive = np.concatenate(
            [
                smoothing.weights(torch.from_numpy(expression[s : s + 7])[None])[0].numpy()
                for s in range(0, n_frames, 7)
            ]
        )
    assert np.abs(naive - whole).max() > 1e-3


def test_chunked_smoothing_with_kernel_context_is_exactly_the_whole_sequence(networks):
    rng = np.random.default_rng(0)
    n_frames, size = 50, 16
    shapes = rng.random((n_frames, size, size), dtype=np.float32)
    expression = rng.standard_normal((n_frames, networks.config.smoothing.expression_dim)).astype(np.float32)
    weights = smoothing_weights(networks.smoothing, expression, 1000, CPU)  # (N, K)
    whole = apply_smoothing(shapes, weights)
    assert not np.allclose(whole, shapes)  # it does smooth
    np.testing.assert_allclose(whole, _smooth_whole(networks, shapes, expression), atol=1e-5)
    radius = kernel_radius(networks.config.smoothing)
    for chunk in (1, 7, 16):
        pieces = []
        for start in range(0, n_frames, chunk):
            stop = min(start + chunk, n_frames)
            lo, hi = context_range(start, stop, radius, n_frames)
            pieces.append(apply_smoothing(shapes[lo:hi], weights[lo:hi])[start - lo : stop - lo])
        np.testing.assert_array_equal(np.concatenate(pieces), whole)  # bit for bit: streaming changes nothing
    # Without the context, chunk edges would be replicate-padded and differ: the context matters.
    naive = np.concatenate(
        [apply_smoothing(shapes[s : s + 7], weights[s : s + 7]) for s in range(0, n_frames, 7)]
    )
    assert np.abs(naive - whole).max() > 1e-3


def test_smoothing_never_reaches_across_a_run_boundary(networks):
    rng = np.random.default_rng(1)
    n_frames, size = 40, 8
    kernel_size = networks.config.smoothing.kernel_size
    shapes = rng.random((n_frames, size, size), dtype=np.float32)
    weights = rng.random((n_frames, kernel_size), dtype=np.float32)
    weights /= weights.sum(axis=1, keepdims=True)
    layout = WindowLayout(n_frames, 8, 4, boundaries=(12, 14, 30))  # runs of 12, 2, 16 and 10 frames
    runs = layout.run_labels(0, n_frames)
    smoothed = apply_smoothing(shapes, weights, runs)
    # independent: the model's own kernel on each run alone (replicate-padded at the run's ends)
    for start, stop in [(0, 12), (12, 14), (14, 30), (30, 40)]:
        alone = apply_temporal_kernel(
            torch.from_numpy(shapes[start:stop])[None], torch.from_numpy(weights[start:stop])[None]
        )[0].numpy()
        np.testing.assert_array_equal(smoothed[start:stop], alone)
    # a frame of one run does not change the smoothing of any other run's frames
    changed = shapes.copy()
    changed[12:14] = 1.0 - changed[12:14]
    again = apply_smoothing(changed, weights, runs)
    np.testing.assert_array_equal(again[:12], smoothed[:12])
    np.testing.assert_array_equal(again[14:], smoothed[14:])
    assert np.abs(apply_smoothing(changed, weights) - apply_smoothing(shapes, weights))[:12].max() > 1e-3
    radius = kernel_size // 2
    for chunk in (3, 7):  # streamed in chunks with the kernel's context: still exact
        pieces = []
        for start in range(0, n_frames, chunk):
            stop = min(start + chunk, n_frames)
            lo, hi = context_range(start, stop, radius, n_frames)
            piece = apply_smoothing(shapes[lo:hi], weights[lo:hi], layout.run_labels(lo, hi))
            pieces.append(piece[start - lo : stop - lo])
        np.testing.assert_array_equal(np.concatenate(pieces), smoothed)


@pytest.fixture(scope="module")
def speech(shared_data):
    config = AudioFeatureConfig()
    samples = read_audio(shared_data / "speech" / "macron_12s.wav", config.sample_rate)[
        : 3 * config.sample_rate
    ]
    return config, log_mel(samples, config)


def test_audio_windows_of_any_range_equal_the_training_features(speech):
    config, mel = speech
    n_frames, fps = 80, 25  # 3.2 s of video for 3 s of audio: the last windows reach past the end
    expected = frame_windows(mel, n_frames, fps, config)  # (N, W, M)
    starts = window_starts(n_frames, fps, config)
    np.testing.assert_array_equal(audio_windows(mel, starts, config), expected)
    np.testing.assert_array_equal(audio_windows(mel, starts[30:55], config), expected[30:55])


def test_audio2expression_in_pieces_matches_one_pass_and_covers_every_frame(networks, speech):
    config, mel = speech
    n_frames = 75
    starts = window_starts(n_frames, 25, config)
    whole = (
        networks.audio2expression(torch.from_numpy(audio_windows(mel, starts, config))[None])[0]
        .detach()
        .numpy()
    )
    one_piece = predict_mouth(networks.audio2expression, mel, starts, config, InferenceConfig(), CPU)
    np.testing.assert_allclose(one_piece, whole, atol=1e-5)
    chunked = InferenceConfig(expression_chunk_frames=20, expression_context_frames=10)
    pieces = predict_mouth(networks.audio2expression, mel, starts, config, chunked, CPU)
    assert pieces.shape == (n_frames, networks.config.audio2expression.mouth_dim)
    # Independently: the frames 20..39 are the network run on frames 10..49, context dropped.
    windows = torch.from_numpy(audio_windows(mel, starts[10:50], config))[None]
    np.testing.assert_allclose(
        pieces[20:40], networks.audio2expression(windows)[0, 10:30].detach().numpy(), atol=1e-5
    )
    windows = torch.from_numpy(audio_windows(mel, starts[50:75], config))[None]  # the last piece: 60..74
    np.testing.assert_allclose(
        pieces[60:], networks.audio2expression(windows)[0, 10:].detach().numpy(), atol=1e-5
    )
