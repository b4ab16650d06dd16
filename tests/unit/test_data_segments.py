"""Preprocessing a lecture with a cutaway: training windows stay inside face segments, the manifest says why."""

from __future__ import annotations

import numpy as np
import pytest

from stableface.audio.features import AudioFeatureConfig
from stableface.data.extract import extract_video
from stableface.data.records import VideoTrack
from stableface.data.sequences import window_index
from stableface.face.config import FaceConfig
from stableface.face.landmarks import make_backend
from stableface.io.storage import Storage

WINDOW, STRIDE = 8, 2


@pytest.fixture(scope="module")
def lecture_track(mixed_lecture, tmp_path_factory):
    folder = tmp_path_factory.mktemp("lecture_track")
    backend = make_backend("mediapipe")
    try:
        track, facts = extract_video(
            mixed_lecture["path"], "s3://b/lecture.mp4", FaceConfig(crop_size=64), AudioFeatureConfig(),
            backend, folder / "crops.mp4",
        )  # fmt: skip
    finally:
        backend.close()
    uri = str(folder / "track.npz")
    track.save(Storage(), uri)
    return VideoTrack.load(Storage(), uri), facts


def test_no_training_window_contains_a_cutaway_frame(lecture_track, mixed_lecture):
    track, _ = lecture_track
    (_, a), (_, c), (_, end) = mixed_lecture["parts"]
    assert not track.present[a:c].any()
    index = window_index([track.trainable()], WINDOW, STRIDE)
    starts = np.array([start for _, start in index])
    assert not np.any((starts < c) & (starts + WINDOW > a)), "a window holds a cutaway frame"
    # both face parts still give their windows (all but the ones that would cross the cut)
    assert np.sum(starts + WINDOW <= a) >= (a - WINDOW) // STRIDE
    assert np.sum(starts >= c) >= (end - c - WINDOW) // STRIDE
    assert all(track.trainable()[start : start + WINDOW].all() for start in starts)


def test_the_manifest_row_says_how_many_frames_were_lost_and_why(lecture_track, mixed_lecture):
    _, facts = lecture_track
    (_, a), (_, c), _ = mixed_lecture["parts"]
    assert facts["frames_without_face"] == c - a
    assert (facts["face_segments"], facts["frames_lost"], facts["frames_bridged"]) == (2, c - a, 0)
    assert facts["frames_lost_reason"] == f"{c - a} frames in 1 gap of > 5 frames without a face"


def test_window_index_bridges_only_short_gaps():
    blink = np.ones(30, bool)
    blink[10:12] = False  # never trainable frames are not the same as missing detections:
    # a caller passes trainable masks, so a False frame always splits
    assert [start for _, start in window_index([blink], 8, 2)] == [0, 2, 12, 14, 16, 18, 20, 22]
    assert [start for _, start in window_index([np.ones(12, bool)], 8, 2)] == [0, 2, 4]
    track = VideoTrack(
        crop_boxes=np.zeros((30, 3), np.float32), present=blink, ibug68=np.zeros((30, 68, 2), np.float32),
        mesh=np.zeros((30, 478, 3), np.float32), pose_scale=np.ones(30, np.float32),
        pose_rotation=np.zeros((30, 3, 3), np.float32), pose_translation=np.zeros((30, 3), np.float32),
        audio=np.zeros((30, 1, 1), np.float16),
    )  # fmt: skip
    assert track.trainable().all()  # a dataset from before segments: its 2-frame blink is bridged
