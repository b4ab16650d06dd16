"""Ray job: bulk dubbing of a catalog (job_id, speaker or model_uri, video_uri, audio_uri[, output_uri]).

python jobs/dub.py catalog=dubbing.csv models_uri=outputs/models output_uri=outputs/dubs
ray job submit --working-dir . -- python jobs/dub.py catalog=s3://bucket/dubbing/course-101.csv \
    models_uri=s3://bucket/models output_uri=s3://bucket/dubs/course-101 gpus_per_actor=1
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig, OmegaConf

from stableface.config import register_configs
from stableface.ray_jobs.dub import run
from stableface.utils.logging import configure_logging


@hydra.main(version_base="1.3", config_path="pkg://stableface.conf", config_name="dub")
def main(cfg: DictConfig) -> None:
    configure_logging()
    run(OmegaConf.to_object(cfg))


if __name__ == "__main__":
    register_configs()
    main()
