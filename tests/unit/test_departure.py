"""Departures from real speech both ways: too still (MSI far above the source's) and too jittery."""

from __future__ import annotations

import pytest

from stableface.errors import InputError
from stableface.metrics.departure import Departure, check_factor, classify, pair_departure, row_directions
from stableface.report.html import ReportData, render_report


def _row(video_id: str, lip: float | None, jaw: float | None, status: str = "ok") -> dict:
    return {"speaker": "s1", "video_id": video_id, "status": status, "msi_lip": lip, "msi_jaw": jaw}


@pytest.mark.parametrize(
    ("msi", "reference", "factor", "expected"),
    [
        (4.8, 0.6, 2.0, Departure.TOO_STILL),  # the demo's dubs: lips hardly move
        (0.05, 0.6, 2.0, Departure.TOO_JITTERY),  # a shaken copy
        (0.9, 0.6, 2.0, Departure.WITHIN),
        (0.31, 0.6, 2.0, Departure.WITHIN),  # ratio 0.517 is inside 1/2
        (0.29, 0.6, 2.0, Departure.TOO_JITTERY),  # ratio 0.483 is not
        (4.8, 0.6, 10.0, Departure.WITHIN),  # a looser factor lets the same dub pass
    ],
)
def test_classify_bounds_the_ratio_both_ways(msi, reference, factor, expected):
    assert classify(msi, reference, factor) is expected


def test_pair_departure_reports_lips_and_jaw_separately():
    departure = pair_departure(_row("a", 3.0, 0.7), _row("a", 0.6, 1.4), factor=2.0)
    assert departure is not None
    assert departure.lip_ratio == pytest.approx(5.0) and departure.jaw_ratio == pytest.approx(0.5)
    assert departure.lip is Departure.TOO_STILL and departure.jaw is Departure.WITHIN  # 0.5 is the bound
    assert departure.directions == {Departure.TOO_STILL}
    row = departure.to_row()
    assert row == {
        "msi_lip_ratio": pytest.approx(5.0),
        "msi_jaw_ratio": pytest.approx(0.5),
        "departure_lip": "too_still",
        "departure_jaw": "within",
    }
    assert row_directions(row) == {Departure.TOO_STILL}


def test_unscored_pairs_have_no_departure():
    assert pair_departure(_row("a", None, None, "no_score"), _row("a", 0.6, 1.0), 2.0) is None
    assert pair_departure(_row("a", 0.6, 1.0), _row("a", 0.6, 1.0, "failed"), 2.0) is None
    assert pair_departure(_row("a", 0.6, 1.0), _row("a", 0.0, 1.0), 2.0) is None
    assert row_directions(_row("a", 0.6, 1.0)) == set()


@pytest.mark.parametrize("factor", [1.0, 0.5, -2.0])
def test_a_factor_that_bounds_nothing_is_refused(factor):
    with pytest.raises(InputError, match=r"metrics\.departure_factor: must be > 1"):
        check_factor(factor)


def test_the_report_lists_departures_each_way_and_counts_them():
    still = {
        **_row("still", 4.0, 3.0),
        **pair_departure(_row("still", 4.0, 3.0), _row("still", 0.6, 1.0), 2.0).to_row(),
    }
    shaken = {
        **_row("shaken", 0.05, 0.1),
        **pair_departure(_row("shaken", 0.05, 0.1), _row("shaken", 0.6, 1.0), 2.0).to_row(),
    }
    plain = {
        **_row("plain", 0.6, 1.0),
        **pair_departure(_row("plain", 0.6, 1.0), _row("plain", 0.62, 1.1), 2.0).to_row(),
    }
    references = [_row("still", 0.6, 1.0), _row("shaken", 0.6, 1.0), _row("plain", 0.62, 1.1)]
    data = ReportData(
        "dubs", [still, shaken, plain], 0.3, 0.5, compare_rows=references, labels=("dubs", "sources"),
        departure_factor=2.0,
    )  # fmt: skip
    report = render_report(data)
    assert "Departures from sources (2)" in report
    assert "1 too still (lip or jaw MSI &gt; 2&times; the paired video's), 1 too jittery" in report
    assert "lips too still, jaw too still" in report and "lips too jittery, jaw too jittery" in report
    assert "Flagged videos (1)" in report  # the jitter thresholds alone catch only the shaken one
    # Without a comparison there is no departure section at all.
    alone = render_report(ReportData("dubs", [_row("plain", 0.6, 1.0)], 0.3, 0.5))
    assert "Departures from" not in alone
