"""Several faces on screen: per-frame detections linked into face tracks, and how a user names one.

A detector reports the faces of each frame in no particular order. :class:`TrackLinker` links them
frame to frame into tracks by box overlap (greedy, best overlap first), so each track is one
person's face. A track does not end when its face is missing: a face that comes back where the
track last was (a lecturer after the slides, a detector blink) continues it, so one person's face
segments stay one track. A face that comes back elsewhere starts a new track.

:class:`FaceSelection` is which face a dub paints: ``auto`` (the one that matches the speaker
model), the N-th face from the left, or the face at a point in source pixels.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from stableface.errors import InputError

MIN_LINK_IOU = 0.3  # consecutive boxes of one face overlap far more; faces side by side not at all


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in frame pixels (x right, y down)."""

    x0: float
    y0: float
    x1: float
    y1: float

    @classmethod
    def of_points(cls, points: np.ndarray) -> Box:
        """The bounding box of points (N, >=2)."""
        xy = np.asarray(points, dtype=np.float64)[:, :2]
        (x0, y0), (x1, y1) = xy.min(axis=0), xy.max(axis=0)
        return cls(float(x0), float(y0), float(x1), float(y1))

    @property
    def centre(self) -> tuple[float, float]:
        return (self.x0 + self.x1) / 2.0, (self.y0 + self.y1) / 2.0

    @property
    def area(self) -> float:
        return max(self.x1 - self.x0, 0.0) * max(self.y1 - self.y0, 0.0)

    def contains(self, x: float, y: float) -> bool:
        return self.x0 <= x <= self.x1 and self.y0 <= y <= self.y1

    def iou(self, other: Box) -> float:
        """Intersection over union, 0 for disjoint boxes."""
        inter = Box(
            max(self.x0, other.x0), max(self.y0, other.y0), min(self.x1, other.x1), min(self.y1, other.y1)
        )
        union = self.area + other.area - inter.area
        return inter.area / union if union > 0 else 0.0

    def describe(self) -> str:
        x, y = self.centre
        return f"({x:.0f}, {y:.0f})"


class TrackLinker:
    """Assigns each frame's face boxes to tracks: greedy by overlap with each track's latest box."""

    def __init__(self, min_iou: float = MIN_LINK_IOU):
        self.min_iou = min_iou
        self.last_boxes: list[Box] = []  # per track id, its face's box in the latest frame it was seen

    @property
    def n_tracks(self) -> int:
        return len(self.last_boxes)

    def assign(self, boxes: list[Box]) -> list[int]:
        """Track ids of one frame's ``boxes`` (distinct; a box that overlaps no free track starts one)."""
        pairs = sorted(
            ((box.iou(last), b, t) for b, box in enumerate(boxes) for t, last in enumerate(self.last_boxes)),
            reverse=True,
        )
        assigned: dict[int, int] = {}
        taken: set[int] = set()
        for overlap, b, t in pairs:
            if overlap < self.min_iou:
                break
            if b not in assigned and t not in taken:
                assigned[b] = t
                taken.add(t)
        ids = []
        for b, box in enumerate(boxes):
            if b not in assigned:
                assigned[b] = len(self.last_boxes)
                self.last_boxes.append(box)
            self.last_boxes[assigned[b]] = box
            ids.append(assigned[b])
        return ids


class SelectionKind(StrEnum):
    auto = "auto"  # the face that matches the speaker model
    index = "index"  # the N-th face from the left (1 = leftmost)
    point = "point"  # the face whose box contains a point, in source pixels


POINT_PATTERN = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*$")


@dataclass(frozen=True)
class FaceSelection:
    """Which face of the source a dub paints."""

    kind: SelectionKind = SelectionKind.auto
    index: int = 0  # 1-based, left to right by the face's average position (kind index)
    x: float = 0.0  # source pixels (kind point)
    y: float = 0.0

    @classmethod
    def parse(cls, text: str | None, what: str = "face") -> FaceSelection:
        """``""`` or ``"auto"`` -> auto, ``"2"`` -> the second face from the left, ``"412,130"`` -> a point.

        Raises :class:`InputError` naming ``what`` for anything else.
        """
        text = "" if text is None else str(text).strip()
        if text.lower() in ("", "auto"):
            return cls()
        if text.isdigit():
            if int(text) < 1:
                raise InputError(what, f"'{text}': face numbers start at 1 (the leftmost face)")
            return cls(SelectionKind.index, index=int(text))
        point = POINT_PATTERN.match(text)
        if point:
            return cls(SelectionKind.point, x=float(point.group(1)), y=float(point.group(2)))
        raise InputError(
            what,
            f"'{text}' is not a face selection: leave it empty (or 'auto') for the speaker's face, give a "
            "face number from the left ('2') or a point in source pixels ('412,130')",
        )

    @property
    def text(self) -> str:
        """The form :meth:`parse` reads back (empty for auto)."""
        if self.kind is SelectionKind.index:
            return str(self.index)
        if self.kind is SelectionKind.point:
            return f"{self.x:g},{self.y:g}"
        return ""

    def describe(self) -> str:
        if self.kind is SelectionKind.index:
            return f"face {self.index} from the left"
        if self.kind is SelectionKind.point:
            return f"the face at ({self.x:g}, {self.y:g})"
        return "the speaker's face"
