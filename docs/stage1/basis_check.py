"""Is a new speaker's expression in the shared basis? Leave-speakers-out check of the expression basis.

Refits the basis (stableface.face.face_model.FaceModel.fit, the preprocess fit) on the fit samples
of every speaker of a dataset except the held-out ones, then, for each held-out speaker's clips,
compares how much of the mouth displacement (pose-normalised mesh minus the speaker's identity =
the mean of their normalised meshes) each basis explains: the basis fitted with them (the shipped
one) and the one fitted without them. Also the principal angles between the two mouth subspaces.

    .venv/bin/python docs/stage1/basis_check.py outputs/datasets/all grid_bbaf2n ... hd_retalking-face-1
"""

from __future__ import annotations

import sys

import numpy as np

from stableface.data.layout import TRACK, DatasetLayout
from stableface.data.records import VideoTrack, load_arrays
from stableface.data.sequences import speaker_videos
from stableface.data.speakers import FIT_SAMPLE, load_identity, track_pose
from stableface.face.face_model import FaceModel, normalise
from stableface.io.storage import Storage, join
from stableface.training.data import dataset_speakers


def explained(model: FaceModel, normalised: np.ndarray, identity: np.ndarray) -> tuple[float, float]:
    """(fraction of mouth displacement energy the basis keeps, RMS mouth residual in canonical units)."""
    displacement = (normalised - identity)[:, model.mouth_vertices].reshape(len(normalised), -1)  # (T, 3M)
    projected = displacement @ model.mouth_basis.T @ model.mouth_basis
    residual = displacement - projected
    energy = float(np.square(displacement).sum())
    rms = float(np.sqrt(np.square(residual).reshape(len(normalised), -1, 3).sum(-1).mean()))
    return 1.0 - float(np.square(residual).sum()) / energy, rms


def main(dataset: str, heldout: list[str]) -> None:
    storage, layout = Storage(), DatasetLayout(dataset)
    shipped = FaceModel.load(layout.face_model, storage)
    speakers = dataset_speakers(storage, layout)
    samples = (load_arrays(storage, join(layout.speaker_dir(s), FIT_SAMPLE))["normalised"]
               for s in speakers if s not in heldout)  # fmt: skip
    without = FaceModel.from_assets(shipped.config).fit(samples)
    cosines = np.linalg.svd(shipped.mouth_basis @ without.mouth_basis.T, compute_uv=False)
    print(f"mouth subspaces: principal-angle cosines min {cosines.min():.3f}, mean {cosines.mean():.3f}")  # noqa: T201
    print("speaker                      kept(with)  kept(without)  rms(with)  rms(without)")  # noqa: T201
    for speaker in [*heldout, "s1"]:
        identity = load_identity(storage, layout, speaker)
        meshes = []
        for video_id in speaker_videos(storage, layout, speaker)[:4]:
            track = VideoTrack.load(storage, layout.video_file(speaker, video_id, TRACK))
            meshes.append(normalise(track.mesh, track_pose(track)))
        normalised = np.concatenate(meshes)
        kept_with, rms_with = explained(shipped, normalised, identity)
        kept_without, rms_without = explained(without, normalised, identity)
        print(f"{speaker:28s} {kept_with:10.3f} {kept_without:14.3f} {rms_with:10.4f} {rms_without:13.4f}")  # noqa: T201


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
