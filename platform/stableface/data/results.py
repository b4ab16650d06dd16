"""Results tables of batch jobs: one row per input, written as Parquet and CSV to a local path or s3://.

List-valued columns (e.g. per-landmark scores) stay lists in Parquet and become JSON text in CSV.
Both files are written atomically through :class:`~stableface.io.storage.Storage`.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from typing import Any

import pandas as pd

from stableface.io.storage import Storage, join
from stableface.utils.serialise import plain


def results_frame(rows: Sequence[dict[str, Any]], first_columns: Sequence[str] = ()) -> pd.DataFrame:
    """A DataFrame of ``rows`` with ``first_columns`` (those present) leading, others in first-seen order."""
    columns: list[str] = [c for c in first_columns if any(c in row for row in rows)]
    for row in rows:
        columns.extend(key for key in row if key not in columns)
    frame = pd.DataFrame([{key: plain(row.get(key)) for key in columns} for row in rows], columns=columns)
    return frame


def _csv_frame(frame: pd.DataFrame) -> pd.DataFrame:
    flat = frame.copy()
    for column in flat.columns:
        if flat[column].map(lambda v: isinstance(v, (list, tuple, dict))).any():
            flat[column] = flat[column].map(
                lambda v: json.dumps(v) if isinstance(v, (list, tuple, dict)) else v
            )
    return flat


def write_results(
    storage: Storage,
    output_uri: str,
    name: str,
    rows: Sequence[dict[str, Any]],
    first_columns: Sequence[str] = (),
) -> dict[str, str]:
    """Write ``<output_uri>/<name>.parquet`` and ``<name>.csv``; returns their URIs."""
    frame = results_frame(rows, first_columns)
    parquet_uri, csv_uri = join(output_uri, f"{name}.parquet"), join(output_uri, f"{name}.csv")
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    storage.write_bytes(parquet_uri, buffer.getvalue())
    storage.write_text(csv_uri, _csv_frame(frame).to_csv(index=False))
    return {"parquet": parquet_uri, "csv": csv_uri}
