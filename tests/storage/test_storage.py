"""One conformance suite for every storage backend: local disk, memory, and S3 against a real
S3-compatible server (moto in server mode, started by the tests as its own process)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pixelmill.storage.base import ObjectNotFound, Storage
from pixelmill.storage.local import LocalStorage
from pixelmill.storage.memory import MemoryStorage


def make_s3(endpoint: str, **options: object) -> Storage:
    import boto3

    from pixelmill.storage.s3 import S3Storage

    bucket = f"pm-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
    return S3Storage(bucket, endpoint_url=endpoint, region="us-east-1", **options)  # type: ignore[arg-type]


@pytest.fixture(params=["local", "memory", "s3", "s3-prefixed"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    if request.param == "local":
        made: Storage = LocalStorage(tmp_path / "files")
    elif request.param == "memory":
        made = MemoryStorage()
    else:
        endpoint = request.getfixturevalue("s3_endpoint")
        made = make_s3(endpoint, prefix="tenant-files/" if request.param == "s3-prefixed" else "")
    yield made
    made.close()


def test_put_is_content_addressed_and_idempotent(storage: Storage) -> None:
    a = storage.put(b"hello", "png")
    b = storage.put(b"hello", "png")
    assert a == b and a.size == 5 and a.content_type == "image/png"
    assert a.key.endswith(".png") and len(a.etag) == 64
    assert storage.put(b"other", "png").key != a.key
    assert storage.get(a.key) == b"hello" and storage.exists(a.key)


@pytest.mark.parametrize("key", ["../etc/passwd", "ab/cd/not-a-hash.png", "", "/abs"])
def test_malformed_or_missing_keys_are_not_found(storage: Storage, key: str) -> None:
    assert not storage.exists(key)
    with pytest.raises(ObjectNotFound):
        storage.get(key)


def test_unknown_extension_is_refused(storage: Storage) -> None:
    with pytest.raises(ValueError, match="extension"):
        storage.put(b"x", "exe")


def test_local_storage_leaves_no_temp_files(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.put(b"data", "png")
    assert [p.name for p in tmp_path.rglob(".tmp-*")] == []


def test_delete_removes_only_that_object(storage: Storage) -> None:
    a, b = storage.put(b"first", "png"), storage.put(b"second", "jpg")
    storage.delete(a.key)
    storage.delete(a.key)  # twice: not an error
    storage.delete("../../etc/passwd")  # malformed: ignored
    assert not storage.exists(a.key) and storage.get(b.key) == b"second"
    with pytest.raises(ObjectNotFound):
        storage.get(a.key)


def test_default_urls_go_through_pixelmill(storage: Storage) -> None:
    key = storage.put(b"x", "png").key
    assert storage.url(key, "https://img.example.com") == f"https://img.example.com/files/{key}"


def test_s3_objects_are_immutable_and_typed(s3_endpoint: str) -> None:
    import boto3

    storage = make_s3(s3_endpoint, prefix="p/")
    key = storage.put(b"\x89PNG...", "png").key
    head = boto3.client("s3", endpoint_url=s3_endpoint).head_object(Bucket=storage.bucket, Key=f"p/{key}")  # type: ignore[attr-defined]
    assert head["ContentType"] == "image/png" and head["CacheControl"] == "public, max-age=31536000, immutable"
    storage.close()


def test_s3_public_and_presigned_urls_fetch_the_object(s3_endpoint: str) -> None:
    public = make_s3(s3_endpoint, url_mode="public", public_base_url="https://cdn.example.com/")
    key = public.put(b"cdn bytes", "jpg").key
    assert public.url(key, "https://ignored") == f"https://cdn.example.com/{key}"
    signed = make_s3(s3_endpoint, url_mode="presigned", presign_seconds=600)
    key = signed.put(b"signed bytes", "png").key
    url = signed.url(key, "https://ignored")
    assert "X-Amz-Signature=" in url and "X-Amz-Expires=600" in url
    # The signed URL works without credentials. (moto does not check signatures, so a tampered
    # URL cannot be shown to fail here; the signing is botocore's.)
    assert httpx.get(url).content == b"signed bytes"
    with pytest.raises(ValueError, match="public_base_url"):
        make_s3(s3_endpoint, url_mode="public")
    public.close()
    signed.close()


def test_s3_readiness_names_a_missing_bucket(s3_endpoint: str) -> None:
    from pixelmill.storage.s3 import S3Storage

    missing = S3Storage("no-such-bucket-here", endpoint_url=s3_endpoint, region="us-east-1")
    with pytest.raises(Exception, match="404|Not Found|NoSuchBucket"):
        missing.check()
    missing.close()


def test_an_unreachable_s3_is_a_retryable_error_not_a_failure(s3_endpoint: str) -> None:
    from pixelmill.chaos import TcpGate
    from pixelmill.engines.base import is_retryable
    from pixelmill.storage.base import StorageUnavailable

    gate = TcpGate(int(s3_endpoint.rsplit(":", 1)[1]))  # the store, behind a gate that can be shut
    gate.open()
    store = make_s3(gate.url)
    try:
        kept = store.put(b"\x89PNG\r\n\x1a\n" + b"a" * 64, "png")
        gate.shut()
        for call in (lambda: store.put(b"\x89PNG\r\n\x1a\n" + b"b" * 64, "png"), lambda: store.get(kept.key),
                     lambda: store.exists(kept.key), lambda: store.delete(kept.key)):
            with pytest.raises(StorageUnavailable) as err:
                call()
            assert is_retryable(err.value)  # a task attempt that meets it is retried, not failed
        gate.open()
        assert store.get(kept.key).startswith(b"\x89PNG")
    finally:
        gate.shut()
        store.close()
