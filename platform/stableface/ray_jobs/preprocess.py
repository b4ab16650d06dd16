"""``stableface preprocess``: raw talking-head videos -> per-speaker training datasets, on Ray Data.

Three passes over the catalog, each a Ray Data stage whose work is a plain library function:

1. per video (Ray tasks spread over the cluster, each worker process keeping its landmark
   backend between videos): :func:`stableface.data.extract.extract_video` - decode, track, crop,
   audio features, pose;
2. grouped by speaker: :func:`stableface.data.speakers.speaker_identity` - the speaker's mean
   shape and a sample of expression displacements;
3. the driver fits the shared expression basis once per dataset (kept on later runs so every
   speaker lives in one expression space), then per speaker
   :func:`stableface.data.speakers.encode_speaker` writes expression coefficients and masks and
   the speaker manifest, which marks the speaker finished.

Re-running skips finished speakers; a killed run resumes, skipping videos already extracted.
Every catalog row ends in the dataset manifest, failures with their reason.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from typing import Any

import pandas as pd

from stableface.config import with_absolute_uris
from stableface.config.jobs import PreprocessJobConfig
from stableface.data.catalog import list_video_catalog
from stableface.data.extract import extract_video_row
from stableface.data.layout import DatasetLayout
from stableface.data.manifest import finished_speakers, write_dataset_manifest
from stableface.data.speakers import encode_speaker_row, fit_or_load_face_model, speaker_identity_row
from stableface.face.landmarks import BACKENDS, LandmarkBackend, make_backend
from stableface.io.storage import Storage
from stableface.ray_jobs.runtime import ensure_ray, node_id, outages_surface
from stableface.status import RowStatus
from stableface.utils.progress import Progress

logger = logging.getLogger(__name__)

MAX_GROUP_PARTITIONS = 64  # the speaker group-by shuffles to at most this many partitions
# Rows travel between stages as JSON text: their keys differ by outcome (failed rows lack the
# measurements), and Ray Data keeps one schema per dataset.
ROW_COLUMN = "row_json"


@functools.lru_cache(maxsize=len(BACKENDS))
def _worker_backend(name: str, max_faces: int) -> LandmarkBackend:
    """One landmark backend per worker process and name, reused by the videos its tasks extract.

    Tasks rather than an actor pool: the backend is cheap to build and to keep per worker process
    (MediaPipe builds its graph per video anyway), and Ray Data retries a task whose worker dies,
    with no actor restarts to configure.
    """
    return make_backend(name, max_faces=max_faces)


def _video_stage(cfg: PreprocessJobConfig):
    def extract(batch: pd.DataFrame) -> pd.DataFrame:
        storage, layout = Storage(cfg.storage), DatasetLayout(cfg.dataset_uri)
        backend = _worker_backend(cfg.face.backend, cfg.face.max_faces)
        rows = []
        for entry in batch.to_dict(orient="records"):
            row = extract_video_row(entry, cfg, storage, layout, backend)
            rows.append(
                {"speaker": entry["speaker"], ROW_COLUMN: json.dumps({**row, "extract_node": node_id()})}
            )
        return pd.DataFrame(rows)

    return extract


def _identity_stage(cfg: PreprocessJobConfig):
    def identity(group: pd.DataFrame) -> pd.DataFrame:
        rows = [json.loads(text) for text in group[ROW_COLUMN]]
        result = speaker_identity_row(rows, cfg, Storage(cfg.storage), DatasetLayout(cfg.dataset_uri))
        return pd.DataFrame([{**result, "identity_node": node_id()}])

    return identity


def _encode_stage(cfg: PreprocessJobConfig, face_model: tuple[str | None, str]):
    def encode(batch: pd.DataFrame) -> pd.DataFrame:
        storage, layout = Storage(cfg.storage), DatasetLayout(cfg.dataset_uri)
        out = []
        for speaker_row in batch.to_dict(orient="records"):
            out.extend(encode_speaker_row(speaker_row, cfg, storage, layout, face_model, node=node_id()))
        # The rows themselves are in the speaker manifests; the driver only counts them.
        return pd.DataFrame([{"video_id": row["video_id"], "status": row["status"]} for row in out])

    return encode


def select_entries(cfg: PreprocessJobConfig, storage: Storage) -> list[dict[str, str]]:
    """The catalog rows this run covers: optional speaker filter and per-speaker video cap."""
    entries = list_video_catalog(cfg.catalog, storage, cfg.speaker_from, record_bad_ids=True)
    if cfg.speakers:
        wanted = set(cfg.speakers)
        entries = [e for e in entries if e["speaker"] in wanted]
    if cfg.max_videos_per_speaker:
        seen: dict[str, int] = {}
        capped = []
        for entry in entries:
            seen[entry["speaker"]] = seen.get(entry["speaker"], 0) + 1
            if seen[entry["speaker"]] <= cfg.max_videos_per_speaker:
                capped.append(entry)
        entries = capped
    return entries


def process_on_ray(
    todo: list[dict[str, str]], cfg: PreprocessJobConfig, storage: Storage, layout: DatasetLayout
) -> None:
    """The three Ray Data passes over the unfinished speakers' videos."""
    import ray

    ensure_ray(cfg.ray)
    n_speakers = len({e["speaker"] for e in todo})
    workers = cfg.concurrency or max(1, min(len(todo), int(ray.cluster_resources().get("CPU", 1))))
    videos = ray.data.from_items(todo, override_num_blocks=len(todo)).map_batches(
        _video_stage(cfg),
        batch_size=1,
        batch_format="pandas",
        compute=ray.data.TaskPoolStrategy(size=workers),
        # Ray Data SPREADs tasks with small arguments (a catalog row) over the cluster's nodes.
        num_cpus=1,
    )
    logger.info("extracting %d videos with %d workers", len(todo), workers)
    # The rows (a JSON text each) come back to the driver as each video finishes, for the progress.
    extracted = _collect(videos, Progress("preprocess: extract", total=len(todo), unit="videos"))
    identity_rows = (
        ray.data.from_items(extracted)
        .groupby("speaker", num_partitions=min(n_speakers, MAX_GROUP_PARTITIONS))
        .map_groups(_identity_stage(cfg), batch_format="pandas", num_cpus=1)
        .take_all()
    )
    face_model = fit_or_load_face_model(identity_rows, cfg, storage, layout)
    encoded = ray.data.from_items(identity_rows).map_batches(
        _encode_stage(cfg, face_model), batch_size=1, batch_format="pandas", num_cpus=1
    )
    # One row per video, a speaker's all at once when its encoding finishes.
    _collect(encoded, Progress("preprocess: encode", total=len(todo), unit="videos"))


def _collect(dataset, progress: Progress) -> list[dict[str, Any]]:
    rows = []
    for row in dataset.iter_rows():
        rows.append(dict(row))
        progress.update(1)
    progress.close()
    return rows


def run(cfg: PreprocessJobConfig) -> dict[str, Any]:
    cfg = with_absolute_uris(cfg)
    started = time.monotonic()
    storage = Storage(cfg.storage)
    layout = DatasetLayout(cfg.dataset_uri)
    entries = select_entries(cfg, storage)
    # Rows with an unusable speaker or video id cannot be placed in the dataset: failed rows, here.
    rejected = [
        {"speaker": e["speaker"], "video_id": e["video_id"], "video_uri": e["video_uri"], "status": RowStatus.FAILED,
         "reason": e["reason"]}
        for e in entries if e.get("reason")
    ]  # fmt: skip
    entries = [e for e in entries if not e.get("reason")]
    speakers = sorted({e["speaker"] for e in entries})
    finished = set() if cfg.overwrite else finished_speakers(storage, layout, speakers)
    todo = [e for e in entries if e["speaker"] not in finished]
    logger.info(
        "preprocess %s -> %s: %d videos of %d speakers (%d speakers already finished, skipped)",
        cfg.catalog, cfg.dataset_uri, len(entries), len(speakers), len(finished),
    )  # fmt: skip
    if todo:
        with outages_surface():
            process_on_ray(todo, cfg, storage, layout)
    manifest = write_dataset_manifest(storage, layout, speakers, cfg, rejected)
    summary = {
        "dataset_uri": cfg.dataset_uri,
        "speakers": len(speakers),
        "speakers_skipped": len(finished),
        "videos_ok": manifest["counts"]["ok"],
        "videos_failed": manifest["counts"]["failed"],
        "frames": manifest["counts"]["frames"],
        "seconds": round(time.monotonic() - started, 1),
    }
    logger.info("preprocess finished: %s", summary)
    return summary
