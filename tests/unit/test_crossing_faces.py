"""Two real faces passing each other: each face track keeps its person.

The fixture composes a VoxCeleb2 speaker and a grid/s1 face (real clips) on a grey 720x240 canvas,
moving horizontally in opposite directions at about 7 px per frame so that they cross half way;
the face in front hides the other for about 14 frames. A variant also hides the VoxCeleb2 face for
8 frames before the crossing (a detector losing a face).
"""

from __future__ import annotations

import numpy as np
import pytest

from stableface.face.face_tracks import Box, TrackLinker
from stableface.face.landmarks import MediaPipeBackend
from stableface.face.tracked_faces import track_faces
from stableface.io.video import VideoWriter, iter_frames

VOX = "voxceleb2/Audio_Source_00015.mp4"  # 224x224, face centred near (108, 92)
GRID_CLIP = 5
GRID_PATCH = (slice(74, 274), slice(62, 262))  # 200x200 around the grid/s1 face (centre near (100, 100))
WIDTH, HEIGHT = 720, 240
VOX_TOP, GRID_TOP = 8, 20
HIDDEN = range(6, 14)  # frames without the VoxCeleb2 face in the "lost" variant


def _compose(shared_data, grid_clips, path, vox_in_front: bool, lose_vox: bool) -> np.ndarray:
    """Writes the video; returns the true face centres' x, (2, T): VoxCeleb2 then GRID."""
    grid = list(iter_frames(grid_clips[GRID_CLIP]))
    vox = list(iter_frames(shared_data / VOX, max_frames=len(grid)))
    n = len(grid)
    vox_x = np.linspace(0, WIDTH - 224, n).round().astype(int)
    grid_x = np.linspace(WIDTH - 200, 0, n).round().astype(int)
    with VideoWriter(path, fps=25, width=WIDTH, height=HEIGHT, crf=12) as writer:
        for t in range(n):
            frame = np.full((HEIGHT, WIDTH, 3), 90, np.uint8)
            layers = [
                ("vox", lambda f, t=t: f.__setitem__((slice(VOX_TOP, VOX_TOP + 224), slice(vox_x[t], vox_x[t] + 224)), vox[t])),
                ("grid", lambda f, t=t: f.__setitem__((slice(GRID_TOP, GRID_TOP + 200), slice(grid_x[t], grid_x[t] + 200)), grid[t][GRID_PATCH])),
            ]  # fmt: skip
            for name, draw in layers if not vox_in_front else layers[::-1]:
                if not (name == "vox" and lose_vox and t in HIDDEN):
                    draw(frame)
            writer.write(frame)
    return np.stack([vox_x + 108, grid_x + 100]).astype(np.float64)


@pytest.fixture(scope="module")
def backend():
    backend = MediaPipeBackend(max_faces=4)
    yield backend
    backend.close()


@pytest.mark.parametrize(
    ("vox_in_front", "lose_vox"),
    [(False, False), (True, False), (False, True)],
    ids=["grid-front", "vox-front", "lost"],
)
def test_each_track_keeps_its_person_through_the_crossing(
    shared_data, grid_clips, backend, tmp_path, vox_in_front, lose_vox
):
    path = tmp_path / "crossing.mp4"
    truth = _compose(shared_data, grid_clips, path, vox_in_front, lose_vox)  # (2 people, T)
    faces = track_faces(iter_frames(path), backend)
    assert len(faces.tracks) == 2, faces.describe()  # neither person's track was split
    people = set()
    for track in faces.tracks:
        centres = np.array([Box.of_points(face.mesh).centre[0] for face in track.faces])  # (n,)
        frames = np.array(track.frames)
        nearest = np.argmin(np.abs(truth[:, frames] - centres[None]), axis=0)  # (n,) whose face it is
        assert (nearest == nearest[0]).all(), (
            f"track {track.track_id} swaps people at frames {frames[nearest != nearest[0]]}"
        )
        assert np.abs(truth[nearest[0], frames] - centres).max() < 40  # and it is really on that face
        people.add(int(nearest[0]))
        # most of the clip: the one behind is hidden for about 14 frames (and 8 more when it is lost)
        assert track.n_frames >= 75 - 16 - (len(HIDDEN) if lose_vox else 0)
    assert people == {0, 1}


def test_a_face_hidden_behind_another_comes_back_on_its_course_not_on_the_other_face():
    linker = TrackLinker()
    left, right = Box(0, 0, 100, 140), Box(300, 0, 400, 140)
    for step in range(6):  # both move 10 px a frame towards each other
        assert linker.assign([left.shifted(10 * step), right.shifted(-10 * step)]) == [0, 1]
    for step in range(6, 16):  # the left face is behind the right one
        assert linker.assign([right.shifted(-10 * step)]) == [1]
    # It comes out 160 px on, beside the right face's last box: it continues track 0, not a new one.
    assert linker.assign([right.shifted(-160), left.shifted(160)]) == [1, 0]
    assert linker.n_tracks == 2
