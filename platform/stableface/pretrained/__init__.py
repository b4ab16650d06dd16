"""The pretrained stage 1 shipped with the package: its files and where they are.

``audio2expression.pt`` (weights + config + held-out figures), ``face_model.npz`` (the expression
basis they predict in) and ``MODEL_CARD.md``; ``stableface pretrain`` regenerates them, and
:mod:`stableface.training.pretrained` decides when a run may start from them.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

STAGE1_FILE = "audio2expression.pt"
FACE_MODEL_FILE = "face_model.npz"
MODEL_CARD_FILE = "MODEL_CARD.md"


def packaged_dir() -> Path:
    """The folder of the packaged pretrained files (inside the installed package)."""
    return Path(str(resources.files(__name__)))


def packaged_stage1_uri() -> str:
    return str(packaged_dir() / STAGE1_FILE)


def packaged_face_model_uri() -> str:
    return str(packaged_dir() / FACE_MODEL_FILE)
