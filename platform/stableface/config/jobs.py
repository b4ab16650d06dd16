"""The top-level config of each job. Sub-configs live beside the code they configure."""

from __future__ import annotations

from dataclasses import dataclass, field

from stableface.io.storage import StorageConfig


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

    catalog: str = "???"  # a folder, an s3:// prefix, or a CSV/JSONL of (video_uri, speaker)
    dataset_uri: str = "outputs/dataset"
    storage: StorageConfig = field(default_factory=StorageConfig)
    ray: RayConfig = field(default_factory=RayConfig)


JOB_CONFIGS: dict[str, type] = {
    "preprocess": PreprocessJobConfig,
}
