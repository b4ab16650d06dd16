"""How far a video's motion departs from a reference of real speech (a dub from its source).

MSI is the inverse of landmark acceleration variance: higher is steadier. A dub can fail real
speech both ways: lips that jitter (MSI well below its source's) or lips that hardly move (MSI
well above it: the demo's under-trained dubs score lip MSI 2.4-6.6 against their sources'
0.6-0.8). A threshold on MSI alone sees only the first; the ratio to the source sees both.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stableface.errors import InputError
from stableface.status import RowStatus

MSI_METRICS = ("msi_lip", "msi_jaw")


class Departure(enum.StrEnum):
    """Which way a video's MSI departs from its reference's by more than the configured factor."""

    WITHIN = "within"  # within the factor either way
    TOO_STILL = "too_still"  # MSI above reference x factor: far less motion than real speech
    TOO_JITTERY = "too_jittery"  # MSI below reference / factor: far more acceleration than real speech

    @property
    def flagged(self) -> bool:
        return self is not Departure.WITHIN


def classify(msi: float, reference_msi: float, factor: float) -> Departure:
    """The departure of ``msi`` from ``reference_msi`` (both > 0) with ratio bound ``factor`` (> 1)."""
    ratio = msi / reference_msi
    if ratio > factor:
        return Departure.TOO_STILL
    if ratio < 1.0 / factor:
        return Departure.TOO_JITTERY
    return Departure.WITHIN


def check_factor(factor: float) -> None:
    if not factor > 1.0:
        raise InputError("metrics.departure_factor", f"must be > 1 (a ratio bound either way), got {factor}")


@dataclass(frozen=True)
class PairDeparture:
    """One video against its reference: the MSI ratios and the departure of lips and jaw."""

    lip_ratio: float
    jaw_ratio: float
    lip: Departure
    jaw: Departure

    @property
    def directions(self) -> set[Departure]:
        return {d for d in (self.lip, self.jaw) if d.flagged}

    def to_row(self) -> dict[str, Any]:
        """The audit table's departure columns."""
        return {
            "msi_lip_ratio": self.lip_ratio,
            "msi_jaw_ratio": self.jaw_ratio,
            "departure_lip": self.lip.value,
            "departure_jaw": self.jaw.value,
        }


def pair_departure(
    row: Mapping[str, Any], reference: Mapping[str, Any], factor: float
) -> PairDeparture | None:
    """The departure of a scored ``row`` from its scored ``reference`` row; None unless both have MSIs."""
    if row.get("status") != RowStatus.OK or reference.get("status") != RowStatus.OK:
        return None
    values = [row.get(m) for m in MSI_METRICS] + [reference.get(m) for m in MSI_METRICS]
    if any(v is None or not v > 0 for v in values):
        return None
    lip, jaw, reference_lip, reference_jaw = (float(v) for v in values)
    return PairDeparture(
        lip_ratio=lip / reference_lip,
        jaw_ratio=jaw / reference_jaw,
        lip=classify(lip, reference_lip, factor),
        jaw=classify(jaw, reference_jaw, factor),
    )


def row_directions(row: Mapping[str, Any]) -> set[Departure]:
    """The flagged departures recorded in an audit row's ``departure_*`` columns."""
    found = set()
    for column in ("departure_lip", "departure_jaw"):
        value = row.get(column)
        if value:
            departure = Departure(value)
            if departure.flagged:
                found.add(departure)
    return found
