"""Settings of the 3D face representation: landmark backend, crops, and the linear face model."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from stableface.face.segments import DEFAULT_MAX_GAP_FRAMES


class ExpressionBasis(StrEnum):
    """Where a dataset's expression basis (face_model.npz) comes from (``preprocess``)."""

    packaged = "packaged"  # the pretrained stage 1's (stableface/pretrained/face_model.npz)
    fit = "fit"  # fitted over this dataset's speakers


@dataclass
class FaceConfig:
    """How faces are tracked, cropped and encoded. Pixel figures are in crop pixels unless named ``frame``."""

    # Landmark backend (stableface.face.landmarks.make_backend); only "mediapipe" gives the 3D mesh.
    backend: str = "mediapipe"

    # Side of the square face crop fed to the renderer, in pixels (the paper renders at 256x256).
    crop_size: int = 256
    # Crop side / face size, where face size is the video's median of the larger side of the mesh's
    # x-y bounding box (forehead to chin, ear to ear). 1.5 keeps the whole head plus a margin of
    # background, so neck and hair edges stay inside the crop the renderer has to reproduce.
    crop_scale: float = 1.5
    # Gaussian sigma, in video frames, of the temporal smoothing of the crop centre. 5 frames
    # (0.2 s at 25 fps) removes landmark jitter but follows deliberate head moves.
    box_smoothing_frames: float = 5.0

    # Faces tracked at once (stableface.face.tracked_faces): with several on screen, preprocessing
    # takes the catalog row's `face` (default: the largest, refused when two are alike).
    max_faces: int = 4

    # The caller rejects a video with NoFaceFound when fewer than this fraction of frames has a face.
    min_face_fraction: float = 0.5
    # Gaps of at most this many frames without a face (a detector blink) are bridged inside a face
    # segment; longer ones (cutaways, the speaker turned away) split the video, and their frames
    # never enter a training window (stableface.face.segments).
    max_bridge_frames: int = DEFAULT_MAX_GAP_FRAMES

    # Expression = [mouth | upper] PCA coefficients; 32 + 21 = 53, like DECA's 50 expression + 3 jaw.
    n_mouth_components: int = 32
    n_upper_components: int = 21

    # Basis fitting limits. fit() accumulates second moments speaker by speaker (memory does not
    # grow with the catalog); it refuses fewer usable frames than min_fit_frames in all (a 53-d
    # basis needs many more frames than dimensions), and skips a speaker with fewer than
    # min_speaker_frames, whose mean shape (their identity) would absorb their expressions.
    min_fit_frames: int = 200
    min_speaker_frames: int = 25
