"""Ray job: bulk dubbing of a catalog (job_id, speaker or model_uri, video_uri, audio_uri[, output_uri]).

python jobs/dub.py catalog=dubbing.csv models_uri=outputs/models output_uri=outputs/dubs
ray job submit --working-dir . -- python jobs/dub.py catalog=s3://bucket/dubbing/course-101.csv \
    models_uri=s3://bucket/models output_uri=s3://bucket/dubs/course-101 gpus_per_actor=1
"""

from __future__ import annotations

import sys

from stableface.cli import main

if __name__ == "__main__":
    # The CLI's composition, one-line errors (exit 2) and --debug/--verbose, as `stableface dub`.
    raise SystemExit(main(["dub", *sys.argv[1:]]))
