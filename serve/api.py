"""The HTTP API (FastAPI), separate from Ray: the ingress deployment serves it over its backend.

``create_api(config, backend)`` builds the app; ``backend`` does the dubbing (in the service, the
compositor deployment behind DeploymentHandles; in unit tests, a stand-in). The app owns every
check a request meets, in this order:

1. transport: request body over ``limits.max_upload_bytes`` -> 413 (by its declared length, else
   counted while it streams in); an upload route called without ``multipart/form-data`` -> 415;
2. ``Authorization: Bearer <key>`` when a key is configured -> 401;
3. ids (speaker, source, job) must be safe single path components, and ``face`` a face selection
   (empty, a face number, or ``x,y``) -> 422 (``../x`` included);
4. the audio part's content type -> 415; the speaker's model and source video -> 404;
5. the audio must decode (400), be audible (400) and not be too long (413);
6. the dub itself: 503 when the service is saturated, 504 past ``limits.request_timeout_s``.

Errors are JSON: ``{"error": "<input>: <problem>", "status": <code>}``.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from pathlib import Path
from typing import Annotated, Protocol

from fastapi import Depends, FastAPI, File, Form, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from serve.callbacks import check_callback_url
from serve.messages import DubReply, DubRequest, audio_suffix
from serve.stores import JobState, JobStore, ModelStore, SourceStore, public_job
from serve.validation import (
    RETRY_AFTER_S,
    ApiError,
    check_bearer,
    check_content_type,
    check_duration,
    check_face,
    check_id,
    check_optional_id,
    error_for,
    media_type,
)
from stableface import __version__
from stableface.config.jobs import ServeConfig
from stableface.errors import InputError, StorageUnavailable
from stableface.inference import load_speech
from stableface.io.storage import Storage

logger = logging.getLogger(__name__)

FEATURE_RATE = 16_000  # Hz the audio is decoded at to measure it (the models' feature rate)
UPLOAD_ROUTES = ("/v1/dub", "/v1/jobs")
MULTIPART = "multipart/form-data"
LONG_AUDIO_HINT = " (send longer audio to POST /v1/jobs)"
FACE_HELP = (
    "which face of the source to dub: empty or 'auto' for the one that matches the speaker's model, "
    "a face number from the left ('2'), or a point in source pixels ('412,130')"
)
# Module level: FastAPI resolves the (string) annotations below against this module's globals.
bearer_scheme = HTTPBearer(auto_error=False, description="the service's API key, when one is configured")


class DubBackend(Protocol):
    """What the API needs from the service: a synchronous dub and starting an asynchronous job."""

    async def dub(self, request: DubRequest) -> DubReply: ...

    async def submit_job(self, job_id: str) -> None: ...

    async def cancel_job(self, job_id: str) -> None: ...


def error_response(error: ApiError) -> JSONResponse:
    headers = None
    if error.status == 401:
        headers = {"WWW-Authenticate": "Bearer"}
    elif error.status == 503:
        headers = {"Retry-After": str(RETRY_AFTER_S)}
    return JSONResponse({"error": error.message, "status": error.status}, error.status, headers=headers)


class BodyTooLarge(StarletteHTTPException):
    """Raised by the guarded ``receive`` (FastAPI re-raises HTTP exceptions out of form parsing)."""

    def __init__(self, limit: int):
        super().__init__(413, f"body: more than the limit of {limit} bytes")


class UploadGuard:
    """ASGI middleware, before any parsing. Every request body is counted while it streams in and cut
    off past ``max_bytes`` (413, also when the client declared a larger Content-Length); the upload
    routes take ``multipart/form-data`` only (415)."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length", b"").decode("latin-1").strip()
        kind = media_type(headers.get(b"content-type", b"").decode("latin-1"))
        error = None
        if declared.isdigit() and int(declared) > self.max_bytes:
            error = ApiError(
                413, f"request body: {declared} bytes is more than the limit of {self.max_bytes} bytes"
            )
        elif scope["method"] == "POST" and scope["path"].rstrip("/") in UPLOAD_ROUTES and kind != MULTIPART:
            error = ApiError(
                415, f"request: content type '{kind or 'none'}' is not accepted (send {MULTIPART})"
            )
        if error is not None:
            await error_response(error)(scope, receive, send)
            return
        received = 0
        started = False

        async def counted_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def tracked_send(message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except BodyTooLarge as too_large:
            if started:
                raise
            await error_response(ApiError(413, f"request {too_large.detail}"))(scope, receive, send)


def audio_seconds(data: bytes, suffix: str, name: str, min_seconds: float) -> float:
    """Seconds of audio in an upload; :class:`InputError` when it does not decode, is too short or is silent."""
    with tempfile.TemporaryDirectory(prefix="stableface-upload-") as folder:
        path = Path(folder) / f"upload{suffix}"
        path.write_bytes(data)
        return len(load_speech(path, FEATURE_RATE, min_seconds, name)) / FEATURE_RATE


DOCS_ASSETS = "/docs-assets"  # Swagger UI's files, served from the swagger-ui-bundle wheel


def add_offline_docs(app: FastAPI) -> None:
    """``/docs``: Swagger UI from files inside the installed package, so the API docs render on a
    cluster without internet; its online validator (a request to validator.swagger.io) is off."""
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles
    from swagger_ui_bundle import swagger_ui_path

    app.mount(DOCS_ASSETS, StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> Response:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - docs",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon-32x32.png",
            swagger_ui_parameters={"validatorUrl": None},
        )


def create_api(config: ServeConfig, backend: DubBackend, api_key: str | None = None) -> FastAPI:
    """The FastAPI app of the service over ``backend``; ``api_key`` None = no authentication."""
    limits = config.limits
    storage = Storage(config.storage)
    models = ModelStore(config.models_uri, storage)
    sources = SourceStore(config.sources_uri, storage, config.cache_uri, config.dub.inference)
    jobs = JobStore(config.jobs_uri, storage)

    app = FastAPI(
        title="StableFace dubbing API",
        version=__version__,
        description=(
            "Lip-sync a speaker's source video to new speech. Every video it returns carries a "
            "visible 'synthetic' mark and provenance tags."
        ),
        # FastAPI's own /docs and /redoc load their scripts from a public CDN; see add_offline_docs.
        docs_url=None,
        redoc_url=None,
    )
    add_offline_docs(app)
    app.add_middleware(UploadGuard, max_bytes=limits.max_upload_bytes)

    @app.exception_handler(ApiError)
    async def on_api_error(_: Request, error: ApiError) -> JSONResponse:
        return error_response(error)

    @app.exception_handler(InputError)
    @app.exception_handler(StorageUnavailable)
    async def on_library_error(_: Request, error: InputError | StorageUnavailable) -> JSONResponse:
        return error_response(error_for(error))  # e.g. a store that cannot be read

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
        return error_response(ApiError(error.status_code, f"request: {error.detail}"))

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(_: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc'][1:]) or 'request'}: {item['msg']}"
            for item in error.errors()
        )
        return error_response(ApiError(422, problems))

    async def authorised(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    ) -> None:
        header = None if credentials is None else f"{credentials.scheme} {credentials.credentials}"
        check_bearer(header, api_key)

    async def checked_upload(
        speaker: str, source: str | None, audio: UploadFile, max_seconds: float, hint: str = ""
    ) -> tuple[str, str, bytes, str, float]:
        speaker = check_id(speaker, "speaker")
        source = check_optional_id(source, "source")
        kind = check_content_type(audio.content_type, limits.content_types, "audio")
        await run_in_threadpool(models.require, speaker)
        ref = await run_in_threadpool(sources.find, speaker, source)
        data = await audio.read()
        suffix = audio_suffix(kind)
        try:
            seconds = await run_in_threadpool(
                audio_seconds, data, suffix, "audio", config.dub.inference.min_audio_s
            )
        except InputError as error:
            raise error_for(error) from error
        check_duration(seconds, max_seconds, "audio", hint)
        return speaker, ref.source_id, data, suffix, seconds

    @app.get("/healthz", tags=["service"], summary="Liveness: the ingress answers")
    async def healthz() -> dict:
        return {"status": "ok", "version": __version__, "auth": api_key is not None}

    @app.post(
        "/v1/dub",
        tags=["dub"],
        summary="Dub a short audio clip onto a speaker's source video; returns the mp4",
        response_class=Response,
        responses={200: {"content": {"video/mp4": {}}, "description": "the dubbed H.264/AAC mp4"}},
        dependencies=[Depends(authorised)],
    )
    async def dub(
        speaker: Annotated[str, Form(description="speaker id (its model is <models_uri>/<speaker>)")],
        audio: Annotated[UploadFile, File(description="the new speech (wav, mp3, m4a, flac, ogg, ...)")],
        source: Annotated[
            str | None, Form(description="source video id; default: the speaker's first")
        ] = None,
        face: Annotated[str | None, Form(description=FACE_HELP)] = None,
    ) -> Response:
        selection = check_face(face)
        speaker, source_id, data, suffix, _ = await checked_upload(
            speaker, source, audio, limits.max_sync_seconds, LONG_AUDIO_HINT
        )
        request = DubRequest(
            speaker=speaker, source=source_id, audio=data, audio_suffix=suffix, face=selection
        )
        try:
            reply = await asyncio.wait_for(backend.dub(request), timeout=limits.request_timeout_s)
        except TimeoutError as error:
            raise ApiError(504, f"dub: not finished within {limits.request_timeout_s:g} s") from error
        headers = {f"X-StableFace-{key}": str(value) for key, value in reply.facts.items()}
        headers["Content-Disposition"] = f'inline; filename="{speaker}-{source_id}.mp4"'
        return Response(reply.video, media_type="video/mp4", headers=headers)

    @app.post(
        "/v1/jobs",
        tags=["jobs"],
        status_code=202,
        summary="Start an asynchronous dub of longer audio; returns the job id",
        dependencies=[Depends(authorised)],
    )
    async def submit(
        speaker: Annotated[str, Form(description="speaker id")],
        audio: Annotated[UploadFile, File(description="the new speech")],
        source: Annotated[
            str | None, Form(description="source video id; default: the speaker's first")
        ] = None,
        callback_url: Annotated[
            str | None,
            Form(
                description="called with a signed JSON POST when the job ends (host must be in "
                "callbacks.allowed_hosts; signature header X-StableFace-Signature: sha256=HMAC)"
            ),
        ] = None,
        face: Annotated[str | None, Form(description=FACE_HELP)] = None,
    ) -> dict:
        selection = check_face(face)
        callback = check_callback_url(callback_url, config.callbacks) if callback_url else None
        speaker, source_id, data, suffix, seconds = await checked_upload(
            speaker, source, audio, limits.max_async_seconds
        )
        job_id = jobs.new_id()
        record = {"speaker": speaker, "source": source_id, "audio_seconds": round(seconds, 3)}
        if callback:
            record["callback_url"] = callback
        if selection.text:
            record["face"] = selection.text
        await run_in_threadpool(jobs.create, job_id, data, suffix, record)
        try:
            await backend.submit_job(job_id)
        except ApiError as error:
            await run_in_threadpool(jobs.update, job_id, status=JobState.FAILED, error=error.message)
            raise
        return {
            "job_id": job_id,
            "status": JobState.QUEUED,
            "status_url": f"/v1/jobs/{job_id}",
            "video_url": f"/v1/jobs/{job_id}/video",
        }

    @app.get("/v1/jobs", tags=["jobs"], summary="Every job, newest first", dependencies=[Depends(authorised)])
    async def list_jobs() -> dict:
        return {"jobs": [public_job(r) for r in await run_in_threadpool(jobs.records)]}

    @app.delete(
        "/v1/jobs/{job_id}",
        tags=["jobs"],
        summary="Cancel a queued or running job (it stays listed as cancelled); remove an ended one",
        dependencies=[Depends(authorised)],
    )
    async def delete_job(job_id: str) -> dict:
        job_id = check_id(job_id, "job id")
        record = await run_in_threadpool(jobs.read, job_id)
        if record.get("status") in JobState.active():
            await run_in_threadpool(jobs.update, job_id, status=JobState.CANCELLED, finished_at=time.time())
            await backend.cancel_job(job_id)
            return {"job_id": job_id, "status": JobState.CANCELLED}
        await run_in_threadpool(jobs.remove, job_id)
        return {"job_id": job_id, "status": "removed"}

    @app.get("/v1/jobs/{job_id}", tags=["jobs"], summary="A job's status", dependencies=[Depends(authorised)])
    async def job_status(job_id: str) -> dict:
        return public_job(await run_in_threadpool(jobs.read, check_id(job_id, "job id")))

    @app.get(
        "/v1/jobs/{job_id}/video",
        tags=["jobs"],
        summary="A finished job's mp4 (409 while it is queued or running)",
        response_class=Response,
        responses={200: {"content": {"video/mp4": {}}}},
        dependencies=[Depends(authorised)],
    )
    async def job_video(job_id: str) -> Response:
        job_id = check_id(job_id, "job id")
        record = await run_in_threadpool(jobs.read, job_id)
        if record.get("status") == JobState.FAILED:
            raise ApiError(409, f"job '{job_id}': failed ({record.get('error', 'no reason recorded')})")
        if record.get("status") != JobState.DONE:
            raise ApiError(409, f"job '{job_id}': {record.get('status')}; the video is not ready yet")
        video = await run_in_threadpool(storage.read_bytes, jobs.video_uri(job_id))
        return Response(video, media_type="video/mp4")

    return app
