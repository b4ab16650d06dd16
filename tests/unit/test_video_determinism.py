"""The same frames make the same H.264 file, whatever the heap held before (issue #12).

x264's AVX-512 macroblock-tree code reads memory it never wrote when a frame's width in macroblocks
is not a multiple of 16 (GRID's 360 px: 23 macroblocks), so before the fix the same frames
encoded in one process gave several different files. Freshly mapped memory is zeros, so plain
re-runs can happen to agree; glibc's malloc perturbation (``mallopt(M_PERTURB, byte)``) fills every
block malloc hands out with a byte of our choosing, which makes "the heap held something else"
certain instead of likely.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib

import numpy as np
import pytest

from stableface.io.video import VideoWriter, read_frames

M_PERTURB = -6  # glibc's mallopt parameter: fill malloc'd blocks with ~byte and freed ones with byte


def _glibc():
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    libc = ctypes.CDLL(name)
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "gnu_get_libc_version") else None


def _encode(frames: np.ndarray, path) -> bytes:
    with VideoWriter(path, fps=25, width=frames.shape[2], height=frames.shape[1]) as writer:
        for frame in frames:
            writer.write(frame)
    return path.read_bytes()


@pytest.mark.parametrize("width", [360, 352])  # 23 and 22 macroblocks wide: neither a multiple of 16
def test_the_same_frames_encode_to_the_same_bytes_whatever_the_heap_held(grid_clips, tmp_path, width):
    libc = _glibc()
    if libc is None:
        pytest.skip("needs glibc's mallopt(M_PERTURB) to vary uninitialised heap memory")
    frames = read_frames(grid_clips[0], max_frames=30)[:, :, :width].copy()  # (30, 288, W, 3)
    outputs, keep = [], []
    try:
        for run, pattern in enumerate((0x00, 0xA5, 0x4D, 0x11, 0x77)):
            libc.mallopt(M_PERTURB, pattern)
            # Other work's allocations between encodes, as a dub's rendering makes them.
            keep.append(np.full((run + 1) * 700_000, pattern, dtype=np.uint8))
            outputs.append(_encode(frames, tmp_path / f"run{run}.mp4"))
    finally:
        libc.mallopt(M_PERTURB, 0)
    digests = [hashlib.sha256(data).hexdigest()[:12] for data in outputs]
    assert len(set(digests)) == 1, f"{len(set(digests))} different files from the same frames: {digests}"
    first = read_frames(tmp_path / "run0.mp4")
    assert first.shape == frames.shape
    for run in range(1, len(outputs)):
        np.testing.assert_array_equal(read_frames(tmp_path / f"run{run}.mp4"), first)
