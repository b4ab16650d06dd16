"""Random access to a video's frames in bounded memory: sequential decoding, seeking when going back.

Dubbing asks for one contiguous range of source frames per chunk of output frames. Playing
forward, consecutive ranges continue each other and the decoder just keeps going; when the
ping-pong timeline turns back, the next range lies before the decoder, so it seeks to a keyframe
before the range (further back while a container lands after it) and decodes forward. Only the
latest range is kept, so memory is a chunk of frames whatever the video's length.

Frame indices are decode-order counts, as :func:`stableface.io.video.iter_frames` gives them. After
a seek they are recovered from timestamps, which is exact for constant-frame-rate video; a file
whose timestamps disagree with the frame count (variable frame rate, missing timestamps) is never
seeked: going back restarts decoding from the first frame instead, slower but still exact.
"""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

import numpy as np

from stableface.errors import UnreadableMedia, errors_naming
from stableface.io.video import apply_rotation, display_rotation, open_container

logger = logging.getLogger(__name__)

SEEK_AHEAD_FRAMES = 250  # a range further ahead than this is reached by seeking, not decoding through
SEEK_BACKOFFS = (0, 16, 64, 256, 1024)  # frames before the target to seek to, tried in turn


class FrameSource:
    """Contiguous frame ranges of one video file, RGB uint8 (H, W, 3) after display rotation."""

    def __init__(self, path: str | Path, source: str | None = None):
        self.path = Path(path)
        self.source = source or str(path)
        self._container = None
        self._cached_start = 0
        self._cached: list[np.ndarray] = []
        self._seekable = True  # cleared when a timestamp disagrees with the frame count
        self.seeks = self.restarts = self.decoded = 0  # counters, for tests and benchmarks
        self._origin_pts = None
        self._restart()
        self._origin_pts = None if self._held is None else self._held.pts

    # ----------------------------------------------------------------- public
    def read_range(self, start: int, stop: int) -> list[np.ndarray]:
        """Frames ``start .. stop-1``; raises :class:`UnreadableMedia` past the end of the video."""
        if start < 0 or stop <= start:
            raise ValueError(f"frame range [{start}, {stop}) is empty or negative")
        cached_stop = self._cached_start + len(self._cached)
        kept = []
        if self._cached_start <= start < cached_stop:
            kept = self._cached[start - self._cached_start : stop - self._cached_start]
        self._cached = []  # frames outside the new range are freed before new ones are decoded
        decode_from = start + len(kept)
        frames = kept + (self._decode(decode_from, stop) if stop > decode_from else [])
        self._cached_start, self._cached = start, frames
        return list(frames)

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ----------------------------------------------------------------- decoding
    def _restart(self) -> None:
        """Reopen the file; the decoder then stands before frame 0 (held, if the file has one)."""
        self.close()
        with errors_naming(self.source, self.path):
            self._container = open_container(self.path)
        if not self._container.streams.video:
            raise UnreadableMedia(self.source, "no video stream")
        self._stream = self._container.streams.video[0]
        self._rotation = display_rotation(self._stream)
        self._fps = Fraction(self._stream.average_rate or self._stream.guessed_rate or 0)
        self._decoder = self._container.decode(self._stream)
        self._next_index = 0  # index of the frame the decoder hands out next
        self._from_start = True
        self._held = None
        self._held = self._pull()
        self.restarts += 1

    def _pull(self):
        """The next frame object straight from the decoder, or None at the end."""
        import av

        try:
            frame = next(self._decoder)
        except StopIteration:
            return None
        except av.error.FFmpegError as error:
            raise UnreadableMedia(
                self.source, f"decoding stopped near frame {self._next_index}: {error}"
            ) from error
        self.decoded += 1
        return frame

    def _index_of(self, frame) -> int | None:
        if frame.pts is None or self._origin_pts is None or not self._fps or self._stream.time_base is None:
            return None
        return round(float((frame.pts - self._origin_pts) * self._stream.time_base * self._fps))

    def _take(self):
        """The frame with index ``_next_index`` (advancing past it), or None at the end of the video."""
        frame, self._held = (self._held, None) if self._held is not None else (self._pull(), None)
        if frame is None:
            return None
        counted = self._from_start and self._seekable and self._origin_pts is not None
        if counted and self._index_of(frame) != self._next_index:
            logger.info("%s: timestamps do not follow the frame count; going back re-decodes", self.source)
            self._seekable = False
        self._next_index += 1
        return frame

    def _skip_to(self, target: int) -> None:
        while self._next_index < target:
            if self._take() is None:
                raise UnreadableMedia(
                    self.source, f"has {self._next_index} frames; frame {target} was asked for"
                )

    def _position(self, target: int) -> None:
        """Put the decoder right before frame ``target``."""
        ahead = target - self._next_index
        if 0 <= ahead <= SEEK_AHEAD_FRAMES:
            self._skip_to(target)
            return
        if self._seekable and self._origin_pts is not None:
            if self._seek(target):
                return
            self._restart()  # the failed attempts left the decoder somewhere unknown
        elif ahead < 0:
            self._restart()
        self._skip_to(target)

    def _seek(self, target: int) -> bool:
        """Seek to a keyframe at or before ``target``, then decode up to it; False if none lands before it."""
        for backoff in SEEK_BACKOFFS:
            landing = target - backoff
            if landing <= 0:
                return False  # only a restart reliably reaches the first frames of every container
            timestamp = self._origin_pts + round(landing / self._fps / self._stream.time_base)
            self._container.seek(int(timestamp), stream=self._stream, backward=True, any_frame=False)
            self._decoder = self._container.decode(self._stream)
            self.seeks += 1
            frame = self._pull()
            index = None if frame is None else self._index_of(frame)
            if index is None or index > target:
                continue  # landed after the target (MPEG program streams do): go further back
            self._held, self._next_index, self._from_start = frame, index, False
            self._skip_to(target)
            return True
        return False

    def _decode(self, start: int, stop: int) -> list[np.ndarray]:
        self._position(start)
        frames = []
        while self._next_index < stop:
            frame = self._take()
            if frame is None:
                raise UnreadableMedia(
                    self.source, f"has {self._next_index} frames; frame {stop - 1} was asked for"
                )
            # A copy we own: PyAV's array is a view that would keep FFmpeg's frame buffer alive.
            frames.append(np.array(apply_rotation(frame.to_ndarray(format="rgb24"), self._rotation)))
        return frames
