"""Output timelines: the output -> source frame map (trim, ping-pong) and the renderer's cross-faded windows."""

from __future__ import annotations

import numpy as np
import pytest

from stableface.errors import InputError
from stableface.inference.timeline import (
    WindowBlender,
    WindowLayout,
    blend_windows,
    chunk_windows,
    context_range,
    is_pingpong,
    run_in_pieces,
    source_index_map,
)


def test_shorter_audio_trims_the_source():
    np.testing.assert_array_equal(source_index_map(4, 10), [0, 1, 2, 3])
    np.testing.assert_array_equal(source_index_map(10, 10), np.arange(10))
    assert not is_pingpong(10, 10)


def test_longer_audio_plays_the_source_back_and_forth():
    expected = [0, 1, 2, 3, 2, 1, 0, 1, 2, 3, 2, 1, 0, 1]
    np.testing.assert_array_equal(source_index_map(14, 4), expected)
    assert is_pingpong(14, 4)
    np.testing.assert_array_equal(source_index_map(5, 1), np.zeros(5))  # a still image stays still


@pytest.mark.parametrize("n_source", [1, 2, 3, 7, 75])
def test_pingpong_never_jumps_and_any_range_matches_the_whole_map(n_source):
    n_output = 5 * n_source + 3
    whole = source_index_map(n_output, n_source)
    assert whole.min() == 0 and whole.max() == n_source - 1
    assert np.all(np.abs(np.diff(whole)) <= 1)  # so every chunk is one contiguous source range
    for start, stop in [(0, 9), (n_source - 1, n_source + 6), (n_output - 4, n_output + 10)]:
        np.testing.assert_array_equal(source_index_map(n_output, n_source, start, stop), whole[start:stop])


def test_timeline_inputs_are_checked():
    with pytest.raises(InputError, match="source video: has no frames"):
        source_index_map(3, 0)
    with pytest.raises(InputError, match=r"inference\.window_overlap"):
        WindowLayout(20, 4, 4)


@pytest.mark.parametrize(
    ("n_frames", "length", "overlap"), [(16, 8, 4), (13, 8, 4), (30, 4, 2), (5, 8, 4), (8, 8, 3)]
)
def test_windows_cover_every_frame_within_the_model_length(n_frames, length, overlap):
    layout = WindowLayout(n_frames, length, overlap)
    covered = np.zeros(n_frames, int)
    for index in range(layout.n_windows):
        start, stop = layout.window(index)
        assert 0 < stop - start <= length
        covered[start:stop] += 1
    assert covered.min() >= 1
    assert layout.window(layout.n_windows - 1)[1] == n_frames  # the last window ends at the last frame
    np.testing.assert_array_equal(layout.starts(), [layout.start(j) for j in range(layout.n_windows)])


def test_crossfade_weights_ramp_and_sum_to_one_on_a_regular_layout():
    layout = WindowLayout(16, 8, 4)  # windows at 0, 4, 8
    np.testing.assert_allclose(layout.weights(0), [1, 1, 1, 1, 0.875, 0.625, 0.375, 0.125])
    np.testing.assert_allclose(layout.weights(1), [0.125, 0.375, 0.625, 0.875, 0.875, 0.625, 0.375, 0.125])
    np.testing.assert_allclose(layout.weights(2), [0.125, 0.375, 0.625, 0.875, 1, 1, 1, 1])
    total = np.zeros(16)
    for index in range(layout.n_windows):
        start, stop = layout.window(index)
        total[start:stop] += layout.weights(index)
    np.testing.assert_allclose(total, 1.0)
    assert all((layout.weights(j) > 0).all() for j in range(layout.n_windows))


def test_windows_stay_inside_runs_and_each_run_fades_on_its_own():
    # runs [0, 10) [10, 13) [13, 30): a face segment, a 3-frame one, another
    layout = WindowLayout(30, 8, 4, boundaries=(10, 13))
    windows = [layout.window(j) for j in range(layout.n_windows)]
    assert windows == [(0, 8), (2, 10), (10, 13), (13, 21), (17, 25), (21, 29), (22, 30)]
    for start, stop in windows:  # no window holds frames of two runs
        assert len(set(layout.run_labels(start, stop).tolist())) == 1
    np.testing.assert_array_equal(layout.run_labels(8, 15), [0, 0, 1, 1, 1, 2, 2])
    np.testing.assert_allclose(layout.weights(2), [1, 1, 1])  # alone in its run: no ramps
    assert layout.weights(1)[-1] == 1 and layout.weights(3)[0] == 1  # runs start and end at full weight
    constant = [np.full((stop - start, 1), 3.0, np.float32) for start, stop in windows]
    np.testing.assert_allclose(blend_windows(layout, constant), 3.0)  # weights sum to 1 in every run
    # each run blends exactly as a layout of that run alone would
    ramps = np.concatenate([layout.weights(j) for j in range(3, layout.n_windows)])
    alone = WindowLayout(17, 8, 4)
    np.testing.assert_allclose(ramps, np.concatenate([alone.weights(j) for j in range(alone.n_windows)]))
    with pytest.raises(ValueError, match="boundaries"):
        WindowLayout(30, 8, 4, boundaries=(13, 10))


def test_blending_is_a_weighted_average_of_the_windows_covering_a_frame():
    layout = WindowLayout(13, 8, 4)  # irregular: the last window moves back to end at frame 13
    rng = np.random.default_rng(0)
    outputs = [
        rng.standard_normal((stop - start, 2, 3)).astype(np.float32)
        for start, stop in map(layout.window, range(layout.n_windows))
    ]
    blended = blend_windows(layout, outputs)
    assert blended.shape == (13, 2, 3)
    for t in range(13):  # independent: the normalised weighted mean over covering windows
        numerator, denominator = 0.0, 0.0
        for index, output in enumerate(outputs):
            start, stop = layout.window(index)
            if start <= t < stop:
                weight = layout.weights(index)[t - start]
                numerator = numerator + weight * output[t - start]
                denominator += weight
        np.testing.assert_allclose(blended[t], numerator / denominator, rtol=1e-5, atol=1e-6)
    constant = [
        np.full((stop - start, 1), 7.0, np.float32)
        for start, stop in map(layout.window, range(layout.n_windows))
    ]
    np.testing.assert_allclose(blend_windows(layout, constant), 7.0)


def test_streaming_blender_hands_out_frames_once_no_later_window_covers_them():
    layout = WindowLayout(20, 8, 4)  # windows at 0, 4, 8, 12
    blender = WindowBlender(layout)
    handed = []
    for index in range(layout.n_windows):
        start, stop = layout.window(index)
        blender.add(index, np.arange(start, stop, dtype=np.float32)[:, None])
        ready = blender.pop_ready()
        handed.append(len(ready))
        assert len(blender._sums) <= layout.length  # holds at most one window of pending frames
    assert handed == [4, 4, 4, 8]
    with pytest.raises(ValueError, match="out of order"):
        WindowBlender(layout).add(1, np.zeros((8, 1)))


def test_chunks_and_context_ranges():
    assert chunk_windows(7, 3) == [(0, 3), (3, 6), (6, 7)]
    assert context_range(10, 20, 5, 100) == (5, 25)
    assert context_range(2, 98, 5, 100) == (0, 100)  # clipped to the sequence: no padding inside it


@pytest.mark.parametrize("piece_frames", [1, 3, 7, 50])
def test_pieces_with_enough_context_reproduce_the_whole_sequence(piece_frames):
    signal = np.random.default_rng(0).normal(size=(23, 2))  # (N, 2)
    radius = 2

    def moving_sum(lo: int, hi: int) -> np.ndarray:  # each row needs `radius` neighbours per side
        padded = np.pad(signal[lo:hi], ((radius, radius), (0, 0)))
        return np.stack([padded[i : i + 2 * radius + 1].sum(0) for i in range(hi - lo)])

    whole = moving_sum(0, len(signal))  # (N, 2), zero-padded at the ends like every piece
    pieces = run_in_pieces(len(signal), piece_frames, radius, moving_sum, empty=np.zeros((0, 2)))
    np.testing.assert_allclose(pieces, whole, atol=1e-12)
    short = run_in_pieces(len(signal), piece_frames, radius - 1, moving_sum, empty=np.zeros((0, 2)))
    assert piece_frames >= len(signal) or not np.allclose(short, whole)  # too little context shows
    assert run_in_pieces(0, piece_frames, radius, moving_sum, empty=np.zeros((0, 2))).shape == (0, 2)
