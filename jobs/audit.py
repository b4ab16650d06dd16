"""Ray job: MSI audit of a catalog of videos -> results table + HTML report.

python jobs/audit.py catalog=../shared/data/grid/s1 output_uri=outputs/audit
python jobs/audit.py catalog=s3://bucket/sources compare_with=s3://bucket/dubs output_uri=s3://bucket/audits/run1
ray job submit --working-dir . -- python jobs/audit.py catalog=s3://bucket/videos output_uri=s3://bucket/audit
"""

from __future__ import annotations

import sys

from stableface.cli import main

if __name__ == "__main__":
    # The CLI's composition, one-line errors (exit 2) and --debug/--verbose, as `stableface audit`.
    raise SystemExit(main(["audit", *sys.argv[1:]]))
