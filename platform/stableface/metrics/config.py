"""Settings of video scoring and audits."""

from __future__ import annotations

from dataclasses import dataclass, field

from stableface.face.segments import DEFAULT_MAX_GAP_FRAMES


@dataclass
class MetricsConfig:
    """How one video is scored and which scores get flagged."""

    # Landmark backend (stableface.face.landmarks.make_backend): "mediapipe" (offline) or "fan".
    backend: str = "mediapipe"
    # Faces tracked at once; an audit scores each face it tracks (one row per face).
    max_faces: int = 4
    # Below this fraction of frames with a detected face a video gets "no score" instead of an MSI
    # computed mostly from interpolated landmarks.
    min_face_fraction: float = 0.5
    # MSI needs an acceleration variance over time; shorter videos get "no score".
    min_frames: int = 10
    # MSI is scored per face segment and averaged weighted by length: gaps of at most this many
    # frames without a face are bridged (interpolated) inside a segment, longer ones (cutaways)
    # split the video and are skipped, so a smooth interpolation never stands in for a face.
    max_bridge_frames: int = DEFAULT_MAX_GAP_FRAMES
    # Score at most this many frames per video (None = all); long videos cost time linearly.
    max_frames: int | None = None
    # Videos whose lip or jaw MSI falls below these are flagged in the report. The defaults sit
    # under the real-video band measured on GRID with MediaPipe (lip 0.35-0.72, jaw 0.6-1.3).
    flag_lip_below: float = 0.3
    flag_jaw_below: float = 0.5
    # In a comparison (audit compare_with=<sources>), a video whose lip or jaw MSI is more than this
    # factor above its source's (too still) or below it (too jittery) is flagged, with which way.
    departure_factor: float = 2.0
    # Extra per-video outputs: a vertical-slice image through the mouth (the paper's Figs. 1/7),
    # and the mean CPBD sharpness of sampled frames.
    slice_image: bool = True
    slice_height: int = 128  # crop pixels of the slice image rows
    cpbd: bool = False
    cpbd_every: int = 25  # frames between CPBD samples
    # The project's lip-sync expert (stableface.metrics.lipsync, weights shipped in the package):
    # every scored video's sync confidence and audio offset against its own audio track.
    lipsync: bool = True
    lipsync_weights: str | None = None  # a lip-sync checkpoint URI; None = the shipped weights
    lipsync_max_offset: int = 15  # audio offsets searched either way, in frames
    # Videos whose audio is off by more than this many frames are flagged "audio out of sync"
    # (2 frames = 80 ms at 25 fps; people notice sound 45 ms early or 125 ms late, ITU-R BT.1359),
    # provided the expert is confident enough that the offset means something: its confidence
    # (nats above chance, stableface.metrics.lipsync) is at least this. Held out, 3 % of the lips
    # with another clip's speech reach 0 and 44 of 48 real clips with audio shifted by -8, 0, +8 do.
    flag_offset_frames: int = 2
    flag_offset_min_confidence: float = 0.0
    # Sync-C and LipNet WER run only where their weights are present (see metrics.syncnet/lipnet).
    extras: list[str] = field(default_factory=list)  # subset of ["sync", "wer"]
    weights_dir: str | None = None  # None = $STABLEFACE_WEIGHTS_DIR
