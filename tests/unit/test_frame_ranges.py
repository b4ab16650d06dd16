"""FrameSource (io.frame_ranges): contiguous frame ranges in any order, equal to a plain sequential decode, in bounded memory."""

from __future__ import annotations

import numpy as np
import pytest

from stableface.errors import UnreadableMedia
from stableface.inference.timeline import source_index_map
from stableface.io.frame_ranges import FrameSource
from stableface.io.video import read_frames


@pytest.fixture(scope="module", params=["grid_mpeg1", "voxceleb_h264"])
def video(request, grid_clips, shared_data):
    path = (
        grid_clips[0] if request.param == "grid_mpeg1" else shared_data / "voxceleb2" / "zip_Input_00002.mp4"
    )
    return path, read_frames(path)


def _check(frames, reference, start):
    for offset, frame in enumerate(frames):
        np.testing.assert_array_equal(frame, reference[start + offset], err_msg=f"frame {start + offset}")


def test_pingpong_walk_in_chunks_gives_exactly_the_decoded_frames(video):
    path, reference = video
    n_source = len(reference)
    n_output, chunk = 3 * n_source, 24
    with FrameSource(path) as source:
        for first in range(0, n_output, chunk):
            index = source_index_map(n_output, n_source, first, first + chunk + 4)  # + context frames
            start, stop = int(index.min()), int(index.max()) + 1
            _check(source.read_range(start, stop), reference, start)
        assert source.seeks > 0  # the backward passes were served by seeking, not by decoding from 0
        assert source.decoded < 3 * n_output  # and not by re-decoding everything per chunk


def test_random_ranges_and_overlaps_with_the_previous_range(video):
    path, reference = video
    rng = np.random.default_rng(0)
    with FrameSource(path) as source:
        for _ in range(15):
            start = int(rng.integers(0, len(reference) - 1))
            stop = int(rng.integers(start + 1, min(len(reference), start + 40) + 1))
            _check(source.read_range(start, stop), reference, start)
        _check(source.read_range(10, 20), reference, 10)
        _check(source.read_range(15, 30), reference, 15)  # half from the cache, half decoded on


def test_ranges_past_the_end_and_bad_files_raise_naming_the_video(grid_clips, bad_videos):
    with (
        FrameSource(grid_clips[0], source="s3://bucket/clip.mpg") as source,
        pytest.raises(UnreadableMedia, match=r"s3://bucket/clip\.mpg: has 75 frames; frame 79"),
    ):
        source.read_range(70, 80)
    with pytest.raises(UnreadableMedia, match="not a readable media file"):
        FrameSource(bad_videos["text"])
