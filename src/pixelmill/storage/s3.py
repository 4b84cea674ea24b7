"""S3-compatible storage (AWS S3, MinIO, Cloudflare R2, GCS interoperability), through boto3
(``pip install pixelmill[s3]``).

Keys are the same content keys as on local disk (optionally under a ``prefix``), written once
with ``Cache-Control: immutable``: no user text ever reaches an object name, and an object never
changes, so any cache may keep it forever.

How clients reach the files (``url_mode``):

- ``pixelmill``: through pixelmill's own ``/files/<key>`` (the default; works with a private bucket);
- ``public``: ``public_base_url`` + key: a public bucket's address or a CDN in front of the bucket;
- ``presigned``: a signed GET URL that expires after ``presign_seconds``, made anew for every answer.

Credentials come from boto3's usual chain (``AWS_ACCESS_KEY_ID`` ..., instance roles).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from pixelmill.storage.base import (
    ObjectNotFound,
    Storage,
    StorageUnavailable,
    StoredObject,
    content_key,
    content_type_of,
    is_valid_key,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client  # types only (boto3-stubs[s3], the dev extra)

URL_MODES = ("pixelmill", "public", "presigned")
IMMUTABLE = "public, max-age=31536000, immutable"


class S3Storage(Storage):
    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        prefix: str = "",
        url_mode: str = "pixelmill",
        public_base_url: str | None = None,
        presign_seconds: int = 3600,
        client: S3Client | None = None,
    ) -> None:
        if url_mode not in URL_MODES:
            raise ValueError(f"url_mode must be one of {', '.join(URL_MODES)}, got {url_mode!r}")
        if url_mode == "public" and not public_base_url:
            raise ValueError("url_mode public needs public_base_url (the bucket's public address or a CDN)")
        if prefix and (prefix.startswith("/") or not prefix.endswith("/")):
            raise ValueError("prefix must be relative and end with '/', like 'pixelmill/'")
        if client is None:
            import boto3
            from botocore.config import Config

            client = boto3.client("s3", endpoint_url=endpoint_url, region_name=region,
                                  config=Config(retries={"max_attempts": 5, "mode": "standard"}, signature_version="s3v4"))
        self._s3 = client
        self.bucket = bucket
        self._prefix = prefix
        self._url_mode = url_mode
        self._public_base = (public_base_url or "").rstrip("/")
        self._presign_seconds = presign_seconds

    def _name(self, key: str) -> str:
        return f"{self._prefix}{key}"

    def put(self, data: bytes, ext: str) -> StoredObject:
        key = content_key(data, ext)
        if not self.exists(key):  # content-addressed: the same bytes are never uploaded twice
            with _reaching():
                self._s3.put_object(Bucket=self.bucket, Key=self._name(key), Body=data, ContentType=content_type_of(key),
                                    CacheControl=IMMUTABLE)
        return StoredObject(key=key, size=len(data), content_type=content_type_of(key))

    def get(self, key: str) -> bytes:
        if not is_valid_key(key):
            raise ObjectNotFound(f"no file {key}")
        try:
            with _reaching():
                return self._s3.get_object(Bucket=self.bucket, Key=self._name(key))["Body"].read()
        except self._s3.exceptions.NoSuchKey as exc:
            raise ObjectNotFound(f"no file {key}") from exc

    def exists(self, key: str) -> bool:
        if not is_valid_key(key):
            return False
        from botocore.exceptions import ClientError

        try:
            with _reaching():
                self._s3.head_object(Bucket=self.bucket, Key=self._name(key))
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def delete(self, key: str) -> None:
        if is_valid_key(key):
            with _reaching():
                self._s3.delete_object(Bucket=self.bucket, Key=self._name(key))

    def url(self, key: str, base: str) -> str:
        if self._url_mode == "public":
            return f"{self._public_base}/{self._name(key)}"
        if self._url_mode == "presigned":
            return self._s3.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": self._name(key)}, ExpiresIn=self._presign_seconds
            )
        return super().url(key, base)

    def check(self) -> None:
        self._s3.head_bucket(Bucket=self.bucket)

    def close(self) -> None:
        self._s3.close()


#: S3 error codes that say "busy", not "wrong": worth another try.
_BUSY = {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "503", "500"}


@contextmanager
def _reaching() -> Iterator[None]:
    """Turn "the store could not be reached" (network, timeout, 5xx, throttling) into
    ``StorageUnavailable``; a wrong request (403, 404 ...) stays what botocore says."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in _BUSY or status >= 500:
            raise StorageUnavailable(f"S3 is busy: {exc}") from exc
        raise
    except BotoCoreError as exc:  # no answer at all: connection refused or cut, timeouts
        raise StorageUnavailable(f"S3 could not be reached: {exc}") from exc
