"""Ray job: MSI audit of a catalog of videos -> results table + HTML report.

python jobs/audit.py catalog=../shared/data/grid/s1 output_uri=outputs/audit
python jobs/audit.py catalog=s3://bucket/sources compare_with=s3://bucket/dubs output_uri=s3://bucket/audits/run1
ray job submit --working-dir . -- python jobs/audit.py catalog=s3://bucket/videos output_uri=s3://bucket/audit
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig, OmegaConf

from stableface.config import register_configs
from stableface.ray_jobs.audit import run
from stableface.utils.logging import configure_logging


@hydra.main(version_base="1.3", config_path="pkg://stableface.conf", config_name="audit")
def main(cfg: DictConfig) -> None:
    configure_logging()
    run(OmegaConf.to_object(cfg))


if __name__ == "__main__":
    register_configs()
    main()
