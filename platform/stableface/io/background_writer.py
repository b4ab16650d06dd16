"""A :class:`~stableface.io.video.VideoWriter` fed from a worker thread, so encoding overlaps rendering.

x264 and the RGB -> YUV conversion release the GIL, so one encoder thread runs beside the dub's
renderer. The file is the one the plain writer makes from the same frames: one thread encodes them
in order, each frame is copied when it is queued (the producer may reuse its buffers), and x264's
output depends only on its input since :func:`~stableface.io.video.x264_determinism_options`.
"""

from __future__ import annotations

import queue
import threading
import time

import numpy as np

from stableface.io.video import VideoWriter


class BackgroundWriter:
    """``write`` queues a copy of the frame (blocking once ``depth`` frames wait, which bounds memory)
    and returns. An encoding error is raised once, by the next ``write`` or else by ``close``.
    ``seconds`` is the time the thread spent encoding."""

    def __init__(self, writer: VideoWriter, depth: int):
        self.writer = writer
        self.seconds = 0.0
        self._queue: queue.Queue[np.ndarray | None] = queue.Queue(maxsize=max(1, depth))
        self._error: BaseException | None = None
        self._reported = self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"encode {writer.path.name}", daemon=True)
        self._thread.start()

    @property
    def path(self):
        return self.writer.path

    def _run(self) -> None:
        while (frame := self._queue.get()) is not None:
            if self._error is not None:
                continue  # drain, so the producer never blocks on a dead consumer
            started = time.perf_counter()
            try:
                self.writer.write(frame)
            except BaseException as error:  # noqa: BLE001 - handed to the caller's thread
                self._error = error
            self.seconds += time.perf_counter() - started

    def __enter__(self) -> BackgroundWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()

    def write(self, frame: np.ndarray) -> None:
        if self._error is not None:
            self._reported = True
            raise self._error
        self._queue.put(np.array(frame, copy=True))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        try:
            if self._error is not None and not self._reported:
                raise self._error
        finally:
            self.writer.close()
