"""Ray job: raw talking-head videos -> per-speaker datasets.

python jobs/preprocess.py catalog=../shared/data/grid dataset_uri=s3://bucket/datasets/grid
ray job submit --working-dir . -- python jobs/preprocess.py catalog=s3://bucket/raw dataset_uri=s3://bucket/ds
"""

from __future__ import annotations

import sys

from stableface.cli import main

if __name__ == "__main__":
    # The CLI's composition, one-line errors (exit 2) and --debug/--verbose, as `stableface preprocess`.
    raise SystemExit(main(["preprocess", *sys.argv[1:]]))
