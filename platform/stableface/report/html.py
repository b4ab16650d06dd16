"""A self-contained HTML audit report: tables, histograms and vertical-slice images inlined as PNG.

Plots are drawn with matplotlib's object API on the Agg canvas (no pyplot state, no display); every
image is a base64 ``data:`` URI so the report is a single file that can be mailed or put in a bucket.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stableface.metrics.departure import Departure, row_directions
from stableface.metrics.video import flag_reasons
from stableface.status import RowStatus

HIST_BINS = 30
FIGURE_SIZE = (6.0, 3.2)  # inches
FIGURE_DPI = 100

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em;color:#222;max-width:1400px}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;font-size:13px;margin:.5em 0}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:left;vertical-align:middle}
th{background:#f3f3f3} td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.flagged td{background:#fff1f0} tr.failed td{background:#f7f7f7;color:#666}
.slice{image-rendering:pixelated;height:96px;max-width:900px;border:1px solid #999}
.figs img{margin-right:1em} .note{color:#666;font-size:13px}
.pill{display:inline-block;padding:1px 8px;border-radius:8px;font-size:12px}
.ok{background:#e6f4ea} .no_score{background:#fff4d6} .failed{background:#fde2e1}
"""


@dataclass
class ReportData:
    """What the report shows; rows are audit result rows (dicts with the audit's columns)."""

    title: str
    rows: list[dict[str, Any]]
    flag_lip_below: float
    flag_jaw_below: float
    # Audio drift beyond this many frames flags a video (None: sync not flagged), when the
    # lip-sync confidence is at least flag_offset_min_confidence.
    flag_offset_frames: int | None = None
    flag_offset_min_confidence: float = 0.0
    slices: dict[str, bytes] = field(default_factory=dict)  # row key -> PNG bytes
    compare_rows: list[dict[str, Any]] | None = None  # the second catalog's rows
    labels: tuple[str, str] = ("catalog", "comparison")
    settings: dict[str, Any] = field(default_factory=dict)
    departure_factor: float | None = None  # the ratio bound of the rows' departure_* columns
    provenance_checked: bool = False  # rows carry the provenance columns (watermark, credentials)


def row_key(row: Mapping[str, Any]) -> str:
    key = f"{row.get('speaker', '')}/{row.get('video_id', '')}"
    return key if int(row.get("n_faces") or 1) == 1 else f"{key} face {row.get('face')}"


def video_label(row: Mapping[str, Any]) -> str:
    """The video id, with the face's number from the left when the video shows several."""
    video_id = str(row.get("video_id", ""))
    return video_id if int(row.get("n_faces") or 1) == 1 else f"{video_id} (face {row.get('face')})"


def pair_key(row: Mapping[str, Any]) -> tuple[Any, str]:
    """How a comparison pairs an audit row with its reference: video id and face (1 when unnumbered)."""
    return row.get("video_id"), str(row.get("face") or "1")


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def encode_png(image: np.ndarray) -> bytes:
    """RGB uint8 (H, W, 3) -> PNG bytes."""
    import cv2

    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(image[..., ::-1]))
    if not ok:
        raise ValueError(f"could not encode an image of shape {image.shape} as PNG")
    return encoded.tobytes()


def _figure():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=FIGURE_SIZE, dpi=FIGURE_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _figure_png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _finite(values: Sequence[Any]) -> np.ndarray:
    array = np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    return array[np.isfinite(array)]


def histogram_png(
    series: Mapping[str, Sequence[Any]], xlabel: str, threshold: float | None = None, title: str = ""
) -> bytes:
    """Overlaid histograms of one or more named value lists, with an optional threshold line."""
    figure = _figure()
    axes = figure.add_subplot()
    finite = {name: _finite(values) for name, values in series.items()}
    everything = np.concatenate([v for v in finite.values() if v.size] or [np.zeros(1)])
    low, high = float(everything.min()), float(everything.max())
    if threshold is not None:
        low, high = min(low, threshold), max(high, threshold)
    bins = np.linspace(low, high if high > low else low + 1.0, HIST_BINS + 1)
    for name, values in finite.items():
        axes.hist(values, bins=bins, alpha=0.6, label=f"{name} (n={values.size})")
    if threshold is not None:
        axes.axvline(threshold, color="crimson", linestyle="--", label=f"flag below {threshold:g}")
    axes.set_xlabel(xlabel)
    axes.set_ylabel("videos")
    axes.set_title(title)
    axes.legend(fontsize=8)
    return _figure_png(figure)


def scatter_png(x: Sequence[float], y: Sequence[float], xlabel: str, ylabel: str, title: str = "") -> bytes:
    """Paired values with the identity line (points below it scored lower in the second catalog)."""
    figure = _figure()
    axes = figure.add_subplot()
    xs, ys = np.asarray(x, float), np.asarray(y, float)
    axes.scatter(xs, ys, s=12, alpha=0.7)
    if xs.size:
        low, high = float(min(xs.min(), ys.min())), float(max(xs.max(), ys.max()))
        axes.plot([low, high], [low, high], color="grey", linewidth=1)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    return _figure_png(figure)


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return html.escape(str(value))


def _flags(row: Mapping[str, Any], data: ReportData) -> list[str]:
    return flag_reasons(
        dict(row), data.flag_lip_below, data.flag_jaw_below, data.flag_offset_frames,
        data.flag_offset_min_confidence,
    )  # fmt: skip


def _is_flagged(row: Mapping[str, Any], data: ReportData) -> bool:
    return bool(_flags(row, data))


def _img(png: bytes | None, css_class: str = "") -> str:
    if not png:
        return "-"
    return f'<img class="{css_class}" src="{png_data_uri(png)}" alt="">'


def _slice_cell(row: Mapping[str, Any], data: ReportData) -> str:
    return _img(data.slices.get(row_key(row)), "slice")


def _table(headers: Sequence[str], body: list[str]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _video_rows(rows: Sequence[Mapping[str, Any]], data: ReportData, with_slices: bool) -> list[str]:
    body = []
    for row in rows:
        flags = _flags(row, data)
        departed = bool(row_directions(row))
        css = "flagged" if flags or departed else ("failed" if row.get("status") != RowStatus.OK else "")
        status = str(row.get("status", ""))
        offset, offset_ms = row.get("lipsync_offset_frames"), row.get("lipsync_offset_ms")
        cells = [
            _fmt(row.get("speaker")),
            _fmt(video_label(row)),
            f'<span class="pill {html.escape(status)}">{html.escape(status)}</span>'
            + (f" flagged: {html.escape('; '.join(flags))}" if flags else "")
            + (f" {_departure_cell(row)}" if departed else ""),
            f'<td class="num">{_fmt(row.get("n_frames"))}',
            f'<td class="num">{_fmt(row.get("n_missing_face"))}',
            _fmt(row.get("bridging")),
            f'<td class="num">{_fmt(row.get("msi_lip"))}',
            f'<td class="num">{_fmt(row.get("msi_jaw"))}',
            f'<td class="num">{_fmt(row.get("slice_roughness"), 2)}',
            f'<td class="num">{_fmt(row.get("lipsync_confidence"))}',
            f'<td class="num">{_offset_text(offset, offset_ms)}',
        ]
        if with_slices:
            cells.append(_slice_cell(row, data))
        cells.append(_fmt(row.get("reason")))
        html_cells = "".join(c if c.startswith("<td") else f"<td>{c}" for c in cells)
        body.append(f'<tr class="{css}">{html_cells}</tr>')
    return body


VIDEO_HEADERS = (
    "speaker", "video", "status", "frames", "no face", "bridging", "lip MSI", "jaw MSI", "slice roughness",
    "sync confidence", "audio offset",
)  # fmt: skip


def _offset_text(frames: Any, milliseconds: Any) -> str:
    """'+8 fr (+320 ms)': positive = the sound comes late."""
    if frames is None:
        return "-"
    ms = f" ({float(milliseconds):+.0f} ms)" if milliseconds is not None else ""
    return f"{int(frames):+d} fr{ms}"


def _summary(rows: Sequence[Mapping[str, Any]], data: ReportData) -> str:
    ok = [r for r in rows if r.get("status") == RowStatus.OK]
    counts = {s: sum(1 for r in rows if r.get("status") == s) for s in RowStatus}
    lip, jaw = _finite([r.get("msi_lip") for r in ok]), _finite([r.get("msi_jaw") for r in ok])
    flagged = sum(1 for r in rows if _is_flagged(r, data))
    drifting = sum(1 for r in rows if any("out of sync" in f for f in _flags(r, data)))
    confidence = _finite([r.get("lipsync_confidence") for r in ok])
    sync_rule = (
        f", or audio off by more than {data.flag_offset_frames} frames"
        if data.flag_offset_frames is not None
        else ""
    )
    frames = sum(int(r.get("n_frames") or 0) for r in rows)
    bridged = sum(int(r.get("n_bridged_frames") or 0) for r in rows)
    skipped = sum(int(r.get("n_skipped_frames") or 0) for r in rows)

    def stat(values: np.ndarray) -> str:
        if not values.size:
            return "-"
        q25, q50, q75 = np.percentile(values, [25, 50, 75])
        return f"median {q50:.3f} (IQR {q25:.3f}-{q75:.3f}, range {values.min():.3f}-{values.max():.3f})"

    items = [
        ("videos", len(rows)),
        ("scored (ok)", counts[RowStatus.OK]),
        ("no score", counts[RowStatus.NO_SCORE]),
        ("failed", counts[RowStatus.FAILED]),
        (
            "flagged",
            f"{flagged} (lip MSI &lt; {data.flag_lip_below:g} or jaw MSI &lt; {data.flag_jaw_below:g}"
            f"{sync_rule})",
        ),
        ("audio out of sync", drifting),
        ("frames decoded", frames),
        ("frames without a face, bridged (short gaps inside face segments)", bridged),
        ("frames without a face, skipped (long gaps and ends, not scored)", skipped),
        ("lip MSI", stat(lip)),
        ("jaw MSI", stat(jaw)),
        ("lip-sync confidence", stat(confidence)),
    ]
    if data.compare_rows is not None and data.departure_factor is not None:
        items.append((f"departures from {html.escape(data.labels[1])}", _departure_counts(rows, data)))
    items += [(html.escape(str(k)), html.escape(str(v))) for k, v in data.settings.items()]
    body = [f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in items]
    return f"<table>{''.join(body)}</table>"


DEPARTURE_TEXT = {Departure.TOO_STILL: "too still", Departure.TOO_JITTERY: "too jittery"}


def _departure_counts(rows: Sequence[Mapping[str, Any]], data: ReportData) -> str:
    still = sum(Departure.TOO_STILL in row_directions(r) for r in rows)
    jittery = sum(Departure.TOO_JITTERY in row_directions(r) for r in rows)
    factor = data.departure_factor
    return (
        f"{still} too still (lip or jaw MSI &gt; {factor:g}&times; the paired video's), "
        f"{jittery} too jittery (&lt; 1/{factor:g} of it)"
    )


def _departure_cell(row: Mapping[str, Any]) -> str:
    parts = []
    for part, column in (("lips", "departure_lip"), ("jaw", "departure_jaw")):
        value = row.get(column)
        if value and Departure(value).flagged:
            parts.append(f"{part} {DEPARTURE_TEXT[Departure(value)]}")
    return html.escape(", ".join(parts)) if parts else "-"


def _departures_section(departed: list[dict[str, Any]], data: ReportData) -> list[str]:
    if data.compare_rows is None or data.departure_factor is None:
        return []
    second = html.escape(data.labels[1])
    return [
        f"<h2>Departures from {second} ({len(departed)})</h2>",
        f'<p class="note">Lip or jaw MSI more than {data.departure_factor:g}&times; that of the paired '
        f"{second} video (too still: far less motion than its real speech) or under 1/"
        f"{data.departure_factor:g} of it (too jittery).</p>",
        _table([*VIDEO_HEADERS, "vertical slice", "reason"], _video_rows(departed, data, True))
        if departed
        else "<p>None.</p>",
    ]


def _comparison(data: ReportData) -> str:
    assert data.compare_rows is not None
    first, second = data.labels
    by_id = {pair_key(r): r for r in data.compare_rows}
    pairs = [(a, by_id[pair_key(a)]) for a in data.rows if pair_key(a) in by_id]
    scored = [
        (a, b)
        for a, b in pairs
        if a.get("status") == RowStatus.OK
        and b.get("status") == RowStatus.OK
        and a.get("msi_lip") is not None
    ]
    parts = [
        f"<p>{len(pairs)} videos paired by video id ({len(data.rows)} in {html.escape(first)}, "
        f"{len(data.compare_rows)} in {html.escape(second)}); {len(scored)} scored in both.</p>"
    ]
    if data.departure_factor is not None:
        parts.append(
            f"<p>Departures from {html.escape(second)}: {_departure_counts(data.rows, data)}. The ratio is the "
            f"MSI in {html.escape(first)} over the MSI in {html.escape(second)}: higher means steadier, so a dub "
            "whose lips hardly move scores far above its source, a jittery one far below.</p>"
        )
    figures = []
    for metric, label in COMPARED:
        figures.append(
            _img(
                histogram_png(
                    {
                        first: [r.get(metric) for r in data.rows],
                        second: [r.get(metric) for r in data.compare_rows],
                    },
                    label,
                    title=f"{label}: {first} vs {second}",
                )
            )
        )
        both = [(a, b) for a, b in scored if a.get(metric) is not None and b.get(metric) is not None]
        if both:
            figures.append(
                _img(
                    scatter_png(
                        [a[metric] for a, _ in both],
                        [b[metric] for _, b in both],
                        f"{label} ({first})",
                        f"{label} ({second})",
                        title=f"{label} per video",
                    )
                )
            )
    parts.append(f'<div class="figs">{"".join(figures)}</div>')
    body = []
    for a, b in pairs:
        cells = [
            _fmt(a.get("speaker")),
            _fmt(video_label(a)),
            _fmt(a.get("status")),
            _fmt(b.get("status")),
        ]
        for metric, _ in COMPARED:
            va, vb = a.get(metric), b.get(metric)
            delta = (vb - va) if va is not None and vb is not None else None
            cells += [
                f'<td class="num">{_fmt(va)}',
                f'<td class="num">{_fmt(vb)}',
                f'<td class="num">{_fmt(delta)}',
            ]
        cells += [
            f'<td class="num">{_fmt(a.get("msi_lip_ratio"), 2)}',
            f'<td class="num">{_fmt(a.get("msi_jaw_ratio"), 2)}',
            _departure_cell(a),
            _slice_cell(a, data),
            _slice_cell(b, _second_slices(data)),
        ]
        css = ' class="flagged"' if row_directions(a) else ""
        body.append(f"<tr{css}>" + "".join(c if c.startswith("<td") else f"<td>{c}" for c in cells) + "</tr>")
    headers = [
        "speaker", "video", f"status {first}", f"status {second}",
        f"lip {first}", f"lip {second}", "lip change", f"jaw {first}", f"jaw {second}", "jaw change",
        f"sync conf. {first}", f"sync conf. {second}", "sync change",
        "lip ratio", "jaw ratio", "departure", f"slice {first}", f"slice {second}",
    ]  # fmt: skip
    parts.append(_table(headers, body))
    return "".join(parts)


COMPARED = (("msi_lip", "lip MSI"), ("msi_jaw", "jaw MSI"), ("lipsync_confidence", "sync confidence"))

PROVENANCE_HEADERS = (
    "catalog", "speaker", "video", "synthetic", "watermark", "payload", "peak (sd)", "scale", "credentials",
    "AI-generated", "signer / problems", "mp4 tags",
)  # fmt: skip


def _provenance_rows(rows: Sequence[Mapping[str, Any]], labels: tuple[str, str]) -> list[str]:
    body = []
    for row in rows:
        credentials = str(row.get("credentials") or "-")
        detail = (
            row.get("credentials_problems") or row.get("credentials_signer") or row.get("provenance_status")
        )
        cells = [
            _fmt(labels[1] if row.get("side") == "compare" else labels[0]),
            _fmt(row.get("speaker")),
            _fmt(row.get("video_id")),
            "yes" if row.get("synthetic") else "no",
            _fmt(row.get("watermark")),
            _fmt(row.get("watermark_payload") or None),
            f'<td class="num">{_fmt(row.get("watermark_z"), 1)}',
            f'<td class="num">{_fmt(row.get("watermark_scale"), 2)}',
            f'<span class="pill {"ok" if credentials == "valid" else "failed" if credentials == "invalid" else ""}">'
            f"{html.escape(credentials)}</span>",
            "yes" if row.get("credentials_ai_generated") else "-",
            _fmt(detail if detail and detail != RowStatus.OK else None),
            "synthetic" if row.get("tagged_synthetic") else "-",
        ]
        html_cells = "".join(c if c.startswith("<td") else f"<td>{c}" for c in cells)
        body.append(f'<tr class="{"flagged" if row.get("synthetic") else ""}">{html_cells}</tr>')
    return body


def _provenance(data: ReportData) -> list[str]:
    """The synthetic videos found (watermark, valid AI-generated credentials or our mp4 tags), then all."""
    rows = [*data.rows, *(data.compare_rows or [])]
    synthetic = [r for r in rows if r.get("synthetic")]
    marked = sum(1 for r in synthetic if r.get("watermark") == "present")
    return [
        f"<h2>Synthetic videos found ({len(synthetic)})</h2>",
        '<p class="note">Evidence that a video was made by this tool: the invisible watermark (survives '
        "re-encoding, scaling, cropping and cuts; read with this audit's key), a valid C2PA manifest "
        "saying AI-generated (lost on re-encoding), or the mp4 tags the dubber writes (lost on any "
        f"remux). {marked} of them carry the watermark.</p>",
        _table(PROVENANCE_HEADERS, _provenance_rows(synthetic, data.labels)) if synthetic else "<p>None.</p>",
        f"<h2>Provenance of all videos ({len(rows)})</h2>",
        _table(PROVENANCE_HEADERS, _provenance_rows(rows, data.labels)),
    ]


COMPARE_PREFIX = "compare:"  # slice keys of the second catalog


def _second_slices(data: ReportData) -> ReportData:
    """A view of ``data`` whose slices are the second catalog's (stored under COMPARE_PREFIX keys)."""
    slices = {k[len(COMPARE_PREFIX) :]: v for k, v in data.slices.items() if k.startswith(COMPARE_PREFIX)}
    return ReportData(
        data.title, data.rows, data.flag_lip_below, data.flag_jaw_below, data.flag_offset_frames,
        data.flag_offset_min_confidence, slices=slices,
    )  # fmt: skip


def render_report(data: ReportData) -> str:
    """The whole report as one HTML string."""
    rows = data.rows
    ok = [r for r in rows if r.get("status") == RowStatus.OK]
    flagged = [r for r in rows if _is_flagged(r, data)]
    departed = [r for r in rows if row_directions(r)]
    problems = [r for r in rows if r.get("status") != RowStatus.OK]
    figures = _img(
        histogram_png({"lip": [r.get("msi_lip") for r in ok]}, "lip MSI", data.flag_lip_below, "lip MSI")
    ) + _img(
        histogram_png({"jaw": [r.get("msi_jaw") for r in ok]}, "jaw MSI", data.flag_jaw_below, "jaw MSI")
    )
    sections = [
        f"<h1>{html.escape(data.title)}</h1>",
        '<p class="note">Motion Stability Index (StableFace): landmarks in a fixed 256 px mouth-centred crop, '
        "MSI = mean over points of 1 / (acceleration variance + 1e-5); higher is steadier. Real GRID videos "
        "score about 0.35-0.8 (lips) and 0.6-1.5 (jaw) with MediaPipe. The vertical slice is the column "
        "through the mouth centre of every frame, left to right: jitter shows as saw-teeth. Sync confidence "
        "and audio offset come from the project's lip-sync expert (LSE-C style: median minus minimum "
        "lips-to-audio distance over offsets of +-15 frames); a positive offset means the sound comes late.</p>",
        "<h2>Summary</h2>",
        _summary(rows, data),
        "<h2>Distributions</h2>",
        f'<div class="figs">{figures}</div>',
        f"<h2>Flagged videos ({len(flagged)})</h2>",
        _table([*VIDEO_HEADERS, "vertical slice", "reason"], _video_rows(flagged, data, True))
        if flagged
        else "<p>None below the thresholds.</p>",
        *_departures_section(departed, data),
        f"<h2>Failed and unscored videos ({len(problems)})</h2>",
        _table([*VIDEO_HEADERS, "reason"], _video_rows(problems, data, False))
        if problems
        else "<p>None.</p>",
    ]
    if data.provenance_checked:
        sections += _provenance(data)
    if data.compare_rows is not None:
        sections += [f"<h2>Comparison: {html.escape(data.labels[0])} vs {html.escape(data.labels[1])}</h2>"]
        sections += [_comparison(data)]
    sections += [
        f"<h2>All videos ({len(rows)})</h2>",
        _table([*VIDEO_HEADERS, "vertical slice", "reason"], _video_rows(rows, data, True)),
    ]
    body = "\n".join(sections)
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(data.title)}</title>'
        f"<style>{STYLE}</style></head><body>\n{body}\n</body></html>\n"
    )
