"""The face-shape raster and the mouth mask: synthetic geometry with known answers, and real GRID faces."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from stableface.face.config import FaceConfig
from stableface.face.face_model import FaceModel, apply_pose
from stableface.face.ibug import LIPS
from stableface.face.landmarks import MediaPipeBackend, track_landmarks
from stableface.face.raster import (
    AMBIENT,
    DIFFUSE,
    LEVELS,
    LIGHT_DIRECTION,
    mouth_mask,
    render_shape,
    render_shapes,
)
from stableface.face.tracking import crop_points, stable_crop_box
from stableface.io.video import iter_frames

CONFIG = FaceConfig()
SIZE = 256
TOWARD_CAMERA = np.array([[0, 1, 2]], np.int32)


def _expected_shade(corners: np.ndarray) -> float:
    """Lambert shade of one triangle (3, 3), computed here independently of the module."""
    normal = np.cross(corners[1] - corners[0], corners[2] - corners[0])
    normal = normal / np.linalg.norm(normal)
    return round((AMBIENT + DIFFUSE * max(0.0, float(normal @ LIGHT_DIRECTION))) * LEVELS) / LEVELS


def _inside_triangle(corners: np.ndarray, size: int) -> np.ndarray:
    """(size, size) bool: pixel centres strictly inside the triangle's x-y projection."""
    ys, xs = np.mgrid[:size, :size].astype(np.float64)
    a, b, c = corners[:, :2]

    def side(p, q):
        return (q[0] - p[0]) * (ys - p[1]) - (q[1] - p[1]) * (xs - p[0])

    s1, s2, s3 = side(a, b), side(b, c), side(c, a)
    return ((s1 > 0) & (s2 > 0) & (s3 > 0)) | ((s1 < 0) & (s2 < 0) & (s3 < 0))


# ------------------------------------------------------------------------------------------ synthetic
def test_one_triangle_fills_its_pixels_with_its_lambert_shade():
    # Counter-clockwise seen from the camera (normal z < 0): x right, y down, z away.
    corners = np.array([[50.0, 50.0, 0.0], [80.0, 160.0, 0.0], [150.0, 60.0, 0.0]])
    assert np.cross(corners[1] - corners[0], corners[2] - corners[0])[2] < 0
    image = render_shape(corners, TOWARD_CAMERA, SIZE)
    assert image.shape == (SIZE, SIZE) and image.dtype == np.float32
    inside = _inside_triangle(corners, SIZE)
    drawn = image > 0
    # Every pixel centre inside is drawn; extra pixels only along the edges (under the perimeter ~ 330 px).
    assert drawn[inside].all()
    assert (drawn & ~inside).sum() < 330
    assert np.unique(image[drawn]) == pytest.approx([_expected_shade(corners)])
    assert image[~drawn].max() == 0.0


def test_back_facing_triangles_are_culled():
    corners = np.array([[50.0, 50.0, 0.0], [150.0, 60.0, 0.0], [80.0, 160.0, 0.0]])  # clockwise: faces away
    assert render_shape(corners, TOWARD_CAMERA, SIZE).max() == 0.0


def test_tilted_triangle_is_darker_by_the_cosine_law():
    flat = np.array([[50.0, 50.0, 0.0], [80.0, 160.0, 0.0], [150.0, 60.0, 0.0]])
    tilted = flat.copy()
    tilted[:, 2] = 0.8 * tilted[:, 0]  # turned about the y axis: the right side recedes
    flat_value = render_shape(flat, TOWARD_CAMERA, SIZE).max()
    tilted_value = render_shape(tilted, TOWARD_CAMERA, SIZE).max()
    assert tilted_value == pytest.approx(_expected_shade(tilted))
    assert AMBIENT < tilted_value < flat_value


@pytest.mark.parametrize("near_first", [True, False])
def test_nearer_triangle_occludes_whatever_the_input_order(near_first):
    far = np.array([[40.0, 40.0, 50.0], [60.0, 200.0, 50.0], [200.0, 50.0, 50.0]])  # flat, 50 px away
    near = np.array([[70.0, 70.0, -60.0], [90.0, 150.0, -40.0], [160.0, 80.0, -20.0]])  # tilted, in front
    vertices = np.concatenate([near, far]) if near_first else np.concatenate([far, near])
    triangles = np.array([[0, 1, 2], [3, 4, 5]], np.int32)
    image = render_shape(vertices, triangles, SIZE)
    overlap = _inside_triangle(near, SIZE) & _inside_triangle(far, SIZE)
    assert overlap.sum() > 1000
    assert np.unique(image[overlap]) == pytest.approx([_expected_shade(near)])
    only_far = _inside_triangle(far, SIZE) & ~cv2.dilate(
        _inside_triangle(near, SIZE).astype(np.uint8), np.ones((3, 3))
    ).astype(bool)
    assert np.unique(image[only_far]) == pytest.approx([_expected_shade(far)])


# ------------------------------------------------------------------------------------------ real faces
@pytest.fixture(scope="module")
def face(grid_clips, shared_data):
    """A model fitted on 4 clips; the held-out clip's detected crop mesh and its reconstruction."""
    backend = MediaPipeBackend()

    def crop_mesh(path):
        track = track_landmarks(iter_frames(path), backend)
        box = stable_crop_box(track.mesh, track.present, CONFIG)
        return crop_points(track.mesh, box), crop_points(track.ibug68, box)

    others = sorted((shared_data / "grid" / "speakers").glob("*.mpg"))
    s1 = np.concatenate([crop_mesh(grid_clips[i])[0] for i in (0, 1)])
    train = [s1, crop_mesh(others[0])[0], crop_mesh(others[1])[0]]
    mesh, ibug = crop_mesh(grid_clips[50])
    backend.close()
    base = FaceModel.from_assets(CONFIG)
    normalised_train = [base.normalise(m)[0] for m in train]
    model = base.fit(normalised_train)
    identity = model.identity_of(normalised_train[0])
    normalised, pose = model.normalise(mesh)
    posed = apply_pose(model.decode(identity, model.encode(normalised, identity)), pose)  # (T, 478, 3)
    return {"model": model, "mesh": mesh, "ibug": ibug, "posed": posed}


def test_raster_overlays_the_detected_face(face):
    """Bounds: >= 99% of the detected iBUG-68 landmarks lie on (or within 1 px of) the raster's
    foreground, and the raster's silhouette overlaps the hull of the detected mesh with IoU > 0.98."""
    model = face["model"]
    rasters = render_shapes(face["posed"], model.triangles, SIZE)  # (T, S, S)
    assert rasters.shape == (len(face["posed"]), SIZE, SIZE)
    foreground = rasters > 0
    assert rasters[foreground].min() >= AMBIENT - 1 / LEVELS and rasters.max() <= 1.0
    covered, total = 0, 0
    for frame, landmarks, mesh in zip(foreground, face["ibug"], face["mesh"], strict=True):
        near = cv2.dilate(frame.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        xy = np.round(landmarks).astype(int)
        covered += int(near[xy[:, 1], xy[:, 0]].sum())
        total += len(xy)
        # Silhouette: the raster with its holes (eyes, mouth) filled, against the detected mesh's hull.
        contours, _ = cv2.findContours(frame.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        silhouette = cv2.drawContours(np.zeros((SIZE, SIZE), np.uint8), contours, -1, 1, cv2.FILLED).astype(
            bool
        )
        hull = cv2.fillConvexPoly(
            np.zeros((SIZE, SIZE), np.uint8), cv2.convexHull(np.round(mesh[:468, :2]).astype(np.int32)), 1
        ).astype(bool)
        assert (silhouette & hull).sum() / (silhouette | hull).sum() > 0.98
    assert covered / total >= 0.99


def test_mouth_mask_covers_the_lips_inside_the_lower_face(face):
    model = face["model"]
    for posed, landmarks in zip(face["posed"][::5], face["ibug"][::5], strict=True):
        mask = mouth_mask(posed, model.mouth_vertices, SIZE)
        assert mask.shape == (SIZE, SIZE) and mask.dtype == bool
        lips = np.round(landmarks[LIPS]).astype(int)
        assert mask[lips[:, 1], lips[:, 0]].all()
        face_area = (render_shape(posed, model.triangles, SIZE) > 0).sum()
        assert 0.25 < mask.sum() / face_area < 0.6  # the lower face, not the whole face or just the lips
        rows = np.flatnonzero(mask.any(axis=1))
        nose_tip_y, chin_y = posed[1, 1], posed[152, 1]
        assert nose_tip_y < rows.min() and abs(rows.max() - chin_y) < 2  # from below the nose to the chin


def test_inputs_are_checked():
    with pytest.raises(ValueError, match=r"vertices: expected an \(N, 3\) array"):
        render_shape(np.zeros((10, 2)), TOWARD_CAMERA, SIZE)
    with pytest.raises(ValueError, match=r"vertices: expected an \(N, 2\) array"):
        mouth_mask(np.zeros(10), np.arange(3), SIZE)
