"""Inference: a speaker model + a source video of that speaker + new speech -> a dubbed mp4.

Composable, Ray-free stages (array in, array out), in pipeline order:

- :func:`prepare_source` -> :class:`SourceTrack` (per video, cacheable as npz);
- :func:`load_speech`, :func:`predict_mouth` (audio2expression) over :func:`audio_windows`;
- :func:`source_index_map` (trim / ping-pong), :class:`WindowLayout` + :class:`WindowBlender` (renderer windows);
- :func:`posed_meshes`, :func:`shape_images`, :func:`mouth_region_masks`, :func:`backgrounds`
  (the renderer's inputs), :func:`smoothing_weights` + :func:`apply_smoothing`, :func:`render_windows`;
- :func:`composite_face`, :func:`draw_mark`, :func:`provenance_tags`;
- :class:`NeuralStages`: the three network calls as array functions (local, or a server's remote ones);
- :func:`dub` / :func:`dub_files`: all of it, streamed, from URIs to an atomically written mp4.

Bulk dubbing row by row (what the Ray job's actors run) is :mod:`stableface.inference.batch`.
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> submodule. Loaded on first use: `stableface.inference.config` (imported by the job schemas)
# must not pull in torch and the speaker model, and importing the package does no work.
_EXPORTS = {
    "composite_face": "composite",
    "draw_mark": "composite",
    "mark_box": "composite",
    "provenance_tags": "composite",
    "read_provenance": "composite",
    "CompositeConfig": "config",
    "DubConfig": "config",
    "EncodeConfig": "config",
    "InferenceConfig": "config",
    "ProvenanceConfig": "config",
    "backgrounds": "faces",
    "mouth_region_masks": "faces",
    "paste_weights": "faces",
    "posed_meshes": "faces",
    "shape_images": "faces",
    "source_crops": "faces",
    "check_speaker_model": "inputs",
    "load_speaker_model": "inputs",
    "load_speech": "inputs",
    "DubResult": "pipeline",
    "dub": "pipeline",
    "dub_files": "pipeline",
    "apply_smoothing": "render",
    "render_windows": "render",
    "resolve_device": "render",
    "smoothing_weights": "render",
    "SourceTrack": "source",
    "model_key": "source",
    "prepare_source": "source",
    "audio_windows": "speech",
    "predict_mouth": "speech",
    "NeuralStages": "stages",
    "WindowBlender": "timeline",
    "WindowLayout": "timeline",
    "blend_windows": "timeline",
    "source_index_map": "timeline",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'stableface.inference' has no attribute '{name}'")
    value = getattr(importlib.import_module(f"stableface.inference.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
