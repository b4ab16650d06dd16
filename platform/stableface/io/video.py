"""The one video reader and writer: streaming decode of anything FFmpeg reads, H.264 + AAC mp4 out.

Decoding yields one RGB ``uint8`` frame (H, W, 3) at a time, so memory does not grow with video
length. Display rotation (phone videos) is applied to decoded frames and reported by
:func:`probe_video`.
"""

from __future__ import annotations

import functools
import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from stableface.errors import NoVideoStream, StorageNotFound, UnreadableMedia

logger = logging.getLogger(__name__)

DEFAULT_CRF = 18
DEFAULT_PRESET = "medium"
AUDIO_BITRATE = 128_000
AUDIO_CHUNK_SAMPLES = 1024  # the AAC encoder's frame size


@dataclass(frozen=True)
class VideoInfo:
    """What a video container says about its video stream (sizes are after display rotation)."""

    path: str
    width: int
    height: int
    fps: Fraction
    n_frames: int  # from the container, else estimated from duration x fps
    duration_s: float
    rotation: int  # degrees counter-clockwise to display upright: 0, 90, 180 or 270
    codec: str
    has_audio: bool

    @property
    def fps_float(self) -> float:
        return float(self.fps)


def open_container(path: str | Path):
    import av

    path = Path(path)
    if not path.exists():
        raise StorageNotFound(str(path), "no such file")
    if path.stat().st_size == 0:
        raise UnreadableMedia(str(path), "empty file (0 bytes)")
    try:
        return av.open(str(path))
    except av.error.FFmpegError as error:
        raise UnreadableMedia(str(path), f"not a readable media file ({error.strerror or error})") from error


def display_rotation(stream) -> int:
    """Display rotation from the stream's display matrix or legacy 'rotate' tag."""
    rotate_tag = stream.metadata.get("rotate")
    if rotate_tag is not None:
        return int(rotate_tag) % 360
    side_data = getattr(stream, "side_data", None)
    if side_data:
        for key, value in dict(side_data).items():
            if "DISPLAYMATRIX" in str(key).upper():
                return round(-float(value)) % 360
    return 0


def probe_video(path: str | Path) -> VideoInfo:
    """Read container metadata (no full decode)."""
    container = open_container(path)
    try:
        if not container.streams.video:
            raise NoVideoStream(str(path), "no video stream")
        stream = container.streams.video[0]
        fps = stream.average_rate or stream.guessed_rate or stream.base_rate
        if not fps:
            raise UnreadableMedia(str(path), "video stream has no frame rate")
        fps = Fraction(fps)
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / 1_000_000
        else:
            duration = 0.0
        n_frames = int(stream.frames) if stream.frames else round(duration * float(fps))
        rotation = display_rotation(stream)
        width, height = stream.codec_context.width, stream.codec_context.height
        if rotation in (90, 270):
            width, height = height, width
        if width <= 0 or height <= 0:
            raise UnreadableMedia(str(path), "video stream has no frame size")
        return VideoInfo(
            path=str(path),
            width=width,
            height=height,
            fps=fps,
            n_frames=n_frames,
            duration_s=duration,
            rotation=rotation,
            codec=stream.codec_context.name,
            has_audio=bool(container.streams.audio),
        )
    finally:
        container.close()


def apply_rotation(frame: np.ndarray, rotation: int) -> np.ndarray:
    if rotation == 0:
        return frame
    # rotation is counter-clockwise degrees; np.rot90 rotates counter-clockwise for k > 0.
    return np.ascontiguousarray(np.rot90(frame, k=rotation // 90))


def iter_frames(
    path: str | Path,
    max_frames: int | None = None,
    threads: int = 1,
) -> Iterator[np.ndarray]:
    """Yield RGB uint8 frames (H, W, 3) in presentation order, one at a time.

    A stream that breaks off mid-way (a truncated file) raises :class:`UnreadableMedia` naming the
    frame index where decoding stopped, unless at least the frames before it were all that existed.
    """
    import av

    container = open_container(path)
    try:
        if not container.streams.video:
            raise NoVideoStream(str(path), "no video stream")
        stream = container.streams.video[0]
        stream.thread_count = max(int(threads), 0)
        if threads != 1:
            stream.thread_type = "AUTO"
        rotation = display_rotation(stream)
        count = 0
        try:
            for frame in container.decode(stream):
                image = frame.to_ndarray(format="rgb24")  # (H, W, 3) uint8
                yield apply_rotation(image, rotation)
                count += 1
                if max_frames is not None and count >= max_frames:
                    return
        except av.error.FFmpegError as error:
            raise UnreadableMedia(str(path), f"decoding stopped at frame {count}: {error}") from error
        if count == 0:
            raise UnreadableMedia(str(path), "video stream holds no decodable frames")
    finally:
        container.close()


def read_frames(path: str | Path, max_frames: int | None = None) -> np.ndarray:
    """All frames as one array (T, H, W, 3); for short clips and tests only."""
    return np.stack(list(iter_frames(path, max_frames=max_frames)))


@functools.cache
def x264_determinism_options() -> dict[str, str]:
    """libx264 options that make its output a function of its input frames alone.

    x264 (core 165, as PyAV ships it) reads memory it never wrote in its AVX-512 macroblock-tree
    routines when a frame's width in macroblocks is not a multiple of 16 (352 or 360 px; not 256 or
    512), so the same frames gave different files depending on what the heap held (issue #12:
    glibc's malloc perturbation changes the output with AVX-512 and never without it). Its AVX2
    routines give the bitstream that AVX-512 gives on zeroed memory, so the CPU capabilities x264
    detects, less AVX-512, are handed back to it; on a CPU without AVX-512 nothing changes.
    """
    capabilities = _x264_cpu_capabilities()
    if "AVX512" not in capabilities:
        return {}
    return {"x264-params": "asm=" + ",".join(name for name in capabilities if name != "AVX512")}


def _x264_cpu_capabilities() -> list[str]:
    """The names x264 logs as "using cpu capabilities: MMX2 SSE2Fast ... AVX512" when it opens."""
    import av
    import av.logging

    level = av.logging.get_level()
    av.logging.set_level(av.logging.INFO)
    try:
        with av.logging.Capture(local=True) as logs, av.open(io.BytesIO(), mode="w", format="mp4") as probe:
            stream = probe.add_stream("libx264", rate=25)
            stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
            frame = av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24")
            frame.pts, frame.time_base = 0, Fraction(1, 25)
            for packet in [*stream.encode(frame), *stream.encode()]:
                probe.mux(packet)
    finally:
        av.logging.set_level(level)
    prefix = "using cpu capabilities:"
    for _, _, message in logs:
        if message.startswith(prefix):
            return message[len(prefix) :].split()
    logger.warning("libx264 did not say which CPU capabilities it uses; its output may vary between runs")
    return []


class VideoWriter:
    """Streaming H.264 mp4 writer with optional AAC audio muxed alongside.

    >>> with VideoWriter(path, fps=25, width=256, height=256, audio=samples, audio_rate=16000) as out:
    ...     for frame in frames:  # RGB uint8 (H, W, 3)
    ...         out.write(frame)

    Audio is interleaved as frames arrive and trimmed/padded with silence to the video length.
    ``metadata`` goes into the container's tags (e.g. provenance). Even frame sizes are required by
    yuv420p; odd sizes raise ``ValueError``.
    """

    def __init__(
        self,
        path: str | Path,
        fps: float | Fraction,
        width: int,
        height: int,
        audio: np.ndarray | None = None,
        audio_rate: int = 16_000,
        crf: int = DEFAULT_CRF,
        preset: str = DEFAULT_PRESET,
        metadata: dict[str, str] | None = None,
        pix_fmt: str = "yuv420p",
        threads: int = 1,
    ):
        import av

        if width % 2 or height % 2:
            raise ValueError(f"{path}: H.264 yuv420p needs even frame sizes, got {width}x{height}")
        self.path = Path(path)
        self.width, self.height = int(width), int(height)
        self.fps = Fraction(fps).limit_denominator(100_000)
        self.container = av.open(str(self.path), mode="w", format="mp4")
        for key, value in (metadata or {}).items():
            self.container.metadata[key] = str(value)
        self.video_stream = self.container.add_stream("libx264", rate=self.fps)
        self.video_stream.width, self.video_stream.height = self.width, self.height
        self.video_stream.pix_fmt = pix_fmt
        self.video_stream.thread_count = max(int(threads), 0)
        self.video_stream.options = {"crf": str(crf), "preset": preset, **x264_determinism_options()}
        self.audio = None if audio is None else _AudioTrack(self.container, audio, audio_rate)
        self.frames_written = 0
        self._closed = False

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()

    def write(self, frame: np.ndarray) -> None:
        import av

        if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
            raise ValueError(
                f"{self.path}: frame must be uint8 ({self.height}, {self.width}, 3), got {frame.dtype} {frame.shape}"
            )
        video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        video_frame.pts = self.frames_written
        video_frame.time_base = 1 / self.fps
        for packet in self.video_stream.encode(video_frame):
            self.container.mux(packet)
        self.frames_written += 1
        if self.audio is not None:
            self.audio.send_until(self.frames_written / float(self.fps))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            for packet in self.video_stream.encode():
                self.container.mux(packet)
            if self.audio is not None:
                self.audio.finish(self.frames_written / float(self.fps))
        finally:
            self.container.close()


class _AudioTrack:
    """A mono AAC stream of ``container``, fed as the video advances and trimmed/padded with silence
    to the video's length."""

    def __init__(self, container, audio: np.ndarray, rate: int):
        self.container = container
        self.samples = np.asarray(audio, dtype=np.float32).reshape(-1)  # (S,) mono in [-1, 1]
        self.rate = int(rate)
        self.stream = container.add_stream("aac", rate=self.rate)
        self.stream.layout = "mono"
        self.stream.bit_rate = AUDIO_BITRATE
        self.sent = 0

    def send_until(self, seconds: float, final: bool = False) -> None:
        import av

        target = round(seconds * self.rate)
        while self.sent + AUDIO_CHUNK_SAMPLES <= target or (final and self.sent < target):
            count = min(AUDIO_CHUNK_SAMPLES, target - self.sent)
            chunk = np.zeros(count, dtype=np.float32)  # silence past the end of the audio
            available = self.samples[self.sent : self.sent + count]
            chunk[: len(available)] = available
            audio_frame = av.AudioFrame.from_ndarray(chunk[None, :], format="flt", layout="mono")
            audio_frame.sample_rate = self.rate
            audio_frame.pts = self.sent
            audio_frame.time_base = Fraction(1, self.rate)
            for packet in self.stream.encode(audio_frame):
                self.container.mux(packet)
            self.sent += count

    def finish(self, seconds: float) -> None:
        self.send_until(seconds, final=True)
        for packet in self.stream.encode():
            self.container.mux(packet)


def join_videos(
    parts: list[str | Path],
    path: str | Path,
    audio: np.ndarray | None = None,
    audio_rate: int = 16_000,
    metadata: dict[str, str] | None = None,
) -> int:
    """Concatenate H.264 mp4 ``parts`` (video only, one fps and size, each opening on a keyframe as
    every :class:`VideoWriter` file does) into one mp4 at ``path`` without re-encoding: the packets
    are copied, so every frame decodes exactly as in its part. ``audio`` is encoded as one AAC track
    over the whole (no gap or click at the joins), as :class:`VideoWriter` does. Returns the frame count.
    """
    import av

    container = av.open(str(path), mode="w", format="mp4")
    try:
        for key, value in (metadata or {}).items():
            container.metadata[key] = str(value)
        stream, track, frames, fps = None, None, 0, None
        for part in parts:
            with open_container(part) as source:
                video = source.streams.video[0]
                if stream is None:
                    stream = container.add_stream_from_template(video)
                    fps = Fraction(video.average_rate)
                    track = None if audio is None else _AudioTrack(container, audio, audio_rate)
                ticks_per_frame = round(1 / (fps * video.time_base))
                offset = frames * ticks_per_frame  # the packets' times move by the frames before them
                count = 0
                for packet in source.demux(video):
                    if packet.dts is None:  # the demuxer's end-of-stream marker
                        continue
                    packet.pts += offset
                    packet.dts += offset
                    packet.stream = stream
                    container.mux(packet)
                    count += 1
                    if track is not None:
                        track.send_until((frames + count) / float(fps))
                frames += count
        if track is not None:
            track.finish(frames / float(fps))
    finally:
        container.close()
    return frames
