"""The review page of a dub run: ``review.html`` next to the manifest, for people checking dubs.

Per catalog row: status and reason (failed rows first), the source and the dub in players side by
side (relative links, so the folder can be copied or served as it is), the vertical-slice pair and
a strip of mouth crops (pictures, for sources a browser cannot play such as GRID's MPEG-1), the
MSI of both and which way the dub departs from its source, the sync confidence where the row has
one, and the timings. Pictures are PNG files under ``<output_uri>/review/`` beside a record of the
row's review columns, so a re-run that finds a dub finished reuses its review too.
"""

from __future__ import annotations

import html
import os
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from stableface.face.face_tracks import Box
from stableface.face.landmarks import LandmarkBackend
from stableface.io.storage import Storage, join
from stableface.io.video import iter_frames, probe_video
from stableface.metrics.config import MetricsConfig
from stableface.metrics.departure import Departure, pair_departure, row_directions
from stableface.metrics.msi import CropBox, crop_box
from stableface.metrics.video import VideoScore, score_video
from stableface.report.html import STYLE, encode_png
from stableface.status import RowStatus

REVIEW_DIR = "review"  # under the run's output_uri
REVIEW_PAGE = "review.html"
SLICE_WIDTH_PX = 900  # a slice pair is widened towards this (one pixel per frame is too thin to read) ...
MAX_SLICE_PX_PER_FRAME = 8  # ... by at most this much per frame
MOUTH_FRAMES = 8  # mouth crops per strip, evenly spaced over the video
MOUTH_PX = 96  # each crop's side
# The MSI crop is 4 mouth widths wide (the whole lower face and more); the strip shows the middle
# half of it, 2 mouth widths: lips, chin and the tip of the nose.
MOUTH_ZOOM = 2.0
GAP_PX = 4  # white between the source's and the dub's rows
REVIEW_COLUMNS = (
    "source_msi_lip", "source_msi_jaw", "source_msi_status", "msi_lip_ratio", "msi_jaw_ratio",
    "departure_lip", "departure_jaw", "review_slices_uri", "review_mouths_uri",
)  # fmt: skip
BROWSER_VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".webm", ".ogv")  # what the dub writes is .mp4

REVIEW_STYLE = """
.card{border:1px solid #ddd;border-radius:6px;padding:.6em 1em;margin:1em 0}
.card.failed{background:#fdf3f2} .card.departs{border-color:#e0a0a0}
.pair{display:flex;gap:1em;flex-wrap:wrap} .pair figure{margin:0}
.pair video{width:360px;max-height:300px;background:#000}
figcaption{font-size:12px;color:#555} .pictures figure{margin:.4em 0}
.pictures img{image-rendering:pixelated;border:1px solid #999;max-width:100%;display:block}
"""


@dataclass(frozen=True)
class ReviewPictures:
    """What a row's review shows besides the manifest: the source's scores and two PNGs."""

    source: VideoScore
    slices_png: bytes | None  # (2 x slice height + gap, frames x 3 px): source above, dub below
    mouths_png: bytes | None  # (2 x MOUTH_PX + gap, MOUTH_FRAMES x MOUTH_PX): source above, dub below


def _stack(top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    """Two RGB images (H, W, 3) one above the other, padded white to the wider one."""
    width = max(top.shape[1], bottom.shape[1])

    def padded(image: np.ndarray) -> np.ndarray:
        out = np.full((image.shape[0], width, 3), 255, np.uint8)
        out[:, : image.shape[1]] = image
        return out

    gap = np.full((GAP_PX, width, 3), 255, np.uint8)
    return np.concatenate([padded(top), gap, padded(bottom)], axis=0)


def slice_px_per_frame(n_frames: int) -> int:
    """Columns per frame in the slice picture: wide enough to read, never wider than needed."""
    return int(max(1, min(MAX_SLICE_PX_PER_FRAME, SLICE_WIDTH_PX // max(n_frames, 1))))


def mouth_box(msi_box: CropBox) -> CropBox:
    """The MSI crop narrowed by :data:`MOUTH_ZOOM` about its centre (the mouth)."""
    size = msi_box.size / MOUTH_ZOOM
    centre_x, centre_y = msi_box.left + msi_box.size / 2, msi_box.top + msi_box.size / 2
    return CropBox(left=centre_x - size / 2, top=centre_y - size / 2, size=size)


def mouth_strip(path: str, box: CropBox, n_frames: int) -> np.ndarray:
    """MOUTH_FRAMES crops of ``box`` evenly spaced over the video: (MOUTH_PX, MOUTH_FRAMES x MOUTH_PX, 3)."""
    import cv2

    wanted = set(np.linspace(0, max(n_frames - 1, 0), MOUTH_FRAMES).round().astype(int).tolist())
    crops = []
    for index, frame in enumerate(iter_frames(path)):
        if index not in wanted:
            continue
        height, width = frame.shape[:2]
        left, top = round(box.left), round(box.top)
        size = max(round(box.size), 1)
        # The crop box may reach past the frame edge: pad with black as the MSI crop does.
        canvas = np.zeros((size, size, 3), np.uint8)
        x0, y0, x1, y1 = max(left, 0), max(top, 0), min(left + size, width), min(top + size, height)
        if x1 > x0 and y1 > y0:
            canvas[y0 - top : y1 - top, x0 - left : x1 - left] = frame[y0:y1, x0:x1]
        crops.append(cv2.resize(canvas, (MOUTH_PX, MOUTH_PX), interpolation=cv2.INTER_AREA))
    if not crops:
        return np.zeros((MOUTH_PX, MOUTH_PX, 3), np.uint8)
    return np.concatenate(crops, axis=1)


def review_pictures(
    source_path: str,
    dub_path: str,
    metrics: MetricsConfig,
    backend: LandmarkBackend,
    source_name: str,
    face: Box | None = None,
) -> ReviewPictures:
    """Score the source (MSI, slice, landmarks) and draw the slice pair and mouth strips of both videos.

    The dub's slice and mouths are cut at the source's crop box: the dub keeps the source's framing,
    so the same pixels are compared. ``face``: the dubbed face's box, so that with several people on
    screen both videos are scored on that face (if ``backend`` tracks several).
    """
    sliced = replace(metrics, slice_image=True)
    source = score_video(
        source_path, sliced, backend=backend, keep_landmarks=True, name=source_name, face=face
    )
    dub = score_video(dub_path, sliced, backend=backend, face=face)
    slices = None
    if source.slice_image is not None and dub.slice_image is not None:
        pair = _stack(source.slice_image, dub.slice_image)  # (2 x height + gap, T, 3)
        slices = encode_png(np.repeat(pair, slice_px_per_frame(pair.shape[1]), axis=1))
    mouths = None
    if source.ibug68 is not None:
        box = mouth_box(crop_box(source.ibug68))
        strips = [mouth_strip(str(p), box, probe_video(p).n_frames) for p in (source_path, dub_path)]
        mouths = encode_png(_stack(*strips))
    source.ibug68, source.slice_image = None, None  # not needed past here
    return ReviewPictures(source=source, slices_png=slices, mouths_png=mouths)


def review_record_uri(output_uri: str, job_id: str) -> str:
    return join(output_uri, REVIEW_DIR, f"{job_id}.json")


def review_row(
    row: Mapping[str, Any],
    output_uri: str,
    storage: Storage,
    metrics: MetricsConfig,
    backend: LandmarkBackend,
    overwrite: bool = False,
) -> dict[str, Any]:
    """The review columns of a finished manifest row (:data:`REVIEW_COLUMNS`), pictures written.

    A row reviewed by an earlier run (its record exists) is read back, not drawn again.
    """
    record = review_record_uri(output_uri, str(row["job_id"]))
    if not overwrite and storage.exists(record):
        return storage.read_json(record)
    with (
        storage.local_copy(row["video_uri"]) as source_path,
        storage.local_copy(row["output_uri"]) as dub_path,
    ):
        face = Box(*row["face_box"]) if row.get("face_box") else None
        pictures = review_pictures(
            str(source_path), str(dub_path), metrics, backend, str(row["video_uri"]), face
        )
    source = pictures.source
    columns: dict[str, Any] = {
        "source_msi_lip": source.msi_lip,
        "source_msi_jaw": source.msi_jaw,
        "source_msi_status": RowStatus.OK
        if source.status == RowStatus.OK
        else f"{source.status}: {source.reason}",
    }
    departure = pair_departure(row, source.to_row(), metrics.departure_factor)
    if departure is not None:
        columns.update(departure.to_row())
    for name, png in (("slices", pictures.slices_png), ("mouths", pictures.mouths_png)):
        if png is not None:
            uri = join(output_uri, REVIEW_DIR, f"{row['job_id']}.{name}.png")
            storage.write_bytes(uri, png)
            columns[f"review_{name}_uri"] = uri
    storage.write_json(record, columns)
    return columns


def relative_link(target: str, page_uri: str) -> str:
    """``target`` as the page at ``page_uri`` links to it: relative where both are in one store."""
    page_dir = posixpath.dirname(page_uri) if "://" in page_uri else os.path.dirname(page_uri)
    if "://" in target or "://" in page_uri:
        scheme, _, rest = target.partition("://")
        page_scheme, _, page_rest = page_dir.partition("://")
        target_bucket, _, target_key = rest.partition("/")
        page_bucket, _, page_key = page_rest.partition("/")
        if scheme == page_scheme and target_bucket == page_bucket:
            return posixpath.relpath(target_key, page_key or ".")
        return target
    return os.path.relpath(target, page_dir)


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return html.escape(str(value))


DEPARTURE_TEXT = {Departure.TOO_STILL: "too still", Departure.TOO_JITTERY: "too jittery"}


def _departure_text(row: Mapping[str, Any]) -> str:
    parts = []
    for part, column in (("lips", "departure_lip"), ("jaw", "departure_jaw")):
        value = row.get(column)
        if value and Departure(value).flagged:
            parts.append(f"{part} {DEPARTURE_TEXT[Departure(value)]}")
    return ", ".join(parts) if parts else "within"


def _player(uri: str | None, page_uri: str, caption: str) -> str:
    """A player for containers browsers play; for others (GRID's MPEG-1 .mpg) a link, the pictures show it."""
    if not uri:
        return ""
    link = html.escape(relative_link(str(uri), page_uri))
    name = html.escape(posixpath.basename(str(uri)))
    suffix = posixpath.splitext(str(uri))[1].lower()
    if suffix not in BROWSER_VIDEO_SUFFIXES:
        return (
            f'<figure class="unplayable"><figcaption>{html.escape(caption)}: <a href="{link}">{name}</a> '
            f"(browsers do not play {html.escape(suffix or 'this file')}: see the pictures below)</figcaption></figure>"
        )
    return (
        f'<figure><video controls preload="metadata" src="{link}"></video>'
        f'<figcaption>{html.escape(caption)}: <a href="{link}">{name}</a></figcaption></figure>'
    )


def _figure(uri: str | None, page_uri: str, caption: str) -> str:
    if not uri:
        return ""
    link = html.escape(relative_link(str(uri), page_uri))
    return f'<figure><img src="{link}" alt="{html.escape(caption)}"><figcaption>{html.escape(caption)}</figcaption></figure>'


def _card(row: Mapping[str, Any], page_uri: str) -> str:
    status = str(row.get("status", ""))
    job = html.escape(str(row.get("job_id", "")))
    departs = bool(row_directions(row))
    css = "card failed" if status != RowStatus.OK else ("card departs" if departs else "card")
    speaker = str(row.get("speaker") or "").strip()
    head = (
        f'<h3 id="{job}">{job} <span class="pill {html.escape(status)}">{html.escape(status)}</span>'
        + (f" <small>speaker {html.escape(speaker)}</small>" if speaker else "")
        + "</h3>"
    )
    if status != RowStatus.OK:
        return f'<div class="{css}">{head}<p>{_fmt(row.get("reason"))}</p></div>'
    sync = [
        f"{key} {_fmt(row[key], 2)}"
        for key in sorted(row)
        if key.startswith("sync_") and row[key] is not None
    ]
    facts = [
        ("lip MSI dub / source", f"{_fmt(row.get('msi_lip'))} / {_fmt(row.get('source_msi_lip'))}"),
        ("jaw MSI dub / source", f"{_fmt(row.get('msi_jaw'))} / {_fmt(row.get('source_msi_jaw'))}"),
        ("ratio lip / jaw", f"{_fmt(row.get('msi_lip_ratio'), 2)} / {_fmt(row.get('msi_jaw_ratio'), 2)}"),
        ("departure", html.escape(_departure_text(row)) if row.get("departure_lip") else "-"),
        ("sync", html.escape(", ".join(sync)) if sync else "no lip-sync expert weights"),
        ("frames dubbed / passed through", f"{_fmt(row.get('frames_dubbed'))} / {_fmt(row.get('frames_passed_through'))}"),
        ("output", f"{_fmt(row.get('output_duration_s'), 2)} s, {_fmt(row.get('output_frames'))} frames"),
        ("time", f"finished by an earlier run ({_fmt(row.get('realtime_factor'), 2)}x real time then)"
         if row.get("resumed")
         else f"{_fmt(row.get('seconds'), 1)} s ({_fmt(row.get('realtime_factor'), 2)}x real time)"),
    ]  # fmt: skip
    if row.get("warning"):
        facts.append(("warning", _fmt(row.get("warning"))))
    if row.get("source_msi_status") not in (None, RowStatus.OK):
        facts.append(("source MSI", _fmt(row.get("source_msi_status"))))
    table = "<table>" + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in facts) + "</table>"
    players = _player(row.get("video_uri"), page_uri, "source") + _player(
        row.get("output_uri"), page_uri, "dub"
    )
    pictures = (
        '<div class="pictures">'
        + _figure(
            row.get("review_slices_uri"),
            page_uri,
            "vertical slices through the mouth, source above, dub below",
        )
        + _figure(row.get("review_mouths_uri"), page_uri, "mouth crops over time, source above, dub below")
        + "</div>"
    )
    return f'<div class="{css}">{head}<div class="pair">{players}</div>{table}{pictures}</div>'


def render_review(
    rows: Sequence[Mapping[str, Any]], page_uri: str, title: str, departure_factor: float
) -> str:
    """The whole page: a summary, failed rows with their reasons, then every finished row."""
    failed = [r for r in rows if r.get("status") != RowStatus.OK]
    ok = [r for r in rows if r.get("status") == RowStatus.OK]
    still = sum(Departure.TOO_STILL in row_directions(r) for r in ok)
    jittery = sum(Departure.TOO_JITTERY in row_directions(r) for r in ok)
    # Departing dubs first among the finished ones: they are the ones to look at.
    ordered = sorted(ok, key=lambda r: not row_directions(r))
    summary = (
        f"<p>{len(rows)} rows: {len(ok)} dubbed, {len(failed)} failed. Against their sources: {still} too "
        f"still (lip or jaw MSI &gt; {departure_factor:g}&times; the source's), {jittery} too jittery "
        f"(&lt; 1/{departure_factor:g} of it).</p>"
        '<p class="note">In each picture the source is above and the dub below. Vertical slices: the '
        "column through the mouth centre of every frame, time left to right (jitter shows as saw-teeth, "
        "lips that hardly move as flat bands). Mouth crops: evenly spaced frames.</p>"
    )
    sections = [f"<h1>{html.escape(title)}</h1>", summary]
    sections.append(f"<h2>Failed ({len(failed)})</h2>")
    sections += [_card(r, page_uri) for r in failed] or ["<p>None.</p>"]
    sections.append(f"<h2>Dubbed ({len(ok)})</h2>")
    sections += [_card(r, page_uri) for r in ordered] or ["<p>None.</p>"]
    body = "\n".join(sections)
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}{REVIEW_STYLE}</style></head><body>\n{body}\n</body></html>\n"
    )


def write_review(
    storage: Storage, output_uri: str, rows: Sequence[Mapping[str, Any]], departure_factor: float
) -> str:
    """Write ``<output_uri>/review.html`` for a run's manifest rows; returns its URI."""
    page_uri = join(output_uri, REVIEW_PAGE)
    title = f"Dub review: {posixpath.basename(output_uri.rstrip('/')) or output_uri}"
    storage.write_text(page_uri, render_review(rows, page_uri, title, departure_factor))
    return page_uri
