"""Job: train the lip-sync expert on a preprocessed dataset and evaluate it on held-out clips.

python jobs/train_sync.py dataset_uri=/work/cache/all_ds output_uri=outputs/lipsync
python jobs/train_sync.py dataset_uri=s3://bucket/datasets/all output_uri=s3://bucket/lipsync schedule.max_minutes=30
"""

from __future__ import annotations

import sys

from stableface.cli import main

if __name__ == "__main__":
    # The CLI's composition, one-line errors (exit 2) and --debug/--verbose, as `stableface train-sync`.
    raise SystemExit(main(["train-sync", *sys.argv[1:]]))
