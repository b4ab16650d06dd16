"""configure_logging keeps Ray's own INFO chatter out of a job's log unless --verbose asks for it."""

from __future__ import annotations

import logging

import pytest
import ray.train.v2._internal.execution.context as train_context

from stableface.utils.logging import RAY_LOGGERS, VERBOSE_ENV, configure_logging


@pytest.fixture
def restore_levels():
    names = [*RAY_LOGGERS, train_context.logger.name]
    levels = {name: logging.getLogger(name).level for name in names}
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def test_ray_train_report_lines_are_quiet_by_default(restore_levels, monkeypatch):
    # Ray Train logs each report's whole metrics dict at INFO on a logger named by its file path.
    monkeypatch.delenv(VERBOSE_ENV, raising=False)
    configure_logging()
    assert not train_context.logger.isEnabledFor(logging.INFO)
    assert train_context.logger.isEnabledFor(logging.WARNING)
    assert not logging.getLogger("ray.train").isEnabledFor(logging.INFO)


def test_verbose_lets_ray_train_report_lines_through(restore_levels, monkeypatch):
    monkeypatch.setenv(VERBOSE_ENV, "1")
    configure_logging()
    assert train_context.logger.isEnabledFor(logging.INFO)
