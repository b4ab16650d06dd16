"""``dub``: speaker model + source video + new audio -> a lip-synced H.264/AAC mp4, streamed.

One pass over the output frames in chunks of whole renderer windows:

1. once: the speech (16 kHz for features, ``encode.audio_rate`` for the track), the prepared source
   (:func:`~stableface.inference.source.prepare_source` unless given), the output -> source frame
   map (trim or ping-pong) and the predicted mouth expression for all N frames (small arrays);
   and the smoothing weights of all N frames from that expression; and how much of the dub each
   output frame shows (:mod:`stableface.inference.segments`: 0 outside the speaker's face segments,
   where the frame stays the source's own pixels plus the mark and renderer windows are skipped);
2. per chunk: face shapes and their smoothing over the chunk plus the kernel's context, the chunk's
   source frames (:class:`~stableface.io.frame_ranges.FrameSource`), crops, masks and eroded
   backgrounds, the renderer over overlapping windows cross-faded by
   :class:`~stableface.inference.timeline.WindowBlender`, and every frame the blender completes is
   pasted into its full-resolution frame, marked and encoded.

Memory for frames is a chunk of full-resolution frames whatever the length. What does grow with the
output is small per frame but linear: a few hundred bytes of arrays per output frame, the AAC
track's samples (192 KB per second at 48 kHz; ``encode.audio_rate``) and the log-mel features
(32 KB per second): about 0.25 MB per second of output, 15 MB per minute.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stableface import __version__
from stableface.audio.features import frames_for_audio, log_mel, window_starts
from stableface.audio.silence import gate_mouth, mel_levels_db, silence_weights
from stableface.errors import errors_naming
from stableface.face.lips import closed_mouth
from stableface.face.warp import warp_texture
from stableface.inference.composite import composite_face, draw_mark, provenance_tags
from stableface.inference.config import DubConfig
from stableface.inference.faces import (
    backgrounds,
    mouth_region_masks,
    paste_weights,
    posed_meshes,
    shape_images,
    source_crops,
)
from stableface.inference.inputs import check_speaker_model, load_speech
from stableface.inference.motion import filter_mouth
from stableface.inference.render import apply_smoothing, resolve_device, to_model_range, to_pixels
from stableface.inference.segmented import (
    SegmentRecord,
    SegmentStore,
    dub_fingerprint,
    parts_uri,
    write_segmented,
)
from stableface.inference.segments import OutputRuns, output_runs, source_dub_weights
from stableface.inference.source import SourceTrack, identity_warning, prepare_source
from stableface.inference.speech import audio_windows
from stableface.inference.stages import NeuralStages
from stableface.inference.timeline import (
    WindowBlender,
    WindowLayout,
    chunk_windows,
    context_range,
    is_pingpong,
    source_index_map,
)
from stableface.io.audio import read_audio
from stableface.io.background_writer import BackgroundWriter
from stableface.io.frame_ranges import FrameSource
from stableface.io.storage import Storage
from stableface.io.video import VideoWriter
from stableface.models.smoothing import kernel_radius
from stableface.provenance.credentials import DubFacts, SigningStatus, sha256_file, sign_mp4
from stableface.provenance.payload import Payload
from stableface.provenance.watermark import Watermarker
from stableface.speaker_model import SpeakerModel
from stableface.utils.progress import Progress

logger = logging.getLogger(__name__)

MOSTLY_DUBBED = 0.5  # below this fraction of dubbed output frames a row carries a warning


class StageTimer:
    """Wall-clock seconds spent per named stage (summed over chunks)."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] += time.perf_counter() - started

    def rounded(self) -> dict[str, float]:
        return {stage: round(seconds, 3) for stage, seconds in self.seconds.items()}


@dataclass
class DubResult:
    """What one dub produced (durations in seconds)."""

    output: str
    n_frames: int
    fps: float
    width: int
    height: int
    output_duration_s: float
    audio_duration_s: float
    video_duration_s: float
    source_frames: int
    pingpong: bool
    speaker: str
    model_version: str
    seconds: float
    stage_seconds: dict[str, float] = field(default_factory=dict)
    frames_dubbed: int = 0  # output frames showing the speaker's face dubbed (inside face segments)
    frames_passed_through: int = 0  # output frames left as the source's own (cutaways, no face)
    segments: int = 0  # face segments on the output timeline (dubbed runs, split at cutaways and shot cuts)
    resumed_segments: int = 0  # output segments an interrupted earlier run had finished (not redone)
    encoded_segments: int = 1  # output segments encoded by this run (1: the whole in one pass)
    identity_warning: str = ""  # set when the source was too short to verify the speaker's face
    watermark: Payload | None = None  # the invisible watermark's payload (None: switched off)
    credentials: SigningStatus = SigningStatus.UNSIGNED  # the embedded C2PA manifest, if any
    source_sha256: str = ""
    speech_sha256: str = ""

    @property
    def warning(self) -> str:
        """Non-empty when most of the output had no dubbable face, or the face could not be verified."""
        warnings = [self.identity_warning] if self.identity_warning else []
        if self.n_frames and self.frames_dubbed < MOSTLY_DUBBED * self.n_frames:
            warnings.append(
                f"only {self.frames_dubbed} of {self.n_frames} frames "
                f"({self.frames_dubbed / self.n_frames:.0%}) showed the speaker's face and were dubbed"
            )
        return "; ".join(warnings)

    def to_row(self) -> dict:
        return {
            "output_frames": self.n_frames,
            "fps": round(self.fps, 4),
            "width": self.width,
            "height": self.height,
            "output_duration_s": round(self.output_duration_s, 3),
            "audio_duration_s": round(self.audio_duration_s, 3),
            "video_duration_s": round(self.video_duration_s, 3),
            "pingpong": self.pingpong,
            "model_version": self.model_version,
            "frames_dubbed": self.frames_dubbed,
            "frames_passed_through": self.frames_passed_through,
            "segments": self.segments,
            "resumed_segments": self.resumed_segments,
            "warning": self.warning,
            "watermark_payload": self.watermark.describe() if self.watermark else "none",
            "watermark_dub_id": f"{self.watermark.dub_id:04x}" if self.watermark else "",
            "credentials": str(self.credentials),
            "source_sha256": self.source_sha256,
            "speech_sha256": self.speech_sha256,
        }


def dub(
    model: SpeakerModel,
    video_uri: str,
    audio_uri: str,
    output_uri: str,
    config: DubConfig | None = None,
    source: SourceTrack | None = None,
    storage: Storage | None = None,
    model_uri: str = "speaker model",
    backend=None,
    stages: NeuralStages | None = None,
    dub_id: int | None = None,
) -> DubResult:
    """Dub ``video_uri`` with the speech in ``audio_uri`` into ``output_uri`` (local paths or s3://).

    The output appears only when complete (written to a temporary file and published atomically).
    ``source`` is a :class:`SourceTrack` prepared earlier for this model and video (else it is
    prepared here). ``stages`` replaces the local networks (a server passes remote calls). ``dub_id``
    is the watermark's per-dub id (default: derived from the model version and the two inputs'
    hashes, so the same dub made again is the same file). Bad inputs raise
    :class:`~stableface.errors.InputError` subclasses naming the URI. A dub longer than
    ``config.segment_seconds`` keeps its finished segments under :func:`parts_uri` until the output
    is published, so a rerun after an interruption resumes (:mod:`stableface.inference.segmented`).
    """
    storage = storage or Storage()
    check_speaker_model(model, model_uri)
    with (
        storage.local_copy(audio_uri) as audio_path,
        storage.local_copy(video_uri) as video_path,
        storage.writable_local(output_uri, suffix=".mp4") as output_path,
    ):
        result = dub_files(
            model, video_path, audio_path, output_path, config, source,
            video_uri=video_uri, audio_uri=audio_uri, model_uri=model_uri, backend=backend, stages=stages,
            dub_id=dub_id, storage=storage, parts=parts_uri(output_uri),
        )  # fmt: skip
    storage.delete_prefix(parts_uri(output_uri))
    result.output = output_uri
    return result


def dub_files(
    model: SpeakerModel,
    video_path: str | Path,
    audio_path: str | Path,
    output_path: str | Path,
    config: DubConfig | None = None,
    source: SourceTrack | None = None,
    video_uri: str | None = None,
    audio_uri: str | None = None,
    model_uri: str = "speaker model",
    backend=None,
    stages: NeuralStages | None = None,
    dub_id: int | None = None,
    storage: Storage | None = None,
    parts: str | None = None,
    on_segment: Callable[[int], None] | None = None,
) -> DubResult:
    """:func:`dub` on local files (the output is written in place, not atomically).

    ``parts`` is where the segments of a dub longer than ``config.segment_seconds`` are stored in
    ``storage`` as they finish (None: one pass, nothing stored); the caller deletes them once the
    output is kept. ``on_segment(index)`` runs after each stored segment."""
    config = config or DubConfig()
    provenance = config.provenance
    started = time.perf_counter()
    plan = plan_dub(
        model, video_path, audio_path, config, source,
        video_uri=video_uri, audio_uri=audio_uri, model_uri=model_uri, backend=backend, stages=stages,
    )  # fmt: skip
    source, timer = plan.source, plan.timer
    with timer("provenance"):
        source_sha256, speech_sha256 = sha256_file(video_path), sha256_file(audio_path)
    payload = None
    if provenance.watermark.enabled:
        if dub_id is None:
            dub_id = _dub_id(model.version, source_sha256, speech_sha256)
        payload = Payload.for_dub(model.version, dub_id)
    marker = Watermarker(payload, provenance.watermark) if payload else None
    width, height = source.width + source.width % 2, source.height + source.height % 2  # yuv420p
    if (width, height) != (source.width, source.height):
        logger.warning("%s: odd frame size %dx%d padded to %dx%d for H.264", plan.video_uri, source.width,
                       source.height, width, height)  # fmt: skip
    name = f"dub {Path(str(plan.video_uri)).name}"
    metadata = provenance_tags(model, config.provenance)
    encode = config.encode

    def open_writer(path, **options) -> VideoWriter | BackgroundWriter:
        writer = VideoWriter(path, fps=source.fps, width=width, height=height, crf=encode.crf,
                             preset=encode.preset, threads=encode.threads, **options)  # fmt: skip
        if not encode.background:
            return writer
        return BackgroundWriter(writer, depth=config.inference.chunk_frames)

    def finished_frames(start: int) -> Iterator[np.ndarray]:
        for frame in plan.frames(start):
            frame = _pad_even(frame, height, width)
            if marker is not None:
                with timer("watermark"):
                    frame = marker.mark(frame)
            yield frame

    segment_frames = config.segment_frames(float(source.fps))
    resumed_segments, encoded_segments = 0, 1
    if parts is not None and segment_frames is not None and plan.n_frames > segment_frames:
        record = SegmentRecord(
            fingerprint=dub_fingerprint(
                tool_version=__version__, model_version=model.version, source_sha256=source_sha256,
                speech_sha256=speech_sha256, watermark=payload.describe() if payload else "none",
                n_frames=plan.n_frames, size=(width, height), config=config,
            ),
            n_frames=plan.n_frames,
            segment_frames=segment_frames,
        )  # fmt: skip
        run = write_segmented(
            finished_frames, SegmentStore(storage or Storage(), parts, record), open_writer, Path(output_path),
            plan.track_audio, config.encode.audio_rate, metadata, name, timer, on_segment,
        )  # fmt: skip
        resumed_segments, encoded_segments = run.resumed, run.encoded
    else:
        progress = Progress(name, total=plan.n_frames, unit="frames")
        with open_writer(
            output_path, audio=plan.track_audio, audio_rate=config.encode.audio_rate, metadata=metadata
        ) as writer:
            for frame in finished_frames(0):
                # With the encoder in its own thread this is only the wait for room in its queue: the
                # stages stay a split of this thread's time, so they sum to at most the dub's.
                with timer("encode"):
                    writer.write(frame)
                progress.update(1)
        progress.close()
    with timer("provenance"):
        facts = DubFacts(
            tool=provenance.tool, tool_version=__version__, model_version=model.version, speaker=model.speaker,
            source_sha256=source_sha256, speech_sha256=speech_sha256,
            watermark=payload.describe() if payload else "none",
        )  # fmt: skip
        credentials = sign_mp4(output_path, facts, provenance.credentials, storage)
    frames_dubbed = int((plan.dub_weight > 0).sum())
    return DubResult(
        output=str(output_path),
        n_frames=plan.n_frames,
        fps=float(source.fps),
        width=width,
        height=height,
        output_duration_s=plan.n_frames / float(source.fps),
        audio_duration_s=plan.audio_duration_s,
        video_duration_s=source.duration_s,
        source_frames=source.n_frames,
        pingpong=is_pingpong(plan.n_frames, source.n_frames),
        speaker=model.speaker,
        model_version=model.version,
        seconds=time.perf_counter() - started,
        stage_seconds=timer.rounded(),
        frames_dubbed=frames_dubbed,
        frames_passed_through=plan.n_frames - frames_dubbed,
        segments=plan.runs.n_dubbed,
        resumed_segments=resumed_segments,
        encoded_segments=encoded_segments,
        identity_warning=identity_warning(source, config.inference),
        watermark=payload,
        credentials=credentials,
        source_sha256=source_sha256,
        speech_sha256=speech_sha256,
    )


def _dub_id(model_version: str, source_sha256: str, speech_sha256: str) -> int:
    """The default per-dub id: the same model, source and speech make the same dub, with the same id."""
    digest = hashlib.sha256(f"{model_version}|{source_sha256}|{speech_sha256}".encode()).digest()
    return int.from_bytes(digest[:2], "big")


@dataclass
class DubPlan:
    """Everything of one dub but the frames: what :meth:`frames` streams and the encoder needs."""

    video_path: Path
    video_uri: str
    source: SourceTrack
    n_frames: int  # N output frames
    audio_duration_s: float
    track_audio: np.ndarray  # (S',) samples for the AAC track
    dub_weight: np.ndarray  # (N,) float32, how much of the dub each output frame shows (0: the source's)
    runs: OutputRuns  # the face segments (and stretches without one) on the output timeline
    layout: WindowLayout
    renderer: _ChunkRenderer
    timer: StageTimer

    def frames(self, start: int = 0) -> Iterator[np.ndarray]:
        """The composited, marked output frames (H, W, 3) uint8 from ``start`` in order, before any
        padding or encoding (the same frames whatever ``start``)."""
        with FrameSource(self.video_path, self.video_uri) as frames:
            yield from self.renderer.frames(self.layout, frames, start)


def plan_dub(
    model: SpeakerModel,
    video_path: str | Path,
    audio_path: str | Path,
    config: DubConfig | None = None,
    source: SourceTrack | None = None,
    video_uri: str | None = None,
    audio_uri: str | None = None,
    model_uri: str = "speaker model",
    backend=None,
    stages: NeuralStages | None = None,
) -> DubPlan:
    """Step 1 of :func:`dub_files`: speech, source, expression, smoothing weights and face segments."""
    config = config or DubConfig()
    video_uri, audio_uri = video_uri or str(video_path), audio_uri or str(audio_path)
    timer = StageTimer()
    with timer("audio"):
        speech = load_speech(
            audio_path, model.audio.sample_rate, config.inference.min_audio_s, audio_uri
        )  # (S,)
        with errors_naming(audio_uri, audio_path):
            track_audio = read_audio(audio_path, config.encode.audio_rate)  # (S',) for the AAC track
    if source is None:
        with timer("prepare_source"):
            source = prepare_source(video_path, model, config.inference, video_uri, backend)
    else:
        source.check_model(model, model_uri)
    stages = stages or NeuralStages.local(model, config.inference, resolve_device(config.inference.device))

    audio_duration_s = len(speech) / model.audio.sample_rate
    n_frames = frames_for_audio(len(speech), source.fps, model.audio.sample_rate)
    with timer("audio2expression"):
        mel = log_mel(speech, model.audio)  # (M_frames, n_mels)
        del speech  # the features are all that is needed from here on
        starts = window_starts(n_frames, source.fps, model.audio)  # (N,)
        mouth = stages.predict_mouth(mel, starts)  # (N, n_mouth)
        gate = silence_weights(mel_levels_db(mel, starts, model.audio), config.inference.silence_gate)  # (N,)
        mouth = gate_mouth(mouth, gate, closed_mouth(model.face_model, model.identity))
    source_index = source_index_map(n_frames, source.n_frames)  # (N,)
    dub_weight = source_dub_weights(source, config.inference)[source_index]  # (N,)
    runs = output_runs(source, config.inference, source_index)
    with timer("motion_filter"):
        mouth = _filter_runs(mouth, source, source_index, runs, model, config)
    expression = source.expression[source_index].copy()  # (N, E)
    expression[:, model.face_model.mouth_slice] = mouth
    with timer("smoothing"):
        # Once per run for the whole output, so every chunk applies exactly the weights the whole would.
        weights = _run_smoothing_weights(
            stages, expression, runs, model.networks.config.smoothing.kernel_size
        )

    renderer_config = model.networks.config.renderer
    length = renderer_config.sequence_length
    layout = WindowLayout(n_frames, length, config.inference.overlap_for(length), runs.boundaries)
    renderer = _ChunkRenderer(
        model, source, expression, weights, source_index, mel, starts, config, stages, timer, dub_weight
    )
    return DubPlan(
        video_path=Path(video_path), video_uri=video_uri, source=source, n_frames=n_frames,
        audio_duration_s=audio_duration_s, track_audio=track_audio, dub_weight=dub_weight, runs=runs,
        layout=layout, renderer=renderer, timer=timer,
    )  # fmt: skip


def _filter_runs(
    mouth: np.ndarray, source: SourceTrack, source_index: np.ndarray, runs: OutputRuns, model, config
) -> np.ndarray:
    """(N, n_mouth) predicted mouth, each dubbed run low-passed on its own against the real mouth of
    the source frames it shows (:mod:`stableface.inference.motion`; no filter reaches across a cut)."""
    filtered = mouth.copy()
    source_mouth = source.expression[:, model.face_model.mouth_slice]  # (F, n_mouth)
    for (start, stop), dubbed in zip(runs.spans(), runs.dubbed, strict=True):
        if dubbed:
            shown = np.unique(source_index[start:stop])  # the source frames in order, unlooped
            filtered[start:stop], _ = filter_mouth(
                mouth[start:stop], source_mouth[shown], float(source.fps), config.inference.motion_filter
            )
    return filtered


def _run_smoothing_weights(
    stages: NeuralStages, expression: np.ndarray, runs: OutputRuns, kernel_size: int
) -> np.ndarray:
    """(N, K) smoothing weights, each dubbed run's from its own expression (the weights network never
    sees across a cut); frames that keep the source's pixels get the identity kernel."""
    weights = np.zeros((len(expression), kernel_size), np.float32)
    weights[:, kernel_size // 2] = 1.0
    for (start, stop), dubbed in zip(runs.spans(), runs.dubbed, strict=True):
        if dubbed:
            weights[start:stop] = stages.smoothing_weights(expression[start:stop])
    return weights


def _pad_even(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    if frame.shape[:2] == (height, width):
        return frame
    return np.pad(frame, ((0, height - frame.shape[0]), (0, width - frame.shape[1]), (0, 0)), mode="edge")


def _batches(
    layout: WindowLayout, first: int, stop: int, size: int, dub_weight: np.ndarray
) -> Iterator[tuple[int, list[tuple[int, int]], bool]]:
    """(first window, windows, dubbed) of up to ``size`` consecutive windows among ``first .. stop-1``
    that the renderer takes as one batch: of one length (a short run's window is shorter) and all
    dubbed or all not (windows of frames that keep the source's pixels are not rendered)."""
    group: list[tuple[int, int]] = []
    group_first, group_key = first, None
    for index in range(first, stop):
        start, end = layout.window(index)
        key = (end - start, bool(dub_weight[start:end].any()))
        if group and (len(group) == size or key != group_key):
            yield group_first, group, group_key[1]
            group, group_first = [], index
        group.append((start, end))
        group_key = key
    if group:
        yield group_first, group, group_key[1]


class _ChunkRenderer:
    """The per-chunk stages of :func:`dub_files`, yielding finished full-resolution frames in order."""

    def __init__(
        self, model, source, expression, weights, source_index, mel, starts, config, stages, timer, dub_weight
    ):
        self.model, self.source, self.config = model, source, config
        self.dub_weight = dub_weight  # (N,) 0 where the output frame keeps the source's pixels
        self.expression, self.weights = expression, weights  # (N, E), (N, K)
        self.source_index = source_index  # (N,)
        self.mel, self.starts = mel, starts
        self.stages, self.timer = stages, timer
        self.size = model.image_size
        self.radius = kernel_radius(model.networks.config.smoothing)
        self.fusion = model.networks.config.renderer.audio_fusion
        self.texture = stages.texture  # None without warped_texture

    def frames(self, layout: WindowLayout, frame_source: FrameSource, start: int = 0) -> Iterator[np.ndarray]:
        """Output frames ``start ..``: rendered from the chunk holding the first window that covers
        ``start`` (so every chunk and batch is the one an uninterrupted run renders); the frames of
        that chunk before ``start`` are dropped."""
        per_chunk = max(1, round(self.config.inference.chunk_frames / layout.stride))
        chunks = chunk_windows(layout.n_windows, per_chunk)
        first_chunk = (
            layout.first_window_covering(start) // per_chunk if start < layout.n_frames else len(chunks)
        )
        blender = WindowBlender(layout, first_chunk * per_chunk)
        for first, stop in chunks[first_chunk:]:
            span = (layout.start(first), layout.window(stop - 1)[1])
            inputs = self._inputs(span, layout, frame_source)
            self._render(layout, blender, first, stop, span, inputs)
            ready_start = blender.next_frame
            with self.timer("composite"):
                finished = blender.pop_ready()
            for offset, generated in enumerate(finished):
                if ready_start + offset >= start:
                    yield self._composite(ready_start + offset, generated, span, inputs)
            del inputs, finished  # this chunk's frames go before the next chunk's are decoded

    def _inputs(self, span: tuple[int, int], layout: WindowLayout, frame_source: FrameSource) -> dict:
        timer, size, model = self.timer, self.size, self.model
        lo, hi = context_range(span[0], span[1], self.radius, layout.n_frames)
        index = self.source_index[lo:hi]  # (Lc,) source frame of each output frame
        with timer("face_shapes"):
            pose = self.source.crop_pose(index, size)
            new_meshes = posed_meshes(model, self.expression[lo:hi], pose)  # (Lc, 478, 3)
            shapes = shape_images(model, new_meshes, size)  # (Lc, S, S)
        with timer("smoothing"):
            smoothed = apply_smoothing(shapes, self.weights[lo:hi], layout.run_labels(lo, hi))  # (Lc, S, S)
        inner = slice(span[0] - lo, span[1] - lo)
        span_index = index[inner]
        first_source = int(span_index.min())
        with timer("decode"):
            full = frame_source.read_range(first_source, int(span_index.max()) + 1)
        with timer("face_inputs"):
            crops = source_crops(
                [full[i - first_source] for i in span_index],
                self.source.crop_affines(span_index, self.source.crop_size),
                self.source.crop_size,
                size,
            )  # (L, S, S, 3)
            source_meshes = posed_meshes(model, self.source.expression[span_index], pose[inner])
            masks = mouth_region_masks(
                model, new_meshes[inner], source_meshes, size, self.config.inference.mask_dilation_px
            )  # (L, S, S)
            background = to_model_range(backgrounds(crops, masks))  # (L, 3, S, S)
            audio = (
                audio_windows(self.mel, self.starts[span[0] : span[1]], model.audio) if self.fusion else None
            )
            warped = (
                None
                if self.texture is None
                else to_model_range(warp_texture(self.texture, new_meshes[inner]))
            )  # (L, 3, S, S)
        return {
            "full": full,
            "first_source": first_source,
            "masks": masks,
            "background": background,
            "shape": smoothed[inner],
            "audio": audio,
            "warped": warped,
        }

    def _render(self, layout, blender, first, stop, span, inputs) -> None:
        batch = self.config.inference.render_batch_windows
        for group, windows, dubbed in _batches(layout, first, stop, batch, self.dub_weight):
            if not dubbed:
                # No frame of these windows shows the dub (a cutaway): the renderer is not needed.
                for offset, (a, b) in enumerate(windows):
                    blender.add(
                        group + offset, np.zeros_like(inputs["background"][a - span[0] : b - span[0]])
                    )
                continue
            pieces = {
                key: None if inputs[key] is None else np.stack(
                    [inputs[key][a - span[0] : b - span[0]] for a, b in windows]
                )
                for key in ("background", "shape", "audio", "warped")
            }  # fmt: skip
            with self.timer("render"):
                generated = self.stages.render(
                    pieces["background"], pieces["shape"], pieces["audio"], pieces["warped"]
                )
            with self.timer("composite"):
                for offset, output in enumerate(generated):
                    blender.add(group + offset, output)

    def _composite(self, frame_index: int, generated: np.ndarray, span, inputs) -> np.ndarray:
        with self.timer("composite"):
            source_frame = int(self.source_index[frame_index])
            full = inputs["full"][source_frame - inputs["first_source"]]
            strength = float(self.dub_weight[frame_index])
            if strength == 0.0:
                return draw_mark(full, self.config.provenance)  # outside face segments: the source's pixels
            mask = inputs["masks"][frame_index - span[0]][None]
            weight = strength * paste_weights(mask, self.config.composite.feather_px)[0]  # (S, S)
            affine = self.source.crop_affines(np.array([source_frame]), self.size)[0]
            frame = composite_face(full, to_pixels(generated[None])[0], affine, weight)
            return draw_mark(frame, self.config.provenance)
