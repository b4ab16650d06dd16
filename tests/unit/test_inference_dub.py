"""dub() end to end with an untrained tiny model: timing, geometry, provenance, streaming, errors."""

from __future__ import annotations

import dataclasses

import av
import numpy as np
import pytest

from stableface.errors import (
    InputError,
    InvalidURI,
    NoFaceFound,
    SilentAudio,
    StorageNotFound,
    UnreadableMedia,
)
from stableface.inference import (
    DubConfig,
    ProvenanceConfig,
    check_speaker_model,
    dub,
    load_speaker_model,
    mark_box,
    prepare_source,
    read_provenance,
    source_index_map,
)
from stableface.io.audio import read_audio, write_audio
from stableface.io.storage import Storage
from stableface.io.video import probe_video, read_frames
from stableface.provenance.config import WatermarkConfig
from stableface.provenance.watermark import Watermarker

SOURCE_CLIP = 5  # a grid/s1 clip (3 s, 75 frames, 360x288 @ 25 fps) the model's identity did not see
CODEC_TOLERANCE = 3.0  # mean absolute difference of re-encoded pixels (MPEG-1 source -> H.264 crf 18)


@pytest.fixture(scope="module")
def model(untrained_speaker_model):
    return load_speaker_model(untrained_speaker_model)


@pytest.fixture(scope="module")
def speech(shared_data, tmp_path_factory) -> dict[str, str]:
    """French speech cut to a few lengths (16 kHz wav), and a silent and a non-audio file."""
    folder = tmp_path_factory.mktemp("speech")
    samples = read_audio(shared_data / "speech" / "macron_12s.wav", 16_000)
    files = {}
    for name, seconds in [("fr_2s", 2.0), ("fr_4s", 4.2), ("fr_12s", 11.8)]:
        files[name] = str(folder / f"{name}.wav")
        write_audio(files[name], samples[: int(seconds * 16_000)], 16_000)
    files["silent"] = str(folder / "silent.wav")
    write_audio(files["silent"], np.zeros(16_000, np.float32), 16_000)
    files["text"] = str(folder / "notes.wav")
    (folder / "notes.wav").write_text("not audio\n")
    return files


@pytest.fixture(scope="module")
def source(model, grid_clips):
    return prepare_source(grid_clips[SOURCE_CLIP], model)


def _far_from_face(source_track, index: np.ndarray, shape, margin: float = 1.2) -> np.ndarray:
    """(n, H, W) bool: pixels outside each frame's crop box grown by ``margin`` (the face is inside it)."""
    height, width = shape
    ys, xs = np.mgrid[0:height, 0:width]
    half = margin * source_track.side / 2
    centres = source_track.centres[index]  # (n, 2)
    return (np.abs(xs[None] - centres[:, 0, None, None]) > half) | (
        np.abs(ys[None] - centres[:, 1, None, None]) > half
    )


def _upper_face(source_track, index: np.ndarray, shape) -> np.ndarray:
    """(n, H, W) bool: the top third of each frame's crop box (forehead, eyes), never pasted over."""
    height, width = shape
    ys, xs = np.mgrid[0:height, 0:width]
    half = source_track.side / 2
    centres = source_track.centres[index]  # (n, 2)
    top = centres[:, 1, None, None] - half
    return (
        (np.abs(xs[None] - centres[:, 0, None, None]) < half / 2)
        & (ys[None] > top)
        & (ys[None] < top + half * 0.66)
    )


def _watermarked(frames: np.ndarray, result) -> np.ndarray:
    """Source frames (n, H, W, 3) with the dub's invisible watermark: what its untouched pixels must be."""
    marker = Watermarker(result.watermark, WatermarkConfig())
    return np.stack([marker.mark(frame) for frame in frames])


@pytest.fixture(scope="module")
def pingpong_dub(model, grid_clips, speech, source, tmp_path_factory):
    output = str(tmp_path_factory.mktemp("dub") / "out.mp4")
    result = dub(model, str(grid_clips[SOURCE_CLIP]), speech["fr_4s"], output, source=source)
    return result, output


def test_output_follows_the_audio_and_keeps_the_source_geometry(pingpong_dub, speech, grid_clips):
    result, output = pingpong_dub
    info = probe_video(output)
    audio_s = len(read_audio(speech["fr_4s"])) / 16_000
    assert (info.width, info.height, info.fps) == (360, 288, 25)
    assert info.has_audio and info.codec == "h264"
    assert abs(info.duration_s - audio_s) <= 1 / 25
    assert info.n_frames == result.n_frames == round(audio_s * 25) and result.pingpong
    with av.open(output) as container:
        audio_stream = container.streams.audio[0]
        assert audio_stream.codec_context.name == "aac"
        assert abs(float(audio_stream.duration * audio_stream.time_base) - audio_s) < 0.1
    assert result.stage_seconds["render"] > 0 and result.stage_seconds["encode"] > 0


def test_pixels_away_from_the_face_are_the_source_frames_played_back_and_forth(
    pingpong_dub, source, grid_clips
):
    result, output = pingpong_dub
    frames, reference = read_frames(output), _watermarked(read_frames(grid_clips[SOURCE_CLIP]), result)
    index = source_index_map(len(frames), len(reference))
    far = _far_from_face(source, index, frames.shape[1:3])
    x0, y0, x1, y1 = mark_box(288, 360, ProvenanceConfig())
    far[:, y0:y1, x0:x1] = False
    difference = np.abs(frames.astype(float) - reference[index].astype(float)).mean(axis=-1)  # (N, H, W)
    assert difference[far].mean() < CODEC_TOLERANCE
    # The upper face moves (blinks, head motion): it matches the mapped source frames and would not
    # match the frames of a plain forward play, so the back-and-forth map is really used.
    upper = _upper_face(source, index, frames.shape[1:3])
    forward = np.minimum(np.arange(len(frames)), len(reference) - 1)
    wrong = np.abs(frames.astype(float) - reference[forward].astype(float)).mean(axis=-1)
    assert difference[upper].mean() < CODEC_TOLERANCE
    turned = np.flatnonzero(np.abs(index - forward) > 5)  # where the two plays are apart
    assert turned.size > 15
    assert wrong[turned][upper[turned]].mean() > 2 * difference[turned][upper[turned]].mean()
    # The face region is what changed (an untrained renderer paints noise there).
    near = ~_far_from_face(source, index, frames.shape[1:3], margin=0.3)
    assert difference[near].mean() > 5 * CODEC_TOLERANCE


def test_every_frame_carries_the_mark_and_the_file_its_provenance(pingpong_dub, grid_clips):
    _, output = pingpong_dub
    frames, reference = read_frames(output), read_frames(grid_clips[SOURCE_CLIP])
    x0, y0, x1, y1 = mark_box(288, 360, ProvenanceConfig())
    index = source_index_map(len(frames), len(reference))
    in_mark = np.abs(frames[:, y0:y1, x0:x1].astype(float) - reference[index][:, y0:y1, x0:x1]).mean(
        axis=(1, 2, 3)
    )
    assert in_mark.min() > 20
    with av.open(output) as container:
        facts = read_provenance(dict(container.metadata))
    assert facts["synthetic"] and facts["speaker"] == "s1" and facts["model_version"] == "s1-untrained-test"


def test_shorter_audio_trims_and_the_mark_can_be_switched_off(model, grid_clips, speech, source, tmp_path):
    output = str(tmp_path / "trimmed.mp4")
    config = DubConfig(provenance=ProvenanceConfig(visible_mark=False))
    result = dub(model, str(grid_clips[SOURCE_CLIP]), speech["fr_2s"], output, config, source=source)
    frames, reference = read_frames(output), _watermarked(read_frames(grid_clips[SOURCE_CLIP]), result)
    assert len(frames) == result.n_frames == 50 and not result.pingpong
    far = _far_from_face(source, np.arange(50), frames.shape[1:3])
    x0, y0, x1, y1 = mark_box(288, 360, ProvenanceConfig())
    corner = np.abs(frames[:, y0:y1, x0:x1].astype(float) - reference[:50, y0:y1, x0:x1]).mean()
    assert corner < CODEC_TOLERANCE  # no mark
    assert np.abs(frames.astype(float) - reference[:50]).mean(axis=-1)[far].mean() < CODEC_TOLERANCE
    with av.open(output) as container:
        assert read_provenance(dict(container.metadata))["visible_mark"] is False  # the tags stay


def test_bad_inputs_raise_naming_the_input_and_leave_no_output(
    model, grid_clips, speech, bad_videos, shared_data, tmp_path
):
    video = str(grid_clips[SOURCE_CLIP])
    output = tmp_path / "never.mp4"
    cases = [
        (video, speech["silent"], SilentAudio, "silent.wav: audio is silent"),
        (video, speech["text"], UnreadableMedia, "notes.wav: not a readable media file"),
        (video, str(tmp_path / "nope.wav"), StorageNotFound, "nope.wav: no such file"),
        (
            str(bad_videos["no_face"]),
            speech["fr_2s"],
            NoFaceFound,
            "scenery.mp4: a face was found in 0 of 50",
        ),
        (
            str(shared_data / "grid" / "speakers" / "lbax4n.mpg"),
            speech["fr_2s"],
            InputError,
            "lbax4n.mpg: no face matches speaker model",
        ),
        (
            "ftp://host/clip.mp4",
            speech["fr_2s"],
            InvalidURI,
            "ftp://host/clip.mp4: unsupported storage scheme",
        ),
        ("s3:///clip.mp4", speech["fr_2s"], InvalidURI, "s3:///clip.mp4: an s3:// URI needs a bucket"),
    ]
    for video_uri, audio_uri, error, message in cases:
        with pytest.raises(error, match=message):
            dub(model, video_uri, audio_uri, str(output))
        assert not output.exists()
        assert not list(tmp_path.glob("*.partial"))


def test_broken_speaker_models_are_refused_naming_the_model(model, tmp_path):
    with pytest.raises(InputError, match="not a speaker model directory"):
        load_speaker_model(str(tmp_path / "missing_model"))
    face = model.face_model
    fewer_mouth = dataclasses.replace(
        face,
        config=dataclasses.replace(face.config, n_mouth_components=16),
        mouth_basis=face.mouth_basis[:16],
    )
    broken = dataclasses.replace(model, face_model=fewer_mouth)
    with pytest.raises(InputError, match=r"s3://models/s1: speaker model is inconsistent: .*expression"):
        check_speaker_model(broken, "s3://models/s1")


def test_dub_reads_and_writes_s3(model, grid_clips, speech, source, s3_bucket, s3_storage_config):
    storage = Storage(s3_storage_config)
    video_uri, audio_uri = f"{s3_bucket}/in/clip.mpg", f"{s3_bucket}/in/speech.wav"
    storage.upload_file(grid_clips[SOURCE_CLIP], video_uri)
    storage.upload_file(speech["fr_2s"], audio_uri)
    output_uri = f"{s3_bucket}/out/dubbed.mp4"
    result = dub(model, video_uri, audio_uri, output_uri, source=source, storage=storage)
    assert result.output == output_uri
    with storage.local_copy(output_uri) as local:
        assert probe_video(local).n_frames == 50
    with pytest.raises(StorageNotFound, match=f"{s3_bucket}/in/other.wav: no such object"):
        dub(
            model,
            video_uri,
            f"{s3_bucket}/in/other.wav",
            output_uri.replace("dubbed", "x"),
            source=source,
            storage=storage,
        )
