"""Scoring every face of a video: two people on screen give two scores, each of its own mouth.

The source is the ``two_faces`` fixture: a VoxCeleb2 speaker on the left, a grid/s1 clip on the right.
"""

from __future__ import annotations

import numpy as np
import pytest

from stableface.face.landmarks import MediaPipeBackend
from stableface.io.video import read_frames
from stableface.metrics import MetricsConfig
from stableface.metrics.msi import motion_stability
from stableface.metrics.video import score_video, score_video_faces
from stableface.status import RowStatus

CONFIG = MetricsConfig(lipsync=False, cpbd=False)


@pytest.fixture(scope="module")
def backend():
    backend = MediaPipeBackend(max_faces=CONFIG.max_faces)
    yield backend
    backend.close()


def _alone_msi(frames: np.ndarray) -> tuple[float, float]:
    """Lip and jaw MSI of the one face in ``frames``, tracked on its own (a fresh single-face backend)."""
    alone = MediaPipeBackend(max_faces=1)
    try:
        faces = [alone.detect(frame) for frame in frames]
    finally:
        alone.close()
    assert all(face is not None for face in faces)
    result = motion_stability(np.stack([face.ibug68 for face in faces]))
    return result.lip, result.jaw


def test_each_face_is_scored_as_its_crop_alone(two_faces, backend):
    grid_x0 = two_faces["grid_x0"]
    scores = score_video_faces(two_faces["path"], CONFIG, backend, keep_landmarks=True)
    assert [score.extras["face"] for score in scores] == ["1", "2"]
    assert all(score.status == RowStatus.OK and score.extras["n_faces"] == 2 for score in scores)
    vox, grid = scores
    assert vox.extras["face_box"][2] < grid_x0 < grid.extras["face_box"][0]
    assert (vox.ibug68[..., 0] < grid_x0).all() and (grid.ibug68[..., 0] > grid_x0).all()
    assert vox.n_face_frames == grid.n_face_frames == 75
    frames = read_frames(two_faces["path"])
    for score, half in ((vox, frames[:, :, :grid_x0]), (grid, frames[:, :, grid_x0:])):
        lip, jaw = _alone_msi(np.ascontiguousarray(half))
        print(f"face {score.extras['face']}: lip {score.msi_lip:.4f} alone {lip:.4f}, jaw {score.msi_jaw:.4f} "
              f"alone {jaw:.4f}")  # fmt: skip
        assert score.msi_lip == pytest.approx(lip, rel=0.1)
        assert score.msi_jaw == pytest.approx(jaw, rel=0.1)
    assert vox.msi_lip != pytest.approx(grid.msi_lip, rel=0.1)  # two different mouths
    assert vox.slice_image is not None and grid.slice_image is not None
    assert not np.array_equal(vox.slice_image, grid.slice_image)  # each face's own mouth column


def test_one_face_on_screen_scores_as_before(grid_clips, backend):
    (every,) = score_video_faces(grid_clips[0], CONFIG, backend, keep_landmarks=True)
    single = score_video(grid_clips[0], CONFIG, backend, keep_landmarks=True)
    assert (every.extras["face"], every.extras["n_faces"]) == ("1", 1)
    assert every.msi_lip == single.msi_lip and every.msi_jaw == single.msi_jaw
    np.testing.assert_array_equal(every.ibug68, single.ibug68)
    np.testing.assert_array_equal(every.slice_image, single.slice_image)


def test_a_video_without_a_face_gets_one_no_score(tmp_path, backend):
    from stableface.io.video import VideoWriter

    path = tmp_path / "bars.mp4"
    with VideoWriter(path, fps=25, width=64, height=64) as writer:
        for index in range(20):
            writer.write(np.full((64, 64, 3), 10 * index, np.uint8))
    (score,) = score_video_faces(path, CONFIG, backend)
    assert score.status == RowStatus.NO_SCORE and "a face was found in 0 of 20 frames" in score.reason
