"""Where a preprocessed dataset keeps things (local directory or s3:// prefix).

```
<dataset>/
  manifest.json, manifest.csv      every catalog row of every run: status, reason, counts, node
  face_model.npz                   canonical mesh + expression bases shared by all speakers
  speakers/<speaker>/
    speaker.json                   the speaker's manifest; its presence marks the speaker finished
    identity.npy                   (478, 3) mean pose-normalised shape
    videos/<video_id>/
      crops.mp4                    face crops at crop_size (H.264)
      track.npz                    landmarks, crop boxes, pose, audio features (see records.py)
      face.npz                     expression coefficients and mouth masks (speaker stage)
      meta.json                    per-video facts; written last, so it marks the video finished
```
"""

from __future__ import annotations

from dataclasses import dataclass

from stableface.data.catalog import validate_id
from stableface.io.storage import join

MANIFEST_JSON = "manifest.json"
MANIFEST_CSV = "manifest.csv"
FACE_MODEL = "face_model.npz"
SPEAKER_MANIFEST = "speaker.json"
IDENTITY = "identity.npy"
CROPS = "crops.mp4"
TRACK = "track.npz"
FACE = "face.npz"
VIDEO_META = "meta.json"


@dataclass(frozen=True)
class DatasetLayout:
    root: str

    @property
    def manifest_json(self) -> str:
        return join(self.root, MANIFEST_JSON)

    @property
    def manifest_csv(self) -> str:
        return join(self.root, MANIFEST_CSV)

    @property
    def face_model(self) -> str:
        return join(self.root, FACE_MODEL)

    def speaker_dir(self, speaker: str) -> str:
        return join(self.root, "speakers", validate_id(speaker, "speaker id"))

    def speaker_manifest(self, speaker: str) -> str:
        return join(self.speaker_dir(speaker), SPEAKER_MANIFEST)

    def identity(self, speaker: str) -> str:
        return join(self.speaker_dir(speaker), IDENTITY)

    def video_dir(self, speaker: str, video_id: str) -> str:
        return join(self.speaker_dir(speaker), "videos", validate_id(video_id, "video id"))

    def video_file(self, speaker: str, video_id: str, name: str) -> str:
        return join(self.video_dir(speaker, video_id), name)
