"""Face segments: cutaways keep the source's pixels, face segments are dubbed, gaps bridged only when short."""

from __future__ import annotations

import numpy as np
import pytest

from stableface.face.segments import colour_signature, face_segments, fade_weights, shot_cuts
from stableface.inference import DubConfig, load_speaker_model, mark_box, prepare_source
from stableface.inference.config import InferenceConfig
from stableface.inference.pipeline import dub_files, plan_dub
from stableface.io.audio import read_audio, write_audio
from stableface.io.video import VideoWriter, iter_frames, read_frames


def test_short_gaps_are_bridged_long_gaps_split_segments():
    present = np.ones(40, bool)
    present[5:8] = False  # 3 frames: a blink
    present[20:30] = False  # 10 frames: a cutaway
    present[:2] = False  # no face at the start
    summary = face_segments(present, max_gap=5)
    assert [(s.start, s.stop, s.bridged) for s in summary.segments] == [(2, 20, 3), (30, 40, 0)]
    assert (summary.n_bridged, summary.n_skipped) == (3, 12)
    assert summary.n_bridged + summary.n_skipped == int((~present).sum())
    # the same blink is a cutaway when the bound is below its length
    assert len(face_segments(present, max_gap=2).segments) == 3


def test_a_shot_cut_splits_a_segment_and_is_entered_at_full_weight():
    present = np.ones(30, bool)
    present[10:12] = False  # short gap, bridged
    cuts = np.zeros(30, bool)
    cuts[20] = True
    summary = face_segments(present, max_gap=5, cuts=cuts)
    assert [(s.start, s.stop) for s in summary.segments] == [(0, 20), (20, 30)]
    weight = fade_weights(summary, fade_frames=3, cuts=cuts)
    assert weight[0] == 1 and weight[19] == 1 and weight[20] == 1 and weight[29] == 1  # cuts and video ends

    present[:10] = False  # the face appears within the shot at frame 12: it eases in
    weight = fade_weights(face_segments(present, max_gap=5, cuts=cuts), fade_frames=3, cuts=cuts)
    assert np.all(weight[:12] == 0)
    np.testing.assert_allclose(weight[12:16], [0.25, 0.5, 0.75, 1.0])
    assert np.all(np.abs(np.diff(weight[:20])) <= 0.25 + 1e-6)  # no pop: at most a quarter per frame


def test_shot_cuts_from_colour_signatures(mixed_lecture):
    frames = list(iter_frames(mixed_lecture["path"]))
    cuts = shot_cuts(np.stack([colour_signature(f) for f in frames]), threshold=0.4)
    assert np.flatnonzero(cuts).tolist() == [start for start, _ in mixed_lecture["parts"][1:]]


@pytest.fixture(scope="module")
def model(untrained_speaker_model):
    return load_speaker_model(untrained_speaker_model)


@pytest.fixture(scope="module")
def lecture_speech(shared_data, mixed_lecture, tmp_path_factory) -> str:
    """French speech as long as the lecture (no ping-pong), 16 kHz wav."""
    n_frames = mixed_lecture["parts"][-1][1]
    samples = read_audio(shared_data / "speech" / "macron_12s.wav", 16_000)[: n_frames * 640]
    path = tmp_path_factory.mktemp("lecture_speech") / "fr.wav"
    write_audio(path, samples, 16_000)
    return str(path)


@pytest.fixture(scope="module")
def lecture_source(model, mixed_lecture):
    return prepare_source(mixed_lecture["path"], model)


def test_the_lecture_source_has_two_face_segments(lecture_source, mixed_lecture):
    (_, a), (_, c), _ = mixed_lecture["parts"]
    assert not lecture_source.present[a:c].any()
    assert lecture_source.cuts[a] and lecture_source.cuts[c]
    summary = face_segments(
        lecture_source.present, DubConfig().inference.max_bridge_frames, lecture_source.cuts
    )
    assert len(summary.segments) == 2
    assert summary.segments[0].stop <= a and summary.segments[1].start >= c


def test_cutaway_frames_are_the_source_bit_for_bit(
    model, mixed_lecture, lecture_speech, lecture_source, tmp_path
):
    config = DubConfig()
    plan = plan_dub(model, mixed_lecture["path"], lecture_speech, config, lecture_source)
    dubbed = np.stack(list(plan.frames()))  # (N, H, W, 3) composited, before encoding
    source = read_frames(mixed_lecture["path"])
    assert dubbed.shape == source.shape
    height, width = source.shape[1:3]
    outside_mark = np.ones((height, width), bool)
    x0, y0, x1, y1 = mark_box(height, width, config.provenance)
    outside_mark[max(y0, 0) : y1, max(x0, 0) : x1] = False

    (_, a), (_, c), (_, end) = mixed_lecture["parts"]
    changed = np.any(dubbed != source, axis=3) & outside_mark  # (N, H, W)
    per_frame = changed.sum(axis=(1, 2))
    assert np.all(per_frame[a:c] == 0), per_frame[a:c]  # the cutaway: the source's own pixels
    # the face segments are dubbed (the untrained renderer paints noise over the mouth)
    assert np.all(per_frame[5 : a - 5] > 50) and np.all(per_frame[c + 5 : end - 5] > 50)

    result = dub_files(
        model, mixed_lecture["path"], lecture_speech, tmp_path / "dub.mp4", config, lecture_source
    )
    row = result.to_row()
    assert row["frames_dubbed"] + row["frames_passed_through"] == result.n_frames == end
    assert row["frames_passed_through"] >= c - a
    assert row["frames_dubbed"] == int(plan.dub_weight.astype(bool).sum()) >= (a + end - c) - 10
    assert row["segments"] == 2
    assert row["warning"] == ""
    # the encoded mp4: the cutaway within codec noise of the source
    decoded = read_frames(tmp_path / "dub.mp4")
    error = np.abs(decoded[a:c].astype(np.int16) - source[a:c].astype(np.int16))[:, outside_mark]
    assert error.mean() < 2.0


def test_a_mostly_faceless_dub_succeeds_with_a_warning(model, mixed_lecture, lecture_speech, tmp_path):
    # 30 face frames, then 45 of the cutaway: 40% face (main refused such a source: NoFaceFound)
    frames = read_frames(mixed_lecture["path"])
    (_, a), _, _ = mixed_lecture["parts"]
    video = tmp_path / "mostly_slides.mp4"
    with VideoWriter(video, fps=25, width=frames.shape[2], height=frames.shape[1], crf=12) as writer:
        for frame in [*frames[a - 30 : a], *frames[a : a + 45]]:
            writer.write(frame)
    audio = tmp_path / "fr_3s.wav"
    write_audio(audio, read_audio(lecture_speech, 16_000)[: 75 * 640], 16_000)
    result = dub_files(model, video, audio, tmp_path / "dub.mp4", DubConfig())
    assert result.n_frames == 75
    assert (result.frames_dubbed, result.frames_passed_through, result.segments) == (30, 45, 1)
    assert result.warning == "only 30 of 75 frames (40%) showed the speaker's face and were dubbed"
    assert result.to_row()["warning"] == result.warning


def test_nothing_of_the_cutaway_reaches_the_dubbed_faces(model, mixed_lecture, lecture_speech, tmp_path):
    # Two lectures, losslessly encoded, that differ only in the cutaway's pixels (colour bars, and
    # the bars inverted): smoothing and renderer windows stay inside face segments, so every dubbed
    # frame is the same in both. (On main the renderer windows and the smoothing kernel around each
    # cut took in cutaway frames: the first and last frames of the face segments differed.)
    frames = read_frames(mixed_lecture["path"])
    (_, a), (_, c), (_, end) = mixed_lecture["parts"]
    inverted = frames.copy()
    inverted[a:c] = 255 - frames[a:c]
    config = DubConfig(inference=InferenceConfig(amp=False))  # fp32: bit-for-bit comparable
    dubs, sources = [], []
    for name, video in (("bars", frames), ("inverted", inverted)):
        path = tmp_path / f"{name}.mp4"
        with VideoWriter(path, fps=25, width=video.shape[2], height=video.shape[1], crf=0) as writer:
            for frame in video:
                writer.write(frame)
        source = prepare_source(path, model)
        plan = plan_dub(model, path, lecture_speech, config, source)
        assert plan.runs.n_dubbed == 2 and plan.layout.n_windows > 2
        dubs.append(np.stack(list(plan.frames())))  # (N, H, W, 3) composited, before encoding
        sources.append((source, read_frames(path)))
    (bars, bars_frames), (inverted_source, inverted_frames) = sources
    np.testing.assert_array_equal(bars.present, inverted_source.present)  # same track: only pixels differ
    np.testing.assert_array_equal(bars.cuts, inverted_source.cuts)
    np.testing.assert_array_equal(bars_frames[:a], inverted_frames[:a])  # lossless: same face frames
    faces = np.r_[0:a, c:end]
    changed = np.any(dubs[0][faces] != dubs[1][faces], axis=3).sum(axis=(1, 2))  # (F,) per face frame
    assert np.all(changed == 0), dict(
        zip(faces[changed > 0].tolist(), changed[changed > 0].tolist(), strict=True)
    )
    assert np.any(dubs[0][faces] != bars_frames[faces])  # and the faces are dubbed
    assert not np.array_equal(dubs[0][a:c], dubs[1][a:c])  # each cutaway is its own source's


def test_a_segment_shorter_than_a_renderer_window_is_dubbed_whatever_the_chunks_and_batches(
    model, mixed_lecture, lecture_speech, tmp_path
):
    # face 0-9 | bars 10-19 | face 20-21 (2 frames, under the T = 4 window) | bars 22-31 | face 32-74
    frames = read_frames(mixed_lecture["path"])
    (_, a), _, _ = mixed_lecture["parts"]
    video = frames[:75].copy()
    video[10:20], video[22:32] = frames[a : a + 10], frames[a + 20 : a + 30]
    path = tmp_path / "short_segment.mp4"
    with VideoWriter(path, fps=25, width=video.shape[2], height=video.shape[1], crf=0) as writer:
        for frame in video:
            writer.write(frame)
    source = prepare_source(path, model)
    audio = tmp_path / "fr_3s.wav"
    write_audio(audio, read_audio(lecture_speech, 16_000)[: 75 * 640], 16_000)
    dubs = {}
    for chunk, batch in [(1000, 1), (2, 1), (1000, 4)]:
        config = DubConfig(
            inference=InferenceConfig(chunk_frames=chunk, render_batch_windows=batch, amp=False)
        )
        plan = plan_dub(model, path, audio, config, source)
        dubs[chunk, batch] = np.stack(list(plan.frames()))
    assert plan.runs.spans() == [(0, 10), (10, 20), (20, 22), (22, 32), (32, 75)]
    assert plan.runs.dubbed == (True, False, True, False, True) and plan.runs.n_dubbed == 3
    assert (2, 4) in {
        (b - a, plan.layout.length) for a, b in map(plan.layout.window, range(plan.layout.n_windows))
    }
    whole = dubs[1000, 1]
    np.testing.assert_array_equal(dubs[2, 1], whole)  # streamed in chunks of 2 frames: not a pixel differs
    # batches of 4 mix window lengths only where they may: each window's output is its own
    assert np.abs(dubs[1000, 4].astype(np.int16) - whole.astype(np.int16)).max() <= 1
    decoded = read_frames(path)
    height, width = decoded.shape[1:3]
    outside_mark = np.ones((height, width), bool)
    x0, y0, x1, y1 = mark_box(height, width, config.provenance)
    outside_mark[max(y0, 0) : y1, max(x0, 0) : x1] = False
    changed = (np.any(whole != decoded, axis=3) & outside_mark).sum(axis=(1, 2))  # (75,)
    assert np.all(changed[10:20] == 0) and np.all(changed[22:32] == 0)  # the cutaways: the source's pixels
    assert np.all(changed[20:22] > 50)  # the 2-frame segment is dubbed
