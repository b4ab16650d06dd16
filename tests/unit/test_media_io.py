"""The video reader/writer and audio decoding on real files and on broken ones."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from stableface.errors import NoAudioStream, NoVideoStream, SilentAudio, StorageNotFound, UnreadableMedia
from stableface.io.audio import check_not_silent, read_audio, rms_dbfs, write_audio
from stableface.io.background_writer import BackgroundWriter
from stableface.io.video import VideoWriter, iter_frames, probe_video, read_frames


def test_probe_and_decode_grid_mpeg1(grid_clips):
    info = probe_video(grid_clips[0])
    assert (info.width, info.height, info.fps, info.codec) == (360, 288, Fraction(25), "mpeg1video")
    assert info.has_audio and info.rotation == 0
    frames = read_frames(grid_clips[0])
    assert frames.shape == (75, 288, 360, 3) and frames.dtype == np.uint8
    assert 40 < frames.mean() < 220


def test_decode_voxceleb_h264_and_its_aac_audio(shared_data):
    clip = shared_data / "voxceleb2" / "zip_Input_00002.mp4"
    info = probe_video(clip)
    assert (info.width, info.height, info.codec) == (224, 224, "h264")
    assert sum(1 for _ in iter_frames(clip)) == info.n_frames == 126
    audio = read_audio(clip)
    assert audio.dtype == np.float32 and abs(len(audio) / 16_000 - 126 / 25) < 0.1


@pytest.mark.parametrize("name", ["english_21s.wav", "english_abstract_33s.mp3", "macron_12s.wav"])
def test_read_audio_resamples_to_16k_mono(shared_data, name):
    expected_s = {"english_21s.wav": 21.3, "english_abstract_33s.mp3": 32.9, "macron_12s.wav": 11.9}[name]
    audio = read_audio(shared_data / "speech" / name)
    assert audio.ndim == 1
    assert abs(len(audio) / 16_000 - expected_s) < 0.3
    assert -40 < rms_dbfs(audio) < 0


@pytest.mark.parametrize("fps", [Fraction(25), Fraction(30000, 1001), Fraction(30)])
def test_writer_roundtrip_keeps_fps_size_frames_audio_and_tags(tmp_path, fps):
    rng = np.random.default_rng(0)
    # Smooth gradients survive H.264 at CRF 18 with small error; noise would not.
    base = np.linspace(0, 255, 64 * 48 * 3).reshape(48, 64, 3).astype(np.uint8)
    frames = [np.roll(base, shift, axis=1) for shift in range(30)]
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(16_000) / 16_000)).astype(np.float32)
    out = tmp_path / "out.mp4"
    with VideoWriter(
        out, fps=fps, width=64, height=48, audio=tone, metadata={"comment": "synthetic"}
    ) as writer:
        for frame in frames:
            writer.write(frame)
    info = probe_video(out)
    assert info.fps == fps and (info.width, info.height) == (64, 48) and info.has_audio
    decoded = read_frames(out)
    assert decoded.shape == (30, 48, 64, 3)
    assert np.abs(decoded.astype(int) - np.stack(frames).astype(int)).mean() < 4.0
    audio = read_audio(out)
    assert abs(len(audio) / 16_000 - 30 / float(fps)) < 0.1  # trimmed to the video, not the 1 s tone
    import av

    with av.open(str(out)) as container:
        assert container.metadata["comment"] == "synthetic"
    del rng


def test_writer_rejects_wrong_frames_and_odd_sizes(tmp_path):
    with pytest.raises(ValueError, match=r"even frame sizes"):
        VideoWriter(tmp_path / "x.mp4", fps=25, width=63, height=48)
    with VideoWriter(tmp_path / "y.mp4", fps=25, width=64, height=48) as writer:
        with pytest.raises(ValueError, match=r"must be uint8"):
            writer.write(np.zeros((48, 64, 3), np.float32))
        writer.write(np.zeros((48, 64, 3), np.uint8))


def test_broken_inputs_raise_errors_that_name_the_file(tmp_path, grid_clips):
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    truncated = tmp_path / "truncated.mp4"
    with VideoWriter(tmp_path / "full.mp4", fps=25, width=64, height=48) as writer:
        for i in range(50):
            writer.write(np.full((48, 64, 3), i * 4, np.uint8))
    data = (tmp_path / "full.mp4").read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(UnreadableMedia, match=r"notes.mp4: not a readable media file"):
        probe_video(text)
    with pytest.raises(UnreadableMedia, match=r"empty.mp4: empty file \(0 bytes\)"):
        read_frames(empty)
    with pytest.raises(UnreadableMedia, match=r"truncated.mp4"):
        read_frames(truncated)
    with pytest.raises(StorageNotFound, match=r"missing.mp4: no such file"):
        probe_video(tmp_path / "missing.mp4")
    with pytest.raises(NoAudioStream, match=r"full.mp4: no audio stream"):
        read_audio(tmp_path / "full.mp4")
    wav = tmp_path / "tone.wav"
    write_audio(wav, np.zeros(1600))
    with pytest.raises(NoVideoStream, match=r"tone.wav: no video stream"):
        probe_video(wav)


def test_silence_is_detected(tmp_path):
    quiet = np.zeros(16_000, np.float32)
    with pytest.raises(SilentAudio, match=r"clip.wav: audio is silent"):
        check_not_silent(quiet, "clip.wav")
    check_not_silent(0.1 * np.ones(16_000, np.float32), "clip.wav")


def test_streaming_decode_memory_is_bounded(grid_clips):
    import tracemalloc

    tracemalloc.start()
    for frame in iter_frames(grid_clips[0]):
        assert frame.shape == (288, 360, 3)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # 75 frames of 311 KB would be 23 MB if held; streaming keeps a few frames at most.
    assert peak < 5 * 288 * 360 * 3


def test_a_background_writer_writes_the_same_file_from_reused_buffers_and_reports_errors(
    tmp_path, grid_clips
):
    frames = read_frames(grid_clips[0])[:20]  # 360 px wide: not a whole number of 16-macroblock rows
    height, width = frames.shape[1:3]
    with VideoWriter(tmp_path / "plain.mp4", fps=25, width=width, height=height) as writer:
        for frame in frames:
            writer.write(frame)
    buffer = np.empty_like(frames[0])  # one buffer, overwritten for every frame, as a producer may
    with BackgroundWriter(
        VideoWriter(tmp_path / "thread.mp4", fps=25, width=width, height=height),
        depth=4,
    ) as writer:
        for frame in frames:
            buffer[:] = frame
            writer.write(buffer)
    assert writer.seconds > 0
    assert (tmp_path / "thread.mp4").read_bytes() == (tmp_path / "plain.mp4").read_bytes()

    broken = BackgroundWriter(
        VideoWriter(tmp_path / "broken.mp4", fps=25, width=width, height=height), depth=4
    )
    broken.write(frames[0][:, :32])  # the wrong size: refused in the thread, raised here
    with pytest.raises(ValueError, match="frame must be uint8"):
        for frame in frames:
            broken.write(frame)
        broken.close()
    broken.close()  # closing again is harmless
