"""Regenerate the face-model assets (canonical mesh, triangles, mouth region) from the bundled videos.

    python -m stableface.face.build_assets --data /work/shared/data --out platform/stableface/face/assets

- canonical mesh: generalised Procrustes analysis (similarity transforms over the 468 surface
  vertices) of MediaPipe meshes from several speakers, first over all sampled frames, then again
  over the near-frontal ones; the mean is turned upright and frontal from anatomical axes (eye
  line, forehead-chin midline) and scaled to unit outer-eye-corner distance;
- triangles: MediaPipe's FACEMESH_TESSELATION edge list holds the edges of the mesh's triangles
  but not the triangles. Its 3-cliques are the triangles, except for a few 3-cycles that enclose a
  vertex (all three of their edges also border two real triangles); those are dropped. Triangles
  are then wound consistently across shared edges, counter-clockwise as seen from the camera;
- mouth region: the surface vertices below the base of the nose in the canonical mesh (lips,
  chin, jaw line and lower cheeks), the part of the face that speech moves.

Deterministic: same videos in, same files out (clips are sorted, frames sampled evenly).
"""

from __future__ import annotations

import argparse
import logging
from collections import Counter, defaultdict, deque
from itertools import combinations
from pathlib import Path

import numpy as np

from stableface.face.face_model import (
    CANONICAL_FILE,
    EYE_CORNERS_OUTER,
    MOUTH_FILE,
    N_SURFACE,
    N_VERTICES,
    TRIANGLES_FILE,
    apply_pose,
    similarity_fit,
)
from stableface.face.landmarks import MediaPipeBackend, track_landmarks
from stableface.io.video import iter_frames
from stableface.utils.logging import configure_logging

logger = logging.getLogger(__name__)

# Which bundled clips enter the mean shape: a few of GRID s1 (so one speaker does not dominate),
# every other GRID speaker and every VoxCeleb2 clip (non-frontal frames are filtered out).
CLIP_GLOBS = (("grid/s1", "*.mpg", 4), ("grid/speakers", "*.mpg", None), ("voxceleb2", "*.mp4", None))
FRAMES_PER_CLIP = 40  # evenly spaced, so long clips do not dominate
MAX_FRONTAL_DEG = 12.0  # frames whose head rotation from frontal exceeds this leave the second pass
GPA_ITERATIONS = 20
GPA_TOLERANCE = 1e-6  # canonical units, on the mean's change between iterations
# Left/right vertex pairs (subject's right first) that define the canonical x axis.
SYMMETRIC_PAIRS = ((33, 263), (133, 362), (127, 356), (234, 454), (93, 323))
FOREHEAD_TOP, CHIN = 10, 152
NOSE_BASE = 2  # the mouth region starts below this vertex's height
TRIANGLE_COUNT_RANGE = (800, 950)  # a 468-vertex face mesh with eye and mouth holes has ~850-900


# ----------------------------------------------------------------------------- canonical mesh
def frontal_frame(mean: np.ndarray) -> np.ndarray:
    """Rotate/scale/centre a (478, 3) mean shape into the canonical frame (upright, frontal, unit)."""
    x_axis = np.mean([mean[left] - mean[right] for right, left in SYMMETRIC_PAIRS], axis=0)
    x_axis /= np.linalg.norm(x_axis)
    y_axis = mean[CHIN] - mean[FOREHEAD_TOP]
    y_axis -= y_axis.dot(x_axis) * x_axis
    y_axis /= np.linalg.norm(y_axis)
    z_axis = np.cross(x_axis, y_axis)  # right x down = away from the camera (right-handed)
    rotation = np.stack([x_axis, y_axis, z_axis])  # (3, 3) rows are the new axes
    centred = mean - mean[:N_SURFACE].mean(axis=0)
    canonical = centred @ rotation.T  # (478, 3)
    right, left = EYE_CORNERS_OUTER
    return canonical / np.linalg.norm(canonical[left] - canonical[right])


def generalised_procrustes(meshes: np.ndarray) -> np.ndarray:
    """Mean shape (478, 3) of image-frame meshes (N, 478, 3), aligned by similarity transforms."""
    mean = frontal_frame(meshes[0].astype(np.float64))
    for iteration in range(GPA_ITERATIONS):
        pose = similarity_fit(
            meshes[:, :N_SURFACE], np.broadcast_to(mean[:N_SURFACE], meshes[:, :N_SURFACE].shape)
        )
        aligned = apply_pose(meshes, pose)  # (N, 478, 3), each mesh mapped onto the current mean
        new_mean = frontal_frame(aligned.mean(axis=0, dtype=np.float64))
        change = float(np.abs(new_mean - mean).max())
        mean = new_mean
        if change < GPA_TOLERANCE:
            logger.info("GPA converged after %d iterations", iteration + 1)
            break
    return mean


def rotation_angle_deg(rotation: np.ndarray) -> np.ndarray:
    """Angle of each rotation (T, 3, 3) in degrees."""
    cosine = (np.trace(rotation, axis1=1, axis2=2) - 1.0) / 2.0
    return np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0)))


def canonical_mesh(meshes: np.ndarray) -> np.ndarray:
    """Two-pass GPA: all frames, then only those within MAX_FRONTAL_DEG of frontal."""
    first = generalised_procrustes(meshes)
    pose = similarity_fit(first[:N_SURFACE], meshes[:, :N_SURFACE])
    frontal = rotation_angle_deg(pose.rotation.astype(np.float64)) <= MAX_FRONTAL_DEG
    logger.info(
        "%d of %d frames within %.0f deg of frontal", int(frontal.sum()), len(meshes), MAX_FRONTAL_DEG
    )
    return generalised_procrustes(meshes[frontal]).astype(np.float32)


# ----------------------------------------------------------------------------- triangles
def triangles_from_edges(edges: set[tuple[int, int]]) -> np.ndarray:
    """Triangles (F, 3) of a triangulated surface from its edge set, consistently wound (sign arbitrary)."""
    neighbours: dict[int, set[int]] = defaultdict(set)
    for a, b in edges:
        neighbours[a].add(b)
        neighbours[b].add(a)
    cliques = sorted({tuple(sorted((a, b, c))) for a, b in edges for c in neighbours[a] & neighbours[b]})
    uses = Counter(pair for tri in cliques for pair in combinations(tri, 2))
    # A 3-cycle around a vertex is not a face: each of its edges already borders two real faces.
    faces = [tri for tri in cliques if not all(uses[pair] > 2 for pair in combinations(tri, 2))]
    uses = Counter(pair for tri in faces for pair in combinations(tri, 2))
    if max(uses.values()) > 2:
        raise ValueError("the edge set is not a manifold triangulation: an edge borders more than two faces")
    return _orient_consistently(faces)


def _orient_consistently(faces: list[tuple[int, int, int]]) -> np.ndarray:
    """Wind faces so every shared edge is traversed in opposite directions by its two faces (BFS)."""
    by_edge: dict[frozenset, list[int]] = defaultdict(list)
    for index, tri in enumerate(faces):
        for pair in combinations(tri, 2):
            by_edge[frozenset(pair)].append(index)
    oriented: list[tuple[int, int, int] | None] = [None] * len(faces)
    for seed in range(len(faces)):
        if oriented[seed] is not None:
            continue
        oriented[seed] = faces[seed]
        queue = deque([seed])
        while queue:
            current = oriented[queue.popleft()]
            for i in range(3):
                a, b = current[i], current[(i + 1) % 3]
                for other in by_edge[frozenset((a, b))]:
                    if oriented[other] is not None:
                        continue
                    third = next(v for v in faces[other] if v not in (a, b))
                    oriented[other] = (b, a, third)  # the shared edge runs b -> a in the neighbour
                    queue.append(other)
    return np.array(oriented, dtype=np.int32)


def face_normals(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Un-normalised normals (F, 3) of triangles over (N, 3) vertices."""
    v0, v1, v2 = (vertices[triangles[:, k]] for k in range(3))
    return np.cross(v1 - v0, v2 - v0)


def mediapipe_triangles(canonical: np.ndarray) -> np.ndarray:
    """Triangles from MediaPipe's tessellation, wound to face the camera (normal z < 0) in ``canonical``."""
    from mediapipe.python.solutions.face_mesh_connections import FACEMESH_TESSELATION

    triangles = triangles_from_edges({(int(a), int(b)) for a, b in FACEMESH_TESSELATION})
    low, high = TRIANGLE_COUNT_RANGE
    if not low <= len(triangles) <= high:
        raise ValueError(f"derived {len(triangles)} triangles, outside the plausible {low}-{high}")
    normals = face_normals(canonical, triangles)
    area_weighted_z = normals[:, 2].sum()
    if area_weighted_z > 0:  # camera looks along +z, so faces toward it have normal z < 0
        triangles = triangles[:, ::-1].copy()
    return triangles


# ----------------------------------------------------------------------------- mouth region
def mouth_region(canonical: np.ndarray) -> np.ndarray:
    """Surface vertices below the nose base (lips, chin, jaw line, lower cheeks), sorted."""
    below = canonical[:N_SURFACE, 1] > canonical[NOSE_BASE, 1]
    return np.flatnonzero(below).astype(np.int32)


# ----------------------------------------------------------------------------- data
def bundled_clips(data_root: Path) -> list[Path]:
    clips: list[Path] = []
    for folder, pattern, limit in CLIP_GLOBS:
        found = sorted((data_root / folder).glob(pattern))
        clips.extend(found[:limit] if limit else found)
    if not clips:
        raise FileNotFoundError(f"{data_root}: no bundled clips found (expected grid/ and voxceleb2/)")
    return clips


def sample_meshes(clips: list[Path]) -> np.ndarray:
    """MediaPipe meshes (N, 478, 3) of up to FRAMES_PER_CLIP evenly spaced face frames per clip."""
    backend = MediaPipeBackend()
    sampled = []
    try:
        for clip in clips:
            track = track_landmarks(iter_frames(clip), backend)
            found = np.flatnonzero(track.present)
            if found.size == 0:
                logger.warning("%s: no face found, skipped", clip)
                continue
            keep = found[np.linspace(0, found.size - 1, min(FRAMES_PER_CLIP, found.size)).round().astype(int)]
            sampled.append(track.mesh[keep])
            logger.info("%s: %d of %d frames sampled", clip.name, keep.size, track.n_frames)
    finally:
        backend.close()
    return np.concatenate(sampled).astype(np.float64)


def build(data_root: Path, out_dir: Path) -> dict[str, int]:
    meshes = sample_meshes(bundled_clips(data_root))
    canonical = canonical_mesh(meshes)
    assert canonical.shape == (N_VERTICES, 3)
    triangles = mediapipe_triangles(canonical)
    mouth = mouth_region(canonical)
    out_dir.mkdir(parents=True, exist_ok=True)
    np.save(out_dir / CANONICAL_FILE, canonical)
    np.save(out_dir / TRIANGLES_FILE, triangles)
    np.save(out_dir / MOUTH_FILE, mouth)
    summary = {"frames": len(meshes), "triangles": len(triangles), "mouth_vertices": len(mouth)}
    logger.info("wrote %s to %s", summary, out_dir)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stableface.face.build_assets", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--data", type=Path, required=True, help="the shared data folder (grid/, voxceleb2/)")
    parser.add_argument("--out", type=Path, required=True, help="the assets folder to (over)write")
    args = parser.parse_args(argv)
    configure_logging()
    build(args.data, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
