"""Storage against local paths and a real S3 API (moto server on 127.0.0.1)."""

from __future__ import annotations

import os
import threading

import pytest

from stableface.errors import InvalidURI, StorageNotFound
from stableface.io.storage import Storage, StorageConfig, join, split_s3


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path) -> tuple[Storage, str]:
    if request.param == "local":
        return Storage(), str(tmp_path / "store")
    bucket = request.getfixturevalue("s3_bucket")
    return Storage(request.getfixturevalue("s3_storage_config")), bucket + "/store"


def test_write_read_exists_list_delete(root):
    storage, base = root
    uri = join(base, "a", "b.json")
    assert not storage.exists(uri)
    storage.write_json(uri, {"x": 1})
    storage.write_bytes(join(base, "a", "c.bin"), b"\x00\x01")
    storage.write_text(join(base, "d.txt"), "hello")
    assert storage.exists(uri)
    assert storage.read_json(uri) == {"x": 1}
    assert storage.read_bytes(join(base, "a", "c.bin")) == b"\x00\x01"
    assert storage.size(join(base, "d.txt")) == 5
    assert storage.list(base) == sorted(
        [join(base, "a", "b.json"), join(base, "a", "c.bin"), join(base, "d.txt")]
    )
    assert storage.list(base, suffixes=(".JSON",)) == [uri]
    storage.delete(uri)
    assert not storage.exists(uri)
    assert storage.delete_prefix(base) == 2
    assert not storage.exists(join(base, "d.txt"))


def test_missing_objects_raise_errors_naming_the_uri(root):
    storage, base = root
    missing = join(base, "nope.bin")
    with pytest.raises(StorageNotFound, match=r"nope\.bin"):
        storage.read_bytes(missing)
    with pytest.raises(StorageNotFound, match=r"nope\.bin"), storage.local_copy(missing):
        pass


def test_upload_download_roundtrip_and_local_copy(root, tmp_path):
    storage, base = root
    source = tmp_path / "payload.bin"
    payload = os.urandom(300_000)
    source.write_bytes(payload)
    uri = join(base, "up", "payload.bin")
    storage.upload_file(source, uri)
    storage.download_file(uri, tmp_path / "back.bin")
    assert (tmp_path / "back.bin").read_bytes() == payload
    with storage.local_copy(uri) as local:
        assert local.read_bytes() == payload


def test_multipart_upload_over_threshold(s3_storage_config, s3_bucket, tmp_path):
    config = StorageConfig(
        **{**s3_storage_config.__dict__, "multipart_threshold_mb": 5, "multipart_chunk_mb": 5}
    )
    storage = Storage(config)
    big = tmp_path / "big.bin"
    payload = os.urandom(12 * 1024 * 1024)
    big.write_bytes(payload)
    uri = f"{s3_bucket}/big/big.bin"
    storage.upload_file(big, uri)
    bucket, key = split_s3(uri)
    head = storage.s3.head_object(Bucket=bucket, Key=key)
    # A multipart object's ETag is "<md5-of-part-md5s>-<parts>": 12 MiB in 5 MiB parts = 3 parts.
    assert head["ETag"].strip('"').endswith("-3")
    assert storage.read_bytes(uri) == payload


def test_failed_write_leaves_nothing_visible(root):
    storage, base = root
    uri = join(base, "out", "video.mp4")
    with pytest.raises(RuntimeError, match="encoder crashed"), storage.writable_local(uri) as local:
        local.write_bytes(b"half a video")
        raise RuntimeError("encoder crashed")
    assert not storage.exists(uri)
    assert storage.list(base) == []  # no partial or temporary file left behind


def test_writable_local_publishes_on_success(root):
    storage, base = root
    uri = join(base, "out", "video.mp4")
    with storage.writable_local(uri) as local:
        local.write_bytes(b"complete")
    assert storage.read_bytes(uri) == b"complete"
    with (
        pytest.raises(StorageNotFound, match="nothing was written"),
        storage.writable_local(join(base, "out", "empty.mp4")),
    ):
        pass


def test_concurrent_local_writers_never_expose_partial_files(tmp_path):
    storage = Storage()
    uri = str(tmp_path / "shared.bin")
    payloads = [bytes([i]) * 2_000_000 for i in range(4)]
    threads = [threading.Thread(target=storage.write_bytes, args=(uri, p)) for p in payloads]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert storage.read_bytes(uri) in payloads
    assert [p.name for p in tmp_path.iterdir()] == ["shared.bin"]


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("gs://bucket/key", "unsupported storage scheme 'gs://'"),
        ("s3:///key", "needs a bucket name"),
        ("", "empty path"),
    ],
)
def test_bad_uris_are_rejected_with_the_reason(uri, message):
    with pytest.raises(InvalidURI, match=message):
        Storage().read_bytes(uri)


def test_nonexistent_bucket_is_reported(s3_storage_config):
    storage = Storage(s3_storage_config)
    with pytest.raises(StorageNotFound, match="does not exist"):
        storage.read_bytes("s3://no-such-bucket-here/key")
    assert storage.exists("s3://no-such-bucket-here/key") is False


def test_storage_pickles_without_its_client(s3_storage_config, s3_bucket):
    import pickle

    storage = Storage(s3_storage_config)
    storage.write_text(f"{s3_bucket}/p.txt", "x")
    clone = pickle.loads(pickle.dumps(storage))
    assert clone.read_text(f"{s3_bucket}/p.txt") == "x"


def test_pyarrow_filesystem_reads_what_storage_wrote(s3_storage_config, s3_bucket):
    storage = Storage(s3_storage_config)
    storage.write_text(f"{s3_bucket}/dir/f.txt", "arrow")
    filesystem, path = storage.pyarrow_filesystem(f"{s3_bucket}/dir")
    with filesystem.open_input_stream(path + "/f.txt") as stream:
        assert stream.read() == b"arrow"


def test_published_local_files_follow_the_umask(tmp_path):
    storage = Storage()
    storage.write_bytes(str(tmp_path / "a.bin"), b"x")
    with storage.writable_local(str(tmp_path / "b.bin")) as local:
        local.write_bytes(b"y")
    umask = os.umask(0)
    os.umask(umask)
    for name in ("a.bin", "b.bin"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask


def test_job_configs_get_absolute_local_uris_and_keep_s3_ones(tmp_path, monkeypatch):
    from stableface.config import compose, with_absolute_uris

    monkeypatch.chdir(tmp_path)
    train = with_absolute_uris(
        compose("train", ["dataset_uri=data/ds", "output_uri=s3://bucket/models", "run_uri='~/runs/a'"])
    )
    assert train.dataset_uri == str(tmp_path / "data" / "ds")
    assert train.output_uri == "s3://bucket/models"
    assert train.run_uri == os.path.expanduser("~/runs/a")
    assert train.audio2expression_uri is None
    audit = with_absolute_uris(compose("audit", ["catalog=videos", "compare_with=file://dubs/v"]))
    assert (audit.catalog, audit.compare_with) == (str(tmp_path / "videos"), str(tmp_path / "dubs" / "v"))
    assert audit.output_uri == str(tmp_path / "outputs" / "audit")  # the default, relative, resolved too
    with pytest.raises(InvalidURI, match="unsupported storage scheme 'gs://'"):
        with_absolute_uris(compose("dub", ["catalog=gs://bucket/rows.csv"]))
