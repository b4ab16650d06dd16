"""Reference frames: the speaker's widest-open training mouths, chosen before stage 2 and kept in the model."""

from __future__ import annotations

import numpy as np
import torch

from stableface.config import compose
from stableface.data.layout import DatasetLayout
from stableface.data.sequences import to_unit_range
from stableface.face.face_model import apply_pose
from stableface.io.storage import Storage
from stableface.speaker_model import SpeakerModel
from stableface.training.data import load_face_model, speaker_split, stage2_dataset
from stableface.training.driver import InProcess, train
from stableface.training.pipeline import erosion_of, model_config_of
from stableface.training.references import choose_references

UPPER_INNER_LIP, LOWER_INNER_LIP = 13, 14  # MediaPipe face-mesh vertices, middle of the inner lips


def _cfg(dataset: str, output, *overrides: str):
    return compose(
        "train",
        [f"dataset_uri={dataset}", f"output_uri={output}", "speaker=s1", "model=tiny", "schedule=tiny",
         "model.renderer.reference_frames=2", *overrides],
    )  # fmt: skip


def test_references_are_the_widest_open_mouths_of_distinct_training_videos(grid_dataset, tmp_path):
    cfg = _cfg(grid_dataset, tmp_path)
    storage, layout = Storage(), DatasetLayout(grid_dataset)
    model_config = model_config_of(cfg)
    face_model = load_face_model(storage, layout, model_config)
    dataset = stage2_dataset(storage, layout, "s1", cfg.schedule, model_config, erosion_of(cfg), face_model)
    frames, names = choose_references(dataset.videos, dataset.model, dataset.identity, 2)

    # Independently: the inner-lip gap of every trainable frame, straight from the posed meshes.
    best = {}
    for video in dataset.videos:
        mesh = apply_pose(face_model.decode(dataset.identity, video.expression), video.pose)
        gap = np.linalg.norm(mesh[:, UPPER_INNER_LIP, :2] - mesh[:, LOWER_INNER_LIP, :2], axis=-1)
        gap[~video.trainable] = -np.inf
        best[video.video_id] = (int(np.argmax(gap)), float(gap.max()))
    ranked = sorted(best, key=lambda v: -best[v][1])
    assert names == [f"{v}@{best[v][0]}" for v in ranked[:2]]
    train_ids, heldout = speaker_split(storage, layout, "s1", cfg.schedule)
    assert {name.split("@")[0] for name in names} <= set(train_ids) and not set(heldout) & set(best)
    by_id = {video.video_id: video for video in dataset.videos}
    for frame, video_id in zip(frames, ranked[:2], strict=True):
        np.testing.assert_array_equal(frame, by_id[video_id].frames[best[video_id][0]])


def test_the_trained_speaker_model_carries_its_reference_frames(grid_dataset, tmp_path):
    cfg = _cfg(grid_dataset, tmp_path)
    train(cfg, InProcess(device="cpu"))
    model = SpeakerModel.load(str(tmp_path / "s1"))
    storage, layout = Storage(), DatasetLayout(grid_dataset)
    model_config = model_config_of(cfg)
    face_model = load_face_model(storage, layout, model_config)
    dataset = stage2_dataset(storage, layout, "s1", cfg.schedule, model_config, erosion_of(cfg), face_model)
    frames, _ = choose_references(dataset.videos, dataset.model, dataset.identity, 2)
    references = model.networks.renderer.references  # (2, 3, S, S)
    assert torch.equal(references.cpu(), to_unit_range(frames))  # a buffer: training leaves it as chosen


def test_the_trained_speaker_model_carries_its_warp_texture_the_widest_open_training_mouth(
    grid_dataset, tmp_path
):
    cfg = _cfg(
        grid_dataset, tmp_path, "model.renderer.reference_frames=0", "model.renderer.warped_texture=true"
    )
    train(cfg, InProcess(device="cpu"))
    source = SpeakerModel.load(str(tmp_path / "s1")).networks.renderer.warp_source()
    storage, layout = Storage(), DatasetLayout(grid_dataset)
    model_config = model_config_of(cfg)
    face_model = load_face_model(storage, layout, model_config)
    dataset = stage2_dataset(storage, layout, "s1", cfg.schedule, model_config, erosion_of(cfg), face_model)
    # Independently: the widest inner-lip gap over every trainable frame of the training videos.
    best = (-np.inf, None, 0, None)
    for video in dataset.videos:
        mesh = apply_pose(face_model.decode(dataset.identity, video.expression), video.pose)
        gap = np.linalg.norm(mesh[:, UPPER_INNER_LIP, :2] - mesh[:, LOWER_INNER_LIP, :2], axis=-1)
        gap[~video.trainable] = -np.inf
        frame = int(np.argmax(gap))
        if gap[frame] > best[0]:
            best = (gap[frame], video, frame, mesh[frame])
    _, video, frame, mesh = best
    np.testing.assert_array_equal(source.image, video.frames[frame])
    np.testing.assert_allclose(source.vertices, mesh[:, :2], atol=1e-4)
    # Training feeds the same frame, warped to each window frame's mesh.
    dataset.texture = source
    item = dataset[0]
    assert item["warped"].shape == item["target"].shape
