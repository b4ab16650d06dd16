"""``stableface`` command line: ``stableface <job> [key=value ...]`` runs a job on Ray.

Each job's config is composed by Hydra from the YAML files in ``stableface.conf`` over the typed
schemas, so every ``key=value`` override is checked against the schema before anything runs.
``stableface show <job> [key=value ...]`` prints the composed config instead of running it.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from stableface.config import JOB_CONFIGS, compose, to_yaml
from stableface.errors import StorageUnavailable
from stableface.utils.logging import configure_logging

logger = logging.getLogger("stableface")

EXIT_STORE_UNAVAILABLE = 3  # not the input's fault: rerun the same command when the store is back

# job name -> module with ``run(cfg)``; modules import Ray, so they load only when chosen.
JOB_RUNNERS: dict[str, str] = {
    "preprocess": "stableface.ray_jobs.preprocess",
    "audit": "stableface.ray_jobs.audit",
    "train": "stableface.ray_jobs.train",
    "dub": "stableface.ray_jobs.dub",
    "demo": "stableface.demo",
    # The Serve application lives in the repository's serve/ package, not in the installed library.
    "serve": "serve.local",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stableface",
        description="StableFace platform: preprocess, train, dub, audit and serve talking-face models.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for job_name in JOB_RUNNERS:
        job = sub.add_parser(job_name, help=f"run the {job_name} job", description=f"Run the {job_name} job.")
        job.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. dataset_uri=s3://bucket/ds")
    show = sub.add_parser("show", help="print a job's composed config")
    show.add_argument("job", choices=sorted(JOB_CONFIGS))
    show.add_argument("overrides", nargs="*")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging()
    if args.command == "show":
        sys.stdout.write(to_yaml(compose(args.job, args.overrides)))
        return 0
    cfg = compose(args.command, args.overrides)
    try:
        runner = importlib.import_module(JOB_RUNNERS[args.command])
    except ModuleNotFoundError as error:
        if error.name != "serve":
            raise
        logger.error(
            "stableface serve: the repository's serve/ package is not importable here; from the repository "
            "root run `python -m stableface.cli serve ...` (or set PYTHONPATH=.), or `serve run serve/config.yaml`"
        )
        return 2
    try:
        result = runner.run(cfg)
    except StorageUnavailable as outage:
        logger.error(
            "stableface %s stopped: %s. Finished work is kept; rerun the same command when the store "
            "is reachable.", args.command, outage,
        )  # fmt: skip
        return EXIT_STORE_UNAVAILABLE
    if result is not None:
        logger.info("%s finished: %s", args.command, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
