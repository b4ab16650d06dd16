"""The training job on Ray Train: 2-worker DDP on CPU, a killed worker (S3 checkpoints: test_cluster_e2e).

Tiny preset (32 px, T = 4) and the tiny schedule on ``grid_dataset`` (8 grid/s1 clips, 2 held out).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from stableface.config import compose
from stableface.data.layout import DatasetLayout
from stableface.data.sequences import load_render_video, split_videos
from stableface.face.landmarks import MediaPipeBackend
from stableface.io.storage import Storage, join
from stableface.models import build_models
from stableface.ray_jobs.train import run
from stableface.speaker_model import SpeakerModel
from stableface.training.data import stage1_dataset, stage2_dataset
from stableface.training.evaluate import EvalNetworks, evaluate_video
from stableface.training.run_log import read_metrics

pytestmark = pytest.mark.integration
TINY = ["speaker=s1", "model=tiny", "schedule=tiny", "scaling.num_workers=2", "ray.num_cpus=2"]


def _config(dataset: str, output: str, *overrides: str):
    return compose("train", [f"dataset_uri={dataset}", f"output_uri={output}", *TINY, *overrides])


def _loss_fell(rows: list[dict], key: str) -> tuple[float, float]:
    first = np.mean([row[key] for row in rows[:2]])
    last = np.mean([row[key] for row in rows[-2:]])
    return float(first), float(last)


def _rendered_l1(model: SpeakerModel, dataset: str, video_id: str) -> float:
    """Audio-driven mean absolute error of a held-out clip rendered by ``model``'s networks."""
    storage, layout = Storage(), DatasetLayout(dataset)
    video = load_render_video(
        storage, layout, "s1", video_id, model.face_model, model.identity, model.image_size
    )
    networks = model.networks
    evaluation = EvalNetworks(
        networks.audio2expression, networks.smoothing, networks.renderer, torch.device("cpu")
    )
    row, outputs = evaluate_video(
        evaluation, video, model.face_model, model.identity, networks.config.renderer.sequence_length,
        MediaPipeBackend(),
    )  # fmt: skip
    frames = outputs["audio"]
    assert frames.shape == video.frames.shape and frames.dtype == np.uint8
    assert frames.std() > 5, "the rendered frames are flat"
    return row["audio_l1"]


@pytest.fixture(scope="module")
def ddp_run(ray_local, grid_dataset, tmp_path_factory):
    """The 2-worker run, started with relative local URIs as a user types them (Ray Train runs its
    workers in other folders); returns its config with those URIs absolute, and its result."""
    root = tmp_path_factory.mktemp("train_ddp")
    started_in = os.getcwd()
    os.chdir(root)
    try:
        result = run(_config(os.path.relpath(grid_dataset), "models", "schedule.record_sample_ids=true"))
    finally:
        os.chdir(started_in)
    return _config(grid_dataset, str(root / "models"), "schedule.record_sample_ids=true"), result


def test_two_worker_ddp_run_trains_both_stages_and_exports_a_model(ddp_run, grid_dataset):
    cfg, result = ddp_run
    storage, layout = Storage(), DatasetLayout(grid_dataset)
    run_uri = result.run_uri
    model_uri = result.models["s1"].model_uri
    assert model_uri == join(cfg.output_uri, "s1")

    # Each rank trained on its own shard: disjoint apart from the sampler's padding, together all.
    model_config = compose("train", ["dataset_uri=x", "model=tiny"]).model
    datasets = {
        "stage1": stage1_dataset(storage, layout, ["s1"], cfg.schedule, model_config),
        "stage2": stage2_dataset(
            storage, layout, "s1", cfg.schedule, model_config, cfg.erosion, _face(storage, layout)
        ),
    }
    for stage, dataset in datasets.items():
        logs = join(run_uri, stage if stage == "stage1" else "stage2-s1", "logs")
        ids = [
            set(storage.read_json(join(logs, "sample_ids", f"{stage}-rank{r}-epoch0000.json")))
            for r in (0, 1)
        ]
        padding = (-len(dataset)) % 2
        assert len(ids[0] & ids[1]) <= padding, f"{stage}: ranks shared {ids[0] & ids[1]}"
        assert ids[0] | ids[1] == {dataset.item_id(i) for i in range(len(dataset))}

        rows = read_metrics(storage, logs)
        assert [r["step"] for r in rows] == sorted(r["step"] for r in rows), "steps logged out of order"
        key = "loss/total" if stage == "stage1" else "loss/l1"
        first, last = _loss_fell(rows, key)
        assert last < 0.8 * first, f"{stage} {key} did not fall: {first} -> {last}"
        attempts = storage.read_json(join(logs, "attempts.json"))
        assert [a["world_size"] for a in attempts] == [2]
    assert storage.list(join(run_uri, "stage2-s1", "logs", "samples"), (".png",))
    assert storage.list(join(run_uri, "stage2-s1", "logs", "tensorboard"))

    # The model directory loads with one call, describes itself, and renders held-out speech.
    model = SpeakerModel.load(model_uri)
    summary = storage.read_json(join(model_uri, "summary.json"))
    assert model.speaker == "s1" and model.image_size == 32 and model.crop_size == 128
    assert model.metadata["training_summary"]["stage2"]["steps"] == summary["stage2"]["steps"] > 0
    assert set(summary["heldout"]) >= {"audio_l1", "audio_ssim", "reconstruction_l1", "mesh_nlmd"}
    heldout = summary["heldout_videos"]
    assert (
        heldout == split_videos(summary["train_videos"] + heldout, cfg.schedule.holdout, cfg.schedule.seed)[1]
    )
    trained = _rendered_l1(model, grid_dataset, heldout[0])
    torch.manual_seed(0)
    untrained = SpeakerModel(
        "s1", build_models(model.networks.config).eval(), model.face_model, model.identity, model.audio, 128
    )
    assert trained < 0.8 * _rendered_l1(untrained, grid_dataset, heldout[0])


def _face(storage, layout):
    from stableface.face.face_model import FaceModel

    return FaceModel.load(layout.face_model, storage)


class _WorkerKiller(threading.Thread):
    """SIGKILLs the stage's rank-0 training worker once Ray Train has registered a checkpoint."""

    def __init__(self, run_dir: Path, timeout_s: float = 300):
        super().__init__(daemon=True)
        self.run_dir = run_dir
        self.timeout_s = timeout_s
        self.killed: dict | None = None
        self.error: str | None = None

    def run(self) -> None:
        storage = Storage()
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            step = self.registered_step()
            if step:
                worker = storage.read_json(str(self.run_dir / "logs" / "workers" / "stage2-rank0.json"))
                os.kill(worker["pid"], signal.SIGKILL)
                self.killed = {**worker, "registered_step": step}
                return
            time.sleep(0.05)
        self.error = "Ray Train registered no checkpoint to resume from"

    def registered_step(self) -> int:
        """The step of the latest checkpoint the Ray Train controller has registered (0: none yet).

        A report reaches the controller when it next polls the workers; a worker killed before that
        leaves a checkpoint directory the run does not know about, so wait for the controller's
        snapshot rather than for the directory."""
        try:
            snapshot = json.loads((self.run_dir / "checkpoint_manager_snapshot.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return 0
        metrics = (snapshot.get("latest_checkpoint_result") or {}).get("metrics", {})
        return 0 if metrics.get("final") else int(metrics.get("step", 0))


def test_a_killed_worker_resumes_from_the_last_checkpoint(ddp_run, grid_dataset, tmp_path):
    _, first = ddp_run
    output = tmp_path / "models"
    cfg = _config(
        grid_dataset, str(output), "stage=2", f"audio2expression_uri={first.audio2expression_uri}",
        "schedule.stage2.renderer_epochs=5", "schedule.stage2.joint_epochs=1", "schedule.sample_every=0",
        "max_failures=2",
    )  # fmt: skip
    killer = _WorkerKiller(output / "_training" / "stage2-s1")
    killer.start()
    result = run(cfg)
    killer.join(timeout=1)
    assert killer.killed, killer.error

    storage = Storage()
    logs = str(output / "_training" / "stage2-s1" / "logs")
    attempts = storage.read_json(join(logs, "attempts.json"))
    assert len(attempts) == 2, attempts
    assert attempts[0]["start_step"] == 0 and attempts[0]["pid"] == killer.killed["pid"]
    resumed_at = attempts[1]["start_step"]
    assert resumed_at >= killer.killed["registered_step"] > 0, "not resumed from the registered checkpoint"
    assert resumed_at % cfg.schedule.checkpoint_every == 0
    assert attempts[1]["pid"] != killer.killed["pid"]
    with pytest.raises(ProcessLookupError):
        os.kill(killer.killed["pid"], 0)

    rows = read_metrics(storage, logs)
    before = [row["step"] for row in rows if row["attempt"] == 0]
    after = [row["step"] for row in rows if row["attempt"] == 1]
    every = cfg.schedule.log_every
    assert before == list(range(every, before[-1] + 1, every)) and before[-1] >= resumed_at
    assert after[0] == resumed_at + every, f"resumed rows start at {after[0]}, not after step {resumed_at}"
    final = SpeakerModel.load(result.models["s1"].model_uri).metadata["training_summary"]["stage2"]["steps"]
    assert after[-1] == final > resumed_at
