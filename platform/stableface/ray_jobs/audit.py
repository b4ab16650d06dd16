"""Ray job: MSI audit of one catalog (optionally side by side with a second) -> table + HTML report.

Catalog rows go through Ray Data to a pool of actors that each build the landmark backend once
and score one video per call (:func:`stableface.metrics.video.score_video_faces`). Every input gets
a row per face it shows - ok, no_score or failed with its reason - so one bad file never stops the
audit. One row per face rather than per-face columns: every column keeps meaning one mouth (a
lecture with two people has two rows, ``face`` 1 and 2 from the left, each with its ``face_box``),
tables of one-face videos keep their shape, and a comparison pairs rows by video id and face. Outputs under
``cfg.output_uri`` (local or s3://, written atomically): ``audit.parquet``/``audit.csv``
(``compare.*`` for the second catalog), ``slices/<side>/<speaker>/<video_id>.png``, ``report.html``
and ``summary.json``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import pandas as pd

from stableface.config import to_dict, with_absolute_uris
from stableface.config.jobs import AuditJobConfig
from stableface.data.catalog import list_video_catalog
from stableface.data.results import write_results
from stableface.errors import BackendUnavailable, InputError, StorageUnavailable
from stableface.io.storage import Storage, join
from stableface.metrics.departure import Departure, check_factor, pair_departure, row_directions
from stableface.metrics.video import (
    VideoScore,
    config_flag_reasons,
    is_flagged,
    load_sync_expert,
    score_video_faces,
)
from stableface.provenance.verify import PROVENANCE_COLUMNS, inspect_video
from stableface.ray_jobs.runtime import ensure_ray, outages_surface
from stableface.report.html import COMPARE_PREFIX, ReportData, encode_png, pair_key, render_report, row_key
from stableface.status import RowStatus
from stableface.utils.progress import Progress
from stableface.utils.serialise import plain

logger = logging.getLogger(__name__)

MAIN_SIDE = "catalog"
COMPARE_SIDE = "compare"
RESULT_COLUMNS = (
    "side", "speaker", "video_id", "face", "n_faces", "face_box", "video_uri", "status", "reason", "n_frames", "n_face_frames",
    "n_missing_face", "n_bridged_frames", "n_skipped_frames", "n_segments", "n_scored_segments", "bridging",
    "msi_lip", "msi_jaw", "slice_roughness", "fps", "duration_s",
    "lipsync_confidence", "lipsync_offset_frames", "lipsync_offset_ms", "lipsync_status", "flags",
    "width", "height", "cpbd", "seconds", "node_id", "slice_uri", "msi_per_landmark",
)  # fmt: skip
# Main-catalog rows in a comparison: MSI over the paired reference's, and which way it departs.
DEPARTURE_COLUMNS = ("msi_lip_ratio", "msi_jaw_ratio", "departure_lip", "departure_jaw")
RESULT_COLUMNS += (*PROVENANCE_COLUMNS, "provenance_status")
TRANSIENT_COLUMNS = ("slice_png",)
SLICE_PX_PER_FRAME = 3  # carried to the driver for the report, never written to tables


class AuditScorer:
    """Ray Data actor: builds the landmark backend (and any extra networks) once, scores videos."""

    def __init__(self, cfg: AuditJobConfig):
        import ray

        from stableface.face.landmarks import make_backend

        self.cfg = cfg
        self.storage = Storage(cfg.storage)
        self.node_id = ray.get_runtime_context().get_node_id()
        self.backend, self.backend_error = None, ""
        try:
            self.backend = make_backend(cfg.metrics.backend, max_faces=cfg.metrics.max_faces)
        except BackendUnavailable as error:
            self.backend_error = f"landmark backend '{cfg.metrics.backend}' {error}"
        self.extra_models: dict[str, Any] = {}
        self.extra_errors: dict[str, str] = {}
        self._load_extras()
        self.sync, self.sync_error = load_sync_expert(cfg.metrics)

    def _load_extras(self) -> None:
        loaders = {}
        if "sync" in self.cfg.metrics.extras:
            from stableface.metrics.syncnet import load_syncnet

            loaders["sync"] = load_syncnet
        if "wer" in self.cfg.metrics.extras:
            from stableface.metrics.lipnet import load_lipnet

            loaders["wer"] = load_lipnet
        for name, loader in loaders.items():
            try:
                self.extra_models[name] = loader(self.cfg.metrics.weights_dir)
            except BackendUnavailable as error:
                self.extra_errors[name] = str(error)
                logger.warning("%s metric %s", name, error)

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        rows = [row for entry in batch.to_dict(orient="records") for row in self.score_entry(entry)]
        return pd.DataFrame(rows)

    def score_entry(self, entry: dict[str, Any]) -> list[dict[str, Any]]:
        """One row per face of the entry's video (one row when it failed or shows no face)."""
        started = time.monotonic()
        uri = str(entry["video_uri"])
        base = {
            "side": entry.get("side", MAIN_SIDE),
            "speaker": entry["speaker"],
            "video_id": entry["video_id"],
            "video_uri": uri,
            "node_id": self.node_id,
        }
        if self.backend is None:
            return [{**base, "status": RowStatus.FAILED, "reason": self.backend_error, "seconds": 0.0}]
        try:
            with self.storage.local_copy(uri) as path:
                scores = score_video_faces(
                    path, self.cfg.metrics, backend=self.backend, keep_landmarks=bool(self.extra_models),
                    sync=self.sync,
                )  # fmt: skip
                provenance = self._provenance(path, uri)
                rows = []
                for score in scores:
                    if self.sync_error:
                        score.lipsync_status = self.sync_error
                    row = {**base, **score.to_row(), **self._extras(path, score, entry), **provenance}
                    # Reasons name the input URI, not the temporary download that was scored.
                    row["reason"] = str(row.get("reason") or "").replace(str(path), uri)
                    row.update(self._slice(score, row))
                    rows.append(row)
        except InputError as error:
            rows = [{**base, "status": RowStatus.FAILED, "reason": str(error)}]
        except StorageUnavailable:
            raise  # the store, not the video: the audit stops and a rerun scores everything
        except Exception as error:  # an unforeseen failure of one video must not stop the audit
            logger.exception("scoring %s failed", uri)
            rows = [{**base, "status": RowStatus.FAILED, "reason": f"{uri}: {type(error).__name__}: {error}"}]
        seconds = round(time.monotonic() - started, 3)
        return [{**row, "seconds": seconds} for row in rows]

    def _provenance(self, path, uri: str) -> dict[str, Any]:
        """Watermark, credentials and tags of one video; a failure here is its own column, not the row's."""
        if not self.cfg.check_provenance:
            return {}
        try:
            return {**inspect_video(path, self.cfg.watermark).to_row(), "provenance_status": RowStatus.OK}
        except InputError as error:
            return {"provenance_status": str(error).replace(str(path), uri)}

    def _extras(self, path, score: VideoScore, entry: dict[str, Any]) -> dict[str, Any]:
        extras: dict[str, Any] = {}
        for name, message in self.extra_errors.items():
            extras[f"{name}_status"] = message
        if score.status != RowStatus.OK or score.ibug68 is None:
            return extras
        if "sync" in self.extra_models:
            from stableface.metrics.syncnet import sync_score_file

            try:
                extras.update(sync_score_file(self.extra_models["sync"], path, score.ibug68).to_dict())
                extras["sync_status"] = RowStatus.OK
            except (ValueError, InputError) as error:
                extras["sync_status"] = str(error)
        if "wer" in self.extra_models:
            from stableface.metrics.lipnet import wer_score_file

            transcript = str(entry.get("transcript") or "")
            if not transcript:
                extras["wer_status"] = "no transcript column in the catalog row"
            else:
                extras.update(wer_score_file(self.extra_models["wer"], path, score.ibug68, transcript))
                extras["wer_status"] = RowStatus.OK
        return extras

    def _slice(self, score: VideoScore, row: dict[str, Any]) -> dict[str, Any]:
        if score.slice_image is None:
            return {}
        # One pixel per frame is too thin to read: widen each frame's column for people and the report.
        png = encode_png(np.repeat(score.slice_image, SLICE_PX_PER_FRAME, axis=1))
        out: dict[str, Any] = {"slice_png": png}
        if self.cfg.save_slices:
            name = (
                row["video_id"]
                if int(row.get("n_faces") or 1) == 1
                else f"{row['video_id']}-face{row['face']}"
            )
            uri = join(self.cfg.output_uri, "slices", row["side"], row["speaker"], f"{name}.png")
            self.storage.write_bytes(uri, png)
            out["slice_uri"] = uri
        return out


def _actor_count(cfg: AuditJobConfig, n_items: int) -> int:
    import ray

    if cfg.concurrency:
        return max(1, min(int(cfg.concurrency), n_items))
    cpus = float(ray.cluster_resources().get("CPU", 1.0))
    return max(1, min(int(cpus // max(cfg.cpus_per_actor, 0.01)), n_items))


def score_catalog(entries: list[dict[str, Any]], cfg: AuditJobConfig) -> list[dict[str, Any]]:
    """Score catalog entries on Ray Data; one result row per entry, in catalog order."""
    import ray

    actors = _actor_count(cfg, len(entries))
    logger.info("auditing %d videos with %d actors", len(entries), actors)
    dataset = ray.data.from_items(entries, override_num_blocks=min(len(entries), 4 * actors)).map_batches(
        AuditScorer,
        fn_constructor_kwargs={"cfg": cfg},
        batch_size=1,
        batch_format="pandas",
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=cfg.cpus_per_actor,
    )
    progress = Progress("audit", total=len(entries), unit="videos")
    rows = []
    with outages_surface():
        for row in dataset.iter_rows():
            rows.append(plain(dict(row)))
            progress.update(1)
    progress.close()
    order = {(e["side"], e["speaker"], e["video_id"]): i for i, e in enumerate(entries)}
    rows.sort(key=lambda r: order.get((r["side"], r["speaker"], r["video_id"]), len(order)))
    return rows


def _catalog(source: str, side: str, storage: Storage) -> list[dict[str, Any]]:
    return [{**entry, "side": side} for entry in list_video_catalog(source, storage)]


def _report_slices(rows: list[dict[str, Any]], cfg: AuditJobConfig) -> dict[str, bytes]:
    """Slice PNGs for the report: flagged and failed-free rows first, up to ``report_max_slices``."""
    ranked = sorted(
        rows, key=lambda r: (not (is_flagged(r, cfg.metrics) or row_directions(r)), r["side"] != MAIN_SIDE)
    )
    slices: dict[str, bytes] = {}
    for row in ranked:
        png = row.get("slice_png")
        if not png or len(slices) >= cfg.report_max_slices:
            continue
        key = row_key(row) if row["side"] == MAIN_SIDE else COMPARE_PREFIX + row_key(row)
        slices[key] = png
    return slices


def _median(rows: list[dict[str, Any]], column: str) -> float | None:
    values = [r[column] for r in rows if r.get("status") == RowStatus.OK and r.get(column) is not None]
    return float(np.median(values)) if values else None


def add_departures(rows: list[dict[str, Any]], references: list[dict[str, Any]], factor: float) -> None:
    """Give each row paired by video id and face with a reference row its :data:`DEPARTURE_COLUMNS`."""
    by_id = {pair_key(r): r for r in references}
    for row in rows:
        reference = by_id.get(pair_key(row))
        departure = pair_departure(row, reference, factor) if reference is not None else None
        if departure is not None:
            row.update(departure.to_row())


def run(cfg: AuditJobConfig) -> dict[str, Any]:
    """Audit ``cfg.catalog`` (and ``cfg.compare_with``); returns a summary with the output URIs."""
    cfg = with_absolute_uris(cfg)
    check_factor(cfg.metrics.departure_factor)
    started = time.monotonic()
    storage = Storage(cfg.storage)
    entries = _catalog(cfg.catalog, MAIN_SIDE, storage)
    compare_entries = _catalog(cfg.compare_with, COMPARE_SIDE, storage) if cfg.compare_with else []
    ensure_ray(cfg.ray)
    all_rows = score_catalog(entries + compare_entries, cfg)
    for row in all_rows:
        row["flags"] = "; ".join(config_flag_reasons(row, cfg.metrics))
    rows = [r for r in all_rows if r["side"] == MAIN_SIDE]
    compare_rows = [r for r in all_rows if r["side"] == COMPARE_SIDE]
    add_departures(rows, compare_rows, cfg.metrics.departure_factor)

    def table_rows(selected: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in r.items() if k not in TRANSIENT_COLUMNS} for r in selected]

    outputs = {
        "audit": write_results(
            storage, cfg.output_uri, "audit", table_rows(rows), RESULT_COLUMNS + DEPARTURE_COLUMNS
        )
    }
    if cfg.compare_with:
        outputs["compare"] = write_results(
            storage, cfg.output_uri, "compare", table_rows(compare_rows), RESULT_COLUMNS
        )
    report = ReportData(
        title=cfg.title,
        rows=table_rows(rows),
        flag_lip_below=cfg.metrics.flag_lip_below,
        flag_jaw_below=cfg.metrics.flag_jaw_below,
        flag_offset_frames=cfg.metrics.flag_offset_frames if cfg.metrics.lipsync else None,
        flag_offset_min_confidence=cfg.metrics.flag_offset_min_confidence,
        slices=_report_slices(all_rows, cfg),
        compare_rows=table_rows(compare_rows) if cfg.compare_with else None,
        departure_factor=cfg.metrics.departure_factor,
        labels=(cfg.label, cfg.compare_label),
        settings={
            "catalog": cfg.catalog,
            "compared with": cfg.compare_with or "-",
            "landmark backend": cfg.metrics.backend,
            "min face fraction": cfg.metrics.min_face_fraction,
        },
        provenance_checked=cfg.check_provenance,
    )
    report_uri = join(cfg.output_uri, "report.html")
    storage.write_text(report_uri, render_report(report))
    elapsed = time.monotonic() - started
    frames = sum(int(r.get("n_frames") or 0) for r in all_rows)
    summary = {
        "videos": len({(r["speaker"], r["video_id"]) for r in rows}),
        "faces": len(rows),  # one row per face a video shows (one for a failed or faceless video)
        "ok": sum(r["status"] == RowStatus.OK for r in rows),
        "no_score": sum(r["status"] == RowStatus.NO_SCORE for r in rows),
        "failed": sum(r["status"] == RowStatus.FAILED for r in rows),
        "flagged": sum(is_flagged(r, cfg.metrics) for r in rows),
        # Departures from the paired source (compare_with), each way; a video can count in both.
        "too_still": sum(Departure.TOO_STILL in row_directions(r) for r in rows),
        "too_jittery": sum(Departure.TOO_JITTERY in row_directions(r) for r in rows),
        "synthetic": sum(bool(r.get("synthetic")) for r in rows),
        "median_msi_lip": _median(rows, "msi_lip"),
        "median_msi_jaw": _median(rows, "msi_jaw"),
        "out_of_sync": sum("out of sync" in r["flags"] for r in rows),
        "median_lipsync_confidence": _median(rows, "lipsync_confidence"),
        "compare_videos": len(compare_rows),
        "compare_median_lipsync_confidence": _median(compare_rows, "lipsync_confidence"),
        "frames": frames,
        "seconds": round(elapsed, 2),
        "frames_per_second": round(frames / elapsed, 1) if elapsed > 0 else None,
        "report": report_uri,
        "tables": outputs,
        "problems": [
            f"{r['video_uri']}: {r['status']}: {r['reason']}" for r in all_rows if r["status"] != RowStatus.OK
        ],
        "config": to_dict(cfg),
    }
    storage.write_json(join(cfg.output_uri, "summary.json"), summary)
    logger.info(
        "audit done: %d videos (%d ok, %d no score, %d failed, %d flagged; against %s: %d too still, "
        "%d too jittery) in %.1f s; report at %s",
        summary["videos"], summary["ok"], summary["no_score"], summary["failed"], summary["flagged"],
        cfg.compare_label if cfg.compare_with else "no comparison", summary["too_still"],
        summary["too_jittery"], elapsed, report_uri,
    )  # fmt: skip
    return summary
