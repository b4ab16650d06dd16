"""Back to the full frame: paste the generated face, draw the provenance mark, tag the mp4.

The generated crop is warped back with the inverse crop affine (bilinear) and blended with a
crop-space weight that is 1 over the mouth/lower-face region and ramps to 0 outside it, so every
pixel away from the face stays the source's own.
"""

from __future__ import annotations

import json

import cv2
import numpy as np

from stableface import __version__
from stableface.face.tracking import invert_affines, paste_crop
from stableface.inference.config import ProvenanceConfig
from stableface.speaker_model import SpeakerModel

MARK_FONT = cv2.FONT_HERSHEY_DUPLEX
MARK_MARGIN = 0.5  # the mark's distance from the frame edges, in text heights
MARK_PADDING = 0.3  # the plate's padding around the text, in text heights
PLATE_OPACITY = 0.55  # the dark plate behind the text
TEXT_COLOUR = (255, 255, 255)


def composite_face(
    frame: np.ndarray, generated: np.ndarray, affine: np.ndarray, weight: np.ndarray
) -> np.ndarray:
    """Frame (H, W, 3) uint8 with the generated crop (S, S, 3) uint8 pasted where ``weight`` (S, S) > 0.

    ``affine`` (2, 3) maps frame pixels to this S-pixel crop (the source's crop box at size S). Only
    the frame rectangle under the weight's support is warped and blended, so the cost follows the
    face's size, not the frame's.
    """
    ys, xs = np.nonzero(weight > 0)
    if xs.size == 0:
        return frame
    corners = np.array([[xs.min() - 1, ys.min() - 1], [xs.max() + 1, ys.min() - 1],
                        [xs.min() - 1, ys.max() + 1], [xs.max() + 1, ys.max() + 1]], np.float32)  # fmt: skip
    to_frame = invert_affines(affine[None])[0]  # (2, 3) crop -> frame
    footprint = corners @ to_frame[:, :2].T + to_frame[:, 2]  # (4, 2) frame pixels
    height, width = frame.shape[:2]
    x0, y0 = np.clip(np.floor(footprint.min(axis=0)).astype(int) - 1, 0, [width, height])
    x1, y1 = np.clip(np.ceil(footprint.max(axis=0)).astype(int) + 2, 0, [width, height])
    if x1 <= x0 or y1 <= y0:
        return frame
    shifted = np.array(affine, dtype=np.float64)
    shifted[:, 2] += shifted[:, :2] @ np.array([x0, y0], np.float64)  # ROI pixel -> crop pixel
    out = frame.copy()
    out[y0:y1, x0:x1] = paste_crop(frame[y0:y1, x0:x1], generated, shifted.astype(np.float32), weight)
    return out


def _mark_layout(
    height: int, width: int, config: ProvenanceConfig
) -> tuple[float, int, tuple[int, int, int, int]]:
    """(font scale, thickness, plate box (x0, y0, x1, y1)) of the mark on an H x W frame."""
    text_height = max(float(config.mark_min_height_px), config.mark_height_fraction * height)
    (unit_width, unit_height), _ = cv2.getTextSize(config.mark_text, MARK_FONT, 1.0, 1)
    scale = text_height / unit_height
    margin, padding = MARK_MARGIN * text_height, MARK_PADDING * text_height
    max_width = width - 2 * (margin + padding)
    if unit_width * scale > max_width:  # long text on a small frame: shrink to fit the width
        scale = max(max_width, 1.0) / unit_width
        text_height = unit_height * scale
        margin, padding = MARK_MARGIN * text_height, MARK_PADDING * text_height
    thickness = max(1, round(text_height / 10))
    (text_width, text_h), baseline = cv2.getTextSize(config.mark_text, MARK_FONT, scale, thickness)
    plate_width = text_width + 2 * padding
    plate_height = text_h + baseline + 2 * padding
    left = margin if config.mark_corner.endswith("left") else width - margin - plate_width
    top = margin if config.mark_corner.startswith("top") else height - margin - plate_height
    box = (round(left), round(top), round(left + plate_width), round(top + plate_height))
    return scale, thickness, box


def mark_box(height: int, width: int, config: ProvenanceConfig) -> tuple[int, int, int, int] | None:
    """Where :func:`draw_mark` draws on an H x W frame, as (x0, y0, x1, y1); None when the mark is off."""
    if not config.visible_mark:
        return None
    return _mark_layout(height, width, config)[2]


def draw_mark(frame: np.ndarray, config: ProvenanceConfig) -> np.ndarray:
    """The frame (H, W, 3) uint8 with the "synthetic" mark in its corner; unchanged when the mark is off."""
    if not config.visible_mark:
        return frame
    height, width = frame.shape[:2]
    scale, thickness, (x0, y0, x1, y1) = _mark_layout(height, width, config)
    x0, y0 = max(x0, 0), max(y0, 0)
    x1, y1 = min(x1, width), min(y1, height)
    plate = np.round(frame[y0:y1, x0:x1].astype(np.float32) * (1.0 - PLATE_OPACITY)).astype(np.uint8)
    text = plate.copy()
    (_, text_h), baseline = cv2.getTextSize(config.mark_text, MARK_FONT, scale, thickness)
    padding = (y1 - y0 - text_h - baseline) / 2
    origin = (round(padding), round(padding + text_h))  # in plate pixels
    cv2.putText(text, config.mark_text, origin, MARK_FONT, scale, TEXT_COLOUR, thickness, cv2.LINE_AA)
    marked = frame.copy()
    marked[y0:y1, x0:x1] = cv2.addWeighted(text, config.mark_opacity, plate, 1.0 - config.mark_opacity, 0.0)
    return marked


def provenance_tags(model: SpeakerModel, config: ProvenanceConfig) -> dict[str, str]:
    """mp4 container tags saying what made the video (standard keys: the mp4 muxer drops custom ones)."""
    facts = {
        "synthetic": True,
        "tool": config.tool,
        "stableface_version": __version__,
        "model_version": model.version,
        "speaker": model.speaker,
        "visible_mark": bool(config.visible_mark),
    }
    return {
        "comment": (
            f"Synthetic video: lip-synced by {config.tool} {__version__} with speaker model "
            f"'{model.speaker}' version {model.version}"
        ),
        "description": json.dumps(facts, sort_keys=True),
    }


def read_provenance(tags: dict[str, str]) -> dict | None:
    """The facts :func:`provenance_tags` wrote, from a container's tags (None when absent)."""
    try:
        facts = json.loads(tags.get("description", ""))
    except ValueError:
        return None
    return facts if isinstance(facts, dict) and facts.get("synthetic") else None
