"""Ray job: raw talking-head videos -> per-speaker datasets.

python jobs/preprocess.py catalog=../shared/data/grid dataset_uri=s3://bucket/datasets/grid
ray job submit --working-dir . -- python jobs/preprocess.py catalog=s3://bucket/raw dataset_uri=s3://bucket/ds
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig, OmegaConf

from stableface.config import register_configs
from stableface.ray_jobs.preprocess import run
from stableface.utils.logging import configure_logging


@hydra.main(version_base="1.3", config_path="pkg://stableface.conf", config_name="preprocess")
def main(cfg: DictConfig) -> None:
    configure_logging()
    run(OmegaConf.to_object(cfg))


if __name__ == "__main__":
    register_configs()
    main()
