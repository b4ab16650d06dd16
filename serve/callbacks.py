"""Job callbacks: when an asynchronous job ends the service POSTs its outcome to the job's ``callback_url``.

Only hosts in ``callbacks.allowed_hosts`` may be called (checked when the job is submitted: 422
otherwise), so a client cannot make the cluster send requests to arbitrary hosts. The body is
JSON; ``X-StableFace-Signature: sha256=<hex>`` is the HMAC-SHA256 of the exact body bytes under the
configured secret, so the receiver can check it came from this service (as sync.so and LiveTalking
sign theirs). Deliveries are retried with exponential backoff; the outcome is kept in the job's
record (``callback``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

from serve.stores import JobState
from serve.validation import ApiError
from stableface.config.jobs import CallbackSettings

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-StableFace-Signature"
SIGNATURE_PREFIX = "sha256="
CALLBACK_SCHEMES = ("http", "https")
CALLBACK_STATES = (JobState.DONE, JobState.FAILED)  # a cancelled job was ended by the client itself
# Answers worth trying again: the receiver is busy or timed out; other 4xx will not change.
RETRIED_CLIENT_ERRORS = (408, 429)
SUCCESS_MIN, SUCCESS_MAX = 200, 299


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A 3xx is an answer, not a new address: following it could reach a host outside the allow-list."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


def resolve_secret(settings: CallbackSettings, environ: Mapping[str, str] | None = None) -> str | None:
    environ = os.environ if environ is None else environ
    secret = settings.secret if settings.secret else environ.get(settings.secret_env, "")
    return secret.strip() or None


def check_callback_url(url: str, settings: CallbackSettings) -> str:
    """``url`` if the service may call it (http(s), host in the allow-list, a secret to sign with), else 422."""
    parts = urlsplit(url.strip())
    if parts.scheme not in CALLBACK_SCHEMES or not parts.hostname:
        raise ApiError(422, f"callback_url: {url!r} is not an http(s) URL with a host")
    host = parts.hostname.lower()
    allowed = {entry.strip().lower() for entry in settings.allowed_hosts}
    if not allowed:
        raise ApiError(422, "callback_url: callbacks are not enabled here (callbacks.allowed_hosts is empty)")
    if host not in allowed and f"{host}:{parts.port}" not in allowed:
        raise ApiError(422, f"callback_url: host '{parts.netloc}' is not in callbacks.allowed_hosts")
    if resolve_secret(settings) is None:
        raise ApiError(
            422,
            f"callback_url: the service has no signing secret (callbacks.secret or ${settings.secret_env})",
        )
    return url.strip()


def sign(body: bytes, secret: str) -> str:
    """The signature header's value for ``body``."""
    return SIGNATURE_PREFIX + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(body: bytes, signature: str, secret: str) -> bool:
    """What a receiver does: recompute the signature of the raw body and compare in constant time."""
    return hmac.compare_digest(sign(body, secret), signature)


def callback_body(record: Mapping[str, Any], settings: CallbackSettings) -> bytes:
    """The JSON the receiver gets: the job id, its final status, the video's URL when done, the error."""
    job_id = record["job_id"]
    done = record.get("status") == JobState.DONE
    body = {
        "job_id": job_id,
        "status": record.get("status"),
        "video_url": f"{settings.public_base_url.rstrip('/')}/v1/jobs/{job_id}/video" if done else None,
        "error": record.get("error"),
        "finished_at": record.get("finished_at"),
    }
    return json.dumps(body, sort_keys=True).encode()


@dataclass(frozen=True)
class Delivery:
    """How a callback went: kept in the job record as ``callback``."""

    delivered: bool
    attempts: int
    status_code: int | None
    error: str

    def to_record(self) -> dict[str, Any]:
        return asdict(self)


def deliver(url: str, body: bytes, secret: str, settings: CallbackSettings) -> Delivery:
    """POST ``body`` to ``url`` signed, retrying errors and 5xx/408/429 with exponential backoff."""
    headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(body, secret)}
    status, error = None, ""
    attempts = max(int(settings.attempts), 1)
    for attempt in range(1, attempts + 1):
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with _OPENER.open(request, timeout=settings.timeout_s) as response:
                status = response.status
        except urllib.error.HTTPError as answer:
            status, error = answer.code, f"answered {answer.code}"
        except (urllib.error.URLError, OSError) as failure:
            status, error = None, f"{type(failure).__name__}: {getattr(failure, 'reason', failure)}"
        if status is not None and SUCCESS_MIN <= status <= SUCCESS_MAX:
            return Delivery(True, attempt, status, "")
        if status is not None and status < 500 and status not in RETRIED_CLIENT_ERRORS:
            break  # the receiver refuses this body; sending it again will not help
        if attempt < attempts:
            time.sleep(settings.backoff_s * 2 ** (attempt - 1))
    return Delivery(False, attempt, status, error)


def notify_job_end(record: Mapping[str, Any], settings: CallbackSettings) -> Delivery | None:
    """Call the job's callback once it has ended; None when it has none, has not ended or was delivered."""
    url = record.get("callback_url")
    if (
        not url
        or record.get("status") not in CALLBACK_STATES
        or (record.get("callback") or {}).get("delivered")
    ):
        return None
    secret = resolve_secret(settings)
    if secret is None:
        return Delivery(False, 0, None, f"no signing secret (callbacks.secret or ${settings.secret_env})")
    delivery = deliver(str(url), callback_body(record, settings), secret, settings)
    log = logger.info if delivery.delivered else logger.warning
    log(
        "job %s: callback to %s %s after %d attempt(s)%s",
        record["job_id"], url, "delivered" if delivery.delivered else "failed", delivery.attempts,
        f" ({delivery.error})" if delivery.error else "",
    )  # fmt: skip
    return delivery
