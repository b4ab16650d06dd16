"""What the service reads and writes, reached only through validated ids (no Ray here).

- :class:`ModelStore`: speaker S's model is ``<models_uri>/S`` (a :class:`SpeakerModel` directory);
- :class:`SourceStore`: S's source videos are ``<sources_uri>/S/<source_id>.<video ext>``; each is
  prepared once per speaker model (:func:`stableface.inference.prepare_source`) and kept in a
  memory LRU and as npz under ``cache_uri``, so later requests skip the face tracking;
- :class:`JobStore`: asynchronous jobs under ``<jobs_uri>/<job_id>/`` (audio, status.json, video.mp4).

Every URI is built from a root in the config and ids that passed
:func:`stableface.data.catalog.validate_id`, and checked to stay under that root.
"""

from __future__ import annotations

import enum
import hashlib
import logging
import os
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from serve.validation import ApiError, check_id
from stableface.data.catalog import VIDEO_SUFFIXES
from stableface.errors import StorageNotFound
from stableface.face.face_tracks import FaceSelection
from stableface.inference import InferenceConfig, SourceTrack, load_speaker_model, model_key, prepare_source
from stableface.io.storage import Storage, is_s3, join, local_dir
from stableface.speaker_model import METADATA_FILE, SpeakerModel

logger = logging.getLogger(__name__)

LISTING_TTL_S = 30.0  # how long a speaker's list of source videos is reused before listing again
STATUS_FILE = "status.json"
VIDEO_FILE = "video.mp4"
AUDIO_STEM = "audio"
PUBLIC_JOB_FIELDS = (
    "job_id", "status", "speaker", "source", "created_at", "started_at", "finished_at",
    "audio_seconds", "output_seconds", "model_version", "error", "attempts", "callback_url", "callback",
)  # fmt: skip


class JobState(enum.StrEnum):
    """Where an asynchronous job is; ``status.json`` holds the value."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @classmethod
    def active(cls) -> frozenset[JobState]:
        """States of a job not yet ended: a restart submits it again and a client may cancel it."""
        return frozenset((cls.QUEUED, cls.RUNNING))


def _under(root: str, uri: str) -> str:
    """``uri`` if it lies under ``root`` (defence in depth behind id validation), else 422."""
    base = str(root).rstrip("/") + "/"
    if not str(uri).startswith(base):
        raise ApiError(422, f"{uri}: outside the configured store {root}")
    return uri


class ModelStore:
    """Speaker models by speaker id."""

    def __init__(self, models_uri: str, storage: Storage):
        self.root, self.storage = models_uri, storage

    def uri(self, speaker: str) -> str:
        return _under(self.root, join(self.root, check_id(speaker, "speaker")))

    def require(self, speaker: str) -> str:
        """The model URI of ``speaker``, or 404 when the store has no model for it."""
        uri = self.uri(speaker)
        if not self.storage.exists(join(uri, METADATA_FILE)):
            raise ApiError(404, f"speaker '{speaker}': no speaker model in the model store")
        return uri

    def load(self, speaker: str, components: tuple[str, ...]) -> SpeakerModel:
        """``speaker``'s model with only the networks in ``components`` (a stage holds no others)."""
        return load_speaker_model(self.require(speaker), self.storage, components)


@dataclass(frozen=True)
class SourceRef:
    """One source video of one speaker, found in the sources store."""

    speaker: str
    source_id: str
    uri: str

    @property
    def name(self) -> str:
        """How messages name it: ids only, never the store's URI."""
        return f"source '{self.speaker}/{self.source_id}'"


SPEAKERS_FACE = FaceSelection()  # auto: the face that matches the speaker's model


class SourceStore:
    """Source videos by (speaker, source id) and their prepared tracks (memory LRU + npz cache)."""

    def __init__(
        self,
        sources_uri: str,
        storage: Storage,
        cache_uri: str | None = None,
        inference: InferenceConfig | None = None,
        max_tracks: int = 32,
    ):
        self.root, self.storage = sources_uri, storage
        self.inference = inference or InferenceConfig()
        self.max_tracks = max_tracks
        default_cache = Path(tempfile.gettempdir()) / "stableface-serve-cache"
        self.cache_uri = cache_uri or str(default_cache)
        self.local_cache = local_dir(self.cache_uri) if not is_s3(self.cache_uri) else default_cache
        self._tracks: OrderedDict[tuple[str, str, str], SourceTrack] = OrderedDict()
        self._listings: dict[str, tuple[float, list[str]]] = {}
        self._lock = threading.Lock()
        self._key_locks: dict[tuple[str, str, str], threading.Lock] = {}
        self.prepared_count = 0  # tracks computed here (not loaded from the cache), for tests

    # ----------------------------------------------------------------- finding
    def _videos(self, speaker: str) -> list[str]:
        folder = join(self.root, speaker)
        now = time.monotonic()
        with self._lock:
            cached = self._listings.get(speaker)
        if cached and now - cached[0] < LISTING_TTL_S:
            return cached[1]
        try:
            uris = self.storage.list(folder, suffixes=VIDEO_SUFFIXES)
        except StorageNotFound:
            uris = []
        with self._lock:
            self._listings[speaker] = (now, uris)
        return uris

    def find(self, speaker: str, source_id: str | None = None) -> SourceRef:
        """The video of ``source_id`` (default: the speaker's first video by name), or 404."""
        speaker = check_id(speaker, "speaker")
        wanted = None if source_id is None else check_id(source_id, "source")
        for uri in self._videos(speaker):
            stem = PurePosixPath(uri).stem
            if wanted is None or stem == wanted:
                return SourceRef(speaker, stem, _under(self.root, uri))
        if wanted is None:
            raise ApiError(404, f"speaker '{speaker}': no source video in the sources store")
        raise ApiError(404, f"source '{wanted}': speaker '{speaker}' has no such source video")

    # ----------------------------------------------------------------- files
    def local_video(self, ref: SourceRef) -> Path:
        """A local file with the source video: the file itself, or a download kept in the cache."""
        if not is_s3(ref.uri):
            return local_dir(ref.uri)
        digest = hashlib.sha256(ref.uri.encode()).hexdigest()[:24]
        path = self.local_cache / "videos" / f"{digest}{PurePosixPath(ref.uri).suffix}"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
            self.storage.download_file(ref.uri, partial)
            os.replace(partial, path)  # concurrent downloads of one video both end in a whole file
        return path

    def track_uri(self, ref: SourceRef, model: SpeakerModel, face: FaceSelection = SPEAKERS_FACE) -> str:
        key = model_key(model).rsplit(":", 1)[-1]
        selected = f"-face-{face.text.replace(',', '_')}" if face.text else ""
        return join(self.cache_uri, "sources", ref.speaker, f"{ref.source_id}-{key}{selected}.npz")

    def prepared(
        self, ref: SourceRef, model: SpeakerModel, face: FaceSelection = SPEAKERS_FACE
    ) -> SourceTrack:
        """The source's track of ``face`` (default: the speaker's) for ``model``: from memory, else the
        npz cache, else prepared now."""
        key = (model_key(model), ref.uri, face.text)
        with self._lock:
            if key in self._tracks:
                self._tracks.move_to_end(key)
                return self._tracks[key]
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:  # one preparation per source at a time; the others wait and reuse it
            with self._lock:
                if key in self._tracks:
                    return self._tracks[key]
            track = self._load_or_prepare(ref, model, face)
            with self._lock:
                self._tracks[key] = track
                while len(self._tracks) > self.max_tracks:
                    self._tracks.popitem(last=False)
        return track

    def _load_or_prepare(self, ref: SourceRef, model: SpeakerModel, face: FaceSelection) -> SourceTrack:
        cached = self.track_uri(ref, model, face)
        if self.storage.exists(cached):
            track = SourceTrack.load(cached, self.storage)
            if track.model_key == model_key(model):
                return track
        started = time.perf_counter()
        track = prepare_source(self.local_video(ref), model, self.inference, source=ref.name, face=face)
        self.prepared_count += 1
        track.save(cached, self.storage)
        logger.info(
            "prepared source %s for %s in %.1f s", ref.uri, model.speaker, time.perf_counter() - started
        )
        return track


class JobStore:
    """Asynchronous dubbing jobs: one folder per job id with the audio, ``status.json`` and the video."""

    def __init__(self, jobs_uri: str, storage: Storage):
        self.root, self.storage = jobs_uri, storage

    @staticmethod
    def new_id() -> str:
        return uuid.uuid4().hex

    def folder(self, job_id: str) -> str:
        return _under(self.root, join(self.root, check_id(job_id, "job id")))

    def status_uri(self, job_id: str) -> str:
        return join(self.folder(job_id), STATUS_FILE)

    def video_uri(self, job_id: str) -> str:
        return join(self.folder(job_id), VIDEO_FILE)

    def audio_uri(self, job_id: str, suffix: str) -> str:
        return join(self.folder(job_id), AUDIO_STEM + suffix)

    def create(self, job_id: str, audio: bytes, suffix: str, record: dict[str, Any]) -> dict[str, Any]:
        """Store the audio, then the status (the status file's presence makes the job visible)."""
        audio_uri = self.audio_uri(job_id, suffix)
        self.storage.write_bytes(audio_uri, audio)
        full = {
            **record,
            "job_id": job_id,
            "status": JobState.QUEUED,
            "audio_uri": audio_uri,
            "created_at": time.time(),
            "attempts": 0,
        }
        self.storage.write_json(self.status_uri(job_id), full)
        return full

    def read(self, job_id: str) -> dict[str, Any]:
        """The job's full record, or 404."""
        uri = self.status_uri(job_id)
        try:
            return self.storage.read_json(uri)
        except StorageNotFound as error:
            raise ApiError(404, f"job '{job_id}': no such job") from error

    def update(self, job_id: str, **fields: Any) -> dict[str, Any]:
        if "status" in fields and fields["status"] not in tuple(JobState):
            raise ValueError(f"unknown job state {fields['status']!r} (one of {', '.join(JobState)})")
        record = {**self.read(job_id), **fields}
        self.storage.write_json(self.status_uri(job_id), record)
        return record

    def records(self) -> list[dict[str, Any]]:
        """Every job's record, newest first."""
        try:
            uris = self.storage.list(self.root, suffixes=(STATUS_FILE,))
        except StorageNotFound:
            return []
        found = []
        for uri in uris:
            try:
                found.append(self.read(PurePosixPath(uri).parent.name))
            except ApiError:
                continue  # removed meanwhile
        return sorted(found, key=lambda r: r.get("created_at", 0.0), reverse=True)

    def unfinished(self) -> list[str]:
        """Ids of jobs still queued or running (after a restart they are submitted again)."""
        return [r["job_id"] for r in self.records() if r.get("status") in JobState.active()]

    def remove(self, job_id: str) -> None:
        """Delete the job's folder (audio, video, status)."""
        self.storage.delete_prefix(self.folder(job_id) + "/")


def public_job(record: dict[str, Any]) -> dict[str, Any]:
    """The fields of a job record a client sees (no store URIs)."""
    return {key: record[key] for key in PUBLIC_JOB_FIELDS if key in record}
