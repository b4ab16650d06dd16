"""Several faces on screen: per-frame detections linked into face tracks, and how a user names one.

A detector reports the faces of each frame in no particular order. :class:`TrackLinker` links them
frame to frame into tracks by box overlap (greedy, best overlap first), so each track is one
person's face. A track does not end when its face is missing: a face that comes back where the
track last was (a lecturer after the slides, a detector blink) or where it was heading (a face
that passed behind another) continues it, so one person's face segments stay one track. A face
that comes back elsewhere starts a new track.

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
# A hidden face's box is carried on at its velocity for at most this many frames (0.6 s at 25 fps):
# long enough to pass behind another face, short of guessing where it went after a cutaway.
MAX_PREDICT_FRAMES = 15
VELOCITY_SMOOTHING = 0.5  # weight of the previous velocity (and side) when a new box is seen
HIDDEN_REACH = 0.07  # a hidden face may come back this many of its sides per hidden frame off its course


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

    def shifted(self, dx: float, dy: float = 0.0) -> Box:
        return Box(self.x0 + dx, self.y0 + dy, self.x1 + dx, self.y1 + dy)

    def describe(self) -> str:
        x, y = self.centre
        return f"({x:.0f}, {y:.0f})"


@dataclass
class _TrackState:
    """Where a track's face was last seen, when, how large and how fast it was moving (px per frame)."""

    box: Box
    frame: int
    velocity: tuple[float, float] = (0.0, 0.0)
    side: float = 0.0  # the face's larger box side (a face half hidden behind another keeps its height)

    def __post_init__(self) -> None:
        self.side = self.side or max(self.box.x1 - self.box.x0, self.box.y1 - self.box.y0)

    def predicted(self, frame: int) -> Box:
        """Its box carried on at its velocity to ``frame`` (for at most MAX_PREDICT_FRAMES frames)."""
        steps = min(frame - self.frame, MAX_PREDICT_FRAMES)
        return self.box.shifted(self.velocity[0] * steps, self.velocity[1] * steps)

    def overlap(self, box: Box, frame: int) -> float:
        """How well ``box`` continues this track (links below MIN_LINK_IOU are refused).

        Its overlap with the last or the predicted box; for a face hidden for a while, also its
        nearness to where the face was heading, within HIDDEN_REACH of its side per hidden frame
        (a face behind another comes out with a box that shrank and moved unevenly). That link
        scores under 2 x MIN_LINK_IOU, below any visible face's overlap with its own track.
        """
        predicted = self.predicted(frame)
        score = max(box.iou(predicted), box.iou(self.box))
        steps = min(frame - self.frame, MAX_PREDICT_FRAMES)
        if steps > 1:
            reach = self.side * HIDDEN_REACH * steps
            distance = float(np.hypot(*(np.subtract(box.centre, predicted.centre))))
            if distance < reach:
                score = max(score, MIN_LINK_IOU * (2.0 - distance / reach))
        return score

    def moved_to(self, box: Box, frame: int) -> None:
        (x0, y0), (x1, y1) = self.box.centre, box.centre
        steps = max(frame - self.frame, 1)
        seen = ((x1 - x0) / steps, (y1 - y0) / steps)
        self.velocity = tuple(  # type: ignore[assignment]
            VELOCITY_SMOOTHING * old + (1 - VELOCITY_SMOOTHING) * new
            for old, new in zip(self.velocity, seen, strict=True)
        )
        side = max(box.x1 - box.x0, box.y1 - box.y0)
        self.side = VELOCITY_SMOOTHING * self.side + (1 - VELOCITY_SMOOTHING) * side
        self.box, self.frame = box, frame


class TrackLinker:
    """Assigns each frame's face boxes to tracks: greedy, best overlap first, with each track's box
    carried on at its own velocity while its face is hidden.

    Call :meth:`assign` once per frame, in order (an empty list for a frame without faces). Two
    faces passing each other keep their tracks: the face in front stays nearest its own predicted
    box, and the one behind it, once it shows again, overlaps where its track was heading (or,
    after a cut, where it was last seen) rather than starting a new track.
    """

    def __init__(self, min_iou: float = MIN_LINK_IOU):
        self.min_iou = min_iou
        self.states: list[_TrackState] = []  # per track id
        self.frame = -1

    @property
    def n_tracks(self) -> int:
        return len(self.states)

    def assign(self, boxes: list[Box]) -> list[int]:
        """Track ids of one frame's ``boxes`` (distinct; a box that continues no free track starts one)."""
        self.frame += 1
        pairs = sorted(
            (
                (state.overlap(box, self.frame), b, t)
                for b, box in enumerate(boxes)
                for t, state in enumerate(self.states)
            ),
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
            if b in assigned:
                self.states[assigned[b]].moved_to(box, self.frame)
            else:
                assigned[b] = len(self.states)
                self.states.append(_TrackState(box, self.frame))
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
