"""Ray job: a preprocessed dataset -> speaker models, two-stage DDP training on Ray Train.

python jobs/train.py dataset_uri=outputs/dataset speaker=s1 model=cpu schedule=cpu
ray job submit --working-dir . -- python jobs/train.py dataset_uri=s3://bucket/ds output_uri=s3://bucket/models \
    model=paper schedule=paper scaling.num_workers=4 scaling.use_gpu=true
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig, OmegaConf

from stableface.config import register_configs
from stableface.ray_jobs.train import run
from stableface.utils.logging import configure_logging


@hydra.main(version_base="1.3", config_path="pkg://stableface.conf", config_name="train")
def main(cfg: DictConfig) -> None:
    configure_logging()
    run(OmegaConf.to_object(cfg))


if __name__ == "__main__":
    register_configs()
    main()
