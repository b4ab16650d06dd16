"""Preparing a source video: the geometry preprocessing measures, cached as npz, with clear errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from stableface.data.sequences import rescale_pose
from stableface.errors import InputError, NoFaceFound, StorageNotFound, UnreadableMedia
from stableface.face.face_model import estimate_pose, normalise
from stableface.face.landmarks import MediaPipeBackend, track_landmarks
from stableface.face.tracking import crop_points, stable_crop_box
from stableface.inference.config import InferenceConfig
from stableface.inference.source import SourceTrack, model_key, prepare_source
from stableface.io.storage import Storage
from stableface.io.video import iter_frames
from stableface.speaker_model import SpeakerModel

HELD_OUT_CLIP = 5  # a grid/s1 clip the untrained model's identity did not see


@pytest.fixture(scope="module")
def model(untrained_speaker_model) -> SpeakerModel:
    return SpeakerModel.load(untrained_speaker_model)


@pytest.fixture(scope="module")
def prepared(model, grid_clips) -> SourceTrack:
    return prepare_source(grid_clips[HELD_OUT_CLIP], model)


def test_geometry_equals_the_preprocessing_path(model, prepared, grid_clips):
    """Independent computation: track -> stable box -> mesh in crop pixels -> pose -> expression."""
    face_config = dataclasses.replace(model.face_model.config, crop_size=model.crop_size)
    track = track_landmarks(iter_frames(grid_clips[HELD_OUT_CLIP]), MediaPipeBackend())
    box = stable_crop_box(track.mesh, track.present, face_config)
    mesh = crop_points(track.mesh, box)  # (T, 478, 3) crop pixels
    pose = estimate_pose(mesh)
    expression = model.face_model.encode(normalise(mesh, pose), model.identity)

    frames = np.arange(prepared.n_frames)
    assert prepared.n_frames == 75 and prepared.present.all()
    assert (prepared.width, prepared.height, prepared.fps) == (360, 288, 25)
    np.testing.assert_allclose(prepared.centres, box.centres, atol=1e-3)
    assert prepared.side == pytest.approx(box.side, rel=1e-6)
    crop_pose = prepared.crop_pose(frames, model.crop_size)
    np.testing.assert_allclose(crop_pose.scale, pose.scale, rtol=1e-5)
    np.testing.assert_allclose(crop_pose.rotation, pose.rotation, atol=1e-5)
    np.testing.assert_allclose(crop_pose.translation, pose.translation, atol=1e-3)
    np.testing.assert_allclose(prepared.expression, expression, atol=1e-4)
    # At the renderer's image size the pose is training's rescale_pose of the crop pose.
    size = model.image_size
    resized = rescale_pose(pose, size / model.crop_size)
    np.testing.assert_allclose(prepared.crop_pose(frames, size).translation, resized.translation, atol=1e-3)
    np.testing.assert_allclose(prepared.crop_affines(frames[:1], size)[0, 0, 0], size / box.side, rtol=1e-6)


def test_the_same_speaker_is_close_to_the_identity_and_another_person_is_refused(
    model, prepared, shared_data
):
    assert prepared.identity_distance < InferenceConfig().max_identity_distance / 2
    stranger = shared_data / "grid" / "speakers" / "lbax4n.mpg"
    refusal = (
        r"lbax4n.mpg: no face matches speaker model 's1' \(closest 0\.0\d\d > 0\.020 over 75 face frames"
    )
    with pytest.raises(InputError, match=refusal):
        prepare_source(stranger, model)
    unchecked = prepare_source(stranger, model, InferenceConfig(max_identity_distance=None))
    assert unchecked.identity_distance > InferenceConfig().max_identity_distance


def test_round_trip_through_storage_and_model_check(model, prepared, tmp_path, s3_bucket, s3_storage_config):
    for uri, storage in [
        (str(tmp_path / "source.npz"), Storage()),
        (f"{s3_bucket}/sources/a.npz", Storage(s3_storage_config)),
    ]:
        prepared.save(uri, storage)
        loaded = SourceTrack.load(uri, storage)
        assert (loaded.fps, loaded.width, loaded.height, loaded.side) == (
            prepared.fps,
            360,
            288,
            prepared.side,
        )
        np.testing.assert_array_equal(loaded.expression, prepared.expression)
        np.testing.assert_array_equal(loaded.pose.to_array(), prepared.pose.to_array())
        assert loaded.model_key == model_key(model)
        loaded.check_model(model)
    other = dataclasses.replace(model, identity=model.identity + 0.01)
    with pytest.raises(InputError, match="was prepared for speaker model s1:"):
        prepared.check_model(other, "s3://models/s1-v2")
    (tmp_path / "junk.npz").write_bytes(b"not an npz")
    with pytest.raises(InputError, match=r"junk\.npz: not a prepared source file"):
        SourceTrack.load(str(tmp_path / "junk.npz"))


def test_videos_without_a_usable_face_or_readable_frames_raise_naming_the_video(model, bad_videos):
    with pytest.raises(NoFaceFound, match=r"s3://b/scenery.mp4: a face was found in 0 of 50 frames"):
        prepare_source(bad_videos["no_face"], model, source="s3://b/scenery.mp4")
    with pytest.raises(UnreadableMedia, match=r"s3://b/notes.mp4: not a readable media file"):
        prepare_source(bad_videos["text"], model, source="s3://b/notes.mp4")
    with pytest.raises(StorageNotFound, match=r"does_not_exist\.mp4: no such file"):
        prepare_source(bad_videos["missing"], model)


def test_a_one_frame_clip_of_the_speaker_is_dubbed_and_says_it_was_not_verified(model, grid_clips, tmp_path):
    from stableface.inference import dub_files
    from stableface.inference.source import identity_warning
    from stableface.io.audio import write_audio
    from stableface.io.video import VideoWriter, read_frames

    frame = read_frames(grid_clips[7])[10]  # main: "shape distance 0.023 > 0.020", a misleading refusal
    clip = tmp_path / "one_frame.mp4"
    with VideoWriter(clip, fps=25, width=frame.shape[1], height=frame.shape[0]) as writer:
        writer.write(frame)
    track = prepare_source(clip, model)
    assert track.identity_distance > InferenceConfig().max_identity_distance  # one frame cannot tell
    assert (
        identity_warning(track, InferenceConfig())
        == "too few face frames (1 < 25) to verify the face is the speaker's"
    )
    audio = tmp_path / "tone.wav"
    write_audio(audio, 0.3 * np.sin(np.arange(16_000) * 0.05).astype(np.float32), 16_000)
    result = dub_files(model, clip, audio, tmp_path / "dub.mp4", source=track)
    assert result.warning.startswith("too few face frames (1 < 25)")
