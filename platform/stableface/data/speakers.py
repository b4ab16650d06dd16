"""Speaker-level preprocessing: identity, the shared expression basis, coefficients and masks."""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np

from stableface.data.layout import FACE, TRACK, DatasetLayout
from stableface.data.records import VideoFace, VideoTrack, load_arrays, save_arrays
from stableface.errors import InputError
from stableface.face.config import ExpressionBasis
from stableface.face.face_model import FaceModel, Pose, apply_pose, normalise
from stableface.face.raster import mouth_masks
from stableface.io.storage import Storage, join
from stableface.pretrained import packaged_face_model_uri
from stableface.status import RowStatus

logger = logging.getLogger(__name__)

FIT_SAMPLE = "fit_sample.npz"
FIT_FRAMES_PER_SPEAKER = 2_000  # random frames per speaker that enter the shared basis fit
SAMPLE_SEED = 0


def track_pose(track: VideoTrack) -> Pose:
    return Pose(track.pose_scale, track.pose_rotation, track.pose_translation)


def speaker_identity_row(
    rows: list[dict[str, Any]], cfg, storage: Storage, layout: DatasetLayout
) -> dict[str, Any]:
    """The speaker's identity (mean normalised mesh) and a random frame sample for the basis fit.

    ``rows`` are the speaker's per-video manifest rows (ok and failed); returns one speaker row
    carrying them along as JSON for the encode stage.
    """
    speaker = rows[0]["speaker"]
    ok_rows = [r for r in rows if r.get("status") == RowStatus.OK]
    # Every outcome has the same keys: Ray Data keeps one schema per dataset.
    result: dict[str, Any] = {"speaker": speaker, "rows_json": json.dumps(rows, default=str), "n_frames": 0}
    if not ok_rows:
        return {**result, "status": RowStatus.FAILED, "reason": "no usable video for this speaker"}
    rng = np.random.default_rng(SAMPLE_SEED)
    total = np.zeros((478, 3), np.float64)
    n_frames = 0
    samples = []
    per_video = max(1, FIT_FRAMES_PER_SPEAKER // len(ok_rows))
    for row in ok_rows:
        track = VideoTrack.load(storage, layout.video_file(speaker, row["video_id"], TRACK))
        normalised = normalise(track.mesh, track_pose(track))  # (T, 478, 3) canonical frame
        total += normalised.sum(axis=0, dtype=np.float64)
        n_frames += normalised.shape[0]
        pick = rng.choice(normalised.shape[0], size=min(per_video, normalised.shape[0]), replace=False)
        samples.append(normalised[np.sort(pick)])
    identity = (total / n_frames).astype(np.float32)  # (478, 3)
    storage.write_bytes(layout.identity(speaker), _npy_bytes(identity))
    save_arrays(storage, join(layout.speaker_dir(speaker), FIT_SAMPLE), normalised=np.concatenate(samples))
    return {**result, "status": RowStatus.OK, "reason": "", "n_frames": n_frames}


def _npy_bytes(array: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def load_identity(storage: Storage, layout: DatasetLayout, speaker: str) -> np.ndarray:
    import io

    return np.load(io.BytesIO(storage.read_bytes(layout.identity(speaker))), allow_pickle=False)


def fit_or_load_face_model(
    identity_rows: list[dict[str, Any]], cfg, storage: Storage, layout: DatasetLayout
) -> tuple[str | None, str]:
    """The dataset's face model URI, fitting it from this run's speakers if the dataset has none.

    Returns ``(uri, "")`` or ``(None, reason)`` when no model can be fitted.
    """
    if storage.exists(layout.face_model) and not cfg.overwrite:
        logger.info("reusing the dataset's expression basis %s", layout.face_model)
        return layout.face_model, ""
    if ExpressionBasis(cfg.expression_basis) is ExpressionBasis.packaged:
        return copy_packaged_basis(cfg, storage, layout), ""
    speakers = [row["speaker"] for row in identity_rows if row.get("status") == RowStatus.OK]
    samples = (
        load_arrays(storage, join(layout.speaker_dir(speaker), FIT_SAMPLE))["normalised"]
        for speaker in speakers
    )
    try:
        model = FaceModel.from_assets(cfg.face).fit(samples)
    except InputError as error:
        logger.error("cannot fit the expression basis: %s", error)
        return None, f"expression basis could not be fitted: {error}"
    model.save(layout.face_model, storage)
    logger.info("fitted the shared expression basis on %d speakers -> %s", len(speakers), layout.face_model)
    return layout.face_model, ""


def copy_packaged_basis(cfg, storage: Storage, layout: DatasetLayout) -> str:
    """The pretrained stage 1's expression basis becomes the dataset's (checked against ``cfg.face``)."""
    uri = packaged_face_model_uri()
    model = FaceModel.load(uri, Storage())
    wanted = (cfg.face.n_mouth_components, cfg.face.n_upper_components)
    if (model.n_mouth, model.n_upper) != wanted:
        raise InputError(
            "face.n_mouth_components / face.n_upper_components",
            f"{wanted} differ from the packaged basis's {(model.n_mouth, model.n_upper)}; "
            "use expression_basis=fit for other sizes",
        )
    storage.write_bytes(layout.face_model, Storage().read_bytes(uri))
    logger.info("expression basis: the packaged one (%s) -> %s", uri, layout.face_model)
    return layout.face_model


def encode_video(
    track: VideoTrack, identity: np.ndarray, model: FaceModel, crop_size: int
) -> tuple[VideoFace, float]:
    """Expression coefficients and mouth masks of one video; also the mean reconstruction error in px."""
    pose = track_pose(track)
    normalised = normalise(track.mesh, pose)  # (T, 478, 3)
    expression = model.encode(normalised, identity)  # (T, E)
    reconstructed = apply_pose(model.decode(identity, expression), pose)  # (T, 478, 3) crop px
    error_px = float(np.linalg.norm(reconstructed[..., :2] - track.mesh[..., :2], axis=-1).mean())
    masks = mouth_masks(reconstructed, model.mouth_vertices, crop_size)  # (T, S, S) bool
    return VideoFace.from_masks(expression, masks), error_px


def encode_speaker_row(
    speaker_row: dict[str, Any],
    cfg,
    storage: Storage,
    layout: DatasetLayout,
    face_model: tuple[str | None, str],
    node: str,
) -> list[dict[str, Any]]:
    """Write expression + masks for each of the speaker's videos and the speaker manifest."""
    speaker = speaker_row["speaker"]
    rows = json.loads(speaker_row["rows_json"])
    face_model_uri, fit_reason = face_model
    status, reason = speaker_row.get("status", RowStatus.FAILED), speaker_row.get("reason", "")
    if status == RowStatus.OK and face_model_uri is None:
        status, reason = RowStatus.FAILED, fit_reason
    if status == RowStatus.OK:
        model = FaceModel.load(face_model_uri, storage)
        identity = load_identity(storage, layout, speaker)
        for row in rows:
            if row.get("status") != RowStatus.OK:
                continue
            try:
                track = VideoTrack.load(storage, layout.video_file(speaker, row["video_id"], TRACK))
                face, error_px = encode_video(
                    track, identity, model, int(row.get("crop_size") or cfg.face.crop_size)
                )
                face.save(storage, layout.video_file(speaker, row["video_id"], FACE))
                row.update(reconstruction_error_px=round(error_px, 3), encode_node=node)
            except InputError as error:
                row.update(status=RowStatus.FAILED, reason=str(error))
    else:
        for row in rows:
            if row.get("status") == RowStatus.OK:
                row.update(status=RowStatus.FAILED, reason=f"speaker {speaker}: {reason}")
    ok = [r for r in rows if r.get("status") == RowStatus.OK]
    manifest = {
        "speaker": speaker,
        "status": RowStatus.OK if ok else RowStatus.FAILED,
        "reason": "" if ok else (reason or "no usable video for this speaker"),
        "n_videos": len(rows),
        "n_ok": len(ok),
        "n_failed": len(rows) - len(ok),
        "n_frames": int(sum(int(r.get("n_frames") or 0) for r in ok)),
        "identity": layout.identity(speaker) if ok else None,
        "face_model": face_model_uri,
        "videos": rows,
    }
    storage.write_json(layout.speaker_manifest(speaker), manifest)
    logger.info("speaker %s: %d/%d videos ok, %d frames", speaker, len(ok), len(rows), manifest["n_frames"])
    return rows
