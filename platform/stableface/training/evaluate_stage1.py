"""Held-out metrics of audio2expression alone: the predicted mesh against the tracked one, no renderer.

Per clip, the clip's own expression and pose with the mouth replaced by audio2expression's
prediction from the clip's audio (what dubbing does), against the clip's tracked expression:

- ``mesh_open_corr``: correlation over time of the inner-lip gap (iBUG 62-66) with the real one;
- ``mesh_open_amp``: its std over time, predicted / real (1 = as wide a motion as the speaker's);
- ``mesh_nlmd``: lip landmark distance / 256 in the MSI crop;
- ``mesh_lip_msi`` and ``real_lip_msi``: the lip MSI of the two mesh trajectories (higher = less
  acceleration; a mouth that barely moves scores far above real speech), and their ratio
  ``lip_msi_ratio`` (1 = moves like real speech);
- ``silent_frames``: the fraction the silence gate closed (stableface.audio.silence), and
  ``ungated_open_corr`` / ``ungated_open_amp``: the network's own output without the gate;
- with a smoothing network, ``smoothed_lip_msi`` / ``smoothed_open_corr``: the same after
  applying its per-frame weights to the predicted mesh trajectory (what the renderer is fed).

The same function scores every variant, on clips no variant trained on: held-out speakers (all
their clips) and the held-out clips of the training speakers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from stableface.audio.silence import SilenceGateConfig
from stableface.data.layout import FACE, TRACK, DatasetLayout
from stableface.data.records import VideoFace, VideoTrack
from stableface.data.speakers import load_identity, track_pose
from stableface.face.face_model import FaceModel, apply_pose
from stableface.face.ibug import mediapipe_to_ibug68
from stableface.io.storage import Storage
from stableface.metrics.msi import motion_stability
from stableface.metrics.nlmd import nlmd
from stableface.models.smoothing import apply_temporal_kernel
from stableface.training.evaluate import (
    gated_mouth,
    mouth_opening,
    opening_amplitude_ratio,
    opening_correlation,
    predict_mouth,
)

MSI_KEYS = ("mesh_lip_msi", "real_lip_msi", "smoothed_lip_msi")


@dataclass
class HeldoutClip:
    """One clip to score and the group it reports under (e.g. "heldout_speakers", "s1")."""

    group: str
    speaker: str
    video_id: str


def smooth_trajectory(meshes: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(T, N, 3) meshes, (T, K) smoothing weights -> (T, N, 3): the smoothing network's own kernel
    (:func:`stableface.models.smoothing.apply_temporal_kernel`) applied to vertices, not images."""
    smoothed = apply_temporal_kernel(torch.from_numpy(meshes)[None], torch.from_numpy(weights)[None])
    return smoothed[0].numpy().astype(np.float32)


def trajectory_metrics(predicted: np.ndarray, real: np.ndarray) -> dict[str, float]:
    """Metrics of a predicted against the real posed mesh trajectory, both (T, 478, 3)."""
    predicted_lips, real_lips = mediapipe_to_ibug68(predicted), mediapipe_to_ibug68(real)
    predicted_msi = motion_stability(predicted_lips).lip
    real_msi = motion_stability(real_lips).lip
    return {
        "mesh_open_corr": opening_correlation(predicted_lips, real_lips),
        "mesh_open_amp": opening_amplitude_ratio(predicted_lips, real_lips),
        "mesh_nlmd": nlmd(predicted_lips, real_lips),
        "mesh_lip_msi": predicted_msi,
        "real_lip_msi": real_msi,
        "lip_msi_ratio": predicted_msi / real_msi,
    }


def evaluate_clip(
    network: nn.Module,
    track: VideoTrack,
    face: VideoFace,
    face_model: FaceModel,
    identity: np.ndarray,
    device: torch.device,
    smoothing: nn.Module | None = None,
    gate: SilenceGateConfig | None = None,
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Metrics of one clip, and its (T,) predicted and real inner-lip gaps for plots."""
    real_expression = face.expression.astype(np.float32)  # (T, E)
    mouth, weights = gated_mouth(network, track.audio, face_model, identity, device, gate)  # (T, n_mouth)
    driven = real_expression.copy()
    driven[:, face_model.mouth_slice] = mouth
    ungated = real_expression.copy()
    ungated[:, face_model.mouth_slice] = predict_mouth(network, track.audio, device)
    pose = track_pose(track)
    real_mesh = apply_pose(face_model.decode(identity, real_expression), pose)  # (T, 478, 3) crop px
    driven_mesh = apply_pose(face_model.decode(identity, driven), pose)
    ungated_lips = mediapipe_to_ibug68(apply_pose(face_model.decode(identity, ungated), pose))
    real_lips = mediapipe_to_ibug68(real_mesh)
    row = trajectory_metrics(driven_mesh, real_mesh)
    row["silent_frames"] = float((weights > 0.5).mean())
    row["ungated_open_corr"] = opening_correlation(ungated_lips, real_lips)
    row["ungated_open_amp"] = opening_amplitude_ratio(ungated_lips, real_lips)
    curves = {
        "predicted": mouth_opening(mediapipe_to_ibug68(driven_mesh)),
        "real": mouth_opening(mediapipe_to_ibug68(real_mesh)),
    }
    if smoothing is not None:
        smoothing.eval()
        with torch.no_grad():
            kernel = (
                smoothing.weights(torch.from_numpy(driven)[None].to(device))[0].float().cpu().numpy()
            )  # (T, K)
        smoothed = smooth_trajectory(driven_mesh, kernel)
        smoothed_row = trajectory_metrics(smoothed, real_mesh)
        row["smoothed_lip_msi"] = smoothed_row["mesh_lip_msi"]
        row["smoothed_open_corr"] = smoothed_row["mesh_open_corr"]
        curves["smoothed"] = mouth_opening(mediapipe_to_ibug68(smoothed))
    return row, curves


def evaluate_stage1(
    network: nn.Module,
    clips: list[HeldoutClip],
    face_model: FaceModel,
    storage: Storage,
    layout: DatasetLayout,
    device: torch.device | None = None,
    smoothing: nn.Module | None = None,
) -> tuple[dict[str, Any], dict[str, dict[str, np.ndarray]]]:
    """Scores every clip; returns ``{"groups": {group: means}, "per_clip": rows}`` and the curves
    per ``<speaker>/<video_id>``."""
    device = device or torch.device("cpu")
    network = network.to(device).eval()
    identities: dict[str, np.ndarray] = {}
    rows, curves = [], {}
    for clip in clips:
        if clip.speaker not in identities:
            identities[clip.speaker] = load_identity(storage, layout, clip.speaker)
        track = VideoTrack.load(storage, layout.video_file(clip.speaker, clip.video_id, TRACK))
        face = VideoFace.load(storage, layout.video_file(clip.speaker, clip.video_id, FACE))
        row, clip_curves = evaluate_clip(
            network, track, face, face_model, identities[clip.speaker], device, smoothing
        )
        rows.append({"group": clip.group, "speaker": clip.speaker, "video_id": clip.video_id, **row})
        curves[f"{clip.speaker}/{clip.video_id}"] = clip_curves
    return {"groups": group_means(rows), "per_clip": rows}, curves


def group_means(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per group (and "all"): the mean of every metric over clips (NaNs skipped) and the clip count.

    MSI is averaged on a log scale (geometric mean): it is a reciprocal variance, and one still clip
    would otherwise outweigh all the others."""
    groups: dict[str, list[dict[str, Any]]] = {"all": rows}
    for row in rows:
        groups.setdefault(row["group"], []).append(row)
    summary = {}
    for name, members in groups.items():
        keys = [k for k, v in members[0].items() if isinstance(v, float)]
        means: dict[str, float] = {"clips": float(len(members))}
        for key in keys:
            values = np.array([m[key] for m in members if not math.isnan(m.get(key, math.nan))])
            if values.size == 0:
                continue
            log_scale = key in MSI_KEYS or key == "lip_msi_ratio"
            means[key] = float(np.exp(np.log(values).mean()) if log_scale else values.mean())
        summary[name] = means
    return summary
