"""Speaker balancing of stage-1 windows: small speakers repeated by the sqrt of the size ratio."""

from __future__ import annotations

from stableface.data.sequences import balanced_index


def test_small_speakers_are_repeated_by_the_square_root_of_the_size_ratio():
    # video 0 and 1: speaker "big" (100 windows); video 2: "small" (4 windows); video 3: "mid" (25)
    index = [(0, i) for i in range(50)] + [(1, i) for i in range(50)] + [(2, i) for i in range(4)]
    index += [(3, i) for i in range(25)]
    balanced = balanced_index(index, ["big", "big", "small", "mid"])
    counts = {v: sum(1 for video, _ in balanced if video == v) for v in range(4)}
    assert counts == {0: 50, 1: 50, 2: 20, 3: 50}  # sqrt(100 / 4) = 5, sqrt(100 / 25) = 2
    assert balanced[:2] == [(0, 0), (0, 1)] and balanced.count((2, 3)) == 5
