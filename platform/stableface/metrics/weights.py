"""Where pretrained evaluation networks (SyncNet, LipNet) find their weights.

They cannot be downloaded by the platform: an operator places the files in a directory named by
the metrics config or ``$STABLEFACE_WEIGHTS_DIR``. A missing file raises
:class:`~stableface.errors.BackendUnavailable` whose message starts "unavailable: weights not found
at <path>", which audits record instead of a score.
"""

from __future__ import annotations

import os
from pathlib import Path

from stableface.errors import BackendUnavailable

WEIGHTS_DIR_ENV = "STABLEFACE_WEIGHTS_DIR"
DEFAULT_WEIGHTS_DIR = Path("~/.cache/stableface/weights")


def weights_dir(configured: str | Path | None = None) -> Path:
    """The configured directory, else ``$STABLEFACE_WEIGHTS_DIR``, else ``~/.cache/stableface/weights``."""
    chosen = configured or os.environ.get(WEIGHTS_DIR_ENV) or DEFAULT_WEIGHTS_DIR
    return Path(chosen).expanduser()


def find_weights(filename: str, configured: str | Path | None = None) -> Path:
    """The path of a weight file, or :class:`BackendUnavailable` naming where it was looked for.

    ``configured`` may be the file itself or the directory holding ``filename``.
    """
    candidate = Path(configured).expanduser() if configured else None
    if candidate is not None and candidate.suffix and not candidate.is_dir():
        path = candidate
    else:
        path = weights_dir(candidate) / filename
    if not path.is_file():
        raise BackendUnavailable(f"unavailable: weights not found at {path}")
    return path


def load_state_dict(path: Path) -> dict:
    """A plain tensor state dict from a checkpoint (tensors only, never pickled code)."""
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise BackendUnavailable(f"unavailable: {path} does not hold a state dict")
    return state
