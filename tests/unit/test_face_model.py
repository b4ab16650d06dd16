"""The linear face model: packaged assets, Procrustes pose, expression bases fitted on real speakers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from stableface.errors import InputError
from stableface.face.build_assets import face_normals, mediapipe_triangles
from stableface.face.config import FaceConfig
from stableface.face.face_model import (
    EYE_CORNERS_OUTER,
    N_SURFACE,
    RIGID_VERTICES,
    FaceModel,
    Pose,
    apply_pose,
    estimate_pose,
    load_assets,
    normalise,
)
from stableface.face.ibug import LIPS, MEDIAPIPE_TO_IBUG68
from stableface.face.landmarks import MediaPipeBackend, track_landmarks
from stableface.face.tracking import crop_points, stable_crop_box
from stableface.io.video import iter_frames

CONFIG = FaceConfig()
TRAIN_S1 = (0, 1, 2, 3)  # GRID s1 clips that enter the fit, as one speaker
TRAIN_OTHERS = (0, 1, 2, 3, 4, 5)  # grid/speakers clips, one speaker each
HELD_OUT_S1 = (45, 80)  # never seen by the fit
INNER_LIP_TOP, INNER_LIP_BOTTOM = 13, 14


def _crop_meshes(paths, backend) -> list[np.ndarray]:
    """MediaPipe meshes (T, 478, 3) of each clip, moved into its stable 256-px crop."""
    meshes = []
    for path in paths:
        track = track_landmarks(iter_frames(path), backend)
        box = stable_crop_box(track.mesh, track.present, CONFIG)
        meshes.append(crop_points(track.mesh, box))
    return meshes


@pytest.fixture(scope="module")
def data(shared_data, grid_clips):
    """Crop-pixel meshes of the training speakers and the held-out clips, and the fitted model."""
    others = sorted((shared_data / "grid" / "speakers").glob("*.mpg"))
    backend = MediaPipeBackend()
    s1_train = _crop_meshes([grid_clips[i] for i in TRAIN_S1], backend)
    others_train = _crop_meshes([others[i] for i in TRAIN_OTHERS], backend)
    held_out = _crop_meshes([grid_clips[i] for i in HELD_OUT_S1], backend)
    backend.close()
    base = FaceModel.from_assets(CONFIG)
    s1_normalised = base.normalise(np.concatenate(s1_train))[0]
    speakers = [s1_normalised] + [base.normalise(mesh)[0] for mesh in others_train]
    model = base.fit(speakers)
    return {"model": model, "s1_identity": model.identity_of(s1_normalised), "held_out": held_out}


# ------------------------------------------------------------------------------------------ assets
def test_packaged_assets_are_a_plausible_face_mesh():
    assets = load_assets()
    canonical, triangles = assets.canonical, assets.triangles
    assert canonical.shape == (478, 3) and canonical.dtype == np.float32
    assert 800 <= len(triangles) <= 950  # MediaPipe's tessellation: 852 triangles on 468 vertices
    assert set(np.unique(triangles)) == set(range(N_SURFACE))
    edges = np.sort(
        np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]]), axis=1
    )
    _, uses = np.unique(edges, axis=0, return_counts=True)
    assert uses.max() == 2  # a manifold: an edge borders at most two triangles
    # Canonical frame: unit eye distance, centred, upright (forehead above chin), frontal (symmetric in x).
    right, left = EYE_CORNERS_OUTER
    assert np.linalg.norm(canonical[left] - canonical[right]) == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(canonical[:N_SURFACE].mean(axis=0), 0.0, atol=1e-5)
    assert canonical[10, 1] < canonical[1, 1] < canonical[152, 1]  # forehead, nose tip, chin (y down)
    assert canonical[1, 2] < canonical[234, 2]  # the nose tip is nearer the camera than the cheek's edge
    assert abs(canonical[:N_SURFACE, 0].max() + canonical[:N_SURFACE, 0].min()) < 0.05
    # Wound toward the camera: 95% of the surface area faces -z.
    normals = face_normals(canonical, triangles)
    areas = np.linalg.norm(normals, axis=1)
    assert areas[normals[:, 2] < 0].sum() > 0.95 * areas.sum()


def test_triangles_are_reproducibly_derived_from_the_mediapipe_tessellation():
    assets = load_assets()
    np.testing.assert_array_equal(mediapipe_triangles(assets.canonical), assets.triangles)


def test_mouth_region_holds_the_lower_face_and_none_of_the_rigid_vertices():
    mouth = load_assets().mouth_vertices
    lips = MEDIAPIPE_TO_IBUG68[LIPS]
    assert set(lips) <= set(mouth)
    assert {152, 17, 58, 288} <= set(mouth)  # chin, below the lower lip, the jaw line at mouth height
    assert not set(RIGID_VERTICES) & set(mouth)
    assert not {33, 133, 362, 263, 159, 145, 468, 473} & set(mouth)  # eyes and irises
    assert 120 < mouth.size < 220


# ------------------------------------------------------------------------------------------ pose
def test_pose_recovers_a_known_similarity_transform():
    canonical = load_assets().canonical
    rotations = Rotation.from_euler("xyz", [[5, -20, 3], [-10, 30, -8], [0, 0, 0]], degrees=True).as_matrix()
    truth = Pose(
        scale=np.array([85.0, 60.0, 100.0], np.float32),
        rotation=rotations.astype(np.float32),
        translation=np.array([[128, 120, 3], [100, 140, -5], [0, 0, 0]], np.float32),
    )
    meshes = apply_pose(canonical, truth)  # (3, 478, 3)
    found = estimate_pose(meshes)
    np.testing.assert_allclose(found.scale, truth.scale, rtol=1e-5)
    np.testing.assert_allclose(found.rotation, truth.rotation, atol=1e-5)
    np.testing.assert_allclose(found.translation, truth.translation, atol=1e-3)
    np.testing.assert_allclose(normalise(meshes, found), np.broadcast_to(canonical, meshes.shape), atol=1e-5)
    np.testing.assert_allclose(Pose.from_array(found.to_array()).rotation, found.rotation)


def test_pose_ignores_the_mouth(data):
    """Moving every non-rigid vertex (jaw drop, lips) leaves the pose exactly unchanged."""
    mesh = data["held_out"][0][:5].copy()  # (5, 478, 3)
    base_pose = estimate_pose(mesh)
    moved = mesh.copy()
    mouth = load_assets().mouth_vertices
    moved[:, mouth, 1] += 15.0  # a 15 px jaw drop at 256 px
    moved_pose = estimate_pose(moved)
    np.testing.assert_array_equal(moved_pose.to_array(), base_pose.to_array())


def test_rigid_vertices_follow_the_head_on_real_clips(data):
    """The speaker's identity, posed per frame, sits on the detected rigid vertices (bound: 1 px mean at 256)."""
    model = data["model"]
    for mesh in data["held_out"]:
        pose = model.pose(mesh)
        posed_identity = apply_pose(data["s1_identity"], pose)
        error = np.linalg.norm(posed_identity[:, RIGID_VERTICES, :2] - mesh[:, RIGID_VERTICES, :2], axis=-1)
        assert error.mean() < 1.0


# ------------------------------------------------------------------------------------------ expression
def test_bases_are_orthonormal_and_ordered(data):
    model = data["model"]
    for basis, variance, n in (
        (model.mouth_basis, model.mouth_variance, CONFIG.n_mouth_components),
        (model.upper_basis, model.upper_variance, CONFIG.n_upper_components),
    ):
        assert basis.shape[0] == n
        np.testing.assert_allclose(basis @ basis.T, np.eye(n), atol=1e-4)
        assert (np.diff(variance) <= 1e-9).all() and variance[-1] > 0
    assert model.expression_dim == 53
    assert model.mouth_basis.shape[1] == 3 * model.mouth_vertices.size
    assert model.upper_basis.shape[1] == 3 * (478 - model.mouth_vertices.size)


def test_expression_reconstructs_held_out_clips(data):
    """encode -> decode -> pose reprojects onto the detected mesh: bound 0.5 px mean, 2 px at the 99th pct (256 px)."""
    model, identity = data["model"], data["s1_identity"]
    for mesh in data["held_out"]:
        normalised, pose = model.normalise(mesh)
        coefficients = model.encode(normalised, identity)
        assert coefficients.shape == (len(mesh), 53) and coefficients.dtype == np.float32
        reconstructed = model.decode(identity, coefficients)  # (T, 478, 3) canonical units
        # In canonical units (eye distance 1): mean vertex error under 0.01.
        assert np.linalg.norm(reconstructed - normalised, axis=-1).mean() < 0.01
        reprojected = apply_pose(reconstructed, pose)
        error = np.linalg.norm(reprojected[..., :2] - mesh[..., :2], axis=-1)  # (T, 478) crop pixels
        assert error.mean() < 0.5 and np.percentile(error, 99) < 2.0
        # Identity alone (no expression) is far worse: the coefficients carry the motion.
        neutral = apply_pose(np.broadcast_to(identity, normalised.shape), pose)
        assert np.linalg.norm(neutral[..., :2] - mesh[..., :2], axis=-1).mean() > 3 * error.mean()


def test_mouth_coefficients_follow_mouth_opening(data):
    """The inner-lip gap is a linear function of the mouth coefficients (R^2 > 0.95), and speech
    moves the mouth coefficients far more than the upper-face ones (bound: 3x the variance)."""
    model, identity = data["model"], data["s1_identity"]
    mesh = np.concatenate(data["held_out"])
    gap = np.linalg.norm(mesh[:, INNER_LIP_TOP, :2] - mesh[:, INNER_LIP_BOTTOM, :2], axis=-1)  # (T,) px
    assert np.ptp(gap) > 5.0  # the clips do open and close the mouth
    coefficients = model.encode(model.normalise(mesh)[0], identity)
    mouth, upper = coefficients[:, model.mouth_slice], coefficients[:, model.upper_slice]
    design = np.concatenate([mouth, np.ones((len(mouth), 1))], axis=1)
    fitted = design @ np.linalg.lstsq(design, gap, rcond=None)[0]
    r_squared = 1.0 - float(np.square(gap - fitted).sum() / np.square(gap - gap.mean()).sum())
    assert r_squared > 0.95
    assert mouth.var(axis=0).sum() > 3.0 * upper.var(axis=0).sum()
    # The leading mouth component alone already tracks the opening.
    assert abs(np.corrcoef(mouth[:, 0], gap)[0, 1]) > 0.7


def test_opening_the_mouth_moves_only_mouth_coefficients(data):
    model, identity = data["model"], data["s1_identity"]
    closed = model.decode(identity, np.zeros(53, np.float32))  # (1, 478, 3) the speaker's mean face
    opened = closed.copy()
    mouth = model.mouth_vertices
    below_lips = mouth[closed[0, mouth, 1] > closed[0, INNER_LIP_BOTTOM, 1] - 1e-3]
    opened[:, below_lips, 1] += 0.1  # lower lip, chin and jaw drop by a tenth of the eye distance
    delta = model.encode(opened, identity)[0]
    assert np.linalg.norm(delta[model.mouth_slice]) > 0.5 * 0.1 * np.sqrt(below_lips.size)
    np.testing.assert_allclose(delta[model.upper_slice], 0.0, atol=1e-6)


def test_encode_decode_is_a_projection(data):
    model, identity = data["model"], data["s1_identity"]
    normalised = model.normalise(data["held_out"][1][:10])[0]
    once = model.decode(identity, model.encode(normalised, identity))
    twice = model.decode(identity, model.encode(once, identity))
    np.testing.assert_allclose(twice, once, atol=1e-5)


# ------------------------------------------------------------------------------------------ persistence, errors
def test_save_and_load_round_trip_locally_and_on_s3(data, tmp_path, s3_bucket, s3_storage_config):
    from stableface.io.storage import Storage

    model = data["model"]
    normalised = model.normalise(data["held_out"][0][:5])[0]
    expected = model.encode(normalised, data["s1_identity"])
    for uri, storage in (
        (str(tmp_path / "face_model.npz"), Storage()),
        (f"{s3_bucket}/models/face.npz", Storage(s3_storage_config)),
    ):
        model.save(uri, storage)
        loaded = FaceModel.load(uri, storage)
        assert loaded.config == model.config
        np.testing.assert_array_equal(loaded.mouth_basis, model.mouth_basis)
        np.testing.assert_array_equal(loaded.triangles, model.triangles)
        np.testing.assert_array_equal(loaded.encode(normalised, data["s1_identity"]), expected)


def test_fit_and_inputs_are_checked(data, tmp_path):
    model = data["model"]
    base = FaceModel.from_assets(CONFIG)
    few = np.broadcast_to(model.canonical, (30, 478, 3))
    with pytest.raises(InputError, match="face model fit: 30 usable frames from 1 speakers, need 200"):
        base.fit([few])
    with pytest.raises(InputError, match="face model fit: 0 usable frames from 0 speakers"):
        base.fit([few[:10]])  # under min_speaker_frames: skipped
    with pytest.raises(RuntimeError, match="no expression bases"):
        base.encode(few, model.canonical)
    with pytest.raises(InputError, match=r"mesh: expected a \(T, 478, 3\)"):
        base.pose(np.zeros((5, 68, 2)))
    with pytest.raises(InputError, match="mesh: mesh holds NaN"):
        base.pose(np.full((2, 478, 3), np.nan))
    with pytest.raises(InputError, match=r"expression coefficients: expected \(T, 53\)"):
        model.decode(model.canonical, np.zeros((2, 50)))
    with pytest.raises(InputError, match=r"identity: expected a \(478, 3\) mean shape"):
        model.encode(few, model.canonical[:468])
    with pytest.raises(InputError, match=r"identity: expected \(478, 3\) or \(2, 478, 3\)"):
        model.decode(np.zeros((3, 478, 3)), np.zeros((2, 53)))
    bogus = tmp_path / "bogus.npz"
    bogus.write_bytes(b"not a zip")
    with pytest.raises(InputError, match=r"bogus\.npz: not a face model file"):
        FaceModel.load(str(bogus))
