"""Two people on screen: the dub paints the speaker model's face (or the selected one) and only that.

The source is the ``two_faces`` fixture: a VoxCeleb2 speaker on the left, a grid/s1 clip on the
right (the untrained ``s1`` model's identity is grid/s1).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from stableface.errors import InputError
from stableface.face.face_tracks import Box, FaceSelection, SelectionKind, TrackLinker
from stableface.inference import DubConfig, InferenceConfig, load_speaker_model, mark_box, prepare_source
from stableface.inference.batch import ModelCache, dub_entry, read_dub_catalog
from stableface.inference.face_choice import TrackSummary, choose_face
from stableface.inference.pipeline import plan_dub
from stableface.io.audio import read_audio, write_audio
from stableface.io.storage import Storage
from stableface.io.video import read_frames

GRID_CLIP = 5  # the grid/s1 clip on the right of the fixture (tests/conftest.py TWO_FACES_GRID_CLIP)
VOX_FACE = (112, 144)  # the centre of the left (VoxCeleb2) half, source pixels


@pytest.fixture(scope="module")
def model(untrained_speaker_model):
    return load_speaker_model(untrained_speaker_model)


@pytest.fixture(scope="module")
def auto(model, two_faces):
    return prepare_source(two_faces["path"], model)


@pytest.fixture(scope="module")
def speech(shared_data, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("two_faces_speech") / "fr_2s.wav"
    write_audio(path, read_audio(shared_data / "speech" / "macron_12s.wav", 16_000)[: 2 * 16_000], 16_000)
    return str(path)


# ----------------------------------------------------------------------------- selections and links
@pytest.mark.parametrize(
    ("text", "expected"),
    [("", FaceSelection()), ("auto", FaceSelection()), (" 2 ", FaceSelection(SelectionKind.index, index=2)),
     ("412,130", FaceSelection(SelectionKind.point, x=412, y=130)),
     ("412.5, 130", FaceSelection(SelectionKind.point, x=412.5, y=130))],
)  # fmt: skip
def test_face_selections_parse_and_read_back(text, expected):
    selection = FaceSelection.parse(text)
    assert selection == expected
    assert FaceSelection.parse(selection.text) == selection


@pytest.mark.parametrize("text", ["left", "0", "-1", "1,2,3", "x,y", "2.5"])
def test_malformed_face_selections_name_the_input(text):
    problem = "( is not a face selection|: face numbers start at 1)"
    with pytest.raises(InputError, match=rf"^row 4 face: '{re.escape(text)}'{problem}"):
        FaceSelection.parse(text, "row 4 face")


def test_the_linker_follows_each_face_and_resumes_a_face_that_returns_in_place():
    left, right = Box(0, 0, 100, 100), Box(200, 0, 300, 100)
    linker = TrackLinker()
    assert linker.assign([left, right]) == [0, 1]
    assert linker.assign([Box(205, 2, 305, 102), Box(3, 0, 103, 100)]) == [1, 0]  # order does not matter
    assert linker.assign([]) == []  # a cutaway
    assert linker.assign([Box(4, 1, 104, 101)]) == [0]  # back where it was
    assert linker.assign([Box(400, 0, 500, 100)]) == [2]  # a new place, a new track
    assert linker.n_tracks == 3


# ----------------------------------------------------------------------------- choosing the face
def _track(track_id, frames, x, distance):
    return TrackSummary(track_id, np.arange(*frames), Box(x, 0, x + 100, 100), distance)


def test_auto_takes_every_matching_track_that_shares_no_frame_and_refuses_when_none_matches():
    config = InferenceConfig()  # limit 0.020, 25 frames to verify
    other, speaker = _track(0, (0, 100), 0, 0.09), _track(1, (0, 60), 200, 0.006)  # the other one first
    back_elsewhere, short_match = _track(2, (70, 100), 400, 0.008), _track(3, (65, 68), 0, 0.012)
    choice = choose_face([other, speaker, back_elsewhere, short_match], FaceSelection(), "s1", config, "v")
    assert choice.track_ids == (1, 2, 3)  # by distance; none overlaps another
    assert choice.n_frames == 93
    assert choice.distance == pytest.approx((60 * 0.006 + 30 * 0.008 + 3 * 0.012) / 93)
    with pytest.raises(InputError, match=r"^v: no face matches speaker model 's1' \(closest 0\.050 > 0\.020 "
                       r"over 100 face frames; 2 faces tracked\)"):  # fmt: skip
        choose_face([_track(0, (0, 100), 0, 0.09), _track(1, (0, 100), 200, 0.05)], FaceSelection(), "s1",
                    config, "v")  # fmt: skip
    one_frame = choose_face([_track(0, (0, 1), 0, 0.03), _track(1, (0, 1), 200, 0.025)], FaceSelection(),
                            "s1", config, "v")  # fmt: skip
    assert one_frame.track_ids == (1,)  # too short to verify: the closest, unverified (the row warns)
    assert choose_face([speaker], FaceSelection.parse("250,50"), "s1", config, "v").track_ids == (1,)
    assert choose_face([other, speaker], FaceSelection.parse("2"), "s1", config, "v").track_ids == (1,)


def test_auto_picks_the_grid_face_measured_as_if_it_were_alone(model, auto, two_faces, grid_clips):
    grid_x0 = two_faces["grid_x0"]
    alone = prepare_source(grid_clips[GRID_CLIP], model)
    assert auto.present.all() and auto.n_frames == alone.n_frames == 75
    assert auto.identity_distance <= InferenceConfig().max_identity_distance
    # The same face as the GRID clip on its own, shifted by the left half (re-encoded: within 1.5 px).
    np.testing.assert_allclose(auto.centres, alone.centres + np.array([grid_x0, 0]), atol=1.5)
    assert auto.side == pytest.approx(alone.side, rel=0.02)
    assert auto.identity_distance == pytest.approx(alone.identity_distance, abs=0.003)


def test_a_point_or_an_index_selects_the_face_and_a_point_on_the_other_face_is_refused(
    model, auto, two_faces
):
    grid_x0 = two_faces["grid_x0"]
    on_grid = FaceSelection.parse(f"{grid_x0 + 180},{140}")
    for selection in (on_grid, FaceSelection.parse("2")):
        chosen = prepare_source(two_faces["path"], model, face=selection)
        np.testing.assert_allclose(chosen.centres, auto.centres)
        np.testing.assert_array_equal(chosen.expression, auto.expression)
    path = two_faces["path"]
    x, y = VOX_FACE
    with pytest.raises(
        InputError,
        match=rf"two_faces.mp4: the face at \({x}, {y}\) does not match speaker model 's1' "
        r"\(distance 0\.\d{3} > 0\.020 over 75 face frames\)",
    ):
        prepare_source(path, model, face=FaceSelection.parse(f"{x},{y}"))
    with pytest.raises(
        InputError, match=r"two_faces.mp4: face 1 from the left does not match speaker model 's1'"
    ):
        prepare_source(path, model, face=FaceSelection.parse("1"))
    with pytest.raises(
        InputError, match=r"two_faces.mp4: no face at \(3, 3\); the faces are centred at \(1\d\d, "
    ):
        prepare_source(path, model, face=FaceSelection.parse("3,3"))
    with pytest.raises(InputError, match=r"two_faces.mp4: face 3 was selected but there are only 2 faces"):
        prepare_source(path, model, face=FaceSelection.parse("3"))


# ----------------------------------------------------------------------------- dubbing
def test_the_dub_changes_the_grid_face_and_leaves_the_other_face_bit_for_bit(model, auto, two_faces, speech):
    config = DubConfig()
    plan = plan_dub(model, two_faces["path"], speech, config, auto)
    dubbed = np.stack(list(plan.frames()))  # (N, H, W, 3) composited, before encoding
    source = read_frames(two_faces["path"])
    index = plan.renderer.source_index  # (N,)
    height, width = source.shape[1:3]
    outside_mark = np.ones((height, width), bool)
    x0, y0, x1, y1 = mark_box(height, width, config.provenance)
    outside_mark[max(y0, 0) : y1, max(x0, 0) : x1] = False
    differs = np.any(dubbed != source[index], axis=-1) & outside_mark  # (N, H, W)
    grid_x0 = two_faces["grid_x0"]
    assert int(differs[:, :, :grid_x0].sum()) == 0  # the other person: the source's own pixels
    changed = differs[:, :, grid_x0:].sum(axis=(1, 2))  # (N,) per frame on the GRID side
    assert (changed > 50).all()  # every frame's GRID mouth was painted


def test_scores_follow_the_dubbed_face_and_default_to_the_most_prominent(model, auto, two_faces):
    from stableface.face.landmarks import MediaPipeBackend
    from stableface.inference.batch import dubbed_face_box
    from stableface.metrics import MetricsConfig
    from stableface.metrics.video import score_video

    config = MetricsConfig(lipsync=False, slice_image=False, cpbd=False)
    grid_x0 = two_faces["grid_x0"]
    grid_box = dubbed_face_box(auto, model)
    assert grid_box.x0 > grid_x0 and grid_box.contains(*auto.centres.mean(axis=0))
    vox_box = Box(VOX_FACE[0] - 50, VOX_FACE[1] - 50, VOX_FACE[0] + 50, VOX_FACE[1] + 50)
    backend = MediaPipeBackend(max_faces=4)
    on_grid, on_vox = (
        score_video(two_faces["path"], config, backend, keep_landmarks=True, face=box)
        for box in (grid_box, vox_box)
    )
    assert on_grid.n_face_frames == on_vox.n_face_frames == 75
    assert (on_grid.ibug68[..., 0] > grid_x0).all() and (on_vox.ibug68[..., 0] < grid_x0).all()
    assert on_grid.msi_lip != pytest.approx(on_vox.msi_lip, rel=0.05)  # two different mouths


# ----------------------------------------------------------------------------- catalog rows
def test_the_catalog_face_column_reaches_the_dub_and_a_malformed_one_fails_its_row(
    model, two_faces, speech, untrained_speaker_model, tmp_path
):
    path = str(two_faces["path"])
    x, y = VOX_FACE
    rows = [
        {"job_id": "other", "model_uri": untrained_speaker_model, "video_uri": path, "audio_uri": speech,
         "face": f"{x},{y}"},
        {"job_id": "typo", "model_uri": untrained_speaker_model, "video_uri": path, "audio_uri": speech,
         "face": "leftmost"},
        {"job_id": "plain", "model_uri": untrained_speaker_model, "video_uri": path, "audio_uri": speech,
         "face": ""},
        {"job_id": "second", "model_uri": untrained_speaker_model, "video_uri": path, "audio_uri": speech,
         "face": "2"},
    ]  # fmt: skip
    catalog = tmp_path / "catalog.csv"
    pd.DataFrame(rows).to_csv(catalog, index=False)
    storage = Storage()
    output = str(tmp_path / "out")
    entries = {entry["job_id"]: entry for entry in read_dub_catalog(str(catalog), None, output, storage)}
    assert entries["other"]["face"] == f"{x},{y}" and entries["plain"]["face"] == ""
    assert entries["typo"]["reason"].startswith("row 2 face: 'leftmost' is not a face selection")
    models = ModelCache(storage)
    results = {
        job: dub_entry(entries[job], DubConfig(), output, storage, models) for job in ("other", "typo")
    }
    assert results["typo"]["status"] == "failed"
    assert "row 2 face: 'leftmost' is not a face selection" in results["typo"]["reason"]
    assert results["other"]["status"] == "failed"
    assert results["other"]["face"] == f"{x},{y}"
    assert (
        f"two_faces.mp4: the face at ({x}, {y}) does not match speaker model 's1'"
        in results["other"]["reason"]
    )
    assert not [p for p in (tmp_path / "out").rglob("*") if p.is_file()]  # nothing written for them
    second = dub_entry(entries["second"], DubConfig(), output, storage, models)
    assert (second["status"], second["face"], second["reason"]) == ("ok", "2", "")
    assert second["frames_dubbed"] == second["output_frames"] == 50 and second["warning"] == ""
    assert (tmp_path / "out" / "videos" / "second.mp4").is_file()


def test_the_review_scores_the_source_on_the_dubbed_face(
    model, two_faces, speech, untrained_speaker_model, tmp_path
):
    from stableface.face.landmarks import MediaPipeBackend
    from stableface.metrics import MetricsConfig
    from stableface.metrics.video import score_video
    from stableface.report.review import review_row

    path = str(two_faces["path"])
    storage, output = Storage(), str(tmp_path / "out")
    entry = {"job_id": "second", "model_uri": untrained_speaker_model, "video_uri": path, "audio_uri": speech,
             "face": "2"}  # fmt: skip
    catalog = tmp_path / "catalog.csv"
    pd.DataFrame([entry]).to_csv(catalog, index=False)
    (entry,) = read_dub_catalog(str(catalog), None, output, storage)
    row = dub_entry(entry, DubConfig(), output, storage, ModelCache(storage))
    grid_box = Box(*row["face_box"])
    assert row["status"] == "ok" and grid_box.x0 > two_faces["grid_x0"]
    x, y = VOX_FACE
    vox_box = Box(x - 50, y - 50, x + 50, y + 50)
    config = MetricsConfig(lipsync=False, cpbd=False)
    backend = MediaPipeBackend(max_faces=4)
    for job_id, box in (("on_grid", grid_box), ("on_vox", vox_box)):
        review = review_row(
            {**row, "job_id": job_id, "face_box": [box.x0, box.y0, box.x1, box.y1]},
            output,
            storage,
            config,
            backend,
        )
        direct = score_video(path, config, backend, face=box)
        assert review["source_msi_lip"] == pytest.approx(direct.msi_lip), job_id
    grid_score = score_video(path, config, backend, face=grid_box).msi_lip
    vox_score = score_video(path, config, backend, face=vox_box).msi_lip
    assert grid_score != pytest.approx(vox_score, rel=0.05)  # the two reviews scored different mouths
