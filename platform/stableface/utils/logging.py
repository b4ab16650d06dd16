"""One logging set-up for command-line entry points, jobs and Ray workers."""

from __future__ import annotations

import logging
import os

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
NOISY_LOGGERS = ("botocore", "boto3", "urllib3", "s3transfer", "numba", "matplotlib", "PIL")


def configure_logging(level: str | int | None = None) -> None:
    """Configure root logging once; ``STABLEFACE_LOG_LEVEL`` overrides the default INFO."""
    level = level or os.environ.get("STABLEFACE_LOG_LEVEL", "INFO")
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=level, format=LOG_FORMAT)
    else:
        root.setLevel(level)
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
