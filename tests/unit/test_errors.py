"""Errors cross process boundaries (Ray workers, actors, Serve replicas) intact."""

from __future__ import annotations

import pickle

import pytest

from stableface import errors


@pytest.mark.parametrize(
    "kind", [errors.InputError, errors.StorageNotFound, errors.UnreadableMedia, errors.NoFaceFound]
)
def test_input_errors_survive_pickling_with_their_input_and_problem(kind):
    error = kind("s3://bucket/clip.mp4", "no face in 0 of 75 frames")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is kind
    assert (copy.source, copy.problem) == ("s3://bucket/clip.mp4", "no face in 0 of 75 frames")
    assert str(copy) == "s3://bucket/clip.mp4: no face in 0 of 75 frames"
