"""``stableface`` command line: ``stableface <job> [key=value ...]`` runs a job on Ray.

Each job's config is composed by Hydra from the YAML files in ``stableface.conf`` over the typed
schemas, so every ``key=value`` override is checked against the schema before anything runs.
``stableface show <job> [key=value ...]`` prints the composed config instead of running it.
``stableface verify VIDEO`` prints one video's provenance: its invisible watermark and payload, its
C2PA content credentials and its mp4 tags.

A user's mistake (an unknown, mistyped or missing setting, an unusable catalog) ends the command
with one line naming the input and the problem and exit status 2; ``--debug`` or
``STABLEFACE_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from stableface.config import JOB_CONFIGS, compose, show
from stableface.errors import InputError, StorageUnavailable
from stableface.utils.logging import VERBOSE_ENV, configure_logging

logger = logging.getLogger("stableface")

DEBUG_ENV = "STABLEFACE_DEBUG"
EXIT_USAGE = 2  # argparse's status for a bad command line; a bad setting or input is the same kind
EXIT_INTERRUPTED = 130  # the shell's status for a command ended by SIGINT
EXIT_STORE_UNAVAILABLE = 3  # not the input's fault: rerun the same command when the store is back

# job name -> module with ``run(cfg)``; modules import Ray, so they load only when chosen.
JOB_RUNNERS: dict[str, str] = {
    "preprocess": "stableface.ray_jobs.preprocess",
    "audit": "stableface.ray_jobs.audit",
    "train": "stableface.ray_jobs.train",
    "pretrain": "stableface.ray_jobs.pretrain",
    "dub": "stableface.ray_jobs.dub",
    "demo": "stableface.demo",
    "train-sync": "stableface.training.train_sync",
    # The Serve application lives in the repository's serve/ package, not in the installed library.
    "serve": "serve.local",
}
SERVE_PACKAGE = "serve"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stableface",
        description="StableFace platform: preprocess, train, dub, audit and serve talking-face models.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help=f"show tracebacks (or set {DEBUG_ENV}=1)")
    common.add_argument("--verbose", action="store_true", help="Ray's own progress and INFO logs too")
    sub = parser.add_subparsers(dest="command", required=True)
    for job_name in JOB_RUNNERS:
        job = sub.add_parser(
            job_name, parents=[common], help=f"run the {job_name} job", description=f"Run the {job_name} job."
        )
        job.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. dataset_uri=s3://bucket/ds")
    show_job = sub.add_parser("show", parents=[common], help="print a job's composed config")
    show_job.add_argument("job", choices=sorted(JOB_CONFIGS))
    show_job.add_argument("overrides", nargs="*")
    verify = sub.add_parser(
        "verify", parents=[common], help="print a video's watermark, content credentials and tags",
        description="Look for the invisible watermark (and its payload), C2PA content credentials and "
        "the dubber's mp4 tags in one video (a local path or s3://).",
    )  # fmt: skip
    verify.add_argument("video")
    verify.add_argument("--key", default=None, help="the watermark key the dubs were made with")
    verify.add_argument("--json", action="store_true", help="print the audit's provenance columns as JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.verbose:
        os.environ[VERBOSE_ENV] = "1"  # inherited by the local Ray's workers
    configure_logging()
    debug = args.debug or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    try:
        return _run(args)
    except InputError as error:
        if debug:
            raise
        print(f"stableface {args.command}: error: {error}", file=sys.stderr)  # noqa: T201
        return EXIT_USAGE
    except StorageUnavailable as outage:
        if debug:
            raise
        logger.error(
            "stableface %s stopped: %s. Finished work is kept; rerun the same command when the store "
            "is reachable.", args.command, outage,
        )  # fmt: skip
        return EXIT_STORE_UNAVAILABLE
    except KeyboardInterrupt:
        if debug:
            raise
        logger.warning("%s: interrupted", args.command)
        return EXIT_INTERRUPTED


def _run(args: argparse.Namespace) -> int:
    if args.command == "show":
        sys.stdout.write(show(args.job, args.overrides))
        return 0
    if args.command == "verify":
        return _verify(args)
    cfg = compose(args.command, args.overrides)
    try:
        result = _runner(args.command).run(cfg)
    except Exception as error:
        # A bad input found inside a Ray task arrives wrapped in a RayTaskError (itself an
        # instance of the cause's class, with the remote traceback in its message).
        cause = getattr(error, "cause", None)
        if isinstance(cause, InputError):
            raise cause from error
        raise
    if result is not None:
        logger.info("%s finished: %s", args.command, result)
    return 0


def _verify(args: argparse.Namespace) -> int:
    import json

    from stableface.io.storage import Storage
    from stableface.provenance.config import WatermarkConfig
    from stableface.provenance.verify import inspect_video

    config = WatermarkConfig() if args.key is None else WatermarkConfig(key=args.key)
    with Storage().local_copy(args.video) as path:
        finding = inspect_video(path, config)
    if args.json:
        sys.stdout.write(json.dumps({"video": args.video, **finding.to_row()}, indent=2) + "\n")
    else:
        sys.stdout.write(f"{args.video}\n{finding.describe()}\n")
    return 0


def _runner(command: str) -> ModuleType:
    module = JOB_RUNNERS[command]
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        if error.name != SERVE_PACKAGE:
            raise
    # The Serve application is the repository's serve/ package, next to platform/ in a source
    # checkout (the editable install), importable only from the repository root. Put the root on
    # the path here and for the Ray workers this process starts, so it runs from any directory.
    root = Path(__file__).resolve().parents[2]
    if not (root / SERVE_PACKAGE / "__init__.py").is_file():
        raise InputError(
            f"stableface {command}",
            f"the serve/ package is not next to {root / 'platform'}; run it from a source checkout",
        )
    sys.path.insert(0, str(root))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, (str(root), os.environ.get("PYTHONPATH"))))
    return importlib.import_module(module)


if __name__ == "__main__":
    raise SystemExit(main())
