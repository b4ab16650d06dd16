"""The top-level config of each job. Sub-configs live beside the code they configure."""

from __future__ import annotations

from dataclasses import dataclass, field

from stableface.audio.features import AudioFeatureConfig
from stableface.face.config import FaceConfig
from stableface.io.storage import StorageConfig
from stableface.metrics.config import MetricsConfig


@dataclass
class RayConfig:
    """How a job reaches Ray: embedded local Ray by default, a cluster through ``address``."""

    address: str | None = None  # None: $RAY_ADDRESS if set (ray job submit), else start a local Ray
    num_cpus: int | None = None  # local Ray only; None = all cores
    num_gpus: int | None = None  # local Ray only
    include_dashboard: bool = False
    namespace: str = "stableface"


@dataclass
class PreprocessJobConfig:
    """``stableface preprocess``: raw videos -> per-speaker datasets."""

    catalog: str = "???"  # a folder, an s3:// prefix, or a CSV/JSONL/Parquet of (video_uri, speaker)
    dataset_uri: str = "outputs/dataset"
    storage: StorageConfig = field(default_factory=StorageConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    speaker_from: str = "folder"  # without a speaker column: "folder" (parent folder) or "file" (file stem)
    face: FaceConfig = field(default_factory=FaceConfig)
    audio: AudioFeatureConfig = field(default_factory=AudioFeatureConfig)
    speakers: list[str] = field(default_factory=list)  # only these speakers; empty = every speaker
    max_videos_per_speaker: int | None = None  # None = all of them
    max_frames_per_video: int | None = None  # None = whole videos
    overwrite: bool = False  # redo finished speakers and videos, refit the expression basis
    # The crops are the renderer's training targets: CRF 16 is visually lossless (mean error < 2
    # levels), and x264's ultrafast preset encodes a 256 px crop in ~0.6 ms instead of ~2 ms for
    # 'veryfast', at ~4x the size (still ~60x smaller than raw frames).
    crop_crf: int = 16
    crop_preset: str = "ultrafast"
    concurrency: int | None = None  # video actors; None = one per CPU of the cluster


@dataclass
class AuditJobConfig:
    """``stableface audit``: a catalog of videos -> per-video MSI table + HTML report."""

    catalog: str = "???"  # a folder, an s3:// prefix, or a CSV/JSONL/Parquet table with a video column
    output_uri: str = "outputs/audit"  # audit.parquet/.csv, report.html, slices/ go here
    storage: StorageConfig = field(default_factory=StorageConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    compare_with: str | None = None  # a second catalog (e.g. the dubs), paired by video id
    label: str = "catalog"  # how the report names each catalog
    compare_label: str = "comparison"
    title: str = "Motion stability audit"
    concurrency: int | None = None  # scoring actors; None = one per CPU of the cluster
    cpus_per_actor: float = 1.0
    save_slices: bool = True  # write each vertical-slice PNG under <output_uri>/slices/
    report_max_slices: int = 500  # slice images embedded in the report (flagged ones first)


JOB_CONFIGS: dict[str, type] = {
    "preprocess": PreprocessJobConfig,
    "audit": AuditJobConfig,
}
