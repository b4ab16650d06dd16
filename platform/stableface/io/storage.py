"""One storage layer for local paths and ``s3://bucket/key`` URIs.

Writes are atomic: a local write goes to a temporary file in the target directory and is
renamed into place; an S3 object only becomes visible once its (multipart) upload completes,
and a failed multipart upload is aborted. Readers therefore never see half-written outputs.

S3 settings come from :class:`StorageConfig` and otherwise from boto3's usual environment
(``AWS_ENDPOINT_URL``, ``AWS_REGION``/``AWS_DEFAULT_REGION``, ``AWS_ACCESS_KEY_ID``, an instance
profile on a cluster).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stableface.errors import InvalidURI, StorageNotFound, StorageUnavailable

logger = logging.getLogger(__name__)

MIB = 1024 * 1024
S3_SCHEME = "s3://"
FILE_SCHEME = "file://"
MISSING_CODES = ("404", "NoSuchKey", "NotFound")
INVALID_NAME_CODES = ("InvalidBucketName", "KeyTooLongError")
DENIED_CODES = ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken")


@dataclass
class StorageConfig:
    """Where and how to reach object storage; local paths need none of it."""

    endpoint_url: str | None = None  # S3-compatible stores (MinIO, moto); None = AWS or $AWS_ENDPOINT_URL
    region: str | None = None  # None = $AWS_REGION / $AWS_DEFAULT_REGION / us-east-1
    access_key_id: str | None = None  # prefer the environment or an instance profile
    secret_access_key: str | None = None
    multipart_threshold_mb: int = 64
    multipart_chunk_mb: int = 16
    max_concurrency: int = 4
    max_attempts: int = 5  # per S3 call, with backoff, before the store counts as unavailable


def is_s3(uri: str) -> bool:
    return str(uri).startswith(S3_SCHEME)


def split_s3(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/key`` -> ``("bucket", "some/key")``."""
    if not is_s3(uri):
        raise InvalidURI(uri, "not an s3:// URI")
    bucket, _, key = uri[len(S3_SCHEME) :].partition("/")
    if not bucket:
        raise InvalidURI(uri, "an s3:// URI needs a bucket name (s3://bucket/key)")
    return bucket, key


def join(base: str, *parts: str) -> str:
    """Join URI or path components with ``/`` (never the OS separator rules for s3)."""
    uri = str(base)
    for part in parts:
        part = str(part).strip("/")
        if not part:
            continue
        uri = uri.rstrip("/") + "/" + part if uri else part
    return uri


def absolute_uri(uri: str) -> str:
    """``uri`` with a local path made absolute against the current directory; s3:// URIs unchanged."""
    if is_s3(uri):
        return str(uri)
    return os.path.abspath(_local_path(uri))


def basename(uri: str) -> str:
    return str(uri).rstrip("/").rsplit("/", 1)[-1]


def _umask_mode() -> int:
    """The mode ``open()`` would give a new file (mkstemp's are 0600 regardless of the umask)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _local_path(uri: str) -> Path:
    text = str(uri)
    if text.startswith(FILE_SCHEME):
        text = text[len(FILE_SCHEME) :]
    if "://" in text:
        scheme = text.split("://", 1)[0]
        raise InvalidURI(uri, f"unsupported storage scheme '{scheme}://' (use a local path or s3://)")
    if not text:
        raise InvalidURI(uri, "empty path")
    return Path(text).expanduser()


class Storage:
    """Reads and writes local paths and s3:// URIs; picklable (the boto3 client is rebuilt lazily)."""

    def __init__(self, config: StorageConfig | None = None):
        self.config = config or StorageConfig()
        self._client = None

    def __getstate__(self) -> dict[str, Any]:
        return {"config": self.config}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.config = state["config"]
        self._client = None

    # ----------------------------------------------------------------- s3 plumbing
    @property
    def s3(self):
        if self._client is None:
            import boto3
            from botocore.config import Config

            cfg = self.config
            session = boto3.session.Session(
                aws_access_key_id=cfg.access_key_id or None,
                aws_secret_access_key=cfg.secret_access_key or None,
                region_name=cfg.region or None,
            )
            self._client = session.client(
                "s3",
                endpoint_url=cfg.endpoint_url or None,
                config=Config(retries={"max_attempts": cfg.max_attempts, "mode": "standard"}),
            )
        return self._client

    def _transfer_config(self):
        from boto3.s3.transfer import TransferConfig

        return TransferConfig(
            multipart_threshold=self.config.multipart_threshold_mb * MIB,
            multipart_chunksize=self.config.multipart_chunk_mb * MIB,
            max_concurrency=self.config.max_concurrency,
        )

    def _store_name(self, uri: str) -> str:
        """``s3://bucket/key`` plus the endpoint it goes to, so an outage message names the store."""
        endpoint = self.config.endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or "AWS S3"
        return f"{uri} (endpoint {endpoint})"

    def _translate(self, error: Exception, uri: str) -> Exception:
        """A missing object or bucket is :class:`StorageNotFound` and a malformed bucket or key
        :class:`InvalidURI` (input problems); anything that says the store cannot be used (no route,
        no credentials, access denied, throttling, a server error) is :class:`StorageUnavailable`,
        which must never be mistaken for "empty" or "bad input"."""
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, ParamValidationError

        if isinstance(error, ParamValidationError):  # refused before sending: the URI, not the store
            report = str(error.kwargs.get("report", error)).split(":", 1)[0]
            return InvalidURI(uri, f"not a valid S3 location ({report})")
        if isinstance(error, NoCredentialsError):
            return StorageUnavailable(
                self._store_name(uri),
                "no S3 credentials found (set AWS_* variables, a profile or an instance role)",
            )
        if isinstance(error, ClientError):
            code = str(error.response.get("Error", {}).get("Code", ""))
            if code in ("NoSuchBucket",):
                return StorageNotFound(uri, f"bucket '{split_s3(uri)[0]}' does not exist")
            if code in INVALID_NAME_CODES:
                return InvalidURI(uri, f"not a valid S3 location ({code})")
            if code in MISSING_CODES:
                return StorageNotFound(uri, "no such object")
            if code in DENIED_CODES:
                return StorageUnavailable(self._store_name(uri), f"access denied ({code})")
            return StorageUnavailable(self._store_name(uri), f"the store answered {code or 'an error'}")
        if isinstance(error, BotoCoreError):  # no connection, timeouts, a cut-off response
            return StorageUnavailable(self._store_name(uri), f"cannot reach the store ({error})")
        return error

    # ----------------------------------------------------------------- queries
    def exists(self, uri: str) -> bool:
        if is_s3(uri):
            bucket, key = split_s3(uri)
            from botocore.exceptions import ClientError

            try:
                self.s3.head_object(Bucket=bucket, Key=key)
                return True
            except ClientError as error:
                if str(error.response.get("Error", {}).get("Code", "")) in MISSING_CODES:
                    return False
                raise self._translate(error, uri) from error
            except Exception as error:
                raise self._translate(error, uri) from error
        return _local_path(uri).exists()

    def size(self, uri: str) -> int:
        if is_s3(uri):
            bucket, key = split_s3(uri)
            try:
                return int(self.s3.head_object(Bucket=bucket, Key=key)["ContentLength"])
            except Exception as error:
                raise self._translate(error, uri) from error
        path = _local_path(uri)
        if not path.exists():
            raise StorageNotFound(uri, "no such file")
        return path.stat().st_size

    def list(self, prefix: str, suffixes: tuple[str, ...] | None = None) -> list[str]:
        """All object/file URIs under ``prefix`` (recursive, sorted), optionally filtered by suffix."""
        found: list[str] = []
        if is_s3(prefix):
            bucket, key = split_s3(prefix)
            key_prefix = key if (not key or key.endswith("/")) else key + "/"
            paginator = self.s3.get_paginator("list_objects_v2")
            try:
                for page in paginator.paginate(Bucket=bucket, Prefix=key_prefix):
                    found.extend(f"{S3_SCHEME}{bucket}/{item['Key']}" for item in page.get("Contents", []))
            except Exception as error:
                raise self._translate(error, prefix) from error
        else:
            root = _local_path(prefix)
            if not root.exists():
                raise StorageNotFound(prefix, "no such directory")
            found = [str(root)] if root.is_file() else [str(p) for p in root.rglob("*") if p.is_file()]
        if suffixes:
            lowered = tuple(s.lower() for s in suffixes)
            found = [uri for uri in found if uri.lower().endswith(lowered)]
        return sorted(found)

    # ----------------------------------------------------------------- reads
    def read_bytes(self, uri: str) -> bytes:
        if is_s3(uri):
            bucket, key = split_s3(uri)
            try:
                return self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            except Exception as error:
                raise self._translate(error, uri) from error
        path = _local_path(uri)
        if not path.is_file():
            raise StorageNotFound(uri, "no such file")
        return path.read_bytes()

    def read_text(self, uri: str) -> str:
        return self.read_bytes(uri).decode("utf-8")

    def read_json(self, uri: str) -> Any:
        return json.loads(self.read_text(uri))

    def download_file(self, uri: str, local_path: str | Path) -> Path:
        local_path = Path(local_path)
        local_path.parent.mkdir(parents=True, exist_ok=True)
        if is_s3(uri):
            bucket, key = split_s3(uri)
            try:
                self.s3.download_file(bucket, key, str(local_path), Config=self._transfer_config())
            except Exception as error:
                raise self._translate(error, uri) from error
        else:
            source = _local_path(uri)
            if not source.is_file():
                raise StorageNotFound(uri, "no such file")
            shutil.copyfile(source, local_path)
        return local_path

    @contextlib.contextmanager
    def local_copy(self, uri: str) -> Iterator[Path]:
        """A local file path holding ``uri``'s bytes: the file itself when local, else a temp download."""
        if not is_s3(uri):
            path = _local_path(uri)
            if not path.is_file():
                raise StorageNotFound(uri, "no such file")
            yield path
            return
        with tempfile.TemporaryDirectory(prefix="stableface-dl-") as tmp:
            yield self.download_file(uri, Path(tmp) / basename(uri))

    # ----------------------------------------------------------------- writes
    def write_bytes(self, uri: str, data: bytes) -> None:
        if is_s3(uri):
            bucket, key = split_s3(uri)
            self._check_key(uri, key)
            try:
                self.s3.put_object(Bucket=bucket, Key=key, Body=data)
            except Exception as error:
                raise self._translate(error, uri) from error
            return
        path = _local_path(uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, _umask_mode())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def write_text(self, uri: str, text: str) -> None:
        self.write_bytes(uri, text.encode("utf-8"))

    def write_json(self, uri: str, obj: Any) -> None:
        self.write_text(uri, json.dumps(obj, indent=2, sort_keys=True, default=str))

    def upload_file(self, local_path: str | Path, uri: str) -> None:
        """Copy a local file to ``uri`` atomically (multipart above the configured threshold)."""
        local_path = Path(local_path)
        expected = local_path.stat().st_size
        if is_s3(uri):
            bucket, key = split_s3(uri)
            self._check_key(uri, key)
            try:
                # upload_file aborts an incomplete multipart upload itself, so nothing partial shows.
                self.s3.upload_file(str(local_path), bucket, key, Config=self._transfer_config())
            except Exception as error:
                raise self._translate(error, uri) from error
            stored = self.size(uri)
            if stored != expected:
                self.delete(uri)
                raise StorageUnavailable(
                    self._store_name(uri), f"upload cut short: stored {stored} of {expected} bytes"
                )
            return
        target = _local_path(uri)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
        os.close(fd)
        try:
            shutil.copyfile(local_path, tmp)
            os.chmod(tmp, _umask_mode())
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    @contextlib.contextmanager
    def writable_local(self, uri: str, suffix: str | None = None) -> Iterator[Path]:
        """A local temp path to write; on success it is published to ``uri`` atomically, else discarded."""
        suffix = suffix if suffix is not None else Path(basename(uri)).suffix
        if is_s3(uri):
            split_s3(uri)
            scratch_dir = None
        else:
            target = _local_path(uri)
            target.parent.mkdir(parents=True, exist_ok=True)
            scratch_dir = target.parent
        fd, tmp = tempfile.mkstemp(prefix=".stableface-", suffix=suffix + ".partial", dir=scratch_dir)
        os.close(fd)
        tmp_path = Path(tmp)
        try:
            yield tmp_path
            if not tmp_path.exists() or tmp_path.stat().st_size == 0:
                raise StorageNotFound(uri, "nothing was written")
            if is_s3(uri):
                self.upload_file(tmp_path, uri)
            else:
                os.chmod(tmp_path, _umask_mode())
                os.replace(tmp_path, _local_path(uri))
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp_path.unlink()

    def delete(self, uri: str) -> None:
        if is_s3(uri):
            bucket, key = split_s3(uri)
            try:
                self.s3.delete_object(Bucket=bucket, Key=key)
            except Exception as error:
                raise self._translate(error, uri) from error
            return
        with contextlib.suppress(FileNotFoundError):
            _local_path(uri).unlink()

    def delete_prefix(self, prefix: str) -> int:
        """Delete everything under ``prefix``; returns how many objects/files went."""
        try:
            uris = self.list(prefix)
        except StorageNotFound:
            return 0
        for uri in uris:
            self.delete(uri)
        if not is_s3(prefix):
            shutil.rmtree(_local_path(prefix), ignore_errors=True)
        return len(uris)

    @staticmethod
    def _check_key(uri: str, key: str) -> None:
        if not key or key.endswith("/"):
            raise InvalidURI(uri, "an object URI needs a key after the bucket (s3://bucket/key)")

    # ----------------------------------------------------------------- pyarrow (Ray Train / Data)
    def pyarrow_filesystem(self, uri: str):
        """``(filesystem, path)`` for pyarrow-based consumers (Ray Train storage, Ray Data)."""
        import pyarrow.fs as pafs

        if not is_s3(uri):
            path = _local_path(uri).resolve()
            return pafs.LocalFileSystem(), str(path)
        bucket, key = split_s3(uri)
        cfg = self.config
        endpoint = (
            cfg.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        )
        kwargs: dict[str, Any] = {
            "region": cfg.region
            or os.environ.get("AWS_REGION")
            or os.environ.get("AWS_DEFAULT_REGION")
            or "us-east-1"
        }
        if endpoint:
            scheme, _, host = endpoint.partition("://")
            kwargs.update(endpoint_override=host or endpoint, scheme=scheme if host else "https")
        if cfg.access_key_id and cfg.secret_access_key:
            kwargs.update(access_key=cfg.access_key_id, secret_key=cfg.secret_access_key)
        return pafs.S3FileSystem(**kwargs), f"{bucket}/{key}".rstrip("/")


def local_dir(uri: str) -> Path:
    """The local directory a non-s3 URI names (for code that needs a real directory)."""
    return _local_path(uri)
