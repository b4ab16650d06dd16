"""Shared fixtures: the bundled real data, a real S3 API server on loopback, one local Ray."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
S3_TEST_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "stableface-test",
    "AWS_SECRET_ACCESS_KEY": "stableface-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the repo (or ``$STABLEFACE_SHARED_DATA``): real GRID/VoxCeleb2/speech."""
    root = Path(os.environ.get("STABLEFACE_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
    if not (root / "grid" / "s1").is_dir():
        pytest.fail(f"real test data not found at {root}; set STABLEFACE_SHARED_DATA to ../shared/data")
    return root


@pytest.fixture(scope="session")
def grid_clips(shared_data: Path) -> list[Path]:
    """The 90 GRID speaker-s1 clips, sorted."""
    return sorted((shared_data / "grid" / "s1").glob("*.mpg"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory) -> str:
    """A moto S3 server in its own process on 127.0.0.1; its URL. Credentials go to the env."""
    port = _free_port()
    log = tmp_path_factory.mktemp("moto") / "server.log"
    env = {**os.environ, **S3_TEST_CREDENTIALS}
    with open(log, "wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
        )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            if process.poll() is not None:
                pytest.fail(f"moto server exited: {log.read_text()}")
            time.sleep(0.2)
    else:
        process.kill()
        pytest.fail("moto server did not start within 30 s")
    saved = {key: os.environ.get(key) for key in S3_TEST_CREDENTIALS}
    os.environ.update(S3_TEST_CREDENTIALS)
    yield endpoint
    process.terminate()
    process.wait(timeout=10)
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def s3_storage_config(s3_endpoint):
    from stableface.io.storage import StorageConfig

    return StorageConfig(endpoint_url=s3_endpoint, region="us-east-1")


@pytest.fixture
def s3_bucket(s3_storage_config) -> str:
    """A fresh, empty bucket on the moto server; returns ``s3://<bucket>``."""
    from stableface.io.storage import Storage

    name = f"test-{uuid.uuid4().hex[:12]}"
    Storage(s3_storage_config).s3.create_bucket(Bucket=name)
    return f"s3://{name}"
