"""Run benchmarks: ``python -m bench [name ...] [--quick]`` (all when no name is given)."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import platform
import sys
import time
from pathlib import Path

from stableface.utils.logging import configure_logging

logger = logging.getLogger("bench")
BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = Path("outputs") / "bench"


def available() -> list[str]:
    return sorted(p.stem.removeprefix("bench_") for p in BENCH_DIR.glob("bench_*.py"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", help=f"benchmarks to run (default all): {', '.join(available())}")
    parser.add_argument("--quick", action="store_true", help="smaller inputs, for a smoke run")
    # Only `quality` takes these: which preset and variant to train and measure.
    parser.add_argument("--model", help="quality: the model preset (default cpu)")
    parser.add_argument("--label", help="quality: the variant's name (its output folder)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="quality: a train-job override of the variant (repeatable)")  # fmt: skip
    parser.add_argument("--steps", type=int, metavar="N",
                        help="quality: train the renderer exactly N steps (no time cap), so machine load "
                             "does not change a comparison")  # fmt: skip
    args = parser.parse_args(argv)
    configure_logging()
    names = args.names or available()
    unknown = sorted(set(names) - set(available()))
    if unknown:
        parser.error(f"unknown benchmarks: {', '.join(unknown)}")
    variant = {k: v for k, v in (("model", args.model), ("label", args.label)) if v}
    if args.overrides:
        variant["overrides"] = args.overrides
    if args.steps is not None:
        variant["steps"] = args.steps
    if variant and names != ["quality"]:
        parser.error("--model, --label, --set and --steps are options of the quality benchmark alone")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    for name in names:
        module = importlib.import_module(f"bench.bench_{name}")
        started = time.time()
        figures = module.run(quick=args.quick, **variant)
        record = {
            "benchmark": name,
            "quick": args.quick,
            "machine": {"cpus": __import__("os").cpu_count(), "platform": platform.platform()},
            "seconds": round(time.time() - started, 1),
            "figures": figures,
        }
        (RESULTS_DIR / f"{name}.json").write_text(json.dumps(record, indent=2, default=str))
        sys.stdout.write(f"\n== {name} ({record['seconds']} s)\n")
        for key, value in figures.items():
            sys.stdout.write(f"  {key:48s} {value}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
