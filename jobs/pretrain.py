"""Ray job: regenerate the package's pretrained stage 1 (the train job's stage 1 + publish).

python jobs/pretrain.py dataset_uri=/work/cache/all_ds
ray job submit --working-dir . -- python jobs/pretrain.py dataset_uri=s3://bucket/all_ds publish_dir=/tmp/pretrained
"""

from __future__ import annotations

import sys

from stableface.cli import main

if __name__ == "__main__":
    # The CLI's composition, one-line errors (exit 2) and --debug/--verbose, as `stableface pretrain`.
    raise SystemExit(main(["pretrain", *sys.argv[1:]]))
