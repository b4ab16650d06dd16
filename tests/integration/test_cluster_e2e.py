"""The whole product on a 2-node local Ray cluster with every input, checkpoint and output on S3.

preprocess (speakers spread over both nodes) -> train (2 DDP workers, one per node; checkpoints,
logs and the model on S3) -> dub -> audit, then the training job again as a `ray job submit` with a
runtime_env working_dir. The two raylets have separate temp dirs and every URI below is s3:// (the
moto server), so nothing travels between nodes through local disk.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest

from stableface.config import compose
from stableface.io.audio import read_audio, write_audio
from stableface.io.storage import Storage, join
from stableface.io.video import probe_video
from stableface.speaker_model import SpeakerModel
from stableface.training.run_log import WORKERS, read_metrics

pytestmark = [pytest.mark.integration, pytest.mark.cluster, pytest.mark.timeout(1200)]

REPO_ROOT = Path(__file__).resolve().parents[2]
N_CLIPS = 6  # grid/s1 clips: the speaker that is trained and dubbed
N_OTHER_SPEAKERS = 2  # single-clip GRID speakers, preprocessed only: more speakers to spread
# Stage 1 on s1 alone: the tiny schedule holds out 2 videos per speaker, more than the others have.
TINY_TRAINING = ["speaker=s1", "stage1_speakers=[s1]", "model=tiny", "schedule=tiny", "scaling.num_workers=2"]
JOB_TIMEOUT_S = 600
# What the job's working_dir upload leaves out: the environment and local results, not code.
WORKING_DIR_EXCLUDES = [".venv", ".git", "outputs", "examples", "docs", "**/__pycache__", "*.egg-info"]


def _wait_for_job(client, job_id: str) -> tuple[object, str]:
    deadline = time.monotonic() + JOB_TIMEOUT_S
    status = client.get_job_status(job_id)
    while not status.is_terminal() and time.monotonic() < deadline:
        time.sleep(2)
        status = client.get_job_status(job_id)
    if not status.is_terminal():
        client.stop_job(job_id)
    return status, client.get_job_logs(job_id)


@pytest.fixture(scope="module")
def cluster_s3(two_node_cluster, s3_endpoint):
    """A bucket holding the raw inputs: 6 grid/s1 clips, two cuts of new speech, catalogs."""
    import uuid

    from stableface.io.storage import StorageConfig

    storage = Storage(StorageConfig(endpoint_url=s3_endpoint, region="us-east-1"))
    bucket = f"e2e-{uuid.uuid4().hex[:10]}"
    storage.s3.create_bucket(Bucket=bucket)
    return storage, f"s3://{bucket}"


def _upload_inputs(storage: Storage, bucket: str, grid_clips, shared_data, tmp_path) -> dict[str, str]:
    clip_uris, catalog_rows = [], []
    for clip in grid_clips[:N_CLIPS]:
        clip_uris.append(f"{bucket}/raw/s1/{clip.name}")
        storage.upload_file(clip, clip_uris[-1])
        catalog_rows.append(f"{clip_uris[-1]},s1\n")
    for clip in sorted((shared_data / "grid" / "speakers").glob("*.mpg"))[:N_OTHER_SPEAKERS]:
        uri = f"{bucket}/raw/{clip.stem}/{clip.name}"
        storage.upload_file(clip, uri)
        catalog_rows.append(f"{uri},{clip.stem}\n")
    storage.write_text(f"{bucket}/raw/catalog.csv", "video_uri,speaker\n" + "".join(catalog_rows))
    speech = {
        "fr": (read_audio(shared_data / "speech" / "macron_12s.wav"), 0.5, 3.0),
        "en": (read_audio(shared_data / "speech" / "english_21s.wav"), 1.0, 3.4),
    }
    audio_uris = {}
    for name, (samples, start, stop) in speech.items():
        local = tmp_path / f"{name}.wav"
        write_audio(local, samples[int(start * 16_000) : int(stop * 16_000)], 16_000)
        audio_uris[name] = f"{bucket}/speech/{name}.wav"
        storage.upload_file(local, audio_uris[name])
    # Dub two clips the training held out (the tiny schedule holds out the last 2 of 6).
    rows = [
        {"job_id": f"{name}-{Path(clip_uris[-1 - i]).stem}", "speaker": "s1", "video_uri": clip_uris[-1 - i],
         "audio_uri": audio_uris[name]}
        for i, name in enumerate(("fr", "en"))
    ]  # fmt: skip
    storage.write_text(f"{bucket}/dub/catalog.csv", pd.DataFrame(rows).to_csv(index=False))
    return {"catalog": f"{bucket}/raw/catalog.csv", "dub_catalog": f"{bucket}/dub/catalog.csv"}


def test_preprocess_train_dub_audit_on_two_nodes_with_everything_on_s3(
    two_node_cluster, cluster_s3, grid_clips, shared_data, tmp_path
):
    from stableface.ray_jobs import audit, dub, preprocess, train

    storage, bucket = cluster_s3
    inputs = _upload_inputs(storage, bucket, grid_clips, shared_data, tmp_path)
    common = [
        f"storage.endpoint_url={storage.config.endpoint_url}",
        f"ray.address={two_node_cluster.address}",
    ]
    nodes = set(two_node_cluster.node_ids.values())

    dataset = f"{bucket}/datasets/grid"
    prep = preprocess.run(
        compose("preprocess", [f"catalog={inputs['catalog']}", f"dataset_uri={dataset}", "face.crop_size=128",
                               *common])
    )  # fmt: skip
    assert (prep["videos_ok"], prep["speakers"]) == (N_CLIPS + N_OTHER_SPEAKERS, 1 + N_OTHER_SPEAKERS)
    videos = storage.read_json(f"{dataset}/manifest.json")["videos"]
    speakers_on = {node: {row["speaker"] for row in videos if row["extract_node"] == node} for node in nodes}
    assert all(speakers_on.values()), f"not spread over both nodes: {speakers_on}"

    models = f"{bucket}/models"
    trained = train.run(
        compose("train", [f"dataset_uri={dataset}", f"output_uri={models}", *TINY_TRAINING,
                          "scaling.placement_strategy=STRICT_SPREAD", *common])
    )  # fmt: skip
    model_uri = trained.models["s1"].model_uri
    assert model_uri == f"{models}/s1"
    model = SpeakerModel.load(model_uri, storage)
    assert model.speaker == "s1" and model.metadata["training_summary"]["heldout"]
    for stage, logs in (("stage1", "stage1"), ("stage2", "stage2-s1")):
        records = [
            storage.read_json(join(models, "_training", logs, "logs", WORKERS, f"{stage}-rank{rank}.json"))
            for rank in (0, 1)
        ]
        assert {record["node"] for record in records} == nodes, f"{stage} ranks not one per node: {records}"
        stage_dir = join(models, "_training", logs)
        assert [uri for uri in storage.list(stage_dir) if uri.endswith("/state.pt")], (
            f"no checkpoint in {stage_dir}"
        )
        assert read_metrics(storage, join(stage_dir, "logs")), f"no metrics in {stage_dir}"
        assert storage.list(join(stage_dir, "logs", "tensorboard"))
    assert storage.exists(join(models, "_training", "audio2expression.pt"))
    assert not Path("s3:").exists(), "an s3:// URI was written as a local path"

    dubs = f"{bucket}/dubs"
    dubbed = dub.run(
        compose("dub", [f"catalog={inputs['dub_catalog']}", f"models_uri={models}", f"output_uri={dubs}",
                        "concurrency=2", *common])
    )  # fmt: skip
    assert (dubbed["rows"], dubbed["ok"], dubbed["failed"]) == (2, 2, 0)
    with storage.local_copy(join(dubs, "manifest.parquet")) as local:
        manifest = pd.read_parquet(local)
    video_uris = sorted(storage.list(join(dubs, "videos")))
    assert [Path(uri).stem for uri in video_uris] == sorted(manifest["job_id"])
    for uri, row in zip(video_uris, manifest.sort_values("job_id").itertuples(), strict=True):
        with storage.local_copy(uri) as local:
            info = probe_video(local)
        assert info.has_audio and abs(info.duration_s - row.audio_duration_s) <= 1 / 25

    audited = audit.run(
        compose("audit", [f"catalog={dubs}/videos", f"output_uri={bucket}/audit", *common])
    )  # fmt: skip
    assert (audited["videos"], audited["ok"]) == (2, 2)
    assert storage.exists(f"{bucket}/audit/report.html")
    assert "<html" in storage.read_text(f"{bucket}/audit/report.html").lower()


def test_ray_job_submit_runs_the_training_job_with_a_working_dir(two_node_cluster, cluster_s3):
    """`ray job submit --working-dir <repo> -- python jobs/train.py ...`: stage 1 on the S3 dataset."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    storage, bucket = cluster_s3
    dataset = f"{bucket}/datasets/grid"
    if not storage.exists(join(dataset, "manifest.json")):
        pytest.skip("needs the dataset of the end-to-end test in this module")
    output = f"{bucket}/submitted"
    entrypoint = " ".join([
        "python jobs/train.py", f"dataset_uri={dataset}", f"output_uri={output}", *TINY_TRAINING, "stage=1",
        f"storage.endpoint_url={storage.config.endpoint_url}",
    ])  # fmt: skip
    client = JobSubmissionClient(two_node_cluster.dashboard_url)
    job_id = client.submit_job(
        entrypoint=entrypoint,
        runtime_env={"working_dir": str(REPO_ROOT), "excludes": WORKING_DIR_EXCLUDES},
    )
    status, logs = _wait_for_job(client, job_id)
    assert status == JobStatus.SUCCEEDED, f"job {job_id} ended {status}; logs:\n{logs[-4000:]}"
    assert storage.exists(f"{output}/_training/audio2expression.pt")
    metrics = storage.read_text(f"{output}/_training/stage1/logs/metrics.csv")
    assert len(metrics.splitlines()) > 1
