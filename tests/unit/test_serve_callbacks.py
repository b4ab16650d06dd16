"""Job callbacks to a real HTTP receiver on 127.0.0.1: signed bodies, retries, no redirects, failed jobs."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from serve.async_jobs import run_job
from serve.callbacks import SIGNATURE_HEADER, callback_body, deliver, verify
from serve.settings import load_settings, to_payload
from serve.stores import JobStore
from stableface.config.jobs import CallbackSettings
from stableface.io.storage import Storage

SECRET = "receiver-shared-secret"
FAST = CallbackSettings(allowed_hosts=["127.0.0.1"], secret=SECRET, attempts=4, backoff_s=0.01, timeout_s=5)


class Receiver:
    """An HTTP server that records every POST and answers with the next scripted status code."""

    def __init__(self, answers: list[int], location: str = ""):
        self.answers, self.location = list(answers), location
        self.received: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                code = receiver.answers.pop(0) if receiver.answers else 200
                self.send_response(code)
                if receiver.location:
                    self.send_header("Location", receiver.location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_the_signature_is_the_hmac_of_the_body_and_busy_answers_are_retried():
    body = callback_body({"job_id": "j1", "status": "done", "finished_at": 1.5}, FAST)
    with Receiver([503, 429, 200]) as receiver:
        delivery = deliver(receiver.url, body, SECRET, FAST)
    assert (delivery.delivered, delivery.attempts, delivery.status_code) == (True, 3, 200)
    assert len(receiver.received) == 3
    for headers, received in receiver.received:
        assert received == body
        expected = "sha256=" + hmac.new(SECRET.encode(), received, hashlib.sha256).hexdigest()
        assert headers[SIGNATURE_HEADER.lower()] == expected
        assert verify(received, headers[SIGNATURE_HEADER.lower()], SECRET)
        assert not verify(received, headers[SIGNATURE_HEADER.lower()], "another secret")
        assert not verify(received.replace(b"done", b"fail"), headers[SIGNATURE_HEADER.lower()], SECRET)
    assert json.loads(body) == {
        "job_id": "j1", "status": "done", "video_url": "/v1/jobs/j1/video", "error": None, "finished_at": 1.5,
    }  # fmt: skip


def test_a_refusing_receiver_is_not_retried_and_an_unreachable_one_is_given_up():
    body = b"{}"
    with Receiver([400]) as receiver:
        refused = deliver(receiver.url, body, SECRET, FAST)
    assert (refused.delivered, refused.attempts, refused.status_code) == (False, 1, 400)
    with Receiver([]) as receiver:
        gone = receiver.url
    unreachable = deliver(gone, body, SECRET, FAST)
    assert (unreachable.delivered, unreachable.attempts, unreachable.status_code) == (False, 4, None)
    assert "Connection refused" in unreachable.error or "URLError" in unreachable.error


def test_a_redirect_is_not_followed_to_another_host():
    with Receiver([]) as elsewhere, Receiver([302], location=elsewhere.url) as receiver:
        delivery = deliver(receiver.url, b"{}", SECRET, replace(FAST, attempts=1))
    assert (delivery.delivered, delivery.status_code) == (False, 302)
    assert len(receiver.received) == 1 and elsewhere.received == []


def test_a_failed_job_calls_back_with_its_error(tmp_path):
    config = load_settings(
        {
            "models_uri": str(tmp_path / "models"),
            "sources_uri": str(tmp_path / "sources"),
            "jobs_uri": str(tmp_path / "jobs"),
            "callbacks": {"allowed_hosts": ["127.0.0.1"], "secret": SECRET, "backoff_s": 0.01},
        }
    )
    jobs = JobStore(config.jobs_uri, Storage())
    with Receiver([500, 200]) as receiver:
        job_id = jobs.new_id()
        jobs.create(
            job_id, b"RIFF", ".wav", {"speaker": "nobody", "source": None, "callback_url": receiver.url}
        )
        record = run_job(to_payload(config), job_id)
        assert run_job(to_payload(config), job_id)["callback"]["attempts"] == 2  # delivered once only
    assert record["status"] == "failed" and "no speaker model" in record["error"]
    assert record["callback"] == {"delivered": True, "attempts": 2, "status_code": 200, "error": ""}
    assert len(receiver.received) == 2
    headers, body = receiver.received[-1]
    assert verify(body, headers[SIGNATURE_HEADER.lower()], SECRET)
    sent = json.loads(body)
    assert (sent["job_id"], sent["status"], sent["video_url"]) == (job_id, "failed", None)
    assert sent["error"] == record["error"]
    assert jobs.read(job_id)["callback"]["delivered"] is True


@pytest.mark.parametrize("answers", [[200]])
def test_a_job_without_a_callback_url_calls_nothing(tmp_path, answers):
    config = load_settings(
        {
            "models_uri": str(tmp_path / "m"),
            "sources_uri": str(tmp_path / "s"),
            "jobs_uri": str(tmp_path / "j"),
        }
    )
    jobs = JobStore(config.jobs_uri, Storage())
    job_id = jobs.new_id()
    jobs.create(job_id, b"RIFF", ".wav", {"speaker": "nobody", "source": None})
    with Receiver(answers) as receiver:
        record = run_job(to_payload(config), job_id)
    assert record["status"] == "failed" and "callback" not in record and receiver.received == []
