"""Segmented, resumable output for long dubs: an hour-long lecture survives a killed worker.

With ``dub.segment_seconds`` set, a dub longer than one segment encodes its frames in segments of
that length (video only, each its own H.264 file opening on a keyframe), uploads each to the output
store as it finishes, ``<output_uri>.parts/segment-00003.mp4``, and then rewrites the small progress
record ``<output_uri>.parts/progress.json``. A rerun of the same dub (same model, source, speech and
config: the record's fingerprint) resumes after the last finished segment; a record of a different
dub is discarded with its segments. At the end the segments' packets are joined without re-encoding
(:func:`stableface.io.video.join_videos`) and the audio is encoded once over the whole, so neither
track has a seam; the caller deletes the parts once the output is published.

Frames do not depend on where a run starts (the renderer's inputs are per frame, and a resumed run
re-renders from the start of the chunk that holds its first frame, so chunks and batches are those
of an uninterrupted run); only the encoder starts afresh at each segment, with a keyframe.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from itertools import islice
from pathlib import Path

import numpy as np

from stableface.io.background_writer import BackgroundWriter
from stableface.io.storage import Storage, join
from stableface.io.video import VideoWriter, join_videos
from stableface.utils.progress import Progress

logger = logging.getLogger(__name__)

RECORD_NAME = "progress.json"


def parts_uri(output_uri: str) -> str:
    """Where the segments and progress record of the dub into ``output_uri`` are kept until it is published."""
    return f"{output_uri}.parts"


def dub_fingerprint(**facts) -> str:
    """A digest of everything that decides a dub's frames (model, inputs' hashes, config, sizes)."""
    text = json.dumps({key: str(value) for key, value in facts.items()}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class SegmentRecord:
    """The progress record: ``finished`` segments of ``segment_frames`` frames of this dub are stored."""

    fingerprint: str
    n_frames: int
    segment_frames: int
    finished: int = 0

    @property
    def n_segments(self) -> int:
        return -(-self.n_frames // self.segment_frames)

    def span(self, index: int) -> tuple[int, int]:
        """(start, stop) output frames of segment ``index``."""
        return index * self.segment_frames, min((index + 1) * self.segment_frames, self.n_frames)


class SegmentStore:
    """The finished segments of one dub under ``uri`` in ``storage``."""

    def __init__(self, storage: Storage, uri: str, expected: SegmentRecord):
        self.storage, self.uri, self.expected = storage, uri, expected

    @property
    def record_uri(self) -> str:
        return join(self.uri, RECORD_NAME)

    def segment_uri(self, index: int) -> str:
        return join(self.uri, f"segment-{index:05d}.mp4")

    def finished(self) -> int:
        """How many segments an earlier run of this same dub left (0: none, or they were of another dub)."""
        if not self.storage.exists(self.record_uri):
            return 0
        try:
            record = SegmentRecord(**self.storage.read_json(self.record_uri))
        except (TypeError, ValueError) as error:
            logger.warning("%s: unreadable progress record (%s); starting over", self.record_uri, error)
            record = None
        if (
            record is None
            or record.fingerprint != self.expected.fingerprint
            or record.segment_frames != (self.expected.segment_frames)
        ):
            logger.warning("%s: segments of another dub (inputs or config changed); starting over", self.uri)
            self.clear()
            return 0
        finished = min(record.finished, self.expected.n_segments)
        for index in range(finished):
            if not self.storage.exists(self.segment_uri(index)):
                logger.warning("%s: segment %d is missing; resuming before it", self.uri, index)
                return index
        return finished

    def save(self, index: int, path: Path) -> None:
        """Store segment ``index`` (the segments before it are stored), then record it as finished."""
        self.storage.upload_file(path, self.segment_uri(index))
        record = SegmentRecord(**{**asdict(self.expected), "finished": index + 1})
        self.storage.write_json(self.record_uri, asdict(record))

    @contextlib.contextmanager
    def local_segments(self) -> Iterator[list[Path]]:
        with contextlib.ExitStack() as stack:
            yield [
                stack.enter_context(self.storage.local_copy(self.segment_uri(index)))
                for index in range(self.expected.n_segments)
            ]

    def clear(self) -> int:
        return self.storage.delete_prefix(self.uri)


@dataclass(frozen=True)
class SegmentedRun:
    """What :func:`write_segmented` did: segments taken from an earlier run and segments encoded now."""

    resumed: int
    encoded: int


def write_segmented(
    frames_from: Callable[[int], Iterator[np.ndarray]],
    store: SegmentStore,
    open_writer: Callable[..., VideoWriter | BackgroundWriter],
    output_path: Path,
    audio: np.ndarray,
    audio_rate: int,
    metadata: dict[str, str],
    progress_name: str,
    timer,
    on_segment: Callable[[int], None] | None = None,
) -> SegmentedRun:
    """Encode the segments ``store`` lacks from ``frames_from(first frame)`` (finished frames, in
    order), storing each as it finishes, then join all of them into ``output_path`` with the ``audio`` track and
    ``metadata`` tags. ``on_segment(index)`` runs after each segment is stored."""
    plan = store.expected
    resumed = store.finished()
    start = plan.span(resumed)[0]
    if resumed:
        logger.info("%s: resuming at segment %d of %d (frame %d)", progress_name, resumed + 1,
                    plan.n_segments, start)  # fmt: skip
    progress = Progress(progress_name, total=plan.n_frames - start, unit="frames")
    frames = frames_from(start)
    with tempfile.TemporaryDirectory(prefix="stableface-segments-") as scratch:
        for index in range(resumed, plan.n_segments):
            first, stop = plan.span(index)
            path = Path(scratch) / f"segment-{index:05d}.mp4"
            with open_writer(path) as writer:
                for frame in islice(frames, stop - first):
                    with timer("encode"):
                        writer.write(frame)
                    progress.update(1)
            with timer("segments"):
                store.save(index, path)
            path.unlink()
            if on_segment is not None:
                on_segment(index)
    progress.close()
    with timer("join"), store.local_segments() as paths:
        join_videos(paths, output_path, audio, audio_rate, metadata)
    return SegmentedRun(resumed=resumed, encoded=plan.n_segments - resumed)
