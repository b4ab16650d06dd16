"""The dataset manifest: one row per catalog video across every run, plus per-speaker summaries."""

from __future__ import annotations

import io
import logging
from typing import Any

import pandas as pd

from stableface.data.layout import DatasetLayout
from stableface.io.storage import Storage
from stableface.status import RowStatus
from stableface.utils.serialise import to_dict

logger = logging.getLogger(__name__)

VIDEO_COLUMNS = (
    "speaker", "video_id", "video_uri", "status", "reason", "n_frames", "frames_without_face",
    "face_segments", "frames_bridged", "frames_lost", "frames_lost_reason", "face",
    "face_box", "faces_tracked", "fps", "width", "height", "duration_s", "seconds", "extract_node", "encode_node",
)  # fmt: skip


def read_speaker_manifest(storage: Storage, layout: DatasetLayout, speaker: str) -> dict[str, Any] | None:
    uri = layout.speaker_manifest(speaker)
    return storage.read_json(uri) if storage.exists(uri) else None


def finished_speakers(storage: Storage, layout: DatasetLayout, speakers: list[str]) -> set[str]:
    """Speakers whose manifest exists with status ok (failed speakers are retried on re-runs)."""
    done = set()
    for speaker in speakers:
        manifest = read_speaker_manifest(storage, layout, speaker)
        if manifest is not None and manifest.get("status") == RowStatus.OK:
            done.add(speaker)
    return done


def write_dataset_manifest(
    storage: Storage, layout: DatasetLayout, speakers: list[str], cfg: Any,
    rejected: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Merge the speakers' manifests into ``manifest.json`` and ``manifest.csv`` at the dataset root.

    ``rejected`` are failed rows of catalog entries that never reached a speaker (an invalid id).
    """
    videos: list[dict[str, Any]] = list(rejected or [])
    speaker_summaries: dict[str, Any] = {}
    for speaker in speakers:
        manifest = read_speaker_manifest(storage, layout, speaker)
        if manifest is None:
            speaker_summaries[speaker] = {"status": RowStatus.FAILED, "reason": "speaker was not processed"}
            continue
        videos.extend(manifest.get("videos", []))
        speaker_summaries[speaker] = {k: v for k, v in manifest.items() if k != "videos"}
    ok = [v for v in videos if v.get("status") == RowStatus.OK]
    manifest = {
        "dataset_uri": layout.root,
        "config": to_dict(cfg),
        "face_model": layout.face_model if storage.exists(layout.face_model) else None,
        "speakers": speaker_summaries,
        "counts": {
            "videos": len(videos),
            "ok": len(ok),
            "failed": len(videos) - len(ok),
            "frames": int(sum(int(v.get("n_frames") or 0) for v in ok)),
        },
        "videos": videos,
    }
    storage.write_json(layout.manifest_json, manifest)
    table = pd.DataFrame(videos, columns=[c for c in VIDEO_COLUMNS if any(c in v for v in videos)] or None)
    buffer = io.StringIO()
    table.to_csv(buffer, index=False)
    storage.write_text(layout.manifest_csv, buffer.getvalue())
    for row in videos:
        if row.get("status") != RowStatus.OK:
            logger.warning("failed: %s/%s: %s", row.get("speaker"), row.get("video_id"), row.get("reason"))
    return manifest
