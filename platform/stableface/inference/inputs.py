"""Opening a dub's inputs so that every error names the URI the user gave, not a temporary copy."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stableface.errors import AudioTooShort, InputError, errors_naming
from stableface.io.audio import check_not_silent, read_audio


def load_speech(path: str | Path, sample_rate: int, min_seconds: float, uri: str | None = None) -> np.ndarray:
    """The new speech as mono float32 (S,) at ``sample_rate``; audio that is unreadable, shorter than
    ``min_seconds`` or silent raises naming ``uri``. Length is checked first: a few milliseconds of
    a recording's quiet lead-in are too short, whatever their level."""
    uri = uri or str(path)
    with errors_naming(uri, path):
        samples = read_audio(path, sample_rate)
    milliseconds = 1000.0 * len(samples) / sample_rate
    if milliseconds < 1000.0 * min_seconds:
        raise AudioTooShort(
            uri, f"audio too short ({milliseconds:.0f} ms; need at least {1000.0 * min_seconds:.0f} ms)"
        )
    check_not_silent(samples, uri)
    return samples


def load_speaker_model(uri: str, storage=None, components=None):
    """:meth:`SpeakerModel.load` plus :func:`check_speaker_model`: a model dubbing can use, or an error naming ``uri``.

    ``components`` (default: every network inference runs) limits which networks are loaded."""
    from stableface.speaker_model import INFERENCE_COMPONENTS, SpeakerModel

    model = SpeakerModel.load(uri, storage, INFERENCE_COMPONENTS if components is None else components)
    check_speaker_model(model, uri)
    return model


def check_speaker_model(model, uri: str = "speaker model") -> None:
    """Raise :class:`InputError` naming ``uri`` when the model's parts do not fit together."""
    config = model.networks.config
    face = model.face_model
    problems = []
    if not face.is_fitted:
        problems.append("its face model has no expression basis")
    elif face.expression_dim != config.smoothing.expression_dim:
        problems.append(
            f"the face model's {face.expression_dim}-d expression does not fit the smoothing network's "
            f"{config.smoothing.expression_dim}-d input"
        )
    elif face.n_mouth != config.audio2expression.mouth_dim:
        problems.append(
            f"audio2expression predicts {config.audio2expression.mouth_dim} mouth coefficients, "
            f"the face model has {face.n_mouth}"
        )
    if (
        model.audio.n_mels != config.audio_encoder.n_mels
        or model.audio.frames_per_window != config.audio_encoder.window
    ):
        problems.append(
            f"audio features ({model.audio.frames_per_window} x {model.audio.n_mels}) do not fit the audio encoder "
            f"({config.audio_encoder.window} x {config.audio_encoder.n_mels})"
        )
    if np.asarray(model.identity).shape != (face.canonical.shape[0], 3):
        problems.append(f"identity has shape {np.asarray(model.identity).shape}")
    if problems:
        raise InputError(uri, "speaker model is inconsistent: " + "; ".join(problems))
