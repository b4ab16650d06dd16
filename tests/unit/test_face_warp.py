"""The mesh-guided texture warp: pixels go where an independent computation of the same motion
puts them, an unchanged mesh gives the texture back, and the renderer takes the warp as input."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from stableface.face.face_model import N_VERTICES
from stableface.face.warp import WarpTexture, sample_coordinates, warp_image, warp_texture
from stableface.models import compose_model_config
from stableface.models.checks import TensorShapeError
from stableface.models.renderer import Renderer

SIZE = 64


def _texture(seed: int = 0) -> np.ndarray:
    """(S, S, 3) uint8 smooth random texture (bilinear sampling of it is well conditioned)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (8, 8, 3)).astype(np.uint8)
    return cv2.resize(coarse, (SIZE, SIZE), interpolation=cv2.INTER_CUBIC)


def _mesh(seed: int = 0, count: int = 60) -> np.ndarray:
    """(count, 2) points scattered over the image centre, plus the corners of a square around them."""
    rng = np.random.default_rng(seed)
    square = np.array([[12, 12], [52, 12], [12, 52], [52, 52]], np.float32)
    return np.concatenate([square, rng.uniform(14, 50, (count, 2)).astype(np.float32)])


def _inner(mask: np.ndarray, margin: int) -> np.ndarray:
    """The mask eroded by ``margin`` pixels (away from the hull edge, where sampling replicates)."""
    kernel = np.ones((2 * margin + 1, 2 * margin + 1), np.uint8)
    return cv2.erode(mask.astype(np.uint8), kernel).astype(bool)


def test_an_unchanged_mesh_gives_the_texture_back_and_nothing_outside_it():
    image, mesh = _texture(), _mesh()
    warped = warp_image(image, mesh, mesh)
    _, _, inside = sample_coordinates(mesh, mesh, (SIZE, SIZE))
    assert inside[20:45, 20:45].all() and not inside[:10].any()  # the hull of the square
    np.testing.assert_array_equal(warped[inside], image[inside])
    assert not warped[~inside].any()  # 0 where no triangle of the target mesh is


def test_a_translated_mesh_moves_the_pixels_by_the_same_whole_pixels():
    image, mesh = _texture(1), _mesh(1)
    shift = np.array([5, -3], np.float32)  # x right, y up
    warped = warp_image(image, mesh, mesh + shift)
    _, _, inside = sample_coordinates(mesh, mesh + shift, (SIZE, SIZE))
    expected = np.zeros_like(image)
    expected[: SIZE - 3, 5:] = image[3:, : SIZE - 5]  # target (x, y) = source (x - 5, y + 3)
    np.testing.assert_array_equal(warped[inside], expected[inside])


def test_an_affine_motion_of_the_mesh_samples_the_texture_as_cv2_warp_affine_does():
    image, mesh = _texture(2), _mesh(2)
    angle = np.deg2rad(8.0)
    scale = 1.1
    linear = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    affine = np.concatenate([linear, (np.array([32.0, 32.0]) - linear @ [32.0, 32.0])[:, None]], axis=1)
    target = mesh @ linear.T.astype(np.float32) + affine[:, 2].astype(np.float32)  # (N, 2)
    warped = warp_image(image, mesh, target)
    _, _, inside = sample_coordinates(mesh, target, (SIZE, SIZE))
    expected = cv2.warpAffine(image, affine, (SIZE, SIZE), flags=cv2.INTER_LINEAR)  # dst(p) = src(A^-1 p)
    core = _inner(inside, 2)
    assert core.sum() > 800
    difference = np.abs(warped[core].astype(int) - expected[core].astype(int))
    assert difference.max() <= 2  # cv2's fixed-point bilinear weights against ours


def test_a_moved_vertex_carries_the_texture_under_it_and_the_far_field_stays():
    image, mesh = _texture(3), np.round(_mesh(3))
    target = mesh.copy()
    moved = int(np.argmin(np.linalg.norm(mesh - 32.0, axis=1)))  # the vertex nearest the centre
    target[moved] += [4, 2]
    warped = warp_image(image, mesh, target)
    x, y = target[moved].astype(int)
    sx, sy = mesh[moved].astype(int)
    np.testing.assert_array_equal(warped[y, x], image[sy, sx])  # the vertex's own pixel moved with it
    *_, inside = sample_coordinates(mesh, target, (SIZE, SIZE))
    still = inside & (np.hypot(*np.mgrid[0:SIZE, 0:SIZE][::-1] - target[moved][:, None, None]) > 30)
    assert still.any()
    np.testing.assert_array_equal(warped[still], image[still])  # triangles far from it do not move


def test_warp_texture_gives_one_uint8_frame_per_mesh_and_rejects_bad_shapes():
    image, mesh = _texture(4), _mesh(4)
    meshes = np.stack([mesh, mesh + 1.0, mesh - 2.0])  # (3, N, 2)
    frames = warp_texture(WarpTexture(image, mesh), np.concatenate([meshes, np.zeros((3, len(mesh), 1))], 2))
    assert frames.shape == (3, SIZE, SIZE, 3) and frames.dtype == np.uint8
    with pytest.raises(ValueError, match="target vertices"):
        warp_image(image, mesh, mesh[:-1])
    with pytest.raises(ValueError, match="texture image"):
        WarpTexture(image.astype(np.float32), mesh)


def test_the_renderer_takes_the_warped_texture_as_input_and_keeps_the_texture_in_its_state():
    config = compose_model_config("tiny", "full")
    config.renderer.composite_background = True
    config.renderer.warped_texture = True
    size = config.renderer.image_size
    torch.manual_seed(0)
    renderer = Renderer(config.renderer, config.audio_encoder).eval()
    frames = 3
    background = torch.rand(1, frames, 3, size, size) * 2 - 1
    background[..., size // 2 :, size // 4 : 3 * size // 4] = -1.0  # the blanked mouth region
    mask = (background == -1.0).all(dim=2, keepdim=True).expand_as(background)
    shape = torch.rand(1, frames, 1, size, size)
    audio = torch.randn(1, frames, config.audio_encoder.window, config.audio_encoder.n_mels)
    warped = torch.rand(1, frames, 3, size, size) * 2 - 1
    with pytest.raises(TensorShapeError, match="warped texture"):
        renderer(background, shape, audio)
    with torch.no_grad():
        out = renderer(background, shape, audio, warped)
        other = renderer(background, shape, audio, -warped)
    assert out.shape == (1, frames, 3, size, size)
    assert (out[mask] - other[mask]).abs().mean() > 1e-3  # the warp changes the mouth
    assert torch.equal(out[~mask], background[~mask])  # and nothing outside it
    texture = WarpTexture(_texture(5) if size == SIZE else cv2.resize(_texture(5), (size, size)),
                          np.random.default_rng(0).uniform(0, size, (N_VERTICES, 2)).astype(np.float32))  # fmt: skip
    renderer.set_texture(texture)
    rebuilt = Renderer(config.renderer, config.audio_encoder)
    rebuilt.load_state_dict(renderer.state_dict())  # the speaker model carries the texture frame
    source = rebuilt.warp_source()
    np.testing.assert_array_equal(source.image, texture.image)
    np.testing.assert_array_equal(source.vertices, texture.vertices)
    plain = Renderer(compose_model_config("tiny", "full").renderer, config.audio_encoder)
    assert "texture" not in plain.state_dict() and plain.warp_source() is None  # off: unchanged checkpoints
    with pytest.raises(TensorShapeError, match="warped_texture = false"):
        plain.set_texture(texture)
