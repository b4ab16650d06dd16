"""Inference: a speaker model + a source video of that speaker + new speech -> a dubbed mp4.

Composable, Ray-free stages (array in, array out), in pipeline order:

- :func:`prepare_source` -> :class:`SourceTrack` (per video and chosen face, cacheable as npz;
  :mod:`stableface.inference.face_choice` picks the face);
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

from stableface.inference.composite import (
    composite_face,
    draw_mark,
    mark_box,
    provenance_tags,
    read_provenance,
)
from stableface.inference.config import (
    CompositeConfig,
    DubConfig,
    EncodeConfig,
    InferenceConfig,
    ProvenanceConfig,
)
from stableface.inference.faces import (
    backgrounds,
    mouth_region_masks,
    paste_weights,
    posed_meshes,
    shape_images,
    source_crops,
)
from stableface.inference.inputs import check_speaker_model, load_speaker_model, load_speech
from stableface.inference.pipeline import DubResult, dub, dub_files
from stableface.inference.render import apply_smoothing, render_windows, resolve_device, smoothing_weights
from stableface.inference.source import SourceTrack, model_key, prepare_source
from stableface.inference.speech import audio_windows, predict_mouth
from stableface.inference.stages import NeuralStages
from stableface.inference.timeline import WindowBlender, WindowLayout, blend_windows, source_index_map

__all__ = [
    "CompositeConfig",
    "DubConfig",
    "DubResult",
    "EncodeConfig",
    "InferenceConfig",
    "NeuralStages",
    "ProvenanceConfig",
    "SourceTrack",
    "WindowBlender",
    "WindowLayout",
    "apply_smoothing",
    "audio_windows",
    "backgrounds",
    "blend_windows",
    "check_speaker_model",
    "composite_face",
    "draw_mark",
    "dub",
    "dub_files",
    "load_speaker_model",
    "load_speech",
    "mark_box",
    "model_key",
    "mouth_region_masks",
    "paste_weights",
    "posed_meshes",
    "predict_mouth",
    "prepare_source",
    "provenance_tags",
    "read_provenance",
    "render_windows",
    "resolve_device",
    "shape_images",
    "smoothing_weights",
    "source_crops",
    "source_index_map",
]
