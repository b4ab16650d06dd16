"""Audio in: decode any audio (wav, mp3, AAC/MP2 inside a video) to 16 kHz mono float32."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stableface.errors import NoAudioStream, SilentAudio, StorageNotFound, UnreadableMedia

DEFAULT_SAMPLE_RATE = 16_000
SILENCE_DBFS = -60.0  # below this RMS level a clip counts as silence


def read_audio(path: str | Path, sample_rate: int = DEFAULT_SAMPLE_RATE) -> np.ndarray:
    """Decode and resample the first audio stream to mono float32 in [-1, 1], shape (S,)."""
    import av

    path = Path(path)
    if not path.exists():
        raise StorageNotFound(str(path), "no such file")
    if path.stat().st_size == 0:
        raise UnreadableMedia(str(path), "empty file (0 bytes)")
    _check_wav_complete(path)
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as error:
        raise UnreadableMedia(str(path), f"not a readable media file ({error.strerror or error})") from error
    try:
        if not container.streams.audio:
            raise NoAudioStream(str(path), "no audio stream")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks: list[np.ndarray] = []
        try:
            for frame in container.decode(stream):
                for resampled in resampler.resample(frame):
                    chunks.append(resampled.to_ndarray().reshape(-1))
            for resampled in resampler.resample(None):
                chunks.append(resampled.to_ndarray().reshape(-1))
        except av.error.FFmpegError as error:
            raise UnreadableMedia(str(path), f"audio decoding failed: {error}") from error
    finally:
        container.close()
    if not chunks:
        raise UnreadableMedia(str(path), "audio stream holds no decodable samples")
    return np.concatenate(chunks).astype(np.float32)


WAV_UNKNOWN_SIZES = (0, 0xFFFFFFFF)  # RIFF sizes a streaming writer leaves when it cannot seek back


def _check_wav_complete(path: Path) -> None:
    """Raise :class:`UnreadableMedia` for a WAV file shorter than its RIFF header declares (cut off)."""
    with open(path, "rb") as handle:
        header = handle.read(12)
    if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
        return
    declared = int.from_bytes(header[4:8], "little")
    if declared in WAV_UNKNOWN_SIZES:
        return
    size = path.stat().st_size
    if size < declared + 8:
        raise UnreadableMedia(
            str(path), f"truncated: the file holds {size} of the {declared + 8} bytes its WAV header declares"
        )


def rms_dbfs(samples: np.ndarray) -> float:
    """Root-mean-square level in dB relative to full scale (-inf for digital silence)."""
    if samples.size == 0:
        return float("-inf")
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    return 20.0 * np.log10(rms) if rms > 0 else float("-inf")


def check_not_silent(samples: np.ndarray, source: str, threshold_dbfs: float = SILENCE_DBFS) -> None:
    """Raise :class:`SilentAudio` when the clip holds no audible signal."""
    level = rms_dbfs(samples)
    if level < threshold_dbfs:
        raise SilentAudio(source, f"audio is silent (RMS {level:.1f} dBFS < {threshold_dbfs:.0f} dBFS)")


def write_audio(path: str | Path, samples: np.ndarray, sample_rate: int = DEFAULT_SAMPLE_RATE) -> None:
    """Write mono float samples to a wav (pcm_s16le) or any container PyAV infers from the suffix."""
    import av

    path = Path(path)
    samples = np.clip(np.asarray(samples, dtype=np.float32).reshape(-1), -1.0, 1.0)
    codec = {".wav": "pcm_s16le", ".mp3": "mp3", ".m4a": "aac", ".aac": "aac"}.get(
        path.suffix.lower(), "pcm_s16le"
    )
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=sample_rate)
        stream.layout = "mono"
        frame_size = 1152 if codec == "mp3" else 1024
        resampler = av.AudioResampler(
            format=stream.codec_context.format.name, layout="mono", rate=sample_rate
        )
        for start in range(0, len(samples), frame_size):
            chunk = samples[start : start + frame_size]
            frame = av.AudioFrame.from_ndarray(chunk[None, :], format="flt", layout="mono")
            frame.sample_rate = sample_rate
            frame.pts = start
            for converted in resampler.resample(frame):
                for packet in stream.encode(converted):
                    container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
