"""The lip-sync expert: network shapes, checkpoints, the shipped weights, and the scoring arithmetic."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stableface.errors import InputError
from stableface.metrics.lipsync import (
    SyncExpert,
    default_weights,
    distance_matrix,
    lip_features,
    score_from_distances,
    shift_audio,
)
from stableface.metrics.video import drift_message, flag_reasons
from stableface.models.checks import TensorShapeError
from stableface.models.config import LipSyncConfig
from stableface.models.lipsync import LipSyncNet, load_lipsync, save_lipsync
from stableface.training.sync import contrastive_loss, roc_auc


def test_streams_embed_every_window_frame_span_as_unit_vectors():
    config = LipSyncConfig()
    model = LipSyncNet(config).eval()
    lips, windows = torch.randn(2, 30, 40), torch.randn(2, 30, 16, 80)
    visual, audio = model(lips, windows)
    assert visual.shape == audio.shape == (2, 30 - config.window + 1, config.embedding_dim)
    assert torch.allclose(visual.norm(dim=-1), torch.ones(2, 26), atol=1e-5)
    # Valid convolutions: embedding 0 depends on frames 0..4 only.
    changed = lips.clone()
    changed[:, config.window :] += 5.0
    again, _ = model(changed, windows)
    assert torch.allclose(again[:, 0], visual[:, 0]) and not torch.allclose(again[:, 1], visual[:, 1])


def test_wrong_input_shapes_and_configs_are_named():
    model = LipSyncNet(LipSyncConfig())
    with pytest.raises(TensorShapeError, match="lip features"):
        model(torch.randn(1, 20, 30), torch.randn(1, 20, 16, 80))
    with pytest.raises(TensorShapeError, match="audio windows"):
        model(torch.randn(1, 20, 40), torch.randn(1, 20, 12, 80))
    with pytest.raises(ValueError, match="window must be 3, 5, 7"):
        LipSyncConfig(window=4)


def test_checkpoint_carries_its_config(tmp_path):
    config = LipSyncConfig(window=3, hidden=32, embedding_dim=16)
    model = LipSyncNet(config).eval()
    uri = str(tmp_path / "expert.pt")
    save_lipsync(uri, model, {"note": "test"})
    loaded, extra = load_lipsync(uri)
    assert loaded.config == config and extra == {"note": "test"}
    lips, windows = torch.randn(1, 12, 40), torch.randn(1, 12, 16, 80)
    with torch.no_grad():
        for a, b in zip(model(lips, windows), loaded(lips, windows), strict=True):
            assert torch.allclose(a, b, atol=5e-3)  # weights are stored in fp16
    (tmp_path / "other.pt").write_bytes(b"garbage")
    with pytest.raises(InputError, match="not a readable torch checkpoint"):
        load_lipsync(str(tmp_path / "other.pt"))


def test_the_shipped_weights_load_and_say_how_they_were_made():
    path = default_weights()
    assert path.is_file() and path.stat().st_size < 3 * 2**20  # a few MB at most
    model, extra = load_lipsync(str(path))
    assert isinstance(model, LipSyncNet) and not model.training
    held_out = extra["held_out"]
    assert held_out["clips"] >= 15 and held_out["speakers"] >= 3
    assert held_out["offset_within_1_frame"] >= 0.9 and held_out["auc_in_sync_vs_mismatched"] >= 0.95
    assert extra["training"]["steps"] > 0


def _face(n_frames: int, rng) -> np.ndarray:
    """A synthetic iBUG-68 track: a fixed face whose lips open and close."""
    base = rng.uniform(100, 200, size=(68, 2))
    base[36:42] = np.array([80.0, 100.0]) + rng.normal(0, 1, (6, 2))  # eyes level, far apart
    base[42:48] = np.array([220.0, 100.0]) + rng.normal(0, 1, (6, 2))
    base[48] = [120, 200]  # mouth corners 60 px apart
    base[54] = [180, 200]
    track = np.repeat(base[None], n_frames, axis=0)
    track[:, 57, 1] += 10 * np.sin(np.arange(n_frames) / 3)  # lower lip moving
    return track


def test_lip_features_ignore_head_position_size_and_roll():
    rng = np.random.default_rng(0)
    track = _face(40, rng)
    features = lip_features(track)
    angle = np.deg2rad(12)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = 1.7 * track @ rotation.T + np.array([300.0, -40.0])
    assert np.allclose(lip_features(moved), features, atol=1e-4)
    assert np.abs(features).max() > 0.1  # the moving lip is there
    with pytest.raises(InputError, match="NaN"):
        lip_features(np.full((5, 68, 2), np.nan))


def test_distance_matrix_matches_a_direct_computation():
    torch.manual_seed(1)
    visual = torch.nn.functional.normalize(torch.randn(50, 8), dim=-1)
    audio = torch.nn.functional.normalize(torch.randn(58, 8), dim=-1)  # 4 spans before and after
    scored = np.ones(50, bool)
    scored[20:23] = False
    distances = distance_matrix(visual, audio, scored, max_offset=4)
    frames = [t for t in range(50) if scored[t]]
    expected = [
        [np.linalg.norm(visual[t].numpy() - audio[t + 4 + k].numpy()) for k in range(-4, 5)] for t in frames
    ]
    assert distances.shape == (47, 9) and np.allclose(distances, expected, atol=1e-5)
    with pytest.raises(ValueError, match="audio embeddings"):
        distance_matrix(visual, audio[:50], scored, max_offset=4)


def test_delayed_audio_gives_a_positive_offset_and_the_confidence_of_its_softmax():
    # Audio span s + 3 equals lip span s: what the lips do at t is heard at t + 3.
    torch.manual_seed(2)
    visual = torch.nn.functional.normalize(torch.randn(48, 16), dim=-1)
    audio = torch.nn.functional.normalize(torch.randn(60, 16), dim=-1)  # K = 6 spans either side
    audio[6 + 3 : 6 + 3 + 48] = visual
    distances = distance_matrix(visual, audio, np.ones(48, bool), max_offset=6)  # (48, 13)
    inside = np.ones(distances.shape, bool)
    score = score_from_distances(distances, inside, scale=10.0, fps=25.0)
    assert score.offset_frames == 3 and score.offset_ms == pytest.approx(120.0)
    curve = distances.mean(axis=0)
    assert score.margin == pytest.approx(np.median(curve) - curve.min())
    assert score.min_distance == pytest.approx(0.0, abs=1e-5)
    # Confidence: log(13) + mean over frames of log softmax_k(10 * cosine)[offset +3].
    cosine = torch.einsum("td,tkd->tk", visual, audio[torch.arange(48)[:, None] + torch.arange(13)])
    log_p = torch.log_softmax(10.0 * cosine.double(), dim=1)[:, 6 + 3]
    assert score.confidence == pytest.approx(float(log_p.mean()) + np.log(13), abs=1e-4)
    assert 0 < score.confidence < np.log(13)
    # Frames whose audio at the offset lies beyond the track are not judged.
    inside[:10, 6 + 3] = False
    partial = score_from_distances(distances, inside, scale=10.0, fps=25.0)
    assert partial.confidence == pytest.approx(float(log_p[10:].mean()) + np.log(13), abs=1e-4)
    # Audio unrelated to the lips: below chance, the frames prefer scattered offsets.
    unrelated = torch.nn.functional.normalize(torch.randn(60, 16), dim=-1)
    noise = distance_matrix(visual, unrelated, np.ones(48, bool), max_offset=6)
    assert score_from_distances(noise, np.ones(noise.shape, bool), 10.0, 25.0).confidence < 0


def test_shift_audio_delays_and_advances_with_silence():
    windows = np.arange(10, dtype=np.float32)[:, None, None] * np.ones((1, 2, 3), np.float32)
    delayed = shift_audio(windows, 3, silence=-9.0)
    assert (delayed[:3] == -9).all() and (delayed[3:, 0, 0] == np.arange(7)).all()
    advanced = shift_audio(windows, -2, silence=-9.0)
    assert (advanced[:8, 0, 0] == np.arange(2, 10)).all() and (advanced[8:] == -9).all()


def test_flags_name_the_drift_with_its_sign():
    row = {"status": "ok", "msi_lip": 0.5, "msi_jaw": 0.8, "fps": 25.0, "lipsync_confidence": 0.4}
    assert flag_reasons({**row, "lipsync_offset_frames": 2}, 0.3, 0.5, 2, 0.0) == []
    assert flag_reasons({**row, "lipsync_offset_frames": 8}, 0.3, 0.5, 2, 0.0) == [
        "audio out of sync by +8 frames (+320 ms, sound late)"
    ]
    assert flag_reasons({**row, "lipsync_offset_frames": -5}, 0.3, 0.5, 2, 0.0) == [
        "audio out of sync by -5 frames (-200 ms, sound early)"
    ]
    # A score below chance (another clip's speech, a still mouth) is not trusted to flag; None
    # switches the sync flag off.
    assert (
        flag_reasons({**row, "lipsync_offset_frames": 8, "lipsync_confidence": -0.3}, 0.3, 0.5, 2, 0.0) == []
    )
    assert flag_reasons({**row, "lipsync_offset_frames": 8}, 0.3, 0.5, None, 0.0) == []
    assert drift_message(-3, 30.0) == "audio out of sync by -3 frames (-100 ms, sound early)"


def test_roc_auc_against_pairwise_counting():
    assert roc_auc(np.array([3.0, 4.0]), np.array([1.0, 2.0])) == 1.0
    assert roc_auc(np.array([1.0, 3.0]), np.array([2.0, 2.0])) == 0.5
    assert roc_auc(np.array([2.0]), np.array([2.0])) == 0.5


def test_contrastive_loss_is_low_for_aligned_embeddings_and_high_for_shuffled():
    torch.manual_seed(0)
    audio = torch.nn.functional.normalize(torch.randn(4, 16, 32), dim=-1)  # (B, C + 2K, D), K = 5
    aligned = audio[:, 5:11]  # lips equal to their partner audio spans
    good = contrastive_loss(aligned, audio, 5, torch.tensor(np.log(50.0)))
    shuffled = contrastive_loss(aligned.flip(0), audio, 5, torch.tensor(np.log(50.0)))
    assert good["accuracy"] == 1.0 and good["total"] < 0.1
    assert shuffled["accuracy"] == 0.0 and shuffled["total"] > 3.0


def test_expert_scores_a_real_clip_and_its_delayed_audio(shared_data):
    """The shipped expert on a GRID clip it never trained on: offset near 0, and +6 (+-1) with the
    audio delayed by 6 frames."""
    from stableface.audio.features import audio_features
    from stableface.face.landmarks import make_backend, track_landmarks
    from stableface.io.audio import read_audio
    from stableface.io.video import iter_frames

    _, extra = load_lipsync(str(default_weights()))
    clip = next(c for c in extra["held_out"]["held_out_clips"] if c.startswith("s1/"))
    path = shared_data / "grid" / "s1" / f"{clip.split('/')[1]}.mpg"
    backend = make_backend("mediapipe")
    try:
        track = track_landmarks(iter_frames(path), backend)
    finally:
        backend.close()
    expert = SyncExpert.load()
    windows = audio_features(read_audio(path), len(track.ibug68), 25.0, expert.audio_config)
    assert abs(expert.score(track.ibug68, windows, 25.0).offset_frames) <= 1
    delayed = shift_audio(windows, 6, expert.audio_config.silence_value)
    assert abs(expert.score(track.ibug68, delayed, 25.0).offset_frames - 6) <= 1
    with pytest.raises(InputError, match="too few for a sync score"):
        expert.score(track.ibug68[:10], windows[:10], 25.0)


def test_in_sync_clips_score_above_the_same_lips_with_other_clips_speech(shared_data):
    """Calibration across clips, on held-out GRID clips of 6 speakers (5 never seen): every clip in
    sync scores above chance and above its lips with the other clips' speech, and the in-sync
    scores stand above the mismatched ones pooled over all clips (ROC AUC), not only within a clip.

    "Other speech" is a sentence with another first word (GRID's command: bin, lay, place, set; the
    file name's first letter): "bin blue in f one again" under the lips of "bin blue at f two now" is
    nearly the same speech in the same rhythm, and the expert rightly finds it close to in sync."""
    from stableface.audio.features import audio_features
    from stableface.face.landmarks import make_backend, track_landmarks
    from stableface.io.audio import read_audio
    from stableface.io.video import iter_frames

    _, extra = load_lipsync(str(default_weights()))
    grid = shared_data / "grid"
    held_out = [key.split("/") for key in extra["held_out"]["held_out_clips"]]
    paths = [grid / "speakers" / f"{v}.mpg" for s, v in held_out if s.startswith("grid_")]
    paths += [grid / "s1" / f"{v}.mpg" for s, v in held_out if s == "s1"][:3]
    expert = SyncExpert.load()
    backend = make_backend("mediapipe")
    try:
        tracks = [track_landmarks(iter_frames(path), backend).ibug68 for path in paths]
    finally:
        backend.close()
    audio = [
        audio_features(read_audio(path), len(track), 25.0, expert.audio_config)
        for path, track in zip(paths, tracks, strict=True)
    ]
    n_frames = min(len(track) for track in tracks)
    in_sync, mismatched = [], []
    for row, track in enumerate(tracks):
        own = expert.score(track[:n_frames], audio[row][:n_frames], 25.0).confidence
        others = [
            expert.score(track[:n_frames], audio[other][:n_frames], 25.0).confidence
            for other in range(len(paths))
            if paths[other].stem[0] != paths[row].stem[0]
        ]
        assert own > 0 and own > max(others), (paths[row].stem, own, others)
        in_sync.append(own)
        mismatched += others
    assert len(paths) == 8 and roc_auc(np.array(in_sync), np.array(mismatched)) >= 0.95


def _random_face_model(seed: int = 0):
    from stableface.face.face_model import FaceModel

    model = FaceModel.from_assets()
    rng = np.random.default_rng(seed)
    mouth = np.linalg.qr(rng.normal(size=(3 * len(model.mouth_vertices), model.n_mouth)))[0].T
    upper = np.linalg.qr(rng.normal(size=(3 * len(model.upper_vertices), model.n_upper)))[0].T
    model.mouth_basis, model.upper_basis = mouth.astype(np.float32), upper.astype(np.float32)
    return model


def test_sync_loss_sees_the_lips_the_metric_sees_and_trains_only_the_mouth():
    from stableface.face.ibug import mediapipe_to_ibug68
    from stableface.losses.sync import ExpressionSyncLoss

    face_model = _random_face_model()
    expert = LipSyncNet(LipSyncConfig())
    loss = ExpressionSyncLoss(face_model, expert, max_shift=3)
    mouth = torch.randn(2, 20, face_model.n_mouth) * 0.02
    expression = np.concatenate([mouth[0].numpy(), np.zeros((20, face_model.n_upper), np.float32)], axis=1)
    # The same lips through the face model's own decoder and the tracked-landmark features.
    ibug = mediapipe_to_ibug68(face_model.decode(face_model.canonical, expression))  # (20, 68, 2)
    assert np.allclose(loss.lip_features(mouth)[0].numpy(), lip_features(ibug), atol=1e-4)

    mouth.requires_grad_(True)
    value = loss(mouth, torch.randn(2, 20, 16, 80))
    value.backward()
    assert value.ndim == 0 and mouth.grad.abs().sum() > 0
    assert all(p.grad is None for p in expert.parameters())  # the expert stays as it is
    with pytest.raises(ValueError, match="spans per sequence"):
        loss(mouth[:, :8], torch.randn(2, 8, 16, 80))


def test_stage1_trains_with_the_sync_loss_switched_on():
    from stableface.losses.sync import ExpressionSyncLoss
    from stableface.models.config import ModelConfig
    from stableface.models.networks import build_audio2expression
    from stableface.training.config import Stage1Config
    from stableface.training.loop import WorkerContext
    from stableface.training.stage1 import Stage1Trainer

    torch.manual_seed(0)
    model = build_audio2expression(ModelConfig())
    loss = ExpressionSyncLoss(_random_face_model(), LipSyncNet(LipSyncConfig()), max_shift=3)
    trainer = Stage1Trainer(model, Stage1Config(sync_weight=0.5), WorkerContext(), sync_loss=loss)
    batch = {"audio": torch.randn(2, 20, 16, 80), "mouth": torch.randn(2, 20, 32) * 0.01}
    before = [p.detach().clone() for p in model.parameters()]
    metrics = trainer.train_step(batch)
    assert metrics["loss/sync"] > 0
    assert metrics["loss/total"] == pytest.approx(
        metrics["loss/l1"] + metrics["loss/velocity"] + 0.5 * metrics["loss/sync"], rel=1e-5
    )
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
