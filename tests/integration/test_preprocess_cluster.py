"""Preprocessing on a 2-node local Ray cluster with every input and output on S3 (moto)."""

from __future__ import annotations

import pytest

from stableface.config import compose
from stableface.io.storage import Storage
from stableface.ray_jobs.preprocess import run

pytestmark = [pytest.mark.integration, pytest.mark.cluster, pytest.mark.timeout(600)]


def test_speakers_are_processed_on_both_nodes(
    two_node_cluster, shared_data, grid_clips, s3_bucket, s3_storage_config
):
    storage = Storage(s3_storage_config)
    # Four speakers: two grid/s1 clips, and three single-clip GRID speakers.
    sources = [(clip, "s1") for clip in grid_clips[:2]]
    sources += [(path, path.stem) for path in sorted((shared_data / "grid" / "speakers").glob("*.mpg"))[:3]]
    rows = []
    for path, speaker in sources:
        uri = f"{s3_bucket}/raw/{speaker}/{path.name}"
        storage.upload_file(path, uri)
        rows.append(f"{uri},{speaker}")
    storage.write_text(f"{s3_bucket}/raw/catalog.csv", "video_uri,speaker\n" + "\n".join(rows) + "\n")
    dataset = f"{s3_bucket}/datasets/cluster"
    summary = run(
        compose(
            "preprocess",
            [
                f"catalog={s3_bucket}/raw/catalog.csv",
                f"dataset_uri={dataset}",
                f"storage.endpoint_url={s3_storage_config.endpoint_url}",
                f"ray.address={two_node_cluster.address}",
                "face.crop_size=96",
                "face.min_fit_frames=100",
            ],
        )
    )
    assert summary["videos_ok"] == 5 and summary["speakers"] == 4
    manifest = storage.read_json(f"{dataset}/manifest.json")
    nodes = set(two_node_cluster.node_ids.values())
    extract_nodes = {row["extract_node"] for row in manifest["videos"]}
    assert extract_nodes == nodes, (extract_nodes, nodes)
    per_node_speakers = {
        node: {r["speaker"] for r in manifest["videos"] if r["extract_node"] == node} for node in nodes
    }
    assert all(per_node_speakers.values()), per_node_speakers
