"""Mesh-guided warp of a texture frame of the speaker to another frame's face shape.

The MediaPipe mesh gives dense correspondences between two frames of one face: vertex i is the
same point of the face in both. A texture frame (the speaker's own pixels, with its posed mesh) is
moved to a target mesh piecewise-affinely: the target's vertices are Delaunay-triangulated in the
image plane (x, y; z dropped, as the rasteriser projects), and each target pixel inside a triangle
takes the texture at the same barycentric combination of the texture's vertices. Delaunay of the
vertices, not the mesh's own triangles, so that the mouth opening (a hole in the mesh) is covered
too: the texture's mouth interior is stretched or squeezed with the lips, and the renderer is left
to fix what a warp cannot (teeth that a closed texture mouth never showed, the tongue).

Pixels outside the target mesh's convex hull are 0 (nothing corresponds to them). Pixel centres
sit at integer coordinates, as in :mod:`stableface.face.raster`; the texture is sampled bilinearly.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.spatial import Delaunay

IMAGE_DIMS = 2  # the warp lives in the image plane: x right, y down (crop pixels)
OUTSIDE = -1  # scipy's find_simplex for a point outside every triangle


@dataclass(frozen=True)
class WarpTexture:
    """A frame of the speaker to warp from: its crop and the x, y of its posed mesh in crop pixels."""

    image: np.ndarray  # (S, S, 3) uint8
    vertices: np.ndarray  # (N, 2) float32

    def __post_init__(self) -> None:
        if self.image.ndim != 3 or self.image.shape[2] != 3 or self.image.dtype != np.uint8:
            raise ValueError(
                f"texture image: expected (S, S, 3) uint8, got {self.image.shape} {self.image.dtype}"
            )
        if self.vertices.ndim != 2 or self.vertices.shape[1] != IMAGE_DIMS:
            raise ValueError(f"texture vertices: expected (N, 2) crop pixels, got {self.vertices.shape}")


def sample_coordinates(
    source_vertices: np.ndarray, target_vertices: np.ndarray, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Where each target pixel comes from: (H, W) float32 x and y in the source image, and an (H, W)
    bool mask of the pixels inside the target mesh (elsewhere the coordinates are -1)."""
    source = np.asarray(source_vertices, np.float64)[:, :IMAGE_DIMS]  # (N, 2)
    target = np.asarray(target_vertices, np.float64)[:, :IMAGE_DIMS]  # (N, 2)
    if source.shape != target.shape:
        raise ValueError(f"warp: {source.shape} source vertices but {target.shape} target vertices")
    height, width = size
    triangulation = Delaunay(target)
    ys, xs = np.mgrid[0:height, 0:width]
    pixels = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float64)  # (H*W, 2)
    simplex = triangulation.find_simplex(pixels)  # (H*W,) triangle index or OUTSIDE
    inside = simplex != OUTSIDE
    affine = triangulation.transform[simplex[inside]]  # (P, 3, 2): barycentric transform per pixel
    partial = np.einsum(
        "pij,pj->pi", affine[:, :IMAGE_DIMS], pixels[inside] - affine[:, IMAGE_DIMS]
    )  # (P, 2)
    weights = np.concatenate([partial, 1.0 - partial.sum(axis=1, keepdims=True)], axis=1)  # (P, 3)
    corners = source[triangulation.simplices[simplex[inside]]]  # (P, 3, 2)
    mapped = np.einsum("pk,pkd->pd", weights, corners)  # (P, 2) source x, y
    map_xy = np.full((height * width, IMAGE_DIMS), -1.0, np.float32)  # (H*W, 2)
    map_xy[inside] = mapped
    return (
        map_xy[:, 0].reshape(height, width),
        map_xy[:, 1].reshape(height, width),
        inside.reshape(height, width),
    )


def warp_image(image: np.ndarray, source_vertices: np.ndarray, target_vertices: np.ndarray) -> np.ndarray:
    """Move ``image`` (H, W, C) uint8, whose face has ``source_vertices`` (N, >=2), to the face shape
    ``target_vertices`` (N, >=2) in the same image frame -> (H, W, C) uint8, 0 outside the target mesh."""
    height, width = image.shape[:2]
    map_x, map_y, inside = sample_coordinates(source_vertices, target_vertices, (height, width))
    warped = cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    warped = warped.reshape(image.shape)
    warped[~inside] = 0
    return warped


def warp_texture(texture: WarpTexture, target_meshes: np.ndarray) -> np.ndarray:
    """The texture frame warped to each of the (T, N, >=2) target meshes -> (T, S, S, 3) uint8."""
    return np.stack([warp_image(texture.image, texture.vertices, mesh) for mesh in target_meshes])
