"""Per-video extraction: decode, track, crop, pose and audio features -> the dataset's video files.

Two streaming decode passes keep memory independent of video length: the first tracks landmarks
(the crop box needs the whole track to be temporally smooth), the second writes the crops.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stableface.audio.features import audio_features
from stableface.data.layout import CROPS, TRACK, VIDEO_META, DatasetLayout
from stableface.data.records import VideoTrack
from stableface.errors import InputError, NoAudioStream, StorageUnavailable, UnreadableMedia
from stableface.face.config import FaceConfig
from stableface.face.face_model import estimate_pose
from stableface.face.face_tracks import FaceSelection
from stableface.face.landmarks import LandmarkBackend
from stableface.face.segments import SegmentSummary, face_segments
from stableface.face.tracked_faces import pick_face, track_faces
from stableface.face.tracking import crop_image, crop_points, require_faces, stable_crop_box
from stableface.io.audio import check_not_silent, read_audio
from stableface.io.storage import Storage
from stableface.io.video import VideoWriter, iter_frames, probe_video
from stableface.status import RowStatus

logger = logging.getLogger(__name__)


@dataclass
class ExtractOptions:
    """How much of a video to take and how to store its crops."""

    max_frames: int | None = None  # None = the whole video
    crop_crf: int = 16
    crop_preset: str = "ultrafast"


def extract_video(
    local_path: Path,
    source_uri: str,
    face: FaceConfig,
    audio_config,
    backend: LandmarkBackend,
    crops_path: Path,
    options: ExtractOptions | None = None,
    selection: FaceSelection | None = None,
) -> tuple[VideoTrack, dict[str, Any]]:
    """Process one local video file; writes the crops mp4 to ``crops_path``; returns track + facts.

    With several faces on screen the training data is the face ``selection`` names (default: the
    largest, refused when two are alike, :func:`stableface.face.tracked_faces.pick_face`); the
    facts record its average box. Raises :class:`InputError` subclasses naming ``source_uri`` for
    unusable inputs.
    """
    options = options or ExtractOptions()
    selection = selection or FaceSelection()
    info = probe_video(local_path)
    if not info.has_audio:
        raise NoAudioStream(source_uri, "no audio stream (the audio features need the speech)")
    samples = read_audio(local_path, audio_config.sample_rate)  # (S,) float32 16 kHz mono
    check_not_silent(samples, source_uri)

    if not backend.provides_mesh:
        raise InputError(source_uri, f"landmark backend '{backend.name}' gives no 3D mesh; use 'mediapipe'")
    faces = track_faces(iter_frames(local_path, max_frames=options.max_frames), backend)
    n_frames = faces.n_frames
    if n_frames == 0:
        raise UnreadableMedia(source_uri, "no frames decoded")
    require_faces(faces.any_face(), face, source_uri)
    chosen = pick_face(faces, selection, source_uri)
    track = chosen.landmark_track(n_frames, with_mesh=True)
    require_faces(track.present, face, source_uri)
    box = stable_crop_box(track.mesh, track.present, face, source=source_uri)
    mesh = crop_points(track.mesh, box)  # (T, 478, 3) crop pixels
    pose = estimate_pose(mesh)
    features = audio_features(samples, n_frames, info.fps, audio_config)  # (T, W, M)

    affines = box.affines()  # (T, 2, 3)
    written = 0
    with VideoWriter(crops_path, fps=info.fps, width=box.crop_size, height=box.crop_size, crf=options.crop_crf,
                     preset=options.crop_preset) as writer:  # fmt: skip
        for frame in iter_frames(local_path, max_frames=n_frames):
            writer.write(crop_image(frame, affines[written], box.crop_size))
            written += 1
    if written != n_frames:
        raise UnreadableMedia(source_uri, f"second decode pass gave {written} frames, the first {n_frames}")

    segments = face_segments(track.present, face.max_bridge_frames)
    video_track = VideoTrack(
        crop_boxes=np.concatenate([box.centres, np.full((n_frames, 1), box.side, np.float32)], axis=1),
        present=track.present,
        ibug68=track.ibug68,
        mesh=mesh.astype(np.float32),
        pose_scale=pose.scale,
        pose_rotation=pose.rotation,
        pose_translation=pose.translation,
        audio=features.astype(np.float16),
        in_segment=segments.inside(),
    )
    facts = {
        "n_frames": n_frames,
        "frames_without_face": int((~track.present).sum()),
        # what training may not use: frames outside face segments, and why (see face.segments)
        "face_segments": len(segments.segments),
        "frames_bridged": segments.n_bridged,
        "frames_lost": segments.n_skipped,
        "frames_lost_reason": _lost_reason(track.present, segments, face.max_bridge_frames),
        "face": selection.text,
        "face_box": [round(v, 1) for v in (chosen.box.x0, chosen.box.y0, chosen.box.x1, chosen.box.y1)],
        "faces_tracked": len(faces.tracks),
        "fps": float(info.fps),
        "fps_fraction": f"{info.fps.numerator}/{info.fps.denominator}",
        "width": info.width,
        "height": info.height,
        "duration_s": round(n_frames / float(info.fps), 3),
        "crop_side_px": round(float(box.side), 2),
        "crop_size": box.crop_size,
    }
    return video_track, facts


def _lost_reason(present: np.ndarray, segments: SegmentSummary, max_gap: int) -> str:
    """Why frames were left out of training, e.g. "75 frames in 1 gap of > 5 frames without a face"."""
    if not segments.n_skipped:
        return ""
    parts = []
    found = np.flatnonzero(present)
    edges = int(found[0]) + int(present.shape[0] - 1 - found[-1])
    gaps = segments.n_skipped - edges
    if gaps:
        n_gaps = len(segments.segments) - 1
        parts.append(
            f"{gaps} frames in {n_gaps} gap{'s' if n_gaps != 1 else ''} of > {max_gap} frames without a face"
        )
    if edges:
        parts.append(f"{edges} frames without a face before the first or after the last face")
    return "; ".join(parts)


def extract_video_row(
    entry: dict[str, Any], cfg, storage: Storage, layout: DatasetLayout, backend: LandmarkBackend
) -> dict[str, Any]:
    """Extract one catalog entry into the dataset; always returns a manifest row, never raises.

    A video whose ``meta.json`` exists was finished by an earlier (possibly killed) run and is
    not redone unless ``cfg.overwrite``.
    """
    speaker, video_id, uri = entry["speaker"], entry["video_id"], entry["video_uri"]
    row: dict[str, Any] = {"speaker": speaker, "video_id": video_id, "video_uri": uri}
    meta_uri = layout.video_file(speaker, video_id, VIDEO_META)
    started = time.monotonic()
    try:
        if not cfg.overwrite and storage.exists(meta_uri):
            return {**storage.read_json(meta_uri), "resumed": True}
        selection = FaceSelection.parse(entry.get("face"), f"{uri} face")
        with (
            storage.local_copy(uri) as local,
            storage.writable_local(layout.video_file(speaker, video_id, CROPS)) as crops,
        ):
            track, facts = extract_video(
                local, uri, cfg.face, cfg.audio, backend, crops,
                ExtractOptions(cfg.max_frames_per_video, cfg.crop_crf, cfg.crop_preset), selection,
            )  # fmt: skip
            track.save(storage, layout.video_file(speaker, video_id, TRACK))
        seconds = time.monotonic() - started
        row.update(facts, status=RowStatus.OK, reason="", seconds=round(seconds, 2))
        storage.write_json(meta_uri, row)
        logger.info("%s/%s: %d frames in %.1f s (%.0f frames/s)", speaker, video_id, facts["n_frames"], seconds,
                    facts["n_frames"] / max(seconds, 1e-9))  # fmt: skip
    except InputError as error:
        row.update(status=RowStatus.FAILED, reason=str(error), seconds=round(time.monotonic() - started, 2))
        logger.warning("%s/%s failed: %s", speaker, video_id, error)
    except StorageUnavailable:
        raise  # the store, not the video: preprocessing stops and a rerun skips finished speakers
    except Exception as error:  # a batch job records the failure and carries on
        logger.exception("%s/%s: unexpected error", speaker, video_id)
        row.update(
            status=RowStatus.FAILED,
            reason=f"{uri}: internal error {type(error).__name__}: {error}",
            seconds=round(time.monotonic() - started, 2),
        )
    return row
