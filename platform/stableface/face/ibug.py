"""The iBUG-68 landmark convention and its correspondence on the MediaPipe 478-point mesh.

iBUG-68 numbers points from the subject's right (image left): jaw 0-16, brows 17-26, nose 27-35,
eyes 36-47, outer lips 48-59, inner lips 60-67. The MediaPipe indices below pick, for each iBUG
point, the mesh vertex at the same anatomical location (chosen on the mesh topology and checked
by overlaying both on GRID frames, see tests/unit/test_landmarks.py).
"""

from __future__ import annotations

import numpy as np

N_IBUG = 68
JAW = slice(0, 17)
BROWS = slice(17, 27)
NOSE = slice(27, 36)
EYES = slice(36, 48)
LIPS = slice(48, 68)
OUTER_LIPS = slice(48, 60)
INNER_LIPS = slice(60, 68)
MOUTH_CORNERS = (48, 54)

# fmt: off
MEDIAPIPE_TO_IBUG68 = np.array([
    # jaw, image left (subject's right ear) -> chin (8) -> image right
    127, 234, 93, 132, 58, 172, 136, 149, 152, 378, 365, 397, 288, 361, 323, 454, 356,
    # right brow (outer -> inner), left brow (inner -> outer)
    70, 63, 105, 66, 107, 336, 296, 334, 293, 300,
    # nose bridge (top -> tip), nostrils (left -> right)
    168, 197, 5, 1, 98, 97, 2, 326, 327,
    # right eye: outer corner, upper lid x2, inner corner, lower lid x2
    33, 160, 158, 133, 153, 144,
    # left eye: inner corner, upper lid x2, outer corner, lower lid x2
    362, 385, 387, 263, 373, 380,
    # outer lips: left corner, upper lip -> right corner, lower lip back
    61, 40, 37, 0, 267, 270, 291, 321, 314, 17, 84, 91,
    # inner lips: left corner, upper, right corner, lower
    78, 81, 13, 311, 308, 402, 14, 178,
], dtype=np.int64)
# fmt: on


def mediapipe_to_ibug68(mesh: np.ndarray) -> np.ndarray:
    """(..., 478, C) MediaPipe vertices -> (..., 68, 2) iBUG-68 image coordinates."""
    return mesh[..., MEDIAPIPE_TO_IBUG68, :2]


def mouth_width(ibug68: np.ndarray) -> np.ndarray:
    """Distance between the mouth corners (48, 54); shape (...)."""
    left, right = MOUTH_CORNERS
    return np.linalg.norm(ibug68[..., right, :] - ibug68[..., left, :], axis=-1)
