"""Ray job: a preprocessed dataset -> speaker models, two-stage DDP training on Ray Train.

python jobs/train.py dataset_uri=outputs/dataset speaker=s1 model=cpu schedule=cpu
ray job submit --working-dir . -- python jobs/train.py dataset_uri=s3://bucket/ds output_uri=s3://bucket/models \
    model=paper schedule=paper scaling.num_workers=4 scaling.use_gpu=true
"""

from __future__ import annotations

import sys

from stableface.cli import main

if __name__ == "__main__":
    # The CLI's composition, one-line errors (exit 2) and --debug/--verbose, as `stableface train`.
    raise SystemExit(main(["train", *sys.argv[1:]]))
