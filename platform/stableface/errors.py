"""Errors that name the input and the problem.

Every error a user can cause derives from :class:`InputError`, whose message reads
``<input>: <problem>``; batch jobs store ``str(error)`` as the failed row's reason.

:class:`StorageUnavailable` is the other kind: the store itself cannot be used right now (it is
unreachable, the credentials are missing or wrong, access is denied, a write was cut short). That
says nothing about the input, so it never becomes a failed row or a 4xx: a batch job stops with it
and resumes on rerun, and the service answers 503 with Retry-After.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path


class StableFaceError(Exception):
    """Base class for errors raised by the platform."""


class InputError(StableFaceError):
    """A user-supplied input (file, URI, config value) cannot be used."""

    def __init__(self, source: str, problem: str):
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{self.source}: {problem}")

    def __reduce__(self):
        # Ray (and pickle) rebuild an exception from its args by default; ours are (source, problem).
        return type(self), (self.source, self.problem)


class ConfigError(InputError):
    """A job setting that is unknown, of the wrong type, or required and missing."""


class StorageNotFound(InputError):
    """A local path or object URI does not exist."""


class InvalidURI(InputError):
    """A string is not a supported storage URI."""


class UnreadableMedia(InputError):
    """A file exists but no decoder can read it (corrupt, truncated, not media)."""


class NoVideoStream(InputError):
    """A media file has no video stream."""


class NoAudioStream(InputError):
    """A media file has no audio stream."""


class SilentAudio(InputError):
    """Audio that is all silence (nothing to lip-sync to)."""


class AudioTooShort(InputError):
    """Speech too short to dub (a few frames, often a file cut off early)."""


class NoFaceFound(InputError):
    """A video in which too few frames contain a detectable face."""


class StorageUnavailable(StableFaceError):
    """The store behind ``uri`` cannot be used now; the input itself may be fine."""

    def __init__(self, uri: str, problem: str):
        self.uri = str(uri)
        self.problem = problem
        super().__init__(f"storage unavailable at {self.uri}: {problem}")

    def __reduce__(self):
        return type(self), (self.uri, self.problem)


class BackendUnavailable(StableFaceError):
    """An optional backend cannot run here (for example its weights are absent)."""


@contextlib.contextmanager
def errors_naming(uri: str, *local_paths: str | Path) -> Iterator[None]:
    """Re-raise input errors about any of ``local_paths`` (e.g. a download of ``uri``) as errors about ``uri``."""
    try:
        yield
    except InputError as error:
        if error.source in {str(path) for path in local_paths} and error.source != uri:
            raise type(error)(uri, error.problem) from error
        raise
