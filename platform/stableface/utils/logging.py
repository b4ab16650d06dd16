"""One logging set-up for command-line entry points, jobs and Ray workers."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
NOISY_LOGGERS = ("botocore", "boto3", "urllib3", "s3transfer", "numba", "matplotlib", "PIL")
RAY_LOGGERS = ("ray.data", "ray.train", "ray.tune", "ray.serve")
# Ray Train's worker context logs every report ("Reporting training result N: TrainingReport(...)",
# the whole metrics dict) on a logger named by its file path, outside "ray.train".
RAY_FILE_LOGGERS = ("train/v2/_internal/execution/context.py",)
VERBOSE_ENV = "STABLEFACE_VERBOSE"
# Ray Data configures its loggers itself when it is imported (and again in every worker), over
# any level set before; the config file it reads from this variable is the way to quieten it.
RAY_DATA_LOGGING_CONFIG_ENV = "RAY_DATA_LOGGING_CONFIG"
QUIET_RAY_DATA_CONFIG = Path(__file__).with_name("ray_data_logging.yaml")
STDERR_FD = 2


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
    for name in (*RAY_LOGGERS, *_ray_file_logger_names()):
        logging.getLogger(name).setLevel(ray_log_level())
    if ray_log_level() > logging.INFO:  # a user's own Ray Data logging config is kept
        os.environ.setdefault(RAY_DATA_LOGGING_CONFIG_ENV, str(QUIET_RAY_DATA_CONFIG))


def _ray_file_logger_names() -> list[str]:
    """The names of :data:`RAY_FILE_LOGGERS` in the installed Ray (found without importing it)."""
    spec = importlib.util.find_spec("ray")
    if spec is None or spec.origin is None:
        return []
    return [str(Path(spec.origin).parent / relative) for relative in RAY_FILE_LOGGERS]


def ray_log_level() -> int:
    """Ray's own loggers (Data's progress tables, Train's and Serve's INFO) stay at WARNING unless
    ``--verbose`` set ``STABLEFACE_VERBOSE``."""
    return logging.INFO if os.environ.get(VERBOSE_ENV, "") not in ("", "0") else logging.WARNING


# What MediaPipe's C++ graph (absl logging, TFLite) prints on its first frame, once per graph: absl
# logs before InitializeLog() go straight to fd 2 and read no environment variable, so they are
# filtered at the file descriptor. Errors (E lines) are kept.
NATIVE_NOISE = re.compile(
    r"^(INFO: Created TensorFlow Lite|WARNING: All log messages before absl::InitializeLog|[IW]\d{4} [\d:.]+ +\d+ \S+\.cc:\d+\])"
)
_native_stderr_lock = threading.Lock()


@contextlib.contextmanager
def native_noise_filtered() -> Iterator[None]:
    """Run a block whose native code writes to fd 2, keeping every line but :data:`NATIVE_NOISE`."""
    with _native_stderr_lock, tempfile.TemporaryFile() as captured:
        sys.stderr.flush()
        saved = os.dup(STDERR_FD)
        os.dup2(captured.fileno(), STDERR_FD)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, STDERR_FD)
            os.close(saved)
            captured.seek(0)
            kept = [
                line
                for line in captured.read().decode(errors="replace").splitlines(True)
                if not NATIVE_NOISE.match(line)
            ]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()
