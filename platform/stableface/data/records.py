"""Per-video arrays of a preprocessed dataset, and their (de)serialisation as npz through Storage."""

from __future__ import annotations

import io
from dataclasses import MISSING, dataclass, fields

import numpy as np

from stableface.errors import InputError
from stableface.face.segments import DEFAULT_MAX_GAP_FRAMES, face_segments
from stableface.io.storage import Storage


def save_arrays(storage: Storage, uri: str, **arrays: np.ndarray) -> None:
    """Write named arrays as one compressed npz (atomically, local or s3://)."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    storage.write_bytes(uri, buffer.getvalue())


def load_arrays(storage: Storage, uri: str) -> dict[str, np.ndarray]:
    raw = storage.read_bytes(uri)
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (ValueError, OSError) as error:
        raise InputError(uri, f"not a readable npz array file ({error})") from error


@dataclass
class VideoTrack:
    """What the per-video stage extracts: geometry in crop space plus aligned audio features.

    T is the number of decoded video frames; S is the dataset's crop size in pixels.
    """

    crop_boxes: (
        np.ndarray
    )  # (T, 3) float32 crop box per frame in source-frame pixels: centre x, centre y, side
    present: np.ndarray  # (T,) bool, False where no face was detected (geometry bridged there)
    ibug68: np.ndarray  # (T, 68, 2) float32 iBUG-68 landmarks in source-frame pixels
    mesh: np.ndarray  # (T, 478, 3) float32 MediaPipe mesh in crop pixels (x right, y down, z depth)
    pose_scale: np.ndarray  # (T,) float32 similarity scale: canonical -> crop pixels
    pose_rotation: np.ndarray  # (T, 3, 3) float32
    pose_translation: np.ndarray  # (T, 3) float32
    audio: np.ndarray  # (T, W, M) float16 log-mel windows, one per video frame
    # (T,) bool, frames inside a face segment (short gaps bridged, long ones not): the only frames a
    # training window may hold. None in datasets written before segments: every present-bridged frame.
    in_segment: np.ndarray | None = None

    @property
    def n_frames(self) -> int:
        return int(self.present.shape[0])

    def trainable(self) -> np.ndarray:
        """(T,) bool: frames a training window may contain."""
        if self.in_segment is not None:
            return self.in_segment.astype(bool)
        return face_segments(self.present, DEFAULT_MAX_GAP_FRAMES).inside()

    def save(self, storage: Storage, uri: str) -> None:
        arrays = {f.name: getattr(self, f.name) for f in fields(self)}
        save_arrays(storage, uri, **{name: array for name, array in arrays.items() if array is not None})

    @classmethod
    def load(cls, storage: Storage, uri: str) -> VideoTrack:
        arrays = load_arrays(storage, uri)
        missing = [f.name for f in fields(cls) if f.name not in arrays and f.default is MISSING]
        if missing:
            raise InputError(uri, f"track file lacks arrays: {', '.join(missing)}")
        return cls(**{f.name: arrays[f.name] for f in fields(cls) if f.name in arrays})


@dataclass
class VideoFace:
    """What the speaker stage adds once the shared expression basis exists."""

    expression: np.ndarray  # (T, E) float32 coefficients, mouth components first
    mouth_mask: np.ndarray  # (T, S, S // 8) uint8 np.packbits of the (T, S, S) mouth-region masks
    mask_size: np.ndarray  # () int, S

    def masks(self) -> np.ndarray:
        """Unpacked masks, (T, S, S) bool."""
        size = int(self.mask_size)
        return np.unpackbits(self.mouth_mask, axis=-1, count=size).astype(bool)

    @classmethod
    def from_masks(cls, expression: np.ndarray, masks: np.ndarray) -> VideoFace:
        return cls(
            expression=expression.astype(np.float32),
            mouth_mask=np.packbits(masks.astype(bool), axis=-1),
            mask_size=np.array(masks.shape[-1]),
        )

    def save(self, storage: Storage, uri: str) -> None:
        save_arrays(storage, uri, **{f.name: getattr(self, f.name) for f in fields(self)})

    @classmethod
    def load(cls, storage: Storage, uri: str) -> VideoFace:
        arrays = load_arrays(storage, uri)
        return cls(**{f.name: arrays[f.name] for f in fields(cls)})
