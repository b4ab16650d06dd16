"""Preprocessing with two people on screen: the training data is the selected person's face.

The source is the ``two_faces`` fixture: a VoxCeleb2 speaker on the left, a grid/s1 clip on the
right. Preprocessing the GRID face of it must give what preprocessing the GRID clip alone gives.
"""

from __future__ import annotations

import numpy as np
import pytest

from stableface.audio.features import AudioFeatureConfig
from stableface.config.jobs import PreprocessJobConfig
from stableface.data.extract import extract_video, extract_video_row
from stableface.data.layout import DatasetLayout
from stableface.errors import InputError
from stableface.face.config import FaceConfig
from stableface.face.face_tracks import FaceSelection
from stableface.face.landmarks import make_backend
from stableface.io.storage import Storage
from stableface.io.video import read_frames
from stableface.status import RowStatus

GRID_CLIP = 5  # the grid/s1 clip on the right of the fixture (tests/conftest.py TWO_FACES_GRID_CLIP)
FACE = FaceConfig(crop_size=64)


@pytest.fixture(scope="module")
def backend():
    backend = make_backend("mediapipe", max_faces=FACE.max_faces)
    yield backend
    backend.close()


def _extract(path, backend, folder, name, selection=None):
    crops = folder / f"{name}.mp4"
    track, facts = extract_video(
        path, str(path), FACE, AudioFeatureConfig(), backend, crops, selection=selection
    )
    return track, facts, read_frames(crops)


@pytest.fixture(scope="module")
def extracted(two_faces, grid_clips, backend, tmp_path_factory):
    folder = tmp_path_factory.mktemp("preprocess_two_faces")
    return {
        "alone": _extract(grid_clips[GRID_CLIP], backend, folder, "alone"),
        "second": _extract(two_faces["path"], backend, folder, "second", FaceSelection.parse("2")),
        "point": _extract(
            two_faces["path"],
            backend,
            folder,
            "point",
            FaceSelection.parse(f"{two_faces['grid_x0'] + 180},140"),
        ),
        "first": _extract(two_faces["path"], backend, folder, "first", FaceSelection.parse("1")),
    }


@pytest.mark.parametrize("name", ["second", "point"])
def test_the_selected_grid_face_is_preprocessed_as_the_grid_clip_alone(extracted, two_faces, name):
    grid_x0 = two_faces["grid_x0"]
    alone, _, alone_crops = extracted["alone"]
    track, facts, crops = extracted[name]
    assert track.present.all() and track.n_frames == alone.n_frames == 75
    # The same landmarks, shifted by the left half (the fixture re-encodes the clip, so a few jaw
    # points of the first, detected, frame move by up to 2 px; on average they agree within 0.3 px).
    offset = np.abs(track.ibug68 - (alone.ibug68 + np.array([grid_x0, 0])))
    assert offset.max() < 2.0 and offset.mean() < 0.3, (offset.max(), offset.mean())
    np.testing.assert_allclose(track.crop_boxes[:, 0], alone.crop_boxes[:, 0] + grid_x0, atol=1.0)
    np.testing.assert_allclose(track.crop_boxes[:, 1:], alone.crop_boxes[:, 1:], atol=1.0)
    mesh_offset = np.abs(track.mesh[..., :2] - alone.mesh[..., :2])  # crop pixels
    assert mesh_offset.max() < 1.0 and mesh_offset.mean() < 0.15, (mesh_offset.max(), mesh_offset.mean())
    difference = np.abs(crops.astype(np.int16) - alone_crops.astype(np.int16))
    assert difference.mean() < 3.0, difference.mean()  # the same face crops, up to two encodes
    print(
        f"{name}: landmarks {offset.max():.2f}/{offset.mean():.3f} px, mesh {mesh_offset.max():.2f}/"
        f"{mesh_offset.mean():.3f} crop px, crops {difference.mean():.2f} grey levels"
    )
    assert facts["faces_tracked"] == 2
    x0, _, x1, _ = facts["face_box"]
    assert x0 > grid_x0 and x1 < grid_x0 + 360


def test_the_other_face_gives_the_other_person(extracted, two_faces):
    grid_x0 = two_faces["grid_x0"]
    track, facts, crops = extracted["first"]
    _, _, grid_crops = extracted["second"]
    assert track.present.all()
    assert (track.ibug68[..., 0] < grid_x0).all()  # every landmark on the VoxCeleb2 half
    assert facts["face"] == "1" and facts["face_box"][2] < grid_x0
    assert np.abs(crops.astype(np.int16) - grid_crops.astype(np.int16)).mean() > 20  # another face


def test_auto_refuses_two_faces_alike_and_names_them(two_faces, backend, tmp_path):
    with pytest.raises(
        InputError,
        match=r"two_faces.mp4: 2 faces of similar size are on screen together \(face 1 at \(\d+, \d+\) in "
        r"75 frames, face 2 at \(\d+, \d+\) in 75 frames\); choose the speaker's with the catalog's face column",
    ):
        extract_video(two_faces["path"], str(two_faces["path"]), FACE, AudioFeatureConfig(), backend,
                      tmp_path / "crops.mp4")  # fmt: skip


def test_a_catalog_row_face_reaches_preprocessing_and_a_malformed_one_fails_its_row(
    two_faces, backend, tmp_path
):
    cfg = PreprocessJobConfig(catalog="unused", dataset_uri=str(tmp_path / "dataset"), face=FACE)
    storage, layout = Storage(), DatasetLayout(cfg.dataset_uri)
    uri = str(two_faces["path"])
    typo = extract_video_row(
        {"speaker": "s1", "video_id": "typo", "video_uri": uri, "face": "right"},
        cfg,
        storage,
        layout,
        backend,
    )
    assert typo["status"] == RowStatus.FAILED
    assert typo["reason"].startswith(f"{uri} face: 'right' is not a face selection")
    ambiguous = extract_video_row(
        {"speaker": "s1", "video_id": "auto", "video_uri": uri, "face": ""}, cfg, storage, layout, backend
    )
    assert ambiguous["status"] == RowStatus.FAILED and "2 faces of similar size" in ambiguous["reason"]
    chosen = extract_video_row(
        {"speaker": "s1", "video_id": "grid", "video_uri": uri, "face": "2"}, cfg, storage, layout, backend
    )
    assert chosen["status"] == RowStatus.OK and chosen["face"] == "2"
    assert chosen["face_box"][0] > two_faces["grid_x0"]
    assert storage.read_json(layout.video_file("s1", "grid", "meta.json"))["face_box"] == chosen["face_box"]
