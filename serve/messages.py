"""What the ingress sends the compositor and gets back (plain, picklable dataclasses)."""

from __future__ import annotations

from dataclasses import dataclass, field

from stableface.face.face_tracks import FaceSelection

# The suffix an uploaded audio is stored under; FFmpeg probes the content, this only helps it.
AUDIO_SUFFIXES = {
    "audio/wav": ".wav",
    "audio/x-wav": ".wav",
    "audio/wave": ".wav",
    "audio/vnd.wave": ".wav",
    "audio/mpeg": ".mp3",
    "audio/mp3": ".mp3",
    "audio/mp4": ".m4a",
    "audio/x-m4a": ".m4a",
    "audio/aac": ".aac",
    "audio/flac": ".flac",
    "audio/x-flac": ".flac",
    "audio/ogg": ".ogg",
    "audio/webm": ".webm",
}


def audio_suffix(content_type: str) -> str:
    return AUDIO_SUFFIXES.get(content_type, ".audio")


@dataclass
class DubRequest:
    """One synchronous dub: validated ids and the uploaded audio bytes."""

    speaker: str
    source: str  # the resolved source id (the speaker's default when the client gave none)
    audio: bytes
    audio_suffix: str = ".wav"
    face: FaceSelection = field(default_factory=FaceSelection)  # which face of the source to dub


@dataclass
class DubReply:
    """The dubbed mp4 and what it is."""

    video: bytes
    facts: dict[str, str] = field(default_factory=dict)  # sent back as X-StableFace-* headers


@dataclass
class DubRefused:
    """A dub the compositor declines for the request's own reason (a 4xx, or a 503 outage).

    Returned rather than raised: Ray Serve logs every exception a replica raises as an ERROR with
    its traceback, which an expected refusal is not. The ingress turns it into the HTTP error.
    """

    status: int
    message: str
