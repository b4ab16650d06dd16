"""A store that cannot be used is not a bad input: the failure policy, without Ray.

The outage is real: S3 calls go over TCP to the moto server through a forwarder that is stopped
(connections refused) and started again (``store_outage`` in tests/conftest.py), or to a port where
nothing listens.
"""

from __future__ import annotations

import pickle
import re

import pytest
import requests

from serve.api import create_api
from serve.async_jobs import JobResubmitter
from serve.settings import load_settings
from serve.stores import JobStore, ModelStore, SourceStore
from serve.validation import RETRY_AFTER_S, ApiError, error_for
from stableface.errors import InputError, InvalidURI, StorageNotFound, StorageUnavailable
from stableface.io.storage import Storage, StorageConfig

QUICK_RETRIES = 2  # per S3 call: an outage shows in well under a second


def _storage(endpoint: str) -> Storage:
    return Storage(StorageConfig(endpoint_url=endpoint, region="us-east-1", max_attempts=QUICK_RETRIES))


def test_an_outage_is_not_an_input_error_and_survives_pickling():
    outage = StorageUnavailable("s3://bucket/key (endpoint http://127.0.0.1:9)", "cannot reach the store")
    assert not isinstance(outage, InputError)
    copy = pickle.loads(pickle.dumps(outage))
    assert (type(copy), copy.uri, copy.problem, str(copy)) == (
        StorageUnavailable, outage.uri, outage.problem, str(outage)
    )  # fmt: skip
    assert str(outage).startswith("storage unavailable at s3://bucket/key")


def test_an_unreachable_endpoint_raises_unavailable_naming_the_store(closed_endpoint):
    storage = _storage(closed_endpoint)
    calls = {
        "exists": lambda: storage.exists("s3://bucket/a.mp4"),
        "read": lambda: storage.read_bytes("s3://bucket/a.mp4"),
        "list": lambda: storage.list("s3://bucket/videos"),
        "write": lambda: storage.write_bytes("s3://bucket/a.json", b"{}"),
        "delete_prefix": lambda: storage.delete_prefix("s3://bucket/run"),  # never "0 deleted"
    }
    for name, call in calls.items():
        with pytest.raises(StorageUnavailable) as caught:
            call()
        assert closed_endpoint in str(caught.value) and "s3://bucket/" in str(caught.value), name


def test_missing_credentials_are_an_outage_not_a_missing_object(s3_endpoint, s3_bucket, monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance-metadata lookups off loopback
    with pytest.raises(StorageUnavailable, match="no S3 credentials"):
        _storage(s3_endpoint).exists(f"{s3_bucket}/a.mp4")


def test_a_missing_object_on_a_working_store_is_still_not_found(s3_endpoint, s3_bucket):
    storage = _storage(s3_endpoint)
    assert storage.exists(f"{s3_bucket}/nothing.mp4") is False
    with pytest.raises(StorageNotFound, match="no such object"):
        storage.read_bytes(f"{s3_bucket}/nothing.mp4")
    assert storage.delete_prefix(f"{s3_bucket}/empty-run") == 0


CREDENTIALS = ("an unknown access key", "a wrong secret", "a user allowed nothing")


@pytest.mark.parametrize("credentials", CREDENTIALS)
def test_wrong_credentials_and_denied_access_are_an_outage_naming_the_store(locked_store, credentials):
    key_id, secret = locked_store.no_policy_key
    access_key_id, secret_access_key = {
        "an unknown access key": ("stableface-test", "stableface-test-secret"),
        "a wrong secret": (key_id, "not-" + secret),
        "a user allowed nothing": (key_id, secret),
    }[credentials]
    storage = Storage(
        StorageConfig(
            endpoint_url=locked_store.endpoint, region="us-east-1", access_key_id=access_key_id,
            secret_access_key=secret_access_key, max_attempts=QUICK_RETRIES,
        )
    )  # fmt: skip
    kept = locked_store.kept_uri
    folder = kept.rsplit("/", 1)[0]
    calls = {
        "exists": lambda: storage.exists(kept),
        "exists of a missing key": lambda: storage.exists(folder + "/nothing.mp4"),  # a 403, not False
        "read": lambda: storage.read_bytes(kept),
        "list": lambda: storage.list(folder),
        "write": lambda: storage.write_bytes(folder + "/new.json", b"{}"),
        "delete_prefix": lambda: storage.delete_prefix(folder + "/run"),
        "jobs to resubmit": lambda: JobStore(folder + "/jobs", storage).unfinished(),
        "a speaker's sources": lambda: SourceStore(folder + "/sources", storage).find("s1"),
    }
    for name, call in calls.items():
        with pytest.raises(StorageUnavailable, match="access denied") as caught:
            call()
        assert locked_store.endpoint in str(caught.value) and folder in str(caught.value), name
        assert error_for(caught.value).status == 503, name


def test_a_malformed_bucket_name_is_a_bad_input_not_an_outage(s3_endpoint, closed_endpoint):
    for endpoint in (s3_endpoint, closed_endpoint):  # refused before any request is sent
        with pytest.raises(InvalidURI, match=re.escape("s3://Bad_Bucket!/a.mp4: not a valid S3 location")):
            _storage(endpoint).exists("s3://Bad_Bucket!/a.mp4")


def test_missing_things_on_a_working_store_are_still_404(s3_endpoint, s3_bucket):
    storage = _storage(s3_endpoint)
    sources = SourceStore(f"{s3_bucket}/sources", storage)
    jobs = JobStore(f"{s3_bucket}/jobs", storage)
    refusals = {
        "model": lambda: ModelStore(f"{s3_bucket}/models", storage).require("s1"),
        "source": lambda: sources.find("s1"),
        "job": lambda: jobs.read(JobStore.new_id()),
    }
    for name, call in refusals.items():
        with pytest.raises(ApiError) as caught:
            call()
        assert caught.value.status == 404, name
    assert jobs.unfinished() == []  # a store with no jobs yet: nothing to resubmit
    assert error_for(StorageNotFound(f"{s3_bucket}/x.mp4", "no such object")).status == 404


def test_the_same_store_fails_during_an_outage_and_works_after_it(store_outage, s3_bucket):
    storage = _storage(store_outage.endpoint)
    storage.write_bytes(f"{s3_bucket}/kept.json", b"{}")
    store_outage.stop()
    with pytest.raises(StorageUnavailable):
        storage.read_bytes(f"{s3_bucket}/kept.json")
    store_outage.start()
    assert storage.read_bytes(f"{s3_bucket}/kept.json") == b"{}"


def test_serve_stores_never_read_an_outage_as_empty(closed_endpoint):
    storage = _storage(closed_endpoint)
    with pytest.raises(StorageUnavailable):
        SourceStore("s3://bucket/sources", storage).find("s1")  # not "404: no source video"
    with pytest.raises(StorageUnavailable):
        JobStore("s3://bucket/jobs", storage).unfinished()  # not "no jobs to resubmit"
    with pytest.raises(StorageUnavailable):
        ModelStore("s3://bucket/models", storage).require("s1")  # not "404: no such speaker"
    assert error_for(StorageUnavailable("s3://bucket/x", "down")).status == 503


def test_queued_jobs_are_resubmitted_once_the_store_is_back(store_outage, s3_bucket):
    jobs = JobStore(f"{s3_bucket}/jobs", _storage(store_outage.endpoint))
    queued = jobs.new_id()
    jobs.create(queued, b"RIFF", ".wav", {"speaker": "s1", "source": None})
    started: list[str] = []

    def start(job_id: str) -> bool:
        if job_id in started:
            return False  # its task still runs
        started.append(job_id)
        return True

    resubmitter = JobResubmitter(jobs, start)
    store_outage.stop()
    assert resubmitter.run_once() == []  # an outage starts nothing and is not "no jobs"
    store_outage.start()
    assert resubmitter.run_once() == [queued]
    assert resubmitter.run_once() == []  # not twice while its task runs


class _UnusedBackend:
    async def dub(self, request):
        raise AssertionError("a request that cannot find its model must not reach the backend")

    async def submit_job(self, job_id):
        raise AssertionError("a job that cannot be stored must not be submitted")


def test_the_api_answers_503_with_retry_after_while_the_store_is_down(closed_endpoint, tmp_path):
    import socket
    import threading
    import time

    import numpy as np
    import uvicorn

    from stableface.io.audio import write_audio

    config = load_settings(
        {
            "models_uri": "s3://bucket/models",
            "sources_uri": "s3://bucket/sources",
            "jobs_uri": "s3://bucket/jobs",
            "storage": {
                "endpoint_url": closed_endpoint,
                "region": "us-east-1",
                "max_attempts": QUICK_RETRIES,
            },
        }
    )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            create_api(config, _UnusedBackend(), None), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    write_audio(
        tmp_path / "speech.wav",
        0.2 * np.random.default_rng(0).standard_normal(16_000).astype(np.float32),
        16_000,
    )
    audio = (tmp_path / "speech.wav").read_bytes()
    url = f"http://127.0.0.1:{port}"
    try:
        answers = [
            requests.post(
                url + path, data={"speaker": "s1"}, files={"audio": ("a.wav", audio, "audio/wav")}, timeout=60
            )
            for path in ("/v1/dub", "/v1/jobs")
        ]
        answers.append(requests.get(f"{url}/v1/jobs/{JobStore.new_id()}", timeout=60))
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    for answer in answers:
        assert answer.status_code == 503, (answer.request.url, answer.status_code, answer.text)
        assert answer.headers["Retry-After"] == str(RETRY_AFTER_S)
        assert "temporarily unavailable" in answer.json()["error"]
        assert closed_endpoint not in answer.text  # store addresses stay in the service log
