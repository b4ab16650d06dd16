"""The picture docs/faces/two_faces_frame.png: a source with two people (VoxCeleb2 left, grid/s1 right)
and its dub with the s1 speaker model and no face selected: source | dub | where they differ.

    .venv/bin/python docs/faces/two_faces_frame.py MODEL_DIR docs/faces/two_faces_frame.png

MODEL_DIR is an s1 speaker model (the tests' untrained one will do: it paints noise in the mouth,
which shows where the dub paints). The source is built as the tests' ``two_faces`` fixture builds it.
"""

import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from stableface.inference import DubConfig, load_speaker_model, prepare_source
from stableface.inference.pipeline import plan_dub
from stableface.io.audio import read_audio, write_audio
from stableface.io.video import VideoWriter, iter_frames, read_frames

DATA = Path("../shared/data") if Path("../shared/data").is_dir() else Path("/work/shared/data")
model_dir, out = sys.argv[1], Path(sys.argv[2])
grid_clip = sorted((DATA / "grid" / "s1").glob("*.mpg"))[5]
right = list(iter_frames(grid_clip))
left = list(iter_frames(DATA / "voxceleb2" / "Audio_Source_00015.mp4", max_frames=len(right)))
height, grid_w = right[0].shape[:2]
top = (height - left[0].shape[0]) // 2
with tempfile.TemporaryDirectory() as folder:
    video, speech = Path(folder) / "two_faces.mp4", Path(folder) / "fr.wav"
    with VideoWriter(video, fps=25, width=left[0].shape[1] + grid_w, height=height,
                     audio=read_audio(grid_clip, 16_000), crf=12) as writer:  # fmt: skip
        for vox, grid in zip(left, right, strict=True):
            frame = np.zeros((height, left[0].shape[1] + grid_w, 3), np.uint8)
            frame[top : top + vox.shape[0], : vox.shape[1]] = vox
            frame[:, vox.shape[1] :] = grid
            writer.write(frame)
    write_audio(speech, read_audio(DATA / "speech" / "macron_12s.wav", 16_000)[: 2 * 16_000], 16_000)
    model = load_speaker_model(model_dir)
    source = prepare_source(video, model)
    plan = plan_dub(model, video, speech, DubConfig(), source)
    dubbed = np.stack(list(plan.frames()))
    originals = read_frames(video)[plan.renderer.source_index]
changed = np.any(dubbed != originals, axis=-1)  # (N, H, W)
t = int(changed.sum(axis=(1, 2)).argmax())
difference = np.where(changed[t][..., None], 255, 40).astype(np.uint8).repeat(3, axis=-1)
strip = np.concatenate([originals[t], dubbed[t], difference], axis=1)
for i, label in enumerate(("source", "dub (face: auto)", "pixels changed")):
    cv2.putText(
        strip, label, (i * originals.shape[2] + 6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 0), 1
    )
left_w = left[0].shape[1]
print(  # noqa: T201 (a docs script says what it drew)
    f"frame {t}: {int(changed[t].sum())} px changed, {int(changed[:, :, :left_w].sum())} on the left face "
    f"over all {len(dubbed)} frames; chosen face centre x {source.centres[:, 0].mean():.0f}"
)
out.parent.mkdir(parents=True, exist_ok=True)
cv2.imwrite(str(out), cv2.cvtColor(strip, cv2.COLOR_RGB2BGR))
