"""Catalogs: which videos (and audio, outputs) a job works on.

A catalog is one of
- a folder or ``s3://`` prefix: every video file under it; the speaker is the parent folder name;
- a table (``.csv``, ``.jsonl``/``.json``, ``.parquet``) with one row per item. Relative paths in a
  table are resolved against the table's own location.

Identifiers (speaker, video and job ids) become path components of outputs, so they are checked:
letters, digits, ``._-`` only, never ``.``/``..``.
"""

from __future__ import annotations

import io
import json
import re
from collections import Counter
from pathlib import PurePosixPath
from typing import Any

from stableface.errors import InputError, InvalidURI
from stableface.io.storage import Storage, is_s3, join

VIDEO_SUFFIXES = (".mp4", ".mpg", ".mpeg", ".mov", ".mkv", ".webm", ".avi", ".m4v")
TABLE_SUFFIXES = (".csv", ".jsonl", ".json", ".parquet")
VIDEO_URI_COLUMNS = ("video_uri", "video", "uri", "path")
_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def validate_id(value: str, what: str = "id") -> str:
    """Return ``value`` if it is a safe single path component, else raise :class:`InputError`."""
    text = str(value)
    if not _ID_PATTERN.match(text) or text in (".", "..") or ".." in text:
        raise InputError(
            text, f"invalid {what}: use 1-128 letters, digits, '.', '_' or '-' (no '/', no '..')"
        )
    return text


def sanitize_id(value: str) -> str:
    """Turn a file stem into a safe id (used for ids derived from file names, never for user ids)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", str(value)).strip("._-") or "item"
    return cleaned.replace("..", "_")[:128]


def is_table(uri: str) -> bool:
    return str(uri).lower().endswith(TABLE_SUFFIXES)


def _parent_name(uri: str) -> str:
    return PurePosixPath(str(uri).replace("s3://", "", 1)).parent.name or "default"


def resolve(uri: str, base_dir: str) -> str:
    """``uri`` as given when absolute or s3://, else relative to ``base_dir``."""
    text = str(uri).strip()
    if not text:
        return text
    if "://" in text or text.startswith("/"):
        return text
    return join(base_dir, text) if is_s3(base_dir) else str(PurePosixPath(base_dir) / text)


def read_table(uri: str, storage: Storage) -> list[dict[str, Any]]:
    """Rows of a CSV / JSONL / JSON (list of objects) / Parquet table as dicts."""
    import pandas as pd

    raw = storage.read_bytes(uri)
    lowered = str(uri).lower()
    try:
        if lowered.endswith(".csv"):
            frame = pd.read_csv(io.BytesIO(raw), dtype=str, keep_default_na=False)
        elif lowered.endswith(".jsonl"):
            frame = pd.DataFrame(
                [json.loads(line) for line in raw.decode("utf-8").splitlines() if line.strip()]
            )
        elif lowered.endswith(".json"):
            frame = pd.DataFrame(json.loads(raw.decode("utf-8")))
        elif lowered.endswith(".parquet"):
            frame = pd.read_parquet(io.BytesIO(raw))
        else:
            raise InvalidURI(uri, f"not a catalog table (expected one of {', '.join(TABLE_SUFFIXES)})")
    except (ValueError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(uri, f"cannot parse catalog table: {error}") from error
    rows = frame.to_dict(orient="records")
    return [{str(k): ("" if v is None else v) for k, v in row.items()} for row in rows]


def table_base_dir(uri: str) -> str:
    text = str(uri)
    return text.rsplit("/", 1)[0] if "/" in text else "."


SPEAKER_FROM = ("folder", "file")


def _default_speaker(uri: str, speaker_from: str) -> str:
    if speaker_from == "file":
        return sanitize_id(PurePosixPath(str(uri)).stem)
    return _parent_name(uri)


def list_video_catalog(
    source: str, storage: Storage, speaker_from: str = "folder", record_bad_ids: bool = False
) -> list[dict[str, str]]:
    """``[{video_uri, speaker, video_id}, ...]`` from a folder/prefix or a table of videos.

    Without a ``speaker`` column the speaker is the video's parent folder name
    (``speaker_from="folder"``) or, for folders of one clip per person, the file stem
    (``speaker_from="file"``). Video ids are file stems, made unique within a speaker. Rows keep
    any extra table columns. An invalid speaker or video id raises :class:`InputError`, or with
    ``record_bad_ids`` puts the problem in the entry's ``reason`` (a batch job's failed row).
    """
    if speaker_from not in SPEAKER_FROM:
        raise InputError(speaker_from, f"speaker_from must be one of {', '.join(SPEAKER_FROM)}")
    if is_table(source):
        rows = read_table(source, storage)
        base = table_base_dir(source)
        entries = []
        for index, row in enumerate(rows):
            column = next((c for c in VIDEO_URI_COLUMNS if row.get(c)), None)
            if column is None:
                raise InputError(
                    source, f"row {index + 1} has no video column (one of {', '.join(VIDEO_URI_COLUMNS)})"
                )
            video_uri = resolve(str(row[column]), base)
            speaker = str(row.get("speaker") or _default_speaker(video_uri, speaker_from))
            entries.append(
                {**{k: str(v) for k, v in row.items()}, "video_uri": video_uri, "speaker": speaker}
            )
    else:
        uris = storage.list(source, suffixes=VIDEO_SUFFIXES)
        if not uris:
            raise InputError(source, f"no video files ({', '.join(VIDEO_SUFFIXES)}) found")
        entries = [{"video_uri": uri, "speaker": _default_speaker(uri, speaker_from)} for uri in uris]
    seen: Counter[tuple[str, str]] = Counter()
    for entry in entries:
        stem = sanitize_id(PurePosixPath(entry["video_uri"]).stem)
        try:
            entry["speaker"] = validate_id(entry["speaker"], "speaker id")
            key = (entry["speaker"], entry.get("video_id") or stem)
            seen[key] += 1
            video_id = key[1] if seen[key] == 1 else f"{key[1]}-{seen[key]}"
            entry["video_id"] = validate_id(video_id, "video id")
        except InputError as error:
            if not record_bad_ids:
                raise
            entry.setdefault("video_id", stem)
            entry["reason"] = f"{entry['video_uri']}: {error}"
    return entries
