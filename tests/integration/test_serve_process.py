"""``stableface serve`` as a user runs it: a real process, started from another folder, stopped by Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

pytestmark = [pytest.mark.integration, pytest.mark.heavy]

START_TIMEOUT_S = 420  # a cold embedded Ray and five deployments on 2 busy cores
STOP_TIMEOUT_S = 120
GONE_TIMEOUT_S = 60


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (the embedded Ray's GCS, raylet, workers and replicas)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found, pending = set(), [pid]
    while pending:
        for child in children.get(pending.pop(), []):
            if child not in found:
                found.add(child)
                pending.append(child)
    return found


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.add(pid)
    return alive


def test_serve_starts_from_another_folder_and_stops_cleanly_on_sigint(tmp_path):
    port = _free_port()
    command = [
        str(Path(sys.executable).with_name("stableface")), "serve", f"port={port}",
        f"models_uri={tmp_path / 'models'}", f"sources_uri={tmp_path / 'sources'}", f"jobs_uri={tmp_path / 'jobs'}",
    ]  # fmt: skip
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    log_path = tmp_path / "serve.log"
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}  # as a user's shell
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=elsewhere, env=env, stdout=log, stderr=subprocess.STDOUT)
    started: set[int] = set()
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert process.poll() is None, f"serve exited with {process.returncode}:\n{log_path.read_text()}"
            assert time.monotonic() < deadline, (
                f"no answer within {START_TIMEOUT_S} s:\n{log_path.read_text()}"
            )
            try:
                if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200:
                    break
            except requests.RequestException:  # not listening yet, or the app not deployed yet
                pass
            time.sleep(2)
        started = _descendants(process.pid)
        assert started, "the embedded Ray runs in child processes"
        process.send_signal(signal.SIGINT)
        returncode = process.wait(timeout=STOP_TIMEOUT_S)
        log = log_path.read_text()
        assert returncode == 0, log
        assert "Traceback" not in log and "KeyboardInterrupt" not in log, log
        assert "SIGINT received: shutting the application down" in log
        assert "stopped: the application and its replicas are shut down" in log
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        deadline = time.monotonic() + GONE_TIMEOUT_S
        while _alive(started) and time.monotonic() < deadline:
            time.sleep(1)
        assert not _alive(started), f"processes left running: {sorted(_alive(started))}"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for pid in _alive(started):
            os.kill(pid, signal.SIGKILL)
