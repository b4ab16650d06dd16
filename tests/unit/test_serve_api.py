"""The serving API without Ray: request checks, settings, stores, and the HTTP app over a stand-in backend.

The FastAPI app (``serve.api.create_api``) runs in uvicorn on 127.0.0.1 in a thread and is called
with real HTTP requests; the backend stands in for the compositor deployment, so every status code
the API itself decides is checked here in a few seconds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from serve.api import create_api
from serve.messages import DubReply, audio_suffix
from serve.settings import load_settings, resolve_api_key
from serve.stores import JobStore, ModelStore, SourceStore, public_job
from serve.validation import ApiError, check_bearer, check_content_type, check_duration, check_id, error_for
from stableface.errors import InputError, NoFaceFound, SilentAudio, StorageNotFound, UnreadableMedia
from stableface.face.face_tracks import FaceSelection, SelectionKind
from stableface.io.audio import write_audio
from stableface.io.storage import Storage

API_KEY = "test-key-123"
MAX_UPLOAD = 96 * 1024  # bytes: a 2 s 16 kHz wav (64 KB) fits, 4 s (128 KB) does not
RATE = 16_000


# ----------------------------------------------------------------------------- pure checks
@pytest.mark.parametrize(
    ("value", "status"),
    [("s1", None), ("grid-s1.v2", None), ("../x", 422), ("a/b", 422), ("..", 422), ("", 422), (None, 422),
     ("x" * 129, 422), ("/etc/passwd", 422), ("s3:bucket", 422), ("a..b", 422)],
)  # fmt: skip
def test_ids_must_be_single_safe_path_components(value, status):
    if status is None:
        assert check_id(value, "speaker") == value
    else:
        with pytest.raises(ApiError) as caught:
            check_id(value, "speaker")
        assert caught.value.status == status
        assert "speaker" in caught.value.message


def test_content_types_compare_the_media_type_only():
    accepted = ["audio/wav", "audio/mpeg"]
    assert check_content_type("Audio/WAV; codecs=1", accepted) == "audio/wav"
    for bad in ("text/plain", "", None, "audio/wav-ish"):
        with pytest.raises(ApiError) as caught:
            check_content_type(bad, accepted)
        assert caught.value.status == 415
        assert "audio/wav, audio/mpeg" in caught.value.message


def test_bearer_token_checks():
    check_bearer(None, None)  # no key configured: open
    check_bearer(f"Bearer {API_KEY}", API_KEY)
    check_bearer(f"bearer  {API_KEY} ", API_KEY)
    for header in (None, "", API_KEY, f"Basic {API_KEY}", "Bearer ", "Bearer wrong", f"Bearer {API_KEY}x"):
        with pytest.raises(ApiError) as caught:
            check_bearer(header, API_KEY)
        assert caught.value.status == 401


def test_library_errors_map_to_status_codes():
    cases = [
        (SilentAudio("audio", "silent"), 400),
        (UnreadableMedia("audio", "not media"), 400),
        (NoFaceFound("source 's1/x'", "no face"), 422),
        (StorageNotFound("s3://b/k", "no such object"), 404),
        (InputError("audio", "something else"), 400),
        (RuntimeError("boom"), 500),
    ]
    for error, status in cases:
        mapped = error_for(error)
        assert mapped.status == status, error
        assert ("boom" not in mapped.message) if status == 500 else (str(error) == mapped.message)
    with pytest.raises(ApiError, match="413"):
        check_duration(3.5, 2.0, "audio")
    check_duration(2.0, 2.0, "audio")


def test_api_error_survives_pickling_with_its_status():
    import pickle

    error = pickle.loads(pickle.dumps(ApiError(404, "speaker 'x': no model")))
    assert (error.status, error.message) == (404, "speaker 'x': no model")


def test_settings_merge_nested_and_dotted_args_and_reject_bad_ones():
    config = load_settings(
        {"models_uri": "/m", "limits": {"max_sync_seconds": 3}, "limits.request_timeout_s": "7.5"}
    )
    assert config.models_uri == "/m"
    assert config.limits.max_sync_seconds == 3.0
    assert config.limits.request_timeout_s == 7.5
    assert config.limits.max_async_seconds == 600.0  # untouched default
    with pytest.raises(InputError, match="serve args"):
        load_settings({"modles_uri": "/m"})
    relative = load_settings({"models_uri": "outputs/models", "jobs_uri": "s3://bucket/jobs"})
    assert relative.models_uri == str(Path.cwd() / "outputs" / "models")
    assert relative.jobs_uri == "s3://bucket/jobs"
    with pytest.raises(InputError, match=r"limits.max_upload_bytes: must be > 0"):
        load_settings({"limits": {"max_upload_bytes": 0}})
    with pytest.raises(InputError, match=r"callbacks\.attempts: must be > 0, got 0"):
        load_settings({"callbacks.attempts": 0})
    with pytest.raises(InputError, match=r"callbacks\.backoff_s: must be >= 0"):
        load_settings({"callbacks": {"backoff_s": -1}})


def test_api_key_comes_from_config_else_environment():
    config = load_settings({})
    assert resolve_api_key(config, {}) is None
    assert resolve_api_key(config, {"STABLEFACE_API_KEY": " env-key "}) == "env-key"
    keyed = dataclasses.replace(config, api_key="config-key")
    assert resolve_api_key(keyed, {"STABLEFACE_API_KEY": "env-key"}) == "config-key"


# ----------------------------------------------------------------------------- stores
@pytest.fixture
def stores(tmp_path):
    """Model and source folders with speaker s1 (two sources) and s2 (no source)."""
    models, sources = tmp_path / "models", tmp_path / "sources"
    for speaker in ("s1", "s2"):
        (models / speaker).mkdir(parents=True)
        (models / speaker / "speaker.json").write_text("{}")
    (sources / "s1").mkdir(parents=True)
    for name in ("bbb.mp4", "aaa.mpg", "notes.txt"):
        (sources / "s1" / name).write_bytes(b"x")
    (tmp_path / "secret.mp4").write_bytes(b"x")
    return {"models": str(models), "sources": str(sources), "jobs": str(tmp_path / "jobs"), "root": tmp_path}


def test_stores_resolve_ids_inside_their_roots_only(stores):
    storage = Storage()
    models = ModelStore(stores["models"], storage)
    assert models.require("s1") == f"{stores['models']}/s1"
    with pytest.raises(ApiError) as caught:
        models.require("s3")
    assert caught.value.status == 404
    sources = SourceStore(stores["sources"], storage)
    assert sources.find("s1").source_id == "aaa"  # the first video by name; notes.txt is not a video
    assert sources.find("s1", "bbb").uri == f"{stores['sources']}/s1/bbb.mp4"
    for speaker, source in [("s1", "ccc"), ("s2", None), ("s1", "notes")]:
        with pytest.raises(ApiError) as caught:
            sources.find(speaker, source)
        assert caught.value.status == 404
    for speaker, source in [("..", "secret"), ("s1", "../../secret"), ("s1/..", None)]:
        with pytest.raises(ApiError) as caught:
            sources.find(speaker, source)
        assert caught.value.status == 422


def test_job_store_round_trip_and_unfinished_jobs(stores):
    jobs = JobStore(stores["jobs"], Storage())
    first, second = jobs.new_id(), jobs.new_id()
    assert first != second and len(first) == 32
    record = jobs.create(first, b"RIFF", ".wav", {"speaker": "s1", "source": "aaa"})
    assert record["status"] == "queued"
    assert (stores["root"] / "jobs" / first / "audio.wav").read_bytes() == b"RIFF"
    jobs.create(second, b"RIFF", ".wav", {"speaker": "s1", "source": "aaa"})
    jobs.update(second, status="done")
    assert jobs.unfinished() == [first]
    assert jobs.read(second)["status"] == "done"
    assert "audio_uri" not in public_job(jobs.read(first))
    with pytest.raises(ValueError, match="unknown job state"):
        jobs.update(first, status="sleeping")
    with pytest.raises(ApiError) as caught:
        jobs.read(JobStore.new_id())
    assert caught.value.status == 404


# ----------------------------------------------------------------------------- the HTTP app
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class StandInBackend:
    """Records what the API hands over; answers like the compositor would (or slowly, or overloaded)."""

    def __init__(self):
        self.requests, self.jobs, self.cancelled = [], [], []
        self.delay_s = 0.0
        self.error: ApiError | None = None

    async def dub(self, request):
        self.requests.append(request)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.error:
            raise self.error
        return DubReply(video=b"\x00\x00\x00\x18ftypisom-stand-in", facts={"Frames": "50"})

    async def submit_job(self, job_id):
        self.jobs.append(job_id)

    async def cancel_job(self, job_id):
        self.cancelled.append(job_id)


@pytest.fixture
def api(stores):
    """(base URL, backend, config) of the app served by uvicorn on a free 127.0.0.1 port."""
    import uvicorn

    config = load_settings(
        {
            "models_uri": stores["models"],
            "sources_uri": stores["sources"],
            "jobs_uri": stores["jobs"],
            "limits": {
                "max_upload_bytes": MAX_UPLOAD,
                "max_sync_seconds": 2.5,
                "max_async_seconds": 3.5,
                "request_timeout_s": 0.5,
            },
            "callbacks": {"allowed_hosts": ["127.0.0.1"], "secret": "callback-secret"},
        }
    )
    backend = StandInBackend()
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_api(config, backend, API_KEY), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", backend, config
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, bytes]:
    """WAV uploads: noise of 2 s, 3 s, 4 s (over the upload limit), 4 s at 8 kHz (fits), 100 ms, silence, text."""
    folder = tmp_path_factory.mktemp("uploads")
    rng = np.random.default_rng(0)
    out = {}
    for name, seconds in [("2s", 2.0), ("3s", 3.0), ("4s", 4.0)]:
        path = folder / f"{name}.wav"
        write_audio(path, 0.2 * rng.standard_normal(int(seconds * RATE)).astype(np.float32), RATE)
        out[name] = path.read_bytes()
    write_audio(folder / "4s_8k.wav", 0.2 * rng.standard_normal(4 * 8000).astype(np.float32), 8000)
    out["4s_8k"] = (folder / "4s_8k.wav").read_bytes()
    write_audio(folder / "silent.wav", np.zeros(RATE, np.float32), RATE)
    out["silent"] = (folder / "silent.wav").read_bytes()
    write_audio(folder / "100ms.wav", 0.2 * rng.standard_normal(RATE // 10).astype(np.float32), RATE)
    out["100ms"] = (folder / "100ms.wav").read_bytes()
    out["text"] = b"these are meeting notes, not audio\n" * 20
    return out


def _post(
    url, path, audio: bytes, speaker="s1", source=None, content_type="audio/wav", key=API_KEY, face=None
):
    data = {"speaker": speaker} if source is None else {"speaker": speaker, "source": source}
    if face is not None:
        data["face"] = face
    headers = {} if key is None else {"Authorization": f"Bearer {key}"}
    return requests.post(
        url + path, data=data, files={"audio": ("clip.wav", audio, content_type)}, headers=headers, timeout=30
    )


def _error(response, status: int, *words: str) -> None:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert body["status"] == status
    for word in words:
        assert word in body["error"], body


def test_health_and_openapi_need_no_key(api):
    url, _, _ = api
    health = requests.get(url + "/healthz", timeout=10)
    assert health.status_code == 200 and health.json()["status"] == "ok" and health.json()["auth"] is True
    assert requests.get(url + "/docs", timeout=10).status_code == 200
    spec = requests.get(url + "/openapi.json", timeout=10).json()
    assert {"/v1/dub", "/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/video", "/healthz"} <= set(
        spec["paths"]
    )
    assert "multipart/form-data" in spec["paths"]["/v1/dub"]["post"]["requestBody"]["content"]


def test_docs_render_from_the_service_alone(api):
    """Every file /docs needs comes from the service: nothing from a CDN, no online validator."""
    url, _, _ = api
    page = requests.get(url + "/docs", timeout=10)
    assert page.status_code == 200 and "SwaggerUIBundle" in page.text
    assert re.findall(r"https?://", page.text) == [], "an external URL in /docs"
    assert '"validatorUrl": null' in page.text
    references = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
    references += re.findall(r"""url: ["']([^"']+)["']""", page.text)  # the OpenAPI document
    assert {"/docs-assets/swagger-ui-bundle.js", "/docs-assets/swagger-ui.css", "/openapi.json"} <= set(
        references
    )
    for reference in references:
        asset = requests.get(url + reference, timeout=10)
        assert asset.status_code == 200 and len(asset.content) > 100, reference
    assert requests.get(url + "/redoc", timeout=10).status_code == 404  # its CDN page is switched off


def test_a_valid_dub_reaches_the_backend_with_the_resolved_source(api, clips):
    url, backend, _ = api
    response = _post(url, "/v1/dub", clips["2s"])
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "video/mp4"
    assert response.content.startswith(b"\x00\x00\x00\x18ftyp")
    assert response.headers["X-StableFace-Frames"] == "50"
    (request,) = backend.requests
    assert (request.speaker, request.source, request.audio_suffix) == ("s1", "aaa", ".wav")
    assert request.audio == clips["2s"]
    assert _post(url, "/v1/dub", clips["2s"], source="bbb").status_code == 200
    assert backend.requests[-1].source == "bbb"


def test_the_face_field_selects_a_face_and_a_malformed_one_is_422(api, clips, stores):
    url, backend, _ = api
    assert _post(url, "/v1/dub", clips["2s"]).status_code == 200
    assert _post(url, "/v1/dub", clips["2s"], face="2").status_code == 200
    assert _post(url, "/v1/dub", clips["2s"], face=" 412, 130 ").status_code == 200
    assert [request.face for request in backend.requests] == [
        FaceSelection(),
        FaceSelection(SelectionKind.index, index=2),
        FaceSelection(SelectionKind.point, x=412, y=130),
    ]
    for bad in ("left", "0", "1,2,3"):
        _error(_post(url, "/v1/dub", clips["2s"], face=bad), 422, f"face: '{bad}'")
        _error(_post(url, "/v1/jobs", clips["2s"], face=bad), 422, f"face: '{bad}'")
    assert len(backend.requests) == 3 and backend.jobs == []
    submitted = _post(url, "/v1/jobs", clips["2s"], face="412,130")
    assert submitted.status_code == 202, submitted.text
    assert JobStore(stores["jobs"], Storage()).read(submitted.json()["job_id"])["face"] == "412,130"


def test_missing_or_wrong_key_is_401(api, clips):
    url, backend, _ = api
    missing = _post(url, "/v1/dub", clips["2s"], key=None)
    _error(missing, 401, "bearer")
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    _error(_post(url, "/v1/dub", clips["2s"], key="wrong"), 401, "not valid")
    _error(requests.get(url + f"/v1/jobs/{JobStore.new_id()}", timeout=10), 401)
    assert backend.requests == []


def test_bad_ids_are_422_and_never_reach_the_stores(api, clips):
    url, backend, _ = api
    _error(_post(url, "/v1/dub", clips["2s"], speaker="../s1"), 422, "speaker")
    _error(_post(url, "/v1/dub", clips["2s"], speaker="s1/../s2"), 422, "speaker")
    _error(_post(url, "/v1/dub", clips["2s"], source="../../secret"), 422, "source")
    _error(_post(url, "/v1/jobs", clips["2s"], source="..%2Fsecret"), 422, "source")
    headers = {"Authorization": f"Bearer {API_KEY}"}
    _error(requests.get(url + "/v1/jobs/%2E%2E", headers=headers, timeout=10), 422, "job id")
    _error(requests.get(url + "/v1/jobs/..%2Fsecret", headers=headers, timeout=10), 404)  # no route matches
    assert backend.requests == [] and backend.jobs == []


def test_unknown_speaker_or_source_is_404(api, clips):
    url, _, _ = api
    _error(_post(url, "/v1/dub", clips["2s"], speaker="nobody"), 404, "nobody")
    _error(_post(url, "/v1/dub", clips["2s"], speaker="s2"), 404, "no source video")
    _error(_post(url, "/v1/dub", clips["2s"], source="zzz"), 404, "zzz")


def test_content_types_and_sizes(api, clips):
    url, backend, _ = api
    _error(_post(url, "/v1/dub", clips["2s"], content_type="text/plain"), 415, "text/plain")
    not_multipart = requests.post(
        url + "/v1/dub",
        json={"speaker": "s1"},
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=10,
    )
    _error(not_multipart, 415, "multipart/form-data")
    assert len(clips["4s"]) > MAX_UPLOAD
    _error(_post(url, "/v1/dub", clips["4s"]), 413, str(MAX_UPLOAD))
    # No declared length: cut off while it streams in. A well-formed part, so that only its size,
    # not a parse error on the first bytes to arrive, can end the request.
    part_head = b'--x\r\nContent-Disposition: form-data; name="audio"; filename="a.wav"\r\nContent-Type: audio/wav\r\n\r\n'
    chunked = requests.post(
        url + "/v1/dub",
        data=iter([part_head, b"\0" * (MAX_UPLOAD + 1)]),
        headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "multipart/form-data; boundary=x"},
        timeout=30,
    )
    _error(chunked, 413, f"limit of {MAX_UPLOAD} bytes")
    _error(_post(url, "/v1/dub", clips["3s"]), 413, "2.5 s", "/v1/jobs")  # over the synchronous limit
    _error(_post(url, "/v1/dub", clips["silent"]), 400, "silent")
    _error(_post(url, "/v1/dub", clips["100ms"]), 400, "audio too short (100 ms; need at least 500 ms)")
    _error(_post(url, "/v1/dub", clips["text"]), 400, "audio")
    assert backend.requests == []


def test_slow_dubs_time_out_with_504_and_overload_is_503(api, clips):
    url, backend, _config = api
    backend.delay_s = 60.0  # far beyond the 0.5 s limit, so the 504 cannot be the dub finishing
    started = time.monotonic()
    _error(_post(url, "/v1/dub", clips["2s"]), 504, "0.5 s")
    assert time.monotonic() - started < backend.delay_s
    backend.delay_s, backend.error = 0.0, ApiError(503, "service: overloaded, try again shortly")
    _error(_post(url, "/v1/dub", clips["2s"]), 503, "overloaded")


def test_jobs_are_stored_submitted_and_served_when_done(api, clips, stores):
    url, backend, _ = api
    headers = {"Authorization": f"Bearer {API_KEY}"}
    accepted = _post(url, "/v1/jobs", clips["3s"])  # over the synchronous limit, within the job limit
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["job_id"]
    assert backend.jobs == [job_id]
    assert accepted.json()["status_url"] == f"/v1/jobs/{job_id}"
    status = requests.get(url + f"/v1/jobs/{job_id}", headers=headers, timeout=10).json()
    assert (status["status"], status["speaker"], status["source"]) == ("queued", "s1", "aaa")
    assert abs(status["audio_seconds"] - 3.0) < 0.01
    assert "audio_uri" not in status
    _error(requests.get(url + f"/v1/jobs/{job_id}/video", headers=headers, timeout=10), 409, "queued")
    jobs = JobStore(stores["jobs"], Storage())
    Storage().write_bytes(jobs.video_uri(job_id), b"mp4 bytes")
    jobs.update(job_id, status="done")
    video = requests.get(url + f"/v1/jobs/{job_id}/video", headers=headers, timeout=10)
    assert video.status_code == 200 and video.content == b"mp4 bytes"
    assert video.headers["content-type"] == "video/mp4"
    _error(
        requests.get(url + f"/v1/jobs/{JobStore.new_id()}", headers=headers, timeout=10), 404, "no such job"
    )
    assert len(clips["4s_8k"]) < MAX_UPLOAD  # small enough to upload, too long for a job
    _error(_post(url, "/v1/jobs", clips["4s_8k"]), 413, "3.5 s")
    assert backend.jobs == [job_id]


def test_callback_urls_outside_the_allow_list_are_refused(api, clips, stores):
    url, backend, _ = api
    for callback, words in [
        (
            "http://169.254.169.254/latest/meta-data",
            ("host '169.254.169.254' is not in callbacks.allowed_hosts",),
        ),
        ("http://127.0.0.1.evil.example/hook", ("not in callbacks.allowed_hosts",)),
        ("ftp://127.0.0.1/hook", ("not an http(s) URL",)),
        ("127.0.0.1/hook", ("not an http(s) URL",)),
    ]:
        refused = requests.post(
            url + "/v1/jobs", data={"speaker": "s1", "callback_url": callback},
            files={"audio": ("clip.wav", clips["3s"], "audio/wav")},
            headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30,
        )  # fmt: skip
        _error(refused, 422, "callback_url", *words)
    assert backend.jobs == []  # nothing was stored or started for a refused callback
    accepted = requests.post(
        url + "/v1/jobs", data={"speaker": "s1", "callback_url": "http://127.0.0.1:9/hook"},
        files={"audio": ("clip.wav", clips["3s"], "audio/wav")},
        headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30,
    )  # fmt: skip
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["job_id"]
    assert JobStore(stores["jobs"], Storage()).read(job_id)["callback_url"] == "http://127.0.0.1:9/hook"


def test_jobs_are_listed_cancelled_and_removed(api, clips, stores):
    url, backend, _ = api
    headers = {"Authorization": f"Bearer {API_KEY}"}
    first = _post(url, "/v1/jobs", clips["3s"]).json()["job_id"]
    second = _post(url, "/v1/jobs", clips["3s"]).json()["job_id"]
    listed = requests.get(url + "/v1/jobs", headers=headers, timeout=10).json()["jobs"]
    assert [job["job_id"] for job in listed] == [second, first]  # newest first
    assert all("audio_uri" not in job for job in listed)
    cancelled = requests.delete(url + f"/v1/jobs/{first}", headers=headers, timeout=10)
    assert cancelled.json() == {"job_id": first, "status": "cancelled"} and backend.cancelled == [first]
    assert (
        requests.get(url + f"/v1/jobs/{first}", headers=headers, timeout=10).json()["status"] == "cancelled"
    )
    removed = requests.delete(url + f"/v1/jobs/{first}", headers=headers, timeout=10)  # ended: removed
    assert removed.json() == {"job_id": first, "status": "removed"}
    assert not (stores["root"] / "jobs" / first).exists()
    _error(requests.get(url + f"/v1/jobs/{first}", headers=headers, timeout=10), 404, "no such job")
    _error(requests.delete(url + "/v1/jobs/..", headers=headers, timeout=10), 404)
    _error(requests.delete(url + f"/v1/jobs/{second}", timeout=10), 401)
    listed = requests.get(url + "/v1/jobs", headers=headers, timeout=10).json()["jobs"]
    assert [job["job_id"] for job in listed] == [second]


def test_audio_suffixes():
    assert audio_suffix("audio/mpeg") == ".mp3"
    assert audio_suffix("audio/x-wav") == ".wav"
    assert audio_suffix("audio/unknown") == ".audio"
