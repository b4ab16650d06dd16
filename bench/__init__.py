"""Benchmarks (``make bench``): speed and memory figures, kept out of the timed-test path.

Each ``bench/bench_<name>.py`` defines ``run(quick: bool) -> dict`` returning named figures.
``python -m bench [name ...] [--quick]`` runs them, prints a table and writes
``outputs/bench/<name>.json``.
"""
