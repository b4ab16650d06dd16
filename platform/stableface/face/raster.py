"""The face-shape image (the posed mesh, shaded) and the mouth-region mask, in pure numpy/cv2.

Input vertices are in crop (image) pixels: x right, y down, z away from the camera in the same
pixel scale (see :mod:`stableface.face.face_model`). Projection is orthographic (drop z), the
same weak-perspective model the MediaPipe mesh itself uses. Pixel centres sit at integer
coordinates, as in cv2.

Shading is Lambertian on per-face normals with one directional light at the camera, slightly
above; occlusion is resolved by the painter's algorithm (triangles filled far to near by
their mean depth) after back-face culling, which is exact for a face mesh that does not
intersect itself. The mouth opening (between the inner lips) is a hole in the mesh, so it shows
as background: the renderer sees how far the mouth is open.
"""

from __future__ import annotations

import cv2
import numpy as np

AMBIENT = 0.25  # brightness of a surface facing away from the light (foreground is never 0)
DIFFUSE = 0.75  # AMBIENT + DIFFUSE = 1 for a surface facing the light
# Unit vector toward the light: from the camera (-z) and a little above (-y).
LIGHT_DIRECTION = np.array([0.0, -0.35, -1.0]) / np.linalg.norm([0.0, -0.35, -1.0])
SUBPIXEL_BITS = 4  # cv2 fixed-point vertex precision: 1/16 px
LEVELS = 255  # shading is quantised to 8 bits while filling (faster cv2 path), returned as float32


def _size_hw(size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    height, width = size
    return int(height), int(width)


def _check_vertices(vertices: np.ndarray, min_dims: int) -> np.ndarray:
    vertices = np.asarray(vertices, dtype=np.float32)
    if vertices.ndim != 2 or vertices.shape[1] < min_dims:
        raise ValueError(f"vertices: expected an (N, {min_dims}) array in crop pixels, got {vertices.shape}")
    return vertices


def render_shape(vertices: np.ndarray, triangles: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Rasterise one posed mesh (N, 3) with triangles (F, 3) to a (H, W) float32 image in [0, 1].

    Background is 0, the face is AMBIENT..1. Triangles must be wound counter-clockwise as seen
    from the camera (the packaged triangles are).
    """
    vertices = _check_vertices(vertices, 3)
    height, width = _size_hw(size)
    corners = vertices[triangles]  # (F, 3 corners, 3 xyz)
    normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])  # (F, 3)
    facing = normals[:, 2] < 0  # toward the camera, which looks along +z
    corners, normals = corners[facing], normals[facing]
    unit_normals = normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)  # (F', 3)
    shade = AMBIENT + DIFFUSE * np.clip(unit_normals @ LIGHT_DIRECTION, 0.0, 1.0)  # (F',)
    far_to_near = np.argsort(-corners[:, :, 2].mean(axis=1), kind="stable")  # painter's order
    fixed_point = np.round(corners[far_to_near, :, :2] * (1 << SUBPIXEL_BITS)).astype(np.int32)  # (F', 3, 2)
    levels = np.round(shade[far_to_near] * LEVELS).tolist()
    image = np.zeros((height, width), np.uint8)  # (H, W)
    fill = cv2.fillConvexPoly
    for polygon, level in zip(fixed_point, levels, strict=True):
        fill(image, polygon, level, cv2.LINE_8, SUBPIXEL_BITS)
    return image.astype(np.float32) * (1.0 / LEVELS)


def render_shapes(vertices: np.ndarray, triangles: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Rasterise each frame's posed mesh (T, N, 3) -> (T, H, W) float32."""
    return np.stack([render_shape(frame, triangles, size) for frame in vertices])


def mouth_mask(vertices: np.ndarray, mouth_vertices: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """The mouth-region mask (H, W) bool: the filled convex hull of the mouth-region vertices' x, y."""
    vertices = _check_vertices(vertices, 2)
    height, width = _size_hw(size)
    points = np.round(vertices[mouth_vertices, :2] * (1 << SUBPIXEL_BITS)).astype(np.int32)  # (M, 2)
    hull = cv2.convexHull(points)  # (H, 1, 2)
    mask = np.zeros((height, width), np.uint8)
    cv2.fillConvexPoly(mask, hull, 1, cv2.LINE_8, SUBPIXEL_BITS)
    return mask.astype(bool)


def mouth_masks(vertices: np.ndarray, mouth_vertices: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Mouth masks of each frame's posed mesh (T, N, >=2) -> (T, H, W) bool."""
    return np.stack([mouth_mask(frame, mouth_vertices, size) for frame in vertices])
