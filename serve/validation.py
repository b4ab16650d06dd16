"""Request checks and the HTTP status of every failure, as plain functions (no Ray, no FastAPI).

Every refusal is an :class:`ApiError`: a status code and a message that names the input and the
problem, as :class:`stableface.errors.InputError` messages do. The ingress turns them into JSON
``{"error": <message>, "status": <code>}`` responses.
"""

from __future__ import annotations

import hmac
import logging

from stableface.data.catalog import validate_id
from stableface.errors import (
    InputError,
    InvalidURI,
    NoAudioStream,
    NoFaceFound,
    SilentAudio,
    StorageNotFound,
    StorageUnavailable,
    UnreadableMedia,
)
from stableface.face.face_tracks import FaceSelection

logger = logging.getLogger(__name__)

BEARER = "bearer"
RETRY_AFTER_S = 10  # what a 503 asks the client to wait: a store outage or a full queue passes soon


class ApiError(Exception):
    """A request the service refuses: HTTP ``status`` and a message for the caller."""

    def __init__(self, status: int, message: str):
        self.status = int(status)
        self.message = message
        super().__init__(f"{status}: {message}")

    def __reduce__(self):  # picklable across Ray processes with its two arguments
        return (type(self), (self.status, self.message))


def check_id(value: str | None, what: str) -> str:
    """A speaker, source or job id as a safe single path component, else 422."""
    if value is None or not str(value).strip():
        raise ApiError(422, f"{what}: missing")
    try:
        return validate_id(str(value), what)
    except InputError as error:
        raise ApiError(422, str(error)) from error


def check_optional_id(value: str | None, what: str) -> str | None:
    return None if value is None or value == "" else check_id(value, what)


def check_face(value: str | None) -> FaceSelection:
    """The ``face`` form field as a selection (empty: the speaker's face), else 422."""
    try:
        return FaceSelection.parse(value, "face")
    except InputError as error:
        raise ApiError(422, str(error)) from error


def media_type(header: str | None) -> str:
    """``"audio/wav; codecs=1"`` -> ``"audio/wav"`` (lower case, parameters dropped)."""
    return str(header or "").split(";", 1)[0].strip().lower()


def check_content_type(header: str | None, accepted: list[str], what: str = "audio") -> str:
    """The part's media type if it is one of ``accepted``, else 415."""
    kind = media_type(header)
    if kind not in {media_type(item) for item in accepted}:
        shown = kind or "none"
        raise ApiError(
            415, f"{what}: content type '{shown}' is not accepted (use one of {', '.join(accepted)})"
        )
    return kind


def check_duration(seconds: float, limit: float, what: str, hint: str = "") -> None:
    if seconds > limit:
        raise ApiError(413, f"{what}: {seconds:.2f} s of audio is more than the limit of {limit:g} s{hint}")


def check_bearer(authorization: str | None, api_key: str | None) -> None:
    """Nothing when no key is configured or the header carries it (``Bearer <key>``), else 401."""
    if api_key is None:
        return
    scheme, _, token = str(authorization or "").strip().partition(" ")
    if not authorization or scheme.lower() != BEARER or not token.strip():
        raise ApiError(401, "Authorization: missing bearer token (send 'Authorization: Bearer <api key>')")
    if not hmac.compare_digest(token.strip().encode(), api_key.encode()):
        raise ApiError(401, "Authorization: the API key is not valid")


def error_for(error: Exception) -> ApiError:
    """The HTTP status of a library error raised while serving a request (500 for anything unknown)."""
    if isinstance(error, ApiError):
        return error
    if isinstance(error, (SilentAudio, NoAudioStream, UnreadableMedia)):
        return ApiError(400, str(error))
    if isinstance(error, NoFaceFound):
        return ApiError(422, str(error))
    if isinstance(error, StorageUnavailable):
        # The detail names internal stores: the log gets it, the client only learns to retry.
        logger.warning("answering 503: %s", error)
        return ApiError(503, "storage: temporarily unavailable, try again shortly")
    if isinstance(error, (StorageNotFound, InvalidURI)):
        return ApiError(404, str(error))
    if isinstance(error, InputError):
        return ApiError(400, str(error))
    return ApiError(500, "internal error: the dub failed on the server (see the service logs)")
