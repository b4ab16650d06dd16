"""``stableface dub``: bulk dubbing of a catalog on Ray Data -> dubbed mp4s + a result manifest.

Catalog rows (see :mod:`stableface.inference.batch`) go through Ray Data to a pool of
:class:`DubWorker` actors: a row to dub is one block (an actor that dies on it costs that row
alone), rows that are probably finished (their record exists) or invalid go many to a block. The
driver reads the catalog and lists the recorded rows once, so planning stays O(1) requests per row
however large the catalog; every per-row existence check runs in the actors. Each actor keeps the speaker models it has loaded (so a model
loads once per actor, and rows are sorted by model so actors see runs of one speaker) and a
MediaPipe tracker for scoring. Every row is dubbed by :func:`stableface.inference.batch.dub_entry`:

- outputs are published atomically (``Storage.writable_local``): never half-written;
- an existing output is finished work: a re-run returns its recorded row without dubbing;
- a crashed actor is restarted and the rows it held are retried (``max_restarts`` /
  ``max_task_retries``); a retried row that had not been published is dubbed again (a long one
  from its last stored segment, ``dub.segment_seconds``), one that had is found finished, so every
  row ends done exactly once. A row that kills its actor on every retry
  becomes a failed row, and the job goes on.

Outputs under ``cfg.output_uri``: ``manifest.parquet``/``manifest.csv`` (one row per catalog row:
status, reason, durations, output MSI, seconds, node), ``summary.json``, ``items/<job_id>.json``,
``sources/`` (prepared source cache) and, for rows without an ``output_uri``, ``videos/<job_id>.mp4``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import pandas as pd

from stableface.config import to_dict, with_absolute_uris
from stableface.config.jobs import DubJobConfig
from stableface.data.results import write_results
from stableface.errors import InputError, StorageNotFound, StorageUnavailable
from stableface.inference.batch import (
    RESULT_COLUMNS,
    ModelCache,
    SourceCache,
    dub_entry,
    output_scorer,
    read_dub_catalog,
)
from stableface.io.storage import Storage, basename, join
from stableface.ray_jobs.runtime import ensure_ray, node_id
from stableface.report.review import REVIEW_COLUMNS, review_row, write_review
from stableface.status import RowStatus
from stableface.utils.progress import Progress
from stableface.utils.serialise import plain

logger = logging.getLogger(__name__)

ROW_COLUMN = "row_json"  # rows travel as JSON: failed rows lack the measurements of finished ones
OUTAGE_KEY = "store_outage"  # a row stopped by an unusable store: (uri, problem), never a result
QUICK_BLOCK_ROWS = 256  # rows with a record (to check) or a reason (to report) need no dubbing
RECORD_SUFFIX = ".json"


class DubWorker:
    """Ray Data actor: cached speaker models and a landmark tracker for MSI; one catalog row per call."""

    def __init__(self, cfg: DubJobConfig):
        from stableface.face.landmarks import make_backend
        from stableface.utils.logging import configure_logging

        configure_logging()
        self.cfg = cfg
        self.storage = Storage(cfg.storage)
        self.models = ModelCache(self.storage, cfg.models_per_actor)
        self.sources = SourceCache(
            self.storage, join(cfg.output_uri, "sources") if cfg.cache_sources else None
        )
        # As many faces as dubbing tracks, so a dub's scores are of its painted face (stableface.metrics.video).
        faces = cfg.dub.inference.max_faces
        self.backend = make_backend(cfg.metrics.backend, max_faces=faces) if cfg.score_outputs else None
        self.scorer = output_scorer(cfg.metrics, self.backend) if self.backend else None
        self.node = node_id()

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        rows = []
        for entry in batch.to_dict(orient="records"):
            try:
                row = dub_entry(
                    entry, self.cfg.dub, self.cfg.output_uri, self.storage, self.models, self.sources,
                    self.scorer, self.cfg.overwrite, self.node,
                )  # fmt: skip
                if self.cfg.review and self.backend and row.get("status") == RowStatus.OK:
                    row.update(self._review(row))
            except StorageUnavailable as outage:
                # Returned, not raised: the job tolerates errored blocks (rows whose actor died), so a
                # raised outage would read as one more given-up row instead of stopping the job.
                row = {"job_id": entry["job_id"], OUTAGE_KEY: [outage.uri, outage.problem]}
            rows.append({"job_id": entry["job_id"], ROW_COLUMN: json.dumps(plain(row))})
        return pd.DataFrame(rows)

    def _review(self, row: dict[str, Any]) -> dict[str, Any]:
        """The row's review columns; a review that fails says why and leaves the dub as it is."""
        try:
            return review_row(
                row, self.cfg.output_uri, self.storage, self.cfg.metrics, self.backend, self.cfg.overwrite
            )
        except StorageUnavailable:
            raise
        except InputError as error:  # e.g. a source that cannot be decoded again
            logger.warning("%s: review failed: %s", row["job_id"], error)
            return {"source_msi_status": f"review failed: {error}"}
        except Exception as error:  # the dub is finished and recorded: its review must not fail it
            logger.exception("%s: review failed", row["job_id"])
            return {"source_msi_status": f"review failed: {type(error).__name__}: {error}"}


def _actor_count(cfg: DubJobConfig, n_items: int) -> int:
    import ray

    if cfg.concurrency:
        return max(1, min(int(cfg.concurrency), n_items))
    resources = ray.cluster_resources()
    if cfg.gpus_per_actor > 0:
        slots = resources.get("GPU", 0.0) // cfg.gpus_per_actor
    else:
        slots = resources.get("CPU", 1.0) // max(cfg.cpus_per_actor, 0.01)
    return max(1, min(int(slots), n_items))


@dataclass
class DubPlan:
    """What a run does with each catalog row, decided from one listing of the recorded rows."""

    entries: list[dict[str, Any]]  # the catalog, in its order
    quick: list[dict[str, Any]]  # recorded (probably finished: actors check the output) or invalid
    todo: list[dict[str, Any]]  # to dub, sorted by model so actors see runs of one speaker


def recorded_job_ids(output_uri: str, storage: Storage) -> set[str]:
    """Job ids with a record under ``<output_uri>/items/``: one listing, not a request per row."""
    try:
        uris = storage.list(join(output_uri, "items"), suffixes=(RECORD_SUFFIX,))
    except StorageNotFound:
        return set()
    return {basename(uri)[: -len(RECORD_SUFFIX)] for uri in uris}


def plan_dub(cfg: DubJobConfig, storage: Storage) -> DubPlan:
    entries = read_dub_catalog(cfg.catalog, cfg.models_uri, cfg.output_uri, storage)
    recorded = set() if cfg.overwrite else recorded_job_ids(cfg.output_uri, storage)
    quick = [e for e in entries if e["job_id"] in recorded or e.get("reason")]
    quick_ids = {e["job_id"] for e in quick}
    todo = sorted(
        (e for e in entries if e["job_id"] not in quick_ids), key=lambda e: (e["model_uri"], e["video_uri"])
    )
    return DubPlan(entries, quick, todo)


def dub_on_ray(plan: DubPlan, cfg: DubJobConfig) -> list[dict[str, Any]]:
    """Dub the plan's rows on Ray Data actors; returns one row per row (in completion order)."""
    import ray

    n_rows = len(plan.quick) + len(plan.todo)
    actors = _actor_count(cfg, max(1, len(plan.todo)))
    logger.info("dubbing %d catalog rows with %d actors", n_rows, actors)
    context = ray.data.DataContext.get_current()
    saved_limit = context.max_errored_blocks
    # Set before any dataset exists: each dataset keeps a copy of the context it was created under.
    context.max_errored_blocks = -1  # a row given up after its retries must not stop the others
    try:
        parts = []
        if plan.quick:
            blocks = math.ceil(len(plan.quick) / QUICK_BLOCK_ROWS)
            parts.append(ray.data.from_items(plan.quick, override_num_blocks=blocks))
        if plan.todo:
            parts.append(ray.data.from_items(plan.todo, override_num_blocks=len(plan.todo)))
        dataset = (parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]).map_batches(
            DubWorker,
            fn_constructor_kwargs={"cfg": cfg},
            batch_size=1,
            batch_format="pandas",
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=cfg.cpus_per_actor,
            num_gpus=cfg.gpus_per_actor,
            # Actor restarts still go as ray_remote_args: Ray warns that these are deprecated, but
            # names no parameter for them yet (2.6x); they are what retries a crashed actor's rows.
            max_restarts=cfg.max_restarts,
            max_task_retries=cfg.max_task_retries,
        )
        progress = Progress("dub", total=n_rows, unit="videos")
        rows = []
        for record in dataset.iter_rows():
            rows.append(json.loads(record[ROW_COLUMN]))
            progress.update(1)
        progress.close()
    finally:
        context.max_errored_blocks = saved_limit
    return rows


def _given_up(entry: dict[str, Any], cfg: DubJobConfig) -> dict[str, Any]:
    """The row of an entry that returned no result: its actor died on every attempt."""
    attempts = "every" if cfg.max_task_retries < 0 else str(cfg.max_task_retries + 1)
    return {
        **{
            key: entry.get(key, "")
            for key in ("job_id", "speaker", "model_uri", "video_uri", "audio_uri", "output_uri")
        },
        "status": RowStatus.FAILED,
        "reason": f"{entry['video_uri']}: the dubbing actor died on {attempts} attempt(s) at this row",
        "resumed": False,
    }


def run(cfg: DubJobConfig) -> dict[str, Any]:
    """Dub every row of ``cfg.catalog``; returns the summary (also written to ``summary.json``)."""
    cfg = with_absolute_uris(cfg)
    started = time.monotonic()
    storage = Storage(cfg.storage)
    plan = plan_dub(cfg, storage)
    entries = plan.entries
    logger.info(
        "dub %s -> %s: %d rows, %d recorded by an earlier run (checked, not dubbed again)",
        cfg.catalog, cfg.output_uri, len(entries), len(plan.quick) - sum(bool(e.get("reason")) for e in plan.quick),
    )  # fmt: skip
    rows: dict[str, dict[str, Any]] = {}
    if entries:
        ensure_ray(cfg.ray)
        results = dub_on_ray(plan, cfg)
        outages = [row[OUTAGE_KEY] for row in results if OUTAGE_KEY in row]
        if outages:
            finished = len(results) - len(outages)
            raise StorageUnavailable(
                outages[0][0],
                f"{outages[0][1]}; {len(outages)} rows stopped, none marked failed. {finished} of "
                f"{len(entries)} rows are finished and kept: rerun the job when the store is back",
            )
        rows.update({row["job_id"]: row for row in results})
        rows.update({e["job_id"]: _given_up(e, cfg) for e in entries if e["job_id"] not in rows})
    ordered = [rows[e["job_id"]] for e in entries]  # catalog order, exactly one row per catalog row
    tables = write_results(storage, cfg.output_uri, "manifest", ordered, RESULT_COLUMNS + REVIEW_COLUMNS)
    review = (
        write_review(storage, cfg.output_uri, ordered, cfg.metrics.departure_factor) if cfg.review else None
    )
    ok = [r for r in ordered if r["status"] == RowStatus.OK]
    dubbed = [r for r in ok if not r.get("resumed")]
    frames = sum(int(r.get("output_frames") or 0) for r in dubbed)
    work_seconds = sum(float(r.get("seconds") or 0.0) for r in dubbed)
    elapsed = time.monotonic() - started
    summary = {
        "rows": len(ordered),
        "ok": len(ok),
        "failed": sum(r["status"] == RowStatus.FAILED for r in ordered),
        "dubbed": len(dubbed),
        "resumed": len(ok) - len(dubbed),
        "output_frames": frames,
        "output_seconds": round(sum(float(r.get("output_duration_s") or 0.0) for r in dubbed), 2),
        "seconds": round(elapsed, 2),
        "frames_per_second_per_actor": round(frames / work_seconds, 2) if work_seconds else None,
        "tables": tables,
        "review": review,
        "problems": [f"{r['job_id']}: {r['reason']}" for r in ordered if r["status"] != RowStatus.OK],
        "config": to_dict(cfg),
    }
    storage.write_json(join(cfg.output_uri, "summary.json"), summary)
    logger.info(
        "dub finished: %d rows, %d ok (%d dubbed, %d already done), %d failed in %.1f s; manifest %s%s",
        summary["rows"], summary["ok"], summary["dubbed"], summary["resumed"], summary["failed"], elapsed,
        tables["csv"], f", review page {review}" if review else "",
    )  # fmt: skip
    return summary
