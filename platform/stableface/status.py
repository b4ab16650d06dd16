"""The status of one result row of a batch job (preprocess, dub, audit, pretrain's speaker rows).

A :class:`~enum.StrEnum`, so a row written to JSON, CSV or Parquet holds the plain value
(``"ok"``) and a row read back from a manifest compares equal to the member.
"""

from __future__ import annotations

import enum


class RowStatus(enum.StrEnum):
    OK = "ok"  # the input was processed; the row carries its results
    NO_SCORE = "no_score"  # readable, but there is nothing to measure (too few frames or faces); see reason
    FAILED = "failed"  # the input cannot be used; the row's reason names it and the problem
