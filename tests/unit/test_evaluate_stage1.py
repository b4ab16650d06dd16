"""Stage-1 held-out summaries: means per group, NaNs skipped, MSI averaged on a log scale."""

from __future__ import annotations

from stableface.training.evaluate_stage1 import group_means


def test_group_means_average_msi_geometrically():
    rows = [
        {"group": "a", "mesh_open_corr": 0.2, "mesh_lip_msi": 0.1},
        {"group": "a", "mesh_open_corr": 0.6, "mesh_lip_msi": 10.0},
        {"group": "b", "mesh_open_corr": float("nan"), "mesh_lip_msi": 1.0},
    ]
    means = group_means(rows)
    assert means["a"]["mesh_open_corr"] == 0.4 and abs(means["a"]["mesh_lip_msi"] - 1.0) < 1e-9
    assert "mesh_open_corr" not in means["b"] and means["all"]["clips"] == 3.0
