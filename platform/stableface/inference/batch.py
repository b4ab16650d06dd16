"""Bulk dubbing, one catalog row at a time, without Ray: what each Ray Data actor of ``stableface dub`` runs.

A catalog row names a ``job_id``, a speaker (whose model is ``<models_uri>/<speaker>``) or a
``model_uri``, the source ``video_uri``, the new ``audio_uri`` and optionally the ``output_uri``
(default ``<job output_uri>/videos/<job_id>.mp4``), and optionally which ``face`` to dub (empty: the
one that matches the speaker model; ``2``: the second face from the left; ``412,130``: the face at
that point, source pixels; :class:`~stableface.face.face_tracks.FaceSelection`). :func:`dub_entry` turns one entry into one
manifest row and never raises: failures are rows with their reason.

Idempotence: an output that exists is finished (outputs are only ever published whole), so a
re-run returns its recorded row (``items/<job_id>.json``) without dubbing it again. A row whose
actor died mid-dub left no output; when Ray retries it (or the job is rerun) a dub longer than
``dub.segment_seconds`` resumes after its last stored segment (:mod:`stableface.inference.segmented`),
a shorter one is dubbed again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections import Counter, OrderedDict
from dataclasses import asdict, dataclass
from typing import Any

from stableface.data.catalog import read_table, resolve, table_base_dir, validate_id
from stableface.errors import InputError, StorageUnavailable
from stableface.face.face_tracks import Box, FaceSelection
from stableface.inference.config import DubConfig
from stableface.inference.inputs import load_speaker_model
from stableface.inference.pipeline import dub_files
from stableface.inference.segmented import parts_uri
from stableface.inference.source import SourceTrack, model_key, prepare_source
from stableface.io.storage import Storage, join
from stableface.io.video import probe_video
from stableface.speaker_model import SpeakerModel
from stableface.status import RowStatus

logger = logging.getLogger(__name__)

COLUMN_ALIASES = {
    "video_uri": ("video_uri", "video"),
    "audio_uri": ("audio_uri", "audio"),
    "output_uri": ("output_uri", "output"),
    "model_uri": ("model_uri", "model"),
    "speaker": ("speaker",),
    "face": ("face",),
}
RESULT_COLUMNS = (
    "job_id", "status", "reason", "resumed", "speaker", "model_uri", "model_version", "video_uri",
    "face", "face_box", "audio_uri", "output_uri", "video_duration_s", "audio_duration_s", "output_duration_s",
    "output_frames", "fps", "width", "height", "pingpong", "frames_dubbed", "frames_passed_through",
    "segments", "resumed_segments", "warning", "msi_lip", "msi_jaw", "msi_status",
    "lipsync_confidence", "lipsync_offset_frames", "lipsync_offset_ms", "lipsync_status",
    "watermark_payload", "watermark_dub_id", "credentials", "source_sha256", "speech_sha256",
    "seconds", "realtime_factor", "stage_seconds", "node_id", "worker_pid",
)  # fmt: skip


def _column(row: dict[str, Any], name: str) -> str:
    for alias in COLUMN_ALIASES[name]:
        value = row.get(alias)
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # a JSONL/Parquet column of face numbers with gaps reads as floats
        if value is not None and str(value).strip() and str(value).lower() != "nan":
            return str(value).strip()
    return ""


def read_dub_catalog(
    catalog: str, models_uri: str | None, output_uri: str, storage: Storage
) -> list[dict[str, Any]]:
    """Entries of a dubbing catalog (CSV, JSONL or Parquet), resolved; rows that cannot run carry ``reason``.

    Raises :class:`InputError` naming the catalog when it cannot be read, lacks a ``job_id`` column
    or repeats a job id (outputs and records are keyed by it).
    """
    rows = read_table(catalog, storage)
    if not rows:
        raise InputError(catalog, "the catalog has no rows")
    if "job_id" not in rows[0]:
        raise InputError(catalog, "needs a job_id column (and speaker or model_uri, video_uri, audio_uri)")
    repeated = sorted(
        job for job, count in Counter(str(r.get("job_id", "")) for r in rows).items() if count > 1
    )
    if repeated:
        raise InputError(catalog, f"job ids must be unique; repeated: {', '.join(repeated[:5])}")
    base = table_base_dir(catalog)
    entries = [_entry(row, index, base, models_uri, output_uri) for index, row in enumerate(rows)]
    outputs = Counter(entry["output_uri"] for entry in entries if entry["output_uri"])
    shared = sorted(uri for uri, count in outputs.items() if count > 1)
    if shared:
        raise InputError(catalog, f"rows must not share an output_uri; shared: {', '.join(shared[:3])}")
    return entries


def _entry(
    row: dict[str, Any], index: int, base: str, models_uri: str | None, output_uri: str
) -> dict[str, Any]:
    job_id = str(row.get("job_id", "")).strip()
    entry: dict[str, Any] = {"job_id": job_id or f"row-{index + 1}", "reason": ""}
    for name in ("speaker", "model_uri", "video_uri", "audio_uri", "output_uri", "face"):
        value = _column(row, name)
        entry[name] = resolve(value, base) if value and name.endswith("_uri") else value
    try:
        entry["face"] = FaceSelection.parse(entry["face"], f"row {index + 1} face").text
        validate_id(job_id, "job id")
        if entry["speaker"]:
            validate_id(entry["speaker"], "speaker id")
        if not entry["model_uri"]:
            if not entry["speaker"]:
                raise InputError(f"row {index + 1}", "needs a speaker or a model_uri column value")
            if not models_uri:
                raise InputError(
                    f"row {index + 1}", f"speaker '{entry['speaker']}' needs models_uri to find its model"
                )
            entry["model_uri"] = join(models_uri, entry["speaker"])
        for name in ("video_uri", "audio_uri"):
            if not entry[name]:
                raise InputError(f"row {index + 1}", f"{name} is empty")
        entry["output_uri"] = entry["output_uri"] or join(output_uri, "videos", f"{job_id}.mp4")
    except InputError as error:
        entry["reason"] = str(error)
    return entry


def record_uri(output_uri: str, job_id: str) -> str:
    """Where the finished row of ``job_id`` is recorded (written right after its video is published)."""
    return join(output_uri, "items", f"{job_id}.json")


class ModelCache:
    """Speaker models loaded once per process, the least recently used dropped beyond ``capacity``."""

    def __init__(self, storage: Storage, capacity: int = 2):
        self.storage, self.capacity = storage, max(1, int(capacity))
        self.models: OrderedDict[str, SpeakerModel] = OrderedDict()
        self.loads = 0

    def get(self, uri: str) -> SpeakerModel:
        if uri in self.models:
            self.models.move_to_end(uri)
            return self.models[uri]
        model = load_speaker_model(uri, self.storage)
        self.loads += 1
        self.models[uri] = model
        while len(self.models) > self.capacity:
            self.models.popitem(last=False)
        return model


class SourceCache:
    """Prepared sources under ``<root>/<hash>.npz``, keyed by video URI and speaker model (None = off)."""

    def __init__(self, storage: Storage, root: str | None):
        self.storage, self.root = storage, root

    def uri(self, video_uri: str, model: SpeakerModel, face: FaceSelection) -> str | None:
        if not self.root:
            return None
        selected = f"\n{face.text}" if face.text else ""  # auto keeps the keys of single-face days
        key = hashlib.sha256(f"{video_uri}\n{model_key(model)}{selected}".encode()).hexdigest()[:24]
        return join(self.root, f"{key}.npz")

    def load(self, video_uri: str, model: SpeakerModel, face: FaceSelection) -> SourceTrack | None:
        uri = self.uri(video_uri, model, face)
        if uri is None or not self.storage.exists(uri):
            return None
        try:
            return SourceTrack.load(uri, self.storage)
        except InputError as error:  # a damaged cache entry is recomputed, never fatal
            logger.warning("ignoring cached source %s: %s", uri, error)
            return None

    def save(self, track: SourceTrack, video_uri: str, model: SpeakerModel, face: FaceSelection) -> None:
        uri = self.uri(video_uri, model, face)
        if uri is not None:
            track.save(uri, self.storage)


def _base_row(entry: dict[str, Any], node_id: str) -> dict[str, Any]:
    keys = ("job_id", "speaker", "model_uri", "video_uri", "face", "audio_uri", "output_uri")
    return {**{key: entry.get(key, "") for key in keys}, "node_id": node_id, "worker_pid": os.getpid()}


def finished_row(entry: dict[str, Any], output_uri: str, storage: Storage, node_id: str) -> dict[str, Any]:
    """The row of an output that already exists: its record, or (if the record was lost) a probe of it."""
    record = record_uri(output_uri, entry["job_id"])
    if storage.exists(record):
        row = storage.read_json(record)
    else:
        with storage.local_copy(entry["output_uri"]) as local:
            info = probe_video(local)
        row = {
            **_base_row(entry, node_id),
            "status": RowStatus.OK,
            "reason": "output existed without its record; re-probed",
            "output_duration_s": round(info.n_frames / info.fps_float, 3),
            "output_frames": info.n_frames,
            "fps": round(info.fps_float, 4),
            "width": info.width,
            "height": info.height,
        }
        storage.write_json(record, row)
    return {**row, "resumed": True, "seconds": 0.0, "node_id": node_id, "worker_pid": os.getpid()}


def dub_entry(
    entry: dict[str, Any],
    config: DubConfig,
    output_uri: str,
    storage: Storage,
    models: ModelCache,
    sources: SourceCache | None = None,
    scorer=None,
    overwrite: bool = False,
    node_id: str = "local",
) -> dict[str, Any]:
    """Dub one catalog entry into its output (published atomically) and return its manifest row.

    ``scorer(path, name, face) -> OutputScore`` scores the finished video at the local ``path``,
    naming it ``name`` (the output URI) in its statuses, on the dubbed ``face`` (its average box,
    :func:`dubbed_face_box`); None skips scoring.
    """
    started = time.monotonic()
    row = {**_base_row(entry, node_id), "resumed": False}
    try:
        if entry.get("reason"):
            raise InputError(entry["job_id"], entry["reason"])
        if not overwrite and storage.exists(entry["output_uri"]):
            storage.delete_prefix(parts_uri(entry["output_uri"]))  # left if a run died right after publishing
            return finished_row(entry, output_uri, storage, node_id)
        model_uri = entry["model_uri"]
        model = models.get(model_uri)
        if entry.get("speaker") and model.speaker != entry["speaker"]:
            raise InputError(
                model_uri, f"is the model of speaker '{model.speaker}', the row asks for '{entry['speaker']}'"
            )
        face = FaceSelection.parse(entry.get("face", ""), f"{entry['job_id']} face")
        track = sources.load(entry["video_uri"], model, face) if sources else None
        with (
            storage.local_copy(entry["video_uri"]) as video_path,
            storage.local_copy(entry["audio_uri"]) as audio_path,
            storage.writable_local(entry["output_uri"], suffix=".mp4") as output_path,
        ):
            if track is None:
                track = prepare_source(video_path, model, config.inference, entry["video_uri"], face=face)
                if sources:
                    sources.save(track, entry["video_uri"], model, face)
            result = dub_files(
                model, video_path, audio_path, output_path, config, track,
                video_uri=entry["video_uri"], audio_uri=entry["audio_uri"], model_uri=model_uri,
                storage=storage, parts=parts_uri(entry["output_uri"]),
            )  # fmt: skip
            face_box = dubbed_face_box(track, model)
            scores = scorer(output_path, entry["output_uri"], face_box) if scorer else OutputScore()
        storage.delete_prefix(parts_uri(entry["output_uri"]))  # the output is published: its segments go
        seconds = time.monotonic() - started
        row.update(result.to_row())
        row.update(
            status=RowStatus.OK,
            reason="",
            speaker=model.speaker,
            face_box=[face_box.x0, face_box.y0, face_box.x1, face_box.y1],  # the dubbed face, frame px
            **scores.to_row(),
            seconds=round(seconds, 2),
            realtime_factor=round(seconds / max(result.output_duration_s, 1e-9), 3),
            stage_seconds=result.stage_seconds,
        )
        storage.write_json(record_uri(output_uri, entry["job_id"]), row)
        logger.info(
            "dubbed %s -> %s: %d frames in %.1f s",
            entry["job_id"],
            entry["output_uri"],
            result.n_frames,
            seconds,
        )
    except InputError as error:
        row.update(status=RowStatus.FAILED, reason=str(error), seconds=round(time.monotonic() - started, 2))
        logger.warning("%s failed: %s", entry["job_id"], error)
    except StorageUnavailable:
        raise  # not this row's fault: the job stops, and a rerun picks the row up again
    except Exception as error:  # one bad item must not stop a catalog of thousands
        logger.exception("%s: unexpected error", entry["job_id"])
        row.update(
            status=RowStatus.FAILED,
            reason=f"{entry['job_id']}: internal error {type(error).__name__}: {error}",
            seconds=round(time.monotonic() - started, 2),
        )
    return row


@dataclass
class OutputScore:
    """What a dub's manifest row says about the finished output's mouth."""

    msi_lip: float | None = None
    msi_jaw: float | None = None
    msi_status: str = "not scored"
    # The lip-sync expert on the output's re-tracked lips against its own (new) audio track:
    # measured on the rendered frames, so a renderer that ignores the mesh shows up here.
    lipsync_confidence: float | None = None
    lipsync_offset_frames: int | None = None  # > 0: the sound comes late
    lipsync_offset_ms: float | None = None
    lipsync_status: str = "not scored"

    def to_row(self) -> dict[str, Any]:
        return asdict(self)


def dubbed_face_box(track: SourceTrack, model: SpeakerModel) -> Box:
    """The dubbed face's average box in source pixels: the crop box over its face frames, less the margin."""
    x, y = track.centres[track.present].mean(axis=0)
    half = track.side / model.face_model.config.crop_scale / 2.0
    return Box(float(x - half), float(y - half), float(x + half), float(y + half))


def output_scorer(metrics_config, backend):
    """A ``scorer`` for :func:`dub_entry`: the output's lip and jaw MSI and its lip-sync confidence
    (:func:`stableface.metrics.video.score_video` on the output file: frames re-tracked; with
    several faces on screen the dubbed one, if ``backend`` tracks several)."""
    from stableface.metrics.video import load_sync_expert, score_video

    sync, sync_error = load_sync_expert(metrics_config)

    def score(path, name: str, face: Box | None = None) -> OutputScore:
        result = score_video(path, metrics_config, backend=backend, name=name, sync=sync, face=face)
        if result.status != RowStatus.OK:
            status = f"{result.status}: {result.reason}"
            return OutputScore(msi_status=status, lipsync_status=status)
        return OutputScore(
            msi_lip=result.msi_lip,
            msi_jaw=result.msi_jaw,
            msi_status=RowStatus.OK,
            lipsync_confidence=result.lipsync_confidence,
            lipsync_offset_frames=result.lipsync_offset_frames,
            lipsync_offset_ms=result.lipsync_offset_ms,
            lipsync_status=sync_error or result.lipsync_status,
        )

    return score
